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

"""Consoles: the contract's console operations on the fake backend, the
terminal handling of ``compute-driver console`` and ``exec``, and the
commands driven through a pseudo-terminal."""

import os
import pty
import select
import termios
import threading
import tty

import pytest

from compute_driver.cmd import console as cmd_console
from compute_driver.cmd import main
from compute_driver import console
from compute_driver import exception
from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures

IMAGE = 'cirros-0.6.3-x86_64-disk'


@pytest.fixture
def backend():
    conf = fixtures.make_conf('fake', {})
    driver = loader.load_driver(conf, 'fake')
    driver.init_host('testhost')
    return driver


@pytest.fixture
def running(backend):
    instance = objects.Instance.new(
        'con-1', flavors.get_flavor(backend.conf, 'm1.tiny'), IMAGE)
    backend.spawn(instance)
    return instance


def read_until(fd, text, limit=1 << 20):
    """Read ``fd`` until ``text`` arrives; what was read."""
    seen = b''
    while text not in seen:
        select.select([fd], [], [])
        chunk = os.read(fd, 4096)
        assert chunk, 'end of stream before %r in %r' % (text, seen)
        seen += chunk
        assert len(seen) < limit
    return seen


# -- escape handling ----------------------------------------------------------

@pytest.mark.parametrize('data,expected', [
    (b'ls\r', (b'ls\r', False)),
    (b'\x1d', (b'', True)),
    (b'ab\x1dcd', (b'ab', True)),
    (b'\x1d\x1d', (b'', True)),
    (b'', (b'', False)),
])
def test_split_escape(data, expected):
    assert cmd_console.split_escape(data) == expected


# -- the terminal -------------------------------------------------------------

def test_raw_terminal_restores_the_mode_after_an_error():
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        with pytest.raises(RuntimeError):
            with cmd_console.raw_terminal(slave) as is_tty:
                assert is_tty
                during = termios.tcgetattr(slave)
                # Raw: no echo, no line editing, no signals from keys.
                assert not during[3] & (termios.ECHO | termios.ICANON |
                                        termios.ISIG)
                raise RuntimeError('boom')
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_raw_terminal_leaves_a_pipe_alone():
    read_end, write_end = os.pipe()
    try:
        with cmd_console.raw_terminal(read_end) as is_tty:
            assert not is_tty
    finally:
        os.close(read_end)
        os.close(write_end)


def test_window_size_of_a_terminal():
    master, slave = pty.openpty()
    try:
        import fcntl
        import struct
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack('HHHH', 31, 97, 0, 0))
        assert cmd_console.window_size(slave) == (31, 97)
    finally:
        os.close(master)
        os.close(slave)


# -- the session --------------------------------------------------------------

class RecordingStream(console.QueueStream):
    def __init__(self):
        self.sent = []
        self.sizes = []
        self.input_ended = threading.Event()
        super().__init__(self.sent.append,
                         on_resize=lambda r, c: self.sizes.append((r, c)))

    def end_input(self):
        self.input_ended.set()


def _session(stream, **kwargs):
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    session = cmd_console.Session(stream, in_r, out_w, **kwargs)
    return session, in_w, out_r, (in_r, in_w, out_r, out_w)


def test_escape_in_the_middle_of_output_detaches():
    stream = RecordingStream()
    session, in_w, out_r, fds = _session(stream)
    try:
        stream.feed(b'line 1\r\n')
        result = {}
        runner = threading.Thread(
            target=lambda: result.setdefault('how', session.run()))
        runner.start()
        read_until(out_r, b'line 1')
        stream.feed(b'more output\r\n')
        os.write(in_w, b'ls\x1dnot sent')
        runner.join()
        assert result['how'] == cmd_console.DETACHED
        assert stream.sent == [b'ls']
        # Detaching closed the stream; nothing else was asked of it.
        assert stream.read() == b''
        assert not stream.input_ended.is_set()
    finally:
        for fd in fds:
            os.close(fd)


def test_end_of_input_passes_on_and_waits_for_output():
    stream = RecordingStream()
    session, in_w, out_r, fds = _session(stream, escape=False,
                                         end_input_detaches=False)
    try:
        result = {}
        runner = threading.Thread(
            target=lambda: result.setdefault('how', session.run()))
        runner.start()
        # Without escape handling, Ctrl-] is data like any other byte.
        os.write(in_w, b'data\x1d')
        os.close(in_w)
        fds = fds[:1] + fds[2:]
        stream.input_ended.wait()
        stream.feed(b'bye\n')
        stream.finish()
        runner.join()
        assert result['how'] == cmd_console.ENDED
        assert b''.join(stream.sent) == b'data\x1d'
        assert read_until(out_r, b'bye') == b'bye\n'
    finally:
        for fd in fds:
            os.close(fd)


def test_end_of_input_detaches_a_console():
    stream = RecordingStream()
    session, in_w, out_r, fds = _session(stream, escape=False)
    try:
        os.write(in_w, b'echo x\r')
        os.close(in_w)
        fds = fds[:1] + fds[2:]
        assert session.run() == cmd_console.INPUT_ENDED
        assert stream.sent == [b'echo x\r']
    finally:
        for fd in fds:
            os.close(fd)


