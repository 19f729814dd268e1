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

"""Attach and exec on containers, through the Docker API's hijacked sockets.

``POST /containers/{id}/attach`` and ``POST /exec/{id}/start`` turn their
HTTP connection into a raw byte stream (the docker SDK's ``attach_socket``
and ``exec_start(socket=True)``). Without a TTY, dockerd multiplexes the
standard output and error on it in frames of an 8-byte header (stream
number, three zero bytes, big-endian length) and the payload;
:class:`DockerStream` takes them apart. Closing the stream detaches: the
container, and a command run in it, keep running.
"""

import socket
import struct
import time
import typing

from compute_driver import console
from compute_driver import exception

_HEADER = struct.Struct('>BxxxL')

#: How long to wait for dockerd to record a command's exit status once its
#: output ended, in seconds, and how often to ask meanwhile.
EXIT_STATUS_TIMEOUT = 10.0
EXIT_STATUS_INTERVAL = 0.05


def raw_socket(hijacked: typing.Any) -> socket.socket:
    """The socket under what the docker SDK returns for a hijacked stream.

    A ``socket.SocketIO`` over a Unix or plain TCP socket, or the TLS
    socket itself.
    """
    return typing.cast(socket.socket, getattr(hijacked, '_sock', hijacked))


class DockerStream(console.SocketStream):
    """A container's TTY or a command's standard streams.

    :param hijacked: what ``attach_socket`` or ``exec_start(socket=True)``
        returned; kept so that its HTTP response is not collected (which
        would close a TLS socket).
    :param tty: whether the other end is a terminal; otherwise the
        output comes in frames.
    :param writable: whether its standard input is open; writing to one
        that is not raises :class:`~compute_driver.exception.
        ConsoleUnavailable` with ``reason``.
    :param on_resize: reports a window size to dockerd.
    :param exit_status: reads the command's exit status, for exec.
    """

    def __init__(self, hijacked: typing.Any, tty: bool,
                 writable: bool = True, instance: str = '',
                 on_resize: typing.Callable[[int, int], object]
                 | None = None,
                 exit_status: typing.Callable[[], int | None] | None = None
                 ) -> None:
        super().__init__(raw_socket(hijacked))
        self._hijacked = hijacked
        self.tty = tty
        self._writable = writable
        self._instance = instance
        self._on_resize = on_resize
        self._exit_status = exit_status
        self._pending = b''

    def _recv_exactly(self, size: int) -> bytes:
        data = self._pending
        while len(data) < size:
            chunk = super().read()
            if not chunk:
                return b''
            data += chunk
        self._pending = data[size:]
        return data[:size]

    def read_frame(self) -> tuple[int, bytes]:
        if self.tty:
            if self._pending:
                data, self._pending = self._pending, b''
                return 1, data
            return 1, super().read()
        while True:
            header = self._recv_exactly(_HEADER.size)
            if not header:
                return 1, b''
            channel, size = _HEADER.unpack(header)
            if not size:
                continue
            payload = self._recv_exactly(size)
            if not payload:
                return 1, b''
            return (2 if channel == 2 else 1), payload

    def read(self) -> bytes:
        return self.read_frame()[1]

    def write(self, data: bytes) -> None:
        if not self._writable:
            raise exception.ConsoleUnavailable(
                instance=self._instance, console='input',
                reason='its main process was started without a standard '
                       'input; run a shell with "compute-driver exec" '
                       'instead')
        super().write(data)

    def resize(self, rows: int, columns: int) -> None:
        if self.tty and self._on_resize is not None:
            self._on_resize(rows, columns)

    def exit_status(self) -> int | None:
        if self._exit_status is None:
            return None
        return self._exit_status()


def attach(api: typing.Any, container: dict[str, typing.Any],
           instance: str) -> DockerStream:
    """Attach to a running container's main process."""
    config = container.get('Config') or {}
    tty = bool(config.get('Tty'))
    stdin = bool(config.get('OpenStdin'))
    params = {'stdout': 1, 'stderr': 1, 'stream': 1, 'stdin': int(stdin)}
    hijacked = api.attach_socket(container['Id'], params=params)
    return DockerStream(
        hijacked, tty=tty, writable=stdin, instance=instance,
        on_resize=lambda rows, cols: api.resize(
            container['Id'], height=rows, width=cols))


def execute(api: typing.Any, container: dict[str, typing.Any],
            command: list[str], tty: bool) -> DockerStream:
    """Run ``command`` in a running container."""
    created = api.exec_create(container['Id'], command, stdin=True,
                              stdout=True, stderr=True, tty=tty)
    exec_id = created['Id']
    hijacked = api.exec_start(exec_id, tty=tty, socket=True)

    def exit_status() -> int | None:
        # The output ends when the command exits, but dockerd records the
        # status a moment later; it has no call that waits for it.
        deadline = time.monotonic() + EXIT_STATUS_TIMEOUT
        while True:
            state = api.exec_inspect(exec_id)
            if not state.get('Running'):
                code = state.get('ExitCode')
                return None if code is None else int(code)
            if time.monotonic() > deadline:
                return None
            time.sleep(EXIT_STATUS_INTERVAL)

    return DockerStream(
        hijacked, tty=tty, on_resize=lambda rows, cols: api.exec_resize(
            exec_id, height=rows, width=cols),
        exit_status=exit_status)
