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

"""Measure the xenapi backend against the raw XenAPI SDK.

In one run against one XAPI simulator over real HTTP (XML-RPC):

(a) XAPI calls per spawn, as the simulator counts them, with N = 0, 10
    and 50 existing instances; goal <= 12 and the same at every N. The
    event thread's ``event.from`` long polls are listed apart: it makes
    them whether or not anything happens. Then the calls of the whole
    spawn -> power_off -> destroy against the raw SDK's.
(b) spawn -> power_off -> destroy through the driver vs the raw SDK
    making the minimal calls (clone, set other_config with the SR for the
    template's disks, memory limits, VIF, provision, start, hard_shutdown,
    the VM's VDIs, destroy VM and VDIs), interleaved, with N = 0 and 50
    existing instances; goal <= 1.3x. The raw side looks up the template,
    network and SR once, outside the timing, as the driver does at
    ``init_host``.

The load average is printed with the results: the numbers are only
comparable between runs on an otherwise idle machine.

Usage: tools/bench_xenapi.py [--cycles N] [--counts 0,10,50]
       [--timed 0,50]
"""

import argparse
import os
import statistics
import sys
import time

import XenAPI

from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator import server

TEMPLATE = 'Debian Bookworm 12'
IMAGE = 'Debian_Bookworm_12'
FLAVOR = 'm1.nano'


def _instance(conf, name):
    return objects.Instance.new(name, flavors.get_flavor(conf, FLAVOR),
                                IMAGE)


class Raw:
    """The raw SDK making the fewest calls a spawn and delete need."""

    def __init__(self, sim, flavor):
        self.session = XenAPI.Session(sim.url)
        self.session.xenapi.login_with_password(
            sim_fixture.USERNAME, sim_fixture.PASSWORD, '2.21', 'bench-raw')
        api = self.session.xenapi
        [self.template] = api.VM.get_by_name_label(TEMPLATE)
        [pool] = api.pool.get_all()
        self.network = (api.network.get_all() or [''])[0]
        sr = api.SR.get_uuid(api.pool.get_default_SR(pool))
        self.other = api.VM.get_other_config(self.template)
        self.other.pop('default_template', None)
        self.other['disks'] = self.other['disks'].replace(
            'sr=""', 'sr="%s"' % sr)
        self.memory = str(flavor.memory_mb * 1024 * 1024)

    def lifecycle(self, name):
        api = self.session.xenapi
        ref = api.VM.clone(self.template, name)
        api.VM.set_other_config(ref, self.other)
        api.VM.set_memory_limits(ref, self.memory, self.memory, self.memory,
                                 self.memory)
        if self.network:
            api.VIF.create({
                'device': '0', 'network': self.network, 'VM': ref,
                'MAC': '', 'MTU': '1500', 'other_config': {},
                'qos_algorithm_type': '', 'qos_algorithm_params': {}})
        api.VM.provision(ref)
        api.VM.start(ref, False, False)
        api.VM.hard_shutdown(ref)
        vdis = [api.VBD.get_VDI(vbd) for vbd in api.VM.get_VBDs(ref)]
        api.VM.destroy(ref)
        for vdi in vdis:
            api.VDI.destroy(vdi)

    def close(self):
        self.session.xenapi.session.logout()


def _populate(backend, conf, have, want):
    for number in range(have, want):
        backend.spawn(_instance(conf, 'bench-existing-%d' % number),
                      power_on=False)
    return want


def _made(sim, before):
    """The calls made since ``before``, but the event thread's polls."""
    made = {m: c - before.get(m, 0) for m, c in sim.calls.items()
            if c != before.get(m, 0)}
    return made.pop('event.from', 0), made


def _count(sim, backend, conf, raw, existing):
    """Calls of a spawn; of power_off and destroy then, and the raw SDK's."""
    before = dict(sim.calls)
    instance = _instance(conf, 'bench-counted-%d' % existing)
    backend.spawn(instance)
    polls, made = _made(sim, before)
    before = dict(sim.calls)
    backend.power_off(instance)
    backend.destroy(instance)
    rest = sum(_made(sim, before)[1].values())
    before = dict(sim.calls)
    raw.lifecycle('bench-raw-counted-%d' % existing)
    raw_total = sum(_made(sim, before)[1].values())
    return sum(made.values()), polls, made, rest, raw_total


def _time(sim, backend, conf, raw, existing, cycles):
    driver_times, raw_times = [], []
    for cycle in range(cycles):
        instance = _instance(conf, 'bench-%d-%d' % (existing, cycle))
        start = time.perf_counter()
        backend.spawn(instance)
        backend.power_off(instance)
        backend.destroy(instance)
        driver_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        raw.lifecycle('bench-raw-%d-%d' % (existing, cycle))
        raw_times.append(time.perf_counter() - start)
    return statistics.median(driver_times), statistics.median(raw_times)


def _ints(text):
    return sorted({int(part) for part in text.split(',') if part.strip()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cycles', type=int, default=30,
                        help='Timed lifecycles per side and N.')
    parser.add_argument('--counts', type=_ints, default=[0, 10, 50],
                        help='Existing instances to count calls at.')
    parser.add_argument('--timed', type=_ints, default=[0, 50],
                        help='Existing instances to time lifecycles at.')
    args = parser.parse_args(argv)
    sim = server.Simulator('127.0.0.1', 0, users={
        sim_fixture.USERNAME: sim_fixture.PASSWORD}).start()
    conf = fixtures.make_conf('xenapi', {
        'xenapi': sim_fixture.xenapi_options(sim)})
    backend = loader.load_driver(conf)
    backend.init_host(conf.host)
    raw = Raw(sim, flavors.get_flavor(conf, FLAVOR))
    failed = False
    try:
        print('load average: %.2f %.2f %.2f (%d CPUs)'
              % (*os.getloadavg(), os.cpu_count() or 0))
        print('(a) XAPI calls per spawn (goal <= 12, constant in N)')
        have = 0
        counts = []
        for existing in sorted(set(args.counts) | set(args.timed)):
            have = _populate(backend, conf, have, existing)
            if existing in args.counts:
                total, polls, made, rest, raw_total = _count(
                    sim, backend, conf, raw, existing)
                counts.append(total)
                print('  N=%-3d %2d calls (+%d event.from of the event '
                      'thread)  %s' % (existing, total, polls, ', '.join(
                          '%s=%d' % kv for kv in sorted(made.items()))))
                print('        spawn+power_off+destroy: %d calls, raw SDK '
                      '%d' % (total + rest, raw_total))
            if existing in args.timed:
                # A warm-up cycle each, outside the timing.
                _time(sim, backend, conf, raw, existing, 1)
                ours, theirs = _time(sim, backend, conf, raw, existing,
                                     args.cycles)
                ratio = ours / theirs
                failed |= ratio > 1.3
                print('(b) N=%-3d spawn+power_off+destroy: driver %.1f ms, '
                      'raw SDK %.1f ms, %.2fx (goal <= 1.3x)'
                      % (existing, ours * 1000, theirs * 1000, ratio))
        failed |= max(counts, default=0) > 12 or len(set(counts)) > 1
        print('load average: %.2f %.2f %.2f' % os.getloadavg())
    finally:
        raw.close()
        backend.cleanup_host(conf.host)
        sim.stop()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
