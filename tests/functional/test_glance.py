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

"""The Glance image service against a real Glance API.

Glance (the ``glance`` package, see compute_driver.testing.glance) runs
on 127.0.0.1 without Keystone; the tests go through the same ``[glance]``
options a deployment sets. Without Glance installed they skip, or fail
in CI.
"""

import http.server
import json
import os
import socket
import stat
import threading

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
import pytest

from compute_driver import image
from compute_driver.image import cache as image_cache
from compute_driver.image import conf as image_conf
from compute_driver.image import exception as image_exception
from compute_driver.image import glance
from compute_driver.testing import fixtures
from compute_driver.testing import glance as glance_server

MIB = 1024 * 1024


def _start_glance():
    try:
        return glance_server.GlanceServer().start()
    except glance_server.GlanceUnavailable as exc:
        fixtures.skip_or_fail(str(exc))


@pytest.fixture(scope='module')
def server():
    running = _start_glance()
    yield running
    running.stop()


def _service(url, num_retries=0):
    conf = cfg.ConfigOpts()
    image_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('backend', 'glance', group='image_service')
    conf.set_override('api_servers', [url], group='glance')
    conf.set_override('num_retries', num_retries, group='glance')
    service = image.load(conf)
    assert isinstance(service, glance.GlanceImageService)
    return service


@pytest.fixture
def service(server):
    return _service(server.url)


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp('source') / 'disk.raw'
    # A few MiB plus a partial chunk; random so no two images dedupe.
    path.write_bytes(os.urandom(4 * MIB + 4321))
    return path


@pytest.fixture
def uploaded(service, source, request):
    record = service.upload('%s-%s' % (request.node.name[:40],
                                       os.urandom(3).hex()),
                            str(source), 'raw', 'bare',
                            {'hw_disk_bus': 'virtio'}, min_disk=1)
    yield record
    service.delete(record.id)


def _visible(directory):
    return sorted(os.listdir(directory))


def test_upload_show_list(service, uploaded, source):
    assert uploaded.status == 'active'
    assert uploaded.size == source.stat().st_size
    assert uploaded.os_hash_algo == 'sha512'
    assert uploaded.properties == {'hw_disk_bus': 'virtio'}
    assert (uploaded.disk_format, uploaded.container_format,
            uploaded.min_disk) == ('raw', 'bare', 1)
    assert service.show(uploaded.id) == uploaded
    assert service.show(uploaded.name) == uploaded
    assert uploaded in service.list()


def test_show_ids_lists_several_images_in_one_request(service, uploaded,
                                                      tmp_path):
    small = tmp_path / 'small'
    small.write_bytes(b'x')
    other = service.upload('show-ids-%s' % os.urandom(3).hex(), str(small),
                           'raw', 'bare')
    try:
        client = service._client(service._endpoints[0])
        gets = []
        real_get = client.images.get
        client.images.get = lambda image_id: gets.append(image_id) or \
            real_get(image_id)
        try:
            found = service.show_ids([other.id, uploaded.id])
            # Glance filtered its list on both ids: no request by id.
            assert gets == []
            unknown = '00000000-0000-4000-8000-000000000000'
            with pytest.raises(image_exception.ImageNotInService):
                service.show_ids([uploaded.id, unknown])
            assert gets == [unknown]
        finally:
            del client.images.get
        assert found == {other.id: service.show(other.id),
                         uploaded.id: uploaded}
    finally:
        service.delete(other.id)


def test_download_is_verified_and_private(service, uploaded, source,
                                          tmp_path):
    dest = tmp_path / 'disk'
    assert service.download(uploaded.id, str(dest)) == uploaded
    assert dest.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert _visible(tmp_path) == ['disk']


