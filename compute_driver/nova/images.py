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

"""Images through Nova's own image API, inside nova-compute.

:class:`NovaImageService` is the library's image service over
``nova.image.glance.API``: nova.conf's ``[glance]`` options (endpoints,
retries, TLS, service user) and the user's token apply, exactly as for
Nova's own drivers. The backend downloads through it into its cache and
uploads snapshots through it.

Nova's calls carry a request context; the library's image service does
not. The adapter therefore opens a :func:`request` around each operation
that touches images (spawn, snapshot): the context lives in a
:class:`contextvars.ContextVar`, so each of nova-compute's concurrent
operations (threads or greenthreads) sees its own. Outside of one (a
periodic task, a worker thread the backend started) Nova's admin context
is used, as Nova's own periodic image cache manager does.

A snapshot under Nova fills an image that already exists: Nova's API
created it (``queued``, named by the user, with the instance's
properties) before the compute host was asked. The snapshot's
:func:`request` names that image; the contract's check that a snapshot's
name is free does not count this reservation, and the upload goes into it
with ``update(data=...)`` instead of creating another image.
"""

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import logging
import typing

from keystoneauth1 import exceptions as ks_exc
from nova import context as nova_context
from nova import exception as nova_exception
from nova.image import glance as nova_glance

from compute_driver import exception
from compute_driver.image import api
from compute_driver.image import exception as image_exception

LOG = logging.getLogger(__name__)

_F = typing.TypeVar('_F', bound=typing.Callable[..., typing.Any])


@dataclasses.dataclass(frozen=True)
class _Request:
    context: typing.Any
    snapshot_image: str | None = None


_REQUEST: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    'compute_driver_nova_image_request', default=None)


@contextlib.contextmanager
def request(context: typing.Any,
            snapshot_image: str | None = None) -> typing.Iterator[None]:
    """Run the block's image calls with Nova's request ``context``.

    :param context: the ``nova.context.RequestContext`` of the operation.
    :param snapshot_image: the id of the image Nova created for a
        snapshot the block takes, which the upload fills.
    """
    token = _REQUEST.set(_Request(context, snapshot_image))
    try:
        yield
    finally:
        _REQUEST.reset(token)


