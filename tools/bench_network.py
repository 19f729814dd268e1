#!/usr/bin/env python3
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

"""Measure port plugging against the same netlink calls made directly.

In network namespaces of its own (``cdnet-bench-<random>-...``; the
host's interfaces are never touched) it times, interleaved round by
round so that machine load hits both alike:

- ours: ``plug.plug`` (os-vif, linux_bridge plugin), ``netlink.plug_veth``
  into a namespace as ``eth0`` with MAC, MTU, address and default route,
  then ``plug.unplug``;
- raw: the same netlink operations with pyroute2 directly: create the
  veth pair, attach the host end to the bridge, move the peer, rename it
  and set MAC, MTU, address and route inside the namespace (one
  ``NetNS``), delete the pair.

Then it plugs ``--ports`` ports (default 50) on one bridge, each into a
namespace of its own as containers get them, and compares the per-port
time of the first and last tenth: flat means the ratio stays near 1.

With ``--docker-rounds N`` (default 10; 0 skips it) it also times, in
the same run and interleaved, the docker backend's spawn of a container
with one port on that bridge against a spawn without a port (both with
``network_mode`` ``none``, the container started, until ``spawn``
returns; each destroyed untimed). The target is a difference of at most
100 ms. It needs dockerd and the docker test image
(``tools/build-docker-test-image.sh``).

Needs root, os-vif and pyroute2 (``pip install "compute-driver[network]"``).
Everything is removed at the end, even after a failure or Ctrl-C.
"""

import argparse
import json
import secrets
import statistics
import sys
import time
import uuid

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns
from pyroute2 import NetNS

from compute_driver.network import model
from compute_driver.network import netlink
from compute_driver.network import plug

MTU = 1400


