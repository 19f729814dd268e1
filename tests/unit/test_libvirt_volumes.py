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

"""Volumes on shut-off libvirt domains, on ``test:///default``.

The test driver keeps definitions and metadata but plugs nothing, so
these tests stand in for os-brick with a connector that hands out the
device path it is given. Nor does it attach or detach devices: a stand-in
for ``attachDeviceFlags``, ``detachDeviceFlags`` and ``detachDeviceAlias``
with ``VIR_DOMAIN_AFFECT_CONFIG`` changes the definition as libvirtd's QEMU
driver does, refusing a taken target or alias and a missing disk (the
functional tests run the real ones). The tests count the calls made on
libvirt's connection and domains: every one is a round trip to libvirtd
on a real host, and a cold attach or detach is mostly those.
"""

import contextlib
import os
import threading
import xml.etree.ElementTree as ET

import pytest

libvirt = pytest.importorskip('libvirt')

from compute_driver import exception  # noqa: E402
from compute_driver.libvirt import volumes  # noqa: E402
from compute_driver import power_state  # noqa: E402
from compute_driver.volume import connection as vol_connection  # noqa: E402
from compute_driver.volume import exception as vol_exc  # noqa: E402
from compute_driver.volume import model as vol_model  # noqa: E402
from tests.unit import test_libvirt  # noqa: E402

make_driver = test_libvirt.make_driver

# Answered by the client library from the handle, with no round trip.
_LOCAL = frozenset({'UUID', 'UUIDString', 'name', 'ID', 'connect',
                    'isAlive', 'getURI'})
# The real calls, which the stand-ins use uncounted.
_XMLDESC = libvirt.virDomain.XMLDesc
_DEFINE = libvirt.virConnect.defineXML
_ISCSI_DEVICE = '/dev/cdunit-iscsi'


class Connector:
    """os-brick's part: the device path of local connection info."""

    def __init__(self):
        self.held = []

    @contextlib.contextmanager
    def connected(self, connection):
        path = connection.data.get('device_path', _ISCSI_DEVICE)
        self.held.append(path)
        try:
            yield path
        except BaseException:
            self.held.remove(path)
            raise

    def disconnect(self, connection, device_path):
        self.held.remove(device_path)


def _attach_config(self, xml, flags):
    assert flags == libvirt.VIR_DOMAIN_AFFECT_CONFIG
    root = ET.fromstring(_XMLDESC(self, libvirt.VIR_DOMAIN_XML_INACTIVE |
                                  libvirt.VIR_DOMAIN_XML_SECURE))
    devices = root.find('devices')
    disk = ET.fromstring(xml)
    dev = disk.find('target').get('dev')
    if any(t.get('dev') == dev for t in devices.findall('disk/target')):
        raise libvirt.libvirtError('target %s already exists' % dev)
    alias = disk.find('alias')
    if alias is not None and any(a.get('name') == alias.get('name')
                                 for a in root.iter('alias')):
        raise libvirt.libvirtError('non unique alias detected: %s'
                                   % alias.get('name'))
    disks = devices.findall('disk')
    devices.insert(list(devices).index(disks[-1]) + 1, disk)
    _DEFINE(self.connect(), ET.tostring(root, encoding='unicode'))
    return 0


def _detach_config(self, xml, flags):
    assert flags == libvirt.VIR_DOMAIN_AFFECT_CONFIG
    root = ET.fromstring(_XMLDESC(self, libvirt.VIR_DOMAIN_XML_INACTIVE |
                                  libvirt.VIR_DOMAIN_XML_SECURE))
    devices = root.find('devices')
    dev = ET.fromstring(xml).find('target').get('dev')
    for disk in devices.findall('disk'):
        if disk.find('target').get('dev') == dev:
            devices.remove(disk)
            _DEFINE(self.connect(), ET.tostring(root, encoding='unicode'))
            return 0
    raise libvirt.libvirtError('no target device %s' % dev)


def _detach_alias_config(self, name, flags):
    assert flags == libvirt.VIR_DOMAIN_AFFECT_CONFIG
    root = ET.fromstring(_XMLDESC(self, libvirt.VIR_DOMAIN_XML_INACTIVE |
                                  libvirt.VIR_DOMAIN_XML_SECURE))
    devices = root.find('devices')
    for disk in devices.findall('disk'):
        alias = disk.find('alias')
        if alias is not None and alias.get('name') == name:
            devices.remove(disk)
            _DEFINE(self.connect(), ET.tostring(root, encoding='unicode'))
            return 0
    raise libvirt.libvirtError('no device found with alias %s' % name)


