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

"""The docker backend against the real dockerd, beyond the conformance suite.

dockerd restarts, containers removed behind the driver's back, spawns that
fail half-way, bad input, images loaded from a tarball directory.
"""

import concurrent.futures
import dataclasses
import time
import uuid as uuidlib

from docker import errors as docker_errors
import pytest

from compute_driver import conf as cdconf
from compute_driver.docker import mapping
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures
from tests.functional import docker_env
from tests.functional import private_daemons


@pytest.fixture
def api():
    client = docker_env.raw_client()
    yield client
    client.close()


@pytest.fixture
def host():
    return docker_env.unique_host()


@pytest.fixture
def make_driver(api, host):
    """Build, init and (at teardown) clean up drivers of one test host."""
    made = []

    def factory(DEFAULT=None, **docker_options):
        overrides = docker_env.overrides(host, **docker_options)
        overrides['DEFAULT'].update(DEFAULT or {})
        conf = fixtures.make_conf('docker', overrides)
        backend = loader.load_driver(conf)
        backend.init_host(conf.host)
        made.append(backend)
        return backend
    yield factory
    for backend in made:
        for instance in backend.list_instance_records():
            backend.destroy(instance.instance)
        backend.cleanup_host(host)
    # Nothing of this host may remain, whatever the test did.
    left = api.containers(all=True, filters={
        'label': 'org.openstack.compute-driver.host=%s' % host})
    for summary in left:
        api.remove_container(summary['Id'], force=True)
    assert not left, 'containers left behind: %s' % [
        s['Names'] for s in left]


@pytest.fixture
def backend(make_driver):
    return make_driver()


def _instance(conf_flavor='m1.nano', image=docker_env.IMAGE, **fields):
    flavor = fields.pop('flavor', None) or next(
        f for f in flavors.BUILTIN if f.name == conf_flavor)
    return objects.Instance.new(fields.pop('name', 'cdtest-vm-%s'
                                           % uuidlib.uuid4().hex[:6]),
                                flavor, image, **fields)


def _spawn(backend, instance, power_on=True):
    backend.spawn(instance, power_on=power_on)


def _ours(api, host):
    return api.containers(all=True, filters={
        'label': 'org.openstack.compute-driver.host=%s' % host})


# -- dockerd restarts -------------------------------------------------------

@pytest.fixture
def private_dockerd(api):
    """A dockerd of this test's own, which it may restart.

    Restarting the shared one would break every other test using it at
    the time; see :mod:`.private_daemons`.
    """
    daemon = private_daemons.PrivateDockerd(api, docker_env.IMAGE)
    yield daemon
    daemon.close()


def test_dockerd_restart_while_driver_is_alive(private_dockerd, make_driver):
    backend = make_driver(api_url=private_dockerd.url)
    events = fixtures.EventRecorder()
    backend.register_event_listener(events)
    instance = _instance()
    _spawn(backend, instance)
    events.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STARTED, 15)
    connections = backend._watcher.connections

    private_dockerd.restart()

    # The next call succeeds on the same driver object; the container was
    # stopped with dockerd (no live-restore, restart policy "no").
    assert instance.uuid in backend.list_instance_uuids()
    assert backend.get_info(instance).state == power_state.SHUTDOWN
    mark = events.mark()
    backend.power_on(instance)
    assert backend.get_info(instance).state == power_state.RUNNING
    # The event thread reconnected by itself.
    events.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STARTED, 30,
                    since=mark)
    assert backend._watcher.connections > connections
    backend.destroy(instance)
    assert instance.uuid not in backend.list_instance_uuids()


# -- out-of-band changes ----------------------------------------------------

def test_container_removed_out_of_band(api, backend):
    instance = _instance()
    _spawn(backend, instance)
    api.remove_container('compute-driver-' + instance.uuid, force=True)
    with pytest.raises(exception.InstanceNotFound):
        backend.get_info(instance)
    with pytest.raises(exception.InstanceNotFound):
        backend.power_off(instance)
    assert backend.instance_exists(instance) is False
    assert instance.uuid not in backend.list_instance_uuids()
    backend.destroy(instance)


def test_container_stopped_out_of_band_is_shutdown(api, backend):
    events = fixtures.EventRecorder()
    backend.register_event_listener(events)
    instance = _instance()
    _spawn(backend, instance)
    mark = events.mark()
    api.stop('compute-driver-' + instance.uuid, timeout=0)
    assert backend.get_info(instance).state == power_state.SHUTDOWN
    events.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STOPPED, 15,
                    since=mark)


