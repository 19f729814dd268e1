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

"""Measure the libvirt backend's listing and boot/delete against raw libvirt.

Defines COUNT (200) powered-off instances through the driver on
``qemu:///system``, then times, interleaved so that machine load hits all
alike:

- ``listAllDomains``: raw libvirt, one round trip, names and uuids only;
- ``getAllDomainStats(STATE)``: raw libvirt, one round trip with states;
- the driver's ``list_instances``, ``list_instance_uuids`` and
  ``list_instance_records`` (records cached, as in a running service);
- ``list_instance_records`` of a new driver (first listing of a process:
  one metadata call per domain of ours);
- Apache Libcloud's ``LibvirtNodeDriver.list_nodes``, the peer.

Then it boots and deletes one guest ROUNDS times through the driver and
through the same raw libvirt calls the driver makes (qemu-img overlay,
defineXML, create, destroy, undefine, remove the files), and prints the
driver's overhead. Everything it defines is removed at the end, even after
a failure or Ctrl-C. Needs root, libvirtd and the test image
(``tools/test-setup.d/30-libvirt.sh``); Libcloud is optional
(``pip install apache-libcloud``).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid as uuidlib

import libvirt

from compute_driver import flavors
from compute_driver.libvirt import config
from compute_driver.libvirt import host as libvirt_host
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures

URI = 'qemu:///system'
IMAGE = 'cdtest-busybox'


def _conf(args):
    return fixtures.make_conf('libvirt', {'libvirt': {
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


def _raw_boot_delete(conn, store, image, prefix, number):
    """What the driver does for a boot and a delete, in raw calls."""
    instance = objects.Instance.new('%s-raw%d' % (prefix, number),
                                    flavors.get_flavor(_CONF, 'm1.micro'),
                                    IMAGE)
    directory = os.path.join(store.base_path, '..', instance.uuid)
    os.makedirs(directory, mode=0o755)
    try:
        disk = os.path.join(directory, 'disk')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F',
                        image.disk_format, '-b', store.cached_base(image),
                        disk], check=True)
        spec = config.GuestSpec(
            instance=instance, virt_type='qemu', disk_path=disk,
            disk_format='qcow2',
            console_path=os.path.join(directory, 'console.log'),
            boot=config.BootImage(kernel=image.kernel,
                                  ramdisk=image.ramdisk,
                                  cmdline=image.cmdline))
        dom = conn.defineXML(config.domain_xml(spec))
        dom.create()
        dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    finally:
        shutil.rmtree(directory)


_CONF = None


def main():
    global _CONF
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=200,
                        help='Defined domains to list (default: 200).')
    parser.add_argument('--repeat', type=int, default=20,
                        help='Timed listings of each kind (default: 20).')
    parser.add_argument('--rounds', type=int, default=5,
                        help='Boot/delete rounds of each kind (default: 5).')
    parser.add_argument('--images-path',
                        default='/var/lib/compute-driver/libvirt/images')
    parser.add_argument('--instances-path',
                        default='/var/lib/compute-driver/libvirt/instances')
    args = parser.parse_args()
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
    made = []
    conn = libvirt.open(URI)
    try:
        start = time.perf_counter()
        for number in range(args.count):
            instance = objects.Instance.new('%s-%d' % (prefix, number),
                                            listed_flavor, listed_image)
            made.append(instance)
            backend.spawn(None, instance, objects.ImageMeta(listed_image),
                          None, None, None, power_on=False)
        define_s = time.perf_counter() - start
        total = len(conn.listAllDomains())
        print('libvirt %s, %d domains defined by the driver in %.1f s '
              '(%d domains on the host), median of %d listings\n' % (
                  '.'.join(map(str, libvirt_host.version_tuple(
                      conn.getLibVersion()))),
                  args.count, define_s, total, args.repeat))

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
            ('driver list_instance_records, new process', cold),
        ]
        if peer is not None:
            kinds.append(('libcloud LibvirtNodeDriver.list_nodes',
                          peer.list_nodes))
        samples = {label: [] for label, _ in kinds}
        counts = {}
        for _ in range(args.repeat):
            for label, func in kinds:
                times, result = _timed(func, 1)
                samples[label] += times
                counts[label] = len(result)
        base = statistics.median(samples[kinds[0][0]])
        print('| %-44s | %9s | %9s | %8s | %5s |' % (
            'listing', 'p50 (ms)', 'min (ms)', 'vs raw', 'items'))
        print('|' + '-' * 46 + '|' + '-' * 11 + '|' + '-' * 11 + '|' +
              '-' * 10 + '|' + '-' * 7 + '|')
        for label, _ in kinds:
            print(_row(label, samples[label], base, counts[label]))

        image = backend.store.get(IMAGE)
        boot = {'driver spawn + destroy': [], 'raw libvirt calls': []}
        for number in range(args.rounds):
            instance = objects.Instance.new('%s-boot%d' % (prefix, number),
                                            flavor, IMAGE)
            made.append(instance)
            start = time.perf_counter()
            backend.spawn(None, instance, objects.ImageMeta(IMAGE), None,
                          None, None)
            backend.destroy(None, instance, None)
            boot['driver spawn + destroy'].append(
                time.perf_counter() - start)
            start = time.perf_counter()
            _raw_boot_delete(conn, backend.store, image, prefix, number)
            boot['raw libvirt calls'].append(time.perf_counter() - start)
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
    finally:
        for instance in made:
            backend.destroy(None, instance, None)
        for dom in conn.listAllDomains():
            # Raw rounds interrupted half-way.
            if dom.name().startswith(config.domain_name(prefix)):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        conn.close()
        backend.cleanup_host(conf.host)
        os.unlink(listed_meta)
    return 0


if __name__ == '__main__':
    sys.exit(main())
