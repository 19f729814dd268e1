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

import bisect
import collections
import collections.abc
import copy
import dataclasses
import logging
import queue
import random
import re
import threading
import time
import typing
import xml.dom.minidom

from compute_driver.testing.xapi_simulator import consoles
from compute_driver.testing.xapi_simulator import store as db
from compute_driver.testing.xapi_simulator import vbd as vbd_ops
from compute_driver.testing.xapi_simulator import vdi_http
from compute_driver.testing.xapi_simulator import vdis as vdi_ops
from compute_driver.testing.xapi_simulator import vifs
from compute_driver.testing.xapi_simulator import where
from compute_driver.testing.xapi_simulator import wire

LOG = logging.getLogger(__name__)

Handler = collections.abc.Callable[..., typing.Any]

#: Calls that take no session reference.
LOGIN_METHODS = ('session.login_with_password',
                 'session.slave_local_login_with_password')

MiB = 1024 * 1024

#: XAPI's vm_operations -> the power states it allows them from, in
#: XAPI's order (xapi_vm_lifecycle.ml): VM_BAD_POWER_STATE lists them.
ALLOWED_STATES = {
    'start': ('Halted',),
    'provision': ('Halted',),
    'changing_VCPUs': ('Halted',),
    'changing_memory_limits': ('Halted',),
    'changing_static_range': ('Halted',),
    'unpause': ('Paused',),
    'resume': ('Suspended',),
    'clean_shutdown': ('Running',),
    'clean_reboot': ('Running',),
    'pause': ('Running',),
    'suspend': ('Running',),
    'changing_VCPUs_live': ('Running',),
    'changing_dynamic_range': ('Halted', 'Running'),
    'clone': ('Halted', 'Suspended'),
    'copy': ('Halted', 'Suspended'),
    'destroy': ('Halted', 'Suspended'),
    'hard_reboot': ('Paused', 'Running'),
    'hard_shutdown': ('Paused', 'Suspended', 'Running'),
    'snapshot': ('Halted', 'Paused', 'Suspended', 'Running'),
    'revert': ('Halted', 'Paused', 'Suspended', 'Running'),
}

#: Messages -> the vm_operation XAPI checks them as.
OPERATION_OF = {
    'VM.set_VCPUs_number_live': 'changing_VCPUs_live',
    'VM.set_VCPUs_max': 'changing_VCPUs',
    'VM.set_memory_limits': 'changing_memory_limits',
    'VM.set_memory_static_range': 'changing_static_range',
    'VM.set_memory_dynamic_range': 'changing_dynamic_range',
    **{'VM.' + op: op for op in (
        'start', 'provision', 'unpause', 'resume', 'clean_shutdown',
        'clean_reboot', 'pause', 'suspend', 'clone', 'copy', 'destroy',
        'hard_reboot', 'hard_shutdown', 'snapshot', 'revert')},
}

#: What a template (not a snapshot) still allows.
TEMPLATE_OPERATIONS = frozenset((
    'changing_dynamic_range', 'changing_static_range',
    'changing_memory_limits', 'changing_VCPUs', 'clone', 'copy',
    'provision'))
#: What a snapshot still allows.
SNAPSHOT_OPERATIONS = frozenset((
    'revert', 'clone', 'copy', 'destroy', 'hard_shutdown'))

#: The ``VM_guest_metrics.other`` features a guest agent with PV drivers
#: reports, and the operations that need them (check_op_for_feature).
GUEST_FEATURES = {'feature-shutdown': '1', 'feature-poweroff': '1',
                  'feature-reboot': '1', 'feature-suspend': '1',
                  'feature-vcpu-hotplug': '1', 'has-vendor-device': '0'}
NEEDS_FEATURE = {
    'clean_shutdown': ('feature-shutdown', 'feature-poweroff'),
    'clean_reboot': ('feature-shutdown', 'feature-reboot'),
    'suspend': ('feature-suspend',),
    'changing_VCPUs_live': ('feature-vcpu-hotplug',),
}

#: Simulator modes: ``xapi`` behaves as XAPI does; ``lenient`` also
#: provisions disks whose ``sr`` is empty on the pool's default SR, as
#: ``xe vm-install`` would, for tools written against older simulators.
MODES = ('xapi', 'lenient')


@dataclasses.dataclass
class Fault:
    """An injected failure: the ``nth`` call of ``method`` from now."""

    method: str
    code: str
    params: tuple[str, ...] = ()
    nth: int = 1
    seen: int = 0


