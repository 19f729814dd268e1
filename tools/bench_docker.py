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

"""Measure the docker backend against the raw docker SDK and its peers.

In one run against the same dockerd:

(a) lifecycle: boot -> stop -> delete through the driver vs the raw SDK
    making the same calls (create with the same host config, start, stop,
    remove), interleaved; goal <= 1.05x.
(b) listing: 200 instances with their power states through the driver
    (``list_instance_records``) vs the raw summary call it is built on
    (goal <= 2x), vs the SDK's high-level ``containers.list()`` (which
    inspects every container) and vs Apache Libcloud's
    ``DockerContainerDriver.list_containers`` (goal: faster). Libcloud only
    speaks TCP, so that pair goes through the same local TCP relay to the
    unix socket. Libcloud is a benchmark-only dependency (``pip install
    apache-libcloud``); without it that row is skipped with a note.
(c) ``compute-driver verify --count 50 --concurrency 8`` vs
    ``--concurrency 1``, wall-clock.
(d) scale: spawn+destroy through the driver vs the raw SDK (create,
    start, remove) with N = 10, 100 and 500 other instances of the same
    compute host (created, not started); the driver's claim must not grow
    with N: goal <= 1.1x at the largest N. An extra row shows the
    driver with ``[docker] usage_sync_interval = 0``, which lists every
    container at each claim, for comparison.

Every container it makes carries a compute host label of its own
(``cdbench-<hex>``), the filler containers of (d) a label of their own
too, and all are removed at the end, even on Ctrl-C.

Usage: tools/bench_docker.py [--image IMAGE] [--cycles N] [--list-count N]
       [--verify-count N] [--skip-verify] [--scale 10,100,500]
       [--scale-cycles N]
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib

from docker import errors as docker_errors

from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures

HOST_LABEL = 'org.openstack.compute-driver.host'
#: Marks the idle containers of (d), valued with the run's host.
FILLER_LABEL = 'org.openstack.compute-driver.bench-filler'
SOCKET = '/var/run/docker.sock'


class Relay:
    """A plain TCP listener on 127.0.0.1 relaying to dockerd's socket."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst),
                                 daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def _median(values):
    return statistics.median(values) if values else float('nan')


def _timed(func, *args, **kwargs):
    start = time.perf_counter()
    func(*args, **kwargs)
    return time.perf_counter() - start


