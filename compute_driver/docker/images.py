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

"""The image store: finding, loading, listing images; snapshots.

An image reference is a Docker image name. :meth:`ImageStore.ensure` finds
it in dockerd, else loads ``[docker] image_directory``'s tarball of it,
else pulls it from ``[docker] registry``, else raises ImageNotFound naming
what there is. A snapshot is ``docker commit`` to an image labelled as a
snapshot of its instance, and ``docker save`` of it into the image
directory when one is set.
"""

import contextlib
import contextvars
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import os
import queue
import re
import shlex
import tarfile
import threading
import time
import typing
import uuid as uuidlib

from docker import errors as docker_errors

from compute_driver.docker import errors
from compute_driver.docker import mapping
from compute_driver import exception
from compute_driver.image import cache as image_cache
from compute_driver import leftovers
from compute_driver import objects

LOG = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
#: Marks a tarball being written by ``save``: ``NAME.tar.partial-XXXX``.
PARTIAL = '.partial-'

# Docker's reference grammar (the distribution project's), without
# digests: an optional registry host[:port]/, lower-case path components
# joined by "/", and an optional :tag.
_ALNUM = r'[a-z0-9]+'
_SEPARATOR = r'(?:[._]|__|-+)'
_COMPONENT = _ALNUM + '(?:' + _SEPARATOR + _ALNUM + ')*'
_DOMAIN_PART = r'(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
_DOMAIN = _DOMAIN_PART + r'(?:\.' + _DOMAIN_PART + r')*(?::[0-9]+)?'
_NAME = '(?:' + _DOMAIN + '/)?' + _COMPONENT + '(?:/' + _COMPONENT + ')*'
REFERENCE_RE = re.compile('(' + _NAME + r')(?::[\w][\w.-]{0,127})?')


def split_tag(ref: str) -> tuple[str, str]:
    """Split ``repo[:tag]`` (a registry port is not a tag)."""
    repo, sep, tag = ref.rpartition(':')
    if sep and '/' not in tag:
        return repo, tag
    return ref, 'latest'


def validate_reference(ref: str) -> str:
    """Check that Docker would accept ``ref`` as a new image's name.

    dockerd checks the name only after committing a snapshot, and leaves
    the untagged image behind when it refuses it; checking first leaves
    nothing.

    :raises InvalidInput: naming the rule that is broken.
    """
    objects.validate_image_ref(ref)
    match = REFERENCE_RE.fullmatch(ref)
    if match is None or len(match.group(1)) > 255:
        raise exception.InvalidInput(
            reason='%r is not a valid Docker image name: use lower-case '
                   'letters, digits and separators (".", "_", "__", "-") '
                   'between them, "/" between components, and an optional '
                   ':TAG' % ref)
    return ref


def canonical(ref: str) -> str:
    """``ref`` with its implicit ``:latest`` spelled out."""
    return '%s:%s' % split_tag(ref)


@dataclasses.dataclass(frozen=True)
class DockerImage(objects.ImageMeta):
    """An image dockerd has, as the driver's ``_get_image`` finds it.

    :param image_id: dockerd's id of it (``sha256:...``), which a
        container is created from, so that a tag moved meanwhile does not
        change what boots.
    """

    image_id: str = ''


