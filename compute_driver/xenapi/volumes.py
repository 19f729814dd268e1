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

Swapping copies on the pool, not here: ``VDI.copy`` into the new
volume's VDI (XAPI refuses a smaller or read-only one, or one another VM
has plugged), then the VM's VBD at that userdevice is replaced by one of
the new VDI. Extending is ``VDI.resize``, or ``VDI.resize_online`` on a
running VM, which only SRs whose SM declares ``VDI_RESIZE_ONLINE`` allow;
XAPI's storage rounds the size up (whole 2 MiB VHD blocks) and refuses to
shrink.
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
NULL_REF = 'OpaqueRef:NULL'
#: The code XAPI gives the SM's ``VDISize`` refusal (a shrink, a size
#: out of range).
VDI_SIZE_ERROR = 'SR_BACKEND_FAILURE_79'
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


def _still_there(xapi: typing.Any, vm: mapping.VM) -> None:
    """Raise XAPI's ``HANDLE_INVALID [VM, ref]`` should the VM be gone.

    A VBD or VDI that vanished under an operation is most often the VM's
    destruction by another client: that is the failure to report.
    """
    xapi.call('VM.get_power_state', vm.ref)


def copy(xapi: typing.Any, vm: mapping.VM, old: vol_model.Attachment,
         new: vol_model.Attachment) -> None:
    """Copy the old volume's VDI into the new volume's, on the pool.

    :raises VolumeDeviceNotFound: when no SR has either VDI.
    :raises InvalidInput: when the new VDI is smaller or read-only.
    :raises VolumeInUse: when a VM has either plugged read-write.
    """
    source = _vdi(xapi, old.volume_id)
    target = _vdi(xapi, new.volume_id)
    # XAPI writes into a VDI that a VM has plugged: the plug into dom0
    # that the copy makes is exempt from its sharing check.
    plugged = xapi.call(
        'VBD.get_all_records_where',
        'field "VDI" = %s and field "currently_attached" = "true"'
        % connection.quote(target))
    if plugged:
        raise vol_exc.VolumeInUse(
            volume=new.volume_id, device='VDI %s' % target,
            reason='a VM has it plugged')
    try:
        xapi.task('VDI.copy', source, NULL_REF, NULL_REF, target)
    except connection.XapiCallFailed as exc:
        volume = (old.volume_id if exc.params[:1] == [source]
                  else new.volume_id)
        if exc.code == 'VDI_TOO_SMALL':
            raise exception.InvalidInput(
                reason='volume %s has %s bytes, fewer than the %s of '
                       'volume %s' % (new.volume_id, xapi.call(
                           'VDI.get_virtual_size', target),
                           exc.params[1] if len(exc.params) > 1 else '?',
                           old.volume_id)) from None
        if exc.code == 'VDI_READONLY':
            raise exception.InvalidInput(
                reason='volume %s is read-only' % new.volume_id) from None
        if exc.code == 'VDI_IN_USE':
            raise vol_exc.VolumeInUse(
                volume=volume, device='VDI %s' % exc.params[0],
                reason='another VM has it plugged') from None
        if exc.code == 'HANDLE_INVALID':
            _still_there(xapi, vm)
        raise


def swap(xapi: typing.Any, vm: mapping.VM, instance: objects.Instance,
         record: mapping.Record, old: vol_model.Attachment,
         new: vol_model.Attachment) -> None:
    """Give the VM's VBD of the old volume the new volume's VDI.

    XAPI cannot repoint a VBD: the old one is destroyed and one of the
    new VDI made at its userdevice, or, should that fail, the old one
    made again.
    """
    try:
        _swap(xapi, vm, instance, record, old, new)
    except connection.XapiCallFailed as exc:
        if exc.code == 'HANDLE_INVALID':
            _still_there(xapi, vm)
        raise


