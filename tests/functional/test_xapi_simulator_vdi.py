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

"""The simulator's /import_raw_vdi and /export_raw_vdi over real HTTP.

Plain http.client requests, as any XAPI client makes them; VHDs are made
and read back by qemu-img (its ``vpc`` format), not by the simulator's own
code, so the two VHD implementations check each other.
"""

import http.client
import os
import shutil
import socket
import subprocess
import urllib.parse

import pytest
import XenAPI

from compute_driver.testing import fixtures
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator import server

MIB = 1024 * 1024

xapi_simulator = sim_fixture.xapi_simulator


@pytest.fixture
def session(xapi_simulator):
    s = XenAPI.Session(xapi_simulator.url)
    s.xenapi.login_with_password(sim_fixture.USERNAME, sim_fixture.PASSWORD,
                                 '2.21', 'vdi-tests')
    yield s
    s.xenapi.session.logout()


def _sr(session):
    [pool] = session.xenapi.pool.get_all()
    return session.xenapi.pool.get_default_SR(pool)


def _vdi(session, size):
    return session.xenapi.VDI.create({
        'name_label': 'vdi-test', 'name_description': '',
        'SR': _sr(session), 'virtual_size': str(size), 'type': 'user',
        'sharable': False, 'read_only': False, 'other_config': {},
        'xenstore_data': {}, 'sm_config': {}, 'tags': []})


