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

"""Measure the libvirt backend against raw libvirt, side by side.

Defines powered-off instances through the driver on ``qemu:///system`` in
steps (``--counts``, default 10, 100 and 500), each with ``--ports`` ports
(``tap``, with an address: nothing is made on the host for a domain that
never runs), and at each step times, in new processes interleaved so that
machine load hits all alike:

- ``compute-driver show NAME`` against a process importing libvirt, cliff,
  oslo.config and stevedore and making the raw ``lookupByUUIDString`` and
  ``state()``;
- ``compute-driver list`` (which prints every instance's NICs) against
  the same process making one ``getAllDomainStats``.

and prints each ratio against the issue's targets: ``show`` at most
1.5x, ``list`` at most 2x, and both flat, the ratio at the largest step
within 10 % of the ratio at the smallest.

At the largest step it times listings in this process:

- ``listAllDomains``: raw libvirt, one round trip, names and uuids only;
- ``getAllDomainStats(STATE)``: raw libvirt, one round trip with states;
- the driver's ``list_instances``, ``list_instance_uuids`` and
  ``list_instance_records`` (records cached, as in a running service);
- ``list_instance_records`` of a new driver (first listing of a process);
- Apache Libcloud's ``LibvirtNodeDriver.list_nodes``, the peer.

Then it boots and deletes one guest ROUNDS times through the driver and
through the same raw libvirt calls the driver makes (qemu-img overlay,
defineXML, create, destroy, undefine, remove the files), and boots
``--parallel`` guests one after the other and then all at once, comparing
the throughputs. The listed domains never run; every guest it defines has
a name starting with ``cdrv-cdbench-<random>`` and is removed at the end,
even after a failure, Ctrl-C or SIGTERM. Needs root, libvirtd and the test
image (``tools/test-setup.d/30-libvirt.sh``); Libcloud is optional
(``pip install apache-libcloud``).
"""

import argparse
from concurrent import futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

import libvirt

from compute_driver import flavors
from compute_driver.libvirt import connection
from compute_driver.libvirt import domainxml
from compute_driver.libvirt import mapping
from compute_driver import loader
from compute_driver.network import model
from compute_driver import objects
from compute_driver.testing import fixtures

URI = 'qemu:///system'
IMAGE = 'cdtest-busybox'


#: Every defined instance claims a vCPU, booted or not: the listed ones
#: never run, so the claim's CPU allocation ratio is its maximum, which
#: lets 500 of them onto a host of a few cores.
CPU_ALLOCATION_RATIO = 1000.0

#: The targets: new-process ratios to raw, and how far the ratio at the
#: largest step may be from the one at the smallest.
SHOW_TARGET = 1.5
LIST_TARGET = 2.0
FLAT_TARGET = 0.10
#: Throughput of --parallel spawns at once over as many in sequence.
PARALLEL_TARGET = 2.0


def _conf(args):
    return fixtures.make_conf('libvirt', {
        'DEFAULT': {'cpu_allocation_ratio': CPU_ALLOCATION_RATIO},
        'libvirt': {
            'virt_type': 'qemu', 'connection_uri': URI,
            'images_path': args.images_path,
            'instances_path': args.instances_path,
            'lifecycle_event_delay': 0}})


def _timed(func, repeat):
    samples = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        samples.append(time.perf_counter() - start)
    return samples, result


def _row(label, samples, base, count):
    median = statistics.median(samples)
    return '| %-44s | %9.2f | %9.2f | %7.2fx | %5s |' % (
        label, median * 1000, min(samples) * 1000, median / base,
        count if count is not None else '-')


