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

"""The xenapi backend without XAPI: mapping, sessions, events, errors."""

import contextlib
import gzip
import http.client
import socket
import threading
import xml.dom.minidom
import xmlrpc.client

import pytest
import XenAPI

from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures
from compute_driver.xenapi import conf as xconf
from compute_driver.xenapi import connection
from compute_driver.xenapi import driver as xdriver
from compute_driver.xenapi import errors
from compute_driver.xenapi import events
from compute_driver.xenapi import images
from compute_driver.xenapi import mapping

FLAVOR = objects.Flavor('m1.test', vcpus=2, memory_mb=512, root_gb=5,
                        ephemeral_gb=2)


def _record(**fields):
    record = {'uuid': 'u-1', 'name_label': 'vm', 'is_a_template': False,
              'is_a_snapshot': False, 'is_control_domain': False,
              'power_state': 'Running', 'other_config': {}}
    record.update(fields)
    return record


@pytest.mark.parametrize('before,after,expected', [
    ('Halted', 'Running', virtevent.EVENT_LIFECYCLE_STARTED),
    ('Suspended', 'Running', virtevent.EVENT_LIFECYCLE_STARTED),
    ('Paused', 'Running', virtevent.EVENT_LIFECYCLE_RESUMED),
    ('Running', 'Halted', virtevent.EVENT_LIFECYCLE_STOPPED),
    ('Running', 'Crashed', virtevent.EVENT_LIFECYCLE_STOPPED),
    ('Running', 'Paused', virtevent.EVENT_LIFECYCLE_PAUSED),
    ('Running', 'Suspended', virtevent.EVENT_LIFECYCLE_SUSPENDED),
    ('Running', 'Running', None),
])
def test_transition(before, after, expected):
    assert mapping.transition(before, after) == expected


@pytest.mark.parametrize('xapi,state', [
    ('Halted', power_state.SHUTDOWN), ('Running', power_state.RUNNING),
    ('Paused', power_state.PAUSED), ('Suspended', power_state.SUSPENDED),
    ('Crashed', power_state.CRASHED), ('Unknown', power_state.NOSTATE)])
def test_state_of(xapi, state):
    assert mapping.state_of({'power_state': xapi}) == state


def test_instance_round_trips_through_other_config():
    instance = objects.Instance.new('vm', FLAVOR, 'img',
                                    {'q': 'a & <b> "c"'})
    record = _record(other_config=mapping.instance_tags(instance))
    assert mapping.instance_of(record) == instance


@pytest.mark.parametrize('field', ['is_a_template', 'is_a_snapshot',
                                   'is_control_domain'])
def test_templates_snapshots_and_dom0_are_not_instances(field):
    instance = objects.Instance.new('vm', FLAVOR, 'img')
    record = _record(other_config=mapping.instance_tags(instance),
                     **{field: True})
    assert mapping.instance_of(record) is None


def test_damaged_tags_are_ignored():
    record = _record(other_config={mapping.KEY_UUID: 'not-a-uuid',
                                   mapping.KEY_NAME: 'vm',
                                   mapping.KEY_FLAVOR: '{}',
                                   mapping.KEY_IMAGE: 'img'})
    assert mapping.instance_of(record) is None
    assert mapping.instance_of(_record()) is None


def test_image_names():
    assert mapping.image_name(_record(name_label='plain')) == 'plain'
    assert mapping.image_name(
        _record(name_label='Debian Bookworm 12')) == 'Debian_Bookworm_12'
    assert mapping.image_name(_record(name_label='')) == 'u-1'
    spaced = _record(name_label='A  b')
    assert mapping.matches_image(spaced, 'A_b')
    assert mapping.matches_image(spaced, 'A  b')
    assert mapping.matches_image(spaced, 'u-1')


def test_snapshot_image_names_its_instance():
    meta = mapping.image_meta(_record(
        is_a_snapshot=True, is_a_template=True,
        other_config={mapping.KEY_SNAPSHOT_OF: 'i-1'}))
    assert meta.properties['instance_uuid'] == 'i-1'
    assert meta.properties['image_type'] == 'snapshot'


def test_resize_disks():
    disks = ('<provision><disk device="0" size="10" sr="" bootable="true" '
             'type="system"/></provision>')
    result = xml.dom.minidom.parseString(mapping.resize_disks(
        disks, FLAVOR)).getElementsByTagName('disk')
    assert [(d.getAttribute('device'), d.getAttribute('size'),
             d.getAttribute('type')) for d in result] == [
        ('0', str(5 * 1024 ** 3), 'system'),
        ('1', str(2 * 1024 ** 3), 'ephemeral')]
    with pytest.raises(exception.InvalidInput):
        mapping.resize_disks('<provision', FLAVOR)


def test_resize_disks_fills_in_an_empty_sr_only():
    disks = ('<provision><disk device="0" size="10" sr="" bootable="true" '
             'type="system"/><disk device="1" size="10" sr="kept" '
             'bootable="false" type="user"/></provision>')
    result = xml.dom.minidom.parseString(mapping.resize_disks(
        disks, FLAVOR, 'sr-uuid')).getElementsByTagName('disk')
    # The stock template's empty SR, and the added ephemeral disk's, get
    # the SR; a disk that names one keeps it.
    assert [d.getAttribute('sr') for d in result] == [
        'sr-uuid', 'kept', 'sr-uuid']


