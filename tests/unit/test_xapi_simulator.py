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

"""The XAPI simulator's methods, called in-process without HTTP."""

import json
import threading

import pytest

from compute_driver.testing.xapi_simulator import api as xapi
from compute_driver.testing.xapi_simulator import jsonrpc
from compute_driver.testing.xapi_simulator import seed
from compute_driver.testing.xapi_simulator import store as db
from compute_driver.testing.xapi_simulator import where


@pytest.fixture
def api():
    store = db.Store()
    seed.populate(store, seed.DEFAULT_SEED)
    return xapi.Api(store, xapi.Settings())


@pytest.fixture
def session(api):
    return api.call('session.login_with_password',
                    ['root', 'password', '2.21', 'unit'])


def _call(api, session, method, *args):
    return api.call(method, [session, *args])


def _error(api, session, method, *args):
    with pytest.raises(db.ApiError) as info:
        _call(api, session, method, *args)
    return info.value.description


def _template(api, session):
    [ref] = _call(api, session, 'VM.get_by_name_label', 'Debian Bookworm 12')
    return ref


def _default_sr_uuid(api, session):
    pool = _call(api, session, 'pool.get_all')[0]
    return _call(api, session, 'SR.get_uuid',
                 _call(api, session, 'pool.get_default_SR', pool))


def _install(api, session, template=None, name='vm'):
    """What ``xe vm-install`` does: clone, fill in the SR, provision."""
    vm = _call(api, session, 'VM.clone', template or _template(api, session),
               name)
    disks = _call(api, session, 'VM.get_other_config', vm)['disks']
    _call(api, session, 'VM.remove_from_other_config', vm, 'disks')
    _call(api, session, 'VM.add_to_other_config', vm, 'disks',
          disks.replace('sr=""', 'sr="%s"' % _default_sr_uuid(api, session)))
    _call(api, session, 'VM.provision', vm)
    return vm


def test_wire_format(api, session):
    ok = api.dispatch('VM.get_all', [session])
    assert ok['Status'] == 'Success' and ok['Value']
    failed = api.dispatch('VM.get_record', [session, 'OpaqueRef:x'])
    assert failed == {'Status': 'Failure', 'ErrorDescription': [
        'HANDLE_INVALID', 'VM', 'OpaqueRef:x']}


def test_login_errors(api):
    with pytest.raises(db.ApiError) as info:
        api.call('session.login_with_password', ['root', 'bad'])
    assert info.value.code == 'SESSION_AUTHENTICATION_FAILED'
    with pytest.raises(db.ApiError) as info:
        api.call('session.login_with_password', ['root'])
    assert info.value.code == 'MESSAGE_PARAMETER_COUNT_MISMATCH'
    api.settings.master_address = '10.0.0.1'
    with pytest.raises(db.ApiError) as info:
        api.call('session.login_with_password', ['root', 'password'])
    assert info.value.description == ['HOST_IS_SLAVE', '10.0.0.1']


def test_session_checks(api, session):
    assert _error(api, 'OpaqueRef:none', 'VM.get_all') == [
        'SESSION_INVALID', 'OpaqueRef:none']
    _call(api, session, 'session.logout')
    assert _error(api, session, 'VM.get_all')[0] == 'SESSION_INVALID'


def test_idle_sessions_expire(api, session, monkeypatch):
    api.settings.max_idle = 10
    clock = [1000.0]
    monkeypatch.setattr(xapi.time, 'monotonic', lambda: clock[0])
    api.last_active[session] = clock[0]
    clock[0] += 5
    _call(api, session, 'VM.get_all')
    clock[0] += 11
    assert _error(api, session, 'VM.get_all')[0] == 'SESSION_INVALID'


def test_generated_messages(api, session):
    template = _template(api, session)
    record = _call(api, session, 'VM.get_record', template)
    assert _call(api, session, 'VM.get_by_uuid', record['uuid']) == template
    assert _call(api, session, 'VM.get_name_label', template) == (
        'Debian Bookworm 12')
    _call(api, session, 'VM.add_to_other_config', template, 'k', 'v')
    assert _error(api, session, 'VM.add_to_other_config', template, 'k',
                  'w')[0] == 'MAP_DUPLICATE_KEY'
    _call(api, session, 'VM.remove_from_other_config', template, 'k')
    assert 'k' not in _call(api, session, 'VM.get_other_config', template)
    # power_state is read-only in XAPI: no setter exists.
    assert _error(api, session, 'VM.set_power_state', template,
                  'Running') == ['MESSAGE_METHOD_UNKNOWN',
                                 'VM.set_power_state']
    assert _error(api, session, 'VM.set_name_label', template, 7) == [
        'FIELD_TYPE_ERROR', 'name_label']


