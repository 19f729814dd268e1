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

"""Nova's GlanceFixture, keeping image data as Glance does.

Nova's fixture records images but drops the data an update uploads,
returns nothing from a download without a destination, and marks every
new image ``active``. This one behaves as Glance v2 seen through Nova's
image API: an image created without data is ``queued``; uploading data
makes it ``active`` with its ``size``, ``checksum`` and
``os_hash_algo``/``os_hash_value``; a download hands back the data in
chunks. The fixture's stock images get generated data of their own.
"""

import hashlib
import io
import threading
import typing

from nova import exception as nova_exception
from nova.tests import fixtures as nova_fixtures

#: Bytes of a stock image's generated data.
STOCK_SIZE = 256 * 1024
#: Chunks a download is handed back in, so copies span several.
CHUNK = 64 * 1024


def stock_data(image_id: str) -> bytes:
    """The generated data of a stock image: distinct per image."""
    block = hashlib.sha512(image_id.encode()).digest()
    return (block * (STOCK_SIZE // len(block)))[:STOCK_SIZE]


class DataGlanceFixture(nova_fixtures.GlanceFixture):
    """Nova's GlanceFixture with image data (see the module)."""

    def __init__(self, test: typing.Any) -> None:
        super().__init__(test)
        self._data_lock = threading.Lock()
        #: Bytes every download handed out, by image id.
        self.downloaded: dict[str, int] = {}
        #: The project of the request context of every download, by image
        #: id: whose credentials Nova's image API would have used.
        self.download_projects: dict[str, list[str | None]] = {}
        #: Images created without data that an update filled, in order:
        #: a snapshot's upload into the image Nova's API reserved.
        self.filled: list[str] = []

    def setUp(self) -> None:
        super().setUp()
        for image_id in list(self.images):
            self._store(image_id, stock_data(image_id))

    def _store(self, image_id: str, data: bytes) -> None:
        with self._data_lock:
            self._imagedata[image_id] = data
            self.images[image_id].update(
                status='active', size=len(data),
                checksum=hashlib.md5(data,
                                     usedforsecurity=False).hexdigest(),
                os_hash_algo='sha512',
                os_hash_value=hashlib.sha512(data).hexdigest())

    @staticmethod
    def _read(data: typing.Any) -> bytes:
        if hasattr(data, 'read'):
            return b''.join(iter(lambda: data.read(CHUNK), b''))
        return b''.join(data)

    def create(self, context: typing.Any, metadata: dict[str, typing.Any],
               data: typing.Any = None) -> dict[str, typing.Any]:
        queued = 'status' not in metadata
        image = super().create(context, metadata)
        if data is not None:
            self._store(image['id'], self._read(data))
        elif queued:
            # Glance's new image has no data yet (Nova reads its size 0).
            image.update(status='queued', size=0)
        return image

    def update(self, context: typing.Any, image_id: str,
               metadata: dict[str, typing.Any], data: typing.Any = None,
               purge_props: bool = False) -> dict[str, typing.Any]:
        image = super().update(context, image_id, metadata,
                               purge_props=purge_props)
        if data is not None:
            if image.get('status') != 'queued':
                # Glance: data can only be uploaded into a queued image.
                raise nova_exception.ImageBadRequest(
                    image_id=image_id, response='409 Conflict')
            self._store(image_id, self._read(data))
            self.filled.append(image_id)
        return image

    def download(self, context: typing.Any, image_id: str,
                 data: typing.Any = None, dst_path: str | None = None,
                 trusted_certs: typing.Any = None) -> typing.Any:
        self.show(context, image_id)
        content = self._imagedata.get(image_id, b'')
        with self._data_lock:
            self.downloaded[image_id] = (self.downloaded.get(image_id, 0)
                                         + len(content))
            self.download_projects.setdefault(image_id, []).append(
                getattr(context, 'project_id', None))
        if data is not None:
            data.write(content)
            return None
        if dst_path:
            with open(dst_path, 'wb') as out:
                out.write(content)
            return None
        return iter(lambda stream=io.BytesIO(content): stream.read(CHUNK),
                    b'')

    def data_of(self, image_id: str) -> bytes:
        """The data stored for an image."""
        return self._imagedata[image_id]
