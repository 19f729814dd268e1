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

"""Connecting to XAPI through the XenAPI SDK, and the raw call wrappers.

:class:`SessionPool` keeps a bounded set of logged-in SDK sessions so that
concurrent calls each use their own HTTP connection (an SDK ``Session`` is
an ``xmlrpc.client.ServerProxy``, which is not thread-safe). It follows a
pool member's ``HOST_IS_SLAVE`` answer to the master it names, logs in
again when XAPI forgets a session (``SESSION_INVALID``: xapi restarted, the
session expired), verifies TLS certificates unless told not to, and never
logs the password. :class:`Connection` makes calls through it, runs long
operations as XAPI tasks and removes VMs with their own disks.
"""

import collections.abc
import concurrent.futures
import contextlib
import gzip
import http.client
import itertools
import logging
import queue
import socket
import ssl
import threading
import time
import typing
import urllib.parse
import uuid
import xml.dom.minidom
from xml.etree import ElementTree
import xmlrpc.client

import XenAPI

from compute_driver import exception

LOG = logging.getLogger(__name__)

#: The API version sent at login. XAPI answers every version it knows
#: with the same protocol; this is what the SDK itself names.
API_VERSION = XenAPI.API_VERSION_1_2

# Failures that mean the connection, not the call, went wrong.
_CONNECTION_ERRORS = (OSError, http.client.HTTPException,
                      xmlrpc.client.ProtocolError)


class XapiCallFailed(exception.ComputeDriverError):
    """XAPI answered a call with a failure.

    :param method: the call, e.g. ``VM.start``.
    :param details: XAPI's ``ErrorDescription``: code then parameters.
    """

    msg_fmt = 'XAPI call %(method)s failed: %(details)s'

    method: str
    details: list[str]

    @property
    def code(self) -> str:
        return self.details[0] if self.details else ''

    @property
    def params(self) -> list[str]:
        return list(self.details[1:])


class CallTimedOut(exception.HypervisorUnavailable):
    """XAPI did not answer a call within the call timeout."""


class _MasterMoved(Exception):
    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


#: The ``other_config`` key of the VBD of an attached volume: its VDI is
#: never one of the VM's own disks.
VOLUME_VBD_KEY = 'compute_driver_volume'


def close_session(session: typing.Any) -> None:
    """Close an SDK session's connection without logging it out."""
    with contextlib.suppress(Exception):
        # ServerProxy's documented way to reach its transport's close().
        session('close')()


class _Unusual(Exception):
    """A response :func:`_loads` leaves to xmlrpc.client's parser."""


def _string(node: ElementTree.Element) -> str:
    return node.text or ''


def _int(node: ElementTree.Element) -> int:
    return int(node.text or '')


def _boolean(node: ElementTree.Element) -> bool:
    if node.text == '0':
        return False
    if node.text == '1':
        return True
    raise _Unusual(node.text)


def _datetime(node: ElementTree.Element) -> xmlrpc.client.DateTime:
    value = xmlrpc.client.DateTime()
    value.decode(node.text or '')
    return value


def _struct(node: ElementTree.Element) -> dict[str, typing.Any]:
    result = {}
    for member in node:
        name, value = member
        if member.tag != 'member' or name.tag != 'name':
            raise _Unusual(member.tag)
        result[name.text or ''] = _value(value)
    return result


def _array(node: ElementTree.Element) -> list[typing.Any]:
    [data] = node
    if data.tag != 'data':
        raise _Unusual(data.tag)
    return [_value(value) for value in data]


_CONVERT: dict[str, typing.Callable[[ElementTree.Element], typing.Any]] = {
    'string': _string, 'struct': _struct, 'array': _array,
    'boolean': _boolean, 'dateTime.iso8601': _datetime,
    'int': _int, 'i4': _int, 'i8': _int,
    'double': lambda node: float(node.text or ''),
    'nil': lambda node: None}


def _value(node: ElementTree.Element) -> typing.Any:
    if node.tag != 'value':
        raise _Unusual(node.tag)
    if not len(node):
        # XML-RPC: a value without a type is a string.
        return node.text or ''
    [typed] = node
    return _CONVERT[typed.tag](typed)


def _loads(body: bytes) -> tuple[typing.Any]:
    """The value of an XML-RPC response, as xmlrpc.client reads it.

    Builds the document in C (ElementTree) and converts it in one pass:
    xmlrpc.client calls back into Python for every tag and text of it,
    which for the records XAPI sends (``event.from`` above all, read by
    the event thread at every change) costs twice as much.

    :raises _Unusual: and other errors for what is not a plain response
        of the types XAPI sends (a fault, a namespace, base64): the
        caller leaves those to xmlrpc.client.
    """
    root = ElementTree.fromstring(body)
    [params] = root
    [param] = params
    [value] = param
    if (root.tag, params.tag, param.tag) != (
            'methodResponse', 'params', 'param'):
        raise _Unusual(root.tag)
    return (_value(value),)


#: The longest status or header line read, as http.client allows.
_MAX_LINE = 65536


