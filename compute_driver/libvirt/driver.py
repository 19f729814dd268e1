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
:data:`config.DOMAIN_PREFIX` plus the instance's and whose ``<metadata>``
holds the instance record (see :mod:`compute_driver.libvirt.config`); the
files of an instance are ``[libvirt] instances_path/<uuid>/`` (``disk`` and
``console.log``). Only domains carrying that record are listed or touched.

Listing is one round trip: ``getAllDomainStats`` with the state group
returns every domain with its state and reason, and the instance records
are parsed once per domain and cached by uuid (they never change after
spawn). Spawn and destroy also keep a copy of the records in
``instances_path/records.json`` (:mod:`compute_driver.libvirt.recordindex`),
so a new process reads the records of its listing in one file read rather
than with one ``virDomainGetMetadata`` round trip per domain; the domain's
metadata stays the authority, read only for a domain the index lacks
(spawned by an older release), which is then added to it.
A shut-off domain without a reason (never started, or libvirtd restarted
since) costs one more, filtered, call listing the domains with a managed
save. :meth:`LibvirtDriver.find_instance` looks one domain up by uuid or by
the domain name derived from the instance name: a constant number of
calls, whatever the number of domains.

Spawns run in parallel: the claim (checking the uuid and name are free and
the flavor fits, counting the spawns under way in this process) is taken
under a lock, the disk copy, define and start outside it.

