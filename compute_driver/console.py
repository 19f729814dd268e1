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

"""Interactive consoles: what the console operations of the contract return.

Two kinds, as in Nova:

* endpoints a proxy connects to (:class:`VNCConsole`,
  :class:`SerialConsole`), Nova's ``nova.console.type`` objects in the
  library's terms, returned by
  :meth:`~compute_driver.driver.ComputeDriver.get_vnc_console` and
  :meth:`~compute_driver.driver.ComputeDriver.get_serial_console`;
* a byte stream to the instance's serial console or TTY, or to a command
  run in a container (:class:`ConsoleStream`), returned by
  :meth:`~compute_driver.driver.ComputeDriver.open_console` and
  :meth:`~compute_driver.driver.ComputeDriver.execute`, which the
  ``compute-driver console`` and ``exec`` commands copy to and from the
  terminal.

Passwords and tokens are secrets: they are left out of ``repr`` and so
out of every log record that formats a console.
"""

import abc
import dataclasses
import queue
import socket
import threading
import typing


@dataclasses.dataclass(frozen=True)
class Console:
    """Where a console proxy connects to reach an instance's console.

    :param host: the address the console listens on (an address of the
        host, never all interfaces).
    :param port: its TCP port.
    :param internal_access_path: the path a proxy requests after
        connecting, for consoles behind an HTTP endpoint (XAPI's); it may
        carry a session token, so it is not shown by ``repr``.
    """

    host: str
    port: int
    internal_access_path: str | None = dataclasses.field(
        default=None, repr=False)

    #: Nova's name of the console type (``nova.console.type``).
    kind: typing.ClassVar[str] = ''


@dataclasses.dataclass(frozen=True)
class VNCConsole(Console):
    """An RFB (VNC) server showing the instance's display.

    :param password: the VNC password the server asks for, or ``None``;
        a secret, never shown by ``repr``.
    """

    password: str | None = dataclasses.field(default=None, repr=False)

    kind: typing.ClassVar[str] = 'novnc'


@dataclasses.dataclass(frozen=True)
class SerialConsole(Console):
    """A raw TCP socket carrying the instance's serial port."""

    kind: typing.ClassVar[str] = 'serial'


class ConsoleStream(abc.ABC):
    """A bidirectional byte stream to a console or to a command.

    :meth:`read` blocks in one thread while :meth:`write`, :meth:`resize`
    and :meth:`close` are called from another; :meth:`close` makes a
    blocked :meth:`read` return ``b''``. Closing detaches: the instance,
    and a container's main process, keep running.
    """

    #: Whether the other end is a terminal (a container TTY, a command
    #: run with ``tty=True``): the caller then puts its own terminal in
    #: raw mode and reports window sizes. A serial port is one too.
    tty: bool = True

    @abc.abstractmethod
    def read(self) -> bytes:
        """The next bytes the instance writes; ``b''`` once the stream ends.

        A stream closed by either end reads ``b''``, never raises.
        """

    def read_frame(self) -> tuple[int, bytes]:
        """The next bytes and the channel they came on.

        The channel is 1 for the output, 2 for a command's standard error
        when the stream keeps it apart; ``(1, b'')`` once the stream ends.
        """
        return 1, self.read()

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send ``data`` to the instance as typed input."""

    def end_input(self) -> None:
        """Tell the other end no more input comes (end of file).

        A command reading its standard input then sees its end; a console
        has no such thing and ignores it.
        """

    def resize(self, rows: int, columns: int) -> None:
        """Report the caller's window size; a serial port ignores it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Detach; idempotent, callable from any thread."""

    def exit_status(self) -> int | None:
        """The exit status of the command, once :meth:`read` ended.

        ``None`` for a console, and for a command whose status is not
        known.
        """
        return None

    def __enter__(self) -> 'ConsoleStream':
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SocketStream(ConsoleStream):
    """A :class:`ConsoleStream` over a connected socket.

    :param sock: the socket; the stream owns it.
    :param on_close: called once after the socket is closed.
    """

    def __init__(self, sock: socket.socket,
                 on_close: typing.Callable[[], object] | None = None) -> None:
        self._sock = sock
        self._on_close = on_close
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def read(self) -> bytes:
        if self._closed.is_set():
            return b''
        try:
            return self._sock.recv(65536)
        except OSError:
            return b''

    def write(self, data: bytes) -> None:
        if self._closed.is_set():
            raise ConnectionError('the console stream is closed')
        self._sock.sendall(data)

    def end_input(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed by the other end: nothing to tell it

    def close(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        # shutdown, not only close: it wakes a recv() blocked in another
        # thread, which close() alone does not on Linux.
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the other end went first
        self._sock.close()
        if self._on_close is not None:
            self._on_close()


class QueueStream(ConsoleStream):
    """A :class:`ConsoleStream` fed by a backend thread or callback.

    The backend calls :meth:`feed` with what the instance writes and
    :meth:`finish` when the stream ends; writes go to ``send``.

    :param send: delivers the caller's input to the instance.
    :param on_close: called once when the caller detaches.
    """

    _END = b''

    def __init__(self, send: typing.Callable[[bytes], object],
                 on_close: typing.Callable[[], object] | None = None,
                 on_resize: typing.Callable[[int, int], object]
                 | None = None) -> None:
        self._send = send
        self._on_close = on_close
        self._on_resize = on_resize
        self._queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        """Hand bytes the instance wrote to the reader."""
        if data:
            self._queue.put(data)

    def finish(self) -> None:
        """End the stream: the reader gets ``b''`` after what is queued."""
        self._queue.put(self._END)

    def read(self) -> bytes:
        if self._closed.is_set():
            return b''
        data = self._queue.get()
        if not data:
            # Let every other reader see the end as well.
            self._queue.put(self._END)
        return data

    def write(self, data: bytes) -> None:
        if self._closed.is_set():
            raise ConnectionError('the console stream is closed')
        self._send(data)

    def resize(self, rows: int, columns: int) -> None:
        if self._on_resize is not None:
            self._on_resize(rows, columns)

    def close(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        self.finish()
        if self._on_close is not None:
            self._on_close()