@pytest.mark.parametrize('result,expected', [
    ('<value>OpaqueRef:1</value>', 'OpaqueRef:1'),
    ('', ''),
    ('OpaqueRef:2', 'OpaqueRef:2'),
])
def test_task_result(result, expected):
    assert connection.task_result(result) == expected


def test_legacy_spawn_owners(monkeypatch):
    monkeypatch.setattr(mapping.socket, 'gethostname', lambda: 'here')

    def kill(pid, signal):
        if pid == 200:
            raise ProcessLookupError(pid)
        if pid == 400:
            raise PermissionError(pid)

    monkeypatch.setattr(mapping.os, 'kill', kill)
    # Another machine's spawn may still run; a live process's too.
    assert mapping.legacy_owner_gone('there:200') is None
    assert mapping.legacy_owner_gone('here:junk') is None
    assert mapping.legacy_owner_gone('here:300') is False
    assert mapping.legacy_owner_gone('here:400') is False
    assert mapping.legacy_owner_gone('here:200') is True


def test_spawn_owner_reads_the_name_and_the_legacy_tag():
    uuid = '9d4c1c1e-0000-4000-8000-000000000001'
    owner = 'boot/1/2'
    assert mapping.spawn_owner(_record(
        name_label=mapping.spawn_name(owner, uuid))) == (owner, uuid)
    assert mapping.spawn_owner(_record(other_config={
        mapping.KEY_SPAWNING: 'here:1', mapping.KEY_UUID: uuid})) == (
        'here:1', uuid)
    assert mapping.spawn_owner(_record(
        name_label=mapping.spawn_name(owner, uuid),
        is_a_snapshot=True)) is None
    assert mapping.spawn_owner(_record()) is None


def test_sweep_spares_spawns_this_process_is_building(backend,
                                                      monkeypatch):
    uuid = '9d4c1c1e-0000-4000-8000-000000000001'
    me = xdriver.leftovers.owner_label()
    records = {'r1': _record(name_label=mapping.spawn_name(me, uuid))}
    monkeypatch.setattr(xdriver, '_BUILDING', {uuid})
    assert list(backend._leftover_candidates(records)) == []
    monkeypatch.setattr(xdriver, '_BUILDING', set())
    [found] = backend._leftover_candidates(records)
    assert found.reason == 'its spawn failed and could not remove it'


@pytest.mark.parametrize('content,reason', [
    (None, 'cannot be read'),
    (b'just text', 'holds no PEM certificate'),
    (b'-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n',
     'not a valid PEM certificate file'),
])
def test_check_ca_file(tmp_path, content, reason):
    path = tmp_path / 'ca.pem'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(exception.InvalidConfiguration) as info:
        connection.check_ca_file(str(path))
    message = str(info.value)
    assert message.startswith('Invalid configuration: [xenapi] ca_file %s '
                              % path)
    assert reason in message and '\n' not in message


@pytest.mark.parametrize('url,address,expected', [
    ('https://member/', '10.0.0.1', 'https://10.0.0.1/'),
    ('https://member:8443/', '10.0.0.1', 'https://10.0.0.1:8443/'),
    ('http://127.0.0.1:1/', '127.0.0.1:2', 'http://127.0.0.1:2/'),
    ('https://member/', 'fd00::1', 'https://[fd00::1]/'),
])
def test_master_url(url, address, expected):
    assert connection.master_url(url, address) == expected


def test_redact():
    assert connection.redact('https://u:p@host:1/x') == 'https://host:1/x'


def test_call_failure_has_code_and_params():
    exc = connection.XapiCallFailed(
        method='VM.start', details=['VM_IS_TEMPLATE', 'OpaqueRef:1'])
    assert (exc.code, exc.params) == ('VM_IS_TEMPLATE', ['OpaqueRef:1'])
    assert 'VM.start' in str(exc)


class _FakeSDKSession:
    """Stands in for XenAPI.Session: answers logins from a script."""

    logins: list = []
    answers: dict = {}

    def __init__(self, url, transport=None):
        self.url = url
        self.transport = transport
        self.xenapi = self

    def login_with_password(self, user, password, version, originator):
        self.logins.append((self.url, user, version, originator))
        answer = self.answers.get(self.url)
        if answer is not None:
            raise XenAPI.Failure(answer)

    def __call__(self, name):
        return lambda: None


@pytest.fixture
def fake_sdk(monkeypatch):
    _FakeSDKSession.logins = []
    _FakeSDKSession.answers = {}
    monkeypatch.setattr(connection.XenAPI, 'Session', _FakeSDKSession)
    return _FakeSDKSession


def test_login_follows_host_is_slave(fake_sdk):
    fake_sdk.answers['http://member/'] = ['HOST_IS_SLAVE', '10.0.0.9']
    pool = connection.SessionPool('http://member/', 'root', 'pw')
    pool.login()
    assert [url for url, *_ in fake_sdk.logins] == [
        'http://member/', 'http://10.0.0.9/']
    assert pool.url == 'http://10.0.0.9/'
    assert fake_sdk.logins[0][1:] == ('root', connection.API_VERSION,
                                      'compute-driver')


def test_login_gives_up_on_a_redirect_loop(fake_sdk):
    fake_sdk.answers['http://a/'] = ['HOST_IS_SLAVE', 'b']
    fake_sdk.answers['http://b/'] = ['HOST_IS_SLAVE', 'a']
    with pytest.raises(exception.HypervisorUnavailable):
        connection.SessionPool('http://a/', 'root', 'pw').login()


