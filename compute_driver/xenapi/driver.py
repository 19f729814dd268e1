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

"""The XenAPI backend: instances are XAPI VMs cloned from templates.

Everything goes through the XenAPI SDK (:mod:`.session`). An instance is
a VM whose ``other_config`` records it (:mod:`.vm_utils`); templates and
snapshots are the images. Lifecycle events come from XAPI's own event
stream (:mod:`.events`), so changes made by other clients are reported
too.

Console output is not supported: XAPI's VM ``console`` objects are RFB
(VNC) and text-terminal streams reached over an HTTP CONNECT, not a log,
and XAPI has no call that returns what a guest printed. Reading the
console would mean scraping a live terminal session, which would show the
screen rather than the boot log the contract promises.
"""

import functools
import itertools
import logging
import os
import socket
import threading
import time
import typing
import xml.dom.minidom

from compute_driver import driver
from compute_driver import exception
from compute_driver import leftovers
from compute_driver import objects
from compute_driver import power_state
from compute_driver.xenapi import conf as xenapi_conf
from compute_driver.xenapi import events as xevents
from compute_driver.xenapi import session as xsession
from compute_driver.xenapi import vm_utils

LOG = logging.getLogger(__name__)

MiB = vm_utils.MiB
GiB = vm_utils.GiB

#: XAPI API versions older than this lack what the backend relies on
#: (``event.from`` with a timeout, ``VM.revert``); XenServer 6.2 speaks
#: 2.1, every supported XenServer and XCP-ng release a later one.
MIN_API_VERSION = (2, 1)

# Nova's task states, passed to update_task_state during a snapshot.
IMAGE_PENDING_UPLOAD = 'image_pending_upload'
IMAGE_UPLOADING = 'image_uploading'

Record = dict[str, typing.Any]

#: A VM being spawned is named ``<prefix> <machine>:<pid> <uuid>`` until
#: the spawn succeeds, so whatever an interrupted spawn left can be found
#: and swept by ``init_host`` and ``compute-driver cleanup``. (Earlier
#: versions tagged it with :data:`vm_utils.KEY_SPAWNING` instead; such
#: VMs are swept too.)
SPAWN_PREFIX = 'compute-driver-spawn'

#: Seconds after its spawn that a claim stops counting when the event
#: watcher has not seen its VM: long enough for any event to arrive.
CLAIM_GRACE = 60.0

#: Seconds a task waiter trusts the event stream before it asks XAPI
#: itself, in case an event was missed.
TASK_RECHECK = 5.0

#: What each guest operation needs XAPI to allow: the operation in the
#: VM's ``allowed_operations`` and the guest feature it stands for.
GUEST_FEATURES = {
    'clean_shutdown': 'a guest agent with PV drivers (feature-shutdown)',
    'clean_reboot': 'a guest agent with PV drivers (feature-reboot)',
    'suspend': 'a guest agent with PV drivers (feature-suspend)',
    'changing_VCPUs_live': 'vCPU hot-plug (feature-vcpu-hotplug)',
}


def _gib(value: object) -> str:
    try:
        return '%.1f GiB' % (int(str(value)) / GiB)
    except ValueError:
        return str(value)


