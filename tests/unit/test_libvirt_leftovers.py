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

"""Image format inspection, spawn markers and the sweep of the libvirt
backend, on libvirt's ``test:///default`` driver (see test_libvirt)."""

import json
import os
import shutil
import stat
import subprocess

import pytest

libvirt = pytest.importorskip('libvirt')

from compute_driver import exception  # noqa: E402
from compute_driver import leftovers  # noqa: E402
from compute_driver.libvirt import images  # noqa: E402
from compute_driver.libvirt import mapping  # noqa: E402
from compute_driver import power_state  # noqa: E402
from compute_driver.testing import fixtures  # noqa: E402
from tests.unit import test_libvirt  # noqa: E402

IMAGE = test_libvirt.IMAGE


def _qemu_img(*args):
    if shutil.which('qemu-img') is None:
        fixtures.skip_or_fail('qemu-img is not installed (Debian package '
                              'qemu-utils)')
    subprocess.run(['qemu-img', *args], check=True, capture_output=True)


@pytest.fixture
def samples(tmp_path):
    """Small files of each format, made by qemu-img or by hand."""
    d = tmp_path / 'samples'
    d.mkdir()
    for name, fmt, opts in (
            ('plain.qcow2', 'qcow2', []),
            ('v2.qcow2', 'qcow2', ['-o', 'compat=0.10']),
            ('a.vmdk', 'vmdk', []), ('a.vhd', 'vpc', []),
            ('a.vhdx', 'vhdx', []), ('a.vdi', 'vdi', []),
            ('a.qed', 'qed', [])):
        _qemu_img('create', '-q', '-f', fmt, *opts, str(d / name), '1M')
    _qemu_img('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b',
              str(d / 'plain.qcow2'), str(d / 'backed.qcow2'))
    _qemu_img('create', '-q', '-f', 'qcow2', '-o',
              'data_file=%s' % (d / 'ext.raw'), str(d / 'ext.qcow2'), '1M')
    iso = bytearray(64 * 1024)
    iso[0x8001:0x8006] = b'CD001'
    (d / 'a.iso').write_bytes(bytes(iso))
    (d / 'zeros.raw').write_bytes(b'\0' * 4096)
    (d / 'tiny.raw').write_bytes(b'x')
    return d


@pytest.mark.parametrize('name, expected, unsafe', [
    ('plain.qcow2', 'qcow2', ''),
    ('v2.qcow2', 'qcow2', ''),
    ('backed.qcow2', 'qcow2', 'backing file'),
    ('ext.qcow2', 'qcow2', 'external data file'),
    ('a.vmdk', 'vmdk', ''), ('a.vhd', 'vhd', ''), ('a.vhdx', 'vhdx', ''),
    ('a.vdi', 'vdi', ''), ('a.qed', 'qed', ''), ('a.iso', 'iso', ''),
    ('zeros.raw', 'raw', ''), ('tiny.raw', 'raw', ''),
])
def test_inspect_format(samples, name, expected, unsafe):
    found = images.inspect_format(str(samples / name))
    assert found.format == expected
    assert unsafe in found.unsafe
    assert bool(found.unsafe) == bool(unsafe)


def test_data_file_named_without_the_feature_bit_is_unsafe(samples):
    # Clearing the incompatible-features bit leaves the header extension
    # naming the file, which qemu would still follow.
    path = samples / 'ext.qcow2'
    data = bytearray(path.read_bytes())
    data[72:80] = b'\0' * 8
    path.write_bytes(bytes(data))
    assert 'data file' in images.inspect_format(str(path)).unsafe


def test_corrupt_qcow2_header(tmp_path):
    path = tmp_path / 'bad.qcow2'
    path.write_bytes(b'QFI\xfb' + b'\xff' * 200)
    assert 'corrupt' in images.inspect_format(str(path)).unsafe
    path.write_bytes(b'QFI\xfb\0\0')
    assert 'truncated' in images.inspect_format(str(path)).unsafe


