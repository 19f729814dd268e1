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

"""The libvirt backend, entry point ``libvirt``.

Guests are libvirt domains whose uuid is the instance's, whose name is
:data:`mapping.DOMAIN_PREFIX` plus the instance's and whose ``<metadata>``
holds the instance record (see :mod:`compute_driver.libvirt.mapping`); the
files of an instance are ``[libvirt] instances_path/<uuid>/`` (``disk`` and
``console.log``). Only domains carrying that record are listed or touched.

Listing is one round trip: ``getAllDomainStats`` with the state group
returns every domain with its state and reason, and the instance records
are read once per domain and cached by uuid (they never change after
spawn). Spawn and destroy also keep a copy of the records in
``instances_path/records.json`` (:mod:`compute_driver.libvirt.recordindex`),
so a new process reads the records of its listing in one file read rather
than with one ``virDomainGetMetadata`` round trip per domain; the domain's
metadata stays the authority, read only for a domain the index lacks
(spawned by an older release), which is then added to it.
A shut-off domain without a reason (never started, or libvirtd restarted
since) costs one more, filtered, call listing the domains with a managed
save. :meth:`LibvirtDriver.find_instance` and the claim's uniqueness check
look one domain up by uuid and by the domain name derived from the
instance name: a constant number of calls, whatever the number of domains.

The contract's pipeline runs the operations; this module implements its
hooks. The connection is :mod:`~compute_driver.libvirt.connection`'s,
lifecycle events come from :mod:`~compute_driver.libvirt.events`, images
and instance disks from :mod:`~compute_driver.libvirt.images`, and libvirt's
errors are translated by :mod:`~compute_driver.libvirt.errors`.
"""

import collections.abc
import contextlib
import contextvars
import dataclasses
import functools
import json
import logging
import os
import shutil
import socket
import stat
import threading
import time
import typing

import libvirt

from compute_driver import driver
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver.image import exception as image_exception
from compute_driver import leftovers
from compute_driver.libvirt import conf as libvirt_conf
from compute_driver.libvirt import connection
from compute_driver.libvirt import errors
from compute_driver.libvirt import events
from compute_driver.libvirt import mapping
from compute_driver.libvirt import migration
from compute_driver.libvirt import network
from compute_driver.libvirt import recordindex
from compute_driver import objects
from compute_driver import power_state

if typing.TYPE_CHECKING:  # pragma: no cover
    from concurrent import futures

    from compute_driver.image import api as image_api
    from compute_driver.libvirt import images

LOG = logging.getLogger(__name__)

_SHUTOFF = libvirt.VIR_DOMAIN_SHUTOFF
_SHUTOFF_UNKNOWN = libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN

_DISK = 'disk'
#: Not read yet (see LibvirtDriver._qemu_group).
_UNREAD = object()
# Operations whose first call on the domain (the volume state check, a
# listing's read) fails for a domain gone since the lookup, as the lookup
# would: they take the domain handle this process looked up before. The
# reads that follow find_instance (compute-driver show) are among them.
_CACHED_LOOKUP = frozenset(('attach_volume', 'detach_volume', 'swap_volume',
                            'extend_volume', 'list_volume_attachments',
                            'diagnostics', 'interfaces'))
_cached_lookup: contextvars.ContextVar[bool] = contextvars.ContextVar(
    '_cached_lookup', default=False)
_CONSOLE_LOG = 'console.log'
#: Suffix of the marker beside an instance directory while its spawn runs.
_SPAWNING = '.spawning'
#: Suffix of the marker beside an instance directory while its snapshot
#: runs, naming what an interruption would leave (see
#: :meth:`LibvirtDriver._snapshot_marked`).
_SNAPSHOTTING = '.snapshotting'


class _SnapshotMark:
    """A snapshot's marker, and what it says an interruption would leave.

    See :meth:`LibvirtDriver._snapshot_marked`.
    """

    def __init__(self, marker: leftovers.Marker, state: dict[str, object],
                 dom: typing.Any, pause: bool) -> None:
        self._marker = marker
        self._state = state
        self._dom = dom
        self._pause = pause

    @property
    def paused(self) -> bool:
        """Whether the snapshot paused the guest and has not resumed it."""
        return bool(self._state['paused'])

    def note(self, **fields: object) -> None:
        """Record what the snapshot made (``store_image=NAME``)."""
        self._state.update(fields)
        self._marker.update(json.dumps(self._state))

    @contextlib.contextmanager
    def copying(self) -> collections.abc.Iterator[None]:
        """Pause a running guest while its disk is copied.

        A consistent copy needs the guest's vCPUs stopped; qemu keeps the
        disk open (and locked) while the guest is paused.
        """
        if not self._pause:
            yield
            return
        # Noted before the guest pauses: an interruption in between finds
        # a running guest, which the sweep leaves alone.
        self.note(paused=True)
        self._dom.suspend()
        try:
            yield
        finally:
            self._dom.resume()
            self.note(paused=False)


class _HostState(typing.NamedTuple):
    """What a claim reads from libvirtd and the disk, before its lock."""

    # A named tuple, not a dataclass: the class is made at import, and a
    # frozen dataclass's generated methods cost every command (a listing
    # too) a fraction of a millisecond to compile.

    info: list[typing.Any]
    hostname: str
    version: int
    records: list[objects.InstanceRecord]
    #: The flavors the revert points hold.
    kept: list[objects.Flavor]
    local_gb: int
    free_gb: int


def _is_uuid(text: str) -> bool:
    # Instance directories are named by the canonical form only.
    try:
        return objects.validate_uuid(text) == text
    except exception.InvalidInput:
        return False


