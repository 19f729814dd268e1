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

"""``[docker] tls_verify`` means verify: checked over real TLS.

A TLS terminator in the test process, with a certificate of a throw-away
CA, forwards to dockerd's unix socket, so the driver talks TLS to the real
daemon. nova-docker shipped this flag inverted; these tests would catch
that.
"""

import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from compute_driver import exception
from compute_driver import loader
from compute_driver.testing import fixtures
from tests.functional import docker_env


def _openssl(*args, cwd):
    subprocess.run(['openssl', *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def _make_ca(directory, name):
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
             '-subj', '/CN=%s' % name, '-keyout', name + '-key.pem',
             '-out', name + '.pem', cwd=directory)
    return directory / (name + '.pem')


@pytest.fixture
def certs(tmp_path):
    if shutil.which('openssl') is None:
        fixtures.skip_or_fail('openssl is needed to make test certificates')
    ca = _make_ca(tmp_path, 'ca')
    other_ca = _make_ca(tmp_path, 'other-ca')
    (tmp_path / 'san.cnf').write_text('subjectAltName=IP:127.0.0.1\n')
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=dockerd',
             '-keyout', 'server-key.pem', '-out', 'server.csr', cwd=tmp_path)
    _openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem',
             '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '1',
             '-extfile', 'san.cnf', '-out', 'server.pem', cwd=tmp_path)
    return {'ca': str(ca), 'other_ca': str(other_ca),
            'cert': str(tmp_path / 'server.pem'),
            'key': str(tmp_path / 'server-key.pem')}


class _TLSToUnix:
    """Accept TLS on 127.0.0.1 and relay the bytes to a unix socket."""

    def __init__(self, cert, key, target):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.target = target
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        self.handshake_failures = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_failures += 1
            conn.close()
            return
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(self.target)
        threading.Thread(target=self._pump, args=(upstream, tls),
                         daemon=True).start()
        self._pump(tls, upstream)

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self):
        self._closed = True
        self.listener.close()


@pytest.fixture
def proxy(certs):
    api = docker_env.raw_client()
    api.close()
    if not docker_env.API_URL.startswith('unix://'):
        fixtures.skip_or_fail('the TLS test relays to a local unix socket')
    server = _TLSToUnix(certs['cert'], certs['key'],
                        docker_env.API_URL[len('unix://'):])
    yield server
    server.close()


def _driver(proxy, **tls):
    conf = fixtures.make_conf('docker', docker_env.overrides(
        api_url='tcp://127.0.0.1:%d' % proxy.port, **tls))
    backend = loader.load_driver(conf)
    return conf, backend


def test_trusted_certificate_connects(proxy, certs):
    conf, backend = _driver(proxy, tls_ca_cert=certs['ca'])
    backend.init_host(conf.host)
    try:
        assert backend.list_instances() == []
        assert backend.get_available_resource(None).vcpus > 0
    finally:
        backend.cleanup_host(conf.host)
    assert proxy.handshake_failures == 0


@pytest.mark.parametrize('ca', ['other_ca', None],
                         ids=['other-ca', 'system-bundle'])
def test_untrusted_certificate_is_refused(proxy, certs, ca):
    tls = {'tls': True}
    if ca:
        tls['tls_ca_cert'] = certs[ca]
    conf, backend = _driver(proxy, **tls)
    with pytest.raises(exception.HypervisorUnavailable) as exc:
        backend.init_host(conf.host)
    assert 'CERTIFICATE_VERIFY_FAILED' in str(exc.value)


# Unverified TLS is the point here; urllib3 rightly warns about it.
@pytest.mark.filterwarnings(
    'ignore:Unverified HTTPS request'
    ':urllib3.exceptions.InsecureRequestWarning')
def test_verify_off_skips_the_check(proxy, certs):
    conf, backend = _driver(proxy, tls_ca_cert=certs['other_ca'],
                            tls_verify=False)
    backend.init_host(conf.host)
    try:
        assert backend.list_instances() == []
    finally:
        backend.cleanup_host(conf.host)
