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

"""The network part of the contract, through the fake backend."""

import pytest

from compute_driver import conf as cd_conf
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver import flavors
from compute_driver.network import exception as net_exception
from compute_driver.network import model
from compute_driver import objects

IMAGE = 'cirros-0.6.3-x86_64-disk'
PORT_A = '0d8e5f7a-1b2c-4d3e-8f90-a1b2c3d4e5f6'
PORT_B = '6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d'


@pytest.fixture
def backend():
    backend = fake_driver.FakeDriver(cd_conf.build_conf(config_files=[]))
    backend.init_host('host1')
    return backend


def _instance(backend, name='vm1'):
    return objects.Instance.new(
        name, flavors.get_flavor(backend.conf, 'm1.tiny'), IMAGE)


def _port(port_id=PORT_A, mac='fa:16:3e:00:00:01', **kwargs):
    kwargs.setdefault('vif_type', 'bridge')
    kwargs.setdefault('bridge', 'br0')
    return model.Port(id=port_id, mac=mac, **kwargs)


def test_spawn_records_and_plugs_the_ports(backend):
    inst = _instance(backend)
    nova_vif = {'id': PORT_B, 'address': 'FA:16:3E:00:00:02',
                'type': 'bridge',
                'network': {'bridge': 'br1', 'meta': {'mtu': 1400},
                            'subnets': [{'cidr': '192.0.2.0/24',
                                         'gateway': {'address': '192.0.2.1'},
                                         'ips': [{'address': '192.0.2.5'}]}]}}
    backend.spawn(inst, network_info=[_port(), nova_vif])
    ports = backend.get_interfaces(inst)
    assert [p.id for p in ports] == [PORT_A, PORT_B]
    assert ports[1].mac == 'fa:16:3e:00:00:02'
    assert ports[1].mtu == 1400
    assert backend.plugged_ports(inst) == {PORT_A, PORT_B}


@pytest.mark.parametrize('bad, error', [
    ({'id': PORT_A, 'address': 'fa:16:3e:00:00:01', 'type': 'vhostuser',
      'network': {'bridge': 'br0'}}, net_exception.UnknownVIFType),
    ({'id': PORT_A, 'address': 'fa:16:3e:00:00:01', 'type': 'bridge',
      'network': {'bridge': 'br0', 'meta': {'mtu': 70000}}},
     net_exception.InvalidMTU),
    ({'id': PORT_A, 'address': 'fa:16:3e:00:00:01', 'type': 'bridge',
      'network': {'bridge': 'br0', 'subnets': [
          {'cidr': '192.0.2.0/24', 'ips': [{'address': '192.0.2.300'}]}]}},
     net_exception.InvalidFixedIP),
])
def test_spawn_refuses_a_bad_port_before_anything(backend, bad, error):
    inst = _instance(backend)
    with pytest.raises(error):
        backend.spawn(inst, network_info=[bad])
    assert backend.list_instances() == []


def test_spawn_refuses_a_duplicate_mac(backend):
    inst = _instance(backend)
    with pytest.raises(net_exception.DuplicatePort):
        backend.spawn(inst, network_info=[_port(), _port(PORT_B)])
    assert backend.list_instances() == []


def test_attach_and_detach(backend):
    inst = _instance(backend)
    backend.spawn(inst, network_info=[_port()])
    backend.attach_interface(inst, _port(PORT_B, 'fa:16:3e:00:00:02'))
    assert [p.id for p in backend.get_interfaces(inst)] == [PORT_A, PORT_B]
    backend.detach_interface(inst, PORT_A.upper())
    assert [p.id for p in backend.get_interfaces(inst)] == [PORT_B]
    assert backend.plugged_ports(inst) == {PORT_B}


def test_attach_refuses_a_port_that_collides(backend):
    inst = _instance(backend)
    backend.spawn(inst, network_info=[_port()])
    with pytest.raises(net_exception.DuplicatePort):
        backend.attach_interface(inst, _port(PORT_B))
    assert [p.id for p in backend.get_interfaces(inst)] == [PORT_A]


def test_detach_of_an_unknown_port(backend):
    inst = _instance(backend)
    backend.spawn(inst)
    with pytest.raises(net_exception.PortNotAttached):
        backend.detach_interface(inst, PORT_A)


def test_plug_and_unplug_vifs_keep_the_record(backend):
    inst = _instance(backend)
    backend.spawn(inst, network_info=[_port()])
    backend.unplug_vifs(inst, [_port()])
    assert backend.plugged_ports(inst) == set()
    assert [p.id for p in backend.get_interfaces(inst)] == [PORT_A]
    backend.plug_vifs(inst, [_port(), _port(PORT_B, 'fa:16:3e:00:00:02')])
    assert backend.plugged_ports(inst) == {PORT_A, PORT_B}
    assert [p.id for p in backend.get_interfaces(inst)] == [PORT_A, PORT_B]


def test_ports_on_a_backend_without_networking(backend):
    backend.capabilities = {**backend.capabilities,
                            'supports_plug_vifs': False}
    inst = _instance(backend)
    with pytest.raises(exception.NotSupported):
        backend.spawn(inst, network_info=[_port()])
    backend.spawn(inst, network_info=[])
    assert backend.list_instances() == ['vm1']


def test_record_round_trip():
    port = _port(mtu=1450, vlan=12, network_label='lan',
                 should_provide_bridge=True, bridge_interface='eth1',
                 fixed_ips=(model.FixedIP('192.0.2.5', '192.0.2.0/24',
                                          '192.0.2.1'),
                            model.FixedIP('2001:db8::5', '2001:db8::/64')))
    other = _port(PORT_B, 'fa:16:3e:00:00:02', vif_type='tap', bridge=None)
    assert model.from_record(model.to_record([port, other])) == (port, other)
    assert model.from_record('') == ()
