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

import pytest
import XenAPI

from compute_driver import exception
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    xapi_simulator as simulator)
from compute_driver.volume import exception as vol_exc
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