def test_foreign_containers_are_not_listed(api, backend, host):
    # A container run by hand from a snapshot inherits the image's labels;
    # it must not pass for the instance.
    instance = _instance()
    _spawn(backend, instance)
    snapshot = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    backend.snapshot(instance, snapshot)
    try:
        by_hand = api.create_container(
            snapshot, name='cdtest-byhand-%s' % uuidlib.uuid4().hex[:8],
            labels={'org.openstack.compute-driver.host': host})
        try:
            assert backend.list_instance_uuids() == [instance.uuid]
        finally:
            api.remove_container(by_hand['Id'], force=True)
    finally:
        backend.destroy(instance)
        backend.delete_snapshot(snapshot)


# -- failures half-way ------------------------------------------------------

@pytest.fixture
def broken_image(api):
    """An image whose command does not exist: create works, start fails."""
    ref = 'cdtest-badcmd:%s' % uuidlib.uuid4().hex[:8]
    helper = api.create_container(docker_env.IMAGE,
                                  name='cdtest-build-%s'
                                       % uuidlib.uuid4().hex[:8])
    try:
        repo, tag = ref.split(':')
        api.commit(helper['Id'], repository=repo, tag=tag,
                   changes=['CMD ["/no/such/binary"]'])
    finally:
        api.remove_container(helper['Id'], force=True)
    yield ref
    api.remove_image(ref, force=True)


def test_spawn_failing_at_start_leaves_nothing(api, backend, host,
                                               broken_image):
    before = backend.get_available_resource(None)
    instance = _instance(image=broken_image)
    with pytest.raises(exception.BackendError) as exc:
        _spawn(backend, instance)
    assert 'no/such/binary' in str(exc.value)
    assert '\n' not in str(exc.value)
    assert _ours(api, host) == []
    with pytest.raises(exception.InstanceNotFound):
        backend.get_info(instance)
    after = backend.get_available_resource(None)
    assert after.memory_mb_used == before.memory_mb_used
    # The same instance spawns once the image is fixed.
    fixed = dataclasses.replace(instance, image_ref=docker_env.IMAGE)
    _spawn(backend, fixed)
    assert backend.get_info(fixed).state == power_state.RUNNING


def test_failed_snapshot_save_removes_the_image(api, make_driver, tmp_path):
    directory = tmp_path / 'images'
    directory.mkdir()
    backend = make_driver(image_directory=str(directory))
    instance = _instance()
    _spawn(backend, instance)
    snapshot = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    # The tarball cannot be written: the commit must be undone.
    directory.rmdir()
    with pytest.raises(exception.BackendError) as exc:
        backend.snapshot(instance, snapshot)
    assert str(directory) in str(exc.value)
    assert snapshot not in [m.name for m in backend.list_images()]
    with pytest.raises(docker_errors.NotFound):
        api.inspect_image(snapshot)
    assert backend.get_info(instance).state == power_state.RUNNING


# -- bad input --------------------------------------------------------------

def test_image_reference_with_spaces(api, backend, host):
    # The image comes from the instance only, and the objects refuse such
    # a reference before any backend sees it (the CLI's refusal is in
    # test_docker_cli.py and the bad-input table).
    with pytest.raises(exception.InvalidInput):
        objects.ImageMeta('busy box:latest')
    with pytest.raises(exception.InvalidInput) as exc:
        _instance(image='busy box:latest')
    assert 'whitespace' in str(exc.value)
    # One the objects accept but Docker's grammar does not names no image.
    with pytest.raises(exception.ImageNotFound) as exc:
        _spawn(backend, _instance(image='UPPER/Case:tag'))
    assert '\n' not in str(exc.value)
    assert _ours(api, host) == []


def test_memory_below_docker_minimum(api, backend, host):
    flavor = objects.Flavor('cdtest.tiny', vcpus=1, memory_mb=4)
    instance = _instance(flavor=flavor)
    with pytest.raises(exception.InvalidInput) as exc:
        _spawn(backend, instance)
    assert 'at least 6 MiB' in str(exc.value)
    assert _ours(api, host) == []
    booted = _instance()
    _spawn(backend, booted)
    with pytest.raises(exception.InvalidInput):
        backend.live_resize(booted, memory_mb=5)
    assert backend.get_diagnostics(booted)['memory_mb'] == 64