def test_wrong_password_never_shows_it(fake_sdk):
    fake_sdk.answers['http://x/'] = ['SESSION_AUTHENTICATION_FAILED',
                                     'root', 'Authentication failure']
    with pytest.raises(exception.HypervisorUnavailable) as info:
        connection.SessionPool('http://x/', 'root', 's3cr3t').login()
    assert 's3cr3t' not in str(info.value)
    assert 'wrong user name or password' in str(info.value)


def test_pool_is_bounded(fake_sdk):
    pool = connection.SessionPool('http://x/', 'root', 'pw', size=1,
                                  wait_timeout=1)
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with pool.session():
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(30)
    try:
        with pytest.raises(exception.BackendError):
            with pool.session():
                pass
    finally:
        release.set()
        holder.join(30)
    with pool.session() as session:
        assert isinstance(session, _FakeSDKSession)
    # The session was reused, not logged in again.
    assert len(fake_sdk.logins) == 1


def test_pools_sharing_sessions_keep_their_own_bounds(fake_sdk):
    short = connection.SessionPool('http://x/', 'root', 'pw', size=1,
                                   wait_timeout=1)
    long = connection.SessionPool('http://x/', 'root', 'pw', size=1,
                                  wait_timeout=1, idle_of=short)
    with long.session() as first:
        pass
    # The session a long call let go of is the next short call's.
    with short.session() as second:
        assert second is first
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with long.session():
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(30)
    try:
        # A long call holding the long pool's one slot leaves the short
        # pool's free; a second long call waits for it.
        with short.session() as other:
            assert other is not first
        with pytest.raises(exception.BackendError):
            with long.session():
                pass
    finally:
        release.set()
        holder.join(30)
    assert len(fake_sdk.logins) == 2


def test_https_transport_verifies_by_default(fake_sdk):
    pool = connection.SessionPool('https://x/', 'root', 'pw')
    transport = pool._transport(5)
    context = transport.context
    assert context.check_hostname is True
    assert context.verify_mode.name == 'CERT_REQUIRED'
    unverified = connection.SessionPool('https://x/', 'root', 'pw',
                                        verify=False)._transport(5)
    assert unverified.context.verify_mode.name == 'CERT_NONE'


class _Response:
    """What an HTTP response gives a transport's parse_response."""

    def __init__(self, body, gzipped=False):
        self.encoding = 'gzip' if gzipped else ''
        self._body = gzip.compress(body) if gzipped else body

    def getheader(self, name, default=None):
        return self.encoding if name == 'Content-Encoding' else default

    def read(self, amount=-1):
        if amount is None or amount < 0:
            amount = len(self._body)
        data, self._body = self._body[:amount], self._body[amount:]
        return data


def _stdlib_parse(body):
    transport = xmlrpc.client.Transport()
    # Set by request(), which these tests do not go through.
    transport.verbose = False
    return transport.parse_response(_Response(body))


_EVERY_TYPE = {
    'Status': 'Success',
    'Value': {'s': 'a <b> & "c" \u00e9', 'empty': '', 'i': -7,
              'big': 2 ** 40, 't': True, 'f': False, 'd': 1.5,
              'none': None, 'list': ['x', [], {}, {'k': ['1', 2]}],
              'when': xmlrpc.client.DateTime('20261203T10:00:00Z'),
              'struct': {'other_config': {'a': 'b'}, '': 'no name'}}}


@pytest.mark.parametrize('gzipped', [False, True])
def test_responses_read_as_xmlrpc_client_reads_them(gzipped):
    sent = dict(_EVERY_TYPE, Value=dict(_EVERY_TYPE['Value'], big=4))
    body = xmlrpc.client.dumps((sent,), methodresponse=True,
                               allow_none=True).encode()
    # XAPI's 64-bit integers, which xmlrpc.client reads but never writes.
    body = body.replace(b'<int>4</int>', b'<i8>1099511627776</i8>')
    body = body.replace(b'<value><string></string></value>',
                        b'<value><string/></value>')
    # A value without a type is a string.
    body = body.replace(b'<value><string>Success</string></value>',
                        b'<value>Success</value>')
    parsed = connection._Transport().parse_response(
        _Response(body, gzipped))
    assert parsed == _stdlib_parse(body) == (_EVERY_TYPE,)
    when = parsed[0]['Value']['when']
    assert isinstance(when, xmlrpc.client.DateTime)


@pytest.mark.parametrize('body', [
    # Left to xmlrpc.client: a type XAPI does not send, a namespace.
    xmlrpc.client.dumps((xmlrpc.client.Binary(b'\0\1'),),
                        methodresponse=True).encode(),
    b'<?xml version="1.0"?><methodResponse xmlns:ex="x"><params><param>'
    b'<value><ex:nil/></value></param></params></methodResponse>',
])
def test_unusual_responses_are_left_to_xmlrpc_client(body):
    assert (connection._Transport().parse_response(_Response(body)) ==
            _stdlib_parse(body))