@pytest.mark.parametrize('name, declared, error', [
    ('plain.qcow2', 'raw', exception.ImageFormatMismatch),
    ('zeros.raw', 'qcow2', exception.ImageFormatMismatch),
    ('a.vmdk', 'qcow2', exception.ImageFormatMismatch),
    ('a.vhd', 'raw', exception.ImageFormatMismatch),
    ('backed.qcow2', 'qcow2', exception.ImageUnacceptable),
    ('ext.qcow2', 'qcow2', exception.ImageUnacceptable),
    ('plain.qcow2', 'vmdk', exception.ImageUnacceptable),
    ('missing', 'raw', exception.ImageUnacceptable),
])
def test_check_image_file_refuses(samples, name, declared, error):
    with pytest.raises(error) as caught:
        images.check_image_file('img1', str(samples / name), declared)
    assert caught.value.image == 'img1'
    assert 'img1' in str(caught.value)
    if error is exception.ImageFormatMismatch:
        assert caught.value.declared == declared
        assert caught.value.inspected in str(caught.value)
    # The library's errors are InvalidInput, so the CLI and the Nova
    # adapter report them as bad input.
    assert isinstance(caught.value, exception.InvalidInput)


@pytest.mark.parametrize('name, declared', [
    ('plain.qcow2', 'qcow2'), ('v2.qcow2', 'qcow2'), ('zeros.raw', 'raw'),
    ('a.iso', 'raw')])
def test_check_image_file_accepts(samples, name, declared):
    images.check_image_file('img1', str(samples / name), declared)


def test_qemu_img_catches_what_the_header_hides(tmp_path):
    path = tmp_path / 'broken.qcow2'
    _qemu_img('create', '-q', '-f', 'qcow2', str(path), '1M')
    data = bytearray(path.read_bytes())
    # The L1 table's offset (header bytes 40-47) not cluster-aligned.
    data[40:48] = (513).to_bytes(8, 'big')
    path.write_bytes(bytes(data))
    images.check_image_file('broken', str(path), 'qcow2')
    with pytest.raises(exception.ImageUnacceptable):
        images.check_with_qemu_img('broken', str(path), 'qcow2')


def _declare(images, file_name, disk_format):
    meta = images / (IMAGE + '.json')
    data = json.loads(meta.read_text())
    data.update(file=file_name, disk_format=disk_format)
    meta.write_text(json.dumps(data))


def _spawn(backend, instance):
    backend.spawn(instance)


def _listing(tmp_path):
    root = tmp_path / 'instances'
    return sorted(str(p.relative_to(root)) for p in root.rglob('*'))


@pytest.mark.parametrize('sample, declared', [
    ('plain.qcow2', 'raw'), ('backed.qcow2', 'qcow2'),
    ('ext.qcow2', 'qcow2'), ('zeros.raw', 'qcow2')])
def test_spawn_refuses_bad_image_and_leaves_nothing(
        test_driver, tmp_path, samples, sample, declared):
    shutil.copy(samples / sample, tmp_path / 'images' / sample)
    _declare(tmp_path / 'images', sample, declared)
    instance = test_libvirt._instance(test_driver.conf)
    with pytest.raises(exception.ImageUnacceptable) as caught:
        _spawn(test_driver, instance)
    assert IMAGE in str(caught.value)
    test_libvirt._assert_nothing_left(test_driver, instance, tmp_path)
    assert _listing(tmp_path) == []


def test_image_replaced_after_the_check_is_refused_from_its_copy(
        test_driver, tmp_path, samples, monkeypatch):
    # The copy in _base is checked, not only the image: a file swapped
    # between the first check and the copy is caught, and no copy stays.
    shutil.copy(samples / 'plain.qcow2', tmp_path / 'images' / 'x.qcow2')
    _declare(tmp_path / 'images', 'x.qcow2', 'qcow2')
    store = test_driver.store
    checked = store.check

    def check_then_swap(image):
        checked(image)
        shutil.copy(samples / 'backed.qcow2', image.path)

    monkeypatch.setattr(store, 'check', check_then_swap)
    instance = test_libvirt._instance(test_driver.conf)
    with pytest.raises(exception.ImageUnacceptable):
        _spawn(test_driver, instance)
    assert os.listdir(store.base_path) == []
    test_libvirt._assert_nothing_left(test_driver, instance, tmp_path)