def test_end_of_input_lingers_for_the_answer():
    stream = RecordingStream()
    session, in_w, out_r, fds = _session(stream, escape=False, linger=0.05)
    try:
        # Answered as soon as it arrives, after the input ended.
        stream._send = lambda data: (stream.sent.append(data),
                                     stream.feed(b'answer\r\n'))
        os.write(in_w, b'question\r')
        os.close(in_w)
        fds = fds[:1] + fds[2:]
        assert session.run() == cmd_console.INPUT_ENDED
        assert stream.sent == [b'question\r']
        assert read_until(out_r, b'answer\r\n') == b'answer\r\n'
    finally:
        for fd in fds:
            os.close(fd)


# -- the contract on the fake backend -----------------------------------------

def test_console_endpoints_hide_their_secrets():
    found = console.VNCConsole(host='127.0.0.1', port=5901,
                               internal_access_path='/console?token=s3cr3t',
                               password='hunter2')
    assert 's3cr3t' not in repr(found)
    assert 'hunter2' not in repr(found)


def test_console_of_a_stopped_instance_is_refused(backend, running):
    backend.power_off(running)
    for call in (backend.open_console, backend.get_vnc_console,
                 backend.get_serial_console):
        with pytest.raises(exception.InvalidPowerState) as caught:
            call(running)
        assert 'console of instance con-1 while it is shutdown' in str(
            caught.value)


def test_second_attach_is_refused_and_first_keeps_working(backend,
                                                          running):
    first = backend.open_console(running)
    with pytest.raises(exception.ConsoleBusy):
        backend.open_console(running)
    first.write(b'echo still here\r')
    seen = b''
    while b'still here\r\n' not in seen:
        seen += first.read()
    first.close()
    backend.open_console(running).close()


def test_console_ends_when_the_instance_stops(backend, running):
    stream = backend.open_console(running)
    backend.power_off(running)
    while stream.read():
        pass
    assert stream.read() == b''


def test_execute_is_not_supported_by_the_fake(backend, running):
    with pytest.raises(exception.NotSupported):
        backend.execute(running, ['true'])


# -- the commands through a pseudo-terminal -----------------------------------

@pytest.fixture
def config(tmp_path):
    path = tmp_path / 'compute-driver.conf'
    path.write_text('[DEFAULT]\ncompute_driver = fake\nhost = testhost\n')
    return str(path)


class PtyApp:
    """The CLI in a thread, its terminal a pseudo-terminal."""

    def __init__(self, conf_file):
        self.master, self.slave = pty.openpty()
        tty.setraw(self.master)
        self.files = [os.fdopen(os.dup(self.slave), mode, buffering=1)
                      for mode in ('r', 'w', 'w')]
        self.app = main.App(*self.files)
        self.conf_file = conf_file

    def run(self, *argv):
        return self.app.run(['--config-file', self.conf_file, *argv])

    def output(self):
        """What the commands wrote on the terminal since the last call."""
        os.write(self.slave, b'\x00')
        return read_until(self.master, b'\x00')[:-1]

    def boot(self, name, *options):
        assert self.run('boot', name, '--image', IMAGE, '--flavor',
                        'm1.tiny', *options) == 0
        self.output()

    def start(self, *argv):
        result = {}
        thread = threading.Thread(
            target=lambda: result.setdefault('rc', self.run(*argv)))
        thread.start()
        return thread, result

    def close(self):
        self.app.close()
        for handle in self.files:
            handle.close()
        os.close(self.master)
        os.close(self.slave)


def test_cli_console_type_read_detach(config):
    term = PtyApp(config)
    try:
        term.boot('con-cli')
        before = termios.tcgetattr(term.slave)
        thread, result = term.start('console', 'con-cli')
        read_until(term.master, b'# ')
        os.write(term.master, b'echo hello from the fake\r')
        read_until(term.master, b'hello from the fake\r\n# ')
        os.write(term.master, cmd_console.ESCAPE)
        thread.join()
        assert result['rc'] == 0
        assert termios.tcgetattr(term.slave) == before
        backend = term.app.driver
        record = backend.find_instance('con-cli')
        assert record.info.state == 1
        assert '# echo hello from the fake' in backend.get_console_output(
            record.instance)
    finally:
        term.close()


@pytest.mark.parametrize('argv,error', [
    (('console', 'nope'), 'Instance nope could not be found.'),
    (('exec', 'con-bad', '--', 'true'),
     'The fake backend does not support execute.'),
])
def test_cli_bad_input_is_one_line(config, argv, error):
    term = PtyApp(config)
    try:
        term.boot('con-bad')
        assert term.run(*argv) == 1
        # The terminal is raw: no carriage return is added.
        assert term.output() == (error + '\n').encode()
    finally:
        term.close()


def test_cli_console_of_stopped_instance(config):
    term = PtyApp(config)
    try:
        term.boot('con-off', '--stopped')
        assert term.run('console', 'con-off') == 1
        assert term.output() == (
            b'Cannot attach to the console of instance con-off while it is '
            b'shutdown; it must be running.\n')
    finally:
        term.close()