class ImageStore:
    """Images of one dockerd and of the image directory.

    :param api: a connected ``APIClient``.
    :param group: the ``[docker]`` options.
    """

    def __init__(self, api: typing.Any, group: typing.Any) -> None:
        self.api = api
        self.group = group
        self.directory = group.image_directory

    # -- lookups -------------------------------------------------------------

    def inspect(self, ref: str) -> dict | None:
        """dockerd's description of image ``ref``, or ``None``."""
        try:
            return self.api.inspect_image(ref)
        except docker_errors.NotFound:
            return None
        except docker_errors.APIError as exc:
            # "invalid reference format" and the like: no such image can
            # exist under that name.
            if errors.is_status(exc, 400):
                return None
            raise

    def tarball(self, ref: str) -> str | None:
        """The image directory's file for ``ref``, when there is one."""
        if not self.directory:
            return None
        for name in (ref, canonical(ref)):
            path = os.path.join(self.directory, mapping.image_file_name(name))
            if os.path.isfile(path):
                return path
        return None

    def available(self) -> str:
        """What could be booted, for an ImageNotFound message."""
        names = [meta.name for meta in self.list_images()]
        return ', '.join(names) or 'none'

    def ensure(self, ref: str) -> dict:
        """Make ``ref`` present in dockerd and return its description.

        :raises ImageNotFound: when it is nowhere.
        :raises InvalidInput: when ``ref`` is not a valid reference.
        """
        objects.validate_image_ref(ref)
        found = self.inspect(ref)
        if found is not None:
            return found
        path = self.tarball(ref)
        if path is not None:
            self._load(ref, path)
        elif self.group.registry:
            self._pull(ref)
        found = self.inspect(ref)
        if found is None:
            where = ('; %s does not contain it' % path) if path else ''
            raise exception.ImageNotFound(
                image=ref + where, available=self.available())
        return found

    def _load(self, ref: str, path: str) -> None:
        LOG.info('Loading image %s from %s', ref, path)
        with open(path, 'rb') as f:
            for _ in self.api.load_image(f):
                pass

    def _pull(self, ref: str) -> None:
        registry = self.group.registry
        remote = '%s/%s' % (registry, ref)
        repo, tag = split_tag(remote)
        auth = None
        if self.group.registry_username:
            auth = {'username': self.group.registry_username,
                    'password': self.group.registry_password or '',
                    'serveraddress': registry}
        LOG.info('Pulling image %s', remote)
        try:
            self.api.pull(repo, tag=tag, auth_config=auth)
        except docker_errors.APIError as exc:
            LOG.warning('Pulling %s failed: %s', remote,
                        errors.reason(exc))
            return
        local_repo, local_tag = split_tag(ref)
        self.api.tag('%s:%s' % (repo, tag), local_repo, local_tag)

    # -- listing -------------------------------------------------------------

    def list_images(self) -> list[objects.ImageMeta]:
        """Bootable images: configured, tarballs, then snapshots.

        With ``[docker] images`` empty, every tagged image dockerd has
        that has a command (one without cannot boot) is listed before the
        tarballs.
        """
        summaries = self.api.images()
        by_tag: dict[str, dict] = {}
        for summary in summaries:
            for tag in summary.get('RepoTags') or ():
                # Copies of the image service's images are listed as the
                # service's (see the driver's list_images).
                if tag != '<none>:<none>' and not tag.startswith(
                        SERVICE_REPOSITORY + ':'):
                    by_tag[tag] = summary
        result: list[objects.ImageMeta] = []
        seen: set[str] = set()

        def add(meta: objects.ImageMeta) -> None:
            if canonical(meta.name) not in seen:
                seen.add(canonical(meta.name))
                result.append(meta)

        snapshots = []
        wanted = list(self.group.images)
        if not wanted:
            wanted = sorted(
                tag for tag, s in by_tag.items()
                if not _is_snapshot(s.get('Labels')) and
                self._runnable(s.get('Id')))
        for ref in wanted:
            summary = by_tag.get(canonical(ref))
            if summary is not None:
                add(_meta(ref, summary))
        for ref in self._tarball_refs():
            summary = by_tag.get(canonical(ref))
            add(_meta(ref, summary) if summary is not None else
                objects.ImageMeta(name=ref, disk_format='docker',
                                  container_format='docker'))
        for tag, summary in sorted(by_tag.items()):
            if _is_snapshot(summary.get('Labels')):
                snapshots.append(_meta(tag, summary))
        for meta in snapshots:
            add(meta)
        return result

    def _runnable(self, image_id: str | None) -> bool:
        """Whether an image has a command, without which nothing boots.

        An imported root file system often has none; listing it would
        make it "verify"'s default image.
        """
        try:
            config = self.api.inspect_image(image_id).get('Config') or {}
        except docker_errors.APIError:
            return False
        return bool(config.get('Cmd') or config.get('Entrypoint'))

    def _tarball_refs(self) -> list[str]:
        if not self.directory or not os.path.isdir(self.directory):
            return []
        refs = []
        for name in sorted(os.listdir(self.directory)):
            if not name.endswith('.tar'):
                continue
            # The file name loses "/" (see mapping.image_file_name); the
            # tarball's manifest has the real names.
            for ref in _manifest_tags(os.path.join(self.directory, name)):
                if mapping.image_file_name(ref) == name or (
                        mapping.image_file_name(canonical(ref)) == name):
                    refs.append(ref)
        return refs

    # -- snapshots -----------------------------------------------------------

    def commit_snapshot(self, container: str, image_id: str,
                        instance: objects.Instance) -> None:
        """Commit ``container`` as snapshot ``image_id`` of ``instance``.

        The image is also saved into the image directory when one is set.
        A failure leaves no image behind.

        :param instance: the instance as stored at spawn: its image is
            the snapshot's base.
        :raises InvalidInput: when Docker refuses the name.
        :raises BackendError: when the tarball cannot be written.
        """
        repo, tag = split_tag(image_id)
        # A committed image inherits the container's labels; blank the
        # instance's so a container run from the image by hand is not
        # taken for the instance.
        labels = {key: '' for key in mapping.INSTANCE_KEYS}
        labels.update({mapping.IMAGE_TYPE: mapping.SNAPSHOT,
                       mapping.SNAPSHOT_OF: instance.uuid,
                       mapping.SNAPSHOT_NAME: image_id,
                       mapping.BASE_IMAGE: instance.image_ref})
        try:
            self.api.commit(container, repository=repo, tag=tag,
                            conf={'Labels': labels},
                            message='snapshot of %s' % instance.uuid)
        except docker_errors.APIError as exc:
            # dockerd 20.10 answers 500 to a bad name in a commit, after
            # making the image: remove it.
            if errors.is_status(exc, 400) or 'reference format' in str(exc):
                self._remove_untagged_snapshot(image_id)
                raise exception.InvalidInput(
                    reason='Docker refused the image name %r: %s'
                           % (image_id, errors.reason(exc))) from exc
            raise
        try:
            self.save(image_id)
        except OSError as exc:
            self._remove_quietly(image_id)
            raise exception.BackendError(
                operation='snapshot', instance=instance.name,
                reason='cannot save the image into %s: %s' % (
                    self.directory, exception.one_line(exc))) from exc
        except BaseException:
            self._remove_quietly(image_id)
            raise

    def _remove_untagged_snapshot(self, image_id: str) -> None:
        try:
            for image in self.api.images(filters={
                    'dangling': True,
                    'label': '%s=%s' % (mapping.SNAPSHOT_NAME, image_id)}):
                self._remove_quietly(image['Id'])
        except Exception as exc:
            LOG.warning('Could not look for the image of a refused '
                        'snapshot name %r; an untagged image may be left: '
                        '%s', image_id, exception.one_line(exc))
            LOG.debug('Lookup failure', exc_info=True)

    def _remove_quietly(self, ref: str) -> None:
        try:
            self.api.remove_image(ref)
        except Exception as exc:
            LOG.warning('Could not remove image %s after a failed '
                        'snapshot; it is left: %s', ref,
                        exception.one_line(exc))
            LOG.debug('Removal failure', exc_info=True)

    def remove_snapshot_quietly(self, image_id: str) -> None:
        """Remove a snapshot whose upload failed, and its tarball.

        Never raises: what stays is logged.
        """
        self._remove_quietly(image_id)
        try:
            self.remove_tarball(image_id)
        except OSError as exc:
            LOG.warning('Could not remove the tarball of failed snapshot '
                        '%s: %s', image_id, exception.one_line(exc))

    def delete_snapshot(self, image_id: str) -> None:
        """Delete snapshot ``image_id`` and its tarball; gone is fine.

        :raises InvalidInput: when the image is not a snapshot.
        """
        found = self.inspect(image_id)
        if found is None:
            self.remove_tarball(image_id)
            return
        labels = (found.get('Config') or {}).get('Labels')
        if snapshot_of(labels) is None:
            raise exception.InvalidInput(
                reason='image %s is not a snapshot' % image_id)
        try:
            self.api.remove_image(image_id)
        except docker_errors.NotFound:
            pass
        except docker_errors.APIError as exc:
            # A reverted instance runs from it: untag it only; Docker
            # frees the layers with the last container using them.
            if not errors.is_status(exc, 409):
                raise
            self.api.remove_image(image_id, force=True, noprune=True)
        self.remove_tarball(image_id)

    def snapshots_of(self, uuid: str) -> list[str]:
        """Names of the snapshots of instance ``uuid``, in one call.

        Each under the name it was given and under its tags, so that
        ``snap`` and ``snap:latest`` both name it.
        """
        names = set()
        for summary in self.api.images(filters={
                'label': '%s=%s' % (mapping.SNAPSHOT_OF, uuid)}):
            if not _is_snapshot(summary.get('Labels')):
                continue
            tags = [t for t in summary.get('RepoTags') or ()
                    if t != '<none>:<none>' and
                    not t.startswith(SERVICE_REPOSITORY + ':')]
            given = (summary.get('Labels') or {}).get(mapping.SNAPSHOT_NAME)
            if given and canonical(given) in tags:
                names.add(given)
            names.update(tags)
        return sorted(names)

    def save(self, ref: str) -> str | None:
        """Write ``docker save`` of ``ref`` into the image directory.

        :returns: the file written, or ``None`` without a directory.
        """
        if not self.directory:
            return None
        path = os.path.join(self.directory, mapping.image_file_name(ref))
        # Locked while written, so a sweep knows one whose writer died
        # (see partial_tarballs); a snapshot holds the tenant's data, so
        # it is for this user only.
        marker = leftovers.Marker.create(
            '%s%s%s' % (path, PARTIAL, uuidlib.uuid4().hex[:8]), 0o600)
        try:
            os.fchmod(marker.fd, 0o600)
            with open(marker.fd, 'wb', closefd=False) as f:
                for chunk in self.api.get_image(ref, chunk_size=_CHUNK):
                    f.write(chunk)
            os.replace(marker.path, path)
        except BaseException:
            _unlink(marker.path)
            raise
        finally:
            marker.abandon()
        return path

    def partial_tarballs(self) -> typing.Iterator[str]:
        """Tarballs whose ``save`` was interrupted, each locked while used.

        Yields the path of each partial tarball no process is writing,
        holding its lock until the next one is asked for.
        """
        if not self.directory:
            return
        try:
            names = sorted(n for n in os.listdir(self.directory)
                           if PARTIAL in n)
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(self.directory, name)
            with leftovers.probe(path) as stale:
                if stale:
                    yield path

    def remove_tarball(self, ref: str) -> None:
        if self.directory:
            _unlink(os.path.join(self.directory,
                                 mapping.image_file_name(ref)))
            _unlink(os.path.join(self.directory,
                                 mapping.image_file_name(canonical(ref))))


