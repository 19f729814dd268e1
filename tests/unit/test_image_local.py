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

"""The local image service and the verified download every service
shares (compute_driver.image.local, compute_driver.image.api)."""

import dataclasses
import hashlib
import io
import os
import stat

import pytest

from compute_driver import exception
from compute_driver.image import api
from compute_driver.image import exception as image_exception
from compute_driver.image import local


@pytest.fixture
def service(tmp_path):
    return local.LocalImageService(str(tmp_path / 'images'))


@pytest.fixture
def source(tmp_path):
    path = tmp_path / 'source.img'
    # Not a multiple of the chunk size, so the last chunk is partial.
    path.write_bytes(os.urandom(3 * api.CHUNK_SIZE + 12345))
    return path


def _visible(directory):
    return sorted(os.listdir(directory))


def test_upload_records_sizes_and_hashes(service, source):
    data = source.read_bytes()
    record = service.upload('cirros', str(source), 'qcow2', 'bare',
                            {'hw_disk_bus': 'virtio'}, min_ram=64,
                            min_disk=1)
    assert record.status == 'active'
    assert record.size == len(data)
    assert record.checksum == hashlib.md5(data).hexdigest()
    assert record.os_hash_algo == 'sha512'
    assert record.os_hash_value == hashlib.sha512(data).hexdigest()
    assert record.properties == {'hw_disk_bus': 'virtio'}
    assert service.show(record.id) == record
    assert service.show('cirros') == record
    assert service.list() == [record]


def test_records_changed_by_another_process_are_read_again(service,
                                                           tmp_path):
    record = service.upload('cirros', io.BytesIO(b'data'), 'raw', 'bare')
    assert service.show('cirros').properties == {}
    # Another process (its own service) replaces the record, then
    # deletes it: what this one read before is never returned.
    other = local.LocalImageService(service.path)
    other._write_record(api.ImageRecord(
        **{**record.__dict__, 'name': 'renamed', 'properties': {'a': 'b'}}))
    assert service.show('renamed').properties == {'a': 'b'}
    assert service.show(record.id).name == 'renamed'
    with pytest.raises(image_exception.ImageNotInService):
        service.show('cirros')
    other.delete(record.id)
    assert service.list() == []
    with pytest.raises(image_exception.ImageNotInService):
        service.show(record.id)


def test_a_record_shown_is_a_copy(service):
    record = service.upload('cirros', io.BytesIO(b'data'), 'raw', 'bare',
                            {'a': 'b'})
    service.show('cirros').properties['a'] = 'changed'
    assert service.show(record.id).properties == {'a': 'b'}


def test_files_and_directory_are_private(service, source):
    record = service.upload('cirros', str(source), 'raw', 'bare')
    assert stat.S_IMODE(os.stat(service.path).st_mode) == 0o700
    for name in os.listdir(service.path):
        mode = os.stat(os.path.join(service.path, name)).st_mode
        assert stat.S_IMODE(mode) == 0o600, name
    assert _visible(service.path) == [record.id + '.data',
                                      record.id + '.json']


def test_upload_from_file_object(service):
    record = service.upload('small', io.BytesIO(b'abc'), 'raw', 'bare')
    assert record.size == 3
    out = io.BytesIO()
    assert service.download(record.id, out) == record
    assert out.getvalue() == b'abc'


def test_download_to_path_round_trips(service, source, tmp_path):
    record = service.upload('cirros', str(source), 'raw', 'bare')
    dest = tmp_path / 'out' / 'disk'
    dest.parent.mkdir()
    service.download(record.id, str(dest))
    assert dest.read_bytes() == source.read_bytes()
    assert _visible(dest.parent) == ['disk']
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600


def test_unknown_image(service):
    with pytest.raises(image_exception.ImageNotInService) as info:
        service.show('no-such-image')
    # Callers that handle the library's ImageNotFound handle this one.
    assert isinstance(info.value, exception.ImageNotFound)
    with pytest.raises(image_exception.ImageNotInService):
        service.download('0b0b0b0b-0000-4000-8000-000000000000', io.BytesIO())


def test_path_like_ids_never_reach_the_file_system(service, tmp_path):
    (tmp_path / 'secret.json').write_text('{}')
    with pytest.raises(image_exception.ImageNotInService):
        service.show('../secret')
    service.delete('../secret')
    assert (tmp_path / 'secret.json').exists()


def test_shared_name_is_ambiguous_and_id_still_works(service):
    first = service.upload('same', io.BytesIO(b'1'), 'raw', 'bare')
    second = service.upload('same', io.BytesIO(b'2'), 'raw', 'bare')
    with pytest.raises(image_exception.AmbiguousImageName) as info:
        service.show('same')
    assert info.value.count == 2
    assert service.show(first.id) == first
    assert service.show(second.id) == second