def test_corrupted_data_is_refused_and_leaves_nothing(server, service,
                                                      uploaded, tmp_path):
    stored = os.path.join(server.store_dir, uploaded.id)
    with open(stored, 'r+b') as f:
        f.seek(2 * MIB)
        byte = f.read(1)
        f.seek(2 * MIB)
        f.write(bytes([byte[0] ^ 0xff]))
    with pytest.raises(image_exception.ImageChecksumMismatch) as info:
        service.download(uploaded.id, str(tmp_path / 'disk'))
    assert info.value.algorithm == 'sha512'
    assert info.value.expected == uploaded.os_hash_value
    assert _visible(tmp_path) == []


def test_delete_is_idempotent(service, source, tmp_path):
    record = service.upload('to-delete', str(source), 'raw', 'bare')
    service.delete(record.id)
    service.delete(record.id)
    with pytest.raises(image_exception.ImageNotInService):
        service.show(record.id)
    with pytest.raises(image_exception.ImageNotInService):
        service.download(record.id, str(tmp_path / 'disk'))
    assert record.id not in {r.id for r in service.list()}
    assert _visible(tmp_path) == []


def test_unknown_name(service):
    with pytest.raises(image_exception.ImageNotInService):
        service.show('no-such-image-%s' % os.urandom(4).hex())


def test_failed_upload_leaves_no_image_in_glance(service):
    name = 'broken-%s' % os.urandom(4).hex()

    class Broken:
        def __init__(self):
            self.sent = 0

        def read(self, size=-1):
            if self.sent >= 2 * MIB:
                raise OSError(5, 'Input/output error')
            self.sent += MIB
            return b'x' * MIB

    with pytest.raises(image_exception.ImageUploadFailed):
        service.upload(name, Broken(), 'raw', 'bare')
    assert name not in {r.name for r in service.list()}


