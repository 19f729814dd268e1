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
import socket
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip('libvirt')

from compute_driver import exception  # noqa: E402
from compute_driver.libvirt import console  # noqa: E402
from compute_driver.libvirt import mapping  # noqa: E402
from compute_driver import loader  # noqa: E402
from compute_driver.testing import fixtures  # noqa: E402
from tests.unit import test_libvirt  # noqa: E402


def _spec(tmp_path, **fields):
    spec = test_libvirt._spec('kvm', tmp_path)
    return dataclasses.replace(spec, **fields)


def test_tcp_serial_and_vnc_xml_validates(tmp_path):
    spec = _spec(tmp_path, serial_tcp=('127.0.0.1', 10007),
                 vnc=mapping.VNCSpec('127.0.0.1', 's3cret'))
    xml = mapping.domain_xml(spec)
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
    assert 's3cret' not in repr(mapping.VNCSpec('127.0.0.1', 's3cret'))


def test_pty_serial_has_no_tcp_endpoint(tmp_path):
    root = mapping.domain_element(_spec(tmp_path))
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
