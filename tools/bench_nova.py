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

"""Measure what a real backend costs a Nova control plane.

One Nova control plane (API, conductor, scheduler, placement: Nova's
functional framework, in this process, with real asynchronous casts)
with two compute services: one running the adapter over the docker
backend, one running Nova's own in-memory ``fake.FakeDriver``. In one run:

(a) through the API: N servers (``--servers``, default 20) created in one
    request and deleted, waiting for all to be ACTIVE and then gone,
    forced onto each host in turn (interleaved, ``--rounds`` times);
    the ratio is the cost of the real backend over Nova's fake.
(b) the compute side per server: N servers created and deleted one at a
    time through the API on the docker host, timing the adapter's
    ``spawn`` and ``destroy`` as Nova's compute manager calls them,
    versus the raw docker SDK doing the same work (create, start, stop,
    remove of the same image with the same host configuration),
    interleaved.

Waits list the servers every 0.05 s, the same on both hosts. Needs
dockerd and the docker test image (``tools/build-docker-test-image.sh``);
run with ``tox -e bench-nova``.
"""

import argparse
import os
import statistics
import sys
import time
import typing
import unittest
import uuid as uuidlib

# Nova's native-threading mode, as in the nova tox environment; before
# anything imports Nova.
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from tests.functional import docker_env  # noqa: E402
from tests.nova import functional_base  # noqa: E402

from compute_driver.docker import hostconfig  # noqa: E402
from compute_driver.docker import mapping  # noqa: E402
from compute_driver import objects  # noqa: E402


#: Seconds between two listings while waiting for servers.
POLL_INTERVAL = 0.05


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float('nan')


