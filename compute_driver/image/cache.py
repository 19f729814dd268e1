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

"""A download cache of images shared by every instance of a host.

Nova's libvirt driver keeps its base images the same way: one file per
image id, downloaded once and reused by every boot, removed by an age
based sweep when no instance uses it (``manage_image_cache``). Two locks
guard each image: a thread lock, because ``fcntl`` locks belong to the
process and do not exclude another thread of it, and a file lock, so
that several processes (the CLI beside a service) share the cache too.
Whoever gets both first downloads; the others wait and then find the file.
"""

from collections.abc import Collection
from collections.abc import Iterator
import contextlib
import dataclasses
import fcntl
import logging
import os
import re
import threading
import time

from compute_driver import exception
from compute_driver.image import api

LOG = logging.getLogger(__name__)

#: Image ids become file names: a uuid, or at least nothing that walks out
#: of the cache directory.
_ID_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,127}')
_LOCKS = '.locks'
#: A download under way, or interrupted (see ``api.atomic_write``).
_PARTIAL_RE = re.compile(r'\.(%s)\.part-[0-9a-f]+' % _ID_RE.pattern)

#: The thread locks of each cache directory, shared by every ImageCache of
#: that directory in the process: two backends (or a backend and the CLI's
#: cache commands) using one directory must exclude each other's threads
#: too, which their fcntl locks, held by one process, cannot do.
_DIRECTORY_LOCKS: dict[str, tuple[threading.Lock,
                                  dict[str, threading.Lock]]] = {}
_DIRECTORY_LOCKS_GUARD = threading.Lock()


@dataclasses.dataclass(frozen=True)
class CachedImage:
    """One image in the cache.

    :param image_id: the image service's id.
    :param path: the file holding its data.
    :param size: bytes.
    :param last_used: when it was last downloaded or handed out (epoch
        seconds); what pruning goes by.
    """

    image_id: str
    path: str
    size: int
    last_used: float


