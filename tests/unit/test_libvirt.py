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

"""The libvirt backend against libvirt's built-in test driver.

``test:///default`` is a hypervisor inside libvirt itself: it keeps its
domains in the process, emits lifecycle events and accepts ``type='xen'``
domains, so the backend's XML, version gates, events and state mapping are
exercised without libvirtd. Disks are raw copies made without qemu-img;
the test driver never opens them.
"""

import dataclasses
import gc
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import threading

import pytest

libvirt = pytest.importorskip('libvirt')

from compute_driver.cmd import main  # noqa: E402
from compute_driver import event as virtevent  # noqa: E402
from compute_driver import exception  # noqa: E402
from compute_driver import flavors  # noqa: E402
from compute_driver.image import exception as image_exception  # noqa
from compute_driver.libvirt import connection  # noqa: E402
from compute_driver.libvirt import domainxml  # noqa: E402
from compute_driver.libvirt import driver as libvirt_driver  # noqa: E402
from compute_driver.libvirt import events  # noqa: E402
from compute_driver.libvirt import images  # noqa: E402
from compute_driver.libvirt import mapping  # noqa: E402
from compute_driver import loader  # noqa: E402
from compute_driver import objects  # noqa: E402
from compute_driver import power_state  # noqa: E402
from compute_driver.testing import conformance  # noqa: E402
from compute_driver.testing import fixtures  # noqa: E402

IMAGE = 'cdunit-image'
TEST_URI = 'test:///default'


def make_store(root):
    """An image store with one raw image and a kernel for direct boot."""
    images = root / 'images'
    images.mkdir()
    (images / (IMAGE + '.raw')).write_bytes(b'\0' * 4096)
    (images / (IMAGE + '.vmlinuz')).write_bytes(b'kernel')
    (images / (IMAGE + '.initrd')).write_bytes(b'initrd')
    (images / (IMAGE + '.json')).write_text(json.dumps({
        'file': IMAGE + '.raw', 'disk_format': 'raw',
        'kernel': IMAGE + '.vmlinuz', 'ramdisk': IMAGE + '.initrd',
        'cmdline': 'console=ttyS0', 'min_ram': 32,
        'properties': {'os_type': 'linux'}}))
    return images


def store_conf(root, **libvirt_opts):
    images = make_store(root) if not (root / 'images').exists() else (
        root / 'images')
    opts = {'virt_type': 'qemu', 'connection_uri': TEST_URI,
            'images_path': str(images),
            'instances_path': str(root / 'instances'),
            'disk_format': 'raw', 'lifecycle_event_delay': 0,
            'soft_reboot_timeout': 5, 'shutdown_retry_interval': 1}
    opts.update(libvirt_opts)
    return fixtures.make_conf('libvirt', {'libvirt': opts})


class TestLibvirtTestDriverConformance(conformance.DriverConformanceTests):
    """The whole suite on the test driver, with raw disks."""

    backend_name = 'libvirt'

    @pytest.fixture
    def conf(self, tmp_path):
        # Snapshots are written with qemu-img even from raw disks.
        if shutil.which('qemu-img') is None:
            fixtures.skip_or_fail('qemu-img is not installed (Debian '
                                  'package qemu-utils)')
        return store_conf(tmp_path)

    def test_attach_and_detach_interface_while_stopped(self):
        # Run against QEMU by tests/functional/test_libvirt.py.
        pytest.skip("libvirt's test driver has no virDomainAttachDeviceFlags")


@pytest.fixture
def versions(monkeypatch):
    """Make the connection report chosen versions.

    ``versions(libvirt=(1, 2, 8), hypervisor=(4, 4, 0), hv_type='Xen')``;
    the test driver itself reports libvirt's own version and ``TEST``.
    """
    def set_versions(libvirt=(9, 0, 0), hypervisor=(7, 2, 0),
                     hv_type='QEMU'):
        monkeypatch.setattr(connection.Host, 'get_libvirt_version',
                            lambda self: libvirt)
        monkeypatch.setattr(connection.Host, 'get_hypervisor_version',
                            lambda self: hypervisor)
        monkeypatch.setattr(connection.Host, 'get_hypervisor_type',
                            lambda self: hv_type)
    return set_versions


@pytest.fixture
def make_driver(tmp_path):
    # test:///default keeps its domains while any connection to it is
    # open; a connection of an earlier test that only the garbage
    # collector can close (a driver in a reference cycle) would carry its
    # domains into this one.
    gc.collect()
    made = []

    def factory(**libvirt_opts):
        backend = loader.load_driver(store_conf(tmp_path, **libvirt_opts),
                                     'libvirt')
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.cleanup_host('test')


_HV = {'kvm': 'QEMU', 'qemu': 'QEMU', 'xen': 'Xen', 'lxc': 'LXC'}


def _below(version):
    major, minor, micro = version
    if micro:
        return (major, minor, micro - 1)
    if minor:
        return (major, minor - 1, 999)
    return (major - 1, 999, 999)


