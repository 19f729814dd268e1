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

"""``compute-driver volume ...`` and ``boot --volume`` on docker."""

import json
import os
import subprocess

import pytest

from compute_driver.testing import fixtures
from tests.functional import docker_env
from tests.functional import volume_env
from tests.functional.volume_env import loops  # noqa: F401

pytest.importorskip('os_brick')


@pytest.fixture
def run(tmp_path):
    docker_env.raw_client()
    script = fixtures.console_script()
    config = tmp_path / 'compute-driver.conf'
    config.write_text(
        '[DEFAULT]\ncompute_driver = docker\nhost = %s\n'
        '[docker]\napi_url = %s\nnetwork_mode = none\nimages = %s\n'
        '[volume]\nmount_path = %s\n'
        % (docker_env.unique_host(), docker_env.API_URL, docker_env.IMAGE,
           tmp_path / 'mounts'))
    env = dict(os.environ, HOME=str(tmp_path), COLUMNS='200')

    def run(*argv, check=True):
        result = subprocess.run(
            [script, '--config-file', str(config), *argv], env=env,
            capture_output=True, text=True, timeout=300)
        if check:
            assert result.returncode == 0, (argv, result.stderr)
        assert 'Traceback' not in result.stderr
        return result
    return run


def _one_line_error(result, *words):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def test_boot_with_volume_list_and_refusals(run, loops):  # noqa: F811
    device = loops.make(size_mb=32)
    run('boot', 'cdvol-cli', '--image', docker_env.IMAGE, '--flavor',
        'm1.nano', '--volume', '%s=/data' % device)
    try:
        listed = json.loads(run('volume', 'list', 'cdvol-cli', '-f',
                                'json').stdout)
        assert [(v['Mountpoint'], v['Device']) for v in listed] == [
            ('/data', device)]
        assert volume_env.host_mounts_of(device)
        _one_line_error(run('volume', 'attach', 'cdvol-cli', '--local',
                            loops.make(), '--mountpoint', '/more',
                            check=False),
                        'does not support attaching a volume to an existing '
                        'instance (give its volumes when the instance is '
                        'created)')
    finally:
        run('delete', 'cdvol-cli')
    assert volume_env.host_mounts_of(device) == []
    _one_line_error(run('boot', 'cdvol-cli2', '--image', docker_env.IMAGE,
                        '--flavor', 'm1.nano', '--volume',
                        '/dev/cdtest-none=/data', check=False),
                    '/dev/cdtest-none')
    assert 'cdvol-cli2' not in run('list', '-f', 'value').stdout
