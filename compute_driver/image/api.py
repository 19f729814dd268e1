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

"""The image service contract, beside the compute driver contract.

An image service keeps images (their bytes and a record describing them)
that backends boot from and that snapshots go back into. Every
implementation streams: no method holds a whole image in memory, and a
download is verified against the checksum the service recorded before
the file appears under its final name, so a reader of that name never sees
a partial or corrupt image.
"""

import abc
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import inspect
import logging
import mmap
import os
import queue
import threading
import typing

from compute_driver import exception
from compute_driver.image import exception as image_exception
from compute_driver import objects

LOG = logging.getLogger(__name__)

#: Bytes read or written at a time. Large enough that the per-chunk Python
#: overhead is small next to the copy, small enough to keep memory flat.
CHUNK_SIZE = 1024 * 1024

#: Bytes a download receives, writes and hashes at a time when it can
#: choose (a :class:`Readable` source written to a path): large enough
#: that the Python work per buffer is nothing next to them and that each
#: O_DIRECT write is one large request to the disk.
DOWNLOAD_BUFFER_SIZE = 4 * 1024 * 1024

#: The buffers of a download written through the page cache (one below
#: :data:`DIRECT_MIN_BYTES`), when smaller than
#: :data:`DOWNLOAD_BUFFER_SIZE`. Its write copies each buffer and its hash
#: reads it: small enough that both find it still in the CPU's caches,
#: and that a small image (a kernel) reuses buffers whose pages are
#: already mapped rather than faulting in new ones for all its bytes;
#: its hash also starts as soon as the first one arrives. Measured on a
#: boot from Glance, a third of the CPU time its writes took with 4 MiB
#: buffers.
CACHED_BUFFER_SIZE = 1024 * 1024

#: Buffers (or chunks) a download may have received ahead of its hash or
#: its write: slack that keeps the hash, the slowest step on most hosts,
#: busy while the receiving thread waits for the network or the CPU. At
#: most this many times :data:`DOWNLOAD_BUFFER_SIZE` bytes are held.
DOWNLOAD_BUFFERS = 8

#: Bytes written to a downloaded file between two requests that the kernel
#: start writing them to disk (see :class:`_FileWriter`): what the final
#: ``fsync`` may still have to write. Small next to the images a boot
#: waits for (a 14 MiB kernel was synced in 10 ms with 16 MiB here, and in
#: about 1.5 ms with 2 MiB); each request costs a system call.
WRITEBACK_BYTES = 2 * 1024 * 1024

#: The hash Glance computes for ``os_hash_value`` unless configured
#: otherwise (its ``hashing_algorithm`` option); the local service uses it
#: too so both records read the same.
DEFAULT_HASH_ALGO = 'sha512'

#: A path, or a binary file object open for reading (for ``upload``) or
#: writing (for ``download``).
Source = typing.Union[str, os.PathLike, typing.BinaryIO]
Destination = typing.Union[str, os.PathLike, typing.BinaryIO]


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """What an image service records about one image.

    The fields are Glance v2's, so a record converts to and from Glance's
    without loss.

    :param id: the service's id of the image (a uuid).
    :param name: its name; several images may share one.
    :param status: ``queued``, ``saving``, ``active``, ``killed``,
        ``deleted``...; only ``active`` images can be downloaded.
    :param disk_format: ``raw``, ``qcow2``, ``vhd``, ``iso``...
    :param container_format: ``bare``, ``docker``, ``ovf``...
    :param size: bytes of data, once uploaded.
    :param checksum: the MD5 hex digest of the data (legacy).
    :param os_hash_algo: the algorithm of ``os_hash_value`` (``sha512``).
    :param os_hash_value: the hex digest of the data with ``os_hash_algo``.
    :param min_ram: memory in MiB the image needs.
    :param min_disk: disk in GiB the image needs.
    :param properties: every other property, as strings.
    """

    id: str
    name: str
    status: str = 'active'
    disk_format: str | None = None
    container_format: str | None = None
    size: int | None = None
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    min_ram: int = 0
    min_disk: int = 0
    properties: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_image_meta(self) -> objects.ImageMeta:
        """The record as the ImageMeta backends take.

        The image id becomes the :class:`~compute_driver.objects.ImageMeta`
        name: it is the reference a backend boots from.
        """
        return objects.ImageMeta(
            name=self.id, disk_format=self.disk_format,
            container_format=self.container_format, min_ram=self.min_ram,
            min_disk=self.min_disk, size=self.size,
            properties=dict(self.properties))


