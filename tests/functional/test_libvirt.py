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

"""The libvirt backend against the real libvirtd, with QEMU emulating.

``tools/test-setup.d/30-libvirt.sh`` starts libvirtd and builds the test
image (Debian's cloud kernel and a busybox initramfs whose init prints
:data:`BOOT_LINE` on the serial console) into the default image store.
KVM is not assumed: every guest runs with ``virt_type = qemu``.
"""

import dataclasses
import json
import os
import shutil
import signal
import stat
import subprocess
import time
import uuid as uuidlib

import pytest

libvirt = pytest.importorskip('libvirt')

from compute_driver import driver as contract  # noqa: E402
from compute_driver import event as virtevent  # noqa: E402
from compute_driver import exception  # noqa: E402
from compute_driver import flavors  # noqa: E402
from compute_driver.libvirt import connection  # noqa: E402
from compute_driver.libvirt import mapping  # noqa: E402
from compute_driver.libvirt import recordindex  # noqa: E402
from compute_driver import loader  # noqa: E402
from compute_driver import objects  # noqa: E402
from compute_driver import power_state  # noqa: E402
from compute_driver.testing import conformance  # noqa: E402
from compute_driver.testing import fixtures  # noqa: E402
from tests.functional import private_daemons  # noqa: E402

IMAGE = 'cdtest-busybox'
BOOT_LINE = 'compute-driver test guest booted'
URI = 'qemu:///system'
IMAGES_PATH = '/var/lib/compute-driver/libvirt/images'
INSTANCES_PATH = '/var/lib/compute-driver/libvirt/instances'
#: The guest's kernel needs more than m1.nano's 64 MiB to boot.
FLAVOR = 'm1.micro'
#: Boots are slow in software emulation on a busy machine.
BOOT_TIMEOUT = 180

OVERRIDES = {
    'libvirt': {'virt_type': 'qemu', 'connection_uri': URI,
                'images_path': IMAGES_PATH,
                'instances_path': INSTANCES_PATH,
                'lifecycle_event_delay': 1, 'soft_reboot_timeout': 90,
                'shutdown_retry_interval': 3},
}


def instances_entries(path):
    """What ``instances_path`` holds, without the record index.

    The index (``records.json`` and its lock) lists every instance of the
    shared libvirtd, so it is there whatever a test did.
    """
    return sorted(e for e in os.listdir(path)
                  if e not in (recordindex.INDEX, recordindex.LOCK))


def _require_libvirtd():
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        fixtures.skip_or_fail('libvirtd is not reachable at %s: %s' % (
            URI, exc.get_error_message()))
    conn.close()
    if not os.path.exists(os.path.join(IMAGES_PATH, IMAGE + '.json')):
        fixtures.skip_or_fail(
            'the test image %s is not in %s; run '
            'tools/build-libvirt-test-image.sh' % (IMAGE, IMAGES_PATH))


class TestLibvirtQemuConformance(conformance.DriverConformanceTests):
    backend_name = 'libvirt'
    config_overrides = OVERRIDES
    image_ref = IMAGE
    flavor_name = FLAVOR
    event_timeout = 60.0
    min_memory_mb = 64

    @pytest.fixture
    def conf(self):
        _require_libvirtd()
        return fixtures.make_conf('libvirt', self.config_overrides)


@pytest.fixture
def conf():
    _require_libvirtd()
    return fixtures.make_conf('libvirt', OVERRIDES)


def _driver(conf):
    made = []
    driver = loader.load_driver(conf, 'libvirt')
    driver.init_host(conf.host)
    driver.made = made
    yield driver
    for instance in made:
        driver.destroy(instance)
    driver.cleanup_host(conf.host)


@pytest.fixture
def backend(conf):
    yield from _driver(conf)


def private_overrides(daemon):
    """:data:`OVERRIDES` for a private libvirtd: its URI, its instances."""
    return {'libvirt': dict(OVERRIDES['libvirt'], connection_uri=daemon.uri,
                            instances_path=daemon.instances_path)}


@pytest.fixture
def private_libvirtd():
    """A libvirtd of this test's own, which it may restart.

    Restarting the shared one would break every other test using it at
    the time; see :mod:`.private_daemons`.
    """
    _require_libvirtd()
    daemon = private_daemons.PrivateLibvirtd(os.path.dirname(INSTANCES_PATH))
    yield daemon
    daemon.close()


@pytest.fixture
def private_backend(private_libvirtd):
    yield from _driver(fixtures.make_conf(
        'libvirt', private_overrides(private_libvirtd)))


