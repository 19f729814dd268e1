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

"""Real ports on real bridges: os-vif plugging, veth pairs, DHCP, ping.

Everything runs inside network namespaces this module creates, with
unique names (``cdnet-<random>-...``): a "host" namespace the test
thread enters, where the bridge lives and the plugging happens, a
server namespace running dnsmasq, and two "instance" namespaces wired
through veth pairs. The host's own interfaces, iptables (docker's
FORWARD policy drops bridged traffic on the real host) and bridges are
never touched, and removing the namespaces in teardown removes every
interface made, whatever failed.

Needs root, os-vif, pyroute2, dnsmasq and busybox (``udhcpc``, ``ping``);
``tools/test-setup.d/60-network.sh`` installs them. Missing, the tests
skip, or fail under CI or ``COMPUTE_DRIVER_STRICT``.
"""

import uuid

import pytest

from compute_driver.network import exception as net_exception
from compute_driver.network import model
from tests.functional.netlab import _requirements
from tests.functional.netlab import Lab

# TEST-NET-2 (RFC 5737): never routed, and only ever present here on
# interfaces inside this module's own namespaces.
SUBNET = '198.51.100.0/24'
GATEWAY = '198.51.100.1'
SERVER_IP = '198.51.100.2'
MTU = 1400


@pytest.fixture
def lab(tmp_path):
    _requirements()
    created = Lab(tmp_path)
    try:
        yield created
    finally:
        created.close()


def _port(lab, last_octet, mac_octet, **kwargs):
    values = dict(
        id=str(uuid.uuid4()), mac='fa:16:3e:00:00:%02x' % mac_octet,
        vif_type='bridge', bridge=lab.bridge, mtu=MTU,
        fixed_ips=(model.FixedIP('198.51.100.%d' % last_octet, SUBNET,
                                 GATEWAY),))
    values.update(kwargs)
    return model.Port(**values)


def _plug(lab, ports):
    from compute_driver.network import plug
    info = model.instance_info(str(uuid.uuid4()), lab.tag)
    return plug, info, plug.plug(ports, info)


def test_plug_veth_sets_mac_mtu_addresses_and_routes(lab):
    port = _port(lab, 10, 0x10)
    target = lab.add_namespace('b')
    plug, info, plugged = _plug(lab, [port])
    assert plugged == [port]
    lab.netlink.plug_veth(port, target, 'eth0')

    host_end = lab.netlink.link_info(port.devname)
    assert (host_end['kind'], host_end['master'], host_end['mtu'],
            host_end['up']) == ('veth', lab.bridge, MTU, True)
    inside = lab.netlink.link_info('eth0', target)
    assert (inside['mac'], inside['mtu'], inside['up']) == (
        port.mac, MTU, True)
    assert '198.51.100.10/24' in inside['addresses']
    # The peer's temporary name is gone: it was renamed, not copied.
    assert not lab.netlink.link_exists(lab.netlink.peer_name(port))
    routes = lab.run(target, 'busybox', 'ip', 'route').stdout
    assert 'default via %s dev eth0' % GATEWAY in routes

    # Plugging again (a start after a crash) keeps the wiring.
    lab.netlink.plug_veth(port, target, 'eth0')
    assert lab.netlink.link_info('eth0', target)['mac'] == port.mac
    assert lab.netlink.link_info(port.devname)['master'] == lab.bridge
    # Renaming a link that is up takes it down and up again.
    assert lab.netlink.configure('eth0', target, new_name='eth1') == 'eth1'
    assert lab.netlink.link_info('eth1', target)['up']
    lab.netlink.configure('eth1', target, new_name='eth0')
    plug.unplug([port], info)
    assert not lab.netlink.link_exists(port.devname)
    assert not lab.netlink.link_exists('eth0', target)
    # Unplugging what is gone is no error.
    plug.unplug([port], info)
    assert lab.netlink.unplug_veth(port) is False


def test_plug_veth_into_a_process_namespace(lab):
    # How a container is reached: by the pid of its first process.
    target = lab.add_namespace('c')
    proc = lab.start(target, 'busybox', 'sleep', '120')
    port = _port(lab, 20, 0x20)
    lab.netlink.plug_veth(port, proc.pid, 'eth0')
    inside = lab.netlink.link_info('eth0', proc.pid)
    assert (inside['mac'], inside['mtu']) == (port.mac, MTU)
    assert '198.51.100.20/24' in inside['addresses']
    assert lab.netlink.unplug_veth(port)
    assert not lab.netlink.link_exists('eth0', proc.pid)


