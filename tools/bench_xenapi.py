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

In one run against XAPI simulators over real HTTP (XML-RPC):

(a) XAPI calls per spawn, as the simulator counts them, with N = 0, 10
    and 50 existing instances; goal <= 12 and the same at every N. The
    event thread's ``event.from`` long polls are listed apart: it makes
    them whether or not anything happens; so are logins, which a pooled
    session makes once for the driver's lifetime, whichever call first
    needs it. Then the calls of the whole spawn -> power_off -> destroy
    against the raw SDK's.
(b) spawn -> power_off -> destroy through the driver vs the raw SDK
    making the minimal calls for the same VM, interleaved, with N = 0
    and 50 existing instances; goal <= 1.3x. Both give the VM one VIF on
    the pool's network (the driver through ``[xenapi] network_name``).
    The raw SDK: VM.clone, VM.set_other_config (the SR for the template's
    disks), VM.set_memory_limits, VIF.create, VM.provision, VM.start,
    VM.hard_shutdown, VM.get_VBDs, VBD.get_VDI per disk, VM.destroy,
    VDI.destroy per disk -- synchronous calls. The driver makes the same
    but tags the clone, provision and start with an
    ``X-Http-Other-Config-`` header, which XAPI copies into the task it
    runs a synchronous call under, so that one outlasting ``[xenapi]
    call_timeout`` or interrupted is found and cancelled (an Async call,
    an event and task.destroy per task did that before); names the clone
    after its spawn until the
    last call renames it (VM.set_name_label), so that what a dead spawn
    left is swept; and reads each disk's VDI record before destroying it,
    so that a shared or read-only disk is kept. The raw side looks up the
    template, network and SR once, outside the timing, as the driver does
    at ``init_host``. The raw SDK talks through xmlrpc.client's own
    transport, as it does by default; the driver through its leaner one
    (one write per call, its own reading of the response's head; see
    ``compute_driver.xenapi.connection``), part of what is measured.
    A third column times the raw SDK giving those same
    guarantees (tagged calls, the rename, the VDI records): the driver's
    own overhead on top of what it guarantees.
    Then what each guarantee alone adds to the minimal raw SDK, timed in
    the same interleaved cycles. The sides take turns in a rotating
    order, each after a short pause, so that none pays for the event
    thread still reading what the one before did.
    Timed against simulators in processes of their own, as a real XAPI
    is (another host's daemon): one in the benchmark's process would
    share its interpreter lock with the driver's threads (the event
    thread, the calls made alongside each other) and the raw SDK's one
    thread alike, a cost no deployment has. The raw SDK's sides have a
    simulator of their own, with as many existing instances: against
    the driver's, its event thread would read and convert every change
    the raw SDK makes, in the raw SDK's process, a cost the driver pays
    and no raw SDK client does (for comparison with earlier runs, the
    raw SDK is also timed so, once more). ``--server thread`` times
    against in-process simulators instead. The calls in (a) are counted
    in-process, where the simulator's counters are.

With (b), the CPU each side costs per lifecycle: this process's (the
client: the driver with its event thread, or the raw SDK) and each
simulator process's, counted from a side's start to the next side's.

The load average is printed with the results: the numbers are only
comparable between runs on an otherwise idle machine.

Usage: tools/bench_xenapi.py [--cycles N] [--counts 0,10,50]
       [--timed 0,50] [--server process|thread]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xmlrpc.client

import XenAPI

from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures
from compute_driver.testing.xapi_simulator import api as sim_api
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator import seed
from compute_driver.testing.xapi_simulator import server
from compute_driver.xenapi import connection
from compute_driver.xenapi import mapping

TEMPLATE = 'Debian Bookworm 12'
IMAGE = 'Debian_Bookworm_12'
NETWORK = seed.DEFAULT_SEED['network']
FLAVOR = 'm1.nano'


def _instance(conf, name):
    return objects.Instance.new(name, flavors.get_flavor(conf, FLAVOR),
                                IMAGE)


#: The driver's guarantees (see the module's documentation).
GUARANTEES = ('tasks', 'rename', 'vdi_check')


class _Tagging(xmlrpc.client.Transport):
    """Sends :attr:`headers` with each call, besides the usual ones."""

    headers = ()

    def send_headers(self, connection, headers):
        super().send_headers(connection, list(headers) + list(self.headers))


