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

"""Docker containers with two ports on two bridges, pinged for real.

The test thread enters a namespace of its own (see :mod:`.netlab`)
holding two bridges, each with dnsmasq and a "server" interface in a
further namespace; the driver runs in that thread, so its veth host ends
and bridges live there, and only the container ends cross into the
containers' namespaces. The host's interfaces and iptables are never
touched.
"""

import json
import time
import uuid

import pytest

from compute_driver.docker import driver as docker_driver
from compute_driver import exception
from compute_driver import flavors
from compute_driver.network import exception as net_exception
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures
from tests.functional import docker_env
from tests.functional.netlab import _requirements
from tests.functional.netlab import Lab
from tests.functional.netlab import Net
from tests.functional import private_daemons


@pytest.fixture
def lab(tmp_path):
    _requirements()
    docker_env.raw_client()
    created = Lab(tmp_path)
    try:
        created.server = created.add_namespace('s')
        created.nets = [Net(created, 0), Net(created, 1)]
        yield created
    finally:
        created.close()


def _driver(**docker_options):
    conf = fixtures.make_conf('docker', docker_env.overrides(
        **docker_options))
    backend = docker_driver.DockerDriver(conf)
    backend.init_host(conf.host)
    yield backend
    for uuid_ in backend.list_instance_uuids():
        backend.destroy(objects.Instance(
            uuid=uuid_, name='x', image_ref=docker_env.IMAGE,
            flavor=flavors.get_flavor(conf, 'm1.tiny')))
    backend.cleanup_host(conf.host)


@pytest.fixture
def backend(lab):
    yield from _driver()


@pytest.fixture
def private_dockerd():
    """A dockerd of this test's own, which it may restart.

    Restarting the shared one would break every other test using it at
    the time; see :mod:`.private_daemons`.
    """
    api = docker_env.raw_client()
    try:
        daemon = private_daemons.PrivateDockerd(api, docker_env.IMAGE)
    finally:
        api.close()
    yield daemon
    daemon.close()


@pytest.fixture
def private_backend(private_dockerd, lab):
    """A driver of the private dockerd; its containers wired in ``lab``."""
    yield from _driver(api_url=private_dockerd.url)


def _instance(backend):
    return objects.Instance.new(
        'cdnet-' + uuid.uuid4().hex[:8],
        flavors.get_flavor(backend.conf, 'm1.tiny'), docker_env.IMAGE)


def _two_ports(lab):
    return [lab.nets[0].port(10, 'fa:16:3e:00:01:10'),
            lab.nets[1].port(10, 'fa:16:3e:00:02:10')]


def _pid(backend, instance):
    data = backend.api.inspect_container(
        backend._container_name(instance.uuid))
    return data['State']['Pid']


def _check_reachable(lab, backend, instance, ports):
    pid = _pid(backend, instance)
    for index, (net, port) in enumerate(zip(lab.nets, ports)):
        inside = lab.netlink.link_info('eth%d' % index, pid)
        assert (inside['mac'], inside['mtu'], inside['up']) == (
            port.mac, net.mtu, True)
        assert lab.ping(lab.server, port.fixed_ips[0].address), (
            'port %d of %s does not answer' % (index, instance.name))
        host_end = lab.netlink.link_info(port.devname)
        assert host_end['master'] == net.bridge


def test_two_ports_answer_after_boot_reboot_and_stop_start(lab, backend):
    instance = _instance(backend)
    ports = _two_ports(lab)
    backend.spawn(instance, network_info=ports)
    assert backend.get_interfaces(instance) == tuple(ports)
    _check_reachable(lab, backend, instance, ports)

    backend.reboot(instance, 'SOFT')
    _check_reachable(lab, backend, instance, ports)
    backend.reboot(instance, 'HARD')
    _check_reachable(lab, backend, instance, ports)

    backend.power_off(instance)
    # A stopped container has no namespace: its veth pairs went with it.
    assert not lab.netlink.link_exists(ports[0].devname)
    backend.power_on(instance)
    _check_reachable(lab, backend, instance, ports)

    # A restarted process knows the ports from the container's labels.
    other = docker_driver.DockerDriver(backend.conf)
    other.init_host(backend.host)
    try:
        assert other.get_interfaces(instance) == tuple(ports)
        # plug_vifs (Nova's call at host start) keeps a working port.
        other.plug_vifs(instance, ports)
        _check_reachable(lab, backend, instance, ports)
    finally:
        other.cleanup_host(backend.host)

    backend.destroy(instance)
    for port in ports:
        assert not lab.netlink.link_exists(port.devname)


