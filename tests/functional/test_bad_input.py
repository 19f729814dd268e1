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

"""The bad-input table (tests/functional/badinput.py) on every backend.

Each backend gets the common cases and a short list of its own (URIs,
TLS, its options); every case must give its exit status and one line on
stderr, and leave the backend as it was: the containers of this run's
host, the libvirt domains of this run and the files under its instances
path, the simulator's VMs, disks and their connections.
"""

import importlib
import json
import os
import shutil
import types
import uuid as uuidlib

import pytest

from compute_driver import loader
from compute_driver.testing import fixtures
from compute_driver.testing.xapi_simulator import fixture as xapi_fixture
from compute_driver.testing.xapi_simulator import server as xapi_server
from tests.functional import badinput
from tests.functional import docker_env

Case = badinput.Case
BAD_CONFIG = badinput.BAD_CONFIG


def _prefix() -> str:
    return 'cdbad%s' % uuidlib.uuid4().hex[:6]


def _sdk(module: str) -> types.ModuleType:
    # test-requirements.txt installs every SDK: a missing one is a broken
    # environment, which CI must not skip.
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        fixtures.skip_or_fail('the %s SDK is not installed: %s'
                              % (module, exc))


def _setup(target: badinput.Target, tmp: str) -> None:
    """Boot the stopped (and running) instance the wrong-state cases use."""
    config = badinput.write_config(os.path.join(tmp, 'good.conf'), target)
    for name, extra in ((target.stopped, ('--stopped',)),
                        (target.running, ())):
        if not name:
            continue
        status = badinput.main.main([
            '--config-file', config, 'boot', name, '--image', target.image,
            '--flavor', target.flavor, '-f', 'value', '-c', 'state', *extra])
        assert status == 0, 'could not boot %s on %s' % (name, target.name)


def _teardown(target: badinput.Target, tmp: str) -> None:
    config = os.path.join(tmp, 'good.conf')
    for name in (target.stopped, target.running):
        if name:
            badinput.main.main(['--config-file', config, 'delete', name])


# -- fake ---------------------------------------------------------------------

FAKE_CASES = [
    Case('fake-negative-vcpus', ('check',), BAD_CONFIG + r'\[fake\] vcpus',
         config={'fake': {'vcpus': '-1'}}),
    Case('fake-word-memory', ('list',), BAD_CONFIG + r'\[fake\] memory_mb',
         config={'fake': {'memory_mb': 'lots'}}),
    Case('fake-bad-host-ip', ('check',), BAD_CONFIG + r'\[fake\] host_ip',
         config={'fake': {'host_ip': 'not-an-ip'}}),
    Case('fake-misspelt-option', ('check',),
         r'unknown option vcpu in section \[fake\] .*did you mean vcpus\?$',
         config={'fake': {'vcpu': '4'}}),
    # The commands share one backend (below), built with the default
    # 1000 vCPUs: under the cpu allocation ratio 1024 would fit, but no
    # flavor larger than the whole host ever does.
    Case('fake-more-vcpus-than-host', badinput._boot('{prefix}-v',
                                                     flavor='x1.cpus'),
         r'^Flavor x1.cpus asks for 1024 vcpus; .* has 1000 in all.$',
         config={'DEFAULT': {'flavor': 'x1.cpus:1024:64'}}),
]


@pytest.fixture(scope='module')
def fake_target(tmp_path_factory):
    # The fake backend keeps its instances in its process, so this run's
    # commands share one backend object as a real backend's commands
    # share its daemon; a configuration naming another backend, or one
    # that fails, still goes through the real loader.
    from compute_driver.fake import driver as fake_driver

    tmp = str(tmp_path_factory.mktemp('fake'))
    prefix = _prefix()
    target = badinput.Target(
        'fake', {'DEFAULT': {'compute_driver': 'fake', 'host': prefix}},
        image='cirros-0.6.3-x86_64-disk', flavor='m1.nano', prefix=prefix,
        state=lambda: None, stopped=prefix + '-stopped',
        running=prefix + '-running')
    shared: list[fake_driver.FakeDriver] = []
    real = loader.load_driver

    def load_driver(conf, name=None, virtapi=None):
        backend = real(conf, name, virtapi)
        if not isinstance(backend, fake_driver.FakeDriver):
            return backend
        if not shared:
            shared.append(backend)
        return shared[0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, 'load_driver', load_driver)
        _setup(target, tmp)

        def state():
            backend = shared[0]
            return (sorted((r.instance.uuid, r.instance.name, r.info.state,
                            r.instance.flavor)
                           for r in backend.list_instance_records()),
                    sorted(i.name for i in backend.list_images()))

        target.state = state
        yield target


