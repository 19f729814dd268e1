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

"""Volumes on the xenapi backend against the XAPI simulator over HTTP:
the volume's VDI plugged into VMs through VBDs."""

import threading

import pytest
import XenAPI

from compute_driver import exception
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    xapi_simulator as simulator)
from compute_driver.volume import exception as vol_exc
from tests.functional import test_xapi_simulator_vdi as transfers
from tests.functional import test_xenapi_driver as base
from tests.functional.test_xenapi_driver import backends  # noqa: F401
from tests.functional.test_xenapi_driver import make_driver  # noqa: F401


def _volume(sim):
    """A VDI standing for a Cinder volume on the pool's SR; its uuid."""
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password('root', 'password', '2.21', 't')
    try:
        sr = session.xenapi.pool.get_default_SR(
            session.xenapi.pool.get_all()[0])
        vdi = session.xenapi.VDI.create({
            'name_label': 'volume', 'SR': sr, 'virtual_size': str(1 << 30),
            'type': 'user', 'sharable': False, 'read_only': False,
            'other_config': {}})
        return session.xenapi.VDI.get_uuid(vdi)
    finally:
        session.xenapi.session.logout()


def _info(volume):
    # What Cinder's XenAPI-reachable storage hands over: the volume id is
    # the VDI's uuid; the target itself is reached by the pool.
    return {'driver_volume_type': 'iscsi', 'data': {
        'volume_id': volume, 'target_portal': '192.0.2.10:3260',
        'target_iqn': 'iqn.2010-10.org.openstack:volume', 'target_lun': 1}}


def _vbds_of(sim, volume):
    [vdi] = [ref for ref, rec in sim.objects('VDI').items()
             if rec['uuid'] == volume]
    return [sim.objects('VBD')[v] for v in sim.objects('VDI')[vdi]['VBDs']]


def _destroy_vm_during(sim, xapi, vm, call, operation):
    """Run ``operation``; destroy ``vm`` while the simulator holds ``call``.

    Another client removing the VM mid-operation. Returns what the
    operation raised (``None`` if nothing).
    """
    hold = sim.hold(call)
    errors = []

    def run():
        try:
            operation()
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert hold.reached.wait(30)
        xapi.api.VM.destroy(vm)
    finally:
        hold.release()
        thread.join(60)
    assert not thread.is_alive()
    return errors[0] if errors else None