class Hold:
    """Keeps the next call of ``method`` in progress until released.

    A synchronous call does not answer until then; an Async one leaves
    its task ``pending``, and cancelling the task ends it without effect.
    """

    def __init__(self, method: str, cancellable: bool = True,
                 changed: threading.Condition | None = None) -> None:
        self.method = method
        # What a change of the task (its cancellation) notifies: the
        # store's. The held call waits on it rather than polling.
        self._changed = changed or threading.Condition(threading.RLock())
        #: Whether cancelling the task ends the operation. XAPI cannot
        #: stop every operation: one that is not cancellable goes on and
        #: completes once released.
        self.cancellable = cancellable
        #: Set once the call arrived and is being held.
        self.reached = threading.Event()
        #: Set once the held call ended, by running or by cancellation.
        self.finished = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        with self._changed:
            self._released.set()
            self._changed.notify_all()

    def wait(self, cancelled: collections.abc.Callable[[], bool]) -> bool:
        """Block until released; ``False`` if ``cancelled()`` first.

        A cancellation wins over a release that comes before this thread
        woke up to see it: XAPI never completes a cancelled operation.
        """
        self.reached.set()
        with self._changed:
            self._changed.wait_for(lambda: self._released.is_set() or (
                self.cancellable and cancelled()))
            return not (self.cancellable and cancelled())


#: The ``X-Http-Other-Config-<key>`` headers of the request each thread
#: answers: XAPI copies them into the ``other_config`` of the call's task,
#: as ``http:<key>``.
REQUEST = threading.local()


def _request_other_config() -> dict[str, str]:
    return {'http:' + key: value for key, value in
            (getattr(REQUEST, 'other_config', None) or {}).items()}


