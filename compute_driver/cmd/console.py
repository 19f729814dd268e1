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

"""Interactive commands: ``console``, ``exec`` and ``console-url``.

``console`` and ``exec`` copy the terminal to a
:class:`~compute_driver.console.ConsoleStream` and back. On a terminal
they put it in raw mode (restored however the command ends), report its
window size and detach on the escape character, Ctrl-], which leaves the
instance running; in a pipe they copy bytes as they are, ``console``
detaching at the end of its input and ``exec`` passing that end on to the
command, whose exit status becomes the command's own.
"""

import argparse
import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import termios
import threading
import tty
import typing

from compute_driver.cmd import common
from compute_driver import console as cd_console

#: Ctrl-]: detaches, as in telnet and ``virsh console``.
ESCAPE = b'\x1d'
#: How the escape character is spelled for users.
ESCAPE_NAME = '^]'
#: How long the copy of the remaining output may take after a detach or
#: the end of the stream, in seconds: a stream that does not end when
#: closed must not hang the command.
OUTPUT_DRAIN_TIMEOUT = 10.0

#: Why :meth:`Session.run` returned.
DETACHED = 'detached'
ENDED = 'ended'
INPUT_ENDED = 'input ended'


def split_escape(data: bytes, escape: bytes = ESCAPE
                 ) -> tuple[bytes, bool]:
    """Split typed input at the escape character.

    :returns: the bytes to send (those before the escape) and whether the
        escape character was typed; what follows it is dropped.
    """
    index = data.find(escape)
    if index < 0:
        return data, False
    return data[:index], True


def window_size(fd: int) -> tuple[int, int] | None:
    """The rows and columns of the terminal ``fd``, or ``None``."""
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b'\0' * 8)
    except OSError:
        return None
    rows, columns = struct.unpack('HHHH', packed)[:2]
    if not rows or not columns:
        return None
    return rows, columns


@contextlib.contextmanager
def raw_terminal(fd: int) -> typing.Iterator[bool]:
    """Put the terminal ``fd`` in raw mode, and always put it back.

    Raw mode sends every key (Ctrl-C, Ctrl-D, Ctrl-Z...) to the instance
    instead of acting on this process. The previous mode is restored when
    the block ends, whether it returns or raises, and also when SIGTERM
    or SIGHUP end the process meanwhile (they are turned into SystemExit
    so that the restore runs).

    :returns: whether ``fd`` is a terminal (nothing changed otherwise).
    """
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    handlers: dict[signal.Signals, typing.Any] = {}

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            handlers[signum] = signal.signal(signum, leave)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield True
    finally:
        # Now, not after the output drains: a reader that stopped reading
        # (a flood still being copied when the escape came) would keep
        # the terminal raw, and this process alive, for ever.
        termios.tcsetattr(fd, termios.TCSANOW, saved)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]


