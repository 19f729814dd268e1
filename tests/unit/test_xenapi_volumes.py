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

"""How the xenapi backend's volume swap and extend read XAPI's answers.

The calls are answered by a script, failures included, so that every
failure XAPI may give is seen; the simulator's functional tests run the
same code against XAPI's behaviour.
"""

import pytest

from compute_driver import exception
from compute_driver import flavors
from compute_driver import objects
from compute_driver.testing import fixtures
from compute_driver.volume import exception as vol_exc
from compute_driver.volume import model as vol_model
from compute_driver.xenapi import connection
from compute_driver.xenapi import mapping
from compute_driver.xenapi import volumes

OLD, NEW = 'vol-old', 'vol-new'


class _Xapi:
    """Answers each call with ``answers[method]``.

    A value, an exception to raise, or a function of the call's arguments
    giving either.
    """

    def __init__(self, **answers):
        self.answers = {k.replace('_', '.', 1): v
                        for k, v in answers.items()}
        self.calls = []

    def _answer(self, method, args):
        self.calls.append((method, *args))
        answer = self.answers.get(method)
        if callable(answer):
            answer = answer(*args)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def call(self, method, *args):
        return self._answer(method, args)

    def task(self, method, *args):
        return self._answer('task ' + method, args)

    def methods(self):
        return [c[0] for c in self.calls]


def _failed(*details):
    return connection.XapiCallFailed(method='m', details=list(details))


def _vdi_of(uuid):
    return {OLD: 'OpaqueRef:old-vdi', NEW: 'OpaqueRef:new-vdi'}.get(
        uuid) or _failed('UUID_INVALID', 'VDI', uuid)


def _attachment(volume, mountpoint='/dev/xvdb'):
    return vol_model.Attachment(
        volume_id=volume, mountpoint=mountpoint, device_path=volume,
        connection_info={'driver_volume_type': 'iscsi', 'data': {
            'volume_id': volume, 'target_portal': '192.0.2.1:3260',
            'target_iqn': 'iqn.2010-10.org.openstack:v', 'target_lun': 1}})


VM = mapping.VM('OpaqueRef:vm', 'Halted')


@pytest.mark.parametrize('live, method', [
    (False, 'task VDI.resize'), (True, 'task VDI.resize_online')])
def test_extend_resizes_online_only_when_live(live, method):
    xapi = _Xapi(VDI_get_by_uuid=_vdi_of, VDI_get_virtual_size='2097152')
    assert volumes.extend(xapi, VM, _attachment(OLD), 2000000, live) == (
        2097152)
    # XAPI's int parameters travel as decimal strings.
    assert (method, 'OpaqueRef:old-vdi', '2000000') in xapi.calls


@pytest.mark.parametrize('details, live, error, match', [
    (['SR_BACKEND_FAILURE_79', '',
      'VDI Invalid size [opterr=shrinking not allowed]', ''], False,
     exception.InvalidInput, 'shrinking not allowed'),
    (['SR_OPERATION_NOT_SUPPORTED', 'OpaqueRef:sr'], True,
     exception.NotSupported, 'stop the instance'),
    (['SR_OPERATION_NOT_SUPPORTED', 'OpaqueRef:sr'], False,
     exception.NotSupported, 'cannot resize disks'),
    (['MESSAGE_METHOD_UNKNOWN', 'VDI.resize_online'], True,
     exception.NotSupported, 'no VDI.resize_online'),
    (['VDI_IN_USE', 'OpaqueRef:old-vdi', 'resize'], False,
     vol_exc.VolumeInUse, 'another VM'),
])
def test_extend_failures_are_typed(details, live, error, match):
    xapi = _Xapi(VDI_get_by_uuid=_vdi_of)
    xapi.answers['task VDI.resize_online'] = _failed(*details)
    xapi.answers['task VDI.resize'] = _failed(*details)
    with pytest.raises(error, match=match):
        volumes.extend(xapi, VM, _attachment(OLD), 1 << 30, live)


def test_extend_of_a_vdi_no_sr_has():
    xapi = _Xapi(VDI_get_by_uuid=_vdi_of)
    with pytest.raises(vol_exc.VolumeDeviceNotFound):
        volumes.extend(xapi, VM, _attachment('vol-gone'), 1 << 30, False)
    assert 'task VDI.resize' not in xapi.methods()


def test_copy_into_the_new_vdi_on_the_pool():
    xapi = _Xapi(VDI_get_by_uuid=_vdi_of)
    volumes.copy(xapi, VM, _attachment(OLD), _attachment(NEW))
    assert ('task VDI.copy', 'OpaqueRef:old-vdi', 'OpaqueRef:NULL',
            'OpaqueRef:NULL', 'OpaqueRef:new-vdi') in xapi.calls


