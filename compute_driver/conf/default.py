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
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)


def list_opts() -> dict[str, list[cfg.Opt]]:
    return {GROUP: opts}
