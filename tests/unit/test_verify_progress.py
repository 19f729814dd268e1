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

"""How ``compute-driver verify`` shows its progress, off and on a terminal."""

import io
import json
import os
import pty
import threading

import pytest

from compute_driver.cmd import main
from compute_driver.cmd import verify as verify_cmd
from compute_driver import verify

STEPS = len(verify.STEPS)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _results(name, failed=0):
    ops = [s.operation for s in verify.STEPS]
    return tuple(
        verify.StepResult(name, op,
                          verify.FAILED if i < failed else verify.PASSED)
        for i, op in enumerate(ops))


def _lines(stream):
    return stream.getvalue().splitlines()


@pytest.fixture
def conf_file(tmp_path):
    path = tmp_path / 'compute-driver.conf'
    path.write_text('[DEFAULT]\ncompute_driver = fake\nhost = testhost\n')
    return str(path)


def test_a_line_per_instance_when_instances_are_slow():
    stream, clock = io.StringIO(), Clock()
    with verify_cmd._LineProgress(stream, 3, clock=clock) as progress:
        for i in range(3):
            clock.now += 10
            progress.step((i + 1) * STEPS, 3 * STEPS, 0)
            progress.instance('vm%d' % i, _results('vm%d' % i))
    lines = _lines(stream)
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert line.startswith('verify: vm%d done: %d passed, 0 failed, '
                               '0 skipped; %d/3 instances, %d/%d steps, '
                               '0 failed, ' % (i, STEPS, i + 1,
                                               (i + 1) * STEPS, 3 * STEPS))


def test_fast_instances_are_coalesced_but_failures_and_last_shown():
    stream, clock = io.StringIO(), Clock()
    count = 50
    with verify_cmd._LineProgress(stream, count, clock=clock) as progress:
        for i in range(count):
            clock.now += 0.1
            progress.step((i + 1) * STEPS, count * STEPS, 1 if i >= 20 else 0)
            progress.instance('vm%d' % i,
                              _results('vm%d' % i, failed=int(i == 20)))
    lines = _lines(stream)
    # The run takes 5 s: the first instance, the failed one and the last
    # get a line, the others fall within 5 s of the line before.
    assert [line.split()[1] for line in lines] == ['vm0', 'vm20', 'vm49']
    assert '1 failed' in lines[1]
    assert '50/50 instances, %d/%d steps, 1 failed' % (
        count * STEPS, count * STEPS) in lines[-1]


def test_heartbeat_while_an_instance_is_long():
    stream, clock = io.StringIO(), Clock()
    with verify_cmd._LineProgress(stream, 1, clock=clock) as progress:
        for done in range(1, 6):
            clock.now += 20
            progress.step(done, STEPS, 0)
    lines = _lines(stream)
    # Steps end at 20, 40, 60, 80 and 100 s: a line once 30 s went by
    # without one (at 40 s and at 80 s).
    assert lines == [
        'verify: in progress; 0/1 instances, 2/%d steps, 0 failed, 40 s'
        % STEPS,
        'verify: in progress; 0/1 instances, 4/%d steps, 0 failed, 80 s'
        % STEPS]


def test_verify_off_a_terminal_prints_lines_on_stderr(capsys, conf_file):
    rc = main.main(['--config-file', conf_file, 'verify', '--count', '3',
                    '--concurrency', '3', '-f', 'json'])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert len(json.loads(out)) == STEPS
    lines = err.splitlines()
    assert lines and all(line.startswith('verify: ') for line in lines)
    assert '; 3/3 instances, %d/%d steps, 0 failed, ' % (
        3 * STEPS, 3 * STEPS) in lines[-1]
    assert '\r' not in err and '\x1b' not in err


def test_verify_quiet_prints_no_progress(capsys, conf_file):
    rc = main.main(['-q', '--config-file', conf_file, 'verify', '--count',
                    '2', '-f', 'value'])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err == ''
    assert len(out.splitlines()) == STEPS


def test_verify_on_a_terminal_draws_a_bar(conf_file):
    leader, follower = pty.openpty()
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO once the follower side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    stdout = io.StringIO()
    with open(follower, 'w', encoding='utf-8') as stderr:
        assert stderr.isatty()
        application = main.App(stdout=stdout, stderr=stderr)
        try:
            rc = application.run(['--config-file', conf_file, 'verify',
                                  '--count', '2', '-f', 'json'])
        finally:
            application.close()
    reader.join(timeout=60)
    os.close(leader)
    shown = b''.join(chunks).decode('utf-8', 'replace')
    assert rc == 0, shown
    assert len(json.loads(stdout.getvalue())) == STEPS
    # Redrawn in place with terminal control sequences, not lines.
    assert '\x1b[' in shown
    assert 'verify: ' not in shown
    assert '%d/%d' % (2 * STEPS, 2 * STEPS) in shown
    assert '2/2 instances' in shown