@pytest.fixture
def test_driver(make_driver):
    backend = make_driver()
    backend.init_host('test')
    return backend


make_driver = test_libvirt.make_driver


def test_instance_files_are_private(test_driver, tmp_path):
    instance = test_libvirt._instance(test_driver.conf)
    _spawn(test_driver, instance)
    directory = tmp_path / 'instances' / instance.uuid
    assert stat.S_IMODE(directory.stat().st_mode) in (0o700, 0o710)
    for name in ('disk', 'console.log'):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    base = tmp_path / 'instances' / '_base'
    assert stat.S_IMODE(base.stat().st_mode) == 0o711
    for copy in base.iterdir():
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    # Nothing but the directory: the spawn's marker is gone.
    assert _listing(tmp_path) == sorted([
        '_base', '_base/' + os.listdir(test_driver.store.base_path)[0],
        instance.uuid, instance.uuid + '/console.log',
        instance.uuid + '/disk', '.records.lock', 'records.json'])
    # The record index holds the instance's metadata too.
    for name in ('.records.lock', 'records.json'):
        mode = (tmp_path / 'instances' / name).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600


def _stale_spawn(tmp_path, uuid):
    """What a spawn killed after making its disk leaves."""
    root = tmp_path / 'instances'
    root.mkdir(exist_ok=True)
    (root / uuid).mkdir()
    (root / uuid / 'disk').write_bytes(b'\0' * 512)
    leftovers.Marker.claim(str(root / (uuid + '.spawning')), 'vm').abandon()


def test_init_host_sweeps_an_interrupted_spawn(make_driver, tmp_path,
                                               caplog):
    uuid = '0b0c4b4e-5a7d-4d1e-9a39-3c4a4c2f9d51'
    _stale_spawn(tmp_path, uuid)
    backend = make_driver()
    with caplog.at_level('INFO', 'compute_driver.leftovers'):
        backend.init_host('test')
    assert _listing(tmp_path) == []
    assert uuid in caplog.text and 'interrupted' in caplog.text


def test_cleanup_dry_run_lists_and_keeps(make_driver, tmp_path):
    uuid = '0b0c4b4e-5a7d-4d1e-9a39-3c4a4c2f9d52'
    _stale_spawn(tmp_path, uuid)
    backend = make_driver()
    backend.sweep_leftovers_at_init = False
    backend.init_host('test')
    before = _listing(tmp_path)
    found = backend.cleanup_leftovers(dry_run=True)
    assert [(f.backend, f.removed) for f in found] == [('libvirt', False)]
    assert uuid in found[0].what
    assert _listing(tmp_path) == before
    found = backend.cleanup_leftovers()
    assert [(f.backend, f.removed, f.error) for f in found] == [
        ('libvirt', True, '')]
    assert _listing(tmp_path) == []
    assert backend.cleanup_leftovers() == []


def test_a_spawn_in_progress_is_not_swept(test_driver, tmp_path):
    uuid = '0b0c4b4e-5a7d-4d1e-9a39-3c4a4c2f9d53'
    root = tmp_path / 'instances'
    marker = leftovers.Marker.claim(str(root / (uuid + '.spawning')), 'vm')
    (root / uuid).mkdir()
    try:
        assert test_driver.cleanup_leftovers() == []
        assert (root / uuid).is_dir()
    finally:
        marker.release()


def test_directories_without_marker_are_kept(test_driver, tmp_path):
    # It may belong to another connection sharing instances_path.
    directory = tmp_path / 'instances' / '0b0c4b4e-5a7d-4d1e-9a39-3c4a4c2f9d54'
    directory.mkdir()
    assert test_driver.cleanup_leftovers() == []
    assert directory.is_dir()


