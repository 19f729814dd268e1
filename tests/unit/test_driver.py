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

import dataclasses
import logging
import threading

import pytest

from compute_driver import conf as cd_conf
from compute_driver import driver
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state


class MinimalDriver(driver.ComputeDriver):
    """Implements only the required hooks; every optional op is missing."""

    emits_lifecycle_events = False
    hypervisor_type = 'minimal'

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi)
        self.records = {}
        self.images = {'cirros': objects.ImageMeta('cirros')}

    def _connect(self):
        pass

    def _find(self, instance):
        try:
            return self.records[instance.uuid]
        except KeyError:
            raise exception.InstanceNotFound(instance=instance.name) from None

    def _power_state(self, handle):
        return handle.info.state

    def _get_image(self, instance):
        try:
            return self.images[instance.image_ref]
        except KeyError:
            raise exception.ImageNotFound(image=instance.image_ref,
                                          available='cirros') from None

    def _create(self, instance, image, power_on, network_info,
                block_device_info):
        self.records[instance.uuid] = objects.InstanceRecord(
            instance, objects.InstanceInfo(
                power_state.RUNNING if power_on else power_state.SHUTDOWN))

    def _destroy(self, instance, destroy_disks):
        record = self.records.pop(instance.uuid, None)
        return None if record is None else record.info.state

    def _resources(self, pending):
        return self._usage(list(self.records.values()), pending)

    def _usage(self, records, pending):
        # A 2-vCPU host: the listed records plus the claims not listed.
        listed = {r.instance.uuid for r in records}
        flavors = [r.instance.flavor for r in records]
        flavors += [i.flavor for i in pending if i.uuid not in listed]
        return objects.HostResources(
            vcpus=2, memory_mb=1024, local_gb=10,
            vcpus_used=sum(f.vcpus for f in flavors),
            memory_mb_used=sum(f.memory_mb for f in flavors),
            local_gb_used=sum(f.disk_gb for f in flavors),
            hypervisor_type=self.hypervisor_type, hypervisor_version=1,
            hypervisor_hostname=self.host)

    def list_instance_records(self):
        return list(self.records.values())


@pytest.fixture
def minimal():
    return MinimalDriver(cd_conf.build_conf(config_files=[]))


@pytest.fixture
def instance():
    flavor = objects.Flavor('m1.test', vcpus=1, memory_mb=64)
    return objects.Instance.new('vm1', flavor, 'cirros')


def test_missing_abstract_method_cannot_be_built():
    class Incomplete(driver.ComputeDriver):
        def _connect(self):
            pass

    with pytest.raises(TypeError):
        Incomplete(None)


def test_capabilities_default_to_false(minimal):
    assert set(minimal.capabilities) == set(driver.default_capabilities())
    assert not any(minimal.capabilities.values())
    assert not minimal.supports('pause')
    with pytest.raises(KeyError):
        minimal.supports('fly')


def test_partial_capabilities_are_completed():
    class Partial(MinimalDriver):
        capabilities = {'supports_pause': True}

    assert Partial.capabilities['supports_pause'] is True
    assert Partial.capabilities['supports_suspend'] is False
    assert set(Partial.capabilities) == set(driver.default_capabilities())


def test_unknown_capability_key_is_a_type_error():
    with pytest.raises(TypeError) as exc:
        type('Typo', (MinimalDriver,), {'capabilities': {'supports_paus':
                                                         True}})
    assert 'supports_paus' in str(exc.value)


