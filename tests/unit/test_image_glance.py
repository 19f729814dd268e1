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

"""The Glance image service's configuration and error mapping
(compute_driver.image.glance and .conf); the functional tests run it
against a real Glance."""

import dataclasses
import hashlib
import socket
import struct
import threading

from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ks_exc
from oslo_config import cfg
import pytest

from compute_driver import exception
from compute_driver import image
from compute_driver.image import api
from compute_driver.image import conf as image_conf
from compute_driver.image import exception as image_exception
from compute_driver.image import glance
from compute_driver.image import local


def _conf(**glance_options):
    conf = cfg.ConfigOpts()
    image_conf.register_opts(conf)
    conf([], default_config_files=[])
    for name, value in glance_options.items():
        conf.set_override(name, value, group='glance')
    return conf


def test_glance_group_has_keystoneauth_options():
    conf = _conf()
    for name in ('auth_type', 'auth_section', 'cafile', 'insecure',
                 'timeout', 'endpoint_override', 'region_name',
                 'valid_interfaces', 'api_servers', 'num_retries'):
        assert name in conf.glance, name
    assert conf.glance.service_type == 'image'
    names = {opt.dest for group, opts in image_conf.list_opts().items()
             if group.name == 'glance' for opt in opts}
    # The password plugin's options are in the sample, like Nova's.
    assert {'auth_url', 'username', 'password', 'project_name'} <= names


def test_every_option_has_help_and_bounds():
    for group, opts in image_conf.list_opts().items():
        for opt in opts:
            assert opt.help and opt.help.strip(), (group.name, opt.name)
        if group.name == 'image_service':
            for opt in opts:
                assert opt.help.rstrip().endswith('.'), opt.name
                if isinstance(opt, cfg.IntOpt):
                    assert opt.type.min is not None, opt.name
                    assert opt.type.max is not None, opt.name


def test_load_picks_the_configured_service(tmp_path):
    conf = _conf(api_servers=['http://127.0.0.1:9292'])
    conf.set_override('local_path', str(tmp_path), group='image_service')
    service = image.load(conf)
    assert isinstance(service, local.LocalImageService)
    assert service.path == str(tmp_path)
    conf.set_override('backend', 'glance', group='image_service')
    assert isinstance(image.load(conf), glance.GlanceImageService)


def test_glance_without_endpoint_or_auth_is_a_configuration_error():
    with pytest.raises(exception.InvalidConfiguration) as info:
        glance.GlanceImageService.from_conf(_conf())
    assert 'api_servers' in str(info.value)


def test_unknown_auth_plugin_is_a_configuration_error():
    with pytest.raises(exception.InvalidConfiguration) as info:
        glance.GlanceImageService.from_conf(_conf(auth_type='no-such'))
    assert '[glance]' in str(info.value)


def test_glance_image_converts_to_a_record():
    record = glance.to_record({
        'id': 'a3c5b1ae-6b52-4e4f-a7a5-1f4e6c6b3b6e', 'name': 'cirros',
        'status': 'active', 'disk_format': 'qcow2',
        'container_format': 'bare', 'size': 21430272,
        'checksum': 'c8fc807773e5354afe61636071771906',
        'os_hash_algo': 'sha512', 'os_hash_value': 'ab' * 64,
        'min_ram': 0, 'min_disk': 1, 'visibility': 'public',
        'protected': False, 'tags': [], 'owner': None,
        'self': '/v2/images/a3c5b1ae-6b52-4e4f-a7a5-1f4e6c6b3b6e',
        'hw_disk_bus': 'virtio', 'instance_uuid': None,
        'os_hidden': False, 'file': '/v2/images/x/file',
        'schema': '/v2/schemas/image',
    })
    assert (record.name, record.status, record.size) == (
        'cirros', 'active', 21430272)
    assert record.properties == {'hw_disk_bus': 'virtio'}
    queued = glance.to_record({'id': 'x', 'status': 'queued', 'size': None,
                               'min_ram': None})
    assert (queued.name, queued.size, queued.min_ram) == ('', None, 0)


