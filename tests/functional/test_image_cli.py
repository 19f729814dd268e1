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

"""``compute-driver image ...`` and ``boot --image`` against a real Glance.

The standalone round trip on libvirt through the CLI alone: upload the
test guest into Glance, boot it by name, snapshot it into Glance, boot the
snapshot by id; and the commands' bad input, one line each.
"""

import json
import os
import socket
import subprocess
import sys
import uuid as uuidlib

import pytest

pytest.importorskip('libvirt')

from compute_driver.libvirt import recordindex  # noqa: E402
from tests.functional import test_libvirt  # noqa: E402
from tests.functional import test_libvirt_glance  # noqa: E402

server = test_libvirt_glance.server
TEST_IMAGE = test_libvirt_glance.TEST_IMAGE


def _write_conf(path, url, instances=test_libvirt.INSTANCES_PATH):
    path.write_text('\n'.join([
        '[DEFAULT]', 'compute_driver = libvirt', 'host = imgcli',
        '[libvirt]', 'virt_type = qemu',
        'connection_uri = %s' % test_libvirt.URI,
        'images_path = %s' % test_libvirt.IMAGES_PATH,
        'instances_path = %s' % instances,
        '[image_service]', 'backend = glance',
        '[glance]', 'api_servers = %s' % url, 'num_retries = 0', '']))
    return path


class CLI:
    def __init__(self, conf_file, home):
        self.conf_file = conf_file
        self.home = home

    def run(self, *args, check=True):
        # The interpreter running the tests, with this tree first: the
        # image commands need the Glance client installed beside it.
        result = subprocess.run(
            [sys.executable, '-m', 'compute_driver.cmd.main',
             '--config-file', str(self.conf_file), *args],
            env=dict(os.environ, HOME=str(self.home)), capture_output=True,
            text=True, timeout=600)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def json(self, *args):
        return json.loads(self.run(*args, '-f', 'json').stdout)

    def fails(self, *args):
        result = self.run(*args, check=False)
        assert result.returncode == 1, result
        assert result.stderr.count('\n') == 1, result.stderr
        assert 'Traceback' not in result.stderr
        return result.stderr


@pytest.fixture
def cli(server, tmp_path):
    test_libvirt._require_libvirtd()
    tool = CLI(_write_conf(tmp_path / 'c.conf', server.url), tmp_path)
    tool.images = []
    tool.instances = []
    yield tool
    for name in tool.instances:
        tool.run('delete', name, check=False)
    for image_id in tool.images:
        tool.run('image', 'delete', image_id, check=False)


def _upload(cli, name, path, disk_format, *args):
    record = cli.json('image', 'upload', name, '--file', path,
                      '--disk-format', disk_format, *args)
    cli.images.append(record['id'])
    return record


def test_round_trip_through_the_cli(cli):
    tag = uuidlib.uuid4().hex[:6]
    kernel = _upload(cli, 'cdcli-kernel-' + tag, TEST_IMAGE + '.vmlinuz',
                     'aki', '--container-format', 'aki')
    ramdisk = _upload(cli, 'cdcli-ramdisk-' + tag, TEST_IMAGE + '.initrd',
                      'ari', '--container-format', 'ari')
    disk = _upload(cli, 'cdcli-disk-' + tag, TEST_IMAGE + '.qcow2', 'qcow2',
                   '--min-ram', '64',
                   '--property', 'kernel_id=%s' % kernel['id'],
                   '--property', 'ramdisk_id=%s' % ramdisk['id'],
                   '--property', 'os_command_line=%s'
                   % test_libvirt_glance.CMDLINE)
    assert disk['status'] == 'active'
    assert disk['size'] == os.path.getsize(TEST_IMAGE + '.qcow2')
    listed = cli.json('image', 'list')
    assert disk['id'] in [i['ID'] for i in listed]
    assert cli.json('image', 'show', disk['name'])['id'] == disk['id']

    name = 'cdcli-%s' % tag
    cli.instances.append(name)
    booted = cli.json('boot', name, '--image', disk['name'], '--flavor',
                      test_libvirt.FLAVOR)
    assert booted['state'] == 'running'
    cached = cli.json('image', 'cache', 'list')
    assert {disk['id'], kernel['id'], ramdisk['id']} <= {
        c['Image ID'] for c in cached}

    snap_name = 'cdcli-snap-%s' % tag
    cli.run('snapshot', name, snap_name)
    snap = cli.json('image', 'show', snap_name)
    cli.images.append(snap['id'])
    assert snap['status'] == 'active'
    assert (snap['disk_format'], snap['container_format']) == ('qcow2',
                                                               'bare')
    assert snap['properties']['image_type'] == 'snapshot'
    assert snap['properties']['kernel_id'] == kernel['id']

    again = 'cdcli-again-%s' % tag
    cli.instances.append(again)
    assert cli.json('boot', again, '--image', snap['id'], '--flavor',
                    test_libvirt.FLAVOR)['state'] == 'running'
    # In use: pruning keeps them whatever their age.
    removed = {c['Image ID']
               for c in cli.json('image', 'cache', 'prune', '--max-age', '0')}
    assert not {disk['id'], snap['id'], kernel['id'], ramdisk['id']} & removed
    left = {c['Image ID'] for c in cli.json('image', 'cache', 'list')}
    assert {disk['id'], snap['id'], kernel['id'], ramdisk['id']} <= left