@pytest.mark.parametrize('call,operation', [
    (lambda d, i: d.cleanup_host('h'), 'cleanup_host'),
    (lambda d, i: d.instance_exists(i), 'instance_exists'),
    (lambda d, i: d.reboot(i, driver.REBOOT_SOFT),
     'soft_reboot'),
    (lambda d, i: d.reboot(i, driver.REBOOT_HARD),
     'hard_reboot'),
    (lambda d, i: d.power_off(i), 'power_off'),
    (lambda d, i: d.power_on(i), 'power_on'),
    (lambda d, i: d.pause(i), 'pause'),
    (lambda d, i: d.unpause(i), 'unpause'),
    (lambda d, i: d.suspend(i), 'suspend'),
    (lambda d, i: d.resume(i), 'resume'),
    (lambda d, i: d.snapshot(i, 'img', None), 'snapshot'),
    (lambda d, i: d.delete_snapshot('img'), 'delete_snapshot'),
    (lambda d, i: d.revert_to_snapshot(i, 'img'),
     'revert_to_snapshot'),
    (lambda d, i: d.live_resize(i, vcpus=1), 'live_resize'),
    (lambda d, i: d.get_console_output(i), 'console_output'),
    (lambda d, i: d.get_diagnostics(i), 'diagnostics'),
    (lambda d, i: d.get_host_ip_addr(), 'host_ip_addr'),
    (lambda d, i: d.get_host_uptime(), 'host_uptime'),
    (lambda d, i: d.list_images(), 'list_images'),
])
def test_optional_operations_raise_not_supported(minimal, instance, call,
                                                 operation):
    with pytest.raises(exception.NotSupported) as exc:
        call(minimal, instance)
    assert exc.value.operation == operation
    assert 'MinimalDriver' in str(exc.value)


def test_every_optional_operation_has_a_base_method_and_hooks():
    for operation, method in driver.OPTIONAL_OPERATIONS.items():
        assert callable(getattr(driver.ComputeDriver, method)), operation
        for hook in driver.OPERATIONS[operation].hooks:
            assert callable(getattr(driver.ComputeDriver, hook)), hook
    assert set(driver.REQUIRED_HOOKS) == set(
        driver.ComputeDriver.__abstractmethods__)
    for method in driver.PIPELINE_METHODS:
        assert method not in driver.ComputeDriver.__abstractmethods__


def test_transition_table_is_consistent():
    for operation, spec in driver.TRANSITIONS.items():
        assert operation in driver.OPTIONAL_OPERATIONS
        assert spec.allowed
        assert set(spec.allowed) <= set(power_state.ALL)
        assert spec.result is None or spec.result in power_state.ALL
        assert set(spec.events) <= set(virtevent.NAMES)


def test_power_state_values_equal_novas():
    assert (power_state.NOSTATE, power_state.RUNNING, power_state.PAUSED,
            power_state.SHUTDOWN, power_state.CRASHED,
            power_state.SUSPENDED) == (0, 1, 3, 4, 6, 7)
    assert power_state.name(4) == 'shutdown'
    assert power_state.name(9) == 'unknown(9)'


def test_event_values_equal_novas():
    assert (virtevent.EVENT_LIFECYCLE_STARTED,
            virtevent.EVENT_LIFECYCLE_STOPPED,
            virtevent.EVENT_LIFECYCLE_PAUSED,
            virtevent.EVENT_LIFECYCLE_RESUMED,
            virtevent.EVENT_LIFECYCLE_SUSPENDED) == (0, 1, 2, 3, 4)
    with pytest.raises(ValueError):
        virtevent.LifecycleEvent('u', 99)


def test_check_power_state_names_both_states(instance):
    driver.ComputeDriver.check_power_state(instance, 'pause',
                                           power_state.RUNNING)
    with pytest.raises(exception.InvalidPowerState) as exc:
        driver.ComputeDriver.check_power_state(instance, 'unpause',
                                               power_state.SHUTDOWN)
    assert str(exc.value) == ('Cannot unpause instance vm1 while it is '
                              'shutdown; it must be paused.')


def test_find_instance_by_uuid_then_name(minimal, instance):
    minimal.spawn(instance)
    assert minimal.find_instance('vm1').instance == instance
    assert minimal.find_instance(instance.uuid.upper()).instance == instance
    with pytest.raises(exception.InstanceNotFound):
        minimal.find_instance('vm2')


def test_events_reach_the_listener(minimal):
    seen = []
    minimal.register_event_listener(seen.append)
    minimal.emit_lifecycle('u1', virtevent.EVENT_LIFECYCLE_PAUSED)
    assert [(e.uuid, e.transition) for e in seen] == [('u1', 2)]
    minimal.register_event_listener(None)
    minimal.emit_lifecycle('u1', virtevent.EVENT_LIFECYCLE_RESUMED)
    assert len(seen) == 1


def test_emit_rejects_non_events(minimal):
    with pytest.raises(ValueError):
        minimal.emit_event('started')