@pytest.mark.parametrize('case', badinput.cases(*FAKE_CASES))
def test_fake(case, fake_target, tmp_path, capfd):
    badinput.check(case, fake_target, tmp_path, capfd)


# -- docker -------------------------------------------------------------------

DOCKER_CASES = [
    Case('docker-ftp-url', ('check',), r'api_url',
         config={'docker': {'api_url': 'ftp://127.0.0.1/'}}),
    Case('docker-refused', ('check',), r'^Hypervisor .* is unavailable',
         config={'docker': {'api_url': 'tcp://127.0.0.1:9'}}),
    Case('docker-no-socket', ('check',), r'^Hypervisor .* is unavailable',
         config={'docker': {'api_url': 'unix:///nonexistent/docker.sock'}}),
    Case('docker-missing-ca', ('check',), r'(tls_ca_cert|CA certificate)',
         config={'docker': {'api_url': 'tcp://127.0.0.1:9', 'tls': 'true',
                            'tls_ca_cert': '/nonexistent/ca.pem'}}),
    Case('docker-missing-client-cert', ('check',),
         r'(tls_client_cert|certificate|No such file)',
         config={'docker': {'api_url': 'tcp://127.0.0.1:9', 'tls': 'true',
                            'tls_client_cert': '/nonexistent/cert.pem',
                            'tls_client_key': '/nonexistent/key.pem'}}),
    Case('docker-bad-api-version', ('list',),
         BAD_CONFIG + r'\[docker\] api_version',
         config={'docker': {'api_version': '9'}}),
    Case('docker-misspelt-option', ('check',),
         r'unknown option api_ur in section \[docker\] .*did you mean '
         r'api_url\?$', config={'docker': {'api_ur': 'unix:///x'}}),
    Case('docker-zero-ratio', ('list',),
         BAD_CONFIG + r'\[DEFAULT\] cpu_allocation_ratio in .*: Should be '
                      r'greater than or equal to 0\.0001$',
         config={'DEFAULT': {'cpu_allocation_ratio': '0'}}),
    # The ratios' deprecated home: checked, and named where it is written.
    Case('docker-zero-ratio-old-section', ('list',),
         BAD_CONFIG + r'\[docker\] cpu_allocation_ratio in .*: Should be '
                      r'greater than or equal to 0\.0001$',
         config={'docker': {'cpu_allocation_ratio': '0'}}),
    Case('docker-below-minimum-memory', badinput._boot('{prefix}-m',
                                                       flavor='x1.four'),
         r'at least 6 MiB', config={'DEFAULT': {'flavor': 'x1.four:1:4'}}),
    Case('docker-more-vcpus-than-ratio', badinput._boot('{prefix}-v',
                                                        flavor='x1.cpus'),
         r'^Not enough vcpus on ',
         config={'DEFAULT': {'flavor': 'x1.cpus:1024:64'}}),
    Case('docker-image-reference', badinput._boot('{prefix}-i',
                                                  image='UPPER/Case:tag'),
         r'(could not be found|^Invalid input: )'),
]


@pytest.fixture(scope='module')
def docker_target(tmp_path_factory):
    api = docker_env.raw_client()
    tmp = str(tmp_path_factory.mktemp('docker'))
    prefix = _prefix()
    host_label = 'org.openstack.compute-driver.host=%s' % prefix

    def state():
        containers = sorted(
            (c['Id'], c['State'], json.dumps(c['Labels'], sort_keys=True))
            for c in api.containers(all=True,
                                    filters={'label': host_label}))
        images = sorted(tag for image in api.images()
                        for tag in image.get('RepoTags') or ()
                        if prefix in tag)
        return containers, images

    target = badinput.Target(
        'docker', {'DEFAULT': {'compute_driver': 'docker', 'host': prefix},
                   'docker': {'api_url': docker_env.API_URL,
                              'network_mode': 'none',
                              'images': docker_env.IMAGE}},
        image=docker_env.IMAGE, flavor='m1.nano', prefix=prefix,
        state=state, stopped=prefix + '-stopped',
        running=prefix + '-running')
    try:
        _setup(target, tmp)
        yield target
    finally:
        _teardown(target, tmp)
        left = api.containers(all=True, filters={'label': host_label})
        for summary in left:
            api.remove_container(summary['Id'], force=True)
        api.close()
        assert not left, 'containers left behind: %s' % left


@pytest.mark.parametrize('case', badinput.cases(*DOCKER_CASES))
def test_docker(case, docker_target, tmp_path, capfd):
    badinput.check(case, docker_target, tmp_path, capfd)