class ImageCache:
    """Images of one image service kept on local disk.

    :param path: the cache directory; created (0700) when missing.
    :param service: the image service images come from; ``None`` for a
        cache that is only listed or swept, not fetched into.
    """

    def __init__(self, path: str,
                 service: api.ImageService | None = None) -> None:
        self.path = os.path.abspath(path)
        self.service = service
        with _DIRECTORY_LOCKS_GUARD:
            self._guard, self._thread_locks = _DIRECTORY_LOCKS.setdefault(
                self.path, (threading.Lock(), {}))

    def _check_id(self, image_id: str) -> None:
        if not isinstance(image_id, str) or not _ID_RE.fullmatch(image_id):
            raise exception.InvalidInput(
                reason='image id %r cannot name a cache file' % (image_id,))

    def path_of(self, image_id: str) -> str:
        """Where ``image_id`` is, or would be, cached."""
        self._check_id(image_id)
        return os.path.join(self.path, image_id)

    @contextlib.contextmanager
    def lock(self, image_id: str, blocking: bool = True) -> Iterator[None]:
        """Hold the image's thread and file locks.

        :param blocking: ``False`` raises :class:`BlockingIOError` at
            once when someone holds them.
        """
        self._check_id(image_id)
        with self._guard:
            thread_lock = self._thread_locks.setdefault(
                image_id, threading.Lock())
        if not thread_lock.acquire(blocking):
            raise BlockingIOError('image %s is locked' % image_id)
        try:
            lock_dir = os.path.join(self.path, _LOCKS)
            os.makedirs(lock_dir, mode=0o700, exist_ok=True)
            # Lock files stay: removing one while another process waits on
            # it would let a third lock a new file and both would proceed.
            fd = os.open(os.path.join(lock_dir, image_id),
                         os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking
                            else fcntl.LOCK_EX | fcntl.LOCK_NB)
                yield
            finally:
                os.close(fd)
        finally:
            thread_lock.release()

    def stale_partial_downloads(self) -> list[tuple[str, str]]:
        """What downloads interrupted by a killed process left.

        A download writes to ``.<image id>.part-<random>`` under the
        image's lock and renames it when whole; a partial file whose
        image nobody has locked belongs to no download under way.

        :returns: the image id and path of each such file.
        """
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        stale = []
        for name in names:
            match = _PARTIAL_RE.fullmatch(name)
            if match is None:
                continue
            try:
                with self.lock(match.group(1), blocking=False):
                    stale.append((match.group(1),
                                  os.path.join(self.path, name)))
            except BlockingIOError:
                continue
        return stale

    def remove_partial_download(self, image_id: str, path: str) -> bool:
        """Remove a file :meth:`stale_partial_downloads` found.

        :returns: ``False`` when it was gone already.
        :raises BlockingIOError: when a download of the image has taken
            its lock since; the file is then left to it.
        """
        with self.lock(image_id, blocking=False):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
        LOG.info('Removed %s, left by an interrupted download.', path)
        return True

    def sweep_partial_downloads(self) -> list[str]:
        """Remove what :meth:`stale_partial_downloads` finds.

        :returns: the paths removed.
        """
        removed = []
        for image_id, path in self.stale_partial_downloads():
            try:
                if self.remove_partial_download(image_id, path):
                    removed.append(path)
            except BlockingIOError:
                continue
        return removed

    def fetch(self, image_id: str,
              record: 'api.ImageRecord | api.PendingRecord | None' = None
              ) -> str:
        """The path of the image's data, downloading it when not cached.

        Concurrent calls for one uncached image download it once. A cached
        image is handed out without asking the image service anything, so
        a second boot transfers no byte; its time of use is renewed so
        pruning keeps it.

        :param record: the image's record when the caller has just read
            it, handed to :meth:`ImageService.download` so that it is not
            asked for again (see :func:`~compute_driver.image.api.download`),
            or a :class:`~compute_driver.image.api.PendingRecord` of it.
        :returns: the path of a verified, complete copy.
        :raises: whatever :meth:`ImageService.download` raises; the cache
            then holds nothing of the image.
        """
        path = self.path_of(image_id)
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        with self.lock(image_id):
            if os.path.exists(path):
                os.utime(path)
                return path
            if self.service is None:
                raise exception.InvalidInput(
                    reason='image %s is not cached and this cache has no '
                           'image service to fetch it from' % image_id)
            LOG.info('Downloading image %s from the %s image service into '
                     'the cache.', image_id, self.service.name)
            api.download(self.service, image_id, path, record)
            return path

    def list(self) -> list[CachedImage]:
        """Every cached image, oldest use first."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        images = []
        for name in names:
            # Dot names are the lock directory and partial downloads.
            if name.startswith('.') or not _ID_RE.fullmatch(name):
                continue
            path = os.path.join(self.path, name)
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            images.append(CachedImage(image_id=name, path=path,
                                      size=stat.st_size,
                                      last_used=stat.st_mtime))
        return sorted(images, key=lambda i: (i.last_used, i.image_id))

    def remove(self, image_id: str) -> bool:
        """Remove one image from the cache.

        :returns: whether it was cached.
        """
        path = self.path_of(image_id)
        with self.lock(image_id):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            return True


def prune(cache: ImageCache, max_age: float,
          in_use: Collection[str] = (),
          now: float | None = None) -> list[CachedImage]:
    """Remove cached images unused for more than ``max_age`` seconds.

    Nova's ``remove_unused_original_minimum_age_seconds``, applied to
    this cache. Partial files of downloads a killed process interrupted
    go too.

    :param cache: the cache to sweep.
    :param max_age: seconds since the last use after which an image goes.
    :param in_use: image ids that stay whatever their age, e.g. those of
        the host's instances.
    :param now: the current time (epoch seconds); for tests.
    :returns: the images removed.
    """
    if max_age < 0:
        raise exception.InvalidInput(
            reason='max_age must be 0 or more, got %r' % (max_age,))
    limit = (time.time() if now is None else now) - max_age
    cache.sweep_partial_downloads()
    removed = []
    for image in cache.list():
        if image.image_id in in_use or image.last_used > limit:
            continue
        with cache.lock(image.image_id):
            # Used again between the listing and the lock: keep it.
            try:
                if os.stat(image.path).st_mtime > limit:
                    continue
                os.unlink(image.path)
            except FileNotFoundError:
                continue
        LOG.info('Removed image %s from the cache: unused since %s.',
                 image.image_id, time.ctime(image.last_used))
        removed.append(image)
    return removed