def test_failing_listener_is_logged_not_raised(minimal, caplog):
    def broken(event):
        raise RuntimeError('listener bug')

    minimal.register_event_listener(broken)
    with caplog.at_level(logging.ERROR):
        minimal.emit_lifecycle('u1', virtevent.EVENT_LIFECYCLE_STARTED)
    assert 'listener bug' in caplog.text


def test_subclass_of_a_backend_inherits_its_capabilities():
    class Parent(MinimalDriver):
        capabilities = {'supports_pause': True, 'supports_unpause': True,
                        'supports_suspend': True}

    class Child(Parent):
        capabilities = {'supports_suspend': False}

    class Grandchild(Child):
        pass

    for cls in (Child, Grandchild):
        assert cls.capabilities['supports_pause'] is True
        assert cls.capabilities['supports_suspend'] is False
        assert set(cls.capabilities) == set(driver.default_capabilities())
    assert Parent.capabilities['supports_suspend'] is True


@pytest.mark.parametrize('given, kind', [
    ('SOFT', driver.REBOOT_SOFT), ('hard', driver.REBOOT_HARD),
    ('Soft', driver.REBOOT_SOFT)])
def test_reboot_kind_accepts_either_case(given, kind):
    assert driver.reboot_kind(given) == kind


@pytest.mark.parametrize('given', ['WARM', '', None, 1])
def test_reboot_kind_refuses_anything_else(given):
    with pytest.raises(exception.InvalidInput, match='SOFT or HARD'):
        driver.reboot_kind(given)


def test_check_spawn_instance_accepts_an_instance(instance):
    driver.check_spawn_instance(instance)


@pytest.mark.parametrize('given', [None, 'vm1', {'name': 'vm1'}])
def test_check_spawn_instance_refuses_other_types(given):
    with pytest.raises(exception.InvalidInput,
                       match='spawn needs an objects.Instance'):
        driver.check_spawn_instance(given)


@pytest.mark.parametrize('metadata,words', [
    ({'k': 'a\x00b'}, "control character '\\x00'"),
    ({'k': 'line\nbreak'}, "control character '\\n'"),
    ({'k': '\x1b[31mred'}, "control character '\\x1b'"),
    ({'k': '\x85'}, "control character '\\x85'"),
    ({'k': '\ud800'}, "control character '\\ud800'"),
    ({'k': 'x' * 256}, 'has 256 characters; at most 255'),
    ({'': 'v'}, "key ''"),
    ({'k\n': 'v'}, "key 'k\\n'"),
    ({'k' * 256: 'v'}, 'must be 1 to 255'),
    ({'k%d' % i: 'v' for i in range(129)}, 'has 129 items; at most 128'),
])
def test_check_spawn_instance_refuses_bad_metadata(instance, metadata,
                                                   words):
    bad = dataclasses.replace(instance, metadata=metadata)
    with pytest.raises(exception.InvalidInput) as caught:
        driver.check_spawn_instance(bad)
    assert words in str(caught.value)


@pytest.mark.parametrize('metadata', [
    {}, {'role': 'web', 'Nova key:1.x': 'any text, even ünïcode\u2028'},
    {'k%d' % i: 'v' * 255 for i in range(128)},
])
def test_check_spawn_instance_accepts_nova_metadata(instance, metadata):
    driver.check_spawn_instance(
        dataclasses.replace(instance, metadata=metadata))


def _host(vcpus=4, memory_mb=8192, local_gb=100):
    return objects.HostResources(
        vcpus=vcpus, memory_mb=memory_mb, local_gb=local_gb, vcpus_used=1,
        memory_mb_used=512, local_gb_used=10, hypervisor_type='test',
        hypervisor_version=1000000, hypervisor_hostname='host1')


@pytest.mark.parametrize('fields,resource,total', [
    ({'vcpus': 5}, 'vcpus', 4),
    ({'memory_mb': 8193}, 'memory_mb', 8192),
    ({'root_gb': 60, 'ephemeral_gb': 41}, 'disk_gb', 100),
])
def test_flavor_larger_than_the_host_is_refused(fields, resource, total):
    flavor = objects.Flavor('m1.big', **{'vcpus': 1, 'memory_mb': 64,
                                         **fields})
    with pytest.raises(exception.FlavorExceedsHost) as caught:
        driver.check_flavor_fits_host(flavor, _host())
    assert (caught.value.resource, caught.value.total) == (resource, total)
    assert isinstance(caught.value, exception.InsufficientResources)
    assert str(caught.value).startswith('Flavor m1.big asks for ')
    assert str(caught.value).endswith('; host1 has %d in all.' % total)