def _manifest_tags(path: str) -> list[str]:
    """The ``RepoTags`` of a ``docker save`` tarball; empty if unreadable.

    Only the tar headers are read to find the manifest, not the layers.
    """
    try:
        with tarfile.open(path, 'r:') as tar:
            member = tar.extractfile('manifest.json')
            if member is None:
                return []
            manifest = json.load(member)
    except (OSError, KeyError, ValueError, tarfile.TarError) as exc:
        LOG.debug('Skipping %s: %s', path, exc)
        return []
    tags = []
    for entry in manifest if isinstance(manifest, list) else ():
        for tag in entry.get('RepoTags') or ():
            if isinstance(tag, str) and objects.IMAGE_REF_RE.fullmatch(tag):
                tags.append(tag)
    return tags


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _is_snapshot(labels: dict | None) -> bool:
    return (labels or {}).get(mapping.IMAGE_TYPE) == mapping.SNAPSHOT


def tag_time(value: str | None) -> float:
    """dockerd's ``LastTagTime`` in epoch seconds; never tagged is 0.

    dockerd writes nanoseconds, which :mod:`datetime` does not read.
    """
    match = re.match(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?'
                     r'(Z|[+-]\d\d:\d\d)$', value or '')
    if match is None:
        return 0.0
    whole, fraction, zone = match.groups()
    stamp = datetime.datetime.fromisoformat(
        whole + ('+00:00' if zone == 'Z' else zone))
    if stamp.year < 1970:
        return 0.0
    return stamp.timestamp() + float('0' + (fraction or '.0'))