@pytest.fixture
def backend(make_driver, monkeypatch):
    monkeypatch.setattr(libvirt.virDomain, 'attachDeviceFlags',
                        _attach_config)
    monkeypatch.setattr(libvirt.virDomain, 'detachDeviceFlags',
                        _detach_config)
    monkeypatch.setattr(libvirt.virDomain, 'detachDeviceAlias',
                        _detach_alias_config)
    driver = make_driver()
    driver.init_host('test')
    driver.__dict__['_volume_connector'] = Connector()
    # No QEMU here to hold a device open.
    monkeypatch.setattr(driver, '_volume_user', lambda connection: None)
    driver.spawned = []
    yield driver
    for instance in driver.spawned:
        driver.destroy(instance)


def _info(volume_id, device='/dev/cdunit-vol'):
    return {'driver_volume_type': 'local',
            'data': {'device_path': device, 'volume_id': volume_id}}


def _iscsi(volume_id):
    return {'driver_volume_type': 'iscsi',
            'data': {'target_portal': '127.0.0.1:3260',
                     'target_iqn': 'iqn.2026-12.org.example:cdunit',
                     'target_lun': 1, 'volume_id': volume_id,
                     'auth_method': 'CHAP'}}


def _stopped(backend, name='cdunit-vol', started=True):
    """A shut-off instance; powered off after a start unless told not."""
    instance = test_libvirt._instance(backend.conf, name)
    backend.spawned.append(instance)
    backend.spawn(instance, power_on=started)
    if started:
        backend.power_off(instance)
    return instance


@pytest.fixture
def calls(backend, monkeypatch):
    """The libvirt calls this thread makes, by method name."""
    made = []
    me = threading.get_ident()

    def counting(name, method):
        def call(self, *args, **kwargs):
            if threading.get_ident() == me:
                made.append(name)
            return method(self, *args, **kwargs)
        return call

    for cls in (libvirt.virConnect, libvirt.virDomain):
        for name, method in list(vars(cls).items()):
            if (callable(method) and not name.startswith('_') and
                    name not in _LOCAL):
                monkeypatch.setattr(cls, name, counting(name, method))
    return made


def _dom(backend, instance):
    return backend._host.get_connection().lookupByUUIDString(instance.uuid)


def _definition(backend, instance):
    return _dom(backend, instance).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def _disks(xml):
    return {d.find('target').get('dev'): d.find('source').get('dev')
            for d in ET.fromstring(xml).findall('devices/disk')}


def _disk(xml, dev):
    for disk in ET.fromstring(xml).findall('devices/disk'):
        if disk.find('target').get('dev') == dev:
            return disk
    return None


#: What a shut-off domain's attach of a local volume asks libvirtd once
#: the process knows the domain (its handle, and that its definition has
#: no record of an earlier release): its state, whose reason tells that
#: it has no managed save, and one attachDeviceFlags whose disk is the
#: record. libvirtd checks the target and the volume's alias itself.
COLD_ATTACH = ['state', 'attachDeviceFlags']
#: A detach of a local volume goes by the volume's alias, which libvirtd
#: refuses for a volume not attached: the caller's connection info says
#: the rest.
COLD_DETACH = ['state', 'detachDeviceAlias']


def test_cold_attach_and_detach_calls(backend, calls):
    instance = _stopped(backend)
    calls.clear()
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    # The first operation of the process looks the domain up and reads it.
    assert calls == ['lookupByUUIDString', 'state', 'XMLDesc',
                     'attachDeviceFlags']
    disk = _disk(_definition(backend, instance), 'vdb')
    assert disk.find('source').get('dev') == '/dev/cdunit-vol'
    assert disk.find('serial').text == 'vol-a'
    assert disk.find('alias').get('name') == 'ua-cdvol-vol-a'
    [attached] = backend.list_volume_attachments(instance)
    assert (attached.volume_id, attached.mountpoint, attached.device_path,
            attached.connection_info) == (
        'vol-a', '/dev/vdb', '/dev/cdunit-vol', _info('vol-a'))
    assert backend.volume_connector.held == ['/dev/cdunit-vol']

    calls.clear()
    backend.detach_volume(instance, _info('vol-a'))
    assert calls == COLD_DETACH
    assert 'vdb' not in _disks(_definition(backend, instance))
    assert backend.list_volume_attachments(instance) == []
    assert backend.volume_connector.held == []

    calls.clear()
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    assert calls == COLD_ATTACH
    calls.clear()
    backend.detach_volume(instance, _info('vol-a'))
    assert calls == COLD_DETACH


