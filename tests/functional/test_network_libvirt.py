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

"""QEMU guests with ports: DHCP leases and ping on two bridges, hot-plug.

libvirtd makes a guest's taps in its own network namespace, the host's.
On a host running dockerd, bridged IPv4 traffic there goes through
iptables' FORWARD chain (br_netfilter), whose policy dockerd sets to
DROP, and this module does not change the host's iptables. So:

* the ping test gives the guest ``tap`` ports (os-vif's ``noop``: the
  Neutron agent wires the device) and plays the agent: it moves each tap
  libvirt made into the test's own namespace and onto one of two bridges
  there, each with dnsmasq; the guest's DHCP client prints each lease on
  the console, and the test pings both addresses, after boot, after
  reboots and after stop/start (each start makes new taps, wired again);
* ``bridge`` ports (os-vif's ``linux_bridge``) are checked on a bridge
  the test makes in the host's namespace: libvirt puts the tap on it
  with the port's MAC and MTU, hot-plug and hot-unplug work on the
  running guest, and nothing is left afterwards. No traffic crosses it.

The guest image needs the network block of
``tools/build-libvirt-test-image.sh`` (virtio_net and udhcpc):
``COMPUTE_DRIVER_LIBVIRT_NET_IMAGE`` names an image built with it when
the default test image predates it.
"""

import gzip
import os
import re
import secrets
import time
import uuid

import pytest

from compute_driver.network import exception as net_exception
from compute_driver.network import model
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures
from tests.functional import netlab
from tests.functional.netlab import _requirements
from tests.functional.netlab import Lab
from tests.functional.netlab import Net
from tests.functional import private_daemons

libvirt = pytest.importorskip('libvirt')

from compute_driver import flavors  # noqa: E402
from compute_driver.libvirt import network as lv_network  # noqa: E402
from compute_driver import loader  # noqa: E402
from tests.functional import test_libvirt  # noqa: E402

IMAGE = os.environ.get('COMPUTE_DRIVER_LIBVIRT_NET_IMAGE',
                       test_libvirt.IMAGE)
MACS = ('fa:16:3e:10:00:10', 'fa:16:3e:20:00:10')
#: The MAC of a port hot-plugged onto the first bridge, as .11.
HOT_MAC = 'fa:16:3e:10:00:11'
LEASE_RE = re.compile(
    r'compute-driver test guest: (eth\d) ([0-9a-f:]{17}) got ([0-9.]+)/')


def _libvirtd_netns():
    # Where libvirtd makes taps. Not /proc/1: the host's pid 1 may be
    # out of reach in a sandbox. The shared daemon's pid file first: a
    # test's private libvirtd, which may stop at any time, has the same
    # name.
    pid = test_libvirt.shared_libvirtd_pid()
    if pid is not None and os.path.exists('/proc/%d/ns/net' % pid):
        return '/proc/%d/ns/net' % pid
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/comm' % entry) as f:
                    if f.read().strip() in ('libvirtd', 'virtqemud'):
                        return '/proc/%s/ns/net' % entry
            except OSError:
                continue
    fixtures.skip_or_fail('no local libvirtd process')


def _require_network_image():
    initrd = os.path.join(test_libvirt.IMAGES_PATH, IMAGE + '.initrd')
    try:
        with gzip.open(initrd) as handle:
            ready = b'lib/modules/net/order' in handle.read()
    except OSError as exc:
        fixtures.skip_or_fail('cannot read the test image %s: %s'
                              % (initrd, exc))
    if not ready:
        fixtures.skip_or_fail(
            'the test image %s predates its network block (virtio_net, '
            'udhcpc); rebuild it with FORCE=1 '
            'tools/build-libvirt-test-image.sh, or name one built with it '
            'in COMPUTE_DRIVER_LIBVIRT_NET_IMAGE' % IMAGE)


@pytest.fixture
def conf():
    test_libvirt._require_libvirtd()
    _requirements()
    overrides = dict(test_libvirt.OVERRIDES)
    return fixtures.make_conf('libvirt', overrides)


