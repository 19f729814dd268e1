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

"""A unix-socket proxy that stops a client at a chosen call.

The fault tests put it between the CLI and a shared daemon (dockerd,
libvirtd), which they must not kill: the proxy forwards everything until
the call a rule names, then holds it -- before forwarding it, or after,
holding the daemon's answer -- and sets :attr:`HoldingProxy.held`. The
client is then stopped at a known step, deterministically, and the test
kills it (SIGKILL) or "kills the daemon" with :meth:`HoldingProxy.die`,
which drops every connection and the socket as a dying daemon would.

Calls are found by a framer: :func:`http_framer` for dockerd's HTTP API,
:func:`libvirt_framer` for libvirt's RPC protocol.
"""

import os
import re
import socket
import threading
import typing

#: framer(buffer) -> (length of the first whole message, its key) or None.
Framer = typing.Callable[[bytes], typing.Optional[tuple[int, object]]]

_API_VERSION = re.compile(r'^/v[0-9.]+(?=/)')


def http_framer(buffer: bytes) -> tuple[int, object] | None:
    """One HTTP/1.1 request; its key is ``(METHOD, path)``.

    The path loses its ``/v1.xx`` prefix and query string.
    """
    end = buffer.find(b'\r\n\r\n')
    if end < 0:
        return None
    head = buffer[:end].decode('latin-1').split('\r\n')
    method, target = head[0].split(' ')[:2]
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(':')
        headers[name.strip().lower()] = value.strip()
    length = end + 4
    if headers.get('transfer-encoding', '').lower() == 'chunked':
        while True:
            line_end = buffer.find(b'\r\n', length)
            if line_end < 0:
                return None
            size = int(buffer[length:line_end].split(b';')[0], 16)
            length = line_end + 2 + size + 2
            if len(buffer) < length:
                return None
            if size == 0:
                break
    else:
        length += int(headers.get('content-length') or 0)
        if len(buffer) < length:
            return None
    path = _API_VERSION.sub('', target.split('?')[0])
    return length, (method, path)


#: libvirt's remote program and the message type of a call.
LIBVIRT_REMOTE_PROGRAM = 0x20008086
LIBVIRT_CALL = 0


def libvirt_framer(buffer: bytes) -> tuple[int, object] | None:
    """One libvirt RPC message; its key is ``(program, procedure, type)``.

    Messages are a 4-byte big-endian length (counting itself), then the
    header: program, version, procedure, type, serial, status.
    """
    if len(buffer) < 4:
        return None
    length = int.from_bytes(buffer[:4], 'big')
    if len(buffer) < length or length < 20:
        return None
    program = int.from_bytes(buffer[4:8], 'big')
    procedure = int.from_bytes(buffer[12:16], 'big')
    kind = int.from_bytes(buffer[16:20], 'big')
    return length, (program, procedure, kind)


class HoldingProxy:
    """Forward a unix socket to ``upstream`` until a rule holds a call.

    :param upstream: the daemon's socket.
    :param path: where to listen.
    :param framer: splits what clients send into calls.
    """

    def __init__(self, upstream: str, path: str, framer: Framer,
                 answer_framer: Framer | None = None) -> None:
        self.upstream = upstream
        self.path = path
        self._framer = framer
        # With it, the answer held is the first whose key's procedure is
        # the held call's (libvirtd also sends events unasked); without,
        # the first bytes the daemon sends (HTTP answers in order).
        self._answer_framer = answer_framer
        self._rule: tuple[typing.Callable[[object], bool], str] | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._dead = threading.Event()
        #: Set once the rule's call is held.
        self.held = threading.Event()
        #: The keys of the calls forwarded so far, in order.
        self.calls: list[object] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True,
                         name='fault-proxy').start()

    def hold(self, matches: typing.Callable[[object], bool],
             phase: str = 'before') -> None:
        """Hold the first call ``matches`` accepts.

        :param phase: ``before``: never forward it; ``after``: forward it
            and hold the daemon's answer.
        """
        if phase not in ('before', 'after'):
            raise ValueError(phase)
        with self._lock:
            self._rule = (matches, phase)

    def _take_rule(self, key: object) -> str | None:
        with self._lock:
            if self._rule is None or not self._rule[0](key):
                return None
            phase = self._rule[1]
            self._rule = None
            return phase

    def _accept(self) -> None:
        while not self._dead.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            hold_answer = _HeldCall()
            threading.Thread(target=self._requests,
                             args=(client, server, hold_answer),
                             daemon=True).start()
            threading.Thread(target=self._answers,
                             args=(server, client, hold_answer),
                             daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket,
                  hold_answer: '_HeldCall') -> None:
        buffer = b''
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b''
            if not data:
                _shutdown(server)
                return
            buffer += data
            while True:
                framed = self._framer(buffer)
                if framed is None:
                    break
                length, key = framed
                phase = self._take_rule(key)
                if phase == 'before':
                    self.held.set()
                    return  # neither this call nor anything after it
                if phase == 'after':
                    hold_answer.key = key
                    hold_answer.set()
                self.calls.append(key)
                try:
                    server.sendall(buffer[:length])
                except OSError:
                    return
                buffer = buffer[length:]

    def _answers(self, server: socket.socket, client: socket.socket,
                 hold_answer: '_HeldCall') -> None:
        buffer = b''
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b''
            if not data:
                _shutdown(client)
                return
            if self._answer_framer is None:
                if hold_answer.is_set():
                    self.held.set()
                    return
                chunks = [data]
            else:
                buffer += data
                chunks = []
                while True:
                    framed = self._answer_framer(buffer)
                    if framed is None:
                        break
                    length, key = framed
                    if hold_answer.is_set() and _same_procedure(
                            key, hold_answer.key):
                        if chunks:
                            _send(client, b''.join(chunks))
                        self.held.set()
                        return
                    chunks.append(buffer[:length])
                    buffer = buffer[length:]
            if chunks and not _send(client, b''.join(chunks)):
                return

    def die(self) -> None:
        """Act as a daemon that died: drop every connection and the socket."""
        self._dead.set()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            _shutdown(sock)
            sock.close()

    close = die


class _HeldCall(threading.Event):
    """Set when a call is forwarded whose answer must be held."""

    key: object = None


def _same_procedure(answer: object, call: object) -> bool:
    return (isinstance(answer, tuple) and isinstance(call, tuple) and
            answer[:2] == call[:2])


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