class ImageService(abc.ABC):
    """Where images come from and where snapshots go."""

    #: Name used in messages and in the ``[image_service] backend`` option.
    name: typing.ClassVar[str]

    #: Whether :meth:`download` takes a :class:`PendingRecord` as its
    #: ``record`` (see :func:`download`).
    takes_pending_record: bool = False

    @abc.abstractmethod
    def show(self, image: str) -> ImageRecord:
        """The record of one image.

        :param image: an image id, or a name that only one image has.
        :raises ImageNotInService: when no image has that id or name.
        :raises AmbiguousImageName: when several images have that name.
        :raises ImageServiceUnavailable: when the service cannot be asked.
        """

    def show_ids(self, image_ids: Iterable[str]) -> dict[str, ImageRecord]:
        """The records of several images, each named by its id.

        What :meth:`show` gives for each id, in as few requests as the
        service allows (Glance answers one list request filtered with
        ``id=in:...``); this default asks :meth:`show` once per id, so a
        service written before this method existed still works.

        :param image_ids: image ids, not names: a name is not looked up.
        :returns: each id's record, by id.
        :raises ImageNotInService: when one of the ids is unknown.
        :raises ImageServiceUnavailable: when the service cannot be asked.
        """
        records = {}
        for image_id in dict.fromkeys(image_ids):
            record = self.show(image_id)
            if record.id != image_id:
                # show found it by name: no image has this id.
                raise image_exception.ImageNotInService(
                    image=image_id, service=self.name)
            records[image_id] = record
        return records

    @abc.abstractmethod
    def list(self) -> list[ImageRecord]:
        """Every image of the service, sorted by name then id.

        :raises ImageServiceUnavailable: when the service cannot be asked.
        """

    @abc.abstractmethod
    def download(self, image_id: str, dest: Destination,
                 record: ImageRecord | None = None) -> ImageRecord:
        """Stream an image's data into ``dest`` and verify it.

        The data is checked against ``os_hash_algo``/``os_hash_value``,
        or the MD5 ``checksum`` when the service recorded no other hash,
        and against ``size``. When ``dest`` is a path the data goes to a
        temporary file beside it that is renamed on success and removed
        on any failure; when it is a file object, what was written is
        truncated away on failure when the object allows it.

        :param image_id: the image's id (not a name: what is downloaded
            must be what was looked up).
        :param dest: a path or a binary file object open for writing.
        :param record: the image's record when the caller has just read
            it (with :meth:`show`): the service then does not ask for it
            again, and verifies the data against it. One of another id,
            or not ``active``, is refused (see :func:`check_record`).
            Services written before this parameter existed may lack it:
            callers go through :func:`download` to pass it only to those
            that take it. A service whose :attr:`takes_pending_record` is
            true also takes a :class:`PendingRecord`, and reads no data
            before it has checked the record it gives.
        :returns: the record the data was verified against.
        :raises ImageNotInService: for an unknown id.
        :raises ImageNotActive: when the image has no data yet.
        :raises ImageChecksumMismatch: when the data is not what the
            service recorded.
        :raises ImageDownloadIncomplete: when the transfer or the write
            stopped early (connection lost, disk full).
        """

    @abc.abstractmethod
    def upload(self, name: str, src: Source, disk_format: str,
               container_format: str,
               properties: dict[str, str] | None = None,
               min_ram: int = 0, min_disk: int = 0) -> ImageRecord:
        """Create an image from a file, streaming it.

        On failure the service keeps nothing of the new image.

        :param name: the new image's name.
        :param src: a path or a binary file object open for reading.
        :param disk_format: e.g. ``raw``, ``qcow2``, ``docker``... ``raw``.
        :param container_format: e.g. ``bare`` or ``docker``.
        :param properties: extra properties, strings.
        :param min_ram: memory in MiB the image needs.
        :param min_disk: disk in GiB the image needs.
        :returns: the new image's record, ``active``.
        :raises ImageUploadFailed: when the data could not be stored.
        """

    @abc.abstractmethod
    def delete(self, image_id: str) -> None:
        """Delete an image; deleting one that is not there is not an error.

        :raises ImageServiceUnavailable: when the service cannot be asked.
        """


