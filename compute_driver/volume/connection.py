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

"""Volumes connected to this host through os-brick.

One :class:`Connector` per backend connects a
:class:`~compute_driver.volume.model.Connection` with os-brick's
``InitiatorConnector.factory`` (``LOCAL`` for a device of this host,
``ISCSI`` for a LUN through open-iscsi), checks that what it gives is a
block device that nothing on the host holds, and disconnects it again.
os-brick is imported on first use, so that backends without volumes and
the CLI never load it; its privileged calls run in this process (a
compute host's driver runs as root), not through a privsep daemon.
"""

import contextlib
import errno
import importlib
import logging
import os
import socket
import stat
import sys
import threading
import typing
import warnings

from compute_driver import exception
from compute_driver.volume import exception as vol_exc
from compute_driver.volume import model

LOG = logging.getLogger(__name__)

#: Where the kernel lists the iSCSI transports it has: the initiator
#: needs ``tcp`` (the ``iscsi_tcp`` module).
ISCSI_TRANSPORT = '/sys/class/iscsi_transport/tcp'
#: open-iscsi's initiator name.
INITIATOR_FILE = '/etc/iscsi/initiatorname.iscsi'


def import_brick() -> typing.Any:
    """Import os-brick's connector module, which the extra installs.

    :raises BackendSDKMissing: naming the extra that installs it.
    """
    try:
        # os-brick pulls in oslo.privsep, which imports eventlet and warns
        # about it: nothing this library uses, and noise on a CLI's stderr.
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            privileged = importlib.import_module('os_brick.privileged')
            connector = importlib.import_module(
                'os_brick.initiator.connector')
    except ImportError as exc:
        raise exception.BackendSDKMissing(
            name='volumes', module='os_brick',
            hint='pip install "compute-driver[volumes]"') from exc
    # In-process: the driver already has the privileges, and a privsep
    # daemon would need sudo and a rootwrap configuration to start.
    privileged.default.set_client_mode(False)
    return connector


# platform.machine(), without importing platform; read once, when the
# module loads, as the machine does not change under a running process.
# The Nova adapter loads this module with itself (see there).
_MACHINE = os.uname().machine


def iscsi_missing() -> str | None:
    """What this host lacks to log in to an iSCSI target, or ``None``."""
    if not os.path.isdir(ISCSI_TRANSPORT):
        release = os.uname().release
        modules = '/lib/modules/%s' % release
        return ('the kernel %s has no iSCSI initiator: %s is absent (the '
                'iscsi_tcp module is not loaded%s)'
                % (release, ISCSI_TRANSPORT,
                   '' if os.path.isdir(modules) else
                   ' and cannot be: %s does not exist' % modules))
    if not any(os.access(os.path.join(d, 'iscsiadm'), os.X_OK)
               for d in os.environ.get('PATH', '/usr/sbin').split(':')):
        return 'open-iscsi\'s iscsiadm is not installed'
    return None


def device_size(path: str) -> int:
    """The size of a block device, in bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def check_block_device(volume: str, path: str) -> None:
    """Refuse a path that is not a block device with a medium.

    :raises VolumeDeviceNotFound: naming what it is instead.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise vol_exc.VolumeDeviceNotFound(
            volume=volume, device=path, reason=exc.strerror) from None
    if not stat.S_ISBLK(mode):
        raise vol_exc.VolumeDeviceNotFound(
            volume=volume, device=path, reason='it is not a block device')
    try:
        size = device_size(path)
    except OSError as exc:
        raise vol_exc.VolumeDeviceNotFound(
            volume=volume, device=path, reason=exc.strerror) from None
    if not size:
        # An unbound loop device, an empty drive.
        raise vol_exc.VolumeDeviceNotFound(
            volume=volume, device=path, reason='it has no medium (size 0)')


