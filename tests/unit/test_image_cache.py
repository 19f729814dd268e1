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

"""The shared image download cache (compute_driver.image.cache)."""

import contextlib
import multiprocessing
import os
import threading
import time

import pytest

from compute_driver import exception
from compute_driver.image import cache as image_cache
from compute_driver.image import exception as image_exception
from compute_driver.image import local


class CountingService(local.LocalImageService):
    """The local service, recording each download in a file.

    Each download pauses so that concurrent callers really overlap.
    """

    def __init__(self, path, log, pause=0.0):
        super().__init__(path)
        self.log = log
        self.pause = pause
        self.active = 0
        self.most_active = 0
        self._count_lock = threading.Lock()

    def download(self, image_id, dest):
        with self._count_lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            with open(self.log, 'a') as f:
                f.write(image_id + '\n')
            time.sleep(self.pause)
            return super().download(image_id, dest)
        finally:
            with self._count_lock:
                self.active -= 1

    def downloads(self):
        try:
            with open(self.log) as f:
                return f.read().split()
        except FileNotFoundError:
            return []


@pytest.fixture
def service(tmp_path):
    return CountingService(str(tmp_path / 'images'),
                           str(tmp_path / 'downloads.log'), pause=0.2)


@pytest.fixture
def image(service):
    return service.upload('cirros', __file__, 'raw', 'bare')


def test_concurrent_fetches_download_once(tmp_path, service, image):
    cache = image_cache.ImageCache(str(tmp_path / 'cache'), service)
    start = threading.Barrier(8)
    paths = []
    errors = []

    def boot():
        start.wait()
        try:
            paths.append(cache.fetch(image.id))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=boot) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert service.downloads() == [image.id]
    assert service.most_active == 1
    assert set(paths) == {cache.path_of(image.id)}
    with open(paths[0], 'rb') as f, open(__file__, 'rb') as original:
        assert f.read() == original.read()


