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

"""``compute-driver volume attach|detach|list``: volumes of an instance.

A volume is named by its connection: ``--local DEVICE`` for a block
device of this host, or ``--iscsi PORTAL IQN LUN`` for an iSCSI LUN,
which become the connection info Cinder would hand over
(:func:`connection_info`).
"""

from compute_driver.cmd import common
from compute_driver.cmd import server


def connection_info(parsed_args) -> dict:
    """Cinder-style connection info from ``--local`` or ``--iscsi``."""
    if parsed_args.local:
        data = {'device_path': parsed_args.local}
        kind = 'local'
    else:
        portal, iqn, lun = parsed_args.iscsi
        try:
            lun_number = int(lun)
        except ValueError:
            raise common.UsageError(
                'the iSCSI LUN must be an integer, got %r' % lun) from None
        data = {'target_portal': portal, 'target_iqn': iqn,
                'target_lun': lun_number}
        kind = 'iscsi'
    if parsed_args.volume_id:
        data['volume_id'] = parsed_args.volume_id
    return {'driver_volume_type': kind, 'data': data}


def _add_connection(parser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument('--local', metavar='DEVICE',
                       help='A block device of this host, e.g. /dev/loop0.')
    which.add_argument('--iscsi', nargs=3,
                       metavar=('PORTAL', 'IQN', 'LUN'),
                       help='An iSCSI LUN: portal ADDRESS:PORT, target '
                            'IQN and LUN number.')
    parser.add_argument('--volume-id', metavar='ID',
                        help='The volume\'s id; by default one derived '
                             'from the device or target.')


class AttachVolume(common.Command):
    """Connect a volume and attach it to an instance."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        server._add_instance_argument(parser)
        _add_connection(parser)
        parser.add_argument(
            '--mountpoint', metavar='PATH', required=True,
            help='Where the instance sees it: a device name such as '
                 '/dev/vdb for machines, a directory for containers.')
        return parser

    def take_action(self, parsed_args):
        backend = self.app.driver
        common.require(backend, 'attach_volume')
        record = backend.find_instance(parsed_args.instance)
        backend.attach_volume(record.instance, connection_info(parsed_args),
                              parsed_args.mountpoint)


class DetachVolume(common.Command):
    """Detach a volume from an instance and disconnect it."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        server._add_instance_argument(parser)
        _add_connection(parser)
        return parser

    def take_action(self, parsed_args):
        backend = self.app.driver
        common.require(backend, 'detach_volume')
        record = backend.find_instance(parsed_args.instance)
        backend.detach_volume(record.instance, connection_info(parsed_args))


class ListVolumes(common.Lister):
    """List the volumes attached to an instance."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        server._add_instance_argument(parser)
        return parser

    def take_action(self, parsed_args):
        backend = self.app.driver
        record = backend.find_instance(parsed_args.instance)
        rows = [(a.volume_id, a.mountpoint, a.device_path,
                 a.connection_info.get('driver_volume_type'),
                 'yes' if a.boot_index == 0 else 'no')
                for a in backend.list_volume_attachments(record.instance)]
        return ('Volume', 'Mountpoint', 'Device', 'Type', 'Root'), rows
