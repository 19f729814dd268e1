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

"""An image service in a local directory: the standalone default.

Each image is two files named by its id: ``ID.json`` (the record) and
``ID.data`` (the bytes). Both are written to a temporary name and renamed,
so a reader sees a whole image or none; the record is written after the
data and removed before it, so a record always has its data. The
directory is 0700 and the files 0600: images may hold secrets baked in.
"""

import contextlib
import dataclasses
import json
import os
import re
import uuid

from compute_driver import exception
from compute_driver.image import api
from compute_driver.image import exception as image_exception

#: What an image id may be here: a uuid, or a name safe as a file name
#: (ids come from users on the command line, and name files).
_ID_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,127}')
_META = '.json'
_DATA = '.data'


def _stamp(stat: os.stat_result) -> tuple[int, ...]:
    """What changes whenever a record file is written or replaced."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
            stat.st_ctime_ns)


def _copy(record: api.ImageRecord) -> api.ImageRecord:
    # Frozen, but its properties are a dict a caller may change.
    return dataclasses.replace(record, properties=dict(record.properties))


class LocalImageService(api.ImageService):
    """Images kept in one directory of this host.

    :param path: the directory; created (0700) when missing.
    """

    name = 'local'

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        # Records by id, with the stat of the file they were read from:
        # looking an image up by name reads every record, and a spawn
        # does that; a record file changes only by being replaced.
        self._records: dict[str, tuple[tuple[int, ...],
                                       api.ImageRecord]] = {}

    def _ensure_dir(self) -> None:
        os.makedirs(self.path, mode=0o700, exist_ok=True)

    def _file(self, image_id: str, suffix: str) -> str:
        if not _ID_RE.fullmatch(image_id):
            # Not a possible id: nothing to read, and never a path.
            raise image_exception.ImageNotInService(
                image=image_id, service=self.name)
        return os.path.join(self.path, image_id + suffix)

    def _read(self, image_id: str) -> api.ImageRecord | None:
        path = self._file(image_id, _META)
        cached = self._records.get(image_id)
        try:
            if cached is not None and cached[0] == _stamp(os.stat(path)):
                return _copy(cached[1])
            with open(path, encoding='utf-8') as f:
                # The stat of what is read, should it be replaced meanwhile.
                stamp = _stamp(os.fstat(f.fileno()))
                data = json.load(f)
        except FileNotFoundError:
            self._records.pop(image_id, None)
            return None
        except (OSError, ValueError) as exc:
            raise image_exception.ImageServiceError(
                service=self.name, operation='read', image=image_id,
                reason=exception.one_line(exc)) from exc
        record = api.ImageRecord(**data)
        self._records[image_id] = (stamp, record)
        return _copy(record)

    def _write_record(self, record: api.ImageRecord) -> None:
        with api.atomic_write(self._file(record.id, _META)) as out:
            out.write(json.dumps(dataclasses.asdict(record),
                                 sort_keys=True).encode('utf-8'))

    def list(self) -> list[api.ImageRecord]:
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        records = []
        for name in names:
            if name.endswith(_META) and not name.startswith('.'):
                record = self._read(name[:-len(_META)])
                # Deleted between listdir and open: not an image any more.
                if record is not None:
                    records.append(record)
        # Images another process deleted are not kept in memory.
        for image_id in self._records.keys() - {r.id for r in records}:
            self._records.pop(image_id, None)
        return sorted(records, key=lambda r: (r.name, r.id))

    def show(self, image: str) -> api.ImageRecord:
        if _ID_RE.fullmatch(image):
            record = self._read(image)
            if record is not None:
                return record
        return api.find_by_name(self.name, image, self.list())

    def download(self, image_id: str, dest: api.Destination,
                 record: api.ImageRecord | None = None) -> api.ImageRecord:
        if record is None:
            record = self._read(image_id)
        if record is None:
            raise image_exception.ImageNotInService(
                image=image_id, service=self.name)
        api.check_record(self.name, image_id, record)
        try:
            source = open(self._file(image_id, _DATA), 'rb')
        except FileNotFoundError:
            # Deleted since the record was read.
            raise image_exception.ImageNotInService(
                image=image_id, service=self.name) from None
        with source:
            api.write_verified(self.name, record, source, dest)
        return record

    def upload(self, name: str, src: api.Source, disk_format: str,
               container_format: str,
               properties: dict[str, str] | None = None,
               min_ram: int = 0, min_disk: int = 0) -> api.ImageRecord:
        image_id = str(uuid.uuid4())
        self._ensure_dir()
        data_path = self._file(image_id, _DATA)
        try:
            with api.open_source(src) as fileobj, \
                    api.atomic_write(data_path) as out:
                reader = api.HashingReader(fileobj)
                for chunk in reader:
                    out.write(chunk)
            record = api.ImageRecord(
                id=image_id, name=name, status='active',
                disk_format=disk_format, container_format=container_format,
                size=reader.hasher.size,
                checksum=reader.hasher.md5.hexdigest(),
                os_hash_algo=reader.hasher.algo,
                os_hash_value=reader.hasher.os_hash.hexdigest(),
                min_ram=min_ram, min_disk=min_disk,
                properties={str(k): str(v)
                            for k, v in (properties or {}).items()})
            self._write_record(record)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(data_path)
            if isinstance(exc, OSError):
                raise image_exception.ImageUploadFailed(
                    image=name, service=self.name,
                    reason=exception.one_line(exc)) from exc
            raise
        return record

    def delete(self, image_id: str) -> None:
        if not _ID_RE.fullmatch(image_id):
            return
        # Record first: from then on the image is gone for every reader.
        for suffix in (_META, _DATA):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(image_id, suffix))
