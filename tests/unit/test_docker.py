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

"""The docker backend's helpers, without a dockerd.

What needs the daemon is in tests/functional/test_docker*.py.
"""

import contextvars
import io
import json
import tarfile
import threading

import pytest

from compute_driver import conf as cdconf
from compute_driver.docker import connection
from compute_driver.docker import events as devents
from compute_driver.docker import hostconfig
from compute_driver.docker import images as dimages
from compute_driver.docker import mapping
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import loader
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures

MIB = 1024 * 1024


def _conf(**docker_options):
    return fixtures.make_conf('docker', {'docker': docker_options})


def _flavor(**fields):
    values = {'name': 'x1', 'vcpus': 2, 'memory_mb': 256}
    values.update(fields)
    return objects.Flavor(**values)


# -- mapping ----------------------------------------------------------------

@pytest.mark.parametrize('docker_state,expected', [
    ('created', power_state.SHUTDOWN),
    ('running', power_state.RUNNING),
    ('paused', power_state.PAUSED),
    ('restarting', power_state.CRASHED),
    ('exited', power_state.SHUTDOWN),
    ('dead', power_state.CRASHED),
    ('removing', power_state.NOSTATE),
    ('Running', power_state.RUNNING),
    ('something-new', power_state.NOSTATE),
    (None, power_state.NOSTATE),
])
def test_power_state_mapping(docker_state, expected):
    assert mapping.power_state_of(docker_state) == expected


def test_labels_round_trip_with_awkward_characters():
    instance = objects.Instance.new(
        'vm-1', _flavor(extra_specs={'hw:cpu_policy': 'dedicated'}),
        'registry.example.com:5000/ns/img:1.0',
        metadata={'quoting': 'a & b <c> "d" \'e\'', 'ü': '\n'})
    labels = mapping.instance_labels(instance, 'host-a')
    assert all(isinstance(v, str) for v in labels.values())
    assert labels[mapping.HOST] == 'host-a'
    assert mapping.instance_from_labels(labels) == instance


@pytest.mark.parametrize('labels', [
    None, {}, {mapping.UUID: ''},
    {mapping.UUID: 'not-a-uuid', mapping.NAME: 'x', mapping.IMAGE: 'i',
     mapping.FLAVOR: json.dumps(_flavor().to_dict())},
    {mapping.UUID: '6f7b4c1e-8f7b-4d5e-9b1a-0e2d3c4b5a69',
     mapping.NAME: 'x', mapping.IMAGE: 'i', mapping.FLAVOR: '[1]'},
    {mapping.UUID: '6f7b4c1e-8f7b-4d5e-9b1a-0e2d3c4b5a69',
     mapping.NAME: 'x', mapping.IMAGE: 'i', mapping.FLAVOR: '{not json'},
])
def test_damaged_labels_are_refused(labels):
    with pytest.raises(exception.InvalidInput):
        mapping.instance_from_labels(labels)
    assert mapping.record_from_summary({'Id': 'c1', 'Labels': labels,
                                        'State': 'running'}) is None


def test_record_from_summary():
    instance = objects.Instance.new('vm', _flavor(), 'img')
    record = mapping.record_from_summary({
        'Id': 'abc', 'State': 'paused',
        'Labels': mapping.instance_labels(instance, 'h')})
    assert record.instance == instance
    assert record.info == objects.InstanceInfo(power_state.PAUSED, 'abc')


def test_image_file_name():
    assert mapping.image_file_name('a/b/c:1') == 'a_b_c:1.tar'


# -- host config ------------------------------------------------------------

def test_host_config_defaults_are_hardened():
    args = hostconfig.host_config_args(_conf(), _flavor())
    assert args['mem_limit'] == args['memswap_limit'] == 256 * MIB
    assert args['cpu_quota'] == 2 * args['cpu_period'] == 200000
    assert args['privileged'] is False
    assert args['cap_drop'] == ['ALL']
    assert 'NET_RAW' not in args['cap_add']
    assert 'no-new-privileges' in args['security_opt']
    assert args['pids_limit'] == 1024
    assert args['read_only'] is False
    assert args['network_mode'] == 'bridge'
    assert args['restart_policy'] == {'Name': 'no'}


def test_swap_is_added_to_memory():
    args = hostconfig.host_config_args(_conf(), _flavor(swap=128))
    assert args['memswap_limit'] == 384 * MIB


def test_memory_below_docker_minimum():
    with pytest.raises(exception.InvalidInput) as exc:
        hostconfig.host_config_args(_conf(), _flavor(memory_mb=5))
    assert 'at least 6 MiB' in str(exc.value)
    hostconfig.host_config_args(_conf(), _flavor(memory_mb=6))


