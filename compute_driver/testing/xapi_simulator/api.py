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

"""XAPI's methods over the simulator's :class:`~.store.Store`.

:class:`Api` answers one XML-RPC call as XAPI does: the method name is
``<class>.<message>`` (``Async.<class>.<message>`` for a task), the first
parameter is the session reference except for the login calls, and the
answer is ``{'Status': 'Success', 'Value': ...}`` or ``{'Status':
'Failure', 'ErrorDescription': [code, params...]}``.

Per class it generates ``get_all``, ``get_all_records``, ``get_record``,
``get_by_uuid``, ``get_by_name_label`` (classes with a name), a getter for
every field, a setter for every writable field and ``add_to_``/
``remove_from_`` for every writable map. The VM power-state machine
follows XAPI's allowed operations: a call from another state fails with
``VM_BAD_POWER_STATE [vm, expected, actual]`` using XAPI's lower-case
state names.
"""

import collections
import collections.abc
import copy
import dataclasses
import logging
import random
import threading
import time
import typing
import xml.dom.minidom

from compute_driver.testing.xapi_simulator import store as db

LOG = logging.getLogger(__name__)

Handler = collections.abc.Callable[..., typing.Any]

#: Calls that take no session reference.
LOGIN_METHODS = ('session.login_with_password',
                 'session.slave_local_login_with_password')

MiB = 1024 * 1024

#: VM operation -> power states XAPI allows it from.
ALLOWED_STATES = {
    'start': ('Halted',),
    'clean_shutdown': ('Running',),
    'hard_shutdown': ('Running', 'Paused', 'Suspended'),
    'clean_reboot': ('Running',),
    'hard_reboot': ('Running', 'Paused'),
    'pause': ('Running',),
    'unpause': ('Paused',),
    'suspend': ('Running',),
    'resume': ('Suspended',),
    'clone': ('Halted', 'Suspended'),
    'copy': ('Halted', 'Suspended'),
    'provision': ('Halted',),
    'destroy': ('Halted', 'Suspended'),
    'snapshot': ('Halted', 'Running', 'Paused', 'Suspended'),
    'set_VCPUs_number_live': ('Running',),
    'set_memory_limits': ('Halted',),
    'set_VCPUs_max': ('Halted',),
    'set_memory_dynamic_range': ('Halted', 'Running'),
}


@dataclasses.dataclass
class Fault:
    """An injected failure: the ``nth`` call of ``method`` from now."""

    method: str
    code: str
    params: tuple[str, ...] = ()
    nth: int = 1
    seen: int = 0


@dataclasses.dataclass
class Settings:
    """What a test may change while the simulator runs.

    :param users: user name -> password.
    :param max_idle: seconds a session may stay unused before it is
        invalid; 0 keeps sessions forever.
    :param master_address: when set, this server is a pool member and
        answers every login with ``HOST_IS_SLAVE [master_address]``.
    """

    users: dict[str, str] = dataclasses.field(
        default_factory=lambda: {'root': 'password'})
    max_idle: float = 0.0
    master_address: str | None = None
    faults: list[Fault] = dataclasses.field(default_factory=list)