def _read_head(reader: typing.BinaryIO
               ) -> tuple[str, int, str, dict[str, str]]:
    """The status line and headers of an HTTP response.

    :returns: ``(version, status, reason, headers)``, header names in
        lower case.
    :raises http.client.HTTPException: as http.client would.
    """
    while True:
        line = reader.readline(_MAX_LINE + 1)
        if not line:
            raise http.client.RemoteDisconnected(
                'Remote end closed connection without response')
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong('status line')
        parts = line.decode('iso-8859-1').split(None, 2)
        try:
            version, status = parts[0], int(parts[1])
        except (IndexError, ValueError):
            raise http.client.BadStatusLine(repr(line)) from None
        if not version.startswith('HTTP/') or not 100 <= status <= 999:
            raise http.client.BadStatusLine(repr(line))
        headers: dict[str, str] = {}
        while True:
            line = reader.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise http.client.LineTooLong('header line')
            if not line:
                raise http.client.IncompleteRead(b'')
            if line in (b'\r\n', b'\n'):
                break
            name, _, value = line.decode('iso-8859-1').partition(':')
            headers[name.strip().lower()] = value.strip()
        if status != http.client.CONTINUE:
            reason = parts[2].strip() if len(parts) > 2 else ''
            return version, status, reason, headers


def _read_body(reader: typing.BinaryIO, headers: dict[str, str]
               ) -> tuple[bytes, bool]:
    """The body of an HTTP response, and whether the connection ended."""
    if 'chunked' in headers.get('transfer-encoding', '').lower():
        chunks: list[bytes] = []
        while True:
            line = reader.readline(_MAX_LINE + 1)
            try:
                size = int(line.split(b';', 1)[0], 16)
            except ValueError:
                raise http.client.IncompleteRead(b''.join(chunks)) from None
            if not size:
                break
            chunk = reader.read(size)
            if len(chunk) < size:
                raise http.client.IncompleteRead(chunk, size - len(chunk))
            chunks.append(chunk)
            reader.readline(_MAX_LINE + 1)
        # Trailers, up to the blank line.
        while reader.readline(_MAX_LINE + 1) not in (b'\r\n', b'\n', b''):
            pass
        return b''.join(chunks), False
    length = headers.get('content-length')
    if length is None:
        # Delimited by the end of the connection.
        return reader.read(), True
    try:
        size = int(length)
    except ValueError:
        raise http.client.HTTPException(
            'bad Content-Length %r' % length) from None
    body = reader.read(size)
    if len(body) < size:
        raise http.client.IncompleteRead(body, size - len(body))
    return body, False