def test_faults_and_bad_responses_raise_as_in_xmlrpc_client():
    fault = xmlrpc.client.dumps(xmlrpc.client.Fault(5, 'no'),
                                methodresponse=True).encode()
    with pytest.raises(xmlrpc.client.Fault) as caught:
        connection._Transport().parse_response(_Response(fault))
    assert (caught.value.faultCode, caught.value.faultString) == (5, 'no')
    for bad in (b'<methodResponse><params>', b'not xml',
                b'<methodResponse><params><param><value><int>x</int>'
                b'</value></param></params></methodResponse>'):
        with pytest.raises(Exception) as ours:
            connection._Transport().parse_response(_Response(bad))
        with pytest.raises(Exception) as theirs:
            _stdlib_parse(bad)
        assert type(ours.value) is type(theirs.value)


class _ScriptedHTTP:
    """A server answering each XML-RPC request with the next reply.

    A reply is the bytes to send, ``None`` to close the connection
    unanswered, or ``(bytes,)`` to send them and close it.
    :attr:`requests` has each request's head and body; :attr:`connections`
    counts the connections accepted.
    """

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests = []
        self.connections = 0
        self._server = socket.create_server(('127.0.0.1', 0))
        self.url = 'http://127.0.0.1:%d/' % self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while self.replies:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            self._conn = conn
            with conn, conn.makefile('rb') as reader:
                while self.replies:
                    head = b''
                    while not head.endswith(b'\r\n\r\n'):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = int(head.lower().split(
                        b'content-length: ')[1].split(b'\r\n')[0])
                    self.requests.append((head, reader.read(length)))
                    reply = self.replies.pop(0)
                    if reply is None:
                        break
                    conn.sendall(reply[0] if isinstance(reply, tuple)
                                 else reply)
                    if isinstance(reply, tuple):
                        break

    _conn = None

    def close(self):
        # Shut, rather than closed, wakes a thread blocked on a socket.
        for sock in (self._server, self._conn):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._server.close()


def _reply(value, status='200 OK', headers=(), chunked=False,
           gzipped=False):
    body = xmlrpc.client.dumps((value,), methodresponse=True).encode()
    if gzipped:
        body = gzip.compress(body)
        headers += ('Content-Encoding: gzip',)
    if chunked:
        body = b''.join(b'%x;ext=1\r\n%s\r\n' % (len(part), part)
                        for part in (body[:10], body[10:])) + b'0\r\n\r\n'
        headers += ('Transfer-Encoding: chunked',)
    else:
        headers += ('Content-Length: %d' % len(body),)
    return ('HTTP/1.1 %s\r\n%s\r\n\r\n' % (status, '\r\n'.join(headers))
            ).encode() + body


@pytest.fixture
def scripted():
    servers = []

    def start(*replies):
        servers.append(_ScriptedHTTP(replies))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _proxy(url, transport=None):
    transport = transport or connection._Transport()
    # What goes wrong must not wait for the default timeout.
    transport.timeout = 10
    return xmlrpc.client.ServerProxy(url, transport)


def test_transport_sends_each_call_in_one_piece_and_keeps_the_connection(
        scripted):
    server = scripted(_reply('a'), _reply('b', chunked=True),
                      _reply('c', gzipped=True))
    transport = connection._Transport()
    proxy = _proxy(server.url, transport)
    transport.call_headers = [('X-Http-Other-Config-tag', 'T1')]
    assert proxy.first(1) == 'a'
    transport.call_headers = ()
    assert proxy.second() == 'b'
    assert proxy.third() == 'c'
    assert server.connections == 1
    head, body = server.requests[0]
    assert head.startswith(b'POST / HTTP/1.1\r\n')
    assert b'\r\nX-Http-Other-Config-tag: T1\r\n' in head
    assert b'\r\nContent-Length: %d\r\n' % len(body) in head
    # XAPI does not compress its answers; a simulator need not either.
    assert b'gzip' not in head
    assert xmlrpc.client.loads(body) == ((1,), 'first')
    assert b'X-Http-Other-Config' not in server.requests[1][0]


def test_transport_refuses_a_line_break_in_a_header(scripted):
    server = scripted(_reply('a'))
    transport = connection._Transport()
    transport.call_headers = [('X-Http-Other-Config-tag', 'T\r\nX-Evil: 1')]
    with pytest.raises(ValueError):
        _proxy(server.url, transport).call()
    assert not server.requests


def test_transport_reconnects_when_the_server_ends_the_connection(scripted):
    server = scripted(_reply('a', headers=('Connection: close',)),
                      _reply('b'), _reply('c'))
    proxy = _proxy(server.url)
    assert proxy.one() == 'a'
    assert proxy.two() == 'b'
    assert server.connections == 2
    # A kept connection the server closed meanwhile: retried once, on a
    # new one, as xmlrpc.client does.
    server.replies.insert(0, None)
    server.replies.insert(1, _reply('c2'))
    assert proxy.three() == 'c2'
    assert server.connections == 3


def test_transport_error_status_raises_protocol_error(scripted):
    server = scripted(_reply('x', status='503 Busy',
                             headers=('Retry-After: 1',)), _reply('y'))
    proxy = _proxy(server.url)
    with pytest.raises(xmlrpc.client.ProtocolError) as caught:
        proxy.busy()
    assert (caught.value.errcode, caught.value.errmsg) == (503, 'Busy')
    assert caught.value.headers['retry-after'] == '1'
    # The answer was read whole: the connection serves the next call.
    assert proxy.again() == 'y'
    assert server.connections == 1