def test_flavor_as_large_as_the_host_fits():
    flavor = objects.Flavor('m1.all', vcpus=4, memory_mb=8192, root_gb=100)
    driver.check_flavor_fits_host(flavor, _host())


def test_unknown_host_disk_is_not_checked():
    flavor = objects.Flavor('m1.disk', vcpus=1, memory_mb=64, root_gb=10**6)
    driver.check_flavor_fits_host(flavor, _host(local_gb=0))


# -- the pipeline ------------------------------------------------------------

class PausingDriver(MinimalDriver):
    """Adds pause and unpause: the smallest backend with an operation."""

    capabilities = {'supports_pause': True, 'supports_unpause': True}

    def _set(self, instance, state):
        record = self.records[instance.uuid]
        self.records[instance.uuid] = dataclasses.replace(
            record, info=objects.InstanceInfo(state))

    def _pause(self, handle, instance):
        self._set(instance, power_state.PAUSED)

    def _unpause(self, handle, instance):
        self._set(instance, power_state.RUNNING)


@pytest.fixture
def pausing():
    backend = PausingDriver(cd_conf.build_conf(config_files=[]))
    backend.init_host('h1')
    return backend


def _flavored(name, vcpus=1, memory_mb=64, root_gb=0):
    return objects.Instance.new(
        name, objects.Flavor('f%d' % vcpus, vcpus=vcpus,
                             memory_mb=memory_mb, root_gb=root_gb),
        'cirros')


def test_pipeline_checks_transitions_and_emits_events(pausing, instance):
    seen = []
    pausing.register_event_listener(seen.append)
    pausing.spawn(instance)
    pausing.pause(instance)
    with pytest.raises(exception.InvalidPowerState):
        pausing.pause(instance)
    pausing.unpause(instance)
    assert [e.transition for e in seen] == [
        virtevent.EVENT_LIFECYCLE_STARTED, virtevent.EVENT_LIFECYCLE_PAUSED,
        virtevent.EVENT_LIFECYCLE_RESUMED]
    pausing.destroy(instance)
    assert seen[-1].transition == virtevent.EVENT_LIFECYCLE_STOPPED
    # Locks exist only while an operation holds them.
    assert len(pausing._instance_locks) == 0


def test_unknown_instance_before_power_state(pausing, instance):
    with pytest.raises(exception.InstanceNotFound):
        pausing.unpause(instance)


def test_already_done_is_success_when_the_caller_asks(pausing, instance):
    pausing.spawn(instance)
    pausing.already_done_is_success = True
    pausing.unpause(instance)  # running already: nothing to do
    pausing.pause(instance)
    pausing.pause(instance)
    assert pausing.get_info(instance).state == power_state.PAUSED


def test_listener_may_call_back_into_the_driver(pausing, instance):
    states = []
    pausing.register_event_listener(
        lambda event: states.append(pausing.get_info(instance).state))
    pausing.spawn(instance)
    pausing.pause(instance)
    assert states == [power_state.RUNNING, power_state.PAUSED]


def test_claims_follow_nova_allocation_ratios(minimal):
    # 2 vCPUs at Nova's default ratio 4.0: eight 1-vCPU instances.
    for number in range(8):
        minimal.spawn(_flavored('vm%d' % number))
    with pytest.raises(exception.InsufficientResources) as exc:
        minimal.spawn(_flavored('vm8'))
    assert (exc.value.kwargs['resource'], exc.value.kwargs['free'],
            exc.value.kwargs['total']) == ('vcpus', 0, 8)
    assert len(minimal.records) == 8