def test_different_images_download_in_parallel(tmp_path, service, image):
    other = service.upload('other', __file__, 'raw', 'bare')
    cache = image_cache.ImageCache(str(tmp_path / 'cache'), service)
    threads = [threading.Thread(target=cache.fetch, args=(i,))
               for i in (image.id, other.id)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(service.downloads()) == sorted([image.id, other.id])
    assert service.most_active == 2


def _fetch_in_child(cache_dir, images_dir, log, image_id, barrier):
    service = CountingService(images_dir, log, pause=0.2)
    barrier.wait()
    image_cache.ImageCache(cache_dir, service).fetch(image_id)


def test_processes_share_the_cache(tmp_path, service, image):
    ctx = multiprocessing.get_context('fork')
    barrier = ctx.Barrier(3)
    children = [ctx.Process(target=_fetch_in_child,
                            args=(str(tmp_path / 'cache'), service.path,
                                  service.log, image.id, barrier))
                for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert service.downloads() == [image.id]


def test_cached_image_is_not_downloaded_again(tmp_path, service, image):
    cache = image_cache.ImageCache(str(tmp_path / 'cache'), service)
    path = cache.fetch(image.id)
    os.utime(path, (1000, 1000))
    assert cache.fetch(image.id) == path
    assert service.downloads() == [image.id]
    # Handing it out again counts as a use, for pruning.
    assert os.stat(path).st_mtime > 1000


def test_failed_download_leaves_nothing_and_is_retried(tmp_path, service,
                                                       image):
    with open(os.path.join(service.path, image.id + '.data'), 'ab') as f:
        f.write(b'corrupt')
    cache_dir = tmp_path / 'cache'
    cache = image_cache.ImageCache(str(cache_dir), service)
    with pytest.raises(image_exception.ImageChecksumMismatch):
        cache.fetch(image.id)
    assert cache.list() == []
    assert sorted(os.listdir(cache_dir)) == ['.locks']
    with pytest.raises(image_exception.ImageChecksumMismatch):
        cache.fetch(image.id)
    assert service.downloads() == [image.id, image.id]


def test_ids_that_are_not_file_names_are_refused(tmp_path, service):
    cache = image_cache.ImageCache(str(tmp_path / 'cache'), service)
    for bad in ('../etc/passwd', '.locks', '', 'a/b'):
        with pytest.raises(exception.InvalidInput):
            cache.fetch(bad)
    assert service.downloads() == []


def _cached(tmp_path, service, names, mtimes):
    cache = image_cache.ImageCache(str(tmp_path / 'cache'), service)
    records = {}
    for name, mtime in zip(names, mtimes):
        record = service.upload(name, __file__, 'raw', 'bare')
        os.utime(cache.fetch(record.id), (mtime, mtime))
        records[name] = record
    return cache, records


def test_prune_removes_only_old_unused_images(tmp_path, service):
    now = 1_000_000.0
    cache, records = _cached(tmp_path, service, ['old', 'used', 'new'],
                             [now - 7200, now - 7200, now - 60])
    removed = image_cache.prune(cache, max_age=3600,
                                in_use={records['used'].id}, now=now)
    assert [i.image_id for i in removed] == [records['old'].id]
    assert {i.image_id for i in cache.list()} == {records['used'].id,
                                                  records['new'].id}


def test_prune_keeps_an_image_used_since_the_listing(tmp_path, service,
                                                     monkeypatch):
    now = 1_000_000.0
    cache, records = _cached(tmp_path, service, ['old'], [now - 7200])
    listing = cache.list()
    # A boot renews the image between the listing and the sweep's lock.
    os.utime(cache.path_of(records['old'].id), (now, now))
    monkeypatch.setattr(cache, 'list', lambda: listing)
    assert image_cache.prune(cache, max_age=3600, now=now) == []
    assert os.path.exists(cache.path_of(records['old'].id))


def test_prune_refuses_a_negative_age(tmp_path, service):
    cache = image_cache.ImageCache(str(tmp_path / 'cache'), service)
    with pytest.raises(exception.InvalidInput):
        image_cache.prune(cache, max_age=-1)


def test_list_and_remove(tmp_path, service, image):
    cache = image_cache.ImageCache(str(tmp_path / 'cache'), service)
    assert cache.list() == []
    path = cache.fetch(image.id)
    [entry] = cache.list()
    assert (entry.image_id, entry.path) == (image.id, path)
    assert entry.size == os.path.getsize(__file__)
    assert cache.remove(image.id) is True
    assert cache.remove(image.id) is False
    assert cache.list() == []


@contextlib.contextmanager
def _download_under_way(cache, image_id):
    """Hold ``image_id``'s lock in another thread, as a download does."""
    held = threading.Event()
    release = threading.Event()

    def download():
        with cache.lock(image_id):
            held.set()
            release.wait()

    thread = threading.Thread(target=download)
    thread.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        thread.join()


def test_prune_removes_partial_downloads_nobody_holds(tmp_path):
    cache = image_cache.ImageCache(str(tmp_path / 'cache'),
                                   local.LocalImageService(str(tmp_path)))
    os.makedirs(cache.path)
    stale = os.path.join(cache.path, '.img-a.part-0123456789ab')
    live = os.path.join(cache.path, '.img-b.part-ba9876543210')
    for path in (stale, live):
        with open(path, 'wb') as f:
            f.write(b'partial')
    with _download_under_way(cache, 'img-b'):
        image_cache.prune(cache, 0)
        assert not os.path.exists(stale)
        # Its image is locked: a download still writing it.
        assert os.path.exists(live)
    assert cache.sweep_partial_downloads() == [live]


def test_a_partial_download_found_stale_is_kept_once_its_image_is_locked(
        tmp_path):
    # Found while no download held its image; a download that has taken
    # the lock since keeps the file, whoever asks to remove it.
    cache = image_cache.ImageCache(str(tmp_path / 'cache'))
    os.makedirs(cache.path)
    partial = os.path.join(cache.path, '.img-a.part-0123456789ab')
    with open(partial, 'wb') as f:
        f.write(b'partial')
    assert cache.stale_partial_downloads() == [('img-a', partial)]
    with _download_under_way(cache, 'img-a'):
        with pytest.raises(BlockingIOError):
            cache.remove_partial_download('img-a', partial)
        assert os.path.exists(partial)
    assert cache.remove_partial_download('img-a', partial)
    assert cache.stale_partial_downloads() == []
    # Gone already (another sweep): nothing to report.
    assert not cache.remove_partial_download('img-a', partial)


def test_a_cache_without_a_service_refuses_to_fetch(tmp_path):
    cache = image_cache.ImageCache(str(tmp_path / 'cache'))
    with pytest.raises(exception.InvalidInput, match='no image service'):
        cache.fetch('img-a')
    assert cache.list() == []