def test_transport_server_gone_raises_a_connection_error(scripted):
    server = scripted(None, None)
    with pytest.raises(http.client.RemoteDisconnected):
        _proxy(server.url).call()
    # Tried again once, on a new connection.
    assert server.connections == 2


def test_transport_truncated_answer_is_incomplete(scripted):
    server = scripted((_reply('abc')[:-5],))
    with pytest.raises(http.client.IncompleteRead):
        _proxy(server.url).call()


class _SideCalls:
    """A connection whose calls wait for a go, or fail, by method."""

    side_by_side = True

    def __init__(self, pool_size=4):
        self.pool = type('Pool', (), {'size': pool_size})()
        self.started = threading.Semaphore(0)
        self.go = threading.Event()
        self.ended = []
        self._xapi = connection.Connection(self.pool, 1)

    @property
    def executor(self):
        return self._xapi.executor

    def call(self, method, *args):
        self.started.release()
        try:
            assert self.go.wait(30)
            if method.startswith('fail'):
                raise connection.XapiCallFailed(method=method,
                                                details=['INTERNAL_ERROR'])
        finally:
            self.ended.append(method)


def test_side_calls_run_together_and_all_end_before_a_failure():
    xapi = _SideCalls()
    try:
        alongside = connection.Alongside(xapi)
        for method in ('VM.set_other_config', 'fail.first', 'fail.second',
                       'VM.set_memory_limits'):
            alongside.call(method, 'OpaqueRef:vm')
        # All four are in flight at once: none waits for another.
        for _ in range(4):
            assert xapi.started.acquire(timeout=30)
        xapi.go.set()
        with pytest.raises(connection.XapiCallFailed) as info:
            alongside.wait()
        assert info.value.method == 'fail.first'
        assert sorted(xapi.ended) == ['VM.set_memory_limits',
                                      'VM.set_other_config', 'fail.first',
                                      'fail.second']
    finally:
        xapi.go.set()
        xapi._xapi.close()


def test_a_failing_block_waits_for_its_side_calls_and_keeps_its_error():
    xapi = _SideCalls(pool_size=1)
    try:
        with pytest.raises(KeyError):
            with connection.Alongside(xapi) as alongside:
                alongside.call('fail.side')
                alongside.call('VM.set_name_label', 'OpaqueRef:vm', 'x')
                assert xapi.started.acquire(timeout=30)
                xapi.go.set()
                raise KeyError('the block failed')
        # Both ended before the block's error came out.
        assert sorted(xapi.ended) == ['VM.set_name_label', 'fail.side']
    finally:
        xapi.go.set()
        xapi._xapi.close()


def test_side_calls_run_on_the_caller_thread_when_xapi_answers_quickly():
    pool = type('Pool', (), {'size': 4, 'round_trip': 0.0002})()
    xapi = connection.Connection(pool, 1)
    made = []

    def call(method, *args):
        made.append((method, threading.current_thread()))
        if method.startswith('fail'):
            raise connection.XapiCallFailed(method=method,
                                            details=['INTERNAL_ERROR'])

    xapi.call = call
    assert not xapi.side_by_side
    alongside = connection.Alongside(xapi)
    for method in ('fail.first', 'VM.set_other_config', 'fail.second'):
        alongside.call(method, 'OpaqueRef:vm')
    # Every call made, on this thread, and no thread started for them;
    # the first failure comes out of wait(), as for calls side by side.
    assert made == [(m, threading.current_thread()) for m in (
        'fail.first', 'VM.set_other_config', 'fail.second')]
    with pytest.raises(connection.XapiCallFailed) as info:
        alongside.wait()
    assert info.value.method == 'fail.first'
    assert xapi._executor is None


@pytest.mark.parametrize('round_trip, side_by_side', [
    (None, True), (0.0002, False),
    (connection.SIDE_BY_SIDE_ROUND_TRIP, True), (0.02, True)])
def test_side_by_side_only_when_xapi_answers_slowly(
        round_trip, side_by_side):
    pool = type('Pool', (), {'size': 4, 'round_trip': round_trip})()
    assert connection.Connection(pool, 1).side_by_side is side_by_side


def test_round_trip_is_the_quickest_of_the_latest_calls(fake_sdk):
    pool = connection.SessionPool('http://xapi.example', 'root', 'pw')
    assert pool.round_trip is None
    pool._answered(0.004)
    assert pool.round_trip == 0.004
    pool._answered(0.0005)
    # One slow answer (a login, calls side by side, a busy XAPI) does
    # not hide that XAPI answers quickly.
    pool._answered(0.2)
    assert pool.round_trip == 0.0005
    # Once every one of the latest is slow, XAPI is.
    for _ in range(connection.ROUND_TRIPS):
        pool._answered(0.003)
    assert pool.round_trip == 0.003


def test_calls_answered_count_in_the_round_trip(fake_sdk, monkeypatch):
    pool = connection.SessionPool('http://xapi.example', 'root', 'pw')

    def answer(method, args, headers=()):
        if method == 'VM.get_record':
            raise connection.XapiCallFailed(method=method,
                                            details=['HANDLE_INVALID'])
        if method == 'VM.start':
            raise exception.HypervisorUnavailable(host='x', reason='gone')
        return []

    monkeypatch.setattr(pool, '_call', answer)
    assert pool.call('VM.get_all') == []
    assert len(pool._round_trips) == 1
    with pytest.raises(connection.XapiCallFailed):
        pool.call('VM.get_record', 'OpaqueRef:gone')
    # A failure XAPI answered is a round trip too; no answer is none.
    assert len(pool._round_trips) == 2
    with pytest.raises(exception.HypervisorUnavailable):
        pool.call('VM.start', 'OpaqueRef:vm')
    assert len(pool._round_trips) == 2