@pytest.mark.parametrize('error, expected', [
    (glance_exc.HTTPNotFound(), image_exception.ImageNotInService),
    (glance_exc.HTTPUnauthorized(), image_exception.ImageServiceUnavailable),
    (ks_exc.Unauthorized(), image_exception.ImageServiceUnavailable),
    (glance_exc.CommunicationError('refused'),
     image_exception.ImageServiceUnavailable),
    (ks_exc.ConnectFailure('refused'),
     image_exception.ImageServiceUnavailable),
    (glance_exc.HTTPForbidden(), image_exception.ImageServiceError),
    (glance_exc.HTTPBadRequest(), image_exception.ImageServiceError),
])
def test_client_errors_become_typed_errors(error, expected, monkeypatch):
    service = glance.GlanceImageService(None, ['http://127.0.0.1:9'],
                                        num_retries=0)
    monkeypatch.setattr(service, '_client', lambda endpoint: endpoint)

    def fail(client):
        raise error

    with pytest.raises(expected) as info:
        service._call('show', 'img', fail)
    assert type(info.value) is expected
    assert info.value.__cause__ is error
    if error.__class__ is glance_exc.HTTPUnauthorized:
        assert 'authentication refused' in str(info.value)


def test_connection_failures_move_to_the_next_server(monkeypatch):
    service = glance.GlanceImageService(
        None, ['http://127.0.0.1:1', 'http://127.0.0.1:2'], num_retries=2)
    seen = []
    monkeypatch.setattr(service, '_client', lambda endpoint: endpoint)

    def call(endpoint):
        seen.append(endpoint)
        if len(seen) < 3:
            raise glance_exc.CommunicationError('refused')
        return 'answer'

    assert service._call('show', 'img', call) == 'answer'
    assert seen == ['http://127.0.0.1:1', 'http://127.0.0.1:2',
                    'http://127.0.0.1:1']
    seen.clear()
    with pytest.raises(image_exception.ImageServiceUnavailable):
        service._call('upload', 'img', call, retry=False)
    assert len(seen) == 1


class _FakeResponse:
    status_code = 200
    headers: dict = {}
    raw = None

    def __init__(self, data):
        self.data = data

    def iter_content(self, size):
        return iter([self.data])

    def close(self):
        pass


class _FakeGlance:
    """Answers a download's two requests, counting them."""

    def __init__(self, image, data):
        self.requests = []
        fake = self

        class Images:
            def get(self, image_id):
                fake.requests.append(('get', image_id))
                return image

        class HTTP:
            def get(self, url):
                fake.requests.append(('GET', url))
                return _FakeResponse(data), None

        self.images = Images()
        self.http_client = HTTP()


def _glance_with(monkeypatch, data):
    image_id = '0b9bd2a4-3a4e-4a55-8b2c-6a1e8d0e0c41'
    image = {'id': image_id, 'name': 'cirros', 'status': 'active',
             'disk_format': 'raw', 'container_format': 'bare',
             'size': len(data), 'os_hash_algo': 'sha512',
             'os_hash_value': hashlib.sha512(data).hexdigest()}
    service = glance.GlanceImageService(None, ['http://127.0.0.1:9'],
                                        num_retries=0)
    client = _FakeGlance(image, data)
    monkeypatch.setattr(service, '_client', lambda endpoint: client)
    return service, client, glance.to_record(image)


def test_download_with_a_handed_record_asks_only_for_the_data(
        monkeypatch, tmp_path):
    service, client, record = _glance_with(monkeypatch, b'z' * 1000)
    dest = tmp_path / 'disk'
    assert service.download(record.id, str(dest), record=record) == record
    assert client.requests == [('GET', '/v2/images/%s/file' % record.id)]
    assert dest.read_bytes() == b'z' * 1000
    # Without one, the record is read first.
    client.requests.clear()
    service.download(record.id, str(tmp_path / 'again'))
    assert [r[0] for r in client.requests] == ['get', 'GET']


def test_a_handed_record_is_checked_before_any_request(monkeypatch,
                                                       tmp_path):
    service, client, record = _glance_with(monkeypatch, b'z' * 1000)
    with pytest.raises(image_exception.ImageNotInService):
        service.download('1d7c7c1e-7a9c-4e0e-9d61-5b6f2b9d3f00',
                         str(tmp_path / 'disk'), record=record)
    with pytest.raises(image_exception.ImageNotActive):
        service.download(record.id, str(tmp_path / 'disk'),
                         record=dataclasses.replace(record, status='saving'))
    wrong = dataclasses.replace(record, os_hash_value='0' * 128)
    with pytest.raises(image_exception.ImageChecksumMismatch):
        service.download(record.id, str(tmp_path / 'disk'), record=wrong)
    assert client.requests == [('GET', '/v2/images/%s/file' % record.id)]
    assert not (tmp_path / 'disk').exists()