def check_record(service: str, image_id: str,
                 record: ImageRecord) -> ImageRecord:
    """Refuse a caller's record that cannot describe ``image_id``'s data.

    :raises ImageNotInService: when the record is of another image.
    :raises ImageNotActive: when the record says the image has no data.
    """
    if record.id != image_id:
        raise image_exception.ImageNotInService(
            image=image_id, service=service)
    if record.status != 'active':
        raise image_exception.ImageNotActive(
            image=image_id, service=service, status=record.status,
            operation='download', reason=record.status)
    return record


class PendingRecord:
    """An image's record that another thread is still reading.

    Handed to :func:`download` in place of a record: a service that
    says it takes one (:attr:`ImageService.takes_pending_record`) may
    send its request for the data meanwhile, so that the two requests'
    round trips overlap, and reads none of the data before the record is
    there to check it against. Any other service gets the record once it
    is read.

    :param get: returns the record, or ``None`` for the service to read
        it itself; may raise what reading it raised.
    """

    def __init__(self, get: Callable[[], ImageRecord | None]) -> None:
        self._get = get

    def result(self) -> ImageRecord | None:
        """The record, waiting for it if need be."""
        return self._get()


def download(service: ImageService, image_id: str, dest: Destination,
             record: ImageRecord | PendingRecord | None = None
             ) -> ImageRecord:
    """:meth:`ImageService.download`, handing ``record`` on when it can.

    A service whose ``download`` has no ``record`` parameter (one written
    before it existed) reads the record itself, as it always did. A
    :class:`PendingRecord` is waited for here unless the service takes
    one.
    """
    if isinstance(record, PendingRecord):
        if getattr(service, 'takes_pending_record', False):
            # Its download takes one, whatever its signature says.
            return service.download(image_id, dest,
                                    record=typing.cast(typing.Any, record))
        record = record.result()
    if record is not None and _takes_record(type(service)):
        return service.download(image_id, dest, record=record)
    return service.download(image_id, dest)


@functools.lru_cache(maxsize=None)
def _takes_record(cls: type[ImageService]) -> bool:
    try:
        params = inspect.signature(cls.download).parameters
    except (TypeError, ValueError):
        return False
    return 'record' in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def find_by_name(service: str, ref: str,
                 records: Iterable[ImageRecord]) -> ImageRecord:
    """The one record among ``records`` whose id or name is ``ref``.

    An id wins over a name, as in the OpenStack client, so an image can
    always be named by its id even when another image's name is that id.
    """
    named = []
    for record in records:
        if record.id == ref:
            return record
        if record.name == ref:
            named.append(record)
    if not named:
        raise image_exception.ImageNotInService(image=ref, service=service)
    if len(named) > 1:
        raise image_exception.AmbiguousImageName(
            name=ref, count=len(named), service=service,
            ids=', '.join(sorted(r.id for r in named)))
    return named[0]


class Hasher:
    """The digests of a stream: always MD5 and ``algo``, one pass."""

    def __init__(self, algo: str = DEFAULT_HASH_ALGO) -> None:
        try:
            self.os_hash = hashlib.new(algo)
        except ValueError:
            raise exception.InvalidInput(
                reason='unknown hash algorithm %r' % algo) from None
        self.algo = algo
        # MD5 only compares what a service recorded; not for security.
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def update(self, data: bytes) -> None:
        self.md5.update(data)
        self.os_hash.update(data)
        self.size += len(data)


