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

"""Volumes on the fake backend, with real loop devices and os-brick."""

import os
import shutil
import subprocess

import pytest

from compute_driver import exception
from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures
from compute_driver.volume import exception as vol_exc
from tests.functional import volume_env
from tests.functional.volume_env import loops  # noqa: F401

pytest.importorskip('os_brick')


@pytest.fixture
def backend():
    conf = fixtures.make_conf('fake', {'fake': {'images': ['cirros']}})
    driver = loader.load_driver(conf, 'fake')
    driver.init_host(conf.host)
    return driver


def _instance(backend, name='vol-fake'):
    return objects.Instance.new(name, flavors.get_flavor(backend.conf,
                                                         'm1.tiny'),
                                'cirros')


def test_attach_detach_and_list(backend, loops):  # noqa: F811
    device = loops.make()
    instance = _instance(backend)
    backend.spawn(instance)
    info = volume_env.local(device, 'vol-a')
    backend.attach_volume(instance, info, '/dev/vdb')
    [attachment] = backend.list_volume_attachments(instance)
    assert (attachment.volume_id, attachment.mountpoint,
            attachment.device_path) == ('vol-a', '/dev/vdb', device)
    assert 'hot-plugged disk /dev/vdb' in backend.get_console_output(instance)
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.attach_volume(instance, info, '/dev/vdc')
    other = _instance(backend, 'vol-fake-2')
    backend.spawn(other)
    with pytest.raises(vol_exc.VolumeInUse):
        backend.attach_volume(other, volume_env.local(device, 'vol-b'),
                              '/dev/vdb')
    backend.detach_volume(instance, info, '/dev/vdb')
    assert backend.list_volume_attachments(instance) == []
    with pytest.raises(vol_exc.VolumeNotAttached):
        backend.detach_volume(instance, info, '/dev/vdb')
    backend.attach_volume(other, info, '/dev/vdb')
    assert [a.volume_id for a in backend.list_volume_attachments(other)] == [
        'vol-a']


def test_bad_input_leaves_nothing(backend, loops, tmp_path):  # noqa: F811
    instance = _instance(backend)
    backend.spawn(instance)
    device = loops.make()
    backend.attach_volume(instance, volume_env.local(device, 'v1'),
                          '/dev/vdb')
    cases = [
        (volume_env.local('/dev/cdtest-missing'), '/dev/vdc',
         vol_exc.VolumeDeviceNotFound),
        (volume_env.local(loops.make(), 'v2'), '/dev/vdb',
         vol_exc.MountpointInUse),
        ({'driver_volume_type': 'iscsi',
          'data': {'target_portal': '127.0.0.1:9', 'target_lun': 1,
                   'target_iqn': 'iqn.2010-10.org.example:nothing'}},
         '/dev/vdc', vol_exc.VolumeConnectionFailed),
        (volume_env.local(device, 'v1'), '/dev/vdc', exception.InvalidInput),
    ]
    for info, mount, error in cases[:3]:
        with pytest.raises(error):
            backend.attach_volume(instance, info, mount)
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.attach_volume(instance, volume_env.local(device, 'v1'),
                              '/dev/vdc')
    with pytest.raises(exception.InvalidInput):
        backend.attach_volume(instance, volume_env.local(device, 'v3'),
                              'vdc')
    assert [a.volume_id for a in backend.list_volume_attachments(
        instance)] == ['v1']


def test_suspended_instance_is_refused(backend, loops):  # noqa: F811
    instance = _instance(backend)
    backend.spawn(instance)
    backend.suspend(instance)
    with pytest.raises(exception.InvalidPowerState):
        backend.attach_volume(instance, volume_env.local(loops.make()),
                              '/dev/vdb')
    assert backend.get_info(instance).state == power_state.SUSPENDED


def test_boot_from_volume_swap_extend_destroy(backend, loops):  # noqa: F811
    root = loops.make(marker=b'root-data')
    data = loops.make()
    instance = _instance(backend)
    backend.spawn(instance, block_device_info=volume_env.bdi(
        (volume_env.local(root, 'root'), '/dev/vda'),
        (volume_env.local(data, 'data'), '/dev/vdb'), root='/dev/vda'))
    attachments = backend.list_volume_attachments(instance)
    assert [(a.volume_id, a.boot_index) for a in attachments] == [
        ('root', 0), ('data', None)]
    bigger = loops.make(size_mb=32)
    with pytest.raises(exception.NotSupported):
        backend.swap_volume(instance, volume_env.local(root, 'root'),
                            volume_env.local(bigger, 'root2'), '/dev/vda')
    backend.power_off(instance)
    backend.swap_volume(instance, volume_env.local(root, 'root'),
                        volume_env.local(bigger, 'root2'), '/dev/vda')
    assert loops.read(bigger, 9) == b'root-data'
    backend.extend_volume(instance, volume_env.local(data, 'data'), 1 << 20)
    with pytest.raises(exception.InvalidInput):
        backend.extend_volume(instance, volume_env.local(data, 'data'),
                              1 << 40)
    backend.destroy(instance)
    other = _instance(backend, 'vol-fake-2')
    backend.spawn(other, block_device_info=volume_env.bdi(
        (volume_env.local(bigger, 'root2'), '/dev/vda'), root='/dev/vda'))


def test_spawn_with_missing_volume_leaves_nothing(backend, loops):  # noqa
    instance = _instance(backend)
    with pytest.raises(vol_exc.VolumeDeviceNotFound):
        backend.spawn(instance, block_device_info=volume_env.bdi(
            (volume_env.local(loops.make(), 'ok'), '/dev/vdb'),
            (volume_env.local('/dev/cdtest-missing'), '/dev/vdc')))
    assert backend.list_instances() == []


def _device_mapper_missing():
    if not os.path.exists('/dev/mapper/control'):
        return ('this kernel has no device-mapper (/dev/mapper/control is '
                'absent and no dm module can be loaded), which LVM needs')
    for tool in ('pvcreate', 'vgcreate', 'lvcreate', 'vgremove'):
        if not shutil.which(tool):
            return '%s (lvm2) is not installed' % tool
    return None


def test_lvm_logical_volume_on_a_loop_device(backend, loops):  # noqa: F811
    missing = _device_mapper_missing()
    if missing:
        pytest.skip('LVM volumes cannot be tested on this host: %s'
                    % missing)
    physical = loops.make(size_mb=64)
    group = 'cdtestvol%d' % os.getpid()
    subprocess.run(['pvcreate', '-q', physical], check=True)
    subprocess.run(['vgcreate', '-q', group, physical], check=True)
    try:
        subprocess.run(['lvcreate', '-q', '-y', '-L', '16M', '-n', 'lv1',
                        group], check=True)
        device = '/dev/%s/lv1' % group
        instance = _instance(backend)
        backend.spawn(instance)
        backend.attach_volume(instance, volume_env.local(device, 'lvm'),
                              '/dev/vdb')
        # The physical volume is held by device-mapper: in use.
        with pytest.raises(vol_exc.VolumeInUse):
            backend.attach_volume(instance, volume_env.local(physical),
                                  '/dev/vdc')
        backend.detach_volume(instance, volume_env.local(device, 'lvm'))
        backend.destroy(instance)
    finally:
        subprocess.run(['vgremove', '-q', '-f', group], check=False)
        subprocess.run(['pvremove', '-q', physical], check=False)
