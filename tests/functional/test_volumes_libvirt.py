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

"""Volumes on the libvirt backend: loop devices as virtio disks of QEMU
guests, hot-plugged, cold-plugged and booted from.

The test image's init (``tools/build-libvirt-test-image.sh``) loads
virtio_blk and prints ``/proc/partitions`` and the first line of each new
virtio disk on the console whenever a disk appears or goes, which is what
these tests read.
"""

import gzip
import json
import os
import time
import xml.etree.ElementTree as ET

import pytest

libvirt = pytest.importorskip('libvirt')
pytest.importorskip('os_brick')

from compute_driver import exception  # noqa: E402
from compute_driver import loader  # noqa: E402
from compute_driver import power_state  # noqa: E402
from compute_driver.testing import fixtures  # noqa: E402
from compute_driver.volume import exception as vol_exc  # noqa: E402
from tests.functional import test_libvirt as base  # noqa: E402
from tests.functional import volume_env  # noqa: E402
from tests.functional.volume_env import loops  # noqa: E402,F401

#: Where the test image with the volume block is; the default store's
#: unless a run points elsewhere while the shared image is being rebuilt.
IMAGES_PATH = os.environ.get('CDTEST_LIBVIRT_IMAGES_PATH', base.IMAGES_PATH)


def _require_volume_image():
    initrd = os.path.join(IMAGES_PATH, base.IMAGE + '.initrd')
    try:
        with gzip.open(initrd) as handle:
            has_block = b'cdvol: block devices' in handle.read()
    except OSError as exc:
        fixtures.skip_or_fail('cannot read the test image %s: %s'
                              % (initrd, exc))
    if not has_block:
        fixtures.skip_or_fail(
            'the test image in %s predates volume support; rebuild it with '
            'FORCE=1 tools/build-libvirt-test-image.sh' % IMAGES_PATH)


@pytest.fixture
def backend():
    base._require_libvirtd()
    _require_volume_image()
    overrides = {'libvirt': dict(base.OVERRIDES['libvirt'],
                                 images_path=IMAGES_PATH),
                 'volume': {'detach_timeout': 120}}
    conf = fixtures.make_conf('libvirt', overrides)
    driver = loader.load_driver(conf, 'libvirt')
    driver.init_host(conf.host)
    driver.made = []
    yield driver
    for instance in driver.made:
        driver.destroy(instance)
    driver.cleanup_host(conf.host)


def _console(backend, instance):
    # The serial console ends its lines with CR LF.
    return backend.get_console_output(instance).replace('\r\n', '\n')


def _wait_for(backend, instance, text, after=0):
    """Wait until ``text`` appears in the console past offset ``after``."""
    deadline = time.monotonic() + base.BOOT_TIMEOUT
    while True:
        output = _console(backend, instance)
        if text in output[after:]:
            return output
        if time.monotonic() > deadline:
            pytest.fail('%r not in the console of %s:\n%s'
                        % (text, instance.name, output[-3000:]))
        time.sleep(0.5)


def _disk(instance, dev):
    conn = libvirt.open(base.URI)
    try:
        root = ET.fromstring(conn.lookupByUUIDString(instance.uuid).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE))
    finally:
        conn.close()
    for disk in root.findall('devices/disk'):
        if disk.find('target').get('dev') == dev:
            return disk
    return None


def _disks(instance, inactive=False):
    conn = libvirt.open(base.URI)
    try:
        dom = conn.lookupByUUIDString(instance.uuid)
        root = ET.fromstring(dom.XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0))
    finally:
        conn.close()
    return {d.find('target').get('dev'):
            (d.find('source').get('dev') or d.find('source').get('file'))
            for d in root.findall('devices/disk')}


