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

"""The Nova adapter with real Nova objects, on the fake backend.

Nova's own generic suite (``test_virt_drivers.py`` here) checks the
adapter the way Nova's tests check in-tree drivers; these tests check
what that suite does not look at: how Nova's objects are converted, which
Nova exception each library error becomes, the inventory placement gets,
the events Nova's compute manager receives and the images spawn picks.
"""

import threading
from unittest import mock

from nova.compute import manager as compute_manager
from nova.compute import power_state as nova_power_state
from nova.compute import provider_tree
from nova import conf as nova_conf
from nova import context as nova_context
from nova import exception as nova_exception
from nova.network import model as network_model
from nova import objects as nova_objects
from nova.virt import event as nova_event
from nova.virt import fake as nova_fake
from nova.virt import hardware
import os_resource_classes as orc
import pytest

from compute_driver import driver as contract
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver.nova import convert
from compute_driver.nova import driver as adapter
from compute_driver.nova import node
from compute_driver import power_state

nova_objects.register_all()
CONF = nova_conf.CONF

IMAGE = 'cirros-0.6.3-x86_64-disk'
GLANCE_ID = '9d2d8e7a-63f0-4b8c-9a5b-0c0d4a8a1f11'
NODE_UUID = '4f6d1c9a-3a55-4d0b-8e0f-1f2e3d4c5b6a'


@pytest.fixture
def make_adapter(flags, tmp_path):
    """Build an initialised adapter on the fake backend.

    Keyword arguments are lines of the library's configuration file, by
    group: ``make_adapter(fake={'vcpus': 8})``.
    """
    built = []

    def make(backend='fake', image_map=None, image_service='backend',
             host='nova-adapter-test', **groups):
        config = tmp_path / ('compute-driver-%d.conf' % len(built))
        lines = []
        for group, values in groups.items():
            lines.append('[%s]' % group)
            lines.extend('%s = %s' % kv for kv in values.items())
        config.write_text('\n'.join(lines) + '\n')
        flags(backend=backend, config_file=str(config),
              image_map=image_map or {}, image_service=image_service,
              group='compute_driver_adapter')
        # Where Nova keeps the node identity file the adapter writes.
        flags(host=host, state_path=str(tmp_path))
        driver = adapter.ComputeDriverAdapter(nova_fake.FakeVirtAPI())
        driver.init_host(CONF.host)
        built.append(driver)
        return driver

    yield make
    for driver in built:
        driver.cleanup_host(CONF.host)


@pytest.fixture
def ctxt():
    return nova_context.get_admin_context()


def nova_flavor(**fields):
    values = dict(name='m1.small', vcpus=1, memory_mb=512, root_gb=1,
                  ephemeral_gb=0, swap=0, extra_specs={})
    values.update(fields)
    return nova_objects.Flavor(**values)


def nova_instance(number=1, image_ref=GLANCE_ID, **fields):
    values = dict(
        id=number, uuid='00000000-0000-4000-8000-%012d' % number,
        image_ref=image_ref, metadata={'role': 'web'}, flavor=nova_flavor(),
        host='nova-adapter-test')
    values.update(fields)
    return nova_objects.Instance(**values)


def image_meta(**fields):
    values = dict(id=GLANCE_ID, name='cirros', disk_format='qcow2',
                  container_format='bare', min_ram=0, min_disk=0)
    values.update(fields)
    return nova_objects.ImageMeta.from_dict(values)


# Neutron's port ids are uuids; the contract refuses anything else.
PORT_ID = '4f1b2a9e-6d0c-4c57-9a43-2c7e8f5d1b60'


def network_info():
    subnet = network_model.Subnet(
        cidr='10.0.0.0/24', ips=[network_model.FixedIP(address='10.0.0.5')])
    network = network_model.Network(
        id='net-1', bridge='br-int', label='private', subnets=[subnet],
        meta={'mtu': 1450})
    return network_model.NetworkInfo([network_model.VIF(
        id=PORT_ID, address='fa:16:3e:00:00:01', type='ovs',
        devname='tap' + PORT_ID[:11], network=network)])


def spawn(driver, ctxt, instance=None, meta=None, **kwargs):
    instance = instance or nova_instance()
    driver.spawn(ctxt, instance, meta or image_meta(), [], 'pw', {},
                 network_info=network_info(), **kwargs)
    return instance


# -- conversion ---------------------------------------------------------------

def test_instance_and_flavor_are_converted():
    flavor = nova_flavor(name='c1.big', vcpus=4, memory_mb=4096, root_gb=20,
                         ephemeral_gb=5, swap=256,
                         extra_specs={'hw:cpu_policy': 'dedicated'})
    ours = convert.instance(nova_instance(number=42, flavor=flavor),
                            image_ref=IMAGE)
    assert ours.uuid == '00000000-0000-4000-8000-000000000042'
    # Nova's name comes from [DEFAULT] instance_name_template.
    assert ours.name == 'instance-0000002a'
    assert ours.image_ref == IMAGE
    assert ours.metadata == {'role': 'web'}
    assert (ours.flavor.name, ours.flavor.vcpus, ours.flavor.memory_mb,
            ours.flavor.root_gb, ours.flavor.ephemeral_gb,
            ours.flavor.swap) == ('c1.big', 4, 4096, 20, 5, 256)
    assert ours.flavor.extra_specs == {'hw:cpu_policy': 'dedicated'}


def test_instance_without_image_gets_a_stand_in_reference():
    ours = convert.instance(nova_instance(image_ref=''))
    assert ours.image_ref == convert.NO_IMAGE