def _port(index, bridge):
    return model.Port(
        id=str(uuid.uuid4()), mac='fa:16:3e:01:%02x:%02x' % divmod(
            index, 256), vif_type='bridge', bridge=bridge, mtu=MTU,
        fixed_ips=(model.FixedIP(
            '198.51.%d.%d' % (100 + index // 250, 1 + index % 250),
            '198.51.%d.0/24' % (100 + index // 250),
            '198.51.%d.254' % (100 + index // 250)),))


def ours(port, target, info):
    plug.plug([port], info)
    netlink.plug_veth(port, target, 'eth0')
    plug.unplug([port], info)


def raw(port, target, bridge):
    path = '/var/run/netns/%s' % target
    peer = netlink.peer_name(port)
    ip = port.fixed_ips[0]
    with IPRoute() as ipr:
        ipr.link('add', ifname=port.devname, kind='veth',
                 peer={'ifname': peer})
        host = ipr.link_lookup(ifname=port.devname)[0]
        ipr.link('set', index=host, mtu=MTU,
                 master=ipr.link_lookup(ifname=bridge)[0], state='up')
        ipr.link('set', index=ipr.link_lookup(ifname=peer)[0],
                 net_ns_fd=path)
    ns = NetNS(path, flags=0)
    try:
        index = ns.link_lookup(ifname=peer)[0]
        ns.link('set', index=index, ifname='eth0', address=port.mac,
                mtu=MTU)
        ns.link('set', index=index, state='up')
        ns.addr('add', index=index, address=ip.address,
                prefixlen=ip.prefixlen)
        ns.route('add', dst='0.0.0.0/0', gateway=ip.gateway, oif=index)
    finally:
        ns.close()
    with IPRoute() as ipr:
        ipr.link('del', index=ipr.link_lookup(ifname=port.devname)[0])


def docker_spawns(rounds, bridge, image):
    """Median spawn time (ms) without and with one port, interleaved."""
    from compute_driver import flavors
    from compute_driver import loader
    from compute_driver import objects
    from compute_driver.testing import fixtures

    host = 'cdnet-bench-%s' % secrets.token_hex(3)
    conf = fixtures.make_conf('docker', {
        'DEFAULT': {'host': host},
        'docker': {'network_mode': 'none', 'images': [image]}})
    driver = loader.load_driver(conf)
    driver.init_host(host)
    flavor = flavors.get_flavor(conf, 'm1.nano')
    times = {'without': [], 'with': []}
    try:
        # One untimed spawn of each: image lookup, os-vif, first sockets.
        for index in range(rounds + 1):
            order = ('with', 'without') if index % 2 else ('without', 'with')
            for name in order:
                instance = objects.Instance.new(
                    'cdnet-bench-%s' % secrets.token_hex(4), flavor, image)
                ports = ([_port(2000 + index, bridge)] if name == 'with'
                         else [])
                started = time.perf_counter()
                driver.spawn(instance, network_info=ports)
                elapsed = time.perf_counter() - started
                driver.destroy(instance)
                if index:
                    times[name].append(elapsed)
    finally:
        for uuid_ in driver.list_instance_uuids():
            driver.destroy(objects.Instance(
                uuid=uuid_, name='leftover', flavor=flavor, image_ref=image))
        driver.cleanup_host(host)
    return {name: statistics.median(values) * 1000
            for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=30)
    parser.add_argument('--ports', type=int, default=50)
    parser.add_argument('--docker-rounds', type=int, default=10,
                        help='docker spawns with and without a port to '
                             'time; 0 skips them')
    parser.add_argument('--image', default='compute-driver/busybox:test',
                        help='the docker image to spawn')
    parser.add_argument('--json', action='store_true',
                        help='print the results as one JSON object')
    args = parser.parse_args()

    tag = 'cdnet-bench-%s' % secrets.token_hex(3)
    bridge = 'cdbb%s' % tag[-6:]
    namespaces = []

    def namespace(suffix):
        name = '%s-%s' % (tag, suffix)
        pyroute2_netns.create(name)
        namespaces.append(name)
        return name

    results = {}
    entered = False
    try:
        pyroute2_netns.pushns(namespace('h'))
        entered = True
        netlink.create_bridge(bridge)
        target = namespace('t')
        info = model.instance_info(str(uuid.uuid4()), tag)
        plug.initialize()
        # One untimed round each: imports, os-vif's plugin loading.
        ours(_port(0, bridge), target, info)
        raw(_port(1, bridge), target, bridge)
        times = {'ours': [], 'raw': []}
        for index in range(args.rounds):
            for name in ('ours', 'raw') if index % 2 else ('raw', 'ours'):
                port = _port(2 + index, bridge)
                started = time.perf_counter()
                if name == 'ours':
                    ours(port, target, info)
                else:
                    raw(port, target, bridge)
                times[name].append(time.perf_counter() - started)
        for name, values in times.items():
            results['%s_ms' % name] = round(
                statistics.median(values) * 1000, 2)
        results['ratio'] = round(results['ours_ms'] / results['raw_ms'], 2)

        per_port = []
        ports = [_port(1000 + i, bridge) for i in range(args.ports)]
        targets = [namespace('p%d' % i) for i in range(args.ports)]
        for port, where in zip(ports, targets):
            started = time.perf_counter()
            plug.plug([port], info)
            netlink.plug_veth(port, where, 'eth0')
            per_port.append(time.perf_counter() - started)
        tenth = max(1, args.ports // 10)
        first = statistics.median(per_port[:tenth])
        last = statistics.median(per_port[-tenth:])
        results['ports'] = args.ports
        results['first_tenth_ms'] = round(first * 1000, 2)
        results['last_tenth_ms'] = round(last * 1000, 2)
        results['growth'] = round(last / first, 2)
        started = time.perf_counter()
        plug.unplug(ports, info)
        results['unplug_all_ms'] = round(
            (time.perf_counter() - started) * 1000, 1)
        if args.docker_rounds > 0:
            spawns = docker_spawns(args.docker_rounds, bridge, args.image)
            results['docker_spawn_ms'] = round(spawns['without'], 1)
            results['docker_spawn_one_port_ms'] = round(spawns['with'], 1)
            results['docker_port_cost_ms'] = round(
                spawns['with'] - spawns['without'], 1)
    finally:
        if entered:
            pyroute2_netns.popns()
        for name in reversed(namespaces):
            pyroute2_netns.remove(name)

    if args.json:
        print(json.dumps(results))
    else:
        print('plug + unplug of one port, median of %d rounds:'
              % args.rounds)
        print('  ours (os-vif + netlink helpers) %8.2f ms'
              % results['ours_ms'])
        print('  raw pyroute2, same operations   %8.2f ms'
              % results['raw_ms'])
        print('  ratio                           %8.2f (target <= 1.2)'
              % results['ratio'])
        print('%d ports on one bridge: first tenth %.2f ms/port, last tenth '
              '%.2f ms/port, growth %.2f; unplugging all %.1f ms'
              % (results['ports'], results['first_tenth_ms'],
                 results['last_tenth_ms'], results['growth'],
                 results['unplug_all_ms']))
        if 'docker_spawn_ms' in results:
            print('docker spawn, median of %d rounds: without a port '
                  '%.1f ms, with one port %.1f ms: +%.1f ms (target <= '
                  '+100 ms)' % (args.docker_rounds,
                                results['docker_spawn_ms'],
                                results['docker_spawn_one_port_ms'],
                                results['docker_port_cost_ms']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
