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

"""The Glance v2 image service, through python-glanceclient.

python-glanceclient rather than openstacksdk: it is what Nova's own image
API uses, so it is already installed wherever the Nova adapter runs and
behaves there as Nova's does, it is a much smaller dependency than the
SDK, and it takes a keystoneauth session, so ``[glance]`` carries
keystoneauth's standard options and any auth plugin works. The data is
verified here (not by the client's own ``do_checksum``) so that every
image service raises the same typed errors and leaves no partial file.
"""

from collections.abc import Callable
import http.client
import logging
import os
import time
import types
import typing

from glanceclient import client as glance_client
from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session
from oslo_config import cfg
from requests import adapters as requests_adapters
from urllib3.exceptions import ProtocolError
from urllib3.util import retry as urllib3_retry

from compute_driver import exception
from compute_driver.image import api
from compute_driver.image import conf as image_conf
from compute_driver.image import exception as image_exception

LOG = logging.getLogger(__name__)

_T = typing.TypeVar('_T')

#: Tries to delete the record of a failed upload, 0.1 s apart and doubling
#: (3 s in all).
_CLEANUP_ATTEMPTS = 5

#: Image attributes Glance itself sets or reserves; every other attribute
#: of an image is one of its properties.
_CORE = frozenset((
    'id', 'name', 'status', 'disk_format', 'container_format', 'size',
    'virtual_size', 'checksum', 'os_hash_algo', 'os_hash_value', 'min_ram',
    'min_disk', 'visibility', 'protected', 'owner', 'created_at',
    'updated_at', 'tags', 'self', 'file', 'schema', 'direct_url',
    'locations', 'os_hidden', 'stores', 'os_glance_import_task',
    'os_glance_failed_import', 'os_glance_importing_to_stores',
))

#: Characters Glance's ``in:`` filter reads as separators or quotes.
_FILTER_SPECIAL = frozenset(',"\\')

#: Failures worth another try on another server: nothing reached Glance,
#: or Glance said it is temporarily unable to answer.
_RETRIABLE = (glance_exc.CommunicationError, glance_exc.InvalidEndpoint,
              glance_exc.HTTPServiceUnavailable, glance_exc.HTTPBadGateway,
              ks_exc.ConnectionError)

#: Errors of a request sent on a kept-alive connection that the server
#: closed meanwhile: it read none of it.
_STALE_CONNECTION_ERRORS = (ConnectionResetError, BrokenPipeError,
                            http.client.RemoteDisconnected)


class StaleConnectionRetry(urllib3_retry.Retry):
    """Send a GET or HEAD again once when its connection was closed.

    A server drops a kept-alive connection once it has been idle for a
    while (a few seconds for gunicorn, uwsgi and Apache); when a request
    goes out on it at that moment, the server resets it without reading
    the request. Browsers and most HTTP clients send an idempotent request
    again on a new connection then; requests does not, so two boots a few
    seconds apart could fail on a healthy Glance, or, with ``[glance]
    num_retries``, warn and move to the next server. Every other error is
    handled as requests' default (no retry) does, so a server that is down
    or slow still fails at once, for ``num_retries`` to handle.
    """

    def __init__(self, **kwargs: typing.Any) -> None:
        kwargs.setdefault('total', 1)
        kwargs.setdefault('connect', 0)
        kwargs.setdefault('status', 0)
        kwargs.setdefault('other', 0)
        kwargs.setdefault('allowed_methods', frozenset(('GET', 'HEAD')))
        super().__init__(**kwargs)

    def increment(self, method: str | None = None, url: str | None = None,
                  response: typing.Any = None,
                  error: Exception | None = None, _pool: typing.Any = None,
                  _stacktrace: types.TracebackType | None = None
                  ) -> 'StaleConnectionRetry':
        if not (isinstance(error, ProtocolError) and len(error.args) > 1
                and isinstance(error.args[1], _STALE_CONNECTION_ERRORS)):
            # Raises, as requests' own policy does for anything else.
            urllib3_retry.Retry(0, read=False).increment(
                method, url, response, error, _pool, _stacktrace)
            raise AssertionError('unreachable: a spent Retry raises')
        LOG.debug('The connection of %s %s was closed before an answer; '
                  'sending it again', method, url)
        return super().increment(method, url, response, error, _pool,
                                 _stacktrace)


def retry_stale_connections(session: ks_session.Session) -> None:
    """Have ``session`` resend a GET sent on a connection just closed.

    See :class:`StaleConnectionRetry`.
    """
    for adapter in session.session.adapters.values():
        if isinstance(adapter, requests_adapters.HTTPAdapter):
            adapter.max_retries = StaleConnectionRetry()


