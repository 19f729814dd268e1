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

"""An image service wrapper counting what it transfers, for tests.

Set as a backend's ``image_service``, it tells how many bytes a boot
downloaded: a second boot of a cached image must download none.
"""

from collections.abc import Iterable
import os
import threading

from compute_driver.image import api


class CountingImageService(api.ImageService):
    """Delegates to ``inner``, counting the bytes its downloads write.

    Backends download an image's kernel and ramdisk in parallel with its
    disk, so the count is kept under a lock.
    """

    def __init__(self, inner: api.ImageService) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        # Counting changes nothing of how downloads go.
        self.takes_pending_record = getattr(inner, 'takes_pending_record',
                                            False)
        self._lock = threading.Lock()
        self.downloaded = 0
        self.downloads: list[str] = []

    def show(self, image: str) -> api.ImageRecord:
        return self.inner.show(image)

    def show_ids(self, image_ids: Iterable[str]
                 ) -> dict[str, api.ImageRecord]:
        return self.inner.show_ids(image_ids)

    def list(self) -> list[api.ImageRecord]:
        return self.inner.list()

    def download(self, image_id: str, dest: api.Destination,
                 record: api.ImageRecord | api.PendingRecord | None = None
                 ) -> api.ImageRecord:
        record = api.download(self.inner, image_id, dest, record)
        size = (os.path.getsize(dest) if isinstance(dest, (str, os.PathLike))
                else record.size or 0)
        with self._lock:
            self.downloaded += size
            self.downloads.append(image_id)
        return record

    def upload(self, name: str, src: api.Source, disk_format: str,
               container_format: str,
               properties: dict[str, str] | None = None,
               min_ram: int = 0, min_disk: int = 0) -> api.ImageRecord:
        return self.inner.upload(name, src, disk_format, container_format,
                                 properties=properties, min_ram=min_ram,
                                 min_disk=min_disk)

    def delete(self, image_id: str) -> None:
        self.inner.delete(image_id)
