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

"""The libvirt backend booting from a real Glance, and snapshotting into it.

The project's test guest (a kernel, an initramfs and a small qcow2 disk)
is uploaded into Glance as Glance keeps such guests: the kernel as an AKI
image, the initramfs as an ARI image, and the disk with ``kernel_id``,
``ramdisk_id`` and ``os_command_line`` properties naming them, as Nova's
libvirt driver boots them.
"""

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import time
import uuid as uuidlib

import pytest

libvirt = pytest.importorskip('libvirt')
from compute_driver import exception  # noqa: E402
from compute_driver.image import exception as image_exception  # noqa: E402
from compute_driver.image import local  # noqa: E402
from compute_driver.libvirt import images  # noqa: E402
from compute_driver.libvirt import mapping  # noqa: E402
from compute_driver import loader  # noqa: E402
from compute_driver import objects  # noqa: E402
from compute_driver.testing import fixtures  # noqa: E402
from compute_driver.testing import glance as glance_server  # noqa: E402
from compute_driver.testing import images as testing_images  # noqa: E402
from tests.functional import test_libvirt  # noqa: E402

TEST_IMAGE = os.path.join(test_libvirt.IMAGES_PATH, test_libvirt.IMAGE)
CMDLINE = 'console=ttyS0 panic=-1 quiet'
#: Seconds a CLI command may take before the test gives up (not a timing
#: check).
STEP_TIMEOUT = 180


@pytest.fixture(scope='module')
def server():
    test_libvirt._require_libvirtd()
    glance_server.require_glance_client()
    try:
        running = glance_server.GlanceServer().start()
    except glance_server.GlanceUnavailable as exc:
        fixtures.skip_or_fail(str(exc))
    yield running
    running.stop()


def _conf(url, **libvirt_opts):
    overrides = {
        'libvirt': dict(test_libvirt.OVERRIDES['libvirt'], **libvirt_opts),
        'image_service': {'backend': 'glance'},
        'glance': {'api_servers': [url], 'num_retries': 0},
    }
    return fixtures.make_conf('libvirt', overrides)


@pytest.fixture
def backend(server):
    conf = _conf(server.url)
    driver = loader.load_driver(conf, 'libvirt')
    driver.init_host(conf.host)
    driver.made = []
    driver.uploaded = []
    yield driver
    for instance in driver.made:
        driver.destroy(instance)
    for image_id in driver.uploaded:
        driver.image_service.delete(image_id)
    driver.cleanup_host(conf.host)


def _upload(backend, name, path, disk_format, container_format='bare',
            **kwargs):
    record = backend.image_service.upload(
        'cdglance-%s-%s' % (name, uuidlib.uuid4().hex[:6]), path,
        disk_format, container_format, **kwargs)
    backend.uploaded.append(record.id)
    return record


def _upload_guest(backend):
    """The test guest as Glance keeps it: AKI, ARI and a disk naming them."""
    kernel = _upload(backend, 'kernel', TEST_IMAGE + '.vmlinuz', 'aki',
                     'aki')
    ramdisk = _upload(backend, 'ramdisk', TEST_IMAGE + '.initrd', 'ari',
                      'ari')
    return _upload(backend, 'disk', TEST_IMAGE + '.qcow2', 'qcow2',
                   min_ram=64, properties={
                       'kernel_id': kernel.id, 'ramdisk_id': ramdisk.id,
                       'os_command_line': CMDLINE, 'os_type': 'linux'})


def _new(backend, image_ref, flavor=test_libvirt.FLAVOR):
    instance = objects.Instance.new(
        'cdglance-%s' % uuidlib.uuid4().hex[:8],
        test_libvirt.flavors.get_flavor(backend.conf, flavor)
        if isinstance(flavor, str) else flavor, image_ref)
    backend.made.append(instance)
    return instance


def _cached(backend):
    return {c.image_id for c in backend.image_cache.list()}


