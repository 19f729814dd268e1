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

"""The backends' console plumbing that needs no daemon: dockerd's stream
frames over a socket pair, and XAPI console records."""

import socket
import struct
import threading

import pytest

from compute_driver.docker import console as docker_console
from compute_driver import exception
from compute_driver import flavors
from compute_driver import objects
from compute_driver.testing import fixtures
from compute_driver.xenapi import console as xen_console


def _frame(channel, payload):
    return struct.pack('>BxxxL', channel, len(payload)) + payload


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield ours, theirs
    theirs.close()


def test_frames_are_taken_apart_across_reads(pair):
    ours, theirs = pair
    stream = docker_console.DockerStream(ours, tty=False)
    data = (_frame(1, b'out') + _frame(2, b'err') + _frame(1, b'') +
            _frame(1, b'more'))

    def send():
        # Byte by byte: a header or a payload split over reads.
        for index in range(len(data)):
            theirs.sendall(data[index:index + 1])
        theirs.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send)
    sender.start()
    frames = []
    while True:
        frame = stream.read_frame()
        if not frame[1]:
            break
        frames.append(frame)
    sender.join()
    assert frames == [(1, b'out'), (2, b'err'), (1, b'more')]
    stream.close()


def test_a_tty_stream_is_raw(pair):
    ours, theirs = pair
    stream = docker_console.DockerStream(ours, tty=True)
    theirs.sendall(b'\x01\x00raw')
    assert stream.read() == b'\x01\x00raw'
    stream.write(b'typed')
    assert theirs.recv(10) == b'typed'
    stream.close()
    assert stream.read() == b''


def test_input_to_a_process_without_stdin_is_refused(pair):
    ours, theirs = pair
    stream = docker_console.DockerStream(ours, tty=False, writable=False,
                                         instance='c1')
    with pytest.raises(exception.ConsoleUnavailable) as caught:
        stream.write(b'x')
    assert 'compute-driver exec' in str(caught.value)
    stream.close()


def test_close_wakes_a_blocked_read(pair):
    ours, theirs = pair
    stream = docker_console.DockerStream(ours, tty=True)
    result = []
    reader = threading.Thread(target=lambda: result.append(stream.read()))
    reader.start()
    stream.close()
    reader.join()
    assert result == [b'']


def _instance():
    conf = fixtures.make_conf('fake')
    return objects.Instance.new('xvm', flavors.get_flavor(conf, 'm1.nano'),
                                'img')


@pytest.mark.parametrize('location,host,port,path', [
    ('https://192.0.2.7/console?ref=OpaqueRef:c1', '192.0.2.7', 443,
     '/console?ref=OpaqueRef:c1&'),
    ('http://[2001:db8::7]:8080/console?uuid=u1', '2001:db8::7', 8080,
     '/console?uuid=u1&'),
])
def test_xapi_rfb_console(location, host, port, path):
    found = xen_console.vnc_console(
        [{'protocol': 'vt100', 'location': 'https://192.0.2.9/x'},
         {'protocol': 'rfb', 'location': location}],
        'OpaqueRef:s1', _instance())
    assert (found.host, found.port) == (host, port)
    assert found.internal_access_path == path + 'session_id=OpaqueRef%3As1'
    assert 'OpaqueRef' not in repr(found)


def test_xapi_vm_without_rfb_console():
    with pytest.raises(exception.ConsoleUnavailable):
        xen_console.vnc_console([{'protocol': 'vt100', 'location': 'x'}],
                                's', _instance())
