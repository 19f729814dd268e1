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

"""The simulator's VDI.copy, VDI.resize and VDI.resize_online over HTTP.

Through the XenAPI SDK, as any client calls them; the bytes go in and
come back out through /import_raw_vdi and /export_raw_vdi.
"""

import pytest
import XenAPI

from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from tests.functional import test_xapi_simulator_vdi as transfers

MIB = 1024 * 1024
GIB = 1024 * MIB

xapi_simulator = sim_fixture.xapi_simulator
session = transfers.session


def _failure(call, *args):
    with pytest.raises(XenAPI.Failure) as caught:
        call(*args)
    return caught.value.details


def _sr_used(session):
    return int(session.xenapi.SR.get_physical_utilisation(
        transfers._sr(session)))


def _vm_with(session, vdi, running=True):
    """A VM of its own with ``vdi`` at userdevice 1; started if asked."""
    [template] = session.xenapi.VM.get_by_name_label('Other install media')
    vm = session.xenapi.VM.clone(template, 'vdi-ops')
    session.xenapi.VM.set_is_a_template(vm, False)
    session.xenapi.VBD.create({
        'VM': vm, 'VDI': vdi, 'userdevice': '1', 'bootable': False,
        'mode': 'RW', 'type': 'Disk', 'empty': False, 'unpluggable': True,
        'other_config': {}, 'qos_algorithm_type': '',
        'qos_algorithm_params': {}})
    if running:
        session.xenapi.VM.start(vm, False, False)
    return vm


def test_copy_into_a_larger_vdi_copies_the_bytes(xapi_simulator, session):
    source = transfers._vdi(session, 4 * MIB)
    data = b'volume data ' * 1000
    transfers._import(xapi_simulator, session, source, data)
    target = transfers._vdi(session, 8 * MIB)
    # The target's old bytes where the source has data are overwritten.
    transfers._import(xapi_simulator, session, target, b'\xff' * (2 * MIB))

    result = session.xenapi.VDI.copy(source, 'OpaqueRef:NULL',
                                     'OpaqueRef:NULL', target)

    assert result == target
    _, exported = transfers._export(xapi_simulator, session, target)
    assert exported[:len(data)] == data
    # sparse_dd skips the source's zero blocks on a zeroed SR: the rest
    # of the first MiB is the source's zeros, the second MiB untouched.
    assert exported[len(data):MIB] == bytes(MIB - len(data))
    assert exported[MIB:2 * MIB] == b'\xff' * MIB
    assert len(exported) == 8 * MIB
    assert session.xenapi.VDI.get_virtual_size(target) == str(8 * MIB)


def test_copy_to_an_sr_makes_a_vdi_counting_the_bytes_written(
        xapi_simulator, session):
    source = transfers._vdi(session, 64 * MIB)
    transfers._import(xapi_simulator, session, source, b'x' * (3 * MIB))
    before = _sr_used(session)

    # The two-parameter form of older releases.
    copy = session.xenapi.VDI.copy(source, transfers._sr(session))

    assert copy != source
    assert session.xenapi.VDI.get_virtual_size(copy) == str(64 * MIB)
    # Three 1 MiB blocks hold data; the rest of the disk is a hole.
    assert session.xenapi.VDI.get_physical_utilisation(copy) == str(3 * MIB)
    assert _sr_used(session) == before + 3 * MIB
    _, exported = transfers._export(xapi_simulator, session, copy)
    assert exported[:3 * MIB] == b'x' * (3 * MIB)


def test_copy_with_a_base_writes_only_the_changed_blocks(
        xapi_simulator, session):
    base = transfers._vdi(session, 4 * MIB)
    transfers._import(xapi_simulator, session, base, b'a' * (4 * MIB))
    source = session.xenapi.VDI.copy(base, transfers._sr(session))
    transfers._import(xapi_simulator, session, source,
                      b'a' * MIB + b'b' * MIB)
    target = transfers._vdi(session, 4 * MIB)
    transfers._import(xapi_simulator, session, target, b'c' * (4 * MIB))

    session.xenapi.VDI.copy(source, 'OpaqueRef:NULL', base, target)

    _, exported = transfers._export(xapi_simulator, session, target)
    # Only the second MiB differs from the base: the rest keeps 'c'.
    assert exported == b'c' * MIB + b'b' * MIB + b'c' * (2 * MIB)


def test_copy_refusals_leave_nothing(xapi_simulator, session):
    source = transfers._vdi(session, 8 * MIB)
    small = transfers._vdi(session, 4 * MIB)
    vdis = set(session.xenapi.VDI.get_all())
    used = _sr_used(session)

    assert _failure(session.xenapi.VDI.copy, source, 'OpaqueRef:NULL',
                    'OpaqueRef:NULL', small) == [
        'VDI_TOO_SMALL', small, str(8 * MIB)]
    session.xenapi.VDI.set_read_only(small, True)
    assert _failure(session.xenapi.VDI.copy, small, 'OpaqueRef:NULL',
                    'OpaqueRef:NULL', small) == ['VDI_READONLY', small]
    # Neither a destination VDI nor an SR.
    assert _failure(session.xenapi.VDI.copy, source, 'OpaqueRef:NULL',
                    'OpaqueRef:NULL', 'OpaqueRef:NULL')[0] == 'HANDLE_INVALID'
    assert set(session.xenapi.VDI.get_all()) == vdis
    assert _sr_used(session) == used


