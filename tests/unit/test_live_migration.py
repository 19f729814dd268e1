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

"""Live migration through the contract, between two fake hosts.

The steps run in Nova's order, each on the host Nova runs it on; the
running guest goes over the fake's in-process migration network.
"""

import pytest

from compute_driver import conf as cd_conf
from compute_driver import driver
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver import flavors
from compute_driver import objects
from compute_driver import power_state

IMAGE = 'cirros-0.6.3-x86_64-disk'


@pytest.fixture
def hosts():
    made = []

    def make(name, cls=fake_driver.FakeDriver, **fake_opts):
        conf = cd_conf.build_conf(config_files=[])
        for option, value in fake_opts.items():
            conf.set_override(option, value, group='fake')
        backend = cls(conf)
        backend.init_host(name)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.cleanup_host(backend.host)


def _boot(backend, name='vm1', flavor='m1.tiny'):
    inst = objects.Instance.new(
        name, flavors.get_flavor(backend.conf, flavor), IMAGE)
    backend.spawn(inst)
    return inst


def _memory_used(backend):
    return backend.get_available_resource(None).memory_mb_used


def _prepare(source, dest, inst):
    """Nova's checks and pre_live_migration; the migrate_data."""
    checked = dest.check_can_live_migrate_destination(inst)
    try:
        migrate_data = source.check_can_live_migrate_source(inst, checked)
    finally:
        dest.cleanup_live_migration_destination_check(checked)
    return dest.pre_live_migration(inst, migrate_data)


def test_live_migration_moves_the_running_guest(hosts):
    source, dest = hosts('lm-src'), hosts('lm-dst')
    inst = _boot(source)
    source.pause(inst)
    generation = source.get_diagnostics(inst)['disk_generation']
    migrate_data = _prepare(source, dest, inst)
    assert migrate_data['source'] == 'lm-src'
    assert migrate_data['dest'] == 'lm-dst'
    # Reserved on the destination before anything moves.
    memory = inst.flavor.memory_mb
    assert _memory_used(dest) == memory
    source.live_migration(inst, 'lm-dst', migrate_data)
    assert source.list_instance_uuids() == []
    moved = dest.find_instance(inst.uuid)
    # Not restarted: the same guest, still paused, with the same disk.
    assert moved.info.state == power_state.PAUSED
    assert moved.instance == inst
    assert dest.get_diagnostics(inst)['disk_generation'] == generation
    assert 'migrating live to lm-dst' in dest.get_console_output(inst)
    source.post_live_migration(inst, migrate_data=migrate_data)
    dest.post_live_migration_at_destination(inst)
    # Counted once: the reservation gave way to the guest.
    assert _memory_used(dest) == memory
    assert _memory_used(source) == 0
    dest.unpause(inst)
    assert dest.get_info(inst).state == power_state.RUNNING


def test_failed_transfer_leaves_the_guest_running_on_the_source(hosts):
    source, dest = hosts('lm-src'), hosts('lm-dst')
    inst = _boot(source)
    migrate_data = _prepare(source, dest, inst)
    # The destination is gone from the migration network meanwhile.
    dest.cleanup_host('lm-dst')
    with pytest.raises(exception.MigrationFailed) as raised:
        source.live_migration(inst, 'lm-dst', migrate_data)
    assert 'lm-dst' in str(raised.value)
    assert source.get_info(inst).state == power_state.RUNNING
    source.rollback_live_migration_at_source(inst)
    dest.rollback_live_migration_at_destination(inst)
    assert dest.list_instance_uuids() == []
    assert _memory_used(dest) == 0
    # Idempotent.
    dest.rollback_live_migration_at_destination(inst)


def test_unprepared_destination_takes_nothing(hosts):
    source, dest = hosts('lm-src'), hosts('lm-dst')
    inst = _boot(source)
    with pytest.raises(exception.MigrationFailed):
        source.live_migration(inst, 'lm-dst')
    assert source.get_info(inst).state == power_state.RUNNING
    assert dest.list_instance_uuids() == []


def test_rollback_leaves_an_instance_the_host_had(hosts):
    dest = hosts('lm-dst')
    inst = _boot(dest)
    # Nothing was prepared for it here: a stray rollback keeps it.
    dest.rollback_live_migration_at_destination(inst)
    assert dest.get_info(inst).state == power_state.RUNNING


