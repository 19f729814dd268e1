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

"""Unsafe or mislabelled images through the CLI, against libvirtd.

Each is refused with one line naming the image (and, for a mismatch,
both formats), exit 1, and nothing made: no domain, no instance
directory, no copy in ``_base``.
"""

import json
import os
import shutil
import subprocess
import uuid as uuidlib

import pytest

from compute_driver.testing import fixtures
from tests.functional import test_libvirt


def _qemu_img(*args):
    subprocess.run(['qemu-img', *args], check=True, capture_output=True)


@pytest.fixture
def store(tmp_path):
    test_libvirt._require_libvirtd()
    images = tmp_path / 'images'
    images.mkdir()
    _qemu_img('create', '-q', '-f', 'qcow2', str(images / 'base.qcow2'),
              '16M')
    _qemu_img('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b',
              str(images / 'base.qcow2'), str(images / 'backed.qcow2'))
    _qemu_img('create', '-q', '-f', 'qcow2', '-o',
              'data_file=%s' % (images / 'ext.raw'),
              str(images / 'ext.qcow2'), '16M')
    shutil.copy(images / 'base.qcow2', images / 'corrupt.qcow2')
    with open(images / 'corrupt.qcow2', 'r+b') as handle:
        handle.seek(4)
        handle.write(b'\0\0\0\x09')  # qcow2 version 9
    # A header that reads right over a table qemu refuses (the L1 table's
    # offset not cluster-aligned): caught on the copy in _base.
    shutil.copy(images / 'base.qcow2', images / 'tables.qcow2')
    with open(images / 'tables.qcow2', 'r+b') as handle:
        handle.seek(40)
        handle.write((513).to_bytes(8, 'big'))
    for name, file_name, disk_format in (
            ('broken-tables', 'tables.qcow2', 'qcow2'),
            ('qcow2-declared-raw', 'base.qcow2', 'raw'),
            ('with-backing-file', 'backed.qcow2', 'qcow2'),
            ('with-data-file', 'ext.qcow2', 'qcow2'),
            ('corrupt', 'corrupt.qcow2', 'qcow2')):
        (images / (name + '.json')).write_text(json.dumps(
            {'file': file_name, 'disk_format': disk_format}))
    instances = os.path.join(
        os.path.dirname(test_libvirt.INSTANCES_PATH),
        'imagetest-%s' % uuidlib.uuid4().hex[:8])
    conf_file = tmp_path / 'compute-driver.conf'
    conf_file.write_text('\n'.join([
        '[DEFAULT]', 'compute_driver = libvirt', 'host = imagetest',
        '[libvirt]', 'virt_type = qemu',
        'connection_uri = %s' % test_libvirt.URI,
        'images_path = %s' % images, 'instances_path = %s' % instances]))
    yield conf_file, instances
    shutil.rmtree(instances, ignore_errors=True)


@pytest.mark.parametrize('image, words', [
    ('qcow2-declared-raw', 'is declared raw but its file is qcow2'),
    ('with-backing-file', 'it has a backing file'),
    ('with-data-file', 'it has an external data file'),
    ('corrupt', 'its qcow2 header is corrupt'),
    ('broken-tables', 'L1 table'),
])
def test_bad_image_is_refused_and_leaves_nothing(store, tmp_path, image,
                                                 words):
    conf_file, instances = store
    name = 'cdimg-%s' % uuidlib.uuid4().hex[:6]
    result = subprocess.run(
        [fixtures.console_script(), '--config-file', str(conf_file), 'boot',
         name, '--image', image, '--flavor', test_libvirt.FLAVOR],
        env=dict(os.environ, HOME=str(tmp_path)), capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1, result.stderr
    assert image in result.stderr and words in result.stderr, result.stderr
    # init_host made the directory; nothing is in it, nor in _base.
    assert test_libvirt.instances_entries(instances) in ([], ['_base'])
    if os.path.isdir(os.path.join(instances, '_base')):
        assert os.listdir(os.path.join(instances, '_base')) == []
    import libvirt
    conn = libvirt.open(test_libvirt.URI)
    try:
        assert 'cdrv-' + name not in [d.name() for d in
                                      conn.listAllDomains()]
    finally:
        conn.close()
