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

"""Resize and cold migration through the contract, on fake backends.

One fake host for a resize, two in this process for a migration: the
fake's disk travels in ``disk_info``, and each host's own record says
what it has.
"""

import dataclasses
import json
from unittest import mock

import pytest

from compute_driver import conf as cd_conf
from compute_driver.docker import migration as docker_migration
from compute_driver import driver
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver import flavors
from compute_driver import objects
from compute_driver import power_state

IMAGE = 'cirros-0.6.3-x86_64-disk'


def _host(name, **fake_opts):
    conf = cd_conf.build_conf(config_files=[])
    for option, value in fake_opts.items():
        conf.set_override(option, value, group='fake')
    backend = fake_driver.FakeDriver(conf)
    backend.init_host(name)
    return backend


def _flavor(backend, name):
    return flavors.get_flavor(backend.conf, name)


def _boot(backend, name='vm1', flavor='m1.tiny', power_on=True):
    inst = objects.Instance.new(name, _flavor(backend, flavor), IMAGE,
                                metadata={'role': 'web'})
    backend.spawn(inst, power_on=power_on)
    return inst


def _usage(backend):
    res = backend.get_available_resource(None)
    return res.vcpus_used, res.memory_mb_used, res.local_gb_used


class Events:
    def __init__(self, backend):
        self.seen = []
        backend.register_event_listener(
            lambda e: self.seen.append(e.transition))


def test_resize_then_confirm():
    backend = _host('host1')
    inst = _boot(backend)
    events = Events(backend)
    small = _flavor(backend, 'm1.small')
    backend.resize(inst, small)
    record = backend.find_instance(inst.uuid)
    assert record.instance == dataclasses.replace(inst, flavor=small)
    assert record.info.state == power_state.RUNNING
    assert events.seen == [virtevent.EVENT_LIFECYCLE_STOPPED,
                           virtevent.EVENT_LIFECYCLE_STARTED]
    # The revert point holds the old flavor until the resize is confirmed.
    assert _usage(backend) == (2, 512 + 2048, 1 + 20)
    assert backend.get_diagnostics(inst)['memory_mb'] == 2048
    backend.confirm_migration(inst)
    assert _usage(backend) == (1, 2048, 20)
    backend.confirm_migration(inst)  # idempotent
    assert backend.find_instance(inst.uuid).instance.flavor == small


def test_resize_then_revert_keeps_the_disk():
    backend = _host('host1')
    inst = _boot(backend)
    generation = backend.get_diagnostics(inst)['disk_generation']
    backend.resize(inst, _flavor(backend, 'm1.small'))
    # As Nova reverts: the resized instance is destroyed first.
    backend.destroy(inst)
    backend.finish_revert_migration(inst, power_on=True)
    record = backend.find_instance(inst.uuid)
    assert record.instance == inst
    assert record.info.state == power_state.RUNNING
    assert _usage(backend) == (1, 512, 1)
    # The same disk, booted once more.
    assert (backend.get_diagnostics(inst)['disk_generation'] ==
            generation + 1)


def test_resize_of_stopped_instance_stays_stopped():
    backend = _host('host1')
    inst = _boot(backend, power_on=False)
    backend.resize(inst, _flavor(backend, 'm1.small'))
    assert backend.get_info(inst).state == power_state.SHUTDOWN
    backend.finish_revert_migration(inst, power_on=False)
    assert backend.find_instance(inst.uuid).instance == inst
    assert backend.get_info(inst).state == power_state.SHUTDOWN


def test_resize_refuses_smaller_disk_before_acting():
    backend = _host('host1')
    inst = _boot(backend, flavor='m1.small')
    with pytest.raises(exception.InvalidInput, match='disks cannot shrink'):
        backend.resize(inst, _flavor(backend, 'm1.tiny'))
    assert backend.get_info(inst).state == power_state.RUNNING
    assert backend.find_instance(inst.uuid).instance == inst


def test_resize_that_does_not_fit_changes_nothing():
    backend = _host('host1', memory_mb=4096)
    inst = _boot(backend, flavor='m1.small')
    before = _usage(backend)
    # 2048 + 4096 MiB: the old flavor still counts during the resize.
    with pytest.raises(exception.InsufficientResources):
        backend.resize(inst, _flavor(backend, 'm1.medium'))
    assert backend.get_info(inst).state == power_state.RUNNING
    assert backend.find_instance(inst.uuid).instance == inst
    assert _usage(backend) == before


def test_resize_from_paused_is_refused():
    backend = _host('host1')
    inst = _boot(backend)
    backend.pause(inst)
    with pytest.raises(exception.InvalidPowerState):
        backend.resize(inst, _flavor(backend, 'm1.small'))
    assert backend.get_info(inst).state == power_state.PAUSED


def test_failed_resize_restores_the_instance():
    backend = _host('host1')
    inst = _boot(backend)
    with mock.patch.object(backend, '_resize', autospec=True,
                           side_effect=exception.BackendError(
                               operation='resize', instance=inst.name,
                               reason='boom')):
        with pytest.raises(exception.BackendError):
            backend.resize(inst, _flavor(backend, 'm1.small'))
    assert backend.get_info(inst).state == power_state.RUNNING
    assert backend.find_instance(inst.uuid).instance == inst
    assert _usage(backend) == (1, 512, 1)