def test_dhcp_lease_and_ping_across_the_bridge(lab):
    server_ns = lab.add_namespace('s')
    a_ns = lab.add_namespace('a')
    b_ns = lab.add_namespace('b')
    server = _port(lab, 2, 0x02)
    a = _port(lab, 11, 0x11)
    b = _port(lab, 12, 0x12)
    plug, info, _ = _plug(lab, [server, a, b])
    lab.netlink.plug_veth(server, server_ns, 'eth0')
    # Port a gets its address the way a guest does: from DHCP.
    lab.netlink.plug_veth(
        model.Port(id=a.id, mac=a.mac, vif_type='bridge', bridge=a.bridge,
                   mtu=a.mtu), a_ns, 'eth0')
    lab.netlink.plug_veth(b, b_ns, 'eth0')

    leases = lab.tmp / 'leases'
    dnsmasq = lab.start(
        server_ns, 'dnsmasq', '--no-daemon', '--conf-file=/dev/null',
        '--port=0', '--user=root', '--interface=eth0', '--bind-interfaces',
        '--dhcp-range=%s,static,255.255.255.0,10m' % SUBNET.split('/')[0],
        '--dhcp-host=%s,%s' % (a.mac, a.fixed_ips[0].address),
        '--dhcp-option=option:router,%s' % GATEWAY,
        '--dhcp-leasefile=%s' % leases, '--log-dhcp')

    script = lab.tmp / 'udhcpc.sh'
    result_file = lab.tmp / 'lease.env'
    script.write_text('#!/bin/sh\n'
                      'if [ "$1" = bound ]; then\n'
                      '  echo "ip=$ip mask=$mask router=$router" > %s\n'
                      'fi\n' % result_file)
    script.chmod(0o755)
    client = lab.run(a_ns, 'busybox', 'udhcpc', '-f', '-q', '-n',
                     '-i', 'eth0', '-t', '10', '-T', '1', '-s', str(script))
    assert client.returncode == 0, (client.stdout, client.stderr,
                                    dnsmasq.poll())
    lease = dict(item.split('=', 1)
                 for item in result_file.read_text().split())
    assert lease == {'ip': '198.51.100.11', 'mask': '24',
                     'router': GATEWAY}
    assert a.mac in leases.read_text()

    # The client only reports the lease; the address goes on through
    # netlink, as a backend applies a port's addresses.
    lab.netlink.configure('eth0', a_ns, addresses=[
        '%s/%s' % (lease['ip'], lease['mask'])])

    assert lab.ping(a_ns, '198.51.100.12')
    assert lab.ping(b_ns, '198.51.100.11')
    assert lab.ping(b_ns, SERVER_IP)
    # A frame of exactly the port's MTU (20 bytes of IPv4 header and 8
    # of ICMP around the payload) crosses both veth pairs and the bridge.
    payload = MTU - 28
    ok = lab.run(b_ns, 'busybox', 'ping', '-c', '1', '-W', '2', '-s',
                 str(payload), '198.51.100.11')
    assert ok.returncode == 0, ok.stdout

    plug.unplug([server, a, b], info)
    for port in (server, a, b):
        assert not lab.netlink.link_exists(port.devname)
    assert lab.host_links() == sorted(['lo', lab.bridge])


def test_missing_bridge_leaves_nothing(lab):
    target = lab.add_namespace('b')
    before = lab.host_links()
    good = _port(lab, 10, 0x10)
    bad = _port(lab, 11, 0x11, bridge='cdnomissing')
    from compute_driver.network import plug
    info = model.instance_info(str(uuid.uuid4()), lab.tag)
    with pytest.raises(net_exception.BridgeNotFound) as exc:
        plug.plug([good, bad], info)
    assert 'cdnomissing' in str(exc.value) and bad.id in str(exc.value)
    with pytest.raises(net_exception.BridgeNotFound):
        lab.netlink.plug_veth(bad, target, 'eth0')
    with pytest.raises(net_exception.NetnsNotFound):
        lab.netlink.plug_veth(good, lab.tag + '-absent', 'eth0')
    assert lab.host_links() == before
    assert lab.netlink.link_info('lo', target)['kind'] is None
    with lab.netlink.route(target) as ipr:
        assert [link.get_attr('IFLA_IFNAME')
                for link in ipr.get_links()] == ['lo']


def test_failed_plug_unplugs_the_ports_before_it(lab):
    """A plugin failure names the port and plugin; earlier ports go."""
    from compute_driver.network import plug
    info = model.instance_info(str(uuid.uuid4()), lab.tag)
    first = _port(lab, 10, 0x10)
    # The host provides this port's VLAN on an interface that is not
    # there: the linux_bridge plugin fails on it.
    second = _port(lab, 11, 0x11, vlan=42, bridge_interface='cdnoeth')
    before = lab.host_links()
    # The first port's device, as a hypervisor would have made it.
    lab.netlink.create_veth(first.devname, 'cdpeer' + lab.tag[-6:])
    with pytest.raises(net_exception.PlugFailed) as exc:
        plug.plug([first, second], info)
    assert (exc.value.port, exc.value.plugin) == (
        second.id, 'linux_bridge')
    assert 'cdnoeth' in str(exc.value)
    assert lab.host_links() == before


def test_plug_creates_the_bridge_the_network_provides(lab):
    """Neutron's should_create_bridge: the host makes the bridge."""
    target = lab.add_namespace('b')
    bridge = 'cdnew' + lab.tag[-6:]
    port = _port(lab, 10, 0x10, bridge=bridge, should_provide_bridge=True)
    assert not lab.netlink.link_exists(bridge)
    plug, info, _ = _plug(lab, [port])
    created = lab.netlink.link_info(bridge)
    assert (created['kind'], created['up'], created['mtu']) == (
        'bridge', True, MTU)
    lab.netlink.plug_veth(port, target, 'eth0')
    assert lab.netlink.link_info(port.devname)['master'] == bridge
    plug.unplug([port], info)
    # The bridge is the network's, shared by its ports: it stays.
    assert lab.netlink.link_exists(bridge)
    assert not lab.netlink.link_exists(port.devname)
