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

"""Volumes in docker containers: loop devices formatted, mounted on the
host and bind-mounted at spawn (Zun's model), and what Docker refuses."""

import os
import subprocess

import pytest

pytest.importorskip('docker')
pytest.importorskip('os_brick')

from compute_driver import exception  # noqa: E402
from compute_driver import flavors  # noqa: E402
from compute_driver import loader  # noqa: E402
from compute_driver import objects  # noqa: E402
from compute_driver.testing import fixtures  # noqa: E402
from compute_driver.volume import exception as vol_exc  # noqa: E402
from tests.functional import docker_env  # noqa: E402
from tests.functional import volume_env  # noqa: E402
from tests.functional.volume_env import loops  # noqa: E402,F401


@pytest.fixture
def backend(tmp_path):
    api = docker_env.raw_client()
    overrides = docker_env.overrides()
    overrides['volume'] = {'mount_path': str(tmp_path / 'mounts')}
    conf = fixtures.make_conf('docker', overrides)
    driver = loader.load_driver(conf, 'docker')
    driver.init_host(conf.host)
    driver.made = []
    driver.raw = api
    yield driver
    for instance in driver.made:
        driver.destroy(instance)
    driver.cleanup_host(conf.host)


def _new(backend, name):
    instance = objects.Instance.new(
        'cdvol-%s' % name, flavors.get_flavor(backend.conf, 'm1.nano'),
        docker_env.IMAGE)
    backend.made.append(instance)
    return instance


def _exec(backend, instance, *command):
    api = backend.raw
    name = backend._container_name(instance.uuid)
    run = api.exec_create(name, list(command))
    output = api.exec_start(run['Id'])
    assert api.exec_inspect(run['Id'])['ExitCode'] == 0, output
    return output.decode()


def _with_file(device, mount_dir, text):
    """Format ``device``, put data.txt holding ``text`` on it, unmount."""
    subprocess.run(['mkfs.ext4', '-q', '-F', device], check=True)
    os.makedirs(mount_dir)
    subprocess.run(['mount', device, mount_dir], check=True)
    try:
        with open(os.path.join(mount_dir, 'data.txt'), 'w') as handle:
            handle.write(text)
    finally:
        subprocess.run(['umount', mount_dir], check=True)


def test_volume_at_spawn_carries_data_to_another_container(
        backend, loops, tmp_path):  # noqa: F811
    device = loops.make(size_mb=32)
    _with_file(device, str(tmp_path / 'prep'), 'written before attach')
    info = volume_env.local(device, 'vol-docker')
    first = _new(backend, 'first')
    backend.spawn(first, block_device_info=volume_env.bdi((info, '/data')))
    assert _exec(backend, first, 'cat', '/data/data.txt') == (
        'written before attach')
    _exec(backend, first, 'sh', '-c', 'echo from-first > /data/more.txt')
    assert volume_env.host_mounts_of(device)
    [attachment] = backend.list_volume_attachments(first)
    assert attachment.mountpoint == '/data'

    # Docker cannot add or remove a mount of an existing container.
    second = _new(backend, 'second')
    backend.spawn(second)
    other = loops.make()
    refused = (
        lambda: backend.attach_volume(second, volume_env.local(other),
                                      '/more'),
        lambda: backend.detach_volume(first, info, '/data'))
    for call in refused:
        with pytest.raises(exception.NotSupported):
            call()
    assert not backend.supports('live_attach_volume')
    # Mounted on the host for the first container: in use.
    third = _new(backend, 'third')
    with pytest.raises(vol_exc.VolumeInUse):
        backend.spawn(third, block_device_info=volume_env.bdi(
            (info, '/data')))
    assert third.name not in backend.list_instances()

    backend.destroy(first)
    assert volume_env.host_mounts_of(device) == []
    volume_env.check_free(device)
    fourth = _new(backend, 'fourth')
    backend.spawn(fourth, block_device_info=volume_env.bdi((info, '/vol')))
    assert _exec(backend, fourth, 'cat', '/vol/more.txt') == 'from-first\n'
    backend.destroy(fourth)
    assert os.listdir(backend.conf.volume.mount_path) == []


def test_empty_volume_is_formatted(backend, loops):  # noqa: F811
    device = loops.make(size_mb=32)
    instance = _new(backend, 'empty')
    backend.spawn(instance, block_device_info=volume_env.bdi(
        (volume_env.local(device), '/empty')))
    assert 'lost+found' in _exec(backend, instance, 'ls', '/empty')
    backend.destroy(instance)
    assert subprocess.run(['blkid', '-p', '-o', 'value', '-s', 'TYPE',
                           device], capture_output=True,
                          text=True).stdout.strip() == 'ext4'


@pytest.mark.parametrize('mapping,error', [
    ('missing', vol_exc.VolumeDeviceNotFound),
    ('root', exception.NotSupported),
    ('badmount', exception.InvalidInput),
])
def test_bad_volume_at_spawn_leaves_nothing(backend, loops, mapping,  # noqa
                                            error):  # noqa: F811
    good = loops.make(size_mb=32)
    volumes = [(volume_env.local(good, 'vol-good'), '/good')]
    root = None
    if mapping == 'missing':
        volumes.append((volume_env.local('/dev/cdtest-none'), '/bad'))
    elif mapping == 'root':
        volumes.append((volume_env.local(loops.make(), 'r'), '/dev/vda'))
        root = '/dev/vda'
    else:
        volumes.append((volume_env.local(loops.make(), 'b'), 'rel/path'))
    instance = _new(backend, 'bad-' + mapping)
    with pytest.raises(error):
        backend.spawn(instance, block_device_info=volume_env.bdi(
            *volumes, root=root))
    assert instance.name not in backend.list_instances()
    assert volume_env.host_mounts_of(good) == []
    mount_path = backend.conf.volume.mount_path
    assert not os.path.exists(mount_path) or os.listdir(mount_path) == []