def _backend(conf):
    backend = loader.load_driver(conf, 'libvirt')
    backend.init_host(conf.host)
    return backend


def _instance(conf):
    return objects.Instance.new(
        'cdnet-%s' % uuid.uuid4().hex[:8],
        flavors.get_flavor(conf, test_libvirt.FLAVOR), IMAGE)


class Agent:
    """Plays Neutron's agent for ``tap`` ports: wires libvirt's taps."""

    def __init__(self, lab, host_ns=None):
        self.lab = lab
        self.host_ns = host_ns or _libvirtd_netns()

    def wire(self, port, bridge):
        netlink = self.lab.netlink
        deadline = time.monotonic() + 60
        while not netlink.link_exists(port.devname, self.host_ns):
            # libvirt made the tap before the domain started: only a
            # move already done can hide it.
            if netlink.link_exists(port.devname):
                break
            assert time.monotonic() < deadline, 'no tap %s' % port.devname
            time.sleep(0.1)
        else:
            netlink.move_to_netns(port.devname, self.lab.host,
                                  source=self.host_ns)
        netlink.attach_to_bridge(port.devname, bridge, port.id)


@pytest.fixture
def lab(tmp_path):
    _requirements()
    created = Lab(tmp_path)
    try:
        created.server = created.add_namespace('s')
        created.nets = [
            Net(created, index,
                [(mac, str(netlab.NETS[index].network_address + 10))] +
                ([(HOT_MAC, str(netlab.NETS[0].network_address + 11))]
                 if index == 0 else []))
            for index, mac in enumerate(MACS)]
        yield created
    finally:
        created.close()


def _console_leases(backend, instance):
    """``(nic, mac, address)`` of each lease line, in console order."""
    return LEASE_RE.findall(backend.get_console_output(instance))


def _wait_for_leases(backend, instance, since,
                     wanted=(('eth0', MACS[0]), ('eth1', MACS[1]))):
    """Leases of the ``wanted`` NICs after the ``since``-th lease line.

    :returns: how many lease lines the console has then.
    """
    deadline = time.monotonic() + test_libvirt.BOOT_TIMEOUT
    while True:
        leases = _console_leases(backend, instance)
        got = {(nic, mac) for nic, mac, _ in leases[since:]}
        if got >= set(wanted):
            return len(leases)
        assert time.monotonic() < deadline, (
            'the guest printed no lease for both NICs:\n%s'
            % backend.get_console_output(instance)[-2000:])
        time.sleep(1)


def _tap_guest(conf, lab, host_ns=None):
    """A backend, the agent, a tap port per bridge and an instance.

    :param host_ns: the network namespace libvirtd makes taps in; the
        shared libvirtd's by default.
    """
    _require_network_image()
    ports = [net.port(10, mac, vif_type='tap', bridge=None)
             for net, mac in zip(lab.nets, MACS)]
    return _backend(conf), Agent(lab, host_ns), ports, _instance(conf)


