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

"""The docker backend booting from, and snapshotting into, a real Glance.

Glance runs on 127.0.0.1 without Keystone (compute_driver.testing.glance);
dockerd is the shared one. Each test makes a docker image of its own from
the project's test image (a commit with a unique label), saves it, removes
it from dockerd and uploads the tarball to Glance, so what dockerd has
afterwards can only have come from Glance.
"""

import os
import socket
import subprocess
import tarfile
import time
import uuid as uuidlib

from docker import errors as docker_errors
import pytest

from compute_driver.docker import images
from compute_driver import exception
from compute_driver import flavors
from compute_driver.image import exception as image_exception
from compute_driver import loader
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures
from compute_driver.testing import glance as glance_server
from tests.functional import docker_env
from tests.functional.test_glance import CuttingProxy

MIB = 1024 * 1024


@pytest.fixture(scope='module')
def glance():
    glance_server.require_glance_client()
    try:
        server = glance_server.GlanceServer().start()
    except glance_server.GlanceUnavailable as exc:
        fixtures.skip_or_fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def api():
    client = docker_env.raw_client()
    yield client
    docker_env.forget_unique_images(client)
    client.close()


@pytest.fixture
def host():
    return docker_env.unique_host()


@pytest.fixture
def make_driver(api, host, glance):
    """Docker backends of one test host whose image service is Glance."""
    made = []

    def factory(glance_url=None):
        overrides = docker_env.overrides(host)
        overrides['image_service'] = {
            'backend': 'glance',
            'cache_path': os.path.join(docker_env.IMAGE_DIR, 'cache')}
        overrides['glance'] = {'api_servers': [glance_url or glance.url],
                               'num_retries': 0}
        conf = fixtures.make_conf('docker', overrides)
        backend = loader.load_driver(conf)
        backend.init_host(conf.host)
        made.append(backend)
        return backend
    yield factory
    for backend in made:
        for record in backend.list_instance_records():
            backend.destroy(record.instance)
        backend.cleanup_host(host)
    left = _ours(api, host)
    for summary in left:
        api.remove_container(summary['Id'], force=True)
    assert not left, 'containers left behind: %s' % [
        s['Names'] for s in left]


@pytest.fixture
def backend(make_driver):
    return make_driver()


@pytest.fixture
def glance_images(backend):
    """Glance image ids to delete at teardown, with dockerd's copies."""
    ids = []
    yield ids
    # Instances first: dockerd keeps an image a container still uses as
    # an untagged leftover once its tag is removed.
    for record in backend.list_instance_records():
        backend.destroy(record.instance)
    for image_id in ids:
        backend.image_service.delete(image_id)
        try:
            backend.api.remove_image(images.service_tag(image_id),
                                     force=True)
        except docker_errors.NotFound:
            pass


def _ours(api, host):
    return api.containers(all=True, filters={
        'label': 'org.openstack.compute-driver.host=%s' % host})


def _instance(image, name=None):
    flavor = next(f for f in flavors.BUILTIN if f.name == 'm1.nano')
    return objects.Instance.new(
        name or 'cdtest-vm-%s' % uuidlib.uuid4().hex[:6], flavor, image)


def _upload(backend, glance_images, path, disk_format='raw',
            container_format='docker', **properties):
    record = backend.image_service.upload(
        'cdtest-%s' % uuidlib.uuid4().hex[:8], str(path), disk_format,
        container_format, properties=properties)
    glance_images.append(record.id)
    assert record.status == 'active'
    return record


def _wait_for_banner(backend, instance, timeout=30.0):
    """Poll the console log until the test image's boot banner is in it.

    A container's log has no event to wait on.
    """
    deadline = time.monotonic() + timeout
    while True:
        output = backend.get_console_output(instance)
        if 'compute-driver test container' in output:
            return output
        assert time.monotonic() < deadline, (
            'no boot banner from %s after %ss: %r'
            % (instance.name, timeout, output))
        time.sleep(0.1)


# -- boot, snapshot, boot the snapshot ------------------------------------