# -- libvirt ------------------------------------------------------------------

LIBVIRT_URI = 'qemu:///system'
LIBVIRT_IMAGES = '/var/lib/compute-driver/libvirt/images'
LIBVIRT_IMAGE = 'cdtest-busybox'

LIBVIRT_CASES = [
    Case('libvirt-refused-uri', ('check',), r'^Hypervisor .* is unavailable',
         config={'libvirt': {'connection_uri': 'qemu+tcp://127.0.0.1:9/'
                                               'system',
                             'reconnect_timeout': '0'}}),
    Case('libvirt-unknown-scheme', ('check',),
         r'^Hypervisor .* is unavailable',
         config={'libvirt': {'connection_uri': 'bogus:///system',
                             'reconnect_timeout': '0'}}),
    Case('libvirt-tls-without-certificates', ('check',),
         r'^Hypervisor .* is unavailable',
         config={'libvirt': {'connection_uri': 'qemu+tls://127.0.0.1:9/'
                                               'system',
                             'reconnect_timeout': '0'}}),
    Case('libvirt-relative-instances-path', ('check',),
         BAD_CONFIG + r"\[libvirt\] instances_path must be an absolute "
                      r"path, got 'relative/instances'$",
         config={'libvirt': {'instances_path': 'relative/instances'}}),
    Case('libvirt-relative-images-path', ('images',),
         BAD_CONFIG + r"\[libvirt\] images_path must be an absolute path",
         config={'libvirt': {'images_path': 'images'}}),
    Case('libvirt-unknown-virt-type', ('check',),
         BAD_CONFIG + r'\[libvirt\] virt_type',
         config={'libvirt': {'virt_type': 'hyperv'}}),
    Case('libvirt-misspelt-option', ('check',),
         r'unknown option conection_uri in section \[libvirt\] .*did you '
         r'mean connection_uri\?$',
         config={'libvirt': {'conection_uri': LIBVIRT_URI}}),
    Case('libvirt-bad-disk-format', ('list',),
         BAD_CONFIG + r'\[libvirt\] disk_format',
         config={'libvirt': {'disk_format': 'vmdk'}}),
    Case('libvirt-more-vcpus-than-host', badinput._boot('{prefix}-v',
                                                        flavor='x1.cpus'),
         r'^Flavor x1.cpus asks for 1024 vcpus; .* has \d+ in all.$',
         config={'DEFAULT': {'flavor': 'x1.cpus:1024:128'}}),
    Case('libvirt-below-image-minimum', badinput._boot('{prefix}-m',
                                                       flavor='m1.nano'),
         r'needs 128'),
]


@pytest.fixture(scope='module')
def libvirt_target(tmp_path_factory):
    libvirt = _sdk('libvirt')
    try:
        libvirt.open(LIBVIRT_URI).close()
    except libvirt.libvirtError as exc:
        fixtures.skip_or_fail('libvirtd is not reachable at %s: %s' % (
            LIBVIRT_URI, exc.get_error_message()))
    if not os.path.exists(os.path.join(LIBVIRT_IMAGES,
                                       LIBVIRT_IMAGE + '.json')):
        fixtures.skip_or_fail('the test image %s is not in %s; run '
                              'tools/build-libvirt-test-image.sh'
                              % (LIBVIRT_IMAGE, LIBVIRT_IMAGES))
    tmp = str(tmp_path_factory.mktemp('libvirt'))
    prefix = _prefix()
    # An instances path of this run's own, next to the shared one so that
    # qemu may read it, tells this run's files from other runs'.
    instances = os.path.join(os.path.dirname(LIBVIRT_IMAGES), prefix)
    os.makedirs(instances)
    os.chmod(instances, 0o755)

    def ours():
        # A connection per look: the fault tests of other modules restart
        # libvirtd, which closes any connection kept open.
        conn = libvirt.open(LIBVIRT_URI)
        try:
            return sorted((d.UUIDString(), d.name(), d.state()[0])
                          for d in conn.listAllDomains()
                          if d.name().startswith('cdrv-' + prefix))
        finally:
            conn.close()

    def state():
        domains = ours()
        files = sorted(
            os.path.relpath(os.path.join(root, name), instances)
            for root, dirs, names in os.walk(instances)
            for name in dirs + names)
        return domains, files

    target = badinput.Target(
        'libvirt', {'DEFAULT': {'compute_driver': 'libvirt', 'host': prefix},
                    'libvirt': {'virt_type': 'qemu',
                                'connection_uri': LIBVIRT_URI,
                                'images_path': LIBVIRT_IMAGES,
                                'instances_path': instances,
                                'lifecycle_event_delay': '1'}},
        image=LIBVIRT_IMAGE, flavor='m1.micro', prefix=prefix, state=state,
        stopped=prefix + '-stopped', running=prefix + '-running')
    try:
        _setup(target, tmp)
        yield target
    finally:
        _teardown(target, tmp)
        left = ours()
        shutil.rmtree(instances, ignore_errors=True)
        assert not left, 'domains left behind: %s' % left


