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

"""Options of the ``[DEFAULT]`` group: which backend, this host, flavors."""

import socket

from oslo_config import cfg

GROUP = 'DEFAULT'

opts = [
    cfg.StrOpt(
        'compute_driver',
        default='fake',
        regex=r'^[A-Za-z0-9_.-]+$',
        help='Name of the backend to load from the compute_driver.drivers '
             'entry point namespace. This project ships fake, libvirt, '
             'xenapi and docker; "compute-driver drivers" lists what is '
             'installed.'),
    cfg.StrOpt(
        'host',
        default=socket.gethostname(),
        sample_default='<hostname>',
        help='Name of this compute host, passed to init_host and used as '
             'the node name by backends that have no better one.'),
    cfg.MultiStrOpt(
        'flavor',
        default=[],
        help='Defines one flavor in addition to the built-in m1.nano, '
             'm1.micro and m1.tiny to m1.xlarge; repeat the option for '
             'more. Format: NAME:VCPUS:MEMORY_MB[:ROOT_GB[:EPHEMERAL_GB'
             '[:SWAP_MB]]][,KEY=VALUE...] where KEY=VALUE pairs are extra '
             'specs, e.g. "c1.dedicated:2:2048:20,hw:cpu_policy=dedicated". '
             'A definition with a built-in name replaces the built-in.'),
    # One claim policy for every backend, with Nova's option names and
    # meanings, so that a host admits what Nova's placement grants.
    cfg.FloatOpt(
        'cpu_allocation_ratio',
        min=0.0001, max=1000.0,
        sample_default='<backend default>',
        deprecated_opts=[cfg.DeprecatedOpt('cpu_allocation_ratio',
                                           group=group)
                         for group in ('fake', 'docker')],
        help='Virtual CPUs per physical CPU a spawn may claim, as Nova\'s '
             'cpu_allocation_ratio. Unset, the backend\'s default applies: '
             '4.0 (Nova\'s initial_cpu_allocation_ratio), 16.0 for docker '
             'whose containers share CPUs. Under nova-compute the adapter '
             'sets it from nova.conf.'),
    cfg.FloatOpt(
        'ram_allocation_ratio',
        min=0.0001, max=1000.0,
        sample_default='<backend default>',
        deprecated_opts=[cfg.DeprecatedOpt('ram_allocation_ratio',
                                           group=group)
                         for group in ('fake', 'docker')],
        help='Virtual memory per MiB of physical memory a spawn may claim, '
             'as Nova\'s ram_allocation_ratio. Unset, the backend\'s '
             'default applies: 1.0. Under nova-compute the adapter sets it '
             'from nova.conf.'),
    cfg.FloatOpt(
        'disk_allocation_ratio',
        min=0.0001, max=1000.0,
        sample_default='<backend default>',
        deprecated_opts=[cfg.DeprecatedOpt('disk_allocation_ratio',
                                           group=group)
                         for group in ('fake', 'docker')],
        help='Virtual disk per GiB of local disk a spawn may claim, as '
             'Nova\'s disk_allocation_ratio. Unset, the backend\'s '
             'default applies: 1.0. Under nova-compute the adapter sets it '
             'from nova.conf.'),
    cfg.IntOpt(
        'reserved_host_cpus',
        default=0, min=0, max=4096,
        help='Host CPUs kept for the host itself and never claimed by a '
             'spawn, as Nova\'s reserved_host_cpus.'),
    cfg.IntOpt(
        'reserved_host_memory_mb',
        default=0, min=0, max=16 * 1024 * 1024,
        help='Host memory in MiB kept for the host itself and never '
             'claimed by a spawn, as Nova\'s reserved_host_memory_mb.'),
    cfg.IntOpt(
        'reserved_host_disk_mb',
        default=0, min=0, max=1024 * 1024 * 1024,
        help='Local disk in MiB kept for the host itself and never claimed '
             'by a spawn, as Nova\'s reserved_host_disk_mb.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)


def list_opts() -> dict[str, list[cfg.Opt]]:
    return {GROUP: opts}