class LibvirtDriver(driver.ComputeDriver):
    """Guests through libvirtd, entry point ``libvirt``."""

    capabilities = {
        'supports_' + op: True for op in (
            'cleanup_host', 'instance_exists', 'soft_reboot', 'hard_reboot',
            'power_off', 'power_on', 'pause', 'unpause', 'suspend',
            'resume', 'snapshot', 'delete_snapshot', 'revert_to_snapshot',
            'live_resize', 'console_output', 'diagnostics', 'host_ip_addr',
            'host_uptime', 'list_images', 'resize',
            'serial_console', 'vnc_console', 'attach_console',
            # -- volumes --
            'attach_volume', 'live_attach_volume', 'detach_volume',
            'swap_volume', 'extend_volume')}
    # -- network --
    capabilities = {**capabilities, **{'supports_' + op: True for op in (
        'plug_vifs', 'unplug_vifs', 'attach_interface', 'detach_interface',
        'interfaces')}}
    hypervisor_type = 'libvirt'
    CONFIG_GROUP = libvirt_conf.GROUP
    CONFIG_OPTS = libvirt_conf.opts
    # What an image of the image service may be: images.NATIVE_FORMATS
    # and images.CONVERTED_FORMATS (which it converts), spelt out so that
    # the class needs no import of .images; the store takes raw and qcow2
    # only.
    image_types = ('raw', 'qcow2', 'vhd', 'vhdx', 'vdi')
    # True for virt_type = lxc, set in __init__.
    runs_containers = False

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi=virtapi)
        opts = conf.libvirt
        for option in ('images_path', 'instances_path'):
            # A relative path would depend on the directory each command
            # happens to run from, and libvirtd's differs from ours.
            if not os.path.isabs(opts[option]):
                raise exception.InvalidConfiguration(
                    reason='[libvirt] %s must be an absolute path, got %r'
                           % (option, opts[option]))
        self.virt_type: str = opts.virt_type
        self.runs_containers = self.virt_type == 'lxc'
        # A QEMU guest's root disk is vda: under Nova, attached volumes
        # are then named vdb onwards, as the guest's virtio disks are,
        # rather than after Nova's default sda.
        if self.virt_type in ('qemu', 'kvm'):
            self.root_device_name = '/dev/vda'
        self._declare_consoles()
        self.uri: str = (opts.connection_uri or
                         libvirt_conf.DEFAULT_URIS[self.virt_type])
        self.instances_path: str = opts.instances_path
        self._images_path: str = opts.images_path
        self._store: 'images.ImageStore | None' = None
        self._store_lock = threading.Lock()
        self._events = events.DomainEvents(self.emit_event,
                                           opts.lifecycle_event_delay)
        self._host = connection.Host(
            self.uri, self.virt_type, self._events.on_domain_event,
            reconnect_timeout=opts.reconnect_timeout)
        self._records = recordindex.DomainRecords(self.instances_path)
        # uuid -> (connection, domain handle), for _CACHED_LOOKUP.
        self._handles: dict[str, tuple[typing.Any, typing.Any]] = {}
        # Whether volume disks carry their attachment, and may be detached
        # by their alias (set by _connect).
        self._volume_aliases = True
        self._detach_by_alias = True
        self._revert_points = migration.RevertPoints(self.instances_path)
        # The group QEMU runs as, given search access to instance
        # directories; None keeps them to their owner. Read on first
        # use: the host capabilities are a large document, which
        # commands that create no directory need not fetch.
        self._qemu_gid: int | None | object = _UNREAD

    @property
    def store(self) -> 'images.ImageStore':
        """The ``[libvirt] images_path`` store and the ``_base`` cache.

        Made on first use, with :mod:`~compute_driver.libvirt.images`: a
        listing or a show, in a new process, has no use for either.
        """
        with self._store_lock:
            if self._store is None:
                from compute_driver.libvirt import images
                self._store = images.ImageStore(self._images_path,
                                                self.instances_path)
            return self._store

    # -- paths ----------------------------------------------------------------

    def _instance_dir(self, uuid: str) -> str:
        return os.path.join(self.instances_path, uuid)

    def _disk_path(self, uuid: str) -> str:
        return os.path.join(self._instance_dir(uuid), _DISK)

    def _console_path(self, uuid: str) -> str:
        return os.path.join(self._instance_dir(uuid), _CONSOLE_LOG)

    def _marker_path(self, uuid: str) -> str:
        # Beside the directory, not in it: it exists before the directory
        # and after it is removed, so a sweep never sees a directory that
        # is neither marked nor backed by a domain while a spawn runs.
        return os.path.join(self.instances_path, uuid + _SPAWNING)

    def _make_instance_dir(self, directory: str) -> None:
        """Create an instance directory only QEMU and its owner can enter.

        The disk and console log hold tenant data: they are created 0600
        and the directory 0700, or 0710 with QEMU's group when libvirt
        reports one, so that QEMU (running as another user, with libvirt
        chowning the disk and log to it at start) can reach them by name
        and nobody else can.
        """
        os.makedirs(directory, mode=0o700)
        gid = self._qemu_group()
        if gid is not None and gid != os.getgid():
            try:
                os.chown(directory, -1, gid)
                os.chmod(directory, 0o710)
            except PermissionError as exc:
                LOG.debug('Cannot give group %d access to %s: %s',
                          gid, directory, exc)

    def _qemu_group(self) -> int | None:
        if self._qemu_gid is _UNREAD:
            dac = self._host.get_dac_label()
            self._qemu_gid = dac[1] if dac else None
        return typing.cast('int | None', self._qemu_gid)

    def _console_mark(self, instance: objects.Instance, what: str) -> None:
        # The guest's console is appended to this file: a line of ours
        # tells the boots apart and makes the log non-empty from the start.
        try:
            fd = os.open(self._console_path(instance.uuid),
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            with open(fd, 'a', encoding='utf-8') as handle:
                handle.write('compute-driver: %s %s at %s\n' % (
                    what, instance.name,
                    time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())))
        except OSError as exc:
            LOG.warning('Cannot write to the console log of %s: %s',
                        instance.name, exc)

    # -- required hooks -------------------------------------------------------

    def _connect(self):
        self._host.check_versions()
        hv_type = self._host.get_hypervisor_type()
        self.hypervisor_type = hv_type
        if hv_type.upper() == 'TEST':
            # libvirt's test driver has neither console streams nor
            # display ports.
            self.capabilities = {**self.capabilities,
                                 'supports_attach_console': False,
                                 'supports_vnc_console': False}
        for path in (self.instances_path, self._images_path):
            try:
                os.makedirs(path, mode=0o755, exist_ok=True)
            except OSError as exc:
                raise exception.InvalidConfiguration(
                    reason='cannot create %s: %s' % (path, exc)) from exc
        self._qemu_gid = _UNREAD
        version = self._host.get_libvirt_version()
        self._volume_aliases = connection.keeps_aliases(self.virt_type,
                                                        version)
        # virDomainDetachDeviceAlias came in 4.4.0.
        self._detach_by_alias = (self._volume_aliases and
                                 version >= (4, 4, 0))
        if LOG.isEnabledFor(logging.DEBUG):
            # One more round trip, for the log only.
            LOG.debug('libvirt backend on %s: virt_type %s, %s %s',
                      self.uri, self.virt_type, hv_type, '.'.join(
                          map(str, self._host.get_hypervisor_version())))

    def _translate(self, operation, instance):
        return errors.translate(operation, instance)

    def _find(self, instance):
        cached = _cached_lookup.get()
        if cached:
            conn = self._host.get_connection()
            found = self._handles.get(instance.uuid)
            if found is not None and found[0] is conn:
                return found[1]
        dom = self._host.call(
            lambda conn: conn.lookupByUUIDString(instance.uuid))
        if self._records.of(dom) is None:
            raise exception.InstanceNotFound(instance=instance.name)
        if cached:
            self._handles[instance.uuid] = (dom.connect(), dom)
        return dom

    def _run(self, operation, instance, act, check=None, lock=True):
        if operation not in _CACHED_LOOKUP:
            return super()._run(operation, instance, act, check, lock)
        token = _cached_lookup.set(True)
        try:
            return super()._run(operation, instance, act, check, lock)
        except exception.InstanceNotFound:
            self._handles.pop(instance.uuid, None)
            raise
        finally:
            _cached_lookup.reset(token)

    def _power_state(self, dom):
        state, reason = dom.state()
        managed = None
        if state == _SHUTOFF:
            managed = bool(dom.hasManagedSaveImage(0))
        return mapping.map_state(state, reason, managed)

    def _stored(self, dom, instance):
        return self._records.of(dom) or instance

    def _check_unique(self, instance):
        # Two lookups, whatever the number of domains.
        with errors.translate('spawn', instance):
            if self._host.lookup('lookupByUUIDString', instance.uuid):
                raise exception.InstanceExists(instance=instance.uuid)
            if self._host.lookup('lookupByName',
                                 mapping.domain_name(instance.name)):
                raise exception.InstanceExists(instance=instance.name)

    def _get_image(self, instance):
        try:
            return self._service_image(instance)
        except image_exception.ImageNotInService:
            # Images of the [libvirt] images_path store, which came
            # before the image service, still boot by name.
            if not self.store.exists(instance.image_ref):
                raise
        image = self.store.get(instance.image_ref)
        self.store.check(image)
        return image

    def _create(self, instance, image, power_on, network_info,
                block_device_info):
        with self._spawn_volumes(instance, block_device_info) as found:
            self._create_domain(instance, image, power_on, found,
                                tuple(network_info))

    def _create_domain(self, instance, image, power_on, found, ports):
        from compute_driver.libvirt import images
        if isinstance(image, images.StoreImage):
            self._create_image_domain(instance, image, power_on, found,
                                      ports)
            return
        with self._prepare_service_image(instance, image) as (
                image, base, virtual_size, fits, wait_boot_files):
            self._create_image_domain(
                instance, image, power_on, found, ports, base=base,
                virtual_size=virtual_size, fits=fits,
                wait_boot_files=wait_boot_files)

    def _create_image_domain(self, instance, image, power_on, found, ports,
                             base=None, virtual_size=None, fits=False,
                             wait_boot_files=None):
        root = found[0] if found and found[0].boot_index == 0 else None
        directory = self._instance_dir(instance.uuid)
        disk_format = self.conf.libvirt.disk_format
        from compute_driver.libvirt import domainxml
        spec = domainxml.GuestSpec(
            instance=instance, virt_type=self.virt_type,
            disk_path=(root.device_path if root else
                       self._disk_path(instance.uuid)),
            disk_format='raw' if root else disk_format,
            console_path=self._console_path(instance.uuid),
            boot=domainxml.BootImage(
                kernel=image.kernel, ramdisk=image.ramdisk,
                cmdline=image.cmdline,
                vm_mode=image.properties.get('vm_mode', 'hvm'),
                init=image.properties.get('init', '/sbin/init')),
            machine_type=self.conf.libvirt.hw_machine_type,
            **self._console_spec())
        marker = self._claim_marker(instance)
        dom = None
        try:
            network.plug(instance, ports)
            # No domain has this uuid (the claim checked) and no live
            # spawn marks it, so a directory of that name is a leftover.
            if os.path.isdir(directory):
                shutil.rmtree(directory)
            self._make_instance_dir(directory)
            if root is None:
                self.store.create_disk(image, spec.disk_path, disk_format,
                                       size_gb=instance.flavor.root_gb,
                                       base=base, virtual_size=virtual_size,
                                       fits=fits)
                os.chmod(spec.disk_path, 0o600)
            if wait_boot_files is not None:
                # Made while the image, kernel and ramdisk downloaded and
                # qemu-img checked the image; the guest is defined only
                # once they are there and verified, and the image passed.
                wait_boot_files()
            self._console_mark(instance, 'created')
            from compute_driver.libvirt import volumes
            xml = volumes.with_volumes(
                network.with_ports(domainxml.domain_xml(spec), ports,
                                   self.virt_type), found,
                self._volume_aliases)
            dom = self._host.call(lambda conn: conn.defineXML(xml))
            self._records.add(instance, ports=ports)
            if power_on:
                self._console_mark(instance, 'starting')
                dom.create()
        except BaseException:
            LOG.debug('Spawn of %s failed; removing what it created',
                      instance.name)
            self._roll_back_spawn(instance, dom, directory, marker)
            network.unplug_quietly(instance, ports)
            raise
        marker.release()

    def _destroy(self, instance, destroy_disks):
        self._handles.pop(instance.uuid, None)
        dom = self._host.lookup('lookupByUUIDString', instance.uuid)
        before = None
        if dom is not None and self._records.of(dom) is not None:
            from compute_driver.libvirt import volumes
            ports = network.recorded(dom)
            attached = volumes.attachments(dom, gone_ok=True)
            before = self._remove_domain(dom, instance)
            network.unplug_quietly(instance, ports)
            self._release_volumes(instance, attached)
        directory = self._instance_dir(instance.uuid)
        if destroy_disks and os.path.isdir(directory):
            shutil.rmtree(directory, ignore_errors=True)
        return before

    def _resources(self, pending):
        return self._count_resources(self._host_state(), pending)

    def _host_state(self):
        # The listing waits for libvirtd while it starts any domain (it
        # locks each one): read before the claim lock, not under it.
        try:
            conn = self._host.get_connection()
            info = conn.getInfo()
            hostname = self.host or conn.getHostname()
            version = self._host.hypervisor_version_int()
        except libvirt.libvirtError as exc:
            raise exception.HypervisorUnavailable(
                host=self.uri, reason=errors.message(exc)) from exc
        records = self.list_instance_records()
        kept = self._revert_points.flavors()
        try:
            stat = os.statvfs(self.instances_path)
            local_gb = stat.f_frsize * stat.f_blocks // (1 << 30)
            free_gb = stat.f_frsize * stat.f_bavail // (1 << 30)
        except OSError:
            local_gb = free_gb = 0
        return _HostState(info=info, hostname=hostname, version=version,
                          records=records, kept=kept, local_gb=local_gb,
                          free_gb=free_gb)

    def _count_resources(self, state, pending):
        info = state.info
        listed = {r.instance.uuid for r in state.records}
        flavors = [r.instance.flavor for r in state.records]
        flavors += [i.flavor for i in pending if i.uuid not in listed]
        flavors += state.kept
        return objects.HostResources(
            vcpus=int(info[2]), memory_mb=int(info[1]),
            local_gb=state.local_gb,
            vcpus_used=sum(f.vcpus for f in flavors),
            memory_mb_used=sum(f.memory_mb for f in flavors),
            local_gb_used=sum(f.disk_gb for f in flavors),
            hypervisor_type=self.hypervisor_type,
            hypervisor_version=state.version,
            hypervisor_hostname=state.hostname,
            running_vms=sum(1 for r in state.records
                            if r.info.state in driver.ACTIVE_STATES),
            cpu_info={'arch': info[0], 'model': info[0],
                      'mhz': info[3], 'numa_nodes': info[4],
                      'topology': {'sockets': info[5], 'cores': info[6],
                                   'threads': info[7]}},
            disk_available_least=state.free_gb)

    def list_instance_records(self):
        with errors.translate('list', None):
            stats = self._host.call(lambda conn: conn.getAllDomainStats(
                libvirt.VIR_DOMAIN_STATS_STATE))
            ours = self._records.from_stats(stats)
            # A restarted libvirtd forgets why a domain is shut off, and a
            # domain never started has no reason either, so only then ask
            # which domains have a managed save (one more, filtered, call).
            saved: set[str] | None = None
            if any(state == _SHUTOFF and reason == _SHUTOFF_UNKNOWN
                   for _, state, reason in ours):
                saved = {dom.UUIDString() for dom in self._host.call(
                    lambda conn: conn.listAllDomains(
                        libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE))}
        records = []
        # Built without the constructors' checks, which the mapped states
        # pass by construction: a listing of hundreds of instances makes
        # two objects for each.
        new = object.__new__
        for record, state, reason in ours:
            if state == _SHUTOFF:
                mapped = mapping.map_state(
                    state, reason,
                    None if saved is None else record.uuid in saved)
            else:
                mapped = mapping.LIBVIRT_POWER_STATE.get(
                    state, power_state.NOSTATE)
            info = new(objects.InstanceInfo)
            info.__dict__.update(state=mapped, internal_id=record.uuid)
            listed = new(objects.InstanceRecord)
            listed.__dict__.update(instance=record, info=info)
            records.append(listed)
        return records

    # -- listings and look-ups ------------------------------------------------

    def _our_domains(self) -> list[tuple[typing.Any, objects.Instance]]:
        # Names and uuids only: listAllDomains, no states.
        with errors.translate('list', None):
            return self._records.ours(
                self._host.call(lambda conn: conn.listAllDomains(0)))

    def list_instances(self):
        return [record.name for _, record in self._our_domains()]

    def list_instance_uuids(self):
        return [record.uuid for _, record in self._our_domains()]

    def find_instance(self, ref):
        """Look an instance up by uuid or by name in constant round trips.

        A uuid is looked up as the domain's uuid, then ``ref`` as an
        instance name through the domain name derived from it: one lookup
        or two, then the domain's state, whatever the number of domains.

        :raises InstanceNotFound: when no instance of ours matches.
        """
        keys = []
        if _is_uuid(ref.lower()):
            keys.append(('lookupByUUIDString', ref.lower()))
        keys.append(('lookupByName', mapping.domain_name(ref)))
        for how, key in keys:
            with errors.translate('lookup', None, ref):
                dom = self._host.lookup(how, key)
                record = None if dom is None else self._records.of(dom)
            if record is None:
                continue
            with errors.translate('get state', record):
                state = self._power_state(dom)
            # What is asked next about the instance found (its usage, its
            # ports) need not look it up again.
            self._handles[record.uuid] = (dom.connect(), dom)
            return objects.InstanceRecord(
                instance=record,
                info=objects.InstanceInfo(state=state,
                                          internal_id=record.uuid))
        raise exception.InstanceNotFound(instance=ref)

    # -- snapshot's marker ---------------------------------------------------

    @contextlib.contextmanager
    def _snapshot_marked(self, dom: typing.Any, uuid: str, current: int,
                         export: str | None = None
                         ) -> collections.abc.Iterator['_SnapshotMark']:
        """Mark a snapshot of instance ``uuid`` as under way.

        ``UUID.snapshotting``, locked for the whole block, names what a
        snapshot killed midway would leave: the guest it paused (see
        :meth:`_SnapshotMark.copying`), the ``export`` file, the store
        image it claimed (:meth:`_SnapshotMark.note`). The sweep
        (:meth:`cleanup_leftovers`) undoes them.

        :raises InvalidInput: when another process is taking a snapshot
            of the instance, or one was interrupted and not swept yet.
        """
        path = os.path.join(self.instances_path, uuid + _SNAPSHOTTING)
        state: dict[str, object] = {'paused': False, 'export': export,
                                    'store_image': None}
        try:
            marker = leftovers.Marker.claim(path, json.dumps(state))
        except FileExistsError:
            raise exception.InvalidInput(
                reason='another snapshot of instance %s is under way, or '
                       'was interrupted (compute-driver cleanup removes '
                       'what it left)' % uuid) from None
        mark = _SnapshotMark(marker, state, dom,
                             pause=current == power_state.RUNNING)
        try:
            yield mark
        finally:
            if mark.paused:
                # The guest could not be resumed: the sweep tries again.
                marker.abandon()
            else:
                marker.release()

    def _snapshot_leftover(self, uuid: str, path: str
                           ) -> leftovers.Candidate:
        """What the interrupted snapshot marked by ``path`` left."""
        try:
            with open(path, encoding='utf-8') as handle:
                mark = json.load(handle)
        except (OSError, ValueError):
            mark = {}
        if not isinstance(mark, dict):
            mark = {}
        what = ['snapshot of instance %s' % uuid]
        if mark.get('paused'):
            what.append('its guest paused')
        return leftovers.Candidate(
            '; '.join(what), 'its snapshot was interrupted',
            functools.partial(self._remove_snapshot_leftovers, uuid, path,
                              mark))

    def _remove_snapshot_leftovers(self, uuid: str, path: str,
                                   mark: dict) -> None:
        if mark.get('paused'):
            with errors.translate('lookup', None, uuid):
                dom = self._host.lookup('lookupByUUIDString', uuid)
            if (dom is not None and self._records.of(dom) is not None
                    and dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED):
                with errors.translate('unpause', None, uuid):
                    dom.resume()
        export = mark.get('export')
        # Only a file of the instance's own directory.
        if (isinstance(export, str) and os.path.dirname(export)
                == self._instance_dir(uuid)):
            leftovers.unlink_quietly(export)
        image = mark.get('store_image')
        if isinstance(image, str) and image:
            self.store.remove_unfinished_snapshot(image)
        leftovers.unlink_quietly(path)

    # -- spawn's marker and rollback ------------------------------------------

    def _claim_marker(self, instance: objects.Instance) -> leftovers.Marker:
        """Mark the spawn of ``instance`` as under way.

        :raises InstanceExists: when another process is spawning it.
        """
        path = self._marker_path(instance.uuid)
        for _ in range(2):
            try:
                return leftovers.Marker.claim(path, instance.name)
            except FileExistsError:
                with leftovers.probe(path) as stale:
                    if not stale:
                        if os.path.exists(path):
                            raise exception.InstanceExists(
                                instance=instance.uuid) from None
                        continue
                    # An interrupted spawn of the same uuid: no domain
                    # has it (checked by the claim), so its directory
                    # is all there is to remove.
                    shutil.rmtree(self._instance_dir(instance.uuid),
                                  ignore_errors=True)
                    leftovers.unlink_quietly(path)
        raise exception.InstanceExists(instance=instance.uuid)

    def _roll_back_spawn(self, instance: objects.Instance,
                         dom: typing.Any, directory: str,
                         marker: leftovers.Marker) -> None:
        """Remove what a failed spawn created; never raises.

        What cannot be removed stays marked (the marker is left, unlocked)
        for the next sweep, and a warning names it.
        """
        left = []
        if dom is not None:
            try:
                with errors.translate('destroy', instance):
                    self._remove_domain(dom, instance)
            except Exception as exc:
                left.append('domain %s (%s)' % (
                    mapping.domain_name(instance.name),
                    exception.one_line(exc)))
        try:
            if os.path.isdir(directory):
                shutil.rmtree(directory)
        except OSError as exc:
            left.append('directory %s (%s)' % (directory,
                                               exception.one_line(exc)))
        if left:
            LOG.warning('The failed spawn of %s left %s; it stays marked '
                        'and the next sweep (compute-driver cleanup) '
                        'removes it', instance.name, ', '.join(left))
            marker.abandon()
        else:
            marker.release()

    def _remove_domain(self, dom: typing.Any,
                       instance: objects.Instance) -> int | None:
        """Stop and undefine a domain of ours; gone is fine.

        :returns: its power state before, or ``None`` when it was gone.
        """
        try:
            state, reason = dom.state()
        except libvirt.libvirtError as exc:
            if errors.code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            state = reason = None
        # What the reason says is enough: only whether it ran matters to
        # the caller, and the managed save goes with the domain below.
        before = (None if state is None else
                  mapping.map_state(state, reason))
        try:
            if state is not None and state != _SHUTOFF:
                dom.destroy()
        except libvirt.libvirtError as exc:
            if errors.code(exc) not in (libvirt.VIR_ERR_NO_DOMAIN,
                                        libvirt.VIR_ERR_OPERATION_INVALID):
                raise
        try:
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError as exc:
            if errors.code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        self._records.forget(instance.uuid)
        return before

    # -- leftovers ------------------------------------------------------------

    def cleanup_leftovers(self, dry_run=False):
        """Remove what interrupted spawns left in ``instances_path``.

        Found there, in this order:

        * ``UUID.spawning``, a spawn's marker, that no process holds: the
          spawn was interrupted. Its domain (if it got as far as defining
          one, and it is ours), its directory and the marker go.
        * ``UUID.snapshotting``, a snapshot's marker, that no process
          holds: the snapshot was interrupted. The guest it paused is
          resumed, and its export file and the store image it was
          writing (without metadata) go with the marker.
        * ``_base/*.part*``, a partial image copy no process holds, and
          the temporary files of markers.
        * ``_base/images/.ID.part-*``, a partial download of the image
          service whose image no download has locked.

        A directory without a marker is never removed, even without a
        domain: it may belong to another connection sharing
        ``instances_path`` (an LXC and a QEMU backend on one host).
        """
        return leftovers.sweep(self.name, self._leftover_candidates(),
                               dry_run)

    def _leftover_candidates(self) -> typing.Iterator[leftovers.Candidate]:
        try:
            # Markers and their temporary files only: the instance
            # directories, one per instance, are none of them.
            entries = sorted(
                entry for entry in os.listdir(self.instances_path)
                if entry.endswith((_SPAWNING, _SNAPSHOTTING))
                or entry.startswith('.'))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise exception.InvalidConfiguration(
                reason='cannot list %s: %s' % (self.instances_path, exc)
            ) from exc
        for entry in entries:
            path = os.path.join(self.instances_path, entry)
            if entry.endswith(_SPAWNING) and _is_uuid(entry[:-len(_SPAWNING)]):
                with leftovers.probe(path) as stale:
                    if stale:
                        uuid = entry[:-len(_SPAWNING)]
                        yield leftovers.Candidate(
                            'spawn of instance %s (%s)' % (
                                uuid, self._instance_dir(uuid)),
                            'its spawn was interrupted',
                            functools.partial(self._remove_spawn, uuid,
                                              path))
            elif (entry.endswith(_SNAPSHOTTING)
                  and _is_uuid(entry[:-len(_SNAPSHOTTING)])):
                with leftovers.probe(path) as stale:
                    if stale:
                        yield self._snapshot_leftover(
                            entry[:-len(_SNAPSHOTTING)], path)
            elif (entry.startswith('.') and entry.endswith('.tmp') and
                  (_SPAWNING + '.' in entry or _SNAPSHOTTING + '.' in entry)):
                with leftovers.probe(path) as stale:
                    if stale:
                        yield leftovers.Candidate(
                            'file %s' % path, 'an unfinished %s marker' % (
                                'spawn' if _SPAWNING + '.' in entry
                                else 'snapshot'),
                            functools.partial(os.unlink, path))
        # The store's base_path, without making the store.
        base = os.path.join(self.instances_path, libvirt_conf.BASE_DIR)
        try:
            partials = sorted(e for e in os.listdir(base) if '.part' in e)
        except FileNotFoundError:
            partials = []
        for entry in partials:
            path = os.path.join(base, entry)
            with leftovers.probe(path) as stale:
                if stale:
                    yield leftovers.Candidate(
                        'file %s' % path, 'a partial image copy',
                        functools.partial(os.unlink, path))
        # Downloads of the image service, in their cache.
        yield from leftovers.partial_downloads(
            os.path.join(base, libvirt_conf.SERVICE_CACHE_DIR))

    def _remove_spawn(self, uuid: str, marker: str) -> None:
        with errors.translate('lookup', None, uuid):
            dom = self._host.lookup('lookupByUUIDString', uuid)
            record = None if dom is None else self._records.of(dom)
        if dom is not None:
            if record is None:
                # Not ours: whatever made it, it was not this spawn.
                raise exception.InvalidInput(
                    reason='domain %s has the uuid of an interrupted spawn '
                           'but no compute-driver record; left alone'
                           % dom.name())
            with errors.translate('destroy', record):
                self._remove_domain(dom, record)
        directory = self._instance_dir(uuid)
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        leftovers.unlink_quietly(marker)

    # -- the host -------------------------------------------------------------

    def host_warnings(self):
        return self._host.kvm_device_warnings()

    def get_host_identity(self):
        """libvirtd's host UUID (``<host><uuid>`` of its capabilities)."""
        try:
            caps = self._host.call(lambda conn: conn.getCapabilities())
        except libvirt.libvirtError as exc:
            raise exception.HypervisorUnavailable(
                host=self.uri, reason=errors.message(exc)) from exc
        import xml.etree.ElementTree as ET
        return ET.fromstring(caps).findtext('host/uuid') or None

    def cleanup_host(self, host):
        self.register_event_listener(None)
        self._events.close()
        self._host.close()

    def get_host_ip_addr(self):
        hostname = self.host or socket.gethostname()
        try:
            return socket.gethostbyname(hostname)
        except OSError:
            return '127.0.0.1'

    def get_host_uptime(self):
        try:
            with open('/proc/uptime', encoding='ascii') as handle:
                seconds = int(float(handle.read().split()[0]))
        except (OSError, ValueError, IndexError):
            seconds = 0
        return ' %s up %d days, %d:%02d, %d instances' % (
            time.strftime('%H:%M:%S'), seconds // 86400,
            seconds // 3600 % 24, seconds // 60 % 60,
            len(self.list_instance_uuids()))

    def list_images(self):
        return ([image.to_meta() for image in self.store.list()] +
                self.list_service_images())

    # -- power operations -----------------------------------------------------

    def _reboot(self, dom, instance, kind, current):
        if kind == driver.REBOOT_SOFT:
            opts = self.conf.libvirt
            if self._events.wait_for_shutoff(dom, opts.soft_reboot_timeout,
                                             opts.shutdown_retry_interval):
                self._console_mark(instance, 'rebooting (soft)')
                self._replug(dom, instance)
                dom.create()
                return
            LOG.warning('Instance %s did not shut down within %ss; '
                        'rebooting it hard', instance.name,
                        opts.soft_reboot_timeout)
        if dom.isActive():
            dom.destroy()
        if dom.hasManagedSaveImage(0):
            dom.managedSaveRemove(0)
        self._console_mark(instance, 'rebooting (hard)')
        self._replug(dom, instance)
        dom.create()

    def _power_off(self, dom, instance, current, timeout, retry_interval):
        if current == power_state.SUSPENDED:
            # Dropping the saved memory is the power off; libvirt has no
            # lifecycle event for it.
            dom.managedSaveRemove(0)
            self.emit_lifecycle(instance.uuid,
                                virtevent.EVENT_LIFECYCLE_STOPPED)
            return
        if (timeout and current == power_state.RUNNING and
                self._events.wait_for_shutoff(dom, timeout,
                                              retry_interval or timeout)):
            return
        if dom.isActive():
            dom.destroy()

    def _power_on(self, dom, instance):
        self._console_mark(instance, 'starting')
        self._replug(dom, instance)
        dom.create()

    def _pause(self, dom, instance):
        dom.suspend()

    def _unpause(self, dom, instance):
        dom.resume()

    def _suspend(self, dom, instance):
        dom.managedSave(0)

    def _resume(self, dom, instance):
        self._console_mark(instance, 'resuming')
        self._replug(dom, instance)
        dom.create()

    # -- snapshots ------------------------------------------------------------

    def _has_image(self, image_id):
        # Checked here, before Nova's callback hears of the snapshot: the
        # name is a file name in the store.
        if '/' in image_id or image_id.startswith('.'):
            raise exception.InvalidInput(
                reason='snapshot name %r must not contain "/" or start '
                       'with "."' % image_id)
        return self.store.exists(image_id) or self.image_exists(image_id)

    def _snapshot(self, dom, instance, current, image_id):
        self._refuse_root_volume(dom, 'snapshot')
        stored = self._stored(dom, instance)
        from compute_driver.libvirt import images
        if self._in_service(stored.image_ref):
            self._snapshot_to_service(dom, stored, current, image_id)
            return
        try:
            source: images.StoreImage | None = self.store.get(
                stored.image_ref)
        except exception.ImageNotFound:
            source = None
        if source is not None and source.is_snapshot:
            base_ref = source.properties.get('base_image_ref', source.name)
        else:
            base_ref = stored.image_ref
        properties = {'image_type': images.SNAPSHOT_TYPE,
                      'instance_uuid': instance.uuid,
                      'base_image_ref': base_ref}
        with self._snapshot_marked(dom, instance.uuid, current) as mark:
            with mark.copying():
                self.store.add_snapshot(
                    image_id, self._disk_path(instance.uuid),
                    self.conf.libvirt.disk_format, source,
                    stored.flavor.root_gb, properties,
                    force_share=current in (power_state.RUNNING,
                                            power_state.PAUSED),
                    claimed=functools.partial(mark.note,
                                              store_image=image_id))

    def _delete_snapshot(self, image_id):
        if not self.store.exists(image_id):
            self.delete_snapshot_image(image_id)
            return
        try:
            image = self.store.get(image_id)
        except exception.ImageNotFound:
            image = None
        if image is not None and not image.is_snapshot:
            raise exception.InvalidInput(
                reason='image %s is not a snapshot' % image_id)
        self.store.delete(image_id)

    def _snapshots_of(self, instance):
        return [image.name for image in self.store.list()
                if image.properties.get('instance_uuid') == instance.uuid
                ] + self.snapshot_images_of(instance)

    def _revert(self, dom, instance, current, image_id):
        self._refuse_root_volume(dom, 'revert to snapshot')
        disk = self._disk_path(instance.uuid)
        fresh = disk + '.revert'
        if self.store.exists(image_id):
            image = self.store.get(image_id)
        else:
            # Downloaded beside the disk, not into the cache: only this
            # instance uses its own snapshot.
            image = self._download_for_revert(instance, image_id,
                                              fresh + '.src')
        if current == power_state.RUNNING:
            dom.destroy()
        try:
            self.store.create_disk(image, fresh,
                                   self.conf.libvirt.disk_format,
                                   cache=False)
            os.chmod(fresh, 0o600)
            os.replace(fresh, disk)
        finally:
            for path in (fresh, fresh + '.src'):
                if os.path.exists(path):
                    os.unlink(path)
            if current == power_state.RUNNING:
                self._console_mark(instance,
                                   'reverted to %s, starting' % image_id)
                dom.create()

    # -- live resize, console and diagnostics ---------------------------------

    def _live_resize(self, dom, instance, vcpus, memory_mb):
        current_vcpus, current_mb = self._live_size(dom)
        if vcpus is not None and vcpus != current_vcpus:
            dom.setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            current_vcpus = vcpus
        if memory_mb is not None:
            # Sets the balloon's target; the guest gives the memory back
            # (or takes it) when its balloon driver runs.
            dom.setMemoryFlags(memory_mb * 1024,
                               libvirt.VIR_DOMAIN_AFFECT_LIVE)
            current_mb = memory_mb
        dom.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            mapping.resize_xml(current_vcpus, current_mb),
            mapping.RESIZE_PREFIX, mapping.RESIZE_NS,
            libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def _live_size(self, dom: typing.Any,
                   info: list[int] | None = None) -> tuple[int, int]:
        """The vCPUs and memory (MiB) a running guest is set to.

        A live resize records its targets in the live metadata: the
        memory libvirt reports follows the guest's balloon driver, which
        may take a while to reach the target or be missing altogether.

        :param info: ``dom.info()``, when just read.
        """
        if info is None:
            info = dom.info()
        if info[0] in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
                       libvirt.VIR_DOMAIN_BLOCKED):
            try:
                return mapping.parse_resize(dom.metadata(
                    libvirt.VIR_DOMAIN_METADATA_ELEMENT, mapping.RESIZE_NS,
                    libvirt.VIR_DOMAIN_AFFECT_LIVE))
            except libvirt.libvirtError as exc:
                if errors.code(exc) != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                    raise
            except exception.InvalidInput as exc:
                LOG.warning('Ignoring %s', exc)
        return int(info[3]), int(info[2]) // 1024

    def _console_output(self, dom, instance):
        limit = self.conf.libvirt.console_log_max_bytes
        try:
            with open(self._console_path(instance.uuid), 'rb') as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - limit))
                data = handle.read()
        except FileNotFoundError:
            return ''
        except OSError as exc:
            raise exception.BackendError(
                operation='console output', instance=instance.name,
                reason=str(exc)) from exc
        return data.decode('utf-8', errors='replace')

    def _diagnostics(self, dom, instance):
        state = self._power_state(dom)
        info = dom.info()
        vcpus, memory_mb = self._live_size(dom, info)
        return {
            'state': power_state.name(state),
            'driver': 'libvirt',
            'hypervisor': self.hypervisor_type,
            'vcpus': vcpus,
            'memory_mb': memory_mb,
            'balloon_memory_mb': int(info[2]) // 1024,
            'max_memory_mb': int(info[1]) // 1024,
            'cpu_time_ns': int(info[4]),
            'uuid': dom.UUIDString(),
        }

    # -- resize (see .migration) ----------------------------------------------

    def _resize(self, dom, instance, flavor):
        uuid = instance.uuid
        disk = self._disk_path(uuid)
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        self._revert_points.keep(instance, disk, xml)
        resized = dataclasses.replace(instance, flavor=flavor)
        try:
            if (flavor.root_gb > instance.flavor.root_gb and
                    os.path.exists(disk)):
                from compute_driver.libvirt import images
                images.run_qemu_img(
                    'resize', '-q', '-f',
                    migration.disk_format(xml) or
                    self.conf.libvirt.disk_format,
                    disk, '%dG' % flavor.root_gb)
            new_xml = migration.resized_xml(xml, resized)
            self._host.call(lambda conn: conn.defineXML(new_xml))
            self._records.add(resized)
        except BaseException:
            self._put_back(instance, xml)
            raise
        self._console_mark(instance, 'resized to flavor %s' % flavor.name)

    def _put_back(self, instance: objects.Instance, xml: str) -> None:
        """Make the domain what its revert point kept, and drop that."""
        directory = self._instance_dir(instance.uuid)
        if not os.path.isdir(directory):
            self._make_instance_dir(directory)
        self._revert_points.restore_disk(instance.uuid,
                                         self._disk_path(instance.uuid))
        self._host.call(lambda conn: conn.defineXML(xml))
        # The kept definition records the ports it had then.
        self._records.add(instance, ports=None)
        self._revert_points.drop(instance.uuid)

    def _confirm_migration(self, instance):
        self._revert_points.drop(instance.uuid)

    def _revert_migration(self, instance):
        kept = self._revert_points.load(instance.uuid)
        if kept is None:
            # A move that never resized left the domain as it was.
            self._find(instance)
            return
        old, xml = kept
        # The resized domain, unless the caller destroyed it already (Nova
        # does), gives way to the one it replaced.
        dom = self._host.lookup('lookupByUUIDString', instance.uuid)
        if dom is not None and self._records.of(dom) is not None:
            self._remove_domain(dom, instance)
        self._put_back(old, xml)
        self._console_mark(old, 'resize reverted')

    # -- network -------------------------------------------------------------

    def _replug(self, dom: typing.Any, instance: objects.Instance) -> None:
        """Plug the recorded ports again before the domain starts.

        libvirt makes the taps at each start, but only on bridges that
        exist: one lost since (a host reboot) is made again through
        os-vif when its network provides it, or named in the error.
        """
        network.plug(instance, network.recorded(dom))

    def _plug_vifs(self, dom, instance, ports):
        known = {p.id for p in network.recorded(dom)}
        network.plug(instance, tuple(p for p in ports if p.id in known))
        new = [port for port in ports if port.id not in known]
        if new:
            with self._changing_ports(dom, instance):
                for port in new:
                    network.attach(dom, instance, port, self.virt_type)

    def _unplug_vifs(self, dom, instance, ports):
        network.unplug(instance, tuple(ports),
                       remove_device=not dom.isActive())

    def _attach_interface(self, dom, instance, port):
        with self._changing_ports(dom, instance):
            network.attach(dom, instance, port, self.virt_type)

    def _detach_interface(self, dom, instance, port):
        with self._changing_ports(dom, instance):
            network.detach(dom, instance, port, self.virt_type)

    def _changing_ports(self, dom, instance):
        # Every change of the port record goes through here, so that the
        # record index, which listings read the ports from, follows.
        return self._records.changing_ports(
            instance.uuid, lambda: network.recorded(dom))

    def _interfaces(self, dom, instance):
        return network.recorded(dom)

    def list_instance_interfaces(self, instances=None):
        """Every instance's ports from one ``getAllDomainStats`` call.

        The ports come from the record index, checked against the devices
        of running domains; a domain is read only when its entry is
        missing, marked as changing, or disagrees with its devices (see
        :mod:`compute_driver.libvirt.recordindex`). Given the instances
        of a listing just made, the call asks for the devices of the
        running domains only.
        """
        self._require('interfaces')
        check = not self.runs_containers
        with errors.translate('list interfaces', None):
            if instances is None:
                stats = self._host.call(lambda conn: conn.getAllDomainStats(
                    libvirt.VIR_DOMAIN_STATS_STATE |
                    libvirt.VIR_DOMAIN_STATS_INTERFACE))
                return self._records.interfaces(stats, check_taps=check)
            running = {dom.UUIDString(): values for dom, values in
                       self._host.call(lambda conn: conn.getAllDomainStats(
                           libvirt.VIR_DOMAIN_STATS_INTERFACE,
                           libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE))}
            return self._records.interfaces_of(
                [instance.uuid for instance in instances], running,
                lambda uuid: self._host.lookup('lookupByUUIDString', uuid),
                check_taps=check)

    # -- volumes -------------------------------------------------------------
    # .volumes is imported by the methods that use it: a listing or a
    # show, in a new process, has no use for it.

    def _volume_power_state(self, dom):
        from compute_driver.libvirt import volumes
        return volumes.power_state(dom, self.uri)

    def _volume_attachments(self, dom, instance):
        from compute_driver.libvirt import volumes
        return volumes.attachments(dom)

    def _check_free(self, dom, instance, connection, mountpoint):
        # libvirtd makes these checks itself where volumes.attach can say
        # which failed: no read of the domain first.
        from compute_driver.libvirt import volumes
        if not volumes.checks_at_attach(dom, connection,
                                        self._volume_aliases):
            super()._check_free(dom, instance, connection, mountpoint)

    def _attachment_to_detach(self, dom, instance, connection, live):
        from compute_driver.libvirt import volumes
        if (not live and self._detach_by_alias and
                volumes.detaches_by_alias(dom, connection)):
            return volumes.presumed(connection)
        return super()._attachment_to_detach(dom, instance, connection, live)

    def _refuse_root_volume(self, dom, operation):
        # The disk of an instance booted from a volume is the volume's,
        # which Cinder snapshots; there is no disk file to copy.
        from compute_driver.libvirt import volumes
        if any(a.boot_index == 0 for a in volumes.attachments(dom)):
            raise exception.NotSupported(
                driver=self.name,
                operation='%s of an instance booted from a volume (use the '
                          'volume service\'s snapshots)' % operation)

    def _volume_user(self, connection):
        # QEMU holds attached volumes open: only its processes need a look.
        # Those libvirtd lists are its guests' QEMUs, not to be told by
        # their names.
        from compute_driver.libvirt import volumes
        from compute_driver.volume import connection as vol_connection
        from compute_driver.volume import model as vol_model
        if connection.protocol != vol_model.LOCAL:
            return None
        pids = volumes.qemu_pids(self.uri)
        return vol_connection.device_user(
            connection.data['device_path'],
            ('qemu',) if pids is None else (), pids)

    def _attach_volume(self, dom, instance, attachment, live):
        from compute_driver.libvirt import volumes
        volumes.attach(self._host.get_connection(), dom, instance,
                       attachment, live, self._volume_aliases)

    def _detach_volume(self, dom, instance, attachment, live):
        from compute_driver.libvirt import volumes
        volumes.detach(self._host.get_connection(), dom, instance,
                       attachment, live, self.conf.volume.detach_timeout)

    def _swap_volume(self, dom, instance, old, new, live):
        from compute_driver.libvirt import volumes
        volumes.swap(self._host.get_connection(), dom, instance, old, new,
                     self._volume_aliases)

    def _extend_volume(self, dom, instance, attachment, size, live):
        from compute_driver.libvirt import volumes
        volumes.extend(dom, attachment, size, live)

    # -- images from the image service ----------------------------------------

    def image_cache_path(self):
        # Beside the instance disks: QEMU reads the cached files as their
        # backing files, and instances_path is where it may.
        return os.path.join(self.store.base_path,
                            libvirt_conf.SERVICE_CACHE_DIR)

    def _in_service(self, ref: str) -> bool:
        """Whether ``ref`` names an image of the image service.

        The image service comes first, as in :meth:`_get_image`; an image
        only in the ``[libvirt] images_path`` store is not one.
        """
        if not self.store.exists(ref):
            return True
        return self.image_exists(ref)

    def _service_image(self, instance: objects.Instance) -> objects.ImageMeta:
        image = self.image_for(instance)
        if image.container_format not in (None, 'bare'):
            raise exception.ImageUnacceptable(
                image=image.id,
                reason='its container_format %s is not bare'
                       % image.container_format)
        from compute_driver.libvirt import images
        if (image.disk_format not in images.NATIVE_FORMATS and
                image.disk_format not in images.CONVERTED_FORMATS):
            raise exception.ImageUnacceptable(
                image=image.id,
                reason='its disk_format %s is not one the libvirt backend '
                       'runs' % image.disk_format)
        return image

    def _fetch_checked(self, image: objects.ImageMeta,
                       instance: objects.Instance
                       ) -> tuple[str, 'images.ServiceImageCheck']:
        """Download (once) and check an image; refused ones leave nothing.

        The header is checked and the flavor's fit with the size it gives
        before this returns; ``qemu-img info`` may still run, and
        :meth:`_finish_check` waits for it (at once for an image to be
        converted, whose conversion needs its verdict).

        :returns: the cached file and its check, which the caller must
            close.
        """
        from compute_driver.libvirt import images
        cache = self.image_cache
        self._make_cache_searchable()
        cached = os.path.exists(cache.path_of(image.id))
        path = self.fetch_image(image)
        try:
            check = images.start_service_image_check(image.id, path,
                                                     image.disk_format)
        except exception.ImageUnacceptable:
            # A bad image goes, whoever fetched it.
            cache.remove(image.id)
            raise
        try:
            if check.qemu_format not in images.NATIVE_FORMATS.values():
                self._finish_check(check)
            self.check_image_fits_flavor(image.id, check.virtual_size,
                                         instance.flavor)
        except exception.ImageUnacceptable:
            check.close()
            # Merely too large for this flavor: kept when another boot
            # had cached it, not left behind by this one (a bad image
            # is gone already).
            if not cached:
                cache.remove(image.id)
            raise
        return path, check

    def _finish_check(self, check: 'images.ServiceImageCheck'
                      ) -> 'images.ServiceImageInfo':
        """Wait for the ``qemu-img info`` of a checked download.

        :raises ImageUnacceptable: what the check raises, once the image
            is removed from the cache: a bad image goes, whoever fetched
            it.
        """
        try:
            return check.wait()
        except exception.ImageUnacceptable:
            self.image_cache.remove(check.image_id)
            raise

    def _make_cache_searchable(self) -> None:
        """Make the cache directory searchable by QEMU.

        QEMU opens the cached files (its disk's backing file, its kernel
        and initramfs) by name as another user. A download creates the
        directory private when it gets there first, as one of a boot's
        parallel downloads did before the disk's created it; one left
        private by such a download is opened up again.
        """
        path = self.image_cache.path
        os.makedirs(self.store.base_path, mode=0o711, exist_ok=True)
        os.makedirs(path, mode=0o711, exist_ok=True)
        if stat.S_IMODE(os.stat(path).st_mode) & 0o711 != 0o711:
            os.chmod(path, 0o711)

    def _boot_records(self, image_ids: list[str]
                      ) -> dict[str, 'image_api.ImageRecord']:
        """The records of the kernel and ramdisk images not yet cached.

        Read in one request to the image service (see
        :meth:`ImageService.show_ids`) and handed to their downloads,
        which then read none: a cold boot of a directly booted image asks
        Glance for three files and two records, not for three of each.
        Cached ones need no record, and cost no request at all.
        """
        cache = self.image_cache
        missing = [i for i in image_ids
                   if not os.path.exists(cache.path_of(i))]
        return self.image_service.show_ids(missing) if missing else {}

    def _boot_file(self, image_id: str,
                   records: 'futures.Future[dict[str, image_api.ImageRecord]]'
                   ) -> str:
        """The cached kernel or ramdisk image ``image_id`` (AKI/ARI).

        Fetched by id, as Glance's ``kernel_id``/``ramdisk_id`` name
        them, with its record from :meth:`_boot_records`, which an image
        service that can may read while it sends the data request.
        """
        from compute_driver.image import api
        # Its download may be requested while the record is read.
        return self.image_cache.fetch(image_id, api.PendingRecord(
            lambda: records.result().get(image_id)))

    def _overlay_first(self, instance: objects.Instance,
                       image: objects.ImageMeta) -> bool:
        """Whether the instance disk is made before the image is fetched.

        A qcow2 overlay of an image the libvirt backend runs as it is
        (raw, qcow2), at the flavor's root disk size, needs nothing of
        the image but its path in the cache: qemu-img makes it without
        opening the base (``-u``) while the image downloads, on a core
        the transfer leaves idle, instead of after it, when the kernel's
        hash and ``qemu-img info`` want the same cores. The guest is
        defined only once the image has passed every check, its size
        against the flavor's included; a refused one takes the overlay
        with it, as every failed spawn does.
        """
        from compute_driver.libvirt import images
        return (self.conf.libvirt.disk_format == 'qcow2'
                and instance.flavor.root_gb > 0
                and image.disk_format in images.NATIVE_FORMATS)

    @contextlib.contextmanager
    def _prepare_service_image(
            self, instance: objects.Instance, image: objects.ImageMeta
    ) -> collections.abc.Iterator[tuple[
            'images.StoreImage', str, int | None, bool,
            typing.Callable[[], None]]]:
        """Fetch and check an image of the service for :meth:`_create`.

        The image's ``kernel_id`` and ``ramdisk_id`` properties name the
        kernel and ramdisk images (Glance's AKI/ARI) to boot it with
        directly, as in Nova's libvirt driver, with ``os_command_line``.

        Yields once the disk image is fetched and its header checked,
        while its ``qemu-img info`` may still run and its kernel and
        ramdisk may still be downloading: the instance disk is made
        meanwhile. When :meth:`_overlay_first`, yields at once instead,
        the image downloading too. Leaving the block waits for those
        downloads, whatever happened in it.

        :returns: the image as the store describes its images (its kernel
            and ramdisk at the paths they are being cached to), the file
            instance disks are backed by, its virtual size (``None`` when
            not known yet), whether its fit with the flavor is still to be
            checked (see :meth:`ImageStore.create_disk`), and a function
            that returns once the image is cached, ``qemu-img info`` has
            passed it and the kernel and ramdisk are cached and verified,
            raising what the checks or the downloads raised.
        """
        from compute_driver.libvirt import images
        props = image.properties
        boot_ids = [props.get(key) or None
                    for key in ('kernel_id', 'ramdisk_id')]
        if boot_ids[0] is None:
            boot_ids = [None, None]
        # Paths first: an id that cannot name a cache file is refused
        # before anything starts.
        kernel, ramdisk = (None if ref is None else
                           self.image_cache.path_of(ref) for ref in boot_ids)
        overlay_first = self._overlay_first(instance, image)
        path = self.image_cache.path_of(image.id)
        # Before any download, which would make the directory private.
        self._make_cache_searchable()
        # The kernel and ramdisk download while the disk downloads and is
        # checked and the instance disk is made: a cold boot waits for
        # the largest transfer, not the sum.
        from concurrent import futures
        with futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix='image-fetch') as pool:

            def submit(func, *args):
                # Each in a copy of the caller's context variables: an
                # image service may keep the request's credentials there
                # (Nova's).
                return pool.submit(contextvars.copy_context().run, func,
                                   *args)

            wanted = [ref for ref in boot_ids if ref]
            records = submit(self._boot_records, wanted) if wanted else None
            boot_files = [submit(self._boot_file, ref, records)
                          for ref in wanted]

            # The pool is waited for whatever happens; an error of the
            # disk's comes before theirs.
            fetched: futures.Future[tuple[str, images.ServiceImageCheck]]
            if overlay_first:
                fetched = submit(self._fetch_checked, image, instance)
            else:
                fetched = futures.Future()
                fetched.set_result(self._fetch_checked(image, instance))
            checked = False

            def wait_checks() -> None:
                nonlocal checked
                checked = True
                self._finish_check(fetched.result()[1])
                for future in boot_files:
                    future.result()

            try:
                base = path
                virtual_size = None
                if not overlay_first:
                    check = fetched.result()[1]
                    virtual_size = check.virtual_size
                    if (check.qemu_format not in
                            images.NATIVE_FORMATS.values()):
                        base = os.path.join(self.store.base_path,
                                            'converted-%s.raw' % image.id)
                        with self.image_cache.lock(image.id):
                            if not os.path.exists(base):
                                images.convert_to_raw(image.id, path,
                                                      check.qemu_format,
                                                      base)
                disk_format = ('raw' if base != path else
                               str(image.disk_format))
                yield images.StoreImage(
                    name=image.id, path=base, disk_format=disk_format,
                    kernel=kernel, ramdisk=ramdisk,
                    cmdline=props.get(
                        'os_command_line',
                        images.DEFAULT_CMDLINE if kernel else ''),
                    min_ram=image.min_ram, min_disk=image.min_disk,
                    container_format='bare', properties=dict(props)), base, (
                        virtual_size), overlay_first, wait_checks
                if not checked:
                    # Nothing asked for the verdict: it is still given.
                    wait_checks()
            except Exception as exc:
                if not checked:
                    error = fetched.exception()
                    if error is None:
                        # The boot failed before the check's verdict was
                        # asked for: a bad image is still refused
                        # (qemu-img failing on it is why the boot
                        # failed, if it is), and does not stay cached.
                        self._finish_check(fetched.result()[1])
                    elif error is not exc:
                        # The download, under way while the instance
                        # disk was made, failed too: its error is the
                        # one to report. A disk that fills up fails
                        # both, the download first.
                        raise error from exc
                raise
            finally:
                if fetched.exception() is None:
                    fetched.result()[1].close()

    def _snapshot_to_service(self, dom: typing.Any,
                             stored: objects.Instance, current: int,
                             image_id: str) -> None:
        """Export the disk as one qcow2 file and upload it.

        Kernel, ramdisk and command line carry over through the base
        image's properties (see :meth:`upload_snapshot`).
        """
        from compute_driver.libvirt import images
        directory = self._instance_dir(stored.uuid)
        export = os.path.join(directory, 'snapshot-%s.qcow2'
                              % os.urandom(4).hex())
        with self._snapshot_marked(dom, stored.uuid, current,
                                   export=export) as mark:
            try:
                with mark.copying():
                    images.export_disk(
                        self._disk_path(stored.uuid),
                        self.conf.libvirt.disk_format, export,
                        force_share=current in (power_state.RUNNING,
                                                power_state.PAUSED))
                self.upload_snapshot(stored, image_id, export, 'qcow2',
                                     'bare')
            finally:
                leftovers.unlink_quietly(export)

    def _download_for_revert(self, instance: objects.Instance,
                             image_id: str, dest: str
                             ) -> 'images.StoreImage':
        from compute_driver.libvirt import images
        record = self.image_record(image_id)
        try:
            self.image_service.download(record.id, dest)
            images.check_service_image(record.id, dest, record.disk_format)
        except BaseException:
            leftovers.unlink_quietly(dest)
            raise
        return images.StoreImage(
            name=record.id, path=dest,
            disk_format=str(record.disk_format),
            container_format='bare', properties=dict(record.properties))

    # -- consoles ------------------------------------------------------------

    def _declare_consoles(self) -> None:
        # Nova's proxies reach a TCP serial port and a VNC display, which
        # kvm and qemu guests get only when configured; every guest
        # (LXC's too) has a console to attach to.
        opts = self.conf.libvirt
        graphical = self.virt_type in ('kvm', 'qemu')
        self.capabilities = {
            **self.capabilities,
            'supports_serial_console': (
                graphical and opts.serial_console_type == 'tcp'),
            'supports_vnc_console': graphical and opts.vnc_enabled,
        }
        if opts.serial_console_type == 'tcp':
            # Checked now rather than at the first spawn.
            from compute_driver.libvirt import console as lv_console
            lv_console.port_range(opts.serial_port_range)

    def _console_spec(self) -> dict[str, typing.Any]:
        """The serial and VNC arguments of a new guest's GuestSpec."""
        import xml.etree.ElementTree as ET
        opts = self.conf.libvirt
        spec: dict[str, typing.Any] = {}
        if opts.vnc_enabled:
            from compute_driver.libvirt import domainxml
            spec['vnc'] = domainxml.VNCSpec(str(opts.vnc_listen_address),
                                            opts.vnc_password or '')
        if (opts.serial_console_type == 'tcp' and
                self.virt_type in ('kvm', 'qemu')):
            from compute_driver.libvirt import console as lv_console
            address = str(opts.serial_listen_address)
            taken = set()
            for dom, _ in self._our_domains():
                try:
                    endpoint = lv_console.serial_endpoint(
                        ET.fromstring(dom.XMLDesc(0)))
                except libvirt.libvirtError:
                    continue  # removed meanwhile: its port is free
                if endpoint is not None:
                    taken.add(endpoint[1])
            spec['serial_tcp'] = (address, lv_console.free_serial_port(
                address, lv_console.port_range(opts.serial_port_range),
                taken))
        return spec

    def _serial_console(self, dom, instance):
        from compute_driver import console as cd_console
        from compute_driver.libvirt import console as lv_console
        import xml.etree.ElementTree as ET
        endpoint = lv_console.serial_endpoint(ET.fromstring(dom.XMLDesc(0)))
        if endpoint is None:
            raise exception.ConsoleUnavailable(
                instance=instance.name, console='TCP serial',
                reason='its serial port is a PTY; instances created with '
                       '[libvirt] serial_console_type = tcp have one')
        # Checked here, not by Nova's proxy later: a port that refuses
        # connections is an error with its cause, not a dead URL.
        lv_console.check_reachable(endpoint[0], endpoint[1], instance,
                                   'TCP serial', dom.UUIDString())
        return cd_console.SerialConsole(host=endpoint[0], port=endpoint[1])

    def _vnc_console(self, dom, instance):
        from compute_driver import console as cd_console
        from compute_driver.libvirt import console as lv_console
        import xml.etree.ElementTree as ET
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
        endpoint = lv_console.vnc_endpoint(root)
        if endpoint is None:
            raise exception.ConsoleUnavailable(
                instance=instance.name, console='VNC',
                reason='it has no VNC display ([libvirt] vnc_enabled was '
                       'off when it was created, or its virt_type has '
                       'none)')
        lv_console.check_reachable(endpoint[0], endpoint[1], instance,
                                   'VNC', dom.UUIDString())
        graphics = root.find("devices/graphics[@type='vnc']")
        password = graphics.get('passwd') if graphics is not None else None
        return cd_console.VNCConsole(host=endpoint[0], port=endpoint[1],
                                     password=password or None)

    def _open_console(self, dom, instance):
        from compute_driver.libvirt import console as lv_console
        import xml.etree.ElementTree as ET
        endpoint = lv_console.serial_endpoint(ET.fromstring(dom.XMLDesc(0)))
        if endpoint is not None:
            return lv_console.connect_tcp(endpoint[0], endpoint[1],
                                          instance, dom.UUIDString())
        return lv_console.DomainConsoleStream(dom.connect(), dom, instance)