class _TimeoutMixin:
    """A transport with a timeout, a lean call path and :meth:`abort`.

    Each call writes its request in one piece and reads the response's
    status and headers itself: http.client's parsing of them (its email
    parser, a file object per response) cost as much of the client's CPU
    as XAPI's answer to a short call; so did writing the headers line by
    line. The connection is http.client's, kept open between calls.
    """

    timeout: float = 60.0
    _current: http.client.HTTPConnection | None = None
    #: Headers sent with the call being made, besides the usual ones.
    call_headers: collections.abc.Sequence[tuple[str, str]] = ()
    # The connection's socket and the reader made for it.
    _reader: tuple[typing.Any, typing.BinaryIO] | None = None

    _aborted = False

    def make_connection(self, host: typing.Any) -> typing.Any:
        if self._aborted:
            # xmlrpc.client retries a call whose connection dropped once,
            # on a new connection; an aborted transport makes none.
            raise ConnectionAbortedError('the XAPI call was aborted')
        conn = super().make_connection(host)  # type: ignore[misc]
        conn.timeout = self.timeout
        if conn.sock is not None:
            # Kept open from a call made with another timeout: the
            # login's, for the event thread's session, whose long polls
            # XAPI answers 50 ms after their timeout.
            conn.sock.settimeout(self.timeout)
        self._current = conn
        return conn

    def _head(self, host: typing.Any, handler: str, length: int) -> bytes:
        chost = self.get_host_info(host)[0]  # type: ignore[attr-defined]
        if not chost.isascii():
            # As http.client sends a host name that is not ASCII.
            chost = chost.encode('idna').decode('ascii')
        # XAPI does not compress; a local simulator asked to would spend
        # more time on it than the bytes take to cross.
        lines = ['POST %s HTTP/1.1' % handler, 'Host: %s' % chost,
                 'Accept-Encoding: identity',
                 'Content-Type: text/xml',
                 'User-Agent: %s' % self.user_agent]  # type: ignore
        lines.extend('%s: %s' % header for header in itertools.chain(
            self._headers, self._extra_headers,  # type: ignore[attr-defined]
            self.call_headers))
        lines.append('Content-Length: %d' % length)
        text = '\n'.join(lines)
        if '\r' in text or '\0' in text or text.count('\n') >= len(lines):
            # A line break in a value would start a header of its own.
            raise ValueError('Invalid character in an HTTP request header: '
                             '%r' % lines)
        return (text.replace('\n', '\r\n') + '\r\n\r\n').encode(
            'iso-8859-1')

    def single_request(self, host: typing.Any, handler: str,
                       request_body: typing.Any,
                       verbose: bool = False) -> typing.Any:
        try:
            conn = self.make_connection(host)
            if conn.sock is None:
                conn.connect()
            sock = conn.sock
            if self._reader is None or self._reader[0] is not sock:
                self._close_reader()
                self._reader = (sock, sock.makefile('rb'))
            reader = self._reader[1]
            sock.sendall(self._head(host, handler, len(request_body)) +
                         request_body)
            version, status, reason, headers = _read_head(reader)
            body, ended = _read_body(reader, headers)
            connection = headers.get('connection', '').lower()
            if (ended or 'close' in connection or
                    (version == 'HTTP/1.0' and 'keep-alive' not in
                     connection)):
                self.close()
        except Exception:
            self.close()
            raise
        if status != 200:
            raise xmlrpc.client.ProtocolError(host + handler, status, reason,
                                              headers)
        if headers.get('content-encoding', '') == 'gzip':
            body = gzip.decompress(body)
        self.verbose = verbose
        return self._parse_body(body)

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            # The socket's descriptor stays open while a reader does.
            reader[1].close()

    def close(self) -> None:
        self._close_reader()
        super().close()  # type: ignore[misc]

    def parse_response(self, response: typing.Any) -> typing.Any:
        # Read whole rather than fed to the parser 1 KiB at a time, and
        # converted by _loads when it can.
        if response.getheader('Content-Encoding', '') == 'gzip':
            stream = xmlrpc.client.GzipDecodedResponse(response)
            try:
                body = stream.read()
            finally:
                stream.close()
        else:
            body = response.read()
        return self._parse_body(body)

    def _parse_body(self, body: bytes) -> typing.Any:
        if getattr(self, 'verbose', False):
            print('body:', repr(body))
        try:
            if not (self._use_datetime or  # type: ignore[attr-defined]
                    self._use_builtin_types):  # type: ignore[attr-defined]
                return _loads(body)
        except (_Unusual, ElementTree.ParseError, KeyError, ValueError,
                TypeError):
            pass
        parser, unmarshaller = self.getparser()  # type: ignore[attr-defined]
        parser.feed(body)
        parser.close()
        return unmarshaller.close()

    def abort(self) -> None:
        """Shut the socket of the call in flight, from another thread.

        The transport makes no connection afterwards.
        """
        self._aborted = True
        conn = self._current
        sock = getattr(conn, 'sock', None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Transport(_TimeoutMixin, xmlrpc.client.Transport):
    pass


class _SafeTransport(_TimeoutMixin, xmlrpc.client.SafeTransport):
    pass


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH.
_HOSTNAME_MISMATCH = 62


def check_ca_file(path: str) -> None:
    """Refuse a ``ca_file`` that is missing or holds no PEM certificate.

    :raises InvalidConfiguration: naming the option, the file and why.
    """
    try:
        with open(path, 'rb') as stream:
            data = stream.read()
    except OSError as exc:
        raise exception.InvalidConfiguration(
            reason='[xenapi] ca_file %s cannot be read: %s'
                   % (path, exc.strerror or exc)) from None
    if b'-----BEGIN CERTIFICATE-----' not in data:
        raise exception.InvalidConfiguration(
            reason='[xenapi] ca_file %s holds no PEM certificate (no '
                   '"-----BEGIN CERTIFICATE-----" line)' % path)
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise exception.InvalidConfiguration(
            reason='[xenapi] ca_file %s is not a valid PEM certificate '
                   'file: %s' % (path, exc.reason or exc)) from None


def master_url(url: str, address: str) -> str:
    """The URL of the master a ``HOST_IS_SLAVE`` failure names.

    :param url: the URL that reached the member.
    :param address: the failure's parameter: an IP address or name, with
        a port when the master listens elsewhere than the member.
    """
    parts = urllib.parse.urlsplit(url)
    if address.count(':') == 1 or address.startswith('['):
        netloc = address
    else:
        host = '[%s]' % address if ':' in address else address
        netloc = (host if parts.port is None
                  else '%s:%d' % (host, parts.port))
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def redact(url: str) -> str:
    """A URL without any user information, for messages."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition('@')[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


#: How many of the latest calls' round trips :attr:`SessionPool.round_trip`
#: takes the quickest of.
ROUND_TRIPS = 16


class SessionPool:
    """A bounded pool of XAPI sessions.

    :param url: the pool master's (or a member's) URL.
    :param username: the XAPI user.
    :param password: its password; kept only to log in.
    :param size: the most sessions in use at once.
    :param verify: verify the certificate of an https URL.
    :param ca_file: certificate authorities to verify with.
    :param call_timeout: seconds a call may take.
    :param login_timeout: seconds a login may take.
    :param wait_timeout: seconds a call waits for a free session.
    :param originator: the name XAPI shows for these sessions.
    :param idle_of: a pool, made with the same arguments, whose idle
        sessions this one shares: each pool bounds the calls it makes at
        once, but a thread's calls, whichever pool they go through, go on
        the session (and connection) it used last. A XAPI answering
        calls on one connection after another's (its thread per
        connection) was measured to add up to half a millisecond to the
        call.
    """

    def __init__(self, url: str, username: str, password: str,
                 size: int = 4, verify: bool = True,
                 ca_file: str | None = None, call_timeout: float = 300,
                 login_timeout: float = 10, wait_timeout: float = 60,
                 originator: str = 'compute-driver',
                 idle_of: 'SessionPool | None' = None) -> None:
        self.url = url
        self._username = username
        self._password = password
        self._verify = verify
        self._ca_file = ca_file
        self._call_timeout = call_timeout
        self._login_timeout = login_timeout
        self._wait_timeout = wait_timeout
        self._originator = originator
        if ca_file and verify:
            check_ca_file(ca_file)
        #: The most sessions in use at once.
        self.size = size
        # Seconds each of the latest calls took, answer included; see
        # round_trip.
        self._round_trips: collections.deque[float] = collections.deque(
            maxlen=ROUND_TRIPS)
        self._slots = threading.BoundedSemaphore(size)
        # Last in, first out: the session a thread just let go of is the
        # one its next call takes.
        self._idle: queue.LifoQueue[typing.Any] = (
            idle_of._idle if idle_of is not None else queue.LifoQueue())
        self._lock = threading.Lock()
        self._closed = False
        if (urllib.parse.urlsplit(url).scheme == 'https' and not verify):
            LOG.warning('TLS certificate verification of %s is off: the '
                        'XAPI password can be intercepted', redact(url))

    # -- connections -------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._verify:
            return ssl.create_default_context(cafile=self._ca_file)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def _transport(self, timeout: float) -> _TimeoutMixin:
        transport: _TimeoutMixin
        if urllib.parse.urlsplit(self.url).scheme == 'https':
            transport = _SafeTransport(context=self._ssl_context())
        else:
            transport = _Transport()
        transport.timeout = timeout
        return transport

    def http_connection(self, timeout: float | None = None
                        ) -> http.client.HTTPConnection:
        """A new HTTP(S) connection to XAPI, for its disk transfers.

        The same host, port and TLS verification as the XML-RPC calls.

        :param timeout: seconds a socket operation may take; the call
            timeout by default.
        """
        parts = urllib.parse.urlsplit(self.url)
        timeout = self._call_timeout if timeout is None else timeout
        if parts.scheme == 'https':
            return http.client.HTTPSConnection(
                parts.hostname or '', parts.port, timeout=timeout,
                context=self._ssl_context())
        return http.client.HTTPConnection(parts.hostname or '', parts.port,
                                          timeout=timeout)

    def _unavailable(self, reason: str) -> exception.HypervisorUnavailable:
        return exception.HypervisorUnavailable(host=redact(self.url),
                                               reason=reason)

    def login(self, timeout: float | None = None) -> typing.Any:
        """A new logged-in SDK session with its own connection.

        :param timeout: seconds each call of the session may take; the
            configured call timeout by default.
        :raises HypervisorUnavailable: when XAPI cannot be reached or
            refuses the credentials.
        """
        for _ in range(3):
            transport = self._transport(self._login_timeout)
            session = XenAPI.Session(self.url, transport=transport)
            try:
                session.xenapi.login_with_password(
                    self._username, self._password, API_VERSION,
                    self._originator)
            except XenAPI.Failure as exc:
                details = [str(d) for d in exc.details]
                if details[:1] == ['HOST_IS_SLAVE'] and len(details) > 1:
                    master = master_url(self.url, details[1])
                    LOG.info('%s is a pool member; logging in to the '
                             'master %s', redact(self.url), redact(master))
                    self.url = master
                    continue
                if details[:1] == ['SESSION_AUTHENTICATION_FAILED']:
                    raise self._unavailable(
                        'XAPI refused the login of user %r: wrong user '
                        'name or password (SESSION_AUTHENTICATION_FAILED)'
                        % self._username) from None
                raise self._unavailable('login failed: %s'
                                        % ' '.join(details)) from None
            except ssl.SSLError as exc:
                raise self._unavailable(self._tls_advice(exc)) from None
            except (*_CONNECTION_ERRORS, xmlrpc.client.Fault) as exc:
                raise self._unavailable(exception.one_line(exc)) from None
            transport.timeout = (self._call_timeout if timeout is None
                                 else timeout)
            LOG.debug('Logged in to %s as %s', redact(self.url),
                      self._username)
            return session
        raise self._unavailable('pool members kept redirecting the login')

    def _tls_advice(self, exc: ssl.SSLError) -> str:
        """What a TLS failure means and which option fixes it, one line."""
        host = urllib.parse.urlsplit(self.url).hostname
        if getattr(exc, 'verify_code', None) == _HOSTNAME_MISMATCH:
            return ('TLS failed: the XAPI certificate does not name %s; '
                    'set [xenapi] connection_url to a host name the '
                    'certificate lists' % host)
        reason = exc.reason or exception.one_line(exc)
        detail = getattr(exc, 'verify_message', None)
        if detail:
            reason = '%s (%s)' % (reason, detail)
        if self._ca_file:
            return ('TLS failed: %s; the XAPI certificate of %s is not '
                    'signed by a CA in [xenapi] ca_file (%s)'
                    % (reason, host, self._ca_file))
        return ('TLS failed: %s; set [xenapi] ca_file to the CA that '
                'signed the XAPI certificate of %s' % (reason, host))

    @staticmethod
    def logout(session: typing.Any) -> None:
        """Log a session out, ignoring a session XAPI already forgot."""
        with contextlib.suppress(XenAPI.Failure, xmlrpc.client.Fault,
                                 *_CONNECTION_ERRORS):
            session.xenapi.session.logout()

    def logout_handle(self, handle: str | None) -> None:
        """Log out a session another thread is using, by its reference.

        The call goes over a connection of its own, so it does not wait
        for the session's call in flight.
        """
        if not handle:
            return
        proxy = XenAPI.Session(self.url,
                               transport=self._transport(self._login_timeout))
        try:
            # The raw XML-RPC method: the SDK's session.logout would log
            # out the proxy's own (absent) session.
            getattr(proxy, 'session.logout')(handle)
        except (*_CONNECTION_ERRORS, xmlrpc.client.Fault) as exc:
            LOG.debug('Could not log out session: %s', exc)
        finally:
            close_session(proxy)

    @contextlib.contextmanager
    def session(self) -> collections.abc.Iterator[typing.Any]:
        """One logged-in session for the caller's exclusive use.

        :raises BackendError: when none frees up in time.
        """
        if not self._slots.acquire(timeout=self._wait_timeout):
            raise exception.BackendError(
                operation='XAPI call', instance='-',
                reason='no free XAPI session within %ss; raise [xenapi] '
                       'concurrent_sessions' % self._wait_timeout)
        session = None
        try:
            try:
                session = self._idle.get_nowait()
            except queue.Empty:
                session = self.login()
            try:
                yield session
            except XapiCallFailed:
                # XAPI answered, so the session and its connection are
                # fine.
                self._idle.put(session)
                session = None
                raise
            # A session whose connection failed is dropped with it.
            self._idle.put(session)
            session = None
        finally:
            if session is not None:
                close_session(session)
            self._slots.release()

    # -- calls -------------------------------------------------------------

    def call(self, method: str, *args: typing.Any,
             headers: collections.abc.Sequence[tuple[str, str]] = ()
             ) -> typing.Any:
        """Call a XAPI method, e.g. ``call('VM.start', ref, False, False)``.

        :param headers: HTTP headers to send with the call.
        :raises XapiCallFailed: when XAPI answers with a failure.
        :raises CallTimedOut: when it does not answer in the call timeout.
        :raises HypervisorUnavailable: when XAPI cannot be reached.
        """
        start = time.perf_counter()
        try:
            result = self._call(method, args, headers)
        except XapiCallFailed:
            self._answered(time.perf_counter() - start)
            raise
        except _MasterMoved as moved:
            # The master changed: the SDK's own re-login reached a member.
            # Log in to the new master and try once more.
            self.url = master_url(self.url, moved.address)
            LOG.info('The pool master moved to %s', redact(self.url))
            self._drop_idle()
            try:
                return self._call(method, args, headers)
            except _MasterMoved as moved:
                raise self._unavailable('pool members kept redirecting to '
                                        '%s' % moved.address) from None
        self._answered(time.perf_counter() - start)
        return result

    @property
    def round_trip(self) -> float | None:
        """Seconds the quickest of the latest calls took, answer included.

        Of the last :data:`ROUND_TRIPS` that XAPI answered; ``None``
        before the first. The quickest, as calls made side by side, while
        XAPI or this machine is busy, or that logged in first take longer
        than the link and XAPI's own answer need. See
        :attr:`Connection.side_by_side`.
        """
        with self._lock:
            return min(self._round_trips, default=None)

    def _answered(self, seconds: float) -> None:
        """Count a call XAPI answered in ``seconds`` in :attr:`round_trip`."""
        with self._lock:
            self._round_trips.append(seconds)

    def _call(self, method: str, args: tuple[typing.Any, ...],
              headers: collections.abc.Sequence[tuple[str, str]] = ()
              ) -> typing.Any:
        with self.session() as session:
            transport = getattr(session, 'transport', None)
            if headers and transport is not None:
                transport.call_headers = headers
            try:
                target = session.xenapi
                for part in method.split('.'):
                    target = getattr(target, part)
                return target(*args)
            except XenAPI.Failure as exc:
                details = [str(d) for d in exc.details]
                if details[:1] == ['HOST_IS_SLAVE'] and len(details) > 1:
                    raise _MasterMoved(details[1]) from None
                raise XapiCallFailed(method=method,
                                     details=details) from None
            except xmlrpc.client.Fault as exc:
                # The SDK logs in again by itself on SESSION_INVALID and
                # gives up with a Fault after three tries.
                raise self._unavailable(
                    '%s: %s' % (method, exc.faultString)) from None
            except TimeoutError:
                raise CallTimedOut(
                    host=redact(self.url),
                    reason='%s: no answer within %ss ([xenapi] '
                           'call_timeout)' % (method, self._call_timeout)
                ) from None
            except _CONNECTION_ERRORS as exc:
                raise self._unavailable('%s: %s' % (
                    method, exception.one_line(exc))) from None
            finally:
                if headers and transport is not None:
                    transport.call_headers = ()

    def _drop_idle(self) -> None:
        while True:
            try:
                session = self._idle.get_nowait()
            except queue.Empty:
                return
            close_session(session)

    def close(self) -> None:
        """Log out every idle session; the pool can log in again later."""
        while True:
            try:
                session = self._idle.get_nowait()
            except queue.Empty:
                return
            self.logout(session)


Record = dict[str, typing.Any]

#: The header XAPI copies into the ``other_config`` of a call's task
#: (``http:<key>``), and the key that tags a call :meth:`Connection.task`
#: may cancel.
TASK_TAG_HEADER = 'X-Http-Other-Config-'
TASK_TAG_KEY = 'compute_driver_call'

#: Seconds the quickest answers of XAPI take from which calls made
#: side by side save time (see :attr:`Connection.side_by_side`).
SIDE_BY_SIDE_ROUND_TRIP = 0.001

#: Seconds a task waiter trusts the event stream before it asks XAPI
#: itself, in case an event was missed.
TASK_RECHECK = 5.0


class TaskWaiter(typing.Protocol):
    """What follows tasks through XAPI's event stream (the event watcher)."""

    synced: threading.Event

    def wait_task(self, task: str, timeout: float) -> Record | None:
        ...


