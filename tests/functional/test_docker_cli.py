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

"""The ``compute-driver`` command on the docker backend, as an operator
runs it; what it did is checked with the raw docker SDK."""

import json
import os
import subprocess

import pytest

from compute_driver.testing import fixtures
from tests.functional import docker_env

HOST_LABEL = 'org.openstack.compute-driver.host'
MIB = 1024 * 1024


@pytest.fixture
def api():
    client = docker_env.raw_client()
    yield client
    client.close()


@pytest.fixture
def host(api):
    name = docker_env.unique_host()
    yield name
    left = api.containers(all=True, filters={'label': '%s=%s'
                                             % (HOST_LABEL, name)})
    for summary in left:
        api.remove_container(summary['Id'], force=True)
    assert not left, 'containers left behind: %s' % [
        s['Names'] for s in left]


@pytest.fixture
def run(tmp_path, host):
    script = fixtures.console_script()
    config = tmp_path / 'compute-driver.conf'
    config.write_text(
        '[DEFAULT]\ncompute_driver = docker\nhost = %s\n'
        'flavor = cdtest.small:1:128:1\nflavor = cdtest.four:1:4\n'
        '[docker]\napi_url = %s\nnetwork_mode = none\nimages = %s\n'
        'pids_limit = 256\n'
        '[image_service]\nlocal_path = %s\ncache_path = %s\n' % (
            host, docker_env.API_URL, docker_env.IMAGE, tmp_path / 'images',
            tmp_path / 'cache'))
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


def _state(run, name):
    return json.loads(run('show', name, '-f', 'json').stdout)['state']


def test_boot_every_lifecycle_command_delete(api, run, host):
    shown = json.loads(run('boot', 'cdtest-cli', '--image', docker_env.IMAGE,
                           '--flavor', 'cdtest.small', '--property',
                           'role=web', '-f', 'json').stdout)
    assert (shown['state'], shown['flavor'], shown['vcpus'],
            shown['memory_mb']) == ('running', 'cdtest.small', 1, 128)
    container = api.inspect_container('compute-driver-' + shown['uuid'])
    labels = container['Config']['Labels']
    assert labels['org.openstack.compute-driver.uuid'] == shown['uuid']
    assert labels['org.openstack.compute-driver.name'] == 'cdtest-cli'
    assert labels['org.openstack.compute-driver.image'] == docker_env.IMAGE
    assert labels[HOST_LABEL] == host
    assert json.loads(labels['org.openstack.compute-driver.flavor'])[
        'name'] == 'cdtest.small'
    assert json.loads(labels['org.openstack.compute-driver.metadata']) == {
        'role': 'web'}
    hc = container['HostConfig']
    assert hc['Memory'] == 128 * MIB
    assert hc['MemorySwap'] == 128 * MIB
    assert hc['CpuQuota'] == hc['CpuPeriod'] == 100000
    assert hc['PidsLimit'] == 256
    assert hc['Privileged'] is False
    assert hc['CapDrop'] == ['ALL']
    assert 'NET_RAW' not in hc['CapAdd']
    assert 'no-new-privileges' in hc['SecurityOpt']
    assert hc['NetworkMode'] == 'none'
    assert hc['RestartPolicy']['Name'] == 'no'

    listed = json.loads(run('list', '-f', 'json').stdout)
    assert [(r['Name'], r['State']) for r in listed] == [
        ('cdtest-cli', 'running')]

    run('stop', 'cdtest-cli', '--timeout', '5')
    assert _state(run, 'cdtest-cli') == 'shutdown'
    run('start', 'cdtest-cli')
    assert _state(run, 'cdtest-cli') == 'running'
    run('reboot', 'cdtest-cli')
    assert _state(run, 'cdtest-cli') == 'running'
    run('reboot', '--hard', 'cdtest-cli')
    assert _state(run, 'cdtest-cli') == 'running'
    run('pause', 'cdtest-cli')
    assert _state(run, 'cdtest-cli') == 'paused'
    assert api.inspect_container(container['Id'])['State']['Paused']
    run('unpause', 'cdtest-cli')
    assert _state(run, 'cdtest-cli') == 'running'

    result = run('suspend', 'cdtest-cli', check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'The docker backend does not support suspend.')

    snapshot = host + '-snap'
    try:
        run('snapshot', 'cdtest-cli', snapshot)
        images = {i['Name']: i
                  for i in json.loads(run('images', '-f', 'json').stdout)}
        assert images[snapshot]['Snapshot Of'] == 'cdtest-cli (%s)' % (
            shown['uuid'])
        run('revert', 'cdtest-cli', snapshot)
        assert _state(run, 'cdtest-cli') == 'running'
        run('live-resize', 'cdtest-cli', '--memory', '64')
        new = api.inspect_container('compute-driver-' + shown['uuid'])
        assert new['HostConfig']['Memory'] == 64 * MIB
        assert json.loads(run('show', 'cdtest-cli', '-f', 'json').stdout)[
            'memory_mb'] == 64
        log = run('console-log', 'cdtest-cli', '--lines', '5').stdout
        assert 'booting' in log
        resources = json.loads(run('resources', '-f', 'json').stdout)
        assert resources['memory_mb_used'] == 128
        assert resources['running_vms'] == 1
        run('delete', 'cdtest-cli')
        run('snapshot-delete', snapshot)
        assert snapshot not in [
            i['Name'] for i in json.loads(run('images', '-f', 'json').stdout)]
        assert api.images(name=snapshot) == []
    finally:
        if api.images(name=snapshot):
            api.remove_image(snapshot, force=True)
    assert api.containers(all=True, filters={
        'label': '%s=%s' % (HOST_LABEL, host)}) == []
    assert json.loads(run('list', '-f', 'json').stdout) == []


