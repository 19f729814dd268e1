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

"""Ports as XAPI VIFs, against the simulator over HTTP.

Each test adds its networks with ``network.create`` over XML-RPC, as an
administrator's ``xe network-create`` does, and reads back what XAPI
holds: one VIF per port on the network carrying the port's bridge, with
its MAC, MTU and port id, plugged while the VM runs.
"""

import os
import subprocess

import pytest
import XenAPI

from compute_driver import exception
from compute_driver import flavors
from compute_driver import loader
from compute_driver.network import exception as net_exception
from compute_driver.network import model
from compute_driver import objects
from compute_driver.testing import fixtures
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    xapi_simulator as simulator)
from compute_driver.xenapi import network as xenapi_network

IMAGE = 'Debian_Bookworm_12'
#: A template whose guests run no agent and have no PV drivers.
NO_TOOLS_IMAGE = 'Other_install_media'


def _port_id(number):
    """A port id whose first 11 characters (its device name) are unique."""
    return '%08x-0000-4000-8000-%012x' % (number, number)


@pytest.fixture
def xen(simulator):  # noqa: F811
    session = XenAPI.Session(simulator.url)
    session.xenapi.login_with_password('root', 'password', '2.21', 'test')
    yield session.xenapi
    session.xenapi.session.logout()


@pytest.fixture
def networks(xen):
    """Two tenant networks: brq-net-xen-a (MTU 1500), brq-net-xen-b (9000)."""
    return {bridge: xen.network.create({
        'name_label': 'tenant %s' % bridge, 'name_description': '',
        'MTU': mtu, 'other_config': {}, 'bridge': bridge})
        for bridge, mtu in (('brq-net-xen-a', '1500'),
                            ('brq-net-xen-b', '9000'))}


@pytest.fixture
def backend(simulator):  # noqa: F811
    conf = fixtures.make_conf('xenapi', {
        'xenapi': sim_fixture.xenapi_options(simulator)})
    made = loader.load_driver(conf)
    made.init_host(conf.host)
    yield made
    made.cleanup_host('test')


def _instance(name='vm1', image=IMAGE):
    conf = fixtures.make_conf('fake')
    return objects.Instance.new(name, flavors.get_flavor(conf, 'm1.nano'),
                                image)


def _port(number, bridge='brq-net-xen-a', mtu=None, vif_type='bridge',
          **extra):
    return model.Port(
        id=_port_id(number),
        mac='fa:16:3e:00:00:%02x' % number, vif_type=vif_type,
        bridge=bridge, mtu=mtu, fixed_ips=(model.FixedIP(
            '192.0.2.%d' % (10 + number), '192.0.2.0/24', '192.0.2.1'),),
        **extra)


def _vifs(simulator, instance=None):  # noqa: F811
    """VIF records by port id (all, or those of one instance's VM)."""
    vms = simulator.objects('VM')
    found = {}
    for vif in simulator.objects('VIF').values():
        vm = vms.get(vif['VM'], {})
        if instance is not None and vm.get('other_config', {}).get(
                'compute_driver_uuid') != instance.uuid:
            continue
        found[vif['other_config'].get(xenapi_network.KEY_PORT)] = vif
    return found


def _vm_count(simulator):  # noqa: F811
    return len(simulator.objects('VM'))


def test_one_vif_per_port_on_the_bridges_network(simulator,  # noqa: F811
                                                 backend, networks):
    ports = (_port(1), _port(2, 'brq-net-xen-b', mtu=9000))
    instance = _instance()
    backend.spawn(instance, network_info=ports)
    vifs = _vifs(simulator, instance)
    assert set(vifs) == {p.id for p in ports}
    for device, port in enumerate(ports):
        vif = vifs[port.id]
        assert vif['MAC'] == port.mac
        assert vif['network'] == networks[port.bridge]
        assert vif['device'] == str(device)
        assert vif['currently_attached'] is True
    # Without its own MTU a port has its network's.
    assert vifs[ports[0].id]['MTU'] == '1500'
    assert 'mtu' not in vifs[ports[0].id]['other_config']
    assert vifs[ports[1].id]['MTU'] == '9000'
    assert vifs[ports[1].id]['other_config']['mtu'] == '9000'
    assert backend.get_interfaces(instance) == ports
    # Stopped, the VIFs stay and are detached; started, attached again.
    backend.power_off(instance)
    assert not any(v['currently_attached']
                   for v in _vifs(simulator, instance).values())
    backend.power_on(instance)
    assert all(v['currently_attached']
               for v in _vifs(simulator, instance).values())
    backend.destroy(instance)
    assert _vifs(simulator) == {}


def test_attach_and_detach_live(simulator, backend, networks):  # noqa
    first, second = _port(1), _port(2, 'brq-net-xen-b')
    instance = _instance()
    backend.spawn(instance, network_info=(first,))
    backend.attach_interface(instance, second)
    vif = _vifs(simulator, instance)[second.id]
    assert vif['currently_attached'] is True
    assert vif['network'] == networks['brq-net-xen-b']
    assert vif['device'] == '1'
    assert backend.get_interfaces(instance) == (first, second)
    backend.detach_interface(instance, first.id)
    assert set(_vifs(simulator, instance)) == {second.id}
    assert backend.get_interfaces(instance) == (second,)
    # The freed device number is the next port's.
    backend.attach_interface(instance, first)
    assert _vifs(simulator, instance)[first.id]['device'] == '0'
    backend.destroy(instance)
    assert _vifs(simulator) == {}


