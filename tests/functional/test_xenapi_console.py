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

"""VNC consoles of the xenapi backend against the XAPI simulator: the
console records, and an RFB handshake through the simulator's
``CONNECT /console`` endpoint over real TCP."""

import socket
import struct

import pytest

from compute_driver import exception
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    xapi_simulator as simulator)
from tests.functional.test_xenapi_driver import _instance
from tests.functional.test_xenapi_driver import backends  # noqa: F401
from tests.functional.test_xenapi_driver import make_driver  # noqa: F401


def _connect(found, path=None):
    sock = socket.create_connection((found.host, found.port), timeout=30)
    sock.sendall(b'CONNECT %s HTTP/1.0\r\n\r\n'
                 % (path or found.internal_access_path).encode())
    reader = sock.makefile('rb')
    status = reader.readline()
    while reader.readline() not in (b'\r\n', b''):
        pass
    return sock, reader, status


def test_vnc_console_speaks_rfb(simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    instance = _instance('vnc1')
    backend.spawn(instance)
    found = backend.get_vnc_console(instance)
    assert found.host == '127.0.0.1'
    assert found.port == simulator.port
    # The access path holds the session: never shown.
    assert 'session_id' in found.internal_access_path
    assert found.internal_access_path not in repr(found)
    vm_ref = backend._find(instance).ref
    consoles = [c for c in simulator.objects('console').values()
                if c['VM'] == vm_ref]
    assert [c['protocol'] for c in consoles] == ['rfb']

    sock, reader, status = _connect(found)
    with sock, reader:
        assert status.split()[1] == b'200'
        assert reader.read(12) == b'RFB 003.008\n'
        sock.sendall(b'RFB 003.008\n')
        assert reader.read(2) == b'\x01\x01'   # one type: None
        sock.sendall(b'\x01')
        assert reader.read(4) == b'\x00\x00\x00\x00'
        sock.sendall(b'\x01')                  # ClientInit: shared
        width, height = struct.unpack('>HH', reader.read(4))
        reader.read(16)
        (length,) = struct.unpack('>I', reader.read(4))
        assert (width, height) > (0, 0)
        name = reader.read(length).decode()
    assert name == simulator.objects('VM')[vm_ref]['name_label']


def test_console_needs_a_session(simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    instance = _instance('vnc2')
    backend.spawn(instance)
    found = backend.get_vnc_console(instance)
    path = found.internal_access_path.split('&session_id=')[0]
    sock, reader, status = _connect(found, path + '&session_id=nope')
    with sock, reader:
        assert status.split()[1] == b'401'


def test_halted_vm_has_no_console(simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    instance = _instance('vnc3')
    backend.spawn(instance)
    vm_ref = backend._find(instance).ref
    backend.power_off(instance)
    assert not [c for c in simulator.objects('console').values()
                if c['VM'] == vm_ref]
    with pytest.raises(exception.InvalidPowerState) as caught:
        backend.get_vnc_console(instance)
    assert 'open the VNC console of instance vnc3' in str(caught.value)
    with pytest.raises(exception.NotSupported):
        backend.open_console(instance)