def snapshot_name(labels: dict | None) -> str | None:
    """The name a snapshot image was given, if it is one."""
    if not _is_snapshot(labels):
        return None
    return (labels or {}).get(mapping.SNAPSHOT_NAME) or None


def snapshot_of(labels: dict | None) -> str | None:
    """The uuid of the instance an image is a snapshot of, if it is one."""
    if not _is_snapshot(labels):
        return None
    return (labels or {}).get(mapping.SNAPSHOT_OF)


def _meta(ref: str, summary: dict) -> objects.ImageMeta:
    labels = summary.get('Labels') or {}
    properties = {}
    uuid = snapshot_of(labels)
    given = labels.get(mapping.SNAPSHOT_NAME)
    if uuid and given and canonical(given) == canonical(ref):
        ref = given
    if uuid:
        properties = {'image_type': 'snapshot', 'instance_uuid': uuid,
                      'base_image_ref': labels.get(mapping.BASE_IMAGE, '')}
    return objects.ImageMeta(name=ref, disk_format='docker',
                             container_format='docker',
                             size=summary.get('Size'),
                             properties=properties)


# -- images from the image service --------------------------------------------

#: The repository under which dockerd keeps images that came from the
#: image service, tagged with the image service's id: a second boot of the
#: same image finds it there and transfers nothing.
SERVICE_REPOSITORY = 'compute-driver-image'