def test_boot_from_glance_snapshot_and_boot_the_snapshot(
        api, backend, glance_images, tmp_path):
    image_id, path = docker_env.unique_image(api, tmp_path)
    record = _upload(backend, glance_images, path)

    first = _instance(record.id)
    backend.spawn(first)
    assert backend.get_info(first).state == power_state.RUNNING
    # dockerd has the image now, from Glance, under the image's id.
    assert api.inspect_image(images.service_tag(record.id))['Id'] == image_id
    _wait_for_banner(backend, first)

    snap_name = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    states = []
    backend.snapshot(first, snap_name, update_task_state=(
        lambda task_state, expected_state=None: states.append(task_state)))
    assert states == ['image_pending_upload', 'image_uploading']
    snap = backend.image_service.show(snap_name)
    glance_images.append(snap.id)
    assert snap.status == 'active'
    assert (snap.container_format, snap.disk_format) == ('docker', 'raw')
    assert snap.properties['image_type'] == 'snapshot'
    assert snap.properties['instance_uuid'] == first.uuid
    assert snap.properties['base_image_ref'] == record.id
    assert snap.size > 0
    # What Glance holds is a docker save tarball of the committed image.
    snap_path = tmp_path / 'snap.tar'
    backend.image_service.download(snap.id, str(snap_path))
    with tarfile.open(snap_path) as tar:
        assert 'manifest.json' in tar.getnames()

    second = _instance(snap.id)
    backend.spawn(second)
    assert backend.get_info(second).state == power_state.RUNNING
    _wait_for_banner(backend, second)
    committed = api.inspect_image(images.service_tag(snap.id))
    assert committed['Config']['Labels'][
        'org.openstack.compute-driver.snapshot-of'] == first.uuid

    backend.destroy(second)
    backend.delete_snapshot(snap_name)
    with pytest.raises(image_exception.ImageNotInService):
        backend.image_service.show(snap.id)
    assert not docker_env.has_image(api, images.service_tag(snap.id))
    assert not docker_env.has_image(api, snap_name)


def test_root_file_system_tarball_is_imported(
        api, backend, glance_images, tmp_path):
    container = api.create_container(docker_env.IMAGE)
    path = tmp_path / 'rootfs.tar'
    try:
        with open(path, 'wb') as f:
            for chunk in api.export(container['Id'], chunk_size=MIB):
                f.write(chunk)
    finally:
        api.remove_container(container['Id'], force=True)
    command = api.inspect_image(docker_env.IMAGE)['Config']['Cmd']
    record = _upload(backend, glance_images, path, container_format='bare',
                     os_command_line=' '.join(
                         "'%s'" % arg.replace("'", "'\\''")
                         for arg in command))
    instance = _instance(record.id)
    backend.spawn(instance)
    assert backend.get_info(instance).state == power_state.RUNNING
    _wait_for_banner(backend, instance)
    imported = api.inspect_image(images.service_tag(record.id))
    assert imported['Config']['Cmd'] == command


# -- bad input: typed errors, nothing left behind ---------------------------

def test_unknown_image_id(api, backend, host):
    with pytest.raises(exception.ImageNotFound) as info:
        backend.spawn(_instance(str(uuidlib.uuid4())))
    assert 'glance image service' in str(info.value)
    assert _ours(api, host) == []


def test_format_docker_cannot_run(api, backend, glance_images, host,
                                  tmp_path):
    path = tmp_path / 'disk.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(path),
                    '16M'], check=True)
    record = _upload(backend, glance_images, path, disk_format='qcow2',
                     container_format='bare')
    with pytest.raises(exception.ImageUnacceptable) as info:
        backend.spawn(_instance(record.id))
    assert 'qcow2' in str(info.value)
    assert _ours(api, host) == []
    assert not docker_env.has_image(api, images.service_tag(record.id))


