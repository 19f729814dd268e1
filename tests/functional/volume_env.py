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

"""Loop devices as local volumes, for the volume tests of every backend.

Each device is a sparse file under the test's temporary directory bound
to a free loop device with ``losetup``; the fixture detaches it and checks
that nothing (a mount, a guest) still holds it.
"""

import json
import os
import shutil
import subprocess

import pytest

from compute_driver.testing import fixtures

MARKER = b'cdvol-marker-'


def require_loop() -> None:
    if os.geteuid() != 0 or not os.path.exists('/dev/loop-control'):
        fixtures.skip_or_fail('loop devices need root and /dev/loop-control')
    if not shutil.which('losetup'):
        fixtures.skip_or_fail('losetup (util-linux) is not installed')


class LoopDevices:
    """Creates loop devices and removes them at the end of the test."""

    def __init__(self, directory):
        self.directory = directory
        self.devices: list[str] = []

    def make(self, size_mb: int = 16, marker: bytes | None = None) -> str:
        """A new loop device of ``size_mb``; ``marker`` written at 0."""
        path = os.path.join(self.directory,
                            'vol%d.img' % len(self.devices))
        with open(path, 'wb') as backing:
            backing.truncate(size_mb << 20)
            if marker is not None:
                backing.write(marker + b'\n')
        device = subprocess.run(
            ['losetup', '--find', '--show', path], check=True,
            capture_output=True, text=True).stdout.strip()
        self.devices.append(device)
        return device

    def release(self) -> None:
        for device in self.devices:
            subprocess.run(['losetup', '-d', device], check=False,
                           capture_output=True)

    def read(self, device: str, size: int = 64) -> bytes:
        with open(device, 'rb') as handle:
            return handle.read(size)


def local(device: str, volume_id: str | None = None) -> dict:
    """Cinder-style connection info of a local device."""
    data = {'device_path': device}
    if volume_id:
        data['volume_id'] = volume_id
    return {'driver_volume_type': 'local', 'data': data}


def bdi(*volumes: tuple[dict, str], root: str | None = None) -> dict:
    """Nova's ``block_device_info`` for ``(connection_info, mount)`` pairs."""
    return {'root_device_name': root,
            'block_device_mapping': [
                {'connection_info': info, 'mount_device': mount,
                 'boot_index': 0 if mount == root else None}
                for info, mount in volumes]}


def host_mounts_of(device: str) -> list[str]:
    """Mount points of ``device`` on the host."""
    found = subprocess.run(['findmnt', '-J', '-S', device],
                           capture_output=True, text=True).stdout
    if not found:
        return []
    return [fs['target'] for fs in json.loads(found)['filesystems']]


@pytest.fixture
def loops(tmp_path):
    require_loop()
    devices = LoopDevices(str(tmp_path))
    yield devices
    devices.release()


def check_free(device: str) -> None:
    """Assert that no process and no mount holds ``device``."""
    from compute_driver.volume import connection
    assert connection.device_user(device) is None
    connection.check_not_held('check', device)
