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

import json

import pytest

from compute_driver import exception
from compute_driver.network import exception as net_exception
from compute_driver.network import model
from compute_driver.testing import fixtures

PORT = '1b4a3c9e-8f3d-4a55-9d0b-2f7c7f3f0a11'
PORT2 = '2c5b4dae-9a4e-4b66-8e1c-3a8d8a4a1b22'
NET = '9a1f2b3c-4d5e-4f60-8172-839405a6b7c8'


def _port(**kwargs):
    values = dict(id=PORT, mac='FA:16:3E:12:34:56', vif_type='bridge',
                  bridge='brq-test')
    values.update(kwargs)
    return model.Port(**values)


def _nova_vif(port_id=PORT, mac='fa:16:3e:12:34:56', **meta):
    """One VIF as nova.network.model.NetworkInfo.json() writes it."""
    return {
        'id': port_id, 'address': mac, 'type': 'bridge',
        'devname': 'tap' + port_id[:11], 'ovs_interfaceid': None,
        'details': {}, 'vnic_type': 'normal', 'active': False,
        'network': {
            'id': NET, 'bridge': 'brq9a1f2b3c-4d', 'label': 'private',
            'subnets': [{
                'cidr': '192.0.2.0/24', 'version': 4,
                'gateway': {'address': '192.0.2.1', 'type': 'gateway',
                            'version': 4, 'meta': {}},
                'ips': [{'address': '192.0.2.10', 'type': 'fixed',
                         'version': 4, 'meta': {}, 'floating_ips': []}],
                'dns': [], 'routes': [], 'meta': {'dhcp_server':
                                                  '192.0.2.2'}}, {
                'cidr': '2001:db8::/64', 'version': 6,
                'gateway': {'address': '2001:db8::1'},
                'ips': [{'address': '2001:db8::10'}]}],
            'meta': dict({'mtu': 1450, 'tenant_id': 'p1',
                          'should_create_bridge': True}, **meta)}}


def test_port_normalises_and_derives():
    port = _port(mac='FA-16-3E-12-34-56', mtu='1450')
    assert port.mac == 'fa:16:3e:12:34:56'
    assert port.mtu == 1450
    # Nova's device name: "tap" and the port id's first 11 characters.
    assert port.devname == 'tap1b4a3c9e-8f'
    assert port.plugin == 'linux_bridge'


def test_ovs_port_defaults_to_the_integration_bridge():
    port = _port(vif_type='ovs', bridge=None)
    assert port.bridge == model.DEFAULT_INTEGRATION_BRIDGE
    assert port.plugin == 'ovs'
    assert _port(vif_type='tap', bridge=None).plugin == 'noop'


@pytest.mark.parametrize('mac', [
    'fa:16:3e:12:34', 'zz:16:3e:12:34:56', '01:00:5e:00:00:01',
    '00:00:00:00:00:00', '', None, 42, 'fa:16:3e:12:34:56:78'])
def test_bad_mac(mac):
    with pytest.raises(net_exception.InvalidMAC) as exc:
        _port(mac=mac)
    assert isinstance(exc.value, exception.InvalidInput)
    assert PORT in str(exc.value)


@pytest.mark.parametrize('mtu', [67, 65536, 0, -1, 'big', 1.5, True])
def test_mtu_out_of_range(mtu):
    with pytest.raises(net_exception.InvalidMTU) as exc:
        _port(mtu=mtu)
    assert '68 to 65535' in str(exc.value)


@pytest.mark.parametrize('mtu', [68, 1500, 9000, 65535, None])
def test_mtu_bounds_accepted(mtu):
    assert _port(mtu=mtu).mtu == mtu


