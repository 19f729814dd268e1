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

"""A dockerd and a libvirtd of a test's own, for the tests that restart one.

Restarting the dockerd or libvirtd every other test shares breaks those
tests mid-call, and whatever else uses the daemon on the machine. Worse,
a daemon a test starts again is its child and inherits what its thread
has: a test thread inside a network namespace (:mod:`.netlab`) puts the
shared daemon there for good, and a daemon that is the test process's
child stays a zombie, its ``/proc`` entry present, once it stops. So a
test that restarts a daemon starts one of its own:

* :class:`PrivateDockerd`: a second dockerd with its own data root, exec
  root (so its own containerd), socket and pid file, which makes no
  bridge and touches no iptables rule;
* :class:`PrivateLibvirtd`: a libvirtd (and the virtlogd it logs
  consoles through) in a mount namespace of its own, where libvirt's
  state, run, cache and domain configuration directories are empty
  tmpfs: it sees none of the shared daemon's domains, and its socket is
  in a directory of the test's.

Both run in the network namespace the test process started in, whatever
namespace the restarting thread is in, are the test process's children
(waited for, so a stop is seen at once), and :meth:`close` stops them,
with whatever they left running, and removes their directories.
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from compute_driver.testing import fixtures

#: This process's network namespace when the tests were collected, before
#: any test thread entered a lab's: where the private daemons run.
_HOST_NETNS_FD = os.open('/proc/thread-self/ns/net', os.O_RDONLY)
#: The same namespace as a path any process can open.
HOST_NETNS = '/proc/%d/fd/%d' % (os.getpid(), _HOST_NETNS_FD)

START_TIMEOUT = 60
STOP_TIMEOUT = 60


def _require(*tools):
    if os.geteuid() != 0:
        fixtures.skip_or_fail('a private daemon needs root')
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        fixtures.skip_or_fail('%s not installed' % ', '.join(missing))


def _tail(path, lines=20):
    try:
        with open(path, errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])
    except OSError as exc:
        return str(exc)


def _mount_ns(pid):
    try:
        return os.readlink('/proc/%d/ns/mnt' % pid)
    except OSError:
        return None


class _Daemon:
    """One daemon process, the test process's child."""

    def __init__(self, name, argv, log, enter=()):
        self.name = name
        self.argv = argv
        self.log = log
        self.enter = list(enter)
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        with open(self.log, 'ab') as log:
            self.proc = subprocess.Popen(
                ['nsenter', '--net=/proc/self/fd/%d' % _HOST_NETNS_FD,
                 *self.enter, '--', *self.argv],
                pass_fds=(_HOST_NETNS_FD,), cwd='/', stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        assert self.running(), '%s exited (%s):\n%s' % (
            self.name, self.proc.returncode, _tail(self.log))

    def stop(self):
        """SIGTERM, and wait until the process is gone (reaped)."""
        if not self.running():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError('%s did not stop within %d s of SIGTERM:\n%s'
                                 % (self.name, STOP_TIMEOUT, _tail(self.log)))

    def kill(self):
        """SIGKILL its process group (its session, started for it)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=STOP_TIMEOUT)


def _wait(what, check, daemon):
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        daemon.check_alive()
        try:
            if check():
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, (
            '%s did not answer within %d s:\n%s'
            % (what, START_TIMEOUT, _tail(daemon.log)))
        time.sleep(0.1)


class PrivateDockerd:
    """A dockerd of the test's own, with the test image loaded.

    :param source_api: a client of the shared dockerd, whose test image
        is copied into this one.
    :param image: that image's reference.
    """

    def __init__(self, source_api, image):
        _require('dockerd', 'nsenter')
        import docker
        self.dir = tempfile.mkdtemp(prefix='cdtest-dockerd-')
        self.url = 'unix://%s/docker.sock' % self.dir
        config = os.path.join(self.dir, 'daemon.json')
        with open(config, 'w') as handle:
            # Not the host's /etc/docker/daemon.json: its settings (hosts,
            # bridge, registry mirrors) are the shared daemon's.
            handle.write('{}\n')
        self.daemon = _Daemon('the private dockerd', [
            'dockerd', '--config-file', config,
            '--data-root', os.path.join(self.dir, 'data'),
            '--exec-root', os.path.join(self.dir, 'exec'),
            '--pidfile', os.path.join(self.dir, 'docker.pid'),
            '-H', self.url, '--bridge=none', '--iptables=false',
            '--ip6tables=false', '--ip-masq=false'],
            os.path.join(self.dir, 'dockerd.log'))
        self.api = None
        try:
            self.start()
            self.api = docker.APIClient(base_url=self.url, version='auto',
                                        timeout=60)
            self.api.load_image(b''.join(source_api.get_image(image)))
        except BaseException:
            self.close()
            raise

    def start(self):
        import docker
        self.daemon.start()

        def answers():
            # version='auto' asks the daemon at once.
            docker.APIClient(base_url=self.url, version='auto',
                             timeout=10).close()
            return True
        _wait('the private dockerd', answers, self.daemon)

    def restart(self):
        """Stop it with SIGTERM, as an administrator would, and start it."""
        self.daemon.stop()
        self.start()

    def close(self):
        errors = []
        if self.api is not None and self.daemon.running():
            try:
                for summary in self.api.containers(all=True):
                    self.api.remove_container(summary['Id'], force=True)
            except Exception as exc:
                errors.append('removing containers: %s' % exc)
            self.api.close()
        try:
            self.daemon.stop()
        except AssertionError as exc:
            errors.append(str(exc))
        # dockerd unmounts what it mounted under its roots when it stops;
        # one left would make the removal below fail, and say so.
        left = [line.split()[1] for line in open('/proc/self/mounts')
                if self.dir in line.split()[1]]
        shutil.rmtree(self.dir, ignore_errors=not left)
        assert not errors and not left, (errors, left)


#: libvirt's directories a privileged libvirtd keeps its state (and its
#: QEMU logs) in, emptied in the private daemon's mount namespace, so
#: nothing of it outlives the namespace. /etc/libvirt itself stays:
#: qemu.conf and the other drivers' settings are the host's.
LIBVIRT_PRIVATE_DIRS = ('/run/libvirt', '/var/lib/libvirt',
                        '/var/cache/libvirt', '/var/log/libvirt',
                        '/etc/libvirt/qemu',
                        '/etc/libvirt/storage', '/etc/libvirt/nwfilter',
                        '/etc/libvirt/secrets')

QEMU_CONF = '/etc/libvirt/qemu.conf'


class PrivateLibvirtd:
    """A libvirtd of the test's own; connect with :attr:`uri`.

    :param parent: the directory to make the daemon's own in; the QEMU
        user must be able to reach an instances path there.
    """

    def __init__(self, parent):
        _require('libvirtd', 'virtlogd', 'unshare', 'nsenter')
        os.makedirs(parent, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix='cdtest-libvirtd-', dir=parent)
        # QEMU runs as libvirt's QEMU user: it must reach the disks under
        # instances_path below.
        os.chmod(self.dir, 0o755)
        run = os.path.join(self.dir, 'run')
        os.mkdir(run)
        self.socket = os.path.join(run, 'libvirt-sock')
        self.uri = 'qemu+unix:///system?socket=%s' % self.socket
        self.instances_path = os.path.join(self.dir, 'instances')
        conf = os.path.join(self.dir, 'libvirtd.conf')
        with open(conf, 'w') as handle:
            # Root's only, as the shared daemon's socket is in effect.
            handle.write('unix_sock_dir = "%s"\n'
                         'unix_sock_rw_perms = "0700"\n'
                         'auth_unix_rw = "none"\n' % run)
        self.holder = None
        self.virtlogd = self.libvirtd = None
        try:
            self._hold_mount_namespace()
            enter = ['--mount=/proc/%d/ns/mnt' % self.holder.pid]
            self.virtlogd = _Daemon('the private virtlogd', [
                'virtlogd', '-p', os.path.join(self.dir, 'virtlogd.pid')],
                os.path.join(self.dir, 'virtlogd.log'), enter)
            self.libvirtd = _Daemon('the private libvirtd', [
                'libvirtd', '-f', conf,
                '-p', os.path.join(self.dir, 'libvirtd.pid')],
                os.path.join(self.dir, 'libvirtd.log'), enter)
            self.virtlogd.start()
            _wait('the private virtlogd', lambda: self._listening(
                '/run/libvirt/virtlogd-sock'), self.virtlogd)
            self.start()
        except BaseException:
            self.close()
            raise

    def _qemu_conf(self):
        """The host's qemu.conf, with VNC ports of this daemon's own.

        Each libvirtd hands out VNC ports from its own allocator, from
        5900 up: two daemons would give the same port to two guests, and
        the second QEMU fails to start. A range picked at random keeps
        clear of the shared daemon's and of other private ones, and
        below Linux's ephemeral ports (from 32768), which a connection
        may hold at the moment QEMU binds.
        """
        path = os.path.join(self.dir, 'qemu.conf')
        with open(QEMU_CONF) as handle:
            host = handle.read()
        low = random.randrange(10000, 32700, 100)
        with open(path, 'w') as handle:
            handle.write('%s\nremote_display_port_min = %d\n'
                         'remote_display_port_max = %d\n'
                         % (host, low, low + 99))
        return path

    def _hold_mount_namespace(self):
        script = ''.join('mount -t tmpfs -o mode=0755 cdtest %s && '
                         % path for path in LIBVIRT_PRIVATE_DIRS
                         if os.path.isdir(path))
        if os.path.isfile(QEMU_CONF):
            script += 'mount --bind %s %s && ' % (self._qemu_conf(),
                                                  QEMU_CONF)
        self.holder = subprocess.Popen(
            ['unshare', '--mount', '--propagation', 'private', '--',
             'sh', '-c', script + 'echo ready && exec sleep infinity'],
            cwd='/', stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        line = self.holder.stdout.readline()
        assert line == 'ready\n', 'cannot make the mount namespace: %s%s' % (
            line, self.holder.stdout.read())
        self.mount_ns = _mount_ns(self.holder.pid)

    def _listening(self, path):
        # The path as the daemons see it, inside their mount namespace.
        path = '/proc/%d/root%s' % (self.holder.pid, path)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
        return True

    def start(self):
        import libvirt
        self.libvirtd.start()

        def answers():
            # Not before the socket is there: libvirt would print each
            # failed attempt on stderr.
            if not os.path.exists(self.socket):
                return False
            libvirt.open(self.uri).close()
            return True
        _wait('the private libvirtd', answers, self.libvirtd)

    def restart(self):
        """Stop it with SIGTERM, as an administrator would, and start it.

        QEMU outlives it, as it outlives a real libvirtd restart.
        """
        self.libvirtd.stop()
        self.start()

    def _destroy_domains(self):
        import libvirt
        conn = libvirt.open(self.uri)
        try:
            for dom in conn.listAllDomains():
                # A transient domain is gone once destroyed.
                persistent = dom.isPersistent()
                if dom.isActive():
                    dom.destroy()
                if persistent:
                    dom.undefineFlags(
                        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                        libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                        libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        finally:
            conn.close()

    def close(self):
        errors = []
        if self.libvirtd is not None and self.libvirtd.running():
            try:
                self._destroy_domains()
            except Exception as exc:
                errors.append('destroying domains: %s' % exc)
        for daemon in (self.libvirtd, self.virtlogd):
            if daemon is not None:
                try:
                    daemon.stop()
                except AssertionError as exc:
                    errors.append(str(exc))
        if self.holder is not None:
            # Whatever still runs in the namespace (a QEMU the domains'
            # destroy missed) is this daemon's: end it, and say so.
            left = [pid for pid in self._pids_in_namespace()
                    if pid != self.holder.pid]
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if left:
                errors.append('processes left in the private mount '
                              'namespace: %s' % left)
            self.holder.kill()
            self.holder.wait(timeout=STOP_TIMEOUT)
            self.holder.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        assert not errors, errors

    def _pids_in_namespace(self):
        pids = []
        for entry in os.listdir('/proc'):
            if entry.isdigit() and _mount_ns(int(entry)) == self.mount_ns:
                pids.append(int(entry))
        return pids