def _mib(value: object) -> str:
    try:
        return '%d MiB' % (int(str(value)) // MiB)
    except ValueError:
        return str(value)


def _task_result(result: str) -> str:
    """A task's result: XAPI wraps the value in ``<value>`` tags."""
    if not result:
        return ''
    try:
        node = xml.dom.minidom.parseString(result).documentElement
    except Exception:
        return result
    if node is None:
        return result
    return ''.join(typing.cast(xml.dom.minidom.Text, child).data
                   if child.nodeType == child.TEXT_NODE else child.toxml()
                   for child in node.childNodes)


def _quote(value: str) -> str:
    """A literal of XAPI's ``get_all_records_where`` expressions."""
    return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')


def _owner() -> str:
    """Who is spawning: this machine and process."""
    return '%s:%d' % (socket.gethostname(), os.getpid())


# Instance uuids that a spawn of this process is building, whichever
# driver object runs it: their leftovers are not swept.
_BUILDING: set[str] = set()
_BUILDING_LOCK = threading.Lock()


def _abandoned(owner: str, uuid: str) -> bool:
    """Whether no process is still building what a leftover was for.

    A spawn of this process is known; a process of this machine is gone
    when its pid is. A leftover of another machine may belong to a spawn
    still in progress there, so it is never abandoned.
    """
    host, _, pid = owner.rpartition(':')
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        with _BUILDING_LOCK:
            return uuid not in _BUILDING
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class XenAPIDriver(driver.ComputeDriver):
    """The XAPI backend, entry point ``xenapi``."""

    capabilities = {**{'supports_' + op: True
                       for op in driver.OPTIONAL_OPERATIONS},
                    'supports_console_output': False}
    hypervisor_type = 'xen'
    CONFIG_GROUP = xenapi_conf.GROUP
    CONFIG_OPTS = xenapi_conf.opts
    image_types = ('vhd',)
    runs_containers = False

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi=virtapi)
        group = conf.xenapi
        self._xconf = group
        self._pool = xsession.SessionPool(
            url=group.connection_url, username=group.username,
            password=group.password, size=group.concurrent_sessions,
            verify=group.verify_certificate, ca_file=group.ca_file,
            call_timeout=group.call_timeout,
            login_timeout=group.login_timeout,
            wait_timeout=group.session_wait_timeout,
            originator=group.originator)
        self._watcher: xevents.EventWatcher | None = None
        self._lock = threading.Lock()
        # Instance uuid -> VM ref, to find a VM without listing them all.
        self._refs: dict[str, str] = {}
        # Uuids and names of instances being spawned in this process.
        self._spawning: dict[str, str] = {}
        self._host_ref: str | None = None
        self._hostname: str | None = None
        # What does not change while the driver runs, read once (see
        # _facts): the pool's master and its memory, the SR for disks,
        # the network for VIFs.
        self._cached: dict[str, typing.Any] = {}
        # Instance uuid -> (instance, when): spawns of this driver that
        # claimed resources, until the event watcher knows their VM.
        self._claims: dict[str, tuple[objects.Instance, float]] = {}

    # -- internals ---------------------------------------------------------

    def _call(self, method: str, *args: typing.Any) -> typing.Any:
        return self._pool.call(method, *args)

    def _fail(self, exc: xsession.XapiCallFailed, operation: str,
              instance: objects.Instance | None) -> Exception:
        """The library's exception for a XAPI failure."""
        name = instance.name if instance is not None else '-'
        code, params = exc.code, exc.params
        if code == 'HANDLE_INVALID' and params[:1] == ['VM']:
            return exception.InstanceNotFound(instance=name)
        if code == 'VM_BAD_POWER_STATE' and len(params) >= 3:
            return exception.InvalidPowerState(
                operation=operation.replace('_', ' '), instance=name,
                current=params[2], expected=params[1])
        if code == 'SR_FULL':
            return self._sr_full(params)
        if code == 'HOST_NOT_ENOUGH_FREE_MEMORY':
            total = '?'
            try:
                _, host = self._master()
                total = _mib(self._call('host_metrics.get_memory_total',
                                        host['metrics']))
            except (xsession.XapiCallFailed, exception.ComputeDriverError):
                pass
            return exception.InsufficientResources(
                resource='memory', host=self._hostname or '-',
                requested=_mib(params[0] if params else '?'),
                free=_mib(params[1] if len(params) > 1 else '?'),
                total=total)
        return exception.BackendError(operation=operation, instance=name,
                                      reason=' '.join(exc.details))

    def _sr_full(self, params: list[str]) -> Exception:
        """SR_FULL ``[requested, maximum]`` with the SR's numbers."""
        name, total = self._xconf.sr_name or 'the default SR', '?'
        try:
            ref = self._sr()
            sr = self._call('SR.get_record', ref)
            name = '%s (%s)' % (sr['name_label'], sr['uuid'])
            total = _gib(sr['physical_size'])
            free = _gib(int(sr['physical_size']) -
                        int(sr['physical_utilisation']))
        except (xsession.XapiCallFailed, exception.ComputeDriverError):
            free = _gib(params[1] if len(params) > 1 else '?')
        return exception.InsufficientResources(
            resource='disk space on SR %s, chosen by [xenapi] sr_name' % name,
            host=self._hostname or '-',
            requested=_gib(params[0] if params else '?'), free=free,
            total=total)

    def _records(self) -> dict[str, Record]:
        return self._call('VM.get_all_records')

    def _task(self, method: str, *args: typing.Any) -> typing.Any:
        """Run a long operation as an XAPI task and return its result.

        The task is cancelled when it outlasts ``call_timeout`` or when
        the caller is interrupted (``KeyboardInterrupt`` included), so no
        operation keeps going in XAPI after the backend gave up on it.

        :raises XapiCallFailed: when the task fails.
        :raises HypervisorUnavailable: when it times out.
        """
        task = self._call('Async.' + method, *args)
        deadline = time.monotonic() + self._xconf.call_timeout
        interval = 0.02
        try:
            while True:
                record = self._task_record(task, deadline, interval)
                status = record['status']
                if status == 'success':
                    return _task_result(record['result'])
                if status in ('failure', 'cancelled'):
                    raise xsession.XapiCallFailed(
                        method=method,
                        details=[str(d) for d in record['error_info']])
                if time.monotonic() >= deadline:
                    self._cancel(task)
                    raise exception.HypervisorUnavailable(
                        host=xsession.redact(self._pool.url),
                        reason='%s took longer than %ss ([xenapi] '
                               'call_timeout); its task was cancelled'
                               % (method, self._xconf.call_timeout))
                interval = min(interval * 2, 1.0)
        except BaseException as exc:
            if not isinstance(exc, (xsession.XapiCallFailed,
                                    exception.HypervisorUnavailable)):
                self._cancel(task)
            raise
        finally:
            try:
                self._call('task.destroy', task)
            except (xsession.XapiCallFailed,
                    exception.ComputeDriverError) as exc:
                LOG.debug('Could not destroy task %s: %s', task, exc)

    def _task_record(self, task: str, deadline: float,
                     interval: float) -> Record:
        """The task's record once it finished, or by ``deadline``.

        The event watcher sees the task finish, so no call is made for
        it; XAPI is asked when the watcher is not in sync, every
        :data:`TASK_RECHECK` seconds in case an event was missed, and at
        the deadline. Without a watcher (no ``init_host``), the task is
        polled every ``interval`` seconds.
        """
        watcher = self._watcher
        if watcher is not None and watcher.synced.is_set():
            wait = min(TASK_RECHECK, max(0.0, deadline - time.monotonic()))
            record = watcher.wait_task(task, wait)
            if record is not None:
                return record
        else:
            time.sleep(max(0.0, min(interval,
                                    deadline - time.monotonic())))
        return dict(self._call('task.get_record', task))

    def _cancel(self, task: str) -> None:
        try:
            self._call('task.cancel', task)
        except (xsession.XapiCallFailed, exception.ComputeDriverError) as exc:
            # A task that just finished cannot be cancelled; the rollback
            # finds what it made by its tags.
            LOG.debug('Could not cancel task %s: %s', task, exc)

    def _instance_records(self) -> list[tuple[str, Record,
                                              objects.Instance]]:
        found = []
        for ref, record in self._records().items():
            instance = vm_utils.instance_of(record)
            if instance is not None:
                found.append((ref, record, instance))
        with self._lock:
            self._refs = {i.uuid: ref for ref, _, i in found}
        return found

    def _lookup(self, instance: objects.Instance) -> tuple[str, Record]:
        """The VM of an instance.

        :raises InstanceNotFound: when there is none.
        """
        with self._lock:
            ref = self._refs.get(instance.uuid)
        if ref is None:
            ref = next((r for r, (known, _) in self._watched().items()
                        if known.uuid == instance.uuid), None)
        if ref is not None:
            try:
                record = self._call('VM.get_record', ref)
            except xsession.XapiCallFailed as exc:
                if exc.code != 'HANDLE_INVALID':
                    raise self._fail(exc, 'look up', instance) from exc
                record = None
            if (record is not None and vm_utils.is_instance(record) and
                    record['other_config'][vm_utils.KEY_UUID] ==
                    instance.uuid):
                return ref, record
        for ref, record, found in self._instance_records():
            if found.uuid == instance.uuid:
                return ref, record
        raise exception.InstanceNotFound(instance=instance.name)

    def _located(self, instance: objects.Instance) -> tuple[str, str] | None:
        """The VM of an instance and its power state, without a call.

        From the event watcher, so the state may lag behind XAPI's by
        the time an event takes: use it only where XAPI refuses what the
        state no longer allows. ``None`` when the watcher does not know
        the instance (yet).
        """
        with self._lock:
            ref = self._refs.get(instance.uuid)
        for known_ref, (known, state) in self._watched().items():
            if known.uuid == instance.uuid and ref in (None, known_ref):
                return known_ref, state
        return None

    def _watched(self) -> dict[str, tuple[objects.Instance, str]]:
        """The instances the event watcher knows; empty out of sync."""
        watcher = self._watcher
        known = watcher.instances() if watcher is not None else None
        return known or {}

    def _operate(self, instance: objects.Instance, operation: str,
                 action: typing.Callable[[str, Record], None]) -> None:
        """Check the power state, then run ``action(ref, record)``."""
        ref, record = self._lookup(instance)
        self.check_power_state(instance, operation,
                               vm_utils.state_of(record))
        try:
            action(ref, record)
        except xsession.XapiCallFailed as exc:
            raise self._fail(exc, operation, instance) from exc

    def _own_vdis(self, ref: str, record: Record) -> list[str]:
        """The VDIs only this VM uses.

        Never a sharable disk, a read-only one (an ISO, a golden image) or
        one another VM has attached.
        """
        vdis: list[str] = []
        if record.get('VBDs', None) == []:
            return vdis
        # One call for every VBD of the VM, rather than one per VBD.
        vbds = self._call('VBD.get_all_records_where',
                          'field "VM" = %s' % _quote(ref))
        for vbd_ref, vbd in vbds.items():
            if vbd['type'] != 'Disk' or vbd['empty']:
                continue
            try:
                vdi = self._call('VDI.get_record', vbd['VDI'])
                others = [v for v in vdi['VBDs'] if v not in vbds and
                          self._call('VBD.get_VM', v) != ref]
            except xsession.XapiCallFailed as exc:
                if exc.code == 'HANDLE_INVALID':
                    continue
                raise
            if not vdi['sharable'] and not vdi['read_only'] and not others:
                vdis.append(vbd['VDI'])
        return vdis

    def _remove_vm(self, ref: str, record: Record | None = None) -> None:
        """Hard-stop a VM, destroy it and its own disks; gone is fine.

        :param record: the VM's record, when the caller just read it, or
            what the event watcher knows of it (``VBDs`` ``None``): its
            power state may then be out of date.
        """
        try:
            if record is None:
                record = self._call('VM.get_record', ref)
            if record['power_state'] != 'Halted':
                self._hard_shutdown(ref)
            vdis = self._own_vdis(ref, record)
            if record['is_a_template'] and not record['is_a_snapshot']:
                # A half-built clone of a stock template may still say
                # it is a default one, which XAPI does not destroy.
                self._call('VM.set_is_a_template', ref, False)
            try:
                self._call('VM.destroy', ref)
            except xsession.XapiCallFailed as exc:
                if exc.code != 'VM_BAD_POWER_STATE':
                    raise
                # Started since the state was known.
                self._hard_shutdown(ref)
                self._call('VM.destroy', ref)
        except xsession.XapiCallFailed as exc:
            if exc.code == 'HANDLE_INVALID' and exc.params[:1] == ['VM']:
                return
            raise
        for vdi in vdis:
            try:
                self._call('VDI.destroy', vdi)
            except xsession.XapiCallFailed as exc:
                if exc.code != 'HANDLE_INVALID':
                    raise

    def _hard_shutdown(self, ref: str) -> None:
        """Force a VM off; one that stopped meanwhile is fine."""
        try:
            self._call('VM.hard_shutdown', ref)
        except xsession.XapiCallFailed as exc:
            if exc.code != 'VM_BAD_POWER_STATE':
                raise

    def _pool_record(self) -> Record:
        pools = self._call('pool.get_all_records')
        return next(iter(pools.values()))

    def _master(self, pool: Record | None = None) -> tuple[str, Record]:
        master = (pool or self._pool_record())['master']
        return master, self._call('host.get_record', master)

    def _images(self, records: dict[str, Record] | None = None
                ) -> list[tuple[str, Record]]:
        # Not a half-built instance: a template carrying instance tags or
        # named by a spawn in progress.
        if records is None:
            records = self._records()
        return [(ref, rec) for ref, rec in records.items()
                if rec['is_a_template'] and not rec['is_control_domain']
                and (rec['is_a_snapshot'] or not (
                    vm_utils.KEY_UUID in rec['other_config'] or
                    rec['name_label'].startswith(SPAWN_PREFIX + ' ')))]

    def _find_image(self, ref: str,
                    records: dict[str, Record] | None = None
                    ) -> tuple[str, Record] | None:
        """The template or snapshot an image reference names.

        :raises InvalidInput: when several share the name.
        """
        matches = [(r, rec) for r, rec in self._images(records)
                   if vm_utils.matches_image(rec, ref)]
        if len(matches) > 1:
            exact = [m for m in matches if m[1]['uuid'] == ref]
            if len(exact) == 1:
                return exact[0]
            raise exception.InvalidInput(
                reason='%d templates are named %s; name one by uuid: %s'
                       % (len(matches), ref,
                          ', '.join(m[1]['uuid'] for m in matches)))
        return matches[0] if matches else None

    def _image_names(self, records: dict[str, Record]) -> str:
        return ', '.join(sorted(vm_utils.image_name(rec) for _, rec in
                                self._images(records))) or 'none'

    # -- required ----------------------------------------------------------

    def init_host(self, host):
        try:
            # What spawns need of the host is read once, here.
            facts = self._facts(refresh=True)
            master, record = facts['master'], facts['host']
        except xsession.XapiCallFailed as exc:
            raise exception.HypervisorUnavailable(
                host=xsession.redact(self._pool.url),
                reason=exception.one_line(exc)) from exc
        version = (int(record['API_version_major']),
                   int(record['API_version_minor']))
        if version < MIN_API_VERSION:
            raise exception.HypervisorVersionTooOld(
                component='XAPI API', found='%d.%d' % version,
                virt_type='xen', required='%d.%d' % MIN_API_VERSION)
        self._host_ref = master
        self._hostname = record['hostname'] or record['name_label']
        self.sweep_leftovers()
        if self._watcher is None:
            self._watcher = xevents.EventWatcher(
                self._pool, self.emit_lifecycle,
                self._xconf.event_poll_timeout)
            self._watcher.start()
            # Changes before the first poll would not be reported.
            self._watcher.synced.wait(self._xconf.login_timeout + 5)
        LOG.debug('XAPI host %s (API %d.%d) ready for %s', self._hostname,
                  version[0], version[1], host)

    def get_info(self, instance, use_cache=True):
        ref, record = self._lookup(instance)
        return objects.InstanceInfo(state=vm_utils.state_of(record),
                                    internal_id=ref)

    def list_instances(self):
        return [i.name for _, _, i in self._instance_records()]

    def list_instance_uuids(self):
        return [i.uuid for _, _, i in self._instance_records()]

    def list_instance_records(self):
        return [
            objects.InstanceRecord(
                instance=instance,
                info=objects.InstanceInfo(state=vm_utils.state_of(record),
                                          internal_id=ref))
            for ref, record, instance in self._instance_records()]

    def _claim(self, instance: objects.Instance) -> Record:
        """Claim the flavor's memory and disk; the SR for its disks.

        Under the driver's lock, so that concurrent spawns of this driver
        see each other's claims. What the other instances use comes from
        the event watcher, without a call; the host's size is read once.

        :raises InsufficientResources: naming what is short.
        """
        facts = self._facts(need_sr=True)
        with self._lock:
            watched = self._watcher_instances()
            if watched is None:
                # No watcher in sync: ask XAPI, once, outside the lock.
                self._lock.release()
                try:
                    watched = self._instances_now()
                finally:
                    self._lock.acquire()
            for found in itertools.chain(
                    (known for known, _ in watched.values()),
                    (claimed for claimed, _ in self._claims.values())):
                if found.uuid == instance.uuid:
                    raise exception.InstanceExists(instance=instance.uuid)
                if found.name == instance.name:
                    raise exception.InstanceExists(instance=instance.name)
            resources = self._resources_of(watched, facts)
            flavor = instance.flavor
            # vCPUs are not claimed, but a flavor with more than the host
            # has can never start; refuse it before XAPI is asked.
            driver.check_flavor_fits_host(flavor, resources)
            # Memory and disk are claimed as Nova does; vCPUs are not,
            # as Xen shares physical CPUs between guests.
            for resource, requested, used, total in (
                    ('memory_mb', flavor.memory_mb,
                     resources.memory_mb_used, resources.memory_mb),
                    ('disk_gb', flavor.disk_gb, resources.local_gb_used,
                     resources.local_gb)):
                if requested > total - used:
                    raise exception.InsufficientResources(
                        resource=resource,
                        host=resources.hypervisor_hostname,
                        requested=requested, free=total - used,
                        total=total)
            self._claims[instance.uuid] = (instance, time.monotonic())
        return facts['sr']

    def _watcher_instances(self) -> dict[str, tuple[objects.Instance,
                                                    str]] | None:
        watcher = self._watcher
        return watcher.instances() if watcher is not None else None

    def _instances_now(self) -> dict[str, tuple[objects.Instance, str]]:
        return {ref: (instance, record['power_state'])
                for ref, record, instance in self._instance_records()}

    def _network(self) -> str | None:
        """The network of ``[xenapi] network_name``, looked up once.

        :raises InvalidConfiguration: naming the option when XAPI has
            no such network.
        """
        if not self._xconf.network_name:
            return None
        networks = self._facts()['networks']
        if not networks:
            # Perhaps created since: look again, next time too.
            networks = self._call('network.get_by_name_label',
                                  self._xconf.network_name)
            if not networks:
                raise exception.InvalidConfiguration(
                    reason='[xenapi] network_name: XAPI has no network '
                           'named %r' % self._xconf.network_name)
            self._facts()['networks'] = networks
        return str(networks[0])

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        driver.check_spawn_instance(instance)
        image_ref = image_meta.name or self._xconf.default_template
        watcher = self._watcher
        known = watcher.templates() if watcher is not None else None
        records: dict[str, Record] = known or {}
        template = (self._find_image(image_ref, records)
                    if known is not None else None)
        if template is None:
            # Not seen by the event watcher (yet): one call finds the
            # templates and any VM with the instance's name, however
            # many VMs there are.
            records = self._call(
                'VM.get_all_records_where',
                'field "is_a_template" = "true" or field "name__label" = %s'
                % _quote(instance.name))
            template = self._find_image(image_ref, records)
        if template is None:
            raise exception.ImageNotFound(image=image_ref,
                                          available=self._image_names(records))
        network = self._network()
        with self._lock:
            if (instance.uuid in self._spawning or
                    instance.name in self._spawning.values()):
                raise exception.InstanceExists(instance=instance.name)
            self._spawning[instance.uuid] = instance.name
        try:
            for record in records.values():
                found = vm_utils.instance_of(record)
                if found is not None and found.uuid == instance.uuid:
                    raise exception.InstanceExists(instance=instance.uuid)
                if found is not None and found.name == instance.name:
                    raise exception.InstanceExists(instance=instance.name)
            sr = self._claim(instance)
            try:
                self._build(instance, template, network, power_on, sr)
            except BaseException:
                with self._lock:
                    self._claims.pop(instance.uuid, None)
                raise
        finally:
            with self._lock:
                self._spawning.pop(instance.uuid, None)

    def _sr(self, pool: Record | None = None) -> str:
        """The SR new disks go on: ``[xenapi] sr_name`` or the default.

        :raises InvalidConfiguration: naming the option when there is
            none.
        """
        wanted = self._xconf.sr_name
        if not wanted:
            ref = (pool or self._pool_record())['default_SR']
            if ref == 'OpaqueRef:NULL':
                raise exception.InvalidConfiguration(
                    reason='[xenapi] sr_name is empty and the pool has no '
                           'default SR; name the SR for instance disks')
            return str(ref)
        try:
            return str(self._call('SR.get_by_uuid', wanted))
        except xsession.XapiCallFailed as exc:
            if exc.code != 'UUID_INVALID':
                raise
        found = self._call('SR.get_by_name_label', wanted)
        if len(found) != 1:
            raise exception.InvalidConfiguration(
                reason='[xenapi] sr_name: XAPI has %s SR named %r' % (
                    'no' if not found else '%d' % len(found), wanted))
        return str(found[0])

    def _build(self, instance: objects.Instance,
               template: tuple[str, Record], network: str | None,
               power_on: bool, sr: Record) -> None:
        """Clone, configure, provision and start; undo it all on failure.

        The clone is named after the spawning process and the instance
        until it runs, so a spawn interrupted at any point -- even between
        two calls, or by a process that died -- leaves something
        :meth:`cleanup_leftovers` recognises and removes. Renaming it is
        the spawn's last call. Setters whose value the template has
        already are not called.
        """
        owner = _owner()
        temporary = '%s %s %s' % (SPAWN_PREFIX, owner, instance.uuid)
        built: dict[str, str] = {}
        with _BUILDING_LOCK:
            _BUILDING.add(instance.uuid)
        try:
            built['vm'] = ref = self._task('VM.clone', template[0],
                                           temporary)
            flavor = instance.flavor
            other = dict(template[1]['other_config'])
            # A stock template's mark: a VM that kept it could not be
            # destroyed while it is still a template.
            other.pop('default_template', None)
            other.update(vm_utils.instance_tags(instance))
            other['disks'] = vm_utils.resize_disks(
                other.get('disks', ''), flavor, sr['uuid'])
            self._call('VM.set_other_config', ref, other)
            self._call('VM.set_name_description', ref,
                       'compute-driver instance %s' % instance.uuid)
            self._size(ref, template[1], flavor)
            if network is not None:
                self._call('VIF.create', {
                    'device': '0', 'network': network, 'VM': ref, 'MAC': '',
                    'MTU': '1500', 'other_config': {},
                    'qos_algorithm_type': '', 'qos_algorithm_params': {}})
            # Provisioning also turns the template into a VM.
            self._task('VM.provision', ref)
            with self._lock:
                self._refs[instance.uuid] = ref
            if power_on:
                self._task('VM.start', ref, False, False)
            self._call('VM.set_name_label', ref, instance.name)
        except BaseException as exc:
            # BaseException: a Ctrl-C must not leave a half-built VM.
            LOG.warning('Spawning %s failed, removing what it created: %s',
                        instance.name, exception.one_line(exc))
            self._undo_spawn(instance, built.get('vm'), temporary)
            with self._lock:
                self._refs.pop(instance.uuid, None)
            if isinstance(exc, xsession.XapiCallFailed):
                raise self._fail(exc, 'spawn', instance) from exc
            raise
        finally:
            with _BUILDING_LOCK:
                _BUILDING.discard(instance.uuid)

    def _size(self, ref: str, template: Record,
              flavor: objects.Flavor) -> None:
        """Give a clone the flavor's memory and vCPUs."""
        memory = flavor.memory_mb * MiB
        static_min = min(int(template['memory_static_min']) or memory,
                         memory)
        limits = [str(static_min)] + [str(memory)] * 3
        if limits != [str(template[field]) for field in (
                'memory_static_min', 'memory_dynamic_min',
                'memory_dynamic_max', 'memory_static_max')]:
            self._call('VM.set_memory_limits', ref, *limits)
        vcpus = str(flavor.vcpus)
        # VCPUs_at_startup may never exceed VCPUs_max: raise the maximum
        # first, lower it last.
        setters = [('VM.set_VCPUs_at_startup', 'VCPUs_at_startup'),
                   ('VM.set_VCPUs_max', 'VCPUs_max')]
        if flavor.vcpus >= int(template['VCPUs_max']):
            setters.reverse()
        for setter, field in setters:
            if str(template[field]) != vcpus:
                self._call(setter, ref, vcpus)

    def _undo_spawn(self, instance: objects.Instance, ref: str | None,
                    temporary: str) -> None:
        """Remove the VM of a failed spawn; log by uuid what stays."""
        refs = [ref] if ref else []
        try:
            # A clone whose task finished after the backend gave up.
            refs += [r for r in self._call('VM.get_by_name_label',
                                           temporary) if r not in refs]
        except (xsession.XapiCallFailed,
                exception.ComputeDriverError) as exc:
            LOG.error('Could not look for the clone %r of failed instance '
                      '%s: %s; init_host removes it later', temporary,
                      instance.name, exception.one_line(exc))
        for vm in refs:
            self._remove_leftover(vm, 'failed instance %s' % instance.name)

    def _remove_leftover(self, ref: str, what: str) -> bool:
        """Remove a VM and its own disks; log each object that stays."""
        uuid, vdis = ref, []
        try:
            record = self._call('VM.get_record', ref)
            uuid = record['uuid']
            vdis = [(v, self._call('VDI.get_uuid', v))
                    for v in self._own_vdis(ref, record)]
            self._remove_vm(ref, record)
            LOG.info('Removed VM %s of %s and its disks %s', uuid, what,
                     ', '.join(u for _, u in vdis) or '(none)')
            return True
        except BaseException as exc:
            LOG.error('Could not remove VM %s of %s (disks: %s): %s; '
                      'init_host removes it once this process is gone',
                      uuid, what, ', '.join(u for _, u in vdis) or 'none',
                      exception.one_line(exc))
            if not isinstance(exc, Exception):
                raise
            return False

    def cleanup_leftovers(self, dry_run=False):
        """Remove the VMs of spawns that did not complete, and their disks.

        A spawn names its clone ``compute-driver-spawn <machine>:<pid>
        <instance uuid>`` until the VM runs (earlier versions tagged it
        with ``other_config:compute_driver_spawning`` instead). Such a VM
        is a leftover when that process is gone or, for this process,
        no longer spawning it. One of another machine is left alone: its
        spawn may still be running there.
        """
        try:
            records = self._records()
        except xsession.XapiCallFailed as exc:
            raise exception.BackendError(
                operation='list leftovers', instance='-',
                reason=exception.one_line(exc)) from exc
        return leftovers.sweep(self.name, self._leftover_candidates(records),
                               dry_run)

    def _leftover_candidates(self, records: dict[str, Record]
                             ) -> typing.Iterator[leftovers.Candidate]:
        for ref, record in records.items():
            other = record.get('other_config', {})
            owner = other.get(vm_utils.KEY_SPAWNING)
            uuid = other.get(vm_utils.KEY_UUID, '')
            label = record.get('name_label', '')
            if owner is None and label.startswith(SPAWN_PREFIX + ' '):
                _, owner, uuid = (label.split(' ') + ['', ''])[:3]
            if owner is None or record.get('is_a_snapshot'):
                continue
            name = other.get(vm_utils.KEY_NAME, label)
            if not _abandoned(owner, uuid):
                LOG.warning('VM %s (%s) is an unfinished spawn of %s; left '
                            'alone as that process may still run',
                            record['uuid'], name, owner)
                continue
            reason = ('its spawn failed and could not remove it'
                      if owner == _owner() else
                      'its spawn was interrupted in process %s' % owner)
            what = 'VM %s (%s) and its own disks' % (record['uuid'], name)
            yield leftovers.Candidate(what, reason, functools.partial(
                self._remove_swept, ref, what, reason))

    def _remove_swept(self, ref: str, what: str, reason: str) -> None:
        LOG.warning('Removing %s: %s', what, reason)
        try:
            self._remove_vm(ref)
        except xsession.XapiCallFailed as exc:
            raise exception.BackendError(
                operation='remove leftover', instance='-',
                reason=exception.one_line(exc)) from exc

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        located = self._located(instance)
        if located is not None:
            # An instance's VM is never a template; what XAPI says its
            # state is decides whether it is stopped first.
            ref, record = located[0], {
                'power_state': located[1], 'is_a_template': False,
                'is_a_snapshot': False, 'VBDs': None}
        else:
            try:
                ref, record = self._lookup(instance)
            except exception.InstanceNotFound:
                LOG.debug('Instance %s is already gone', instance.uuid)
                return
        try:
            self._remove_vm(ref, record)
        except xsession.XapiCallFailed as exc:
            raise self._fail(exc, 'destroy', instance) from exc
        with self._lock:
            self._refs.pop(instance.uuid, None)
            self._claims.pop(instance.uuid, None)

    def _facts(self, need_sr: bool = False,
               refresh: bool = False) -> dict[str, typing.Any]:
        """The master's record and memory, the SR for disks, the network.

        Read once and kept: a host's CPUs and memory and the SR it puts
        disks on do not change while the driver runs.
        ``get_available_resource`` reads them again (``refresh``), as
        the SR's size may grow.

        :param need_sr: raise ``InvalidConfiguration`` when there is no SR
            for disks rather than reporting no disk space.
        """
        facts = self._cached.get('facts')
        if facts is None or refresh:
            pool = self._pool_record()
            master, host = self._master(pool)
            facts = {'master': master, 'host': host,
                     'memory_total': int(self._call(
                         'host_metrics.get_memory_total', host['metrics']))}
            facts['networks'] = (
                self._call('network.get_by_name_label',
                           self._xconf.network_name)
                if self._xconf.network_name else [])
            try:
                facts['sr'] = self._call('SR.get_record', self._sr(pool))
            except exception.InvalidConfiguration as exc:
                facts['sr'], facts['sr_error'] = None, exc
            self._cached['facts'] = facts
        if facts['sr'] is None and need_sr:
            raise facts['sr_error']
        return facts

    def _resources_of(self, instances: dict[str, tuple[objects.Instance,
                                                       str]],
                      facts: dict[str, typing.Any]) -> objects.HostResources:
        """The host's resources with these instances on it.

        Spawns of this driver whose VM the instances do not show yet
        count too. Call with the driver's lock held.
        """
        flavors = {instance.uuid: instance.flavor
                   for instance, _ in instances.values()}
        stale = time.monotonic() - CLAIM_GRACE
        for uuid, (_, when) in list(self._claims.items()):
            # Done with once the watcher knows its VM; or, after a while,
            # when it never will (another client destroyed it first).
            if uuid in flavors or (uuid not in self._spawning and
                                   when < stale):
                del self._claims[uuid]
        flavors.update((u, i.flavor) for u, (i, _) in self._claims.items())
        running = sum(1 for _, state in instances.values()
                      if vm_utils.POWER_STATES.get(state) in
                      driver.ACTIVE_STATES)
        host = facts['host']
        sr = facts['sr'] or {'physical_size': '0'}
        software = host.get('software_version', {})
        version = (software.get('product_version') or
                   software.get('platform_version') or '0')
        try:
            version_int = objects.version_to_int(
                '.'.join(version.split('.')[:3]))
        except ValueError:
            version_int = 0
        cpu_info = host.get('cpu_info', {})
        cpus = len(host.get('host_CPUs', [])) or int(
            cpu_info.get('cpu_count', 0))
        sockets = int(cpu_info.get('socket_count', 1) or 1)
        return objects.HostResources(
            vcpus=cpus, memory_mb=facts['memory_total'] // MiB,
            local_gb=int(sr['physical_size']) // GiB,
            vcpus_used=sum(f.vcpus for f in flavors.values()),
            memory_mb_used=sum(f.memory_mb for f in flavors.values()),
            local_gb_used=sum(f.disk_gb for f in flavors.values()),
            hypervisor_type=self.hypervisor_type,
            hypervisor_version=version_int,
            hypervisor_hostname=host['hostname'] or host['name_label'],
            running_vms=running,
            cpu_info={'arch': 'x86_64',
                      'model': cpu_info.get('modelname', ''),
                      'vendor': cpu_info.get('vendor', ''),
                      'topology': {'sockets': sockets,
                                   'cores': max(1, cpus // sockets),
                                   'threads': 1}})

    def get_available_resource(self, nodename):
        facts = self._facts(refresh=True)
        instances = self._instances_now()
        with self._lock:
            return self._resources_of(instances, facts)

    def get_available_nodes(self, refresh=False):
        if self._hostname is None or refresh:
            _, host = self._master()
            self._hostname = host['hostname'] or host['name_label']
        return [self._hostname]

    def get_host_identity(self):
        """The uuid of the pool master's host record."""
        _, host = self._master()
        return host['uuid']

    # -- optional ----------------------------------------------------------

    def cleanup_host(self, host):
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        self._pool.close()
        LOG.debug('Logged out of XAPI for %s', host)

    def instance_exists(self, instance):
        try:
            self._lookup(instance)
        except exception.InstanceNotFound:
            return False
        return True

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        kind = driver.reboot_kind(reboot_type)

        def soft(ref, record):
            timeout = self._xconf.clean_shutdown_timeout
            if not self._guest_can(record, 'clean_reboot'):
                LOG.warning('Instance %s lacks %s; rebooting it hard',
                            instance.name, GUEST_FEATURES['clean_reboot'])
            elif timeout and self._clean(ref, 'clean_reboot', timeout):
                return
            else:
                LOG.warning('Instance %s did not reboot within %ss; '
                            'rebooting it hard', instance.name, timeout)
            hard(ref, record)

        def hard(ref, record):
            state = record['power_state']
            if state in ('Running', 'Paused'):
                self._call('VM.hard_reboot', ref)
                return
            if state != 'Halted':
                # XAPI resets only a live domain; a suspended or crashed
                # one is stopped first.
                self._call('VM.hard_shutdown', ref)
            self._call('VM.start', ref, False, False)

        self._operate(instance, kind.lower() + '_reboot',
                      soft if kind == driver.REBOOT_SOFT else hard)

    def _guest_can(self, record: Record, operation: str) -> bool:
        """Whether XAPI allows a guest operation on a VM now.

        XAPI lists in ``allowed_operations`` only what the guest's agent
        and drivers support (``VM_guest_metrics.other``); a guest
        without tools lacks the clean operations and vCPU hot-plug.
        """
        return operation in record.get('allowed_operations', ())

    def power_off(self, instance, timeout=0, retry_interval=0):
        if timeout < 0 or retry_interval < 0:
            raise exception.InvalidInput(
                reason='timeout and retry_interval must be >= 0')

        def stop(ref, record):
            if timeout and record['power_state'] == 'Running':
                if not self._guest_can(record, 'clean_shutdown'):
                    LOG.info('%s lacks %s; forcing it off', instance.name,
                             GUEST_FEATURES['clean_shutdown'])
                elif self._clean(ref, 'clean_shutdown', timeout,
                                 retry_interval):
                    return
                else:
                    LOG.info('%s did not shut down within %ss; forcing it '
                             'off', instance.name, timeout)
            self._call('VM.hard_shutdown', ref)

        located = None if timeout else self._located(instance)
        if located is not None and vm_utils.POWER_STATES.get(
                located[1]) in driver.TRANSITIONS['power_off'].allowed:
            # Forcing it off needs no record: XAPI refuses it with
            # VM_BAD_POWER_STATE should the VM have stopped meanwhile,
            # and the VM is then read to say why.
            try:
                self._call('VM.hard_shutdown', located[0])
                return
            except xsession.XapiCallFailed as exc:
                if exc.code not in ('VM_BAD_POWER_STATE', 'HANDLE_INVALID'):
                    raise self._fail(exc, 'power_off', instance) from exc
        self._operate(instance, 'power_off', stop)

    def _clean(self, ref: str, operation: str, timeout: float,
               retry_interval: float = 0) -> bool:
        """Ask the guest to shut down or reboot; whether it did in time.

        The request runs as an XAPI task so that a guest ignoring it does
        not hold a session for the whole wait; the task is cancelled when
        the time is up.
        """
        task = self._call('Async.VM.' + operation, ref)
        deadline = time.monotonic() + timeout
        interval = min(max(retry_interval, 0.05), 1.0)
        try:
            while True:
                status = self._task_record(task, deadline, interval)['status']
                if status != 'pending':
                    return bool(status == 'success')
                if time.monotonic() >= deadline:
                    self._cancel(task)
                    return False
        finally:
            try:
                self._call('task.destroy', task)
            except xsession.XapiCallFailed as exc:
                LOG.debug('Could not destroy task %s: %s', task, exc)

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        def start(ref, record):
            if record['power_state'] == 'Crashed':
                self._call('VM.hard_shutdown', ref)
            self._task('VM.start', ref, False, False)

        self._operate(instance, 'power_on', start)

    def pause(self, instance):
        self._operate(instance, 'pause',
                      lambda ref, rec: self._call('VM.pause', ref))

    def unpause(self, instance):
        self._operate(instance, 'unpause',
                      lambda ref, rec: self._call('VM.unpause', ref))

    def suspend(self, context, instance):
        def suspend(ref, record):
            self._require(instance, record, 'suspend', 'suspend')
            self._call('VM.suspend', ref)

        self._operate(instance, 'suspend', suspend)

    def _require(self, instance: objects.Instance, record: Record,
                 operation: str, verb: str) -> None:
        """Refuse a guest operation the VM's guest cannot do.

        :raises GuestFeatureMissing: naming the missing feature.
        """
        if (record['power_state'] == 'Running' and
                not self._guest_can(record, operation)):
            raise exception.GuestFeatureMissing(
                driver=self.name, operation=verb, instance=instance.name,
                feature=GUEST_FEATURES[operation])

    def supports(self, operation: str,
                 instance: objects.Instance | None = None) -> bool:
        """Whether an optional operation works, for one instance if given.

        Without an instance, what the backend implements. With one, also
        whether its guest can do it now: a guest without a guest agent
        or PV drivers cannot suspend or change vCPUs live, as XAPI's
        ``allowed_operations`` for its VM say.
        """
        if not super().supports(operation):
            return False
        needs = {'suspend': 'suspend',
                 'live_resize': 'changing_VCPUs_live'}.get(operation)
        if instance is None or needs is None:
            return True
        _, record = self._lookup(instance)
        return (record['power_state'] != 'Running' or
                self._guest_can(record, needs))

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        self._operate(instance, 'resume', lambda ref, rec: self._call(
            'VM.resume', ref, False, False))

    def snapshot(self, context, instance, image_id, update_task_state):
        objects.validate_image_ref(image_id)
        ref, record = self._lookup(instance)
        self.check_power_state(instance, 'snapshot',
                               vm_utils.state_of(record))
        if self._find_image(image_id) is not None:
            raise exception.InvalidInput(
                reason='an image named %s exists already' % image_id)
        if update_task_state is not None:
            update_task_state(task_state=IMAGE_PENDING_UPLOAD)
            update_task_state(task_state=IMAGE_UPLOADING,
                              expected_state=IMAGE_PENDING_UPLOAD)
        try:
            snap = self._task('VM.snapshot', ref, image_id)
            try:
                self._call('VM.add_to_other_config', snap,
                           vm_utils.KEY_SNAPSHOT_OF, instance.uuid)
            except xsession.XapiCallFailed:
                self._remove_vm(snap)
                raise
        except xsession.XapiCallFailed as exc:
            raise self._fail(exc, 'snapshot', instance) from exc

    def _snapshot_of(self, image_id: str) -> tuple[str, Record] | None:
        found = self._find_image(image_id)
        if found is None:
            return None
        if not found[1]['is_a_snapshot'] or (
                vm_utils.KEY_SNAPSHOT_OF not in found[1]['other_config']):
            raise exception.InvalidInput(
                reason='image %s is not a snapshot' % image_id)
        return found

    def delete_snapshot(self, context, image_id):
        found = self._snapshot_of(image_id)
        if found is None:
            return
        try:
            self._remove_vm(found[0])
        except xsession.XapiCallFailed as exc:
            raise self._fail(exc, 'delete snapshot', None) from exc

    def revert_to_snapshot(self, context, instance, image_id):
        ref, record = self._lookup(instance)
        try:
            found = self._snapshot_of(image_id)
        except exception.InvalidInput:
            found = None
        if found is None or found[1]['other_config'].get(
                vm_utils.KEY_SNAPSHOT_OF) != instance.uuid:
            mine = sorted(
                meta.name for meta in self.list_images()
                if meta.properties.get('instance_uuid') == instance.uuid)
            raise exception.ImageNotFound(
                image='%s (a snapshot of %s)' % (image_id, instance.name),
                available=', '.join(mine) or 'none')

        def revert(vm_ref, vm_record):
            # XAPI's revert leaves the VM halted with the snapshot's disks;
            # a running instance is started again, as the contract says.
            self._task('VM.revert', found[0])
            if vm_record['power_state'] == 'Running':
                self._task('VM.start', vm_ref, False, False)

        self._operate(instance, 'revert_to_snapshot', revert)

    def live_resize(self, context, instance, vcpus=None, memory_mb=None):
        ref, record = self._lookup(instance)
        stored = vm_utils.instance_of(record)
        # The stored flavor is what spawn claimed; the caller's copy of
        # the instance may say otherwise.
        self.check_live_resize(stored or instance, vcpus, memory_mb)
        # Spawn pins VCPUs_max and memory_static_max to the flavor, so the
        # flavor is the ceiling, as in Nova: going higher needs a resize
        # with a reboot. Refused here, before XAPI is asked.
        for field, value, ceiling, unit in (
                ('vcpus', vcpus, int(record['VCPUs_max']), 1),
                ('memory_mb', memory_mb, int(record['memory_static_max']),
                 MiB)):
            if (type(value) is int and value >= 1 and
                    value * unit > ceiling):
                raise exception.InvalidInput(
                    reason='%s=%d is above the ceiling of %d that the VM of '
                           '%s was built with: its flavor, pinned as %s at '
                           'spawn; a live resize cannot go beyond the '
                           'flavor' % (field, value, ceiling // unit,
                                       instance.name, 'VCPUs_max'
                                       if unit == 1 else 'memory_static_max'))

        def resize(vm_ref, vm_record):
            if vcpus is not None:
                self._require(instance, vm_record, 'changing_VCPUs_live',
                              'change the vCPUs of')
                self._call('VM.set_VCPUs_number_live', vm_ref, str(vcpus))
            if memory_mb is not None:
                size = str(memory_mb * MiB)
                self._call('VM.set_memory_dynamic_range', vm_ref, size,
                           size)

        self._operate(instance, 'live_resize', resize)

    def get_diagnostics(self, instance):
        ref, record = self._lookup(instance)
        return {
            'state': power_state.name(vm_utils.state_of(record)),
            'driver': 'xenapi',
            'vcpus': int(record['VCPUs_at_startup']),
            'memory_mb': int(record['memory_dynamic_max']) // MiB,
            'vm_ref': ref,
            'vm_uuid': record['uuid'],
            'domid': int(record['domid']),
            'disks': len(record['VBDs']),
            'vifs': len(record['VIFs']),
        }

    def get_host_ip_addr(self):
        _, host = self._master()
        return str(host['address'])

    def get_host_uptime(self):
        _, host = self._master()
        boot = host.get('other_config', {}).get('boot_time')
        try:
            seconds = max(0, int(time.time() - float(boot)))
        except (TypeError, ValueError):
            return ' %s up unknown' % time.strftime('%H:%M:%S')
        days, rest = divmod(seconds, 86400)
        return ' %s up %d days, %d:%02d' % (
            time.strftime('%H:%M:%S'), days, rest // 3600, rest // 60 % 60)

    def list_images(self):
        images = [vm_utils.image_meta(rec) for _, rec in self._images()]
        default = self._xconf.default_template
        # The default template first: callers that boot "the first image"
        # (verify, the conformance suite) then boot it.
        images.sort(key=lambda m: (
            m.properties.get('name_label') != default and m.name != default,
            m.properties.get('image_type') == 'snapshot', m.name))
        return images
