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

"""Options of the ``[xenapi]`` group: the XAPI pool master to drive."""

from oslo_config import cfg

GROUP = 'xenapi'

TITLE = 'XenAPI backend options'
HELP = ('The XenAPI backend drives a XenServer or XCP-ng pool through XAPI '
        'with the XenAPI SDK. Instances are VMs cloned from templates; '
        'the image reference of an instance names its template.')

opts = [
    cfg.URIOpt(
        'connection_url',
        default='http://127.0.0.1/',
        schemes=['http', 'https'],
        help='URL of the XAPI pool master, e.g. https://xenserver1/. A '
             'pool member is accepted too: the backend follows its '
             'HOST_IS_SLAVE answer to the master.'),
    cfg.StrOpt(
        'username',
        default='root',
        help='User name to log in to XAPI with.'),
    cfg.StrOpt(
        'password',
        default='',
        secret=True,
        help='Password of the XAPI user. It is never logged.'),
    cfg.BoolOpt(
        'verify_certificate',
        default=True,
        help='Whether to verify the TLS certificate of an https '
             'connection_url. Turning this off exposes the password to '
             'anyone who can intercept the connection.'),
    cfg.StrOpt(
        'ca_file',
        help='PEM file of the certificate authorities to verify the XAPI '
             'certificate with, instead of the system ones.'),
    cfg.IntOpt(
        'concurrent_sessions',
        default=4, min=1, max=64,
        help='Largest number of XAPI sessions the backend logs in and '
             'uses at the same time; further calls wait for a free one. '
             'Long operations (clone, provision, start, snapshot, revert, '
             'volume copies and resizes) hold sessions of their own, up '
             'to as many again, so that other calls never wait behind '
             'them. The event thread uses one more.'),
    cfg.IntOpt(
        'session_wait_timeout',
        default=60, min=1, max=3600,
        help='Seconds a call waits for a free session before it fails.'),
    cfg.IntOpt(
        'call_timeout',
        default=300, min=1, max=86400,
        help='Seconds one XAPI call may take before the backend gives up '
             'on the connection. Long operations (clone, provision, start, '
             'snapshot, revert) run as XAPI tasks, which the backend '
             'cancels when they take longer than this.'),
    cfg.IntOpt(
        'login_timeout',
        default=10, min=1, max=600,
        help='Seconds to wait for XAPI to accept a connection and a '
             'login.'),
    cfg.StrOpt(
        'default_template',
        default='Debian Bookworm 12',
        help='Template to clone when the image reference is empty. It is '
             'listed first by list_images, so callers that boot the first '
             'listed image (compute-driver verify) boot it. Any template or '
             'snapshot of the pool can be named as an image.'),
    cfg.StrOpt(
        'sr_name',
        default='',
        help='name_label or uuid of the storage repository that the disks '
             'of new instances are created on. Empty means the pool\'s '
             'default SR. Stock templates leave the SR of their disks '
             'empty; the backend fills this one in before VM.provision, '
             'as xe vm-install does.'),
    cfg.StrOpt(
        'network_name',
        default='',
        help='name_label of the XAPI network that an instance spawned '
             'without ports gets one VIF on. Empty (the default) gives '
             'such an instance no VIF, as on the other backends; an '
             'instance spawned with ports gets one VIF per port, on the '
             'network that carries the port\'s bridge, whatever this '
             'says.'),
    cfg.StrOpt(
        'port_network',
        default='',
        help='bridge or name_label of the XAPI network that ports naming '
             'no bridge go on: tap ports, whose device the Neutron agent '
             'wires, as Nova\'s XenAPI driver put every port on its '
             'integration bridge. Empty refuses such a port, unless a '
             'network is named after its network label.'),
    cfg.IntOpt(
        'clean_shutdown_timeout',
        default=60, min=0, max=3600,
        help='Seconds a soft reboot waits for the guest to reboot before '
             'the backend reboots it hard, as it does at once for a guest '
             'without a guest agent. A power off waits the timeout its '
             'caller gives.'),
    cfg.IntOpt(
        'event_poll_timeout',
        default=30, min=1, max=600,
        help='Seconds one event.from call waits for changes before the '
             'event thread asks again.'),
    cfg.StrOpt(
        'originator',
        default='compute-driver',
        help='Originator name sent at login, shown in XAPI\'s logs and '
             'session list.'),
]


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """The ``compute_driver.driver_opts`` entry point: imports no SDK."""
    return [(cfg.OptGroup(GROUP, title=TITLE, help=HELP), opts)]
