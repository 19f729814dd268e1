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

"""Measure how fast ``compute-driver drivers`` starts.

Runs, interleaved in one process so machine load hits all alike:

- ``python -c pass``: the interpreter alone, the floor;
- ``python -c 'import cliff.app, oslo_config.cfg, stevedore'``: the peer,
  i.e. what any cliff/oslo.config CLI pays before doing anything;
- ``compute-driver drivers``: the command under test.

Prints median, p90 and min wall-clock time of each, and the ratios of the
command to the floor and to the peer. With ``--max-median SECONDS`` it exits
1 when the command's median is above that target (the foundation issue's
target is 0.3 s).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

PEER = 'import cliff.app, oslo_config.cfg, stevedore'


def _time(argv, env):
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def _summary(samples):
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * len(ordered))) - 1)]
    return statistics.median(ordered), p90, ordered[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=21,
                        help='runs of each command (default 21)')
    parser.add_argument('--max-median', type=float, default=None,
                        help='fail when the median is above this (seconds)')
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
    commands = {
        'python -c pass': [sys.executable, '-c', 'pass'],
        'peer: import cliff/oslo.config/stevedore': [
            sys.executable, '-c', PEER],
        'compute-driver drivers': [script, 'drivers'],
    }
    # One warm-up each fills the page cache and writes .pyc files.
    for argv_ in commands.values():
        _time(argv_, env)
    samples = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv_ in commands.items():
            samples[name].append(_time(argv_, env))

    print('%-42s %10s %10s %10s' % ('command', 'median s', 'p90 s', 'min s'))
    stats = {}
    for name, values in samples.items():
        stats[name] = _summary(values)
        print('%-42s %10.3f %10.3f %10.3f' % ((name,) + stats[name]))
    ours = stats['compute-driver drivers'][0]
    floor = stats['python -c pass'][0]
    peer = stats['peer: import cliff/oslo.config/stevedore'][0]
    print('ratio drivers/peer: %.2fx   drivers/interpreter: %.2fx'
          % (ours / peer, ours / floor))
    if args.max_median is not None:
        verdict = 'PASS' if ours <= args.max_median else 'FAIL'
        print('target median <= %.3f s: %s (%.3f s over %d runs)'
              % (args.max_median, verdict, ours, args.runs))
        return 0 if verdict == 'PASS' else 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