def test_privileged_needs_the_operator():
    flavor = _flavor(extra_specs={'docker:privileged': 'True'})
    with pytest.raises(exception.InvalidInput):
        hostconfig.host_config_args(_conf(), flavor)
    args = hostconfig.host_config_args(_conf(allow_privileged=True), flavor)
    assert args['privileged'] is True
    assert 'cap_drop' not in args


@pytest.mark.parametrize('value,expected', [('0', None), ('50', 50)])
def test_pids_limit_extra_spec(value, expected):
    args = hostconfig.host_config_args(
        _conf(), _flavor(extra_specs={'quota:pids_limit': value}))
    assert args.get('pids_limit') == expected


@pytest.mark.parametrize('value', ['-1', 'many'])
def test_bad_pids_limit_extra_spec(value):
    with pytest.raises(exception.InvalidInput):
        hostconfig.host_config_args(
            _conf(), _flavor(extra_specs={'quota:pids_limit': value}))


def test_security_options(tmp_path):
    profile = tmp_path / 'seccomp.json'
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    group = _conf(apparmor_profile='my-profile', selinux_labels=['level:s0'],
                  seccomp_profile=str(profile), no_new_privileges=False,
                  read_only_root=True).docker
    options = hostconfig.security_options(group)
    assert options == ['apparmor=my-profile', 'label=level:s0',
                       'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}']
    assert hostconfig.security_options(
        _conf(seccomp_profile='unconfined').docker)[-1] == (
        'seccomp=unconfined')
    with pytest.raises(exception.InvalidConfiguration):
        hostconfig.security_options(
            _conf(seccomp_profile=str(tmp_path / 'missing.json')).docker)


def test_read_only_root_gets_tmpfs():
    args = hostconfig.host_config_args(_conf(read_only_root=True), _flavor())
    assert args['read_only'] is True
    assert set(args['tmpfs']) == {'/tmp', '/run'}


def test_host_network_needs_the_operator():
    with pytest.raises(exception.InvalidConfiguration):
        hostconfig.host_config_args(_conf(network_mode='host'), _flavor())
    args = hostconfig.host_config_args(
        _conf(network_mode='host', allow_host_network=True), _flavor())
    assert args['network_mode'] == 'host'


def test_current_limits():
    assert hostconfig.current_limits({}) == (None, None)
    assert hostconfig.current_limits({
        'CpuQuota': 150000, 'CpuPeriod': 100000,
        'Memory': 64 * MIB}) == (2, 64)
    assert hostconfig.current_limits({'NanoCpus': 10 ** 9}) == (1, None)
    limits = hostconfig.Limits(vcpus=3, memory_mb=32, swap_mb=16)
    assert limits.update_args() == {
        'cpu_period': 100000, 'cpu_quota': 300000,
        'mem_limit': 32 * MIB, 'memswap_limit': 48 * MIB}


# -- TLS --------------------------------------------------------------------

@pytest.fixture
def pem(tmp_path):
    path = tmp_path / 'ca.pem'
    path.write_text('not checked before use')
    return str(path)


def test_no_tls_by_default():
    assert connection.tls_config(_conf().docker) is False


def test_tls_verifies_by_default_against_the_ca(pem):
    group = _conf(api_url='tcp://dockerd:2376', tls_ca_cert=pem).docker
    tls = connection.tls_config(group)
    assert tls.verify == pem
    assert connection.base_url(group) == 'https://dockerd:2376'


def test_tls_verify_off_means_off(pem):
    tls = connection.tls_config(_conf(api_url='tcp://dockerd:2376',
                                      tls_ca_cert=pem,
                                      tls_verify=False).docker)
    assert tls.verify is False


def test_tls_without_ca_verifies_against_the_system():
    tls = connection.tls_config(_conf(api_url='tcp://dockerd:2376',
                                      tls=True).docker)
    assert tls.verify is True


@pytest.mark.parametrize('options', [
    {'api_url': 'unix:///var/run/docker.sock', 'tls': True},
    {'api_url': 'tcp://dockerd:2376', 'tls_client_cert': '/c.pem'},
])
def test_bad_tls_options(options):
    with pytest.raises(exception.InvalidConfiguration):
        connection.tls_config(_conf(**options).docker)


def test_configured_ca_beats_requests_environment(monkeypatch, pem):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/etc/ssl/certs/bundle.crt')
    for verify in (pem, False):
        api = connection.APIClient(base_url='https://127.0.0.1:1',
                                   version='1.41')
        api.verify = verify
        settings = api.merge_environment_settings(
            'https://127.0.0.1:1/v1.41/info', {}, False, None, None)
        assert settings['verify'] == verify
        api.close()


