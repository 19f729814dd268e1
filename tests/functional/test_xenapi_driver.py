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

"""The xenapi backend against the simulator: what the conformance suite
cannot set up (pool members, expiring sessions, failures, TLS)."""

import atexit
import shutil
import subprocess
import tempfile

import pytest
import XenAPI

from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures
from compute_driver.testing import xapi_simulator
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    xapi_simulator as simulator)
from compute_driver.xenapi import connection

IMAGE = 'Debian_Bookworm_12'
SEED_NETWORK = 'Pool-wide network associated with eth0'


#: The local image service snapshots go to, for this process's tests.
IMAGE_DIR = tempfile.mkdtemp(prefix='cdtest-xenapi-images-')
atexit.register(shutil.rmtree, IMAGE_DIR, ignore_errors=True)


def _driver(sim, **options):
    conf = fixtures.make_conf('xenapi', {
        'xenapi': sim_fixture.xenapi_options(sim, **options),
        'image_service': sim_fixture.image_service_options(IMAGE_DIR)})
    backend = loader.load_driver(conf)
    backend.init_host(conf.host)
    return backend


@pytest.fixture
def backends():
    made = []
    yield made
    for backend in made:
        backend.cleanup_host('test')


@pytest.fixture
def make_driver(backends):
    def make(sim, **options):
        backend = _driver(sim, **options)
        backends.append(backend)
        return backend
    return make


def _instance(name='vm1', flavor='m1.nano'):
    conf = fixtures.make_conf('fake')
    return objects.Instance.new(name, flavors.get_flavor(conf, flavor),
                                IMAGE)


def _spawn(backend, instance, power_on=True):
    backend.spawn(instance, power_on=power_on)


def _vdis(sim):
    return {ref for ref, rec in sim.objects('VDI').items()}


def _vms(sim):
    return {ref for ref, rec in sim.objects('VM').items()
            if not rec['is_a_template'] and not rec['is_control_domain']}


def test_spawn_and_destroy_leave_no_vm_or_vdi(simulator,  # noqa: F811
                                              make_driver):
    backend = make_driver(simulator)
    vdis, vms = _vdis(simulator), _vms(simulator)
    instance = _instance()
    _spawn(backend, instance)
    [vm] = _vms(simulator) - vms
    record = simulator.objects('VM')[vm]
    assert record['power_state'] == 'Running'
    assert record['name_label'] == instance.name
    assert record['other_config']['compute_driver_uuid'] == instance.uuid
    assert record['VCPUs_max'] == '1'
    assert record['memory_static_max'] == str(64 * 1024 * 1024)
    [vdi] = _vdis(simulator) - vdis
    # m1.nano's 1 GiB root disk, not the template's 10 GiB.
    assert simulator.objects('VDI')[vdi]['virtual_size'] == str(1024 ** 3)
    # No ports, no [xenapi] network_name: no VIF, as on the other backends.
    assert record['VIFs'] == []
    backend.destroy(instance)
    assert _vms(simulator) == vms
    assert _vdis(simulator) == vdis


def test_destroy_spares_shared_disks(simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    instance = _instance()
    _spawn(backend, instance, power_on=False)
    ref = backend.get_info(instance).internal_id
    session = XenAPI.Session(simulator.url)
    session.xenapi.login_with_password('root', 'password', '2.21', 't')
    sr = session.xenapi.pool.get_default_SR(
        session.xenapi.pool.get_all()[0])
    shared = session.xenapi.VDI.create({
        'name_label': 'shared', 'SR': sr, 'virtual_size': '1024',
        'type': 'user', 'sharable': True, 'read_only': False,
        'other_config': {}})
    session.xenapi.VBD.create({'VM': ref, 'VDI': shared, 'userdevice': '1',
                               'bootable': False, 'mode': 'RW',
                               'type': 'Disk', 'empty': False})
    backend.destroy(instance)
    assert shared in simulator.objects('VDI')


def test_member_url_reaches_the_master(simulator, make_driver):  # noqa
    member = simulator.add_member()
    backend = make_driver(simulator, connection_url=member.url)
    instance = _instance()
    _spawn(backend, instance)
    assert backend._pool.url == simulator.url
    assert [r.instance for r in backend.list_instance_records()] == [
        instance]
    backend.destroy(instance)


def test_expired_sessions_log_in_again(simulator, make_driver):  # noqa
    backend = make_driver(simulator)
    events = fixtures.EventRecorder()
    backend.register_event_listener(events)
    instance = _instance()
    _spawn(backend, instance)
    events.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STARTED, 10)
    # A xapi restart: every session, the event thread's included, is gone.
    assert simulator.invalidate_sessions() >= 2
    mark = events.mark()
    backend.power_off(instance)
    assert backend.get_info(instance).state == 4
    events.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STOPPED, 10,
                    since=mark)
    backend.destroy(instance)