def test_delete_is_idempotent(service, source):
    record = service.upload('cirros', str(source), 'raw', 'bare')
    service.delete(record.id)
    service.delete(record.id)
    assert service.list() == []
    assert _visible(service.path) == []


def test_failed_upload_keeps_nothing(service):
    class Broken(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def readable(self):
            return True

        def read(self, size=-1):
            self.calls += 1
            if self.calls > 2:
                raise OSError(5, 'Input/output error')
            return b'x' * 1000

    with pytest.raises(image_exception.ImageUploadFailed) as info:
        service.upload('broken', Broken(), 'raw', 'bare')
    assert 'Input/output error' in str(info.value)
    assert service.list() == []
    assert _visible(service.path) == []


def _tamper(service, record, data):
    with open(os.path.join(service.path, record.id + '.data'), 'wb') as f:
        f.write(data)


def test_checksum_mismatch_leaves_no_file(service, source, tmp_path):
    record = service.upload('cirros', str(source), 'raw', 'bare')
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xff
    _tamper(service, record, bytes(data))
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    with pytest.raises(image_exception.ImageChecksumMismatch) as info:
        service.download(record.id, str(out_dir / 'disk'))
    assert info.value.algorithm == 'sha512'
    assert info.value.expected == record.os_hash_value
    assert isinstance(info.value, exception.ImageUnacceptable)
    assert _visible(out_dir) == []


def test_short_read_is_incomplete_and_leaves_no_file(service, source,
                                                     tmp_path):
    record = service.upload('cirros', str(source), 'raw', 'bare')
    _tamper(service, record, source.read_bytes()[:api.CHUNK_SIZE + 7])
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
        service.download(record.id, str(out_dir / 'disk'))
    assert info.value.received == api.CHUNK_SIZE + 7
    assert info.value.expected == str(record.size)
    assert _visible(out_dir) == []


def test_failure_truncates_what_was_written_to_a_file_object(
        service, source):
    record = service.upload('cirros', str(source), 'raw', 'bare')
    _tamper(service, record, source.read_bytes()[:-1] + b'?')
    out = io.BytesIO(b'header')
    out.seek(0, io.SEEK_END)
    with pytest.raises(image_exception.ImageChecksumMismatch):
        service.download(record.id, out)
    assert out.getvalue() == b'header'


def _record(data, **fields):
    values = {'id': 'img', 'name': 'img', 'size': len(data)}
    values.update(fields)
    return api.ImageRecord(**values)


def test_md5_checksum_is_used_without_os_hash(tmp_path):
    data = b'payload'
    dest = tmp_path / 'disk'
    good = _record(data, checksum=hashlib.md5(data).hexdigest())
    api.write_verified('test', good, [data[:3], data[3:]], str(dest))
    assert dest.read_bytes() == data
    bad = _record(data, checksum=hashlib.md5(b'other').hexdigest())
    with pytest.raises(image_exception.ImageChecksumMismatch) as info:
        api.write_verified('test', bad, [data], str(tmp_path / 'other'))
    assert info.value.algorithm == 'md5'
    assert _visible(tmp_path) == ['disk']


def test_os_hash_wins_over_md5(tmp_path):
    data = b'payload'
    record = _record(data, checksum='0' * 32, os_hash_algo='sha256',
                     os_hash_value=hashlib.sha256(data).hexdigest())
    api.write_verified('test', record, [data], str(tmp_path / 'disk'))
    assert (tmp_path / 'disk').read_bytes() == data


def test_more_data_than_recorded_is_refused(tmp_path):
    data = b'payload'
    record = _record(data, size=3,
                     checksum=hashlib.md5(data).hexdigest())
    with pytest.raises(image_exception.ImageChecksumMismatch) as info:
        api.write_verified('test', record, [data], str(tmp_path / 'disk'))
    assert info.value.algorithm == 'size'
    assert _visible(tmp_path) == []


def test_transport_error_is_one_typed_error(tmp_path):
    def chunks():
        yield b'abc'
        raise ConnectionResetError(104, 'Connection reset by peer')

    record = _record(b'abcdef', checksum=hashlib.md5(b'abcdef').hexdigest())
    with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
        api.write_verified('test', record, chunks(), str(tmp_path / 'disk'))
    assert info.value.received == 3
    assert 'Connection reset by peer' in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert _visible(tmp_path) == []


def test_disk_full_is_one_typed_error(tmp_path):
    if not os.path.exists('/dev/full'):
        pytest.skip('/dev/full is needed to fill a disk')
    record = _record(b'abc', checksum=hashlib.md5(b'abc').hexdigest())
    with open('/dev/full', 'wb', buffering=0) as full:
        with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
            api.write_verified('test', record, [b'abc'], full)
    assert 'No space left on device' in str(info.value)


class _ShortWrites(io.RawIOBase):
    """A raw file that takes at most 2 bytes a write, as a filling disk."""

    def __init__(self, fd):
        self.fd = fd
        self.data = b''

    def writable(self):
        return True

    def fileno(self):
        return self.fd

    def write(self, data):
        self.data += bytes(data[:2])
        return min(2, len(data))


def test_short_writes_lose_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(api, 'WRITEBACK_BYTES', 4)
    monkeypatch.setattr(api, '_sync_file_range',
                        lambda: lambda *args: calls.append(args[1:3]) or 0)
    with open(tmp_path / 'f', 'wb') as real:
        out = _ShortWrites(real.fileno())
        write = api._FileWriter(out)
        for chunk in (b'abcde', b'fgh', b'i'):
            write(chunk)
    assert out.data == b'abcdefghi'
    # The kernel is asked to write back each range once, as it fills.
    assert calls == [(0, 5), (5, 4)]


def test_image_record_converts_to_image_meta():
    record = api.ImageRecord(
        id='8ceb9b45-a580-49c2-a880-ccd5579ac8ab', name='cirros',
        disk_format='qcow2', container_format='bare', size=10, min_ram=64,
        min_disk=1, properties={'hw_disk_bus': 'virtio'})
    meta = record.to_image_meta()
    assert meta.name == record.id
    assert (meta.disk_format, meta.container_format) == ('qcow2', 'bare')
    assert (meta.min_ram, meta.min_disk, meta.size) == (64, 1, 10)
    assert meta.properties == {'hw_disk_bus': 'virtio'}


def test_a_handed_record_is_what_the_data_is_verified_against(
        service, source, tmp_path):
    record = service.upload('cirros', str(source), 'raw', 'bare')
    dest = tmp_path / 'disk'
    assert service.download(record.id, str(dest), record=record) == record
    assert dest.read_bytes() == source.read_bytes()
    wrong = dataclasses.replace(record, os_hash_value='0' * 128)
    with pytest.raises(image_exception.ImageChecksumMismatch):
        service.download(record.id, str(tmp_path / 'other'), record=wrong)
    assert not (tmp_path / 'other').exists()


@pytest.mark.parametrize('change, error', [
    ({'id': '6f0c9c43-4c27-4ac5-9b3c-1d0e5b0f7a11'},
     image_exception.ImageNotInService),
    ({'status': 'queued'}, image_exception.ImageNotActive),
])
def test_a_handed_record_of_another_image_or_without_data_is_refused(
        service, source, tmp_path, change, error):
    record = service.upload('cirros', str(source), 'raw', 'bare')
    with pytest.raises(error):
        service.download(record.id, str(tmp_path / 'disk'),
                         record=dataclasses.replace(record, **change))
    assert not (tmp_path / 'disk').exists()


def test_a_verified_download_is_synced_once(tmp_path, monkeypatch):
    # write_verified syncs the file itself while the hash finishes;
    # atomic_write then renames it without waiting for the disk again.
    data = os.urandom(3 * api.DOWNLOAD_BUFFER_SIZE + 5)
    record = api.ImageRecord(
        id='img', name='img', size=len(data), os_hash_algo='sha512',
        os_hash_value=hashlib.sha512(data).hexdigest())
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, 'fsync',
                        lambda fd: synced.append(fd) or real_fsync(fd))
    api.write_verified('test', record, io.BytesIO(data),
                       str(tmp_path / 'disk'))
    assert (tmp_path / 'disk').read_bytes() == data
    assert len(synced) == 1
    # Other writers of atomic_write are synced by it.
    synced.clear()
    with api.atomic_write(str(tmp_path / 'meta')) as out:
        out.write(b'{}')
    assert len(synced) == 1


def test_show_ids_finds_each_image_by_its_id_only(service, source):
    first = service.upload('first', str(source), 'raw', 'bare')
    second = service.upload('second', str(source), 'raw', 'bare')
    assert service.show_ids([second.id, first.id, second.id]) == {
        first.id: first, second.id: second}
    assert service.show_ids([]) == {}
    # A name is not an id here: kernel_id and ramdisk_id are ids.
    with pytest.raises(image_exception.ImageNotInService):
        service.show_ids([first.id, 'second'])
    with pytest.raises(image_exception.ImageNotInService):
        service.show_ids(['8ceb9b45-a580-49c2-a880-ccd5579ac8ab'])