class _Workers:
    """Daemon threads that run the operations of Async calls.

    An idle one takes the next operation, so an Async call answers with
    its task at once, as XAPI does, rather than after starting a thread.
    There are as many as operations run at once: a held one keeps its
    thread.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Handler] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def run(self, job: Handler) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._work, name='xapi-sim-task',
                             daemon=True).start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:
                LOG.exception('Async operation failed')
            with self._lock:
                self._idle += 1


#: XAPI's pause between a waiting ``event.from`` waking and its answer.
EVENT_DELAY = 0.05


def _pause(seconds: float) -> None:
    # Apart, so that a test can see the pause and change things in it.
    time.sleep(seconds)


@dataclasses.dataclass
class Settings:
    """What a test may change while the simulator runs.

    :param users: user name -> password.
    :param max_idle: seconds a session may stay unused before it is
        invalid; 0 keeps sessions forever.
    :param master_address: when set, this server is a pool member and
        answers every call with ``HOST_IS_SLAVE [master_address]``.
    :param mode: one of :data:`MODES`.
    :param guest_tools: whether VMs that do not say otherwise run a guest
        agent with PV drivers.
    """

    users: dict[str, str] = dataclasses.field(
        default_factory=lambda: {'root': 'password'})
    max_idle: float = 0.0
    master_address: str | None = None
    mode: str = 'xapi'
    guest_tools: bool = True
    faults: list[Fault] = dataclasses.field(default_factory=list)
    holds: list[Hold] = dataclasses.field(default_factory=list)
    #: ``scheme://address`` of the server, for console locations; empty
    #: gives VMs no console record.
    console_url: str = ''
    #: Seconds a waiting ``event.from`` sleeps once woken (by a change or
    #: its deadline) before it looks again, so that the changes made
    #: meanwhile come in one answer: XAPI's ``from_inner`` waits
    #: ``Thread.delay 0.05`` there. An answer ready at once is not
    #: delayed.
    event_delay: float = EVENT_DELAY


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
        # Sessions of a pool member's own logins.
        self.local_sessions: set[str] = set()
        # Tasks whose operation goes on when cancelled.
        self.uncancellable: set[str] = set()
        self._workers = _Workers()
        self.vifs = vifs.Vifs(self)
        for cls, spec in db.CLASSES.items():
            self._generate(cls, spec)
        self._add_specific()
        vdi_http.register(self)
        with store.lock:
            for ref, vm in store.table('VM').items():
                vm['allowed_operations'] = self.allowed_operations(ref)

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
        if (self.settings.master_address and
                name != 'session.slave_local_login_with_password' and
                (not params or params[0] not in self.local_sessions)):
            # A pool member serves nothing but its local logins; XAPI
            # names the master's address for the client to go there.
            raise db.ApiError('HOST_IS_SLAVE', self.settings.master_address)
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
        hold = self._hold(name)
        if name in OPERATION_OF and params[1:]:
            return self._sync_task(name, handler, params[1:], hold)
        if hold is None:
            with self.store.lock:
                return handler(*params[1:])
        try:
            operation = self._begin(name, params[1:], db.new_ref())
            hold.wait(lambda: False)
            with self.store.lock:
                self._end(*operation)
                return handler(*params[1:])
        finally:
            hold.finished.set()

    def _sync_task(self, name: str, handler: Handler,
                   args: collections.abc.Sequence[typing.Any],
                   hold: Hold | None) -> typing.Any:
        """Run a VM operation called synchronously, under its own task.

        XAPI gives a synchronous call of a message that has an Async
        form a task as well, until it answers: the VM's
        ``current_operations`` lists it, ``task.cancel`` ends the
        operation (the call then fails with ``TASK_CANCELLED``), and its
        ``other_config`` has the request's ``X-Http-Other-Config-<key>``
        headers as ``http:<key>``, so a client can find it. The
        simulator does so for the VM operations.
        """
        with self.store.lock:
            task = self.store.create('task', {
                'name_label': name, 'status': 'pending',
                'created': db.now(), 'resident_on': self._master(),
                'other_config': _request_other_config()})
            if hold is not None and not hold.cancellable:
                self.uncancellable.add(task)

        def cancelled() -> bool:
            with self.store.lock:
                record = self.store.table('task').get(task)
                return record is None or record['status'] != 'pending'

        try:
            with self.store.lock:
                operation = self._begin(name, args, task)
            if hold is not None and not hold.wait(cancelled):
                with self.store.lock:
                    self._end(*operation)
                raise db.ApiError('TASK_CANCELLED', task)
            with self.store.lock:
                self._end(*operation)
                return handler(*args)
        finally:
            with self.store.lock:
                self.uncancellable.discard(task)
                if task in self.store.table('task'):
                    self.store.destroy('task', task)
            if hold is not None:
                hold.finished.set()

    @staticmethod
    def _counts(name: str, count: int) -> tuple[int, ...]:
        # Messages that gained a parameter in later API versions accept
        # both forms, as XAPI does.
        if name == 'VM.snapshot':
            return (2, 3)
        if name == 'VDI.copy':
            # base_vdi and into_vdi came later (XAPI's clearwater-felton).
            return (2, 4)
        return (count,)

    def _maybe_fail(self, name: str) -> None:
        for fault in list(self.settings.faults):
            if fault.method == name:
                fault.seen += 1
                if fault.seen >= fault.nth:
                    self.settings.faults.remove(fault)
                    raise db.ApiError(fault.code, *fault.params)

    def _hold(self, name: str) -> Hold | None:
        with self.store.lock:
            for hold in self.settings.holds:
                if hold.method == name:
                    self.settings.holds.remove(hold)
                    return hold
        return None

    def _login(self, name: str,
               params: collections.abc.Sequence[typing.Any]) -> str:
        if not 2 <= len(params) <= 4:
            raise db.ApiError('MESSAGE_PARAMETER_COUNT_MISMATCH', name, 4,
                              len(params))
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
            if self.settings.master_address:
                self.local_sessions.add(ref)
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
            self.local_sessions.discard(ref)
            self.store.destroy('session', ref)
            # Its waiting event.from ends.
            self.store.wake()

    def invalidate_sessions(self) -> int:
        """Log every session out, as a xapi restart does.

        :returns: how many sessions there were.
        """
        with self.store.lock:
            refs = list(self.last_active)
            for ref in refs:
                self._drop_session(ref)
            self.store.wake()
            return len(refs)

    # -- operations in progress --------------------------------------------

    def _begin(self, name: str, args: collections.abc.Sequence[typing.Any],
               key: str) -> tuple[str, str]:
        """Check a VM operation and list it in ``current_operations``.

        XAPI checks an operation when it starts and shows it in the VM's
        ``current_operations`` until it ends; a conflicting one fails
        meanwhile with ``OTHER_OPERATION_IN_PROGRESS``.

        :returns: what :meth:`_end` needs; ``('', '')`` for other calls.
        """
        operation = OPERATION_OF.get(name)
        if operation is None or not args:
            return '', ''
        with self.store.lock:
            ref = args[0]
            self._vm(ref, operation)
            self.store.get('VM', ref)['current_operations'][key] = operation
            self.store.touch('VM', ref)
            return ref, key

    def _end(self, ref: str, key: str) -> None:
        vm = self.store.table('VM').get(ref)
        if vm is not None and vm['current_operations'].pop(key, None):
            self.store.touch('VM', ref)

    def _async(self, name: str, handler: Handler,
               args: collections.abc.Sequence[typing.Any]) -> str:
        hold = self._hold(name)
        with self.store.lock:
            task = self.store.create('task', {
                'name_label': 'Async.' + name, 'status': 'pending',
                'created': db.now(), 'resident_on': self._master()})
            if hold is not None and not hold.cancellable:
                self.uncancellable.add(task)
            try:
                operation = self._begin(name, args, task)
            except db.ApiError as exc:
                # XAPI checks the operation in the task: the task fails.
                self.store.update('task', task, status='failure',
                                  progress=1.0, finished=db.now(),
                                  error_info=exc.description)
                return task

        def cancelled() -> bool:
            with self.store.lock:
                record = self.store.table('task').get(task)
                return record is None or record['status'] != 'pending'

        def run() -> None:
            try:
                finish()
            finally:
                if hold is not None:
                    hold.finished.set()

        def finish() -> None:
            if hold is not None and not hold.wait(cancelled):
                with self.store.lock:
                    self._end(*operation)
                return
            with self.store.lock:
                self._end(*operation)
                if cancelled() and (hold is None or hold.cancellable):
                    return
                try:
                    result = handler(*args)
                    fields = {'status': 'success', 'progress': 1.0,
                              'result': ('<value>%s</value>' % result
                                         if result is not None else ''),
                              'finished': db.now()}
                except db.ApiError as exc:
                    fields = {'status': 'failure', 'progress': 1.0,
                              'error_info': exc.description,
                              'finished': db.now()}
                if task in self.store.table('task'):
                    self.store.update('task', task, **fields)

        self._workers.run(run)
        return task

    # -- generated per-class messages --------------------------------------

    def _add(self, name: str, handler: Handler, count: int) -> None:
        self.methods[name] = (handler, count)

    def _generate(self, cls: str, spec: db.ClassSpec) -> None:
        table = self.store.table

        def record(ref: str) -> db.Record:
            return db.copy_record(self.store.get(cls, ref))

        def by_uuid(uuid: str) -> str:
            for ref, rec in table(cls).items():
                if rec['uuid'] == uuid:
                    return ref
            raise db.ApiError('UUID_INVALID', cls, uuid)

        self._add(cls + '.get_all', lambda: list(table(cls)), 0)
        self._add(cls + '.get_all_records', lambda: {
            ref: db.copy_record(rec) for ref, rec in table(cls).items()}, 0)
        self._add(cls + '.get_record', record, 1)
        self._add(cls + '.get_by_uuid', by_uuid, 1)

        def records_where(expr: str) -> dict[str, db.Record]:
            # Parsed once, not once per record: XAPI refuses a bad
            # expression whether or not there is anything to match.
            node = where.parse(expr)
            return {ref: db.copy_record(rec)
                    for ref, rec in table(cls).items()
                    if where.matches(node, rec)}

        self._add(cls + '.get_all_records_where', records_where, 1)
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
        add('VM.set_is_a_template', self._vm_set_is_a_template, 2)
        add('host.get_servertime', lambda ref: (
            self.store.get('host', ref), db.now())[1], 1)
        self.vifs.register()
        add('VBD.create', self._vbd_create, 1)
        add('VBD.destroy', self._device_destroy('VBD'), 1)
        # -- volumes: hot-plugging disks (see .vbd).
        add('VBD.plug', lambda ref: vbd_ops.plug(self, ref), 1)
        add('VBD.unplug', lambda ref: vbd_ops.unplug(self, ref), 1)
        add('VDI.create', self._vdi_create, 1)
        add('VDI.destroy', self._vdi_destroy, 1)
        # -- volumes: copying and growing disks (see .vdis).
        add('VDI.copy', lambda *a: vdi_ops.copy(self, *a), 4)
        add('VDI.resize', lambda ref, size: vdi_ops.resize(self, ref, size),
            2)
        add('VDI.resize_online',
            lambda ref, size: vdi_ops.resize_online(self, ref, size), 2)
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
            self.store.wake()

    def _destroy(self, cls: str, ref: str) -> str:
        self.store.destroy(cls, ref)
        return ''

    def _task_cancel(self, ref: str) -> str:
        task = self.store.get('task', ref)
        if task['status'] != 'pending':
            raise db.ApiError('OPERATION_NOT_ALLOWED',
                              'task %s is not pending' % ref)
        if ref in self.uncancellable:
            # XAPI marks the task and the operation goes on regardless.
            self.store.update('task', ref, status='cancelling')
            return ''
        self.store.update('task', ref, status='cancelled',
                          finished=db.now(),
                          error_info=['TASK_CANCELLED', ref])
        return ''

    # -- events ------------------------------------------------------------

    _TOKEN = re.compile(r'(\d+),(\d+)')

    def _event_from(self, classes: list[str], token: str, timeout: float,
                    session: str) -> dict[str, typing.Any]:
        if token == '':
            since = -1
        else:
            match = self._TOKEN.fullmatch(str(token))
            if match is None:
                raise db.ApiError('EVENT_FROM_TOKEN_PARSE_FAILURE', token)
            since = int(match.group(1))
        wanted = {str(c).lower() for c in classes}
        everything = '*' in wanted
        watched = ['*'] if everything else [
            cls for cls in self.store.objects if cls.lower() in wanted]
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self.store.lock:
            if since < 0:
                # An empty token: every object of the classes, as "add".
                events: list[dict[str, typing.Any]] = []
                for cls, table in self.store.objects.items():
                    if everything or cls.lower() in wanted:
                        events.extend(self._event(0, cls, 'add', ref, rec)
                                      for ref, rec in table.items())
                return self._events_result(events)
            if since + 1 < self.store.oldest_event:
                raise db.ApiError('EVENTS_LOST')
            while True:
                if session not in self.last_active:
                    raise db.ApiError('SESSION_INVALID', session)
                events = self._changes(since, wanted, everything)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return self._events_result(events)
                # Nothing of these classes changed up to now: as XAPI,
                # the next look starts here, not at the token, so that a
                # poll woken by other classes' changes does not read them
                # all again each time.
                since = self.store.event_id
                self.store.watched.update(watched)
                try:
                    self.store.polled.wait(remaining)
                finally:
                    self.store.watched.subtract(watched)
                delay = self.settings.event_delay
                if delay > 0:
                    # As XAPI: the changes made meanwhile join this
                    # answer. The lock is held once here (the store's
                    # callers do not nest an event.from).
                    self.store.lock.release()
                    try:
                        _pause(delay)
                    finally:
                        self.store.lock.acquire()

    def _changes(self, since: int, wanted: set[str],
                 everything: bool) -> list[dict[str, typing.Any]]:
        """One event per object changed after ``since``, as XAPI does.

        XAPI reports each object once, in its latest state: an object
        created since the token is an ``add`` however often it changed,
        one created and destroyed since is not reported at all.
        """
        first: dict[tuple[str, str], str] = {}
        latest: dict[tuple[str, str], tuple] = {}
        # The log is in id order: a poll reads what is newer than its
        # token, not the whole log, as XAPI's indexed queue does.
        log = self.store.events
        newer = bisect.bisect_right(log, since, key=lambda e: e[0])
        classes = {cls for cls in self.store.objects
                   if everything or cls.lower() in wanted}
        for entry in log[newer:]:
            if entry[1] in classes:
                key = (entry[1], entry[3])
                first.setdefault(key, entry[2])
                latest.pop(key, None)
                latest[key] = entry
        events = []
        for key, entry in latest.items():
            operation = entry[2]
            if first[key] == 'add':
                if operation == 'del':
                    continue
                operation = 'add'
            events.append(self._event(
                entry[0], entry[1], operation, entry[3],
                self.store.objects[entry[1]].get(entry[3])))
        return events

    def _event(self, event_id: int, cls: str, operation: str, ref: str,
               record: db.Record | None) -> dict[str, typing.Any]:
        event = {'id': str(event_id), 'timestamp': db.now(),
                 'class': cls.lower(), 'operation': operation, 'ref': ref}
        if record is not None and operation != 'del':
            # Copied: the answer is marshalled once the lock is let go.
            # event_id is the object's latest event (0: none known), so
            # its text, marshalled once, serves every poller until the
            # next change.
            snapshot = db.copy_record(record)
            event['snapshot'] = wire.Snapshot(
                snapshot, (cls, ref, event_id),
                self.store.marshalled) if event_id else snapshot
        return event

    def _events_result(self, events: list[dict[str, typing.Any]]
                       ) -> dict[str, typing.Any]:
        # XAPI counts the objects of every table, whatever the classes.
        counts = {cls.lower(): len(table)
                  for cls, table in self.store.objects.items()}
        return {'events': events, 'valid_ref_counts': counts,
                'token': '%020d,%020d' % (self.store.event_id, 0)}

    # -- VM ----------------------------------------------------------------

    def _refuse(self, ref: str, vm: db.Record, operation: str,
                strict: bool = False) -> db.ApiError | None:
        """Why XAPI refuses ``operation`` on a VM now, or ``None``.

        The checks and their order are xapi_vm_lifecycle.ml's. ``strict``
        also requires the guest features an operation needs, as XAPI does
        for ``allowed_operations``; a call itself only needs them for a
        live vCPU change.
        """
        if vm['is_control_domain'] and operation not in (
                'snapshot', 'changing_dynamic_range'):
            return db.ApiError('OPERATION_NOT_ALLOWED',
                               'cannot %s the control domain' % operation)
        blocked = vm['blocked_operations'].get(operation)
        if blocked is not None:
            return db.ApiError('OPERATION_BLOCKED', ref, blocked)
        allowed = ALLOWED_STATES.get(operation, ())
        if vm['power_state'] not in allowed:
            return db.ApiError('VM_BAD_POWER_STATE', ref, ', '.join(
                s.lower() for s in allowed), vm['power_state'].lower())
        current = list(vm['current_operations'].values())
        if current and not self._concurrent(operation, current):
            return db.ApiError('OTHER_OPERATION_IN_PROGRESS', 'VM.' + (
                current[0] if len(current) == 1 else
                '{%s}' % ','.join(current)), ref)
        default = vm['is_default_template'] or vm['other_config'].get(
            'default_template', '').lower() in ('1', 'true')
        if vm['is_a_template'] and not vm['is_a_snapshot'] and not (
                operation in TEMPLATE_OPERATIONS or (
                    operation == 'destroy' and not default)):
            return db.ApiError('VM_IS_TEMPLATE', ref, operation)
        if vm['is_a_snapshot'] and operation not in SNAPSHOT_OPERATIONS:
            return db.ApiError('VM_IS_SNAPSHOT', ref, operation)
        if operation == 'provision' and not vm['is_a_template']:
            return db.ApiError('PROVISION_ONLY_ALLOWED_ON_TEMPLATE')
        if operation == 'revert' and not vm['is_a_snapshot']:
            return db.ApiError('REVERT_ONLY_ALLOWED_ON_SNAPSHOT')
        features = NEEDS_FEATURE.get(operation)
        if (features and vm['power_state'] == 'Running' and
                (strict or operation == 'changing_VCPUs_live') and
                not any(self._feature(vm, f) for f in features)):
            return db.ApiError('VM_LACKS_FEATURE', ref)
        return None

    @staticmethod
    def _concurrent(operation: str, current: list[str]) -> bool:
        """is_allowed_concurrently of xapi_vm_lifecycle.ml."""
        for group in (('clone', 'copy'), ('snapshot',)):
            if operation in group and all(c in group for c in current):
                return True
        if operation == 'hard_shutdown':
            return 'hard_shutdown' not in current
        if operation == 'hard_reboot':
            return not {'hard_shutdown', 'hard_reboot'} & set(current)
        return False

    def _feature(self, vm: db.Record, feature: str) -> bool:
        metrics = self.store.table('VM_guest_metrics').get(
            vm['guest_metrics'])
        if metrics is None:
            return False
        # Full PV drivers imply every feature, as XAPI assumes.
        return bool(metrics['PV_drivers_detected'] or
                    metrics['other'].get(feature) == '1')

    def _vm(self, ref: str, operation: str) -> db.Record:
        vm = self.store.get('VM', ref)
        refused = self._refuse(ref, vm, operation)
        if refused is not None:
            raise refused
        return vm

    def allowed_operations(self, ref: str) -> list[str]:
        """What XAPI would list in the VM's ``allowed_operations``."""
        vm = self.store.get('VM', ref)
        saved, vm['current_operations'] = vm['current_operations'], {}
        try:
            return [op for op in ALLOWED_STATES
                    if self._refuse(ref, vm, op, strict=True) is None]
        finally:
            vm['current_operations'] = saved

    def _refresh(self, ref: str, **fields: object) -> None:
        """Update a VM and its ``allowed_operations`` in one event."""
        vm = self.store.get('VM', ref)
        vm.update(fields)
        vm['allowed_operations'] = self.allowed_operations(ref)
        self.store.touch('VM', ref)

    def _vm_op(self, operation: str) -> Handler:
        return lambda ref: getattr(self, '_do_' + operation)(
            ref, self._vm(ref, operation))

    def has_tools(self, ref: str) -> bool:
        """Whether a VM runs a guest agent with PV drivers."""
        return self.store.guest_tools.get(ref, self.settings.guest_tools)

    def _metrics(self, vm: db.Record, **fields: object) -> None:
        ref = vm['metrics']
        if ref in self.store.table('VM_metrics'):
            self.store.update('VM_metrics', ref, **fields)

    def _attach(self, vm: db.Record, attached: bool) -> None:
        for cls, field in (('VBD', 'VBDs'), ('VIF', 'VIFs')):
            for dev in vm[field]:
                self.store.update(cls, dev, currently_attached=attached)
        self.vifs.refresh_vm(vm)

    def _guest_metrics(self, ref: str, vm: db.Record, running: bool) -> str:
        """The guest agent's record: created at boot, gone at shutdown."""
        old = vm['guest_metrics']
        if not running:
            if old in self.store.table('VM_guest_metrics'):
                self.store.destroy('VM_guest_metrics', old)
            return db.NULL_REF
        if old in self.store.table('VM_guest_metrics') or not (
                self.has_tools(ref)):
            return old
        return self.store.create('VM_guest_metrics', {
            'os_version': {'name': 'Simulated Linux', 'distro': 'debian',
                           'major': '12'},
            'PV_drivers_version': {'major': '8', 'minor': '2',
                                   'micro': '0', 'build': '1'},
            'PV_drivers_up_to_date': True, 'PV_drivers_detected': True,
            'other': dict(GUEST_FEATURES), 'live': True,
            'can_use_hotplug_vbd': 'yes', 'can_use_hotplug_vif': 'yes',
            'last_updated': db.now()})

    def _power(self, ref: str, vm: db.Record, state: str) -> None:
        running = state in ('Running', 'Paused')
        host = self._master() if state != 'Halted' else db.NULL_REF
        domid = vm['domid']
        if running and domid == '-1':
            domid = str(random.randint(1, 30000))
        elif not running:
            domid = '-1'
        if host != vm['resident_on']:
            self.store.update('VM', ref, resident_on=host)
        self._refresh(ref, power_state=state, domid=domid,
                      guest_metrics=self._guest_metrics(
                          ref, vm, state != 'Halted'))
        if state == 'Halted':
            self._metrics(vm, VCPUs_number='0', memory_actual='0',
                          state=[])
        elif running:
            self._metrics(vm, VCPUs_number=vm['VCPUs_at_startup'],
                          memory_actual=vm['memory_dynamic_max'],
                          state=[state.lower()],
                          hvm=not self.has_tools(ref))
        self._attach(vm, state != 'Halted')
        consoles.sync(self, ref, self.store.get('VM', ref),
                      state != 'Halted')

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

    def _guest_acknowledges(self, ref: str, vm: db.Record,
                            operation: str) -> None:
        """A clean operation needs a guest agent to act on the request.

        XAPI asks the guest through xenstore and gives up when no agent
        acknowledges: xapi_xenops.ml raises these with no parameters.
        """
        if not any(self._feature(vm, f) for f in NEEDS_FEATURE[operation]):
            raise db.ApiError('VM_FAILED_SUSPEND_ACKNOWLEDGMENT'
                              if operation == 'suspend' else
                              'VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT')

    def _vm_start(self, ref: str, start_paused: bool, force: bool) -> str:
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
        self._guest_acknowledges(ref, vm, 'clean_shutdown')
        self._power(ref, vm, 'Halted')
        return ''

    def _do_hard_shutdown(self, ref: str, vm: db.Record) -> str:
        self._power(ref, vm, 'Halted')
        return ''

    def _do_clean_reboot(self, ref: str, vm: db.Record) -> str:
        self._guest_acknowledges(ref, vm, 'clean_reboot')
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
        self._guest_acknowledges(ref, vm, 'suspend')
        self._power(ref, vm, 'Suspended')
        return ''

    def _do_destroy(self, ref: str, vm: db.Record) -> str:
        # XAPI leaves the VDIs: disks outlive their VM unless destroyed.
        for vbd in list(vm['VBDs']):
            self.store.destroy('VBD', vbd)
        for vif in list(vm['VIFs']):
            self.store.destroy('VIF', vif)
        for cls, field in (('VM_metrics', 'metrics'),
                           ('VM_guest_metrics', 'guest_metrics')):
            if vm[field] in self.store.table(cls):
                self.store.destroy(cls, vm[field])
        for console in list(vm['consoles']):
            self.store.destroy('console', console)
        self.store.destroy('VM', ref)
        self.store.guest_tools.pop(ref, None)
        return ''

    def _new_vm(self, source_ref: str, source: db.Record,
                **fields: typing.Any) -> str:
        record = copy.deepcopy(source)
        for field in ('uuid', 'VBDs', 'VIFs', 'snapshots', 'children',
                      'consoles', 'crash_dumps', 'current_operations',
                      'allowed_operations'):
            record.pop(field, None)
        # A copy is never a default template.
        record['other_config'].pop('default_template', None)
        record.update(power_state='Halted', domid='-1',
                      resident_on=db.NULL_REF, is_default_template=False,
                      is_a_snapshot=False, snapshot_of=db.NULL_REF,
                      snapshot_time=db.EPOCH, guest_metrics=db.NULL_REF)
        record['metrics'] = self.store.create('VM_metrics', {
            'install_time': db.now()})
        record.update(fields)
        ref = self.store.create('VM', record)
        if source_ref in self.store.guest_tools:
            self.store.guest_tools[ref] = self.store.guest_tools[source_ref]
        self._refresh(ref)
        return ref

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
            self.vifs.create(dict(vif, VM=target, MAC='',
                                  currently_attached=False), copying=True)

    def _copy_vdi(self, ref: str, original: db.Record, sr: str | None,
                  fields: dict[str, typing.Any]) -> str:
        record = copy.deepcopy(original)
        for field in ('uuid', 'VBDs', 'snapshots'):
            record.pop(field, None)
        record.update(is_a_snapshot=False, snapshot_of=db.NULL_REF,
                      snapshot_time=db.EPOCH)
        if sr:
            record['SR'] = sr
        record.update({k: (ref if v is ... else v)
                       for k, v in fields.items()})
        new = self._vdi_create(record)
        vdi_http.copied(self.store, ref, new)
        return new

    def _vm_clone(self, ref: str, new_name: str) -> str:
        vm = self._vm(ref, 'clone')
        new = self._new_vm(ref, vm, name_label=new_name,
                           is_a_template=vm['is_a_template'], parent=ref)
        self._copy_devices(vm, new, {})
        return new

    def _vm_copy(self, ref: str, new_name: str, sr: str) -> str:
        vm = self._vm(ref, 'copy')
        if sr != db.NULL_REF:
            self.store.get('SR', sr)
        new = self._new_vm(ref, vm, name_label=new_name, parent=ref)
        self._copy_devices(vm, new, {},
                           sr if sr != db.NULL_REF else None)
        return new

    def _vm_snapshot(self, ref: str, new_name: str,
                     ignore_vdis: list[str] | None = None) -> str:
        vm = self._vm(ref, 'snapshot')
        stamp = db.now()
        snap = self._new_vm(ref, vm, name_label=new_name,
                            is_a_template=True, is_a_snapshot=True,
                            snapshot_of=ref, snapshot_time=stamp)
        self._copy_devices(vm, snap, {'is_a_snapshot': True,
                                      'snapshot_of': ...,
                                      'snapshot_time': stamp})
        return snap

    def _vm_revert(self, snapshot: str) -> str:
        snap = self._vm(snapshot, 'revert')
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
        self._refresh(target, **{f: snap[f] for f in fields})
        return ''

    def _check_memory(self, smin: int, dmin: int, dmax: int,
                      smax: int) -> None:
        if not 0 <= smin <= dmin <= dmax <= smax:
            raise db.ApiError('MEMORY_CONSTRAINT_VIOLATION_ORDER')
        pools = list(self.store.table('pool').values())
        restricted = pools and pools[0]['restrictions'].get(
            'restrict_dmc') == 'true'
        if restricted and not smin <= dmin == dmax == smax:
            # Without dynamic memory control (a pool restriction), XAPI
            # pins the dynamic range at static_max.
            raise db.ApiError('MEMORY_CONSTRAINT_VIOLATION_MAXPIN',
                              'DMC unavailable')

    def _vm_set_dynamic_range(self, ref: str, dmin: str, dmax: str) -> str:
        vm = self._vm(ref, 'changing_dynamic_range')
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
        self._vm(ref, 'changing_memory_limits')
        values = [int(v) for v in (smin, dmin, dmax, smax)]
        self._check_memory(*values)
        self.store.update('VM', ref, memory_static_min=str(values[0]),
                          memory_dynamic_min=str(values[1]),
                          memory_dynamic_max=str(values[2]),
                          memory_static_max=str(values[3]),
                          memory_target=str(values[2]))
        return ''

    @staticmethod
    def _vcpus(value: object, maximum: int) -> int:
        try:
            count = int(str(value))
        except ValueError:
            count = 0
        if not 1 <= count <= maximum:
            raise db.ApiError(
                'INVALID_VALUE', 'VCPU values must satisfy: 0 < '
                'VCPUs_at_startup <= VCPUs_max', value)
        return count

    def _vm_set_vcpus_live(self, ref: str, value: str) -> str:
        vm = self._vm(ref, 'changing_VCPUs_live')
        count = self._vcpus(value, int(vm['VCPUs_max']))
        self.store.update('VM', ref, VCPUs_at_startup=str(count))
        self._metrics(vm, VCPUs_number=str(count))
        return ''

    def _vm_set_vcpus_max(self, ref: str, value: str) -> str:
        vm = self._vm(ref, 'changing_VCPUs')
        count = self._vcpus(value, 64)
        if count < int(vm['VCPUs_at_startup']):
            raise db.ApiError(
                'INVALID_VALUE', 'VCPU values must satisfy: 0 < '
                'VCPUs_at_startup <= VCPUs_max', value)
        self.store.update('VM', ref, VCPUs_max=str(count))
        return ''

    def _vm_set_vcpus_at_startup(self, ref: str, value: str) -> str:
        vm = self._vm(ref, 'changing_VCPUs')
        count = self._vcpus(value, int(vm['VCPUs_max']))
        self.store.update('VM', ref, VCPUs_at_startup=str(count))
        return ''

    def _vm_set_is_a_template(self, ref: str, value: typing.Any) -> str:
        vm = self.store.get('VM', ref)
        if not isinstance(value, bool):
            raise db.ApiError('FIELD_TYPE_ERROR', 'is_a_template')
        if value and vm['power_state'] != 'Halted':
            raise db.ApiError('VM_BAD_POWER_STATE', ref, 'halted',
                              vm['power_state'].lower())
        self._refresh(ref, is_a_template=value)
        return ''

    def _do_provision(self, ref: str, vm: db.Record) -> str:
        """Create the disks the template's ``other_config:disks`` lists.

        The key holds XML such as ``<provision><disk device="0"
        size="8589934592" sr="<SR uuid>" bootable="true" type="system"/>
        </provision>``. As xapi_templates.ml does, every ``sr`` must be an
        SR's uuid: stock templates say ``sr=""`` and ``xe vm-install``
        fills in the default SR before it calls ``VM.provision``, so a raw
        provision of such a template fails with ``UUID_INVALID [sr, ""]``.
        XAPI clears ``is_a_template`` first and removes the key once the
        disks exist.
        """
        self._refresh(ref, is_a_template=False)
        spec = vm['other_config'].get('disks')
        if not spec:
            return ''
        try:
            disks = xml.dom.minidom.parseString(spec).getElementsByTagName(
                'disk')
        except Exception:
            raise db.ApiError('INTERNAL_ERROR',
                              'cannot parse other_config:disks') from None
        pools = list(self.store.table('pool').values())
        default_sr = pools[0]['default_SR'] if pools else db.NULL_REF
        targets = []
        for disk in disks:
            sr_uuid = disk.getAttribute('sr')
            if not sr_uuid and self.settings.mode == 'lenient':
                sr = default_sr
            else:
                sr = next((r for r, rec in self.store.table('SR').items()
                           if rec['uuid'] == sr_uuid), db.NULL_REF)
            if sr not in self.store.table('SR'):
                raise db.ApiError('UUID_INVALID', 'sr', sr_uuid)
            targets.append((disk, sr))
        for disk, sr in targets:
            device = disk.getAttribute('device') or '0'
            kind = disk.getAttribute('type') or 'system'
            vdi = self._vdi_create({
                'name_label': device,
                'name_description': 'Created by template provisioner',
                'SR': sr, 'virtual_size': disk.getAttribute('size') or '0',
                'type': kind, 'sm_config': {'vmhint': vm['uuid']}})
            self._create_vbd({
                'VM': ref, 'VDI': vdi, 'userdevice': device,
                'bootable': disk.getAttribute('bootable') == 'true',
                'type': 'Disk', 'mode': 'RW',
                'unpluggable': kind != 'system',
                'other_config': {'owner': ''}})
        other = dict(vm['other_config'])
        other.pop('disks', None)
        self.store.update('VM', ref, other_config=other)
        return ''

    # -- devices and disks -------------------------------------------------

    def _create_vbd(self, record: db.Record) -> str:
        record = {k: v for k, v in record.items() if k != 'uuid'}
        return self.store.create('VBD', record)

    def _vbd_create(self, record: db.Record) -> str:
        self.store.get('VM', record.get('VM'))
        vbd_ops.check_userdevice(self, record)
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
        vdi_http.removed(self.store, ref)
        if sr is not None:
            self.store.update('SR', vdi['SR'], physical_utilisation=str(
                max(0, int(sr['physical_utilisation']) -
                    int(vdi['physical_utilisation']))))
        return ''
