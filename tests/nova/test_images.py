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

"""The image service over Nova's image API, and the adapter's use of it.

Nova's real ``nova.image.glance.API`` runs against Nova's Glance fixture
(:mod:`.glance_fixture`, which keeps image data); contexts are Nova's
``RequestContext``.
"""

import dataclasses
import hashlib
import io
import threading
from unittest import mock

from keystoneauth1 import exceptions as ks_exc
from nova.compute import task_states
from nova import context as nova_context
from nova import exception as nova_exception
from nova.image import glance as nova_glance
from nova import objects as nova_objects
from nova.virt import driver as nova_driver
import pytest

from compute_driver.docker import driver as docker_driver
from compute_driver.fake import driver as fake_driver
from compute_driver.image import exception as image_exception
from compute_driver.libvirt import driver as libvirt_driver
from compute_driver.nova import images as nova_images
from compute_driver.xenapi import driver as xenapi_driver
from tests.nova import glance_fixture
from tests.nova import test_adapter

nova_objects.register_all()

#: The adapter test module's fixture, for the adapter tests here.
make_adapter = test_adapter.make_adapter

IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'


class _Test:
    """What Nova's fixtures need of a test case, for pytest."""

    def __init__(self, monkeypatch):
        self._monkeypatch = monkeypatch
        self.cleanups = []

    def useFixture(self, fixture):
        fixture.setUp()
        self.cleanups.append(fixture.cleanUp)
        return fixture

    def stub_out(self, name, value):
        # As Nova's stub_out, which may add an attribute.
        self._monkeypatch.setattr(name, value, raising=False)


@pytest.fixture
def glance(monkeypatch, flags):
    test = _Test(monkeypatch)
    fixture = test.useFixture(glance_fixture.DataGlanceFixture(test))
    yield fixture
    for cleanup in reversed(test.cleanups):
        cleanup()


@pytest.fixture
def image_api(glance):
    api = nova_glance.API()
    # Spied on, to see which context each call carries.
    for name in ('get', 'get_all', 'download', 'create', 'update', 'delete'):
        setattr(api, name, mock.Mock(wraps=getattr(api, name)))
    return api


@pytest.fixture
def service(image_api):
    return nova_images.NovaImageService(image_api)


def user_context(user='alice'):
    return nova_context.RequestContext(user, 'project-%s' % user,
                                       auth_token='token-%s' % user)


def test_show_and_download_use_the_requests_context(service, image_api,
                                                    glance, tmp_path):
    ctxt = user_context()
    dest = tmp_path / 'image'
    with nova_images.request(ctxt):
        record = service.show(IMAGE)
        service.download(IMAGE, str(dest))
    assert record.status == 'active'
    assert record.os_hash_algo == 'sha512'
    assert dest.read_bytes() == glance.data_of(IMAGE)
    assert image_api.get.call_args.args[0] is ctxt
    assert image_api.download.call_args.args[0] is ctxt


def test_outside_a_request_the_admin_context_is_used(service, image_api):
    service.show(IMAGE)
    assert image_api.get.call_args.args[0].is_admin