class _EventSession:
    """Answers the watcher's event_from with a fixed list of records."""

    def __init__(self, records):
        self.xenapi = self
        self.records = records

    def event_from(self, classes, token, timeout):
        return {'token': '7', 'events': [
            {'ref': ref, 'operation': 'add', 'snapshot': record}
            for ref, record in self.records.items()]}


def _vm(instance, state, **fields):
    return _record(power_state=state,
                   other_config=mapping.instance_tags(instance), **fields)


def test_watcher_turns_changes_into_lifecycle_events():
    emitted = []
    watcher = events.EventWatcher(None, lambda *e: emitted.append(e), 1)
    one = objects.Instance.new('one', FLAVOR, 'img')
    two = objects.Instance.new('two', FLAVOR, 'img')
    # What exists when the watcher starts is learnt, not announced.
    watcher._sync(_EventSession({'r1': _vm(one, 'Running')}), emit=False)
    assert emitted == []
    for ref, record in (('r1', _vm(one, 'Paused')),
                        ('r2', _vm(two, 'Running')),
                        ('r3', _vm(two, 'Running', is_a_template=True))):
        watcher._handle({'ref': ref, 'operation': 'mod',
                         'snapshot': record})
    watcher._handle({'ref': 'r2', 'operation': 'del'})
    assert emitted == [(one.uuid, virtevent.EVENT_LIFECYCLE_PAUSED),
                       (two.uuid, virtevent.EVENT_LIFECYCLE_STARTED),
                       (two.uuid, virtevent.EVENT_LIFECYCLE_STOPPED)]


def test_watcher_sees_a_restart_between_two_polls():
    # A stop and a start between two event.from calls leave the power
    # state as it was; the new domain id tells the restart apart.
    emitted = []
    watcher = events.EventWatcher(None, lambda *e: emitted.append(e), 1)
    one = objects.Instance.new('one', FLAVOR, 'img')
    for domid in ('7', '7', '12'):
        watcher._handle({'ref': 'r1', 'operation': 'mod',
                         'snapshot': _vm(one, 'Running', domid=domid)})
    assert emitted == [(one.uuid, virtevent.EVENT_LIFECYCLE_STARTED),
                       (one.uuid, virtevent.EVENT_LIFECYCLE_STOPPED),
                       (one.uuid, virtevent.EVENT_LIFECYCLE_STARTED)]


def test_watcher_is_behind_a_change_until_it_may_know_of_it():
    watcher = events.EventWatcher(None, lambda *e: None, 1)
    one = objects.Instance.new('one', FLAVOR, 'img')
    watcher._sync(_EventSession({'r1': _vm(one, 'Halted')}), emit=False)
    watcher.synced.set()
    # A change to r1 made now, while a poll is in flight.
    in_flight = watcher._issue()
    mark = watcher.mark()
    assert watcher.behind(mark, 'r1')
    # That poll's answer tells of another VM only: r1 is as it was left.
    watcher._handle({'ref': 'r2', 'operation': 'del'})
    watcher._read = in_flight
    assert watcher.behind(mark, 'r1')
    # An event of r1 may be newer than the change.
    mark = watcher.mark()
    watcher._handle({'ref': 'r1', 'operation': 'mod',
                     'snapshot': _vm(one, 'Running')})
    assert not watcher.behind(mark, 'r1')
    # So is all a poll issued after the change tells, even of nothing.
    mark = watcher.mark()
    watcher._read = watcher._issue()
    assert not watcher.behind(mark, 'r3')
    # Out of sync, the watcher knows nothing for sure.
    mark = watcher.mark()
    watcher.synced.clear()
    assert not watcher.behind(mark, 'r3')


def test_watcher_resync_reports_what_it_missed():
    emitted = []
    watcher = events.EventWatcher(None, lambda *e: emitted.append(e), 1)
    one = objects.Instance.new('one', FLAVOR, 'img')
    two = objects.Instance.new('two', FLAVOR, 'img')
    watcher._sync(_EventSession({'r1': _vm(one, 'Running'),
                                 'r2': _vm(two, 'Running')}), emit=False)
    # After EVENTS_LOST or a reconnection: r1 stopped, r2 vanished.
    assert watcher._sync(_EventSession({'r1': _vm(one, 'Halted')}),
                         emit=True) == '7'
    assert sorted(emitted) == sorted([
        (one.uuid, virtevent.EVENT_LIFECYCLE_STOPPED),
        (two.uuid, virtevent.EVENT_LIFECYCLE_STOPPED)])


def test_watcher_knows_instances_and_templates():
    watcher = events.EventWatcher(None, lambda *e: None, 1)
    one = objects.Instance.new('one', FLAVOR, 'img')
    template = _record(is_a_template=True, name_label='Debian 12')
    watcher._sync(_EventSession({'r1': _vm(one, 'Running'),
                                 't1': template}), emit=False)
    # Until it is in sync, nothing it knows is offered.
    assert watcher.instances() is None and watcher.templates() is None
    watcher.synced.set()
    assert watcher.instances() == {'r1': (one, 'Running')}
    assert watcher.templates() == {'t1': template}
    watcher._handle({'ref': 't1', 'operation': 'del'})
    watcher._handle({'ref': 'r1', 'operation': 'mod',
                     'snapshot': _vm(one, 'Halted')})
    assert watcher.templates() == {}
    assert watcher.instances() == {'r1': (one, 'Halted')}