class Session:
    """Copies a terminal or a pipe to a stream and back, once.

    :param stream: the console or command; the session closes it.
    :param stdin: the file descriptor input is read from.
    :param stdout: where the stream's output goes.
    :param stderr: where a command's standard error goes, when the
        stream keeps it apart.
    :param escape: whether the escape character detaches; ``False``
        sends it like any other byte (binary data in a pipe).
    :param end_input_detaches: what the end of the input does: detach
        (a console, which has no end of input) or pass it on to the
        stream and wait for its output to end (a command).
    :param linger: when the end of the input detaches, first copy the
        output until none came for this many seconds: a console answers
        the last line of a pipe after that line is sent, and a
        hypervisor may drop input still queued when a session closes.
    """

    def __init__(self, stream: cd_console.ConsoleStream, stdin: int,
                 stdout: int, stderr: int | None = None,
                 escape: bool = True,
                 end_input_detaches: bool = True,
                 linger: float = 0.0) -> None:
        self.stream = stream
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr if stderr is not None else stdout
        self.escape = escape
        self.end_input_detaches = end_input_detaches
        self.linger = linger
        self._wake_r, self._wake_w = os.pipe()
        # Never blocks the output thread: a wake-up already pending is
        # as good as another.
        os.set_blocking(self._wake_w, False)
        self._resized = threading.Event()
        self._output_done = threading.Event()
        self._output_error: BaseException | None = None

    def _copy_output(self) -> None:
        try:
            while True:
                channel, data = self.stream.read_frame()
                if not data:
                    return
                _write_all(self.stderr if channel == 2 else self.stdout,
                           data)
                self._wake()
        except OSError as exc:
            # Our own output went away (the reader of the pipe quit): the
            # session is over, and its error is the command's.
            if exc.errno != errno.EPIPE:
                self._output_error = exc
        finally:
            self._output_done.set()
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b'.')
        except BlockingIOError:
            pass  # the pipe is full of wake-ups not yet read

    def _on_resize(self, signum: int, frame: object) -> None:
        self._resized.set()
        self._wake()

    def _report_size(self) -> None:
        size = window_size(self.stdin)
        if size is not None:
            self.stream.resize(*size)

    def run(self) -> str:
        """Copy until a detach, the end of the stream or of the input.

        :returns: :data:`DETACHED`, :data:`ENDED` or :data:`INPUT_ENDED`.
        """
        output = threading.Thread(target=self._copy_output,
                                  name='console-output', daemon=True)
        previous = None
        watch_size = (os.isatty(self.stdin) and threading.current_thread()
                      is threading.main_thread())
        try:
            if watch_size:
                previous = signal.signal(signal.SIGWINCH, self._on_resize)
                self._report_size()
            output.start()
            return self._copy_input()
        finally:
            self.stream.close()
            if output.ident is not None:
                output.join(OUTPUT_DRAIN_TIMEOUT)
            if previous is not None:
                signal.signal(signal.SIGWINCH, previous)
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self._output_error is not None:
                raise self._output_error

    def _copy_input(self) -> str:
        reading = True
        lingering = False
        while True:
            watched = [self._wake_r] + ([self.stdin] if reading else [])
            ready = select.select(watched, [], [],
                                  self.linger if lingering else None)[0]
            if not ready:
                return INPUT_ENDED
            if self._wake_r in ready:
                os.read(self._wake_r, 512)
                if self._resized.is_set():
                    self._resized.clear()
                    self._report_size()
                if self._output_done.is_set():
                    return ENDED
            if self.stdin not in ready:
                continue
            data = os.read(self.stdin, 4096)
            if not data:
                reading = False
                if self.end_input_detaches:
                    if self.linger <= 0:
                        return INPUT_ENDED
                    lingering = True
                    continue
                self.stream.end_input()
                continue
            detach = False
            if self.escape:
                data, detach = split_escape(data)
            if data:
                try:
                    self.stream.write(data)
                except OSError:
                    # The other end closed: the output thread sees the
                    # end too and reports it.
                    reading = False
            if detach:
                return DETACHED


def _fileno(stream: typing.IO[typing.Any]) -> int:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        raise common.UsageError(
            'this command needs a terminal or a pipe on its standard '
            'input and output') from None