def test_instance_name_template_the_backends_cannot_store(flags):
    flags(instance_name_template='vm %d')
    with pytest.raises(exception.InvalidInstanceName):
        convert.instance(nova_instance())


def test_image_candidates_order():
    meta = image_meta()
    assert convert.image_candidates(meta, {}) == [GLANCE_ID, 'cirros']
    assert convert.image_candidates(meta, {'cirros': IMAGE}) == [IMAGE]
    assert convert.image_candidates(
        meta, {GLANCE_ID: 'by-id', 'cirros': 'by-name'}) == ['by-id']
    # A Glance name no backend can store is no candidate.
    assert convert.image_candidates(image_meta(name='my image'), {}) == [
        GLANCE_ID]


def test_network_info_is_plain_data():
    assert convert.network_info(network_info()) == [{
        'id': PORT_ID, 'address': 'fa:16:3e:00:00:01', 'type': 'ovs',
        'devname': 'tap' + PORT_ID[:11], 'network_id': 'net-1',
        'bridge': 'br-int',
        'label': 'private', 'mtu': 1450,
        'ips': [{'address': '10.0.0.5', 'cidr': '10.0.0.0/24'}]}]
    assert convert.network_info(None) == []


# -- errors -------------------------------------------------------------------

UUID = '00000000-0000-4000-8000-000000000001'


@pytest.mark.parametrize('error,expected', [
    (exception.InstanceNotFound(instance=UUID),
     nova_exception.InstanceNotFound),
    (exception.InstanceExists(instance='vm1'),
     nova_exception.InstanceExists),
    (exception.ImageNotFound(image='x', available='y'),
     nova_exception.ImageNotFound),
    (exception.FlavorNotFound(flavor='x', available='y'),
     nova_exception.FlavorNotFound),
    (exception.InvalidPowerState(operation='pause', instance='vm1',
                                 current='shutdown', expected='running'),
     nova_exception.InstanceInvalidState),
    (exception.InsufficientResources(resource='memory', host='h',
                                     requested=2, free=1),
     nova_exception.ComputeResourcesUnavailable),
    (exception.HypervisorUnavailable(host='h', reason='down'),
     nova_exception.HypervisorUnavailable),
    (exception.HypervisorVersionTooOld(component='libvirt', found='1.2.8',
                                       virt_type='xen', minimum='1.2.9'),
     nova_exception.InvalidConfiguration),
    (exception.InvalidConfiguration(reason='bad'),
     nova_exception.InvalidConfiguration),
    (exception.DriverNotFound(name='x', available='fake'),
     nova_exception.InvalidConfiguration),
    (exception.InvalidInput(reason='bad'), nova_exception.InvalidInput),
    (exception.InvalidInstanceName(name='a b', reason='bad'),
     nova_exception.InvalidInput),
    (exception.BackendError(operation='spawn', instance='vm1',
                            reason='boom'),
     nova_exception.InternalError),
    (exception.NotSupported(driver='docker', operation='suspend'),
     NotImplementedError),
])
def test_errors_become_nova_errors(error, expected):
    with pytest.raises(expected) as raised:
        with convert.nova_errors(UUID):
            raise error
    assert raised.value.__cause__ is error
    if expected is not nova_exception.InstanceNotFound:
        # Nova shows the message to users: keep the library's words.
        assert str(error) in str(raised.value)


def test_power_state_error_names_the_instance_uuid():
    with pytest.raises(nova_exception.InstanceInvalidState) as raised:
        with convert.nova_errors(UUID):
            raise exception.InvalidPowerState(
                operation='unpause', instance='vm1', current='shutdown',
                expected='paused')
    assert raised.value.kwargs['instance_uuid'] == UUID
    assert raised.value.kwargs['state'] == 'shutdown'


# -- loading and configuration ------------------------------------------------

def test_nova_compute_driver_option_is_left_alone(flags):
    # A group named like Nova's [DEFAULT] compute_driver option would hide
    # it from load_compute_driver: CONF.compute_driver must stay a string.
    flags(compute_driver='fake.FakeDriver')
    assert CONF.compute_driver == 'fake.FakeDriver'


def test_backend_option_is_required(flags):
    flags(backend=None, group='compute_driver_adapter')
    with pytest.raises(nova_exception.InvalidConfiguration,
                       match='backend must name'):
        adapter.ComputeDriverAdapter(nova_fake.FakeVirtAPI())


def test_unknown_backend(flags):
    flags(backend='amiga', group='compute_driver_adapter')
    with pytest.raises(nova_exception.InvalidConfiguration,
                       match="'amiga' is not installed"):
        adapter.ComputeDriverAdapter(nova_fake.FakeVirtAPI())


def test_missing_config_file(flags, tmp_path):
    flags(backend='fake', config_file=str(tmp_path / 'missing.conf'),
          group='compute_driver_adapter')
    with pytest.raises(nova_exception.InvalidConfiguration):
        adapter.ComputeDriverAdapter(nova_fake.FakeVirtAPI())


def test_bad_backend_option_value(make_adapter):
    with pytest.raises(nova_exception.InvalidConfiguration,
                       match='vcpus'):
        make_adapter(fake={'vcpus': '-1'})


def test_nova_host_wins_over_the_library_file(make_adapter):
    driver = make_adapter(DEFAULT={'host': 'somewhere-else'})
    assert driver.conf.host == 'nova-adapter-test'
    assert driver.get_available_nodes() == ['nova-adapter-test']


