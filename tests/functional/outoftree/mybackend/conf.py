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

"""Options of the ``[mybackend]`` group.

This module imports oslo.config only, never the hypervisor's SDK: the
library reads it to check configuration files and to write the sample
configuration without loading the backend.
"""

from oslo_config import cfg

GROUP = 'mybackend'

opts = [
    cfg.IntOpt(
        'vcpus', default=8, min=1, max=4096,
        help='Virtual CPUs the host offers to instances.'),
    cfg.IntOpt(
        'memory_mb', default=8192, min=1, max=1 << 30,
        help='Memory in MiB the host offers to instances.'),
    cfg.IntOpt(
        'disk_gb', default=100, min=1, max=1 << 30,
        help='Local disk in GiB the host offers to instances.'),
    cfg.ListOpt(
        'images', default=['my-image'],
        help='Names of the images the host boots.'),
]


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """The ``compute_driver.driver_opts`` entry point of the backend."""
    return [(cfg.OptGroup(GROUP, title='My backend options',
                          help='An in-memory backend.'), opts)]
