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

Everything goes through the XenAPI SDK (:mod:`.connection`). An instance
is a VM whose ``other_config`` records it (:mod:`.mapping`); templates and
snapshots are the images (:mod:`.images`). Lifecycle events come from
XAPI's own event stream (:mod:`.events`), so changes made by other clients
are reported too; what the stream tells lets most operations find their
VM, and its state, without a call.

Console output is not supported: XAPI's VM ``console`` objects are RFB
(VNC) and text-terminal streams reached over an HTTP CONNECT, not a log,
and XAPI has no call that returns what a guest printed. Reading the
console would mean scraping a live terminal session, which would show the
screen rather than the boot log the contract promises.
"""

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import threading
import time
import typing

from compute_driver import driver
from compute_driver import exception
from compute_driver.image import exception as image_exception
from compute_driver import leftovers
from compute_driver.network import model as net_model
from compute_driver import objects
from compute_driver import power_state
from compute_driver.xenapi import conf as xenapi_conf
from compute_driver.xenapi import connection
from compute_driver.xenapi import console as xen_console
from compute_driver.xenapi import errors
from compute_driver.xenapi import events
from compute_driver.xenapi import images
from compute_driver.xenapi import mapping
from compute_driver.xenapi import network as xenapi_network
from compute_driver.xenapi import volumes

LOG = logging.getLogger(__name__)

MiB = mapping.MiB

#: XAPI API versions older than this lack what the backend relies on
#: (``event.from`` with a timeout, ``VM.revert``); XenServer 6.2 speaks
#: 2.1, every supported XenServer and XCP-ng release a later one.
MIN_API_VERSION = (2, 1)

Record = dict[str, typing.Any]

#: Seconds after its spawn that an instance counts in the resources when
#: the event watcher has not seen its VM: long enough for any event to
#: arrive.
CLAIM_GRACE = 60.0

#: Seconds an operation waits for the event thread to report what this
#: driver just did (a new VM, a power change) before it asks XAPI: the
#: event arrives within milliseconds unless another client changed the
#: VM meanwhile.
CATCH_UP = 1.0

# Instance uuids that a spawn of this process is building, whichever
# driver object runs it: their leftovers are not swept.
_BUILDING: set[str] = set()
_BUILDING_LOCK = threading.Lock()


def _owns(method: typing.Callable[..., typing.Any]
          ) -> typing.Callable[..., typing.Any]:
    """Hold back the watcher's events of the VM that ``method`` changes.

    ``method(self, vm, instance, ...)`` leaves the VM in ``vm.state``.
    """
    @functools.wraps(method)
    def owned(self: 'XenAPIDriver', vm: mapping.VM,
              instance: objects.Instance, *args: typing.Any,
              **kwargs: typing.Any) -> typing.Any:
        with self._owning(instance, lambda: vm.state):
            return method(self, vm, instance, *args, **kwargs)
    return owned


class XenAPIDriver(driver.ComputeDriver):
    """The XAPI backend, entry point ``xenapi``."""

    capabilities = {**{'supports_' + op: True
                       for op in driver.OPTIONAL_OPERATIONS},
                    'supports_console_output': False,
                    # Not implemented for XAPI yet.
                    'supports_resize': False,
                    'supports_cold_migrate': False,
                    'supports_live_migrate': False,
                    # -- volumes: VDIs plugged through VBDs, swapped
                    # with VDI.copy (the instance stopped) and grown with
                    # VDI.resize (VDI.resize_online where the SR can).
                    'supports_swap_volume': True,
                    'supports_extend_volume': True,
                    # The console XAPI offers is a VNC display, reached
                    # over its HTTP server; no serial port, no container.
                    'supports_serial_console': False,
                    'supports_attach_console': False,
                    'supports_execute': False}
    hypervisor_type = 'xen'
    # XAPI reaches volumes through its SRs; spawn takes none (yet).
    connects_volumes = False
    # XAPI's userdevice 0; volumes are /dev/xvdb on (check_mountpoint).
    root_device_name = '/dev/xvda'
    spawn_volumes = False
    CONFIG_GROUP = xenapi_conf.GROUP
    CONFIG_OPTS = xenapi_conf.opts
    # XAPI batches the changes made between two answers, so a whole
    # spawn and stop can reach the watcher as one event: the pipeline
    # announces this driver's transitions, the watcher the others'.
    announces_own_transitions = True
    # What /import_raw_vdi takes, and so what boots.
    image_types = ('raw', 'vhd')
    runs_containers = False

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi=virtapi)
        group = conf.xenapi
        self._xconf = group
        pool = dict(
            url=group.connection_url, username=group.username,
            password=group.password, size=group.concurrent_sessions,
            verify=group.verify_certificate, ca_file=group.ca_file,
            call_timeout=group.call_timeout,
            login_timeout=group.login_timeout,
            wait_timeout=group.session_wait_timeout,
            originator=group.originator)
        self._pool = connection.SessionPool(**pool)
        # Its own slots, so long operations never make short calls wait;
        # the same sessions, so a spawn's short calls between its clone,
        # provision and start go on the connection those took.
        self._long_pool = connection.SessionPool(**pool,
                                                 idle_of=self._pool)
        self._xapi = connection.Connection(self._pool, group.call_timeout,
                                           long_pool=self._long_pool)
        self._images = images.ImageStore(self._xapi, group.default_template)
        self._watcher: events.EventWatcher | None = None
        self._lock = threading.Lock()
        # Instance uuid -> VM ref, to find a VM the watcher does not know
        # without listing them all.
        self._refs: dict[str, str] = {}
        # VM ref -> the XAPI power state this driver last left or read,
        # until the watcher reports the same (see _power_state).
        self._expected: dict[str, str] = {}
        # VM ref -> the event watcher's mark (EventWatcher.mark) taken
        # when its _expected state was noted.
        self._marks: dict[str, tuple[int, int]] = {}
        # Instance uuid -> (instance, when): spawns of this driver that
        # succeeded, counted until the watcher knows their VM.
        self._created: dict[str, tuple[objects.Instance, float]] = {}
        # VM ref -> when: VMs this driver removed, ignored until the
        # watcher sees them go.
        self._removed: dict[str, float] = {}
        # What does not change while the driver runs, read at init_host
        # and by get_available_nodes(refresh=True): the pool master's
        # record and memory, the SR for disks, the network for VIFs.
        self._facts: dict[str, typing.Any] = {}
        self._host_context = errors.HostContext(
            hostname=self._hostname,
            memory_total=lambda: self._facts.get('memory_total'),
            sr_record=lambda: self._xapi.call(
                'SR.get_record', self._xapi.sr(group.sr_name)),
            sr_option=group.sr_name or '')

    # -- host facts --------------------------------------------------------

    def _read_facts(self) -> dict[str, typing.Any]:
        pool = self._xapi.pool_record()
        _, host = self._xapi.master(pool)
        facts = {'host': host,
                 'memory_total': int(self._xapi.call(
                     'host_metrics.get_memory_total', host['metrics']))}
        facts['networks'] = (
            self._xapi.call('network.get_by_name_label',
                            self._xconf.network_name)
            if self._xconf.network_name else [])
        try:
            facts['sr'] = self._xapi.call(
                'SR.get_record', self._xapi.sr(self._xconf.sr_name, pool))
        except exception.InvalidConfiguration as exc:
            facts['sr'], facts['sr_error'] = None, exc
        self._facts = facts
        return facts

    def _known_facts(self) -> dict[str, typing.Any]:
        return self._facts or self._read_facts()

    def _sr_record(self) -> Record:
        """The SR for instance disks, as read with the host's facts.

        :raises InvalidConfiguration: naming ``[xenapi] sr_name`` when
            there is none.
        """
        facts = self._known_facts()
        if facts['sr'] is None:
            raise facts['sr_error']
        return typing.cast(Record, facts['sr'])

    def _network(self) -> str | None:
        """The network of ``[xenapi] network_name``, looked up once.

        :raises InvalidConfiguration: naming the option when XAPI has
            no such network.
        """
        if not self._xconf.network_name:
            return None
        facts = self._known_facts()
        if not facts['networks']:
            # Perhaps created since: look again, next time too.
            facts['networks'] = self._xapi.call(
                'network.get_by_name_label', self._xconf.network_name)
            if not facts['networks']:
                raise exception.InvalidConfiguration(
                    reason='[xenapi] network_name: XAPI has no network '
                           'named %r' % self._xconf.network_name)
        return str(facts['networks'][0])

    def _hostname(self) -> str:
        host = self._facts.get('host')
        return (host['hostname'] or host['name_label']) if host else '-'

    # -- hooks -------------------------------------------------------------

    def _translate(self, operation, instance):
        return errors.translate(operation, instance, self._host_context)

    def _connect(self):
        try:
            # What spawns need of the host is read once, here.
            record = self._read_facts()['host']
        except connection.XapiCallFailed as exc:
            raise exception.HypervisorUnavailable(
                host=connection.redact(self._pool.url),
                reason=exception.one_line(exc)) from exc
        version = (int(record['API_version_major']),
                   int(record['API_version_minor']))
        if version < MIN_API_VERSION:
            raise exception.HypervisorVersionTooOld(
                component='XAPI API', found='%d.%d' % version,
                virt_type='xen', required='%d.%d' % MIN_API_VERSION)
        if self._watcher is None:
            self._watcher = events.EventWatcher(
                self._pool, self.emit_lifecycle,
                self._xconf.event_poll_timeout)
            self._xapi.waiter = self._images.watcher = self._watcher
            self._watcher.start()
            # Changes before the first poll would not be reported.
            self._watcher.synced.wait(self._xconf.login_timeout + 5)
        LOG.debug('XAPI host %s (API %d.%d) ready for %s', self._hostname(),
                  version[0], version[1], self.host)

    def _instance_records(self) -> list[tuple[str, Record,
                                              objects.Instance]]:
        found = []
        for ref, record in self._xapi.call('VM.get_all_records').items():
            instance = mapping.instance_of(record)
            if instance is not None:
                found.append((ref, record, instance))
        with self._lock:
            self._refs = {i.uuid: ref for ref, _, i in found}
        return found

    def _watched(self) -> dict[str, tuple[objects.Instance, str]] | None:
        """The instances the watcher knows, but those this driver removed.

        ``None`` while the watcher is not in sync.
        """
        watcher = self._watcher
        known = watcher.instances() if watcher is not None else None
        if known is None:
            return None
        stale = time.monotonic() - CLAIM_GRACE
        with self._lock:
            for ref, when in list(self._removed.items()):
                if ref not in known or when < stale:
                    del self._removed[ref]
                else:
                    del known[ref]
        return known

    def _find(self, instance):
        watcher = self._watcher
        known = watcher.find(instance.uuid) if watcher is not None else None
        with self._lock:
            ref = self._refs.get(instance.uuid)
            created = self._created.get(instance.uuid)
            expected = self._expected.get(ref) if ref else None
            mark = self._marks.get(ref) if ref else None
        if (known is None and created and watcher is not None and
                not (ref is not None and watcher.vanished(ref))):
            if (ref is not None and expected is not None and
                    mark is not None and watcher.behind(mark, ref)):
                # Spawned here a moment ago, and the watcher has not read
                # as far yet: nothing can be newer than what the spawn
                # left.
                return mapping.VM(ref, expected, instance=created[0])
            # Its events are on their way.
            known = watcher.wait_vm(instance.uuid, None, CATCH_UP)
        with self._lock:
            if known is not None and known[0] in self._removed:
                known = None
        if known is not None:
            return mapping.VM(known[0], known[2], instance=known[1])
        if ref is not None:
            try:
                record = self._xapi.call('VM.get_record', ref)
            except connection.XapiCallFailed as exc:
                if exc.code != 'HANDLE_INVALID':
                    raise
                record = None
            if (record is not None and mapping.is_instance(record) and
                    record['other_config'][mapping.KEY_UUID] ==
                    instance.uuid):
                return mapping.VM(ref, record['power_state'], record,
                                  mapping.instance_of(record))
        for ref, record, found in self._instance_records():
            if found.uuid == instance.uuid:
                return mapping.VM(ref, record['power_state'], record, found)
        raise exception.InstanceNotFound(instance=instance.name)

    def _record(self, vm: mapping.VM) -> Record:
        """The VM's record, read once per operation."""
        if vm.record is None:
            vm.record = typing.cast(Record, self._xapi.call('VM.get_record',
                                                            vm.ref))
            vm.state = vm.record['power_state']
            # Newer than what the watcher knows, until it catches up.
            self._expect(vm.ref, vm.state)
        return vm.record

    def _fresh(self, vm: mapping.VM, instance: objects.Instance,
               operation: str) -> Record:
        """The VM's record, checking ``operation``'s power state again.

        The state the pipeline checked may be the watcher's.
        """
        record = self._record(vm)
        self.check_power_state(instance, operation,
                               mapping.state_of(record))
        return record

    def _retrying(self, vm: mapping.VM, instance: objects.Instance,
                  operation: str, act: typing.Callable[[], object]) -> None:
        """Run ``act``, which XAPI may refuse for the VM's power state.

        When the state the watcher knew was out of date, the VM is read
        to say why, or, should its state allow ``operation`` after all,
        ``act`` runs again.
        """
        try:
            act()
        except connection.XapiCallFailed as exc:
            if exc.code != 'VM_BAD_POWER_STATE' or vm.record is not None:
                raise
            self._fresh(vm, instance, operation)
            act()

    def _power_state(self, vm):
        # The watcher's state is trusted unless this driver changed the
        # VM since and the watcher has not reported that change yet: an
        # operation would otherwise be refused for a state already gone.
        # A change by another client that the watcher has not caught up
        # with is refused by XAPI itself (VM_BAD_POWER_STATE).
        # Until the watcher has read a poll it made after the change, or
        # an event of the VM, nothing it knows is newer than the state
        # left, which is used at no wait (EventWatcher.behind). Then the
        # change's own event is on its way: waiting for it costs no
        # call; the record is read only if it does not come in time.
        if vm.record is None:
            with self._lock:
                expected = self._expected.get(vm.ref)
                mark = self._marks.get(vm.ref)
                if expected == vm.state:
                    self._forget_expected(vm.ref)
            if expected not in (None, vm.state):
                watcher = self._watcher
                if (watcher is not None and mark is not None and
                        watcher.behind(mark, vm.ref)):
                    vm.state = expected
                    return mapping.state_of({'power_state': vm.state})
                seen = (watcher.wait_vm(vm.instance.uuid, expected, CATCH_UP)
                        if watcher is not None and vm.instance is not None
                        else None)
                if seen is not None and seen[0] == vm.ref:
                    vm.state = expected
                    with self._lock:
                        if self._expected.get(vm.ref) == expected:
                            self._forget_expected(vm.ref)
                else:
                    self._record(vm)
        return mapping.state_of({'power_state': vm.state})

    @contextlib.contextmanager
    def _owning(self, instance: objects.Instance,
                left: typing.Callable[[], str | None],
                created: bool = False) -> typing.Iterator[None]:
        """Run an operation whose transitions the pipeline announces.

        The watcher holds back the VM's events meanwhile and then skips
        those that say what the pipeline announces (see
        :mod:`compute_driver.xenapi.events`).

        :param left: returns the XAPI power state the operation left the
            VM in, ``None`` once it is removed.
        :param created: whether the operation creates the VM.
        """
        watcher = self._watcher
        if watcher is None:
            yield
            return
        watcher.claim(instance.uuid)
        try:
            yield
        except BaseException:
            changes = watcher.settle(instance.uuid, None, failed=True)
            if changes:
                # What changed is emitted once the caller let go of the
                # instance's lock: a listener may call back.
                threading.Thread(target=watcher.send, args=(changes,),
                                 name='xenapi-events-failed',
                                 daemon=True).start()
            raise
        with self._lock:
            ref = self._refs.get(instance.uuid) if created else None
        watcher.settle(instance.uuid, left(), created=ref)

    def _changed(self, vm: mapping.VM, state: str) -> None:
        """Note the state an operation of this driver left the VM in."""
        vm.state, vm.record = state, None
        self._expect(vm.ref, state)

    def _expect(self, ref: str, state: str) -> None:
        """Note the state this driver left or read a VM in, just now."""
        watcher = self._watcher
        mark = watcher.mark() if watcher is not None else None
        with self._lock:
            self._expected[ref] = state
            if mark is None:
                self._marks.pop(ref, None)
            else:
                self._marks[ref] = mark

    def _forget_expected(self, ref: str) -> str | None:
        """Drop what :meth:`_expect` noted; with ``_lock`` held."""
        self._marks.pop(ref, None)
        return self._expected.pop(ref, None)

    def _stored(self, vm, instance):
        return vm.instance or instance

    def _info(self, vm, instance):
        # Read from XAPI, as callers poll it to see a change through.
        return objects.InstanceInfo(
            state=mapping.state_of(self._record(vm)), internal_id=vm.ref)

    def _check_unique(self, instance):
        known = self._watched()
        if known is None:
            # Not in sync: ask XAPI, with one listing.
            super()._check_unique(instance)
            return
        with self._lock:
            created = [i for i, _ in self._created.values()]
        for found in [i for i, _ in known.values()] + created:
            if found.uuid == instance.uuid:
                raise exception.InstanceExists(instance=instance.uuid)
            if found.name == instance.name:
                raise exception.InstanceExists(instance=instance.name)

    def _get_image(self, instance):
        return self._image_from_service(instance)

    def _resources(self, pending):
        facts = self._known_facts()
        known = self._watched()
        if known is None:
            known = {ref: (instance, record['power_state'])
                     for ref, record, instance in self._instance_records()}
        flavors = {instance.uuid: instance.flavor
                   for instance, _ in known.values()}
        states = {ref: state for ref, (_, state) in known.items()}
        stale = time.monotonic() - CLAIM_GRACE
        with self._lock:
            for uuid, (instance, when) in list(self._created.items()):
                # Done with once the watcher knows its VM; or, after a
                # while, when it never will (another client destroyed it
                # first).
                if uuid in flavors or when < stale:
                    del self._created[uuid]
                else:
                    flavors[uuid] = instance.flavor
                    ref = self._refs.get(uuid)
                    if ref is not None:
                        states.setdefault(ref, 'Halted')
            # What this driver left a VM in is newer than what the
            # watcher has reported, until it reports the same.
            states.update((ref, state) for ref, state in
                          self._expected.items() if ref in states)
        flavors.update((i.uuid, i.flavor) for i in pending
                       if i.uuid not in flavors)
        running = sum(1 for state in states.values()
                      if mapping.POWER_STATES.get(state) in
                      driver.ACTIVE_STATES)
        return mapping.host_resources(
            facts['host'], facts['memory_total'], facts['sr'],
            flavors.values(), running, self.hypervisor_type)

    def list_instance_records(self):
        return [
            objects.InstanceRecord(
                instance=instance,
                info=objects.InstanceInfo(state=mapping.state_of(record),
                                          internal_id=ref))
            for ref, record, instance in self._instance_records()]

    # -- spawn and destroy -------------------------------------------------

    def _create(self, instance, image, power_on, network_info,
                block_device_info):
        with self._owning(instance,
                          lambda: 'Running' if power_on else 'Halted',
                          created=True):
            self._build(instance, image, power_on, network_info,
                        block_device_info)

    def _build(self, instance, image, power_on, network_info,
               block_device_info):
        """Clone, configure, provision and start; undo it all on failure.

        The clone is named after the spawning process and the instance
        until it runs, so a spawn interrupted at any point -- even between
        two calls, or by a process that died -- leaves something
        :meth:`cleanup_leftovers` recognises and removes. Renaming it is
        the spawn's last call. Setters whose value the template has
        already are not called.
        """
        template = typing.cast(images.Template, image)
        sr = self._sr_record()
        ports = tuple(network_info or ())
        # Checked against the pool before anything is created.
        planned = self._vifs.plan(ports)
        legacy = None if ports else self._network()
        temporary = mapping.spawn_name(leftovers.owner_label(),
                                       instance.uuid)
        built: dict[str, str] = {}
        with _BUILDING_LOCK:
            _BUILDING.add(instance.uuid)
        try:
            # The setters after the clone depend on nothing but the
            # clone: they are made side by side, all waited for before
            # the provisioning that needs them.
            with connection.Alongside(self._xapi) as alongside:
                built['vm'] = ref = self._xapi.task(
                    'VM.clone', template.ref, temporary)
                flavor = instance.flavor
                other = dict(template.record['other_config'])
                # A stock template's mark: a VM that kept it could not be
                # destroyed while it is still a template.
                other.pop('default_template', None)
                other.update(mapping.instance_tags(instance))
                # A snapshot's record names the ports of its instance.
                other.pop(xenapi_network.KEY_PORTS, None)
                if ports:
                    other[xenapi_network.KEY_PORTS] = net_model.to_record(
                        ports)
                other['disks'] = mapping.resize_disks(
                    other.get('disks', ''), flavor, sr['uuid'])
                device = None
                if isinstance(image, images.ServiceDisk):
                    # The image's VDI is the root disk: not provisioned.
                    other['disks'], device = images.without_root_disk(
                        other['disks'])
                alongside.call('VM.set_other_config', ref, other)
                alongside.run(self._size, ref, template.record, flavor)
                # This thread makes the last of them rather than idle
                # while another thread does.
                self._give_vifs(ref, template.record, planned, legacy)
            if device is not None:
                self._attach_image_disk(ref, instance,
                                        typing.cast(images.ServiceDisk,
                                                    image), device,
                                        temporary)
            # Provisioning also turns the template into a VM.
            self._xapi.task('VM.provision', ref)
            if power_on:
                self._xapi.task('VM.start', ref, False, False)
            self._xapi.call('VM.set_name_label', ref, instance.name)
        except BaseException as exc:
            # BaseException: a Ctrl-C must not leave a half-built VM.
            LOG.warning('Spawning %s failed, removing what it created: %s',
                        instance.name, exception.one_line(exc))
            self._undo_spawn(instance, built.get('vm'), temporary)
            raise
        finally:
            with _BUILDING_LOCK:
                _BUILDING.discard(instance.uuid)
        self._expect(ref, 'Running' if power_on else 'Halted')
        with self._lock:
            self._refs[instance.uuid] = ref
            self._created[instance.uuid] = (instance, time.monotonic())

    def _give_vifs(self, ref: str, template: Record,
                   planned: list[xenapi_network.Planned],
                   legacy: str | None) -> None:
        """Give a clone the VIFs of its ports, or the legacy one."""
        if template.get('VIFs'):
            # The instance's NICs are its ports, not those the clone
            # inherited (a snapshot of an instance has its VIFs).
            self._vifs.destroy_all(ref)
        self._vifs.create(ref, planned, plug=False)
        if legacy is not None:
            self._xapi.call('VIF.create', {
                'device': '0', 'network': legacy, 'VM': ref, 'MAC': '',
                'MTU': '1500', 'other_config': {},
                'qos_algorithm_type': '', 'qos_algorithm_params': {}})

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
            self._xapi.call('VM.set_memory_limits', ref, *limits)
        vcpus = str(flavor.vcpus)
        # VCPUs_at_startup may never exceed VCPUs_max: raise the maximum
        # first, lower it last.
        setters = [('VM.set_VCPUs_at_startup', 'VCPUs_at_startup'),
                   ('VM.set_VCPUs_max', 'VCPUs_max')]
        if flavor.vcpus >= int(template['VCPUs_max']):
            setters.reverse()
        for setter, field in setters:
            if str(template[field]) != vcpus:
                self._xapi.call(setter, ref, vcpus)

    def _undo_spawn(self, instance: objects.Instance, ref: str | None,
                    temporary: str) -> None:
        """Remove the VM of a failed spawn; log by uuid what stays."""
        refs = [ref] if ref else []
        try:
            # A clone whose task finished after the backend gave up.
            refs += [r for r in self._xapi.call('VM.get_by_name_label',
                                                temporary) if r not in refs]
        except (connection.XapiCallFailed,
                exception.ComputeDriverError) as exc:
            LOG.error('Could not look for the clone %r of failed instance '
                      '%s: %s; init_host removes it later', temporary,
                      instance.name, exception.one_line(exc))
        for vm in refs:
            if self._remove_leftover(vm, 'failed instance %s'
                                     % instance.name):
                with self._lock:
                    self._removed[vm] = time.monotonic()

    def _remove_leftover(self, ref: str, what: str) -> bool:
        """Remove a VM and its own disks; log each object that stays."""
        uuid, vdis = ref, []
        try:
            record = self._xapi.call('VM.get_record', ref)
            uuid = record['uuid']
            vdis = [(v, self._xapi.call('VDI.get_uuid', v))
                    for v in self._xapi.own_vdis(ref, record)]
            self._xapi.remove_vm(ref, record)
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

    def _destroy(self, instance, destroy_disks):
        with self._owning(instance, lambda: None):
            return self._remove(instance)

    def _remove(self, instance):
        try:
            vm = self._find(instance)
        except exception.InstanceNotFound:
            return None
        with self._lock:
            state = self._forget_expected(vm.ref) or vm.state
            self._refs.pop(instance.uuid, None)
            self._created.pop(instance.uuid, None)
        # An instance's VM is never a template; the state decides whether
        # it is stopped first, and XAPI's refusal corrects one out of date.
        self._xapi.remove_vm(vm.ref, vm.record or {
            'power_state': state, 'is_a_template': False,
            'is_a_snapshot': False, 'VBDs': None})
        with self._lock:
            self._removed[vm.ref] = time.monotonic()
        return mapping.state_of({'power_state': state})

    # -- leftovers -----------------------------------------------------------

    def cleanup_leftovers(self, dry_run=False):
        """Remove the VMs of spawns that did not complete, and their disks.

        A spawn names its clone ``compute-driver-spawn <owner> <instance
        uuid>`` until the VM runs, ``<owner>`` naming the process as
        :func:`compute_driver.leftovers.owner_label` does (earlier
        versions named it ``<machine>:<pid>``, or tagged the VM with
        ``other_config:compute_driver_spawning``). Such a VM is a leftover
        when that process is gone or, for this process, no longer
        spawning it. One of another machine or boot is left alone: its
        spawn may still be running there. The partial downloads in the
        host's image cache that no download holds go too (see
        :func:`compute_driver.leftovers.partial_downloads`).
        """
        with self._translate('list leftovers', None):
            records = self._xapi.call('VM.get_all_records')
            vdis = self._xapi.call('VDI.get_all_records')
        return leftovers.sweep(self.name, itertools.chain(
            self._leftover_candidates(records),
            self._leftover_vdis(vdis),
            leftovers.partial_downloads(self.image_cache_path())), dry_run)

    @staticmethod
    def _spawn_over(owner: str, uuid: str) -> tuple[bool | None, str]:
        """Whether the spawn of ``owner`` for ``uuid`` is over, and how."""
        if owner == leftovers.owner_label():
            with _BUILDING_LOCK:
                return (uuid not in _BUILDING,
                        'its spawn failed and could not remove it')
        return ((leftovers.owner_gone(owner) if '/' in owner
                 else mapping.legacy_owner_gone(owner)),
                'its spawn was interrupted in process %s' % owner)

    def _leftover_candidates(self, records: dict[str, Record]
                             ) -> typing.Iterator[leftovers.Candidate]:
        for ref, record in records.items():
            spawning = mapping.spawn_owner(record)
            if spawning is None:
                continue
            owner, uuid = spawning
            name = record.get('other_config', {}).get(
                mapping.KEY_NAME, record.get('name_label', ''))
            gone, reason = self._spawn_over(owner, uuid)
            if not gone:
                LOG.warning('VM %s (%s) is an unfinished spawn of %s; left '
                            'alone as that process may still run',
                            record['uuid'], name, owner)
                continue
            what = 'VM %s (%s) and its own disks' % (record['uuid'], name)
            yield leftovers.Candidate(what, reason, functools.partial(
                self._remove_swept, ref, what, reason))

    def _remove_swept(self, ref: str, what: str, reason: str) -> None:
        LOG.warning('Removing %s: %s', what, reason)
        with self._translate('remove leftover', None):
            self._xapi.remove_vm(ref)

    # -- host ----------------------------------------------------------------

    def get_available_nodes(self, refresh=False):
        """``[hostname of the pool master]``.

        ``refresh``, as Nova's periodic resource update asks, also reads
        the host's memory and the SR's size again.
        """
        with self._translate('read the host', None):
            if refresh:
                self._read_facts()
            else:
                self._known_facts()
        return [self._hostname()]

    def get_host_identity(self):
        """The uuid of the pool master's host record."""
        with self._translate('read the host', None):
            _, host = self._xapi.master()
        return host['uuid']

    def cleanup_host(self, host):
        watcher, self._watcher = self._watcher, None
        self._xapi.waiter = self._images.watcher = None
        if watcher is not None:
            watcher.stop()
        self._xapi.close()
        self._pool.close()
        self._long_pool.close()
        LOG.debug('Logged out of XAPI for %s', host)

    def get_host_ip_addr(self):
        with self._translate('read the host', None):
            _, host = self._xapi.master()
        return str(host['address'])

    def get_host_uptime(self):
        with self._translate('read the host', None):
            _, host = self._xapi.master()
        boot = host.get('other_config', {}).get('boot_time')
        try:
            seconds = max(0, int(time.time() - float(boot)))
        except (TypeError, ValueError):
            return ' %s up unknown' % time.strftime('%H:%M:%S')
        days, rest = divmod(seconds, 86400)
        return ' %s up %d days, %d:%02d' % (
            time.strftime('%H:%M:%S'), days, rest // 3600, rest // 60 % 60)

    def list_images(self):
        with self._translate('list images', None):
            found = self._images.list_images()
        # The image service's that /import_raw_vdi can take.
        names = {image.name for image in found}
        return found + [
            image for image in self.list_service_images()
            if image.name not in names and
            (image.container_format or 'bare') == 'bare' and
            image.disk_format in images.DISK_FORMATS]

    # -- guests without tools ------------------------------------------------

    def supports(self, operation, instance=None):
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
        with self._translate('look up', instance):
            record = self._record(self._find(instance))
        return (record['power_state'] != 'Running' or
                mapping.guest_can(record, needs))

    def _require_guest(self, vm: mapping.VM, instance: objects.Instance,
                       operation: str, verb: str) -> None:
        """Refuse a guest operation the VM's guest cannot do.

        :raises GuestFeatureMissing: naming the missing feature.
        """
        record = self._record(vm)
        if (record['power_state'] == 'Running' and
                not mapping.guest_can(record, operation)):
            raise exception.GuestFeatureMissing(
                driver=self.name, operation=verb, instance=instance.name,
                feature=mapping.GUEST_FEATURES[operation])

    # -- power operations ----------------------------------------------------

    @_owns
    def _power_off(self, vm, instance, current, timeout, retry_interval):
        if (timeout and current == power_state.RUNNING and
                self._shut_down_cleanly(vm, instance, timeout,
                                        retry_interval)):
            self._changed(vm, 'Halted')
            return
        # Forcing it off needs no record: XAPI refuses it should the VM
        # have stopped since the watcher's last report.
        self._retrying(vm, instance, 'power_off', lambda: self._xapi.call(
            'VM.hard_shutdown', vm.ref))
        self._changed(vm, 'Halted')

    def _shut_down_cleanly(self, vm: mapping.VM, instance: objects.Instance,
                           timeout: int, retry_interval: int) -> bool:
        """Ask the guest to shut down; whether it did within ``timeout``.

        Not even asked when its guest cannot: the request would time out.
        """
        record = self._fresh(vm, instance, 'power_off')
        if record['power_state'] != 'Running':
            return False
        if not mapping.guest_can(record, 'clean_shutdown'):
            LOG.info('%s lacks %s; forcing it off', instance.name,
                     mapping.GUEST_FEATURES['clean_shutdown'])
            return False
        if self._xapi.request('VM.clean_shutdown', vm.ref, timeout,
                              retry_interval):
            return True
        LOG.info('%s did not shut down within %ss; forcing it off',
                 instance.name, timeout)
        return False

    @_owns
    def _power_on(self, vm, instance):
        def start():
            if vm.state == 'Crashed':
                self._xapi.call('VM.hard_shutdown', vm.ref)
            self._xapi.task('VM.start', vm.ref, False, False)

        self._retrying(vm, instance, 'power_on', start)
        self._changed(vm, 'Running')

    # Not held back: the contract has a reboot announce nothing, and one
    # from a stopped VM starts it, which the event thread reports.
    def _reboot(self, vm, instance, kind, current):
        operation = kind.lower() + '_reboot'
        if kind == driver.REBOOT_SOFT:
            timeout = self._xconf.clean_shutdown_timeout
            record = self._fresh(vm, instance, operation)
            if not mapping.guest_can(record, 'clean_reboot'):
                LOG.warning('Instance %s lacks %s; rebooting it hard',
                            instance.name,
                            mapping.GUEST_FEATURES['clean_reboot'])
            elif timeout and self._xapi.request('VM.clean_reboot', vm.ref,
                                                timeout):
                return
            else:
                LOG.warning('Instance %s did not reboot within %ss; '
                            'rebooting it hard', instance.name, timeout)

        def hard():
            if vm.state in ('Running', 'Paused'):
                self._xapi.call('VM.hard_reboot', vm.ref)
                return
            if vm.state != 'Halted':
                # XAPI resets only a live domain; a suspended or crashed
                # one is stopped first.
                self._xapi.call('VM.hard_shutdown', vm.ref)
            self._xapi.call('VM.start', vm.ref, False, False)

        self._retrying(vm, instance, operation, hard)
        self._changed(vm, 'Running')

    def _simple(self, vm: mapping.VM, instance: objects.Instance,
                operation: str, method: str, after: str,
                *args: typing.Any) -> None:
        self._retrying(vm, instance, operation,
                       lambda: self._xapi.call(method, vm.ref, *args))
        self._changed(vm, after)

    @_owns
    def _pause(self, vm, instance):
        self._simple(vm, instance, 'pause', 'VM.pause', 'Paused')

    @_owns
    def _unpause(self, vm, instance):
        self._simple(vm, instance, 'unpause', 'VM.unpause', 'Running')

    @_owns
    def _suspend(self, vm, instance):
        self._fresh(vm, instance, 'suspend')
        self._require_guest(vm, instance, 'suspend', 'suspend')
        self._simple(vm, instance, 'suspend', 'VM.suspend', 'Suspended')

    @_owns
    def _resume(self, vm, instance):
        self._simple(vm, instance, 'resume', 'VM.resume', 'Running',
                     False, False)

    # -- snapshots -----------------------------------------------------------

    def _has_image(self, image_id):
        return (self._images.find(image_id) is not None or
                self.image_exists(image_id))

    def _snapshot(self, vm, instance, current, image_id):
        snap = self._images.snapshot(vm.ref, instance, image_id)
        try:
            self._upload_snapshot(snap, instance, image_id)
        except BaseException:
            self._remove_leftover(snap, 'failed snapshot %s' % image_id)
            raise
        if self._from_service(self._stored(vm, instance)):
            # The image service holds the snapshot, as it holds the image
            # the instance booted from (the libvirt backend keeps no copy
            # either): a copy of the disk left in the SR is space that
            # nothing -- least of all Nova, deleting the image in Glance
            # -- would ever free.
            self._remove_leftover(snap, 'snapshot %s, uploaded' % image_id)

    def _from_service(self, instance: objects.Instance) -> bool:
        """Whether the instance booted from an image service image."""
        try:
            return self._images.find(instance.image_ref) is None
        except exception.InvalidInput:
            return False  # several templates of that name: one of them

    def _delete_snapshot(self, image_id):
        with self._translate('delete snapshot', None):
            self._images.delete_snapshot(image_id)
        self.delete_snapshot_image(image_id)

    def _snapshots_of(self, instance):
        return self._images.snapshots_of(instance)

    @_owns
    def _revert(self, vm, instance, current, image_id):
        current = mapping.state_of(self._fresh(vm, instance,
                                               'revert_to_snapshot'))
        snapshot = self._images.get(image_id)
        # XAPI's revert leaves the VM halted with the snapshot's disks;
        # a running instance is started again, as the contract says.
        self._xapi.task('VM.revert', snapshot.ref)
        self._changed(vm, 'Halted')
        if current == power_state.RUNNING:
            self._xapi.task('VM.start', vm.ref, False, False)
            self._changed(vm, 'Running')

    # -- live resize and diagnostics -----------------------------------------

    def _live_resize(self, vm, instance, vcpus, memory_mb):
        record = self._fresh(vm, instance, 'live_resize')
        # Spawn pins VCPUs_max and memory_static_max to the flavor, so the
        # flavor is the ceiling, as in Nova: going higher needs a resize
        # with a reboot. Refused here, before XAPI is asked.
        for field, value, ceiling, unit in (
                ('vcpus', vcpus, int(record['VCPUs_max']), 1),
                ('memory_mb', memory_mb, int(record['memory_static_max']),
                 MiB)):
            if value is not None and value * unit > ceiling:
                raise exception.InvalidInput(
                    reason='%s=%d is above the ceiling of %d that the VM of '
                           '%s was built with: its flavor, pinned as %s at '
                           'spawn; a live resize cannot go beyond the '
                           'flavor' % (field, value, ceiling // unit,
                                       instance.name, 'VCPUs_max'
                                       if unit == 1 else 'memory_static_max'))
        if vcpus is not None:
            self._require_guest(vm, instance, 'changing_VCPUs_live',
                                'change the vCPUs of')
            self._xapi.call('VM.set_VCPUs_number_live', vm.ref, str(vcpus))
        if memory_mb is not None:
            size = str(memory_mb * MiB)
            self._xapi.call('VM.set_memory_dynamic_range', vm.ref, size,
                            size)

    def _diagnostics(self, vm, instance):
        record = self._record(vm)
        return {
            'state': power_state.name(mapping.state_of(record)),
            'driver': 'xenapi',
            'vcpus': int(record['VCPUs_at_startup']),
            'memory_mb': int(record['memory_dynamic_max']) // MiB,
            'vm_ref': vm.ref,
            'vm_uuid': record['uuid'],
            'domid': int(record['domid']),
            'disks': len(record['VBDs']),
            'vifs': len(record['VIFs']),
        }

    # -- network -------------------------------------------------------------

    @functools.cached_property
    def _vifs(self) -> xenapi_network.Vifs:
        return xenapi_network.Vifs(self._xapi, self._xconf.port_network)

    def _recorded_ports(self, record: Record) -> tuple[net_model.Port, ...]:
        return net_model.from_record(
            record['other_config'].get(xenapi_network.KEY_PORTS))

    def _record_ports(self, vm: mapping.VM,
                      ports: tuple[net_model.Port, ...]) -> None:
        key = xenapi_network.KEY_PORTS
        self._xapi.call('VM.remove_from_other_config', vm.ref, key)
        if ports:
            self._xapi.call('VM.add_to_other_config', vm.ref, key,
                            net_model.to_record(ports))
        vm.record = None

    def _live_vifs(self, vm: mapping.VM, instance: objects.Instance,
                   operation: str) -> bool:
        """Whether VIF changes are live; refused while paused or suspended.

        XAPI hot-plugs into a running domain only; a halted VM's VIFs are
        plugged when it starts.
        """
        state = self._record(vm)['power_state']
        if state not in ('Running', 'Halted'):
            raise exception.InvalidPowerState(
                operation=operation, instance=instance.name,
                current=state.lower(), expected='running, halted')
        return state == 'Running'

    def _guest_checked(self, instance: objects.Instance, verb: str,
                       act: typing.Callable[[], typing.Any]) -> typing.Any:
        try:
            return act()
        except connection.XapiCallFailed as exc:
            typed = xenapi_network.guest_failure(exc, self.name, verb,
                                                 instance.name)
            if typed is None:
                raise
            raise typed from exc

    def _interfaces(self, vm, instance):
        return self._recorded_ports(self._record(vm))

    def _plug_vifs(self, vm, instance, ports):
        # XAPI keeps VIFs with the VM and plugs them at every start, so
        # only a port without its VIF, or one unplugged from a running
        # VM, needs anything.
        record = self._record(vm)
        running = record['power_state'] == 'Running'
        vifs = self._vifs.vifs_of(vm.ref)
        by_port = {xenapi_network.port_id(v): (ref, v)
                   for ref, v in vifs.items()}
        missing = [p for p in ports if p.id not in by_port]
        for port in ports:
            found = by_port.get(port.id)
            if found is not None and running and not found[1][
                    'currently_attached']:
                self._guest_checked(instance, 'plug the ports of',
                                    lambda: self._xapi.call('VIF.plug',
                                                            found[0]))
        recorded = self._recorded_ports(record)
        known = {p.id for p in recorded}
        new = tuple(p for p in ports if p.id not in known)
        if not missing and not new:
            return
        planned = self._vifs.plan(missing, vifs)
        created = self._guest_checked(
            instance, 'plug the ports of',
            lambda: self._vifs.create(vm.ref, planned, plug=running))
        if not new:
            return
        try:
            self._record_ports(vm, recorded + new)
        except BaseException:
            self._vifs.discard(created)
            raise

    def _unplug_vifs(self, vm, instance, ports):
        if self._record(vm)['power_state'] != 'Running':
            return
        wanted = {p.id for p in ports}
        for ref, vif in self._vifs.vifs_of(vm.ref).items():
            if (xenapi_network.port_id(vif) in wanted and
                    vif['currently_attached']):
                self._guest_checked(instance, 'unplug the ports of',
                                    lambda: self._xapi.call('VIF.unplug',
                                                            ref))

    def _attach_interface(self, vm, instance, port):
        live = self._live_vifs(vm, instance, 'attach interface')
        recorded = self._recorded_ports(self._record(vm))
        planned = self._vifs.plan((port,), self._vifs.vifs_of(vm.ref))
        created = self._guest_checked(
            instance, 'attach an interface to',
            lambda: self._vifs.create(vm.ref, planned, plug=live))
        try:
            self._record_ports(vm, recorded + (port,))
        except BaseException:
            self._vifs.discard(created)
            raise

    def _detach_interface(self, vm, instance, port):
        live = self._live_vifs(vm, instance, 'detach interface')
        recorded = self._recorded_ports(self._record(vm))
        for ref, vif in self._vifs.vifs_of(vm.ref).items():
            if xenapi_network.port_id(vif) == port.id:
                self._guest_checked(
                    instance, 'detach an interface from',
                    lambda: self._vifs.remove(ref, vif, live))
        self._record_ports(vm, tuple(p for p in recorded
                                     if p.id != port.id))

    # -- volumes -------------------------------------------------------------

    def check_mountpoint(self, mountpoint):
        """``/dev/xvdb`` to ``/dev/xvdp`` (see :mod:`.volumes`)."""
        return volumes.check_mountpoint(mountpoint)

    def _volume_attachments(self, vm, instance):
        return volumes.attachments(self._record(vm))

    def _attach_volume(self, vm, instance, attachment, live):
        volumes.attach(self._xapi, vm, instance, self._record(vm),
                       attachment, live)
        vm.record = None

    def _detach_volume(self, vm, instance, attachment, live):
        volumes.detach(self._xapi, vm, self._record(vm), attachment, live)
        vm.record = None

    def _copy_volume(self, vm, instance, old, new):
        volumes.copy(self._xapi, vm, old, new)

    def _swap_volume(self, vm, instance, old, new, live):
        volumes.swap(self._xapi, vm, instance, self._record(vm), old, new)
        vm.record = None

    def _extend_volume(self, vm, instance, attachment, size, live):
        volumes.extend(self._xapi, vm, attachment, size, live)

    # -- images from the image service ---------------------------------------

    def _image_from_service(self, instance: objects.Instance
                            ) -> images.Template:
        """The image service's image, else a template or snapshot of XAPI.

        An image service image boots as a clone of ``[xenapi]
        default_template`` whose root disk is a VDI imported from it.

        :raises ImageUnacceptable: for a format XAPI cannot import.
        :raises ImageNotFound: when neither has it.
        """
        try:
            meta = self.image_for(instance)
        except image_exception.ImageNotInService:
            try:
                return self._images.get(instance.image_ref)
            except exception.ImageNotFound as exc:
                raise exception.ImageNotFound(
                    image='%s (in the %s image service or among the '
                          'templates)' % (instance.image_ref,
                                          self.image_service.name),
                    available=exc.kwargs.get('available', 'none')) from exc
        images.check_format(meta)
        template = self._images.get(self._xconf.default_template)
        return images.ServiceDisk(
            **{f.name: getattr(meta, f.name)
               for f in dataclasses.fields(objects.ImageMeta)},
            ref=template.ref, record=template.record)

    def _attach_image_disk(self, vm: str, instance: objects.Instance,
                           image: images.ServiceDisk, device: str,
                           temporary: str) -> None:
        """Give the spawning VM a root VDI filled with the image.

        The image comes verified from the host's cache; the VDI has the
        flavor's root disk size (the image's, if larger and the flavor
        says 0), is attached before a byte is imported so that removing
        the VM removes it, and is removed at once if attaching fails.
        Until it is attached it bears the spawn's ``temporary`` name, so
        a spawn killed in between leaves a VDI the sweep recognises.

        :raises ImageUnacceptable: when the disk is larger than the
            flavor's root disk, or not the format it says.
        """
        path = self.fetch_image(image)
        size = images.disk_size(image, path)
        self.check_image_fits_flavor(image.id, size, instance.flavor)
        size = max(size, instance.flavor.root_gb * 1024 ** 3)
        vdi = self._xapi.call('VDI.create', {
            'name_label': temporary,
            'name_description': 'root disk of %s from image %s'
                                % (instance.uuid, image.id),
            'SR': self._xapi.sr(self._xconf.sr_name),
            'virtual_size': str(size), 'type': 'system',
            'sharable': False, 'read_only': False,
            'other_config': {
                mapping.KEY_UUID: instance.uuid, 'image_id': image.id},
            'xenstore_data': {}, 'sm_config': {}, 'tags': []})
        try:
            self._xapi.call('VBD.create', {
                'VM': vm, 'VDI': vdi, 'userdevice': device,
                'bootable': True, 'mode': 'RW', 'type': 'Disk',
                'empty': False, 'unpluggable': False, 'other_config': {},
                'qos_algorithm_type': '', 'qos_algorithm_params': {}})
        except BaseException:
            self._xapi.call('VDI.destroy', vdi)
            raise
        self._xapi.call('VDI.set_name_label', vdi, instance.name)
        LOG.info('Importing image %s (%s, %d bytes) into VDI %s of %s',
                 image.id, image.disk_format, os.path.getsize(path), vdi,
                 instance.name)
        images.Transfers(self._xapi).import_file(
            vdi, path, image.disk_format or 'raw')

    def _upload_snapshot(self, snap: str, instance: objects.Instance,
                         image_id: str) -> None:
        """Export the snapshot's root VDI as a VHD into the image service.

        The upload is ``disk_format=vhd``, ``container_format=bare``; the
        export's VHD leaves unwritten blocks out.
        """
        vdi = self._images.snapshot_root_vdi(snap)
        images.Transfers(self._xapi).export(
            vdi, 'vhd', lambda src: self.upload_snapshot(
                instance, image_id, src, 'vhd', 'bare'))

    def _leftover_vdis(self, records: dict[str, Record]
                       ) -> typing.Iterator[leftovers.Candidate]:
        """Image VDIs a spawn created but never attached to its VM.

        Attached ones go with their VM.
        """
        for ref, record in records.items():
            spawning = mapping.spawn_owner(record)
            if spawning is None or record.get('VBDs'):
                continue
            gone, reason = self._spawn_over(*spawning)
            if not gone:
                continue
            what = 'VDI %s (%s)' % (record['uuid'], record['name_label'])
            yield leftovers.Candidate(what, reason, functools.partial(
                self._remove_swept_vdi, ref, what, reason))

    def _remove_swept_vdi(self, ref: str, what: str, reason: str) -> None:
        LOG.warning('Removing %s: %s', what, reason)
        with self._translate('remove leftover', None):
            try:
                self._xapi.call('VDI.destroy', ref)
            except connection.XapiCallFailed as exc:
                if exc.code != 'HANDLE_INVALID':
                    raise

    # -- consoles ------------------------------------------------------------

    def _vnc_console(self, vm, instance):
        records = [self._xapi.call('console.get_record', ref)
                   for ref in self._xapi.call('VM.get_consoles', vm.ref)]
        with self._pool.session() as session:
            # The pool keeps its sessions logged in while the backend
            # runs, so the proxy may use this one.
            handle = session._session
        return xen_console.vnc_console(records, handle, instance)