class Bench:

    def __init__(self, args) -> None:
        self.args = args
        self.host = 'cdbench-' + uuidlib.uuid4().hex[:8]
        self.conf = self._conf()
        self.driver = loader.load_driver(self.conf)
        self.driver.init_host(self.host)
        self.api = self.driver.api
        self.flavor = flavors.get_flavor(self.conf, 'm1.nano')
        self.rows = []

    def _conf(self, **docker_options):
        return fixtures.make_conf('docker', {
            # Hundreds of instances on a small host: overcommit for (b)
            # and (d).
            'DEFAULT': {'host': self.host,
                        'cpu_allocation_ratio': 1000.0,
                        'ram_allocation_ratio': 1000.0,
                        'disk_allocation_ratio': 1000.0},
            'docker': {'network_mode': self.args.network,
                       'images': [self.args.image], **docker_options}})

    def row(self, name, ours, peer, goal=None):
        ratio = ours / peer if peer else float('nan')
        verdict = ''
        if goal is not None:
            verdict = 'PASS' if ratio <= goal else 'FAIL'
            verdict = '%s (goal <= %.2fx)' % (verdict, goal)
        self.rows.append((name, ours, peer, ratio, verdict))

    # -- (a) ----------------------------------------------------------------

    def _instance(self, power_on=True):
        instance = objects.Instance.new(
            'cdbench-%s' % uuidlib.uuid4().hex[:8], self.flavor,
            self.args.image)
        self.driver.spawn(instance, power_on=power_on)
        return instance

    def _driver_cycle(self):
        instance = self._instance()
        self.driver.power_off(instance, 0)
        self.driver.destroy(instance)

    def _raw_create(self, name_prefix='cdbench-raw-', extra_labels=None):
        from compute_driver.docker import hostconfig
        from compute_driver.docker import mapping
        api = self.api
        instance = objects.Instance.new(
            'cdbench-%s' % uuidlib.uuid4().hex[:8], self.flavor,
            self.args.image)
        labels = mapping.instance_labels(instance, self.host)
        labels.update(extra_labels or {})
        return api.create_container(
            image=self.args.image, name=name_prefix + instance.uuid,
            hostname=instance.name, labels=labels,
            host_config=api.create_host_config(
                **hostconfig.host_config_args(self.conf, self.flavor)),
            detach=True)['Id']

    def _raw_cycle(self):
        container = self._raw_create()
        self.api.start(container)
        self.api.stop(container, timeout=0)
        self.api.remove_container(container, force=True, v=True)

    def lifecycle(self):
        cycles = self.args.cycles
        ours, raw = [], []
        # One warm-up each, then interleaved so load hits both alike.
        self._driver_cycle()
        self._raw_cycle()
        for _ in range(cycles):
            ours.append(_timed(self._driver_cycle))
            raw.append(_timed(self._raw_cycle))
        self.row('(a) boot+stop+delete, driver vs raw SDK (median s, %d '
                 'cycles)' % cycles, _median(ours), _median(raw), 1.05)

    # -- (b) ----------------------------------------------------------------

    def listing(self):
        count = self.args.list_count
        print('creating %d containers for the listing benchmark...'
              % count, file=sys.stderr)
        for _ in range(count):
            self._instance(power_on=False)
        assert len(self.driver.list_instance_uuids()) == count
        filters = {'label': ['org.openstack.compute-driver.uuid',
                             '%s=%s' % (HOST_LABEL, self.host)]}
        runs = self.args.list_runs
        ours, raw = [], []
        for _ in range(runs):
            ours.append(_timed(self.driver.list_instance_records))
            raw.append(_timed(self.api.containers, all=True,
                              filters=filters))
        self.row('(b) list %d + power states, driver vs raw summary call'
                 % count, _median(ours), _median(raw), 2.0)

        import docker
        high = docker.DockerClient(base_url='unix://' + SOCKET)
        try:
            listed = [_timed(high.containers.list, all=True,
                             filters=filters) for _ in range(3)]
        finally:
            high.close()
        self.row('(b) list %d, driver vs SDK containers.list() (inspects '
                 'each)' % count, _median(ours), _median(listed))

        try:
            from libcloud.container.drivers import docker as lc_docker
        except ImportError:
            self.rows.append((
                '(b) vs Libcloud list_containers: SKIPPED, pip install '
                'apache-libcloud (benchmark-only dependency)', None, None,
                None, ''))
            return
        relay = Relay(SOCKET)
        try:
            tcp_conf = fixtures.make_conf('docker', {
                'DEFAULT': {'host': self.host},
                'docker': {'api_url': 'tcp://127.0.0.1:%d' % relay.port}})
            tcp_driver = loader.load_driver(tcp_conf)
            tcp_driver.init_host(self.host)
            peer = lc_docker.DockerContainerDriver(host='127.0.0.1',
                                                   port=relay.port)
            peer.list_containers(all=True)
            tcp_driver.list_instance_records()
            ours_tcp, theirs = [], []
            for _ in range(runs):
                ours_tcp.append(_timed(tcp_driver.list_instance_records))
                theirs.append(_timed(peer.list_containers, all=True))
            tcp_driver.cleanup_host(self.host)
        finally:
            relay.close()
        self.row('(b) list %d, driver vs Libcloud list_containers (both '
                 'over TCP)' % count, _median(ours_tcp), _median(theirs),
                 1.0)

    # -- (c) ----------------------------------------------------------------

    def verify(self):
        script = shutil.which('compute-driver', path=os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get('PATH', '')]))
        if script is None:
            raise SystemExit('compute-driver is not installed here')
        count = self.args.verify_count
        with tempfile.TemporaryDirectory() as tmp:
            config = os.path.join(tmp, 'compute-driver.conf')
            with open(config, 'w') as f:
                f.write('[DEFAULT]\ncompute_driver = docker\nhost = %s\n'
                        '[docker]\nnetwork_mode = %s\nimages = %s\n'
                        % (self.host, self.args.network, self.args.image))
            times = {}
            for concurrency in (min(8, count), 1):
                print('verify --count %d --concurrency %d...'
                      % (count, concurrency), file=sys.stderr)
                start = time.perf_counter()
                result = subprocess.run(
                    [script, '--config-file', config, 'verify', '--count',
                     str(count), '--concurrency', str(concurrency)],
                    capture_output=True, text=True,
                    env=dict(os.environ, HOME=tmp))
                times[concurrency] = time.perf_counter() - start
                if result.returncode != 0:
                    print(result.stdout + result.stderr, file=sys.stderr)
                    raise SystemExit('verify failed')
        self.row('(c) verify --count %d: concurrency %d vs 1 (wall s)'
                 % (count, min(8, count)), times[min(8, count)], times[1])

    # -- (d) ----------------------------------------------------------------

    def _spawn_destroy(self, driver):
        instance = objects.Instance.new(
            'cdbench-%s' % uuidlib.uuid4().hex[:8], self.flavor,
            self.args.image)
        driver.spawn(instance)
        driver.destroy(instance)

    def _raw_spawn_destroy(self):
        container = self._raw_create()
        self.api.start(container)
        self.api.remove_container(container, force=True, v=True)

    def scale(self):
        counts = self.args.scale
        cycles = self.args.scale_cycles
        fillers = 0
        for count in counts:
            print('creating %d idle containers for the scale benchmark...'
                  % (count - fillers), file=sys.stderr)
            while fillers < count:
                self._raw_create('cdbench-filler-',
                                 {FILLER_LABEL: self.host})
                fillers += 1
            self._spawn_destroy(self.driver)
            self._raw_spawn_destroy()
            ours, raw = [], []
            for _ in range(cycles):
                ours.append(_timed(self._spawn_destroy, self.driver))
                raw.append(_timed(self._raw_spawn_destroy))
            goal = 1.1 if count == counts[-1] else None
            self.row('(d) spawn+destroy with %d idle instances, driver vs '
                     'raw SDK (median s, %d cycles)' % (count, cycles),
                     _median(ours), _median(raw), goal)
        # The same at the largest N, listing at every claim as before the
        # totals were kept.
        listing_driver = loader.load_driver(
            self._conf(usage_sync_interval=0))
        listing_driver.init_host(self.host)
        try:
            ours, raw = [], []
            for _ in range(cycles):
                ours.append(_timed(self._spawn_destroy, listing_driver))
                raw.append(_timed(self._raw_spawn_destroy))
        finally:
            listing_driver.cleanup_host(self.host)
        self.row('(d) the same with %d, usage_sync_interval = 0 (lists at '
                 'each claim)' % counts[-1], _median(ours), _median(raw))

    # -- cleanup and report -------------------------------------------------

    def clean_up(self):
        left = self.api.containers(all=True, filters={
            'label': '%s=%s' % (HOST_LABEL, self.host)})
        left += self.api.containers(all=True, filters={
            'label': '%s=%s' % (FILLER_LABEL, self.host)})
        removed = set()
        for summary in left:
            if summary['Id'] in removed:
                continue
            try:
                self.api.remove_container(summary['Id'], force=True, v=True)
            except docker_errors.NotFound:
                pass
            removed.add(summary['Id'])
        self.driver.cleanup_host(self.host)
        return len(removed)

    def report(self):
        print('%-72s %10s %10s %8s  %s' % ('benchmark', 'ours', 'peer',
                                           'ratio', 'verdict'))
        for name, ours, peer, ratio, verdict in self.rows:
            if ours is None:
                print(name)
                continue
            print('%-72s %10.4f %10.4f %7.2fx  %s'
                  % (name, ours, peer, ratio, verdict))