def test_guest_with_two_ports_answers_on_both(conf, lab):
    backend, agent, ports, instance = _tap_guest(conf, lab)
    try:
        backend.spawn(instance, network_info=ports)
        assert backend.get_interfaces(instance) == tuple(ports)

        def wire_and_ping(since):
            for net, port in zip(lab.nets, ports):
                agent.wire(port, net.bridge)
                tap = lab.netlink.link_info(port.devname)
                assert tap['mtu'] == net.mtu
            seen = _wait_for_leases(backend, instance, since)
            for port in ports:
                assert lab.ping(lab.server, port.fixed_ips[0].address), (
                    '%s does not answer' % port.fixed_ips[0].address)
            return seen

        seen = wire_and_ping(0)
        backend.reboot(instance, 'SOFT')
        seen = wire_and_ping(seen)
        backend.reboot(instance, 'HARD')
        seen = wire_and_ping(seen)
        backend.power_off(instance)
        assert backend.get_info(instance).state == power_state.SHUTDOWN
        backend.power_on(instance)
        seen = wire_and_ping(seen)

        # Hot-plugged into the running guest, which runs a DHCP client
        # on every new NIC: it answers as eth2.
        hot = lab.nets[0].port(11, HOT_MAC, vif_type='tap', bridge=None)
        backend.attach_interface(instance, hot)
        agent.wire(hot, lab.nets[0].bridge)
        _wait_for_leases(backend, instance, seen, [('eth2', HOT_MAC)])
        assert lab.ping(lab.server, hot.fixed_ips[0].address)
        backend.detach_interface(instance, hot)
        assert not lab.netlink.link_exists(hot.devname)
        assert backend.get_interfaces(instance) == tuple(ports)
        assert lab.ping(lab.server, ports[0].fixed_ips[0].address)
    finally:
        backend.destroy(instance)
        backend.cleanup_host(conf.host)
    for port in ports:
        assert not lab.netlink.link_exists(port.devname)


@pytest.fixture
def host_bridge(conf):
    """A bridge in libvirtd's namespace, removed afterwards."""
    from compute_driver.network import netlink
    name = 'cdnc%s' % secrets.token_hex(3)
    netlink.create_bridge(name)
    try:
        yield name
    finally:
        netlink.delete_link(name)


def _taps(bridge):
    from compute_driver.network import netlink
    with netlink.route() as ipr:
        index = ipr.link_lookup(ifname=bridge)[0]
        return sorted(link.get_attr('IFLA_IFNAME')
                      for link in ipr.get_links()
                      if link.get_attr('IFLA_MASTER') == index)


def _bridge_port(bridge, mac, mtu=1450):
    return model.Port(id=str(uuid.uuid4()), mac=mac, vif_type='bridge',
                      bridge=bridge, mtu=mtu)


def test_bridge_ports_hot_plug_and_unplug(conf, host_bridge):
    from compute_driver.network import netlink
    backend = _backend(conf)
    first = _bridge_port(host_bridge, 'fa:16:3e:30:00:01')
    second = _bridge_port(host_bridge, 'fa:16:3e:30:00:02', mtu=1400)
    instance = _instance(conf)
    try:
        backend.spawn(instance, network_info=[first])
        assert _taps(host_bridge) == [first.devname]
        tap = netlink.link_info(first.devname)
        assert tap['mtu'] == 1450
        # The guest's NIC has the port's MAC; the tap has libvirt's
        # fe: variant of it.
        assert tap['mac'] == 'fe' + first.mac[2:]

        # PCI hot-unplug needs the guest's ACPI, so a booted guest.
        test_libvirt._wait_for_console(backend, instance,
                                       test_libvirt.BOOT_LINE)
        backend.attach_interface(instance, second)
        assert _taps(host_bridge) == sorted([first.devname,
                                             second.devname])
        assert [p.id for p in backend.get_interfaces(instance)] == [
            first.id, second.id]
        dom = backend._find(instance)
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
            assert lv_network.guest_macs(dom, flags) == [first.mac,
                                                         second.mac]

        backend.detach_interface(instance, second.id)
        assert _taps(host_bridge) == [first.devname]
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
            assert lv_network.guest_macs(dom, flags) == [first.mac]

        # A restarted process knows the ports from the domain.
        other = _backend(conf)
        assert other.get_interfaces(instance) == (first,)
        other.cleanup_host(conf.host)

        backend.power_off(instance)
        backend.power_on(instance)
        assert _taps(host_bridge) == [first.devname]
    finally:
        backend.destroy(instance)
        backend.cleanup_host(conf.host)
    assert _taps(host_bridge) == []
    assert not netlink.link_exists(first.devname)


def _links():
    from compute_driver.network import netlink
    with netlink.route() as ipr:
        return sorted(link.get_attr('IFLA_IFNAME')
                      for link in ipr.get_links())