def test_a_pending_record_is_read_while_the_data_is_requested(
        monkeypatch, tmp_path):
    service, client, record = _glance_with(monkeypatch, b'z' * 1000)
    seen = []

    def get():
        # The data request is out; none of its data is read yet.
        seen.append(list(client.requests))
        return record

    dest = tmp_path / 'disk'
    assert service.download(record.id, str(dest),
                            record=api.PendingRecord(get)) == record
    assert seen == [[('GET', '/v2/images/%s/file' % record.id)]]
    assert client.requests == seen[0]
    assert dest.read_bytes() == b'z' * 1000
    # None: Glance is asked for the record after all.
    client.requests.clear()
    service.download(record.id, str(tmp_path / 'again'),
                     record=api.PendingRecord(lambda: None))
    assert [r[0] for r in client.requests] == ['GET', 'get']


def test_a_pending_record_is_checked_before_any_data_is_written(
        monkeypatch, tmp_path):
    service, client, record = _glance_with(monkeypatch, b'z' * 1000)
    closed = []
    monkeypatch.setattr(_FakeResponse, 'close',
                        lambda self: closed.append(self))
    dest = tmp_path / 'disk'
    for pending, error in (
            (dataclasses.replace(record, id='other'),
             image_exception.ImageNotInService),
            (dataclasses.replace(record, status='saving'),
             image_exception.ImageNotActive),
            (dataclasses.replace(record, os_hash_value='0' * 128),
             image_exception.ImageChecksumMismatch)):
        with pytest.raises(error):
            service.download(record.id, str(dest),
                             record=api.PendingRecord(lambda: pending))

    def failed():
        raise image_exception.ImageServiceUnavailable(service='glance',
                                                      reason='unit')

    with pytest.raises(image_exception.ImageServiceUnavailable):
        service.download(record.id, str(dest),
                         record=api.PendingRecord(failed))
    # Each response was given back, and nothing was left.
    assert len(closed) == 4
    assert list(tmp_path.iterdir()) == []


def test_a_service_that_takes_no_pending_record_gets_the_record(tmp_path):
    source = tmp_path / 'source'
    source.write_bytes(b'y' * 100)
    service = local.LocalImageService(str(tmp_path / 'local'))
    record = service.upload('img', str(source), 'raw', 'bare')
    assert not service.takes_pending_record
    asked = []

    def get():
        asked.append(True)
        return record

    dest = tmp_path / 'disk'
    assert api.download(service, record.id, str(dest),
                        api.PendingRecord(get)) == record
    assert asked == [True]
    assert dest.read_bytes() == b'y' * 100


class _ListingGlance:
    """Glance's images API as far as show_ids uses it, counting requests.

    Its list leaves out ``hidden`` images, as Glance's leaves out
    ``os_hidden`` ones, which a request by id still finds.
    """

    def __init__(self, images, hidden=()):
        self.requests = []
        fake = self

        class Images:
            def list(self, filters, page_size, limit):
                fake.requests.append(('list', filters['id'], page_size,
                                      limit))
                op, _, ids = filters['id'].partition(':')
                assert op == 'in'
                return [images[i] for i in ids.split(',')
                        if i in images and i not in hidden]

            def get(self, image_id):
                fake.requests.append(('get', image_id))
                if image_id not in images:
                    raise glance_exc.HTTPNotFound()
                return images[image_id]

        self.images = Images()


def _listing_service(monkeypatch, ids, hidden=()):
    images = {i: {'id': i, 'name': 'n-' + i, 'status': 'active',
                  'disk_format': 'aki', 'container_format': 'aki',
                  'size': 1} for i in ids}
    service = glance.GlanceImageService(None, ['http://127.0.0.1:9'],
                                        num_retries=0)
    client = _ListingGlance(images, hidden)
    monkeypatch.setattr(service, '_client', lambda endpoint: client)
    return service, client, {i: glance.to_record(images[i]) for i in ids}


def test_show_ids_reads_several_records_in_one_request(monkeypatch):
    kernel = '6f1ad1f2-4c2b-4b0c-9d8e-0a4f1c7e5b11'
    ramdisk = '7a2be2a3-5d3c-4c1d-8e9f-1b5a2d8f6c22'
    service, client, records = _listing_service(monkeypatch,
                                                [kernel, ramdisk])
    assert service.show_ids([kernel, ramdisk, kernel]) == records
    assert client.requests == [
        ('list', 'in:%s,%s' % (kernel, ramdisk), 2, 2)]
    # One id is one request by id, as show's.
    client.requests.clear()
    assert service.show_ids([ramdisk]) == {ramdisk: records[ramdisk]}
    assert client.requests == [('get', ramdisk)]