def test_copy_refuses_a_source_plugged_read_write(xapi_simulator,
                                                  session):
    source = transfers._vdi(session, 4 * MIB)
    target = transfers._vdi(session, 4 * MIB)
    transfers._import(xapi_simulator, session, source, b's' * MIB)
    vm = _vm_with(session, source)
    assert _failure(session.xenapi.VDI.copy, source, 'OpaqueRef:NULL',
                    'OpaqueRef:NULL', target) == [
        'VDI_IN_USE', source, 'copy']
    session.xenapi.VM.hard_shutdown(vm)
    # A destination a VM has plugged is written into: XAPI's own plug
    # into dom0 is exempt from the sharing check.
    _vm_with(session, target)
    assert session.xenapi.VDI.copy(source, 'OpaqueRef:NULL',
                                   'OpaqueRef:NULL', target) == target
    _, exported = transfers._export(xapi_simulator, session, target)
    assert exported[:MIB] == b's' * MIB


def test_resize_rounds_up_to_vhd_blocks_and_accounts_the_sr(
        xapi_simulator, session):
    vdi = transfers._vdi(session, GIB)
    used = _sr_used(session)

    session.xenapi.VDI.resize(vdi, str(GIB + 1))

    assert session.xenapi.VDI.get_virtual_size(vdi) == str(GIB + 2 * MIB)
    assert _sr_used(session) == used + 2 * MIB
    # The size it has already: nothing to do.
    session.xenapi.VDI.resize(vdi, str(GIB + 2 * MIB))
    assert session.xenapi.VDI.get_virtual_size(vdi) == str(GIB + 2 * MIB)


def test_resize_refuses_to_shrink(xapi_simulator, session):
    vdi = transfers._vdi(session, GIB)
    assert _failure(session.xenapi.VDI.resize, vdi, str(GIB - 1)) == [
        'SR_BACKEND_FAILURE_79', '',
        'VDI Invalid size [opterr=shrinking not allowed]', '']
    assert _failure(session.xenapi.VDI.resize, vdi, str(4096 * GIB))[
        0] == 'SR_BACKEND_FAILURE_79'
    assert _failure(session.xenapi.VDI.resize, vdi,
                    str(1 << 50))[0] == 'SR_BACKEND_FAILURE_79'
    assert session.xenapi.VDI.get_virtual_size(vdi) == str(GIB)


def test_resize_beyond_the_sr_is_sr_full(xapi_simulator, session):
    vdi = transfers._vdi(session, GIB)
    sr = transfers._sr(session)
    free = (int(session.xenapi.SR.get_physical_size(sr)) -
            _sr_used(session))
    assert _failure(session.xenapi.VDI.resize, vdi,
                    str(GIB + free + 2 * MIB))[0] == 'SR_FULL'
    assert session.xenapi.VDI.get_virtual_size(vdi) == str(GIB)


def test_resize_of_a_plugged_vdi(xapi_simulator, session):
    vdi = transfers._vdi(session, GIB)
    sr = transfers._sr(session)
    vm = _vm_with(session, vdi)
    # Offline resize needs the VDI unplugged; online resize an SM that
    # can, which no stock SR type has.
    assert _failure(session.xenapi.VDI.resize, vdi, str(2 * GIB)) == [
        'VDI_IN_USE', vdi, 'resize']
    assert _failure(session.xenapi.VDI.resize_online, vdi,
                    str(2 * GIB)) == ['SR_OPERATION_NOT_SUPPORTED', sr]
    assert session.xenapi.VDI.get_virtual_size(vdi) == str(GIB)

    xapi_simulator.set_sm_features('ext', 'VDI_RESIZE', 'VDI_RESIZE_ONLINE')
    session.xenapi.VDI.resize_online(vdi, str(2 * GIB))
    assert session.xenapi.VDI.get_virtual_size(vdi) == str(2 * GIB)
    assert _failure(session.xenapi.VDI.resize_online, vdi, str(GIB))[
        0] == 'SR_BACKEND_FAILURE_79'

    session.xenapi.VM.hard_shutdown(vm)
    session.xenapi.VDI.resize(vdi, str(3 * GIB))
    assert session.xenapi.VDI.get_virtual_size(vdi) == str(3 * GIB)


def test_resize_where_the_sr_type_cannot(xapi_simulator, session):
    vdi = transfers._vdi(session, GIB)
    sr = transfers._sr(session)
    xapi_simulator.set_sm_features('ext')
    assert _failure(session.xenapi.VDI.resize, vdi, str(2 * GIB)) == [
        'SR_OPERATION_NOT_SUPPORTED', sr]


def test_async_copy_reports_the_vdi_in_its_task(xapi_simulator, session):
    source = transfers._vdi(session, 4 * MIB)
    target = transfers._vdi(session, 4 * MIB)
    transfers._import(xapi_simulator, session, source, b'z' * MIB)
    hold = xapi_simulator.hold('VDI.copy')
    task = session.xenapi.Async.VDI.copy(source, 'OpaqueRef:NULL',
                                         'OpaqueRef:NULL', target)
    assert hold.reached.wait(10)
    assert session.xenapi.task.get_status(task) == 'pending'
    hold.release()
    assert hold.finished.wait(10)
    assert session.xenapi.task.get_status(task) == 'success'
    assert target in session.xenapi.task.get_result(task)
    _, exported = transfers._export(xapi_simulator, session, target)
    assert exported[:MIB] == b'z' * MIB