def test_sweep_removes_the_domain_of_a_spawn_killed_after_define(
        test_driver, tmp_path, monkeypatch):
    instance = test_libvirt._instance(test_driver.conf)

    class Killed(BaseException):
        """What SIGKILL would do: nothing after this point runs."""

    def killed(*args):
        raise Killed()

    # Simulate the kill: the rollback never runs and the marker's lock
    # goes with the process.
    monkeypatch.setattr(libvirt.virDomain, 'create', killed)
    monkeypatch.setattr(test_driver, '_roll_back_spawn',
                        lambda instance, dom, directory, marker:
                        marker.abandon())
    with pytest.raises(Killed):
        _spawn(test_driver, instance)
    monkeypatch.undo()
    # Not listed: the domain was defined, but the sweep takes it away.
    found = test_driver.cleanup_leftovers()
    assert [f.removed for f in found] == [True]
    test_libvirt._assert_nothing_left(test_driver, instance, tmp_path)
    assert not (tmp_path / 'instances' /
                (instance.uuid + '.spawning')).exists()


def test_rollback_double_fault_names_and_marks_the_leftover(
        test_driver, tmp_path, monkeypatch, caplog):
    instance = test_libvirt._instance(test_driver.conf)
    monkeypatch.setattr(libvirt.virDomain, 'create', lambda self, *a: (
        _raise(libvirt.libvirtError('start refused on purpose'))))
    real_rmtree = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if instance.uuid in str(path):
            raise PermissionError(13, 'Permission denied', str(path))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, 'rmtree', rmtree)
    with pytest.raises(exception.BackendError) as caught:
        _spawn(test_driver, instance)
    assert 'start refused on purpose' in str(caught.value)
    assert 'directory %s' % (tmp_path / 'instances' / instance.uuid) in (
        caplog.text)
    assert (tmp_path / 'instances' / (instance.uuid + '.spawning')).exists()
    monkeypatch.undo()
    found = test_driver.cleanup_leftovers()
    assert [f.removed for f in found] == [True]
    index = ('.records.lock', 'records.json')
    assert [e for e in _listing(tmp_path) if e not in index][:1] == ['_base']
    assert not (tmp_path / 'instances' / instance.uuid).exists()


