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

"""``compute-driver image ...`` on the local image service, in-process."""

import io
import json
import os
import time

import pytest

from compute_driver.cmd import image as image_cmd
from compute_driver.cmd import main


@pytest.fixture
def conf_file(tmp_path):
    path = tmp_path / 'c.conf'
    path.write_text('\n'.join([
        '[DEFAULT]', 'compute_driver = fake', 'host = testhost',
        '[fake]', 'image_service = configured',
        '[image_service]', 'local_path = %s' % (tmp_path / 'images'),
        'cache_path = %s' % (tmp_path / 'cache'), '']))
    return str(path)


@pytest.fixture
def app(conf_file):
    apps = []

    def run(*argv):
        if not apps:
            apps.append(main.App())
        return apps[0].run(['--config-file', conf_file, *argv])

    yield run
    for application in apps:
        application.close()


def _json(capsys, app, *argv):
    capsys.readouterr()
    assert app(*argv, '-f', 'json') == 0
    out, err = capsys.readouterr()
    assert err == ''
    return json.loads(out)


def _fails(capsys, app, *argv):
    capsys.readouterr()
    assert app(*argv) == 1
    out, err = capsys.readouterr()
    assert out == '' and err.count('\n') == 1 and 'Traceback' not in err
    return err


def test_upload_list_show_boot_delete(capsys, app, tmp_path):
    data = tmp_path / 'disk.raw'
    data.write_bytes(os.urandom(300000))
    record = _json(capsys, app, 'image', 'upload', 'mine', '--file',
                   str(data), '--disk-format', 'raw', '--property', 'a=b',
                   '--min-ram', '16')
    assert (record['name'], record['size'], record['min_ram']) == (
        'mine', 300000, 16)
    assert record['properties'] == {'a': 'b'}
    assert [i['ID'] for i in _json(capsys, app, 'image', 'list')] == [
        record['id']]
    assert _json(capsys, app, 'image', 'show', 'mine')['id'] == record['id']
    # The backend boots it by name or id, downloading it into its cache.
    booted = _json(capsys, app, 'boot', 'vm1', '--image', 'mine',
                   '--flavor', 'm1.nano')
    assert booted['state'] == 'running'
    assert _json(capsys, app, 'boot', 'vm2', '--image', record['id'],
                 '--flavor', 'm1.nano')['state'] == 'running'
    capsys.readouterr()
    assert app('image', 'delete', 'mine') == 0
    assert _json(capsys, app, 'image', 'list') == []


def test_bad_input_is_one_line(capsys, app, tmp_path):
    assert 'could not be found' in _fails(capsys, app, 'image', 'show',
                                          'nosuch')
    assert 'cannot read' in _fails(
        capsys, app, 'image', 'upload', 'x', '--file',
        str(tmp_path / 'missing'), '--disk-format', 'raw')
    assert 'could not be found' in _fails(capsys, app, 'boot', 'vm1',
                                          '--image', 'nosuch', '--flavor',
                                          'm1.nano')


def test_delete_of_one_unknown_image_deletes_none(capsys, app, tmp_path):
    data = tmp_path / 'disk.raw'
    data.write_bytes(b'x' * 1000)
    _json(capsys, app, 'image', 'upload', 'keep', '--file', str(data),
          '--disk-format', 'raw')
    assert 'nosuch' in _fails(capsys, app, 'image', 'delete', 'keep',
                              'nosuch')
    assert [i['Name'] for i in _json(capsys, app, 'image', 'list')] == [
        'keep']


def test_cache_list_and_prune(capsys, app, tmp_path):
    cache = tmp_path / 'cache'
    cache.mkdir()
    for name in ('old-image', 'new-image'):
        (cache / name).write_bytes(b'data')
    week_ago = time.time() - 7 * 86400
    os.utime(cache / 'old-image', (week_ago, week_ago))
    listed = _json(capsys, app, 'image', 'cache', 'list')
    assert [c['Image ID'] for c in listed] == ['old-image', 'new-image']
    removed = _json(capsys, app, 'image', 'cache', 'prune')
    assert [c['Image ID'] for c in removed] == ['old-image']
    assert [e for e in os.listdir(cache) if e != '.locks'] == ['new-image']


class _Terminal(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize('tty', [True, False])
def test_progress_bar_only_on_a_terminal(tty):
    stream = _Terminal(tty)
    reader = image_cmd.ProgressReader(io.BytesIO(b'x' * 4096), 4096,
                                      stream, 'Uploading x')
    while reader.read(1024):
        pass
    reader.finish()
    if tty:
        assert stream.getvalue().endswith('100% 0.0/0.0 MiB\n')
        assert '\r' in stream.getvalue()
    else:
        assert stream.getvalue() == ''