class Raw:
    """The raw SDK making the fewest calls a spawn and delete need.

    :param guarded: also give the driver's guarantees (see the module's
        documentation), with the fewest calls they take.
    :param only: give only these of :data:`GUARANTEES`.
    """

    def __init__(self, sim, flavor, guarded=False, only=()):
        self.gives = set(GUARANTEES if guarded else only)
        self.transport = _Tagging()
        self.session = XenAPI.Session(sim.url, transport=self.transport)
        self.session.xenapi.login_with_password(
            sim_fixture.USERNAME, sim_fixture.PASSWORD, '2.21', 'bench-raw')
        api = self.session.xenapi
        [self.template] = api.VM.get_by_name_label(TEMPLATE)
        [pool] = api.pool.get_all()
        [self.network] = api.network.get_by_name_label(NETWORK)
        self.sr = sr = api.SR.get_uuid(api.pool.get_default_SR(pool))
        self.flavor = flavor
        self.other = api.VM.get_other_config(self.template)
        self.other.pop('default_template', None)
        self.other['disks'] = self.other['disks'].replace(
            'sr=""', 'sr="%s"' % sr)
        self.memory = str(flavor.memory_mb * 1024 * 1024)

    def _run(self, method, *args):
        api = self.session.xenapi
        call = getattr(getattr(api, method.split('.')[0]),
                       method.split('.')[1])
        if 'tasks' not in self.gives:
            return call(*args)
        # What the tag costs; the cancellation, on failure only, not.
        self.transport.headers = [(
            connection.TASK_TAG_HEADER + connection.TASK_TAG_KEY,
            uuid.uuid4().hex)]
        try:
            return call(*args)
        finally:
            self.transport.headers = ()

    def lifecycle(self, name):
        api = self.session.xenapi
        renamed = 'rename' in self.gives
        ref = self._run('VM.clone', self.template,
                        'spawning ' + name if renamed else name)
        api.VM.set_other_config(ref, self.other)
        api.VM.set_memory_limits(ref, self.memory, self.memory, self.memory,
                                 self.memory)
        api.VIF.create({
            'device': '0', 'network': self.network, 'VM': ref,
            'MAC': '', 'MTU': '1500', 'other_config': {},
            'qos_algorithm_type': '', 'qos_algorithm_params': {}})
        self._run('VM.provision', ref)
        self._run('VM.start', ref, False, False)
        if renamed:
            api.VM.set_name_label(ref, name)
        api.VM.hard_shutdown(ref)
        if 'vdi_check' in self.gives:
            vbds = api.VBD.get_all_records_where('field "VM" = "%s"' % ref)
            vdis = [vbd['VDI'] for vbd in vbds.values()
                    if vbd['type'] == 'Disk' and not vbd['empty']]
            vdis = [vdi for vdi in vdis
                    if not api.VDI.get_record(vdi)['sharable']]
        else:
            vdis = [api.VBD.get_VDI(vbd) for vbd in api.VM.get_VBDs(ref)]
        api.VM.destroy(ref)
        for vdi in vdis:
            api.VDI.destroy(vdi)

    def existing(self, name):
        """A halted VM, as the driver's existing instances are.

        Its disks have the flavor's size, as theirs, so that the SR
        holds as many.
        """
        api = self.session.xenapi
        ref = api.VM.clone(self.template, name)
        other = dict(self.other, disks=mapping.resize_disks(
            self.other['disks'], self.flavor, self.sr))
        api.VM.set_other_config(ref, other)
        api.VM.provision(ref)

    def close(self):
        self.session.xenapi.session.logout()


def _populate(backend, conf, have, want):
    for number in range(have, want):
        backend.spawn(_instance(conf, 'bench-existing-%d' % number),
                      power_on=False)
    return want


# Calls listed apart from a spawn's: see the module's documentation.
APART = ('event.from', 'session.login_with_password')


def _made(sim, before):
    """The calls made since ``before``; those listed apart, apart."""
    made = {m: c - before.get(m, 0) for m, c in sim.calls.items()
            if c != before.get(m, 0)}
    return {m: made.pop(m, 0) for m in APART}, made


def _count(sim, backend, conf, raws, existing):
    """Calls of a spawn; of power_off and destroy then; the raw SDK's."""
    before = dict(sim.calls)
    instance = _instance(conf, 'bench-counted-%d' % existing)
    backend.spawn(instance)
    apart, made = _made(sim, before)
    before = dict(sim.calls)
    backend.power_off(instance)
    backend.destroy(instance)
    rest = sum(_made(sim, before)[1].values())
    raw_totals = []
    for number, raw in enumerate(raws):
        before = dict(sim.calls)
        raw.lifecycle('bench-raw-counted-%d-%d' % (existing, number))
        raw_totals.append(sum(_made(sim, before)[1].values()))
    return sum(made.values()), apart, made, rest, raw_totals