#: (container_format, disk_format) -> how dockerd takes the data:
#: ``load`` for a ``docker save`` tarball, ``import`` for a root file
#: system tarball. Glance's docker images are ``docker``/``raw``; an
#: image without a disk format is taken as its container format says.
FORMATS = {
    ('docker', 'raw'): 'load',
    ('docker', None): 'load',
    ('docker', 'docker'): 'load',
    ('bare', 'raw'): 'import',
    ('bare', 'tar'): 'import',
}

#: The image property holding the command of an imported root file
#: system, which has none of its own; nova-docker read the same one.
COMMAND_PROPERTY = 'os_command_line'

#: Bytes of the stream held back from dockerd until the image service's
#: checksum is verified. A tar archive ends with at least 1 KiB of zeros
#: (10 KiB records for GNU tar): dockerd must not receive what makes the
#: archive whole before the data is known good, or it would load an image
#: from unverified bytes.
HOLD_BACK = 64 * 1024

_T = typing.TypeVar('_T')

_TAG_RE = re.compile(r'[\w][\w.-]{0,127}')


def service_tag(image_id: str) -> str:
    """The tag dockerd knows image service image ``image_id`` under."""
    tag = image_id.lower()
    if not _TAG_RE.fullmatch(tag):
        # Not a uuid: a local service's file-safe id with other letters.
        tag = hashlib.sha256(image_id.encode('utf-8')).hexdigest()
    return '%s:%s' % (SERVICE_REPOSITORY, tag)