@pytest.mark.parametrize('virt_type', sorted(connection.MIN_VERSIONS))
def test_libvirt_minimum_boundary(make_driver, versions, virt_type):
    gate = connection.MIN_VERSIONS[virt_type]
    backend = make_driver(virt_type=virt_type)
    versions(libvirt=_below(gate.libvirt), hypervisor=(99, 0, 0),
             hv_type=_HV[virt_type])
    with pytest.raises(exception.HypervisorVersionTooOld) as caught:
        backend.init_host('test')
    assert caught.value.component == 'libvirt'
    assert caught.value.virt_type == virt_type
    versions(libvirt=gate.libvirt, hypervisor=(99, 0, 0),
             hv_type=_HV[virt_type])
    backend.init_host('test')


def test_xen_on_libvirt_1_2_8_is_refused_and_1_2_9_accepted(
        make_driver, versions, caplog):
    backend = make_driver(virt_type='xen')
    versions(libvirt=(1, 2, 8), hypervisor=(4, 4, 0), hv_type='Xen')
    with pytest.raises(exception.HypervisorVersionTooOld) as caught:
        backend.init_host('test')
    assert str(caught.value) == (
        'libvirt 1.2.8 is too old for virt_type xen; at least 1.2.9 is '
        'required.')
    versions(libvirt=(1, 2, 9), hypervisor=(4, 4, 0), hv_type='Xen')
    with caplog.at_level(logging.WARNING):
        backend.init_host('test')
    assert 'libvirt 1.2.9 with virt_type xen is deprecated' in caplog.text


@pytest.mark.parametrize('virt_type', ['kvm', 'qemu', 'xen'])
def test_hypervisor_minimum_boundary(make_driver, versions, virt_type):
    gate = connection.MIN_VERSIONS[virt_type]
    backend = make_driver(virt_type=virt_type)
    versions(libvirt=(9, 0, 0), hypervisor=_below(gate.hypervisor),
             hv_type=gate.hypervisor_name)
    with pytest.raises(exception.HypervisorVersionTooOld) as caught:
        backend.init_host('test')
    assert caught.value.component == gate.hypervisor_name
    assert caught.value.required == '.'.join(map(str, gate.hypervisor))
    versions(libvirt=(9, 0, 0), hypervisor=gate.hypervisor,
             hv_type=gate.hypervisor_name)
    backend.init_host('test')


def test_hypervisor_minimum_only_for_its_connection_type(make_driver,
                                                         versions):
    backend = make_driver(virt_type='qemu')
    versions(libvirt=(9, 0, 0), hypervisor=(0, 0, 2), hv_type='TEST')
    backend.init_host('test')


@pytest.mark.parametrize('virt_type', sorted(connection.MIN_VERSIONS))
def test_next_minimum_warns_below_only(make_driver, versions, caplog,
                                       virt_type):
    upcoming = connection.NEXT_MIN_VERSIONS[virt_type]
    backend = make_driver(virt_type=virt_type)
    hypervisor = upcoming.hypervisor or (99, 0, 0)
    versions(libvirt=_below(upcoming.libvirt), hypervisor=hypervisor,
             hv_type=_HV[virt_type])
    with caplog.at_level(logging.WARNING):
        backend.init_host('test')
    assert 'deprecated' in caplog.text
    caplog.clear()
    versions(libvirt=upcoming.libvirt, hypervisor=hypervisor,
             hv_type=_HV[virt_type])
    with caplog.at_level(logging.WARNING):
        backend.init_host('test')
    assert 'deprecated' not in caplog.text


def test_minimum_tables_cover_every_virt_type():
    from compute_driver.libvirt import conf as libvirt_conf
    assert (sorted(connection.MIN_VERSIONS) ==
            sorted(connection.NEXT_MIN_VERSIONS) ==
            sorted(libvirt_conf.DEFAULT_URIS))
    for virt_type, gate in connection.MIN_VERSIONS.items():
        assert gate.libvirt >= connection.MIN_LIBVIRT_VERSION
        assert connection.NEXT_MIN_VERSIONS[virt_type].libvirt > \
            gate.libvirt


def test_cli_check_refuses_old_libvirt(tmp_path, versions, capsys):
    images = make_store(tmp_path)
    conf_file = tmp_path / 'compute-driver.conf'
    conf_file.write_text(
        '[DEFAULT]\ncompute_driver = libvirt\nhost = testhost\n'
        '[libvirt]\nvirt_type = xen\nconnection_uri = %s\n'
        'images_path = %s\ninstances_path = %s\n' % (
            TEST_URI, images, tmp_path / 'instances'))
    versions(libvirt=(1, 2, 8), hypervisor=(4, 4, 0), hv_type='Xen')
    rc = main.main(['--config-file', str(conf_file), 'check'])
    out, err = capsys.readouterr()
    assert rc != 0
    assert ('libvirt 1.2.8 is too old for virt_type xen; at least 1.2.9 '
            'is required.') in err
    assert 'Traceback' not in err
    versions(libvirt=(1, 2, 9), hypervisor=(4, 4, 0), hv_type='Xen')
    assert main.main(['--config-file', str(conf_file), 'check']) == 0