def test_unplug_and_plug_vifs(lab, backend):
    instance = _instance(backend)
    ports = _two_ports(lab)
    backend.spawn(instance, network_info=ports)
    backend.unplug_vifs(instance, ports[1:])
    assert not lab.netlink.link_exists(ports[1].devname)
    assert lab.ping(lab.server, ports[0].fixed_ips[0].address)
    backend.plug_vifs(instance, ports[1:])
    _check_reachable(lab, backend, instance, ports)
    with pytest.raises(exception.NotSupported):
        backend.plug_vifs(instance, [lab.nets[0].port(11,
                                                      'fa:16:3e:00:01:11')])
    with pytest.raises(exception.NotSupported):
        backend.attach_interface(instance, lab.nets[0].port(
            11, 'fa:16:3e:00:01:11'))


def _bad_ports(lab):
    good = lab.nets[0].port(20, 'fa:16:3e:00:01:20')
    net = lab.nets[1]
    return {
        'missing bridge': (
            [good, net.port(20, 'fa:16:3e:00:02:20', bridge='cdnosuchbr')],
            net_exception.BridgeNotFound),
        'duplicate MAC': (
            [good, net.port(20, good.mac)], net_exception.DuplicatePort),
        'MTU out of range': (
            [good, {'id': str(uuid.uuid4()), 'address': 'fa:16:3e:00:02:21',
                    'type': 'bridge', 'network': {
                        'bridge': net.bridge, 'meta': {'mtu': 65536}}}],
            net_exception.InvalidMTU),
        'unknown VIF type': (
            [good, {'id': str(uuid.uuid4()), 'address': 'fa:16:3e:00:02:22',
                    'type': 'vhostuser', 'network': {'bridge': net.bridge}}],
            net_exception.UnknownVIFType),
        'malformed fixed IP': (
            [good, {'id': str(uuid.uuid4()), 'address': 'fa:16:3e:00:02:23',
                    'type': 'bridge', 'network': {
                        'bridge': net.bridge, 'subnets': [{
                            'cidr': str(net.subnet),
                            'ips': [{'address': '203.0.113.999'}]}]}}],
            net_exception.InvalidFixedIP),
    }


@pytest.mark.parametrize('case', ['missing bridge', 'duplicate MAC',
                                  'MTU out of range', 'unknown VIF type',
                                  'malformed fixed IP'])
def test_bad_port_leaves_nothing(lab, backend, case):
    ports, error = _bad_ports(lab)[case]
    before = lab.host_links()
    instance = _instance(backend)
    with pytest.raises(error):
        backend.spawn(instance, network_info=ports)
    assert issubclass(error, exception.InvalidInput)
    assert backend.list_instance_uuids() == []
    # No veth, tap or bridge port: the host namespace is as it was.
    assert lab.host_links() == before


def test_stopped_spawn_is_wired_at_power_on(lab, backend):
    instance = _instance(backend)
    ports = _two_ports(lab)
    backend.spawn(instance, network_info=ports, power_on=False)
    assert backend.get_info(instance).state == power_state.SHUTDOWN
    assert not lab.netlink.link_exists(ports[0].devname)
    backend.power_on(instance)
    _check_reachable(lab, backend, instance, ports)


