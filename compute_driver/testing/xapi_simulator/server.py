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

"""The simulator's HTTP server, its knobs and its console script.

XAPI answers XML-RPC POSTs on ``/`` and JSON-RPC POSTs on ``/jsonrpc``
over HTTP or HTTPS; so does :class:`Simulator`, one thread per
connection, so a blocked ``event.from`` does not hold other callers up.
"""

import argparse
import collections
import logging
import signal
import socket
import socketserver
import ssl
import sys
import threading
import typing
import xmlrpc.client
import xmlrpc.server

from compute_driver.testing.xapi_simulator import api as xapi
from compute_driver.testing.xapi_simulator import consoles
from compute_driver.testing.xapi_simulator import jsonrpc
from compute_driver.testing.xapi_simulator import seed as seeding
from compute_driver.testing.xapi_simulator import store as db
from compute_driver.testing.xapi_simulator import vdi_http
from compute_driver.testing.xapi_simulator import vdis as vdi_ops
from compute_driver.testing.xapi_simulator import wire

LOG = logging.getLogger(__name__)


class _RequestHandler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    # XAPI serves XML-RPC on any path but /jsonrpc; clients use "/".
    rpc_paths = ()
    # XAPI keeps a client's connection open between calls, as the SDK
    # expects; disk transfers and consoles close theirs.
    protocol_version = 'HTTP/1.1'

    def do_POST(self) -> None:
        if typing.cast(_Server, self.server).down.is_set():
            # As a xapi that died: the connection closes unanswered.
            self.close_connection = True
            return
        prefix = 'x-http-other-config-'
        xapi.REQUEST.other_config = {
            key.lower()[len(prefix):]: value
            for key, value in self.headers.items()
            if key.lower().startswith(prefix)}
        try:
            self._post()
        finally:
            xapi.REQUEST.other_config = {}

    def _post(self) -> None:
        if self.path.split('?')[0] != '/jsonrpc':
            super().do_POST()
            return
        length = int(self.headers.get('content-length') or 0)
        dispatch = typing.cast(_Server, self.server).instance
        body = jsonrpc.handle(self.rfile.read(length), dispatch._dispatch)
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _transfer(self, method: str) -> None:
        server = typing.cast(_Server, self.server)
        if server.down.is_set():
            self.close_connection = True
            return
        if not vdi_http.handle(server.instance.api, self, method):
            self.send_error(404)

    def do_GET(self) -> None:
        self._transfer('GET')

    def do_PUT(self) -> None:
        self._transfer('PUT')

    def do_CONNECT(self) -> None:
        consoles.serve(self, typing.cast(_Server, self.server).instance.api)

    def log_message(self, format: str, *args: typing.Any) -> None:
        LOG.debug('%s - %s', self.address_string(), format % args)