def loader_of(image: objects.ImageMeta) -> str:
    """``load`` or ``import``: how an image service image reaches dockerd.

    :raises ImageUnacceptable: for a format Docker cannot run (a qcow2 or
        vhd disk, an ISO...), before anything is downloaded.
    """
    key = (image.container_format or 'bare', image.disk_format)
    how = FORMATS.get(key)
    if how is None:
        raise exception.ImageUnacceptable(
            image=image.id,
            reason='Docker runs container_format=docker images (docker '
                   'save tarballs) and container_format=bare images whose '
                   'disk_format is raw or tar (root file system tarballs); '
                   'this one is container_format=%s, disk_format=%s'
                   % (image.container_format, image.disk_format))
    return how


@dataclasses.dataclass(frozen=True)
class ServiceImage(DockerImage):
    """An image of the image service, before dockerd has it.

    :param loader: ``load`` or ``import`` (see :data:`FORMATS`).
    """

    loader: str = 'load'


class _Pipe:
    """Chunks from a download thread to dockerd's request body.

    The download writes (it is the file object the image service streams
    into); the request body is :meth:`chunks`. The last
    :data:`HOLD_BACK` bytes or more stay here until :meth:`finish` says
    the download was verified; a failed download ends the body with an
    error instead, so the request breaks before dockerd saw a whole
    archive. At most the queue's 8 chunks and the held bytes are in
    memory.
    """

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.Queue[typing.Any] = queue.Queue(maxsize=8)
        self._held = bytearray()
        self._closed = threading.Event()
        self.sent = 0
        #: Whether the body ended with the download's error.
        self.aborted = False

    # The download's side: a write-only, unseekable file object.
    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def write(self, data: bytes) -> int:
        self._held += data
        # Sent in chunks of at least _CHUNK: the download's may be 64 KiB,
        # and each becomes an HTTP chunk and a queue hand-over otherwise.
        if len(self._held) >= HOLD_BACK + _CHUNK:
            cut = len(self._held) - HOLD_BACK
            chunk = bytes(self._held[:cut])
            del self._held[:cut]
            self._put(chunk)
        return len(data)

    def _put(self, item: object) -> None:
        while True:
            if self._closed.is_set():
                # dockerd stopped reading: the download stops too.
                raise BrokenPipeError('dockerd closed the image stream')
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def finish(self, error: BaseException | None) -> None:
        """End the stream: the held bytes when verified, else ``error``."""
        try:
            if error is None:
                if self._held:
                    self._put(bytes(self._held))
                self._held.clear()
                self._put(self._END)
            else:
                self._held.clear()
                self._put(error)
        except BrokenPipeError:
            pass

    # dockerd's side.
    def chunks(self) -> typing.Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                self.aborted = True
                # Raised inside the request: it is sent without its final
                # chunk, which dockerd takes for a broken archive.
                raise _StreamAborted() from item
            self.sent += len(item)
            yield item

    def close(self) -> None:
        """dockerd is done reading; unblock the writer."""
        self._closed.set()


class _StreamAborted(Exception):
    """The image stream was cut because its download failed."""


def _messages_error(messages: typing.Iterable[dict]) -> tuple[
        list[dict], str | None]:
    seen, error = [], None
    for message in messages:
        seen.append(message)
        if isinstance(message, dict) and message.get('error'):
            error = str((message.get('errorDetail') or {}).get(
                'message') or message['error'])
    return seen, error