Lifecycle events come from libvirt's event loop
(:mod:`compute_driver.libvirt.host`); a Stopped event is held back for
``[libvirt] lifecycle_event_delay`` seconds and dropped when the domain
starts again within that time, so a reboot does not look like a shutdown.
"""

import collections
import contextlib
import functools
import logging
import os
import shutil
import socket
import threading
import time
import typing

import libvirt

from compute_driver import driver
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import leftovers
from compute_driver.libvirt import conf as libvirt_conf
from compute_driver.libvirt import config
from compute_driver.libvirt import host as libvirt_host
from compute_driver.libvirt import imagestore
from compute_driver.libvirt import recordindex
from compute_driver import objects
from compute_driver import power_state

LOG = logging.getLogger(__name__)

#: libvirt's domain states as the contract's power states, as Nova maps
#: them. A shut-off domain with a managed-save image is SUSPENDED; see
#: :func:`map_state`.
LIBVIRT_POWER_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: power_state.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: power_state.RUNNING,
    # Only Xen reports BLOCKED: running, with its vCPUs idle.
    libvirt.VIR_DOMAIN_BLOCKED: power_state.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: power_state.PAUSED,
    # SHUTDOWN means "being shut down"; SHUTOFF is off. Both count as
    # SHUTDOWN, as in Nova.
    libvirt.VIR_DOMAIN_SHUTDOWN: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: power_state.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: power_state.SUSPENDED,
}

# Errors after which the connection is no use and a reconnect may help.
_CONNECTION_ERRORS = frozenset((
    libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR,
    libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC))

_SHUTOFF = libvirt.VIR_DOMAIN_SHUTOFF
_SHUTOFF_UNKNOWN = libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN

_DISK = 'disk'
_CONSOLE_LOG = 'console.log'
#: The longest a clean shutdown waits without looking at the domain's
#: state, should its Stopped event be lost (a reconnect in between).
_SHUTOFF_POLL = 2.0
#: Suffix of the marker beside an instance directory while its spawn runs.
_SPAWNING = '.spawning'


def map_state(state: int, reason: int,
              managed_save: bool | None = None) -> int:
    """A libvirt state and reason as a contract power state.

    :param managed_save: whether the domain has a managed-save image, when
        known; otherwise the shut-off reason ``SAVED`` tells.
    """
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        saved = (managed_save if managed_save is not None
                 else reason == libvirt.VIR_DOMAIN_SHUTOFF_SAVED)
        if saved:
            return power_state.SUSPENDED
    return LIBVIRT_POWER_STATE.get(state, power_state.NOSTATE)


def map_event(event: int, detail: int) -> int | None:
    """A libvirt lifecycle event as an ``EVENT_LIFECYCLE_*``, or ``None``.

    A managed save stops the domain with detail ``SAVED``: that is a
    suspend. Defined, undefined, shutdown-requested and crashed events have
    no lifecycle transition.
    """
    if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
        return virtevent.EVENT_LIFECYCLE_STARTED
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED:
            return virtevent.EVENT_LIFECYCLE_SUSPENDED
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
            return virtevent.EVENT_LIFECYCLE_MIGRATION_COMPLETED
        return virtevent.EVENT_LIFECYCLE_STOPPED
    if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED:
        if detail == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY:
            return virtevent.EVENT_LIFECYCLE_POSTCOPY_STARTED
        return virtevent.EVENT_LIFECYCLE_PAUSED
    if event == libvirt.VIR_DOMAIN_EVENT_RESUMED:
        return virtevent.EVENT_LIFECYCLE_RESUMED
    if event == libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED:
        return virtevent.EVENT_LIFECYCLE_SUSPENDED
    return None


def _is_uuid(text: str) -> bool:
    # Instance directories are named by the canonical form only.
    try:
        return objects.validate_uuid(text) == text
    except exception.InvalidInput:
        return False


def _error_code(exc: libvirt.libvirtError) -> int | None:
    return exc.get_error_code()


def _message(exc: libvirt.libvirtError) -> str:
    return exc.get_error_message() or str(exc)


class LibvirtDriver(driver.ComputeDriver):
    """Guests through libvirtd, entry point ``libvirt``."""

    capabilities = {
        'supports_' + op: True for op in (
            'cleanup_host', 'instance_exists', 'soft_reboot', 'hard_reboot',
            'power_off', 'power_on', 'pause', 'unpause', 'suspend',
            'resume', 'snapshot', 'delete_snapshot', 'revert_to_snapshot',
            'live_resize', 'console_output', 'diagnostics', 'host_ip_addr',
            'host_uptime', 'list_images')}
    hypervisor_type = 'libvirt'
    CONFIG_GROUP = libvirt_conf.GROUP
    CONFIG_OPTS = libvirt_conf.opts
    image_types = ('raw', 'qcow2')
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
        self.uri: str = (opts.connection_uri or
                         libvirt_conf.DEFAULT_URIS[self.virt_type])
        self.instances_path: str = opts.instances_path
        self.store = imagestore.ImageStore(opts.images_path,
                                           opts.instances_path)
        self._host_name = conf.host
        self._host = libvirt_host.Host(
            self.uri, self.virt_type, self._on_domain_event,
            reconnect_timeout=opts.reconnect_timeout)
        # uuid -> the instance record of a domain of ours, or None for a
        # domain that is not; records never change after spawn.
        self._records: dict[str, objects.Instance | None] = {}
        self._records_lock = threading.Lock()
        self._index = recordindex.RecordIndex(self.instances_path)
        self._instance_locks: collections.defaultdict[
            str, threading.Lock] = collections.defaultdict(threading.Lock)
        self._locks_lock = threading.Lock()
        # Claims are checked and taken under this lock so that two spawns
        # cannot both take the last free memory.
        self._claim_lock = threading.Lock()
        # Spawns of this process that hold a claim and have not finished:
        # their domains may not be defined yet, so they are counted apart.
        self._pending: dict[str, objects.Instance] = {}
        # uuid -> set when a Stopped event for the domain arrives; what
        # _wait_for_shutoff waits on.
        self._stop_waiters: dict[str, list[threading.Event]] = {}
        self._pending_stops: dict[str, threading.Timer] = {}
        self._pending_lock = threading.Lock()
        # The group QEMU runs as, given search access to instance
        # directories; None keeps them to their owner.
        self._qemu_gid: int | None = None

    # -- connection and errors ---------------------------------------------

    def _conn(self) -> typing.Any:
        return self._host.get_connection()

    def _call(self, func: typing.Callable[[typing.Any], typing.Any]
              ) -> typing.Any:
        """Run ``func(conn)``, reconnecting once if the connection died."""
        conn = self._conn()
        try:
            return func(conn)
        except libvirt.libvirtError as exc:
            if _error_code(exc) not in _CONNECTION_ERRORS:
                raise
            try:
                alive = conn.isAlive()
            except libvirt.libvirtError:
                alive = False
            if alive:
                raise
            LOG.warning('Connection to %s lost (%s); reconnecting',
                        self.uri, exc)
            self._host.drop_connection(conn)
            return func(self._conn())

    @contextlib.contextmanager
    def _wrap(self, operation: str,
              instance: objects.Instance) -> typing.Iterator[None]:
        """Turn libvirt errors into the library's typed ones."""
        try:
            yield
        except libvirt.libvirtError as exc:
            if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                raise exception.InstanceNotFound(
                    instance=instance.name) from exc
            raise exception.BackendError(
                operation=operation, instance=instance.name,
                reason=_message(exc)) from exc

    @contextlib.contextmanager
    def _instance_lock(self, instance: objects.Instance
                       ) -> typing.Iterator[None]:
        with self._locks_lock:
            lock = self._instance_locks[instance.uuid]
        with lock:
            yield

    # -- records -------------------------------------------------------------

    def _record_of(self, dom: typing.Any) -> objects.Instance | None:
        """The instance record of a domain, or ``None`` if not ours.

        From the cache, else (one round trip) from the domain's metadata;
        listings fill the cache from the record index first (see
        :meth:`_cache_records`).
        """
        uuid = dom.UUIDString()
        with self._records_lock:
            if uuid in self._records:
                return self._records[uuid]
        record: objects.Instance | None = None
        # The name, like the uuid, is known locally: no round trip.
        if dom.name().startswith(config.DOMAIN_PREFIX):
            try:
                record = config.parse_metadata(dom.metadata(
                    libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    config.METADATA_NS))
            except libvirt.libvirtError as exc:
                if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                if _error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                    raise
            except exception.InvalidInput as exc:
                LOG.warning('Ignoring domain %s: %s', dom.name(), exc)
        with self._records_lock:
            self._records[uuid] = record
        return record

    def _cache_records(self, doms: list[typing.Any],
                       listed: set[str]) -> None:
        """Cache the record (or ``None``) of each of ``doms``.

        Records not cached yet come from the index, read once; the
        domains it lacks are read from their metadata, one round trip
        each, and added to it, so that the next process need not.

        :param listed: the uuids of every domain of the listing, for
            dropping index entries of domains that are gone.
        :raises libvirtError: when a domain's metadata cannot be read.
        """
        with self._records_lock:
            misses = [d for d in doms if d.UUIDString() not in self._records]
        if not misses:
            return
        indexed = self._index.load()
        found = {}
        unindexed = []
        for dom in misses:
            uuid = dom.UUIDString()
            record = recordindex.entry(indexed, uuid, dom.name())
            if record is None:
                unindexed.append(dom)
            else:
                found[uuid] = record
        with self._records_lock:
            self._records.update(found)
        fresh = []
        try:
            for dom in unindexed:
                record = self._record_of(dom)
                if record is not None and record.uuid == dom.UUIDString():
                    fresh.append(record)
        finally:
            stale = set(indexed) - listed
            if fresh or stale:
                self._index.update(add=fresh, keep=listed)

    def _prune(self, uuids: set[str]) -> None:
        with self._records_lock:
            for uuid in set(self._records) - uuids:
                del self._records[uuid]

    def _our_domains(self) -> list[tuple[typing.Any, objects.Instance]]:
        try:
            domains = self._call(lambda conn: conn.listAllDomains(0))
            listed = {d.UUIDString() for d in domains}
            self._prune(listed)
            self._cache_records(domains, listed)
            result = []
            for dom in domains:
                record = self._record_of(dom)
                if record is not None:
                    result.append((dom, record))
        except libvirt.libvirtError as exc:
            raise exception.BackendError(
                operation='list', instance='*', reason=_message(exc)) from exc
        return result

    def _domain(self, instance: objects.Instance) -> typing.Any:
        """The domain of an instance of ours.

        :raises InstanceNotFound: when there is none.
        """
        try:
            dom = self._call(
                lambda conn: conn.lookupByUUIDString(instance.uuid))
        except libvirt.libvirtError as exc:
            if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                raise exception.InstanceNotFound(
                    instance=instance.name) from None
            raise exception.BackendError(
                operation='lookup', instance=instance.name,
                reason=_message(exc)) from exc
        with self._wrap('lookup', instance):
            if self._record_of(dom) is None:
                raise exception.InstanceNotFound(instance=instance.name)
        return dom

    def _stored(self, dom: typing.Any,
                instance: objects.Instance) -> objects.Instance:
        return self._record_of(dom) or instance

    def _state(self, dom: typing.Any) -> int:
        state, reason = dom.state()
        managed = None
        if state == libvirt.VIR_DOMAIN_SHUTOFF:
            managed = bool(dom.hasManagedSaveImage(0))
        return map_state(state, reason, managed)

    def _current_state(self, dom: typing.Any,
                       instance: objects.Instance) -> int:
        with self._wrap('get state', instance):
            return self._state(dom)

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
        if self._qemu_gid is not None and self._qemu_gid != os.getgid():
            try:
                os.chown(directory, -1, self._qemu_gid)
                os.chmod(directory, 0o710)
            except PermissionError as exc:
                LOG.debug('Cannot give group %d access to %s: %s',
                          self._qemu_gid, directory, exc)

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

    # -- events ---------------------------------------------------------------

    def _on_domain_event(self, uuid: str, name: str, event: int,
                         detail: int) -> None:
        if not name.startswith(config.DOMAIN_PREFIX):
            return
        transition = map_event(event, detail)
        if transition is None:
            return
        delay = self.conf.libvirt.lifecycle_event_delay
        with self._pending_lock:
            if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
                for waiter in self._stop_waiters.get(uuid, ()):
                    waiter.set()
            pending = self._pending_stops.pop(uuid, None)
            if pending is not None:
                pending.cancel()
                if transition == virtevent.EVENT_LIFECYCLE_STARTED:
                    LOG.debug('Instance %s started again; dropping its '
                              'held Stopped event', uuid)
            if transition == virtevent.EVENT_LIFECYCLE_STOPPED and delay:
                lifecycle = virtevent.LifecycleEvent(uuid, transition)
                timer = threading.Timer(delay, self._emit_held,
                                        (uuid, lifecycle))
                timer.daemon = True
                self._pending_stops[uuid] = timer
                timer.start()
                return
        # Listeners may call back into the driver: never on the event-loop
        # thread, which those calls need.
        threading.Thread(
            target=self.emit_event,
            args=(virtevent.LifecycleEvent(uuid, transition),),
            name='libvirt-event-%s' % uuid[:8], daemon=True).start()

    def _emit_held(self, uuid: str, lifecycle: virtevent.Event) -> None:
        with self._pending_lock:
            timer = self._pending_stops.get(uuid)
            if timer is None or timer is not threading.current_thread():
                return
            del self._pending_stops[uuid]
        self.emit_event(lifecycle)

    # -- required -------------------------------------------------------------

    def init_host(self, host):
        self._host_name = host
        self._host.check_versions()
        hv_type = self._host.get_hypervisor_type()
        self.hypervisor_type = hv_type
        for path in (self.instances_path, self.store.images_path):
            try:
                os.makedirs(path, mode=0o755, exist_ok=True)
            except OSError as exc:
                raise exception.InvalidConfiguration(
                    reason='cannot create %s: %s' % (path, exc)) from exc
        dac = self._host.get_dac_label()
        self._qemu_gid = dac[1] if dac else None
        self.sweep_leftovers()
        LOG.debug('libvirt backend on %s: virt_type %s, %s %s', self.uri,
                  self.virt_type, hv_type,
                  '.'.join(map(str, self._host.get_hypervisor_version())))

    def host_warnings(self):
        return self._host.kvm_device_warnings()

    def get_info(self, instance, use_cache=True):
        dom = self._domain(instance)
        return objects.InstanceInfo(
            state=self._current_state(dom, instance),
            internal_id=dom.UUIDString())

    def list_instances(self):
        return [record.name for _, record in self._our_domains()]

    def list_instance_uuids(self):
        return [record.uuid for _, record in self._our_domains()]

    def list_instance_records(self):
        try:
            stats = self._call(lambda conn: conn.getAllDomainStats(
                libvirt.VIR_DOMAIN_STATS_STATE))
        except libvirt.libvirtError as exc:
            raise exception.BackendError(
                operation='list', instance='*',
                reason=_message(exc)) from exc
        # Hot path for a service polling every instance: one pass, one
        # lock, no per-domain call into libvirt beyond reading its uuid.
        ours = []
        misses = []
        with self._records_lock:
            cache = self._records
            seen = set()
            for dom, values in stats:
                uuid = dom.UUIDString()
                seen.add(uuid)
                if uuid in cache:
                    record = cache[uuid]
                    if record is not None:
                        ours.append((record, values.get('state.state', 0),
                                     values.get('state.reason', 0)))
                else:
                    misses.append((dom, values))
            for uuid in set(cache) - seen:
                del cache[uuid]
        try:
            self._cache_records([dom for dom, _ in misses], seen)
        except libvirt.libvirtError as exc:
            # Read again one by one below, skipping the failing ones.
            LOG.debug('Reading the records of a listing failed: %s', exc)
        for dom, values in misses:
            try:
                record = self._record_of(dom)
            except libvirt.libvirtError as exc:
                LOG.warning('Skipping domain %s: %s', dom.name(), exc)
                continue
            if record is not None:
                ours.append((record, values.get('state.state', 0),
                             values.get('state.reason', 0)))
        # A restarted libvirtd forgets why a domain is shut off, and a
        # domain never started has no reason either, so only then ask
        # which domains have a managed save (one more, filtered, call).
        saved: set[str] | None = None
        if any(state == _SHUTOFF and reason == _SHUTOFF_UNKNOWN
               for _, state, reason in ours):
            saved = {dom.UUIDString() for dom in self._call(
                lambda conn: conn.listAllDomains(
                    libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE))}
        records = []
        for record, state, reason in ours:
            if state == _SHUTOFF:
                mapped = map_state(state, reason, None if saved is None
                                   else record.uuid in saved)
            else:
                mapped = LIBVIRT_POWER_STATE.get(state, power_state.NOSTATE)
            records.append(objects.InstanceRecord(
                instance=record,
                info=objects.InstanceInfo(state=mapped,
                                          internal_id=record.uuid)))
        return records

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
        keys.append(('lookupByName', config.domain_name(ref)))
        for how, key in keys:
            try:
                dom = self._lookup(how, key)
                record = None if dom is None else self._record_of(dom)
            except libvirt.libvirtError as exc:
                raise exception.BackendError(
                    operation='lookup', instance=ref,
                    reason=_message(exc)) from exc
            if record is None:
                continue
            with self._wrap('get state', record):
                state = self._state(dom)
            return objects.InstanceRecord(
                instance=record,
                info=objects.InstanceInfo(state=state,
                                          internal_id=record.uuid))
        raise exception.InstanceNotFound(instance=ref)

    def _lookup(self, how: str, key: str) -> typing.Any:
        """``conn.<how>(key)``, or ``None`` when no domain matches."""
        try:
            return self._call(lambda conn: getattr(conn, how)(key))
        except libvirt.libvirtError as exc:
            if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        driver.check_spawn_instance(instance)
        image = self.store.get(instance.image_ref)
        self.store.check(image)
        flavor = instance.flavor
        if flavor.memory_mb < image.min_ram:
            raise exception.InvalidInput(
                reason='flavor %s has %d MiB of memory; image %s needs %d'
                       % (flavor.name, flavor.memory_mb, image.name,
                          image.min_ram))
        with self._instance_lock(instance):
            self._claim(instance)
            try:
                self._create(instance, image, power_on)
            finally:
                with self._claim_lock:
                    del self._pending[instance.uuid]

    def _check_free(self, instance: objects.Instance) -> None:
        for other in self._pending.values():
            if other.uuid == instance.uuid:
                raise exception.InstanceExists(instance=instance.uuid)
            if other.name == instance.name:
                raise exception.InstanceExists(instance=instance.name)
        with self._wrap('spawn', instance):
            if self._lookup('lookupByUUIDString', instance.uuid):
                raise exception.InstanceExists(instance=instance.uuid)
            if self._lookup('lookupByName',
                            config.domain_name(instance.name)):
                raise exception.InstanceExists(instance=instance.name)

    def _claim(self, instance: objects.Instance) -> None:
        """Check the instance is new and fits, and count it until spawned.

        Only this is serialised: the disk copy, define and start of
        concurrent spawns overlap, each claim counting those under way.

        :raises InstanceExists: when the uuid or the name is taken.
        :raises InsufficientResources: when the flavor does not fit.
        """
        with self._claim_lock:
            self._check_free(instance)
            self._check_fits(instance.flavor,
                             self._resources(list(self._pending.values())))
            self._pending[instance.uuid] = instance

    def _check_fits(self, flavor: objects.Flavor,
                    resources: objects.HostResources) -> None:
        driver.check_flavor_fits_host(flavor, resources)
        for resource, requested, free, total in (
                ('memory_mb', flavor.memory_mb, resources.memory_mb_free,
                 resources.memory_mb),
                ('disk_gb', flavor.disk_gb, resources.local_gb_free,
                 resources.local_gb)):
            if requested > free:
                raise exception.InsufficientResources(
                    resource=resource, host=self._host_name,
                    requested=requested, free=free, total=total)

    def _create(self, instance: objects.Instance,
                image: imagestore.StoreImage, power_on: bool) -> None:
        directory = self._instance_dir(instance.uuid)
        disk_format = self.conf.libvirt.disk_format
        spec = config.GuestSpec(
            instance=instance, virt_type=self.virt_type,
            disk_path=self._disk_path(instance.uuid),
            disk_format=disk_format,
            console_path=self._console_path(instance.uuid),
            boot=config.BootImage(
                kernel=image.kernel, ramdisk=image.ramdisk,
                cmdline=image.cmdline,
                vm_mode=image.properties.get('vm_mode', 'hvm'),
                init=image.properties.get('init', '/sbin/init')),
            machine_type=self.conf.libvirt.hw_machine_type)
        marker = self._claim_marker(instance)
        dom = None
        try:
            # No domain has this uuid (checked above) and no live spawn
            # marks it, so a directory of that name is a leftover.
            if os.path.isdir(directory):
                shutil.rmtree(directory)
            self._make_instance_dir(directory)
            self.store.create_disk(image, spec.disk_path, disk_format,
                                   size_gb=instance.flavor.root_gb)
            os.chmod(spec.disk_path, 0o600)
            self._console_mark(instance, 'created')
            xml = config.domain_xml(spec)
            with self._wrap('spawn', instance):
                try:
                    dom = self._call(lambda conn: conn.defineXML(xml))
                except libvirt.libvirtError as exc:
                    if _error_code(exc) in (
                            libvirt.VIR_ERR_OPERATION_FAILED,
                            libvirt.VIR_ERR_DOM_EXIST):
                        if 'already exists' in _message(exc):
                            raise exception.InstanceExists(
                                instance=instance.name) from exc
                    raise
                with self._records_lock:
                    self._records[instance.uuid] = instance
                self._index.update(add=[instance])
                if power_on:
                    self._console_mark(instance, 'starting')
                    dom.create()
        except BaseException:
            LOG.debug('Spawn of %s failed; removing what it created',
                      instance.name)
            self._roll_back_spawn(instance, dom, directory, marker)
            raise
        marker.release()

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
                    # has it (checked by the caller), so its directory
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
                self._remove_domain(dom, instance)
            except Exception as exc:
                left.append('domain %s (%s)' % (
                    config.domain_name(instance.name),
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
                       instance: objects.Instance) -> None:
        with self._wrap('destroy', instance):
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError as exc:
                if _error_code(exc) not in (libvirt.VIR_ERR_NO_DOMAIN,
                                            libvirt.VIR_ERR_OPERATION_INVALID):
                    raise
            try:
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                    libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            except libvirt.libvirtError as exc:
                if _error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
        with self._records_lock:
            self._records.pop(instance.uuid, None)
        self._index.update(remove=[instance.uuid])

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        with self._instance_lock(instance):
            try:
                dom = self._domain(instance)
            except exception.InstanceNotFound:
                LOG.debug('Instance %s has no domain', instance.uuid)
            else:
                self._remove_domain(dom, instance)
            directory = self._instance_dir(instance.uuid)
            if destroy_disks and os.path.isdir(directory):
                shutil.rmtree(directory, ignore_errors=True)

    # -- leftovers ------------------------------------------------------------

    def cleanup_leftovers(self, dry_run=False):
        """Remove what interrupted spawns left in ``instances_path``.

        Found there, in this order:

        * ``UUID.spawning``, a spawn's marker, that no process holds: the
          spawn was interrupted. Its domain (if it got as far as defining
          one, and it is ours), its directory and the marker go.
        * ``_base/*.part*``, a partial image copy no process holds, and
          the temporary files of markers.

        A directory without a marker is never removed, even without a
        domain: it may belong to another connection sharing
        ``instances_path`` (an LXC and a QEMU backend on one host).
        """
        return leftovers.sweep(self.name, self._leftover_candidates(),
                               dry_run)

    def _leftover_candidates(self) -> typing.Iterator[leftovers.Candidate]:
        try:
            entries = sorted(os.listdir(self.instances_path))
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
            elif (entry.startswith('.') and entry.endswith('.tmp') and
                  _SPAWNING + '.' in entry):
                with leftovers.probe(path) as stale:
                    if stale:
                        yield leftovers.Candidate(
                            'file %s' % path, 'an unfinished spawn marker',
                            functools.partial(os.unlink, path))
        base = self.store.base_path
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

    def _remove_spawn(self, uuid: str, marker: str) -> None:
        try:
            dom = self._call(lambda conn: conn.lookupByUUIDString(uuid))
        except libvirt.libvirtError as exc:
            if _error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                raise exception.BackendError(
                    operation='lookup', instance=uuid,
                    reason=_message(exc)) from exc
            dom = None
        if dom is not None:
            try:
                record = self._record_of(dom)
            except libvirt.libvirtError as exc:
                raise exception.BackendError(
                    operation='lookup', instance=uuid,
                    reason=_message(exc)) from exc
            if record is None:
                # Not ours: whatever made it, it was not this spawn.
                raise exception.InvalidInput(
                    reason='domain %s has the uuid of an interrupted spawn '
                           'but no compute-driver record; left alone'
                           % dom.name())
            self._remove_domain(dom, record)
        directory = self._instance_dir(uuid)
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        leftovers.unlink_quietly(marker)

    def get_available_resource(self, nodename):
        with self._claim_lock:
            pending = list(self._pending.values())
        return self._resources(pending)

    def _resources(self, pending: list[objects.Instance]
                   ) -> objects.HostResources:
        """The host's resources, counting spawns under way as used.

        :param pending: the instances whose spawn holds a claim; those
            whose domain is defined already are counted once.
        """
        conn = self._conn()
        try:
            info = conn.getInfo()
            hostname = self._host_name or conn.getHostname()
            version = self._host.hypervisor_version_int()
        except libvirt.libvirtError as exc:
            raise exception.HypervisorUnavailable(
                host=self.uri, reason=_message(exc)) from exc
        records = self.list_instance_records()
        listed = {r.instance.uuid for r in records}
        flavors = [r.instance.flavor for r in records]
        flavors += [i.flavor for i in pending if i.uuid not in listed]
        try:
            stat = os.statvfs(self.instances_path)
            local_gb = stat.f_frsize * stat.f_blocks // (1 << 30)
            free_gb = stat.f_frsize * stat.f_bavail // (1 << 30)
        except OSError:
            local_gb = free_gb = 0
        return objects.HostResources(
            vcpus=int(info[2]), memory_mb=int(info[1]), local_gb=local_gb,
            vcpus_used=sum(f.vcpus for f in flavors),
            memory_mb_used=sum(f.memory_mb for f in flavors),
            local_gb_used=sum(f.disk_gb for f in flavors),
            hypervisor_type=self.hypervisor_type,
            hypervisor_version=version, hypervisor_hostname=hostname,
            running_vms=sum(1 for r in records
                            if r.info.state in driver.ACTIVE_STATES),
            cpu_info={'arch': info[0], 'model': info[0],
                      'mhz': info[3], 'numa_nodes': info[4],
                      'topology': {'sockets': info[5], 'cores': info[6],
                                   'threads': info[7]}},
            disk_available_least=free_gb)

    def get_available_nodes(self, refresh=False):
        return [self._host_name]

    def get_host_identity(self):
        """libvirtd's host UUID (``<host><uuid>`` of its capabilities)."""
        try:
            caps = self._call(lambda conn: conn.getCapabilities())
        except libvirt.libvirtError as exc:
            raise exception.HypervisorUnavailable(
                host=self.uri, reason=_message(exc)) from exc
        return config.ET.fromstring(caps).findtext('host/uuid') or None

    # -- optional -------------------------------------------------------------

    def cleanup_host(self, host):
        self.register_event_listener(None)
        with self._pending_lock:
            for timer in self._pending_stops.values():
                timer.cancel()
            self._pending_stops.clear()
        self._host.close()

    def instance_exists(self, instance):
        try:
            self._domain(instance)
        except exception.InstanceNotFound:
            return False
        return True

    def _wait_for_shutoff(self, dom: typing.Any, timeout: float,
                          retry_interval: float) -> bool:
        """Ask the guest to shut down until it has or time runs out.

        Waits for the domain's Stopped event rather than polling; its
        state is read again at each shutdown request and at least every
        :data:`_SHUTOFF_POLL` seconds, in case the event was lost.
        """
        uuid = dom.UUIDString()
        stopped = threading.Event()
        with self._pending_lock:
            self._stop_waiters.setdefault(uuid, []).append(stopped)
        try:
            deadline = time.monotonic() + timeout
            next_request = 0.0
            while True:
                # Cleared before the state is read: an event arriving in
                # between ends the next wait at once.
                stopped.clear()
                if dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF:
                    return True
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now >= next_request:
                    try:
                        dom.shutdown()
                    except libvirt.libvirtError as exc:
                        # The guest may have stopped between the calls.
                        LOG.debug('Shutdown request failed: %s', exc)
                    next_request = now + retry_interval
                stopped.wait(max(0.0, min(next_request, deadline,
                                          now + _SHUTOFF_POLL) - now))
        finally:
            with self._pending_lock:
                waiters = self._stop_waiters[uuid]
                waiters.remove(stopped)
                if not waiters:
                    del self._stop_waiters[uuid]

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        kind = driver.reboot_kind(reboot_type)
        with self._instance_lock(instance):
            dom = self._domain(instance)
            current = self._current_state(dom, instance)
            self.check_power_state(instance, kind.lower() + '_reboot',
                                   current)
            with self._wrap('reboot', instance):
                if kind == driver.REBOOT_SOFT:
                    opts = self.conf.libvirt
                    if self._wait_for_shutoff(dom, opts.soft_reboot_timeout,
                                              opts.shutdown_retry_interval):
                        self._console_mark(instance, 'rebooting (soft)')
                        dom.create()
                        return
                    LOG.warning('Instance %s did not shut down within %ss; '
                                'rebooting it hard', instance.name,
                                opts.soft_reboot_timeout)
                self._hard_reboot(dom, instance)

    def _hard_reboot(self, dom: typing.Any,
                     instance: objects.Instance) -> None:
        if dom.isActive():
            dom.destroy()
        if dom.hasManagedSaveImage(0):
            dom.managedSaveRemove(0)
        self._console_mark(instance, 'rebooting (hard)')
        dom.create()

    def power_off(self, instance, timeout=0, retry_interval=0):
        if timeout < 0 or retry_interval < 0:
            raise exception.InvalidInput(
                reason='timeout and retry_interval must be >= 0')
        with self._instance_lock(instance):
            dom = self._domain(instance)
            current = self._current_state(dom, instance)
            self.check_power_state(instance, 'power_off', current)
            with self._wrap('power off', instance):
                if current == power_state.SUSPENDED:
                    # Dropping the saved memory is the power off; libvirt
                    # has no lifecycle event for it.
                    dom.managedSaveRemove(0)
                    self.emit_lifecycle(instance.uuid,
                                        virtevent.EVENT_LIFECYCLE_STOPPED)
                    return
                if (timeout and current == power_state.RUNNING and
                        self._wait_for_shutoff(dom, timeout,
                                               retry_interval or timeout)):
                    return
                if dom.isActive():
                    dom.destroy()

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        with self._instance_lock(instance):
            dom = self._domain(instance)
            self.check_power_state(instance, 'power_on',
                                   self._current_state(dom, instance))
            with self._wrap('power on', instance):
                self._console_mark(instance, 'starting')
                dom.create()

    def _simple(self, instance: objects.Instance, operation: str,
                action: typing.Callable[[typing.Any], object]) -> None:
        with self._instance_lock(instance):
            dom = self._domain(instance)
            self.check_power_state(instance, operation,
                                   self._current_state(dom, instance))
            with self._wrap(operation.replace('_', ' '), instance):
                action(dom)

    def pause(self, instance):
        self._simple(instance, 'pause', lambda dom: dom.suspend())

    def unpause(self, instance):
        self._simple(instance, 'unpause', lambda dom: dom.resume())

    def suspend(self, context, instance):
        self._simple(instance, 'suspend', lambda dom: dom.managedSave(0))

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        def restore(dom: typing.Any) -> None:
            self._console_mark(instance, 'resuming')
            dom.create()

        self._simple(instance, 'resume', restore)

    def snapshot(self, context, instance, image_id, update_task_state):
        objects.validate_image_ref(image_id)
        if '/' in image_id or image_id.startswith('.'):
            raise exception.InvalidInput(
                reason='snapshot name %r must not contain "/" or start '
                       'with "."' % image_id)
        with self._instance_lock(instance):
            dom = self._domain(instance)
            current = self._current_state(dom, instance)
            self.check_power_state(instance, 'snapshot', current)
            if self.store.exists(image_id):
                raise exception.InvalidInput(
                    reason='an image named %s exists already' % image_id)
            if update_task_state is not None:
                update_task_state(task_state='image_pending_upload')
                update_task_state(task_state='image_uploading',
                                  expected_state='image_pending_upload')
            stored = self._stored(dom, instance)
            try:
                source: imagestore.StoreImage | None = self.store.get(
                    stored.image_ref)
            except exception.ImageNotFound:
                source = None
            if source is not None and source.is_snapshot:
                base_ref = source.properties.get('base_image_ref',
                                                 source.name)
            else:
                base_ref = stored.image_ref
            properties = {'image_type': imagestore.SNAPSHOT_TYPE,
                          'instance_uuid': instance.uuid,
                          'base_image_ref': base_ref}
            # A consistent copy needs the guest's vCPUs stopped; qemu keeps
            # the disk open (and locked) while the guest is paused.
            pause = current == power_state.RUNNING
            with self._wrap('snapshot', instance):
                if pause:
                    dom.suspend()
                try:
                    self.store.add_snapshot(
                        image_id, self._disk_path(instance.uuid),
                        self.conf.libvirt.disk_format, source,
                        stored.flavor.root_gb, properties,
                        force_share=current in (power_state.RUNNING,
                                                power_state.PAUSED))
                finally:
                    if pause:
                        dom.resume()

    def delete_snapshot(self, context, image_id):
        if not self.store.exists(image_id):
            return
        try:
            image = self.store.get(image_id)
        except exception.ImageNotFound:
            image = None
        if image is not None and not image.is_snapshot:
            raise exception.InvalidInput(
                reason='image %s is not a snapshot' % image_id)
        self.store.delete(image_id)

    def revert_to_snapshot(self, context, instance, image_id):
        with self._instance_lock(instance):
            dom = self._domain(instance)
            image = None
            if self.store.exists(image_id):
                try:
                    image = self.store.get(image_id)
                except exception.ImageNotFound:
                    image = None
            if (image is None or
                    image.properties.get('instance_uuid') != instance.uuid):
                mine = sorted(
                    i.name for i in self.store.list()
                    if i.properties.get('instance_uuid') == instance.uuid)
                raise exception.ImageNotFound(
                    image='%s (a snapshot of %s)' % (image_id, instance.name),
                    available=', '.join(mine) or 'none')
            current = self._current_state(dom, instance)
            self.check_power_state(instance, 'revert_to_snapshot', current)
            disk = self._disk_path(instance.uuid)
            fresh = disk + '.revert'
            with self._wrap('revert', instance):
                if current == power_state.RUNNING:
                    dom.destroy()
                try:
                    self.store.create_disk(image, fresh,
                                           self.conf.libvirt.disk_format,
                                           cache=False)
                    os.chmod(fresh, 0o600)
                    os.replace(fresh, disk)
                finally:
                    if os.path.exists(fresh):
                        os.unlink(fresh)
                    if current == power_state.RUNNING:
                        self._console_mark(instance,
                                           'reverted to %s, starting'
                                           % image_id)
                        dom.create()

    def live_resize(self, context, instance, vcpus=None, memory_mb=None):
        with self._instance_lock(instance):
            dom = self._domain(instance)
            # The stored flavor is what spawn claimed; the caller's copy
            # of the instance may say otherwise.
            self.check_live_resize(self._stored(dom, instance), vcpus,
                                   memory_mb)
            self.check_power_state(instance, 'live_resize',
                                   self._current_state(dom, instance))
            with self._wrap('live resize', instance):
                current_vcpus, current_mb = self._live_size(dom)
                if vcpus is not None and vcpus != current_vcpus:
                    dom.setVcpusFlags(vcpus,
                                      libvirt.VIR_DOMAIN_AFFECT_LIVE)
                    current_vcpus = vcpus
                if memory_mb is not None:
                    # Sets the balloon's target; the guest gives the memory
                    # back (or takes it) when its balloon driver runs.
                    dom.setMemoryFlags(memory_mb * 1024,
                                       libvirt.VIR_DOMAIN_AFFECT_LIVE)
                    current_mb = memory_mb
                dom.setMetadata(
                    libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    config.resize_xml(current_vcpus, current_mb),
                    config.RESIZE_PREFIX, config.RESIZE_NS,
                    libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def _live_size(self, dom: typing.Any) -> tuple[int, int]:
        """The vCPUs and memory (MiB) a running guest is set to.

        A live resize records its targets in the live metadata: the
        memory libvirt reports follows the guest's balloon driver, which
        may take a while to reach the target or be missing altogether.
        """
        info = dom.info()
        if info[0] in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
                       libvirt.VIR_DOMAIN_BLOCKED):
            try:
                return config.parse_resize(dom.metadata(
                    libvirt.VIR_DOMAIN_METADATA_ELEMENT, config.RESIZE_NS,
                    libvirt.VIR_DOMAIN_AFFECT_LIVE))
            except libvirt.libvirtError as exc:
                if _error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                    raise
            except exception.InvalidInput as exc:
                LOG.warning('Ignoring %s', exc)
        return int(info[3]), int(info[2]) // 1024

    def get_console_output(self, context, instance):
        self._domain(instance)
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

    def get_diagnostics(self, instance):
        dom = self._domain(instance)
        with self._wrap('diagnostics', instance):
            state = self._state(dom)
            info = dom.info()
            vcpus, memory_mb = self._live_size(dom)
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

    def get_host_ip_addr(self):
        hostname = self._host_name or socket.gethostname()
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
        return [image.to_meta() for image in self.store.list()]