def test_cold_migrate_between_two_hosts_then_confirm():
    source, dest = _host('host1'), _host('host2')
    inst = _boot(source)
    generation = source.get_diagnostics(inst)['disk_generation']
    small = _flavor(source, 'm1.small')
    disk_info = source.migrate_disk_and_power_off(inst, 'host2', small)
    assert json.loads(disk_info)['dest'] == 'host2'
    # The source keeps it, stopped, until the move is confirmed.
    assert source.get_info(inst).state == power_state.SHUTDOWN
    dest.finish_migration(inst, disk_info, power_on=True)
    moved = dest.find_instance(inst.uuid)
    assert moved.instance == dataclasses.replace(inst, flavor=small)
    assert moved.info.state == power_state.RUNNING
    assert (dest.get_diagnostics(inst)['disk_generation'] ==
            generation + 1)
    assert _usage(dest) == (1, 2048, 20)
    source.confirm_migration(inst)
    assert source.list_instance_uuids() == []
    assert _usage(source) == (0, 0, 0)


def test_cold_migrate_then_revert():
    source, dest = _host('host1'), _host('host2')
    inst = _boot(source)
    disk_info = source.migrate_disk_and_power_off(
        inst, 'host2', _flavor(source, 'm1.small'))
    dest.finish_migration(inst, disk_info, power_on=True)
    dest.destroy(inst)
    source.finish_revert_migration(inst, power_on=True)
    assert source.find_instance(inst.uuid).instance == inst
    assert source.get_info(inst).state == power_state.RUNNING
    # Confirming now would not remove it: it no longer leaves.
    source.confirm_migration(inst)
    assert source.list_instance_uuids() == [inst.uuid]
    assert dest.list_instance_uuids() == []


def test_migration_that_does_not_fit_the_destination_leaves_nothing():
    source, dest = _host('host1'), _host('host2', memory_mb=1024)
    inst = _boot(source)
    disk_info = source.migrate_disk_and_power_off(
        inst, 'host2', _flavor(source, 'm1.small'))
    with pytest.raises(exception.InsufficientResources):
        dest.finish_migration(inst, disk_info)
    assert dest.list_instance_uuids() == []
    assert _usage(dest) == (0, 0, 0)
    source.finish_revert_migration(inst)
    assert source.get_info(inst).state == power_state.RUNNING


def test_finish_migration_refuses_foreign_disk_info():
    source, dest = _host('host1'), _host('host2')
    inst, other = _boot(source), _boot(source, 'vm2')
    disk_info = source.migrate_disk_and_power_off(
        inst, 'host2', _flavor(source, 'm1.small'))
    with pytest.raises(exception.InvalidInput, match='not '):
        dest.finish_migration(other, disk_info)
    for bad in ('', '{}', '[1]', json.dumps({'format': 99})):
        with pytest.raises(exception.InvalidInput):
            dest.finish_migration(inst, bad)
    assert dest.list_instance_uuids() == []


def test_revert_of_unknown_instance():
    backend = _host('host1')
    inst = objects.Instance.new('ghost', _flavor(backend, 'm1.tiny'), IMAGE)
    with pytest.raises(exception.InstanceNotFound):
        backend.finish_revert_migration(inst)


class Minimal(fake_driver.FakeDriver):
    capabilities = {'supports_resize': False, 'supports_cold_migrate': False}


def test_not_supported_before_anything():
    conf = cd_conf.build_conf(config_files=[])
    backend = Minimal(conf)
    backend.init_host('host1')
    inst = _boot(backend)
    small = _flavor(backend, 'm1.small')
    for call in (lambda: backend.resize(inst, small),
                 lambda: backend.migrate_disk_and_power_off(
                     inst, 'host2', small),
                 lambda: backend.confirm_migration(inst),
                 lambda: backend.finish_revert_migration(inst)):
        with pytest.raises(exception.NotSupported):
            call()
    assert backend.get_info(inst).state == power_state.RUNNING


def test_operations_table_calls_them():
    source, dest = _host('host1'), _host('host2')
    inst = _boot(source)
    small = _flavor(source, 'm1.small')
    driver.OPERATIONS['resize'].call(source, inst, flavor=small)
    source.confirm_migration(inst)
    disk_info = driver.OPERATIONS['cold_migrate'].call(
        source, inst, dest='host2', flavor=_flavor(source, 'm1.medium'))
    dest.finish_migration(inst, disk_info)
    assert dest.find_instance(inst.uuid).instance.flavor.name == 'm1.medium'


def test_docker_resize_images_are_not_bootable_images():
    uuid = '00000000-0000-4000-8000-000000000001'
    assert docker_migration.is_resize_image(docker_migration.revert_tag(uuid))
    assert docker_migration.is_resize_image(docker_migration.base_tag(uuid))
    assert not docker_migration.is_resize_image('compute-driver/busybox:test')
