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

"""Options of volume connections: ``[volume]``."""

from oslo_config import cfg

GROUP = 'volume'
TITLE = 'Volume options'
HELP = ('How this host connects block storage volumes through os-brick, '
        'and where the docker backend mounts them.')

opts = [
    cfg.StrOpt(
        'lock_path', default='/var/lib/compute-driver/volume-locks',
        help='Directory of the file locks os-brick takes around iSCSI '
             'logins and logouts, shared by every process of the host.'),
    cfg.StrOpt(
        'mount_path', default='/var/lib/compute-driver/volume-mounts',
        help='Directory under which the docker backend mounts each '
             'volume\'s file system on the host before it bind-mounts it '
             'into a container.'),
    cfg.FloatOpt(
        'portal_timeout', default=5.0, min=0.1, max=120.0,
        help='Seconds to wait for an iSCSI portal to accept a TCP '
             'connection before the attach fails as unreachable.'),
    cfg.IntOpt(
        'detach_timeout', default=30, min=1, max=600,
        help='Seconds to wait for a running guest to release a volume\'s '
             'disk after it is asked to unplug it; the detach fails when '
             'it has not by then.'),
    cfg.IntOpt(
        'device_scan_attempts', default=3, min=1, max=30,
        help='Times os-brick rescans for an iSCSI LUN\'s block device '
             'before the attach fails.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[volume]`` on ``conf``."""
    conf.register_group(cfg.OptGroup(GROUP, title=TITLE, help=HELP))
    conf.register_opts(opts, group=GROUP)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {cfg.OptGroup(GROUP, title=TITLE, help=HELP): opts}