def task_result(result: str) -> str:
    """A task's result: XAPI wraps the value in ``<value>`` tags."""
    if not result:
        return ''
    try:
        node = xml.dom.minidom.parseString(result).documentElement
    except Exception:
        return result
    if node is None:
        return result
    return ''.join(typing.cast(xml.dom.minidom.Text, child).data
                   if child.nodeType == child.TEXT_NODE else child.toxml()
                   for child in node.childNodes)


def quote(value: str) -> str:
    """A literal of XAPI's ``get_all_records_where`` expressions."""
    return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')


class Alongside:
    """Calls made while the caller goes on, all finished by :meth:`wait`.

    Calls that nothing after them depends on -- setters of one new VM,
    reads while a VM stops -- each cost XAPI a round trip; made side
    by side on the pool's other sessions they cost about one. Use it as
    a context manager: leaving it waits for every call, so none outlives
    the operation that made it.

    :param xapi: the connection to call through.
    """

    def __init__(self, xapi: 'Connection') -> None:
        self._xapi = xapi
        self._futures: list[concurrent.futures.Future[typing.Any]] = []

    def call(self, method: str, *args: typing.Any) -> None:
        """Make ``xapi.call(method, *args)`` on another thread."""
        self.run(self._xapi.call, method, *args)

    def run(self, function: typing.Callable[..., typing.Any],
            *args: typing.Any) -> None:
        """Run ``function(*args)``, which makes calls, on another thread.

        Or on this one, at once, when XAPI answers so quickly that
        handing the calls to other threads would cost more than it saves
        (see :attr:`Connection.side_by_side`); a failure is raised by
        :meth:`wait` all the same.
        """
        if self._xapi.side_by_side:
            self._futures.append(self._xapi.executor.submit(function, *args))
            return
        done: concurrent.futures.Future[typing.Any]
        done = concurrent.futures.Future()
        try:
            done.set_result(function(*args))
        except Exception as exc:
            done.set_exception(exc)
        self._futures.append(done)

    def wait(self) -> None:
        """Wait for every call; raise the first failure once all ended."""
        futures, self._futures = self._futures, []
        concurrent.futures.wait(futures)
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error

    def __enter__(self) -> 'Alongside':
        return self

    def __exit__(self, kind: typing.Any, value: typing.Any,
                 trace: typing.Any) -> None:
        if kind is None:
            self.wait()
            return
        # Failing already: the calls are only waited for, so that what
        # undoes the operation does not race them.
        concurrent.futures.wait(self._futures)
        self._futures = []