def test_hotplug_carries_data_to_another_instance(backend, loops):  # noqa
    device = loops.make(marker=b'cdvol-hotplug-data')
    info = volume_env.local(device, 'vol-hot')
    first = base._new(backend)
    second = base._new(backend)
    base._spawn(backend, first)
    base._spawn(backend, second)
    _wait_for(backend, first, base.BOOT_LINE)
    start = len(_console(backend, first))
    backend.attach_volume(first, info, '/dev/vdb')
    _wait_for(backend, first, 'vdb starts with: cdvol-hotplug-data', start)
    assert _disks(first)['vdb'] == device
    assert _disks(first, inactive=True)['vdb'] == device
    [attachment] = backend.list_volume_attachments(first)
    assert (attachment.volume_id, attachment.mountpoint) == ('vol-hot',
                                                             '/dev/vdb')

    # Bad input while it is attached: one typed error, nothing changed.
    _wait_for(backend, second, base.BOOT_LINE)
    with pytest.raises(vol_exc.VolumeInUse) as caught:
        backend.attach_volume(second, volume_env.local(device, 'vol-x'),
                              '/dev/vdb')
    assert 'qemu' in str(caught.value)
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.attach_volume(first, info, '/dev/vdc')
    with pytest.raises(vol_exc.VolumeDeviceNotFound):
        backend.attach_volume(first, volume_env.local('/dev/cdtest-none'),
                              '/dev/vdc')
    with pytest.raises(vol_exc.VolumeNotAttached):
        backend.detach_volume(second, info, '/dev/vdb')
    assert 'vdb' not in _disks(second)
    assert sorted(_disks(first)) == ['vda', 'vdb']

    start = len(_console(backend, first))
    backend.detach_volume(first, info, '/dev/vdb')
    assert 'vdb' not in _disks(first)
    assert 'vdb' not in _disks(first, inactive=True)
    assert backend.list_volume_attachments(first) == []
    _wait_for(backend, first, 'cdvol: block devices: vda \n', start)

    start = len(_console(backend, second))
    backend.attach_volume(second, info, '/dev/vdc')
    # The guest's kernel names virtio disks in the order it finds them:
    # libvirt's target is a hint, and this one is the guest's vdb.
    assert _disks(second)['vdc'] == device
    _wait_for(backend, second, 'vdb starts with: cdvol-hotplug-data', start)
    assert loops.read(device, 18) == b'cdvol-hotplug-data'


def test_cold_attach_is_seen_at_boot_and_cold_detach_is_not(
        backend, loops):  # noqa: F811
    device = loops.make(marker=b'cdvol-cold-data')
    instance = base._new(backend)
    backend.spawn(instance, power_on=False)
    info = volume_env.local(device, 'vol-cold')
    backend.attach_volume(instance, info, '/dev/vdb')
    assert _disks(instance, inactive=True)['vdb'] == device
    # The disk is the attachment's record.
    disk = _disk(instance, 'vdb')
    assert disk.find('alias').get('name') == 'ua-cdvol-vol-cold'
    assert disk.find('serial').text == 'vol-cold'

    # Bad input on a shut-off guest: one typed error, definition unchanged.
    other = loops.make()
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.attach_volume(instance, info, '/dev/vdc')
    with pytest.raises(vol_exc.MountpointInUse):
        backend.attach_volume(instance, volume_env.local(other, 'vol-x'),
                              '/dev/vdb')
    with pytest.raises(vol_exc.MountpointInUse):
        backend.attach_volume(instance, volume_env.local(other, 'vol-x'),
                              '/dev/vda')
    with pytest.raises(vol_exc.VolumeDeviceNotFound):
        backend.attach_volume(instance, volume_env.local('/dev/cdtest-none'),
                              '/dev/vdc')
    with pytest.raises(vol_exc.VolumeNotAttached):
        backend.detach_volume(instance, volume_env.local(other, 'vol-x'))
    assert _disks(instance, inactive=True) == {'vda': _disks(instance)['vda'],
                                               'vdb': device}
    assert [a.volume_id for a in backend.list_volume_attachments(
        instance)] == ['vol-cold']

    backend.power_on(instance)
    _wait_for(backend, instance, 'vdb starts with: cdvol-cold-data')
    backend.power_off(instance)
    backend.detach_volume(instance, info)
    assert 'vdb' not in _disks(instance, inactive=True)
    assert backend.list_volume_attachments(instance) == []
    start = len(_console(backend, instance))
    backend.power_on(instance)
    _wait_for(backend, instance, 'cdvol: block devices: vda \n', start)
    backend.destroy(instance)
    base._assert_nothing_left(instance)
    # QEMU is gone: nothing on the host holds the device any more.
    volume_env.check_free(device)


