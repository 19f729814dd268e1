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

"""The libvirt backend's consoles: domain XML, endpoints, ports, options."""

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
from unittest import mock
import uuid as uuidlib
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip('libvirt')

from compute_driver import exception  # noqa: E402
from compute_driver.libvirt import console  # noqa: E402
from compute_driver.libvirt import domainxml  # noqa: E402
from compute_driver.libvirt import driver as libvirt_driver  # noqa: E402
from compute_driver import loader  # noqa: E402
from compute_driver.testing import fixtures  # noqa: E402
from tests.unit import test_libvirt  # noqa: E402


def _spec(tmp_path, **fields):
    spec = test_libvirt._spec('kvm', tmp_path)
    return dataclasses.replace(spec, **fields)


def test_tcp_serial_and_vnc_xml_validates(tmp_path):
    spec = _spec(tmp_path, serial_tcp=('127.0.0.1', 10007),
                 vnc=domainxml.VNCSpec('127.0.0.1', 's3cret'))
    xml = domainxml.domain_xml(spec)
    test_libvirt._validate(xml, tmp_path)
    root = ET.fromstring(xml)
    serial = root.find('devices/serial')
    assert serial.get('type') == 'tcp'
    assert serial.find('source').attrib == {
        'mode': 'bind', 'host': '127.0.0.1', 'service': '10007'}
    assert serial.find('log').get('file') == '/inst/console.log'
    assert console.serial_endpoint(root) == ('127.0.0.1', 10007)
    graphics = root.find('devices/graphics')
    assert graphics.get('listen') == '127.0.0.1'
    assert graphics.get('passwd') == 's3cret'
    # Not started: libvirt has not picked the display's port yet.
    assert console.vnc_endpoint(root) is None
    graphics.set('port', '5903')
    assert console.vnc_endpoint(root) == ('127.0.0.1', 5903)


def test_vnc_password_is_not_in_repr():
    assert 's3cret' not in repr(domainxml.VNCSpec('127.0.0.1', 's3cret'))


def test_pty_serial_has_no_tcp_endpoint(tmp_path):
    root = domainxml.domain_element(_spec(tmp_path))
    assert console.has_pty_serial(root)
    assert console.serial_endpoint(root) is None
    assert root.find('devices/graphics') is None


@pytest.mark.parametrize('text', ['80:90', '20000:10000', '1024:70000'])
def test_bad_port_range(text):
    with pytest.raises(exception.InvalidConfiguration):
        console.port_range(text)


def test_free_port_skips_taken_and_bound():
    holder = socket.socket()
    holder.bind(('127.0.0.1', 0))
    holder.listen()
    try:
        busy = holder.getsockname()[1]
        ports = range(busy, busy + 3)
        found = console.free_serial_port('127.0.0.1', ports, {busy + 1})
        assert found == busy + 2
        with pytest.raises(exception.InsufficientResources):
            console.free_serial_port('127.0.0.1', range(busy, busy + 1),
                                     ())
    finally:
        holder.close()


@pytest.mark.parametrize('overrides,serial,vnc', [
    ({}, False, True),
    ({'serial_console_type': 'tcp', 'vnc_enabled': False}, True, False),
    ({'serial_console_type': 'tcp', 'virt_type': 'lxc'}, False, False),
])
def test_capabilities_follow_the_options(tmp_path, overrides, serial, vnc):
    conf = fixtures.make_conf('libvirt', {'libvirt': {
        'images_path': str(tmp_path / 'images'),
        'instances_path': str(tmp_path / 'instances'), **overrides}})
    backend = loader.load_driver(conf, 'libvirt')
    assert backend.supports('serial_console') is serial
    assert backend.supports('vnc_console') is vnc
    assert backend.supports('attach_console')


def test_bad_vnc_password_is_refused(tmp_path):
    with pytest.raises(Exception) as caught:
        fixtures.make_conf('libvirt', {'libvirt': {
            'vnc_password': 'longer than eight'}})
    assert 'vnc_password' in str(caught.value)


def _closed_port():
    # A port nothing listens on: bound, then released.
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def _instance(tmp_path):
    return _spec(tmp_path).instance


def test_a_listening_console_is_reachable(tmp_path):
    with socket.create_server(('127.0.0.1', 0)) as server:
        port = server.getsockname()[1]
        console.check_reachable('127.0.0.1', port, _instance(tmp_path),
                                'VNC')
        # A wildcard listen address is reached through the loopback one.
        console.check_reachable('0.0.0.0', port, _instance(tmp_path), 'VNC')


def test_a_refusing_console_is_unavailable(tmp_path):
    port = _closed_port()
    with pytest.raises(exception.ConsoleUnavailable) as caught:
        console.check_reachable('127.0.0.1', port, _instance(tmp_path),
                                'VNC', str(uuidlib.uuid4()))
    message = str(caught.value)
    assert 'VNC' in message
    assert '127.0.0.1 port %d' % port in message
    # No QEMU of that domain: no namespace is blamed.
    assert 'namespace' not in message