#: Seconds each side waits before it is timed, so that it does not pay
#: for the event thread still reading the events of the side before:
#: the simulator, as XAPI, answers a woken event.from only after
#: api.EVENT_DELAY.
SETTLE = 0.02 + sim_api.EVENT_DELAY


def _cpu(pids):
    """CPU seconds of this process and of each of ``pids``, so far."""
    used = [time.process_time()]
    for pid in pids:
        with open('/proc/%d/stat' % pid) as stat:
            fields = stat.read().rsplit(')', 1)[1].split()
        used.append((int(fields[11]) + int(fields[12]))
                    / os.sysconf('SC_CLK_TCK'))
    return used


def _time(backend, conf, raws, existing, cycles, pids=()):
    """Median seconds per side; and CPU seconds per lifecycle per side.

    The CPU is this process's (the client: the driver with its event
    thread, or the raw SDK) and each of ``pids``'s (simulator processes),
    counted from a side's start to the next side's: the pause between
    them included, in which the event thread reads what the side did.
    """
    def driver(name):
        instance = _instance(conf, name)
        backend.spawn(instance)
        backend.power_off(instance)
        backend.destroy(instance)

    sides = [driver] + [raw.lifecycle for raw in raws]
    times = [[] for _ in sides]
    cpu = [[0.0] * (1 + len(pids)) for _ in sides]
    last = None
    for cycle in range(cycles):
        # Each side follows every other as often.
        order = list(range(len(sides)))
        shift = cycle % len(sides)
        for number in order[shift:] + order[:shift]:
            time.sleep(SETTLE)
            now = _cpu(pids)
            if last is not None:
                cpu[last[0]] = [a + b - c for a, b, c in
                                zip(cpu[last[0]], now, last[1])]
            last = (number, now)
            start = time.perf_counter()
            sides[number]('bench-%d-%d-%d' % (existing, cycle, number))
            times[number].append(time.perf_counter() - start)
    if last is not None:
        time.sleep(SETTLE)
        cpu[last[0]] = [a + b - c for a, b, c in
                        zip(cpu[last[0]], _cpu(pids), last[1])]
    return ([statistics.median(samples) for samples in times],
            [[used / max(cycles, 1) for used in side] for side in cpu])