def test_watcher_images_version_changes_with_images_only():
    watcher = events.EventWatcher(None, lambda *e: None, 1)
    image = _record(is_a_template=True, name_label='Debian 12',
                    current_operations={},
                    allowed_operations=['clone', 'export'])
    watcher._sync(_EventSession({'t1': image}), emit=False)
    assert watcher.images_version() is None
    watcher.synced.set()
    versions = [watcher.images_version()]

    def changed():
        versions.append(watcher.images_version())
        return versions[-1] != versions[-2]

    # A template a spawn is building is no image.
    one = objects.Instance.new('one', FLAVOR, 'img')
    building = _record(is_a_template=True,
                       name_label=mapping.spawn_name('me/1', one.uuid))
    watcher._handle({'ref': 'b1', 'operation': 'add',
                     'snapshot': building})
    assert not changed()
    watcher._handle({'ref': 'b1', 'operation': 'mod',
                     'snapshot': _vm(one, 'Halted')})
    assert not changed()
    watcher._handle({'ref': 'b1', 'operation': 'del'})
    assert not changed()
    # Reported again as a spawn clones it, the same but for what XAPI
    # is doing with it.
    watcher._handle({'ref': 't1', 'operation': 'mod', 'snapshot': dict(
        image, current_operations={'OpaqueRef:task': 'clone'},
        allowed_operations=['export'])})
    assert not changed()
    watcher._handle({'ref': 't1', 'operation': 'mod',
                     'snapshot': dict(image, name_label='Debian')})
    assert changed()
    watcher._handle({'ref': 't1', 'operation': 'mod', 'snapshot': dict(
        image, name_label='Debian', other_config={'disks': '<provision/>'})})
    assert changed()
    watcher._handle({'ref': 't2', 'operation': 'add', 'snapshot': _record(
        is_a_template=True, is_a_snapshot=True, name_label='snap')})
    assert changed()
    watcher._handle({'ref': 't1', 'operation': 'del'})
    assert changed()


class _Templates:
    """A connection that lists templates and counts the listings."""

    def __init__(self, records):
        self.records = records
        self.calls = 0

    def call(self, method, *args):
        assert method == 'VM.get_all_records_where'
        self.calls += 1
        return dict(self.records)


def test_image_store_reuses_what_it_found_until_an_image_changes():
    debian = _record(uuid='t-1', is_a_template=True, name_label='Debian')
    watcher = events.EventWatcher(None, lambda *e: None, 1)
    watcher._sync(_EventSession({'t1': debian}), emit=False)
    watcher.synced.set()
    store = images.ImageStore(_Templates({}), 'Debian')
    store.watcher = watcher
    first = store.get('Debian')
    assert first.ref == 't1' and first.record is debian
    assert store.get('Debian') is first
    # Another template of that name: the name is ambiguous now.
    watcher._handle({'ref': 't2', 'operation': 'add', 'snapshot': dict(
        debian, uuid='t-2')})
    with pytest.raises(exception.InvalidInput):
        store.get('Debian')
    watcher._handle({'ref': 't1', 'operation': 'del'})
    assert store.get('Debian').ref == 't2'
    # Not in sync: nothing found before is trusted, XAPI is asked.
    watcher.synced.clear()
    xapi = store._xapi = _Templates({'t3': dict(debian, uuid='t-3')})
    assert store.get('Debian').ref == 't3'
    assert xapi.calls == 1
    # A new watcher: what the old one found is not reused.
    fresh = events.EventWatcher(None, lambda *e: None, 1)
    fresh._sync(_EventSession({'t4': dict(debian, uuid='t-4')}),
                emit=False)
    fresh.synced.set()
    store.watcher = fresh
    assert store.get('Debian').ref == 't4'


def test_image_store_keeps_nothing_xapi_had_to_be_asked_for():
    watcher = events.EventWatcher(None, lambda *e: None, 1)
    watcher._sync(_EventSession({}), emit=False)
    watcher.synced.set()
    xapi = _Templates({'t1': _record(is_a_template=True,
                                     name_label='Debian')})
    store = images.ImageStore(xapi, 'Debian')
    store.watcher = watcher
    assert store.get('Debian').ref == 't1'
    assert store.get('Debian').ref == 't1'
    # The watcher has not told of it yet: asked each time.
    assert xapi.calls == 2


def test_watcher_hands_a_finished_task_to_its_waiter():
    watcher = events.EventWatcher(None, lambda *e: None, 1)
    watcher.synced.set()
    pending = {'status': 'pending'}
    done = {'status': 'success', 'result': '<value>x</value>'}
    watcher._handle({'class': 'task', 'ref': 'k1', 'operation': 'add',
                     'snapshot': pending})
    assert watcher.wait_task('k1', 0) is None
    waiter = threading.Thread(target=lambda: got.append(
        watcher.wait_task('k1', 30)))
    got = []
    waiter.start()
    watcher._handle({'class': 'task', 'ref': 'k1', 'operation': 'mod',
                     'snapshot': done})
    waiter.join(30)
    assert got == [done]
    # A task that finished before anyone waited is remembered.
    watcher._handle({'class': 'task', 'ref': 'k2', 'operation': 'mod',
                     'snapshot': done})
    assert watcher.wait_task('k2', 0) == done
    # A watcher that stops wakes its waiters: they ask XAPI instead.
    watcher.synced.clear()
    assert watcher.wait_task('k3', 30) is None