def _assert_not_made(backend, instance):
    conn = libvirt.open(test_libvirt.URI)
    try:
        names = [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()
    assert mapping.domain_name(instance.name) not in names
    assert not os.path.exists(
        os.path.join(test_libvirt.INSTANCES_PATH, instance.uuid))


def _assert_refused(backend, record, error, match=None,
                    flavor=test_libvirt.FLAVOR):
    # The spawn of an instance of record raises error and leaves nothing:
    # no domain, no instance directory, no cached copy of the image.
    instance = _new(backend, record.id, flavor=flavor)
    with pytest.raises(error, match=match):
        backend.spawn(instance)
    _assert_not_made(backend, instance)
    assert record.id not in _cached(backend)


def test_boot_snapshot_boot_again(backend):
    disk = _upload_guest(backend)
    instance = _new(backend, disk.id)
    backend.spawn(instance)
    test_libvirt._wait_for_console(backend, instance,
                                   test_libvirt.BOOT_LINE)
    assert disk.id in _cached(backend)

    name = 'cdglance-snap-%s' % uuidlib.uuid4().hex[:6]
    backend.snapshot(instance, name)
    snap = backend.image_service.show(name)
    backend.uploaded.append(snap.id)
    assert snap.status == 'active'
    assert (snap.disk_format, snap.container_format) == ('qcow2', 'bare')
    props = snap.properties
    assert props['image_type'] == 'snapshot'
    assert props['instance_uuid'] == instance.uuid
    assert props['base_image_ref'] == disk.id
    assert props['kernel_id'] == disk.properties['kernel_id']
    assert props['ramdisk_id'] == disk.properties['ramdisk_id']
    assert props['os_command_line'] == CMDLINE
    assert snap.id in backend._snapshots_of(instance)

    # What was uploaded is one standalone qcow2: no backing file.
    export = os.path.join(backend.image_cache.path, snap.id)
    backend.fetch_image(snap.to_image_meta())
    info = images.check_service_image(snap.id, export, 'qcow2')
    assert info.qemu_format == 'qcow2'

    again = _new(backend, snap.id)
    backend.spawn(again)
    test_libvirt._wait_for_console(backend, again, test_libvirt.BOOT_LINE)
    assert name in [m.name for m in backend.list_images()]


def test_second_boot_of_a_cached_image_transfers_nothing(backend, tmp_path):
    disk = _upload_guest(backend)
    counting = testing_images.CountingImageService(backend.image_service)
    backend.image_service = counting
    first = _new(backend, disk.id)
    backend.spawn(first, power_on=False)
    # The disk, the kernel and the ramdisk, each once.
    expected = sum(os.path.getsize(TEST_IMAGE + suffix)
                   for suffix in ('.qcow2', '.vmlinuz', '.initrd'))
    assert counting.downloaded == expected
    second = _new(backend, disk.name)
    backend.spawn(second, power_on=False)
    assert counting.downloaded == expected


class _RequestLog(testing_images.CountingImageService):
    """Counts, besides the bytes, the records asked for and handed on."""

    def __init__(self, inner):
        super().__init__(inner)
        self.calls = []

    def show(self, image):
        with self._lock:
            self.calls.append(('show', image))
        return super().show(image)

    def show_ids(self, image_ids):
        image_ids = list(image_ids)
        with self._lock:
            self.calls.append(('show_ids', tuple(sorted(image_ids))))
        return super().show_ids(image_ids)

    def download(self, image_id, dest, record=None):
        with self._lock:
            self.calls.append(('download', image_id, record is not None))
        return super().download(image_id, dest, record)


def test_cold_boot_reads_the_boot_files_records_at_once(backend):
    disk = _upload_guest(backend)
    props = disk.properties
    log = _RequestLog(backend.image_service)
    backend.image_service = log
    instance = _new(backend, disk.id)
    backend.spawn(instance, power_on=False)
    # The disk's record, then the kernel's and the ramdisk's together;
    # each download verifies against the record read, reading none.
    assert sorted(log.calls) == sorted([
        ('show', disk.id),
        ('show_ids', tuple(sorted((props['kernel_id'],
                                   props['ramdisk_id'])))),
        ('download', disk.id, True),
        ('download', props['kernel_id'], True),
        ('download', props['ramdisk_id'], True)])
    log.calls.clear()
    # Cached, the kernel and ramdisk cost no request at all.
    backend.spawn(_new(backend, disk.id), power_on=False)
    assert log.calls == [('show', disk.id)]


def test_boot_file_refused_after_the_disk_is_made_leaves_nothing(backend):
    # The instance disk is made while the kernel and ramdisk download: a
    # ramdisk that fails then takes the disk and directory with it.
    kernel = _upload(backend, 'kernel', TEST_IMAGE + '.vmlinuz', 'aki',
                     'aki')
    disk = _upload(backend, 'disk', TEST_IMAGE + '.qcow2', 'qcow2',
                   min_ram=64, properties={
                       'kernel_id': kernel.id,
                       'ramdisk_id': str(uuidlib.uuid4()),
                       'os_command_line': CMDLINE})
    instance = _new(backend, disk.id)
    with pytest.raises(image_exception.ImageNotInService):
        backend.spawn(instance)
    _assert_not_made(backend, instance)


def test_unknown_image_id_is_refused(backend):
    before = _cached(backend)
    instance = _new(backend, str(uuidlib.uuid4()))
    with pytest.raises(image_exception.ImageNotInService):
        backend.spawn(instance)
    _assert_not_made(backend, instance)
    assert _cached(backend) == before


def test_checksum_mismatch_is_refused_and_leaves_nothing(backend, server,
                                                         tmp_path):
    path = tmp_path / 'disk.raw'
    path.write_bytes(os.urandom(1024 * 1024))
    record = _upload(backend, 'corrupt', str(path), 'raw')
    stored = os.path.join(server.store_dir, record.id)
    with open(stored, 'r+b') as handle:
        handle.write(b'\0' * 16)
    _assert_refused(backend, record, image_exception.ImageChecksumMismatch)
    assert not [e for e in os.listdir(backend.image_cache.path)
                if record.id in e]


def _qemu_img(*args):
    subprocess.run(['qemu-img', *args], check=True, capture_output=True)


def _unchecking_service(backend, tmp_path):
    """A local image service, which stores what Glance would refuse.

    Glance 33 inspects uploads itself and refuses these images; the
    backend must refuse them all the same, whatever service it uses.
    """
    backend.image_service = local.LocalImageService(str(tmp_path / 'local'))
    return backend.image_service


def test_qcow2_with_a_host_backing_file_is_refused(backend, tmp_path):
    base = tmp_path / 'base.raw'
    base.write_bytes(b'secret host data' * 64)
    overlay = tmp_path / 'overlay.qcow2'
    _qemu_img('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', str(base),
              str(overlay))
    with pytest.raises(image_exception.ImageUploadFailed,
                       match='safety checks'):
        _upload(backend, 'backed', str(overlay), 'qcow2')
    service = _unchecking_service(backend, tmp_path)
    record = service.upload('backed', str(overlay), 'qcow2', 'bare')
    _assert_refused(backend, record, exception.ImageUnacceptable,
                    match='backing file')


def test_qcow2_declared_raw_is_refused(backend, tmp_path):
    disk = tmp_path / 'disk.qcow2'
    _qemu_img('create', '-q', '-f', 'qcow2', str(disk), '16M')
    service = _unchecking_service(backend, tmp_path)
    record = service.upload('mislabelled', str(disk), 'raw', 'bare')
    _assert_refused(backend, record, exception.ImageFormatMismatch)


def test_qcow2_qemu_img_refuses_after_the_disk_is_made_leaves_nothing(
        backend, tmp_path):
    # The header passes; qemu-img info, which runs while the instance disk
    # is made, refuses the image before the guest is defined.
    disk = tmp_path / 'disk.qcow2'
    _qemu_img('create', '-q', '-f', 'qcow2', str(disk), '16M')
    with open(disk, 'r+b') as handle:
        # The L1 table's offset, off a cluster boundary.
        handle.seek(40)
        handle.write((3).to_bytes(8, 'big'))
    service = _unchecking_service(backend, tmp_path)
    record = service.upload('bad-tables', str(disk), 'qcow2', 'bare')
    _assert_refused(backend, record, exception.ImageUnacceptable, match='L1')


def test_image_larger_than_the_root_disk_is_refused(backend, tmp_path):
    disk = tmp_path / 'big.qcow2'
    # Small on disk, 2 GiB to the guest.
    _qemu_img('create', '-q', '-f', 'qcow2', str(disk), '2G')
    record = _upload(backend, 'big', str(disk), 'qcow2')
    flavor = objects.Flavor('cdglance.1g', 1, 64, root_gb=1)
    _assert_refused(backend, record, exception.ImageUnacceptable,
                    match='root disk', flavor=flavor)


def test_vhd_image_is_converted_and_boots(backend, tmp_path):
    disk = tmp_path / 'disk.vhd'
    _qemu_img('convert', '-q', '-f', 'qcow2', '-O', 'vpc',
              TEST_IMAGE + '.qcow2', str(disk))
    guest = _upload_guest(backend)
    record = _upload(backend, 'vhd', str(disk), 'vhd',
                     properties={k: guest.properties[k] for k in (
                         'kernel_id', 'ramdisk_id', 'os_command_line')})
    instance = _new(backend, record.id)
    backend.spawn(instance)
    test_libvirt._wait_for_console(backend, instance,
                                   test_libvirt.BOOT_LINE)


def test_glance_unreachable_is_refused(server):
    with socket.socket() as sock:
        # A port nothing listens on once closed.
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    conf = _conf('http://127.0.0.1:%d' % port)
    backend = loader.load_driver(conf, 'libvirt')
    backend.init_host(conf.host)
    try:
        instance = objects.Instance.new(
            'cdglance-%s' % uuidlib.uuid4().hex[:8],
            test_libvirt.flavors.get_flavor(conf, test_libvirt.FLAVOR),
            str(uuidlib.uuid4()))
        with pytest.raises(image_exception.ImageServiceUnavailable):
            backend.spawn(instance)
        _assert_not_made(backend, instance)
    finally:
        backend.cleanup_host(conf.host)


@pytest.fixture
def keystone_glance():
    """A real Glance behind Keystone's auth_token: it refuses us with 401."""
    glance_server.require_glance_client()
    try:
        running = glance_server.GlanceServer(keystone=True).start()
    except glance_server.GlanceUnavailable as exc:
        fixtures.skip_or_fail(str(exc))
    yield running
    running.stop()


@contextlib.contextmanager
def _backend_of(url, instances_path):
    """A libvirt backend on Glance ``url`` keeping its files elsewhere."""
    conf = _conf(url, instances_path=str(instances_path))
    backend = loader.load_driver(conf, 'libvirt')
    backend.init_host(conf.host)
    try:
        yield backend
    finally:
        backend.cleanup_host(conf.host)


def _new_instance(backend, image_id):
    return objects.Instance.new(
        'cdglance-%s' % uuidlib.uuid4().hex[:8],
        test_libvirt.flavors.get_flavor(backend.conf, test_libvirt.FLAVOR),
        image_id)


def test_glance_refusing_auth_is_refused(keystone_glance, tmp_path):
    test_libvirt._require_libvirtd()
    with _backend_of(keystone_glance.url, tmp_path) as backend:
        instance = _new_instance(backend, str(uuidlib.uuid4()))
        with pytest.raises(image_exception.ImageServiceUnavailable,
                           match='authentication refused'):
            backend.spawn(instance)
        _assert_not_made(backend, instance)
        assert backend.image_cache.list() == []
    # Glance refused before doing anything: its store is still empty.
    assert os.listdir(keystone_glance.store_dir) == []


@pytest.fixture
def small_fs(tmp_path):
    """A real 8 MiB filesystem (tmpfs), to fill up; root only."""
    mount = tmp_path / 'small'
    mount.mkdir()
    result = subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'size=8m,mode=0711',
         'cdglance-small', str(mount)], capture_output=True, text=True,
        check=False)
    if result.returncode != 0:
        fixtures.skip_or_fail('cannot mount a tmpfs to fill up: %s'
                              % result.stderr.strip())
    yield mount
    subprocess.run(['umount', str(mount)], check=True)