class HashingReader:
    """A file object that hashes what is read through it, for uploads."""

    def __init__(self, fileobj: typing.BinaryIO,
                 algo: str = DEFAULT_HASH_ALGO) -> None:
        self._fileobj = fileobj
        self.hasher = Hasher(algo)

    def read(self, size: int = -1) -> bytes:
        data = self._fileobj.read(size)
        self.hasher.update(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.read(CHUNK_SIZE)
            if not data:
                return
            yield data


@contextlib.contextmanager
def atomic_write(path: str, sync: bool = True
                 ) -> Iterator[typing.BinaryIO]:
    """A new file that appears at ``path`` only once it is whole.

    The block writes to a temporary file beside ``path``, created with
    ``O_EXCL`` and mode 0600 so nobody reads an image before it is
    verified; when the block ends without error the file is synced and
    renamed to ``path``, otherwise it is removed.

    :param sync: ``False`` when the block itself syncs the file last
        thing (as :func:`write_verified` does, while it still hashes):
        a second ``fsync`` would wait for the disk again for nothing.
    """
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, '.%s.part-%s' % (base, os.urandom(6).hex()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(fd, 'wb', buffering=0) as out:
            yield out
            if sync:
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def open_source(src: Source) -> Iterator[typing.BinaryIO]:
    """``src`` as a binary file object, opened here when it is a path."""
    if isinstance(src, (str, os.PathLike)):
        with open(src, 'rb') as fileobj:
            yield fileobj
    else:
        yield src


def _expected_digest(record: ImageRecord) -> tuple[str, str] | None:
    if record.os_hash_algo and record.os_hash_value:
        return record.os_hash_algo, record.os_hash_value.lower()
    if record.checksum:
        return 'md5', record.checksum.lower()
    return None


class Readable(typing.Protocol):
    """A source of image data read into the caller's buffers.

    ``readinto`` fills (part of) ``buffer`` and returns the count of
    bytes, 0 at the end of the data: a raw or buffered file, a socket
    file, or an :class:`http.client.HTTPResponse`.
    """

    def readinto(self, buffer: memoryview) -> int | None:
        ...  # pragma: no cover

    def read(self, size: int = -1) -> bytes:
        ...  # pragma: no cover


#: What :func:`write_verified` copies: an iterable of chunks, or a
#: :class:`Readable` that is read straight into reused buffers.
Data = typing.Union[Iterable[bytes], Readable]


class _BufferPool:
    """The buffers a download receives into, reused once written and hashed.

    The receiving thread takes a buffer, fills it and hands it to the
    writing thread and the digest thread, the last of which gives it back:
    a few buffers per download instead of a new object per chunk. The
    receiving waits here when it is :data:`DOWNLOAD_BUFFERS` buffers ahead
    of the write or the hash, which bounds the memory a download takes.

    Buffers are made as the download needs them, from anonymous memory
    whose pages the kernel provides as the data first lands in them: a
    small image costs only the buffers it fills, not the zeroing of
    :data:`DOWNLOAD_BUFFERS` of them. The buffer given out is the last one
    given back, still in the CPU's cache; and a receiving thread that
    found none free is woken only once :data:`_REFILL` are, so it is not
    rescheduled (often onto the hashing core) for every buffer the hash
    finishes.
    """

    _REFILL = 4

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._free: list[mmap.mmap] = []
        self._unmade = count
        self._refill = min(self._REFILL, count)
        self._cond = threading.Condition()
        # Buffers handed to more than one thread: how many still hold
        # each, by id.
        self._holders: dict[int, int] = {}

    def get(self) -> mmap.mmap:
        with self._cond:
            if not self._free:
                if self._unmade:
                    self._unmade -= 1
                    return mmap.mmap(-1, self.size)
                self._cond.wait_for(
                    lambda: len(self._free) >= self._refill)
            return self._free.pop()

    def share(self, buffer: mmap.mmap, holders: int) -> None:
        """Free ``buffer`` only once ``holders`` threads :meth:`put` it."""
        if holders > 1:
            with self._cond:
                self._holders[id(buffer)] = holders

    def put(self, buffer: mmap.mmap) -> None:
        with self._cond:
            left = self._holders.pop(id(buffer), 1) - 1
            if left:
                self._holders[id(buffer)] = left
                return
            self._free.append(buffer)
            if len(self._free) == self._refill:
                self._cond.notify()


def _pooled_chunks(source: Readable, pool: _BufferPool
                   ) -> Iterator[tuple[memoryview, mmap.mmap]]:
    # Each buffer is filled whole before it is handed on (readinto may
    # return what one recv gave): the per-chunk work in Python is then
    # once per buffer, not once per network packet burst.
    while True:
        buffer = pool.get()
        view = memoryview(buffer)
        filled = 0
        try:
            while filled < pool.size:
                count = source.readinto(view[filled:])
                if count is None:
                    raise BlockingIOError('the image data source is '
                                          'non-blocking')
                if not count:
                    break
                filled += count
        except Exception:
            # What did arrive is counted before the error surfaces, so
            # the error says how far the download got.
            if filled:
                yield view[:filled], buffer
            raise
        if not filled:
            pool.put(buffer)
            return
        yield view[:filled], buffer
        if filled < pool.size:
            return


class _Worker:
    """One step of a download (its hash, its write) in a thread of its own.

    hashlib releases the GIL while it hashes a large buffer, and the
    kernel while it writes one, so the receiving thread fills the next
    buffer while earlier ones are hashed and written: a download then
    costs about the slowest of the transfer, the hash and the write rather
    than their sum (sha512 alone is slower than a local Glance on small
    hosts). Pooled buffers go back to their pool once done; the queue of
    unpooled chunks is short, so memory stays flat either way.

    The first error of the step is kept in :attr:`error` and the steps
    after it are skipped, as are those left once :meth:`cancel` is called;
    the queue is still drained and the buffers given back, so the receiving
    thread never waits for a thread that is gone.
    """

    def __init__(self, name: str, step: Callable[[bytes | memoryview], object],
                 pool: _BufferPool | None = None) -> None:
        self._step = step
        self._pool = pool
        self._cancelled = False
        self.error: BaseException | None = None
        self._queue: queue.Queue[
            tuple[bytes | memoryview, mmap.mmap | None] | None] = \
            queue.Queue(DOWNLOAD_BUFFERS)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=name)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            chunk, buffer = item
            if self.error is None and not self._cancelled:
                try:
                    self._step(chunk)
                except BaseException as exc:
                    self.error = exc
            if buffer is not None and self._pool is not None:
                self._pool.put(buffer)

    def submit(self, chunk: bytes | memoryview,
               buffer: mmap.mmap | None = None) -> None:
        """Do the step on ``chunk``; give ``buffer`` back to the pool after."""
        self._queue.put((chunk, buffer))

    def cancel(self) -> None:
        """Skip the steps still queued: their result is not wanted."""
        self._cancelled = True

    def close(self) -> None:
        """Wait until every chunk submitted is done (or skipped)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class _DigestThread(_Worker):
    """One digest, computed in a thread of its own."""

    def __init__(self, algo: str, pool: _BufferPool | None = None) -> None:
        try:
            self._hash = hashlib.new(algo, usedforsecurity=False)
        except ValueError:
            raise exception.InvalidInput(
                reason='unknown hash algorithm %r' % algo) from None
        super().__init__('image-digest-%s' % algo, self._hash.update, pool)

    def update(self, chunk: bytes | memoryview,
               buffer: mmap.mmap | None = None) -> None:
        """Hash ``chunk``; give ``buffer`` back to the pool after."""
        self.submit(chunk, buffer)

    def hexdigest(self) -> str:
        self.close()
        if self.error is not None:
            raise self.error
        return self._hash.hexdigest()


def _copy_chunks(service: str, record: ImageRecord, data: Data,
                 write: Callable[[bytes | memoryview], object],
                 reuse_buffers: bool,
                 sync: Callable[[], object] | None = None,
                 buffer_size: int | None = None) -> None:
    expected = _expected_digest(record)
    if expected is None:
        LOG.warning('Image %s has no checksum in the %s image service; '
                    'its data is not verified.', record.id, service)
    pool = None
    chunks: Iterator[tuple[bytes | memoryview, mmap.mmap | None]]
    if hasattr(data, 'readinto') and reuse_buffers:
        pool = _BufferPool(DOWNLOAD_BUFFERS,
                           buffer_size or DOWNLOAD_BUFFER_SIZE)
        chunks = _pooled_chunks(typing.cast(Readable, data), pool)
    else:
        # A destination that may keep what it is given (a queue, a
        # BytesIO...) gets chunks of its own, written by this thread.
        if hasattr(data, 'read'):
            read = typing.cast(Readable, data).read
            data = iter(lambda: read(DOWNLOAD_BUFFER_SIZE), b'')
        chunks = ((chunk, None) for chunk in typing.cast(
            Iterable[bytes], data))
    size_text = '?' if record.size is None else str(record.size)
    received = 0

    def incomplete(exc: OSError) -> Exception:
        # A failed write or sync (disk full, EIO) is an incomplete
        # download, with its byte counts.
        return image_exception.ImageDownloadIncomplete(
            image=record.id, service=service, received=received,
            expected=size_text, reason=exception.one_line(exc))

    def check_written(writer: _Worker) -> None:
        error = writer.error
        if isinstance(error, OSError):
            raise incomplete(error) from error
        if error is not None:
            raise error

    digest = _DigestThread(expected[0], pool) if expected else None
    # The buffers' own thread writes them, so a write that waits for the
    # disk (all of them, with O_DIRECT) holds up neither the receiving
    # nor the hash.
    writer = (_Worker('image-write', write, pool) if pool is not None
              else None)
    holders = (digest is not None) + (writer is not None)
    try:
        while True:
            try:
                chunk, buffer = next(chunks)
            except StopIteration:
                break
            except exception.ComputeDriverError:
                raise
            except Exception as exc:
                # Whatever the transport raises for a lost connection
                # (requests, urllib3, http.client, OSError) is one error.
                raise image_exception.ImageDownloadIncomplete(
                    image=record.id, service=service, received=received,
                    expected=size_text,
                    reason=exception.one_line(exc)) from exc
            received += len(chunk)
            if record.size is not None and received > record.size:
                raise image_exception.ImageChecksumMismatch(
                    image=record.id, algorithm='size',
                    actual='more than %d bytes' % record.size,
                    expected=str(record.size))
            if writer is not None:
                check_written(writer)
            if pool is not None and buffer is not None:
                # Refilled only once both threads are done with it.
                pool.share(buffer, holders)
            if digest is not None:
                digest.update(chunk, buffer)
            if writer is not None:
                writer.submit(chunk, buffer)
                continue
            try:
                write(chunk)
            except OSError as exc:
                raise incomplete(exc) from exc
        if record.size is not None and received < record.size:
            raise image_exception.ImageDownloadIncomplete(
                image=record.id, service=service, received=received,
                expected=size_text, reason='the data ended early')
        if writer is not None:
            writer.close()
            check_written(writer)
        if sync is not None:
            # While the digest thread hashes the last buffers: the disk's
            # time and the hash's overlap instead of adding up.
            try:
                sync()
            except OSError as exc:
                raise incomplete(exc) from exc
        if digest is not None and expected is not None:
            actual = digest.hexdigest()
            if actual != expected[1]:
                raise image_exception.ImageChecksumMismatch(
                    image=record.id, algorithm=expected[0], actual=actual,
                    expected=expected[1])
    except BaseException:
        # Nothing more is written to (or hashed for) a download that
        # failed; the threads are still waited for, below, so none writes
        # to a file that its caller then removes.
        for worker in (writer, digest):
            if worker is not None:
                worker.cancel()
        raise
    finally:
        for worker in (writer, digest):
            if worker is not None:
                worker.close()


@functools.cache
def _sync_file_range() -> Callable[..., int] | None:
    # Linux's sync_file_range(2), which Python's os module lacks; None
    # elsewhere, where downloads are synced at the end only. Looked up
    # (and ctypes imported) on the first download, once: every command
    # that loads a backend imports this module, and most never write an
    # image.
    import ctypes
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                     ctypes.c_uint)
    func.restype = ctypes.c_int
    return func


#: sync_file_range's flag that starts the writeback of dirty pages without
#: waiting for it.
_SYNC_FILE_RANGE_WRITE = 2


#: Alignment, in bytes, of the offsets and lengths of O_DIRECT writes: the
#: largest logical block size of Linux's block devices, which the
#: download buffers' page-aligned addresses and sizes are multiples of.
DIRECT_ALIGN = 4096


#: The smallest download written with O_DIRECT. Below it, copying into
#: the page cache costs little CPU next to a boot, and what a boot reads
#: first (a kernel, the first blocks of a disk) is then read from memory
#: rather than from the disk it was just written to.
DIRECT_MIN_BYTES = 256 * 1024 * 1024


def _set_direct(fd: int, direct: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; ``False`` when it cannot be."""
    flag = getattr(os, 'O_DIRECT', 0)
    if not flag:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL,
                    flags | flag if direct else flags & ~flag)
    except OSError:
        # EINVAL: a filesystem without direct I/O (tmpfs on older
        # kernels, many FUSE ones).
        return False
    return True


