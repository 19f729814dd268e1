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

"""iSCSI volumes: a real userspace target (tgtd) on 127.0.0.1, connected
through os-brick and open-iscsi.

The target needs nothing from the kernel; the initiator needs its
``iscsi_tcp`` transport. On a kernel without it, attaching must fail with
one typed error naming what is missing and leave no session; with it, a
LUN written on the host is attached, and a LUN the target lacks fails
cleanly.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures
from compute_driver.volume import connection as vol_connection
from compute_driver.volume import exception as vol_exc

pytest.importorskip('os_brick')

IQN = 'iqn.2010-10.org.openstack.compute-driver:cdtest-vol'
#: tgtd's management channel number, apart from a system tgtd's (0).
CONTROL_PORT = '7'


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _tgtadm(*args):
    subprocess.run(['tgtadm', '-C', CONTROL_PORT, '--lld', 'iscsi', *args],
                   check=True, capture_output=True)


@pytest.fixture
def target(tmp_path):
    """A tgtd target with one 16 MiB LUN (1) holding a marker."""
    if os.geteuid() != 0:
        fixtures.skip_or_fail('tgtd needs root')
    for tool in ('tgtd', 'tgtadm', 'iscsiadm'):
        if not shutil.which(tool):
            fixtures.skip_or_fail(
                '%s is not installed; run tools/test-setup.d/70-volumes.sh'
                % tool)
    port = _free_port()
    backing = tmp_path / 'lun1.img'
    with open(backing, 'wb') as handle:
        handle.truncate(16 << 20)
        handle.write(b'cdvol-iscsi-marker\n')
    daemon = subprocess.Popen(
        ['tgtd', '-f', '-C', CONTROL_PORT, '--iscsi',
         'portal=127.0.0.1:%d' % port],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(('127.0.0.1', port), 1).close()
                break
            except OSError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    fixtures.skip_or_fail('tgtd did not start: %s' % (
                        daemon.stderr.read().decode() if daemon.stderr
                        else ''))
                # tgtd has no readiness signal but its listening socket.
                time.sleep(0.1)
        _tgtadm('--op', 'new', '--mode', 'target', '--tid', '1', '-T', IQN)
        _tgtadm('--op', 'new', '--mode', 'logicalunit', '--tid', '1',
                '--lun', '1', '-b', str(backing))
        _tgtadm('--op', 'bind', '--mode', 'target', '--tid', '1', '-I',
                'ALL')
        yield '127.0.0.1:%d' % port
    finally:
        # tgtd ignores SIGTERM while it has targets, and keeps nothing
        # that a kill would lose.
        daemon.kill()
        daemon.wait()


@pytest.fixture
def backend():
    conf = fixtures.make_conf('fake', {'fake': {'images': ['cirros']}})
    driver = loader.load_driver(conf, 'fake')
    driver.init_host(conf.host)
    return driver


def _sessions():
    done = subprocess.run(['iscsiadm', '-m', 'session'],
                          capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if IQN in line]


def _info(portal, lun):
    return {'driver_volume_type': 'iscsi', 'data': {
        'target_portal': portal, 'target_iqn': IQN, 'target_lun': lun,
        'volume_id': 'vol-iscsi-%d' % lun}}


def test_iscsi_attach_detach_and_bad_lun(backend, target):
    instance = objects.Instance.new(
        'vol-iscsi', flavors.get_flavor(backend.conf, 'm1.tiny'), 'cirros')
    backend.spawn(instance)
    missing = vol_connection.iscsi_missing()
    if missing:
        # What this host lacks cannot be installed by a test setup: the
        # attach must say so, typed, and leave no session behind.
        with pytest.raises(vol_exc.VolumeConnectionFailed) as caught:
            backend.attach_volume(instance, _info(target, 1), '/dev/vdb')
        assert missing in str(caught.value)
        assert backend.list_volume_attachments(instance) == []
        assert _sessions() == []
        pytest.skip('iSCSI attach cannot succeed on this host: %s' % missing)
    backend.attach_volume(instance, _info(target, 1), '/dev/vdb')
    [attachment] = backend.list_volume_attachments(instance)
    with open(attachment.device_path, 'rb') as device:
        assert device.read(18) == b'cdvol-iscsi-marker'
    with pytest.raises(vol_exc.VolumeConnectionFailed):
        backend.attach_volume(instance, _info(target, 5), '/dev/vdc')
    backend.detach_volume(instance, _info(target, 1))
    assert _sessions() == []
    assert backend.list_volume_attachments(instance) == []