def _swap(xapi: typing.Any, vm: mapping.VM, instance: objects.Instance,
          record: mapping.Record, old: vol_model.Attachment,
          new: vol_model.Attachment) -> None:
    target = _vdi(xapi, new.volume_id)
    device = userdevice(old.mountpoint)
    found = [(vbd, xapi.call('VBD.get_record', vbd))
             for vbd in record['VBDs']]
    former = next(((vbd, r) for vbd, r in found
                   if r['userdevice'] == device), None)
    fields: mapping.Record = {
        'VM': vm.ref, 'VDI': target, 'userdevice': device,
        'bootable': False, 'mode': 'RW', 'type': 'Disk', 'empty': False,
        'unpluggable': True, 'other_config': {},
        'qos_algorithm_type': '', 'qos_algorithm_params': {}}
    if former is not None:
        fields.update({k: former[1][k] for k in fields
                       if k in former[1] and k not in ('VM', 'VDI')})
        xapi.call('VBD.destroy', former[0])
    fields['other_config'] = dict(
        fields['other_config'], **{mapping.KEY_UUID: instance.uuid,
                                   connection.VOLUME_VBD_KEY: new.volume_id})
    try:
        vbd = xapi.call('VBD.create', fields)
        try:
            _record(xapi, vm, [new if a.volume_id == old.volume_id else a
                               for a in attachments(record)])
        except BaseException:
            _quietly(xapi, 'VBD.destroy', vbd)
            raise
    except BaseException:
        if former is not None:
            try:
                xapi.call('VBD.create', {
                    k: former[1][k] for k in fields if k in former[1]})
            except connection.XapiCallFailed:
                pass  # the VM went: the first error is the one to see
        raise


def extend(xapi: typing.Any, vm: mapping.VM, attachment: vol_model.Attachment,
           size: int, live: bool) -> int:
    """Grow the volume's VDI to ``size`` bytes; the size XAPI gave it.

    ``VDI.resize_online`` on a running (or paused) VM, whose VBD is
    plugged; ``VDI.resize`` otherwise.

    :raises InvalidInput: for a size smaller than the VDI's (XAPI's
        storage does not shrink) or beyond what it takes.
    :raises NotSupported: when the VDI's SR cannot resize it (plugged).
    :raises VolumeInUse: when another VM has it plugged.
    """
    vdi = _vdi(xapi, attachment.volume_id)
    method = 'VDI.resize_online' if live else 'VDI.resize'
    try:
        xapi.task(method, vdi, str(size))
    except connection.XapiCallFailed as exc:
        code, volume = exc.code, attachment.volume_id
        if code == VDI_SIZE_ERROR:
            raise exception.InvalidInput(
                reason='volume %s cannot have %d bytes: %s' % (
                    volume, size, exc.params[1] if len(exc.params) > 1
                    else code)) from None
        if code == 'SR_OPERATION_NOT_SUPPORTED':
            raise exception.NotSupported(
                driver='xenapi',
                operation=('extend volume %s on a running instance: its SR '
                           'cannot resize a plugged disk (stop the instance '
                           'first)' if live else
                           'extend volume %s: its SR cannot resize disks')
                % volume) from None
        if code in ('MESSAGE_METHOD_UNKNOWN', 'MESSAGE_REMOVED'):
            raise exception.NotSupported(
                driver='xenapi',
                operation='extend volume %s on a running instance: this '
                          'XAPI has no %s (stop the instance first)'
                          % (volume, method)) from None
        if code == 'VDI_IN_USE':
            raise vol_exc.VolumeInUse(
                volume=volume, device='VDI %s' % vdi,
                reason='another VM has it plugged') from None
        if code == 'HANDLE_INVALID':
            _still_there(xapi, vm)
        raise
    # A VM destroyed by another client while the disk grew is reported,
    # rather than an extend of an instance that is gone.
    _still_there(xapi, vm)
    return int(xapi.call('VDI.get_virtual_size', vdi))
