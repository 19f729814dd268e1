#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""An in-memory backend that documents what every real backend must do.

It keeps its instances in the process and implements the contract's hooks
and nothing else: the pipeline in :class:`compute_driver.driver.ComputeDriver`
claims the flavor against the ``[fake]`` capacity under the allocation
ratios (so the host admits what Nova's placement grants), checks every
power operation against :data:`compute_driver.driver.TRANSITIONS` and
emits its lifecycle events; destroy is idempotent and releases what spawn
claimed, and the console log grows as the instance lives. It is the
smallest complete backend, and other projects can test against it the way
they test against Nova's fake driver.
"""

import collections
import dataclasses
import hashlib
import io
import logging
import threading
import time
import weakref

from compute_driver import console as cd_console
from compute_driver import driver
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver.fake import conf as fake_conf
from compute_driver.fake import console as fake_console
from compute_driver.fake import images as fake_images
from compute_driver import objects
from compute_driver import power_state
from compute_driver.volume import model as vol_model

LOG = logging.getLogger(__name__)

HYPERVISOR_VERSION = '1.0.0'

#: The fake hosts of this process by host name: the fake's migration
#: network, over which a live migration hands a running guest to another
#: fake host as libvirtd hands one to its peer. Filled by init_host,
#: emptied by cleanup_host; a host that is gone drops out by itself.
_HOSTS: 'weakref.WeakValueDictionary[str, FakeDriver]' = (
    weakref.WeakValueDictionary())
_HOSTS_LOCK = threading.Lock()


@dataclasses.dataclass
class _Guest:
    """One fake instance and what the fake hypervisor knows of it."""

    instance: objects.Instance
    state: int
    vcpus: int
    memory_mb: int
    console: collections.deque
    created: float
    started: float | None = None
    # The image's bytes, as downloaded and verified at spawn; what a
    # snapshot uploads and a revert restores.
    disk: bytes = b''
    # Bumped by every boot, restored by a revert, so a revert is
    # observable.
    disk_generation: int = 0
    # The host a cold migration moves it to, until confirmed or reverted.
    leaving: str = ''
    # The recorded ports, in NIC order, and the ids of those whose host
    # side is wired: the fake host's stand-in for taps on bridges.
    ports: list = dataclasses.field(default_factory=list)
    plugged: set = dataclasses.field(default_factory=set)
    # Volumes by id, in attach order: the fake hypervisor's record.
    volumes: dict = dataclasses.field(default_factory=dict)


class FakeDriver(driver.ComputeDriver):
    """The in-memory backend, entry point ``fake``."""

    capabilities = {**{'supports_' + op: True
                       for op in driver.OPTIONAL_OPERATIONS},
                    # Fake instances run no processes to run a command in.
                    'supports_execute': False}
    hypervisor_type = 'fake'
    CONFIG_GROUP = fake_conf.GROUP
    CONFIG_OPTS = fake_conf.opts
    image_types = ('raw', 'qcow2')
    runs_containers = False
    # No hypervisor to report transitions: the pipeline emits them.
    emits_lifecycle_events = False

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi=virtapi)
        self._lock = threading.RLock()
        # One snapshot at a time: its name is checked, then taken.
        self._snapshot_lock = threading.Lock()
        self._guests: dict[str, _Guest] = {}
        # What a resize on this host replaced, until confirmed or reverted.
        self._revert_points: dict[str, _Guest] = {}
        for name in conf.fake.images:
            try:
                objects.validate_image_ref(name)
            except exception.InvalidInput as exc:
                raise exception.InvalidConfiguration(
                    reason='[fake] images: %s' % exc.reason) from None
        if conf.fake.image_service == 'memory':
            self.image_service = fake_images.MemoryImageService(
                conf.fake.images)
        self._started_at = time.time()
        self._terminals: dict[str, fake_console.FakeTerminal] = {}

    # -- internals ---------------------------------------------------------

    def _console(self, guest: _Guest, line: str) -> None:
        uptime = time.time() - guest.created
        guest.console.append('[%12.6f] %s' % (uptime, line))

    def _boot(self, guest: _Guest) -> None:
        guest.state = power_state.RUNNING
        guest.started = time.time()
        guest.disk_generation += 1
        inst = guest.instance
        self._console(guest, 'Linux version 6.1.0-fake (fake@%s)' % self.host)
        self._console(guest, 'Memory: %dK available, %d CPUs'
                      % (guest.memory_mb * 1024, guest.vcpus))
        self._console(guest, 'Booting %s from image %s'
                      % (inst.name, inst.image_ref))
        self._console(guest, '%s login:' % inst.name)

    def _halt(self, guest: _Guest, why: str) -> None:
        guest.state = power_state.SHUTDOWN
        guest.started = None
        self._hang_up(guest.instance.uuid)
        self._console(guest, 'reboot: Power down (%s)' % why)

    def _settle(self, guest: _Guest, state: int, line: str) -> None:
        self._console(guest, line)
        guest.state = state

    # -- hooks ---------------------------------------------------------------

    def _connect(self):
        with _HOSTS_LOCK:
            _HOSTS[self.host] = self
        LOG.debug('Fake compute host %s ready with the %s image service',
                  self.host, self.image_service.name)

    def _find(self, instance):
        with self._lock:
            try:
                return self._guests[instance.uuid]
            except KeyError:
                raise exception.InstanceNotFound(
                    instance=instance.name) from None

    def _power_state(self, guest):
        return guest.state

    def _stored(self, guest, instance):
        return guest.instance

    def _check_unique(self, instance):
        with self._lock:
            if instance.uuid in self._guests:
                raise exception.InstanceExists(instance=instance.uuid)
            if instance.name in (g.instance.name
                                 for g in self._guests.values()):
                raise exception.InstanceExists(instance=instance.name)

    def _get_image(self, instance):
        return self.image_for(instance)

    def _download(self, image_id):
        # Into memory, verified against the service's checksum: the fake
        # has no disk, so no cache either.
        buffer = io.BytesIO()
        self.image_service.download(image_id, buffer)
        return buffer.getvalue()

    def _create(self, instance, image, power_on, network_info,
                block_device_info):
        flavor = instance.flavor
        guest = _Guest(
            instance=instance, state=power_state.SHUTDOWN,
            vcpus=flavor.vcpus, memory_mb=flavor.memory_mb,
            console=collections.deque(
                maxlen=self.conf.fake.console_log_lines),
            created=time.time(), disk=self._download(image.id),
            ports=list(network_info), plugged={p.id for p in network_info})
        self._console(guest, 'Created %s (%s) with flavor %s from %d bytes '
                      'of image %s' % (instance.name, instance.uuid,
                                       flavor.name, len(guest.disk),
                                       image.id))
        with self._spawn_volumes(instance, block_device_info) as volumes:
            for attachment in volumes:
                guest.volumes[attachment.volume_id] = attachment
                self._console(guest, 'disk %s: volume %s (%s)'
                              % (attachment.mountpoint,
                                 attachment.volume_id,
                                 attachment.device_path))
            if power_on:
                self._boot(guest)
            with self._lock:
                self._guests[instance.uuid] = guest

    def _destroy(self, instance, destroy_disks):
        with self._lock:
            guest = self._guests.pop(instance.uuid, None)
        self._hang_up(instance.uuid)
        if guest is None:
            return None
        self._release_volumes(instance, list(guest.volumes.values()))
        return guest.state

    def _resources(self, pending):
        with self._lock:
            guests = list(self._guests.values())
            kept = list(self._revert_points.values())
        flavors = [g.instance.flavor for g in guests + kept]
        flavors += [i.flavor for i in pending if i.uuid not in self._guests]
        fake = self.conf.fake
        return objects.HostResources(
            vcpus=fake.vcpus, memory_mb=fake.memory_mb,
            local_gb=fake.disk_gb,
            vcpus_used=sum(f.vcpus for f in flavors),
            memory_mb_used=sum(f.memory_mb for f in flavors),
            local_gb_used=sum(f.disk_gb for f in flavors),
            hypervisor_type=self.hypervisor_type,
            hypervisor_version=objects.version_to_int(HYPERVISOR_VERSION),
            hypervisor_hostname=self.host,
            running_vms=sum(1 for g in guests
                            if g.state in driver.ACTIVE_STATES),
            cpu_info={'arch': 'x86_64', 'model': 'fake', 'vendor': 'fake',
                      'topology': {'sockets': 1, 'cores': fake.vcpus,
                                   'threads': 1}})

    def list_instance_records(self):
        with self._lock:
            return [
                objects.InstanceRecord(
                    instance=g.instance,
                    info=objects.InstanceInfo(state=g.state,
                                              internal_id=uuid))
                for uuid, g in self._guests.items()]

    def get_host_identity(self):
        """``[fake] host_identity``, or None when it is empty."""
        return self.conf.fake.host_identity or None

    # -- optional operations ------------------------------------------------

    def cleanup_host(self, host):
        # Nothing outlives the process; drop the listener so a stopping
        # service gets no more events.
        self.register_event_listener(None)
        with _HOSTS_LOCK:
            if _HOSTS.get(self.host) is self:
                del _HOSTS[self.host]
        LOG.debug('Fake compute host %s cleaned up', host)

    def _reboot(self, guest, instance, kind, current):
        # A soft reboot happens inside the guest, which never stops being
        # RUNNING; a hard one is a reset, seen as stop then start.
        events: tuple[int, ...] = ()
        if kind == driver.REBOOT_HARD:
            events = ((virtevent.EVENT_LIFECYCLE_STARTED,)
                      if current == power_state.SHUTDOWN else
                      (virtevent.EVENT_LIFECYCLE_STOPPED,
                       virtevent.EVENT_LIFECYCLE_STARTED))
        self._console(guest, 'reboot: Restarting system (%s)' % kind.lower())
        self._boot(guest)
        return events

    def _power_off(self, guest, instance, current, timeout, retry_interval):
        self._halt(guest, 'clean shutdown' if timeout else 'forced off')

    def _power_on(self, guest, instance):
        self._boot(guest)

    def _pause(self, guest, instance):
        self._settle(guest, power_state.PAUSED, 'vCPUs paused')

    def _unpause(self, guest, instance):
        self._settle(guest, power_state.RUNNING, 'vCPUs resumed')

    def _suspend(self, guest, instance):
        self._settle(guest, power_state.SUSPENDED, 'PM: suspend to disk')

    def _resume(self, guest, instance):
        self._settle(guest, power_state.RUNNING, 'PM: restore from disk')

    def _has_image(self, image_id):
        return self.image_exists(image_id)

    def _snapshot(self, guest, instance, current, image_id):
        with self._snapshot_lock:
            # Checked again: another snapshot may have taken the name
            # while Nova's callback ran.
            if self.image_exists(image_id):
                raise exception.InvalidInput(
                    reason='an image named %s exists already' % image_id)
            self.upload_snapshot(
                guest.instance, image_id, io.BytesIO(guest.disk), 'raw',
                'bare', properties={
                    'disk_generation': str(guest.disk_generation)})

    def _delete_snapshot(self, image_id):
        self.delete_snapshot_image(image_id)

    def _snapshots_of(self, instance):
        return self.snapshot_images_of(instance)

    def _revert(self, guest, instance, current, image_id):
        record = self.image_record(image_id)
        guest.disk = self._download(record.id)
        guest.disk_generation = int(
            record.properties.get('disk_generation', 0))
        self._console(guest, 'disk reverted to snapshot %s' % image_id)
        if current == power_state.RUNNING:
            self._halt(guest, 'revert')
            self._boot(guest)

    def _live_resize(self, guest, instance, vcpus, memory_mb):
        guest.vcpus = vcpus if vcpus is not None else guest.vcpus
        guest.memory_mb = (memory_mb if memory_mb is not None
                           else guest.memory_mb)
        self._console(guest, 'resized to %d CPUs, %d MiB'
                      % (guest.vcpus, guest.memory_mb))

    def _console_output(self, guest, instance):
        with self._lock:
            return '\n'.join(guest.console) + '\n'

    def _diagnostics(self, guest, instance):
        uptime = time.time() - guest.started if guest.started else 0.0
        return {
            'state': power_state.name(guest.state),
            'driver': 'fake',
            'vcpus': guest.vcpus,
            'memory_mb': guest.memory_mb,
            'uptime': round(uptime, 3),
            'disk_generation': guest.disk_generation,
            'disk_bytes': len(guest.disk),
            'disk_sha256': hashlib.sha256(guest.disk).hexdigest(),
            'console_lines': len(guest.console),
        }

    def get_host_ip_addr(self):
        return str(self.conf.fake.host_ip)

    def get_host_uptime(self):
        seconds = int(time.time() - self._started_at)
        with self._lock:
            count = len(self._guests)
        return ' %s up %d:%02d, %d instances' % (
            time.strftime('%H:%M:%S'), seconds // 3600,
            seconds // 60 % 60, count)

    def list_images(self):
        return self.list_service_images()

    # -- resize and cold migration ------------------------------------------
    # The fake's disk is its disk_generation (and its console, which a
    # real disk's log would be part of): small enough to travel inside
    # disk_info, so two fake hosts need nothing shared to move a guest.

    def _resize(self, guest, instance, flavor):
        with self._lock:
            if instance.uuid in self._revert_points:
                raise exception.InvalidInput(
                    reason='instance %s has a resize to confirm or revert '
                           'first' % instance.name)
            self._revert_points[instance.uuid] = dataclasses.replace(
                guest, console=collections.deque(
                    guest.console, maxlen=guest.console.maxlen))
            guest.instance = dataclasses.replace(guest.instance,
                                                 flavor=flavor)
            guest.vcpus, guest.memory_mb = flavor.vcpus, flavor.memory_mb
        self._console(guest, 'resized to flavor %s' % flavor.name)

    def _migrate_out(self, guest, instance, flavor, dest):
        guest.leaving = dest
        self._console(guest, 'leaving for %s' % dest)
        return {'disk_generation': guest.disk_generation,
                'console': list(guest.console)}

    def _migrate_in(self, instance, payload):
        generation, console = (payload.get('disk_generation'),
                               payload.get('console'))
        if not isinstance(generation, int) or not isinstance(console, list):
            raise exception.InvalidInput(
                reason='disk_info of %s carries no fake disk' % instance.name)
        guest = _Guest(
            instance=instance, state=power_state.SHUTDOWN,
            vcpus=instance.flavor.vcpus, memory_mb=instance.flavor.memory_mb,
            console=collections.deque(
                (str(line) for line in console),
                maxlen=self.conf.fake.console_log_lines),
            created=time.time(), disk_generation=generation)
        self._console(guest, 'arrived on %s with flavor %s'
                      % (self.host, instance.flavor.name))
        with self._lock:
            self._guests[instance.uuid] = guest

    def _confirm_migration(self, instance):
        with self._lock:
            self._revert_points.pop(instance.uuid, None)
            guest = self._guests.get(instance.uuid)
            if guest is not None and guest.leaving:
                del self._guests[instance.uuid]

    def _revert_migration(self, instance):
        with self._lock:
            kept = self._revert_points.pop(instance.uuid, None)
            if kept is not None:
                self._guests[instance.uuid] = kept
                return
            guest = self._guests.get(instance.uuid)
            if guest is None:
                raise exception.InstanceNotFound(instance=instance.name)
            guest.leaving = ''

    # -- live migration ------------------------------------------------------
    # The guest, console and all, goes to the other fake host of this
    # process over _HOSTS; as with cold migration, nothing else is shared.

    def _live_migrate(self, guest, instance, dest, migrate_data):
        with _HOSTS_LOCK:
            peer = _HOSTS.get(dest)
        if peer is None or peer is self:
            raise exception.MigrationFailed(
                instance=instance.name, dest=dest,
                reason='no other fake host %s in this process' % dest)
        self._console(guest, 'migrating live to %s' % dest)
        with self._lock:
            moving = dataclasses.replace(
                guest, console=collections.deque(
                    guest.console, maxlen=peer.conf.fake.console_log_lines),
                ports=list(guest.ports), plugged=set(guest.plugged),
                volumes=dict(guest.volumes))
        peer._arrive(moving)
        with self._lock:
            self._guests.pop(instance.uuid, None)
        self._hang_up(instance.uuid)

    def _arrive(self, guest: _Guest) -> None:
        # Only a guest pre_live_migration reserved room for is taken, as a
        # hypervisor only accepts an incoming migration it was told of.
        inst = guest.instance
        with self._claim_lock:
            expected = inst.uuid in self._pending
        if not expected:
            raise exception.MigrationFailed(
                instance=inst.name, dest=self.host,
                reason='the destination is not prepared for it')
        with self._lock:
            if inst.uuid in self._guests:
                raise exception.MigrationFailed(
                    instance=inst.name, dest=self.host,
                    reason='the destination has it already')
            self._guests[inst.uuid] = guest
        self._console(guest, 'arrived live on %s' % self.host)

    # -- network -------------------------------------------------------------

    def _plug_vifs(self, guest, instance, ports):
        with self._lock:
            known = {p.id for p in guest.ports}
            guest.ports.extend(p for p in ports if p.id not in known)
            guest.plugged.update(p.id for p in ports)

    def _unplug_vifs(self, guest, instance, ports):
        with self._lock:
            guest.plugged.difference_update(p.id for p in ports)

    def _attach_interface(self, guest, instance, port):
        with self._lock:
            guest.ports.append(port)
            guest.plugged.add(port.id)
        self._console(guest, 'NIC %s (%s) attached' % (port.id, port.mac))

    def _detach_interface(self, guest, instance, port):
        with self._lock:
            guest.ports = [p for p in guest.ports if p.id != port.id]
            guest.plugged.discard(port.id)
        self._console(guest, 'NIC %s (%s) detached' % (port.id, port.mac))

    def _interfaces(self, guest, instance):
        with self._lock:
            return tuple(guest.ports)

    def plugged_ports(self, instance: objects.Instance) -> set[str]:
        """Ids of the instance's ports wired on the fake host (for tests)."""
        with self._lock:
            return set(self._find(instance).plugged)

    # -- volumes -------------------------------------------------------------
    # The fake hypervisor keeps attachments in memory and checks that each
    # device exists when it is attached, as a real one would open it.

    def _volume_user(self, connection):
        with self._lock:
            for guest in self._guests.values():
                if connection.volume_id in guest.volumes:
                    return 'it is attached to instance %s' % (
                        guest.instance.name)
                for attachment in guest.volumes.values():
                    if (connection.protocol == vol_model.LOCAL and
                            attachment.device_path ==
                            connection.data['device_path']):
                        return 'it is attached to instance %s as %s' % (
                            guest.instance.name, attachment.volume_id)
        return super()._volume_user(connection)

    def _volume_attachments(self, guest, instance):
        with self._lock:
            return list(guest.volumes.values())

    def _attach_volume(self, guest, instance, attachment, live):
        with self._lock:
            guest.volumes[attachment.volume_id] = attachment
        self._console(guest, '%s disk %s: volume %s (%s)'
                      % ('hot-plugged' if live else 'added',
                         attachment.mountpoint, attachment.volume_id,
                         attachment.device_path))

    def _detach_volume(self, guest, instance, attachment, live):
        with self._lock:
            del guest.volumes[attachment.volume_id]
        self._console(guest, '%s disk %s' % (
            'unplugged' if live else 'removed', attachment.mountpoint))

    def _swap_volume(self, guest, instance, old, new, live):
        with self._lock:
            del guest.volumes[old.volume_id]
            guest.volumes[new.volume_id] = new
        self._console(guest, 'disk %s: volume %s replaces %s'
                      % (new.mountpoint, new.volume_id, old.volume_id))

    def _extend_volume(self, guest, instance, attachment, size, live):
        self._console(guest, 'disk %s: %d bytes'
                      % (attachment.mountpoint, size))

    # -- consoles ----------------------------------------------------------

    #: First ports of the endpoints the fake reports. Nothing listens on
    #: them: the fake has no display and no serial port to serve.
    VNC_BASE_PORT = 5900
    SERIAL_BASE_PORT = 10000

    def _console_index(self, instance: objects.Instance) -> int:
        with self._lock:
            return sorted(self._guests).index(instance.uuid)

    def _serial_console(self, guest, instance):
        return cd_console.SerialConsole(
            host=str(self.conf.fake.host_ip),
            port=self.SERIAL_BASE_PORT + self._console_index(instance))

    def _vnc_console(self, guest, instance):
        return cd_console.VNCConsole(
            host=str(self.conf.fake.host_ip),
            port=self.VNC_BASE_PORT + self._console_index(instance))

    def _open_console(self, guest, instance):
        uuid = instance.uuid
        with self._lock:
            if uuid in self._terminals:
                raise exception.ConsoleBusy(console='serial',
                                            instance=instance.name)

            def log(line: str) -> None:
                with self._lock:
                    self._console(guest, line)

            def closed() -> None:
                with self._lock:
                    if self._terminals.get(uuid) is terminal:
                        del self._terminals[uuid]

            terminal = fake_console.FakeTerminal(log, closed)
            self._terminals[uuid] = terminal
        return terminal.stream

    def _hang_up(self, uuid: str) -> None:
        with self._lock:
            terminal = self._terminals.pop(uuid, None)
        if terminal is not None:
            terminal.hang_up()