def test_ports_come_back_after_dockerd_restarts(lab, private_backend,
                                                private_dockerd):
    """Ports are wired again when the container starts after dockerd.

    dockerd stops the container with it (no live-restore, restart policy
    "no"); started again, the container has a new namespace, which the
    driver wires from the container's labels.
    """
    backend = private_backend
    instance = _instance(backend)
    ports = _two_ports(lab)
    backend.spawn(instance, network_info=ports)
    _check_reachable(lab, backend, instance, ports)

    private_dockerd.restart()

    assert backend.get_info(instance).state == power_state.SHUTDOWN
    # The container's namespace went with it, and the veth pairs too.
    assert not lab.netlink.link_exists(ports[0].devname)
    backend.power_on(instance)
    _check_reachable(lab, backend, instance, ports)


def _wait_until_wired(lab, backend, instance, ports):
    # The watcher wires on a thread of its own, after dockerd's start
    # event: poll for the last step's result (the last port's address in
    # the container), bounded.
    last = 'eth%d' % (len(ports) - 1)
    address = ports[-1].fixed_ips[0].interface
    deadline = time.monotonic() + 30
    while True:
        pid = _pid(backend, instance)
        if pid and lab.netlink.link_exists(last, pid) and address in (
                lab.netlink.link_info(last, pid)['addresses']):
            return
        assert time.monotonic() < deadline, 'the ports were never wired'
        time.sleep(0.1)


def test_start_behind_the_drivers_back_is_rewired(lab, backend):
    """A start another client (or a restart policy) made is wired too."""
    instance = _instance(backend)
    ports = _two_ports(lab)
    backend.spawn(instance, network_info=ports)
    backend.power_off(instance)
    backend.api.start(backend._container_name(instance.uuid))
    _wait_until_wired(lab, backend, instance, ports)
    _check_reachable(lab, backend, instance, ports)


def test_cli_boot_with_networks_and_a_missing_bridge(lab, tmp_path,
                                                     capsys):
    from compute_driver.cmd import main
    host = docker_env.unique_host()
    config = tmp_path / 'compute-driver.conf'
    config.write_text(
        '[DEFAULT]\ncompute_driver = docker\nhost = %s\n'
        '[docker]\napi_url = %s\nnetwork_mode = none\nimages = %s\n'
        % (host, docker_env.API_URL, docker_env.IMAGE))
    net0, net1 = lab.nets
    address = str(net1.subnet.network_address + 30)

    def cli(*argv):
        capsys.readouterr()
        rc = main.main(['--config-file', str(config), *argv])
        return (rc, *capsys.readouterr())

    name = 'cdnet-cli-' + uuid.uuid4().hex[:6]
    rc, out, err = cli('boot', name, '--image', docker_env.IMAGE,
                       '--flavor', 'm1.tiny', '--network', net0.bridge,
                       '--network', 'bridge=%s,ip=%s/%d,mtu=%d' % (
                           net1.bridge, address, net1.subnet.prefixlen,
                           net1.mtu), '-f', 'json')
    assert rc == 0, err
    try:
        nics = json.loads(out)['nics'].splitlines()
        assert nics[0].startswith('eth0 fa:16:3e:')
        assert nics[0].endswith(' on %s' % net0.bridge)
        assert nics[1].endswith(' %s/%d on %s' % (
            address, net1.subnet.prefixlen, net1.bridge))
        assert lab.ping(lab.server, address)
        rc, out, err = cli('list', '-f', 'json')
        assert json.loads(out)[0]['Networks'].splitlines() == nics

        before = lab.host_links()
        rc, out, err = cli('boot', name + 'b', '--image', docker_env.IMAGE,
                           '--flavor', 'm1.tiny', '--network',
                           'cdnosuchbr')
        assert rc == 1
        assert len(err.splitlines()) == 1 and 'Traceback' not in err
        assert 'cdnosuchbr' in err and 'does not exist' in err
        assert lab.host_links() == before
        rc, out, err = cli('list', '-f', 'json')
        assert [row['Name'] for row in json.loads(out)] == [name]
    finally:
        assert cli('delete', name)[0] == 0