def test_never_started_domain_is_asked_for_a_managed_save(backend, calls):
    # Its shut-off reason is UNKNOWN, as after a libvirtd restart.
    instance = _stopped(backend, started=False)
    backend.list_volume_attachments(instance)
    calls.clear()
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    assert calls == ['state', 'hasManagedSaveImage', 'attachDeviceFlags']


def test_cold_swap_writes_the_definition_once(backend, calls, monkeypatch):
    copied = []
    monkeypatch.setattr(vol_connection, 'device_size', lambda path: 1 << 20)
    monkeypatch.setattr(vol_connection, 'copy_device',
                        lambda source, target: copied.append((source,
                                                              target)))
    instance = _stopped(backend)
    backend.attach_volume(instance, _info('vol-old', '/dev/cdunit-old'),
                          '/dev/vdc')
    calls.clear()
    backend.swap_volume(instance, _info('vol-old', '/dev/cdunit-old'),
                        _info('vol-new', '/dev/cdunit-new'))
    assert calls == ['state', 'XMLDesc', 'XMLDesc', 'defineXML']
    assert copied == [('/dev/cdunit-old', '/dev/cdunit-new')]
    disk = _disk(_definition(backend, instance), 'vdc')
    assert disk.find('source').get('dev') == '/dev/cdunit-new'
    assert disk.find('alias').get('name') == 'ua-cdvol-vol-new'
    [attached] = backend.list_volume_attachments(instance)
    assert (attached.volume_id, attached.mountpoint) == ('vol-new',
                                                         '/dev/vdc')
    assert backend.volume_connector.held == ['/dev/cdunit-new']


def test_cold_bad_input_writes_nothing(backend, calls, monkeypatch):
    instance = _stopped(backend)
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    before = _definition(backend, instance)
    calls.clear()
    with pytest.raises(vol_exc.VolumeAlreadyAttached) as caught:
        backend.attach_volume(instance, _info('vol-a'), '/dev/vdc')
    assert '/dev/vdb' in str(caught.value)
    with pytest.raises(vol_exc.MountpointInUse) as caught:
        backend.attach_volume(instance, _info('vol-b', '/dev/cdunit-b'),
                              '/dev/vdb')
    assert 'vol-a' in str(caught.value)
    # The root disk is no volume, but its target is taken all the same.
    with pytest.raises(vol_exc.MountpointInUse):
        backend.attach_volume(instance, _info('vol-b', '/dev/cdunit-b'),
                              '/dev/vda')
    with pytest.raises(vol_exc.VolumeNotAttached):
        backend.detach_volume(instance, _info('vol-c'))
    with pytest.raises(exception.InvalidInput):
        backend.attach_volume(instance, _info('vol-b', '/dev/cdunit-b'),
                              'vdc')
    monkeypatch.setattr(backend, '_volume_user',
                        lambda connection: 'process 1 (qemu) has it open')
    with pytest.raises(vol_exc.VolumeInUse):
        backend.attach_volume(instance, _info('vol-b', '/dev/cdunit-b'),
                              '/dev/vdc')
    assert 'defineXML' not in calls
    assert _definition(backend, instance) == before
    assert backend.volume_connector.held == ['/dev/cdunit-vol']


def test_refused_attach_leaves_nothing(backend, monkeypatch):
    instance = _stopped(backend)
    before = _definition(backend, instance)

    def refuse(self, xml, flags):
        raise libvirt.libvirtError('cdunit: attach refused')

    monkeypatch.setattr(libvirt.virDomain, 'attachDeviceFlags', refuse)
    with pytest.raises(exception.BackendError, match='attach refused'):
        backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    with pytest.raises(exception.BackendError, match='attach refused'):
        backend.attach_volume(instance, _iscsi('vol-i'), '/dev/vdc')
    monkeypatch.setattr(libvirt.virDomain, 'attachDeviceFlags',
                        _attach_config)
    assert _definition(backend, instance) == before
    assert backend.list_volume_attachments(instance) == []
    assert backend.volume_connector.held == []


