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

"""Resize of a container on its host.

A container's labels are its instance's record and Docker cannot change
them (``docker update`` changes limits only), so a resize gives the
instance a new container: the stopped container is committed as the
*revert point*, an image tagged :func:`revert_tag` that carries the old
record in its labels; a container with the new flavor's limits and
record is created from it under the instance's name, and the old
container is removed. The new container's writable layer starts from the
old one's, so nothing written in the guest is lost.

Confirming retags the revert point :func:`base_tag` (the resized
container's image, removed with the instance); reverting creates a
container from the revert point with the old record and limits. A stopped
revert point holds no CPU or memory, so unlike the fake backend's it is
not counted in the host's usage.

Only on the same host: a container cannot move to another dockerd, and
two compute hosts sharing one dockerd would both name the instance's
container after its uuid.
"""

import json
import logging
import typing

from docker import errors as docker_errors

from compute_driver.docker import errors
from compute_driver.docker import mapping
from compute_driver import exception
from compute_driver import objects

LOG = logging.getLogger(__name__)

#: The repository of the images resizes make.
REPOSITORY = 'compute-driver-resize'
#: Label of a revert point: the uuid of its instance.
RESIZE_OF = mapping.LABEL_NS + 'resize-of'
#: Label of a revert point: the instance's labels before the resize.
RESIZE_RECORD = mapping.LABEL_NS + 'resize-record'
#: :data:`mapping.IMAGE_TYPE` of a revert point.
RESIZE = 'resize'


def revert_tag(uuid: str) -> str:
    """The revert point of instance ``uuid``'s resize."""
    return '%s:revert-%s' % (REPOSITORY, uuid)


def base_tag(uuid: str) -> str:
    """The image a resized instance's container was created from."""
    return '%s:base-%s' % (REPOSITORY, uuid)


def is_resize_image(ref: str) -> bool:
    """Whether ``ref`` names a revert point or a resized instance's base."""
    return ref.startswith(REPOSITORY + ':')


def blank_labels() -> dict[str, str]:
    """Labels that hide a revert point's own from containers made of it.

    A container inherits its image's labels: these override the revert
    point's, and those of the instance, with empty values.
    """
    labels = {key: '' for key in mapping.INSTANCE_KEYS}
    labels.update({RESIZE_OF: '', RESIZE_RECORD: '',
                   mapping.IMAGE_TYPE: ''})
    return labels


def commit_revert_point(api: typing.Any, container: str,
                        data: dict) -> str:
    """Commit the stopped ``container`` as its instance's revert point.

    :param data: the container's inspect data.
    :returns: the image's id.
    :raises InvalidInput: when the instance has a revert point already.
    """
    old = mapping.container_labels(data)
    uuid = old[mapping.UUID]
    if inspect(api, revert_tag(uuid)) is not None:
        raise exception.InvalidInput(
            reason='instance %s has a resize to confirm or revert first'
                   % old.get(mapping.NAME, uuid))
    labels = {key: '' for key in mapping.INSTANCE_KEYS}
    labels.update({
        mapping.IMAGE_TYPE: RESIZE, RESIZE_OF: uuid,
        RESIZE_RECORD: json.dumps({k: old.get(k, '')
                                   for k in mapping.INSTANCE_KEYS},
                                  sort_keys=True)})
    repository, tag = revert_tag(uuid).split(':')
    result = api.commit(container, repository=repository, tag=tag,
                        conf={'Labels': labels},
                        message='revert point of %s' % uuid)
    return str(result['Id'])


def inspect(api: typing.Any, ref: str) -> dict | None:
    """dockerd's description of image ``ref``, or ``None``."""
    try:
        return typing.cast(dict, api.inspect_image(ref))
    except docker_errors.NotFound:
        return None


def recorded_labels(image: dict) -> dict[str, str]:
    """The instance labels a revert point recorded.

    :raises InvalidInput: when the image is not a revert point.
    """
    labels = (image.get('Config') or {}).get('Labels') or {}
    try:
        record = json.loads(labels[RESIZE_RECORD])
        if not isinstance(record, dict):
            raise ValueError('not a JSON object')
    except (KeyError, ValueError) as exc:
        raise exception.InvalidInput(
            reason='image %s is not a revert point: %s'
                   % (image.get('Id'), exc)) from None
    return {str(k): str(v) for k, v in record.items()}


def keep_as_base(api: typing.Any, uuid: str) -> None:
    """Retag the revert point as the resized container's image.

    The image is in use by the instance's container, so only its name
    changes; a previous base becomes a parent layer of it.
    """
    repository, tag = base_tag(uuid).split(':')
    api.tag(revert_tag(uuid), repository, tag=tag, force=True)
    untag(api, revert_tag(uuid))


def untag(api: typing.Any, ref: str) -> None:
    """Remove the name ``ref``; an image a container uses stays."""
    try:
        api.remove_image(ref, noprune=True)
    except docker_errors.NotFound:
        pass
    except docker_errors.APIError as exc:
        # 409: another container (of the revert) uses it; it goes with
        # that container's instance.
        if not errors.is_status(exc, 409):
            raise


def remove_base(api: typing.Any, uuid: str,
                instance: objects.Instance) -> None:
    """Remove the image a destroyed instance's container was made from."""
    try:
        api.remove_image(base_tag(uuid))
    except docker_errors.NotFound:
        pass
    except docker_errors.APIError as exc:
        # The layers of a revert point made since stay with it.
        LOG.debug('Kept image %s of %s: %s', base_tag(uuid), instance.name,
                  errors.reason(exc))