def test_attach_to_a_stopped_instance_plugs_at_start(simulator,  # noqa
                                                     backend, networks):
    port = _port(3)
    instance = _instance()
    backend.spawn(instance, power_on=False)
    backend.attach_interface(instance, port)
    assert _vifs(simulator, instance)[port.id]['currently_attached'] is False
    backend.power_on(instance)
    assert _vifs(simulator, instance)[port.id]['currently_attached'] is True
    backend.destroy(instance)


def test_plug_vifs_recreates_what_is_missing(simulator, backend,  # noqa
                                             networks, xen):
    ports = (_port(1), _port(2))
    instance = _instance()
    backend.spawn(instance, network_info=ports)
    # Another client unplugs one VIF and destroys the other.
    vifs = _vifs(simulator, instance)
    by_id = {v['uuid']: ref for ref, v in simulator.objects('VIF').items()}
    first, second = (by_id[vifs[p.id]['uuid']] for p in ports)
    xen.VIF.unplug(first)
    xen.VIF.unplug(second)
    xen.VIF.destroy(second)
    backend.plug_vifs(instance, ports)
    vifs = _vifs(simulator, instance)
    assert set(vifs) == {p.id for p in ports}
    assert all(v['currently_attached'] for v in vifs.values())
    # Idempotent.
    backend.plug_vifs(instance, ports)
    assert len(_vifs(simulator, instance)) == 2
    backend.unplug_vifs(instance, ports)
    assert not any(v['currently_attached']
                   for v in _vifs(simulator, instance).values())
    assert backend.get_interfaces(instance) == ports
    backend.destroy(instance)


@pytest.mark.parametrize('ports, error', [
    ((_port(1, 'brq-nowhere'),), xenapi_network.NetworkNotFound),
    ((_port(1), model.Port(id=_port_id(2),
                           mac='fa:16:3e:00:00:01', vif_type='bridge',
                           bridge='brq-net-xen-a')),
     net_exception.DuplicatePort),
    ((_port(1, mtu=9000),), net_exception.InvalidMTU),
])
def test_bad_ports_leave_nothing_at_spawn(simulator, backend,  # noqa
                                          networks, ports, error):
    vms = _vm_count(simulator)
    instance = _instance()
    with pytest.raises(error) as info:
        backend.spawn(instance, network_info=ports)
    assert isinstance(info.value, exception.InvalidInput)
    assert _vm_count(simulator) == vms
    assert _vifs(simulator) == {}
    assert instance.uuid not in backend.list_instance_uuids()


def test_bad_ports_leave_nothing_at_attach(simulator, backend,  # noqa
                                           networks):
    port = _port(1)
    instance = _instance()
    backend.spawn(instance, network_info=(port,))
    for bad, error in (
            (_port(2, 'brq-nowhere'), xenapi_network.NetworkNotFound),
            (model.Port(id=_port_id(3), mac=port.mac,
                        vif_type='bridge', bridge='brq-net-xen-b'),
             net_exception.DuplicatePort),
            (_port(4, mtu=1501), net_exception.InvalidMTU)):
        with pytest.raises(error):
            backend.attach_interface(instance, bad)
        assert set(_vifs(simulator, instance)) == {port.id}
        assert backend.get_interfaces(instance) == (port,)
    with pytest.raises(net_exception.PortNotAttached):
        backend.detach_interface(instance, _port_id(9))
    backend.destroy(instance)


def test_guest_without_pv_drivers_cannot_hotplug(simulator,  # noqa
                                                 backend, networks):
    instance = _instance(image=NO_TOOLS_IMAGE)
    backend.spawn(instance)
    with pytest.raises(exception.GuestFeatureMissing) as info:
        backend.attach_interface(instance, _port(5))
    assert 'PV drivers' in str(info.value)
    assert _vifs(simulator) == {}
    assert backend.get_interfaces(instance) == ()
    backend.destroy(instance)


def test_failed_plug_leaves_no_vif(simulator, backend, networks):  # noqa
    instance = _instance()
    backend.spawn(instance)
    simulator.fail('VIF.plug', 'INTERNAL_ERROR', 'injected')
    with pytest.raises(exception.BackendError) as info:
        backend.attach_interface(instance, _port(6))
    assert 'INTERNAL_ERROR injected' in str(info.value)
    assert _vifs(simulator) == {}
    assert backend.get_interfaces(instance) == ()
    backend.destroy(instance)


def test_name_label_match_when_no_bridge_matches(simulator,  # noqa
                                                 backend, networks):
    # A port naming the network by its XAPI name, as a standalone
    # ``--network`` does when the name is no bridge.
    port = _port(7, bridge=None, vif_type='tap',
                 network_label='tenant brq-net-xen-b')
    instance = _instance()
    backend.spawn(instance, network_info=(port,))
    assert _vifs(simulator, instance)[port.id]['network'] == (
        networks['brq-net-xen-b'])
    backend.destroy(instance)