def to_record(image: typing.Mapping[str, typing.Any]) -> api.ImageRecord:
    """A Glance v2 image (a JSON object) as an :class:`ImageRecord`."""
    return api.ImageRecord(
        id=image['id'], name=image.get('name') or '',
        status=image.get('status') or 'queued',
        disk_format=image.get('disk_format'),
        container_format=image.get('container_format'),
        size=image.get('size'), checksum=image.get('checksum'),
        os_hash_algo=image.get('os_hash_algo'),
        os_hash_value=image.get('os_hash_value'),
        min_ram=image.get('min_ram') or 0,
        min_disk=image.get('min_disk') or 0,
        properties={key: str(value) for key, value in image.items()
                    if key not in _CORE and value is not None})


class _SocketBody:
    """A download response's data, read straight from its socket.

    Through requests, each chunk is a new bytes object that urllib3's
    buffering and http.client each handle; read here with http.client's
    ``readinto``, the data goes from the socket into the download's own
    reused buffers in one copy, and Python runs once per buffer.
    http.client's ``readinto`` ends quietly when the connection closes
    early, so the ``Content-Length`` is checked here as urllib3 would.
    """

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self._response = response

    def _check_end(self) -> None:
        missing = self._response.length
        if missing:
            raise http.client.IncompleteRead(b'', missing)

    def readinto(self, buffer: memoryview) -> int:
        count = self._response.readinto(buffer)
        if not count and len(buffer):
            self._check_end()
        return count

    def read(self, size: int = -1) -> bytes:
        data = self._response.read(None if size < 0 else size)
        if not data and size:
            self._check_end()
        return data


def _body_of(response: typing.Any) -> api.Data:
    """A requests response's data, for :func:`api.write_verified`."""
    # urllib3 keeps http.client's response as _fp; reading it directly is
    # only right while urllib3 has nothing to decode and nothing buffered
    # (it reads nothing before requests asks, as stream=True here).
    raw = getattr(response.raw, '_fp', None)
    if (isinstance(raw, http.client.HTTPResponse)
            and not response.headers.get('Content-Encoding')
            and not getattr(response.raw, '_fp_bytes_read', 0)):
        return _SocketBody(raw)
    return response.iter_content(api.DOWNLOAD_BUFFER_SIZE)


def _source_size(src: api.Source, fileobj: typing.BinaryIO) -> int | None:
    # Glance checks the size header against what arrives, and uses it to
    # refuse an image over its quota before reading it.
    if isinstance(src, (str, os.PathLike)):
        return os.path.getsize(src)
    try:
        stat = os.fstat(fileobj.fileno())
        return stat.st_size - fileobj.tell() if stat.st_size else None
    except (AttributeError, OSError, ValueError):
        return None