@pytest.fixture
def backend():
    # Building the backend connects to nothing; init_host does.
    return xdriver.XenAPIDriver(fixtures.make_conf('xenapi'))


def _failed(*details):
    return connection.XapiCallFailed(method='VM.x', details=list(details))


def test_failures_become_library_errors(backend):
    instance = objects.Instance.new('vm', FLAVOR, 'img')
    cases = [
        (_failed('HANDLE_INVALID', 'VM', 'OpaqueRef:1'),
         exception.InstanceNotFound),
        (_failed('VM_BAD_POWER_STATE', 'OpaqueRef:1', 'halted', 'running'),
         exception.InvalidPowerState),
        (_failed('HOST_NOT_ENOUGH_FREE_MEMORY', '10', '5'),
         exception.InsufficientResources),
        (_failed('SR_FULL', '10', '5'), exception.InsufficientResources),
        (_failed('INTERNAL_ERROR', 'boom'), exception.BackendError),
    ]
    context = backend._host_context
    for failure, expected in cases:
        assert type(errors.failure(failure, 'pause', instance,
                                   context)) is expected
    power = errors.failure(cases[1][0], 'pause', instance, context)
    assert (power.current, power.expected) == ('running', 'halted')


def test_console_output_is_declared_unsupported(backend):
    assert backend.supports('console_output') is False
    assert backend.supports('live_resize') is True
    with pytest.raises(exception.NotSupported):
        backend.get_console_output(objects.Instance.new('vm', FLAVOR, 'i'))


def test_password_is_secret():
    [password] = [o for o in xconf.opts if o.name == 'password']
    assert password.secret is True
    [verify] = [o for o in xconf.opts if o.name == 'verify_certificate']
    assert verify.default is True


def test_spawns_count_until_the_watcher_knows_the_vm(backend, monkeypatch):
    backend._facts = {
        'host': {'hostname': 'h', 'name_label': 'h', 'host_CPUs': [1],
                 'software_version': {}, 'cpu_info': {}},
        'memory_total': 4096 * mapping.MiB,
        'sr': {'physical_size': str(100 * mapping.GiB)}}
    one = objects.Instance.new('one', FLAVOR, 'img')
    two = objects.Instance.new('two', FLAVOR, 'img')
    three = objects.Instance.new('three', FLAVOR, 'img')
    clock = [1000.0]
    monkeypatch.setattr(xdriver.time, 'monotonic', lambda: clock[0])
    watcher = events.EventWatcher(None, lambda *e: None, 1)
    watcher.synced.set()
    backend._watcher = watcher
    backend._created = {one.uuid: (one, 1000.0), two.uuid: (two, 1000.0)}
    used = backend._resources([]).memory_mb_used
    assert used == 2 * FLAVOR.memory_mb
    # A spawn holding its claim counts too, once.
    assert backend._resources([three, one]).memory_mb_used == (
        3 * FLAVOR.memory_mb)
    # The watcher sees one's VM: it counts once, and is forgotten here.
    watcher._handle({'ref': 'r1', 'operation': 'add',
                     'snapshot': _vm(one, 'Running')})
    resources = backend._resources([])
    assert (resources.memory_mb_used, resources.running_vms) == (used, 1)
    assert list(backend._created) == [two.uuid]
    # A spawn whose VM never shows up stops counting after a while.
    clock[0] += xdriver.CLAIM_GRACE + 1
    assert backend._resources([]).memory_mb_used == FLAVOR.memory_mb
    # Uniqueness sees what the watcher knows.
    with pytest.raises(exception.InstanceExists):
        backend._check_unique(objects.Instance.new('one', FLAVOR, 'img'))
    backend._check_unique(two)


def test_claims_count_vcpus_with_the_allocation_ratio(backend):
    backend._facts = {
        'host': {'hostname': 'h', 'name_label': 'h', 'host_CPUs': [1],
                 'software_version': {}, 'cpu_info': {}},
        'memory_total': 64 * 1024 * mapping.MiB,
        'sr': {'physical_size': str(1000 * mapping.GiB)}}
    watcher = events.EventWatcher(None, lambda *e: None, 1)
    watcher.synced.set()
    backend._watcher = watcher
    one_cpu = objects.Flavor('m1.one', vcpus=1, memory_mb=64, root_gb=1)
    # A one-CPU host takes four 1-vCPU instances, as Nova's placement
    # does with its default cpu_allocation_ratio of 4.0; not a fifth.
    for number in range(4):
        instance = objects.Instance.new('vm%d' % number, one_cpu, 'img')
        watcher._handle({'ref': 'r%d' % number, 'operation': 'add',
                         'snapshot': _vm(instance, 'Running')})
    with pytest.raises(exception.InsufficientResources) as info:
        with backend._claim(objects.Instance.new('vm4', one_cpu, 'img')):
            pass
    assert info.value.resource == 'vcpus'
