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

"""``compute-driver console`` and ``exec`` on a pseudo-terminal, against a
real libvirt guest (QEMU) and a real docker container.

The libvirt test guest runs a shell on its serial console (see
``tools/build-libvirt-test-image.sh``); ``COMPUTE_DRIVER_CONSOLE_TEST_IMAGE``
names another build of it in the image store when the default one
predates that shell.
"""

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time

import pytest

from compute_driver import exception
from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures
from tests.functional import docker_env

ESCAPE = b'\x1d'
#: Seconds a step may take before the test gives up (not a timing check:
#: QEMU emulates the guest's CPU on a busy machine).
STEP_TIMEOUT = 180


class Terminal:
    """A CLI command running on a pseudo-terminal of its own."""

    def __init__(self, config, *argv, rows=24, columns=80):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack('HHHH', rows, columns, 0, 0))
        env = dict(os.environ, COLUMNS=str(columns))
        self.process = subprocess.Popen(
            [fixtures.console_script(), '--config-file', str(config),
             *argv], stdin=slave, stdout=slave, stderr=slave, env=env,
            start_new_session=True)
        os.close(slave)
        self.seen = b''

    def expect(self, text):
        """Read until ``text`` arrives; everything read so far."""
        if isinstance(text, str):
            text = text.encode()
        deadline = time.monotonic() + STEP_TIMEOUT
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [],
                                              left)[0]:
                pytest.fail('%r did not arrive; the terminal shows %r'
                            % (text, self.seen[-2000:]))
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the command exited
                chunk = b''
            if not chunk:
                pytest.fail('the command ended before %r; it showed %r'
                            % (text, self.seen[-2000:]))
            self.seen += chunk
        return self.seen

    def send(self, data):
        os.write(self.master, data)

    def wait(self):
        """The exit code, once the command ended.

        Reads the terminal meanwhile, as a terminal emulator does: a
        command still writing a flood when it is told to stop would
        otherwise block on a full terminal and never exit.
        """
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [],
                                              left)[0]:
                break
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                break
            if not chunk:
                break
            self.seen += chunk
        return self.process.wait(timeout=max(deadline - time.monotonic(),
                                             1))

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.fixture
def terminals():
    made = []

    def open_terminal(config, *argv, **kwargs):
        made.append(Terminal(config, *argv, **kwargs))
        return made[-1]
    yield open_terminal
    for terminal in made:
        terminal.close()


def _run(config, *argv, stdin=b''):
    return subprocess.run(
        [fixtures.console_script(), '--config-file', str(config), *argv],
        input=stdin, capture_output=True, timeout=STEP_TIMEOUT)


def _one_line_error(result, text):
    assert result.returncode == 1
    assert result.stdout == b''
    assert result.stderr.decode() == text + '\n'


def _config(tmp_path, backend, options):
    lines = ['[DEFAULT]', 'compute_driver = %s' % backend]
    for group, values in sorted(options.items(),
                                key=lambda item: item[0] != 'DEFAULT'):
        if group != 'DEFAULT':
            lines.append('[%s]' % group)
        for key, value in values.items():
            if isinstance(value, list):
                value = ','.join(value)
            lines.append('%s = %s' % (key, value))
    path = tmp_path / 'compute-driver.conf'
    path.write_text('\n'.join(lines) + '\n')
    return path


# -- libvirt ----------------------------------------------------------------

@pytest.fixture
def libvirt_guest(tmp_path):
    from tests.functional import test_libvirt
    test_libvirt._require_libvirtd()
    image = os.environ.get('COMPUTE_DRIVER_CONSOLE_TEST_IMAGE',
                           test_libvirt.IMAGE)
    conf = fixtures.make_conf('libvirt', test_libvirt.OVERRIDES)
    backend = loader.load_driver(conf, 'libvirt')
    backend.init_host(conf.host)
    instance = objects.Instance.new(
        'console-lv-%s' % os.urandom(4).hex(),
        flavors.get_flavor(conf, test_libvirt.FLAVOR), image)
    backend.spawn(instance)
    try:
        test_libvirt._wait_for_console(backend, instance,
                                       test_libvirt.BOOT_LINE)
        config = _config(tmp_path, 'libvirt', test_libvirt.OVERRIDES)
        yield backend, instance, config
    finally:
        backend.destroy(instance)
        backend.cleanup_host(conf.host)


def _wait_for_log(backend, instance, text):
    deadline = time.monotonic() + STEP_TIMEOUT
    while text not in backend.get_console_output(instance):
        if time.monotonic() > deadline:
            pytest.fail('%r is not in the console log of %s'
                        % (text, instance.name))
        time.sleep(0.5)


def test_libvirt_console_shell_detach_and_log(libvirt_guest, terminals):
    backend, instance, config = libvirt_guest
    term = terminals(config, 'console', instance.name)
    term.expect('escape character is ^]')
    term.send(b'\r')
    term.expect('# ')
    # The shell computes the answer: an echo of what was typed cannot
    # pass for it.
    term.send(b'echo con$((40+2))sole\r')
    term.expect('con42sole\r\n')
    # The console log keeps what the serial port prints while attached.
    _wait_for_log(backend, instance, 'con42sole')

    # One session at a time: a second one is refused, the first goes on.
    with pytest.raises(exception.ConsoleBusy):
        backend.open_console(instance)
    second = _run(config, 'console', instance.name)
    _one_line_error(second, 'The serial console of instance %s is in use '
                            'by another session; detach it first.'
                    % instance.name)

    # An escape in the middle of output detaches at once. Bounded: what
    # the guest prints while nobody is attached waits in the PTY's buffer,
    # and a guest that fills it waits for the next session to drain it.
    term.send(b'i=0; while [ $i -lt 300 ]; do echo tick$i; '
              b'i=$((i+1)); done; echo loop$((2+3))done\r')
    term.expect('tick100\r\n')
    term.send(ESCAPE)
    assert term.wait() == 0
    assert b'Detached from %s' % instance.name.encode() in term.seen
    assert backend.get_info(instance).state == power_state.RUNNING

    # Attach again: the loop went on while detached, and the shell is
    # still there.
    _wait_for_log(backend, instance, 'loop5done')
    again = terminals(config, 'console', instance.name)
    again.expect('escape character is ^]')
    again.send(b'\recho back$((1+1))\r')
    again.expect('back2\r\n')
    again.send(ESCAPE)
    assert again.wait() == 0
    _wait_for_log(backend, instance, 'back2')