# -- configuration and bad input ------------------------------------------


def test_unknown_virt_type_is_a_configuration_error(tmp_path):
    with pytest.raises(exception.InvalidConfiguration) as caught:
        store_conf(tmp_path, virt_type='vmware')
    assert 'virt_type' in str(caught.value)


@pytest.mark.parametrize('option', ['images_path', 'instances_path'])
def test_relative_paths_are_a_configuration_error(tmp_path, option):
    conf = store_conf(tmp_path, **{option: 'relative/dir'})
    with pytest.raises(exception.InvalidConfiguration) as caught:
        libvirt_driver.LibvirtDriver(conf)
    assert caught.value.reason == (
        "[libvirt] %s must be an absolute path, got 'relative/dir'"
        % option)


@pytest.mark.parametrize('virt_type,uri', [
    ('kvm', 'qemu:///system'), ('qemu', 'qemu:///system'),
    ('xen', 'xen:///system'), ('lxc', 'lxc:///system')])
def test_connection_uri_defaults_per_virt_type(tmp_path, virt_type, uri):
    conf = store_conf(tmp_path, virt_type=virt_type, connection_uri='')
    assert libvirt_driver.LibvirtDriver(conf).uri == uri


def _instance(conf, name='cdunit-vm', flavor='m1.nano'):
    return objects.Instance.new(name, flavors.get_flavor(conf, flavor),
                                IMAGE, {'purpose': 'unit'})


def _assert_nothing_left(backend, instance, tmp_path):
    assert instance.uuid not in backend.list_instance_uuids()
    assert not (tmp_path / 'instances' / instance.uuid).exists()
    conn = backend._host.get_connection()
    assert mapping.domain_name(instance.name) not in [
        d.name() for d in conn.listAllDomains()]


def test_missing_image_file_is_image_not_found(make_driver, tmp_path):
    backend = make_driver()
    backend.init_host('test')
    (tmp_path / 'images' / (IMAGE + '.raw')).unlink()
    instance = _instance(backend.conf)
    with pytest.raises(exception.ImageNotFound) as caught:
        backend.spawn(instance)
    assert 'is missing' in str(caught.value)
    _assert_nothing_left(backend, instance, tmp_path)


def test_flavor_below_image_minimum_is_refused(make_driver, tmp_path):
    backend = make_driver()
    backend.init_host('test')
    flavor = objects.Flavor('cdunit.tiny', vcpus=1, memory_mb=16)
    instance = dataclasses.replace(_instance(backend.conf), flavor=flavor)
    with pytest.raises(exception.InvalidInput) as caught:
        backend.spawn(instance)
    assert 'needs 32' in str(caught.value)
    _assert_nothing_left(backend, instance, tmp_path)


def test_spawn_failing_at_start_leaves_nothing(make_driver, tmp_path,
                                               monkeypatch):
    backend = make_driver()
    backend.init_host('test')
    instance = _instance(backend.conf)

    def broken_create(self, *args):
        raise libvirt.libvirtError('start refused on purpose')

    monkeypatch.setattr(libvirt.virDomain, 'create', broken_create)
    with pytest.raises(exception.BackendError) as caught:
        backend.spawn(instance)
    assert 'start refused on purpose' in str(caught.value)
    _assert_nothing_left(backend, instance, tmp_path)


def test_boot_file_downloads_find_the_cache_searchable(make_driver,
                                                       monkeypatch):
    # A boot's kernel and ramdisk download in threads of their own, which
    # may reach the cache before the disk's download: the directory they
    # find must already be one QEMU can search, not the private directory
    # a download creates. One left private earlier is opened up.
    backend = make_driver()
    cache = backend.image_cache.path
    os.makedirs(cache, mode=0o700)
    found = []

    def boot_file(image_id, records):
        found.append(stat.S_IMODE(os.stat(cache).st_mode))
        return os.path.join(cache, image_id)

    def fetch_checked(image, instance):
        raise exception.ImageUnacceptable(image=image.id, reason='unit')

    monkeypatch.setattr(backend, '_boot_file', boot_file)
    monkeypatch.setattr(backend, '_fetch_checked', fetch_checked)
    image = objects.ImageMeta(name='disk-id', disk_format='qcow2',
                              container_format='bare', properties={
                                  'kernel_id': 'kernel-id',
                                  'ramdisk_id': 'ramdisk-id'})
    with pytest.raises(exception.ImageUnacceptable):
        with backend._prepare_service_image(_instance(backend.conf), image):
            pass
    assert found == [0o711, 0o711]