@pytest.mark.parametrize('case', badinput.cases(*LIBVIRT_CASES))
def test_libvirt(case, libvirt_target, tmp_path, capfd):
    badinput.check(case, libvirt_target, tmp_path, capfd)


# -- xenapi (the XAPI simulator) ----------------------------------------------

XENAPI_CASES = [
    Case('xenapi-refused', ('check',), r'^Hypervisor .* is unavailable',
         config={'xenapi': {'connection_url': 'http://127.0.0.1:9/'}}),
    Case('xenapi-ftp-url', ('check',), r'connection_url',
         config={'xenapi': {'connection_url': 'ftp://127.0.0.1/'}}),
    Case('xenapi-https-to-http', ('check',),
         r'^Hypervisor .* is unavailable',
         config={'xenapi': {'connection_url': '{https_url}'}}),
    Case('xenapi-wrong-password', ('check',),
         r'^Hypervisor .* is unavailable',
         config={'xenapi': {'password': 'wrong'}}),
    Case('xenapi-misspelt-option', ('check',),
         r'unknown option conection_url in section \[xenapi\] .*did you '
         r'mean connection_url\?$',
         config={'xenapi': {'conection_url': 'http://127.0.0.1:9/'}}),
    Case('xenapi-zero-sessions', ('list',),
         BAD_CONFIG + r'\[xenapi\] concurrent_sessions',
         config={'xenapi': {'concurrent_sessions': '0'}}),
    Case('xenapi-missing-ca-file', ('check',),
         BAD_CONFIG + r'\[xenapi\] ca_file \S*/nope\.pem cannot be read',
         config={'xenapi': {'connection_url': '{https_url}',
                            'ca_file': '{tmp}/nope.pem'}}),
    Case('xenapi-ca-file-not-pem', ('check',),
         BAD_CONFIG + r'\[xenapi\] ca_file \S*/bad-input\.conf holds no PEM '
                      r'certificate',
         config={'xenapi': {'connection_url': '{https_url}',
                            'ca_file': '{tmp}/bad-input.conf'}}),
    Case('xenapi-more-vcpus-than-host', badinput._boot('{prefix}-v',
                                                       flavor='x1.cpus'),
         r'^Flavor x1.cpus asks for 1024 vcpus; .* has \d+ in all.$',
         config={'DEFAULT': {'flavor': 'x1.cpus:1024:128'}}),
]


@pytest.fixture(scope='module')
def xenapi_target(tmp_path_factory):
    _sdk('XenAPI')
    tmp = str(tmp_path_factory.mktemp('xenapi'))
    prefix = _prefix()
    with xapi_server.Simulator(
            '127.0.0.1', 0,
            users={xapi_fixture.USERNAME: xapi_fixture.PASSWORD}) as sim:
        options = {k: str(v) for k, v in
                   xapi_fixture.xenapi_options(sim).items()}

        def state():
            return {cls: sorted(
                (ref, str(record.get('power_state', '')))
                for ref, record in sim.objects(cls).items())
                for cls in ('VM', 'VDI', 'VBD', 'VIF')}

        target = badinput.Target(
            'xenapi', {'DEFAULT': {'compute_driver': 'xenapi',
                                   'host': prefix},
                       'xenapi': options},
            image='Debian_Bookworm_12', flavor='m1.small', prefix=prefix,
            state=state, stopped=prefix + '-stopped',
            running=prefix + '-running',
            values={'https_url': sim.url.replace('http://', 'https://')})
        _setup(target, tmp)
        try:
            yield target
        finally:
            _teardown(target, tmp)


@pytest.mark.parametrize('case', badinput.cases(*XENAPI_CASES))
def test_xenapi(case, xenapi_target, tmp_path, capfd):
    badinput.check(case, xenapi_target, tmp_path, capfd)


def test_every_backend_has_sixty_cases():
    for extra in (FAKE_CASES, DOCKER_CASES, LIBVIRT_CASES, XENAPI_CASES):
        assert len(badinput.cases(*extra)) >= 60
