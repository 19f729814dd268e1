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

"""``compute-driver`` with ``compute_driver = xenapi`` against the
simulator: every command a user runs, each in its own process."""

import json
import os
import subprocess
import sys

import pytest

from compute_driver.testing import fixtures
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    module_xapi_simulator as simulator)
from compute_driver.xenapi import mapping

IMAGE = 'Debian_Bookworm_12'


@pytest.fixture(scope='module')
def script():
    return fixtures.console_script()


def _config(tmp_path, sim, password='password'):
    path = tmp_path / 'xenapi.conf'
    path.write_text(
        '[DEFAULT]\ncompute_driver = xenapi\nhost = functest\n'
        '[xenapi]\nconnection_url = %s\nusername = root\npassword = %s\n'
        'event_poll_timeout = 5\n'
        # Snapshots go to an image service of this test's own.
        '[image_service]\nlocal_path = %s\ncache_path = %s\n'
        % (sim.url, password, tmp_path / 'images', tmp_path / 'cache'))
    return str(path)


@pytest.fixture
def run(script, tmp_path, simulator):  # noqa: F811
    env = dict(os.environ, HOME=str(tmp_path), COLUMNS='200')
    config = _config(tmp_path, simulator)

    def run(*argv, config_file=config):
        return subprocess.run([script, '--config-file', config_file, *argv],
                              env=env, capture_output=True, text=True,
                              timeout=300)
    return run


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


def _state(run, name):
    return json.loads(_ok(run('show', name, '-f', 'json')))['state']


def _vms_and_vdis(sim):
    vms = {ref for ref, rec in sim.objects('VM').items()
           if not rec['is_a_template'] and not rec['is_control_domain']}
    return vms, set(sim.objects('VDI'))


def test_every_lifecycle_command(run, simulator):  # noqa: F811
    before = _vms_and_vdis(simulator)
    shown = json.loads(_ok(run('boot', 'cli1', '--image', IMAGE,
                               '--flavor', 'm1.small', '-f', 'json')))
    assert (shown['name'], shown['state']) == ('cli1', 'running')
    listed = json.loads(_ok(run('list', '-f', 'json')))
    assert [(i['Name'], i['State']) for i in listed] == [
        ('cli1', 'running')]
    for command, state in (
            (('stop', 'cli1', '--timeout', '5'), 'shutdown'),
            (('start', 'cli1'), 'running'),
            (('reboot', 'cli1'), 'running'),
            (('reboot', 'cli1', '--hard'), 'running'),
            (('pause', 'cli1'), 'paused'),
            (('unpause', 'cli1'), 'running'),
            (('suspend', 'cli1'), 'suspended'),
            (('resume', 'cli1'), 'running'),
            (('snapshot', 'cli1', 'cli1-snap'), 'running'),
            (('revert', 'cli1', 'cli1-snap'), 'running'),
            (('live-resize', 'cli1', '--vcpus', '1', '--memory', '1024'),
             'running')):
        _ok(run(*command))
        assert _state(run, 'cli1') == state, command
    images = json.loads(_ok(run('images', '-f', 'json')))
    assert 'cli1-snap' in [i['Name'] for i in images]
    _ok(run('delete', 'cli1'))
    assert json.loads(_ok(run('list', '-f', 'json'))) == []
    snapshot_vms = {ref for ref, rec in simulator.objects('VM').items()
                    if rec['is_a_snapshot']}
    assert len(snapshot_vms) == 1
    vms, vdis = _vms_and_vdis(simulator)
    assert vms == before[0]
    # What is left is the snapshot's own disk, until the snapshot goes.
    assert len(vdis - before[1]) == 1
    result = run('pause', 'cli1')
    assert result.returncode == 1
    assert result.stderr.strip() == 'Instance cli1 could not be found.'


def test_refused_operation_is_one_line(run):
    _ok(run('boot', 'cli2', '--image', IMAGE, '--flavor', 'm1.nano',
            '--stopped'))
    result = run('pause', 'cli2')
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        'Cannot pause instance cli2 while it is shutdown; it must be '
        'running.']
    result = run('console-log', 'cli2')
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        'The xenapi backend does not support console_output.']
    _ok(run('delete', 'cli2'))


def test_verify_passes(run, simulator):  # noqa: F811
    before = _vms_and_vdis(simulator)
    result = run('verify', '--count', '3', '--concurrency', '2')
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [[cell.strip() for cell in line.split('|')[1:-1]]
            for line in result.stdout.splitlines()[3:-1]]
    assert rows and all(row[2] == '0' for row in rows), result.stdout
    assert _vms_and_vdis(simulator) == before


def test_check_and_resources(run):
    data = json.loads(_ok(run('check', '-f', 'json')))
    assert (data['hypervisor_type'], data['hypervisor_hostname']) == (
        'xen', 'xapi-sim')
    resources = json.loads(_ok(run('resources', '-f', 'json')))
    assert resources['memory_mb'] == 65536


def test_wrong_password_fails_cleanly(run, tmp_path, simulator):  # noqa
    config = _config(tmp_path, simulator, password='n0t-it')
    result = run('list', config_file=config)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    [line] = result.stderr.splitlines()
    assert 'wrong user name or password' in line
    assert 'n0t-it' not in line


def test_cleanup_lists_then_removes_an_interrupted_spawn(run, simulator):  # noqa
    # A process of this machine that has ended, named as spawns name it.
    owner = subprocess.run(
        [sys.executable, '-c',
         'from compute_driver import leftovers; '
         'print(leftovers.owner_label())'],
        check=True, capture_output=True, text=True).stdout.strip()
    before = _vms_and_vdis(simulator)
    uuid = sim_fixture.provisioned_clone(simulator, mapping.spawn_name(
        owner, '9d4c1c1e-0000-4000-8000-00000000000c'))
    [row] = json.loads(_ok(run('cleanup', '--dry-run', '-f', 'json')))
    assert (row['Backend'], row['Result']) == ('xenapi', 'would remove')
    assert uuid in row['Object'] and owner in row['Reason']
    [row] = json.loads(_ok(run('cleanup', '-f', 'json')))
    assert row['Result'] == 'removed'
    assert _vms_and_vdis(simulator) == before
    result = run('cleanup')
    assert 'Nothing to clean up on the xenapi backend.' in _ok(result) + \
        result.stderr
