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

"""``VBD.plug`` and ``VBD.unplug``: hot-plugging disks of running VMs.

The checks and error codes are XAPI's (its VBD helpers' table of valid
operations): the VM must be running (``VM_BAD_POWER_STATE [vm, running,
actual]``), a plugged VBD cannot be plugged again
(``DEVICE_ALREADY_ATTACHED [vbd]``) nor an unplugged one unplugged
(``DEVICE_ALREADY_DETACHED [vbd]``), a VDI attached read-write to
another running VM cannot be plugged (``VDI_IN_USE [vdi, plug]``), and a
VM's userdevice is taken once (``DEVICE_ALREADY_EXISTS [userdevice]`` at
``VBD.create``).
"""

import typing

from compute_driver.testing.xapi_simulator import store as db

if typing.TYPE_CHECKING:  # pragma: no cover
    from compute_driver.testing.xapi_simulator import api


def _running_vm(api_: 'api.Api', ref: str) -> tuple[db.Record, db.Record]:
    vbd = api_.store.get('VBD', ref)
    vm = api_.store.get('VM', vbd['VM'])
    if vm['power_state'] != 'Running':
        raise db.ApiError('VM_BAD_POWER_STATE', vbd['VM'], 'running',
                          vm['power_state'].lower())
    return vbd, vm


def plug(api_: 'api.Api', ref: str) -> str:
    vbd, _ = _running_vm(api_, ref)
    if vbd['currently_attached']:
        raise db.ApiError('DEVICE_ALREADY_ATTACHED', ref)
    vdi = vbd['VDI']
    if vdi != db.NULL_REF and vbd['mode'] == 'RW':
        for other in api_.store.get('VDI', vdi)['VBDs']:
            record = api_.store.get('VBD', other)
            if other != ref and record['currently_attached']:
                raise db.ApiError('VDI_IN_USE', vdi, 'plug')
    api_.store.update('VBD', ref, currently_attached=True,
                      device='xvd' + chr(ord('a') + int(vbd['userdevice'])))
    return ''


def unplug(api_: 'api.Api', ref: str) -> str:
    vbd, _ = _running_vm(api_, ref)
    if not vbd['currently_attached']:
        raise db.ApiError('DEVICE_ALREADY_DETACHED', ref)
    if not vbd['unpluggable']:
        raise db.ApiError('VBD_NOT_UNPLUGGABLE', ref)
    api_.store.update('VBD', ref, currently_attached=False)
    return ''


def check_userdevice(api_: 'api.Api', record: db.Record) -> None:
    """Refuse a VBD.create whose userdevice the VM has already."""
    device = str(record.get('userdevice', ''))
    for other in api_.store.get('VM', record.get('VM'))['VBDs']:
        if api_.store.get('VBD', other)['userdevice'] == device:
            raise db.ApiError('DEVICE_ALREADY_EXISTS', device)
