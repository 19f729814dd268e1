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

"""The xenapi backend booting from, and snapshotting into, a real Glance.

XAPI is the simulator, whose /import_raw_vdi and /export_raw_vdi move real
bytes; Glance is the real one (compute_driver.testing.glance). The disk
image is a VHD made by qemu-img from a raw disk with data at known places,
and what comes back is read with qemu-img too.
"""

import http.client
import json
import os
import pathlib
import shutil
import subprocess
import urllib.parse
import uuid as uuidlib

import pytest
import XenAPI

from compute_driver import exception
from compute_driver.image import exception as image_exception
from compute_driver import loader
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures
from compute_driver.testing import glance as glance_server
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    xapi_simulator as simulator)
from tests.functional.test_docker_images import RequestCuttingProxy
from tests.functional.test_glance import CuttingProxy

MIB = 1024 * 1024
#: A root disk of 0: the VDI is the image's size, so the tests move MiBs.
FLAVOR = objects.Flavor('cdtest.image', vcpus=1, memory_mb=64, root_gb=0)


@pytest.fixture(scope='module')
def glance():
    glance_server.require_glance_client()
    try:
        server = glance_server.GlanceServer().start()
    except glance_server.GlanceUnavailable as exc:
        fixtures.skip_or_fail(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope='module')
def qemu_img():
    path = shutil.which('qemu-img')
    if path is None:
        fixtures.skip_or_fail('qemu-img is not installed')
    return path


@pytest.fixture
def make_driver(simulator, glance, tmp_path):  # noqa: F811
    made = []

    def make(glance_url=None):
        conf = fixtures.make_conf('xenapi', {
            'xenapi': sim_fixture.xenapi_options(simulator),
            'image_service': {'backend': 'glance',
                              'cache_path': str(tmp_path / 'cache')},
            'glance': {'api_servers': [glance_url or glance.url],
                       'num_retries': 0}})
        backend = loader.load_driver(conf)
        backend.init_host(conf.host)
        made.append(backend)
        return backend
    yield make
    for backend in made:
        backend.cleanup_host('test')


@pytest.fixture
def backend(make_driver):
    return make_driver()


@pytest.fixture
def glance_images(backend):
    ids = []
    yield ids
    for image_id in ids:
        backend.image_service.delete(image_id)


@pytest.fixture(scope='module')
def disk(tmp_path_factory, qemu_img):
    """A 6 MiB raw disk with data at known places, and its dynamic VHD."""
    raw, vhd = sim_fixture.write_test_disk(
        str(tmp_path_factory.mktemp('disk')), qemu_img)
    return pathlib.Path(raw), pathlib.Path(vhd)


def _upload(backend, glance_images, path, disk_format='vhd',
            container_format='bare'):
    record = backend.image_service.upload(
        'cdtest-%s' % uuidlib.uuid4().hex[:8], str(path), disk_format,
        container_format, properties={'os_distro': 'cdtest'})
    glance_images.append(record.id)
    return record


def _instance(image, flavor=FLAVOR):
    return objects.Instance.new('cdtest-vm-%s' % uuidlib.uuid4().hex[:6],
                                flavor, image)


def _session(sim):
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password(sim_fixture.USERNAME,
                                       sim_fixture.PASSWORD, '2.21', 'test')
    return session


def _root_vdi(sim, backend, instance):
    ref = backend.get_info(instance).internal_id
    vbds = sim.objects('VBD')
    [vdi] = [v['VDI'] for v in vbds.values()
             if v['VM'] == ref and v['bootable']]
    return vdi


def _export_raw(sim, vdi):
    session = _session(sim)
    try:
        conn = http.client.HTTPConnection(sim.host, sim.port, timeout=30)
        conn.request('GET', '/export_raw_vdi?' + urllib.parse.urlencode(
            {'session_id': session._session, 'vdi': vdi, 'format': 'raw'}))
        data = conn.getresponse().read()
        conn.close()
        return data
    finally:
        session.xenapi.session.logout()


def _state(sim):
    return (set(sim.objects('VM')), set(sim.objects('VDI')))


# -- boot, snapshot, boot the snapshot ------------------------------------