def test_plug_unplug_and_move_to_another_vm(
        simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    first, second = base._instance('vm1'), base._instance('vm2')
    base._spawn(backend, first)
    base._spawn(backend, second, power_on=False)
    volume = _volume(simulator)
    backend.attach_volume(first, _info(volume), '/dev/xvdb')
    [vbd] = _vbds_of(simulator, volume)
    assert (vbd['userdevice'], vbd['currently_attached']) == ('1', True)
    assert [a.volume_id for a in backend.list_volume_attachments(
        first)] == [volume]

    # Plugged into vm1: vm2 cannot have it live; XAPI's VDI_IN_USE.
    backend.power_on(second)
    with pytest.raises(vol_exc.VolumeInUse):
        backend.attach_volume(second, _info(volume), '/dev/xvdb')
    assert len(_vbds_of(simulator, volume)) == 1
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.attach_volume(first, _info(volume), '/dev/xvdc')
    with pytest.raises(vol_exc.VolumeDeviceNotFound):
        backend.attach_volume(first, _info(
            '00000000-0000-4000-8000-000000000000'), '/dev/xvdc')
    with pytest.raises(exception.InvalidInput):
        backend.attach_volume(first, _info(volume), '/dev/vdb')
    with pytest.raises(vol_exc.VolumeNotAttached):
        backend.detach_volume(second, _info(volume))
    assert len(_vbds_of(simulator, volume)) == 1

    backend.detach_volume(first, _info(volume))
    assert _vbds_of(simulator, volume) == []
    assert backend.list_volume_attachments(first) == []
    backend.attach_volume(second, _info(volume), '/dev/xvdc')
    [vbd] = _vbds_of(simulator, volume)
    assert (vbd['userdevice'], vbd['currently_attached']) == ('2', True)


def test_cold_attach_is_plugged_at_start(
        simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    instance = base._instance()
    base._spawn(backend, instance, power_on=False)
    volume = _volume(simulator)
    backend.attach_volume(instance, _info(volume), '/dev/xvdb')
    [vbd] = _vbds_of(simulator, volume)
    assert vbd['currently_attached'] is False
    backend.power_on(instance)
    [vbd] = _vbds_of(simulator, volume)
    assert vbd['currently_attached'] is True
    backend.destroy(instance)
    # The VDI is the volume's: destroying the VM keeps it.
    assert _vbds_of(simulator, volume) == []


# -- swap and extend ----------------------------------------------------------

MIB = 1 << 20
GIB = 1 << 30


class _Xapi:
    """A session of another client of the pool, over XML-RPC."""

    def __init__(self, sim):
        self.sim = sim
        self.session = XenAPI.Session(sim.url)
        self.session.xenapi.login_with_password('root', 'password', '2.21',
                                                'another-client')
        self.api = self.session.xenapi

    def close(self):
        self.session.xenapi.session.logout()

    def vdi(self, volume):
        return self.api.VDI.get_by_uuid(volume)

    def write(self, volume, data):
        response, _ = transfers._import(self.sim, self.session,
                                        self.vdi(volume), data)
        assert response.status == 200

    def read(self, volume, length):
        # The first bytes only: the whole of a GiB volume takes seconds.
        _, data = transfers._export(self.sim, self.session, self.vdi(volume),
                                    length=length)
        return data

    def size(self, volume):
        return int(self.api.VDI.get_virtual_size(self.vdi(volume)))


@pytest.fixture
def xapi(simulator):  # noqa: F811
    client = _Xapi(simulator)
    yield client
    client.close()


def _sized_volume(sim, size):
    volume = _volume(sim)
    session = _Xapi(sim)
    try:
        vdi = session.vdi(volume)
        if size != GIB:
            # A new VDI of that size: VDI.create takes no uuid to keep.
            session.api.VDI.destroy(vdi)
            vdi = session.api.VDI.create({
                'name_label': 'volume', 'SR': session.api.pool.get_default_SR(
                    session.api.pool.get_all()[0]),
                'virtual_size': str(size), 'type': 'user',
                'sharable': False, 'read_only': False, 'other_config': {}})
            volume = session.api.VDI.get_uuid(vdi)
    finally:
        session.close()
    return volume


def _state(sim, instance):
    """The instance's VBDs (userdevice -> VDI uuid) and the VDIs' VBDs."""
    vdis = {ref: rec['uuid'] for ref, rec in sim.objects('VDI').items()}
    [vm] = [rec for rec in sim.objects('VM').values()
            if rec['name_label'] == instance.name]
    vbds = {}
    for ref in vm['VBDs']:
        vbd = sim.objects('VBD')[ref]
        vbds[vbd['userdevice']] = vdis.get(vbd['VDI'])
    return vbds


def test_swap_copies_on_the_pool_and_replaces_the_vbd(
        simulator, make_driver, xapi):  # noqa: F811
    backend = make_driver(simulator)
    instance = base._instance()
    base._spawn(backend, instance, power_on=False)
    old, new = _volume(simulator), _sized_volume(simulator, 2 * GIB)
    backend.attach_volume(instance, _info(old), '/dev/xvdc')
    data = b'written before the swap ' * 4096
    xapi.write(old, data)

    backend.swap_volume(instance, _info(old), _info(new), resize_to=2)

    assert xapi.read(new, len(data)) == data
    assert _state(simulator, instance)['2'] == new
    assert old not in _state(simulator, instance).values()
    assert [(a.volume_id, a.mountpoint) for a in
            backend.list_volume_attachments(instance)] == [
        (new, '/dev/xvdc')]
    # The old volume keeps its data and is free for another instance.
    assert _vbds_of(simulator, old) == []
    assert xapi.read(old, len(data)) == data
    [vbd] = _vbds_of(simulator, new)
    assert vbd['other_config']['compute_driver_volume'] == new
    # The new volume is plugged when the instance starts.
    backend.power_on(instance)
    [vbd] = _vbds_of(simulator, new)
    assert vbd['currently_attached'] is True


def test_swap_refusals_leave_the_old_volume_attached(
        simulator, make_driver, xapi):  # noqa: F811
    backend = make_driver(simulator)
    instance, other = base._instance('vm1'), base._instance('vm2')
    base._spawn(backend, instance, power_on=False)
    old = _sized_volume(simulator, 2 * GIB)
    small = _volume(simulator)
    backend.attach_volume(instance, _info(old), '/dev/xvdb')
    xapi.write(old, b'old data')
    base._spawn(backend, other)
    bigger = _sized_volume(simulator, 4 * GIB)
    backend.attach_volume(other, _info(bigger), '/dev/xvdb')
    before = _state(simulator, instance)
    vdis = set(simulator.objects('VDI'))

    # Smaller than the old volume: XAPI's VDI_TOO_SMALL.
    with pytest.raises(exception.InvalidInput, match='fewer'):
        backend.swap_volume(instance, _info(old), _info(small))
    # Not attached to the instance.
    with pytest.raises(vol_exc.VolumeNotAttached):
        backend.swap_volume(instance, _info(small), _info(old))
    # No such VDI.
    with pytest.raises(vol_exc.VolumeDeviceNotFound):
        backend.swap_volume(instance, _info(old), _info(
            '00000000-0000-4000-8000-000000000000'))
    # Already attached: it cannot be the replacement.
    backend.attach_volume(instance, _info(small), '/dev/xvdc')
    with pytest.raises(vol_exc.VolumeAlreadyAttached):
        backend.swap_volume(instance, _info(old), _info(small))
    backend.detach_volume(instance, _info(small))
    # Plugged into another running VM: XAPI's VDI_IN_USE.
    with pytest.raises(vol_exc.VolumeInUse):
        backend.swap_volume(instance, _info(old), _info(bigger))
    # Copying under a running guest's writes is not done.
    backend.power_on(instance)
    with pytest.raises(exception.NotSupported):
        backend.swap_volume(instance, _info(old), _info(small))

    assert _state(simulator, instance) == before
    assert [a.volume_id for a in
            backend.list_volume_attachments(instance)] == [old]
    assert _vbds_of(simulator, small) == []
    assert set(simulator.objects('VDI')) == vdis
    assert [v['currently_attached'] for v in _vbds_of(simulator, bigger)
            ] == [True]
    assert xapi.read(old, 8) == b'old data'


def test_swap_of_a_vm_destroyed_midway_leaves_no_vbd(
        simulator, make_driver, xapi):  # noqa: F811
    backend = make_driver(simulator)
    instance = base._instance()
    base._spawn(backend, instance, power_on=False)
    old, new = _volume(simulator), _volume(simulator)
    backend.attach_volume(instance, _info(old), '/dev/xvdb')
    [vm] = xapi.api.VM.get_by_name_label(instance.name)
    error = _destroy_vm_during(
        simulator, xapi, vm, 'VDI.copy',
        lambda: backend.swap_volume(instance, _info(old), _info(new)))
    assert isinstance(error, exception.InstanceNotFound)
    assert _vbds_of(simulator, old) == []
    assert _vbds_of(simulator, new) == []


def test_extend_resizes_the_vdi(simulator, make_driver, xapi):  # noqa: F811
    backend = make_driver(simulator)
    instance = base._instance()
    base._spawn(backend, instance, power_on=False)
    volume = _volume(simulator)
    backend.attach_volume(instance, _info(volume), '/dev/xvdb')

    backend.extend_volume(instance, _info(volume), 2 * GIB)
    assert xapi.size(volume) == 2 * GIB
    # XAPI's storage rounds up to whole 2 MiB blocks.
    backend.extend_volume(instance, _info(volume), 2 * GIB + 1)
    assert xapi.size(volume) == 2 * GIB + 2 * MIB

    with pytest.raises(exception.InvalidInput, match='shrinking'):
        backend.extend_volume(instance, _info(volume), GIB)
    with pytest.raises(exception.InvalidInput):
        backend.extend_volume(instance, _info(volume), 0)
    with pytest.raises(vol_exc.VolumeNotAttached):
        backend.extend_volume(instance, _info(_volume(simulator)), 4 * GIB)
    assert xapi.size(volume) == 2 * GIB + 2 * MIB
    [vbd] = _vbds_of(simulator, volume)
    assert vbd['currently_attached'] is False


def test_extend_on_a_running_instance_needs_online_resize(
        simulator, make_driver, xapi):  # noqa: F811
    backend = make_driver(simulator)
    instance = base._instance()
    base._spawn(backend, instance)
    volume = _volume(simulator)
    backend.attach_volume(instance, _info(volume), '/dev/xvdb')

    # The stock SR types cannot resize a plugged disk.
    with pytest.raises(exception.NotSupported, match='stop the instance'):
        backend.extend_volume(instance, _info(volume), 2 * GIB)
    assert xapi.size(volume) == GIB

    simulator.set_sm_features('ext', 'VDI_RESIZE', 'VDI_RESIZE_ONLINE')
    backend.extend_volume(instance, _info(volume), 2 * GIB)
    assert xapi.size(volume) == 2 * GIB
    [vbd] = _vbds_of(simulator, volume)
    assert vbd['currently_attached'] is True
    with pytest.raises(exception.InvalidInput, match='shrinking'):
        backend.extend_volume(instance, _info(volume), GIB)


def test_swap_whose_copy_outlasts_call_timeout_keeps_the_old_volume(
        simulator, make_driver, xapi):  # noqa: F811
    backend = make_driver(simulator, call_timeout=1)
    instance = base._instance()
    base._spawn(backend, instance, power_on=False)
    old, new = _volume(simulator), _volume(simulator)
    backend.attach_volume(instance, _info(old), '/dev/xvdb')
    hold = simulator.hold('VDI.copy')
    try:
        with pytest.raises(exception.HypervisorUnavailable,
                           match='call_timeout'):
            backend.swap_volume(instance, _info(old), _info(new))
    finally:
        hold.release()
    # The task was cancelled, so the held copy ends without effect.
    assert hold.finished.wait(30)
    assert _state(simulator, instance)['1'] == old
    assert [a.volume_id for a in
            backend.list_volume_attachments(instance)] == [old]
    assert _vbds_of(simulator, new) == []
    assert [t['status'] for t in simulator.objects('task').values()
            if t['name_label'] == 'Async.VDI.copy'] in ([], ['cancelled'])


def test_extend_of_a_vm_destroyed_midway_reports_it(
        simulator, make_driver, xapi):  # noqa: F811
    backend = make_driver(simulator)
    instance = base._instance()
    base._spawn(backend, instance, power_on=False)
    volume = _volume(simulator)
    backend.attach_volume(instance, _info(volume), '/dev/xvdb')
    [vm] = xapi.api.VM.get_by_name_label(instance.name)
    error = _destroy_vm_during(
        simulator, xapi, vm, 'VDI.resize',
        lambda: backend.extend_volume(instance, _info(volume), 2 * GIB))
    assert isinstance(error, exception.InstanceNotFound)
    # The volume grew, and nothing holds it.
    assert xapi.size(volume) == 2 * GIB
    assert _vbds_of(simulator, volume) == []