def test_suspended_domain_is_refused(backend):
    instance = _stopped(backend)
    backend.power_on(instance)
    backend.suspend(instance)
    before = _definition(backend, instance)
    with pytest.raises(exception.InvalidPowerState):
        backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    assert _definition(backend, instance) == before
    assert backend.volume_connector.held == []


def test_running_domain_state_is_one_call(backend, calls):
    instance = _stopped(backend)
    backend.power_on(instance)
    backend.pause(instance)
    calls.clear()
    assert backend._volume_power_state(_dom(backend, instance)) == (
        power_state.PAUSED)
    assert calls == ['lookupByUUIDString', 'state']


def test_remote_connection_info_is_kept_in_the_metadata(backend):
    instance = _stopped(backend)
    backend.attach_volume(instance, _iscsi('vol-i'), '/dev/vdb')
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdc')
    found = {a.volume_id: a for a in
             backend.list_volume_attachments(instance)}
    assert found['vol-i'].connection_info == vol_model.parse(
        _iscsi('vol-i')).info
    assert found['vol-i'].device_path == _ISCSI_DEVICE
    assert found['vol-a'].connection_info == _info('vol-a')
    backend.detach_volume(instance, _iscsi('vol-i'))
    assert ET.fromstring(_definition(backend, instance)).find(
        'metadata/{%s}%s' % (volumes.NS2, volumes.TAG)) is None
    assert [a.volume_id for a in backend.list_volume_attachments(
        instance)] == ['vol-a']
    assert backend.volume_connector.held == ['/dev/cdunit-vol']


def _legacy(backend, instance, attachment):
    """Give the domain an attachment as an earlier release recorded it."""
    conn = backend._host.get_connection()
    root = ET.fromstring(_definition(backend, instance))
    devices = root.find('devices')
    disk = volumes.disk_element(attachment)
    for tag in ('serial', 'alias'):
        disk.remove(disk.find(tag))
    devices.insert(list(devices).index(devices.findall('disk')[-1]) + 1,
                   disk)
    record = ET.SubElement(root.find('metadata'),
                           '{%s}%s' % (volumes.NS, volumes.TAG))
    record.text = vol_model.dumps([attachment])
    conn.defineXML(ET.tostring(root, encoding='unicode'))


def test_attachments_of_an_earlier_release_stay_usable(backend, calls):
    instance = _stopped(backend)
    old = vol_model.Attachment(
        volume_id='vol-old', mountpoint='/dev/vdb',
        connection_info=_info('vol-old', '/dev/cdunit-old'),
        device_path='/dev/cdunit-old')
    _legacy(backend, instance, old)
    backend.volume_connector.held.append('/dev/cdunit-old')
    assert backend.list_volume_attachments(instance) == [old]
    # No alias for libvirtd to find: the record is read and checked.
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.attach_volume(instance, _info('vol-old', '/dev/cdunit-old'),
                              '/dev/vdc')
    calls.clear()
    backend.attach_volume(instance, _info('vol-new'), '/dev/vdc')
    assert calls == ['state', 'XMLDesc', 'attachDeviceFlags']
    assert [a.volume_id for a in backend.list_volume_attachments(
        instance)] == ['vol-old', 'vol-new']
    backend.detach_volume(instance, _info('vol-old', '/dev/cdunit-old'))
    assert sorted(_disks(_definition(backend, instance))) == ['vda', 'vdc']
    assert [a.volume_id for a in backend.list_volume_attachments(
        instance)] == ['vol-new']
    # Its record is empty now: attaches need no read any more.
    calls.clear()
    backend.attach_volume(instance, _info('vol-more', '/dev/cdunit-more'),
                          '/dev/vdd')
    assert calls == COLD_ATTACH
    assert sorted(backend.volume_connector.held) == [
        '/dev/cdunit-more', '/dev/cdunit-vol']


