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

"""Options of the ``[libvirt]`` group: guests driven through libvirt."""

from oslo_config import cfg

GROUP = 'libvirt'

TITLE = 'Libvirt backend options'
HELP = ('The libvirt backend runs KVM, QEMU, Xen or LXC guests through '
        'libvirtd. Images come from the image service ([image_service]) '
        'or, by name, from a local image store; each instance '
        'gets a directory under instances_path holding its disk and its '
        'console log.')

#: Directory of ``instances_path`` holding the cached image copies
#: instance disks are backed by.
BASE_DIR = '_base'
#: Subdirectory of ``_base`` holding the downloads of the image service.
SERVICE_CACHE_DIR = 'images'

#: The connection URI used when ``connection_uri`` is empty.
DEFAULT_URIS = {
    'kvm': 'qemu:///system',
    'qemu': 'qemu:///system',
    'xen': 'xen:///system',
    'lxc': 'lxc:///system',
}

opts = [
    cfg.StrOpt(
        'virt_type', default='kvm', choices=sorted(DEFAULT_URIS),
        help='Kind of guest to run. kvm and qemu run hardware-virtualized '
             'guests (qemu without KVM acceleration, in software '
             'emulation), xen runs paravirtualized or HVM Xen guests and '
             'lxc runs containers.'),
    cfg.StrOpt(
        'connection_uri', default='',
        help='Libvirt connection URI. Empty means the default of virt_type: '
             'qemu:///system for kvm and qemu, xen:///system for xen and '
             'lxc:///system for lxc.'),
    cfg.StrOpt(
        'images_path', default='/var/lib/compute-driver/libvirt/images',
        help='Directory of the image store. Each image is a JSON metadata '
             'file NAME.json naming its disk file, disk format and optional '
             'kernel, ramdisk and kernel command line; snapshots are '
             'written here too. The qemu user must be able to read it.'),
    cfg.StrOpt(
        'instances_path',
        default='/var/lib/compute-driver/libvirt/instances',
        help='Directory holding one sub-directory per instance (its disk '
             'and console log) and the _base cache of images that instance '
             'disks are backed by. The qemu user must be able to read it.'),
    cfg.StrOpt(
        'disk_format', default='qcow2', choices=['qcow2', 'raw'],
        help='Format of instance disks. qcow2 makes a copy-on-write overlay '
             'on a cached copy of the image, which is fast and small; raw '
             'makes a full copy of the image for each instance.'),
    cfg.IntOpt(
        'lifecycle_event_delay', default=15, min=0, max=300,
        help='Seconds a Stopped lifecycle event is held back before it is '
             'emitted. A Started event of the same instance within that '
             'time cancels it, so that a reboot does not look like a '
             'shutdown. 0 emits every event at once.'),
    cfg.IntOpt(
        'soft_reboot_timeout', default=120, min=1, max=3600,
        help='Seconds a soft reboot waits for the guest to shut itself '
             'down before it falls back to a hard reboot.'),
    cfg.IntOpt(
        'shutdown_retry_interval', default=5, min=1, max=600,
        help='Seconds between two shutdown requests sent to a guest during '
             'a soft reboot or a clean power off; a guest that was still '
             'booting ignores the first one.'),
    cfg.IntOpt(
        'console_log_max_bytes', default=100 * 1024, min=1024,
        max=16 * 1024 * 1024,
        help='Bytes of the end of the console log that get_console_output '
             'returns.'),
    cfg.IntOpt(
        'reconnect_timeout', default=30, min=0, max=3600,
        help='Seconds an operation keeps trying to reconnect to libvirtd '
             'after the connection was lost, for example because libvirtd '
             'restarted, before it reports the hypervisor unavailable.'),
    cfg.StrOpt(
        'hw_machine_type', default='',
        help='Machine type of kvm and qemu guests, for example pc or q35. '
             'Empty lets libvirt choose its default.'),
    # -- consoles --
    cfg.StrOpt(
        'serial_console_type', default='pty', choices=['pty', 'tcp'],
        help='How the first serial port of kvm and qemu guests is offered '
             'besides the console log: pty attaches "compute-driver '
             'console" through libvirtd (one session at a time); tcp '
             'listens on serial_listen_address at a port of '
             'serial_port_range, where Nova\'s serial console proxy '
             'connects. Either way the port is logged to the console log. '
             'Applies to instances created afterwards.'),
    cfg.IPOpt(
        'serial_listen_address', default='127.0.0.1',
        help='Address the TCP serial consoles listen on; an address of '
             'this host, never all interfaces by default. Only used when '
             'serial_console_type is tcp.'),
    cfg.StrOpt(
        'serial_port_range', default='10000:20000',
        regex=r'^\d{1,5}:\d{1,5}$',
        help='First and last TCP port of the serial consoles, as '
             'FIRST:LAST within 1024:65535; each instance takes one when '
             'it is created.'),
    cfg.BoolOpt(
        'vnc_enabled', default=True,
        help='Give kvm and qemu guests a VNC display for Nova\'s noVNC '
             'proxy. Applies to instances created afterwards.'),
    cfg.IPOpt(
        'vnc_listen_address', default='127.0.0.1',
        help='Address the VNC displays listen on; an address of this '
             'host, never all interfaces by default.'),
    cfg.StrOpt(
        'vnc_password', default='', secret=True, max_length=8,
        help='Password of the VNC displays, at most 8 characters (the RFB '
             'protocol\'s limit); empty for none. Stored in the domain '
             'definition, which only root reads.'),
]


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """The ``compute_driver.driver_opts`` entry point: imports no SDK."""
    return [(cfg.OptGroup(GROUP, title=TITLE, help=HELP), opts)]