def test_concurrent_requests_each_see_their_own_context(service,
                                                        image_api):
    contexts = [user_context('u%d' % i) for i in range(4)]
    barrier = threading.Barrier(len(contexts))
    seen = {}
    real_get = image_api.get

    def get(ctxt, image_id, **kwargs):
        seen[threading.current_thread().name] = ctxt
        return real_get(ctxt, image_id, **kwargs)

    image_api.get = mock.Mock(side_effect=get)

    def run(ctxt):
        with nova_images.request(ctxt):
            # Every request is open before any asks Glance.
            barrier.wait()
            service.show(IMAGE)

    threads = [threading.Thread(target=run, args=(c,), name=c.user_id)
               for c in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {c.user_id: c for c in contexts}


def test_show_by_name_ambiguous_and_unknown(service, glance):
    created = glance.create(None, {'name': 'unique-name'},
                            data=io.BytesIO(b'data'))
    assert service.show('unique-name').id == created['id']
    # Nova's stock images share one name.
    with pytest.raises(image_exception.AmbiguousImageName):
        service.show('fakeimage123456')
    with pytest.raises(image_exception.ImageNotInService):
        service.show('no-such-image')


def test_download_of_corrupt_data_leaves_nothing(service, glance, tmp_path):
    size = len(glance.data_of(IMAGE))
    glance._imagedata[IMAGE] = b'\0' * size
    dest = tmp_path / 'image'
    with pytest.raises(image_exception.ImageChecksumMismatch):
        service.download(IMAGE, str(dest))
    assert list(tmp_path.iterdir()) == []


def test_upload_creates_an_active_image(service, glance):
    data = b'snapshot data' * 1000
    record = service.upload('new-image', io.BytesIO(data), 'qcow2', 'bare',
                            properties={'os_type': 'linux'}, min_disk=2)
    assert record.status == 'active'
    assert (record.disk_format, record.container_format) == ('qcow2',
                                                             'bare')
    assert record.os_hash_value == hashlib.sha512(data).hexdigest()
    assert record.properties['os_type'] == 'linux'
    assert record.min_disk == 2
    assert glance.data_of(record.id) == data


def test_failed_upload_keeps_no_image(service, image_api, glance):
    before = set(glance.images)
    image_api.update.side_effect = nova_exception.ImageQuotaExceeded(
        image_id='x')
    with pytest.raises(image_exception.ImageUploadFailed):
        service.upload('new-image', io.BytesIO(b'data'), 'raw', 'bare')
    assert set(glance.images) == before


def test_snapshot_fills_the_image_nova_reserved(service, glance):
    ctxt = user_context()
    reserved = glance.create(ctxt, {'name': 'my snapshot',
                                    'properties': {'user_id': 'alice'}})
    assert reserved['status'] == 'queued'
    before = set(glance.images)
    with nova_images.request(ctxt, snapshot_image=reserved['id']):
        # Not an image yet: the contract's name check lets it through.
        with pytest.raises(image_exception.ImageNotInService):
            service.show(reserved['id'])
        record = service.upload(reserved['id'], io.BytesIO(b'disk'),
                                'raw', 'bare',
                                properties={'image_type': 'snapshot'})
    assert set(glance.images) == before
    assert record.id == reserved['id']
    assert record.name == 'my snapshot'
    assert record.status == 'active'
    assert record.properties['user_id'] == 'alice'
    assert record.properties['image_type'] == 'snapshot'
    assert glance.data_of(reserved['id']) == b'disk'
    # Outside the snapshot the image is an ordinary one.
    assert service.show(reserved['id']).status == 'active'


@pytest.mark.parametrize('error, expected', [
    (nova_exception.ImageNotAuthorized(image_id=IMAGE),
     image_exception.ImageServiceUnavailable),
    (nova_exception.GlanceConnectionFailed(server='glance', reason='down'),
     image_exception.ImageServiceUnavailable),
    (nova_exception.ImageNotFound(image_id=IMAGE),
     image_exception.ImageNotInService),
    (ks_exc.EmptyCatalog('The service catalog is empty.'),
     image_exception.ImageServiceUnavailable),
    (RuntimeError('500 Internal Server Error'),
     image_exception.ImageServiceError),
])
def test_nova_errors_become_ours(service, image_api, error, expected):
    image_api.get.side_effect = error
    image_api.get_all.side_effect = error
    with pytest.raises(expected):
        service.show(IMAGE)


# -- the adapter -------------------------------------------------------------

def test_adapter_snapshot_reports_task_states_and_fills_novas_image(
        make_adapter, glance):
    ctxt = user_context()
    driver = make_adapter(image_service='nova')
    assert isinstance(driver.backend.image_service,
                      nova_images.NovaImageService)
    instance = test_adapter.nova_instance(image_ref=IMAGE)
    test_adapter.spawn(driver, ctxt, instance=instance,
                       meta=test_adapter.image_meta(id=IMAGE,
                                                    name='fakeimage123456'))
    reserved = glance.create(ctxt, {'name': 'snap'})
    states = []
    driver.snapshot(ctxt, instance, reserved['id'],
                    lambda **kw: states.append(kw))
    assert states == [
        {'task_state': task_states.IMAGE_PENDING_UPLOAD},
        {'task_state': task_states.IMAGE_UPLOADING,
         'expected_state': task_states.IMAGE_PENDING_UPLOAD}]
    image = glance.show(ctxt, reserved['id'])
    assert (image['status'], image['disk_format'],
            image['container_format']) == ('active', 'raw', 'bare')
    assert glance.data_of(reserved['id']) == glance.data_of(IMAGE)
    assert image['properties']['instance_uuid'] == instance.uuid


def test_adapter_keeps_the_backends_images_when_told(make_adapter):
    driver = make_adapter(image_service='backend')
    assert not isinstance(driver.backend.image_service,
                          nova_images.NovaImageService)


def test_image_type_capabilities_are_exactly_the_backends(make_adapter):
    driver = make_adapter()
    reported = {name for name, value in driver.capabilities.items()
                if name.startswith('supports_image_type_') and value}
    assert reported == {'supports_image_type_%s' % t
                        for t in fake_driver.FakeDriver.image_types}


@pytest.mark.parametrize('backend', [
    fake_driver.FakeDriver, libvirt_driver.LibvirtDriver,
    docker_driver.DockerDriver, xenapi_driver.XenAPIDriver])
def test_every_backends_image_types_are_novas(backend):
    # Each becomes a COMPUTE_IMAGE_TYPE_* trait; one Nova does not know
    # would be a capability nothing reads.
    assert {'supports_image_type_%s' % t for t in backend.image_types} <= (
        set(nova_driver.CAPABILITY_TRAITS_MAP))


def test_download_with_a_handed_record_does_not_read_it_again(
        service, image_api, glance, tmp_path):
    record = service.show(IMAGE)
    image_api.get.reset_mock()
    dest = tmp_path / 'image'
    assert service.download(IMAGE, str(dest), record=record) == record
    image_api.get.assert_not_called()
    assert dest.read_bytes() == glance.data_of(IMAGE)
    with pytest.raises(image_exception.ImageNotActive):
        service.download(IMAGE, str(tmp_path / 'other'),
                         record=dataclasses.replace(record, status='queued'))
    assert not (tmp_path / 'other').exists()