class _FileWriter:
    """Writes chunks to a file and has them written to disk as it goes.

    With ``direct`` (a download into a path), whole blocks are written
    with O_DIRECT, from the download's buffers straight to the disk.
    Copying a GiB into the page cache costs more CPU time than receiving
    it (on a virtual machine, about as much as hashing it), on the cores
    the hash of a verified download needs; and an image written once and
    then read through a VM's own cache gains little from the host's
    (Nova converts images with ``qemu-img convert -t none``, direct I/O
    too, wherever the file system allows it). A file system without
    direct I/O, and the last partial block, get the page cache instead;
    only they need the writeback below.

    A download is synced before its file is renamed. Left alone, the
    kernel would keep the whole image dirty in memory until then (its
    background writeback starts at a share of memory larger than most
    images), so the sync would write it all after the transfer, adding the
    disk's time to the network's; asking for the writeback of each
    :data:`WRITEBACK_BYTES` makes the disk write while the data still
    arrives and is hashed, and leaves the sync little to wait for. Only the
    final ``fsync`` makes the data durable.

    A short write (the disk filled mid-chunk) is continued, so the error
    of the next write is raised rather than data silently lost.
    """

    def __init__(self, out: typing.BinaryIO, direct: bool = False) -> None:
        self._out = out
        self._fd = out.fileno()
        self._written = 0
        self._flushed = 0
        self._sync_range = _sync_file_range()
        self._direct = direct and _set_direct(self._fd, True)

    def __call__(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk)
        while view:
            if self._direct and (len(view) % DIRECT_ALIGN
                                 or self._written % DIRECT_ALIGN):
                # The last, partial buffer (or the rest of a short
                # write): O_DIRECT takes only whole blocks.
                self._buffered()
            try:
                done = self._out.write(view)
            except OSError as exc:
                if not self._direct or exc.errno != errno.EINVAL:
                    raise
                # A filesystem that let O_DIRECT be set but refuses it
                # for this write: the page cache it is.
                self._buffered()
                continue
            if done is None:
                raise BlockingIOError('the file is non-blocking')
            view = view[done:]
            self._written += done
        if (not self._direct and self._sync_range is not None
                and self._written - self._flushed >= WRITEBACK_BYTES):
            # An error here (EIO...) shows again at the fsync; ignored so
            # the fsync reports it.
            self._sync_range(self._fd, self._flushed,
                             self._written - self._flushed,
                             _SYNC_FILE_RANGE_WRITE)
            self._flushed = self._written

    @property
    def direct(self) -> bool:
        """Whether the writes go to the disk with O_DIRECT."""
        return self._direct

    def _buffered(self) -> None:
        self._direct = False
        _set_direct(self._fd, False)
        # What went direct is on its way to the disk already: only what
        # follows is asked to be written back.
        self._flushed = self._written

    def sync(self) -> None:
        """Make what was written durable (``fsync``)."""
        os.fsync(self._fd)
        self._flushed = self._written


