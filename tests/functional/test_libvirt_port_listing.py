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

"""Every instance's NICs in one listing, on a real libvirtd.

A QEMU guest with ``tap`` ports (libvirt makes the taps; nothing else is
wired) gets ports hot-plugged and hot-unplugged by this process, by
another ``compute-driver`` process, and by a process killed between
changing the domain and the record index. After each, the listing of a
process that listed before, and of a new one, shows the domain's ports,
which the running guest's devices confirm.
"""

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from compute_driver import flavors
from compute_driver.network import model
from compute_driver import objects
from compute_driver.testing import fixtures

libvirt = pytest.importorskip('libvirt')

from compute_driver.libvirt import network as lv_network  # noqa: E402
from compute_driver.libvirt import recordindex  # noqa: E402
from compute_driver import loader  # noqa: E402
from tests.functional import test_libvirt  # noqa: E402

#: Domains of this module are named cdrv-cdportlist-*.
PREFIX = 'cdportlist'


@pytest.fixture
def conf():
    test_libvirt._require_libvirtd()
    return fixtures.make_conf('libvirt', test_libvirt.OVERRIDES)


@pytest.fixture
def conf_file(tmp_path):
    opts = test_libvirt.OVERRIDES['libvirt']
    path = tmp_path / 'compute-driver.conf'
    path.write_text(
        '[DEFAULT]\ncompute_driver = libvirt\n[libvirt]\n' + ''.join(
            '%s = %s\n' % (key, opts[key]) for key in (
                'virt_type', 'connection_uri', 'images_path',
                'instances_path')))
    return str(path)


def _backend(conf):
    backend = loader.load_driver(conf, 'libvirt')
    backend.init_host(conf.host)
    return backend


def _port(number):
    port_id = str(uuid.uuid4())
    return model.Port(id=port_id, mac='fa:16:3e:40:00:%02x' % number,
                      vif_type=model.VIF_TYPE_TAP,
                      fixed_ips=(model.FixedIP(
                          address='198.51.100.%d' % number,
                          cidr='198.51.100.0/24'),))


def _cli(conf_file, *argv):
    result = subprocess.run(
        [sys.executable, '-m', 'compute_driver.cmd.main', '--config-file',
         conf_file, *argv], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _devices(backend, instance):
    """The tap names libvirt reports for the running domain."""
    dom = backend._find(instance)
    stats = dict(backend._host.call(lambda conn: conn.domainListGetStats(
        [dom], libvirt.VIR_DOMAIN_STATS_INTERFACE)))
    values = next(iter(stats.values()))
    return sorted(values['net.%d.name' % i]
                  for i in range(values['net.count']))


def _listed(backend, instance):
    return [p.id for p in backend.list_instance_interfaces()[instance.uuid]]


def test_the_listing_follows_every_change_of_the_ports(conf, conf_file):
    backend = _backend(conf)
    first, second, third = _port(1), _port(2), _port(3)
    instance = objects.Instance.new(
        '%s-%s' % (PREFIX, uuid.uuid4().hex[:8]),
        flavors.get_flavor(conf, test_libvirt.FLAVOR), test_libvirt.IMAGE)
    try:
        backend.spawn(instance, network_info=[first])
        assert _listed(backend, instance) == [first.id]
        # PCI hot-unplug needs the guest's ACPI, so a booted guest.
        test_libvirt._wait_for_console(backend, instance,
                                       test_libvirt.BOOT_LINE)

        # Another process plugs a port: this one, which listed before,
        # lists it too.
        _cli(conf_file, 'interface', 'attach', instance.name, '--network',
             'type=tap,id=%s,mac=%s,ip=198.51.100.2/24' % (second.id,
                                                           second.mac))
        assert _listed(backend, instance) == [first.id, second.id]
        assert _devices(backend, instance) == sorted(
            [first.devname, second.devname])

        # This process unplugs one: a new process lists what is left.
        backend.detach_interface(instance, first.id)
        rows = json.loads(_cli(conf_file, 'list', '-f', 'json'))
        row = next(r for r in rows if r['UUID'] == instance.uuid)
        assert row['Networks'] == (
            'eth0 %s 198.51.100.2/24 on %s' % (second.mac, second.devname))
        assert _devices(backend, instance) == [second.devname]

        # A process killed once the domain has the port, before the
        # index does.
        script = textwrap.dedent('''
            import os, sys
            from compute_driver import conf, loader, objects
            from compute_driver.libvirt import network
            from compute_driver.network import model
            cfg = conf.build_conf(config_files=[sys.argv[1]])
            backend = loader.load_driver(cfg)
            backend.init_host(cfg.host)
            record = network.record

            def record_and_die(dom, ports):
                record(dom, ports)
                os._exit(9)

            network.record = record_and_die
            instance = backend.find_instance(sys.argv[2]).instance
            backend.attach_interface(
                instance, model.from_record(sys.argv[3])[0])
        ''')
        killed = subprocess.run(
            [sys.executable, '-c', script, conf_file, instance.uuid,
             model.to_record([third])], capture_output=True, text=True,
            timeout=300)
        assert killed.returncode == 9, killed.stderr
        # The index was not told the outcome (marked, or missing if an
        # earlier release rewrote it meanwhile): the listing reads the
        # domain.
        index = recordindex.RecordIndex(test_libvirt.INSTANCES_PATH)
        assert recordindex.port_items(index.load_all()[1],
                                      instance.uuid) is None
        assert _listed(backend, instance) == [second.id, third.id]
        assert _devices(backend, instance) == sorted(
            [second.devname, third.devname])
        fresh = _backend(conf)
        try:
            assert fresh.list_instance_interfaces()[instance.uuid] == (
                lv_network.recorded(backend._find(instance)))
        finally:
            fresh.cleanup_host(conf.host)
    finally:
        backend.destroy(instance)
        backend.cleanup_host(conf.host)
    test_libvirt._assert_nothing_left(instance)
    with open(os.path.join(test_libvirt.INSTANCES_PATH, 'records.json'),
              encoding='utf-8') as handle:
        assert instance.uuid not in json.load(handle).get('ports', {})
