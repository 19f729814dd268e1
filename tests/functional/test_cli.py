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

"""The installed ``compute-driver`` console script, run as a user runs it."""

import json
import os
import subprocess

import pytest

from compute_driver import loader
from compute_driver.testing import fixtures
from compute_driver import verify

IMAGE = 'cirros-0.6.3-x86_64-disk'


@pytest.fixture(scope='module')
def script():
    return fixtures.console_script()


@pytest.fixture
def config(tmp_path):
    def write(backend='fake'):
        path = tmp_path / ('%s.conf' % backend)
        path.write_text('[DEFAULT]\ncompute_driver = %s\nhost = functest\n'
                        % backend)
        return str(path)
    return write


@pytest.fixture
def run(script, tmp_path):
    # HOME points at an empty directory so ~/.compute-driver is not read.
    env = dict(os.environ, HOME=str(tmp_path), COLUMNS='200')

    def run(*argv, stdin=None):
        return subprocess.run([script, *argv], input=stdin, env=env,
                              capture_output=True, text=True, timeout=120)
    return run


def test_drivers_lists_fake(run):
    result = run('drivers', '-f', 'json')
    assert result.returncode == 0, result.stderr
    assert {'Name': 'fake',
            'Entry Point': 'compute_driver.fake.driver:FakeDriver',
            'Status': 'ok'} in json.loads(result.stdout)


def test_drivers_metadata_agrees_with_loading(run):
    # The fast path reads package metadata; --load imports every backend
    # and its SDK. On a correctly installed environment both agree.
    fast = run('drivers', '-f', 'json')
    loaded = run('drivers', '--load', '-f', 'json')
    assert fast.returncode == 0 == loaded.returncode, (
        fast.stderr + loaded.stderr)
    assert json.loads(fast.stdout) == json.loads(loaded.stdout)


def test_verify_off_a_terminal_prints_progress_lines(run, config):
    result = run('--config-file', config(), 'verify', '--count', '2',
                 '-f', 'value', '-c', 'Operation')
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith('verify: ') for line in lines)
    assert '; 2/2 instances, ' in lines[-1]


def test_check(run, config):
    result = run('--config-file', config(), 'check', '-f', 'json')
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data['hypervisor_type'], data['hypervisor_hostname']) == (
        'fake', 'functest')


def test_verify_twenty_instances(run, config):
    result = run('--config-file', config(), 'verify', '--count', '20',
                 '--concurrency', '4')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [cell.strip() for cell in lines[1].split('|')[1:-1]] == [
        'Operation', 'Passed', 'Failed', 'Skipped', 'Not Run', 'p50 (ms)',
        'p95 (ms)', 'Max (ms)', 'Notes']
    rows = {cells[0]: cells for cells in (
        [cell.strip() for cell in line.split('|')[1:-1]]
        for line in lines[3:-1])}
    assert list(rows) == [step.operation for step in verify.STEPS]
    # Running a command is a container's operation: the fake backend, a
    # stand-in for a hypervisor, says so once per instance.
    assert rows.pop('execute')[1:5] == ['0', '0', '20', '0']
    assert all(row[1:5] == ['20', '0', '0', '0'] and row[8] == ''
               for row in rows.values()), rows


def test_unknown_backend_fails_without_traceback(run, config):
    result = run('--config-file', config('nosuch'), 'check')
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr
    assert result.stderr.splitlines() == [
        "Compute driver 'nosuch' is not installed. Installed drivers: %s."
        % ', '.join(loader.installed_drivers())]


def test_interactive_mode_keeps_instances(run, config):
    commands = ('boot vm1 --image %s --flavor m1.nano\n'
                'list\n'
                'stop vm1\n'
                'show vm1 -f json\n' % IMAGE)
    result = run('--config-file', config(), stdin=commands)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    out = result.stdout
    # boot's table, list's, then show's JSON.
    assert '| state       | running ' in out
    [listed] = [line for line in out.splitlines()
                if line.startswith('| vm1 ')]
    assert [cell.strip() for cell in listed.split('|')][3:5] == [
        'running', 'm1.nano']
    shown = json.loads(out[out.index('{'):out.rindex('}') + 1])
    assert (shown['name'], shown['state'], shown['flavor']) == (
        'vm1', 'shutdown', 'm1.nano')