class _Interactive(common.Command):
    """Base of ``console`` and ``exec``: runs one :class:`Session`."""

    def open(self, backend: typing.Any, instance: typing.Any,
             parsed_args: argparse.Namespace) -> cd_console.ConsoleStream:
        """Open the stream the session copies."""
        raise NotImplementedError

    #: Whether the end of the input detaches (see :class:`Session`).
    end_input_detaches = True

    def linger(self, parsed_args: argparse.Namespace) -> float:
        """Seconds of quiet output before the end of input detaches."""
        return 0.0

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('instance', metavar='NAME',
                            help='Name or uuid of the instance.')
        return parser

    def take_action(self, parsed_args):
        stdin = _fileno(self.app.stdin)
        stdout = _fileno(self.app.stdout)
        stderr = _fileno(self.app.stderr)
        backend = self.app.driver
        instance = backend.find_instance(parsed_args.instance).instance
        self.app.stdout.flush()
        stream = self.open(backend, instance, parsed_args)
        interactive = os.isatty(stdin)
        session = Session(stream, stdin, stdout, stderr,
                          escape=interactive,
                          end_input_detaches=self.end_input_detaches,
                          linger=self.linger(parsed_args))
        if interactive:
            self.app.stderr.write(
                'Connected to %s; escape character is %s\r\n'
                % (instance.name, ESCAPE_NAME))
            self.app.stderr.flush()
        with raw_terminal(stdin):
            how = session.run()
        if interactive and how == DETACHED:
            self.app.stderr.write('\nDetached from %s\n' % instance.name)
        return self.result(stream, how)

    def result(self, stream: cd_console.ConsoleStream, how: str) -> int:
        """The exit code once the session ended ``how``."""
        return 0


class AttachConsole(_Interactive):
    """Attach the terminal to an instance's serial console or TTY.

    Ctrl-] detaches and leaves the instance running. In a pipe, the
    input is sent as it is and, once it ended, the output is copied until
    it has been quiet for --linger seconds.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--linger', metavar='SECONDS', type=float, default=2.0,
            help='In a pipe, after the end of the input, go on copying the '
                 'output until none came for this many seconds, then '
                 'detach (default: 2).')
        return parser

    def linger(self, parsed_args):
        if not 0 <= parsed_args.linger <= 3600:
            raise common.UsageError('--linger must be from 0 to 3600 '
                                    'seconds, got %s' % parsed_args.linger)
        return parsed_args.linger

    def open(self, backend, instance, parsed_args):
        common.require(backend, 'attach_console')
        return backend.open_console(instance)


class ExecCommand(_Interactive):
    """Run a command in a container, with its input and output here.

    Exits with the command's exit status. Ctrl-] detaches from a command
    run on a terminal and leaves it running.
    """

    end_input_detaches = False

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--tty', action=argparse.BooleanOptionalAction, default=None,
            help='Give the command a terminal; by default it gets one '
                 'when the standard input is a terminal.')
        parser.add_argument(
            'command', nargs=argparse.REMAINDER, metavar='-- COMMAND',
            help='The program to run and its arguments, after "--".')
        return parser

    def open(self, backend, instance, parsed_args):
        command = list(parsed_args.command)
        if command[:1] == ['--']:
            command = command[1:]
        if not command:
            raise common.UsageError('exec needs a command after "--"')
        common.require(backend, 'execute')
        use_tty = parsed_args.tty
        if use_tty is None:
            use_tty = os.isatty(_fileno(self.app.stdin))
        return backend.execute(instance, command, tty=use_tty)

    def result(self, stream, how):
        if how == DETACHED:
            return 0
        status = stream.exit_status()
        return common.EXIT_FAILURE if status is None else status


class ShowConsoleURL(common.ShowOne):
    """Show where a proxy reaches an instance's VNC or serial console."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('instance', metavar='NAME',
                            help='Name or uuid of the instance.')
        parser.add_argument('--type', choices=('vnc', 'serial'),
                            default='vnc', help='The console type.')
        return parser

    def take_action(self, parsed_args):
        backend = self.app.driver
        operation = parsed_args.type + '_console'
        common.require(backend, operation)
        instance = backend.find_instance(parsed_args.instance).instance
        if parsed_args.type == 'vnc':
            found: cd_console.Console = backend.get_vnc_console(instance)
            scheme = 'vnc'
        else:
            found = backend.get_serial_console(instance)
            scheme = 'telnet'
        host = found.host if ':' not in found.host else '[%s]' % found.host
        # The access path and the password are secrets: the command shows
        # where the console is, not how to get past its checks.
        return (('Type', 'Host', 'Port', 'URL'),
                (found.kind, found.host, found.port,
                 '%s://%s:%d' % (scheme, host, found.port)))
