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

"""Fake-backend specifics that the cross-backend suite cannot know.

The shared semantics are checked by test_conformance_fake.py.
"""

import concurrent.futures
import hashlib
import io
import threading

import pytest

from compute_driver import conf as cd_conf
from compute_driver import driver
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver.fake import images as fake_images
from compute_driver import flavors
from compute_driver.image import exception as image_exception
from compute_driver import objects
from compute_driver import power_state

IMAGE = 'cirros-0.6.3-x86_64-disk'


def _driver(**fake_opts):
    conf = cd_conf.build_conf(config_files=[])
    for name, value in fake_opts.items():
        # The claim policy's options are [DEFAULT]'s, shared by every
        # backend; the rest are the fake's own.
        conf.set_override(name, value, group=None if name in (
            'cpu_allocation_ratio', 'ram_allocation_ratio',
            'disk_allocation_ratio') else 'fake')
    backend = fake_driver.FakeDriver(conf)
    backend.init_host('host1')
    return backend


def _boot(backend, name='vm1', flavor='m1.tiny', power_on=True):
    inst = objects.Instance.new(
        name, flavors.get_flavor(backend.conf, flavor), IMAGE)
    backend.spawn(inst, power_on=power_on)
    return inst


def test_capacity_comes_from_config():
    backend = _driver(vcpus=2, memory_mb=1024, disk_gb=10,
                      cpu_allocation_ratio=1.0)
    _boot(backend, 'a')
    _boot(backend, 'b')
    with pytest.raises(exception.InsufficientResources) as exc:
        _boot(backend, 'c')
    assert exc.value.resource == 'vcpus'
    assert str(exc.value) == ('Not enough vcpus on host1: 1 requested, 0 '
                              'free of 2.')
    assert backend.list_instances() == ['a', 'b']


def test_claims_apply_allocation_ratios_like_nova():
    # Nova's default cpu_allocation_ratio (4.0) lets placement put eight
    # 1-vCPU servers on 2 vCPUs; the fake host must not refuse the third.
    backend = _driver(vcpus=2)
    for number in range(8):
        _boot(backend, 'vm%d' % number)
    with pytest.raises(exception.InsufficientResources) as exc:
        _boot(backend, 'vm8')
    assert str(exc.value) == ('Not enough vcpus on host1: 1 requested, 0 '
                              'free of 8.')
    assert backend.get_available_resource(None).vcpus_used == 8


def test_claims_are_released_by_destroy():
    backend = _driver(vcpus=1)
    inst = _boot(backend, 'a')
    backend.destroy(inst)
    _boot(backend, 'b')
    assert backend.get_available_resource(None).vcpus_used == 1


def test_bad_image_name_in_config_is_a_configuration_error():
    conf = cd_conf.build_conf(config_files=[])
    conf.set_override('images', ['good', 'has space'], group='fake')
    with pytest.raises(exception.InvalidConfiguration) as exc:
        fake_driver.FakeDriver(conf)
    assert '[fake] images' in str(exc.value)


def test_image_min_ram_is_enforced():
    backend = _driver()
    backend.image_service.upload('big', io.BytesIO(b'data'), 'raw', 'bare',
                                 min_ram=1024)
    inst = objects.Instance.new(
        'vm1', flavors.get_flavor(backend.conf, 'm1.tiny'), 'big')
    with pytest.raises(exception.InvalidInput) as exc:
        backend.spawn(inst)
    assert 'needs 1024' in str(exc.value)
    assert backend.list_instances() == []


def test_console_is_bounded_and_grows():
    backend = _driver(console_log_lines=10)
    inst = _boot(backend)
    first = backend.get_console_output(inst)
    backend.pause(inst)
    second = backend.get_console_output(inst)
    assert 'vm1 login:' in first
    assert second.endswith('vCPUs paused\n')
    backend.unpause(inst)
    for _ in range(5):
        backend.reboot(inst, driver.REBOOT_SOFT)
    assert len(backend.get_console_output(inst).splitlines()) == 10