def test_show_ids_asks_for_what_the_list_leaves_out(monkeypatch):
    kernel = '6f1ad1f2-4c2b-4b0c-9d8e-0a4f1c7e5b11'
    ramdisk = '7a2be2a3-5d3c-4c1d-8e9f-1b5a2d8f6c22'
    service, client, records = _listing_service(
        monkeypatch, [kernel, ramdisk], hidden=[ramdisk])
    assert service.show_ids([kernel, ramdisk]) == records
    assert [r[0] for r in client.requests] == ['list', 'get']
    # An unknown id is an unknown image, as show says.
    client.requests.clear()
    unknown = '8b3cf3b4-6e4d-4d2e-9fa0-2c6b3e9a7d33'
    with pytest.raises(image_exception.ImageNotInService) as info:
        service.show_ids([kernel, unknown])
    assert unknown in str(info.value)
    assert client.requests[-1] == ('get', unknown)


def test_show_ids_never_puts_a_separator_in_the_filter(monkeypatch):
    # Glance splits the in: list on commas and reads quotes: an id with
    # either would name other images.
    odd = 'a,b'
    service, client, records = _listing_service(
        monkeypatch, ['a', 'b', odd])
    assert service.show_ids(['a', odd, 'b']) == records
    assert client.requests[0] == ('list', 'in:a,b', 2, 2)
    assert client.requests[1:] == [('get', odd)]


class _LoopbackServer:
    """A TCP server on loopback handing each connection to ``handle``.

    Each connection is handled in a thread of its own and stays open
    until the handler closes it or the server is closed.
    """

    def __init__(self, handle):
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.url = 'http://127.0.0.1:%d' % self.sock.getsockname()[1]
        self._handle = handle
        self._conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,),
                             daemon=True).start()

    def close(self):
        self.sock.close()
        for conn in self._conns:
            conn.close()


class _ClosingServer(_LoopbackServer):
    """An HTTP server on loopback that resets a kept-alive connection.

    It answers the first request of each connection and keeps it open;
    the next request on that connection is read from the socket buffer
    unseen and the connection reset (``SO_LINGER`` 0), as a server whose
    keep-alive timeout expired just as the request arrived does.
    """

    def __init__(self):
        self.answered = []
        super().__init__(self._serve)

    def _serve(self, conn):
        with conn:
            request = b''
            while b'\r\n\r\n' not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            head = request.split(b'\r\n\r\n')[0]
            self.answered.append(head.split(b'\r\n')[0].decode())
            body = b'{"ok": true}'
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json'
                         b'\r\nContent-Length: %d\r\n\r\n%s'
                         % (len(body), body))
            # The next request arrives on a connection the server drops.
            if not conn.recv(4096):
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack('ii', 1, 0))

    def close(self):
        self.sock.close()


@pytest.fixture
def closing_server():
    server = _ClosingServer()
    yield server
    server.close()


def _session(url):
    service = glance.GlanceImageService.from_conf(_conf(api_servers=[url]))
    return service._session


def test_a_get_on_a_connection_just_closed_is_sent_again(closing_server):
    session = _session(closing_server.url)
    url = closing_server.url + '/v2/images/one'
    assert session.get(url, authenticated=False).json() == {'ok': True}
    # The same kept-alive connection, reset: the GET goes out again on a
    # new one.
    assert session.get(url, authenticated=False).json() == {'ok': True}
    assert closing_server.answered == ['GET /v2/images/one HTTP/1.1'] * 2


def test_other_requests_on_a_connection_just_closed_fail(closing_server):
    session = _session(closing_server.url)
    url = closing_server.url + '/v2/images'
    session.get(url, authenticated=False)
    # A POST may have been acted on: never sent twice.
    with pytest.raises(ks_exc.ConnectFailure):
        session.post(url, json={}, authenticated=False)
    assert closing_server.answered == ['GET /v2/images HTTP/1.1']


def test_a_get_that_times_out_is_not_sent_again():
    # Glance slow to answer is num_retries' business (and the next
    # server's), not this retry's.
    received = []
    server = _LoopbackServer(lambda conn: received.append(conn.recv(4096)))
    url = server.url + '/v2/images'
    try:
        with pytest.raises(ks_exc.ConnectTimeout):
            _session(url).get(url, authenticated=False, timeout=0.2)
        assert len(received) == 1
    finally:
        server.close()
