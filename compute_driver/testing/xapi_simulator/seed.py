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

"""The pool a fresh simulator starts with.

One host with its metrics and CPUs, a control domain, a local ext SR (the
pool's default SR), one network and a few templates whose
``other_config:disks`` tell ``VM.provision`` which disks to create, as
XenServer's own templates do. :func:`load_seed` reads the same shape from
a JSON file so tests and the console script can change any of it.
"""

import json
import typing

from compute_driver.testing.xapi_simulator import store as db

GiB = 1024 ** 3
MiB = 1024 ** 2

#: The defaults; a seed file overrides any top-level key.
DEFAULT_SEED: dict[str, typing.Any] = {
    'hostname': 'xapi-sim',
    'address': '127.0.0.1',
    'cpus': 16,
    'memory_mb': 65536,
    'sr_gb': 500,
    'network': 'Pool-wide network associated with eth0',
    'product_version': '8.2.1',
    'platform_version': '3.2.1',
    'templates': [
        {'name': 'Debian Bookworm 12', 'memory_mb': 512, 'vcpus': 1,
         'disk_gb': 10},
        # An HVM install: its guests run no agent or PV drivers.
        {'name': 'Other install media', 'memory_mb': 256, 'vcpus': 1,
         'disk_gb': 2, 'guest_tools': False},
    ],
}


def load_seed(path: str | None) -> dict[str, typing.Any]:
    """The default seed updated with a JSON file's top-level keys.

    :raises ValueError: when the file is not a JSON object.
    """
    seed = dict(DEFAULT_SEED)
    if path:
        with open(path, encoding='utf-8') as stream:
            data = json.load(stream)
        if not isinstance(data, dict):
            raise ValueError('%s: a seed file holds one JSON object' % path)
        seed.update(data)
    return seed


def disks_xml(disks: list[tuple[int, int, bool]], sr: str = '') -> str:
    """``other_config:disks`` for ``(device, size in bytes, bootable)``.

    :param sr: the SR uuid of every disk; stock templates leave it empty.
    """
    return '<provision>%s</provision>' % ''.join(
        '<disk device="%d" size="%d" sr="%s" bootable="%s" type="system"/>'
        % (device, size, sr, 'true' if bootable else 'false')
        for device, size, bootable in disks)


def populate(store: db.Store, seed: dict[str, typing.Any]) -> None:
    """Create the seed's objects in an empty store."""
    hostname = seed['hostname']
    metrics = store.create('host_metrics', {
        'memory_total': str(int(seed['memory_mb']) * MiB),
        'memory_free': str(int(seed['memory_mb']) * MiB),
        'last_updated': db.now()})
    host = store.create('host', {
        'name_label': hostname, 'hostname': hostname,
        'address': seed['address'], 'metrics': metrics,
        'software_version': {
            'product_brand': 'XCP-ng', 'product_version':
            seed['product_version'], 'platform_name': 'XCP',
            'platform_version': seed['platform_version'],
            'xapi': '1.20', 'xen': '4.13.5', 'hostname': hostname},
        'cpu_info': {'cpu_count': str(seed['cpus']), 'socket_count': '1',
                     'vendor': 'GenuineIntel', 'speed': '2400.000',
                     'modelname': 'Simulated CPU', 'family': '6',
                     'model': '85', 'stepping': '7'},
        'other_config': {'boot_time': '%d' % 1700000000}})
    for number in range(int(seed['cpus'])):
        store.create('host_cpu', {
            'host': host, 'number': str(number), 'vendor': 'GenuineIntel',
            'speed': '2400', 'modelname': 'Simulated CPU'})
    sr = store.create('SR', {
        'name_label': 'Local storage', 'type': 'ext',
        'physical_size': str(int(seed['sr_gb']) * GiB)})
    store.create('PBD', {'host': host, 'SR': sr, 'currently_attached': True,
                         'device_config': {'device': '/dev/sda3'}})
    store.create('pool', {'name_label': '', 'master': host,
                          'default_SR': sr, 'restrictions': {
                              'restrict_dmc': 'false'}})
    network = store.create('network', {'name_label': seed['network'],
                                       'bridge': 'xenbr0'})
    store.create('PIF', {'device': 'eth0', 'network': network,
                         'host': host, 'MAC': '02:00:00:00:00:01',
                         'management': True, 'IP': seed['address'],
                         'ip_configuration_mode': 'Static',
                         'netmask': '255.0.0.0'})
    dom0_metrics = store.create('VM_metrics', {
        'memory_actual': str(1024 * MiB), 'VCPUs_number': '4'})
    dom0 = store.create('VM', {
        'name_label': 'Control domain on host: %s' % hostname,
        'is_control_domain': True, 'power_state': 'Running', 'domid': '0',
        'resident_on': host, 'metrics': dom0_metrics,
        'memory_static_max': str(1024 * MiB),
        'memory_dynamic_max': str(1024 * MiB), 'VCPUs_max': '4',
        'VCPUs_at_startup': '4', 'domain_type': 'pv'})
    store.create('console', {'protocol': 'rfb', 'VM': dom0,
                             'location': 'https://%s/console?ref=%s'
                                         % (seed['address'], dom0)})
    for template in seed['templates']:
        memory = str(int(template.get('memory_mb', 512)) * MiB)
        vcpus = str(int(template.get('vcpus', 1)))
        disks = [(0, int(template.get('disk_gb', 10)) * GiB, True)]
        ref = store.create('VM', {
            'name_label': template['name'],
            'name_description': template.get('description', ''),
            'is_a_template': True, 'is_default_template': True,
            'memory_static_min': str(16 * MiB), 'memory_static_max': memory,
            'memory_dynamic_min': memory, 'memory_dynamic_max': memory,
            'memory_target': memory, 'VCPUs_max': vcpus,
            'VCPUs_at_startup': vcpus,
            'other_config': {'disks': disks_xml(disks),
                             'install-methods': 'cdrom',
                             'default_template': 'true'}})
        if 'guest_tools' in template:
            # Whether VMs installed from it run a guest agent.
            store.guest_tools[ref] = bool(template['guest_tools'])