def test_revert_restores_the_snapshot_disk():
    backend = _driver()
    inst = _boot(backend)
    backend.snapshot(inst, 'snap', None)
    backend.reboot(inst, driver.REBOOT_HARD)
    before = backend.get_diagnostics(inst)['disk_generation']
    backend.revert_to_snapshot(inst, 'snap')
    after = backend.get_diagnostics(inst)['disk_generation']
    # The revert rebooted from generation 1's disk, which is generation 2.
    assert (before, after) == (2, 2)
    backend.power_off(inst)
    backend.revert_to_snapshot(inst, 'snap')
    assert backend.get_diagnostics(inst)['disk_generation'] == 1


def test_snapshot_reports_task_states():
    backend = _driver()
    inst = _boot(backend)
    calls = []
    backend.snapshot(inst, 'snap', lambda **kwargs: calls.append(kwargs))
    assert calls == [
        {'task_state': driver.IMAGE_PENDING_UPLOAD},
        {'task_state': driver.IMAGE_UPLOADING,
         'expected_state': driver.IMAGE_PENDING_UPLOAD}]


def test_hard_reboot_events_depend_on_the_start_state():
    backend = _driver()
    seen = []
    backend.register_event_listener(
        lambda e: seen.append(e.get_name()))
    inst = _boot(backend, power_on=False)
    backend.reboot(inst, 'hard')
    backend.reboot(inst, 'HARD')
    backend.reboot(inst, 'soft')
    assert seen == ['Started', 'Stopped', 'Started']


@pytest.mark.parametrize('call', [
    lambda b, i: b.reboot(i, 'medium'),
    lambda b, i: b.power_off(i, timeout=-1),
    lambda b, i: b.live_resize(i, vcpus=0),
    lambda b, i: b.live_resize(i, memory_mb=10 ** 6),
    lambda b, i: b.live_resize(i),
])
def test_bad_arguments_are_invalid_input(call):
    backend = _driver()
    inst = _boot(backend)
    with pytest.raises(exception.InvalidInput):
        call(backend, inst)
    assert backend.get_info(inst).state == power_state.RUNNING


def test_listener_may_call_back_into_the_driver():
    backend = _driver()
    states = []

    def listener(event):
        # Runs on another thread too, as a real backend's event thread.
        result = []
        worker = threading.Thread(target=lambda: result.append(
            backend.list_instance_records()))
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), 'driver lock held while emitting'
        states.append([r.info.state for r in result[0]])

    backend.register_event_listener(listener)
    inst = _boot(backend)
    backend.pause(inst)
    assert states == [[power_state.RUNNING], [power_state.PAUSED]]


def test_many_threads_keep_accounting_exact():
    backend = _driver(vcpus=40)

    def life(n):
        inst = _boot(backend, 'vm%d' % n)
        backend.pause(inst)
        backend.unpause(inst)
        if n % 2:
            backend.destroy(inst)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(life, range(40)))
    res = backend.get_available_resource(None)
    assert res.vcpus_used == 20
    assert res.running_vms == 20
    assert sorted(backend.list_instances()) == sorted(
        'vm%d' % n for n in range(0, 40, 2))


def test_destroy_of_a_running_instance_says_stopped():
    backend = _driver()
    seen = []
    backend.register_event_listener(seen.append)
    inst = _boot(backend)
    backend.destroy(inst)
    assert [e.transition for e in seen] == [
        virtevent.EVENT_LIFECYCLE_STARTED, virtevent.EVENT_LIFECYCLE_STOPPED]


def test_host_facts():
    backend = _driver(host_ip='192.0.2.7')
    assert backend.get_host_ip_addr() == '192.0.2.7'
    assert 'up' in backend.get_host_uptime()
    assert backend.get_available_nodes() == ['host1']
    assert objects.version_to_str(
        backend.get_available_resource(None).hypervisor_version) == '1.0.0'


def test_live_resize_bounds_come_from_the_stored_flavor():
    backend = _driver()
    inst = _boot(backend, flavor='m1.nano')
    bigger = objects.Instance(
        uuid=inst.uuid, name=inst.name, image_ref=inst.image_ref,
        flavor=flavors.get_flavor(backend.conf, 'm1.xlarge'))
    with pytest.raises(exception.InvalidInput) as exc:
        backend.live_resize(bigger, memory_mb=9000)
    assert 'from 1 to 64 (flavor m1.nano)' in str(exc.value)
    with pytest.raises(exception.InvalidInput):
        backend.live_resize(inst, vcpus=True)
    assert backend.get_diagnostics(inst)['memory_mb'] == 64


