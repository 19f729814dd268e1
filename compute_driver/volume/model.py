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

"""Connection info as Cinder hands it, and what an instance records.

A :class:`Connection` is validated connection info; an
:class:`Attachment` is one volume attached to one instance, as the
backend records it in its own record of the instance (libvirt domain
metadata, container labels, the VM's ``other_config``), so that every
process sees the same attachments and nothing else needs to be kept.
"""

import collections.abc
import dataclasses
import ipaddress
import json
import os
import re
import typing

from compute_driver.volume import exception as vol_exc

LOCAL = 'local'
ISCSI = 'iscsi'
#: ``driver_volume_type`` values this host connects, and the os-brick
#: protocol of each.
PROTOCOLS = {LOCAL: 'LOCAL', ISCSI: 'ISCSI'}

# RFC 3720's iSCSI names: iqn.YYYY-MM.reversed.domain[:anything] or an
# EUI-64 name.
_IQN_RE = re.compile(r'(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[^\s]+)?'
                     r'|eui\.[0-9a-f]{16})', re.IGNORECASE)
_VOLUME_ID_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,254}')
#: SAM's flat LUN space, which Linux's SCSI layer scans.
MAX_LUN = 16383


@dataclasses.dataclass(frozen=True)
class Connection:
    """Validated connection info of one volume.

    :param protocol: :data:`LOCAL` or :data:`ISCSI`.
    :param volume_id: the volume's id: ``data['volume_id']``, else the
        connection info's ``serial``, else one derived from the target.
    :param data: the properties os-brick's connector takes.
    :param info: the connection info as given, JSON-safe.
    """

    protocol: str
    volume_id: str
    data: dict[str, typing.Any]
    info: dict[str, typing.Any]

    def describe(self) -> str:
        """The target in words, for messages."""
        if self.protocol == LOCAL:
            return self.data['device_path']
        return 'iSCSI %s %s LUN %d' % (self.data['target_portal'],
                                       self.data['target_iqn'],
                                       self.data['target_lun'])


def _bad(volume: object, reason: str) -> vol_exc.InvalidConnectionInfo:
    return vol_exc.InvalidConnectionInfo(volume=volume or 'unknown',
                                         reason=reason)


def _check_portal(volume: str | None, portal: object) -> None:
    if not isinstance(portal, str) or ':' not in portal:
        raise _bad(volume, 'target_portal must be "ADDRESS:PORT", got %r'
                   % (portal,))
    address, _, port = portal.rpartition(':')
    address = address.strip('[]')
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad(volume, 'target_portal %r has no port from 1 to 65535'
                   % portal)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if not re.fullmatch(r'[A-Za-z0-9.-]{1,253}', address):
            raise _bad(volume, 'target_portal %r has no valid address'
                       % portal) from None


def _check_lun(volume: str | None, lun: object) -> int:
    if (not isinstance(lun, int) or isinstance(lun, bool) or
            not 0 <= lun <= MAX_LUN):
        raise _bad(volume, 'target_lun must be an integer from 0 to %d, '
                   'got %r' % (MAX_LUN, lun))
    return lun


def parse(connection_info: object) -> Connection:
    """Validate connection info as Cinder's ``initialize_connection`` returns.

    ``{'driver_volume_type': 'local', 'data': {'device_path': '/dev/...'}}``
    or ``{'driver_volume_type': 'iscsi', 'data': {'target_portal':
    'ADDRESS:PORT', 'target_iqn': 'iqn....', 'target_lun': N}}``, each
    with an optional ``data['volume_id']`` (and ``serial``).

    :raises InvalidConnectionInfo: naming the field and the problem.
    """
    if not isinstance(connection_info, collections.abc.Mapping):
        raise _bad(None, 'connection info must be a mapping, got %r'
                   % (connection_info,))
    data = connection_info.get('data')
    if not isinstance(data, collections.abc.Mapping):
        raise _bad(connection_info.get('serial'),
                   'connection info has no "data" mapping')
    volume = data.get('volume_id') or connection_info.get('serial')
    if volume is not None and (not isinstance(volume, str) or
                               not _VOLUME_ID_RE.fullmatch(volume)):
        raise _bad(volume, 'a volume id is 1 to 255 letters, digits or '
                   '"_.:/+-", got %r' % (volume,))
    kind = connection_info.get('driver_volume_type')
    if not isinstance(kind, str) or kind.lower() not in PROTOCOLS:
        raise _bad(volume, 'driver_volume_type must be one of %s, got %r'
                   % (', '.join(sorted(PROTOCOLS)), kind))
    kind = kind.lower()
    props = dict(data)
    if kind == LOCAL:
        path = data.get('device_path')
        if (not isinstance(path, str) or not path.startswith('/dev/') or
                os.path.normpath(path) != path or '\0' in path):
            raise _bad(volume, 'device_path must be a normalised path '
                       'under /dev, got %r' % (path,))
        volume = volume or 'local:' + path
    else:
        _check_portal(volume, data.get('target_portal'))
        iqn = data.get('target_iqn')
        if not isinstance(iqn, str) or not _IQN_RE.fullmatch(iqn):
            raise _bad(volume, 'target_iqn must be an iSCSI name '
                       '(iqn.YYYY-MM.domain[:name] or eui.HEX16), got %r'
                       % (iqn,))
        lun = _check_lun(volume, data.get('target_lun'))
        props['target_lun'] = lun
        volume = volume or '%s:%d' % (iqn, lun)
    try:
        info = json.loads(json.dumps(dict(connection_info)))
    except (TypeError, ValueError) as exc:
        raise _bad(volume, 'connection info is not JSON: %s' % exc) from None
    info['data'] = dict(info['data'], volume_id=volume)
    props['volume_id'] = volume
    return Connection(protocol=kind, volume_id=volume, data=props, info=info)