def test_old_api_version_is_refused():
    # An explicit version is not negotiated, so nothing is contacted.
    conf = _conf(api_url='tcp://127.0.0.1:1', api_version='1.24')
    with pytest.raises(exception.HypervisorVersionTooOld) as exc:
        connection.connect(conf)
    assert '1.25' in str(exc.value)


def test_unreachable_daemon_is_unavailable(tmp_path):
    conf = _conf(api_url='unix://%s' % (tmp_path / 'no.sock'))
    with pytest.raises(exception.HypervisorUnavailable):
        connection.connect(conf)


def test_driver_refuses_bad_options_when_built():
    conf = _conf(network_mode='host')
    with pytest.raises(exception.InvalidConfiguration):
        loader.load_driver(conf, 'docker')


@pytest.mark.parametrize('section', ['DEFAULT', 'docker'])
def test_allocation_ratios_and_their_old_section(tmp_path, section):
    # [docker] held the ratios before [DEFAULT] did: old files still work.
    path = tmp_path / 'compute-driver.conf'
    path.write_text('[DEFAULT]\ncompute_driver = docker\n[%s]\n'
                    'cpu_allocation_ratio = 2.5\n'
                    'disk_allocation_ratio = 1.5\n' % section)
    backend = loader.load_driver(cdconf.build_conf(config_files=[str(path)]))
    assert (backend.allocation_ratio('vcpus'),
            backend.allocation_ratio('memory_mb'),
            backend.allocation_ratio('disk_gb')) == (2.5, 1.0, 1.5)
    assert 'cpu_allocation_ratio' not in backend.conf.docker


def test_allocation_ratio_defaults():
    backend = loader.load_driver(_conf(), 'docker')
    assert backend.runs_containers is True
    assert [backend.allocation_ratio(r)
            for r in ('vcpus', 'memory_mb', 'disk_gb')] == [16.0, 1.0, 1.0]


def test_docker_entry_point_loads():
    cls = loader.load_driver_class('docker')
    assert cls.hypervisor_type == 'docker'
    assert cls.capabilities['supports_pause'] is True
    assert cls.capabilities['supports_suspend'] is False


# -- images -----------------------------------------------------------------

@pytest.mark.parametrize('ref,expected', [
    ('busybox', ('busybox', 'latest')),
    ('busybox:1.36', ('busybox', '1.36')),
    ('registry:5000/ns/img', ('registry:5000/ns/img', 'latest')),
    ('registry:5000/ns/img:2', ('registry:5000/ns/img', '2')),
])
def test_split_tag(ref, expected):
    assert dimages.split_tag(ref) == expected
    assert dimages.canonical(ref) == '%s:%s' % expected


def _tarball(path, tags):
    with tarfile.open(path, 'w') as tar:
        data = json.dumps([{'RepoTags': tags, 'Layers': []}]).encode()
        info = tarfile.TarInfo('manifest.json')
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_tarballs_are_listed_by_their_manifest(tmp_path):
    _tarball(tmp_path / 'ns_img:1.tar', ['ns/img:1'])
    _tarball(tmp_path / 'my_image:2.tar', ['my_image:2'])
    _tarball(tmp_path / 'wrong-name.tar', ['other:1'])
    (tmp_path / 'broken.tar').write_text('not a tar')

    class Api:
        def images(self):
            return []

    store = dimages.ImageStore(Api(), _conf(
        image_directory=str(tmp_path)).docker)
    assert [m.name for m in store.list_images()] == ['my_image:2',
                                                     'ns/img:1']
    assert store.tarball('ns/img:1') == str(tmp_path / 'ns_img:1.tar')
    assert store.tarball('ns/img') is None


# -- events -----------------------------------------------------------------

class _Stream:
    def __init__(self, events, fail):
        self.events = events
        self.fail = fail
        self.closed = False

    def __iter__(self):
        yield from self.events
        if self.fail:
            raise ConnectionError('dockerd went away')

    def close(self):
        self.closed = True


class _EventApi:
    def __init__(self, streams):
        self.streams = streams
        self.since = []

    def events(self, since, filters, decode):
        self.since.append(since)
        return self.streams.pop(0) if self.streams else _Stream([], False)

    def close(self):
        pass


def _event(action, uuid, time_ns):
    return {'Type': 'container', 'Action': action, 'timeNano': time_ns,
            'Actor': {'Attributes': {mapping.UUID: uuid}}}