def test_concurrent_fetches_download_once(service, uploaded, source,
                                          tmp_path):
    downloads = []
    download = service.download

    def counting(image_id, dest):
        downloads.append(image_id)
        return download(image_id, dest)

    service.download = counting
    cache = image_cache.ImageCache(str(tmp_path / 'cache'), service)
    start = threading.Barrier(8)
    paths = []

    def boot():
        start.wait()
        paths.append(cache.fetch(uploaded.id))

    threads = [threading.Thread(target=boot) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert downloads == [uploaded.id]
    assert len(paths) == 8 and len(set(paths)) == 1
    with open(paths[0], 'rb') as f:
        assert f.read() == source.read_bytes()


class CuttingProxy:
    """A TCP proxy to Glance that cuts answers short at a known byte.

    It ends every connection once it has forwarded ``cut_after`` bytes of
    answers on it, calling ``on_cut`` first (to kill Glance, say).
    """

    def __init__(self, port, cut_after, on_cut=None):
        self.upstream = ('127.0.0.1', port)
        self.cut_after = cut_after
        self.on_cut = on_cut
        self.cuts = 0
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.url = 'http://127.0.0.1:%d' % self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, upstream),
                             daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client),
                             daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            return

    def _answers(self, upstream, client):
        sent = 0
        try:
            while data := upstream.recv(65536):
                data = data[:self.cut_after - sent]
                client.sendall(data)
                sent += len(data)
                if sent >= self.cut_after:
                    self.cuts += 1
                    if self.on_cut is not None:
                        self.on_cut()
                    break
        except OSError:
            pass
        for sock in (client, upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self.listener.close()


def test_connection_dropped_mid_stream(server, service, uploaded, tmp_path):
    proxy = CuttingProxy(server.port, cut_after=5 * MIB // 2)
    try:
        via_proxy = _service(proxy.url)
        with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
            via_proxy.download(uploaded.id, str(tmp_path / 'disk'))
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert 0 < info.value.received < uploaded.size
    assert info.value.expected == str(uploaded.size)
    assert _visible(tmp_path) == []
    # Glance itself is fine: the next download through it succeeds.
    service.download(uploaded.id, str(tmp_path / 'disk'))
    assert (tmp_path / 'disk').stat().st_size == uploaded.size


def test_glance_stopped_mid_stream(source, tmp_path):
    own = _start_glance()
    try:
        record = _service(own.url).upload('killed', str(source), 'raw',
                                          'bare')
        proxy = CuttingProxy(own.port, cut_after=3 * MIB, on_cut=own.kill)
        try:
            via_proxy = _service(proxy.url)
            with pytest.raises(
                    image_exception.ImageDownloadIncomplete) as info:
                via_proxy.download(record.id, str(tmp_path / 'disk'))
        finally:
            proxy.close()
        assert 0 < info.value.received < record.size
        assert own.process.poll() is not None
        assert _visible(tmp_path) == []
        # With Glance gone, the next call is one typed error too.
        with pytest.raises(image_exception.ImageServiceUnavailable):
            _service(own.url).download(record.id, str(tmp_path / 'disk'))
        assert _visible(tmp_path) == []
    finally:
        own.stop()


def test_unreachable_glance(tmp_path):
    with socket.socket() as sock:
        # A port nobody listens on: bound, never listening.
        sock.bind(('127.0.0.1', 0))
        url = 'http://127.0.0.1:%d' % sock.getsockname()[1]
        service = _service(url, num_retries=1)
        with pytest.raises(image_exception.ImageServiceUnavailable):
            service.list()
        with pytest.raises(image_exception.ImageServiceUnavailable):
            service.download('8ceb9b45-a580-49c2-a880-ccd5579ac8ab',
                             str(tmp_path / 'disk'))
    assert _visible(tmp_path) == []


class _RefusingKeystone(http.server.BaseHTTPRequestHandler):
    """An identity v3 endpoint that refuses every token request with 401.

    Like Keystone, it answers version discovery without credentials, so
    the client gets as far as asking for a token.
    """

    def _send(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        host, port = self.server.server_address[:2]
        self._send(200, {'version': {
            'id': 'v3.14', 'status': 'stable',
            'updated': '2020-04-07T00:00:00Z',
            'links': [{'rel': 'self',
                       'href': 'http://%s:%d/identity/v3/' % (host, port)}],
            'media-types': [{'base': 'application/json',
                             'type': 'application/vnd.openstack.identity-'
                                     'v3+json'}]}})

    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length') or 0))
        self._send(401, {'error': {
            'code': 401, 'title': 'Unauthorized',
            'message': 'The request you have made requires '
                       'authentication.'}})

    def log_message(self, *args):
        return None


def test_keystone_refusing_credentials(tmp_path):
    keystone = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                               _RefusingKeystone)
    threading.Thread(target=keystone.serve_forever, daemon=True).start()
    try:
        conf = cfg.ConfigOpts()
        image_conf.register_opts(conf)
        conf([], default_config_files=[])
        conf.set_override('backend', 'glance', group='image_service')
        conf.set_override('num_retries', 0, group='glance')
        conf.set_override('auth_type', 'password', group='glance')
        # What a configuration file's [glance] password options would
        # register when read.
        conf.register_opts(
            ks_loading.get_auth_plugin_conf_options('password'),
            group='glance')
        for name, value in (
                ('auth_url', 'http://127.0.0.1:%d/identity/v3'
                 % keystone.server_address[1]),
                ('username', 'compute-driver'), ('password', 'wrong'),
                ('project_name', 'service'),
                ('user_domain_name', 'Default'),
                ('project_domain_name', 'Default')):
            conf.set_override(name, value, group='glance')
        service = image.load(conf)
        with pytest.raises(image_exception.ImageServiceUnavailable) as info:
            service.download('8ceb9b45-a580-49c2-a880-ccd5579ac8ab',
                             str(tmp_path / 'disk'))
        assert 'authentication refused' in str(info.value)
    finally:
        keystone.shutdown()
        keystone.server_close()
    assert _visible(tmp_path) == []