def _raw_boot(conn, store, image, name):
    """What the driver does for a boot, in raw calls; returns the domain."""
    instance = objects.Instance.new(name,
                                    flavors.get_flavor(_CONF, 'm1.micro'),
                                    IMAGE)
    directory = os.path.join(store.base_path, '..', instance.uuid)
    os.makedirs(directory, mode=0o755)
    try:
        disk = os.path.join(directory, 'disk')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F',
                        image.disk_format, '-b', store.cached_base(image),
                        disk], check=True)
        spec = domainxml.GuestSpec(
            instance=instance, virt_type='qemu', disk_path=disk,
            disk_format='qcow2',
            console_path=os.path.join(directory, 'console.log'),
            boot=domainxml.BootImage(kernel=image.kernel,
                                     ramdisk=image.ramdisk,
                                     cmdline=image.cmdline))
        dom = conn.defineXML(domainxml.domain_xml(spec))
    except BaseException:
        shutil.rmtree(directory)
        raise
    try:
        dom.create()
    except BaseException:
        _raw_delete(dom, directory)
        raise
    return dom, directory


def _raw_delete(dom, directory):
    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    shutil.rmtree(directory)


def _raw_boot_delete(conn, store, image, prefix, number):
    """What the driver does for a boot and a delete, in raw calls."""
    _raw_delete(*_raw_boot(conn, store, image, '%s-raw%d' % (prefix,
                                                             number)))


_CONF = None

# What a minimal cliff CLI on raw libvirt imports, then its one call.
_RAW_PROCESS = (
    'import cliff.app, cliff.commandmanager, oslo_config.cfg, stevedore, '
    'libvirt, sys\n'
    'conn = libvirt.open(sys.argv[1])\n'
    '%s\n'
    'conn.close()\n')
_RAW_SHOW = _RAW_PROCESS % 'conn.lookupByUUIDString(sys.argv[2]).state()'
_RAW_LIST = _RAW_PROCESS % (
    'conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)')


# Installed packages come with their bytecode; a source checkout gets
# it on first import unless told not to write it, which would make the
# driver's side compile itself on every run.
_ENV = {k: v for k, v in os.environ.items()
        if k != 'PYTHONDONTWRITEBYTECODE'}


def _run(argv):
    """Wall time and CPU time (user + system) of a new process."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=_ENV)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, argv)
    return wall, usage.ru_utime + usage.ru_stime


def _cli_table(args, conf_file, target, count):
    """Time new processes: the CLI's show and list against raw ones."""
    # The one installed with this interpreter, as the raw processes use.
    script = os.path.join(os.path.dirname(sys.executable), 'compute-driver')
    if not os.path.exists(script):
        script = shutil.which('compute-driver') or script
    cli = [script, '--config-file', conf_file]
    kinds = [
        ('raw lookupByUUIDString+state', [sys.executable, '-c', _RAW_SHOW,
                                          URI, target.uuid]),
        ('compute-driver show NAME', cli + ['show', target.name, '-f',
                                            'json']),
        ('raw getAllDomainStats', [sys.executable, '-c', _RAW_LIST, URI]),
        ('compute-driver list', cli + ['list', '-f', 'json']),
    ]
    samples = {label: [] for label, _ in kinds}
    cpu = {label: [] for label, _ in kinds}
    for label, argv in kinds:
        _run(argv)  # warm-up: bytecode and page cache
    for _ in range(args.processes):
        for label, argv in kinds:
            wall, used = _run(argv)
            samples[label].append(wall)
            cpu[label].append(used)
    medians = {label: statistics.median(v) for label, v in samples.items()}
    cpu_medians = {label: statistics.median(v) for label, v in cpu.items()}
    show = medians['compute-driver show NAME'] / medians[kinds[0][0]]
    listing = medians['compute-driver list'] / medians[kinds[2][0]]
    print('N=%-4d new process, p50 of %d, ms: raw show %.0f, driver show '
          '%.0f (%.2fx); raw list %.0f, driver list %.0f (%.2fx); load '
          '%.2f' % (count, args.processes, medians[kinds[0][0]] * 1000,
                    medians['compute-driver show NAME'] * 1000, show,
                    medians[kinds[2][0]] * 1000,
                    medians['compute-driver list'] * 1000, listing,
                    os.getloadavg()[0]), flush=True)
    # The processes' own CPU time: steadier than wall time on a busy
    # host, though blind to the time libvirtd spends answering.
    print('       CPU time, ms: raw show %.0f, driver show %.0f (%.2fx); raw '
          'list %.0f, driver list %.0f (%.2fx)' % (
              cpu_medians[kinds[0][0]] * 1000,
              cpu_medians['compute-driver show NAME'] * 1000,
              cpu_medians['compute-driver show NAME'] /
              cpu_medians[kinds[0][0]],
              cpu_medians[kinds[2][0]] * 1000,
              cpu_medians['compute-driver list'] * 1000,
              cpu_medians['compute-driver list'] / cpu_medians[kinds[2][0]]),
          flush=True)
    return show, listing