def test_names_docker_rejects(api, backend):
    instance = _instance()
    _spawn(backend, instance)
    for bad in ('UpperCase-snap', 'snap!', '-leading-dash', 'a//b'):
        with pytest.raises(exception.InvalidInput) as exc:
            backend.snapshot(instance, bad)
        assert '\n' not in str(exc.value)
        # dockerd commits before it checks the name; nothing may be left.
        assert api.images(filters={'label': '%s=%s' % (
            mapping.SNAPSHOT_NAME, bad)}) == []
    with pytest.raises(exception.InvalidInstanceName):
        _instance(name='bad name!')


def test_invalid_name_prefix_is_refused_at_configuration():
    with pytest.raises(exception.InvalidConfiguration) as exc:
        fixtures.make_conf('docker', {'docker': {'name_prefix': 'bad/'}})
    assert 'name_prefix' in str(exc.value)


def test_privileged_flavor_is_refused_unless_allowed(api, backend, host):
    flavor = objects.Flavor('cdtest.priv', vcpus=1, memory_mb=64,
                            extra_specs={'docker:privileged': 'true'})
    with pytest.raises(exception.InvalidInput) as exc:
        _spawn(backend, _instance(flavor=flavor))
    assert 'allow_privileged' in str(exc.value)
    assert _ours(api, host) == []


def test_unknown_image_names_what_is_available(api, backend, host):
    with pytest.raises(exception.ImageNotFound) as exc:
        _spawn(backend, _instance(image='cdtest-missing:%s'
                                        % uuidlib.uuid4().hex[:6]))
    assert docker_env.IMAGE in str(exc.value)
    assert _ours(api, host) == []


# -- images -----------------------------------------------------------------

def test_image_loaded_from_image_directory(api, make_driver, tmp_path):
    ref = 'cdtest-tarball/busybox:%s' % uuidlib.uuid4().hex[:8]
    repo, tag = ref.split(':')
    api.tag(docker_env.IMAGE, repo, tag)
    path = tmp_path / ('cdtest-tarball_busybox:%s.tar' % tag)
    try:
        with open(path, 'wb') as f:
            for chunk in api.get_image(ref):
                f.write(chunk)
    finally:
        api.remove_image(ref)
    backend = make_driver(image_directory=str(tmp_path), images=[])
    assert ref in [m.name for m in backend.list_images()]
    instance = _instance(image=ref)
    try:
        _spawn(backend, instance)
        assert backend.get_info(instance).state == power_state.RUNNING
        assert api.inspect_image(ref)['RepoTags']
    finally:
        backend.destroy(instance)
        api.remove_image(ref, force=True)


def test_snapshot_is_saved_to_image_directory(api, make_driver, tmp_path):
    backend = make_driver(image_directory=str(tmp_path))
    instance = _instance()
    _spawn(backend, instance)
    snapshot = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    backend.snapshot(instance, snapshot)
    try:
        path = tmp_path / (snapshot + '.tar')
        assert path.stat().st_size > 0
        # The tenant's data: for the service's user only.
        assert path.stat().st_mode & 0o777 == 0o600
        listed = [m for m in backend.list_images() if m.name == snapshot]
        assert listed[0].properties['instance_uuid'] == instance.uuid
    finally:
        backend.delete_snapshot(snapshot)
    assert not path.exists()


def test_revert_keeps_identity_and_restores_the_disk(api, backend):
    events = fixtures.EventRecorder()
    backend.register_event_listener(events)
    instance = _instance(metadata={'k': 'v'})
    _spawn(backend, instance)
    name = 'compute-driver-' + instance.uuid
    snapshot = 'cdtest-snap-%s' % uuidlib.uuid4().hex[:8]
    exec_id = api.exec_create(name, ['sh', '-c', 'echo one > /root/marker'])
    api.exec_start(exec_id)
    backend.snapshot(instance, snapshot)
    exec_id = api.exec_create(name, ['sh', '-c', 'echo two > /root/marker'])
    api.exec_start(exec_id)
    old_id = backend.get_info(instance).internal_id
    try:
        backend.revert_to_snapshot(instance, snapshot)
        info = backend.get_info(instance)
        assert info.state == power_state.RUNNING
        assert info.internal_id != old_id
        assert backend.find_instance(instance.uuid).instance == instance
        exec_id = api.exec_create(name, ['cat', '/root/marker'])
        assert api.exec_start(exec_id).strip() == b'one'
        assert len(_ours(api, backend.conf.host)) == 1
    finally:
        backend.destroy(instance)
        backend.delete_snapshot(snapshot)


# -- resource totals ---------------------------------------------------------
# Claims and get_available_resource use running totals kept from the
# driver's own operations and the event stream; these count the listings
# they make and check the totals against other processes and docker rm.


