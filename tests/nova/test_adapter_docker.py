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

"""The Nova adapter on a real dockerd, with real Nova objects.

Nova's suite (``test_virt_drivers.py``) already runs on docker; these
check what it cannot see: the container Nova's instance becomes, the
events dockerd's own event stream turns into for Nova's compute manager,
and the inventory of a real host.
"""

import threading

from nova.compute import provider_tree
from nova import conf as nova_conf
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects as nova_objects
from nova.virt import event as nova_event
from nova.virt import fake as nova_fake
import os_resource_classes as orc
import pytest

from compute_driver.docker import mapping
from compute_driver.nova import driver as adapter
from compute_driver.nova import node
from tests.functional import docker_env

nova_objects.register_all()
CONF = nova_conf.CONF
GLANCE_ID = '3b7f2a9c-1d4e-4f60-8a2b-9c8d7e6f5a41'


@pytest.fixture
def api():
    return docker_env.raw_client()


@pytest.fixture
def docker_adapter(api, flags, tmp_path):
    config = tmp_path / 'compute-driver.conf'
    config.write_text('[docker]\napi_url = %s\nnetwork_mode = none\n'
                      % docker_env.API_URL)
    flags(host=docker_env.unique_host())
    flags(backend='docker', config_file=str(config),
          image_map={GLANCE_ID: docker_env.IMAGE}, image_service='backend',
          group='compute_driver_adapter')
    driver = adapter.ComputeDriverAdapter(nova_fake.FakeVirtAPI())
    driver.init_host(CONF.host)
    yield driver
    for record in driver.backend.list_instance_records():
        driver.backend.destroy(record.instance)
    driver.cleanup_host(CONF.host)


def _instance(number=1):
    flavor = nova_objects.Flavor(name='m1.nano', vcpus=1, memory_mb=64,
                                 root_gb=1, ephemeral_gb=0, swap=0,
                                 extra_specs={})
    return nova_objects.Instance(
        id=number, uuid='00000000-0000-4000-8000-%012d' % number,
        image_ref=GLANCE_ID, metadata={'role': 'web'}, flavor=flavor)


def _spawn(driver, instance):
    meta = nova_objects.ImageMeta.from_dict(
        {'id': GLANCE_ID, 'name': 'busybox', 'disk_format': 'raw',
         'container_format': 'docker'})
    driver.spawn(nova_context.get_admin_context(), instance, meta, [], None,
                 {})


def test_nova_instance_becomes_a_labelled_limited_container(docker_adapter,
                                                            api):
    instance = _instance()
    _spawn(docker_adapter, instance)
    found = api.containers(all=True,
                           filters={'label': '%s=%s' % (mapping.UUID,
                                                        instance.uuid)})
    assert len(found) == 1
    details = api.inspect_container(found[0]['Id'])
    labels = details['Config']['Labels']
    assert labels[mapping.NAME] == instance.name
    assert labels[mapping.HOST] == CONF.host
    assert labels[mapping.IMAGE] == docker_env.IMAGE
    assert details['HostConfig']['Memory'] == 64 * 1024 * 1024
    assert details['State']['Running'] is True
    docker_adapter.destroy(None, instance, None)
    assert api.containers(all=True, filters={
        'label': '%s=%s' % (mapping.UUID, instance.uuid)}) == []


def test_docker_events_reach_nova(docker_adapter):
    received = []
    paused = threading.Event()

    def handler(event):
        received.append(event)
        if event.get_transition() == nova_event.EVENT_LIFECYCLE_PAUSED:
            paused.set()

    docker_adapter.register_event_listener(handler)
    instance = _instance()
    _spawn(docker_adapter, instance)
    docker_adapter.pause(instance)
    assert paused.wait(30)
    assert all(isinstance(e, nova_event.LifecycleEvent) for e in received)
    assert {e.get_instance_uuid() for e in received} == {instance.uuid}


def test_suspend_is_not_implemented_and_changes_nothing(docker_adapter):
    instance = _instance()
    _spawn(docker_adapter, instance)
    # A container has no display and no serial port for Nova's proxies,
    # cannot leave its dockerd, and its mounts and ports are fixed when it
    # is created.
    assert docker_adapter.unsupported_methods() == [
        'attach_interface', 'attach_volume', 'detach_interface',
        'detach_volume', 'extend_volume', 'get_serial_console',
        'get_vnc_console', 'live_migration', 'live_migration_force_complete',
        'resume', 'suspend', 'swap_volume']
    with pytest.raises(NotImplementedError,
                       match='docker backend does not support suspend'):
        docker_adapter.suspend(None, instance)
    assert docker_adapter.get_info(instance).state == 1


def test_unknown_image_on_docker(docker_adapter):
    instance = _instance()
    meta = nova_objects.ImageMeta.from_dict(
        {'id': '11111111-2222-4333-8444-555555555555',
         'name': 'no-such-image'})
    with pytest.raises(nova_exception.ImageNotFound):
        docker_adapter.spawn(None, instance, meta, [], None, {})
    assert docker_adapter.list_instance_uuids() == []


def test_inventory_of_the_docker_host(docker_adapter, api):
    info = api.info()
    tree = provider_tree.ProviderTree()
    tree.new_root(CONF.host, '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d')
    docker_adapter.update_provider_tree(tree, CONF.host)
    inventory = tree.data(CONF.host).inventory
    assert inventory[orc.VCPU]['total'] == info['NCPU']
    assert inventory[orc.MEMORY_MB]['total'] == info['MemTotal'] // 2 ** 20
    assert inventory[orc.DISK_GB]['total'] > 0


def test_node_is_the_daemon_and_host(docker_adapter, api, tmp_path, flags):
    flags(state_path=str(tmp_path))
    uuid = node.derived_uuid(docker_adapter.backend, CONF.host)
    assert node.host_identity(docker_adapter.backend, CONF.host) == (
        'docker/%s/%s' % (CONF.host, api.info()['ID']))
    assert docker_adapter.get_nodenames_by_uuid() == {uuid: CONF.host}
    assert docker_adapter.get_available_resource(CONF.host)['uuid'] == uuid