def _ports(number, count):
    """``count`` tap ports for the ``number``-th listed instance."""
    high, low = number >> 8 & 0xff, number & 0xff
    return [model.Port(id=str(uuidlib.uuid4()),
                       mac='fa:16:3e:%02x:%02x:%02x' % (high, low, index),
                       vif_type=model.VIF_TYPE_TAP,
                       fixed_ips=(model.FixedIP(
                           address='10.%d.%d.%d' % (index, high, low or 1),
                           cidr='10.%d.0.0/16' % index),))
            for index in range(count)]


def _verdict(counts, ratios):
    """Print each ratio and the flatness against the targets."""
    def check(ok):
        return 'met' if ok else 'MISSED'

    show = [r[0] for r in ratios]
    listing = [r[1] for r in ratios]
    print('targets: show <= %.1fx: %s (max %.2fx); list <= %.1fx: %s '
          '(max %.2fx)' % (SHOW_TARGET, check(max(show) <= SHOW_TARGET),
                           max(show), LIST_TARGET,
                           check(max(listing) <= LIST_TARGET),
                           max(listing)))
    if len(ratios) > 1:
        show_flat = show[-1] / show[0]
        list_flat = listing[-1] / listing[0]
        print('ratio at N=%d / ratio at N=%d: show %.2f (%s), list %.2f '
              '(%s); flat means within %d %%; load %.2f %.2f %.2f' % (
                  counts[-1], counts[0], show_flat,
                  check(abs(show_flat - 1) <= FLAT_TARGET), list_flat,
                  check(abs(list_flat - 1) <= FLAT_TARGET),
                  FLAT_TARGET * 100, *os.getloadavg()), flush=True)