class Connection:
    """Calls, tasks and VM removal over a :class:`SessionPool`.

    :param pool: the sessions to call through.
    :param call_timeout: seconds a task may run before it is cancelled.
    :param long_pool: the sessions long operations (:meth:`task`) hold
        while they run; by default ``pool``'s.
    """

    def __init__(self, pool: SessionPool, call_timeout: float,
                 long_pool: SessionPool | None = None) -> None:
        self.pool = pool
        self.long_pool = long_pool or pool
        self.call_timeout = call_timeout
        #: Follows tasks without polling them, once :meth:`init_host`
        #: started the event watcher.
        self.waiter: TaskWaiter | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """Threads for :class:`Alongside` calls, started when first used.

        As many as the pool has sessions: more would only wait for one.
        """
        with self._executor_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.pool.size,
                    thread_name_prefix='xenapi-calls')
            return self._executor

    @property
    def side_by_side(self) -> bool:
        """Whether :class:`Alongside` calls run on other threads.

        Calls side by side save the time their answers spend on the way
        and waiting for each other: worth a thread hand-off (a tenth of a
        millisecond or more each, and the interpreter lock the threads
        share) only when XAPI's quickest answers take at least
        :data:`SIDE_BY_SIDE_ROUND_TRIP`. A XAPI that answers quicker is
        on this machine or next to it, and busy with each call's own
        work, which side-by-side calls do not shorten. Until a call was
        answered, they do run side by side.
        """
        floor = self.pool.round_trip
        return floor is None or floor >= SIDE_BY_SIDE_ROUND_TRIP

    def close(self) -> None:
        """Stop the :attr:`executor`'s threads once their calls ended."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def call(self, method: str, *args: typing.Any) -> typing.Any:
        """See :meth:`SessionPool.call`."""
        return self.pool.call(method, *args)

    # -- tasks ---------------------------------------------------------------

    def task(self, method: str, *args: typing.Any) -> str:
        """Make a long operation's call; cancel it if the backend gives up.

        XAPI runs a synchronous call of a message that has an Async form
        under a task of its own, which ``task.cancel`` ends, and copies
        the call's ``X-Http-Other-Config-<key>`` headers into the task's
        ``other_config`` as ``http:<key>``. The call is tagged so; when
        it outlasts ``call_timeout`` or the caller is interrupted
        (``KeyboardInterrupt`` included), the task with the tag is
        cancelled, so no operation keeps going in XAPI after the backend
        gave up on it. Unlike an Async call, this costs no call when the
        operation succeeds: no task to follow or destroy.

        :returns: the call's result; ``''`` for none.
        :raises XapiCallFailed: when the operation fails.
        :raises HypervisorUnavailable: when it times out.
        """
        tag = uuid.uuid4().hex
        try:
            # A boot or a copy holds its session for as long as it runs;
            # from a pool of their own, they never make short calls (a
            # power state read, a listing) wait behind them.
            result = self.long_pool.call(
                method, *args,
                headers=[(TASK_TAG_HEADER + TASK_TAG_KEY, tag)])
        except CallTimedOut:
            self._cancel_tagged(method, tag)
            raise exception.HypervisorUnavailable(
                host=redact(self.pool.url),
                reason='%s took longer than %ss ([xenapi] call_timeout); '
                       'its task was cancelled'
                       % (method, self.call_timeout)) from None
        except (XapiCallFailed, exception.ComputeDriverError):
            # XAPI answered, or cannot be reached to cancel anything.
            raise
        except BaseException:
            self._cancel_tagged(method, tag)
            raise
        return result if isinstance(result, str) else ''

    def _cancel_tagged(self, method: str, tag: str) -> None:
        """Cancel the pending task of the call tagged ``tag``, if any.

        None is left when the operation ended meanwhile: the caller's
        rollback finds what it made.
        """
        key = 'http:' + TASK_TAG_KEY
        try:
            pending = self.call('task.get_all_records_where',
                                'field "status" = "pending"')
        except (XapiCallFailed, exception.ComputeDriverError) as exc:
            LOG.warning('Could not look for the task of %s to cancel '
                        'it: %s', method, exception.one_line(exc))
            return
        for ref, record in pending.items():
            if (record.get('other_config') or {}).get(key) == tag:
                self.cancel(ref)

    def wait(self, task: str, method: str) -> str:
        """Wait for ``task`` to finish and return its result.

        :param method: what the task does, for errors.
        :raises XapiCallFailed: when the task fails or is cancelled.
        :raises HypervisorUnavailable: when it outlasts ``call_timeout``;
            it is cancelled then.
        """
        deadline = time.monotonic() + self.call_timeout
        interval = 0.02
        while True:
            record = self._task_record(task, deadline, interval)
            status = record['status']
            if status == 'success':
                return task_result(record['result'])
            if status in ('failure', 'cancelled'):
                raise XapiCallFailed(
                    method=method,
                    details=[str(d) for d in record['error_info']])
            if time.monotonic() >= deadline:
                self.cancel(task)
                raise exception.HypervisorUnavailable(
                    host=redact(self.pool.url),
                    reason='%s took longer than %ss ([xenapi] '
                           'call_timeout); its task was cancelled'
                           % (method, self.call_timeout))
            interval = min(interval * 2, 1.0)

    def request(self, method: str, ref: str, timeout: float,
                retry_interval: float = 0) -> bool:
        """Ask the guest to do ``method`` (a clean shutdown or reboot).

        The request runs as an XAPI task so that a guest ignoring it does
        not hold a session for the whole wait; the task is cancelled when
        the time is up.

        :returns: whether the guest did it within ``timeout`` seconds.
        """
        task = self.call('Async.' + method, ref)
        deadline = time.monotonic() + timeout
        interval = min(max(retry_interval, 0.05), 1.0)
        try:
            while True:
                status = self._task_record(task, deadline, interval)['status']
                if status != 'pending':
                    return bool(status == 'success')
                if time.monotonic() >= deadline:
                    self.cancel(task)
                    return False
        finally:
            self._destroy_task(task)

    def _task_record(self, task: str, deadline: float,
                     interval: float) -> Record:
        """The task's record once it finished, or by ``deadline``.

        The event watcher sees the task finish, so no call is made for
        it; XAPI is asked when the watcher is not in sync, every
        :data:`TASK_RECHECK` seconds in case an event was missed, and at
        the deadline. Without a watcher (no ``init_host``), the task is
        polled every ``interval`` seconds.
        """
        waiter = self.waiter
        if waiter is not None and waiter.synced.is_set():
            wait = min(TASK_RECHECK, max(0.0, deadline - time.monotonic()))
            record = waiter.wait_task(task, wait)
            if record is not None:
                return record
        else:
            time.sleep(max(0.0, min(interval,
                                    deadline - time.monotonic())))
        return dict(self.call('task.get_record', task))

    def cancel(self, task: str) -> None:
        try:
            self.call('task.cancel', task)
        except (XapiCallFailed, exception.ComputeDriverError) as exc:
            # A task that just finished cannot be cancelled; the rollback
            # finds what it made by its name.
            LOG.debug('Could not cancel task %s: %s', task, exc)

    def destroy_task(self, task: str) -> None:
        """Forget a finished task; failures are only logged."""
        self._destroy_task(task)

    def _destroy_task(self, task: str) -> None:
        try:
            self.call('task.destroy', task)
        except (XapiCallFailed, exception.ComputeDriverError) as exc:
            LOG.debug('Could not destroy task %s: %s', task, exc)

    # -- VMs -----------------------------------------------------------------

    def hard_shutdown(self, ref: str) -> None:
        """Force a VM off; one that stopped meanwhile is fine."""
        try:
            self.call('VM.hard_shutdown', ref)
        except XapiCallFailed as exc:
            if exc.code != 'VM_BAD_POWER_STATE':
                raise

    def own_vdis(self, ref: str, record: Record) -> list[str]:
        """The VDIs only this VM uses.

        Never a sharable disk, a read-only one (an ISO, a golden image),
        one another VM has attached, or a volume's (its VBD's
        ``other_config`` has :data:`VOLUME_VBD_KEY`): its data is the
        volume's.
        """
        vdis: list[str] = []
        if record.get('VBDs', None) == []:
            return vdis
        # One call for every VBD of the VM, rather than one per VBD.
        vbds = self.call('VBD.get_all_records_where',
                         'field "VM" = %s' % quote(ref))
        for vbd in vbds.values():
            if (vbd['type'] != 'Disk' or vbd['empty'] or
                    VOLUME_VBD_KEY in (vbd.get('other_config') or {})):
                continue
            try:
                vdi = self.call('VDI.get_record', vbd['VDI'])
                others = [v for v in vdi['VBDs'] if v not in vbds and
                          self.call('VBD.get_VM', v) != ref]
            except XapiCallFailed as exc:
                if exc.code == 'HANDLE_INVALID':
                    continue
                raise
            if not vdi['sharable'] and not vdi['read_only'] and not others:
                vdis.append(vbd['VDI'])
        return vdis

    def remove_vm(self, ref: str, record: Record | None = None) -> None:
        """Hard-stop a VM, destroy it and its own disks; gone is fine.

        :param record: the VM's record, when the caller just read it, or
            what the caller knows of it (``VBDs`` ``None``): its power
            state may then be out of date, which XAPI's refusal corrects.
        """
        try:
            if record is None:
                record = self.call('VM.get_record', ref)
            # Which disks are the VM's own does not depend on its power
            # state: read while it stops, rather than after.
            with Alongside(self) as alongside:
                if record['power_state'] != 'Halted':
                    alongside.run(self.hard_shutdown, ref)
                vdis = self.own_vdis(ref, record)
            if record['is_a_template'] and (
                    record.get('is_default_template') or
                    record['other_config'].get('default_template', '')
                    .lower() in ('1', 'true')):
                # A half-built clone of a stock template may still say
                # it is a default one, which XAPI does not destroy. Only
                # then: a VM no longer a template would be seen as an
                # instance until it is gone.
                self.call('VM.set_is_a_template', ref, False)
            try:
                self.call('VM.destroy', ref)
            except XapiCallFailed as exc:
                if exc.code != 'VM_BAD_POWER_STATE':
                    raise
                # Started since the state was known.
                self.hard_shutdown(ref)
                self.call('VM.destroy', ref)
        except XapiCallFailed as exc:
            if exc.code == 'HANDLE_INVALID' and exc.params[:1] == ['VM']:
                return
            raise
        for vdi in vdis:
            try:
                self.call('VDI.destroy', vdi)
            except XapiCallFailed as exc:
                if exc.code != 'HANDLE_INVALID':
                    raise

    # -- the pool ------------------------------------------------------------

    def pool_record(self) -> Record:
        pools = self.call('pool.get_all_records')
        return next(iter(pools.values()))

    def master(self, pool: Record | None = None) -> tuple[str, Record]:
        """The pool master's host reference and record."""
        master = (pool or self.pool_record())['master']
        return master, self.call('host.get_record', master)

    def sr(self, wanted: str, pool: Record | None = None) -> str:
        """The SR new disks go on.

        :param wanted: ``[xenapi] sr_name`` (a uuid or name_label); empty
            for the pool's default SR.
        :raises InvalidConfiguration: naming the option when there is
            none.
        """
        if not wanted:
            ref = (pool or self.pool_record())['default_SR']
            if ref == 'OpaqueRef:NULL':
                raise exception.InvalidConfiguration(
                    reason='[xenapi] sr_name is empty and the pool has no '
                           'default SR; name the SR for instance disks')
            return str(ref)
        try:
            return str(self.call('SR.get_by_uuid', wanted))
        except XapiCallFailed as exc:
            if exc.code != 'UUID_INVALID':
                raise
        found = self.call('SR.get_by_name_label', wanted)
        if len(found) != 1:
            raise exception.InvalidConfiguration(
                reason='[xenapi] sr_name: XAPI has %s SR named %r' % (
                    'no' if not found else '%d' % len(found), wanted))
        return str(found[0])