class ServiceLoader:
    """Image service images into dockerd, and snapshots back.

    Streamed both ways: an image is never whole in memory.

    :param api: a connected ``APIClient``.
    :param service: the image service.
    """

    def __init__(self, api: typing.Any, service: typing.Any) -> None:
        self.api = api
        self.service = service

    def find(self, image: objects.ImageMeta) -> dict | None:
        """dockerd's copy of ``image``, if an earlier boot brought it."""
        try:
            return self.api.inspect_image(service_tag(image.id))
        except docker_errors.NotFound:
            return None

    def ensure(self, image: ServiceImage) -> dict:
        """Make dockerd have ``image``; returns its description.

        :raises ImageChecksumMismatch: when the data is not what the image
            service recorded; dockerd then has nothing of it.
        :raises ImageDownloadIncomplete: when the download stopped early.
        :raises ImageUnacceptable: when dockerd refuses the data.
        """
        found = self.find(image)
        repo, tag = split_tag(service_tag(image.id))
        if found is not None:
            # Tagging again stamps the image's LastTagTime, the last use
            # that pruning goes by.
            self.api.tag(found['Id'], repo, tag)
            return found
        LOG.info('Streaming image %s from the %s image service into '
                 'dockerd (docker %s)', image.id, self.service.name,
                 image.loader)
        if image.loader == 'import':
            image_id = self._stream(image, lambda body: self._import(
                image, body, repo, tag))
        else:
            image_id = self._stream(image, self._load)
            self.api.tag(image_id, repo, tag)
        return self.api.inspect_image(image_id)

    def prune(self, max_age: float, in_use: typing.Collection[str],
              hold: typing.Callable[[str], typing.ContextManager[typing.Any]]
              = lambda image_id: contextlib.nullcontext(),
              now: float | None = None
              ) -> list[tuple['image_cache.CachedImage', dict]]:
        """Untag dockerd's copies of image service images unused a while.

        dockerd is the docker backend's image cache: an image service
        image stays under :func:`service_tag` after the boot that loaded
        it. A copy goes once no image of ``in_use`` is it and it was last
        used (loaded, booted, its tag stamped) more than ``max_age``
        seconds ago. Removal goes without force: dockerd keeps an image
        a container still uses, and frees its layers once no other tag
        names it.

        :param hold: the lock of an image id, which the boots that load
            that image hold too: a copy is checked and removed under it.
        :returns: each copy untagged, with its labels (a snapshot's are
            what tell the caller whether its own name may go too).
        """
        limit = (time.time() if now is None else now) - max_age
        keep = {service_tag(image_id) for image_id in in_use}
        removed = []
        for summary in self.api.images(name=SERVICE_REPOSITORY):
            for ref in summary.get('RepoTags') or ():
                if not ref.startswith(SERVICE_REPOSITORY + ':') or \
                        ref in keep:
                    continue
                with hold(ref.partition(':')[2]):
                    pruned = self._prune_one(ref, limit)
                if pruned is not None:
                    LOG.info('Removed image %s from dockerd: unused since '
                             '%s.', ref, time.ctime(pruned[0].last_used))
                    removed.append(pruned)
        return removed

    def _prune_one(self, ref: str, limit: float
                   ) -> tuple['image_cache.CachedImage', dict] | None:
        """Remove ``ref`` unless used since ``limit``; what went, if so."""
        try:
            data = self.api.inspect_image(ref)
        except docker_errors.NotFound:
            return None
        last = tag_time((data.get('Metadata') or {}).get('LastTagTime'))
        if last > limit:
            return None
        try:
            self.api.remove_image(ref)
        except docker_errors.NotFound:
            return None
        except docker_errors.APIError as exc:
            if errors.is_status(exc, 409):
                return None  # a container runs from it
            raise
        return (image_cache.CachedImage(
            image_id=ref.partition(':')[2], path='dockerd:' + ref,
            size=int(data.get('Size') or 0), last_used=last),
            (data.get('Config') or {}).get('Labels') or {})

    def _stream(self, image: ServiceImage,
                send: typing.Callable[[typing.Iterator[bytes]], str]) -> str:
        """Download ``image`` into ``send`` (dockerd) through a pipe.

        :returns: what ``send`` returns: dockerd's id of the image.
        """
        pipe = _Pipe()
        failure: list[BaseException] = []

        def download() -> None:
            error = None
            try:
                self.service.download(image.id, typing.cast(
                    typing.BinaryIO, pipe))
            except BaseException as exc:
                error = exc
                failure.append(exc)
            pipe.finish(error)

        # In a copy of the caller's context variables, where an image
        # service may keep the request's credentials (Nova's does): a new
        # thread starts with none, and would download as someone else.
        thread = threading.Thread(target=contextvars.copy_context().run,
                                  args=(download,), daemon=True,
                                  name='image-stream-%s' % image.id[:8])
        thread.start()
        try:
            result = send(pipe.chunks())
        except BaseException as exc:
            pipe.close()
            thread.join()
            if pipe.aborted and failure:
                # The download failed first: its error is the cause, and
                # dockerd, its request broken, loaded nothing.
                raise failure[0] from None
            if isinstance(exc, docker_errors.APIError):
                raise exception.ImageUnacceptable(
                    image=image.id, reason='dockerd refused it: %s'
                    % errors.reason(exc)) from exc
            raise
        pipe.close()
        thread.join()
        if failure:
            # dockerd finished without the held-back tail; what it made
            # of unverified data goes.
            if image.loader == 'import':
                self._remove_quietly(result)
            raise failure[0]
        LOG.info('dockerd took image %s: %d bytes', image.id, pipe.sent)
        return result

    def _remove_quietly(self, ref: str) -> None:
        try:
            self.api.remove_image(ref, force=True)
        except Exception as exc:
            LOG.warning('Could not remove image %s made from unverified '
                        'data: %s', ref, exception.one_line(exc))

    def _load(self, body: typing.Iterator[bytes]) -> str:
        messages, error = _messages_error(self.api.load_image(body))
        if error is not None:
            raise docker_errors.APIError(error)
        loaded = []
        for message in messages:
            text = str(message.get('stream') or '').strip()
            for prefix in ('Loaded image ID: ', 'Loaded image: '):
                if text.startswith(prefix):
                    loaded.append(text[len(prefix):])
        if not loaded:
            raise docker_errors.APIError(
                'the archive holds no image (no "Loaded image" message)')
        if len(loaded) > 1:
            LOG.warning('The archive holds %d images (%s); booting the '
                        'first', len(loaded), ', '.join(loaded))
        return str(self.api.inspect_image(loaded[0])['Id'])

    def _import(self, image: objects.ImageMeta,
                body: typing.Iterator[bytes], repo: str, tag: str) -> str:
        changes = []
        command = image.properties.get(COMMAND_PROPERTY)
        if command:
            try:
                argv = shlex.split(command)
            except ValueError as exc:
                raise exception.ImageUnacceptable(
                    image=image.id, reason='its %s cannot be split into '
                    'arguments: %s' % (COMMAND_PROPERTY, exc)) from None
            changes.append('CMD ' + json.dumps(argv))
        result = self.api.import_image(
            src=body, repository=repo, tag=tag, changes=changes or None,
            stream_src=True)
        lines = [json.loads(line) for line in str(result).splitlines()
                 if line.strip()]
        _, error = _messages_error(lines)
        if error is not None:
            raise docker_errors.APIError(error)
        return str(self.api.inspect_image('%s:%s' % (repo, tag))['Id'])

    def upload(self, ref: str,
               send: typing.Callable[[typing.BinaryIO], _T]) -> _T:
        """Stream ``docker save`` of ``ref`` into ``send``.

        :param send: uploads from the file object it is given (the
            backend's :meth:`~compute_driver.driver.ComputeDriver.
            upload_snapshot`).
        """
        reader = SaveReader(self.api.get_image(ref, chunk_size=_CHUNK))
        return send(typing.cast(typing.BinaryIO, reader))


class SaveReader(io.RawIOBase):
    """``docker save``'s chunks as a file object open for reading."""

    def __init__(self, chunks: typing.Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._buffer = b''

    def readable(self) -> bool:
        return True

    def readinto(self, target: typing.Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size