def test_backend_claims_follow_nova_claim_policy(flags, tmp_path):
    # Every backend's claims use Nova's ratios and reservations, not the
    # library's defaults. Building it does not connect.
    flags(cpu_allocation_ratio=3.0, ram_allocation_ratio=1.5,
          disk_allocation_ratio=None, initial_disk_allocation_ratio=2.0,
          reserved_host_cpus=1, reserved_host_memory_mb=256,
          reserved_host_disk_mb=2048)
    flags(backend='docker', config_file=None, group='compute_driver_adapter')
    driver = adapter.ComputeDriverAdapter(nova_fake.FakeVirtAPI())
    assert driver.backend.allocation_ratio('vcpus') == 3.0
    assert driver.backend.allocation_ratio('memory_mb') == 1.5
    assert driver.backend.allocation_ratio('disk_gb') == 2.0
    assert (driver.conf.reserved_host_cpus,
            driver.conf.reserved_host_memory_mb,
            driver.conf.reserved_host_disk_mb) == (1, 256, 2048)


def test_image_type_capabilities(make_adapter):
    driver = make_adapter()
    assert driver.capabilities['supports_image_type_qcow2'] is True
    assert driver.capabilities['supports_image_type_vhd'] is False
    # Class-level capabilities stay Nova's defaults for other instances.
    assert adapter.ComputeDriverAdapter.capabilities[
        'supports_image_type_qcow2'] is False


def test_image_types_and_vm_mode_come_from_the_backend_class(
        make_adapter, monkeypatch):
    # What a third-party backend declares, whatever its name.
    monkeypatch.setattr(fake_driver.FakeDriver, 'image_types', ('vhd',))
    monkeypatch.setattr(fake_driver.FakeDriver, 'runs_containers', True)
    driver = make_adapter()
    assert driver.capabilities['supports_image_type_vhd'] is True
    assert driver.capabilities['supports_image_type_qcow2'] is False
    data = driver.get_available_resource('nova-adapter-test')
    assert data['supported_instances'] == [['x86_64', 'fake', 'exe']]


# -- instances ----------------------------------------------------------------