def write_verified(service: str, record: ImageRecord, data: Data,
                   dest: Destination) -> None:
    """Write ``data`` to ``dest`` and verify it against ``record``.

    The common half of every service's :meth:`ImageService.download`.

    :param data: the image's data: an iterable of chunks, or a
        :class:`Readable` (a file, an HTTP response), which is read
        straight into a few reused buffers when ``dest`` is a path.
    :raises ImageChecksumMismatch: see :meth:`ImageService.download`.
    :raises ImageDownloadIncomplete: see :meth:`ImageService.download`.
    """
    if not isinstance(dest, (str, os.PathLike)):
        _write_to_fileobj(service, record, data, dest)
        return
    try:
        # _copy_chunks syncs the file before it returns.
        with atomic_write(os.fspath(dest), sync=False) as out:
            # Direct I/O only from the download's own buffers: chunks of
            # an iterable (Nova's image API) are neither aligned in memory
            # nor large, and each would wait for the disk in turn.
            writer = _FileWriter(out, direct=(
                hasattr(data, 'readinto') and record.size is not None
                and record.size >= DIRECT_MIN_BYTES))
            _copy_chunks(service, record, data, writer, reuse_buffers=True,
                         sync=writer.sync, buffer_size=(
                             DOWNLOAD_BUFFER_SIZE if writer.direct else
                             min(DOWNLOAD_BUFFER_SIZE, CACHED_BUFFER_SIZE)))
    except OSError as exc:
        # Creating, syncing or renaming the file; a failed write is an
        # incomplete download, raised with its byte counts above.
        raise image_exception.ImageServiceError(
            service=service, operation='download', image=record.id,
            reason=exception.one_line(exc)) from exc


def _write_to_fileobj(service: str, record: ImageRecord, data: Data,
                      dest: typing.BinaryIO) -> None:
    try:
        start: int | None = dest.tell() if dest.seekable() else None
    except OSError:
        start = None
    try:
        _copy_chunks(service, record, data, dest.write, reuse_buffers=False)
        dest.flush()
    except BaseException:
        if start is not None:
            with contextlib.suppress(OSError):
                dest.seek(start)
                dest.truncate()
        raise