def test_without_user_aliases_the_metadata_records(backend, calls,
                                                   monkeypatch):
    # libvirt before 3.9, or a driver other than QEMU's, drops aliases.
    assert not volumes.keeps_aliases('qemu', (3, 8, 0))
    assert not volumes.keeps_aliases('lxc', (9, 0, 0))
    assert volumes.keeps_aliases('kvm', (3, 9, 0))
    backend._volume_aliases = False
    monkeypatch.setattr(vol_connection, 'device_size', lambda path: 1 << 20)
    monkeypatch.setattr(vol_connection, 'copy_device',
                        lambda source, target: None)
    instance = _stopped(backend)
    backend.list_volume_attachments(instance)
    calls.clear()
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    assert calls == ['state', 'XMLDesc', 'attachDeviceFlags', 'setMetadata']
    disk = _disk(_definition(backend, instance), 'vdb')
    assert disk.find('alias') is None and disk.find('serial') is None
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.attach_volume(instance, _info('vol-a'), '/dev/vdc')
    with pytest.raises(vol_exc.MountpointInUse):
        backend.attach_volume(instance, _info('vol-b', '/dev/cdunit-b'),
                              '/dev/vdb')
    backend.swap_volume(instance, _info('vol-a'),
                        _info('vol-c', '/dev/cdunit-c'))
    [attached] = backend.list_volume_attachments(instance)
    assert (attached.volume_id, attached.mountpoint,
            attached.device_path) == ('vol-c', '/dev/vdb', '/dev/cdunit-c')
    assert _disk(_definition(backend, instance), 'vdb').find('alias') is None
    backend.detach_volume(instance, _info('vol-c', '/dev/cdunit-c'))
    assert backend.list_volume_attachments(instance) == []
    assert 'vdb' not in _disks(_definition(backend, instance))
    assert backend.volume_connector.held == []


def test_aliases_name_any_volume_id():
    for volume_id in ('8a1b2c3d-0000-4000-8000-00000000cd01',
                      'local:/dev/loop0', 'iqn.2026-12.org.x:t:1',
                      'a_b+c.d'):
        name = volumes.alias(volume_id)
        assert name.startswith('ua-cdvol-')
        assert set(name[3:]) <= set(
            'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
            '0123456789_-')
        assert volumes.volume_of(name) == volume_id
    assert volumes.volume_of('ua-other') is None
    assert volumes.volume_of(None) is None


def test_disk_xml_is_the_disk_element():
    for volume_id, path in (('vol-a', '/dev/loop0'),
                            ('local:/dev/a&b', "/dev/a'b\"c<d")):
        attachment = vol_model.Attachment(
            volume_id=volume_id, mountpoint='/dev/vdb', connection_info={},
            device_path=path)
        assert ET.tostring(ET.fromstring(volumes.disk_xml(attachment)),
                           encoding='unicode') == ET.tostring(
            volumes.disk_element(attachment), encoding='unicode')


def test_domain_gone_since_the_cached_lookup(backend, make_driver):
    instance = _stopped(backend)
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    other = make_driver()
    other.init_host('test')
    other.__dict__['_volume_connector'] = backend.volume_connector
    other.destroy(instance)
    backend.spawned.remove(instance)
    with pytest.raises(exception.InstanceNotFound):
        backend.detach_volume(instance, _info('vol-a'))
    assert instance.uuid not in backend._handles
    assert not backend.instance_exists(instance)


# -- the state of a domain of libvirtd's system QEMU driver -------------------

class _Dom:
    """A handle whose round trips are counted."""

    def __init__(self, name, state=(libvirt.VIR_DOMAIN_RUNNING, 1)):
        self._name = name
        self._state = state
        self.calls = []

    def name(self):
        return self._name

    def state(self):
        self.calls.append('state')
        return list(self._state)

    def hasManagedSaveImage(self, flags):
        self.calls.append('hasManagedSaveImage')
        return 0


@pytest.fixture
def qemu_dirs(tmp_path, monkeypatch):
    run, save = tmp_path / 'run', tmp_path / 'save'
    run.mkdir()
    save.mkdir()
    (run / 'driver.pid').write_text('1')
    monkeypatch.setattr(volumes, 'QEMU_RUN_DIR', str(run))
    monkeypatch.setattr(volumes, 'QEMU_SAVE_DIR', str(save))
    return run, save


def test_shut_off_domain_of_the_system_driver_needs_no_call(qemu_dirs):
    dom = _Dom('cdrv-a', (libvirt.VIR_DOMAIN_SHUTOFF, 1))
    assert volumes.power_state(dom, 'qemu:///system') == (
        power_state.SHUTDOWN)
    assert dom.calls == []
    # The checks of the cold path know it is shut off.
    with volumes._lock:
        assert volumes._shut_off[dom] is True