class _Server(socketserver.ThreadingMixIn,
              xmlrpc.server.SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True
    instance: '_Dispatch'
    down = threading.Event()

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections kept open between calls, closed by stop().
        self.open: set[typing.Any] = set()
        self.open_lock = threading.Lock()

    def process_request_thread(self, request: typing.Any,
                               client_address: typing.Any) -> None:
        with self.open_lock:
            self.open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.open_lock:
                self.open.discard(request)

    # typeshed says str; the stdlib's returns bytes, as this one does.
    def _marshaled_dispatch(  # type: ignore[override]
            self, data: typing.Any, dispatch_method: typing.Any = None,
            path: typing.Any = None) -> bytes:
        # SimpleXMLRPCDispatcher's, answering through wire: the same
        # bytes, without xmlrpc.client's cost per value (see wire).
        try:
            params, method = xmlrpc.client.loads(
                data, use_builtin_types=self.use_builtin_types)
            # A request without a methodName fails in _dispatch, as in
            # SimpleXMLRPCDispatcher.
            response = wire.dumps_response(
                self._dispatch(typing.cast(str, method), params))
        except xmlrpc.client.Fault as fault:
            response = xmlrpc.client.dumps(fault, allow_none=self.allow_none,
                                           encoding=self.encoding)
        except BaseException as exc:
            response = xmlrpc.client.dumps(
                xmlrpc.client.Fault(1, '%s:%s' % (type(exc), exc)),
                encoding=self.encoding, allow_none=self.allow_none)
        return response.encode(self.encoding, 'xmlcharrefreplace')

    def handle_error(self, request: typing.Any,
                     client_address: typing.Any) -> None:
        # The answer of a call whose connection go_down() or stop()
        # closed while it ran has nowhere to go; anything else is the
        # simulator's own error, reported as socketserver does.
        if isinstance(sys.exc_info()[1], OSError):
            LOG.debug('Answer to %s lost: its connection was closed',
                      client_address)
            return
        super().handle_error(request, client_address)

    def close_open(self) -> None:
        """End every kept-open connection, as a xapi that stopped does."""
        with self.open_lock:
            requests = list(self.open)
        for request in requests:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Dispatch:
    """What SimpleXMLRPCServer calls with every method name."""

    def __init__(self, api: xapi.Api) -> None:
        self.api = api

    def _dispatch(self, method: str, params: tuple) -> dict:
        result = self.api.dispatch(method, params)
        if result['Status'] == 'Failure':
            LOG.debug('%s failed: %s', method, result['ErrorDescription'])
        return result


class Simulator:
    """One simulated XAPI host serving over real HTTP(S).

    :param host: address to listen on.
    :param port: port to listen on; 0 picks a free one (see :attr:`url`).
    :param users: user name -> password; ``root``/``password`` by default.
    :param seed: the pool to create, see :mod:`.seed`; ignored when
        ``store`` is given.
    :param certfile: a PEM certificate (and key, unless ``keyfile``) to
        serve HTTPS with.
    :param keyfile: the certificate's PEM key.
    :param store: share another simulator's objects: what :meth:`add_member`
        does for a pool member.
    :param master_address: answer every call but a local login with
        ``HOST_IS_SLAVE`` naming it.
    :param mode: ``xapi`` (the default) behaves as XAPI does;
        ``lenient`` also provisions template disks whose ``sr`` is empty
        on the default SR (see :data:`.api.MODES`).
    :param event_delay: seconds a waiting ``event.from`` sleeps once woken
        before it answers (XAPI's 50 ms, :data:`.api.EVENT_DELAY`).
    """

    def __init__(self, host: str = '127.0.0.1', port: int = 0,
                 users: dict[str, str] | None = None,
                 seed: dict[str, typing.Any] | None = None,
                 certfile: str | None = None, keyfile: str | None = None,
                 store: db.Store | None = None,
                 master_address: str | None = None,
                 mode: str = 'xapi',
                 event_delay: float = xapi.EVENT_DELAY) -> None:
        if mode not in xapi.MODES:
            raise ValueError('mode must be one of %s, not %r'
                             % (', '.join(xapi.MODES), mode))
        #: Whether this simulator made the store (and the disk files).
        self._owns_store = store is None
        if store is None:
            store = db.Store()
            seed = dict(seed or seeding.DEFAULT_SEED)
            seed.setdefault('address', host)
            seeding.populate(store, seed)
        self.store = store
        if not 0 <= event_delay <= 60:
            raise ValueError('event_delay must be 0 to 60 seconds, not %r'
                             % event_delay)
        self.settings = xapi.Settings(master_address=master_address,
                                      mode=mode, event_delay=event_delay)
        if users is not None:
            self.settings.users = dict(users)
        self.api = xapi.Api(store, self.settings)
        self._server = _Server((host, port), _RequestHandler,
                               logRequests=False, allow_none=False)
        self._server.register_instance(_Dispatch(self.api))
        self._server.down = threading.Event()
        self.scheme = 'http'
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True)
            self.scheme = 'https'
        self.settings.console_url = '%s://%s' % (self.scheme, self.address)
        self._thread: threading.Thread | None = None
        self._members: list['Simulator'] = []

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """What a pool member names as its master: ``host:port``.

        XAPI names the master's IP address alone, as every host of a real
        pool listens on the same port; simulators listen on different
        ports, so the port is part of the address.
        """
        return '%s:%d' % (self.host, self.port)

    @property
    def url(self) -> str:
        return '%s://%s/' % (self.scheme, self.address)

    def start(self) -> 'Simulator':
        """Serve in a background thread; returns ``self``."""
        # A short poll so that stop() returns quickly.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={'poll_interval': 0.1},
            name='xapi-simulator', daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving, members included, and close the socket."""
        for member in self._members:
            member.stop()
        self.api.invalidate_sessions()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._server.close_open()
        if self._owns_store:
            vdi_http.disks_of(self.store).close()

    def __enter__(self) -> 'Simulator':
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- knobs -------------------------------------------------------------

    def add_member(self, host: str = '127.0.0.2') -> 'Simulator':
        """Start a pool member that sends every call to this master.

        As in a real pool, the member listens on the master's port at
        another address, and its ``HOST_IS_SLAVE`` names the master's
        address alone (any 127.x address is local on Linux).
        """
        member = Simulator(host, self.port, store=self.store,
                           master_address=self.host, mode=self.settings.mode)
        member.settings.users = self.settings.users
        self._members.append(member)
        return member.start()

    def invalidate_sessions(self) -> int:
        """Log every session out, as a xapi restart does."""
        return self.api.invalidate_sessions()

    def set_max_idle(self, seconds: float) -> None:
        """Expire sessions unused for longer than ``seconds`` (0: never)."""
        self.settings.max_idle = seconds

    def fail(self, method: str, code: str, *params: str,
             nth: int = 1) -> None:
        """Make the ``nth`` next call of ``method`` fail with ``code``.

        :param method: ``class.message``, e.g. ``VM.start``; Async calls
            count as their synchronous method.
        """
        with self.store.lock:
            self.settings.faults.append(
                xapi.Fault(method, code, tuple(params), nth))

    def go_down(self) -> None:
        """Close every request unanswered, as a xapi that died does.

        Calls in progress too: their connections close at once, as the
        kernel closes a dead process's, and a held call's answer, once
        released, is lost.
        """
        self._server.down.set()
        self._server.close_open()

    def go_up(self) -> None:
        """Answer requests again, as a restarted xapi; sessions survive."""
        self._server.down.clear()

    def hold(self, method: str, cancellable: bool = True) -> xapi.Hold:
        """Keep the next call of ``method`` in progress until released.

        It models a slow operation: ``hold.reached`` is set once the call
        arrives; an Async call's task stays ``pending`` until
        ``hold.release()``, and cancelling it ends the operation unless
        ``cancellable`` is false (XAPI cannot cancel every operation: the
        task is then ``cancelling`` and the operation completes once
        released). ``hold.finished`` is set when the call ended.
        """
        hold = xapi.Hold(method, cancellable, self.store.changed)
        with self.store.lock:
            self.settings.holds.append(hold)
        return hold

    def set_guest_tools(self, vm: str, present: bool) -> None:
        """Whether a VM (and VMs cloned from it later) runs a guest agent.

        It takes effect at the VM's next boot, as XAPI learns of an agent
        when it starts reporting.
        """
        with self.store.lock:
            self.store.get('VM', vm)
            self.store.guest_tools[vm] = present

    @property
    def calls(self) -> collections.Counter[str]:
        """How many times each method was called (Async ones included)."""
        return self.api.calls

    def objects(self, cls: str) -> dict[str, db.Record]:
        """A copy of every record of a class, by reference."""
        import copy
        with self.store.lock:
            return copy.deepcopy(self.store.table(cls))

    def set_sm_features(self, sr_type: str, *features: str) -> None:
        """Give SRs of ``sr_type`` these SM features, as a plugin would.

        ``set_sm_features('ext', 'VDI_RESIZE', 'VDI_RESIZE_ONLINE')`` lets
        ``VDI.resize_online`` grow the disks of running VMs there, which
        no stock SM driver allows (see :mod:`.vdis`).
        """
        vdi_ops.set_sm_features(self.store, sr_type, features)


def _fault(text: str) -> tuple[str, str, int]:
    method, _, rest = text.partition(':')
    code, _, nth = rest.partition(':')
    if not method or not code:
        raise argparse.ArgumentTypeError(
            'expected METHOD:CODE[:N], got %r' % text)
    try:
        return method, code, int(nth or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            'N must be an integer in %r' % text) from None


def main(argv: list[str] | None = None) -> int:
    """``compute-driver-xapi-simulator``: serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog='compute-driver-xapi-simulator',
        description='Serve a simulated XAPI pool over XML-RPC for the '
                    'XenAPI SDK and the xenapi backend.')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default: %(default)s)')
    parser.add_argument('--port', type=int, default=8080,
                        help='port to listen on; 0 picks a free one '
                             '(default: %(default)s)')
    parser.add_argument('--username', default='root')
    parser.add_argument('--password', default='password')
    parser.add_argument('--seed-file', help='JSON object overriding the '
                        'default pool (hostname, cpus, memory_mb, sr_gb, '
                        'network, templates, ...)')
    parser.add_argument('--cert', help='PEM certificate: serve HTTPS')
    parser.add_argument('--key', help='PEM key of --cert')
    parser.add_argument('--max-idle', type=float, default=0.0,
                        help='seconds after which an unused session is '
                             'invalid (default: never)')
    parser.add_argument('--member-port', type=int, default=None,
                        help='also serve a pool member on this port that '
                             'answers calls with HOST_IS_SLAVE naming the '
                             'master as HOST:PORT (XAPI names the address '
                             'alone; see add_member())')
    parser.add_argument('--mode', choices=xapi.MODES, default='xapi',
                        help='xapi: behave as XAPI does (default); '
                             'lenient: also provision template disks '
                             'whose sr is empty on the default SR')
    parser.add_argument('--event-delay', type=float,
                        default=xapi.EVENT_DELAY, metavar='SECONDS',
                        help='how long a waiting event.from sleeps once '
                             'woken before it answers, so that changes '
                             'come together, as XAPI does (default: '
                             '%(default)s)')
    parser.add_argument('--fail', type=_fault, action='append', default=[],
                        metavar='METHOD:CODE[:N]',
                        help='fail the Nth call (default 1st) of METHOD '
                             'with error CODE; repeatable')
    parser.add_argument('--debug', action='store_true')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format='%(asctime)s %(levelname)s %(message)s')
    try:
        seed = seeding.load_seed(args.seed_file)
        simulator = Simulator(args.host, args.port,
                              users={args.username: args.password},
                              seed=seed, certfile=args.cert,
                              keyfile=args.key, mode=args.mode,
                              event_delay=args.event_delay)
    except (OSError, ValueError, KeyError, ssl.SSLError) as exc:
        sys.stderr.write('compute-driver-xapi-simulator: %s\n' % exc)
        return 1
    simulator.set_max_idle(args.max_idle)
    for method, code, nth in args.fail:
        simulator.fail(method, code, nth=nth)
    if args.member_port is not None:
        member = Simulator(args.host, args.member_port,
                           store=simulator.store,
                           master_address=simulator.address,
                           mode=args.mode)
        member.settings.users = simulator.settings.users
        simulator._members.append(member.start())
        LOG.info('pool member at %s', member.url)
    LOG.info('XAPI simulator at %s', simulator.url)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        simulator.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        for member in simulator._members:
            member.stop()
        simulator._server.server_close()
    return 0