class GlanceImageService(api.ImageService):
    """Images in a Glance v2 API.

    :param session: the keystoneauth session requests go through; its
        auth plugin may be ``None`` for an unauthenticated Glance.
    :param endpoints: Glance URLs to use in turn; empty: the adapter's
        endpoint (``endpoint_override``, else the service catalog).
    :param num_retries: extra attempts of a request that did not reach
        Glance.
    :param adapter_kwargs: keystoneauth adapter arguments (interface,
        region_name, endpoint_override...) for catalog lookups.
    """

    name = 'glance'
    takes_pending_record = True

    def __init__(self, session: ks_session.Session,
                 endpoints: typing.Sequence[str] = (),
                 num_retries: int = 3,
                 **adapter_kwargs: typing.Any) -> None:
        self._session = session
        self._endpoints: list[str | None] = list(endpoints) or [None]
        self._num_retries = num_retries
        self._adapter_kwargs = adapter_kwargs
        self._clients: dict[str | None, typing.Any] = {}
        self._next = 0

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> 'GlanceImageService':
        """Build the service from the ``[glance]`` group of ``conf``.

        :raises InvalidConfiguration: when no endpoint can be found: no
            ``api_servers``, no ``endpoint_override`` and no auth plugin
            to read a service catalog from.
        """
        group = image_conf.GLANCE_GROUP
        try:
            auth = ks_loading.load_auth_from_conf_options(conf, group)
            sess = ks_loading.load_session_from_conf_options(
                conf, group, auth=auth)
            retry_stale_connections(sess)
        except ks_exc.ClientException as exc:
            raise exception.InvalidConfiguration(
                reason='[%s] %s' % (group, exception.one_line(exc))) from exc
        section = conf[group]
        if not (section.api_servers or section.endpoint_override or auth):
            raise exception.InvalidConfiguration(
                reason='[glance] needs api_servers or endpoint_override for '
                       'a Glance without Keystone, or auth_type and its '
                       'options to find Glance in the service catalog')
        adapter_kwargs = {
            'interface': section.valid_interfaces,
            'region_name': section.region_name,
            'endpoint_override': section.endpoint_override,
            'service_type': section.service_type,
            'service_name': section.service_name,
        }
        return cls(sess, endpoints=section.api_servers or (),
                   num_retries=section.num_retries, **adapter_kwargs)

    def _client(self, endpoint: str | None) -> typing.Any:
        client = self._clients.get(endpoint)
        if client is None:
            kwargs = dict(self._adapter_kwargs)
            if endpoint is not None:
                kwargs['endpoint_override'] = endpoint
            client = glance_client.Client('2', session=self._session,
                                          **kwargs)
            self._clients[endpoint] = client
        return client

    def _call(self, operation: str, image: str,
              func: Callable[[typing.Any], _T], retry: bool = True) -> _T:
        attempts = self._num_retries + 1 if retry else 1
        for attempt in range(attempts):
            endpoint = self._endpoints[self._next % len(self._endpoints)]
            try:
                return func(self._client(endpoint))
            except _RETRIABLE as exc:
                if attempt + 1 >= attempts:
                    raise self._translate(exc, operation, image) from exc
                # The next server, as Nova's glance client does.
                self._next += 1
                LOG.warning('Glance at %s failed to %s image %s (%s); '
                            'trying again (%d of %d).',
                            endpoint or 'the catalog endpoint', operation,
                            image, exception.one_line(exc), attempt + 1,
                            self._num_retries)
            except Exception as exc:
                raise self._translate(exc, operation, image) from exc
        raise AssertionError('unreachable: the loop returns or raises')

    def _translate(self, exc: Exception, operation: str,
                   image: str) -> exception.ComputeDriverError:
        if isinstance(exc, exception.ComputeDriverError):
            return exc
        reason = exception.one_line(exc)
        if isinstance(exc, glance_exc.HTTPNotFound):
            return image_exception.ImageNotInService(
                image=image, service=self.name)
        if isinstance(exc, (glance_exc.HTTPUnauthorized,
                            ks_exc.Unauthorized)):
            return image_exception.ImageServiceUnavailable(
                service=self.name,
                reason='authentication refused: %s' % reason)
        if isinstance(exc, _RETRIABLE + (ks_exc.ClientException,)):
            return image_exception.ImageServiceUnavailable(
                service=self.name, reason=reason)
        return image_exception.ImageServiceError(
            service=self.name, operation=operation, image=image,
            reason=reason)

    def list(self) -> list[api.ImageRecord]:
        images = self._call('list', '*',
                            lambda c: [to_record(i) for i in c.images.list()])
        return sorted(images, key=lambda r: (r.name, r.id))

    def show(self, image: str) -> api.ImageRecord:
        try:
            return self._call('show', image,
                              lambda c: to_record(c.images.get(image)))
        except image_exception.ImageNotInService:
            pass
        # Not an id: a name, which Glance filters on server side.
        matches = self._call(
            'show', image,
            lambda c: [to_record(i) for i in c.images.list(
                filters={'name': image})])
        return api.find_by_name(self.name, image, matches)

    def show_ids(self, image_ids: typing.Iterable[str]
                 ) -> dict[str, api.ImageRecord]:
        """The records of several images in one request, by id.

        Glance filters a list on ``id=in:...``. Its lists leave out some
        images that a request by id finds (hidden ones, community images
        of other projects): an id the list did not return is asked for on
        its own, so the result is :meth:`show`'s by id for each.
        """
        wanted = list(dict.fromkeys(image_ids))
        records: dict[str, api.ImageRecord] = {}
        # Glance splits the list on commas and reads quotes; an id with
        # either (no uuid has) is only asked for on its own.
        listed = [i for i in wanted if not _FILTER_SPECIAL.intersection(i)]
        if len(listed) > 1:
            found = self._call(
                'show', ', '.join(listed),
                lambda c: [to_record(i) for i in c.images.list(
                    filters={'id': 'in:' + ','.join(listed)},
                    # One page, and no request for a next one.
                    page_size=len(listed), limit=len(listed))])
            records.update((r.id, r) for r in found if r.id in wanted)
        for image_id in wanted:
            if image_id not in records:
                records[image_id] = self._show_id(image_id)
        return records

    def _show_id(self, image_id: str) -> api.ImageRecord:
        return self._call('show', image_id,
                          lambda c: to_record(c.images.get(image_id)))

    def download(self, image_id: str, dest: api.Destination,
                 record: api.ImageRecord | api.PendingRecord | None = None
                 ) -> api.ImageRecord:
        # The record first, and only by id: the bytes are then checked
        # against the record of the image that was asked for. A caller's
        # fresh one saves a request per boot.
        if isinstance(record, api.PendingRecord):
            pending, checked = record, None
        else:
            pending, checked = None, self._checked_record(image_id, record)
        response = self._call(
            'download', image_id,
            lambda c: c.http_client.get('/v2/images/%s/file' % image_id)[0])
        try:
            if pending is not None:
                # Glance answers the data request while the record is
                # read; no byte of the data is read before it is checked.
                checked = self._checked_record(image_id, pending.result())
            record = typing.cast(api.ImageRecord, checked)
            if response.status_code == 204:
                raise image_exception.ImageNotActive(
                    image=image_id, service=self.name, status='without data',
                    operation='download', reason='no data')
            api.write_verified(self.name, record, _body_of(response), dest)
        finally:
            # Give the connection back (or drop it) even when the copy
            # stopped early, instead of when the response is collected.
            response.close()
        return record

    def _checked_record(self, image_id: str,
                        record: api.ImageRecord | None) -> api.ImageRecord:
        if record is None:
            record = self._call('download', image_id,
                                lambda c: to_record(c.images.get(image_id)))
        return api.check_record(self.name, image_id, record)

    def upload(self, name: str, src: api.Source, disk_format: str,
               container_format: str,
               properties: dict[str, str] | None = None,
               min_ram: int = 0, min_disk: int = 0) -> api.ImageRecord:
        extra = {str(k): str(v) for k, v in (properties or {}).items()}
        created = self._call(
            'create', name,
            lambda c: c.images.create(
                name=name, disk_format=disk_format,
                container_format=container_format, min_ram=min_ram,
                min_disk=min_disk, **extra))
        image_id = created['id']
        try:
            with api.open_source(src) as fileobj:
                reader = api.HashingReader(fileobj)
                size = _source_size(src, fileobj)
                # Not retried: the stream cannot be rewound in general.
                self._call('upload', image_id,
                           lambda c: c.images.upload(image_id, reader,
                                                     image_size=size),
                           retry=False)
            record = self._call('show', image_id,
                                lambda c: to_record(c.images.get(image_id)))
            self._check_upload(record, reader.hasher)
        except BaseException as exc:
            # Nothing of a failed upload stays: a queued or killed record
            # would be listed and booted from.
            self._delete_failed_upload(image_id)
            if isinstance(exc, Exception) and not isinstance(
                    exc, image_exception.ImageUploadFailed):
                raise image_exception.ImageUploadFailed(
                    image=name, service=self.name,
                    reason=exception.one_line(exc)) from exc
            raise
        return record

    def _delete_failed_upload(self, image_id: str) -> None:
        # Glance may still be handling the aborted upload when it is asked
        # to delete the image, and then answers 500 or 409 for a moment.
        delay = 0.1
        for attempt in range(_CLEANUP_ATTEMPTS):
            try:
                self.delete(image_id)
                return
            except exception.ComputeDriverError as exc:
                if attempt + 1 == _CLEANUP_ATTEMPTS:
                    LOG.warning('Could not delete image %s after its upload '
                                'failed: %s', image_id,
                                exception.one_line(exc))
                    return
            time.sleep(delay)
            delay *= 2

    def _check_upload(self, record: api.ImageRecord,
                      hasher: api.Hasher) -> None:
        if record.status != 'active':
            raise image_exception.ImageUploadFailed(
                image=record.id, service=self.name,
                reason='the image is %s after its upload' % record.status)
        if record.size != hasher.size:
            raise image_exception.ImageUploadFailed(
                image=record.id, service=self.name,
                reason='Glance stored %s bytes of %d sent'
                       % (record.size, hasher.size))
        if (record.os_hash_algo == hasher.algo
                and record.os_hash_value != hasher.os_hash.hexdigest()):
            raise image_exception.ImageUploadFailed(
                image=record.id, service=self.name,
                reason='Glance recorded %s %s for data whose hash is %s'
                       % (record.os_hash_algo, record.os_hash_value,
                          hasher.os_hash.hexdigest()))

    def delete(self, image_id: str) -> None:
        try:
            self._call('delete', image_id,
                       lambda c: c.images.delete(image_id))
        except image_exception.ImageNotInService:
            LOG.debug('Image %s was already deleted from Glance.', image_id)