@pytest.mark.parametrize('found, state, expected', [
    # The status file of an active domain: libvirtd says which state.
    ('run/cdrv-a.xml', (libvirt.VIR_DOMAIN_PAUSED, 1), power_state.PAUSED),
    ('run/cdrv-a.xml', (libvirt.VIR_DOMAIN_RUNNING, 1), power_state.RUNNING),
    # A managed save: suspended, which volume operations refuse.
    ('save/cdrv-a.save', (libvirt.VIR_DOMAIN_SHUTOFF,
                          libvirt.VIR_DOMAIN_SHUTOFF_SAVED),
     power_state.SUSPENDED),
])
def test_domain_with_libvirtds_files_is_asked(qemu_dirs, found, state,
                                              expected):
    run, save = qemu_dirs
    (run.parent / found).write_text('')
    dom = _Dom('cdrv-a', state)
    assert volumes.power_state(dom, 'qemu:///system') == expected
    assert dom.calls == ['state']


@pytest.mark.parametrize('uri, remove', [
    # Another libvirtd, whose files are elsewhere or on another host.
    ('qemu:///session', None),
    ('qemu+ssh://other/system', None),
    # Not the running driver's directories: it wrote no pid file there.
    ('qemu:///system', 'run/driver.pid'),
    ('qemu:///system', 'save'),
])
def test_files_that_cannot_tell_leave_it_to_libvirtd(qemu_dirs, uri, remove):
    run, save = qemu_dirs
    if remove:
        path = run.parent / remove
        path.unlink() if path.is_file() else path.rmdir()
    dom = _Dom('cdrv-a', (libvirt.VIR_DOMAIN_RUNNING, 1))
    assert volumes.power_state(dom, uri) == power_state.RUNNING
    assert dom.calls == ['state']


def test_cold_attach_and_detach_on_the_system_driver_skip_the_state(
        backend, calls, monkeypatch, tmp_path):
    # On test:///default nothing is in libvirtd's directories: pointed at
    # a layout of its own, the driver finds the shut-off domain there.
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'driver.pid').write_text('1')
    monkeypatch.setattr(volumes, 'QEMU_RUN_DIR', str(run))
    monkeypatch.setattr(volumes, 'QEMU_SAVE_DIR', str(tmp_path))
    monkeypatch.setattr(backend, 'uri', 'qemu:///system')
    instance = _stopped(backend)
    backend.list_volume_attachments(instance)
    calls.clear()
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    backend.detach_volume(instance, _info('vol-a'))
    assert calls == ['attachDeviceFlags', 'detachDeviceAlias']
    assert backend.list_volume_attachments(instance) == []
    assert backend.volume_connector.held == []


def test_device_user_looks_at_libvirtds_guests_by_pid(make_driver, tmp_path,
                                                      monkeypatch):
    # The processes libvirtd lists are its guests' QEMUs: their names are
    # not read to pick them (this test's process is not called qemu).
    driver = make_driver()
    device = tmp_path / 'device'
    device.write_bytes(b'')
    # A file standing for the device, which parse() would refuse.
    connection = vol_model.Connection(vol_model.LOCAL, 'vol-a',
                                      {'device_path': str(device)}, {})
    monkeypatch.setattr(volumes, 'qemu_pids', lambda uri: [str(os.getpid())])
    with open(device, 'rb'):
        assert 'process %d' % os.getpid() in driver._volume_user(connection)
    assert driver._volume_user(connection) is None
    # Without libvirtd's list, every QEMU of the host, by name.
    monkeypatch.setattr(volumes, 'qemu_pids', lambda uri: None)
    with open(device, 'rb'):
        assert driver._volume_user(connection) is None


@pytest.mark.parametrize('virt_type, root', [
    ('qemu', '/dev/vda'), ('kvm', '/dev/vda'),
    # A Xen guest's disks and an LXC container's file systems keep Nova's
    # own naming.
    ('xen', None), ('lxc', None)])
def test_root_device_name_is_the_guests(make_driver, virt_type, root):
    # Under Nova, the name attached volumes are numbered after: vdb for
    # the virtio disk a QEMU guest sees as vdb.
    assert make_driver(virt_type=virt_type).root_device_name == root