def test_attachment_of_an_earlier_release_is_detached(
        backend, loops):  # noqa: F811
    # Earlier releases recorded attachments in the domain's metadata, their
    # disks bearing no alias.
    old = loops.make()
    new = loops.make()
    instance = base._new(backend)
    backend.spawn(instance, power_on=False)
    conn = libvirt.open(base.URI)
    try:
        dom = conn.lookupByUUIDString(instance.uuid)
        dom.attachDeviceFlags(
            "<disk type='block' device='disk'><driver name='qemu' "
            "type='raw' cache='none' io='native'/><source dev='%s'/>"
            "<target dev='vdb' bus='virtio'/></disk>" % old,
            libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        record = volume_env.local(old, 'vol-old')
        dom.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            '<volumes>[{"boot_index":null,"connection_info":%s,'
            '"device_path":"%s","mountpoint":"/dev/vdb",'
            '"volume_id":"vol-old"}]</volumes>' % (
                json.dumps(record), old),
            'cdvol', 'http://openstack.org/compute-driver/volumes/1',
            libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    finally:
        conn.close()
    [listed] = backend.list_volume_attachments(instance)
    assert (listed.volume_id, listed.mountpoint, listed.device_path) == (
        'vol-old', '/dev/vdb', old)
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.attach_volume(instance, record, '/dev/vdc')
    backend.attach_volume(instance, volume_env.local(new, 'vol-new'),
                          '/dev/vdc')
    assert [a.volume_id for a in backend.list_volume_attachments(
        instance)] == ['vol-old', 'vol-new']
    backend.detach_volume(instance, record)
    assert sorted(_disks(instance, inactive=True)) == ['vda', 'vdc']
    assert [a.volume_id for a in backend.list_volume_attachments(
        instance)] == ['vol-new']
    backend.detach_volume(instance, volume_env.local(new, 'vol-new'))
    assert sorted(_disks(instance, inactive=True)) == ['vda']
    backend.destroy(instance)
    base._assert_nothing_left(instance)


def test_boot_from_volume(backend, loops):  # noqa: F811
    root = loops.make(size_mb=64, marker=b'cdvol-root-volume')
    data = loops.make(marker=b'cdvol-data-volume')
    instance = base._new(backend)
    backend.spawn(instance, block_device_info=volume_env.bdi(
        (volume_env.local(root, 'vol-root'), '/dev/vda'),
        (volume_env.local(data, 'vol-data'), '/dev/vdb'), root='/dev/vda'))
    assert _disks(instance) == {'vda': root, 'vdb': data}
    output = _wait_for(backend, instance, 'vdb starts with: cdvol-data')
    assert 'vda starts with: cdvol-root-volume' in output
    assert not os.path.exists(os.path.join(base.INSTANCES_PATH,
                                           instance.uuid, 'disk'))
    assert [a.volume_id for a in backend.list_volume_attachments(
        instance)] == ['vol-root', 'vol-data']
    with pytest.raises(exception.NotSupported):
        backend.snapshot(instance, 'cdvol-snap-%s' % instance.uuid[:8])
    with pytest.raises(exception.NotSupported):
        backend.swap_volume(instance, volume_env.local(root, 'vol-root'),
                            volume_env.local(loops.make(64), 'vol-new'),
                            '/dev/vda')
    backend.power_off(instance)
    bigger = loops.make(size_mb=80)
    backend.swap_volume(instance, volume_env.local(root, 'vol-root'),
                        volume_env.local(bigger, 'vol-new'), '/dev/vda')
    assert _disks(instance, inactive=True)['vda'] == bigger
    backend.power_on(instance)
    _wait_for(backend, instance, 'vda starts with: cdvol-root-volume',
              len(_console(backend, instance)))
    assert backend.get_info(instance).state == power_state.RUNNING


def test_spawn_with_a_missing_volume_leaves_nothing(backend,
                                                    loops):  # noqa: F811
    instance = base._new(backend)
    with pytest.raises(vol_exc.VolumeDeviceNotFound):
        backend.spawn(instance, block_device_info=volume_env.bdi(
            (volume_env.local(loops.make(), 'vol-ok'), '/dev/vdb'),
            (volume_env.local('/dev/cdtest-none'), '/dev/vdc')))
    base._assert_nothing_left(instance)