def test_boot_vhd_from_glance_snapshot_and_boot_the_snapshot(
        simulator, backend, glance_images, disk, qemu_img,  # noqa: F811
        tmp_path):
    raw, vhd = disk
    record = _upload(backend, glance_images, vhd)
    first = _instance(record.id)
    backend.spawn(first)
    assert backend.get_info(first).state == power_state.RUNNING
    vdi = _root_vdi(simulator, backend, first)
    vdi_record = simulator.objects('VDI')[vdi]
    assert vdi_record['virtual_size'] == str(6 * MIB)
    # The bytes written, not the disk's size: the holes stay holes.
    assert 512 * 1024 + MIB <= int(
        vdi_record['physical_utilisation']) < 6 * MIB
    assert _export_raw(simulator, vdi) == raw.read_bytes()

    name = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    states = []
    backend.snapshot(first, name, update_task_state=(
        lambda task_state, expected_state=None: states.append(task_state)))
    assert states == ['image_pending_upload', 'image_uploading']
    # The image service holds it; no copy of the disk stays in the SR.
    assert [vm for vm in simulator.objects('VM').values()
            if vm['is_a_snapshot']] == []
    snap = backend.image_service.show(name)
    glance_images.append(snap.id)
    assert snap.status == 'active'
    assert (snap.disk_format, snap.container_format) == ('vhd', 'bare')
    assert snap.properties['image_type'] == 'snapshot'
    assert snap.properties['instance_uuid'] == first.uuid
    assert snap.properties['base_image_ref'] == record.id
    assert snap.properties['os_distro'] == 'cdtest'
    # Glance holds a VHD qemu-img reads back as the instance's disk.
    stored = tmp_path / 'snap.vhd'
    backend.image_service.download(snap.id, str(stored))
    back = tmp_path / 'snap.raw'
    subprocess.run([qemu_img, 'convert', '-f', 'vpc', '-O', 'raw',
                    str(stored), str(back)], check=True)
    assert back.read_bytes() == raw.read_bytes()
    # Unwritten blocks are left out of the VHD.
    assert snap.size < 6 * MIB

    second = _instance(snap.id)
    backend.spawn(second)
    assert backend.get_info(second).state == power_state.RUNNING
    assert _export_raw(simulator, _root_vdi(
        simulator, backend, second)) == raw.read_bytes()

    before = _state(simulator)
    backend.destroy(second)
    backend.destroy(first)
    after = _state(simulator)
    assert len(before[0] - after[0]) == 2 and len(before[1] - after[1]) == 2
    backend.delete_snapshot(name)
    with pytest.raises(image_exception.ImageNotInService):
        backend.image_service.show(snap.id)


def test_boot_raw_image_with_a_root_disk_of_the_flavor(
        simulator, backend, glance_images, disk):  # noqa: F811
    raw, _ = disk
    record = _upload(backend, glance_images, raw, disk_format='raw')
    flavor = objects.Flavor('cdtest.root', vcpus=1, memory_mb=64,
                            root_gb=1)
    instance = _instance(record.id, flavor)
    backend.spawn(instance)
    vdi = _root_vdi(simulator, backend, instance)
    vdi_record = simulator.objects('VDI')[vdi]
    assert vdi_record['virtual_size'] == str(1024 ** 3)
    assert vdi_record['physical_utilisation'] == str(6 * MIB)
    backend.destroy(instance)


# -- bad input: typed errors, nothing left behind ---------------------------

def _nothing_left(simulator, before, backend):  # noqa: F811
    assert _state(simulator) == before
    cache = backend.conf.image_service.cache_path
    if os.path.isdir(cache):
        assert [n for n in os.listdir(cache) if not n.startswith('.')] == []


def test_unknown_image_id(simulator, backend):  # noqa: F811
    before = _state(simulator)
    with pytest.raises(exception.ImageNotFound) as info:
        backend.spawn(_instance(str(uuidlib.uuid4())))
    assert 'glance image service' in str(info.value)
    _nothing_left(simulator, before, backend)


def test_format_xapi_cannot_import(simulator, backend,  # noqa: F811
                                   glance_images, tmp_path, qemu_img):
    path = tmp_path / 'disk.qcow2'
    subprocess.run([qemu_img, 'create', '-q', '-f', 'qcow2', str(path),
                    '16M'], check=True)
    record = _upload(backend, glance_images, path, disk_format='qcow2')
    before = _state(simulator)
    with pytest.raises(exception.ImageUnacceptable) as info:
        backend.spawn(_instance(record.id))
    assert 'qcow2' in str(info.value)
    _nothing_left(simulator, before, backend)


def test_vhd_larger_than_the_root_disk(simulator, backend,  # noqa: F811
                                       glance_images, tmp_path, qemu_img):
    path = tmp_path / 'big.vhd'
    subprocess.run([qemu_img, 'create', '-q', '-f', 'vpc', '-o',
                    'subformat=dynamic,force_size=on', str(path), '2G'],
                   check=True)
    record = _upload(backend, glance_images, path)
    flavor = objects.Flavor('cdtest.small', vcpus=1, memory_mb=64,
                            root_gb=1)
    before = _state(simulator)
    with pytest.raises(exception.ImageUnacceptable) as info:
        backend.spawn(_instance(record.id, flavor))
    assert 'root disk' in str(info.value)
    assert _state(simulator) == before


