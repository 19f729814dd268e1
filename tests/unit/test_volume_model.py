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

"""Connection info and block device info validation."""

import pytest

from compute_driver import driver as contract
from compute_driver import exception
from compute_driver.volume import connection
from compute_driver.volume import exception as vol_exc
from compute_driver.volume import model

ISCSI = {'driver_volume_type': 'iscsi',
         'data': {'target_portal': '127.0.0.1:3260',
                  'target_iqn': 'iqn.2010-10.org.openstack:vol-1',
                  'target_lun': 1, 'volume_id': 'vol-1'}}


def test_local_connection():
    conn = model.parse({'driver_volume_type': 'LOCAL',
                        'data': {'device_path': '/dev/loop3'}})
    assert conn.protocol == 'local'
    assert conn.volume_id == 'local:/dev/loop3'
    assert conn.info['data']['volume_id'] == conn.volume_id
    assert conn.describe() == '/dev/loop3'


def test_iscsi_connection():
    conn = model.parse(ISCSI)
    assert conn.volume_id == 'vol-1'
    assert conn.data['target_lun'] == 1
    assert 'LUN 1' in conn.describe()


def test_serial_names_the_volume():
    conn = model.parse({'driver_volume_type': 'local', 'serial': 'abc-1',
                        'data': {'device_path': '/dev/loop3'}})
    assert conn.volume_id == 'abc-1'


@pytest.mark.parametrize('info,words', [
    (None, 'must be a mapping'),
    ({'driver_volume_type': 'local'}, 'no "data"'),
    ({'driver_volume_type': 'rbd', 'data': {}}, 'driver_volume_type'),
    ({'driver_volume_type': 'local', 'data': {'device_path': '/etc/x'}},
     'under /dev'),
    ({'driver_volume_type': 'local',
      'data': {'device_path': '/dev/../etc/shadow'}}, 'normalised'),
    ({'driver_volume_type': 'local',
      'data': {'device_path': '/dev/loop1', 'volume_id': 'a b'}},
     'volume id'),
    (dict(ISCSI, data=dict(ISCSI['data'], target_lun=-1)), 'target_lun'),
    (dict(ISCSI, data=dict(ISCSI['data'], target_lun=True)), 'target_lun'),
    (dict(ISCSI, data=dict(ISCSI['data'], target_lun=16384)), 'target_lun'),
    (dict(ISCSI, data=dict(ISCSI['data'], target_iqn='nope')), 'target_iqn'),
    (dict(ISCSI, data=dict(ISCSI['data'], target_portal='1.2.3.4')),
     'target_portal'),
    (dict(ISCSI, data=dict(ISCSI['data'], target_portal='h:99999')),
     'port'),
])
def test_bad_connection_info(info, words):
    with pytest.raises(vol_exc.InvalidConnectionInfo) as caught:
        model.parse(info)
    assert words in str(caught.value)
    assert isinstance(caught.value, exception.InvalidInput)


def _bdm(path, mount, boot_index=None):
    return {'connection_info': {'driver_volume_type': 'local',
                                'data': {'device_path': path}},
            'mount_device': mount, 'boot_index': boot_index}


def test_block_devices_root_first():
    devices = model.block_devices({
        'root_device_name': '/dev/vda',
        'block_device_mapping': [_bdm('/dev/loop2', '/dev/vdb'),
                                 _bdm('/dev/loop1', '/dev/vda')]})
    assert [(d.mountpoint, d.boot_index) for d in devices] == [
        ('/dev/vda', 0), ('/dev/vdb', None)]
    assert model.block_devices(None) == []
    assert model.block_devices({'block_device_mapping': []}) == []


@pytest.mark.parametrize('mapping', [
    [_bdm('/dev/loop1', '/dev/vda', 0), _bdm('/dev/loop2', '/dev/vdb', 0)],
    [_bdm('/dev/loop1', '/dev/vdb'), _bdm('/dev/loop2', '/dev/vdb')],
    [_bdm('/dev/loop1', '/dev/vdb'), _bdm('/dev/loop1', '/dev/vdc')],
    [{'mount_device': '/dev/vdb'}],
    [_bdm('/dev/loop1', 'vdb')],
])
def test_bad_block_device_info(mapping):
    with pytest.raises(exception.InvalidInput):
        model.block_devices({'block_device_mapping': mapping})


def test_attachments_round_trip():
    conn = model.parse(ISCSI)
    attachment = model.Attachment(
        volume_id=conn.volume_id, mountpoint='/dev/vdb',
        connection_info=conn.info, device_path='/dev/sdb', boot_index=None)
    assert model.loads(model.dumps([attachment])) == [attachment]
    assert attachment.connection == conn
    assert model.loads('') == []
    assert model.loads('{not json') == []


def test_missing_device_is_typed(tmp_path):
    with pytest.raises(vol_exc.VolumeDeviceNotFound):
        connection.check_block_device('v', str(tmp_path / 'nothing'))
    regular = tmp_path / 'file'
    regular.write_bytes(b'x')
    with pytest.raises(vol_exc.VolumeDeviceNotFound) as caught:
        connection.check_block_device('v', str(regular))
    assert 'not a block device' in str(caught.value)


def test_iscsi_missing_names_what_is_absent(monkeypatch):
    monkeypatch.setattr(connection, 'ISCSI_TRANSPORT', '/nonexistent/tcp')
    missing = connection.iscsi_missing()
    assert '/nonexistent/tcp is absent' in missing


def test_volume_operations_have_capability_keys():
    for name in ('attach_volume', 'live_attach_volume', 'detach_volume',
                 'swap_volume', 'extend_volume'):
        assert 'supports_' + name in contract.default_capabilities()
        assert contract.OPERATIONS[name].method in contract.PIPELINE_METHODS
