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

"""Measure how fast ``compute-driver`` commands start.

Runs, interleaved in one process so machine load hits all alike:

- ``python -c pass``: the interpreter alone, the floor;
- ``python -c 'import cliff.app, oslo_config.cfg, stevedore'``: the peer,
  i.e. what any cliff/oslo.config CLI pays before doing anything;
- ``compute-driver drivers``: tells from package metadata whether each
  backend loads, importing no SDK;
- ``compute-driver drivers --load``: imports every backend and its SDK,
  what ``drivers`` did before, for comparison;
- ``compute-driver flavors``: a command that reads the configuration but
  needs no backend.

Prints median, p90 and min wall-clock time of each, the time of each
command over the floor, its ratio to the floor and to the peer, and the
median CPU time (user + system, less sensitive than wall-clock time to
other load on the machine) with its ratio to the peer's. The
target is measured with every backend SDK installed (libvirt-python,
XenAPI, docker: ``pip install 'compute-driver[libvirt,xenapi,docker]'``);
the SDKs found are listed. With ``--max-over-bare SECONDS`` it exits 1 when
the median of ``drivers`` minus the floor's is above that target (the
issue's target is 0.3 s); ``--max-median SECONDS`` bounds the median of
``drivers`` itself.
"""


import argparse
import importlib.metadata
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

PEER = 'import cliff.app, oslo_config.cfg, stevedore'
FLOOR = 'python -c pass'
PEER_NAME = 'peer: import cliff/oslo.config/stevedore'
DRIVERS = 'compute-driver drivers'
SDKS = ('libvirt-python', 'XenAPI', 'docker')


def _time(argv, env):
    """Wall-clock and CPU (user + system) seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime +
                  after.ru_stime - before.ru_stime)


def _summary(samples):
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * len(ordered))) - 1)]
    return statistics.median(ordered), p90, ordered[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=21,
                        help='runs of each command (default 21)')
    parser.add_argument('--max-median', type=float, default=None,
                        help='fail when the median of drivers is above '
                             'this (seconds)')
    parser.add_argument('--max-over-bare', type=float, default=None,
                        help='fail when the median of drivers exceeds the '
                             "interpreter's by more than this (seconds)")
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error('--runs must be at least 3')

    script = shutil.which('compute-driver')
    if script is None:
        parser.error('compute-driver is not on PATH; install the project '
                     'first (pip install .)')
    env = dict(os.environ)
    # Read no operator config: measure the code, not /etc.
    env['HOME'] = '/nonexistent'
    sdks = []
    for sdk in SDKS:
        try:
            sdks.append('%s %s' % (sdk, importlib.metadata.version(sdk)))
        except importlib.metadata.PackageNotFoundError:
            sdks.append('%s MISSING' % sdk)
    print('SDKs: %s' % ', '.join(sdks))
    commands = {
        FLOOR: [sys.executable, '-c', 'pass'],
        PEER_NAME: [sys.executable, '-c', PEER],
        DRIVERS: [script, 'drivers'],
        'compute-driver drivers --load': [script, 'drivers', '--load'],
        'compute-driver flavors': [script, 'flavors'],
    }
    # One warm-up each fills the page cache and writes .pyc files.
    for argv_ in commands.values():
        _time(argv_, env)
    samples = {name: [] for name in commands}
    cpu = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv_ in commands.items():
            wall, used = _time(argv_, env)
            samples[name].append(wall)
            cpu[name].append(used)

    stats = {name: _summary(values) for name, values in samples.items()}
    cpu_median = {name: statistics.median(v) for name, v in cpu.items()}
    floor = stats[FLOOR][0]
    peer = stats[PEER_NAME][0]
    print('%-42s %9s %9s %9s %9s %8s %8s %9s %8s' % (
        'command', 'median s', 'p90 s', 'min s', 'over bare', '/bare',
        '/peer', 'cpu s', 'cpu/peer'))
    for name, (median, p90, low) in stats.items():
        print('%-42s %9.3f %9.3f %9.3f %9.3f %7.2fx %7.2fx %9.3f %7.2fx' % (
            name, median, p90, low, median - floor, median / floor,
            median / peer, cpu_median[name],
            cpu_median[name] / cpu_median[PEER_NAME]))
    print('load average at the end: %.2f %.2f %.2f on %d CPUs'
          % (os.getloadavg() + (os.cpu_count() or 0,)))
    ours = stats[DRIVERS][0]
    failed = False
    if args.max_over_bare is not None:
        ok = ours - floor <= args.max_over_bare
        failed = failed or not ok
        print('target drivers - interpreter <= %.3f s: %s (%.3f s over %d '
              'runs)' % (args.max_over_bare, 'PASS' if ok else 'FAIL',
                         ours - floor, args.runs))
    if args.max_median is not None:
        ok = ours <= args.max_median
        failed = failed or not ok
        print('target drivers median <= %.3f s: %s (%.3f s over %d runs)'
              % (args.max_median, 'PASS' if ok else 'FAIL', ours, args.runs))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