class _Timed:
    """Wrap a driver method, recording how long each call takes."""

    def __init__(self, func: typing.Callable[..., typing.Any]) -> None:
        self.func = func
        self.times: list[float] = []

    def __call__(self, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        start = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        finally:
            self.times.append(time.perf_counter() - start)


class NovaBench(functional_base.AdapterTestBase):
    """The control plane, the two hosts and the measurements."""

    backend_name = 'docker'
    backend_options = {'docker': {'api_url': docker_env.API_URL,
                                  'network_mode': 'none'}}
    backend_images = {functional_base.IMAGE: docker_env.IMAGE}
    #: Set by :func:`main` before the case runs.
    args: argparse.Namespace
    rows: list[tuple[str, float, float]] = []

    def setUp(self) -> None:
        self.docker_api = docker_env.raw_client()
        # 20 servers of m1.tiny on a small machine: overcommit.
        self.flags(disk_allocation_ratio=1000.0, cpu_allocation_ratio=100.0,
                   ram_allocation_ratio=100.0)
        # Nova's default quota is 10 servers.
        self.flags(instances=-1, cores=-1, ram=-1, group='quota')
        super().setUp()
        self.docker_host = docker_env.unique_host()
        self.fake_host = 'novafake-' + self.docker_host
        self._start_compute(self.docker_host)
        # Nova loads the driver named when the service starts.
        self.flags(compute_driver='fake.FakeDriver')
        self._start_compute(self.fake_host)
        self.flags(compute_driver=self.compute_driver)
        driver = self.computes[self.docker_host].manager.driver
        self.spawns = _Timed(driver.spawn)
        self.destroys = _Timed(driver.destroy)
        driver.spawn = self.spawns
        driver.destroy = self.destroys

    def _remove_backend_leftovers(self) -> None:
        # Nova's fake driver keeps nothing outside this process.
        self.computes.pop(self.fake_host, None)
        super()._remove_backend_leftovers()

    def runTest(self) -> None:
        args = self.args
        through_api: dict[str, list[float]] = {
            self.docker_host: [], self.fake_host: []}
        for host in (self.docker_host, self.fake_host):  # warm-up
            self.create_and_delete(host, 1)
        for _ in range(args.rounds):
            for host in (self.docker_host, self.fake_host):
                through_api[host].append(
                    self.create_and_delete(host, args.servers))
        self.rows.append((
            '(a) %d servers created+deleted via the API, docker vs Nova '
            'fake (median s of %d)' % (args.servers, args.rounds),
            _median(through_api[self.docker_host]),
            _median(through_api[self.fake_host])))

        del self.spawns.times[:], self.destroys.times[:]
        raw = []
        for _ in range(args.servers):
            self.create_and_delete(self.docker_host, 1)
            raw.append(self.raw_cycle())
        compute = [s + d for s, d in
                   zip(self.spawns.times, self.destroys.times)]
        self.assertEqual(args.servers, len(compute))
        self.rows.append((
            '(b) compute side per server: adapter spawn+destroy vs raw SDK '
            'create+start+stop+remove (median s of %d)' % args.servers,
            _median(compute), _median(raw)))

    def create_and_delete(self, host: str, count: int) -> float:
        """Seconds to create ``count`` servers on ``host`` and delete them."""
        start = time.perf_counter()
        body = self._build_server(image_uuid=functional_base.IMAGE,
                                  flavor_id='1', networks='none',
                                  az='nova:%s' % host)
        body.update(min_count=count, return_reservation_id=True)
        search = {'reservation_id': self.api.post_server(
            {'server': body})['reservation_id']}
        servers = self.poll(search, lambda found: len(found) == count and all(
            s['status'] in ('ACTIVE', 'ERROR') for s in found))
        for server in servers:
            self.assertEqual('ACTIVE', server['status'], server)
            self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        for server in servers:
            self.api.delete_server(server['id'])
        self.poll(search, lambda found: not found)
        return time.perf_counter() - start

    def poll(self, search: dict[str, str],
             done: typing.Callable[[list[dict]], bool]) -> list[dict]:
        """The servers ``search`` finds, once ``done`` says so.

        One listing every :data:`POLL_INTERVAL` rather than Nova's helpers'
        half a second per server, so that the wait adds little to what is
        measured.
        """
        deadline = time.monotonic() + self.wait_retries * 0.5
        while True:
            found = self.api.get_servers(search_opts=search)
            if done(found):
                return found
            self.assertLess(time.monotonic(), deadline,
                            'timed out waiting for %s' % found)
            time.sleep(POLL_INTERVAL)

    def raw_cycle(self) -> float:
        """The same container lifecycle through the raw SDK; seconds.

        The container the adapter would make for an m1.tiny server: the
        same image, labels and host configuration.
        """
        conf = self.computes[self.docker_host].manager.driver.backend.conf
        nova_flavor = self.api.get_flavor('1')
        flavor = objects.Flavor(
            name=nova_flavor['name'], vcpus=nova_flavor['vcpus'],
            memory_mb=nova_flavor['ram'], root_gb=nova_flavor['disk'])
        instance = objects.Instance.new(
            'cdbench-%s' % uuidlib.uuid4().hex[:8], flavor, docker_env.IMAGE)
        start = time.perf_counter()
        container = self.docker_api.create_container(
            image=docker_env.IMAGE, name='cdbench-raw-' + instance.uuid,
            hostname=instance.name,
            labels=mapping.instance_labels(instance, self.docker_host),
            host_config=self.docker_api.create_host_config(
                **hostconfig.host_config_args(conf, flavor)),
            detach=True)['Id']
        try:
            self.docker_api.start(container)
            self.docker_api.stop(container, timeout=0)
        finally:
            self.docker_api.remove_container(container, force=True, v=True)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--servers', type=int, default=20,
                        help='Servers per measurement (default 20).')
    parser.add_argument('--rounds', type=int, default=1,
                        help='Rounds of (a) per host (default 1).')
    args = parser.parse_args(argv)
    NovaBench.args = args
    result = unittest.TestResult()
    NovaBench().run(result)
    for test, trace in result.errors + result.failures:
        print(trace, file=sys.stderr)
    if not result.wasSuccessful() or not NovaBench.rows:
        return 1
    print('%-96s %9s %9s %7s' % ('measurement', 'ours', 'peer', 'ratio'))
    for name, ours, peer in NovaBench.rows:
        print('%-96s %9.3f %9.3f %6.2fx' % (name, ours, peer, ours / peer))
    return 0


if __name__ == '__main__':
    sys.exit(main())