def test_bad_input_is_one_line(cli, tmp_path):
    assert 'could not be found' in cli.fails(
        'image', 'show', str(uuidlib.uuid4()))
    assert 'could not be found' in cli.fails(
        'image', 'delete', 'cdcli-no-such-image')
    assert 'cannot read' in cli.fails(
        'image', 'upload', 'x', '--file', str(tmp_path / 'missing'),
        '--disk-format', 'raw')
    assert 'could not be found' in cli.fails(
        'boot', 'cdcli-%s' % uuidlib.uuid4().hex[:6], '--image',
        str(uuidlib.uuid4()), '--flavor', test_libvirt.FLAVOR)


def test_glance_unreachable_is_one_line(tmp_path):
    test_libvirt._require_libvirtd()
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    cli = CLI(_write_conf(tmp_path / 'c.conf', 'http://127.0.0.1:%d' % port),
              tmp_path)
    assert 'unavailable' in cli.fails('image', 'list')
    assert 'unavailable' in cli.fails(
        'boot', 'cdcli-%s' % uuidlib.uuid4().hex[:6], '--image',
        str(uuidlib.uuid4()), '--flavor', test_libvirt.FLAVOR)


keystone_glance = test_libvirt_glance.keystone_glance
small_fs = test_libvirt_glance.small_fs


def test_glance_refusing_auth_is_one_line(keystone_glance, tmp_path):
    test_libvirt._require_libvirtd()
    cli = CLI(_write_conf(tmp_path / 'c.conf', keystone_glance.url,
                          instances=tmp_path / 'instances'), tmp_path)
    assert 'authentication refused' in cli.fails('image', 'list')
    assert 'authentication refused' in cli.fails(
        'boot', 'cdcli-%s' % uuidlib.uuid4().hex[:6], '--image',
        str(uuidlib.uuid4()), '--flavor', test_libvirt.FLAVOR)
    assert cli.json('image', 'cache', 'list') == []
    assert os.listdir(keystone_glance.store_dir) == []


def test_disk_full_during_download_is_one_line(cli, server, small_fs,
                                               tmp_path):
    large = tmp_path / 'large.raw'
    large.write_bytes(os.urandom(24 * 1024 * 1024))
    image = _upload(cli, 'cdcli-large-%s' % uuidlib.uuid4().hex[:6],
                    str(large), 'raw')
    before = cli.json('image', 'list')
    full = CLI(_write_conf(tmp_path / 'full.conf', server.url,
                           instances=small_fs), tmp_path)
    name = 'cdcli-%s' % uuidlib.uuid4().hex[:6]
    assert 'No space left on device' in full.fails(
        'boot', name, '--image', image['id'], '--flavor',
        test_libvirt.FLAVOR)
    assert full.json('image', 'cache', 'list') == []
    # Neither the image nor a partial file of it, nor the instance's
    # directory: only lock files and the index of the host's instances
    # (which must not name the failed one).
    left = [os.path.relpath(os.path.join(top, n), small_fs)
            for top, dirs, files in os.walk(small_fs) for n in files]
    index = os.path.join(small_fs, recordindex.INDEX)
    assert [p for p in left if '.locks' not in p.split(os.sep)
            and p not in (recordindex.INDEX, recordindex.LOCK)] == []
    if os.path.exists(index):
        with open(index) as f:
            assert name not in f.read()
    assert name not in full.run('list').stdout
    assert cli.json('image', 'list') == before