def test_wrong_password_is_a_clear_error(simulator):  # noqa: F811
    with pytest.raises(exception.HypervisorUnavailable) as info:
        _driver(simulator, password='not-the-s3cret')
    assert 'wrong user name or password' in str(info.value)
    assert 'not-the-s3cret' not in str(info.value)


def test_vm_destroyed_out_of_band(simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    events = fixtures.EventRecorder()
    backend.register_event_listener(events)
    instance = _instance()
    _spawn(backend, instance)
    events.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STARTED, 10)
    ref = backend.get_info(instance).internal_id
    session = XenAPI.Session(simulator.url)
    session.xenapi.login_with_password('root', 'password', '2.21', 't')
    session.xenapi.VM.hard_shutdown(ref)
    session.xenapi.VM.destroy(ref)
    events.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STOPPED, 10)
    with pytest.raises(exception.InstanceNotFound):
        backend.get_info(instance)
    with pytest.raises(exception.InstanceNotFound):
        backend.power_on(instance)
    backend.destroy(instance)
    assert instance.uuid not in backend.list_instance_uuids()


def test_own_transitions_once_and_outside_ones_too(simulator,  # noqa
                                                   make_driver):
    # XAPI batches changes: the driver announces its own transitions and
    # its event thread must neither repeat them nor miss another's.
    backend = make_driver(simulator)
    events = fixtures.EventRecorder()
    backend.register_event_listener(events)
    instance = _instance()
    _spawn(backend, instance)
    backend.power_off(instance)
    backend.power_on(instance)
    mark = events.mark()
    ref = backend.get_info(instance).internal_id
    session = XenAPI.Session(simulator.url)
    session.xenapi.login_with_password('root', 'password', '2.21', 't')
    try:
        session.xenapi.VM.pause(ref)
    finally:
        session.xenapi.session.logout()
    # Its event comes after any the watcher made of the driver's changes.
    events.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_PAUSED, 10,
                    since=mark)
    assert events.transitions(instance.uuid) == [
        virtevent.EVENT_LIFECYCLE_STARTED, virtevent.EVENT_LIFECYCLE_STOPPED,
        virtevent.EVENT_LIFECYCLE_STARTED, virtevent.EVENT_LIFECYCLE_PAUSED]
    backend.destroy(instance)


@pytest.mark.parametrize('method', [
    'VM.clone', 'VM.set_other_config', 'VM.set_name_label',
    'VM.set_memory_limits', 'VIF.create', 'VM.provision', 'VM.start'])
def test_half_failed_spawn_leaves_nothing(simulator, make_driver,  # noqa
                                          method):
    # An instance without ports gets a VIF on the configured network.
    backend = make_driver(simulator, network_name=SEED_NETWORK)
    vdis, vms = _vdis(simulator), _vms(simulator)
    before = backend.get_available_resource(None)
    simulator.fail(method, 'INTERNAL_ERROR', 'injected')
    instance = _instance()
    with pytest.raises(exception.BackendError) as info:
        _spawn(backend, instance)
    assert 'INTERNAL_ERROR injected' in str(info.value)
    assert _vms(simulator) == vms
    assert _vdis(simulator) == vdis
    assert instance.name not in [
        r['name_label'] for r in simulator.objects('VM').values()]
    after = backend.get_available_resource(None)
    assert (after.memory_mb_used, after.local_gb_used) == (
        before.memory_mb_used, before.local_gb_used)


def test_host_without_memory_refuses_start(simulator, make_driver):  # noqa
    backend = make_driver(simulator)
    instance = _instance(flavor='m1.xlarge')
    # The claim passes (64 GiB host) but another VM uses the memory.
    session = XenAPI.Session(simulator.url)
    session.xenapi.login_with_password('root', 'password', '2.21', 't')
    [template] = session.xenapi.VM.get_by_name_label('Other install media')
    hog = session.xenapi.VM.clone(template, 'hog')
    session.xenapi.VM.set_is_a_template(hog, False)
    size = str(60 * 1024 ** 3)
    session.xenapi.VM.set_memory_limits(hog, size, size, size, size)
    session.xenapi.VM.start(hog, False, False)
    with pytest.raises(exception.InsufficientResources):
        _spawn(backend, instance)
    assert instance.uuid not in backend.list_instance_uuids()