def test_spawn_by_image_map_and_backend_record(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    record = driver.backend.find_instance(instance.uuid)
    assert record.instance == convert.instance(instance, image_ref=IMAGE)
    assert record.info.state == power_state.RUNNING
    assert driver.list_instances() == [instance.name]
    assert driver.list_instance_uuids() == [instance.uuid]
    info = driver.get_info(instance)
    assert isinstance(info, hardware.InstanceInfo)
    assert info.state == nova_power_state.RUNNING


def test_spawn_finds_the_image_under_its_glance_name(make_adapter, ctxt):
    driver = make_adapter()
    instance = spawn(driver, ctxt, meta=image_meta(name=IMAGE))
    assert driver.backend.find_instance(instance.uuid).instance.image_ref \
        == IMAGE


def test_spawn_finds_the_image_under_its_glance_id(make_adapter, ctxt):
    driver = make_adapter(fake={'images': GLANCE_ID})
    instance = spawn(driver, ctxt, meta=image_meta(name='has a space'))
    assert driver.backend.find_instance(instance.uuid).instance.image_ref \
        == GLANCE_ID


def test_spawn_unknown_image_leaves_nothing(make_adapter, ctxt):
    driver = make_adapter()
    with pytest.raises(nova_exception.ImageNotFound) as raised:
        spawn(driver, ctxt)
    assert GLANCE_ID in str(raised.value)
    assert 'cirros' in str(raised.value)
    assert driver.list_instance_uuids() == []


def test_spawn_powered_off(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt, power_on=False)
    assert driver.get_info(instance).state == nova_power_state.SHUTDOWN


def test_spawn_refuses_bad_volume_connection_info(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    bdi = {'block_device_mapping': [{'mount_device': '/dev/vda',
                                     'connection_info': {}}]}
    with pytest.raises(nova_exception.NovaException,
                       match='Invalid connection info'):
        spawn(driver, ctxt, block_device_info=bdi)
    assert driver.list_instance_uuids() == []


def test_container_backend_gets_the_path_nova_prefixed(make_adapter, ctxt,
                                                       monkeypatch):
    # Nova makes /dev//data of a mapping's /data; a container mounts the
    # volume at the path given, and at Nova's own names as they are.
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    monkeypatch.setattr(driver.backend, 'runs_containers', True)
    seen = []
    monkeypatch.setattr(driver.backend, 'spawn', lambda instance, **kwargs:
                        seen.append(kwargs['block_device_info']))
    info = {'driver_volume_type': 'local',
            'data': {'device_path': '/dev/null', 'volume_id': 'vol-1'}}
    bdm = {'mount_device': '/dev//data', 'connection_info': info,
           'boot_index': None}
    bdi = {'root_device_name': '/dev/sda', 'block_device_mapping': [
        bdm, dict(bdm, mount_device='/dev/sdb')]}
    spawn(driver, ctxt, block_device_info=bdi)
    [given] = seen
    assert [m['mount_device'] for m in given['block_device_mapping']] == [
        '/data', '/dev/sdb']
    assert given['root_device_name'] == '/dev/sda'
    # Nova's own mappings are left as they were.
    assert bdm['mount_device'] == '/dev//data'


def test_vm_backend_gets_novas_device_names(make_adapter, ctxt, monkeypatch):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    seen = []
    monkeypatch.setattr(driver.backend, 'spawn', lambda instance, **kwargs:
                        seen.append(kwargs['block_device_info']))
    bdi = {'block_device_mapping': [{
        'mount_device': '/dev/vdb', 'boot_index': None, 'connection_info': {
            'driver_volume_type': 'local',
            'data': {'device_path': '/dev/null', 'volume_id': 'vol-1'}}}]}
    spawn(driver, ctxt, block_device_info=bdi)
    assert seen == [bdi]


def test_spawn_twice_is_instance_exists(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    with pytest.raises(nova_exception.InstanceExists):
        spawn(driver, ctxt, instance=instance)


def test_spawn_beyond_capacity_asks_nova_to_reschedule(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE},
                          fake={'memory_mb': 256})
    with pytest.raises(nova_exception.ComputeResourcesUnavailable):
        spawn(driver, ctxt)
    assert driver.list_instance_uuids() == []


def test_power_operations_and_their_results(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    steps = [
        (lambda: driver.pause(instance), nova_power_state.PAUSED),
        (lambda: driver.unpause(instance), nova_power_state.RUNNING),
        (lambda: driver.suspend(ctxt, instance), nova_power_state.SUSPENDED),
        (lambda: driver.resume(ctxt, instance, None),
         nova_power_state.RUNNING),
        (lambda: driver.power_off(instance, timeout=0),
         nova_power_state.SHUTDOWN),
        (lambda: driver.power_on(ctxt, instance, None),
         nova_power_state.RUNNING),
        (lambda: driver.reboot(ctxt, instance, None, 'SOFT'),
         nova_power_state.RUNNING),
        (lambda: driver.reboot(ctxt, instance, None, 'HARD'),
         nova_power_state.RUNNING),
    ]
    for step, expected in steps:
        step()
        assert driver.get_info(instance).state == expected


@pytest.mark.parametrize('operation', ['power_on', 'unpause', 'resume',
                                       'power_off', 'pause', 'suspend'])
def test_power_operation_whose_result_holds_is_done(make_adapter, ctxt,
                                                    operation):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    target = contract.TRANSITIONS[operation].result
    {power_state.SHUTDOWN: lambda: driver.power_off(instance),
     power_state.PAUSED: lambda: driver.pause(instance),
     power_state.SUSPENDED: lambda: driver.suspend(ctxt, instance),
     power_state.RUNNING: lambda: None}[target]()
    calls = {'power_on': lambda: driver.power_on(ctxt, instance, None),
             'unpause': lambda: driver.unpause(instance),
             'resume': lambda: driver.resume(ctxt, instance, None),
             'power_off': lambda: driver.power_off(instance),
             'pause': lambda: driver.pause(instance),
             'suspend': lambda: driver.suspend(ctxt, instance)}
    calls[operation]()
    assert driver.get_info(instance).state == target


def test_power_operation_from_a_wrong_state(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    driver.power_off(instance)
    with pytest.raises(nova_exception.InstanceInvalidState) as raised:
        driver.unpause(instance)
    assert raised.value.kwargs['instance_uuid'] == instance.uuid
    with pytest.raises(nova_exception.InstanceInvalidState):
        driver.reboot(ctxt, instance, None, 'SOFT')
    assert driver.get_info(instance).state == nova_power_state.SHUTDOWN


def test_bad_reboot_type(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    with pytest.raises(nova_exception.InvalidInput):
        driver.reboot(ctxt, instance, None, 'GENTLE')


def test_unknown_instance(make_adapter, ctxt):
    driver = make_adapter()
    instance = nova_instance(number=7)
    with pytest.raises(nova_exception.InstanceNotFound):
        driver.get_info(instance)
    with pytest.raises(nova_exception.InstanceNotFound):
        driver.power_off(instance)
    with pytest.raises(nova_exception.InstanceNotRunning):
        driver.snapshot(ctxt, instance, GLANCE_ID, lambda **kw: None)
    assert driver.instance_exists(instance) is False
    # Deleting what is gone succeeds, as Nova's delete expects.
    driver.destroy(ctxt, instance, network_info())


def test_resume_state_on_host_boot_starts_a_stopped_instance(
        make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    driver.power_off(instance)
    driver.resume_state_on_host_boot(ctxt, instance, None, None)
    assert driver.get_info(instance).state == nova_power_state.RUNNING


def test_resume_state_on_host_boot_leaves_a_running_instance_alone(
        make_adapter, ctxt):
    # A hard reboot is allowed from RUNNING; Nova needs none at host boot.
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    with mock.patch.object(driver.backend, '_reboot',
                           autospec=True) as reboot:
        driver.resume_state_on_host_boot(ctxt, instance, None, None)
    reboot.assert_not_called()
    assert driver.get_info(instance).state == nova_power_state.RUNNING


def test_snapshot_then_spawn_from_it(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    states = []
    snapshot_id = '5e0b1f43-8d6c-4a77-9f7e-2b1a0c9d8e7f'
    driver.snapshot(ctxt, instance, snapshot_id,
                    lambda task_state, expected_state=None:
                    states.append(task_state))
    assert states == ['image_pending_upload', 'image_uploading']
    # Nova boots the snapshot by its Glance id: found on the backend.
    second = spawn(driver, ctxt, instance=nova_instance(number=2),
                   meta=image_meta(id=snapshot_id, name='snap of vm1'))
    assert driver.backend.find_instance(second.uuid).instance.image_ref \
        == snapshot_id


def test_destroy_and_cleanup(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    first = spawn(driver, ctxt)
    second = spawn(driver, ctxt, instance=nova_instance(number=2))
    driver.destroy(ctxt, first, network_info())
    driver.cleanup(ctxt, second, network_info())
    assert driver.list_instance_uuids() == []


def test_console_and_diagnostics(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    assert 'Booting %s' % instance.name in driver.get_console_output(
        ctxt, instance)
    assert driver.get_diagnostics(instance)['state'] == 'running'
    assert 'up' in driver.get_host_uptime()


def test_calls_with_a_database_row_look_the_instance_up(make_adapter, ctxt):
    # Some callers hand over an instance without its flavor; the backend's
    # own record is used then.
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = spawn(driver, ctxt)
    bare = nova_objects.Instance(id=instance.id, uuid=instance.uuid)
    driver.pause(bare)
    assert driver.get_info(bare).state == nova_power_state.PAUSED


# -- host ---------------------------------------------------------------------

def test_available_resource(make_adapter, ctxt, flags):
    flags(my_ip='192.0.2.10')
    driver = make_adapter(image_map={GLANCE_ID: IMAGE},
                          fake={'vcpus': 8, 'memory_mb': 4096,
                                'disk_gb': 100})
    spawn(driver, ctxt)
    data = driver.get_available_resource('nova-adapter-test')
    assert (data['vcpus'], data['memory_mb'], data['local_gb']) == (
        8, 4096, 100)
    assert (data['vcpus_used'], data['memory_mb_used'],
            data['local_gb_used']) == (1, 512, 1)
    assert data['hypervisor_hostname'] == 'nova-adapter-test'
    # The architecture is the backend's (the fake host's cpu_info).
    assert data['supported_instances'] == [['x86_64', 'fake', 'hvm']]
    # The compute node record accepts the dictionary as it is.
    node = nova_objects.ComputeNode()
    node.update_from_virt_driver(data)
    assert node.supported_hv_specs[0].hv_type == 'fake'
    assert driver.get_host_ip_addr() == '192.0.2.10'


def _tree():
    tree = provider_tree.ProviderTree()
    tree.new_root('nova-adapter-test', NODE_UUID)
    return tree


def test_provider_tree_inventory(make_adapter, flags):
    flags(cpu_allocation_ratio=4.0, ram_allocation_ratio=1.5,
          disk_allocation_ratio=1.25, reserved_host_cpus=2,
          reserved_host_memory_mb=1024, reserved_host_disk_mb=1500)
    driver = make_adapter(fake={'vcpus': 16, 'memory_mb': 32768,
                                'disk_gb': 200})
    tree = _tree()
    driver.update_provider_tree(tree, 'nova-adapter-test')
    inventory = tree.data('nova-adapter-test').inventory
    assert inventory == {
        orc.VCPU: {'total': 16, 'min_unit': 1, 'max_unit': 16,
                   'step_size': 1, 'allocation_ratio': 4.0, 'reserved': 2},
        orc.MEMORY_MB: {'total': 32768, 'min_unit': 1, 'max_unit': 32768,
                        'step_size': 1, 'allocation_ratio': 1.5,
                        'reserved': 1024},
        # 1500 MB reserved is rounded up to 2 GB, as Nova does.
        orc.DISK_GB: {'total': 200, 'min_unit': 1, 'max_unit': 200,
                      'step_size': 1, 'allocation_ratio': 1.25,
                      'reserved': 2},
    }


def test_provider_tree_ratios_unset(make_adapter, flags):
    flags(cpu_allocation_ratio=None, ram_allocation_ratio=None,
          disk_allocation_ratio=None, initial_cpu_allocation_ratio=8.0,
          initial_ram_allocation_ratio=1.0,
          initial_disk_allocation_ratio=1.0)
    driver = make_adapter()
    tree = _tree()
    # A new provider gets the initial ratios...
    driver.update_provider_tree(tree, 'nova-adapter-test')
    assert tree.data('nova-adapter-test').inventory[orc.VCPU][
        'allocation_ratio'] == 8.0
    # ...and one an operator changed in placement keeps its own.
    inventory = tree.data('nova-adapter-test').inventory
    inventory[orc.VCPU]['allocation_ratio'] = 3.0
    tree.update_inventory('nova-adapter-test', inventory)
    driver.update_provider_tree(tree, 'nova-adapter-test')
    assert tree.data('nova-adapter-test').inventory[orc.VCPU][
        'allocation_ratio'] == 3.0


def test_provider_tree_skips_unknown_disk(make_adapter):
    driver = make_adapter(fake={'disk_gb': 0})
    tree = _tree()
    driver.update_provider_tree(tree, 'nova-adapter-test')
    assert set(tree.data('nova-adapter-test').inventory) == {
        orc.VCPU, orc.MEMORY_MB}


def test_fake_claims_follow_novas_allocation_ratios(make_adapter, ctxt,
                                                    flags):
    # What placement grants with Nova's ratios, the backend admits.
    flags(cpu_allocation_ratio=2.0)
    driver = make_adapter(image_map={GLANCE_ID: IMAGE}, fake={'vcpus': 1})
    assert driver.backend.allocation_ratio('vcpus') == 2.0
    spawn(driver, ctxt, nova_instance(1))
    spawn(driver, ctxt, nova_instance(2))
    with pytest.raises(nova_exception.ComputeResourcesUnavailable,
                       match='1 requested, 0 free of 2'):
        spawn(driver, ctxt, nova_instance(3))


# -- node identity ------------------------------------------------------------

def test_node_uuid_is_derived_from_the_backend_host(make_adapter, tmp_path):
    driver = make_adapter()
    expected = node.derived_uuid(driver.backend, 'nova-adapter-test')
    assert driver.get_nodenames_by_uuid() == {expected: 'nova-adapter-test'}
    assert driver.get_available_resource(
        'nova-adapter-test')['uuid'] == expected
    # Written where Nova's compute manager looks for it on its next start.
    assert (tmp_path / 'compute_id').read_text() == expected
    # Another host, or the same host on another backend, is another node.
    assert expected != node.derived_uuid(driver.backend, 'other-host')
    assert node.host_identity(driver.backend, 'h') == 'fake/h'


def test_node_uuid_follows_the_backends_host_identity(make_adapter):
    driver = make_adapter(fake={'host_identity': 'fake-host-1'})
    assert node.host_identity(driver.backend, 'h') == 'fake/h/fake-host-1'
    uuid = node.derived_uuid(driver.backend, 'nova-adapter-test')
    assert driver.get_nodenames_by_uuid() == {uuid: 'nova-adapter-test'}
    # Another backend host under the same name is another node.
    with mock.patch.object(driver.backend, 'get_host_identity',
                           autospec=True, return_value='fake-host-2'):
        assert uuid != node.derived_uuid(driver.backend, 'nova-adapter-test')


def test_node_identity_unreachable_is_hypervisor_unavailable(make_adapter):
    driver = make_adapter()
    with mock.patch.object(
            driver.backend, 'get_host_identity', autospec=True,
            side_effect=exception.HypervisorUnavailable(
                host='h', reason='gone')):
        with pytest.raises(nova_exception.HypervisorUnavailable,
                           match='did not say its host identity'):
            node.host_identity(driver.backend, 'h')


def test_existing_node_identity_file_wins(make_adapter, tmp_path):
    (tmp_path / 'compute_id').write_text(NODE_UUID + '\n')
    driver = make_adapter()
    assert driver.get_nodenames_by_uuid() == {NODE_UUID: 'nova-adapter-test'}


# -- events -------------------------------------------------------------------

def test_lifecycle_events_reach_nova(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    received = []
    done = threading.Event()

    def handler(event):
        received.append(event)
        if len(received) >= 4:
            done.set()

    driver.register_event_listener(handler)
    instance = spawn(driver, ctxt)
    driver.pause(instance)
    driver.unpause(instance)
    driver.power_off(instance)
    assert done.wait(10)
    assert all(isinstance(e, nova_event.LifecycleEvent) for e in received)
    assert {e.get_instance_uuid() for e in received} == {instance.uuid}
    assert [e.get_transition() for e in received] == [
        nova_event.EVENT_LIFECYCLE_STARTED,
        nova_event.EVENT_LIFECYCLE_PAUSED,
        nova_event.EVENT_LIFECYCLE_RESUMED,
        nova_event.EVENT_LIFECYCLE_STOPPED]


def test_events_stop_after_cleanup_host(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    received = []
    driver.register_event_listener(received.append)
    driver.cleanup_host(CONF.host)
    spawn(driver, ctxt)
    assert received == []


# -- capabilities -------------------------------------------------------------

def test_unsupported_methods_follow_capabilities(make_adapter):
    driver = make_adapter()
    assert driver.unsupported_methods() == []
    driver.backend.capabilities = dict(driver.backend.capabilities,
                                       supports_suspend=False,
                                       supports_resume=False)
    assert driver.unsupported_methods() == ['resume', 'suspend']
    with pytest.raises(NotImplementedError,
                       match='fake backend does not support suspend'):
        driver.suspend(None, nova_instance())


def test_a_backend_without_optional_operations(make_adapter):
    driver = make_adapter()
    driver.backend.capabilities = contract.default_capabilities()
    assert driver.unsupported_methods() == [
        'attach_interface', 'attach_volume', 'confirm_migration',
        'detach_interface', 'detach_volume', 'extend_volume',
        'finish_migration', 'finish_revert_migration', 'get_console_output',
        'get_diagnostics', 'get_host_uptime', 'get_serial_console',
        'get_vnc_console', 'live_migration', 'live_migration_force_complete',
        'migrate_disk_and_power_off', 'pause', 'plug_vifs',
        'power_off', 'power_on', 'reboot', 'resume',
        'resume_state_on_host_boot', 'snapshot', 'suspend', 'swap_volume',
        'unpause', 'unplug_vifs']
    # Refused before the instance is looked up.
    with pytest.raises(NotImplementedError, match='diagnostics'):
        driver.get_diagnostics(nova_instance())
    # Nova's defaults serve these without the backend's operation.
    assert driver.instance_exists(nova_instance()) is False
    assert driver.get_host_ip_addr() == CONF.my_ip
    driver.cleanup_host(CONF.host)


def test_unknown_backend_option(make_adapter):
    with pytest.raises(nova_exception.InvalidConfiguration,
                       match=r'unknown option conection_uri in section '
                             r'\[libvirt\] of .*; did you mean '
                             r'connection_uri\?'):
        make_adapter(libvirt={'conection_uri': 'qemu:///system'})


# -- resize and cold migration ----------------------------------------------


def test_resize_on_this_host_then_confirm(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = nova_instance()
    spawn(driver, ctxt, instance)
    bigger = nova_flavor(name='m1.bigger', memory_mb=1024, root_gb=2)
    # Without a migration context (a caller outside the compute manager)
    # the destination is taken as the node name.
    disk_info = driver.migrate_disk_and_power_off(
        ctxt, instance, CONF.host, bigger, network_info())
    assert driver.get_info(instance).state == power_state.SHUTDOWN
    instance.flavor = bigger
    driver.finish_migration(ctxt, None, instance, disk_info, network_info(),
                            image_meta(), True, {}, power_on=True)
    record = driver.backend.find_instance(instance.uuid)
    assert record.instance.flavor.name == 'm1.bigger'
    assert record.info.state == power_state.RUNNING
    assert driver.backend.get_available_resource(None).memory_mb_used == (
        512 + 1024)
    driver.confirm_migration(ctxt, None, instance, network_info())
    assert driver.backend.get_available_resource(None).memory_mb_used == 1024


def test_resize_then_revert_as_nova_does(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = nova_instance()
    spawn(driver, ctxt, instance)
    disk_info = driver.migrate_disk_and_power_off(
        ctxt, instance, CONF.host, nova_flavor(name='m1.bigger', vcpus=2),
        network_info())
    driver.finish_migration(ctxt, None, instance, disk_info, network_info(),
                            image_meta(), False, {}, power_on=False)
    driver.destroy(ctxt, instance, network_info())
    driver.finish_revert_migration(ctxt, instance, network_info(), None,
                                   power_on=True)
    record = driver.backend.find_instance(instance.uuid)
    assert (record.instance.flavor.name, record.info.state) == (
        'm1.small', power_state.RUNNING)


def test_failed_move_is_rolled_back_for_nova(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = nova_instance(flavor=nova_flavor(root_gb=2))
    spawn(driver, ctxt, instance)
    for flavor, inner in (
            (nova_flavor(name='m1.shrunk', root_gb=1),
             nova_exception.InvalidInput),
            (nova_flavor(name='m1.huge', root_gb=2, memory_mb=10 ** 7),
             nova_exception.ComputeResourcesUnavailable)):
        with pytest.raises(nova_exception.InstanceFaultRollback) as exc:
            driver.migrate_disk_and_power_off(
                ctxt, instance, CONF.host, flavor, network_info())
        # Nova raises the inner error again once it rolled the server back.
        assert isinstance(exc.value.inner_exception, inner), exc.value
        assert driver.get_info(instance).state == power_state.RUNNING
    # A root_gb of 0 keeps the disk as it is: not a shrink.
    driver.migrate_disk_and_power_off(
        ctxt, instance, CONF.host, nova_flavor(name='m1.image', root_gb=0),
        network_info())
    assert driver.get_info(instance).state == power_state.SHUTDOWN


def test_move_the_backend_cannot_do_is_not_implemented(make_adapter, ctxt):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    instance = nova_instance()
    spawn(driver, ctxt, instance)
    driver.backend.capabilities = dict(driver.backend.capabilities,
                                       supports_cold_migrate=False)
    with pytest.raises(NotImplementedError, match='cold migrate'):
        driver.migrate_disk_and_power_off(ctxt, instance, 'elsewhere',
                                          nova_flavor(), network_info())
    assert driver.get_info(instance).state == power_state.RUNNING


# -- live migration ----------------------------------------------------------

DEST = 'nova-adapter-dest'


def _two_hosts(make_adapter, ctxt):
    source = make_adapter(image_map={GLANCE_ID: IMAGE})
    dest = make_adapter(image_map={GLANCE_ID: IMAGE}, host=DEST)
    instance = nova_instance()
    spawn(source, ctxt, instance)
    return source, dest, instance


def _over_rpc(data):
    # What Nova's services send each other: the object as primitives.
    return nova_objects.LibvirtLiveMigrateData.obj_from_primitive(
        data.obj_to_primitive())


def _checked_and_prepared(source, dest, ctxt, instance):
    """Nova's checks and pre_live_migration, as its managers call them."""
    checked = _over_rpc(dest.check_can_live_migrate_destination(
        ctxt, instance, {}, {}, block_migration=True,
        disk_over_commit=False))
    try:
        migrate_data = _over_rpc(source.check_can_live_migrate_source(
            ctxt, instance, checked))
    finally:
        dest.cleanup_live_migration_destination_check(ctxt, checked)
    assert source.get_instance_disk_info(instance) is None
    return _over_rpc(dest.pre_live_migration(
        ctxt, instance, None, network_info(), None, migrate_data))


def test_live_migration_as_nova_does(make_adapter, ctxt):
    source, dest, instance = _two_hosts(make_adapter, ctxt)
    migrate_data = _checked_and_prepared(source, dest, ctxt, instance)
    assert migrate_data.block_migration is True
    # Nova then asks the destination to roll back after a failure, and
    # the source to clean up after success.
    assert compute_manager.ComputeManager._live_migration_cleanup_flags(
        None, migrate_data) == (True, True)
    post, recover = mock.Mock(), mock.Mock()
    source.live_migration(ctxt, instance, DEST, post, recover, True,
                          migrate_data)
    post.assert_called_once_with(ctxt, instance, DEST, True, migrate_data)
    recover.assert_not_called()
    # What post_method runs on the source, then on the destination.
    source.post_live_migration(ctxt, instance, None, migrate_data)
    source.post_live_migration_at_source(ctxt, instance, network_info())
    source.cleanup(ctxt, instance, network_info(), destroy_disks=True,
                   migrate_data=migrate_data)
    dest.post_live_migration_at_destination(ctxt, instance, network_info(),
                                            True, None)
    assert source.list_instance_uuids() == []
    assert dest.get_info(instance).state == power_state.RUNNING
    assert dest.backend.get_available_resource(None).memory_mb_used == 512
    assert source.backend.get_available_resource(None).memory_mb_used == 0
    assert dest.live_migration_force_complete(instance) is None


def test_failed_live_migration_calls_recover_method(make_adapter, ctxt):
    source, dest, instance = _two_hosts(make_adapter, ctxt)
    migrate_data = _checked_and_prepared(source, dest, ctxt, instance)
    # The destination's backend is gone from under its service.
    dest.backend.cleanup_host(DEST)
    post, recover = mock.Mock(), mock.Mock()
    source.live_migration(ctxt, instance, DEST, post, recover, True,
                          migrate_data)
    recover.assert_called_once_with(ctxt, instance, DEST, migrate_data)
    post.assert_not_called()
    assert source.get_info(instance).state == power_state.RUNNING
    source.rollback_live_migration_at_source(ctxt, instance, migrate_data)
    dest.rollback_live_migration_at_destination(
        ctxt, instance, network_info(), None, destroy_disks=True,
        migrate_data=migrate_data)
    assert dest.backend.get_available_resource(None).memory_mb_used == 0
    assert source.get_info(instance).state == power_state.RUNNING


def test_live_migration_checks_fail_as_nova_pre_checks(make_adapter, ctxt):
    source, dest, instance = _two_hosts(make_adapter, ctxt)
    huge = nova_instance(number=2, flavor=nova_flavor(memory_mb=10 ** 7))
    with pytest.raises(nova_exception.MigrationPreCheckError,
                       match='memory_mb'):
        dest.check_can_live_migrate_destination(ctxt, huge, {}, {})
    checked = dest.check_can_live_migrate_destination(ctxt, instance, {},
                                                      {})
    with pytest.raises(nova_exception.MigrationPreCheckError,
                       match='volumes'):
        source.check_can_live_migrate_source(
            ctxt, instance, checked, {'block_device_mapping': [
                {'connection_info': {}, 'mount_device': '/dev/vdb'}]})
    source.power_off(instance)
    with pytest.raises(nova_exception.MigrationPreCheckError,
                       match='while it is shutdown'):
        source.check_can_live_migrate_source(ctxt, instance, checked)


def test_backend_without_live_migration_refuses_it(make_adapter, ctxt):
    source, dest, instance = _two_hosts(make_adapter, ctxt)
    for driver in (source, dest):
        driver.backend.capabilities = dict(driver.backend.capabilities,
                                           supports_live_migrate=False)
    assert source.unsupported_methods() == [
        'live_migration', 'live_migration_force_complete']
    with pytest.raises(nova_exception.MigrationPreCheckError,
                       match='fake backend cannot live-migrate'):
        dest.check_can_live_migrate_destination(ctxt, instance, {}, {})
    with pytest.raises(nova_exception.MigrationPreCheckError,
                       match='fake backend cannot live-migrate'):
        source.check_can_live_migrate_source(
            ctxt, instance, nova_objects.LibvirtLiveMigrateData())
    post, recover = mock.Mock(), mock.Mock()
    with pytest.raises(NotImplementedError, match='live-migrate'):
        source.live_migration(ctxt, instance, DEST, post, recover)
    with pytest.raises(NotImplementedError, match='live-migrate'):
        source.live_migration_force_complete(instance)
    post.assert_not_called()
    recover.assert_not_called()
    assert source.get_info(instance).state == power_state.RUNNING


def test_console_proxy_target_replaces_only_a_wildcard_listen(flags):
    flags(server_proxyclient_address='192.0.2.7', group='vnc')
    address = adapter.CONF.vnc.server_proxyclient_address
    # Listening everywhere: Nova's proxy must come to this compute's
    # address, as with Nova's own libvirt driver.
    assert adapter._proxy_target('0.0.0.0', address) == '192.0.2.7'
    assert adapter._proxy_target('::', address) == '192.0.2.7'
    # A specific listen address is the only one that answers.
    assert adapter._proxy_target('127.0.0.1', address) == '127.0.0.1'
    assert adapter._proxy_target('198.51.100.4', address) \
        == '198.51.100.4'


def test_image_cache_pass_follows_novas_options(make_adapter, ctxt, flags,
                                                monkeypatch):
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    # Nova's periodic pass calls manage_image_cache only then.
    assert driver.capabilities['has_imagecache'] is True
    calls = []
    monkeypatch.setattr(driver.backend, 'manage_image_cache',
                        lambda **kwargs: calls.append(kwargs) or [])
    flags(remove_unused_base_images=False, group='image_cache')
    driver.manage_image_cache(ctxt, [nova_instance()])
    assert calls == []
    flags(remove_unused_base_images=True,
          remove_unused_original_minimum_age_seconds=600,
          group='image_cache')
    driver.manage_image_cache(ctxt, [nova_instance()])
    # Every instance Nova lists on the storage keeps its image.
    assert calls == [{'max_age': 600, 'image_refs': [GLANCE_ID]}]


# -- device names and volumes at spawn ----------------------------------------

def test_root_device_name_is_the_backends(make_adapter):
    driver = make_adapter()
    # The fake backend names none: Nova's default applies.
    with pytest.raises(NotImplementedError):
        driver.default_root_device_name(nova_instance(), image_meta(), None)
    driver.backend.root_device_name = '/dev/xvda'
    assert driver.default_root_device_name(
        nova_instance(), image_meta(), None) == '/dev/xvda'


def test_boot_from_volume_without_spawn_volumes_is_aborted(make_adapter,
                                                           ctxt):
    # No host of the backend can build it: aborted, not rescheduled
    # (NotImplementedError), even when it takes no volumes at all.
    driver = make_adapter(image_map={GLANCE_ID: IMAGE})
    driver.backend.spawn_volumes = False
    bdi = {'block_device_mapping': [{
        'mount_device': '/dev/vda', 'boot_index': 0,
        'connection_info': {'driver_volume_type': 'local',
                            'data': {'device_path': '/dev/null'}}}]}
    with pytest.raises(nova_exception.BuildAbortException,
                       match='fake backend cannot boot from a volume'):
        spawn(driver, ctxt, block_device_info=bdi)
    assert driver.list_instance_uuids() == []
