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

"""Marking what an operation is building, and sweeping what it left.

A spawn that fails removes what it created; one that is interrupted
(SIGKILL, a host crash) or whose removal fails cannot. So what it builds
is marked first, and the mark goes once the spawn succeeded; a mark whose
owner is gone designates a leftover, which ``init_host`` and
``compute-driver cleanup`` remove (see
:meth:`compute_driver.driver.ComputeDriver.cleanup_leftovers`).

Two kinds of mark:

* :class:`Marker`, a file locked with ``flock`` for as long as its owner
  runs: the kernel drops the lock when the process dies, however it dies,
  so a marker that can be locked is stale. For files on the host's own
  disk (libvirt's instance directories).
* :func:`owner_label`, a text naming the owning process (boot id, pid and
  the process's start time, so a reused pid does not pass for the owner),
  for objects kept elsewhere, such as a container's labels in dockerd.
"""

import contextlib
import fcntl
import functools
import logging
import os
import typing

from compute_driver import exception
from compute_driver import objects

LOG = logging.getLogger(__name__)

_BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id'


class Marker:
    """A locked marker file, held while an operation builds something.

    :param path: the marker's path.
    :param fd: the open, locked file.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def fd(self) -> int:
        """The open file; only while the marker is held."""
        if self._fd is None:
            raise ValueError('marker %s is released' % self.path)
        return self._fd

    @classmethod
    def create(cls, path: str, mode: int = 0o600) -> 'Marker':
        """Create ``path``, which must not exist, and lock it.

        :raises FileExistsError: when it exists.
        """
        while True:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                         os.O_CLOEXEC, mode)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # A sweep that locked the file before us has removed it.
                if os.fstat(fd).st_nlink:
                    return cls(path, fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    @classmethod
    def claim(cls, path: str, content: str) -> 'Marker':
        """Create and lock the marker at ``path``.

        The file is written and locked under a temporary name, then linked
        to ``path``, so no one ever sees it unlocked or empty.

        :raises FileExistsError: when a marker is there already (live or
            stale: see :func:`probe`).
        """
        import uuid as uuidlib
        directory, name = os.path.split(path)
        tmp = cls.create(os.path.join(directory, '.%s.%s.tmp' % (
            name, uuidlib.uuid4().hex[:8])))
        try:
            os.write(tmp.fd, content.encode('utf-8'))
            os.link(tmp.path, path)
        except BaseException:
            tmp.release()
            raise
        os.unlink(tmp.path)
        return cls(path, tmp.fd)

    def update(self, content: str) -> None:
        """Replace what the marker says (what a sweep would undo)."""
        data = content.encode('utf-8')
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))

    def release(self) -> None:
        """Remove the marker: what it marked is complete."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Unlock the marker and leave it: what it marks is a leftover."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def probe(path: str) -> typing.Iterator[bool]:
    """Whether the marker at ``path`` is stale, keeping it locked if so.

    Yields ``False`` while its owner holds it and when it is gone; ``True``
    when no process holds it, and then holds the lock until the block
    ends, so that two sweeps do not remove the same thing at once.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, IsADirectoryError):
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        # The owner may have released it between our open and our lock.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        yield same
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# -- process identity, for marks kept outside this host -------------------


def _boot_id() -> str:
    try:
        with open(_BOOT_ID_PATH, encoding='ascii') as handle:
            return handle.read().strip()
    except OSError:
        return ''


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot)."""
    try:
        with open('/proc/%d/stat' % pid, encoding='ascii',
                  errors='replace') as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the
    # fields after its closing parenthesis start with field 3.
    fields = stat[stat.rfind(')') + 2:].split()
    return fields[19] if len(fields) > 19 else None


# (pid, label): a process's label never changes; a fork's is its own.
_own_label: tuple[int, str] | None = None


def owner_label() -> str:
    """This process as ``BOOT_ID/PID/START_TIME``."""
    global _own_label
    pid = os.getpid()
    known = _own_label
    if known is not None and known[0] == pid:
        return known[1]
    label = '%s/%d/%s' % (_boot_id(), pid, _start_time(pid) or '')
    _own_label = pid, label
    return label


def owner_gone(label: str) -> bool | None:
    """Whether the process named by :func:`owner_label` has ended.

    :returns: ``True`` or ``False`` for a process of this machine since
        its last boot; ``None`` when that cannot be told (another machine
        or an earlier boot, or a damaged label).
    """
    try:
        boot, pid_text, start = label.split('/')
        pid = int(pid_text)
    except ValueError:
        return None
    if not boot or boot != _boot_id():
        return None
    return _start_time(pid) != start


# -- sweeping -------------------------------------------------------------


class Candidate(typing.NamedTuple):
    """A leftover found by a backend, and how to remove it."""

    what: str
    reason: str
    remove: typing.Callable[[], object]


def sweep(backend: str, candidates: typing.Iterable[Candidate],
          dry_run: bool) -> list[objects.Leftover]:
    """Remove each candidate (unless ``dry_run``) and report it.

    A candidate whose removal fails is reported with the error and the
    others are still removed.
    """
    found = []
    for candidate in candidates:
        if dry_run:
            found.append(objects.Leftover(backend, candidate.what,
                                          candidate.reason))
            continue
        try:
            candidate.remove()
        except (exception.ComputeDriverError, OSError) as exc:
            error = exception.one_line(exc)
            LOG.warning('Could not remove %s (%s): %s', candidate.what,
                        candidate.reason, error)
            found.append(objects.Leftover(backend, candidate.what,
                                          candidate.reason, error=error))
            continue
        LOG.info('Removed %s: %s', candidate.what, candidate.reason)
        found.append(objects.Leftover(backend, candidate.what,
                                      candidate.reason, removed=True))
    return found


def partial_downloads(cache_dir: str) -> typing.Iterator[Candidate]:
    """The partial downloads interrupted downloads left in an image cache.

    A download of the image service writes ``.ID.part-*`` under the
    image's lock (see :class:`compute_driver.image.cache.ImageCache`); one
    whose image no download has locked is a leftover. A file a download
    locks between the listing and the removal is left to it, and its
    removal reported as failed.

    :param cache_dir: the cache's directory (a backend's
        :meth:`~compute_driver.driver.ComputeDriver.image_cache_path`);
        missing is empty.
    """
    # The cache module only when a partial file is there: every command
    # sweeps at start, and most never download.
    try:
        downloading = any('.part-' in e for e in os.listdir(cache_dir))
    except OSError as exc:
        # Missing, or a cache this user may not read or lock in (another
        # user's commands, root's cache): no download of this user's is
        # there, and its owner's next command sweeps it.
        if not isinstance(exc, FileNotFoundError):
            LOG.debug('Not sweeping %s: %s', cache_dir, exc)
        return
    if not downloading:
        return
    from compute_driver.image import cache as image_cache
    cache = image_cache.ImageCache(cache_dir)
    try:
        stale = cache.stale_partial_downloads()
    except OSError as exc:
        LOG.debug('Not sweeping %s: %s', cache_dir, exc)
        return
    for image_id, path in stale:
        yield Candidate('file %s' % path, 'a partial image download',
                        functools.partial(cache.remove_partial_download,
                                          image_id, path))