def test_flavor_larger_than_the_host_is_refused_before_xapi_acts(
        simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    host_vcpus = backend.get_available_resource(None).vcpus
    big = objects.Flavor('big', host_vcpus + 1, 64, 1)
    instance = objects.Instance.new('vm-big', big, IMAGE)
    vms, vdis = _vms(simulator), _vdis(simulator)
    before = simulator.api.calls.copy()
    with pytest.raises(exception.FlavorExceedsHost) as caught:
        _spawn(backend, instance)
    assert caught.value.resource == 'vcpus'
    made = simulator.api.calls - before
    assert not [name for name in made
                if name.split('.')[-1] in ('clone', 'provision')]
    assert _vms(simulator) == vms and _vdis(simulator) == vdis


def test_snapshot_revert_and_live_resize(simulator, make_driver):  # noqa
    backend = make_driver(simulator)
    instance = _instance(flavor='m1.small')
    _spawn(backend, instance)
    ref = backend.get_info(instance).internal_id
    backend.snapshot(instance, 'snap1', None)
    [image] = [m for m in backend.list_images() if m.name == 'snap1']
    assert image.properties['instance_uuid'] == instance.uuid
    disk_before = simulator.objects('VM')[ref]['VBDs']
    backend.revert_to_snapshot(instance, 'snap1')
    assert backend.get_info(instance).state == 1
    assert simulator.objects('VM')[ref]['VBDs'] != disk_before
    backend.live_resize(instance, vcpus=1, memory_mb=1024)
    diagnostics = backend.get_diagnostics(instance)
    assert (diagnostics['vcpus'], diagnostics['memory_mb']) == (1, 1024)
    record = simulator.objects('VM')[ref]
    metrics = simulator.objects('VM_metrics')[record['metrics']]
    assert metrics['VCPUs_number'] == '1'
    assert metrics['memory_actual'] == str(1024 * 1024 * 1024)
    backend.destroy(instance)
    backend.delete_snapshot('snap1')
    assert 'snap1' not in [m.name for m in backend.list_images()]


def test_resources_come_from_the_host(simulator, make_driver):  # noqa
    backend = make_driver(simulator)
    resources = backend.get_available_resource(None)
    assert (resources.vcpus, resources.memory_mb, resources.local_gb) == (
        16, 65536, 500)
    assert resources.hypervisor_version == 8002001
    assert resources.hypervisor_hostname == 'xapi-sim'
    assert backend.get_host_ip_addr() == '127.0.0.1'


def test_images_list_the_default_template_first(simulator,  # noqa
                                                make_driver):
    backend = make_driver(simulator)
    images = backend.list_images()
    assert images[0].name == IMAGE
    assert images[0].properties['name_label'] == 'Debian Bookworm 12'
    assert 'Other_install_media' in [m.name for m in images]
    with pytest.raises(exception.InvalidInput):
        backend.delete_snapshot(IMAGE)


@pytest.fixture(scope='module')
def certificate(tmp_path_factory):
    if shutil.which('openssl') is None:
        fixtures.skip_or_fail('the openssl tool is needed to make a test '
                              'certificate (tools/test-setup.d/'
                              '40-xenapi.sh installs it)')
    directory = tmp_path_factory.mktemp('tls')
    cert, key = directory / 'cert.pem', directory / 'key.pem'
    subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
         '-keyout', str(key), '-out', str(cert), '-days', '2',
         '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
        check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture
def tls_simulator(certificate):
    sim = xapi_simulator.Simulator(certfile=certificate[0],
                                   keyfile=certificate[1]).start()
    yield sim
    sim.stop()


def test_tls_is_verified_by_default(tls_simulator):
    assert tls_simulator.url.startswith('https://')
    with pytest.raises(exception.HypervisorUnavailable) as info:
        _driver(tls_simulator)
    assert 'CERTIFICATE_VERIFY_FAILED' in str(info.value)


def test_tls_with_the_ca_file(tls_simulator, certificate, make_driver):
    backend = make_driver(tls_simulator, ca_file=certificate[0])
    assert backend.get_available_nodes() == ['xapi-sim']


def test_tls_hostname_mismatch_advises_the_url(tls_simulator, certificate):
    # The certificate names 127.0.0.1 only; localhost reaches the same
    # server under a name it does not list.
    url = 'https://localhost:%d/' % tls_simulator.port
    with pytest.raises(exception.HypervisorUnavailable) as info:
        _driver(tls_simulator, connection_url=url, ca_file=certificate[0])
    message = str(info.value)
    assert 'does not name localhost' in message
    assert '[xenapi] connection_url' in message
    assert 'set [xenapi] ca_file' not in message and '\n' not in message


def test_tls_with_another_ca_names_the_ca_file(tls_simulator, tmp_path):
    other = tmp_path / 'other'
    other.mkdir()
    subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
         '-keyout', str(other / 'key.pem'), '-out', str(other / 'ca.pem'),
         '-days', '2', '-subj', '/CN=other-ca'],
        check=True, capture_output=True)
    with pytest.raises(exception.HypervisorUnavailable) as info:
        _driver(tls_simulator, ca_file=str(other / 'ca.pem'))
    message = str(info.value)
    assert 'not signed by a CA in [xenapi] ca_file (%s)' % (
        other / 'ca.pem') in message


