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

"""An image service held in the fake backend's process.

The fake host keeps nothing on disk, so by default (``[fake]
image_service = memory``) its images live in memory too: real bytes with
real checksums, verified on every download like any service's, starting
with one generated image per name of ``[fake] images``. With ``[fake]
image_service = configured`` the fake boots from ``[image_service]``
instead (the local directory or Glance), like every other backend.
"""

import hashlib
import threading
import uuid

from compute_driver.image import api
from compute_driver.image import exception as image_exception

#: Size of a generated image: enough to cross several download chunks of
#: a test's, small enough to keep many in memory.
SEED_SIZE = 64 * 1024

#: Ids of generated images derive from their name in this namespace, so
#: an image keeps its id from one process to the next.
_SEED_NAMESPACE = uuid.UUID('5c7d0b0e-52b6-4f43-9d4b-6f8a4a1fd0c1')


def seed_data(name: str) -> bytes:
    """The data of the generated image ``name``: distinct per name."""
    block = hashlib.sha512(name.encode('utf-8')).digest()
    return (block * (SEED_SIZE // len(block) + 1))[:SEED_SIZE]


class MemoryImageService(api.ImageService):
    """Images kept in this process, as a fake Glance would keep them.

    :param seeds: names of images to generate (``raw``, ``bare``).
    """

    name = 'memory'

    def __init__(self, seeds: list[str] | tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._images: dict[str, tuple[api.ImageRecord, bytes]] = {}
        for seed in seeds:
            data = seed_data(seed)
            self._store(str(uuid.uuid5(_SEED_NAMESPACE, seed)), seed, data,
                        'raw', 'bare', {}, 0, 0)

    def _store(self, image_id: str, name: str, data: bytes,
               disk_format: str, container_format: str,
               properties: dict[str, str], min_ram: int,
               min_disk: int) -> api.ImageRecord:
        hasher = api.Hasher()
        hasher.update(data)
        record = api.ImageRecord(
            id=image_id, name=name, status='active', disk_format=disk_format,
            container_format=container_format, size=len(data),
            checksum=hasher.md5.hexdigest(), os_hash_algo=hasher.algo,
            os_hash_value=hasher.os_hash.hexdigest(), min_ram=min_ram,
            min_disk=min_disk, properties=dict(properties))
        with self._lock:
            self._images[image_id] = (record, data)
        return record

    def show(self, image: str) -> api.ImageRecord:
        with self._lock:
            found = self._images.get(image)
            records = [r for r, _ in self._images.values()]
        if found is not None:
            return found[0]
        return api.find_by_name(self.name, image, records)

    def list(self) -> list[api.ImageRecord]:
        with self._lock:
            records = [r for r, _ in self._images.values()]
        return sorted(records, key=lambda r: (r.name, r.id))

    def download(self, image_id: str, dest: api.Destination,
                 record: api.ImageRecord | None = None) -> api.ImageRecord:
        with self._lock:
            found = self._images.get(image_id)
        if found is None:
            raise image_exception.ImageNotInService(image=image_id,
                                                    service=self.name)
        stored, data = found
        record = api.check_record(self.name, image_id, record or stored)
        chunks = (data[i:i + api.CHUNK_SIZE]
                  for i in range(0, len(data), api.CHUNK_SIZE))
        api.write_verified(self.name, record, chunks, dest)
        return record

    def upload(self, name: str, src: api.Source, disk_format: str,
               container_format: str,
               properties: dict[str, str] | None = None,
               min_ram: int = 0, min_disk: int = 0) -> api.ImageRecord:
        with api.open_source(src) as fileobj:
            data = b''.join(iter(lambda: fileobj.read(api.CHUNK_SIZE), b''))
        return self._store(str(uuid.uuid4()), name, data, disk_format,
                           container_format,
                           {str(k): str(v)
                            for k, v in (properties or {}).items()},
                           min_ram, min_disk)

    def delete(self, image_id: str) -> None:
        with self._lock:
            self._images.pop(image_id, None)

    def corrupt(self, image_id: str, data: bytes) -> None:
        """Replace an image's data, keeping its record (for tests).

        A download then fails verification, as one from a store whose
        data went bad does.
        """
        with self._lock:
            record, _ = self._images[image_id]
            self._images[image_id] = (record, data)