def test_relations_follow_creation_and_destruction(api, session):
    vm = _install(api, session)
    [vbd] = _call(api, session, 'VM.get_VBDs', vm)
    vdi = _call(api, session, 'VBD.get_VDI', vbd)
    assert _call(api, session, 'VDI.get_VBDs', vdi) == [vbd]
    sr = _call(api, session, 'VDI.get_SR', vdi)
    used = int(_call(api, session, 'SR.get_physical_utilisation', sr))
    assert used == 10 * 1024 ** 3
    _call(api, session, 'VM.destroy', vm)
    assert _call(api, session, 'VDI.get_VBDs', vdi) == []
    _call(api, session, 'VDI.destroy', vdi)
    assert _call(api, session, 'SR.get_physical_utilisation', sr) == '0'


def test_provision_checks_the_sr_space(api, session):
    vm = _call(api, session, 'VM.clone', _template(api, session), 'big')
    _call(api, session, 'VM.set_other_config', vm, {
        'disks': seed.disks_xml([(0, 10 ** 15, True)],
                                _default_sr_uuid(api, session))})
    assert _error(api, session, 'VM.provision', vm)[0] == 'SR_FULL'


def test_attached_disk_cannot_be_destroyed(api, session):
    vm = _install(api, session)
    _call(api, session, 'VM.start', vm, False, False)
    [vbd] = _call(api, session, 'VM.get_VBDs', vm)
    vdi = _call(api, session, 'VBD.get_VDI', vbd)
    assert _error(api, session, 'VDI.destroy', vdi) == [
        'VDI_IN_USE', vdi, 'destroy']
    # XAPI lists every state the operation is allowed from.
    assert _error(api, session, 'VM.destroy', vm) == [
        'VM_BAD_POWER_STATE', vm, 'halted, suspended', 'running']


def test_memory_is_checked_at_start(api, session):
    vm = _install(api, session)
    huge = str(100 * 1024 ** 3)
    _call(api, session, 'VM.set_memory_limits', vm, huge, huge, huge, huge)
    assert _error(api, session, 'VM.start', vm, False, False)[0] == (
        'HOST_NOT_ENOUGH_FREE_MEMORY')


def test_memory_limits_are_ordered(api, session):
    vm = _install(api, session)
    assert _error(api, session, 'VM.set_memory_limits', vm, '4', '2', '3',
                  '3') == ['MEMORY_CONSTRAINT_VIOLATION_ORDER']


def test_control_domain_is_protected(api, session):
    [dom0] = [ref for ref, rec in
              _call(api, session, 'VM.get_all_records').items()
              if rec['is_control_domain']]
    assert _error(api, session, 'VM.hard_shutdown', dom0)[0] == (
        'OPERATION_NOT_ALLOWED')


def test_revert_needs_a_snapshot(api, session):
    vm = _install(api, session)
    assert _error(api, session, 'VM.revert', vm) == [
        'REVERT_ONLY_ALLOWED_ON_SNAPSHOT']
    snap = _call(api, session, 'VM.snapshot', vm, 's')
    assert _error(api, session, 'VM.snapshot', snap, 't') == [
        'VM_IS_SNAPSHOT', snap, 'snapshot']
    _call(api, session, 'VM.set_VCPUs_max', vm, '4')
    _call(api, session, 'VM.revert', snap)
    assert _call(api, session, 'VM.get_VCPUs_max', vm) == '1'


def test_injected_failures_count_calls(api, session):
    api.settings.faults.append(xapi.Fault('VM.get_all', 'X', ('p',), 2))
    _call(api, session, 'VM.get_all')
    assert _error(api, session, 'VM.get_all') == ['X', 'p']
    _call(api, session, 'VM.get_all')


def test_event_from_coalesces_per_object(api, session):
    token = _call(api, session, 'event.from', ['vm'], '', 0)['token']
    vm = _install(api, session)
    _call(api, session, 'VM.start', vm, False, False)
    _call(api, session, 'VM.pause', vm)
    result = _call(api, session, 'event.from', ['vm'], token, 0)
    [event] = [e for e in result['events'] if e['ref'] == vm]
    assert event['snapshot']['power_state'] == 'Paused'
    _call(api, session, 'VM.unpause', vm)
    _call(api, session, 'VM.hard_shutdown', vm)
    _call(api, session, 'VM.destroy', vm)
    result = _call(api, session, 'event.from', ['vm'], result['token'], 0)
    [event] = [e for e in result['events'] if e['ref'] == vm]
    assert event['operation'] == 'del' and 'snapshot' not in event
    assert _error(api, session, 'event.from', ['vm'], 'junk', 0)[0] == (
        'EVENT_FROM_TOKEN_PARSE_FAILURE')
    assert _call(api, session, 'event.get_current_id') == str(
        api.store.event_id)