def test_checksum_mismatch_loads_nothing(api, backend, glance, glance_images,
                                         host, tmp_path):
    image_id, path = docker_env.unique_image(api, tmp_path)
    record = _upload(backend, glance_images, path)
    stored = os.path.join(glance.store_dir, record.id)
    with tarfile.open(path) as tar:
        member = max(tar.getmembers(), key=lambda m: m.size)
    # A byte inside the largest file's data: the archive stays well
    # formed, only the image service's checksum can tell.
    with open(stored, 'r+b') as f:
        f.seek(member.offset_data + member.size // 2)
        byte = f.read(1)
        f.seek(member.offset_data + member.size // 2)
        f.write(bytes([byte[0] ^ 0xff]))
    with pytest.raises(image_exception.ImageChecksumMismatch):
        backend.spawn(_instance(record.id))
    assert _ours(api, host) == []
    assert not docker_env.has_image(api, image_id)
    assert not docker_env.has_image(api, images.service_tag(record.id))


def test_download_cut_short_loads_nothing(api, make_driver, glance,
                                          glance_images, host, tmp_path):
    image_id, path = docker_env.unique_image(api, tmp_path)
    assert path.stat().st_size > 2 * MIB
    direct = make_driver()
    record = _upload(direct, glance_images, path)
    # Cut in the last MiB, so dockerd has most of the archive already.
    proxy = CuttingProxy(glance.port, cut_after=record.size - MIB // 2)
    try:
        backend = make_driver(proxy.url)
        with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
            backend.spawn(_instance(record.id))
    finally:
        proxy.close()
    assert proxy.cuts >= 1
    assert 0 < info.value.received < record.size
    assert _ours(api, host) == []
    assert not docker_env.has_image(api, image_id)
    assert not docker_env.has_image(api, images.service_tag(record.id))


def test_snapshot_with_glance_unreachable_leaves_nothing(
        api, make_driver, glance_images, host, tmp_path):
    image_id, path = docker_env.unique_image(api, tmp_path)
    direct = make_driver()
    record = _upload(direct, glance_images, path)
    instance = _instance(record.id)
    direct.spawn(instance)
    snap_name = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    with socket.socket() as sock:
        # Bound, never listening: connections to it are refused.
        sock.bind(('127.0.0.1', 0))
        unreachable = make_driver('http://127.0.0.1:%d'
                                  % sock.getsockname()[1])
        with pytest.raises(image_exception.ImageServiceUnavailable):
            unreachable.snapshot(instance, snap_name)
    assert not docker_env.has_image(api, snap_name)
    assert snap_name not in [r.name for r in direct.image_service.list()]
    assert direct.get_info(instance).state == power_state.RUNNING


class RequestCuttingProxy(CuttingProxy):
    """A proxy to Glance that cuts each connection's requests at a byte.

    Answers pass whole; a request body longer than ``cut_after`` bytes
    (an upload) loses its connection midway.
    """

    def _pipe(self, src, dst):
        sent = 0
        try:
            while data := src.recv(65536):
                data = data[:self.cut_after - sent]
                dst.sendall(data)
                sent += len(data)
                if sent >= self.cut_after:
                    self.cuts += 1
                    break
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _answers(self, upstream, client):
        CuttingProxy._pipe(upstream, client)


def test_snapshot_upload_cut_short_leaves_nothing(
        api, make_driver, glance, glance_images, host, tmp_path):
    image_id, path = docker_env.unique_image(api, tmp_path)
    direct = make_driver()
    record = _upload(direct, glance_images, path)
    instance = _instance(record.id)
    direct.spawn(instance)
    proxy = RequestCuttingProxy(glance.port, cut_after=MIB)
    snap_name = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    try:
        cut = make_driver(proxy.url)
        with pytest.raises(image_exception.ImageUploadFailed):
            cut.snapshot(instance, snap_name)
    finally:
        proxy.close()
    assert proxy.cuts >= 1
    # Neither a queued or killed record in Glance nor the commit in dockerd.
    assert snap_name not in [r.name for r in direct.image_service.list()]
    assert not docker_env.has_image(api, snap_name)
    assert direct.get_info(instance).state == power_state.RUNNING


# -- pruning dockerd's copies --------------------------------------------

def _last_used(api, image_id):
    return images.tag_time(api.inspect_image(
        images.service_tag(image_id))['Metadata']['LastTagTime'])


def test_unused_copies_are_pruned_and_used_ones_kept(
        api, backend, glance_images, tmp_path):
    _image_id, path = docker_env.unique_image(api, tmp_path)
    record = _upload(backend, glance_images, path)
    first = _instance(record.id)
    backend.spawn(first)
    loaded = _last_used(api, record.id)
    second = _instance(record.id)
    backend.spawn(second)
    # A boot from dockerd's copy stamps its last use.
    assert _last_used(api, record.id) > loaded

    # In use: kept, whatever its age.
    backend.manage_image_cache(max_age=0)
    assert docker_env.has_image(api, images.service_tag(record.id))

    backend.destroy(first)
    backend.destroy(second)
    # Unused but recent: kept.
    assert backend.manage_image_cache(max_age=3600) == []
    assert docker_env.has_image(api, images.service_tag(record.id))
    removed = backend.manage_image_cache(max_age=0)
    assert record.id in [cached.image_id for cached in removed]
    assert not docker_env.has_image(api, images.service_tag(record.id))
    # The image service still has it: the next boot loads it again.
    third = _instance(record.id)
    backend.spawn(third)
    assert backend.get_info(third).state == power_state.RUNNING
    backend.destroy(third)


def test_a_snapshot_the_service_deleted_is_pruned(
        api, backend, glance_images, tmp_path):
    _image_id, path = docker_env.unique_image(api, tmp_path)
    record = _upload(backend, glance_images, path)
    server = _instance(record.id)
    backend.spawn(server)
    kept_name = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    gone_name = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    for name in (kept_name, gone_name):
        backend.snapshot(server, name)
    kept = backend.image_service.show(kept_name)
    gone = backend.image_service.show(gone_name)
    glance_images.append(kept.id)
    backend.destroy(server)
    # As Nova does with a shelved server's image once it is unshelved:
    # the image service deletes it without a word to the driver.
    backend.image_service.delete(gone.id)

    backend.manage_image_cache(max_age=0)
    assert not docker_env.has_image(api, images.service_tag(gone.id))
    assert not docker_env.has_image(api, gone_name)
    # Its image is still in the service: dockerd's copy may go, the
    # snapshot this host took stays.
    assert not docker_env.has_image(api, images.service_tag(kept.id))
    assert docker_env.has_image(api, kept_name)
    backend.delete_snapshot(kept_name)