@dataclasses.dataclass(frozen=True)
class Attachment:
    """One volume attached to one instance.

    :param volume_id: the volume's id (:attr:`Connection.volume_id`).
    :param mountpoint: where the instance sees it: a guest device name
        (``/dev/vdb``) for machines, a directory for containers.
    :param connection_info: the connection info it was attached with.
    :param device_path: its block device on the host.
    :param boot_index: 0 for the root disk of an instance booted from it.
    """

    volume_id: str
    mountpoint: str
    connection_info: dict[str, typing.Any]
    device_path: str
    boot_index: int | None = None

    @property
    def connection(self) -> Connection:
        return parse(self.connection_info)

    def to_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: collections.abc.Mapping[str, typing.Any]
                  ) -> 'Attachment':
        return cls(volume_id=data['volume_id'],
                   mountpoint=data['mountpoint'],
                   connection_info=dict(data['connection_info']),
                   device_path=data['device_path'],
                   boot_index=data.get('boot_index'))


def dumps(attachments: collections.abc.Iterable[Attachment]) -> str:
    """Attachments as compact JSON, for a backend's record."""
    return json.dumps([a.to_dict() for a in attachments],
                      separators=(',', ':'), sort_keys=True)


def loads(text: str | None) -> list[Attachment]:
    """What :func:`dumps` wrote; ``[]`` for nothing or a damaged record."""
    if not text:
        return []
    try:
        return [Attachment.from_dict(item) for item in json.loads(text)]
    except (TypeError, ValueError, KeyError):
        return []


@dataclasses.dataclass(frozen=True)
class BlockDevice:
    """One volume of Nova's ``block_device_info`` at spawn.

    :param connection: its validated connection info.
    :param mountpoint: Nova's ``mount_device`` (``/dev/vda``...).
    :param boot_index: 0 for the root disk, ``None`` when not bootable.
    """

    connection: Connection
    mountpoint: str
    boot_index: int | None


def block_devices(block_device_info: object) -> list[BlockDevice]:
    """The volumes of Nova's ``block_device_info``, root disk first.

    Its ``block_device_mapping`` lists mappings (dicts, or Nova's
    ``DriverVolumeBlockDevice``) with ``connection_info``,
    ``mount_device`` and ``boot_index``; the root disk is the one whose
    boot index is 0 or whose device is ``root_device_name``.

    :raises InvalidInput: for a malformed mapping, two root disks or a
        device named twice.
    """
    if not block_device_info:
        return []
    if not isinstance(block_device_info, collections.abc.Mapping):
        raise _bad(None, 'block_device_info must be a mapping, got %r'
                   % (block_device_info,))
    root_name = block_device_info.get('root_device_name')
    found: list[BlockDevice] = []
    for bdm in block_device_info.get('block_device_mapping') or ():
        try:
            info = bdm['connection_info']
            mount = bdm['mount_device']
            boot_index = bdm.get('boot_index')
        except (KeyError, TypeError, AttributeError):
            raise _bad(None, 'a block device mapping needs connection_info '
                       'and mount_device, got %r' % (bdm,)) from None
        connection = parse(info)
        if not isinstance(mount, str) or not mount.startswith('/'):
            raise _bad(connection.volume_id, 'mount_device must be an '
                       'absolute path, got %r' % (mount,))
        if boot_index is not None and (not isinstance(boot_index, int) or
                                       boot_index < 0):
            boot_index = None
        if mount == root_name:
            boot_index = 0
        found.append(BlockDevice(connection, mount,
                                 0 if boot_index == 0 else None))
    roots = [d for d in found if d.boot_index == 0]
    if len(roots) > 1:
        raise _bad(roots[1].connection.volume_id,
                   'block_device_info has more than one root disk')
    for what in ('mountpoint', 'volume_id'):
        seen: set[str] = set()
        for device in found:
            key = (device.mountpoint if what == 'mountpoint'
                   else device.connection.volume_id)
            if key in seen:
                raise _bad(device.connection.volume_id,
                           'block_device_info names %s twice' % key)
            seen.add(key)
    return sorted(found, key=lambda d: d.boot_index != 0)
