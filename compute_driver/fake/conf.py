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

"""Options of the ``[fake]`` group: the in-memory backend's host."""

from oslo_config import cfg

GROUP = 'fake'

TITLE = 'Fake backend options'
HELP = ('The in-memory backend. It keeps its instances in the process, so '
        'separate command invocations do not share them; use the '
        'interactive mode of the CLI to keep them across commands.')

opts = [
    cfg.IntOpt(
        'vcpus', default=1000, min=1, max=1000000,
        help='Number of virtual CPUs the fake host offers to instances.'),
    cfg.IntOpt(
        'memory_mb', default=800000, min=1, max=1 << 40,
        help='Memory in MiB the fake host offers to instances.'),
    cfg.IntOpt(
        'disk_gb', default=600000, min=0, max=1 << 30,
        help='Local disk in GiB the fake host offers to instances.'),
    cfg.StrOpt(
        'image_service', default='memory', choices=[
            ('memory', 'an image service held in the process, starting '
                       'with one generated image per name of the images '
                       'option'),
            ('configured', 'the image service of [image_service], as '
                           'every other backend'),
        ],
        help='Where the fake host gets the images it boots and puts its '
             'snapshots. Either way their bytes are downloaded, verified '
             'against their checksum and kept with the instance.'),
    cfg.ListOpt(
        'images', default=['cirros-0.6.3-x86_64-disk'],
        help='Names of the images the in-memory image service starts with '
             '(image_service = memory); each is generated data with real '
             'checksums. Snapshots are added to these at run time.'),
    cfg.StrOpt(
        'host_identity', default='',
        help='What identifies the host this fake backend pretends to be '
             '(see get_host_identity), as a hypervisor reports its own '
             "host's uuid. Empty means none: consumers such as the Nova "
             'adapter then identify the host by its node name alone.'),
    cfg.IPOpt(
        'host_ip', default='127.0.0.1',
        help='Address reported by get_host_ip_addr.'),
    cfg.IntOpt(
        'console_log_lines', default=1000, min=10, max=1000000,
        help='Lines of console output kept per instance; older lines '
             'are dropped as new ones are written.'),
]


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """The ``compute_driver.driver_opts`` entry point: imports no SDK."""
    return [(cfg.OptGroup(GROUP, title=TITLE, help=HELP), opts)]