def test_destination_refuses_what_does_not_fit(hosts):
    source, dest = hosts('lm-src'), hosts('lm-dst', memory_mb=256)
    inst = _boot(source, flavor='m1.small')
    with pytest.raises(exception.InsufficientResources):
        dest.check_can_live_migrate_destination(inst)
    # Nor can pre_live_migration reserve it.
    checked = {'format': driver.ComputeDriver.LIVE_MIGRATION_FORMAT,
               'backend': 'FakeDriver', 'dest': 'lm-dst'}
    migrate_data = source.check_can_live_migrate_source(inst, checked)
    with pytest.raises(exception.InsufficientResources):
        dest.pre_live_migration(inst, migrate_data)
    assert _memory_used(dest) == 0


def test_destination_refuses_an_instance_it_has(hosts):
    dest = hosts('lm-dst')
    inst = _boot(dest)
    with pytest.raises(exception.InstanceExists):
        dest.check_can_live_migrate_destination(inst)


def test_stopped_instance_is_refused_before_anything(hosts):
    source, dest = hosts('lm-src'), hosts('lm-dst')
    inst = _boot(source)
    source.power_off(inst)
    checked = dest.check_can_live_migrate_destination(inst)
    with pytest.raises(exception.InvalidPowerState):
        source.check_can_live_migrate_source(inst, checked)
    with pytest.raises(exception.InvalidPowerState):
        source.live_migration(inst, 'lm-dst')
    assert source.get_info(inst).state == power_state.SHUTDOWN


@pytest.mark.parametrize('document', [
    None, {}, 'text',
    {'format': 99, 'backend': 'FakeDriver', 'dest': 'lm-dst'},
    {'format': 1, 'backend': 'DockerDriver', 'dest': 'lm-dst'},
    {'format': 1, 'backend': 'FakeDriver'},
], ids=['none', 'empty', 'text', 'format', 'backend', 'no-dest'])
def test_foreign_migrate_data_is_refused(hosts, document):
    source, dest = hosts('lm-src'), hosts('lm-dst')
    inst = _boot(source)
    with pytest.raises(exception.InvalidInput):
        source.check_can_live_migrate_source(inst, document)
    with pytest.raises(exception.InvalidInput):
        dest.pre_live_migration(inst, document)
    assert _memory_used(dest) == 0


def test_pre_live_migration_refuses_another_destination(hosts):
    source, dest, other = hosts('lm-src'), hosts('lm-dst'), hosts('lm-3')
    inst = _boot(source)
    migrate_data = source.check_can_live_migrate_source(
        inst, dest.check_can_live_migrate_destination(inst))
    with pytest.raises(exception.InvalidInput):
        other.pre_live_migration(inst, migrate_data)
    with pytest.raises(exception.InvalidInput):
        source.live_migration(inst, 'lm-3', migrate_data)
    with pytest.raises(exception.InvalidInput):
        source.live_migration(inst, 'lm-src')


def test_post_at_destination_of_a_guest_that_never_came(hosts):
    source, dest = hosts('lm-src'), hosts('lm-dst')
    inst = _boot(source)
    _prepare(source, dest, inst)
    with pytest.raises(exception.InstanceNotFound):
        dest.post_live_migration_at_destination(inst)
    # The reservation ended all the same.
    assert _memory_used(dest) == 0


def test_operations_table_calls_it(hosts):
    source, dest = hosts('lm-src'), hosts('lm-dst')
    inst = _boot(source)
    migrate_data = _prepare(source, dest, inst)
    driver.OPERATIONS['live_migrate'].call(
        source, inst, dest='lm-dst', migrate_data=migrate_data)
    dest.post_live_migration_at_destination(inst)
    assert dest.get_info(inst).state == power_state.RUNNING


class NoLiveMigration(fake_driver.FakeDriver):
    capabilities = {'supports_live_migrate': False}


def test_not_supported_before_anything(hosts):
    source = hosts('lm-src', cls=NoLiveMigration)
    dest = hosts('lm-dst', cls=NoLiveMigration)
    inst = _boot(source)
    for call in (lambda: dest.check_can_live_migrate_destination(inst),
                 lambda: dest.cleanup_live_migration_destination_check({}),
                 lambda: source.check_can_live_migrate_source(inst, {}),
                 lambda: dest.pre_live_migration(inst, {}),
                 lambda: source.live_migration(inst, 'lm-dst'),
                 lambda: source.post_live_migration(inst),
                 lambda: dest.post_live_migration_at_destination(inst),
                 lambda: source.rollback_live_migration_at_source(inst),
                 lambda: dest.rollback_live_migration_at_destination(inst)):
        with pytest.raises(exception.NotSupported):
            call()
    assert source.get_info(inst).state == power_state.RUNNING


@pytest.mark.parametrize('backend', ['docker', 'xenapi', 'libvirt'])
def test_other_backends_declare_no_live_migration(backend):
    from compute_driver import loader
    cls = loader.load_driver_class(backend)
    assert cls.capabilities['supports_live_migrate'] is False
