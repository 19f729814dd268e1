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

"""Volumes as VDIs plugged into VMs through VBDs.

XAPI runs on the pool's hosts, not on this one, and reaches storage
through its own SRs: a volume is the VDI whose uuid is the volume's id,
on an SR its storage exposes to the pool (Cinder's volume, introduced to
XAPI), so nothing is connected on this host. Attaching creates a VBD of
the VM for that VDI at the mountpoint's userdevice (``/dev/xvdb`` is 1)
and, on a running VM, plugs it (``VBD.plug``); detaching unplugs and
destroys the VBD and leaves the VDI, whose data is the volume's. The
VM's ``other_config`` records the attachments under :data:`KEY`.
"""

import re
import typing

from compute_driver import exception
from compute_driver import objects
from compute_driver.volume import exception as vol_exc
from compute_driver.volume import model as vol_model
from compute_driver.xenapi import connection
from compute_driver.xenapi import mapping

KEY = 'compute_driver_volumes'
_MOUNTPOINT_RE = re.compile(r'/dev/xvd([b-p])')


def check_mountpoint(mountpoint: object) -> str:
    """``/dev/xvdb`` to ``/dev/xvdp``: XAPI's userdevices 1 to 15.

    :raises InvalidInput: naming it.
    """
    if (not isinstance(mountpoint, str) or
            not _MOUNTPOINT_RE.fullmatch(mountpoint)):
        raise exception.InvalidInput(
            reason='a XenAPI volume mountpoint is /dev/xvdb to /dev/xvdp, '
                   'got %r' % (mountpoint,))
    return mountpoint


def userdevice(mountpoint: str) -> str:
    return str(ord(mountpoint[-1]) - ord('a'))


def attachments(record: mapping.Record) -> list[vol_model.Attachment]:
    return vol_model.loads(record['other_config'].get(KEY))


def _vdi(xapi: typing.Any, volume: str) -> str:
    try:
        return typing.cast(str, xapi.call('VDI.get_by_uuid', volume))
    except connection.XapiCallFailed as exc:
        if exc.code != 'UUID_INVALID':
            raise
    raise vol_exc.VolumeDeviceNotFound(
        volume=volume, device='VDI %s' % volume,
        reason='no SR of the pool has a VDI of that uuid')


def _record(xapi: typing.Any, vm: mapping.VM,
            found: list[vol_model.Attachment]) -> None:
    xapi.call('VM.remove_from_other_config', vm.ref, KEY)
    if found:
        xapi.call('VM.add_to_other_config', vm.ref, KEY,
                  vol_model.dumps(found))


def attach(xapi: typing.Any, vm: mapping.VM, instance: objects.Instance,
           record: mapping.Record, attachment: vol_model.Attachment,
           live: bool) -> None:
    """Create (and on a running VM plug) a VBD for the volume's VDI.

    :raises VolumeDeviceNotFound: when no SR has the VDI.
    :raises VolumeInUse: when another VM has it plugged.
    """
    vdi = _vdi(xapi, attachment.volume_id)
    vbd = xapi.call('VBD.create', {
        'VM': vm.ref, 'VDI': vdi,
        'userdevice': userdevice(attachment.mountpoint), 'bootable': False,
        'mode': 'RW', 'type': 'Disk', 'empty': False, 'unpluggable': True,
        'other_config': {mapping.KEY_UUID: instance.uuid,
                         connection.VOLUME_VBD_KEY: attachment.volume_id},
        'qos_algorithm_type': '', 'qos_algorithm_params': {}})
    try:
        if live:
            try:
                xapi.call('VBD.plug', vbd)
            except connection.XapiCallFailed as exc:
                if exc.code == 'VDI_IN_USE':
                    raise vol_exc.VolumeInUse(
                        volume=attachment.volume_id, device='VDI %s' % vdi,
                        reason='another VM has it plugged') from None
                raise
        _record(xapi, vm, [*attachments(record), attachment])
    except BaseException:
        if live:
            _quietly(xapi, 'VBD.unplug', vbd)
        _quietly(xapi, 'VBD.destroy', vbd)
        raise


def _quietly(xapi: typing.Any, method: str, ref: str) -> None:
    try:
        xapi.call(method, ref)
    except connection.XapiCallFailed:
        pass  # undoing after a failure: the first error is the one to see


def detach(xapi: typing.Any, vm: mapping.VM, record: mapping.Record,
           attachment: vol_model.Attachment, live: bool) -> None:
    """Unplug and destroy the volume's VBD; the VDI stays."""
    device = userdevice(attachment.mountpoint)
    for vbd in record['VBDs']:
        vbd_record = xapi.call('VBD.get_record', vbd)
        if vbd_record['userdevice'] != device:
            continue
        if live and vbd_record['currently_attached']:
            try:
                xapi.call('VBD.unplug', vbd)
            except connection.XapiCallFailed as exc:
                if exc.code != 'DEVICE_ALREADY_DETACHED':
                    raise
        xapi.call('VBD.destroy', vbd)
    _record(xapi, vm, [a for a in attachments(record)
                       if a.volume_id != attachment.volume_id])