def test_snapshot_callback_runs_without_the_lock():
    backend = _driver()
    inst = _boot(backend)
    seen = []

    def callback(**kwargs):
        worker = threading.Thread(
            target=lambda: seen.append(backend.list_instances()))
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), 'driver lock held during callback'

    backend.snapshot(inst, 'snap', callback)
    assert seen == [['vm1'], ['vm1']]


def test_paused_instances_count_as_running_vms():
    backend = _driver()
    _boot(backend, 'a')
    backend.pause(_boot(backend, 'b'))
    _boot(backend, 'c', power_on=False)
    res = backend.get_available_resource(None)
    assert res.running_vms == 2
    assert res.vcpus_used == 3


# -- images from the image service ----------------------------------------

def test_boot_keeps_the_verified_bytes_of_the_image():
    backend = _driver()
    record = backend.image_service.show(IMAGE)
    inst = _boot(backend)
    diag = backend.get_diagnostics(inst)
    assert diag['disk_bytes'] == record.size == fake_images.SEED_SIZE
    assert diag['disk_sha256'] == hashlib.sha256(
        fake_images.seed_data(IMAGE)).hexdigest()


def test_boot_by_image_id():
    backend = _driver()
    record = backend.image_service.show(IMAGE)
    inst = objects.Instance.new(
        'vm1', flavors.get_flavor(backend.conf, 'm1.tiny'), record.id)
    backend.spawn(inst)
    assert backend.get_diagnostics(inst)['disk_bytes'] == record.size


def test_checksum_mismatch_is_refused_and_leaves_nothing():
    backend = _driver()
    record = backend.image_service.show(IMAGE)
    data = fake_images.seed_data(IMAGE)
    # As many bytes as recorded, one of them different.
    backend.image_service.corrupt(record.id, b'!' + data[1:])
    inst = objects.Instance.new(
        'vm1', flavors.get_flavor(backend.conf, 'm1.tiny'), IMAGE)
    with pytest.raises(image_exception.ImageChecksumMismatch):
        backend.spawn(inst)
    assert backend.list_instances() == []
    assert backend.get_available_resource().memory_mb_used == 0


def test_unknown_image_is_refused():
    backend = _driver()
    inst = objects.Instance.new(
        'vm1', flavors.get_flavor(backend.conf, 'm1.tiny'), 'nosuch')
    with pytest.raises(exception.ImageNotFound):
        backend.spawn(inst)
    assert backend.list_instances() == []


def test_snapshot_uploads_the_disk_and_boots_again():
    backend = _driver()
    inst = _boot(backend)
    backend.snapshot(inst, 'snap', None)
    snap = backend.image_service.show('snap')
    assert snap.status == 'active'
    assert (snap.disk_format, snap.container_format) == ('raw', 'bare')
    assert snap.size == fake_images.SEED_SIZE
    assert snap.properties['image_type'] == 'snapshot'
    assert snap.properties['instance_uuid'] == inst.uuid
    assert snap.properties['base_image_ref'] == (
        backend.image_service.show(IMAGE).id)
    again = objects.Instance.new(
        'vm2', flavors.get_flavor(backend.conf, 'm1.tiny'), snap.id)
    backend.spawn(again)
    assert (backend.get_diagnostics(again)['disk_sha256'] ==
            backend.get_diagnostics(inst)['disk_sha256'])
    assert 'snap' in [i.name for i in backend.list_images()]


def test_configured_image_service_is_used(tmp_path):
    conf = cd_conf.build_conf(config_files=[])
    conf.set_override('image_service', 'configured', group='fake')
    conf.set_override('local_path', str(tmp_path / 'images'),
                      group='image_service')
    backend = fake_driver.FakeDriver(conf)
    backend.init_host('host1')
    record = backend.image_service.upload(
        'mine', io.BytesIO(b'local image data'), 'raw', 'bare')
    inst = objects.Instance.new(
        'vm1', flavors.get_flavor(backend.conf, 'm1.tiny'), 'mine')
    backend.spawn(inst)
    assert backend.get_diagnostics(inst)['disk_bytes'] == record.size