@pytest.mark.parametrize('case', ['missing bridge', 'duplicate MAC',
                                  'MTU out of range', 'unknown VIF type',
                                  'malformed fixed IP'])
def test_bad_port_leaves_nothing(conf, host_bridge, case):
    good = _bridge_port(host_bridge, 'fa:16:3e:40:00:01')
    bad = {
        'missing bridge': (_bridge_port('cdnosuchbr', 'fa:16:3e:40:00:02'),
                           net_exception.BridgeNotFound),
        'duplicate MAC': (_bridge_port(host_bridge, good.mac),
                          net_exception.DuplicatePort),
        'MTU out of range': (
            {'id': str(uuid.uuid4()), 'address': 'fa:16:3e:40:00:03',
             'type': 'bridge',
             'network': {'bridge': host_bridge, 'meta': {'mtu': 67}}},
            net_exception.InvalidMTU),
        'unknown VIF type': (
            {'id': str(uuid.uuid4()), 'address': 'fa:16:3e:40:00:04',
             'type': 'macvtap', 'network': {'bridge': host_bridge}},
            net_exception.UnknownVIFType),
        'malformed fixed IP': (
            {'id': str(uuid.uuid4()), 'address': 'fa:16:3e:40:00:05',
             'type': 'bridge', 'network': {
                 'bridge': host_bridge, 'subnets': [{
                     'cidr': '192.0.2.0/24',
                     'ips': [{'address': '192.0.2.0'}]}]}},
            net_exception.InvalidFixedIP),
    }
    port, error = bad[case]
    backend = _backend(conf)
    instance = _instance(conf)
    before = _links()
    try:
        with pytest.raises(error):
            backend.spawn(instance, network_info=[good, port])
        assert instance.uuid not in backend.list_instance_uuids()
        assert _links() == before
        assert _taps(host_bridge) == []
        assert not os.path.exists(os.path.join(
            test_libvirt.INSTANCES_PATH, instance.uuid))
    finally:
        backend.destroy(instance)
        backend.cleanup_host(conf.host)


@pytest.fixture
def private_libvirtd():
    """A libvirtd of this test's own, which it may restart.

    Restarting the shared one would break every other test using it at
    the time; see :mod:`.private_daemons`.
    """
    test_libvirt._require_libvirtd()
    _requirements()
    daemon = private_daemons.PrivateLibvirtd(
        os.path.dirname(test_libvirt.INSTANCES_PATH))
    yield daemon
    daemon.close()


def test_ports_survive_a_libvirtd_restart(private_libvirtd, lab):
    """A guest keeps its ports across a libvirtd restart.

    QEMU outlives libvirtd, so the guest keeps its NICs and answers; the
    restarted daemon, and a new process, know the ports from the domain,
    and a stop/start afterwards makes taps that are wired again.
    """
    conf = fixtures.make_conf('libvirt',
                              test_libvirt.private_overrides(private_libvirtd))
    # The private libvirtd runs, and makes taps, in the namespace this
    # process started in.
    backend, agent, ports, instance = _tap_guest(
        conf, lab, private_daemons.HOST_NETNS)
    try:
        backend.spawn(instance, network_info=ports)
        for net, port in zip(lab.nets, ports):
            agent.wire(port, net.bridge)
        seen = _wait_for_leases(backend, instance, 0)

        private_libvirtd.restart()

        for port in ports:
            assert lab.ping(lab.server, port.fixed_ips[0].address)
        assert backend.get_interfaces(instance) == tuple(ports)
        other = _backend(conf)
        assert other.get_interfaces(instance) == tuple(ports)
        other.cleanup_host(conf.host)
        backend.power_off(instance)
        backend.power_on(instance)
        for net, port in zip(lab.nets, ports):
            agent.wire(port, net.bridge)
        _wait_for_leases(backend, instance, seen)
        for port in ports:
            assert lab.ping(lab.server, port.fixed_ips[0].address)
    finally:
        backend.destroy(instance)
        backend.cleanup_host(conf.host)