def _counts(text):
    try:
        counts = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            'a comma-separated list of counts, not %r' % text) from None
    if counts != sorted(counts) or any(c < 0 for c in counts):
        raise argparse.ArgumentTypeError('counts must ascend from 0')
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--image', default=os.environ.get(
        'COMPUTE_DRIVER_DOCKER_TEST_IMAGE', 'compute-driver/busybox:test'),
        help='image to boot (default: the test image)')
    parser.add_argument('--network', default='none',
                        help='[docker] network_mode for both sides')
    parser.add_argument('--cycles', type=int, default=20,
                        help='lifecycle cycles of each side (default 20)')
    parser.add_argument('--list-count', type=int, default=200,
                        help='containers to list (default 200)')
    parser.add_argument('--list-runs', type=int, default=15,
                        help='timed listings of each side (default 15)')
    parser.add_argument('--verify-count', type=int, default=50,
                        help='instances per verify run (default 50)')
    parser.add_argument('--skip-verify', action='store_true',
                        help='leave out (c)')
    parser.add_argument('--scale', type=_counts, default=[10, 100, 500],
                        help='idle instances for (d), ascending, comma '
                             'separated (default 10,100,500); empty leaves '
                             '(d) out')
    parser.add_argument('--scale-cycles', type=int, default=10,
                        help='spawn+destroy cycles of each side per count '
                             'in (d) (default 10)')
    args = parser.parse_args(argv)
    bench = Bench(args)
    try:
        bench.lifecycle()
        if args.scale:
            bench.scale()
            bench.clean_up()
            bench.driver.init_host(bench.host)
            bench.api = bench.driver.api
        bench.listing()
        # The 200 listed containers would slow verify's listings down.
        bench.clean_up()
        bench.driver.init_host(bench.host)
        bench.api = bench.driver.api
        if not args.skip_verify:
            bench.verify()
    finally:
        left = bench.clean_up()
        print('removed %d benchmark containers' % left, file=sys.stderr)
    bench.report()
    return 0


if __name__ == '__main__':
    sys.exit(main())