@pytest.mark.parametrize('argv,words', [
    (('boot', 'bad name!', '--image', docker_env.IMAGE, '--flavor',
      'm1.nano'), 'Invalid instance name'),
    (('boot', 'cdtest-x', '--image', 'busy box', '--flavor', 'm1.nano'),
     'whitespace'),
    (('boot', 'cdtest-x', '--image', docker_env.IMAGE, '--flavor',
      'cdtest.four'), 'at least 6 MiB'),
    (('boot', 'cdtest-x', '--image', 'cdtest-no-such-image', '--flavor',
      'm1.nano'), 'could not be found'),
])
def test_bad_input_is_one_line(api, run, host, argv, words):
    result = run(*argv, check=False)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert words in result.stderr
    assert api.containers(all=True, filters={
        'label': '%s=%s' % (HOST_LABEL, host)}) == []


def test_verify_passes(api, run, host):
    result = run('verify', '--count', '4', '--concurrency', '2',
                 '-f', 'json')
    rows = {row['Operation']: row for row in json.loads(result.stdout)}
    assert rows['suspend']['Skipped'] == rows['resume']['Skipped'] == 4
    failed = {op: row for op, row in rows.items() if row['Failed']}
    assert not failed
    assert rows['revert_to_snapshot']['Passed'] == 4
    assert api.containers(all=True, filters={
        'label': '%s=%s' % (HOST_LABEL, host)}) == []


@pytest.fixture
def silent_image(api, host):
    """The test image with a command that prints nothing, as a daemon's."""
    # Committed from a container never started: the image's files with
    # another command, the test image's wait loop without its banner.
    container = api.create_container(docker_env.IMAGE, command=['true'])
    name = '%s-silent' % host
    try:
        api.commit(container['Id'], repository=name, tag='latest', conf={
            'Cmd': ['/bin/sh', '-c', 'trap "exit 0" TERM INT; '
                    'while :; do sleep 3600 & wait $!; done']})
    finally:
        api.remove_container(container['Id'], force=True)
    yield name + ':latest'
    api.remove_image(name + ':latest', force=True)


def test_verify_skips_the_console_of_a_silent_image(api, run, host,
                                                    silent_image):
    result = run('verify', '--count', '2', '--concurrency', '2',
                 '--image', silent_image, '-f', 'json')
    rows = {row['Operation']: row for row in json.loads(result.stdout)}
    console = rows['console_output']
    assert (console['Passed'], console['Failed'], console['Skipped']) == (
        0, 0, 2)
    assert console['Notes'] == ('the console was read but is empty: the '
                                'image printed nothing to check')
    assert not {op: row for op, row in rows.items() if row['Failed']}
    assert rows['diagnostics']['Passed'] == 2
    assert api.containers(all=True, filters={
        'label': '%s=%s' % (HOST_LABEL, host)}) == []


def test_boot_from_the_image_service_snapshot_boot_the_snapshot(
        api, run, host, tmp_path):
    image_id, path = docker_env.unique_image(api, tmp_path)
    name, snap = host + '-img', host + '-snap'
    uploaded = json.loads(run('image', 'upload', name, '--file', str(path),
                              '--disk-format', 'raw', '--container-format',
                              'docker', '-f', 'json').stdout)
    tags = ['compute-driver-image:' + uploaded['id']]
    try:
        shown = json.loads(run('boot', 'cdtest-img1', '--image', name,
                               '--flavor', 'cdtest.small', '-f',
                               'json').stdout)
        assert shown['state'] == 'running'
        assert api.inspect_image(tags[0])['Id'] == image_id
        run('snapshot', 'cdtest-img1', snap)
        record = json.loads(run('image', 'show', snap, '-f', 'json').stdout)
        tags.append('compute-driver-image:' + record['id'])
        assert (record['status'], record['disk_format'],
                record['container_format']) == ('active', 'raw', 'docker')
        shown = json.loads(run('boot', 'cdtest-img2', '--image', snap,
                               '--flavor', 'cdtest.small', '-f',
                               'json').stdout)
        assert shown['state'] == 'running'
        run('delete', 'cdtest-img1')
        run('delete', 'cdtest-img2')
        run('snapshot-delete', snap)
        run('image', 'delete', name)
        assert [i['Name'] for i in json.loads(
            run('image', 'list', '-f', 'json').stdout)] == []
        # A format docker cannot run: one line, exit 1, nothing made.
        qcow2 = tmp_path / 'disk.qcow2'
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2',
                        str(qcow2), '16M'], check=True)
        run('image', 'upload', name, '--file', str(qcow2), '--disk-format',
            'qcow2')
        result = run('boot', 'cdtest-img3', '--image', name, '--flavor',
                     'cdtest.small', check=False)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1
        assert 'unacceptable' in result.stderr
    finally:
        for tag in tags + [snap]:
            if api.images(name=tag):
                api.remove_image(tag, force=True)
        docker_env.forget_unique_images(api)
    assert json.loads(run('list', '-f', 'json').stdout) == []