def test_keyboard_interrupt_rolls_back(test_driver, tmp_path, monkeypatch):
    instance = test_libvirt._instance(test_driver.conf)
    monkeypatch.setattr(libvirt.virDomain, 'create',
                        lambda self, *a: _raise(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _spawn(test_driver, instance)
    test_libvirt._assert_nothing_left(test_driver, instance, tmp_path)
    assert not (tmp_path / 'instances' /
                (instance.uuid + '.spawning')).exists()


def test_partial_base_copy_is_swept(test_driver, tmp_path):
    base = tmp_path / 'instances' / '_base'
    base.mkdir(exist_ok=True)
    stale = base / 'abc.part-1234abcd'
    stale.write_bytes(b'half')
    live = leftovers.Marker.create(str(base / 'def.part-5678abcd'))
    try:
        found = test_driver.cleanup_leftovers()
        assert [f.what for f in found] == ['file %s' % stale]
        assert not stale.exists() and os.path.exists(live.path)
    finally:
        live.release()


def test_domain_of_someone_else_is_left_alone(test_driver, tmp_path):
    uuid = '0b0c4b4e-5a7d-4d1e-9a39-3c4a4c2f9d55'
    conn = test_driver._host.get_connection()
    dom = conn.defineXML(
        "<domain type='test'><name>foreign-%s</name><uuid>%s</uuid>"
        "<memory>8192</memory><os><type>hvm</type></os></domain>"
        % (uuid[:8], uuid))
    try:
        _stale_spawn(tmp_path, uuid)
        found = test_driver.cleanup_leftovers()
        assert [f.removed for f in found] == [False]
        assert 'no compute-driver record' in found[0].error
        assert conn.lookupByUUIDString(uuid).name() == dom.name()
    finally:
        dom.undefine()


def _raise(exc):
    raise exc


def test_domain_name_helper_is_the_drivers():
    assert mapping.domain_name('x').endswith('x')


def test_cli_cleanup_lists_then_removes(tmp_path, capsys):
    from compute_driver.cmd import main
    uuid = '0b0c4b4e-5a7d-4d1e-9a39-3c4a4c2f9d56'
    images = test_libvirt.make_store(tmp_path)
    _stale_spawn(tmp_path, uuid)
    conf_file = tmp_path / 'compute-driver.conf'
    conf_file.write_text(
        '[DEFAULT]\ncompute_driver = libvirt\nhost = testhost\n'
        '[libvirt]\nvirt_type = qemu\nconnection_uri = %s\n'
        'images_path = %s\ninstances_path = %s\n' % (
            test_libvirt.TEST_URI, images, tmp_path / 'instances'))
    argv = ['--config-file', str(conf_file), 'cleanup', '-f', 'json']
    assert main.main(argv + ['--dry-run']) == 0
    out, err = capsys.readouterr()
    assert err == ''
    rows = json.loads(out)
    assert [(r['Backend'], r['Reason'], r['Result']) for r in rows] == [
        ('libvirt', 'its spawn was interrupted', 'would remove')]
    assert uuid in rows[0]['Object']
    assert (tmp_path / 'instances' / uuid).is_dir()
    assert main.main(argv) == 0
    out, err = capsys.readouterr()
    assert [r['Result'] for r in json.loads(out)] == ['removed']
    assert _listing(tmp_path) == []
    assert main.main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == []
    assert err == 'Nothing to clean up on the libvirt backend.\n'


_CAPS = """<capabilities><host>
  <secmodel><model>none</model><doi>0</doi></secmodel>
  <secmodel><model>dac</model><doi>0</doi>
    <baselabel type='kvm'>+64055:+108</baselabel>
    <baselabel type='qemu'>+64055:+64055</baselabel>
  </secmodel></host></capabilities>"""


@pytest.mark.parametrize('virt_type, caps, expected', [
    ('qemu', _CAPS, (64055, 64055)),
    ('kvm', _CAPS, (64055, 108)),
    ('lxc', _CAPS, None),
    ('qemu', '<capabilities><host/></capabilities>', None),
    ('qemu', '<capabilities', None),
])
def test_dac_label(make_driver, monkeypatch, virt_type, caps, expected):
    backend = make_driver(virt_type=virt_type)
    conn = backend._host.get_connection()
    monkeypatch.setattr(type(conn), 'getCapabilities', lambda self: caps)
    assert backend._host.get_dac_label() == expected


def test_instance_directory_goes_to_qemus_group(test_driver, tmp_path):
    # Root may give a directory to any group: the one QEMU runs as gets
    # search access, nobody else any.
    if os.getuid() != 0:
        pytest.skip('only root can give a directory to another group')
    test_driver._qemu_gid = 4242
    instance = test_libvirt._instance(test_driver.conf)
    _spawn(test_driver, instance)
    info = (tmp_path / 'instances' / instance.uuid).stat()
    assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (4242, 0o710)


def test_unfinished_marker_file_is_swept_and_others_kept(test_driver,
                                                         tmp_path):
    root = tmp_path / 'instances'
    uuid = '0b0c4b4e-5a7d-4d1e-9a39-3c4a4c2f9d57'
    unfinished = root / ('.%s.spawning.1234abcd.tmp' % uuid)
    unfinished.write_text('')
    foreign = root / '.operator-notes.tmp'
    foreign.write_text('mine')
    found = test_driver.cleanup_leftovers()
    assert [f.what for f in found] == ['file %s' % unfinished]
    assert foreign.exists() and not unfinished.exists()


def _marker_of(tmp_path, uuid):
    return tmp_path / 'instances' / (uuid + '.snapshotting')


@pytest.fixture
def instance(test_driver):
    # The test connection's domains outlive the test: each goes.
    instance = test_libvirt._instance(test_driver.conf)
    _spawn(test_driver, instance)
    yield instance
    test_driver.destroy(instance)


def test_a_snapshot_is_marked_while_its_guest_is_paused(
        test_driver, instance, tmp_path, monkeypatch):
    seen = {}
    add_snapshot = test_driver.store.add_snapshot

    def copying(*args, claimed, **kwargs):
        def copy_starts():
            claimed()
            seen['mark'] = json.loads(_marker_of(tmp_path, instance.uuid)
                                      .read_text())
            seen['state'] = test_driver.get_info(instance).state
            # Another process's sweep meanwhile leaves it all.
            seen['swept'] = test_driver.cleanup_leftovers()
        return add_snapshot(*args, claimed=copy_starts, **kwargs)

    monkeypatch.setattr(test_driver.store, 'add_snapshot', copying)
    test_driver.snapshot(instance, 'snap-marked')
    assert seen == {
        'mark': {'paused': True, 'export': None,
                 'store_image': 'snap-marked'},
        'state': power_state.PAUSED, 'swept': []}
    assert not _marker_of(tmp_path, instance.uuid).exists()
    assert test_driver.get_info(instance).state == power_state.RUNNING
    test_driver.delete_snapshot('snap-marked')


def test_the_sweep_undoes_what_a_killed_snapshot_left(test_driver, instance,
                                                      tmp_path):
    # What a snapshot killed mid-copy leaves: its guest paused, its
    # export file, the store's claimed file without metadata, and its
    # marker, unlocked since the process is gone.
    test_driver.pause(instance)
    export = tmp_path / 'instances' / instance.uuid / 'snapshot-0a1b2c3d.qcow2'
    export.write_bytes(b'partial')
    claimed = os.path.join(test_driver.store.images_path, 'snap-killed.qcow2')
    with open(claimed, 'wb') as handle:
        handle.write(b'partial')
    leftovers.Marker.claim(
        str(_marker_of(tmp_path, instance.uuid)),
        json.dumps({'paused': True, 'export': str(export),
                    'store_image': 'snap-killed'})).abandon()
    found = test_driver.cleanup_leftovers(dry_run=True)
    assert [(f.what, f.reason) for f in found] == [
        ('snapshot of instance %s; its guest paused' % instance.uuid,
         'its snapshot was interrupted')]
    assert test_driver.get_info(instance).state == power_state.PAUSED
    found = test_driver.cleanup_leftovers()
    assert [(f.removed, f.error) for f in found] == [(True, '')]
    assert test_driver.get_info(instance).state == power_state.RUNNING
    assert not export.exists() and not os.path.exists(claimed)
    assert not _marker_of(tmp_path, instance.uuid).exists()
    assert test_driver.cleanup_leftovers() == []


def test_the_sweep_keeps_a_whole_snapshot_and_a_guest_paused_since(
        test_driver, instance, tmp_path):
    # Killed after the snapshot's metadata was written and the guest
    # resumed: the snapshot is whole, and a guest the user paused since
    # stays paused.
    test_driver.snapshot(instance, 'snap-whole')
    test_driver.pause(instance)
    leftovers.Marker.claim(
        str(_marker_of(tmp_path, instance.uuid)),
        json.dumps({'paused': False, 'export': None,
                    'store_image': 'snap-whole'})).abandon()
    assert [f.removed for f in test_driver.cleanup_leftovers()] == [True]
    assert test_driver.store.exists('snap-whole')
    assert test_driver.get_info(instance).state == power_state.PAUSED
    test_driver.delete_snapshot('snap-whole')


def test_a_second_snapshot_under_way_is_refused(test_driver, instance,
                                                tmp_path):
    marker = leftovers.Marker.claim(
        str(_marker_of(tmp_path, instance.uuid)), '{}')
    try:
        with pytest.raises(exception.InvalidInput, match='under way'):
            test_driver.snapshot(instance, 'snap-second')
        assert not test_driver.store.exists('snap-second')
        assert test_driver.get_info(instance).state == power_state.RUNNING
    finally:
        marker.release()


def test_a_snapshot_refused_for_its_name_leaves_the_name_to_its_owner(
        test_driver, instance, tmp_path):
    # Another snapshot is writing that name: the marker of this one never
    # names the file, so no sweep can take it from its owner.
    claimed = os.path.join(test_driver.store.images_path, 'snap-taken.qcow2')
    with open(claimed, 'wb'):
        pass
    with pytest.raises(exception.InvalidInput, match='exists already'):
        test_driver.snapshot(instance, 'snap-taken')
    assert os.path.exists(claimed)
    assert not _marker_of(tmp_path, instance.uuid).exists()
    assert test_driver.get_info(instance).state == power_state.RUNNING
