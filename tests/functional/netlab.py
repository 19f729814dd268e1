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

"""Network namespaces, bridges and processes the network tests make.

A "host" namespace the test thread enters (setns is per thread), where
the bridges live and the library plugs, and further namespaces for
servers and instances. Removing the namespaces in :meth:`Lab.close`
removes every interface made, whatever failed.
"""

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import uuid

from compute_driver.network import model
from compute_driver.testing import fixtures

# TEST-NET-2 and TEST-NET-3 (RFC 5737): never routed.
NETS = (ipaddress.ip_network('198.51.100.0/24'),
        ipaddress.ip_network('203.0.113.0/24'))
MTUS = (1400, 1300)


class Net:
    """One bridge of a :class:`Lab`, its server and its dnsmasq.

    :param hosts: the ``(mac, address)`` leases dnsmasq gives.
    """

    def __init__(self, lab, index, hosts=()):
        self.subnet = NETS[index]
        self.mtu = MTUS[index]
        self.bridge = lab.add_bridge(str(index))
        self.gateway = str(self.subnet.network_address + 1)
        self.server_ip = str(self.subnet.network_address + 2)
        self.iface = lab.serve(
            lab.server, self.bridge, '%s/%d' % (self.server_ip,
                                                self.subnet.prefixlen),
            'fa:16:3e:ff:00:%02x' % index)
        lab.dnsmasq(lab.server, self.iface, self.subnet, self.gateway,
                    lab.tmp / ('leases%d' % index), hosts)

    def port(self, host_octet, mac, **kwargs):
        values = dict(
            id=str(uuid.uuid4()), mac=mac, vif_type='bridge',
            bridge=self.bridge, mtu=self.mtu,
            fixed_ips=(model.FixedIP(
                str(self.subnet.network_address + host_octet),
                str(self.subnet), self.gateway),))
        values.update(kwargs)
        return model.Port(**values)


def _requirements():
    if os.geteuid() != 0:
        fixtures.skip_or_fail('network namespaces and bridges need root')
    try:
        import os_vif  # noqa: F401
        import pyroute2  # noqa: F401
    except ImportError as exc:
        fixtures.skip_or_fail('%s is not installed (the network extra)'
                              % exc.name)
    missing = [tool for tool in ('dnsmasq', 'busybox', 'nsenter')
               if shutil.which(tool) is None]
    if missing:
        fixtures.skip_or_fail(
            '%s not installed; run tools/test-setup.d/60-network.sh'
            % ', '.join(missing))


class Lab:
    """Namespaces, a bridge and processes, all removed by :meth:`close`."""

    def __init__(self, tmp_path):
        from pyroute2 import netns

        from compute_driver.network import netlink
        self.netns = netns
        self.netlink = netlink
        self.tmp = tmp_path
        self.tag = 'cdnet-%s' % secrets.token_hex(3)
        self.bridge = 'cdbr%s' % self.tag[-6:]
        self.namespaces = []
        self.processes = []
        self.entered = False
        try:
            self.host = self.add_namespace('h')
            # This thread's network namespace (setns is per thread): the
            # library's "host side" below is this private namespace.
            netns.pushns(self.host)
            self.entered = True
            self.netlink.create_bridge(self.bridge)
        except BaseException:
            self.close()
            raise

    def add_namespace(self, suffix):
        name = '%s-%s' % (self.tag, suffix)
        self.netns.create(name)
        self.namespaces.append(name)
        return name

    def run(self, namespace, *argv, **kwargs):
        return subprocess.run(
            ['nsenter', '--net=/var/run/netns/%s' % namespace, *argv],
            capture_output=True, text=True, timeout=60, **kwargs)

    def start(self, namespace, *argv):
        proc = subprocess.Popen(
            ['nsenter', '--net=/var/run/netns/%s' % namespace, *argv],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.processes.append(proc)
        return proc

    def ping(self, namespace, address):
        result = self.run(namespace, 'busybox', 'ping', '-c', '1', '-W', '2',
                          address)
        return result.returncode == 0

    def host_links(self):
        with self.netlink.route() as ipr:
            return sorted(link.get_attr('IFLA_IFNAME')
                          for link in ipr.get_links())

    def close(self):
        errors = []
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        if self.entered:
            self.netns.popns()
            self.entered = False
        # Removing a namespace removes every interface in it: the bridge,
        # the veth ends and whatever a failed step left.
        for name in reversed(self.namespaces):
            try:
                self.netns.remove(name)
            except OSError as exc:
                errors.append('%s: %s' % (name, exc))
        assert not errors, errors
        leftover = [name for name in self.netns.listnetns()
                    if name.startswith(self.tag)]
        assert not leftover, leftover

    def add_bridge(self, suffix):
        """Another bridge in the host namespace; removed with it."""
        name = 'cdbr%s%s' % (self.tag[-6:], suffix)
        self.netlink.create_bridge(name)
        return name

    def serve(self, namespace, bridge, address, mac):
        """Give ``namespace`` an interface on ``bridge`` with ``address``.

        :param address: ``address/prefixlen``.
        :returns: the interface's name in ``namespace``.
        """
        iface = ipaddress.ip_interface(address)
        port = model.Port(
            id=str(uuid.uuid4()), mac=mac, vif_type='bridge', bridge=bridge,
            fixed_ips=(model.FixedIP(str(iface.ip), str(iface.network)),))
        name = 'srv%s' % bridge[-2:]
        self.netlink.plug_veth(port, namespace, name)
        return name

    def dnsmasq(self, namespace, iface, subnet, router, leases, hosts=()):
        """Serve DHCP for ``subnet`` on ``iface``.

        :param hosts: ``(mac, address)`` pairs: the only leases given.
        """
        return self.start(
            namespace, 'dnsmasq', '--no-daemon', '--conf-file=/dev/null',
            '--port=0', '--user=root', '--interface=%s' % iface,
            '--bind-interfaces', '--dhcp-range=%s,static,%s,10m' % (
                subnet.network_address, subnet.netmask),
            '--dhcp-option=option:router,%s' % router,
            *('--dhcp-host=%s,%s' % host for host in hosts),
            '--dhcp-leasefile=%s' % leases, '--log-dhcp')
