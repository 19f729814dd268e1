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

It keeps its instances in the process, is thread-safe, and follows the
contract to the letter: spawn claims the flavor against the ``[fake]``
capacity times its allocation ratios (Nova's defaults, so the host admits
what Nova's placement grants), every power operation checks the
instance's current state against :data:`compute_driver.driver.TRANSITIONS`,
every transition emits its lifecycle events, destroy is idempotent and
releases what spawn claimed, and the console log grows as the instance
lives. Other projects can test against it the way they test against Nova's
fake driver.
"""

import collections
import dataclasses
import logging
import threading
import time

from compute_driver import driver
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver.fake import conf as fake_conf
from compute_driver import objects
from compute_driver import power_state

LOG = logging.getLogger(__name__)

HYPERVISOR_VERSION = '1.0.0'

# Nova's task states, passed to update_task_state during a snapshot.
IMAGE_PENDING_UPLOAD = 'image_pending_upload'
IMAGE_UPLOADING = 'image_uploading'


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
    # Stands for the disk's content: bumped by every boot, restored by a
    # revert, so a revert is observable.
    disk_generation: int = 0


class FakeDriver(driver.ComputeDriver):
    """The in-memory backend, entry point ``fake``."""

    capabilities = {'supports_' + op: True
                    for op in driver.OPTIONAL_OPERATIONS}
    hypervisor_type = 'fake'
    CONFIG_GROUP = fake_conf.GROUP
    CONFIG_OPTS = fake_conf.opts
    image_types = ('raw', 'qcow2')
    runs_containers = False

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi=virtapi)
        self._lock = threading.RLock()
        self._guests: dict[str, _Guest] = {}
        self._images: dict[str, objects.ImageMeta] = {}
        for name in conf.fake.images:
            try:
                self._images[name] = objects.ImageMeta(
                    name=name, disk_format='qcow2', container_format='bare')
            except exception.InvalidInput as exc:
                raise exception.InvalidConfiguration(
                    reason='[fake] images: %s' % exc.reason) from None
        self._host = conf.host
        self._started_at = time.time()

    # -- internals ---------------------------------------------------------

    def _guest(self, instance: objects.Instance) -> _Guest:
        try:
            return self._guests[instance.uuid]
        except KeyError:
            raise exception.InstanceNotFound(
                instance=instance.name) from None

    def _console(self, guest: _Guest, line: str) -> None:
        uptime = time.time() - guest.created
        guest.console.append('[%12.6f] %s' % (uptime, line))

    def _boot(self, guest: _Guest) -> None:
        guest.state = power_state.RUNNING
        guest.started = time.time()
        guest.disk_generation += 1
        inst = guest.instance
        self._console(guest, 'Linux version 6.1.0-fake (fake@%s)' % self._host)
        self._console(guest, 'Memory: %dK available, %d CPUs'
                      % (guest.memory_mb * 1024, guest.vcpus))
        self._console(guest, 'Booting %s from image %s'
                      % (inst.name, inst.image_ref))
        self._console(guest, '%s login:' % inst.name)

    def _halt(self, guest: _Guest, why: str) -> None:
        guest.state = power_state.SHUTDOWN
        guest.started = None
        self._console(guest, 'reboot: Power down (%s)' % why)

    def _transition(self, instance: objects.Instance, operation: str,
                    action) -> None:
        """Check, apply and announce one power operation.

        ``action(guest)`` changes the guest and may return the lifecycle
        transitions to emit instead of the operation's usual ones. They are
        emitted after the lock is released so a listener that calls back
        into the driver cannot deadlock it.
        """
        spec = driver.TRANSITIONS[operation]
        with self._lock:
            guest = self._guest(instance)
            self.check_power_state(instance, operation, guest.state)
            events = action(guest)
            if spec.result is not None:
                guest.state = spec.result
        for transition in spec.events if events is None else events:
            self.emit_lifecycle(instance.uuid, transition)

    def _usage(self) -> tuple[int, int, int]:
        flavors = [g.instance.flavor for g in self._guests.values()]
        return (sum(f.vcpus for f in flavors),
                sum(f.memory_mb for f in flavors),
                sum(f.disk_gb for f in flavors))

    def _claim(self, flavor: objects.Flavor) -> None:
        # The limit is the capacity times the allocation ratio, as Nova's
        # placement computes it: a host overcommitted by the ratios must
        # not refuse what the scheduler placed on it. A flavor larger than
        # the whole host never fits, whatever the ratios: placement's
        # max_unit is the total.
        driver.check_flavor_fits_host(flavor,
                                      self.get_available_resource(None))
        vcpus, memory_mb, disk_gb = self._usage()
        fake = self.conf.fake
        for resource, requested, used, total, ratio in (
                ('vcpus', flavor.vcpus, vcpus, fake.vcpus,
                 fake.cpu_allocation_ratio),
                ('memory_mb', flavor.memory_mb, memory_mb, fake.memory_mb,
                 fake.ram_allocation_ratio),
                ('disk_gb', flavor.disk_gb, disk_gb, fake.disk_gb,
                 fake.disk_allocation_ratio)):
            limit = int(total * ratio)
            if requested > limit - used:
                raise exception.InsufficientResources(
                    resource=resource, host=self._host, requested=requested,
                    free=limit - used, total=limit)

    # -- required ----------------------------------------------------------

    def init_host(self, host):
        self._host = host
        LOG.debug('Fake compute host %s ready with %d images', host,
                  len(self._images))

    def get_info(self, instance, use_cache=True):
        with self._lock:
            guest = self._guest(instance)
            return objects.InstanceInfo(state=guest.state,
                                        internal_id=instance.uuid)

    def list_instances(self):
        with self._lock:
            return [g.instance.name for g in self._guests.values()]

    def list_instance_uuids(self):
        with self._lock:
            return list(self._guests)

    def list_instance_records(self):
        with self._lock:
            return [
                objects.InstanceRecord(
                    instance=g.instance,
                    info=objects.InstanceInfo(state=g.state,
                                              internal_id=uuid))
                for uuid, g in self._guests.items()]

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        driver.check_spawn_instance(instance)
        with self._lock:
            image = self._images.get(image_meta.name)
            if image is None:
                raise exception.ImageNotFound(
                    image=image_meta.name,
                    available=', '.join(sorted(self._images)) or 'none')
            flavor = instance.flavor
            if flavor.memory_mb < image.min_ram:
                raise exception.InvalidInput(
                    reason='flavor %s has %d MiB of memory; image %s needs '
                           '%d' % (flavor.name, flavor.memory_mb,
                                   image.name, image.min_ram))
            if instance.uuid in self._guests:
                raise exception.InstanceExists(instance=instance.uuid)
            if instance.name in (g.instance.name
                                 for g in self._guests.values()):
                raise exception.InstanceExists(instance=instance.name)
            self._claim(flavor)
            guest = _Guest(
                instance=instance, state=power_state.SHUTDOWN,
                vcpus=flavor.vcpus, memory_mb=flavor.memory_mb,
                console=collections.deque(
                    maxlen=self.conf.fake.console_log_lines),
                created=time.time())
            self._console(guest, 'Created %s (%s) with flavor %s'
                          % (instance.name, instance.uuid, flavor.name))
            if power_on:
                self._boot(guest)
            self._guests[instance.uuid] = guest
        if power_on:
            self.emit_lifecycle(instance.uuid,
                                virtevent.EVENT_LIFECYCLE_STARTED)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        with self._lock:
            guest = self._guests.pop(instance.uuid, None)
        if guest is None:
            LOG.debug('Instance %s is already gone', instance.uuid)
            return
        if guest.state != power_state.SHUTDOWN:
            self.emit_lifecycle(instance.uuid,
                                virtevent.EVENT_LIFECYCLE_STOPPED)

    def get_available_resource(self, nodename):
        with self._lock:
            vcpus, memory_mb, disk_gb = self._usage()
            running = sum(1 for g in self._guests.values()
                          if g.state in driver.ACTIVE_STATES)
        fake = self.conf.fake
        return objects.HostResources(
            vcpus=fake.vcpus, memory_mb=fake.memory_mb,
            local_gb=fake.disk_gb, vcpus_used=vcpus,
            memory_mb_used=memory_mb, local_gb_used=disk_gb,
            hypervisor_type=self.hypervisor_type,
            hypervisor_version=objects.version_to_int(HYPERVISOR_VERSION),
            hypervisor_hostname=self._host, running_vms=running,
            cpu_info={'arch': 'x86_64', 'model': 'fake', 'vendor': 'fake',
                      'topology': {'sockets': 1, 'cores': fake.vcpus,
                                   'threads': 1}})

    def get_available_nodes(self, refresh=False):
        return [self._host]

    def get_host_identity(self):
        """``[fake] host_identity``, or None when it is empty."""
        return self.conf.fake.host_identity or None

    def cleanup_leftovers(self, dry_run=False):
        """Nothing to sweep: the fake keeps its instances in the process.

        A fake spawn builds nothing outside this process's memory, and an
        interrupted one ends with the process, so there is never anything
        left behind to find.
        """
        return []

    # -- optional ----------------------------------------------------------

    def cleanup_host(self, host):
        # Nothing outlives the process; drop the listener so a stopping
        # service gets no more events.
        self.register_event_listener(None)
        LOG.debug('Fake compute host %s cleaned up', host)

    def instance_exists(self, instance):
        with self._lock:
            return instance.uuid in self._guests

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        kind = driver.reboot_kind(reboot_type)

        def reboot(guest):
            # A soft reboot happens inside the guest, which never stops
            # being RUNNING; a hard one is a reset, seen as stop then start.
            events: tuple[int, ...] = ()
            if kind == driver.REBOOT_HARD:
                events = ((virtevent.EVENT_LIFECYCLE_STARTED,)
                          if guest.state == power_state.SHUTDOWN else
                          (virtevent.EVENT_LIFECYCLE_STOPPED,
                           virtevent.EVENT_LIFECYCLE_STARTED))
            self._console(guest, 'reboot: Restarting system (%s)'
                          % kind.lower())
            self._boot(guest)
            return events

        self._transition(instance, kind.lower() + '_reboot', reboot)

    def power_off(self, instance, timeout=0, retry_interval=0):
        if timeout < 0 or retry_interval < 0:
            raise exception.InvalidInput(
                reason='timeout and retry_interval must be >= 0')
        why = 'clean shutdown' if timeout else 'forced off'
        self._transition(instance, 'power_off',
                         lambda guest: self._halt(guest, why))

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        self._transition(instance, 'power_on', self._boot)

    def pause(self, instance):
        self._transition(instance, 'pause', lambda guest: self._console(
            guest, 'vCPUs paused'))

    def unpause(self, instance):
        self._transition(instance, 'unpause', lambda guest: self._console(
            guest, 'vCPUs resumed'))

    def suspend(self, context, instance):
        self._transition(instance, 'suspend', lambda guest: self._console(
            guest, 'PM: suspend to disk'))

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        self._transition(instance, 'resume', lambda guest: self._console(
            guest, 'PM: restore from disk'))

    def snapshot(self, context, instance, image_id, update_task_state):
        objects.validate_image_ref(image_id)

        def check():
            guest = self._guest(instance)
            self.check_power_state(instance, 'snapshot', guest.state)
            if image_id in self._images:
                raise exception.InvalidInput(
                    reason='an image named %s exists already' % image_id)
            return guest

        with self._lock:
            check()
        # Nova's callback saves the instance to the database; never call
        # out with the lock held.
        if update_task_state is not None:
            update_task_state(task_state=IMAGE_PENDING_UPLOAD)
            update_task_state(task_state=IMAGE_UPLOADING,
                              expected_state=IMAGE_PENDING_UPLOAD)
        with self._lock:
            # Checked again: the instance may have gone, or another snapshot
            # taken the name, while the callback ran.
            guest = check()
            self._images[image_id] = objects.ImageMeta(
                name=image_id, disk_format='qcow2', container_format='bare',
                min_disk=guest.instance.flavor.root_gb,
                properties={
                    'image_type': 'snapshot',
                    'instance_uuid': instance.uuid,
                    'base_image_ref': guest.instance.image_ref,
                    'disk_generation': str(guest.disk_generation),
                })

    def delete_snapshot(self, context, image_id):
        with self._lock:
            image = self._images.get(image_id)
            if image is None:
                return
            if image.properties.get('image_type') != 'snapshot':
                raise exception.InvalidInput(
                    reason='image %s is not a snapshot' % image_id)
            del self._images[image_id]

    def revert_to_snapshot(self, context, instance, image_id):
        with self._lock:
            guest = self._guest(instance)
            image = self._images.get(image_id)
            if (image is None or
                    image.properties.get('instance_uuid') != instance.uuid):
                mine = sorted(
                    name for name, i in self._images.items()
                    if i.properties.get('instance_uuid') == instance.uuid)
                raise exception.ImageNotFound(
                    image='%s (a snapshot of %s)' % (image_id, instance.name),
                    available=', '.join(mine) or 'none')
            self.check_power_state(instance, 'revert_to_snapshot',
                                   guest.state)
            was_running = guest.state == power_state.RUNNING
            guest.disk_generation = int(image.properties['disk_generation'])
            self._console(guest, 'disk reverted to snapshot %s' % image_id)
            if was_running:
                self._halt(guest, 'revert')
                self._boot(guest)
        if was_running:
            self.emit_lifecycle(instance.uuid,
                                virtevent.EVENT_LIFECYCLE_STOPPED)
            self.emit_lifecycle(instance.uuid,
                                virtevent.EVENT_LIFECYCLE_STARTED)

    def live_resize(self, context, instance, vcpus=None, memory_mb=None):
        with self._lock:
            guest = self._guest(instance)
            # The stored flavor is what spawn claimed; the caller's copy of
            # the instance may say otherwise.
            self.check_live_resize(guest.instance, vcpus, memory_mb)
            self.check_power_state(instance, 'live_resize', guest.state)
            guest.vcpus = vcpus if vcpus is not None else guest.vcpus
            guest.memory_mb = (memory_mb if memory_mb is not None
                               else guest.memory_mb)
            self._console(guest, 'resized to %d CPUs, %d MiB'
                          % (guest.vcpus, guest.memory_mb))

    def get_console_output(self, context, instance):
        with self._lock:
            return '\n'.join(self._guest(instance).console) + '\n'

    def get_diagnostics(self, instance):
        with self._lock:
            guest = self._guest(instance)
            uptime = (time.time() - guest.started if guest.started
                      else 0.0)
            return {
                'state': power_state.name(guest.state),
                'driver': 'fake',
                'vcpus': guest.vcpus,
                'memory_mb': guest.memory_mb,
                'uptime': round(uptime, 3),
                'disk_generation': guest.disk_generation,
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
        with self._lock:
            return [self._images[name] for name in sorted(self._images)]