class _Watched(threading.Condition):
    """A condition of the store's, counting who waits on it."""

    def __init__(self, lock):
        super().__init__(lock)
        self.waits = 0
        self.waiting = threading.Event()

    def wait(self, timeout=None):
        self.waits += 1
        self.waiting.set()
        return super().wait(timeout)


def test_waiting_event_from_wakes_for_its_classes_only(api, session):
    token = _call(api, session, 'event.from', ['vm'], '', 0)['token']
    vm = _install(api, session)
    token = _call(api, session, 'event.from', ['vm'], token, 0)['token']
    api.store.polled = _Watched(api.store.lock)
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(
        _call(api, session, 'event.from', ['vm'], token, 60)))
    waiter.start()
    assert api.store.polled.waiting.wait(30)
    [network] = _call(api, session, 'network.get_all')
    for number in range(5):
        _call(api, session, 'network.add_to_other_config', network,
              'k%d' % number, 'v')
    _call(api, session, 'VM.set_name_label', vm, 'renamed')
    waiter.join(30)
    [answer] = answers
    assert [(e['ref'], e['snapshot']['name_label'])
            for e in answer['events']] == [(vm, 'renamed')]
    # The network's changes did not wake it to look again.
    assert api.store.polled.waits == 1


def test_woken_event_from_pauses_as_xapi_to_batch_changes(api, session,
                                                          monkeypatch):
    token = _call(api, session, 'event.from', ['vm'], '', 0)['token']
    first = _install(api, session, name='first')
    second = _install(api, session, name='second')
    token = _call(api, session, 'event.from', ['vm'], token, 0)['token']
    api.store.polled = _Watched(api.store.lock)
    pausing, go, pauses = threading.Event(), threading.Event(), []

    def pause(seconds):
        pauses.append(seconds)
        pausing.set()
        assert go.wait(30)

    monkeypatch.setattr(xapi, '_pause', pause)
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(
        _call(api, session, 'event.from', ['vm'], token, 60)))
    waiter.start()
    try:
        assert api.store.polled.waiting.wait(30)
        _call(api, session, 'VM.set_name_label', first, 'one')
        # Woken, it pauses with the store unlocked: a change made
        # meanwhile comes in the same answer.
        assert pausing.wait(30)
        _call(api, session, 'VM.set_name_label', second, 'two')
    finally:
        go.set()
        waiter.join(30)
    [answer] = answers
    assert sorted((e['ref'], e['snapshot']['name_label'])
                  for e in answer['events']) == sorted(
        [(first, 'one'), (second, 'two')])
    assert pauses == [xapi.EVENT_DELAY] == [0.05]


def test_logout_ends_a_waiting_event_from(api, session):
    token = _call(api, session, 'event.from', ['vm'], '', 0)['token']
    other = api.call('session.login_with_password', ['root', 'password'])
    errors = []

    def wait():
        try:
            _call(api, other, 'event.from', ['vm'], token, 60)
        except db.ApiError as exc:
            errors.append(exc.description)

    waiter = threading.Thread(target=wait)
    waiter.start()
    api.logout(other)
    waiter.join(30)
    assert errors == [['SESSION_INVALID', other]]


def test_async_failure_is_recorded_on_the_task(api, session):
    vm = _install(api, session)
    task = _call(api, session, 'Async.VM.pause', vm)
    done = threading.Event()
    for _ in range(200):
        if _call(api, session, 'task.get_status', task) != 'pending':
            done.set()
            break
        done.wait(0.01)
    record = _call(api, session, 'task.get_record', task)
    assert record['status'] == 'failure'
    assert record['error_info'] == ['VM_BAD_POWER_STATE', vm, 'running',
                                    'halted']


def test_old_tokens_lose_events(api, session):
    token = _call(api, session, 'event.from', ['vm'], '', 0)['token']
    template = _template(api, session)
    for number in range(20001):
        _call(api, session, 'VM.set_name_description', template,
              str(number))
    assert _error(api, session, 'event.from', ['vm'], token, 0) == [
        'EVENTS_LOST']


def test_copy_puts_new_disks_on_the_sr(api, session):
    vm = _install(api, session)
    sr = _call(api, session, 'pool.get_default_SR',
               _call(api, session, 'pool.get_all')[0])
    copy = _call(api, session, 'VM.copy', vm, 'copy', sr)
    [original] = [_call(api, session, 'VBD.get_VDI', v)
                  for v in _call(api, session, 'VM.get_VBDs', vm)]
    [copied] = [_call(api, session, 'VBD.get_VDI', v)
                for v in _call(api, session, 'VM.get_VBDs', copy)]
    assert copied != original
    assert _call(api, session, 'VDI.get_SR', copied) == sr
    assert _call(api, session, 'VM.get_is_a_template', copy) is False