def _request(sim, method, path, params, body=b'', headers=None,
             length=None):
    # With length, that many bytes of the body at most: the connection
    # closes before the rest arrives.
    conn = http.client.HTTPConnection(sim.host, sim.port, timeout=30)
    conn.request(method, '%s?%s' % (path, urllib.parse.urlencode(params)),
                 body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read(length)
    conn.close()
    return response, data


def _import(sim, session, vdi, data, fmt='raw', task=None):
    params = {'session_id': session._session, 'vdi': vdi, 'format': fmt}
    if task is not None:
        params['task_id'] = task
    return _request(sim, 'PUT', '/import_raw_vdi', params, data)


def _export(sim, session, vdi, fmt='raw', task=None, length=None):
    params = {'session_id': session._session, 'vdi': vdi, 'format': fmt}
    if task is not None:
        params['task_id'] = task
    return _request(sim, 'GET', '/export_raw_vdi', params, length=length)


def _qemu_img():
    path = shutil.which('qemu-img')
    if path is None:
        fixtures.skip_or_fail('qemu-img is not installed')
    return path


def test_raw_import_then_export_returns_the_bytes(xapi_simulator, session):
    size = 3 * MIB
    vdi = _vdi(session, size)
    data = os.urandom(2 * MIB + 777)
    task = session.xenapi.task.create('import', '')
    response, _ = _import(xapi_simulator, session, vdi, data, task=task)
    assert response.status == 200
    assert response.getheader('task-id') == task
    record = session.xenapi.task.get_record(task)
    assert record['status'] == 'success'
    assert record['result'] == '<value>%s</value>' % vdi
    assert session.xenapi.VDI.get_physical_utilisation(vdi) == str(len(data))
    assert session.xenapi.VDI.get_virtual_size(vdi) == str(size)
    response, exported = _export(xapi_simulator, session, vdi)
    assert response.status == 200
    assert response.getheader('Content-Type') == 'application/octet-stream'
    assert exported == data + bytes(size - len(data))


def test_snapshot_of_a_vm_copies_the_bytes(xapi_simulator, session):
    vdi = _vdi(session, MIB)
    data = os.urandom(MIB)
    _import(xapi_simulator, session, vdi, data)
    vm = session.xenapi.VM.clone(session.xenapi.VM.get_by_name_label(
        'Other install media')[0], 'vdi-vm')
    session.xenapi.VM.set_is_a_template(vm, False)
    session.xenapi.VBD.create({
        'VM': vm, 'VDI': vdi, 'userdevice': '0', 'bootable': True,
        'mode': 'RW', 'type': 'Disk', 'empty': False, 'other_config': {},
        'qos_algorithm_type': '', 'qos_algorithm_params': {}})
    snap = session.xenapi.VM.snapshot(vm, 'vdi-snap')
    [copy] = [session.xenapi.VBD.get_VDI(v)
              for v in session.xenapi.VM.get_VBDs(snap)
              if session.xenapi.VBD.get_userdevice(v) == '0']
    assert copy != vdi
    assert _export(xapi_simulator, session, copy)[1] == data
    assert session.xenapi.VDI.get_physical_utilisation(copy) == str(MIB)


def test_vhd_from_qemu_img_imports_and_exports(xapi_simulator, session,
                                               tmp_path):
    qemu_img = _qemu_img()
    raw = tmp_path / 'disk.raw'
    size = 5 * MIB
    with open(raw, 'wb') as f:
        f.truncate(size)
        # Two written regions and holes between them.
        f.seek(MIB // 2)
        f.write(os.urandom(300 * 1024))
        f.seek(4 * MIB + 1024)
        f.write(os.urandom(4096))
    vhd = tmp_path / 'disk.vhd'
    subprocess.run([qemu_img, 'convert', '-f', 'raw', '-O', 'vpc', '-o',
                    'subformat=dynamic,force_size=on', str(raw), str(vhd)],
                   check=True)
    vdi = _vdi(session, size)
    response, _ = _import(xapi_simulator, session, vdi, vhd.read_bytes(),
                          fmt='vhd')
    assert response.status == 200
    assert _export(xapi_simulator, session, vdi)[1] == raw.read_bytes()
    physical = int(session.xenapi.VDI.get_physical_utilisation(vdi))
    assert 300 * 1024 + 4096 <= physical < size

    response, exported = _export(xapi_simulator, session, vdi, fmt='vhd')
    assert response.status == 200
    assert response.getheader('Content-Type') == 'application/vhd'
    assert response.getheader('Content-Disposition').endswith('.vhd"')
    # Holes are left out: 2 of the 3 blocks have data.
    assert len(exported) < size
    back = tmp_path / 'back.vhd'
    back.write_bytes(exported)
    out = tmp_path / 'back.raw'
    subprocess.run([qemu_img, 'convert', '-f', 'vpc', '-O', 'raw',
                    str(back), str(out)], check=True)
    assert out.read_bytes() == raw.read_bytes()


def test_credentials_are_required(xapi_simulator, session):
    vdi = _vdi(session, MIB)
    task = session.xenapi.task.create('import', '')
    for params in ({}, {'session_id': 'OpaqueRef:forged'}):
        response, _ = _request(xapi_simulator, 'PUT', '/import_raw_vdi',
                               dict(params, vdi=vdi, task_id=task), b'x')
        assert response.status == 401
        assert 'Basic' in response.getheader('WWW-Authenticate')
    # Basic credentials work as XAPI's do.
    import base64
    auth = base64.b64encode(b'%s:%s' % (
        sim_fixture.USERNAME.encode(), sim_fixture.PASSWORD.encode()))
    response, _ = _request(xapi_simulator, 'PUT', '/import_raw_vdi',
                           {'vdi': vdi, 'task_id': task}, b'abc',
                           {'Authorization': 'Basic ' + auth.decode()})
    assert response.status == 200
    assert session.xenapi.task.get_status(task) == 'success'


def test_unknown_format_fails_the_task(xapi_simulator, session):
    vdi = _vdi(session, MIB)
    task = session.xenapi.task.create('import', '')
    response, _ = _import(xapi_simulator, session, vdi, b'abc',
                          fmt='qcow2', task=task)
    assert response.status == 404
    assert session.xenapi.task.get_error_info(task) == [
        'INTERNAL_ERROR', 'Unknown format qcow2']


def test_too_much_data_fails_the_task(xapi_simulator, session):
    vdi = _vdi(session, 1024)
    task = session.xenapi.task.create('import', '')
    response, _ = _import(xapi_simulator, session, vdi, bytes(4096),
                          task=task)
    assert response.status == 200
    assert session.xenapi.task.get_status(task) == 'failure'


def test_body_cut_short_fails_the_task(xapi_simulator, session):
    vdi = _vdi(session, MIB)
    task = session.xenapi.task.create('import', '')
    sock = socket.create_connection((xapi_simulator.host,
                                     xapi_simulator.port))
    path = '/import_raw_vdi?' + urllib.parse.urlencode(
        {'session_id': session._session, 'vdi': vdi, 'task_id': task})
    sock.sendall(b'PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n'
                 % (path.encode(), MIB) + bytes(1000))
    sock.shutdown(socket.SHUT_WR)
    answer = sock.makefile('rb').read()
    sock.close()
    assert answer.startswith(b'HTTP/1.0 200') or answer.startswith(
        b'HTTP/1.1 200')
    assert session.xenapi.task.get_status(task) == 'failure'
    assert 'End_of_file' in session.xenapi.task.get_error_info(task)[1]


def test_import_into_an_sr_creates_the_vdi(xapi_simulator, session):
    data = os.urandom(12345)
    task = session.xenapi.task.create('import', '')
    response, _ = _request(
        xapi_simulator, 'PUT', '/import_raw_vdi',
        {'session_id': session._session, 'sr_id': _sr(session),
         'task_id': task}, data)
    assert response.status == 200
    vdi = session.xenapi.task.get_result(task)[len('<value>'):-len(
        '</value>')]
    assert session.xenapi.VDI.get_name_label(vdi) == 'Imported VDI'
    assert session.xenapi.VDI.get_virtual_size(vdi) == str(len(data))
    assert _export(xapi_simulator, session, vdi)[1] == data


def test_destroyed_vdi_frees_its_sr_space(xapi_simulator, session):
    sr = _sr(session)
    before = int(session.xenapi.SR.get_physical_utilisation(sr))
    vdi = _vdi(session, 2 * MIB)
    _import(xapi_simulator, session, vdi, os.urandom(MIB))
    assert int(session.xenapi.SR.get_physical_utilisation(sr)) == (
        before + MIB)
    session.xenapi.VDI.destroy(vdi)
    assert int(session.xenapi.SR.get_physical_utilisation(sr)) == before


def test_stopping_removes_the_disk_files():
    sim = server.Simulator().start()
    try:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password('root', 'password', '2.21', 't')
        vdi = _vdi(s, MIB)
        _import(sim, s, vdi, b'data')
        path = sim.store.disks.path(vdi)
        assert os.path.exists(path)
    finally:
        sim.stop()
    assert not os.path.exists(os.path.dirname(path))