@pytest.mark.parametrize('details, error, match', [
    (['VDI_TOO_SMALL', 'OpaqueRef:new-vdi', '2147483648'],
     exception.InvalidInput, 'vol-new has 1073741824 bytes, fewer than '
                             'the 2147483648 of volume vol-old'),
    (['VDI_READONLY', 'OpaqueRef:new-vdi'], exception.InvalidInput,
     'vol-new is read-only'),
    (['VDI_IN_USE', 'OpaqueRef:new-vdi', 'plug'], vol_exc.VolumeInUse,
     'vol-new'),
    (['VDI_IN_USE', 'OpaqueRef:old-vdi', 'copy'], vol_exc.VolumeInUse,
     'vol-old'),
])
def test_copy_failures_are_typed(details, error, match):
    xapi = _Xapi(VDI_get_by_uuid=_vdi_of,
                 VDI_get_virtual_size='1073741824')
    xapi.answers['task VDI.copy'] = _failed(*details)
    with pytest.raises(error, match=match):
        volumes.copy(xapi, VM, _attachment(OLD), _attachment(NEW))


def _swap_xapi(**answers):
    vbd = {'VM': VM.ref, 'VDI': 'OpaqueRef:old-vdi', 'userdevice': '1',
           'bootable': False, 'mode': 'RW', 'type': 'Disk', 'empty': False,
           'unpluggable': True, 'qos_algorithm_type': '',
           'qos_algorithm_params': {},
           'other_config': {connection.VOLUME_VBD_KEY: OLD}}
    return _Xapi(**{'VDI_get_by_uuid': _vdi_of, 'VBD_get_record': vbd,
                    'VBD_create': 'OpaqueRef:new-vbd', **answers})


def _record():
    return {'VBDs': ['OpaqueRef:old-vbd'], 'other_config': {
        volumes.KEY: vol_model.dumps([_attachment(OLD)])}}


def test_swap_replaces_the_vbd_and_the_record():
    xapi = _swap_xapi()
    volumes.swap(xapi, VM, _instance(), _record(), _attachment(OLD),
                 _attachment(NEW))
    [create] = [c for c in xapi.calls if c[0] == 'VBD.create']
    assert create[1]['VDI'] == 'OpaqueRef:new-vdi'
    assert create[1]['userdevice'] == '1'
    assert create[1]['other_config'][connection.VOLUME_VBD_KEY] == NEW
    assert xapi.methods().index('VBD.destroy') < xapi.methods().index(
        'VBD.create')
    [added] = [c for c in xapi.calls if c[0] == 'VM.add_to_other_config']
    assert [a.volume_id for a in vol_model.loads(added[3])] == [NEW]


def _instance():
    conf = fixtures.make_conf('fake')
    return objects.Instance.new('vm1', flavors.get_flavor(conf, 'm1.nano'),
                                'image')


def test_swap_puts_the_old_vbd_back_when_the_new_one_fails():
    creates = []

    def create(fields):
        creates.append(fields)
        if len(creates) == 1:
            return _failed('DEVICE_ALREADY_EXISTS', '1')
        return 'OpaqueRef:old-again'

    xapi = _swap_xapi(VBD_create=create)
    with pytest.raises(connection.XapiCallFailed):
        volumes.swap(xapi, VM, _instance(), _record(), _attachment(OLD),
                     _attachment(NEW))
    assert [c['VDI'] for c in creates] == ['OpaqueRef:new-vdi',
                                           'OpaqueRef:old-vdi']
    assert creates[1]['other_config'][connection.VOLUME_VBD_KEY] == OLD
    assert 'VM.add_to_other_config' not in xapi.methods()


def test_swap_of_a_vm_gone_reports_the_vm():
    xapi = _swap_xapi(
        VBD_get_record=_failed('HANDLE_INVALID', 'VBD', 'OpaqueRef:old-vbd'),
        VM_get_power_state=_failed('HANDLE_INVALID', 'VM', VM.ref))
    with pytest.raises(connection.XapiCallFailed) as caught:
        volumes.swap(xapi, VM, _instance(), _record(), _attachment(OLD),
                     _attachment(NEW))
    # What the backend's translation turns into InstanceNotFound.
    assert caught.value.params[:1] == ['VM']
    assert 'VBD.create' not in xapi.methods()


def test_copy_refuses_a_new_vdi_a_vm_has_plugged():
    # XAPI would write into it: its plug into dom0 skips the sharing
    # check.
    xapi = _Xapi(VDI_get_by_uuid=_vdi_of, VBD_get_all_records_where={
        'OpaqueRef:vbd': {'currently_attached': True}})
    with pytest.raises(vol_exc.VolumeInUse, match='vol-new'):
        volumes.copy(xapi, VM, _attachment(OLD), _attachment(NEW))
    assert 'task VDI.copy' not in xapi.methods()
    [query] = [c for c in xapi.calls
               if c[0] == 'VBD.get_all_records_where']
    assert query[1] == ('field "VDI" = "OpaqueRef:new-vdi" and '
                        'field "currently_attached" = "true"')