def test_spawn_without_ports_uses_the_configured_network(
        simulator, networks):  # noqa: F811
    conf = fixtures.make_conf('xenapi', {'xenapi': sim_fixture.xenapi_options(
        simulator, network_name='tenant brq-net-xen-a')})
    backend = loader.load_driver(conf)
    backend.init_host(conf.host)
    try:
        instance = _instance()
        backend.spawn(instance)
        [vif] = [v for v in simulator.objects('VIF').values()]
        assert vif['network'] == networks['brq-net-xen-a']
        # It is no port of the instance's.
        assert backend.get_interfaces(instance) == ()
        backend.destroy(instance)
    finally:
        backend.cleanup_host('test')


def test_boot_from_a_snapshot_keeps_only_its_own_ports(simulator,  # noqa
                                                       backend, networks):
    original = _instance()
    backend.spawn(original, network_info=(_port(1),))
    backend.snapshot(original, 'net-xen-snap')
    clone = _instance('vm2', image='net-xen-snap')
    port = _port(2, 'brq-net-xen-b')
    backend.spawn(clone, network_info=(port,))
    # The snapshot's copy of the original's VIF is not the clone's.
    assert set(_vifs(simulator, clone)) == {port.id}
    assert backend.get_interfaces(clone) == (port,)
    bare = _instance('vm3', image='net-xen-snap')
    backend.spawn(bare)
    assert _vifs(simulator, bare) == {}
    assert backend.get_interfaces(bare) == ()
    for instance in (bare, clone, original):
        backend.destroy(instance)
    backend.delete_snapshot('net-xen-snap')
    assert _vifs(simulator) == {}


def test_command_line_ports(simulator, networks, tmp_path):  # noqa: F811
    """``boot --network`` and ``interface attach|detach`` on XAPI."""
    env = dict(os.environ, HOME=str(tmp_path), COLUMNS='200')
    config = tmp_path / 'xenapi.conf'
    config.write_text(
        '[DEFAULT]\ncompute_driver = xenapi\nhost = net-xen-cli\n'
        '[xenapi]\nconnection_url = %s\nusername = root\n'
        'password = password\nevent_poll_timeout = 5\n' % simulator.url)
    script = fixtures.console_script()

    def run(*argv):
        return subprocess.run([script, '--config-file', str(config), *argv],
                              env=env, capture_output=True, text=True,
                              timeout=300)

    vms = _vm_count(simulator)
    bad = run('boot', 'net-xen-cli', '--image', IMAGE, '--flavor', 'm1.nano',
              '--network',
              'brq-nowhere')
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert 'brq-nowhere' in bad.stderr
    assert _vm_count(simulator) == vms and _vifs(simulator) == {}
    booted = run('boot', 'net-xen-cli', '--image', IMAGE, '--flavor',
                 'm1.nano', '--network',
                 'bridge=brq-net-xen-a,mac=fa:16:3e:0a:0b:0c,'
                 'ip=192.0.2.20/24,gateway=192.0.2.1')
    assert booted.returncode == 0, booted.stderr
    [vif] = _vifs(simulator).values()
    assert vif['MAC'] == 'fa:16:3e:0a:0b:0c'
    assert vif['network'] == networks['brq-net-xen-a']
    attached = run('interface', 'attach', 'net-xen-cli', '--network',
                   'brq-net-xen-b')
    assert attached.returncode == 0, attached.stderr
    assert sorted(v['network'] for v in _vifs(simulator).values()) == (
        sorted(networks.values()))
    assert all(v['currently_attached'] for v in _vifs(simulator).values())
    detached = run('interface', 'detach', 'net-xen-cli',
                   'fa:16:3e:0a:0b:0c')
    assert detached.returncode == 0, detached.stderr
    [vif] = _vifs(simulator).values()
    assert vif['network'] == networks['brq-net-xen-b']
    assert run('delete', 'net-xen-cli').returncode == 0
    assert _vifs(simulator) == {}


def test_ports_without_a_bridge_go_on_the_port_network(
        simulator, networks, backend):  # noqa: F811
    port = _port(8, bridge=None, vif_type='tap')
    instance = _instance()
    # Without [xenapi] port_network such a port has no network.
    with pytest.raises(xenapi_network.NetworkNotFound) as info:
        backend.spawn(instance, network_info=(port,))
    assert 'port_network is empty' in str(info.value)
    assert _vifs(simulator) == {}
    conf = fixtures.make_conf('xenapi', {'xenapi': sim_fixture.xenapi_options(
        simulator, port_network='tenant brq-net-xen-b')})
    other = loader.load_driver(conf)
    other.init_host(conf.host)
    try:
        other.spawn(instance, network_info=(port,))
        assert _vifs(simulator, instance)[port.id]['network'] == (
            networks['brq-net-xen-b'])
        other.destroy(instance)
    finally:
        other.cleanup_host('test')
