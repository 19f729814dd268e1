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

"""What the libvirt and docker backends make of ports, without a host.

The Open vSwitch case is covered here only: the test hosts have no
``openvswitch`` kernel module, so no OVS bridge exists to plug into.
"""

import xml.etree.ElementTree as ET

import pytest

from compute_driver import flavors
from compute_driver.network import model
from compute_driver import objects
from compute_driver.testing import fixtures

libvirt = pytest.importorskip('libvirt')

from compute_driver.docker import network as docker_network  # noqa: E402
from compute_driver.libvirt import network as lv_network  # noqa: E402

PORT_ID = '0d8e5f7a-1b2c-4d3e-8f90-a1b2c3d4e5f6'


def _port(**kwargs):
    values = dict(id=PORT_ID, mac='fa:16:3e:00:00:01', vif_type='bridge',
                  bridge='br0', mtu=1450)
    values.update(kwargs)
    return model.Port(**values)


def _xml(port, virt_type='qemu'):
    return ET.tostring(lv_network.interface_element(port, virt_type),
                       encoding='unicode')


def test_bridge_interface():
    assert _xml(_port()) == (
        '<interface type="bridge"><source bridge="br0" />'
        '<mac address="fa:16:3e:00:00:01" /><model type="virtio" />'
        '<mtu size="1450" /><target dev="tap0d8e5f7a-1b" /></interface>')


def test_ovs_interface_names_the_port_for_neutrons_agent():
    element = lv_network.interface_element(
        _port(vif_type='ovs', bridge=None), 'kvm')
    assert element.get('type') == 'bridge'
    assert element.find('source').get('bridge') == 'br-int'
    virtualport = element.find('virtualport')
    assert virtualport.get('type') == 'openvswitch'
    assert virtualport.find('parameters').get('interfaceid') == PORT_ID


def test_tap_interface_without_mtu():
    assert _xml(_port(vif_type='tap', bridge=None, mtu=None)) == (
        '<interface type="ethernet"><mac address="fa:16:3e:00:00:01" />'
        '<model type="virtio" /><target dev="tap0d8e5f7a-1b" />'
        '</interface>')


def test_lxc_and_xen_interfaces_have_no_virtio_model():
    assert _xml(_port(), 'lxc').count('model') == 0
    assert 'target' not in _xml(_port(), 'lxc')
    assert _xml(_port(), 'xen').count('model') == 0


def test_domain_xml_gets_interfaces_and_the_record():
    domain = ('<domain><metadata /><devices><disk /></devices></domain>')
    second = _port(id='6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d',
                   mac='fa:16:3e:00:00:02', vif_type='tap', bridge=None)
    root = ET.fromstring(lv_network.with_ports(
        domain, (_port(), second), 'qemu'))
    assert [i.find('mac').get('address')
            for i in root.findall('devices/interface')] == [
        'fa:16:3e:00:00:01', 'fa:16:3e:00:00:02']
    record = root.find('metadata/{%s}ports' % lv_network.PORTS_NS)
    assert model.from_record(record.text) == (_port(), second)
    assert lv_network.with_ports(domain, (), 'qemu') == domain


class _Dom:
    def __init__(self, record=None):
        self.record = record

    def XMLDesc(self, flags):
        metadata = '' if self.record is None else (
            '<cdports:ports xmlns:cdports="%s">%s</cdports:ports>'
            % (lv_network.PORTS_NS, self.record))
        return '<domain><metadata>%s</metadata><devices/></domain>' % (
            metadata)

    def name(self):
        return 'cdrv-test'


def test_recorded_ports_of_a_domain():
    assert lv_network.recorded(_Dom(model.to_record((_port(),)))) == (
        _port(),)
    assert lv_network.recorded(_Dom()) == ()
    # A damaged record is logged and counts as none.
    assert lv_network.recorded(_Dom('[{"id": "x"}]')) == ()


def test_docker_labels_round_trip():
    labels = docker_network.labels((_port(),))
    assert docker_network.ports_of(labels) == (_port(),)
    assert docker_network.ports_of(
        {'Id': 'c1', 'Config': {'Labels': labels}}) == (_port(),)
    assert docker_network.labels(()) == {}
    assert docker_network.ports_of(
        {docker_network.PORTS: 'not json'}) == ()


def test_docker_unwire_deletes_veths_but_keeps_the_ports_plugged(
        monkeypatch):
    from compute_driver.network import netlink
    from compute_driver.network import plug as net_plug
    deleted = []
    monkeypatch.setattr(netlink, 'unplug_veth',
                        lambda port: deleted.append(port.devname) or True)
    monkeypatch.setattr(net_plug, 'unplug', lambda *a, **k: pytest.fail(
        'a stop must not unplug the ports through os-vif'))
    ports = (_port(), _port(id='2f5c1a8e-0f6b-4a53-9d3a-8f1d2e3c4b5a',
                            devname='tap2f5c1a8e-0f'))
    docker_network.unwire(objects.Instance.new(
        'unwired', flavors.get_flavor(fixtures.make_conf('fake'), 'm1.tiny'),
        'img'), ports)
    assert deleted == [p.devname for p in ports]