def _spawn_throughput(backend, conn, flavor, prefix, made, parallel,
                      rounds):
    """Spawns per second, ``parallel`` at once and one after the other.

    The same for the raw calls (:func:`_raw_boot`), which tells what the
    host allows: QEMU starting under TCG wants CPU, and libvirtd has
    locks of its own.
    """
    image = backend.store.get(IMAGE)

    def driver_batch(names):
        instances = [objects.Instance.new(name, flavor, IMAGE)
                     for name in names]
        made.extend(instances)

        def spawn(instance):
            backend.spawn(instance)
        return spawn, instances, lambda instance: backend.destroy(instance)

    def raw_batch(names):
        booted = []

        def spawn(name):
            booted.append(_raw_boot(conn, backend.store, image, name))

        def delete(name):
            for dom, directory in booted:
                if dom.name() == mapping.domain_name(name):
                    _raw_delete(dom, directory)
        return spawn, names, delete

    def batch(make, tag, kind, number):
        names = ['%s-%s%s%d-%d' % (prefix, tag, kind, number, i)
                 for i in range(parallel)]
        spawn, items, delete = make(names)
        start = time.perf_counter()
        try:
            if kind == 'par':
                # Leaving the block waits for every spawn, even on
                # Ctrl-C, so that the cleanup finds all the domains.
                with futures.ThreadPoolExecutor(parallel) as pool:
                    list(pool.map(spawn, items))
            else:
                for item in items:
                    spawn(item)
            elapsed = time.perf_counter() - start
        finally:
            for item in items:
                delete(item)
        return parallel / elapsed

    results = {}
    for number in range(rounds):
        for make, tag in ((driver_batch, 'd'), (raw_batch, 'r')):
            for kind in ('seq', 'par'):
                results.setdefault((tag, kind), []).append(
                    batch(make, tag, kind, number))
    print('\n%d spawns (QEMU TCG, %s, started), median of %d rounds, '
          'spawns/s:' % (parallel, IMAGE, rounds))
    speedup = {}
    for tag, label in (('d', 'driver'), ('r', 'raw libvirt calls')):
        seq = statistics.median(results[(tag, 'seq')])
        par = statistics.median(results[(tag, 'par')])
        speedup[tag] = par / seq
        print('  %-18s sequential %.2f, parallel %.2f: %.2fx' % (
            label, seq, par, par / seq))
    print('target: driver parallel >= %.1fx sequential: %s (%.2fx; raw '
          'libvirt %.2fx in the same run)' % (
              PARALLEL_TARGET,
              'met' if speedup['d'] >= PARALLEL_TARGET else 'MISSED',
              speedup['d'], speedup['r']))
    print('  load %.2f %.2f %.2f' % os.getloadavg(), flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    global _CONF
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--counts', default='10,100,500',
                        help='Comma-separated numbers of defined domains '
                             'to measure at, ascending (default: '
                             '10,100,500).')
    parser.add_argument('--processes', type=int, default=5,
                        help='New processes of each kind per count '
                             '(default: 5).')
    parser.add_argument('--repeat', type=int, default=20,
                        help='Timed listings of each kind (default: 20).')
    parser.add_argument('--rounds', type=int, default=5,
                        help='Boot/delete rounds of each kind (default: 5).')
    parser.add_argument('--parallel', type=int, default=4,
                        help='Spawns at once, against as many in sequence '
                             '(default: 4; 0 skips).')
    parser.add_argument('--parallel-rounds', type=int, default=2,
                        help='Rounds of parallel and sequential spawns '
                             '(default: 2).')
    parser.add_argument('--ports', type=int, default=1,
                        help='Ports of each listed instance, which list '
                             'and show print (default: 1).')
    parser.add_argument('--images-path',
                        default='/var/lib/compute-driver/libvirt/images')
    parser.add_argument('--instances-path',
                        default='/var/lib/compute-driver/libvirt/instances')
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(',')]
    signal.signal(signal.SIGTERM, _interrupt)
    _CONF = conf = _conf(args)
    backend = loader.load_driver(conf, 'libvirt')
    backend.init_host(conf.host)
    prefix = 'cdbench-%s' % uuidlib.uuid4().hex[:6]
    flavor = flavors.get_flavor(conf, 'm1.micro')
    # Every defined instance claims its flavor's memory, booted or not:
    # the listed ones get a 16 MiB flavor and an image entry of the same
    # files without the guest's minimum, since they never boot.
    listed_flavor = objects.Flavor('cdbench.listed', vcpus=1, memory_mb=16)
    listed_image = prefix + '-image'
    listed_meta = os.path.join(args.images_path, listed_image + '.json')
    with open(os.path.join(args.images_path, IMAGE + '.json'),
              encoding='utf-8') as handle:
        data = json.load(handle)
    data['min_ram'] = 0
    with open(listed_meta, 'w', encoding='utf-8') as handle:
        json.dump(data, handle)
    workdir = tempfile.mkdtemp(prefix=prefix)
    conf_file = os.path.join(workdir, 'compute-driver.conf')
    with open(conf_file, 'w', encoding='utf-8') as handle:
        handle.write('[DEFAULT]\ncompute_driver = libvirt\n'
                     'cpu_allocation_ratio = %s\n[libvirt]\n'
                     'virt_type = qemu\nconnection_uri = %s\n'
                     'images_path = %s\ninstances_path = %s\n' % (
                         CPU_ALLOCATION_RATIO, URI, args.images_path,
                         args.instances_path))
    made = []
    conn = libvirt.open(URI)
    try:
        print('libvirt %s, %d domains on the host before, %d cores, '
              'load %.2f\n' % (
                  '.'.join(map(str, connection.version_tuple(
                      conn.getLibVersion()))),
                  len(conn.listAllDomains()), os.cpu_count(),
                  os.getloadavg()[0]), flush=True)
        ratios = []
        listed = []
        for count in counts:
            start = time.perf_counter()
            while len(listed) < count:
                instance = objects.Instance.new(
                    '%s-%d' % (prefix, len(listed)), listed_flavor,
                    listed_image)
                made.append(instance)
                backend.spawn(instance, power_on=False,
                              network_info=_ports(len(listed), args.ports))
                listed.append(instance)
            print('(defined up to %d in %.1f s)' % (
                count, time.perf_counter() - start), flush=True)
            # The middle one: nothing favours the first or the last.
            ratios.append(_cli_table(args, conf_file,
                                     listed[count // 2], count))
        _verdict(counts, ratios)
        print('\n%d domains defined by the driver, median of %d '
              'listings\n' % (len(listed), args.repeat))

        peer = None
        try:
            from libcloud.compute.drivers import libvirt_driver
            peer = libvirt_driver.LibvirtNodeDriver(uri=URI)
        except ImportError:
            print('(Apache Libcloud is not installed: no peer row)')

        def cold():
            fresh = loader.load_driver(conf, 'libvirt')
            fresh.init_host(conf.host)
            try:
                return fresh.list_instance_records()
            finally:
                fresh.cleanup_host(conf.host)

        kinds = [
            ('raw listAllDomains (names, uuids)',
             lambda: [(d.name(), d.UUIDString())
                      for d in conn.listAllDomains(0)]),
            ('raw getAllDomainStats(STATE)',
             lambda: conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)),
            ('driver list_instances', backend.list_instances),
            ('driver list_instance_uuids', backend.list_instance_uuids),
            ('driver list_instance_records', backend.list_instance_records),
            ('driver list_instance_records, new driver', cold),
        ]
        if peer is not None:
            kinds.append(('libcloud LibvirtNodeDriver.list_nodes',
                          peer.list_nodes))
        samples = {label: [] for label, _ in kinds}
        counts_seen = {}
        for _ in range(args.repeat):
            for label, func in kinds:
                times, result = _timed(func, 1)
                samples[label] += times
                counts_seen[label] = len(result)
        base = statistics.median(samples[kinds[0][0]])
        print('| %-44s | %9s | %9s | %8s | %5s |' % (
            'listing', 'p50 (ms)', 'min (ms)', 'vs raw', 'items'))
        print('|' + '-' * 46 + '|' + '-' * 11 + '|' + '-' * 11 + '|' +
              '-' * 10 + '|' + '-' * 7 + '|')
        for label, _ in kinds:
            print(_row(label, samples[label], base, counts_seen[label]))

        image = backend.store.get(IMAGE)
        boot = {'driver spawn + destroy': [], 'raw libvirt calls': []}
        for number in range(args.rounds):
            instance = objects.Instance.new('%s-boot%d' % (prefix, number),
                                            flavor, IMAGE)
            made.append(instance)
            start = time.perf_counter()
            backend.spawn(instance)
            backend.destroy(instance)
            boot['driver spawn + destroy'].append(
                time.perf_counter() - start)
            start = time.perf_counter()
            _raw_boot_delete(conn, backend.store, image, prefix, number)
            boot['raw libvirt calls'].append(time.perf_counter() - start)
        if args.rounds:
            base = statistics.median(boot['raw libvirt calls'])
            print('\n| %-44s | %9s | %9s | %8s | %5s |' % (
                'boot -> delete (%d rounds)' % args.rounds, 'p50 (ms)',
                'min (ms)', 'vs raw', ''))
            print('|' + '-' * 46 + '|' + '-' * 11 + '|' + '-' * 11 + '|' +
                  '-' * 10 + '|' + '-' * 7 + '|')
            for label in ('raw libvirt calls', 'driver spawn + destroy'):
                print(_row(label, boot[label], base, None))
            print('\ndriver overhead per boot+delete: %.1f ms' % (
                (statistics.median(boot['driver spawn + destroy']) - base) *
                1000))
        if args.parallel:
            _spawn_throughput(backend, conn, flavor, prefix, made,
                              args.parallel, args.parallel_rounds)
    finally:
        # Not interrupted again while it cleans up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for instance in made:
            backend.destroy(instance)
        for dom in conn.listAllDomains():
            # Raw rounds interrupted half-way.
            if dom.name().startswith(mapping.domain_name(prefix)):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        conn.close()
        backend.cleanup_host(conf.host)
        os.unlink(listed_meta)
        shutil.rmtree(workdir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