def test_green_threads_are_refused_rather_than_hanging(monkeypatch,
                                                       tmp_path):
    # Under eventlet's monkey patching the event loop's thread would be a
    # green thread blocking the whole process in libvirt's C loop.
    class Patcher:
        @staticmethod
        def is_monkey_patched(module):
            return module == 'thread'

    monkeypatch.setitem(sys.modules, 'eventlet.patcher', Patcher)
    monkeypatch.setattr(connection, '_loop_thread', None)
    started = []
    monkeypatch.setattr(connection.threading, 'Thread',
                        lambda *a, **kw: started.append(kw))
    backend = loader.load_driver(store_conf(tmp_path), 'libvirt')
    with pytest.raises(exception.InvalidConfiguration) as caught:
        backend.init_host('test')
    assert 'concurrency_backend = threading' in str(caught.value)
    assert started == []
    assert connection._loop_thread is None


def test_domain_undefined_out_of_band(make_driver, tmp_path):
    backend = make_driver()
    backend.init_host('test')
    instance = _instance(backend.conf)
    backend.spawn(instance, power_on=False)
    assert instance.uuid in backend.list_instance_uuids()
    backend._host.get_connection().lookupByUUIDString(instance.uuid).undefine()
    assert instance.uuid not in [r.instance.uuid for r in
                                 backend.list_instance_records()]
    with pytest.raises(exception.InstanceNotFound):
        backend.get_info(instance)
    backend.destroy(instance)
    _assert_nothing_left(backend, instance, tmp_path)


def test_foreign_domains_are_not_listed(make_driver):
    backend = make_driver()
    backend.init_host('test')
    # test:///default comes with a domain named "test".
    names = [d.name() for d in backend._host.get_connection().listAllDomains()]
    assert 'test' in names
    assert 'test' not in backend.list_instances()


# -- state and event mapping ----------------------------------------------


@pytest.mark.parametrize('state,reason,saved,expected', [
    (libvirt.VIR_DOMAIN_RUNNING, 1, None, power_state.RUNNING),
    (libvirt.VIR_DOMAIN_BLOCKED, 0, None, power_state.RUNNING),
    (libvirt.VIR_DOMAIN_PAUSED, 1, None, power_state.PAUSED),
    (libvirt.VIR_DOMAIN_SHUTDOWN, 1, None, power_state.SHUTDOWN),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED, None,
     power_state.SHUTDOWN),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SAVED, None,
     power_state.SUSPENDED),
    (libvirt.VIR_DOMAIN_SHUTOFF, 0, True, power_state.SUSPENDED),
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SAVED, False,
     power_state.SHUTDOWN),
    (libvirt.VIR_DOMAIN_CRASHED, 0, None, power_state.CRASHED),
    (libvirt.VIR_DOMAIN_PMSUSPENDED, 0, None, power_state.SUSPENDED),
    (libvirt.VIR_DOMAIN_NOSTATE, 0, None, power_state.NOSTATE),
])
def test_map_state(state, reason, saved, expected):
    assert mapping.map_state(state, reason, saved) == expected


@pytest.mark.parametrize('event,detail,expected', [
    (libvirt.VIR_DOMAIN_EVENT_STARTED, 0, virtevent.EVENT_LIFECYCLE_STARTED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED,
     virtevent.EVENT_LIFECYCLE_SUSPENDED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED,
     virtevent.EVENT_LIFECYCLE_STOPPED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED,
     virtevent.EVENT_LIFECYCLE_MIGRATION_COMPLETED),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, 0, virtevent.EVENT_LIFECYCLE_PAUSED),
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, 0, virtevent.EVENT_LIFECYCLE_RESUMED),
    (libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED, 0,
     virtevent.EVENT_LIFECYCLE_SUSPENDED),
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, 0, None),
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, 0, None),
    (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, 0, None),
])
def test_map_event(event, detail, expected):
    assert events.map_event(event, detail) == expected


