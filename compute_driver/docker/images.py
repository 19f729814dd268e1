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

"""Finding, loading, saving and listing images.

An image reference is a Docker image name. :meth:`ImageStore.ensure` finds
it in dockerd, else loads ``[docker] image_directory``'s tarball of it,
else pulls it from ``[docker] registry``, else raises ImageNotFound naming
what there is.
"""

import json
import logging
import os
import re
import tarfile
import typing
import uuid as uuidlib

from docker import errors as docker_errors

from compute_driver.docker import client as dclient
from compute_driver.docker import mapping
from compute_driver import exception
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
            if dclient.is_status(exc, 400):
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
                        dclient.api_error_text(exc))
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
                if tag != '<none>:<none>':
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
