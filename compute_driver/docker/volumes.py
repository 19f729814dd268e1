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

"""Volumes in containers, Zun's way: host mounts bind-mounted at create.

A container's mounts are fixed when it is created, so volumes come only
with ``block_device_info`` at spawn: each connected block device is
formatted (ext4) when it holds no file system yet, mounted on the host
under ``[volume] mount_path/<instance uuid>/<n>`` and bind-mounted into
the container at the attachment's mountpoint, a directory inside it. The
container's :data:`LABEL` records the attachments. Attaching to or
detaching from an existing container is not supported: Docker cannot add
or remove a mount of a container, running or not, without replacing it.
Destroy unmounts and disconnects what spawn mounted.
"""

import logging
import os
import shutil
import subprocess
import typing

from compute_driver.docker import mapping
from compute_driver import exception
from compute_driver.volume import model as vol_model

LOG = logging.getLogger(__name__)

LABEL = mapping.LABEL_NS + 'volumes'
FS_TYPE = 'ext4'


def check_mountpoint(mountpoint: object) -> str:
    """A volume's directory in a container: absolute, normalised, not /.

    :raises InvalidInput: naming it.
    """
    if (not isinstance(mountpoint, str) or not mountpoint.startswith('/')
            or os.path.normpath(mountpoint) != mountpoint or
            mountpoint == '/' or ':' in mountpoint or '\0' in mountpoint):
        raise exception.InvalidInput(
            reason='a container volume mountpoint must be an absolute, '
                   'normalised directory other than /, without ":", got %r'
                   % (mountpoint,))
    return mountpoint


def host_dir(mount_path: str, uuid: str, index: int) -> str:
    return os.path.join(mount_path, uuid, str(index))


def _run(args: list[str], what: str, volume: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True,
                              check=False)
    except OSError as exc:
        raise exception.BackendError(
            operation=what, instance=volume,
            reason='%s: %s' % (args[0], exc.strerror)) from None
    if done.returncode:
        raise exception.BackendError(
            operation=what, instance=volume,
            reason=' '.join((done.stderr or done.stdout).split()))
    return done.stdout


def has_file_system(device: str, volume: str) -> bool:
    """Whether ``blkid`` finds a file system (or anything) on ``device``."""
    done = subprocess.run(['blkid', '-p', '-o', 'value', '-s', 'TYPE',
                           device], capture_output=True, text=True,
                          check=False)
    # 2: nothing found, an empty volume.
    if done.returncode == 2:
        return False
    if done.returncode:
        raise exception.BackendError(
            operation='probe volume', instance=volume,
            reason=' '.join(done.stderr.split()) or 'blkid failed')
    return bool(done.stdout.strip())


def mount(attachment: vol_model.Attachment, directory: str) -> None:
    """Format an empty volume and mount it at ``directory`` on the host."""
    if not has_file_system(attachment.device_path, attachment.volume_id):
        LOG.info('Volume %s is empty: making an %s file system on %s',
                 attachment.volume_id, FS_TYPE, attachment.device_path)
        _run(['mkfs.' + FS_TYPE, '-q', '-F', attachment.device_path],
             'format volume', attachment.volume_id)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        _run(['mount', attachment.device_path, directory], 'mount volume',
             attachment.volume_id)
    except BaseException:
        os.rmdir(directory)
        raise


def unmount(directory: str, volume: str) -> None:
    """Unmount a volume's host directory and remove it; absent is fine."""
    if os.path.ismount(directory):
        _run(['umount', directory], 'unmount volume', volume)
    if os.path.isdir(directory):
        os.rmdir(directory)


def mount_all(mount_path: str, uuid: str,
              found: list[vol_model.Attachment]
              ) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Mount the volumes of a spawn: the binds and labels of its container."""
    binds: dict[str, dict[str, str]] = {}
    done: list[str] = []
    try:
        for index, attachment in enumerate(found):
            directory = host_dir(mount_path, uuid, index)
            mount(attachment, directory)
            done.append(directory)
            binds[directory] = {'bind': attachment.mountpoint, 'mode': 'rw'}
    except BaseException:
        unmount_all(mount_path, uuid, found[:len(done)])
        raise
    labels = {LABEL: vol_model.dumps(found)} if found else {}
    return binds, labels


def binds_of(mount_path: str, uuid: str,
             found: list[vol_model.Attachment]) -> dict[str, typing.Any]:
    """The ``create_host_config`` binds of an existing container's volumes."""
    if not found:
        return {}
    return {'binds': {host_dir(mount_path, uuid, i): {
        'bind': a.mountpoint, 'mode': 'rw'} for i, a in enumerate(found)}}


def attachments(labels: dict[str, str] | None) -> list[vol_model.Attachment]:
    return vol_model.loads((labels or {}).get(LABEL))


def unmount_all(mount_path: str, uuid: str,
                found: list[vol_model.Attachment]) -> None:
    """Unmount what :func:`mount_all` mounted; logs and goes on."""
    for index, attachment in enumerate(found):
        try:
            unmount(host_dir(mount_path, uuid, index), attachment.volume_id)
        except (exception.ComputeDriverError, OSError) as exc:
            LOG.warning('Could not unmount volume %s: %s',
                        attachment.volume_id, exception.one_line(exc))
    shutil.rmtree(os.path.join(mount_path, uuid), ignore_errors=True)
