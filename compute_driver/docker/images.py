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

import dataclasses
import json
import logging
import os
import re
import tarfile
import typing
import uuid as uuidlib

from docker import errors as docker_errors

from compute_driver.docker import errors
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
                    if t != '<none>:<none>']
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