def test_watcher_reconnects_and_resumes_after_the_last_event(monkeypatch):
    monkeypatch.setattr(devents, 'RETRY_INITIAL', 0.01)
    uuid = '6f7b4c1e-8f7b-4d5e-9b1a-0e2d3c4b5a69'
    api = _EventApi([
        _Stream([_event('start', uuid, 2 * 10 ** 18),
                 _event('exec_start: sh', uuid, 2 * 10 ** 18 + 5)], True),
        _Stream([_event('die', uuid, 2 * 10 ** 18 + 10),
                 _event('pause', 'not-ours-but-labelled', 2 * 10 ** 18 + 11),
                 _event('unpause', '', 2 * 10 ** 18 + 12)], False),
    ])
    seen = []
    done = threading.Event()

    def emit(got_uuid, transition, timestamp):
        seen.append((got_uuid, transition))
        if len(seen) == 3:
            done.set()

    watcher = devents.EventWatcher(lambda: api, 'h', emit)
    assert watcher.start()
    assert done.wait(5)
    watcher.stop()
    assert seen == [(uuid, virtevent.EVENT_LIFECYCLE_STARTED),
                    (uuid, virtevent.EVENT_LIFECYCLE_STOPPED),
                    ('not-ours-but-labelled',
                     virtevent.EVENT_LIFECYCLE_PAUSED)]
    # The second connection asked for what followed the last event seen.
    assert api.since[1] == '2000000000.000000006'
    assert watcher.connections >= 2
    assert not watcher.alive


def test_missing_image_is_pulled_from_the_registry_and_tagged():
    from docker import errors as docker_errors

    class Api:
        def __init__(self):
            self.present = set()
            self.calls = []

        def inspect_image(self, ref):
            if dimages.canonical(ref) in self.present:
                return {'Id': 'sha256:1'}
            raise docker_errors.NotFound('no such image')

        def pull(self, repo, tag, auth_config):
            self.calls.append(('pull', repo, tag, auth_config))

        def tag(self, source, repo, tag):
            self.calls.append(('tag', source, repo, tag))
            self.present.add('%s:%s' % (repo, tag))

        def images(self):
            return []

    api = Api()
    store = dimages.ImageStore(api, _conf(
        registry='registry.example.com:5000', registry_username='u',
        registry_password='p').docker)
    assert store.ensure('ns/app') == {'Id': 'sha256:1'}
    assert api.calls == [
        ('pull', 'registry.example.com:5000/ns/app', 'latest',
         {'username': 'u', 'password': 'p',
          'serveraddress': 'registry.example.com:5000'}),
        ('tag', 'registry.example.com:5000/ns/app:latest', 'ns/app',
         'latest')]
    with pytest.raises(exception.ImageNotFound):
        dimages.ImageStore(api, _conf().docker).ensure('other/app:1')


@pytest.mark.parametrize('ref', [
    'snap', 'ns/snap:1.0', 'registry.example.com:5000/ns/snap',
    'my_snap__x-y.z:tag_1', 'localhost/snap'])
def test_valid_snapshot_names(ref):
    assert dimages.validate_reference(ref) == ref


@pytest.mark.parametrize('ref', [
    'UpperCase', 'snap!', '-dash', 'a//b', 'tag:', 'trailing-', 'a b',
    'x' * 256])
def test_invalid_snapshot_names(ref):
    with pytest.raises(exception.InvalidInput):
        dimages.validate_reference(ref)


def test_image_stream_downloads_within_the_callers_context():
    # An image service may keep the request's credentials in a context
    # variable (Nova's does); the download thread must see the caller's.
    request = contextvars.ContextVar('request', default='nobody')
    seen = []

    class Service:
        name = 'unit'

        def download(self, image_id, dest):
            seen.append(request.get())
            dest.write(b'tarball')

    loader = dimages.ServiceLoader(None, Service())
    image = dimages.ServiceImage(name='image-id', loader='load')
    request.set('alice')
    assert loader._stream(image, lambda body: b''.join(body)) == b'tarball'
    assert seen == ['alice']


@pytest.mark.parametrize('value, expected', [
    # dockerd writes nanoseconds; the fraction is kept to the microsecond.
    ('2026-12-02T18:20:11.123456789Z', 1796235611.123456),
    ('2026-12-02T19:20:11+01:00', 1796235611.0),
    # Never tagged (dockerd's zero time), missing or unreadable: the
    # oldest possible, so pruning may take it.
    ('0001-01-01T00:00:00Z', 0.0),
    (None, 0.0),
    ('yesterday', 0.0),
])
def test_tag_time(value, expected):
    assert dimages.tag_time(value) == pytest.approx(expected, abs=1e-6)