def test_stopped_is_held_and_cancelled_by_started(make_driver):
    backend = make_driver(lifecycle_event_delay=30)
    recorder = fixtures.EventRecorder()
    backend.register_event_listener(recorder)
    uuid = '11111111-2222-3333-4444-555555555555'
    name = mapping.domain_name('held')
    backend._events.on_domain_event(
        uuid, name, libvirt.VIR_DOMAIN_EVENT_STOPPED,
        libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN)
    assert uuid in backend._events._held_stops
    backend._events.on_domain_event(
        uuid, name, libvirt.VIR_DOMAIN_EVENT_STARTED,
        libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    recorder.wait_for(uuid, virtevent.EVENT_LIFECYCLE_STARTED)
    assert uuid not in backend._events._held_stops
    assert recorder.transitions(uuid) == [virtevent.EVENT_LIFECYCLE_STARTED]


def test_stopped_is_emitted_after_the_delay(make_driver):
    backend = make_driver(lifecycle_event_delay=1)
    recorder = fixtures.EventRecorder()
    backend.register_event_listener(recorder)
    uuid = '11111111-2222-3333-4444-666666666666'
    backend._events.on_domain_event(
        uuid, mapping.domain_name('held'), libvirt.VIR_DOMAIN_EVENT_STOPPED,
        libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    recorder.wait_for(uuid, virtevent.EVENT_LIFECYCLE_STOPPED, timeout=10)


def test_events_of_foreign_domains_are_ignored(make_driver):
    backend = make_driver()
    recorder = fixtures.EventRecorder()
    backend.register_event_listener(recorder)
    uuid = '11111111-2222-3333-4444-777777777777'
    backend._events.on_domain_event(uuid, 'not-ours',
                                    libvirt.VIR_DOMAIN_EVENT_STARTED, 0)
    assert backend._events._held_stops == {}
    with pytest.raises(AssertionError):
        recorder.wait_for(uuid, virtevent.EVENT_LIFECYCLE_STARTED,
                          timeout=0.5)


# -- domain XML -----------------------------------------------------------


def _spec(virt_type, tmp_path, vm_mode='hvm', kernel=True,
          disk_format='qcow2'):
    conf = store_conf(tmp_path)
    instance = _instance(conf, flavor='m1.micro')
    instance = dataclasses.replace(instance, metadata={
        'quoting': 'a & b <c> "d"'})
    boot = domainxml.BootImage(
        kernel='/images/vmlinuz' if kernel else None,
        ramdisk='/images/initrd' if kernel else None,
        cmdline='root=/dev/xvda', vm_mode=vm_mode)
    return domainxml.GuestSpec(
        instance=instance, virt_type=virt_type, disk_path='/inst/disk',
        disk_format=disk_format, console_path='/inst/console.log',
        boot=boot)


def _validate(xml, tmp_path):
    if shutil.which('virt-xml-validate') is None:
        fixtures.skip_or_fail('virt-xml-validate is not installed '
                              '(Debian package libvirt-clients)')
    path = tmp_path / 'domain.xml'
    path.write_text(xml)
    result = subprocess.run(['virt-xml-validate', str(path), 'domain'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize('virt_type,vm_mode,kernel', [
    ('kvm', 'hvm', True), ('qemu', 'hvm', False), ('xen', 'xen', True),
    ('xen', 'xen', False), ('xen', 'hvm', False), ('lxc', 'hvm', False)])
def test_domain_xml_validates(tmp_path, virt_type, vm_mode, kernel):
    _validate(domainxml.domain_xml(_spec(virt_type, tmp_path, vm_mode,
                                         kernel)), tmp_path)


def test_xen_pv_xml(tmp_path):
    spec = _spec('xen', tmp_path, vm_mode='xen')
    root = domainxml.domain_element(spec)
    assert root.get('type') == 'xen'
    assert root.findtext('os/type') == 'xen'
    assert root.findtext('os/kernel') == '/images/vmlinuz'
    assert root.findtext('os/initrd') == '/images/initrd'
    assert root.findtext('os/cmdline') == 'root=/dev/xvda console=hvc0'
    assert root.find('devices/disk/target').get('bus') == 'xen'
    console = root.find('devices/console')
    assert console.get('type') == 'file'
    assert console.find('target').get('type') == 'xen'
    assert root.findtext('memory') == str(128 * 1024)
    assert root.findtext('vcpu') == '1'


def test_xen_pv_without_kernel_uses_pygrub(tmp_path):
    root = domainxml.domain_element(_spec('xen', tmp_path, vm_mode='xen',
                                          kernel=False))
    assert root.findtext('bootloader') == 'pygrub'
    assert root.find('os/kernel') is None


def test_xen_hvm_xml(tmp_path):
    root = domainxml.domain_element(_spec('xen', tmp_path, kernel=False))
    assert root.get('type') == 'xen'
    assert root.findtext('os/type') == 'hvm'
    assert root.find('devices/serial/source').get('path') == \
        '/inst/console.log'


def test_lxc_xml(tmp_path):
    root = domainxml.domain_element(_spec('lxc', tmp_path, kernel=False))
    assert root.get('type') == 'lxc'
    assert root.findtext('os/type') == 'exe'
    assert root.findtext('os/init') == '/sbin/init'
    filesystem = root.find('devices/filesystem')
    assert filesystem.find('target').get('dir') == '/'
    assert filesystem.find('source').get('file') == '/inst/disk'
    assert filesystem.find('driver').get('type') == 'nbd'
    raw = domainxml.domain_element(_spec('lxc', tmp_path, kernel=False,
                                         disk_format='raw'))
    assert raw.find('devices/filesystem/driver').get('type') == 'loop'


def test_kvm_xml_boots_the_kernel_and_logs_the_serial_port(tmp_path):
    root = domainxml.domain_element(_spec('kvm', tmp_path))
    assert root.get('type') == 'kvm'
    assert root.findtext('os/type') == 'hvm'
    assert root.findtext('os/kernel') == '/images/vmlinuz'
    # A PTY for consoles, logged to the file by libvirt.
    assert root.find('devices/serial').get('type') == 'pty'
    log = root.find('devices/serial/log')
    assert log.get('file') == '/inst/console.log'
    assert log.get('append') == 'on'
    assert root.find('devices/memballoon').get('model') == 'virtio'


@pytest.mark.parametrize('virt_type', ['kvm', 'xen', 'lxc'])
def test_metadata_round_trip(tmp_path, virt_type):
    spec = _spec(virt_type, tmp_path)
    xml = domainxml.domain_xml(spec)
    assert mapping.parse_metadata(xml) == spec.instance
    assert mapping.parse_metadata(
        mapping.metadata_xml(spec.instance)) == spec.instance


def test_parse_metadata_refuses_foreign_xml():
    with pytest.raises(exception.InvalidInput):
        mapping.parse_metadata('<domain><name>x</name></domain>')
    with pytest.raises(exception.InvalidInput):
        mapping.parse_metadata('not xml')


def test_xen_domain_is_accepted_by_the_test_driver(make_driver, versions,
                                                   tmp_path):
    backend = make_driver(virt_type='xen')
    versions(libvirt=(1, 2, 9), hypervisor=(4, 4, 0), hv_type='Xen')
    backend.init_host('test')
    instance = _instance(backend.conf)
    backend.spawn(instance)
    assert backend.get_info(instance).state == power_state.RUNNING
    conn = backend._host.get_connection()
    xml = conn.lookupByUUIDString(instance.uuid).XMLDesc(0)
    assert "type='xen'" in xml.split('\n')[0]
    backend.destroy(instance)
    _assert_nothing_left(backend, instance, tmp_path)


def test_parse_metadata_as_libvirt_returns_it(tmp_path):
    # virDomainGetMetadata drops the namespace of the element it returns.
    instance = _spec('kvm', tmp_path).instance
    text = mapping.metadata_xml(instance).replace(
        'cdinst:', '').replace(
        ' xmlns:cdinst="%s"' % mapping.METADATA_NS, '')
    assert 'xmlns' not in text
    assert mapping.parse_metadata(text) == instance


def test_listing_errors_are_typed(make_driver, monkeypatch):
    backend = make_driver()
    backend.init_host('test')

    def broken(self, *args):
        raise libvirt.libvirtError('listing refused on purpose')

    monkeypatch.setattr(libvirt.virConnect, 'listAllDomains', broken)
    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats', broken)
    for listing in (backend.list_instances, backend.list_instance_uuids,
                    backend.list_instance_records):
        with pytest.raises(exception.BackendError) as caught:
            listing()
        assert 'listing refused on purpose' in str(caught.value)


# -- /dev/kvm that libvirt's QEMU user cannot open ---------------------------

def _node(uid, gid, mode):
    # (mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime)
    return os.stat_result(
        (stat.S_IFCHR | mode, 1, 1, 1, uid, gid, 0, 0, 0, 0))


def _nobody():
    entry = pwd.getpwnam('nobody')
    return entry.pw_uid, entry.pw_gid


def test_kvm_node_only_root_can_open_is_reported_with_the_fix():
    uid, gid = _nobody()
    message = connection.kvm_access_problem(
        '/dev/kvm', _node(0, 0, 0o600), uid, gid)
    assert message.startswith(
        "/dev/kvm is root:root 0600, which libvirt's QEMU user nobody "
        "cannot open")
    assert "run 'chgrp kvm /dev/kvm && chmod 0660 /dev/kvm" in message
    # nobody is in no kvm group, so the fix says to add it.
    assert 'usermod -a -G kvm nobody, then restart libvirtd' in message
    assert '\n' not in message


@pytest.mark.parametrize('owner,group,mode', [
    ('user', 0, 0o600),     # owned by the QEMU user
    (0, 'group', 0o660),    # the QEMU user's group may read and write
    (0, 0, 0o666),          # everyone may
])
def test_kvm_node_the_qemu_user_can_open_is_fine(owner, group, mode):
    uid, gid = _nobody()
    st = _node(uid if owner == 'user' else owner,
               gid if group == 'group' else group, mode)
    assert connection.kvm_access_problem('/dev/kvm', st, uid, gid) is None


def test_kvm_node_readable_but_not_writable_is_reported():
    uid, gid = _nobody()
    assert connection.kvm_access_problem(
        '/dev/kvm', _node(0, gid, 0o640), uid, gid)


def test_qemu_running_as_root_can_open_anything():
    assert connection.kvm_access_problem(
        '/dev/kvm', _node(0, 0, 0o600), 0, 0) is None


@pytest.mark.parametrize('uri,local', [
    ('qemu:///system', True), ('qemu:///session', True),
    ('qemu+unix:///system', True), ('qemu+ssh://host/system', False),
    ('qemu+tcp://10.0.0.1/system', False), ('xen:///system', False),
    ('test:///default', False),
])
def test_only_local_qemu_connections_look_at_the_device(uri, local):
    host = connection.Host(uri, 'qemu')
    assert host.is_local_qemu() is local
    if not local:
        # No connection is made and no device is looked at.
        assert host.kvm_device_warnings('/nonexistent') == []


def test_cli_check_prints_a_host_warning_on_one_line(tmp_path, monkeypatch,
                                                     capsys):
    images = make_store(tmp_path)
    conf_file = tmp_path / 'compute-driver.conf'
    conf_file.write_text(
        '[DEFAULT]\ncompute_driver = libvirt\nhost = testhost\n'
        '[libvirt]\nvirt_type = qemu\nconnection_uri = %s\n'
        'images_path = %s\ninstances_path = %s\n' % (
            TEST_URI, images, tmp_path / 'instances'))
    monkeypatch.setattr(connection.Host, 'kvm_device_warnings',
                        lambda self: ['/dev/kvm is root:root 0600, ...'])
    rc = main.main(['--config-file', str(conf_file), 'check', '-f', 'json'])
    out, err = capsys.readouterr()
    assert rc == 0
    assert err == 'warning: /dev/kvm is root:root 0600, ...\n'
    assert json.loads(out)['driver'] == 'libvirt'


# -- images of the image service ---------------------------------------------

def _qemu_img(*args):
    if shutil.which('qemu-img') is None:
        fixtures.skip_or_fail('qemu-img is not installed (Debian package '
                              'qemu-utils)')
    subprocess.run(['qemu-img', *args], check=True, capture_output=True)


@pytest.mark.parametrize('disk_format, qemu_format', [
    ('raw', 'raw'), ('qcow2', 'qcow2'), ('vhd', 'vpc'), ('vdi', 'vdi')])
def test_service_image_of_its_declared_format_is_accepted(
        tmp_path, disk_format, qemu_format):
    path = str(tmp_path / 'disk')
    _qemu_img('create', '-q', '-f', qemu_format, path, '16M')
    info = images.check_service_image('img', path, disk_format)
    assert info.qemu_format == qemu_format
    assert info.virtual_size >= 16 * 1024 * 1024


def test_service_image_declared_raw_but_qcow2_is_refused(tmp_path):
    path = str(tmp_path / 'disk')
    _qemu_img('create', '-q', '-f', 'qcow2', path, '16M')
    with pytest.raises(exception.ImageFormatMismatch, match='qcow2'):
        images.check_service_image('img', path, 'raw')


def test_service_image_with_a_backing_file_is_refused(tmp_path):
    base = str(tmp_path / 'base')
    path = str(tmp_path / 'disk')
    _qemu_img('create', '-q', '-f', 'raw', base, '1M')
    _qemu_img('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, path)
    with pytest.raises(exception.ImageUnacceptable, match='backing file'):
        images.check_service_image('img', path, 'qcow2')


@pytest.mark.parametrize('disk_format', ['vmdk', 'iso', None, 'aki'])
def test_service_image_of_a_format_libvirt_does_not_run_is_refused(
        tmp_path, disk_format):
    path = tmp_path / 'disk'
    path.write_bytes(b'\0' * 4096)
    with pytest.raises(exception.ImageUnacceptable, match='disk_format'):
        images.check_service_image('img', str(path), disk_format)


def _qcow2_with_a_bad_l1_table(path):
    # A header the inspection passes over tables qemu refuses: the L1
    # table's offset (bytes 40-47) not on a cluster boundary.
    _qemu_img('create', '-q', '-f', 'qcow2', path, '16M')
    with open(path, 'r+b') as handle:
        handle.seek(40)
        handle.write((3).to_bytes(8, 'big'))


def test_service_image_check_gives_the_header_size_before_qemu_img(
        tmp_path):
    path = str(tmp_path / 'disk')
    _qcow2_with_a_bad_l1_table(path)
    check = images.start_service_image_check('img', path, 'qcow2')
    try:
        # Known from the header at once: a boot sizes its disk with it.
        assert check.virtual_size == 16 * 1024 * 1024
        with pytest.raises(exception.ImageUnacceptable, match='L1'):
            check.wait()
    finally:
        check.close()
    with pytest.raises(exception.ImageUnacceptable, match='L1'):
        images.check_service_image('img', path, 'qcow2')


def test_service_image_check_closed_unasked_refuses_the_image(tmp_path):
    path = str(tmp_path / 'disk')
    _qemu_img('create', '-q', '-f', 'qcow2', path, '16M')
    check = images.start_service_image_check('img', path, 'qcow2')
    check.close()
    check.close()
    with pytest.raises(exception.ImageUnacceptable, match='abandoned'):
        check.wait()


@pytest.mark.parametrize('qemu_size, accepted', [
    (1000, True), (1024, True), (1536, False), (512, False)])
def test_service_image_check_compares_the_sizes(tmp_path, qemu_size,
                                                accepted):
    # qemu counts whole sectors: a 1000-byte raw file is 1024 to it.
    path = tmp_path / 'disk'
    path.write_bytes(b'\1' * 1000)
    check = images.start_service_image_check('img', str(path), 'raw')
    check.close()
    output = json.dumps({'format': 'raw', 'virtual-size': qemu_size})
    if accepted:
        assert check._checked(output).virtual_size == qemu_size
    else:
        with pytest.raises(exception.ImageUnacceptable,
                           match='virtual size'):
            check._checked(output)


def test_vhd_converts_to_raw(tmp_path):
    path = str(tmp_path / 'disk.vhd')
    _qemu_img('create', '-q', '-f', 'vpc', path, '8M')
    dest = str(tmp_path / 'disk.raw')
    images.convert_to_raw('img', path, 'vpc', dest)
    assert images.inspect_format(dest).format == 'raw'
    assert [e for e in os.listdir(tmp_path) if '.part' in e] == []


def test_versions_are_read_once_per_connection(monkeypatch):
    host = connection.Host(TEST_URI, 'qemu')
    calls = []
    real = libvirt.virConnect.getLibVersion

    def counted(conn):
        calls.append(conn)
        return real(conn)

    monkeypatch.setattr(libvirt.virConnect, 'getLibVersion', counted)
    try:
        first = host.get_libvirt_version()
        assert host.get_libvirt_version() == first
        assert len(calls) == 1
        # A new connection may reach an upgraded libvirtd: asked again.
        host._close_callback(calls[0], libvirt.VIR_CONNECT_CLOSE_REASON_EOF,
                             None)
        assert host.get_libvirt_version() == first
        assert len(calls) == 2
    finally:
        host.close()
        # The one the callback dropped: test:///default keeps its domains
        # while any connection to it is open.
        if len(calls) > 1:
            calls[0].unregisterCloseCallback()
            calls[0].close()


def _disk_image(**properties):
    return objects.ImageMeta(name='disk-id', disk_format='qcow2',
                             container_format='bare', properties=properties)


def test_the_overlay_is_made_while_the_image_downloads(make_driver,
                                                       monkeypatch):
    # A qcow2 overlay at the flavor's size needs only the image's path:
    # it is made before the download ends, and the verdict waits for it.
    backend = make_driver(disk_format='qcow2')
    release = threading.Event()
    closed = []

    class Check:
        qemu_format = 'qcow2'
        virtual_size = 1024

        def wait(self):
            return None

        def close(self):
            closed.append(True)

    def fetch_checked(image, instance):
        assert release.wait(30)
        return backend.image_cache.path_of(image.id), Check()

    monkeypatch.setattr(backend, '_fetch_checked', fetch_checked)
    instance = _instance(backend.conf)
    assert backend._overlay_first(instance, _disk_image())
    with backend._prepare_service_image(instance, _disk_image()) as (
            image, base, virtual_size, fits, wait):
        # Still downloading.
        assert not release.is_set()
        assert base == backend.image_cache.path_of('disk-id')
        assert image.path == base and image.disk_format == 'qcow2'
        assert (virtual_size, fits) == (None, True)
        release.set()
        wait()
    assert closed == [True]


def test_an_image_refused_after_the_overlay_is_made_raises_on_wait(
        make_driver, monkeypatch):
    backend = make_driver(disk_format='qcow2')

    def fetch_checked(image, instance):
        raise exception.ImageUnacceptable(image=image.id,
                                          reason='too large')

    monkeypatch.setattr(backend, '_fetch_checked', fetch_checked)
    with pytest.raises(exception.ImageUnacceptable, match='too large'):
        with backend._prepare_service_image(_instance(backend.conf),
                                            _disk_image()) as found:
            found[-1]()
    # Leaving the block without asking for the verdict gets it too.
    with pytest.raises(exception.ImageUnacceptable, match='too large'):
        with backend._prepare_service_image(_instance(backend.conf),
                                            _disk_image()):
            pass


def test_a_download_failing_while_the_overlay_fails_is_the_error(
        make_driver, monkeypatch):
    # A full disk fails the download and the overlay made meanwhile; the
    # user is told of the download, whichever failed first.
    backend = make_driver(disk_format='qcow2')
    overlay_failed = threading.Event()

    def fetch_checked(image, instance):
        assert overlay_failed.wait(30)
        raise image_exception.ImageDownloadIncomplete(
            image=image.id, service='glance', received=1, expected='2',
            reason='No space left on device')

    monkeypatch.setattr(backend, '_fetch_checked', fetch_checked)
    with pytest.raises(image_exception.ImageDownloadIncomplete,
                       match='No space left') as info:
        with backend._prepare_service_image(_instance(backend.conf),
                                            _disk_image()):
            overlay_failed.set()
            raise exception.BackendError(
                operation='qemu-img create', instance='-',
                reason='No space left on device')
    assert isinstance(info.value.__cause__, exception.BackendError)


def test_images_the_overlay_cannot_precede_are_fetched_first(make_driver):
    backend = make_driver(disk_format='qcow2')
    instance = _instance(backend.conf)
    vhd = objects.ImageMeta(name='vhd-id', disk_format='vhd',
                            container_format='bare', properties={})
    # Converted first; sized from the image; or a full copy.
    assert not backend._overlay_first(instance, vhd)
    whole = dataclasses.replace(instance, flavor=dataclasses.replace(
        instance.flavor, root_gb=0))
    assert not backend._overlay_first(whole, _disk_image())
    assert not make_driver()._overlay_first(instance, _disk_image())