def test_claims_subtract_reserved_resources(minimal):
    minimal.conf.set_override('reserved_host_cpus', 1)
    minimal.conf.set_override('cpu_allocation_ratio', 2.0)
    minimal.conf.set_override('reserved_host_memory_mb', 960)
    minimal.spawn(_flavored('a', memory_mb=32))
    with pytest.raises(exception.InsufficientResources) as exc:
        minimal.spawn(_flavored('b', memory_mb=64))
    assert exc.value.kwargs['resource'] == 'memory_mb'
    minimal.spawn(_flavored('c', memory_mb=32))
    with pytest.raises(exception.InsufficientResources) as exc:
        minimal.spawn(_flavored('d', memory_mb=0 + 1))
    assert exc.value.kwargs['resource'] in ('vcpus', 'memory_mb')


def test_flavor_larger_than_host_unless_containers(minimal):
    with pytest.raises(exception.FlavorExceedsHost):
        minimal.spawn(_flavored('big', vcpus=3))
    minimal.runs_containers = True
    minimal.spawn(_flavored('big', vcpus=3))


def test_spawn_under_way_holds_its_claim(minimal):
    minimal.conf.set_override('cpu_allocation_ratio', 1.0)
    minimal.spawn(_flavored('first'))
    inside, release = threading.Event(), threading.Event()
    created = minimal._create

    def slow_create(*args, **kwargs):
        inside.set()
        release.wait(10)
        created(*args, **kwargs)

    minimal._create = slow_create
    second = threading.Thread(target=minimal.spawn,
                              args=(_flavored('second'),))
    second.start()
    try:
        assert inside.wait(10)
        # Not listed yet, but claimed: the last vCPU is taken.
        assert minimal.get_available_resource().vcpus_used == 2
        with pytest.raises(exception.InsufficientResources):
            minimal.spawn(_flavored('third'))
        with pytest.raises(exception.InstanceExists):
            minimal.spawn(_flavored('second'))
    finally:
        release.set()
        second.join(10)
    assert sorted(minimal.list_instances()) == ['first', 'second']
    assert minimal.get_available_resource().vcpus_used == 2
    assert not minimal._pending


class ReadingDriver(MinimalDriver):
    """Lists its instances before the claim lock, as libvirt does.

    ``after_listing``, when set, is called by the claim that lists next,
    with the listing taken: a test holds that claim there.
    """

    hypervisor_type = 'reading'

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi)
        self.after_listing = None

    def _resources(self, pending):
        return self._count_resources(self._host_state(), pending)

    def _host_state(self):
        listed = list(self.records.values())
        hook, self.after_listing = self.after_listing, None
        if hook is not None:
            hook()
        return listed

    def _count_resources(self, state, pending):
        return self._usage(state, pending)


@pytest.fixture
def reading():
    backend = ReadingDriver(cd_conf.build_conf(config_files=[]))
    # Two vCPUs, one per instance: two instances fit.
    backend.conf.set_override('cpu_allocation_ratio', 1.0)
    yield backend
    assert not backend._pending
    assert not backend._reading


class _Spawn(threading.Thread):
    """A spawn in a thread, keeping what it raised."""

    def __init__(self, backend, instance):
        super().__init__()
        self.backend, self.instance, self.error = backend, instance, None

    def run(self):
        try:
            self.backend.spawn(self.instance)
        except Exception as exc:  # checked by the test
            self.error = exc

    def finish(self):
        self.join(10)
        assert not self.is_alive()
        return self.error


def _hold_listing(backend):
    """Hold the next claim once it has listed; returns (listed, go)."""
    listed, go = threading.Event(), threading.Event()

    def hold():
        listed.set()
        assert go.wait(10)

    backend.after_listing = hold
    return listed, go


def _hold_create(backend, name):
    """Hold the spawn of ``name`` in ``_create``; returns (inside, go)."""
    inside, go = threading.Event(), threading.Event()
    created = backend._create

    def create(instance, *args):
        if instance.name == name:
            inside.set()
            assert go.wait(10)
        created(instance, *args)

    backend._create = create
    return inside, go


def test_a_claim_listing_does_not_hold_up_other_claims(reading):
    reading.spawn(_flavored('first'))
    listed, go = _hold_listing(reading)
    late = _Spawn(reading, _flavored('late'))
    late.start()
    try:
        assert listed.wait(10)
        # Claimed, spawned and released while the other claim has only
        # listed: the claim lock is not held across the listing.
        reading.spawn(_flavored('early'))
    finally:
        go.set()
    # Its listing predates "early", whose claim it counts instead: the
    # last vCPU is not taken twice.
    assert isinstance(late.finish(), exception.InsufficientResources)
    assert sorted(reading.list_instances()) == ['early', 'first']