def with_request(
        snapshot_arg: str | None = None) -> typing.Callable[[_F], _F]:
    """Decorate an adapter method taking ``context`` with :func:`request`.

    :param snapshot_arg: the name of the method's argument holding the
        id of the image a snapshot fills.
    """
    def decorate(method: _F) -> _F:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def wrapper(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            bound = signature.bind(*args, **kwargs)
            target = (bound.arguments.get(snapshot_arg) if snapshot_arg
                      else None)
            with request(bound.arguments.get('context'),
                         None if target is None else str(target)):
                return method(*args, **kwargs)
        return typing.cast(_F, wrapper)
    return decorate


def to_record(image: typing.Mapping[str, typing.Any]) -> api.ImageRecord:
    """An image as Nova's image API returns it, as an ImageRecord.

    Nova's dict has Glance's base attributes at the top and every other
    property under ``properties``.
    """
    props = image.get('properties') or {}
    return api.ImageRecord(
        id=str(image['id']), name=image.get('name') or '',
        status=image.get('status') or 'queued',
        disk_format=image.get('disk_format'),
        container_format=image.get('container_format'),
        size=image.get('size'), checksum=image.get('checksum'),
        os_hash_algo=image.get('os_hash_algo'),
        os_hash_value=image.get('os_hash_value'),
        min_ram=int(image.get('min_ram') or 0),
        min_disk=int(image.get('min_disk') or 0),
        properties={str(k): str(v) for k, v in props.items()
                    if v is not None})


class NovaImageService(api.ImageService):
    """The library's image service over Nova's image API.

    :param image_api: Nova's ``nova.image.glance.API``; one is made when
        not given.
    """

    name = 'nova'

    def __init__(self, image_api: typing.Any = None) -> None:
        self._api = image_api or nova_glance.API()

    @staticmethod
    def _request() -> _Request:
        current = _REQUEST.get()
        if current is None or current.context is None:
            return _Request(nova_context.get_admin_context())
        return current

    def _call(self, operation: str, image: str,
              func: typing.Callable[[typing.Any], typing.Any]
              ) -> typing.Any:
        try:
            return func(self._request().context)
        except exception.ComputeDriverError:
            raise
        except nova_exception.ImageNotFound as exc:
            raise image_exception.ImageNotInService(
                image=image, service=self.name) from exc
        except (nova_exception.ImageNotAuthorized,
                nova_exception.Forbidden) as exc:
            raise image_exception.ImageServiceUnavailable(
                service=self.name, reason='authorization refused: %s'
                % exception.one_line(exc)) from exc
        except (nova_exception.GlanceConnectionFailed,
                ks_exc.ConnectionError, ks_exc.AuthorizationFailure,
                ks_exc.Unauthorized, ks_exc.EmptyCatalog,
                ks_exc.EndpointNotFound) as exc:
            # Glance unreachable, or not found or not let in with Nova's
            # credentials: nothing about the image itself.
            raise image_exception.ImageServiceUnavailable(
                service=self.name, reason=exception.one_line(exc)) from exc
        except Exception as exc:
            # Nova passes Glance's other errors through untranslated.
            raise image_exception.ImageServiceError(
                service=self.name, operation=operation, image=image,
                reason=exception.one_line(exc)) from exc

    def _get(self, image_id: str) -> api.ImageRecord:
        return to_record(self._call(
            'show', image_id, lambda ctx: self._api.get(ctx, image_id)))

    def show(self, image: str) -> api.ImageRecord:
        try:
            record = self._get(image)
        except image_exception.ImageNotInService:
            # Not an id: a name. Nova's API passes its filters to Glance.
            matches = self._call(
                'show', image, lambda ctx: self._api.get_all(
                    ctx, filters={'name': image}))
            record = api.find_by_name(self.name, image,
                                      [to_record(m) for m in matches])
        if (record.id == self._request().snapshot_image
                and record.status == 'queued'):
            # The reservation this snapshot fills is no image yet.
            raise image_exception.ImageNotInService(image=image,
                                                    service=self.name)
        return record

    def list(self) -> list[api.ImageRecord]:
        images = self._call('list', '*',
                            lambda ctx: self._api.get_all(ctx))
        return sorted((to_record(i) for i in images),
                      key=lambda r: (r.name, r.id))

    def download(self, image_id: str, dest: api.Destination,
                 record: api.ImageRecord | None = None) -> api.ImageRecord:
        if record is None:
            record = self._get(image_id)
        api.check_record(self.name, image_id, record)
        # Neither a file nor a path: Nova's API then hands back Glance's
        # chunks, which are verified and written here like any service's.
        chunks = self._call('download', image_id,
                            lambda ctx: self._api.download(ctx, image_id))
        if chunks is None:
            raise image_exception.ImageNotActive(
                image=image_id, service=self.name, status='without data',
                operation='download', reason='no data')
        try:
            api.write_verified(self.name, record, chunks, dest)
        finally:
            close = getattr(chunks, 'close', None)
            if close is not None:
                close()
        return record

    def upload(self, name: str, src: api.Source, disk_format: str,
               container_format: str,
               properties: dict[str, str] | None = None,
               min_ram: int = 0, min_disk: int = 0) -> api.ImageRecord:
        """Create an image, or fill the one Nova created for a snapshot.

        When ``name`` is the id of the image the current :func:`request`
        snapshots into, that image gets the data, formats and properties
        (merged with those Nova set); otherwise a new image is created.
        """
        meta = {'disk_format': disk_format,
                'container_format': container_format,
                'min_ram': min_ram, 'min_disk': min_disk,
                'properties': {str(k): str(v)
                               for k, v in (properties or {}).items()}}
        reserved = self._request().snapshot_image == name
        image_id = name if reserved else None
        try:
            with api.open_source(src) as fileobj:
                reader = api.HashingReader(fileobj)
                if reserved:
                    self._call('upload', name, lambda ctx: self._api.update(
                        ctx, name, meta, data=reader, purge_props=False))
                else:
                    created = self._call(
                        'create', name, lambda ctx: self._api.create(
                            ctx, dict(meta, name=name)))
                    image_id = str(created['id'])
                    self._call('upload', image_id,
                               lambda ctx: self._api.update(
                                   ctx, image_id, {}, data=reader,
                                   purge_props=False))
            record = self._get(typing.cast(str, image_id))
            self._check_stored(record, reader.hasher)
        except BaseException as exc:
            if image_id is not None and not reserved:
                # A queued or killed image of ours would be listed and
                # booted from; Nova's own reservation is Nova's to clean.
                with contextlib.suppress(exception.ComputeDriverError):
                    self.delete(image_id)
            if isinstance(exc, Exception) and not isinstance(
                    exc, image_exception.ImageUploadFailed):
                raise image_exception.ImageUploadFailed(
                    image=name, service=self.name,
                    reason=exception.one_line(exc)) from exc
            raise
        return record

    def _check_stored(self, record: api.ImageRecord,
                      hasher: api.Hasher) -> None:
        problems = []
        if record.status != 'active':
            problems.append('the image is %s' % record.status)
        if record.size is not None and record.size != hasher.size:
            problems.append('%s bytes stored of %d sent'
                            % (record.size, hasher.size))
        sent = {hasher.algo: hasher.os_hash.hexdigest(),
                'md5': hasher.md5.hexdigest()}
        for algo, value in ((record.os_hash_algo, record.os_hash_value),
                            ('md5', record.checksum)):
            if algo in sent and value and value != sent[algo]:
                problems.append('%s %s recorded for data whose hash is %s'
                                % (algo, value, sent[algo]))
        if problems:
            raise image_exception.ImageUploadFailed(
                image=record.id, service=self.name,
                reason='; '.join(problems))

    def delete(self, image_id: str) -> None:
        try:
            self._call('delete', image_id,
                       lambda ctx: self._api.delete(ctx, image_id))
        except image_exception.ImageNotInService:
            LOG.debug('Image %s was already deleted.', image_id)