class Api:
    """Every method of the simulated XAPI.

    :param store: the object database, shared with a member's Api.
    :param settings: the knobs of this server.
    """

    def __init__(self, store: db.Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        # session ref -> monotonic time of its last call
        self.last_active: dict[str, float] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.methods: dict[str, tuple[Handler, int]] = {}
        for cls, spec in db.CLASSES.items():
            self._generate(cls, spec)
        self._add_specific()

    # -- dispatch ----------------------------------------------------------

    def dispatch(self, method: str, params: collections.abc.Sequence[
            typing.Any]) -> dict[str, typing.Any]:
        """Answer one call with XAPI's result structure."""
        try:
            return {'Status': 'Success', 'Value': self.call(method, params)}
        except db.ApiError as exc:
            return {'Status': 'Failure', 'ErrorDescription': exc.description}

    def call(self, method: str,
             params: collections.abc.Sequence[typing.Any]) -> typing.Any:
        """Run one call; :class:`~.store.ApiError` for a XAPI failure."""
        is_async = method.startswith('Async.')
        name = method[len('Async.'):] if is_async else method
        # 'from' is a Python keyword, so the SDK's callers write
        # event_from; XAPI accepts both spellings.
        name = 'event.from' if name == 'event_from' else name
        with self.store.lock:
            self.calls[name] += 1
            self._maybe_fail(name)
        if name in LOGIN_METHODS:
            return self._login(name, params)
        if name not in self.methods:
            raise db.ApiError('MESSAGE_METHOD_UNKNOWN', method)
        handler, count = self.methods[name]
        if len(params) - 1 not in self._counts(name, count):
            raise db.ApiError('MESSAGE_PARAMETER_COUNT_MISMATCH', method,
                              count + 1, len(params))
        self._check_session(params[0])
        if is_async:
            return self._async(name, handler, params[1:])
        if name == 'session.logout':
            self.logout(params[0])
            return ''
        if name == 'event.from':
            # Blocks; must not hold the lock while waiting.
            return handler(*params[1:], session=params[0])
        with self.store.lock:
            return handler(*params[1:])

    @staticmethod
    def _counts(name: str, count: int) -> tuple[int, ...]:
        # Messages that gained a parameter in later API versions accept
        # both forms, as XAPI does.
        if name == 'VM.snapshot':
            return (2, 3)
        return (count,)

    def _maybe_fail(self, name: str) -> None:
        for fault in list(self.settings.faults):
            if fault.method == name:
                fault.seen += 1
                if fault.seen >= fault.nth:
                    self.settings.faults.remove(fault)
                    raise db.ApiError(fault.code, *fault.params)

    def _login(self, name: str,
               params: collections.abc.Sequence[typing.Any]) -> str:
        if not 2 <= len(params) <= 4:
            raise db.ApiError('MESSAGE_PARAMETER_COUNT_MISMATCH', name, 4,
                              len(params))
        if self.settings.master_address:
            raise db.ApiError('HOST_IS_SLAVE', self.settings.master_address)
        user, password = params[0], params[1]
        if self.settings.users.get(user) != password:
            raise db.ApiError('SESSION_AUTHENTICATION_FAILED', user,
                              'Authentication failure')
        with self.store.lock:
            master = self._master()
            ref = self.store.create('session', {
                'this_host': master, 'this_user': db.NULL_REF,
                'last_active': db.now(),
                'originator': str(params[3]) if len(params) > 3 else ''})
            self.last_active[ref] = time.monotonic()
            return ref

    def _check_session(self, ref: object) -> None:
        with self.store.lock:
            last = (self.last_active.get(ref) if isinstance(ref, str)
                    else None)
            now = time.monotonic()
            if last is None or (self.settings.max_idle and
                                now - last > self.settings.max_idle):
                self._drop_session(ref)
                raise db.ApiError('SESSION_INVALID', ref)
            self.last_active[typing.cast(str, ref)] = now

    def _drop_session(self, ref: object) -> None:
        if isinstance(ref, str) and ref in self.last_active:
            del self.last_active[ref]
            self.store.destroy('session', ref)

    def invalidate_sessions(self) -> int:
        """Log every session out, as a xapi restart does.

        :returns: how many sessions there were.
        """
        with self.store.lock:
            refs = list(self.last_active)
            for ref in refs:
                self._drop_session(ref)
            self.store.changed.notify_all()
            return len(refs)

    def _async(self, name: str, handler: Handler,
               args: collections.abc.Sequence[typing.Any]) -> str:
        with self.store.lock:
            task = self.store.create('task', {
                'name_label': 'Async.' + name, 'status': 'pending',
                'created': db.now(), 'resident_on': self._master()})

        def run() -> None:
            try:
                with self.store.lock:
                    result = handler(*args)
                fields = {'status': 'success', 'progress': 1.0,
                          'result': ('<value>%s</value>' % result
                                     if result is not None else ''),
                          'finished': db.now()}
            except db.ApiError as exc:
                fields = {'status': 'failure', 'progress': 1.0,
                          'error_info': exc.description,
                          'finished': db.now()}
            with self.store.lock:
                if task in self.store.table('task'):
                    self.store.update('task', task, **fields)

        threading.Thread(target=run, name='xapi-sim-' + name,
                         daemon=True).start()
        return task

    # -- generated per-class messages --------------------------------------

    def _add(self, name: str, handler: Handler, count: int) -> None:
        self.methods[name] = (handler, count)

    def _generate(self, cls: str, spec: db.ClassSpec) -> None:
        table = self.store.table

        def record(ref: str) -> db.Record:
            return copy.deepcopy(self.store.get(cls, ref))

        def by_uuid(uuid: str) -> str:
            for ref, rec in table(cls).items():
                if rec['uuid'] == uuid:
                    return ref
            raise db.ApiError('UUID_INVALID', cls, uuid)

        self._add(cls + '.get_all', lambda: list(table(cls)), 0)
        self._add(cls + '.get_all_records',
                  lambda: copy.deepcopy(table(cls)), 0)
        self._add(cls + '.get_record', record, 1)
        self._add(cls + '.get_by_uuid', by_uuid, 1)
        if spec.has_name:
            self._add(cls + '.get_by_name_label', lambda label: [
                ref for ref, rec in table(cls).items()
                if rec['name_label'] == label], 1)
        for field in list(spec.defaults) + ['uuid']:
            self._add('%s.get_%s' % (cls, field),
                      self._getter(cls, field), 1)
        for field in spec.writable:
            self._add('%s.set_%s' % (cls, field),
                      self._setter(cls, field), 2)
        for field in spec.maps:
            self._add('%s.add_to_%s' % (cls, field),
                      self._map_adder(cls, field), 3)
            self._add('%s.remove_from_%s' % (cls, field),
                      self._map_remover(cls, field), 2)

    def _getter(self, cls: str, field: str) -> Handler:
        return lambda ref: copy.deepcopy(self.store.get(cls, ref)[field])

    def _setter(self, cls: str, field: str) -> Handler:
        def set_field(ref: str, value: typing.Any) -> str:
            current = self.store.get(cls, ref)[field]
            if type(value) is not type(current):
                raise db.ApiError('FIELD_TYPE_ERROR', field)
            self.store.update(cls, ref, **{field: copy.deepcopy(value)})
            return ''
        return set_field

    def _map_adder(self, cls: str, field: str) -> Handler:
        def add(ref: str, key: str, value: str) -> str:
            mapping = self.store.get(cls, ref)[field]
            if key in mapping:
                raise db.ApiError('MAP_DUPLICATE_KEY', cls, field, ref, key)
            mapping[str(key)] = str(value)
            self.store.touch(cls, ref)
            return ''
        return add

    def _map_remover(self, cls: str, field: str) -> Handler:
        def remove(ref: str, key: str) -> str:
            self.store.get(cls, ref)[field].pop(key, None)
            self.store.touch(cls, ref)
            return ''
        return remove

    # -- specific messages -------------------------------------------------

    def _add_specific(self) -> None:
        add = self._add
        # Both need the caller's session, which call() passes as-is.
        add('session.logout', lambda: '', 0)
        add('session.get_this_host', self._session_host, 1)
        add('event.from', self._event_from, 3)
        add('event.get_current_id', lambda: str(self.store.event_id), 0)
        for op in ('clean_shutdown', 'hard_shutdown', 'clean_reboot',
                   'hard_reboot', 'pause', 'unpause', 'suspend',
                   'provision', 'destroy'):
            add('VM.' + op, self._vm_op(op), 1)
        add('VM.start', self._vm_start, 3)
        add('VM.resume', self._vm_resume, 3)
        add('VM.clone', self._vm_clone, 2)
        add('VM.copy', self._vm_copy, 3)
        add('VM.snapshot', self._vm_snapshot, 2)
        add('VM.revert', self._vm_revert, 1)
        add('VM.set_VCPUs_number_live', self._vm_set_vcpus_live, 2)
        add('VM.set_VCPUs_max', self._vm_set_vcpus_max, 2)
        add('VM.set_VCPUs_at_startup', self._vm_set_vcpus_at_startup, 2)
        add('VM.set_memory_dynamic_range', self._vm_set_dynamic_range, 3)
        add('VM.set_memory_limits', self._vm_set_memory_limits, 5)
        add('VIF.create', self._vif_create, 1)
        add('VIF.destroy', self._device_destroy('VIF'), 1)
        add('VBD.create', self._vbd_create, 1)
        add('VBD.destroy', self._device_destroy('VBD'), 1)
        add('VDI.create', self._vdi_create, 1)
        add('VDI.destroy', self._vdi_destroy, 1)
        add('task.destroy', lambda ref: self._destroy('task', ref), 1)
        add('task.cancel', self._task_cancel, 1)

    def _master(self) -> str:
        pools = list(self.store.table('pool').values())
        return pools[0]['master'] if pools else db.NULL_REF

    def _session_host(self, ref: str) -> str:
        return self.store.get('session', ref)['this_host']

    def logout(self, ref: object) -> None:
        with self.store.lock:
            self._drop_session(ref)
            self.store.changed.notify_all()

    def _destroy(self, cls: str, ref: str) -> str:
        self.store.destroy(cls, ref)
        return ''

    def _task_cancel(self, ref: str) -> str:
        task = self.store.get('task', ref)
        if task['status'] != 'pending':
            raise db.ApiError('OPERATION_NOT_ALLOWED',
                              'task %s is not pending' % ref)
        self.store.update('task', ref, status='cancelled',
                          finished=db.now())
        return ''

    # -- events ------------------------------------------------------------

    def _event_from(self, classes: list[str], token: str, timeout: float,
                    session: str) -> dict[str, typing.Any]:
        try:
            since = int(str(token).split(',')[0] or -1)
        except ValueError:
            raise db.ApiError('EVENT_FROM_TOKEN_PARSE_FAILURE',
                              token) from None
        wanted = {str(c).lower() for c in classes}
        everything = '*' in wanted
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self.store.lock:
            if since < 0:
                # An empty token: every object of the classes, as "add".
                events: list[dict[str, typing.Any]] = []
                for cls, table in self.store.objects.items():
                    if everything or cls.lower() in wanted:
                        events.extend(self._event(0, cls, 'add', ref, rec)
                                      for ref, rec in table.items())
                return self._events_result(events, wanted)
            if since + 1 < self.store.oldest_event:
                raise db.ApiError('EVENTS_LOST')
            while True:
                if session not in self.last_active:
                    raise db.ApiError('SESSION_INVALID', session)
                latest: dict[tuple[str, str], tuple] = {}
                for entry in self.store.events:
                    if entry[0] > since and (everything or
                                             entry[1].lower() in wanted):
                        # XAPI coalesces: one event per object, the latest.
                        latest.pop((entry[1], entry[3]), None)
                        latest[(entry[1], entry[3])] = entry
                remaining = deadline - time.monotonic()
                if latest or remaining <= 0:
                    events = [self._event(*entry) for entry in
                              latest.values()]
                    return self._events_result(events, wanted)
                self.store.changed.wait(remaining)

    @staticmethod
    def _event(event_id: int, cls: str, operation: str, ref: str,
               record: db.Record | None) -> dict[str, typing.Any]:
        event = {'id': str(event_id), 'timestamp': db.now(),
                 'class': cls.lower(), 'operation': operation, 'ref': ref}
        if record is not None and operation != 'del':
            event['snapshot'] = copy.deepcopy(record)
        return event

    def _events_result(self, events: list[dict[str, typing.Any]],
                       wanted: set[str]) -> dict[str, typing.Any]:
        counts = {cls.lower(): len(table)
                  for cls, table in self.store.objects.items()
                  if '*' in wanted or cls.lower() in wanted}
        return {'events': events, 'valid_ref_counts': counts,
                'token': '%020d,%020d' % (self.store.event_id, 0)}

    # -- VM ----------------------------------------------------------------

    def _vm(self, ref: str, operation: str) -> db.Record:
        vm = self.store.get('VM', ref)
        if vm['is_control_domain'] and operation != 'snapshot':
            raise db.ApiError('OPERATION_NOT_ALLOWED',
                              'cannot %s the control domain' % operation)
        allowed = ALLOWED_STATES.get(operation)
        if allowed and vm['power_state'] not in allowed:
            raise db.ApiError('VM_BAD_POWER_STATE', ref,
                              allowed[0].lower(), vm['power_state'].lower())
        blocked = vm['blocked_operations'].get(operation)
        if blocked is not None:
            raise db.ApiError('OPERATION_BLOCKED', ref, blocked)
        return vm

    def _vm_op(self, operation: str) -> Handler:
        return lambda ref: getattr(self, '_do_' + operation)(
            ref, self._vm(ref, operation))

    def _metrics(self, vm: db.Record, **fields: object) -> None:
        ref = vm['metrics']
        if ref in self.store.table('VM_metrics'):
            self.store.update('VM_metrics', ref, **fields)

    def _attach(self, vm: db.Record, attached: bool) -> None:
        for cls, field in (('VBD', 'VBDs'), ('VIF', 'VIFs')):
            for dev in vm[field]:
                self.store.update(cls, dev, currently_attached=attached)

    def _power(self, ref: str, vm: db.Record, state: str) -> None:
        running = state in ('Running', 'Paused')
        host = self._master() if state != 'Halted' else db.NULL_REF
        domid = vm['domid']
        if running and domid == '-1':
            domid = str(random.randint(1, 30000))
        elif not running:
            domid = '-1'
        self.store.update('VM', ref, power_state=state, resident_on=host,
                          domid=domid)
        if state == 'Halted':
            self._metrics(vm, VCPUs_number='0', memory_actual='0',
                          state=[])
        elif running:
            self._metrics(vm, VCPUs_number=vm['VCPUs_at_startup'],
                          memory_actual=vm['memory_dynamic_max'],
                          state=[state.lower()])
        self._attach(vm, state != 'Halted')

    def _check_free_memory(self, ref: str, vm: db.Record) -> None:
        needed = int(vm['memory_static_max'])
        hosts = self.store.table('host')
        host = hosts.get(self._master())
        if host is None:
            return
        total = int(self.store.get('host_metrics', host['metrics'])
                    ['memory_total'])
        used = sum(int(v['memory_dynamic_max'])
                   for r, v in self.store.table('VM').items()
                   if r != ref and v['power_state'] in (
                       'Running', 'Paused') and not v['is_control_domain'])
        if needed > total - used:
            raise db.ApiError('HOST_NOT_ENOUGH_FREE_MEMORY', needed,
                              total - used)

    def _not_template(self, ref: str, vm: db.Record) -> None:
        if vm['is_a_template']:
            raise db.ApiError('VM_IS_TEMPLATE', ref)

    def _vm_start(self, ref: str, start_paused: bool, force: bool) -> str:
        vm = self.store.get('VM', ref)
        self._not_template(ref, vm)
        vm = self._vm(ref, 'start')
        self._check_free_memory(ref, vm)
        self._power(ref, vm, 'Paused' if start_paused else 'Running')
        self._metrics(vm, start_time=db.now())
        return ''

    def _vm_resume(self, ref: str, start_paused: bool, force: bool) -> str:
        vm = self._vm(ref, 'resume')
        self._check_free_memory(ref, vm)
        self._power(ref, vm, 'Paused' if start_paused else 'Running')
        return ''

    def _do_clean_shutdown(self, ref: str, vm: db.Record) -> str:
        self._power(ref, vm, 'Halted')
        return ''

    _do_hard_shutdown = _do_clean_shutdown

    def _do_clean_reboot(self, ref: str, vm: db.Record) -> str:
        self._metrics(vm, start_time=db.now())
        return ''

    def _do_hard_reboot(self, ref: str, vm: db.Record) -> str:
        self._power(ref, vm, 'Running')
        self._metrics(vm, start_time=db.now())
        return ''

    def _do_pause(self, ref: str, vm: db.Record) -> str:
        self._power(ref, vm, 'Paused')
        return ''

    def _do_unpause(self, ref: str, vm: db.Record) -> str:
        self._power(ref, vm, 'Running')
        return ''

    def _do_suspend(self, ref: str, vm: db.Record) -> str:
        self._power(ref, vm, 'Suspended')
        return ''

    def _do_destroy(self, ref: str, vm: db.Record) -> str:
        # XAPI leaves the VDIs: disks outlive their VM unless destroyed.
        for vbd in list(vm['VBDs']):
            self.store.destroy('VBD', vbd)
        for vif in list(vm['VIFs']):
            self.store.destroy('VIF', vif)
        if vm['metrics'] in self.store.table('VM_metrics'):
            self.store.destroy('VM_metrics', vm['metrics'])
        self.store.destroy('VM', ref)
        return ''

    def _new_vm(self, source: db.Record, **fields: typing.Any) -> str:
        record = copy.deepcopy(source)
        for field in ('uuid', 'VBDs', 'VIFs', 'snapshots', 'children',
                      'consoles', 'crash_dumps', 'current_operations'):
            record.pop(field, None)
        record.update(power_state='Halted', domid='-1',
                      resident_on=db.NULL_REF, is_default_template=False,
                      is_a_snapshot=False, snapshot_of=db.NULL_REF,
                      snapshot_time='')
        record['metrics'] = self.store.create('VM_metrics', {
            'install_time': db.now()})
        record.update(fields)
        return self.store.create('VM', record)

    def _copy_devices(self, source: db.Record, target: str,
                      vdi_fields: dict[str, typing.Any],
                      sr: str | None = None) -> None:
        for vbd_ref in source['VBDs']:
            vbd = self.store.get('VBD', vbd_ref)
            vdi = db.NULL_REF
            if not vbd['empty'] and vbd['VDI'] in self.store.table('VDI'):
                original = self.store.get('VDI', vbd['VDI'])
                if original['sharable'] or original['read_only']:
                    vdi = vbd['VDI']
                else:
                    vdi = self._copy_vdi(vbd['VDI'], original, sr,
                                         vdi_fields)
            self._create_vbd(dict(vbd, VM=target, VDI=vdi,
                                  currently_attached=False))
        for vif_ref in source['VIFs']:
            vif = self.store.get('VIF', vif_ref)
            self._vif_create(dict(vif, VM=target, MAC='',
                                  currently_attached=False))

    def _copy_vdi(self, ref: str, original: db.Record, sr: str | None,
                  fields: dict[str, typing.Any]) -> str:
        record = copy.deepcopy(original)
        for field in ('uuid', 'VBDs', 'snapshots'):
            record.pop(field, None)
        record.update(is_a_snapshot=False, snapshot_of=db.NULL_REF,
                      snapshot_time='')
        if sr:
            record['SR'] = sr
        record.update({k: (ref if v is ... else v)
                       for k, v in fields.items()})
        return self._vdi_create(record)

    def _vm_clone(self, ref: str, new_name: str) -> str:
        vm = self._vm(ref, 'clone')
        new = self._new_vm(vm, name_label=new_name,
                           is_a_template=vm['is_a_template'], parent=ref)
        self._copy_devices(vm, new, {})
        return new

    def _vm_copy(self, ref: str, new_name: str, sr: str) -> str:
        vm = self._vm(ref, 'copy')
        if sr != db.NULL_REF:
            self.store.get('SR', sr)
        new = self._new_vm(vm, name_label=new_name, parent=ref)
        self._copy_devices(vm, new, {},
                           sr if sr != db.NULL_REF else None)
        return new

    def _vm_snapshot(self, ref: str, new_name: str,
                     ignore_vdis: list[str] | None = None) -> str:
        vm = self.store.get('VM', ref)
        if vm['is_a_snapshot']:
            raise db.ApiError('OPERATION_NOT_ALLOWED',
                              'cannot snapshot a snapshot')
        self._not_template(ref, vm)
        vm = self._vm(ref, 'snapshot')
        stamp = db.now()
        snap = self._new_vm(vm, name_label=new_name, is_a_template=True,
                            is_a_snapshot=True, snapshot_of=ref,
                            snapshot_time=stamp)
        self._copy_devices(vm, snap, {'is_a_snapshot': True,
                                      'snapshot_of': ...,
                                      'snapshot_time': stamp})
        return snap

    def _vm_revert(self, snapshot: str) -> str:
        snap = self.store.get('VM', snapshot)
        if not snap['is_a_snapshot']:
            raise db.ApiError('OPERATION_NOT_ALLOWED',
                              'VM %s is not a snapshot' % snapshot)
        target = snap['snapshot_of']
        if target not in self.store.table('VM'):
            raise db.ApiError('VM_REVERT_FAILED', snapshot, target)
        vm = self.store.get('VM', target)
        if vm['power_state'] != 'Halted':
            self._power(target, vm, 'Halted')
        # The VM's disks are replaced by copies of the snapshot's; the old
        # ones are destroyed, as XAPI's revert does.
        for vbd_ref in list(vm['VBDs']):
            vbd = self.store.get('VBD', vbd_ref)
            old_vdi = vbd['VDI']
            self.store.destroy('VBD', vbd_ref)
            if old_vdi in self.store.table('VDI'):
                old = self.store.get('VDI', old_vdi)
                if not old['sharable'] and not old['VBDs']:
                    self._vdi_destroy(old_vdi)
        for vbd_ref in snap['VBDs']:
            vbd = self.store.get('VBD', vbd_ref)
            vdi = vbd['VDI']
            if not vbd['empty'] and vdi in self.store.table('VDI'):
                source = self.store.get('VDI', vdi)
                if not source['sharable']:
                    vdi = self._copy_vdi(vdi, source, None, {})
            self._create_vbd(dict(vbd, VM=target, VDI=vdi,
                                  currently_attached=False))
        fields = ('memory_static_max', 'memory_static_min',
                  'memory_dynamic_max', 'memory_dynamic_min',
                  'memory_target', 'VCPUs_max', 'VCPUs_at_startup')
        self.store.update('VM', target, **{f: snap[f] for f in fields})
        return ''

    def _check_memory(self, smin: int, dmin: int, dmax: int,
                      smax: int) -> None:
        if not 0 < smin <= dmin <= dmax <= smax:
            raise db.ApiError(
                'MEMORY_CONSTRAINT_VIOLATION',
                'Memory limits must satisfy: static_min <= dynamic_min <= '
                'dynamic_max <= static_max')

    def _vm_set_dynamic_range(self, ref: str, dmin: str, dmax: str) -> str:
        vm = self._vm(ref, 'set_memory_dynamic_range')
        low, high = int(dmin), int(dmax)
        self._check_memory(int(vm['memory_static_min']), low, high,
                           int(vm['memory_static_max']))
        self.store.update('VM', ref, memory_dynamic_min=str(low),
                          memory_dynamic_max=str(high),
                          memory_target=str(high))
        if vm['power_state'] == 'Running':
            self._metrics(vm, memory_actual=str(high))
        return ''

    def _vm_set_memory_limits(self, ref: str, smin: str, smax: str,
                              dmin: str, dmax: str) -> str:
        self._vm(ref, 'set_memory_limits')
        values = [int(v) for v in (smin, dmin, dmax, smax)]
        self._check_memory(*values)
        self.store.update('VM', ref, memory_static_min=str(values[0]),
                          memory_dynamic_min=str(values[1]),
                          memory_dynamic_max=str(values[2]),
                          memory_static_max=str(values[3]),
                          memory_target=str(values[2]))
        return ''

    def _vcpus(self, value: object, maximum: int) -> int:
        count = int(str(value))
        if not 1 <= count <= maximum:
            raise db.ApiError('INVALID_VALUE', 'VCPU', value)
        return count

    def _vm_set_vcpus_live(self, ref: str, value: str) -> str:
        vm = self._vm(ref, 'set_VCPUs_number_live')
        count = self._vcpus(value, int(vm['VCPUs_max']))
        self.store.update('VM', ref, VCPUs_at_startup=str(count))
        self._metrics(vm, VCPUs_number=str(count))
        return ''

    def _vm_set_vcpus_max(self, ref: str, value: str) -> str:
        vm = self._vm(ref, 'set_VCPUs_max')
        count = self._vcpus(value, 64)
        if count < int(vm['VCPUs_at_startup']):
            raise db.ApiError('INVALID_VALUE', 'VCPU', value)
        self.store.update('VM', ref, VCPUs_max=str(count))
        return ''

    def _vm_set_vcpus_at_startup(self, ref: str, value: str) -> str:
        vm = self.store.get('VM', ref)
        count = self._vcpus(value, int(vm['VCPUs_max']))
        self.store.update('VM', ref, VCPUs_at_startup=str(count))
        return ''

    def _do_provision(self, ref: str, vm: db.Record) -> str:
        """Create the disks the template's ``other_config:disks`` lists.

        The key holds XML such as ``<provision><disk device="0"
        size="8589934592" sr="" bootable="true" type="system"/>
        </provision>``; XAPI removes it once the disks exist.
        """
        spec = vm['other_config'].get('disks')
        if not spec:
            return ''
        try:
            disks = xml.dom.minidom.parseString(spec).getElementsByTagName(
                'disk')
        except Exception:
            raise db.ApiError('INVALID_VALUE', 'disks', spec) from None
        pools = list(self.store.table('pool').values())
        default_sr = pools[0]['default_SR'] if pools else db.NULL_REF
        for disk in disks:
            sr_uuid = disk.getAttribute('sr')
            sr = default_sr
            if sr_uuid:
                sr = next((r for r, rec in self.store.table('SR').items()
                           if rec['uuid'] == sr_uuid), db.NULL_REF)
            if sr not in self.store.table('SR'):
                raise db.ApiError('UUID_INVALID', 'SR', sr_uuid)
            vdi = self._vdi_create({
                'name_label': '%s %s' % (vm['name_label'],
                                         disk.getAttribute('device')),
                'SR': sr, 'virtual_size': disk.getAttribute('size') or '0',
                'type': disk.getAttribute('type') or 'system',
                'sharable': disk.getAttribute('sharable') == 'true'})
            self._create_vbd({
                'VM': ref, 'VDI': vdi,
                'userdevice': disk.getAttribute('device') or '0',
                'bootable': disk.getAttribute('bootable') == 'true',
                'type': 'Disk', 'mode': 'RW'})
        other = dict(vm['other_config'])
        other.pop('disks', None)
        self.store.update('VM', ref, other_config=other)
        return ''

    # -- devices and disks -------------------------------------------------

    def _vif_create(self, record: db.Record) -> str:
        self.store.get('VM', record.get('VM'))
        self.store.get('network', record.get('network'))
        record = {k: v for k, v in record.items() if k != 'uuid'}
        if not record.get('MAC'):
            record['MAC'] = '02:' + ':'.join(
                '%02x' % random.randint(0, 255) for _ in range(5))
        return self.store.create('VIF', record)

    def _create_vbd(self, record: db.Record) -> str:
        record = {k: v for k, v in record.items() if k != 'uuid'}
        return self.store.create('VBD', record)

    def _vbd_create(self, record: db.Record) -> str:
        self.store.get('VM', record.get('VM'))
        if record.get('VDI', db.NULL_REF) != db.NULL_REF:
            self.store.get('VDI', record.get('VDI'))
        return self._create_vbd(record)

    def _device_destroy(self, cls: str) -> Handler:
        def destroy(ref: str) -> str:
            if self.store.get(cls, ref)['currently_attached']:
                raise db.ApiError('OPERATION_NOT_ALLOWED',
                                  '%s %s is attached' % (cls, ref))
            self.store.destroy(cls, ref)
            return ''
        return destroy

    def _vdi_create(self, record: db.Record) -> str:
        sr_ref = str(record.get('SR'))
        sr = self.store.get('SR', sr_ref)
        size = int(record.get('virtual_size') or 0)
        free = int(sr['physical_size']) - int(sr['physical_utilisation'])
        if size > free:
            raise db.ApiError('SR_FULL', size, free)
        record = {k: v for k, v in record.items() if k != 'uuid'}
        record['virtual_size'] = str(size)
        record['physical_utilisation'] = str(size)
        ref = self.store.create('VDI', record)
        self.store.update('SR', sr_ref, physical_utilisation=str(
            int(sr['physical_utilisation']) + size))
        return ref

    def _vdi_destroy(self, ref: str) -> str:
        vdi = self.store.get('VDI', ref)
        for vbd in list(vdi['VBDs']):
            if self.store.get('VBD', vbd)['currently_attached']:
                raise db.ApiError('VDI_IN_USE', ref, 'destroy')
        for vbd in list(vdi['VBDs']):
            self.store.destroy('VBD', vbd)
        sr = self.store.table('SR').get(vdi['SR'])
        self.store.destroy('VDI', ref)
        if sr is not None:
            self.store.update('SR', vdi['SR'], physical_utilisation=str(
                max(0, int(sr['physical_utilisation']) -
                    int(vdi['physical_utilisation']))))
        return ''
