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
device path it is given. They count the calls made on libvirt's
connection and domains: every one is a round trip to libvirtd on a real
host, and a cold attach or detach is mostly those.
"""

import contextlib
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


class Connector:
    """os-brick's part: the device path of local connection info."""

    def __init__(self):
        self.held = []

    @contextlib.contextmanager
    def connected(self, connection):
        path = connection.data['device_path']
        self.held.append(path)
        try:
            yield path
        except BaseException:
            self.held.remove(path)
            raise

    def disconnect(self, connection, device_path):
        self.held.remove(device_path)


@pytest.fixture
def backend(make_driver, monkeypatch):
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


def _stopped(backend, name='cdunit-vol'):
    instance = test_libvirt._instance(backend.conf, name)
    backend.spawned.append(instance)
    backend.spawn(instance, power_on=False)
    return instance


@pytest.fixture
def calls(monkeypatch):
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


def _definition(backend, instance):
    dom = backend._host.get_connection().lookupByUUIDString(instance.uuid)
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def _disks(xml):
    return {d.find('target').get('dev'): d.find('source').get('dev')
            for d in ET.fromstring(xml).findall('devices/disk')}


#: What a shut-off domain's attach, detach or swap asks libvirtd: the
#: pipeline's lookup, one read of the XML (a shut-off domain's is its
#: definition: the state, the checks and the change all come from it), the
#: managed-save check a shut-off domain needs, and one write of the disks
#: and the record together.
COLD = ['lookupByUUIDString', 'XMLDesc', 'hasManagedSaveImage', 'defineXML']


def test_cold_attach_and_detach_make_four_calls_each(backend, calls):
    instance = _stopped(backend)
    calls.clear()
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    assert calls == COLD
    assert _disks(_definition(backend, instance))['vdb'] == '/dev/cdunit-vol'
    [attached] = backend.list_volume_attachments(instance)
    assert (attached.volume_id, attached.mountpoint,
            attached.device_path) == ('vol-a', '/dev/vdb', '/dev/cdunit-vol')
    assert backend.volume_connector.held == ['/dev/cdunit-vol']

    calls.clear()
    backend.detach_volume(instance, _info('vol-a'))
    assert calls == COLD
    assert 'vdb' not in _disks(_definition(backend, instance))
    assert backend.list_volume_attachments(instance) == []
    assert backend.volume_connector.held == []


def test_cold_swap_makes_four_calls(backend, calls, monkeypatch):
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
    assert calls == COLD
    assert copied == [('/dev/cdunit-old', '/dev/cdunit-new')]
    assert _disks(_definition(backend, instance))['vdc'] == '/dev/cdunit-new'
    [attached] = backend.list_volume_attachments(instance)
    assert (attached.volume_id, attached.mountpoint) == ('vol-new',
                                                         '/dev/vdc')
    assert backend.volume_connector.held == ['/dev/cdunit-new']


def test_cold_bad_input_writes_nothing(backend, calls, monkeypatch):
    instance = _stopped(backend)
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    before = _definition(backend, instance)
    calls.clear()
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.attach_volume(instance, _info('vol-a'), '/dev/vdc')
    with pytest.raises(vol_exc.MountpointInUse):
        backend.attach_volume(instance, _info('vol-b', '/dev/cdunit-b'),
                              '/dev/vdb')
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


def test_failed_definition_write_leaves_nothing(backend, monkeypatch):
    instance = _stopped(backend)
    before = _definition(backend, instance)

    def refuse(self, xml):
        raise libvirt.libvirtError('cdunit: definition refused')

    monkeypatch.setattr(libvirt.virConnect, 'defineXML', refuse)
    with pytest.raises(exception.BackendError, match='definition refused'):
        backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    monkeypatch.undo()
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


def test_recorded_reads_the_definition_once_per_handle(backend, calls):
    instance = _stopped(backend)
    backend.attach_volume(instance, _info('vol-a'), '/dev/vdb')
    dom = backend._host.get_connection().lookupByUUIDString(instance.uuid)
    calls.clear()
    assert volumes.recorded(dom) == volumes.recorded(dom) == (
        volumes.attachments(dom))
    assert calls == ['XMLDesc', 'metadata']
    assert [a.volume_id for a in volumes.recorded(dom)] == ['vol-a']
    assert isinstance(volumes.recorded(dom)[0], vol_model.Attachment)


def test_running_domain_state_comes_from_libvirt(backend, calls):
    instance = _stopped(backend)
    backend.power_on(instance)
    backend.pause(instance)
    dom = backend._host.get_connection().lookupByUUIDString(instance.uuid)
    # Its definition read first (a listing) says nothing of its state.
    volumes.recorded(dom)
    calls.clear()
    assert not volumes.shut_off(dom)
    assert backend._volume_power_state(dom) == power_state.PAUSED
    assert calls == ['XMLDesc', 'XMLDesc', 'state']