def test_libvirt_console_in_a_pipe(libvirt_guest):
    backend, instance, config = libvirt_guest
    # A generous --linger: the emulated guest answers slowly on a busy
    # machine.
    result = _run(config, 'console', instance.name, '--linger', '15',
                  stdin=b'\recho pi$((3+4))pe\r')
    assert result.returncode == 0, result.stderr
    assert result.stderr == b''
    assert b'pi7pe\r\n' in result.stdout
    _wait_for_log(backend, instance, 'pi7pe')
    assert backend.get_info(instance).state == power_state.RUNNING


def test_libvirt_console_bad_input(libvirt_guest):
    backend, instance, config = libvirt_guest
    _one_line_error(_run(config, 'console', 'console-no-such-guest'),
                    'Instance console-no-such-guest could not be found.')
    _one_line_error(_run(config, 'exec', instance.name, '--', 'true'),
                    'The libvirt backend does not support execute.')
    backend.power_off(instance)
    _one_line_error(
        _run(config, 'console', instance.name),
        'Cannot attach to the console of instance %s while it is '
        'shutdown; it must be running.' % instance.name)
    assert backend.get_info(instance).state == power_state.SHUTDOWN


def test_libvirt_vnc_console_is_an_rfb_server(libvirt_guest):
    backend, instance, config = libvirt_guest
    found = backend.get_vnc_console(instance)
    assert found.host == '127.0.0.1'
    import socket
    with socket.create_connection((found.host, found.port), timeout=30) as s:
        assert s.recv(12).startswith(b'RFB 003.')
    shown = _run(config, 'console-url', instance.name, '-f', 'value')
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.decode().split() == [
        'novnc', '127.0.0.1', str(found.port),
        'vnc://127.0.0.1:%d' % found.port]


# -- docker -----------------------------------------------------------------

@pytest.fixture
def container(tmp_path):
    docker_env.raw_client().close()
    options = docker_env.overrides()
    conf = fixtures.make_conf('docker', options)
    backend = loader.load_driver(conf, 'docker')
    backend.init_host(conf.host)
    instance = objects.Instance.new(
        'console-dk-%s' % os.urandom(4).hex(),
        flavors.get_flavor(conf, 'm1.tiny'), docker_env.IMAGE)
    backend.spawn(instance)
    try:
        yield backend, instance, _config(tmp_path, 'docker', options)
    finally:
        backend.destroy(instance)
        backend.cleanup_host(conf.host)


def test_docker_exec_shell_on_a_terminal(container, terminals):
    backend, instance, config = container
    term = terminals(config, 'exec', instance.name, '--', 'sh',
                     rows=33, columns=101)
    term.expect('# ')
    term.send(b'echo ex$((6*7))ec; stty size\r')
    term.expect('ex42ec\r\n33 101\r\n')
    term.send(b'exit 7\r')
    assert term.wait() == 7
    assert backend.get_info(instance).state == power_state.RUNNING


def test_docker_exec_detach_leaves_the_container(container, terminals):
    backend, instance, config = container
    term = terminals(config, 'exec', instance.name, '--', 'sh')
    term.expect('# ')
    term.send(b'while true; do echo tock; done\r')
    term.expect('tock\r\ntock\r\n')
    term.send(ESCAPE)
    assert term.wait() == 0
    assert backend.get_info(instance).state == power_state.RUNNING


def test_docker_exec_in_a_pipe(container):
    backend, instance, config = container
    result = _run(config, 'exec', instance.name, '--', 'sh', '-c',
                  'cat; echo oops >&2; exit 4', stdin=b'piped\x1d bytes')
    assert result.returncode == 4
    assert result.stdout == b'piped\x1d bytes'
    assert result.stderr == b'oops\n'


def test_docker_console_shows_the_main_process(container, terminals):
    backend, instance, config = container
    term = terminals(config, 'console', instance.name)
    term.expect('escape character is ^]')
    # Written by the main process (pid 1): what attach shows.
    with backend.execute(instance, ['sh', '-c',
                                    'echo att$((2+3))ach > /proc/1/fd/1'
                                    ]) as stream:
        while stream.read():
            pass
    term.expect('att5ach')
    term.send(ESCAPE)
    assert term.wait() == 0
    assert backend.get_info(instance).state == power_state.RUNNING


def test_docker_bad_input(container):
    backend, instance, config = container
    result = _run(config, 'exec', instance.name)
    assert result.returncode == 2
    assert result.stderr == (b'compute-driver: error: exec needs a command '
                             b'after "--"\n')
    _one_line_error(_run(config, 'console-url', instance.name),
                    'The docker backend does not support vnc_console.')
    backend.power_off(instance)
    _one_line_error(
        _run(config, 'exec', instance.name, '--', 'true'),
        'Cannot run a command in instance %s while it is shutdown; it '
        'must be running.' % instance.name)