def _count_listings(backend, monkeypatch):
    """Record the container listings ``backend`` makes from now on."""
    calls = []
    listing = backend.api.containers

    def counted(*args, **kwargs):
        calls.append(kwargs.get('filters'))
        return listing(*args, **kwargs)
    monkeypatch.setattr(backend.api, 'containers', counted)
    return calls


def _await_totals(backend, container_name, memory_mb):
    """Wait for the events that bring ``backend`` to ``memory_mb`` used."""
    deadline = time.monotonic() + 15
    with backend._waiters.watching(container_name) as changed:
        while backend.get_available_resource(None).memory_mb_used != (
                memory_mb):
            assert time.monotonic() < deadline, 'totals never caught up'
            changed.wait(1)
            changed.clear()


def test_other_processes_and_docker_rm_count_without_listing(
        api, make_driver, monkeypatch):
    ours, other = make_driver(), make_driver()
    assert ours.get_available_resource(None).memory_mb_used == 0
    events = fixtures.EventRecorder()
    ours.register_event_listener(events)
    listings = _count_listings(ours, monkeypatch)

    instance = _instance()
    _spawn(other, instance)
    # The start follows the create in the stream.
    events.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STARTED, 15)
    resources = ours.get_available_resource(None)
    assert (resources.vcpus_used, resources.memory_mb_used,
            resources.running_vms) == (1, 64, 1)
    with pytest.raises(exception.InstanceExists):
        _spawn(ours, _instance(name=instance.name))

    name = 'compute-driver-' + instance.uuid
    with ours._waiters.watching(name):
        api.remove_container(name, force=True)
        _await_totals(ours, name, 0)
    assert ours.get_available_resource(None).running_vms == 0
    assert listings == []


def test_parallel_spawns_fill_the_host_exactly(api, make_driver,
                                               monkeypatch):
    # Room for exactly 3 one-vCPU instances.
    ncpu = api.info()['NCPU']
    backend = make_driver(DEFAULT={'cpu_allocation_ratio': 3.5 / ncpu})
    assert backend.get_available_resource(None).vcpus_used == 0
    listings = _count_listings(backend, monkeypatch)
    instances = [_instance() for _ in range(6)]

    def spawn(instance):
        try:
            _spawn(backend, instance)
        except exception.InsufficientResources:
            return False
        return True

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(spawn, instances))
    assert results.count(True) == 3
    spawned = [i for i, ok in zip(instances, results) if ok]
    assert sorted(backend.list_instance_uuids()) == sorted(
        i.uuid for i in spawned)
    # A destroy frees its share at once, without waiting for its event.
    backend.destroy(spawned[0])
    _spawn(backend, instances[results.index(False)])
    assert backend.get_available_resource(None).vcpus_used == 3
    # Only list_instance_uuids listed.
    assert len(listings) == 1


def test_ratio_in_the_old_docker_section_is_honoured(api, host, tmp_path):
    # Before the ratios moved to [DEFAULT], they were [docker] options;
    # an old file keeps working. Room for exactly one one-vCPU instance.
    ratio = 1.5 / api.info()['NCPU']
    path = tmp_path / 'old.conf'
    path.write_text(
        '[DEFAULT]\ncompute_driver = docker\nhost = %s\n'
        '[docker]\napi_url = %s\nnetwork_mode = none\n'
        'cpu_allocation_ratio = %r\n' % (host, docker_env.API_URL, ratio))
    backend = loader.load_driver(cdconf.build_conf(config_files=[str(path)]))
    backend.init_host(host)
    try:
        assert backend.allocation_ratio('vcpus') == ratio
        _spawn(backend, _instance())
        with pytest.raises(exception.InsufficientResources) as exc:
            _spawn(backend, _instance())
        assert '1 requested, 0 free of 1' in str(exc.value)
    finally:
        for record in backend.list_instance_records():
            backend.destroy(record.instance)
        backend.cleanup_host(host)
    assert _ours(api, host) == []


def test_first_claim_of_a_process_lists_once(make_driver, monkeypatch):
    backend = make_driver()
    listings = _count_listings(backend, monkeypatch)
    _spawn(backend, _instance())
    _spawn(backend, _instance())
    assert len(listings) == 1


def test_sync_interval_zero_lists_at_every_claim(make_driver,
                                                 monkeypatch):
    backend = make_driver(usage_sync_interval=0)
    listings = _count_listings(backend, monkeypatch)
    _spawn(backend, _instance())
    _spawn(backend, _instance())
    assert len(listings) == 2


def test_host_identity_is_the_daemon_id(api, backend):
    assert backend.get_host_identity() == api.info()['ID']