def _fill_up_image(backend, tmp_path):
    """An image in Glance larger than :func:`small_fs`."""
    path = tmp_path / 'large.raw'
    path.write_bytes(os.urandom(24 * 1024 * 1024))
    return _upload(backend, 'large', str(path), 'raw')


def _service_state(backend):
    return sorted((r.id, r.status, r.size)
                  for r in backend.image_service.list())


def test_disk_full_during_download_leaves_nothing(server, backend, small_fs,
                                                  tmp_path):
    record = _fill_up_image(backend, tmp_path)
    before = _service_state(backend)
    with _backend_of(server.url, small_fs) as full:
        instance = _new_instance(full, record.id)
        with pytest.raises(image_exception.ImageDownloadIncomplete,
                           match='No space left on device'):
            full.spawn(instance)
        _assert_not_made(full, instance)
        assert not os.path.exists(os.path.join(small_fs, instance.uuid))
        # No image and no partial file: only the directory's lock files.
        assert full.image_cache.list() == []
        assert [name for name in os.listdir(full.image_cache.path)
                if name != '.locks'] == []
    assert _service_state(backend) == before


def test_boot_killed_mid_download_leaves_nothing_after_the_sweep(
        server, backend, tmp_path):
    # The instance disk is made while the image, kernel and ramdisk
    # download: a boot killed then has made its overlay and holds a
    # partial download, which the next command's sweep removes with the
    # spawn's leftovers.
    from tests.functional import test_glance
    disk = _upload_guest(backend)
    kernel_id = disk.properties['kernel_id']
    instances = os.path.join(os.path.dirname(test_libvirt.INSTANCES_PATH),
                             'glancekill-%s' % uuidlib.uuid4().hex[:8])
    name = 'cdglance-kill-%s' % uuidlib.uuid4().hex[:6]
    boot = {}
    overlays = []

    def kill_once_the_overlay_is_made():
        # Called by the proxy with the kernel's answer held mid-stream.
        deadline = time.monotonic() + STEP_TIMEOUT
        while not overlays and time.monotonic() < deadline:
            overlays.extend(glob.glob(os.path.join(instances, '*', 'disk')))
            time.sleep(0.05)
        boot['process'].kill()

    # Only the kernel (14 MiB) has an answer this long.
    proxy = test_glance.CuttingProxy(
        server.port, cut_after=4 * test_glance.MIB,
        on_cut=kill_once_the_overlay_is_made)
    conf_file = tmp_path / 'compute-driver.conf'
    conf_file.write_text('\n'.join([
        '[DEFAULT]', 'compute_driver = libvirt', 'host = glancekill',
        '[libvirt]', 'virt_type = qemu',
        'connection_uri = %s' % test_libvirt.URI,
        'images_path = %s' % test_libvirt.IMAGES_PATH,
        'instances_path = %s' % instances, 'lifecycle_event_delay = 0',
        '[image_service]', 'backend = glance',
        '[glance]', 'api_servers = %s' % proxy.url, 'num_retries = 0',
    ]) + '\n')

    def run(*argv):
        result = subprocess.run(
            [fixtures.console_script(), '--config-file', str(conf_file),
             *argv], capture_output=True, text=True,
            timeout=STEP_TIMEOUT)
        assert result.returncode == 0, result.stderr
        assert 'Traceback' not in result.stderr, result.stderr
        return result

    cache = os.path.join(instances, '_base', images.SERVICE_CACHE_DIR)
    try:
        boot['process'] = subprocess.Popen(
            [fixtures.console_script(), '--config-file', str(conf_file),
             'boot', name, '--image', disk.id, '--flavor',
             test_libvirt.FLAVOR], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        assert boot['process'].wait(STEP_TIMEOUT) == -9
        assert proxy.cuts == 1
        assert len(overlays) == 1, 'no overlay made during the download'
        uuid = os.path.basename(os.path.dirname(overlays[0]))
        assert any(n.startswith('.%s.part-' % kernel_id)
                   for n in os.listdir(cache))
        rows = json.loads(run('cleanup', '-f', 'json').stdout)
        assert [(r['Backend'], r['Reason'], r['Result']) for r in rows] == [
            ('libvirt', 'its spawn was interrupted', 'removed'),
            ('libvirt', 'a partial image download', 'removed')]
        assert not os.path.exists(os.path.join(instances, uuid))
        assert test_libvirt.instances_entries(instances) == ['_base']
        # The disk and ramdisk, whole and verified, stay cached.
        assert sorted(os.listdir(cache)) == sorted([
            '.locks', disk.id, disk.properties['ramdisk_id']])
        assert name not in [r['Name'] for r in json.loads(
            run('list', '-f', 'json').stdout)]
    finally:
        proxy.close()
        process = boot.get('process')
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(instances, ignore_errors=True)