def test_checksum_mismatch(simulator, backend, glance,  # noqa: F811
                           glance_images, disk):
    _, vhd = disk
    record = _upload(backend, glance_images, vhd)
    stored = os.path.join(glance.store_dir, record.id)
    with open(stored, 'r+b') as f:
        f.seek(MIB + 8192)
        byte = f.read(1)
        f.seek(MIB + 8192)
        f.write(bytes([byte[0] ^ 0xff]))
    before = _state(simulator)
    with pytest.raises(image_exception.ImageChecksumMismatch):
        backend.spawn(_instance(record.id))
    _nothing_left(simulator, before, backend)


def test_download_cut_short(simulator, make_driver, glance,  # noqa: F811
                            glance_images, disk):
    _, vhd = disk
    direct = make_driver()
    record = _upload(direct, glance_images, vhd)
    proxy = CuttingProxy(glance.port, cut_after=record.size - MIB // 2)
    before = _state(simulator)
    try:
        backend = make_driver(proxy.url)
        with pytest.raises(image_exception.ImageDownloadIncomplete):
            backend.spawn(_instance(record.id))
    finally:
        proxy.close()
    assert proxy.cuts >= 1
    _nothing_left(simulator, before, backend)


def test_boot_killed_mid_download_leaves_nothing_after_the_sweep(
        simulator, make_driver, glance, glance_images, disk,  # noqa: F811
        tmp_path):
    # The CLI's boot is killed while the image's answer is held half-way:
    # its clone and a partial download in the host's image cache stay,
    # and the next command's sweep removes both.
    _, vhd = disk
    direct = make_driver()
    record = _upload(direct, glance_images, vhd)
    cache = tmp_path / 'cli-cache'
    boot = {}

    def kill():
        boot['process'].kill()

    proxy = CuttingProxy(glance.port, cut_after=record.size // 2,
                         on_cut=kill)
    options = sim_fixture.xenapi_options(simulator)
    conf_file = tmp_path / 'compute-driver.conf'
    conf_file.write_text('\n'.join(
        ['[DEFAULT]', 'compute_driver = xenapi', 'host = xenkill',
         '[xenapi]']
        + ['%s = %s' % item for item in sorted(options.items())]
        + ['[image_service]', 'backend = glance',
           'cache_path = %s' % cache,
           '[glance]', 'api_servers = %s' % proxy.url,
           'num_retries = 0']) + '\n')
    command = [fixtures.console_script(), '--config-file', str(conf_file)]
    before = _state(simulator)
    name = 'cdtest-kill-%s' % uuidlib.uuid4().hex[:6]
    try:
        boot['process'] = subprocess.Popen(
            command + ['boot', name, '--image', record.id, '--flavor',
                       'm1.nano'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert boot['process'].wait(120) == -9
    finally:
        proxy.close()
        if boot['process'].poll() is None:
            boot['process'].kill()
            boot['process'].wait()
    assert proxy.cuts == 1
    assert [n for n in os.listdir(cache)
            if n.startswith('.%s.part-' % record.id)]
    assert _state(simulator) != before
    result = subprocess.run(command + ['cleanup', '-f', 'json'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'Traceback' not in result.stderr
    rows = json.loads(result.stdout)
    # The clone comes before the download: both are left.
    assert sorted(r['Reason'].split(' in process ')[0] for r in rows) == [
        'a partial image download', 'its spawn was interrupted']
    assert {r['Result'] for r in rows} == {'removed'}
    assert _state(simulator) == before
    assert [n for n in os.listdir(cache) if n != '.locks'] == []


def test_failed_attach_leaves_no_vdi(simulator, backend,  # noqa: F811
                                     glance_images, tmp_path):
    # The VDI exists once attaching it to the VM fails: it goes at once.
    path = tmp_path / 'disk.raw'
    path.write_bytes(os.urandom(4096))
    record = _upload(backend, glance_images, path, disk_format='raw')
    simulator.fail('VBD.create', 'INTERNAL_ERROR', 'injected')
    before = _state(simulator)
    with pytest.raises(exception.ComputeDriverError):
        backend.spawn(_instance(record.id))
    assert _state(simulator) == before


def test_snapshot_upload_cut_short_leaves_nothing(
        simulator, make_driver, glance, glance_images, disk):  # noqa: F811
    _, vhd = disk
    direct = make_driver()
    record = _upload(direct, glance_images, vhd)
    instance = _instance(record.id)
    direct.spawn(instance)
    before = _state(simulator)
    proxy = RequestCuttingProxy(glance.port, cut_after=MIB)
    name = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    try:
        cut = make_driver(proxy.url)
        with pytest.raises(image_exception.ImageUploadFailed):
            cut.snapshot(instance, name)
    finally:
        proxy.close()
    assert proxy.cuts >= 1
    assert name not in [r.name for r in direct.image_service.list()]
    # No snapshot VM and no copy of its disk stay in XAPI.
    assert _state(simulator) == before
    assert direct.get_info(instance).state == power_state.RUNNING
    direct.destroy(instance)