class _SimulatorProcess:
    """The XAPI simulator served by a process of its own.

    Has the ``url`` the driver's options and :class:`Raw` take.
    """

    def __init__(self):
        # The simulator's main() logs its URL once it listens.
        code = ('import sys; from compute_driver.testing.xapi_simulator '
                'import main; sys.exit(main())')
        self.process = subprocess.Popen(
            [sys.executable, '-c', code, '--port', '0',
             '--username', sim_fixture.USERNAME,
             '--password', sim_fixture.PASSWORD],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.url = None
        for line in self.process.stderr:
            if 'XAPI simulator at ' in line:
                self.url = line.split('XAPI simulator at ', 1)[1].strip()
                break
        if self.url is None:
            self.stop()
            raise RuntimeError('the XAPI simulator process exited with %s'
                               % self.process.returncode)
        # Read on, so that its log never fills the pipe and stalls it.
        threading.Thread(target=self.process.stderr.read,
                         daemon=True).start()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


class _Target:
    """A driver against one simulator, raw SDK sessions against another.

    :param raw_sim: the raw SDK's simulator; ``sim`` by default.
    """

    def __init__(self, sim, closing, raw_sim=None):
        # An image store of its own, empty: spawns boot a XAPI template,
        # which the driver looks for in the image service first; what
        # the machine's store holds must not change the timing.
        images = tempfile.mkdtemp(prefix='bench-xenapi-images-')
        closing.append(lambda: shutil.rmtree(images, ignore_errors=True))
        self.conf = fixtures.make_conf('xenapi', {
            'xenapi': sim_fixture.xenapi_options(sim, network_name=NETWORK),
            'image_service': {
                'local_path': os.path.join(images, 'images'),
                'cache_path': os.path.join(images, 'cache')}})
        self.backend = loader.load_driver(self.conf)
        self.backend.init_host(self.conf.host)
        closing.append(lambda: self.backend.cleanup_host(self.conf.host))
        flavor = flavors.get_flavor(self.conf, FLAVOR)
        raw_sim = raw_sim or sim
        self.apart = raw_sim is not sim
        self.raws = [Raw(raw_sim, flavor), Raw(raw_sim, flavor, guarded=True)]
        # Timed only: each guarantee alone.
        self.alone = [Raw(raw_sim, flavor, only=(guarantee,))
                      for guarantee in GUARANTEES]
        # Timed only, for comparison with earlier runs: the raw SDK
        # against the driver's simulator, as it was timed before.
        self.shared = [Raw(sim, flavor)] if self.apart else []
        for raw in self.raws + self.alone + self.shared:
            closing.append(raw.close)
        self.have = 0

    def populate(self, want):
        if self.apart:
            for number in range(self.have, want):
                self.raws[0].existing('bench-raw-existing-%d' % number)
        self.have = _populate(self.backend, self.conf, self.have, want)


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
    parser.add_argument('--server', choices=('process', 'thread'),
                        default='process',
                        help='Where the simulator the lifecycles are timed '
                             'against runs: a process of its own, as XAPI '
                             '(default), or a thread of this one.')
    args = parser.parse_args(argv)
    sim = server.Simulator('127.0.0.1', 0, users={
        sim_fixture.USERNAME: sim_fixture.PASSWORD}).start()
    closing = [sim.stop]
    failed = False
    pids, sim_names = [], []
    try:
        counted = _Target(sim, closing)
        timed = counted
        if args.timed:
            # The raw SDK's simulator apart from the driver's (see the
            # module's documentation).
            if args.server == 'process':
                targets = [_SimulatorProcess(), _SimulatorProcess()]
                closing.extend(target.stop for target in targets)
                pids = [target.process.pid for target in targets]
                sim_names = ["driver's simulator", "raw SDK's simulator"]
            else:
                targets = [server.Simulator('127.0.0.1', 0, users={
                    sim_fixture.USERNAME: sim_fixture.PASSWORD}).start()
                    for _ in range(2)]
                closing.extend(target.stop for target in targets)
            timed = _Target(targets[0], closing, raw_sim=targets[1])
        print('load average: %.2f %.2f %.2f (%d CPUs)'
              % (*os.getloadavg(), os.cpu_count() or 0))
        print('(a) XAPI calls per spawn (goal <= 12, constant in N), '
              'simulator in this process')
        counts = []
        for existing in sorted(set(args.counts) | set(args.timed)):
            if existing in args.counts:
                counted.populate(existing)
                total, apart, made, rest, raw_totals = _count(
                    sim, counted.backend, counted.conf, counted.raws,
                    existing)
                counts.append(made)
                print('  N=%-3d %2d calls (apart: %s)  %s' % (
                    existing, total, ', '.join(
                        '%s=%d' % kv for kv in apart.items()),
                    ', '.join('%s=%d' % kv for kv in sorted(made.items()))))
                print('        spawn+power_off+destroy: %d calls; raw SDK '
                      '%d, with the same guarantees %d'
                      % (total + rest, *raw_totals))
            if existing in args.timed:
                timed.populate(existing)
                sides = timed.raws + timed.alone + timed.shared
                # A warm-up cycle each, outside the timing.
                _time(timed.backend, timed.conf, sides, existing, 1)
                medians, cpu = _time(timed.backend, timed.conf, sides,
                                     existing, args.cycles, pids)
                ours, theirs, guarded, *each = medians
                shared = each[len(GUARANTEES):]
                ratio = ours / theirs
                failed |= ratio > 1.3
                print('(b) N=%-3d spawn+power_off+destroy: driver %.1f ms, '
                      'raw SDK %.1f ms, %.2fx (goal <= 1.3x); raw SDK with '
                      'the same guarantees %.1f ms, %.2fx; simulators in %s'
                      % (existing, ours * 1000, theirs * 1000, ratio,
                         guarded * 1000, ours / guarded,
                         'processes of their own'
                         if args.server == 'process' else 'this process'))
                print('        each guarantee alone over the raw SDK: %s'
                      % ', '.join('%s %+.1f ms' % (g, (t - theirs) * 1000)
                                  for g, t in zip(GUARANTEES, each)))
                print('        CPU per lifecycle (ms), client process / '
                      '%s: driver %s, raw SDK %s, raw SDK with the same '
                      'guarantees %s' % (
                          ' / '.join(sim_names) or 'simulators in it',
                          *('/'.join('%.1f' % (used * 1000)
                                     for used in side)
                            for side in cpu[:3])))
                for same in shared:
                    print('        raw SDK against the driver\'s simulator, '
                          'its event thread reading the raw SDK\'s changes '
                          '(as timed before): %.1f ms, driver %.2fx'
                          % (same * 1000, ours / same))
        failed |= (max((sum(c.values()) for c in counts), default=0) > 12
                   or any(c != counts[0] for c in counts))
        print('load average: %.2f %.2f %.2f' % os.getloadavg())
    finally:
        for close in reversed(closing):
            close()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