def test_tls_unverified_when_asked(tls_simulator, make_driver):
    backend = make_driver(tls_simulator, verify_certificate=False)
    assert backend.get_available_nodes() == ['xapi-sim']


def test_cleanup_host_logs_every_session_out(simulator):  # noqa: F811
    backend = _driver(simulator)
    instance = _instance()
    _spawn(backend, instance)
    backend.destroy(instance)
    assert simulator.objects('session')
    backend.cleanup_host('test')
    assert simulator.objects('session') == {}


def test_host_identity_is_the_pool_masters_uuid(simulator,  # noqa: F811
                                                make_driver):
    backend = make_driver(simulator)
    [pool] = simulator.objects('pool').values()
    master = simulator.objects('host')[pool['master']]
    assert backend.get_host_identity() == master['uuid']


def test_sweep_removes_an_image_vdi_its_spawn_never_attached(
        simulator, make_driver):  # noqa: F811
    from compute_driver import leftovers
    from compute_driver.xenapi import mapping
    backend = make_driver(simulator)
    session = XenAPI.Session(simulator.url)
    session.xenapi.login_with_password('root', 'password', '2.21', 't')
    sr = session.xenapi.pool.get_default_SR(session.xenapi.pool.get_all()[0])
    boot = leftovers.owner_label().split('/')[0]
    # A process of this boot that is gone: pids stay below 2**22.
    dead = '%s/%d/1' % (boot, 2 ** 22 + 1)
    uuid = '0f0f0f0f-0000-4000-8000-000000000000'

    def vdi(owner):
        return session.xenapi.VDI.create({
            'name_label': mapping.spawn_name(owner, uuid),
            'name_description': '', 'SR': sr, 'virtual_size': '1048576',
            'type': 'system', 'sharable': False, 'read_only': False,
            'other_config': {}, 'xenstore_data': {}, 'sm_config': {},
            'tags': []})
    # Another machine's spawn may still run: left alone.
    orphan, elsewhere = vdi(dead), vdi('other-boot/1/1')
    orphan_uuid = session.xenapi.VDI.get_uuid(orphan)
    found = [f for f in backend.cleanup_leftovers() if 'VDI' in f.what]
    assert [(f.what.split()[1], f.removed) for f in found] == [
        (orphan_uuid, True)]
    assert orphan not in simulator.objects('VDI')
    assert elsewhere in simulator.objects('VDI')
    session.xenapi.VDI.destroy(elsewhere)
    session.xenapi.session.logout()


def test_a_session_calls_with_its_timeout_not_the_logins(
        simulator):  # noqa: F811
    # The event thread's session logs in with the login timeout, then
    # long-polls on the same connection: a socket left with the login's
    # timeout broke every poll that waited longer.
    pool = connection.SessionPool(
        url=simulator.url, username=sim_fixture.USERNAME,
        password=sim_fixture.PASSWORD, size=1, verify=False, ca_file=None,
        call_timeout=30, login_timeout=1, wait_timeout=5, originator='t')
    session = pool.login(timeout=42)
    try:
        session.xenapi.pool.get_all()
        assert session.transport._current.sock.gettimeout() == 42
    finally:
        pool.logout(session)
