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

"""The fake backend booting from a real Glance and snapshotting into it."""

import hashlib
import os
import uuid as uuidlib

import pytest

from compute_driver import flavors  # noqa: E402
from compute_driver.image import exception as image_exception  # noqa: E402
from compute_driver import loader  # noqa: E402
from compute_driver import objects  # noqa: E402
from compute_driver.testing import fixtures  # noqa: E402
from compute_driver.testing import glance as glance_server  # noqa: E402


@pytest.fixture(scope='module')
def server():
    glance_server.require_glance_client()
    try:
        running = glance_server.GlanceServer().start()
    except glance_server.GlanceUnavailable as exc:
        fixtures.skip_or_fail(str(exc))
    yield running
    running.stop()


@pytest.fixture
def backend(server):
    conf = fixtures.make_conf('fake', {
        'fake': {'image_service': 'configured'},
        'image_service': {'backend': 'glance'},
        'glance': {'api_servers': [server.url], 'num_retries': 0}})
    driver = loader.load_driver(conf)
    driver.init_host(conf.host)
    driver.uploaded = []
    yield driver
    for image_id in driver.uploaded:
        driver.image_service.delete(image_id)


def test_boot_snapshot_boot_again(backend, tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 17)
    source = tmp_path / 'disk.raw'
    source.write_bytes(data)
    image = backend.image_service.upload(
        'cdfake-%s' % uuidlib.uuid4().hex[:6], str(source), 'raw', 'bare',
        properties={'os_type': 'linux'})
    backend.uploaded.append(image.id)
    flavor = flavors.get_flavor(backend.conf, 'm1.tiny')
    instance = objects.Instance.new('cdfake-vm1', flavor, image.name)
    backend.spawn(instance)
    digest = hashlib.sha256(data).hexdigest()
    assert backend.get_diagnostics(instance)['disk_sha256'] == digest

    name = 'cdfake-snap-%s' % uuidlib.uuid4().hex[:6]
    backend.snapshot(instance, name)
    snap = backend.image_service.show(name)
    backend.uploaded.append(snap.id)
    assert snap.status == 'active' and snap.size == len(data)
    assert (snap.disk_format, snap.container_format) == ('raw', 'bare')
    assert snap.properties['image_type'] == 'snapshot'
    assert snap.properties['base_image_ref'] == image.id
    assert snap.properties['os_type'] == 'linux'

    again = objects.Instance.new('cdfake-vm2', flavor, snap.id)
    backend.spawn(again)
    assert backend.get_diagnostics(again)['disk_sha256'] == digest
    backend.delete_snapshot(name)
    with pytest.raises(image_exception.ImageNotInService):
        backend.image_service.show(snap.id)