def test_a_claim_released_after_the_listing_still_counts(reading):
    reading.spawn(_flavored('first'))
    inside, done = _hold_create(reading, 'second')
    second = _Spawn(reading, _flavored('second'))
    second.start()
    assert inside.wait(10)
    listed, go = _hold_listing(reading)
    third = _Spawn(reading, _flavored('third'))
    third.start()
    try:
        # The listing has "first" only; "second" is pending...
        assert listed.wait(10)
    finally:
        done.set()
    # ... and released, listed by now but not in that listing.
    assert second.finish() is None
    assert not reading._pending
    go.set()
    assert isinstance(third.finish(), exception.InsufficientResources)
    assert sorted(reading.list_instances()) == ['first', 'second']


def test_a_claim_held_when_the_lock_is_taken_counts(reading):
    reading.spawn(_flavored('first'))
    listed, go = _hold_listing(reading)
    late = _Spawn(reading, _flavored('late'))
    late.start()
    assert listed.wait(10)
    inside, done = _hold_create(reading, 'early')
    early = _Spawn(reading, _flavored('early'))
    early.start()
    try:
        assert inside.wait(10)
        go.set()
        assert isinstance(late.finish(), exception.InsufficientResources)
    finally:
        go.set()
        done.set()
    assert early.finish() is None
    assert sorted(reading.list_instances()) == ['early', 'first']


def test_a_listed_pending_spawn_counts_once(reading):
    # Three vCPUs: "first", "second" (listed while still pending) and one
    # more fit; counted twice, "second" would leave no room for "third".
    reading.conf.set_override('cpu_allocation_ratio', 1.5)
    reading.spawn(_flavored('first'))
    listed_inside, done = threading.Event(), threading.Event()
    created = reading._create

    def create_then_wait(instance, *args):
        created(instance, *args)
        if instance.name == 'second':
            listed_inside.set()
            assert done.wait(10)

    reading._create = create_then_wait
    second = _Spawn(reading, _flavored('second'))
    second.start()
    try:
        assert listed_inside.wait(10)
        assert 'second' in reading.list_instances()
        reading.spawn(_flavored('third'))
        with pytest.raises(exception.InsufficientResources):
            reading.spawn(_flavored('fourth'))
    finally:
        done.set()
    assert second.finish() is None
    assert sorted(reading.list_instances()) == ['first', 'second', 'third']


def test_a_failed_host_read_leaves_no_claim_behind(reading):
    def unreachable():
        raise exception.HypervisorUnavailable(host='h1', reason='down')

    reading.after_listing = unreachable
    with pytest.raises(exception.HypervisorUnavailable):
        reading.spawn(_flavored('first'))
    reading.spawn(_flavored('first'))
    assert reading.list_instances() == ['first']


def test_spawn_refuses_an_image_the_flavor_cannot_hold(minimal):
    minimal.images['big'] = objects.ImageMeta('big', min_ram=128,
                                              min_disk=5)
    small = objects.Instance.new(
        'vm1', objects.Flavor('f', vcpus=1, memory_mb=64, root_gb=1), 'big')
    with pytest.raises(exception.InvalidInput, match='MiB of memory'):
        minimal.spawn(small)
    roomy = objects.Instance.new(
        'vm1', objects.Flavor('f', vcpus=1, memory_mb=256, root_gb=1), 'big')
    with pytest.raises(exception.InvalidInput, match='root disk'):
        minimal.spawn(roomy)
    assert minimal.records == {}


def test_operation_table_calls_each_method(pausing, instance):
    pausing.spawn(instance)
    driver.OPERATIONS['pause'].call(pausing, instance)
    assert pausing.get_info(instance).state == power_state.PAUSED
    with pytest.raises(TypeError, match='image_id'):
        driver.OPERATIONS['snapshot'].call(pausing, instance)
    assert set(driver.OPERATIONS) == set(driver.OPTIONAL_OPERATIONS)
    for name, operation in driver.OPERATIONS.items():
        assert operation.transition is driver.TRANSITIONS.get(name)