@pytest.mark.parametrize('address, cidr, gateway, words', [
    ('192.0.2.300', '192.0.2.0/24', None, 'not an IPv4 or IPv6'),
    ('198.51.100.5', '192.0.2.0/24', None, 'outside its subnet'),
    ('192.0.2.5', '192.0.2.1/24', None, 'not a network'),
    ('192.0.2.5', 'nonsense', None, 'not a network'),
    ('192.0.2.0', '192.0.2.0/24', None, 'network or broadcast'),
    ('192.0.2.255', '192.0.2.0/24', None, 'network or broadcast'),
    ('192.0.2.5', '192.0.2.0/24', '198.51.100.1', 'gateway'),
    ('192.0.2.5', '192.0.2.0/24', 'gw', 'gateway'),
    ('2001:db8::5', '192.0.2.0/24', None, 'outside its subnet'),
])
def test_bad_fixed_ip(address, cidr, gateway, words):
    with pytest.raises(net_exception.InvalidFixedIP) as exc:
        model.FixedIP(address, cidr, gateway, port=PORT)
    assert words in str(exc.value)
    assert PORT in str(exc.value)


def test_fixed_ip_normalises():
    ip = model.FixedIP(' 2001:DB8::5 ', '2001:db8::/64', '2001:db8::1')
    assert (ip.address, ip.version, ip.interface) == (
        '2001:db8::5', 6, '2001:db8::5/64')


def test_duplicate_fixed_ip_in_one_port():
    ip = model.FixedIP('192.0.2.5', '192.0.2.0/24')
    with pytest.raises(net_exception.InvalidFixedIP) as exc:
        _port(fixed_ips=(ip, ip))
    assert 'twice' in str(exc.value)


def test_unknown_vif_type():
    with pytest.raises(net_exception.UnknownVIFType) as exc:
        _port(vif_type='vhostuser')
    assert 'bridge, ovs, tap' in str(exc.value)
    assert exc.value.vif_type == 'vhostuser'


@pytest.mark.parametrize('kwargs, words', [
    ({'id': 'not-a-uuid'}, 'not a uuid'),
    ({'bridge': None}, 'needs a bridge'),
    ({'bridge': 'a-name-far-too-long'}, 'not a Linux interface name'),
    ({'devname': 'bad/name'}, 'not a Linux interface name'),
    ({'vlan': 4095}, 'VLAN'),
    ({'vlan': True}, 'VLAN'),
])
def test_bad_port(kwargs, words):
    with pytest.raises(net_exception.InvalidPort) as exc:
        _port(**kwargs)
    assert words in str(exc.value)


def test_port_is_frozen():
    port = _port()
    with pytest.raises(AttributeError):
        port.mac = 'fa:16:3e:00:00:01'


def test_duplicate_mac_in_one_list():
    with pytest.raises(net_exception.DuplicatePort) as exc:
        model.validate_ports([_port(), _port(id=PORT2)])
    assert (exc.value.first, exc.value.second) == (PORT, PORT2)
    assert 'the MAC fa:16:3e:12:34:56' in str(exc.value)


def test_duplicate_devname_in_one_list():
    with pytest.raises(net_exception.DuplicatePort) as exc:
        model.validate_ports([
            _port(devname='tapx'),
            _port(id=PORT2, mac='fa:16:3e:00:00:02', devname='tapx')])
    assert 'device name' in str(exc.value)


def test_gateways_first_of_each_version():
    port = _port(fixed_ips=(
        model.FixedIP('192.0.2.5', '192.0.2.0/24', '192.0.2.1'),
        model.FixedIP('198.51.100.5', '198.51.100.0/24', '198.51.100.1'),
        model.FixedIP('2001:db8::5', '2001:db8::/64')))
    assert port.gateways() == {4: '192.0.2.1'}


def test_from_nova_network_info_json_text():
    ports = model.from_network_info(json.dumps([_nova_vif()]))
    assert len(ports) == 1
    port = ports[0]
    assert (port.id, port.mac, port.vif_type, port.devname, port.bridge,
            port.mtu, port.network_id, port.network_label) == (
        PORT, 'fa:16:3e:12:34:56', 'bridge', 'tap1b4a3c9e-8f',
        'brq9a1f2b3c-4d', 1450, NET, 'private')
    assert port.should_provide_bridge
    assert [(ip.address, ip.cidr, ip.gateway) for ip in port.fixed_ips] == [
        ('192.0.2.10', '192.0.2.0/24', '192.0.2.1'),
        ('2001:db8::10', '2001:db8::/64', '2001:db8::1')]
    assert port.vlan is None