def test_async_result_holds_the_reference(api, session):
    task = _call(api, session, 'Async.VM.clone', _template(api, session),
                 'async')
    done = threading.Event()
    for _ in range(200):
        if _call(api, session, 'task.get_status', task) != 'pending':
            break
        done.wait(0.01)
    result = _call(api, session, 'task.get_result', task)
    [clone] = _call(api, session, 'VM.get_by_name_label', 'async')
    # XAPI wraps a task's result in an XML-RPC <value> element.
    assert result == '<value>%s</value>' % clone


@pytest.mark.parametrize('expression,names', [
    ('true', {'a', 'b', 'c'}),
    ('false', set()),
    ('field "name__label" = "a"', {'a'}),
    ('field "name__label" <> "a"', {'b', 'c'}),
    ('field "flag" = "true" and not (field "name__label" = "a")', {'b'}),
    ('field "name__label" = "a" or field "name__label" = "c"', {'a', 'c'}),
    ('"x" = "x"', {'a', 'b', 'c'}),
])
def test_where_expressions(expression, names):
    records = [{'name_label': 'a', 'flag': True},
               {'name_label': 'b', 'flag': True},
               {'name_label': 'c', 'flag': False}]
    node = where.parse(expression)
    assert {r['name_label'] for r in records
            if where.matches(node, r)} == names


@pytest.mark.parametrize('expression', [
    'field', 'field "a" =', '(true', 'true false', 'field "a" ~ "b"'])
def test_where_rejects_malformed_expressions(expression):
    with pytest.raises(db.ApiError) as info:
        where.parse(expression)
    assert info.value.code == 'INTERNAL_ERROR'


def test_jsonrpc_encodes_ints_per_class():
    record = {'memory_static_max': '1024', 'userdevice': '0',
              'snapshot_time': db.EPOCH, 'name_label': '7'}
    assert jsonrpc.encode_result('VM.get_record', record) == {
        'memory_static_max': 1024, 'userdevice': '0',
        'snapshot_time': '19700101T00:00:00Z', 'name_label': '7'}
    assert jsonrpc.encode_result('VBD.get_userdevice', '0') == '0'
    assert jsonrpc.encode_result('VM.get_VCPUs_max', '2') == 2
    assert jsonrpc.encode_result('Async.VM.clone', 'OpaqueRef:t') == (
        'OpaqueRef:t')
    events = {'events': [{'class': 'vdi', 'snapshot': {
        'virtual_size': '5'}}], 'token': '1,0'}
    assert jsonrpc.encode_result('event.from', events)['events'][0][
        'snapshot'] == {'virtual_size': 5}
    assert jsonrpc.decode_params([1, True, {'k': 2}, 1.5]) == [
        '1', True, {'k': '2'}, 1.5]


def test_jsonrpc_rejects_a_malformed_request():
    answer = json.loads(jsonrpc.handle(b'{"method": 5}', None))
    assert answer['error']['code'] == -32700


def test_provision_uses_an_sr_named_by_uuid(api, session):
    vm = _install(api, session)
    assert _call(api, session, 'VM.get_is_a_template', vm) is False
    assert len(_call(api, session, 'VM.get_VBDs', vm)) == 1


def test_allowed_operations_follow_the_state(api, session):
    vm = _install(api, session)
    halted = set(_call(api, session, 'VM.get_allowed_operations', vm))
    assert 'start' in halted and 'clean_shutdown' not in halted
    _call(api, session, 'VM.start', vm, False, False)
    running = set(_call(api, session, 'VM.get_allowed_operations', vm))
    assert {'clean_shutdown', 'suspend', 'changing_VCPUs_live'} <= running
    assert 'start' not in running


@pytest.mark.parametrize('cancellable', [True, False])
def test_a_held_call_cancelled_then_released_at_once(cancellable):
    # The test releases the hold right after the client gave up and
    # cancelled the task, before the held call's thread wakes up: a
    # cancelled operation must not run all the same (a clone did, leaving
    # its VM behind). One that XAPI cannot cancel runs once released.
    changed = threading.Condition(threading.RLock())
    hold = xapi.Hold('VM.clone', cancellable=cancellable, changed=changed)
    cancelled = threading.Event()
    answers = []
    thread = threading.Thread(
        target=lambda: answers.append(hold.wait(cancelled.is_set)))
    thread.start()
    assert hold.reached.wait(10)
    with changed:
        cancelled.set()
        changed.notify_all()
        hold.release()
    thread.join(10)
    assert answers == [not cancellable]