def check_not_held(volume: str, path: str) -> None:
    """Refuse a device that is mounted or claimed on the host.

    An exclusive open fails with EBUSY while a file system is mounted
    from the device, a device-mapper or md device is built on it, or a
    process holds it exclusively (as QEMU's block layer does with a
    ``file.locking`` lock on the images it writes).

    :raises VolumeInUse: saying so.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise vol_exc.VolumeInUse(
                volume=volume, device=path,
                reason='it is mounted or held by another user on this '
                       'host') from None
        raise vol_exc.VolumeDeviceNotFound(
            volume=volume, device=path, reason=exc.strerror) from None
    os.close(fd)


class Connector:
    """Connects and disconnects volumes on this host.

    :param conf: the library's configuration, with ``[volume]``.
    """

    def __init__(self, conf: typing.Any) -> None:
        self._conf = conf
        self._lock = threading.Lock()
        self._brick: typing.Any = None
        self._connectors: dict[str, typing.Any] = {}

    def _os_brick(self) -> typing.Any:
        with self._lock:
            if self._brick is None:
                brick = import_brick()
                from oslo_concurrency import lockutils
                lockutils.set_defaults(self._conf.volume.lock_path)
                self._brick = brick
            return self._brick

    def _connector(self, protocol: str) -> typing.Any:
        brick = self._os_brick()
        with self._lock:
            found = self._connectors.get(protocol)
            if found is None:
                found = brick.InitiatorConnector.factory(
                    model.PROTOCOLS[protocol], None,
                    device_scan_attempts=(
                        self._conf.volume.device_scan_attempts))
                self._connectors[protocol] = found
            return found

    def properties(self, host: str, ip: str | None = None
                   ) -> dict[str, typing.Any]:
        """This host's connector properties, for Cinder.

        What os-brick's ``get_connector_properties`` reports for the
        connectors this library uses (``LOCAL`` has none, ``ISCSI`` its
        initiator name), without probing the others: asking every
        connector (Fibre Channel, NVMe...) reads sysfs and runs tools this
        host may lack, for properties no attach here would use.
        """
        props: dict[str, typing.Any] = {
            'platform': _MACHINE, 'os_type': sys.platform,
            'ip': ip or '127.0.0.1', 'host': host, 'multipath': False,
            'enforce_multipath': False}
        try:
            with open(INITIATOR_FILE) as handle:
                for line in handle:
                    if line.startswith('InitiatorName='):
                        props['initiator'] = line.partition('=')[2].strip()
        except OSError:
            pass  # no open-iscsi: local volumes only
        return props

    def _reach(self, connection: model.Connection) -> None:
        portal = connection.data['target_portal']
        address, _, port = portal.rpartition(':')
        try:
            with socket.create_connection(
                    (address.strip('[]'), int(port)),
                    timeout=self._conf.volume.portal_timeout):
                pass
        except OSError as exc:
            raise vol_exc.VolumeConnectionFailed(
                volume=connection.volume_id,
                reason='iSCSI portal %s is unreachable: %s'
                       % (portal, exc.strerror or exc)) from None
        missing = iscsi_missing()
        if missing:
            raise vol_exc.VolumeConnectionFailed(
                volume=connection.volume_id, reason=missing)

    def connect(self, connection: model.Connection) -> str:
        """Connect a volume; its block device path on this host.

        :raises VolumeDeviceNotFound: when it leads to no block device.
        :raises VolumeInUse: when the device is mounted or held.
        :raises VolumeConnectionFailed: when os-brick cannot connect it.
        """
        if connection.protocol == model.ISCSI:
            self._reach(connection)
        connector = self._connector(connection.protocol)
        try:
            device = connector.connect_volume(dict(connection.data))
        except Exception as exc:
            # A failed login or a LUN that never appeared may leave a
            # session behind: log it out before reporting.
            self._disconnect_quietly(connection, None)
            raise vol_exc.VolumeConnectionFailed(
                volume=connection.volume_id,
                reason=exception.one_line(exc)) from exc
        path = device.get('path')
        try:
            if not isinstance(path, str):
                raise vol_exc.VolumeDeviceNotFound(
                    volume=connection.volume_id, device=str(path),
                    reason='os-brick returned no device path')
            check_block_device(connection.volume_id, path)
            check_not_held(connection.volume_id, path)
        except BaseException:
            if connection.protocol != model.LOCAL:
                self._disconnect_quietly(connection, device)
            raise
        return path

    def disconnect(self, connection: model.Connection,
                   device_path: str | None) -> None:
        """Disconnect a volume connected by :meth:`connect`.

        :raises VolumeConnectionFailed: when os-brick cannot.
        """
        connector = self._connector(connection.protocol)
        info = None if device_path is None else {'type': 'block',
                                                 'path': device_path}
        try:
            connector.disconnect_volume(dict(connection.data), info)
        except Exception as exc:
            raise vol_exc.VolumeConnectionFailed(
                volume=connection.volume_id,
                reason='disconnect failed: %s'
                       % exception.one_line(exc)) from exc

    def _disconnect_quietly(self, connection: model.Connection,
                            device: object) -> None:
        try:
            self._connector(connection.protocol).disconnect_volume(
                dict(connection.data), device, force=True,
                ignore_errors=True)
        except Exception as exc:
            LOG.warning('Could not disconnect volume %s: %s',
                        connection.volume_id, exception.one_line(exc))

    @contextlib.contextmanager
    def connected(self, connection: model.Connection
                  ) -> typing.Iterator[str]:
        """Connect a volume; disconnect it again if the block fails."""
        path = self.connect(connection)
        try:
            yield path
        except BaseException:
            self._disconnect_quietly(connection, {'type': 'block',
                                                  'path': path})
            raise

    def extend(self, connection: model.Connection) -> int:
        """Have os-brick see a grown volume; its new size in bytes."""
        connector = self._connector(connection.protocol)
        try:
            return int(connector.extend_volume(dict(connection.data)))
        except Exception as exc:
            raise vol_exc.VolumeConnectionFailed(
                volume=connection.volume_id,
                reason='extend failed: %s' % exception.one_line(exc)) from exc


def device_user(path: str, programs: tuple[str, ...] = (),
                pids: typing.Iterable[str] | None = None) -> str | None:
    """A process of this host that has ``path`` open, in words, or None.

    Hypervisors open the devices of attached volumes without an exclusive
    claim, so only their open files tell that a device is attached to a
    guest already.

    :param programs: look only at processes whose name starts with one of
        these (``qemu``); every process when empty.
    :param pids: look only at these processes (a hypervisor's list of
        its guests' processes); at every process of the host when None.
    """
    try:
        target = os.path.realpath(path)
        if pids is None:
            pids = [p for p in os.listdir('/proc') if p.isdigit()]
    except OSError:
        return None
    prefixes = tuple(p.encode() for p in programs)
    for pid in pids:
        comm = _comm(pid) if prefixes else b''
        if prefixes and (comm is None or not comm.startswith(prefixes)):
            continue
        # Links read relative to the open directory: no walk of the path
        # for each of the process's files.
        try:
            base = os.open('/proc/%s/fd' % pid,
                           os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            found = _opens(base, target)
        finally:
            os.close(base)
        if found:
            # Named only now: most processes are passed over.
            name = (comm or _comm(pid) or b'?').decode(errors='replace')
            return 'process %s (%s) has it open' % (pid, name)
    return None


def _opens(base: int, target: str) -> bool:
    """Whether a link in the open ``/proc/<pid>/fd`` ``base`` is ``target``."""
    try:
        fds = os.listdir(base)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd, dir_fd=base) == target:
                return True
        except OSError:
            continue
    return False


def _comm(pid: str) -> bytes | None:
    """A process's name, or None when it is gone."""
    # Raw reads: a buffered text file per process costs several times the
    # system calls, and a scan reads one for every process of the host.
    try:
        fd = os.open('/proc/%s/comm' % pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 64).strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def copy_device(source: str, target: str, chunk: int = 4 << 20) -> None:
    """Copy a block device's whole content onto a larger or equal one."""
    with open(source, 'rb', buffering=0) as src, \
            open(target, 'r+b', buffering=0) as dst:
        while True:
            data = src.read(chunk)
            if not data:
                break
            dst.write(data)
        os.fsync(dst.fileno())