def test_from_nova_network_info_vlan():
    vif = _nova_vif(should_create_vlan=True, vlan='100',
                    bridge_interface='eth1')
    port, = model.from_network_info([vif])
    assert (port.vlan, port.bridge_interface) == (100, 'eth1')
    vif = _nova_vif()
    vif['details'] = {'vlan': 'x'}
    with pytest.raises(net_exception.InvalidPort):
        model.from_network_info([vif])


def test_from_nova_network_info_bad_port_is_typed():
    vif = _nova_vif()
    vif['network']['subnets'][0]['ips'][0]['address'] = '192.0.2.999'
    with pytest.raises(net_exception.InvalidFixedIP):
        model.from_network_info([vif])
    with pytest.raises(net_exception.DuplicatePort):
        model.from_network_info([_nova_vif(), _nova_vif(port_id=PORT2)])
    with pytest.raises(net_exception.InvalidPort):
        model.from_network_info('[{')
    with pytest.raises(net_exception.InvalidPort):
        model.from_network_info([42])
    assert model.from_network_info(None) == ()


def test_from_the_adapters_flat_list():
    # The shape compute_driver.nova.convert.network_info() returns.
    flat = [{'id': PORT, 'address': 'fa:16:3e:12:34:56', 'type': 'ovs',
             'devname': None, 'network_id': NET, 'bridge': 'br-int',
             'label': 'private', 'mtu': 1500,
             'ips': [{'address': '192.0.2.10', 'cidr': '192.0.2.0/24'}]}]
    port, = model.from_network_info(flat)
    assert (port.vif_type, port.bridge, port.devname, port.mtu) == (
        'ovs', 'br-int', 'tap1b4a3c9e-8f', 1500)
    assert port.fixed_ips == (model.FixedIP('192.0.2.10', '192.0.2.0/24'),)


def _os_vif():
    try:
        import os_vif.objects  # noqa: F401
    except ImportError:
        fixtures.skip_or_fail('os-vif is not installed (the network extra)')


@pytest.mark.parametrize('vif_type, cls, plugin', [
    ('bridge', 'VIFBridge', 'linux_bridge'),
    ('ovs', 'VIFOpenVSwitch', 'ovs'),
    ('tap', 'VIFGeneric', 'noop'),
])
def test_to_os_vif(vif_type, cls, plugin):
    _os_vif()
    port = _port(vif_type=vif_type, bridge=None if vif_type != 'bridge'
                 else 'brq-test', mtu=1450, vlan=100, network_id=NET,
                 network_label='private', fixed_ips=(
                     model.FixedIP('192.0.2.10', '192.0.2.0/24',
                                   '192.0.2.1'),
                     model.FixedIP('192.0.2.11', '192.0.2.0/24',
                                   '192.0.2.1')))
    vif = model.to_os_vif(port)
    assert type(vif).__name__ == cls
    assert (vif.id, str(vif.address), vif.plugin, vif.vif_name) == (
        PORT, port.mac, plugin, port.devname)
    network = vif.network
    assert (network.id, network.label, network.mtu, network.vlan,
            network.should_provide_vlan) == (NET, 'private', 1450, 100, True)
    subnet, = network.subnets.objects
    assert str(subnet.cidr) == '192.0.2.0/24'
    assert str(subnet.gateway) == '192.0.2.1'
    assert [str(ip.address) for ip in subnet.ips.objects] == [
        '192.0.2.10', '192.0.2.11']
    if vif_type == 'ovs':
        assert vif.bridge_name == 'br-int'
        assert vif.port_profile.interface_id == PORT
    if vif_type == 'bridge':
        assert vif.bridge_name == 'brq-test'


def test_to_os_vif_named_network_gets_a_stable_uuid():
    _os_vif()
    one = model.to_os_vif(_port(network_id='lab'))
    two = model.to_os_vif(_port(id=PORT2, network_id='lab'))
    assert one.network.id == two.network.id != PORT


def test_instance_info():
    _os_vif()
    info = model.instance_info(PORT, 'vm1', project_id='p1')
    assert (info.uuid, info.name, info.project_id) == (PORT, 'vm1', 'p1')