def _new(backend, flavor=FLAVOR, **fields):
    instance = objects.Instance.new(
        'cdfunc-%s' % uuidlib.uuid4().hex[:8],
        flavors.get_flavor(backend.conf, flavor)
        if isinstance(flavor, str) else flavor, IMAGE)
    instance = dataclasses.replace(instance, **fields)
    backend.made.append(instance)
    return instance


def _spawn(backend, instance, power_on=True):
    backend.spawn(instance, power_on=power_on)


def _wait_for_console(backend, instance, text, timeout=BOOT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        output = backend.get_console_output(instance)
        if text in output:
            return output
        if time.monotonic() > deadline:
            pytest.fail('%r not in the console log of %s after %ss:\n%s' % (
                text, instance.name, timeout, output[-2000:]))
        time.sleep(0.5)


def _assert_nothing_left(instance, uri=URI, instances_path=INSTANCES_PATH):
    conn = libvirt.open(uri)
    try:
        names = [d.name() for d in conn.listAllDomains()]
        uuids = [d.UUIDString() for d in conn.listAllDomains()]
    finally:
        conn.close()
    assert mapping.domain_name(instance.name) not in names
    assert instance.uuid not in uuids
    assert not os.path.exists(os.path.join(instances_path, instance.uuid))


def test_console_log_shows_the_guest_booting(backend):
    instance = _new(backend)
    _spawn(backend, instance)
    output = _wait_for_console(backend, instance, BOOT_LINE)
    assert 'compute-driver: starting %s' % instance.name in output
    # A soft reboot is a real guest shutdown through ACPI, and the log
    # keeps the first boot's lines.
    backend.reboot(instance, 'SOFT')
    output = _wait_for_console(backend, instance, 'rebooting (soft)')
    assert 'power button pressed' in output
    assert backend.get_info(instance).state == power_state.RUNNING


def test_clean_power_off(backend):
    instance = _new(backend)
    _spawn(backend, instance)
    _wait_for_console(backend, instance, BOOT_LINE)
    backend.power_off(instance, timeout=BOOT_TIMEOUT, retry_interval=3)
    assert backend.get_info(instance).state == power_state.SHUTDOWN
    assert 'reboot: Power down' in backend.get_console_output(instance)


def shared_libvirtd_pid():
    """The shared libvirtd's pid, from the pid file it writes, or None."""
    try:
        with open('/var/run/libvirtd.pid', encoding='ascii') as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def test_libvirtd_restart_while_the_driver_is_alive(private_libvirtd,
                                                    private_backend):
    backend = private_backend
    recorder = fixtures.EventRecorder()
    backend.register_event_listener(recorder)
    running, stopped, saved = _new(backend), _new(backend), _new(backend)
    _spawn(backend, running)
    _spawn(backend, stopped, power_on=False)
    _spawn(backend, saved)
    backend.suspend(saved)
    private_libvirtd.restart()
    # The first call after the restart reconnects, waiting for the new
    # libvirtd to listen.
    states = {r.instance.uuid: r.info.state
              for r in backend.list_instance_records()}
    assert states[running.uuid] == power_state.RUNNING
    assert states[stopped.uuid] == power_state.SHUTDOWN
    # libvirtd no longer knows why the domain is shut off; the managed
    # save still makes it suspended.
    assert states[saved.uuid] == power_state.SUSPENDED
    assert backend.get_info(saved).state == power_state.SUSPENDED
    # Events flow again: the callback was registered on the new
    # connection.
    mark = recorder.mark()
    backend.power_on(stopped)
    recorder.wait_for(stopped.uuid, virtevent.EVENT_LIFECYCLE_STARTED,
                      timeout=60, since=mark)
    backend.destroy(running)
    _assert_nothing_left(running, private_libvirtd.uri,
                         private_libvirtd.instances_path)


def test_domain_undefined_out_of_band(backend):
    instance = _new(backend)
    _spawn(backend, instance, power_on=False)
    conn = libvirt.open(URI)
    try:
        conn.lookupByUUIDString(instance.uuid).undefine()
    finally:
        conn.close()
    assert instance.uuid not in backend.list_instance_uuids()
    with pytest.raises(exception.InstanceNotFound):
        backend.get_info(instance)
    # The directory the domain left behind goes with destroy.
    assert os.path.isdir(os.path.join(INSTANCES_PATH, instance.uuid))
    backend.destroy(instance)
    _assert_nothing_left(instance)


def test_spawn_failing_half_way_leaves_nothing(backend, monkeypatch):
    # libvirt defines the domain; qemu then refuses more vCPUs than the
    # pc machine type has, so the start fails after the disk, the
    # directory and the domain were made. The checks refusing a flavor
    # larger than the host, which would stop it first, are lifted: the
    # whole-host check and the claim's vCPU limit.
    monkeypatch.setattr(contract, 'check_flavor_fits_host',
                        lambda flavor, resources, **kwargs: None)
    backend.conf.set_override('cpu_allocation_ratio', 1000.0)
    flavor = objects.Flavor('cdfunc.wide', vcpus=300, memory_mb=128,
                            root_gb=1)
    instance = _new(backend, flavor=flavor)
    with pytest.raises(exception.BackendError):
        _spawn(backend, instance)
    _assert_nothing_left(instance)
    assert instance.uuid not in backend.list_instance_uuids()


def test_missing_image_file(backend, tmp_path, conf):
    store = tmp_path / 'images'
    store.mkdir()
    (store / 'cdfunc-broken.json').write_text(json.dumps(
        {'file': 'cdfunc-broken.qcow2', 'disk_format': 'qcow2'}))
    conf.set_override('images_path', str(store), group='libvirt')
    other = loader.load_driver(conf, 'libvirt')
    other.init_host(conf.host)
    try:
        instance = dataclasses.replace(_new(backend),
                                       image_ref='cdfunc-broken')
        with pytest.raises(exception.ImageNotFound) as caught:
            _spawn(other, instance)
        assert 'is missing' in str(caught.value)
        _assert_nothing_left(instance)
    finally:
        other.cleanup_host(conf.host)


def test_flavor_below_the_guest_minimum(backend):
    instance = _new(backend, flavor='m1.nano')
    with pytest.raises(exception.InvalidInput) as caught:
        _spawn(backend, instance)
    assert 'needs 128' in str(caught.value)
    _assert_nothing_left(instance)


def test_unknown_virt_type_in_config():
    with pytest.raises(exception.InvalidConfiguration) as caught:
        fixtures.make_conf('libvirt', {'libvirt': {'virt_type': 'hyperv'}})
    assert 'virt_type' in str(caught.value)


# -- the CLI ----------------------------------------------------------------


@pytest.fixture
def cli(tmp_path):
    _require_libvirtd()
    conf_file = tmp_path / 'compute-driver.conf'
    lines = ['[DEFAULT]', 'compute_driver = libvirt', 'host = functest',
             '[libvirt]']
    lines += ['%s = %s' % item for item in OVERRIDES['libvirt'].items()]
    conf_file.write_text('\n'.join(lines) + '\n')
    script = fixtures.console_script()
    env = dict(os.environ, HOME=str(tmp_path), COLUMNS='200')

    def run(*argv):
        result = subprocess.run(
            [script, '--config-file', str(conf_file), *argv], env=env,
            capture_output=True, text=True, timeout=600)
        assert 'Traceback' not in result.stderr, result.stderr
        return result
    return run


def _show(cli, name):
    result = cli('show', name, '-f', 'json')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_snapshot_killed_while_the_guest_is_paused_is_undone(cli, tmp_path):
    # The CLI is killed while qemu-img copies the paused guest's disk:
    # the next command's sweep resumes the guest and removes the store
    # file the copy had claimed.
    name = 'cdfunc-snapkill-%s' % uuidlib.uuid4().hex[:6]
    snap = name + '-snap'
    result = cli('boot', name, '--image', IMAGE, '--flavor', FLAVOR)
    assert result.returncode == 0, result.stderr
    uuid = _show(cli, name)['uuid']
    # A qemu-img whose copy waits to be killed with the CLI, once it has
    # said it started.
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    started = tmp_path / 'convert-started'
    wrapper = bin_dir / 'qemu-img'
    wrapper.write_text(
        '#!/bin/sh\n'
        'if [ "$1" = convert ]; then : > %s; exec sleep 600; fi\n'
        'exec %s "$@"\n' % (started, shutil.which('qemu-img')))
    wrapper.chmod(0o755)
    env = dict(os.environ, HOME=str(tmp_path),
               PATH='%s:%s' % (bin_dir, os.environ['PATH']))
    store_file = os.path.join(IMAGES_PATH, snap + '.qcow2')
    try:
        process = subprocess.Popen(
            [fixtures.console_script(), '--config-file',
             str(tmp_path / 'compute-driver.conf'), 'snapshot', name, snap],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            deadline = time.monotonic() + BOOT_TIMEOUT
            while not started.exists():
                assert process.poll() is None, 'the snapshot ended'
                assert time.monotonic() < deadline, 'no copy started'
                time.sleep(0.05)
        finally:
            # The CLI and its qemu-img, as a killed session goes.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        conn = libvirt.open(URI)
        try:
            dom = conn.lookupByUUIDString(uuid)
            assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        finally:
            conn.close()
        assert os.path.exists(store_file)
        [row] = json.loads(cli('cleanup', '--dry-run', '-f', 'json').stdout)
        assert (row['Object'], row['Reason']) == (
            'snapshot of instance %s; its guest paused' % uuid,
            'its snapshot was interrupted')
        [row] = json.loads(cli('cleanup', '-f', 'json').stdout)
        assert row['Result'] == 'removed'
        assert _show(cli, name)['state'] == 'running'
        assert not os.path.exists(store_file)
        assert not os.path.exists(
            os.path.join(INSTANCES_PATH, uuid + '.snapshotting'))
        assert snap not in cli('images', '-f', 'value', '-c',
                               'Name').stdout.split()
    finally:
        if os.path.exists(store_file):
            os.unlink(store_file)
        result = cli('delete', name)
        assert result.returncode == 0, result.stderr


def test_cli_lifecycle(cli):
    name = 'cdfunc-cli-%s' % uuidlib.uuid4().hex[:6]
    snap = name + '-snap'
    result = cli('boot', name, '--image', IMAGE, '--flavor', FLAVOR,
                 '-f', 'json')
    assert result.returncode == 0, result.stderr
    uuid = _show(cli, name)['uuid']
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while BOOT_LINE not in cli('console-log', name).stdout:
            assert time.monotonic() < deadline, 'the guest did not boot'
            time.sleep(1)
        for argv, state in (
                (('stop', name), 'shutdown'), (('start', name), 'running'),
                (('reboot', name), 'running'),
                (('reboot', '--hard', name), 'running'),
                (('pause', name), 'paused'), (('unpause', name), 'running'),
                (('suspend', name), 'suspended'),
                (('resume', name), 'running'),
                (('snapshot', name, snap), 'running'),
                (('revert', name, snap), 'running'),
                (('live-resize', name, '--memory', '64'), 'running')):
            result = cli(*argv)
            assert result.returncode == 0, (argv, result.stderr)
            assert _show(cli, name)['state'] == state, argv
        result = cli('images', '-f', 'value', '-c', 'Name')
        assert snap in result.stdout.split(), result.stdout
    finally:
        result = cli('delete', name)
        assert result.returncode == 0, result.stderr
        # The CLI has no command to delete an image.
        cleanup = loader.load_driver(
            fixtures.make_conf('libvirt', OVERRIDES), 'libvirt')
        cleanup.delete_snapshot(snap)
    assert cli('show', name).returncode != 0
    assert not os.path.exists(os.path.join(INSTANCES_PATH, uuid))
    conn = libvirt.open(URI)
    try:
        assert uuid not in [d.UUIDString() for d in conn.listAllDomains()]
    finally:
        conn.close()


def test_cli_check_and_verify(cli):
    result = cli('check', '-f', 'json')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)['hypervisor_type'] == 'QEMU'
    result = cli('verify', '--count', '2', '--concurrency', '2',
                 '--image', IMAGE, '--flavor', FLAVOR)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [[cell.strip() for cell in line.split('|')[1:-1]]
            for line in result.stdout.splitlines()[3:-1]]
    # A serial port Nova's proxy reaches is TCP, configured off here; and
    # running a command is a container's operation.
    rows = [row for row in rows if row[0] not in ('serial_console',
                                                  'execute')]
    assert rows and all(row[1:5] == ['2', '0', '0', '0'] for row in rows), \
        result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason='mknod needs root')
def test_kvm_node_the_qemu_user_cannot_open_is_reported(conf, tmp_path):
    """Against libvirtd's own capabilities: who it runs QEMU as."""
    host = connection.Host(URI, 'qemu')
    try:
        node = tmp_path / 'kvm'
        # A character device like /dev/kvm without being it (this one is
        # /dev/null's numbers), so libvirtd's own view is untouched.
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        os.chown(node, 0, 0)
        os.chmod(node, 0o600)
        uid, _ = host.get_dac_label()
        warnings = host.kvm_device_warnings(str(node))
        if uid == 0:
            assert warnings == []
            return
        assert len(warnings) == 1
        assert '%s is root:root 0600' % node in warnings[0]
        os.chmod(node, 0o666)
        assert host.kvm_device_warnings(str(node)) == []
    finally:
        host.close()


def test_host_identity_is_libvirtds_host_uuid(backend):
    conn = libvirt.open(URI)
    try:
        caps = conn.getCapabilities()
    finally:
        conn.close()
    expected = connection.ElementTree.fromstring(caps).findtext(
        'host/uuid')
    assert expected
    assert backend.get_host_identity() == expected
