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

"""How the contract hands backends their images (ComputeDriver's images
block): the image service and cache built from the configuration, images
resolved by id or name, snapshots uploaded with Nova's properties."""

import uuid

import pytest

from compute_driver import driver
from compute_driver import exception
from compute_driver.image import exception as image_exception
from compute_driver.image import local
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures


@pytest.fixture
def backend(tmp_path):
    conf = fixtures.make_conf('fake', {
        'image_service': {'local_path': str(tmp_path / 'images'),
                          'cache_path': str(tmp_path / 'cache')},
        'fake': {'image_service': 'configured'}})
    return loader.load_driver(conf)


def _upload(service, tmp_path, name, data=b'x' * 4096, **kwargs):
    src = tmp_path / ('%s.src' % name)
    src.write_bytes(data)
    return service.upload(name, str(src), kwargs.pop('disk_format', 'raw'),
                          'bare', **kwargs)


def _instance(image_ref, root_gb=1):
    return objects.Instance(
        uuid=str(uuid.uuid4()), name='img-core-test',
        flavor=objects.Flavor('m1.test', 1, 64, root_gb=root_gb),
        image_ref=image_ref)


def test_image_service_comes_from_the_configuration(backend, tmp_path):
    service = backend.image_service
    assert isinstance(service, local.LocalImageService)
    assert backend.image_service is service
    assert backend.image_cache.path == str(tmp_path / 'cache')
    assert backend.image_cache.service is service


def test_a_caller_may_set_its_own_image_service(backend, tmp_path):
    first_cache = backend.image_cache
    other = local.LocalImageService(str(tmp_path / 'other'))
    backend.image_service = other
    assert backend.image_service is other
    # The cache downloads through the new service.
    assert backend.image_cache is not first_cache
    assert backend.image_cache.service is other


def test_image_for_resolves_an_id_or_a_name(backend, tmp_path):
    record = _upload(backend.image_service, tmp_path, 'cirros',
                     min_ram=32)
    by_name = backend.image_for(_instance('cirros'))
    by_id = backend.image_for(_instance(record.id))
    assert by_name == by_id
    assert by_id.id == record.id
    assert by_id.min_ram == 32


def test_fetch_image_downloads_once_into_the_cache(backend, tmp_path):
    record = _upload(backend.image_service, tmp_path, 'cirros')
    image = backend.image_for(_instance('cirros'))
    path = backend.fetch_image(image)
    assert path == backend.image_cache.path_of(record.id)
    with open(path, 'rb') as f:
        assert f.read() == b'x' * 4096
    assert [c.image_id for c in backend.image_cache.list()] == [record.id]


def test_unknown_image_is_a_typed_error(backend):
    with pytest.raises(image_exception.ImageNotInService):
        backend.image_for(_instance('nosuch'))


def test_image_larger_than_the_root_disk_is_refused(backend, tmp_path):
    record = _upload(backend.image_service, tmp_path, 'big')
    small = objects.Flavor('m1.test', 1, 64, root_gb=1)
    backend.check_image_fits_flavor(record.id, 1024 ** 3, small)
    with pytest.raises(exception.ImageUnacceptable, match='root disk'):
        backend.check_image_fits_flavor(record.id, 1024 ** 3 + 1, small)
    # A root disk of 0 takes the image's size.
    backend.check_image_fits_flavor(
        record.id, 1024 ** 4, objects.Flavor('m1.test', 1, 64, root_gb=0))


def test_snapshot_upload_carries_nova_properties(backend, tmp_path):
    base = _upload(backend.image_service, tmp_path, 'base', min_ram=16,
                   min_disk=2, properties={
                       'kernel_id': 'k', 'ramdisk_id': 'r',
                       'img_signature': 'sig', 'os_type': 'linux'})
    instance = _instance(base.id)
    src = tmp_path / 'disk'
    src.write_bytes(b'snapshot data')
    record = backend.upload_snapshot(instance, 'snap', str(src), 'qcow2',
                                     'bare', properties={'extra': '1'})
    assert record.status == 'active'
    assert (record.disk_format, record.container_format) == ('qcow2', 'bare')
    assert record.min_ram == 16 and record.min_disk == 2
    props = record.properties
    assert props['image_type'] == 'snapshot'
    assert props['instance_uuid'] == instance.uuid
    assert props['base_image_ref'] == base.id
    assert (props['kernel_id'], props['ramdisk_id']) == ('k', 'r')
    assert props['os_type'] == 'linux' and props['extra'] == '1'
    assert 'img_signature' not in props
    assert backend.image_exists('snap')
    assert record.id in backend.snapshot_images_of(instance)
    with pytest.raises(exception.InvalidInput, match='not a snapshot'):
        backend.delete_snapshot_image(base.id)
    backend.delete_snapshot_image('snap')
    backend.delete_snapshot_image('snap')
    assert not backend.image_exists('snap')


class _RecordSpy(local.LocalImageService):
    """Counts the records read and what each download was handed."""

    def __init__(self, path):
        super().__init__(path)
        self.shows = 0
        self.handed = []

    def show(self, image):
        self.shows += 1
        return super().show(image)

    def download(self, image_id, dest, record=None):
        self.handed.append(record)
        return super().download(image_id, dest, record=record)


class _LegacyService(local.LocalImageService):
    """A service written before ``download`` took a record."""

    def __init__(self, path):
        super().__init__(path)
        self.downloads = []

    def download(self, image_id, dest):
        self.downloads.append(image_id)
        return super().download(image_id, dest)


def test_a_boot_reads_the_record_once(backend, tmp_path):
    spy = _RecordSpy(str(tmp_path / 'spy'))
    backend.image_service = spy
    record = _upload(spy, tmp_path, 'cirros')
    image = backend.image_for(_instance(record.id))
    backend.fetch_image(image)
    assert spy.shows == 1
    assert spy.handed == [record]
    # Used once: a second download (after the cache lost the image)
    # reads a fresh record.
    backend.image_cache.remove(record.id)
    backend.fetch_image(image)
    assert spy.handed == [record, None]


def test_a_service_without_the_record_parameter_still_downloads(
        backend, tmp_path):
    legacy = _LegacyService(str(tmp_path / 'legacy'))
    backend.image_service = legacy
    record = _upload(legacy, tmp_path, 'cirros', data=b'y' * 8192)
    path = backend.fetch_image(backend.image_for(_instance(record.id)))
    assert legacy.downloads == [record.id]
    with open(path, 'rb') as f:
        assert f.read() == b'y' * 8192


def test_records_of_boots_that_never_download_are_not_hoarded(
        backend, tmp_path, monkeypatch):
    monkeypatch.setattr(driver, '_FRESH_RECORDS_MAX', 2)
    spy = _RecordSpy(str(tmp_path / 'spy'))
    backend.image_service = spy
    records = [_upload(spy, tmp_path, 'img%d' % n, data=b'%d' % n * 512)
               for n in range(3)]
    # Three boots read their records; none downloads (refused, say, by
    # the claim): the oldest record goes.
    images = [backend.image_for(_instance(r.id)) for r in records]
    backend.fetch_image(images[0])
    backend.fetch_image(images[2])
    assert spy.handed == [None, records[2]]
