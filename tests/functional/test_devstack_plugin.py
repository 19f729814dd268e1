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

"""The DevStack plugin for real on this machine.

Unlike tests/unit/test_devstack_plugin.py, nothing is recorded: packages
are installed with apt, the project with pip (into the environment
running the tests), daemons are started when none runs, and extra runs
the real ``compute-driver check``. The plugin must leave a daemon it
found running alone, and clean must leave the root as it found it.
"""

import importlib.metadata
import os
import subprocess

from compute_driver.testing import fixtures
from tests.devstack import harness as ds

DOCKER_SOCKET = '/var/run/docker.sock'


def _require_root():
    if os.geteuid() != 0:
        fixtures.skip_or_fail('installing packages and starting dockerd '
                              'needs root')


def _dockerd_pids():
    result = subprocess.run(['pgrep', '-x', 'dockerd'], capture_output=True,
                            text=True)
    return sorted(result.stdout.split())


def _package_installed(name):
    return subprocess.run(['dpkg', '-s', name], capture_output=True
                          ).returncode == 0


def _docker_harness(tmp_path):
    return ds.Harness(tmp_path, 'docker', record=False, cli='real',
                      env={'COMPUTE_DRIVER_DOCKER_API_URL':
                           'unix://' + DOCKER_SOCKET})


def test_fake_backend_every_phase(tmp_path):
    h = ds.Harness(tmp_path, 'fake', record=False, cli='real')
    before = h.snapshot()
    h.run('stack')
    assert h.read_ini(h.conf_path) == {'DEFAULT': {'compute_driver': 'fake'}}
    assert h.calls('setup_develop') == [
        'setup_develop ' + str(ds.HERE.parent.parent)]
    h.run('unstack')
    h.run('clean')
    assert h.snapshot() == before
    # The project was installed before the plugin ran: it stays.
    assert h.calls('pip_uninstall') == []


def test_docker_install_uses_or_starts_dockerd(tmp_path):
    """install installs docker.io and gets a dockerd answering.

    A dockerd that already runs (the one the test setup started, which
    other tests use) is used and never stopped; otherwise the plugin
    starts one and unstack stops it. The docker backend is not needed:
    extra, which checks it, is tested below.
    """
    _require_root()
    h = _docker_harness(tmp_path)
    before = h.snapshot()
    pids = _dockerd_pids()
    had_package = _package_installed('docker.io')

    h.run('stack', 'pre-install', 'install', 'post-config')

    assert _package_installed('docker.io')
    assert (h.calls('install_package') == []) == had_package
    ping = subprocess.run(
        ['curl', '-sf', '--unix-socket', DOCKER_SOCKET,
         'http://localhost/_ping'], capture_output=True, text=True)
    assert ping.stdout == 'OK'
    if pids:
        assert h.calls('run_process') == []
        assert _dockerd_pids() == pids
    else:
        assert [c.split()[1] for c in h.calls('run_process')] == [
            'cd-dockerd']
    assert h.read_ini(h.conf_path) == {
        'DEFAULT': {'compute_driver': 'docker'},
        'docker': {'api_url': 'unix://' + DOCKER_SOCKET}}

    h.run('unstack')
    h.run('clean')
    assert _dockerd_pids() == pids
    assert h.calls('uninstall_package') == []
    assert _package_installed('docker.io')
    assert h.snapshot() == before


def test_docker_every_phase_check_passes(tmp_path):
    _require_root()
    if not importlib.metadata.entry_points(group='compute_driver.drivers',
                                           name='docker'):
        fixtures.skip_or_fail("the 'docker' backend is not installed, so "
                              "extra's 'compute-driver check' cannot pass")
    h = _docker_harness(tmp_path)
    before = h.snapshot()
    pids = _dockerd_pids()
    result = h.run('stack')
    assert 'compute-driver check failed' not in result.stderr
    assert '| hypervisor_type' in result.stdout
    h.run('unstack')
    h.run('clean')
    if pids:
        assert _dockerd_pids() == pids
    assert h.snapshot() == before
