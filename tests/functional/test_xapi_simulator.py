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

"""The unmodified XenAPI SDK against the XAPI simulator over real HTTP."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import xmlrpc.client

import pytest
import XenAPI

from compute_driver.testing import xapi_simulator
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    xapi_simulator as simulator)

GiB = 1024 ** 3


def _login(sim, password='password'):
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password('root', password, '2.21',
                                       'functional-tests')
    return session


def _failure(call, *args):
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return info.value.details


@pytest.fixture
def session(simulator):  # noqa: F811
    session = _login(simulator)
    yield session
    session.xenapi.session.logout()


@pytest.fixture
def template(session):
    [ref] = session.xenapi.VM.get_by_name_label('Debian Bookworm 12')
    return ref


def _default_sr_uuid(session):
    pool = session.xenapi.pool.get_all()[0]
    return session.xenapi.SR.get_uuid(session.xenapi.pool.get_default_SR(pool))


def _install(session, template, name='vm1'):
    """What ``xe vm-install`` does: clone, fill in the SR, provision."""
    xen = session.xenapi
    vm = xen.VM.clone(template, name)
    disks = xen.VM.get_other_config(vm)['disks']
    xen.VM.remove_from_other_config(vm, 'disks')
    xen.VM.add_to_other_config(vm, 'disks', disks.replace(
        'sr=""', 'sr="%s"' % _default_sr_uuid(session)))
    xen.VM.provision(vm)
    return vm


def test_login_and_get_all_records(session):
    records = session.xenapi.VM.get_all_records()
    by_name = {r['name_label']: r for r in records.values()}
    template = by_name['Debian Bookworm 12']
    assert template['is_a_template'] is True
    # XAPI sends 64-bit integers as strings.
    assert template['memory_static_max'] == str(512 * 1024 * 1024)
    assert template['power_state'] == 'Halted'
    assert all(ref.startswith('OpaqueRef:') for ref in records)
    [dom0] = [r for r in records.values() if r['is_control_domain']]
    assert dom0['power_state'] == 'Running'


def test_bad_ref_is_handle_invalid(session):
    assert _failure(session.xenapi.VM.get_record, 'OpaqueRef:nope') == [
        'HANDLE_INVALID', 'VM', 'OpaqueRef:nope']
    assert _failure(session.xenapi.VM.get_by_uuid, 'nope') == [
        'UUID_INVALID', 'VM', 'nope']


def test_wrong_password_is_authentication_failed(simulator):  # noqa: F811
    details = _failure(_login, simulator, 'wrong')
    assert details[0] == 'SESSION_AUTHENTICATION_FAILED'


def test_unknown_method_and_parameter_count(session, template):
    assert _failure(session.xenapi.VM.fly, template) == [
        'MESSAGE_METHOD_UNKNOWN', 'VM.fly']
    assert _failure(session.xenapi.VM.start, template) == [
        'MESSAGE_PARAMETER_COUNT_MISMATCH', 'VM.start', '4', '2']


def test_template_cannot_start(session, template):
    assert _failure(session.xenapi.VM.start, template, False, False) == [
        'VM_IS_TEMPLATE', template, 'start']


def test_provision_creates_the_template_disks(session, template):
    vm = _install(session, template)
    record = session.xenapi.VM.get_record(vm)
    assert 'disks' not in record['other_config']
    [vbd] = record['VBDs']
    vdi = session.xenapi.VBD.get_VDI(vbd)
    assert session.xenapi.VDI.get_virtual_size(vdi) == str(10 * GiB)
    assert session.xenapi.VBD.get_bootable(vbd) is True
    sr = session.xenapi.VDI.get_SR(vdi)
    assert vdi in session.xenapi.SR.get_VDIs(sr)


def test_power_state_machine(session, template):
    vm = _install(session, template)
    xen = session.xenapi
    assert _failure(xen.VM.pause, vm) == [
        'VM_BAD_POWER_STATE', vm, 'running', 'halted']
    steps = [(xen.VM.start, (vm, False, False), 'Running'),
             (xen.VM.pause, (vm,), 'Paused'),
             (xen.VM.unpause, (vm,), 'Running'),
             (xen.VM.suspend, (vm,), 'Suspended'),
             (xen.VM.resume, (vm, False, False), 'Running'),
             (xen.VM.clean_reboot, (vm,), 'Running'),
             (xen.VM.hard_reboot, (vm,), 'Running'),
             (xen.VM.clean_shutdown, (vm,), 'Halted')]
    for call, args, state in steps:
        call(*args)
        assert xen.VM.get_power_state(vm) == state
    assert _failure(xen.VM.hard_shutdown, vm) == [
        'VM_BAD_POWER_STATE', vm, 'paused, suspended, running', 'halted']


def test_live_vcpus_and_memory_stay_within_static_limits(session, template):
    xen = session.xenapi
    vm = _install(session, template)
    xen.VM.set_VCPUs_max(vm, '4')
    assert _failure(xen.VM.set_VCPUs_number_live, vm, '2')[0] == (
        'VM_BAD_POWER_STATE')
    xen.VM.start(vm, False, False)
    xen.VM.set_VCPUs_number_live(vm, '3')
    metrics = xen.VM.get_metrics(vm)
    assert xen.VM_metrics.get_VCPUs_number(metrics) == '3'
    assert _failure(xen.VM.set_VCPUs_number_live, vm, '5')[0] == (
        'INVALID_VALUE')
    half = str(256 * 1024 * 1024)
    xen.VM.set_memory_dynamic_range(vm, half, half)
    assert xen.VM_metrics.get_memory_actual(metrics) == half
    too_much = str(2 * 1024 ** 3)
    assert _failure(xen.VM.set_memory_dynamic_range, vm, half,
                    too_much) == ['MEMORY_CONSTRAINT_VIOLATION_ORDER']


def test_snapshot_and_revert(session, template):
    xen = session.xenapi
    vm = _install(session, template)
    xen.VM.start(vm, False, False)
    [disk] = [xen.VBD.get_VDI(v) for v in xen.VM.get_VBDs(vm)]
    snap = xen.VM.snapshot(vm, 'before')
    record = xen.VM.get_record(snap)
    assert (record['is_a_snapshot'], record['is_a_template'],
            record['snapshot_of']) == (True, True, vm)
    assert xen.VM.get_snapshots(vm) == [snap]
    xen.VM.revert(snap)
    assert xen.VM.get_power_state(vm) == 'Halted'
    [reverted] = [xen.VBD.get_VDI(v) for v in xen.VM.get_VBDs(vm)]
    assert reverted != disk
    assert _failure(xen.VDI.get_record, disk)[0] == 'HANDLE_INVALID'


def test_destroy_keeps_the_disks(session, template):
    xen = session.xenapi
    vm = _install(session, template)
    [vdi] = [xen.VBD.get_VDI(v) for v in xen.VM.get_VBDs(vm)]
    xen.VM.destroy(vm)
    assert xen.VDI.get_VBDs(vdi) == []
    xen.VDI.destroy(vdi)
    assert _failure(xen.VDI.get_record, vdi)[0] == 'HANDLE_INVALID'


def test_async_call_is_a_task(session, template):
    xen = session.xenapi
    vm = _install(session, template)
    task = xen.Async.VM.start(vm, False, False)
    for _ in range(100):
        if xen.task.get_status(task) != 'pending':
            break
        time.sleep(0.05)
    record = xen.task.get_record(task)
    assert (record['status'], record['progress']) == ('success', 1.0)
    failed = xen.Async.VM.start(vm, False, False)
    for _ in range(100):
        if xen.task.get_status(failed) != 'pending':
            break
        time.sleep(0.05)
    assert xen.task.get_error_info(failed) == [
        'VM_BAD_POWER_STATE', vm, 'halted', 'running']


def test_event_from_blocks_until_a_change(simulator, session,  # noqa
                                          template):
    xen = session.xenapi
    first = xen.event_from(['vm'], '', 0.0)
    assert {e['operation'] for e in first['events']} == {'add'}
    assert first['valid_ref_counts']['vm'] == len(xen.VM.get_all())
    vm = _install(session, template)
    token = xen.event_from(['vm'], first['token'], 0.0)['token']
    other = _login(simulator)
    woke = threading.Event()
    results = []

    def wait():
        results.append(other.xenapi.event_from(['vm'], token, 30.0))
        woke.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    # The token predates the start, so the waiter returns with it
    # whether it called before or after.
    xen.VM.start(vm, False, False)
    assert woke.wait(30)
    waiter.join()
    [event] = [e for e in results[0]['events'] if e['ref'] == vm]
    assert (event['class'], event['operation']) == ('vm', 'mod')
    assert event['snapshot']['power_state'] == 'Running'
    quiet = xen.event_from(['vm'], results[0]['token'], 0.1)
    assert quiet['events'] == []


def test_pool_member_names_the_master(simulator):  # noqa: F811
    member = simulator.add_member()
    # XAPI names the master's address; the member shares its port.
    assert member.port == simulator.port
    assert _failure(_login, member) == ['HOST_IS_SLAVE', simulator.host]


def test_expired_session_is_renewed_by_the_sdk(simulator, session):  # noqa
    before = session._session
    assert simulator.invalidate_sessions() == 1
    assert session.xenapi.VM.get_all()
    assert session._session != before
    simulator.set_max_idle(0.2)
    time.sleep(0.4)
    raw = XenAPI.Session(simulator.url)
    # Without the SDK's retry: the expired session is refused.
    assert raw.VM.get_all(session._session) == {
        'Status': 'Failure',
        'ErrorDescription': ['SESSION_INVALID', session._session]}


def test_injected_failure(simulator, session, template):  # noqa: F811
    simulator.fail('VM.clone', 'SR_FULL', '1', '0', nth=2)
    session.xenapi.VM.clone(template, 'first')
    assert _failure(session.xenapi.VM.clone, template, 'second') == [
        'SR_FULL', '1', '0']
    session.xenapi.VM.clone(template, 'third')


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_console_script_serves_until_terminated(tmp_path):
    path = os.pathsep.join([os.path.dirname(sys.executable),
                            os.environ.get('PATH', '')])
    script = shutil.which('compute-driver-xapi-simulator', path=path)
    assert script, 'compute-driver-xapi-simulator is not installed'
    seed = tmp_path / 'seed.json'
    seed.write_text('{"hostname": "seeded", "templates": '
                    '[{"name": "tiny", "memory_mb": 64, "disk_gb": 1}]}')
    port = _free_port()
    proc = subprocess.Popen(
        [script, '--port', str(port), '--password', 'secret',
         '--seed-file', str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        session = None
        for _ in range(100):
            try:
                session = XenAPI.Session('http://127.0.0.1:%d/' % port)
                session.xenapi.login_with_password('root', 'secret', '2.21',
                                                   'tests')
                break
            except OSError:
                session = None
                time.sleep(0.1)
        assert session is not None, 'the simulator did not start'
        hosts = session.xenapi.host.get_all_records()
        assert [h['hostname'] for h in hosts.values()] == ['seeded']
        assert session.xenapi.VM.get_by_name_label('tiny')
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0


def test_console_script_rejects_a_bad_seed(tmp_path):
    seed = tmp_path / 'seed.json'
    seed.write_text('[1, 2]')
    result = subprocess.run(
        [sys.executable, '-c',
         'import sys; from compute_driver.testing import xapi_simulator; '
         'sys.exit(xapi_simulator.main(sys.argv[1:]))',
         '--port', '0', '--seed-file', str(seed)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert 'a seed file holds one JSON object' in result.stderr


def test_simulator_reports_its_address():
    with xapi_simulator.Simulator() as sim:
        host, port = sim.address.split(':')
        assert host == '127.0.0.1' and int(port) > 0
        assert sim.url == 'http://%s/' % sim.address


def test_calls_share_a_kept_open_connection_until_stop():
    with xapi_simulator.Simulator() as sim:
        connection = http.client.HTTPConnection(sim.host, sim.port,
                                                timeout=30)
        login = xmlrpc.client.dumps(('root', 'password', '2.21', 'tests'),
                                    'session.login_with_password')
        for _ in range(2):
            # As XAPI does, the connection stays open between calls.
            connection.request('POST', '/', login,
                               {'Content-Type': 'text/xml'})
            response = connection.getresponse()
            [answer], _ = xmlrpc.client.loads(response.read())
            assert answer['Status'] == 'Success'
            assert not response.will_close
        session = _login(sim)
        session.xenapi.VM.get_all()
    # A stopped simulator serves no more calls, even on a kept-open
    # connection.
    with pytest.raises(OSError):
        session.xenapi.VM.get_all()
    connection.close()


# -- fidelity to XAPI: what third-party tools would otherwise learn wrong --

def test_a_bad_where_expression_fails_with_nothing_to_match(session):
    # XAPI parses the expression before it reads any object.
    assert session.xenapi.task.get_all() == []
    assert _failure(session.xenapi.task.get_all_records_where,
                    'field "status" =')[0] == 'INTERNAL_ERROR'


def test_raw_provision_of_a_stock_template_is_uuid_invalid(session,
                                                           template):
    xen = session.xenapi
    vm = xen.VM.clone(template, 'raw')
    vdis = set(xen.VDI.get_all())
    # Stock templates leave the SR empty; only xe vm-install fills it in.
    assert 'sr=""' in xen.VM.get_other_config(vm)['disks']
    assert _failure(xen.VM.provision, vm) == ['UUID_INVALID', 'sr', '']
    assert set(xen.VDI.get_all()) == vdis


def test_lenient_mode_provisions_on_the_default_sr():
    with xapi_simulator.Simulator(mode='lenient') as sim:
        xen = _login(sim).xenapi
        [template] = xen.VM.get_by_name_label('Debian Bookworm 12')
        vm = xen.VM.clone(template, 'lenient')
        xen.VM.provision(vm)
        assert len(xen.VM.get_VBDs(vm)) == 1
    with pytest.raises(ValueError):
        xapi_simulator.Simulator(mode='sloppy')


def test_provision_clears_is_a_template_and_needs_one(session, template):
    xen = session.xenapi
    vm = _install(session, template)
    assert xen.VM.get_is_a_template(vm) is False
    [vbd] = xen.VM.get_VBDs(vm)
    vdi = xen.VBD.get_VDI(vbd)
    # What xapi_templates.ml names and marks.
    assert xen.VDI.get_name_label(vdi) == '0'
    assert xen.VBD.get_other_config(vbd) == {'owner': ''}
    assert _failure(xen.VM.provision, vm) == [
        'PROVISION_ONLY_ALLOWED_ON_TEMPLATE']


def test_guest_agent_metrics_and_features(session, template):
    xen = session.xenapi
    vm = _install(session, template)
    assert xen.VM.get_guest_metrics(vm) == xapi_simulator.NULL_REF
    xen.VM.start(vm, False, False)
    metrics = xen.VM_guest_metrics.get_record(xen.VM.get_guest_metrics(vm))
    assert metrics['PV_drivers_detected'] is True
    assert metrics['other']['feature-vcpu-hotplug'] == '1'
    allowed = xen.VM.get_allowed_operations(vm)
    assert {'clean_shutdown', 'suspend', 'changing_VCPUs_live'} <= set(
        allowed)
    xen.VM.clean_shutdown(vm)
    # The agent's record goes with the domain.
    assert xen.VM.get_guest_metrics(vm) == xapi_simulator.NULL_REF
    assert metrics['uuid'] not in [
        r['uuid'] for r in xen.VM_guest_metrics.get_all_records().values()]


def test_guest_without_tools(simulator, session):  # noqa: F811
    xen = session.xenapi
    [template] = xen.VM.get_by_name_label('Other install media')
    vm = _install(session, template)
    xen.VM.start(vm, False, False)
    assert xen.VM.get_guest_metrics(vm) == xapi_simulator.NULL_REF
    allowed = set(xen.VM.get_allowed_operations(vm))
    assert not {'clean_shutdown', 'clean_reboot', 'suspend',
                'changing_VCPUs_live'} & allowed
    assert {'hard_shutdown', 'hard_reboot', 'pause'} <= allowed
    assert _failure(xen.VM.set_VCPUs_number_live, vm, '1') == [
        'VM_LACKS_FEATURE', vm]
    assert _failure(xen.VM.clean_shutdown, vm) == [
        'VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT']
    assert _failure(xen.VM.clean_reboot, vm) == [
        'VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT']
    assert _failure(xen.VM.suspend, vm) == [
        'VM_FAILED_SUSPEND_ACKNOWLEDGMENT']
    xen.VM.hard_shutdown(vm)
    # Installing tools shows at the next boot.
    simulator.set_guest_tools(vm, True)
    xen.VM.start(vm, False, False)
    xen.VM.clean_shutdown(vm)


def test_error_codes_and_parameters_as_xapi_sends_them(simulator, session,  # noqa
                                                       template):
    xen = session.xenapi
    vm = _install(session, template)
    assert _failure(xen.VM.set_memory_limits, vm, '4', '2', '3', '3') == [
        'MEMORY_CONSTRAINT_VIOLATION_ORDER']
    assert _failure(xen.VM.set_VCPUs_at_startup, vm, '9') == [
        'INVALID_VALUE', 'VCPU values must satisfy: 0 < VCPUs_at_startup '
        '<= VCPUs_max', '9']
    assert _failure(xen.VM.revert, vm) == ['REVERT_ONLY_ALLOWED_ON_SNAPSHOT']
    snap = xen.VM.snapshot(vm, 'snap')
    assert _failure(xen.VM.start, snap, False, False) == [
        'VM_IS_SNAPSHOT', snap, 'start']
    assert _failure(xen.VM.pause, template) == [
        'VM_BAD_POWER_STATE', template, 'running', 'halted']
    assert _failure(xen.VM.destroy, template) == [
        'VM_IS_TEMPLATE', template, 'destroy']
    pool = xen.pool.get_all()[0]
    with simulator.store.lock:
        simulator.store.get('pool', pool)['restrictions']['restrict_dmc'] = (
            'true')
    half = str(256 * 1024 ** 2)
    assert _failure(xen.VM.set_memory_dynamic_range, vm, half,
                    str(512 * 1024 ** 2)) == [
        'MEMORY_CONSTRAINT_VIOLATION_MAXPIN', 'DMC unavailable']


def test_concurrent_operations_show_in_current_operations(simulator,  # noqa
                                                          session, template):
    xen = session.xenapi
    vm = _install(session, template)
    hold = simulator.hold('VM.clone')
    task = xen.Async.VM.clone(vm, 'slow')
    assert hold.reached.wait(30)
    assert list(xen.VM.get_current_operations(vm).items()) == [
        (task, 'clone')]
    assert _failure(xen.VM.start, vm, False, False) == [
        'OTHER_OPERATION_IN_PROGRESS', 'VM.clone', vm]
    # Clones may run side by side, as in XAPI.
    xen.VM.clone(vm, 'side-by-side')
    xen.task.cancel(task)
    assert hold.finished.wait(30)
    record = xen.task.get_record(task)
    assert (record['status'], record['error_info']) == (
        'cancelled', ['TASK_CANCELLED', task])
    assert xen.VM.get_by_name_label('slow') == []
    assert xen.VM.get_current_operations(vm) == {}
    xen.VM.start(vm, False, False)


class _Tagging(xmlrpc.client.Transport):
    def send_headers(self, connection, headers):
        super().send_headers(connection, list(headers) + [
            ('X-Http-Other-Config-Caller', 'tests-42')])


def test_a_synchronous_vm_operation_runs_under_a_task(simulator,  # noqa
                                                      session, template):
    xen = session.xenapi
    vm = _install(session, template)
    tagged = XenAPI.Session(simulator.url, transport=_Tagging())
    tagged.xenapi.login_with_password('root', 'password', '2.21', 'tests')
    hold = simulator.hold('VM.clone')
    failures = []

    def clone():
        failures.append(_failure(tagged.xenapi.VM.clone, vm, 'slow'))

    cloner = threading.Thread(target=clone)
    cloner.start()
    assert hold.reached.wait(30)
    # As XAPI does: a task of the call's own, listed by the VM, with the
    # request's X-Http-Other-Config- headers.
    [(task, record)] = xen.task.get_all_records().items()
    assert record['status'] == 'pending'
    assert record['other_config'] == {'http:caller': 'tests-42'}
    assert xen.VM.get_current_operations(vm) == {task: 'clone'}
    xen.task.cancel(task)
    cloner.join(30)
    assert failures == [['TASK_CANCELLED', task]]
    assert xen.task.get_all() == []
    assert xen.VM.get_by_name_label('slow') == []
    tagged.xenapi.session.logout()


def test_member_answers_every_call_with_host_is_slave(simulator,  # noqa
                                                      session):
    member = simulator.add_member()
    raw = XenAPI.Session(member.url)
    assert raw.VM.get_all(session._session) == {
        'Status': 'Failure',
        'ErrorDescription': ['HOST_IS_SLAVE', simulator.host]}
    local = XenAPI.Session(member.url)
    local.slave_local_login_with_password('root', 'password')
    assert local.xenapi.VM.get_all()


def test_event_from_reports_adds_and_skips_short_lived_objects(session,
                                                               template):
    xen = session.xenapi
    token = xen.event_from(['vm'], '', 0.0)['token']
    vm = _install(session, template)
    xen.VM.set_name_description(vm, 'changed after creation')
    gone = xen.VM.clone(template, 'short-lived')
    xen.VM.destroy(gone)
    result = xen.event_from(['vm'], token, 0.0)
    by_ref = {e['ref']: e for e in result['events']}
    assert by_ref[vm]['operation'] == 'add'
    assert by_ref[vm]['snapshot']['name_description'] == (
        'changed after creation')
    assert gone not in by_ref
    # Every table is counted, whatever the classes asked for.
    assert {'vm', 'sr', 'host', 'vdi', 'task'} <= set(
        result['valid_ref_counts'])
    for bad in ('junk', '5,abc', '1'):
        assert _failure(xen.event_from, ['vm'], bad, 0.0) == [
            'EVENT_FROM_TOKEN_PARSE_FAILURE', bad]


def test_datetimes_are_xmlrpc_datetimes(session, template):
    xen = session.xenapi
    record = xen.VM.get_record(template)
    assert isinstance(record['snapshot_time'], xmlrpc.client.DateTime)
    assert record['snapshot_time'].value == '19700101T00:00:00Z'
    host = xen.host.get_all()[0]
    assert isinstance(xen.host.get_servertime(host), xmlrpc.client.DateTime)


def test_classes_and_messages_tools_read_first(session, template):
    xen = session.xenapi
    host = xen.host.get_all()[0]
    [pbd] = xen.PBD.get_all_records().values()
    assert pbd['host'] == host and pbd['currently_attached'] is True
    [pif] = xen.PIF.get_all_records().values()
    assert pif['management'] is True and pif['host'] == host
    assert xen.host.get_PIFs(host) == xen.PIF.get_all()
    assert xen.console.get_all_records()
    assert xen.message.get_all_records() == {}
    templates = xen.VM.get_all_records_where(
        'field "is_a_template" = "true" and not (field "name__label" = '
        '"Other install media")')
    assert [r['name_label'] for r in templates.values()] == [
        'Debian Bookworm 12']
    assert _failure(xen.VM.get_all_records_where, 'field =')[0] == (
        'INTERNAL_ERROR')
    # XAPI's VM record has about a hundred fields.
    assert len(xen.VM.get_record(template)) >= 90
    assert len(xen.host.get_record(host)) >= 60


def _jsonrpc(sim, method, params, version='2.0'):
    request = {'method': method, 'params': params, 'id': 7}
    if version:
        request['jsonrpc'] = version
    answer = urllib.request.urlopen(urllib.request.Request(
        sim.url + 'jsonrpc', json.dumps(request).encode(),
        {'Content-Type': 'application/json'}), timeout=30)
    return json.loads(answer.read())


def test_jsonrpc_login_and_get_all_records(simulator):  # noqa: F811
    # The wire format of XAPI's C#, Go, Java and PowerShell SDKs; the
    # Python SDK speaks XML-RPC only.
    login = _jsonrpc(simulator, 'session.login_with_password',
                     ['root', 'password', '2.21', 'json'])
    assert login['jsonrpc'] == '2.0' and login['id'] == 7
    session = login['result']
    records = _jsonrpc(simulator, 'VM.get_all_records', [session])['result']
    template = next(r for r in records.values()
                    if r['name_label'] == 'Debian Bookworm 12')
    # JSON-RPC sends ints as numbers and datetimes as strings.
    assert template['memory_static_max'] == 512 * 1024 ** 2
    assert template['snapshot_time'] == '19700101T00:00:00Z'
    ref = next(r for r, rec in records.items() if rec is template)
    assert _jsonrpc(simulator, 'VM.get_VCPUs_max', [session, ref])[
        'result'] == 1
    # What the SDKs turn into a Failure: message, then data.
    failed = _jsonrpc(simulator, 'VM.start', [session, ref, False, False])
    assert failed['error'] == {'code': 1, 'message': 'VM_IS_TEMPLATE',
                               'data': [ref, 'start']}
    assert 'result' not in failed
    # JSON numbers are accepted where XAPI takes ints.
    vm = _jsonrpc(simulator, 'VM.clone', [session, ref, 'json'])['result']
    assert _jsonrpc(simulator, 'VM.set_VCPUs_max', [session, vm, 2]) == {
        'jsonrpc': '2.0', 'id': 7, 'result': ''}
    # The same pool seen through XML-RPC.
    xen = _login(simulator).xenapi
    assert xen.VM.get_VCPUs_max(vm) == '2'


def test_jsonrpc_version_1(simulator):  # noqa: F811
    failed = _jsonrpc(simulator, 'session.login_with_password',
                      ['root', 'wrong'], version=None)
    assert failed == {'id': 7, 'result': None, 'error': [
        'SESSION_AUTHENTICATION_FAILED', 'root', 'Authentication failure']}
    ok = _jsonrpc(simulator, 'session.login_with_password',
                  ['root', 'password'], version=None)
    assert ok['error'] is None and ok['result'].startswith('OpaqueRef:')