def test_a_probe_that_times_out_lets_the_console_by(tmp_path):
    with mock.patch.object(console.socket, 'create_connection',
                           autospec=True,
                           side_effect=TimeoutError('timed out')):
        console.check_reachable('192.0.2.1', 5900, _instance(tmp_path),
                                'VNC')


@pytest.fixture
def guest_in_another_netns():
    """A stand-in for a QEMU started by a libvirtd in another namespace.

    Its domain on its command line as libvirt gives it, and listening on
    a loopback port in a network namespace of its own.
    """
    if os.geteuid() != 0 or shutil.which('unshare') is None or \
            shutil.which('ip') is None:
        pytest.skip('a network namespace needs root, unshare and ip')
    domain_uuid = str(uuidlib.uuid4())
    port = _closed_port()
    listen = ('import socket, sys; s = socket.create_server(("127.0.0.1", '
              '%d)); print("ready", flush=True); sys.stdin.read()' % port)
    proc = subprocess.Popen(
        ['unshare', '--net', '--', 'sh', '-c',
         'ip link set lo up && exec "$@"', 'sh', sys.executable, '-c',
         listen, '-name', 'guest=cdrv-unit,debug-threads=on',
         '-uuid', domain_uuid],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == 'ready\n'
        yield domain_uuid, port, proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


@pytest.mark.parametrize('port_taken_here', [False, True])
def test_a_guest_in_another_network_namespace_is_named(
        tmp_path, guest_in_another_netns, port_taken_here):
    # What libvirtd restarted from a thread inside a network namespace
    # does to every guest: QEMU listens in that namespace, where its
    # loopback console is out of this host's reach. Here, the port
    # refuses connections, or is another process's (another guest's
    # display, of a libvirtd in this namespace).
    domain_uuid, port, pid = guest_in_another_netns
    assert console.qemu_pid(domain_uuid) == pid
    assert console.qemu_pid(domain_uuid.upper()) == pid
    holder = (socket.create_server(('127.0.0.1', port)) if port_taken_here
              else None)
    try:
        with pytest.raises(exception.ConsoleUnavailable) as caught:
            console.check_reachable('127.0.0.1', port, _instance(tmp_path),
                                    'VNC', domain_uuid)
    finally:
        if holder is not None:
            holder.close()
    message = str(caught.value)
    assert 'QEMU process %d is in network namespace %s' % (
        pid, console.network_namespace(pid)) in message
    assert console.network_namespace('thread-self') in message
    # compute-driver console connects to a TCP serial port the same way.
    with pytest.raises(exception.ConsoleUnavailable) as caught:
        console.connect_tcp('127.0.0.1', port, _instance(tmp_path),
                            domain_uuid)
    assert 'QEMU process %d' % pid in str(caught.value)


def test_a_guest_in_this_network_namespace_is_found(tmp_path):
    domain_uuid = str(uuidlib.uuid4())
    with socket.create_server(('127.0.0.1', 0)) as server:
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, '-c',
             'import sys; print("ready", flush=True); sys.stdin.read()',
             '-name', 'guest=cdrv-unit', '-uuid', domain_uuid],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == 'ready\n'
            assert console.qemu_pid(domain_uuid) == proc.pid
            assert console.foreign_namespace(domain_uuid) is None
            console.check_reachable('127.0.0.1', port, _instance(tmp_path),
                                    'VNC', domain_uuid)
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)


def _domain(xml):
    dom = mock.Mock()
    dom.XMLDesc.return_value = xml
    dom.UUIDString.return_value = str(uuidlib.uuid4())
    return dom


def test_driver_refuses_to_hand_out_a_dead_vnc_port(tmp_path):
    backend = object.__new__(libvirt_driver.LibvirtDriver)
    port = _closed_port()
    xml = ("<domain><devices><graphics type='vnc' port='%d' autoport='yes' "
           "listen='127.0.0.1'/></devices></domain>" % port)
    with pytest.raises(exception.ConsoleUnavailable):
        backend._vnc_console(_domain(xml), _instance(tmp_path))
    with socket.create_server(('127.0.0.1', 0)) as server:
        port = server.getsockname()[1]
        found = backend._vnc_console(_domain(
            "<domain><devices><graphics type='vnc' port='%d' "
            "listen='127.0.0.1'/></devices></domain>" % port),
            _instance(tmp_path))
    assert (found.host, found.port) == ('127.0.0.1', port)


def test_driver_refuses_to_hand_out_a_dead_serial_port(tmp_path):
    backend = object.__new__(libvirt_driver.LibvirtDriver)
    xml = ("<domain><devices><serial type='tcp'><source mode='bind' "
           "host='127.0.0.1' service='%d'/></serial></devices></domain>"
           % _closed_port())
    with pytest.raises(exception.ConsoleUnavailable) as caught:
        backend._serial_console(_domain(xml), _instance(tmp_path))
    assert 'TCP serial' in str(caught.value)
