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

"""The DevStack plugin through every mode and phase, for each backend.

Package, pip and process calls are recorded, not made (the real path is
in tests/functional/test_devstack_plugin.py); files are really written,
under a temporary root.
"""

import platform
import stat

import pytest

from compute_driver import nova as cd_nova
from compute_driver.nova import shim
from tests.devstack import harness as ds

REPO = str(ds.HERE.parent.parent)

QEMU = {'x86_64': 'qemu-system-x86', 'aarch64': 'qemu-system-arm'}.get(
    platform.machine(), 'qemu-system')

# backend -> (settings, expected compute-driver.conf, packages, daemons)
BACKENDS = {
    'fake': ({}, {'DEFAULT': {'compute_driver': 'fake'}}, [], []),
    'docker': (
        {'COMPUTE_DRIVER_DOCKER_API_URL': 'tcp://127.0.0.1:2375'},
        {'DEFAULT': {'compute_driver': 'docker'},
         'docker': {'api_url': 'tcp://127.0.0.1:2375'}},
        ['docker.io', 'curl'],
        [('cd-dockerd', '/dockerd --host=tcp://127.0.0.1:2375')]),
    'libvirt': (
        {'COMPUTE_DRIVER_LIBVIRT_VIRT_TYPE': 'qemu'},
        {'DEFAULT': {'compute_driver': 'libvirt'},
         'libvirt': {'virt_type': 'qemu'}},
        ['libvirt-daemon-system', 'libvirt-clients', 'libvirt-dev',
         'pkg-config', 'qemu-utils', QEMU],
        [('cd-virtlogd', '/virtlogd'), ('cd-libvirtd', '/libvirtd')]),
    'xenapi': (
        {'COMPUTE_DRIVER_XENAPI_URL': 'https://xs.example.org',
         'COMPUTE_DRIVER_XENAPI_USER': 'admin',
         'COMPUTE_DRIVER_XENAPI_PASSWORD': 's3cret & more'},
        {'DEFAULT': {'compute_driver': 'xenapi'},
         'xenapi': {'connection_url': 'https://xs.example.org',
                    'username': 'admin', 'password': 's3cret & more'}},
        [], []),
}


def _harness(tmp_path, backend, **env):
    settings = dict(BACKENDS[backend][0], **env)
    # fake is installed everywhere the tests run: check it for real.
    return ds.Harness(tmp_path, backend,
                      cli='real' if backend == 'fake' else 'fake',
                      env=settings)


@pytest.mark.parametrize('adapter', ['present', 'absent'])
@pytest.mark.parametrize('backend', sorted(BACKENDS))
def test_every_phase_then_clean_restores_the_root(tmp_path, backend,
                                                  adapter):
    h = _harness(tmp_path, backend, HARNESS_SERVICES='n-cpu,tempest',
                 HARNESS_NOVA_ADAPTER=adapter,
                 HARNESS_CAPABILITIES='pause snapshot power_off')
    _, expected_conf, packages, daemons = BACKENDS[backend]
    before = h.snapshot()

    h.run('stack', *ds.PHASES)

    assert h.read_ini(h.conf_path) == expected_conf
    assert stat.S_IMODE(h.conf_path.stat().st_mode) == 0o640
    extra = [] if backend == 'fake' else [backend]
    assert h.calls('setup_develop') == [
        ' '.join(['setup_develop', REPO] + extra)]
    assert h.calls('install_package') == (
        ['install_package ' + ' '.join(packages)] if packages else [])
    started = h.calls('run_process')
    assert [c.split()[1] for c in started] == [d[0] for d in daemons]
    for call, (_, command) in zip(started, daemons):
        assert command in call
    assert ('compute-driver --config-file %s check' % h.conf_path
            in h.calls('compute-driver') or backend == 'fake')

    nova = h.read_ini(h.nova_conf)
    tempest = h.read_ini(h.tempest_conf)
    if adapter == 'present':
        assert nova['DEFAULT']['compute_driver'] == (
            cd_nova.NOVA_COMPUTE_DRIVER)
        assert h.shim.read_text() == shim.render()
        assert nova['compute_driver_adapter'] == {
            'backend': backend, 'config_file': str(h.conf_path)}
        if backend == 'fake':
            # The real fake backend supports all four.
            flags = dict.fromkeys(
                ['pause', 'suspend', 'snapshot', 'console_output'], 'True')
        else:
            flags = {'pause': 'True', 'suspend': 'False',
                     'snapshot': 'True', 'console_output': 'False'}
        assert tempest['compute-feature-enabled'] == flags
    else:
        assert h.nova_conf.read_text() == ds.NOVA_CONF
        assert h.tempest_conf.read_text() == ds.TEMPEST_CONF
        assert not h.shim.exists()

    h.clear_calls()
    h.run('unstack')
    # Newest first: libvirtd before the virtlogd it logs through.
    assert h.calls('stop_process') == [
        'stop_process ' + name for name, _ in reversed(daemons)]
    assert h.conf_path.exists()

    h.clear_calls()
    h.run('clean')
    assert h.snapshot() == before
    # Distro packages stay by default; nothing was pip-installed by the
    # plugin (the test environment has the project already).
    assert h.calls('uninstall_package', 'stop_process') == []


def test_unstack_leaves_daemons_it_did_not_start(tmp_path):
    h = _harness(tmp_path, 'libvirt', HARNESS_RUNNING='libvirtd virtlogd')
    h.run('stack', *ds.PHASES)
    h.run('unstack')
    h.run('clean')
    assert h.calls('run_process', 'stop_process') == []


def test_virtlogd_running_alone_is_not_started_again(tmp_path):
    h = _harness(tmp_path, 'libvirt', HARNESS_RUNNING='virtlogd')
    h.run('stack', *ds.PHASES)
    h.run('unstack')
    assert [c.split()[:2] for c in h.calls('run_process', 'stop_process')
            ] == [['run_process', 'cd-libvirtd'],
                  ['stop_process', 'cd-libvirtd']]


def test_docker_already_running_is_used(tmp_path):
    h = _harness(tmp_path, 'docker', HARNESS_RUNNING='dockerd')
    h.run('stack', *ds.PHASES)
    h.run('unstack')
    h.run('clean')
    assert h.calls('run_process', 'stop_process') == []
    assert h.calls('install_package') == ['install_package docker.io curl']


def test_installed_packages_are_not_recorded_nor_removed(tmp_path):
    h = _harness(tmp_path, 'docker', STANDIN_INSTALLED_PACKAGES='docker.io',
                 COMPUTE_DRIVER_PURGE_PACKAGES='True')
    h.run('stack', *ds.PHASES)
    assert h.calls('install_package') == ['install_package curl']
    h.run('clean')
    assert h.calls('uninstall_package') == ['uninstall_package curl']


def test_clean_keeps_packages_by_default(tmp_path):
    h = _harness(tmp_path, 'docker')
    h.run('stack', *ds.PHASES)
    result = h.run('clean')
    assert h.calls('uninstall_package') == []
    assert 'Leaving the packages installed for the docker backend: ' \
           'docker.io curl' in result.stdout


def test_check_failure_fails_the_stack_with_its_message(tmp_path):
    h = _harness(tmp_path, 'docker')
    result = h.run('stack', *ds.PHASES, ok=False, HARNESS_CHECK_RC='1',
                   HARNESS_CHECK_MESSAGE='Cannot connect to dockerd: '
                                         'permission denied')
    assert result.returncode != 0
    assert ('compute-driver check failed for the docker backend: Cannot '
            'connect to dockerd: permission denied') in result.stderr
    # test-config never ran: the stack stopped at extra.
    assert h.calls('compute-driver') == [
        'compute-driver --config-file %s check' % h.conf_path]


def test_real_check_failure_fails_the_stack(tmp_path):
    # The real command, asked for a backend this environment lacks.
    h = ds.Harness(tmp_path, 'fake', cli='real')
    h.run('stack', 'pre-install', 'install', 'post-config')
    h.conf_path.write_text('[DEFAULT]\ncompute_driver = nosuch\n')
    result = h.run('stack', 'extra', ok=False)
    assert result.returncode != 0
    assert ("compute-driver check failed for the fake backend: Compute "
            "driver 'nosuch' is not installed.") in result.stderr


@pytest.mark.parametrize('settings,message', [
    ({'COMPUTE_DRIVER_BACKEND': 'vmware'},
     "COMPUTE_DRIVER_BACKEND must be one of fake libvirt xenapi docker, "
     "not 'vmware'"),
    ({'COMPUTE_DRIVER_BACKEND': 'libvirt',
      'COMPUTE_DRIVER_LIBVIRT_VIRT_TYPE': 'hyperv'},
     "COMPUTE_DRIVER_LIBVIRT_VIRT_TYPE must be kvm, qemu, xen or lxc, not "
     "'hyperv'"),
    ({'COMPUTE_DRIVER_BACKEND': 'xenapi', 'COMPUTE_DRIVER_XENAPI_URL': ''},
     'COMPUTE_DRIVER_XENAPI_URL must name the XAPI endpoint'),
    ({'COMPUTE_DRIVER_PURGE_PACKAGES': 'maybe'},
     "COMPUTE_DRIVER_PURGE_PACKAGES must be true or false, not 'maybe'"),
])
def test_pre_install_refuses_bad_settings(tmp_path, settings, message):
    h = ds.Harness(tmp_path, 'fake', env=settings)
    before = h.snapshot()
    result = h.run('stack', *ds.PHASES, ok=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert h.calls('install_package', 'setup_develop') == []
    assert h.snapshot() == before


def test_libvirt_options(tmp_path):
    h = _harness(tmp_path, 'libvirt', COMPUTE_DRIVER_LIBVIRT_VIRT_TYPE='lxc',
                 COMPUTE_DRIVER_LIBVIRT_CONNECTION_URI='lxc:///system')
    h.run('stack', *ds.PHASES)
    assert h.read_ini(h.conf_path)['libvirt'] == {
        'virt_type': 'lxc', 'connection_uri': 'lxc:///system'}
    assert h.calls('install_package') == [
        'install_package libvirt-daemon-system libvirt-clients libvirt-dev '
        'pkg-config libvirt-daemon-driver-lxc']
    # No virtlogd for containers.
    assert [c.split()[1] for c in h.calls('run_process')] == ['cd-libvirtd']


def test_host_option(tmp_path):
    h = _harness(tmp_path, 'fake', COMPUTE_DRIVER_HOST='compute-7')
    h.run('stack', *ds.PHASES)
    assert h.read_ini(h.conf_path)['DEFAULT'] == {
        'compute_driver': 'fake', 'host': 'compute-7'}


def test_nova_untouched_without_n_cpu(tmp_path):
    h = _harness(tmp_path, 'fake', HARNESS_SERVICES='tempest',
                 HARNESS_NOVA_ADAPTER='present')
    h.run('stack', *ds.PHASES)
    assert h.nova_conf.read_text() == ds.NOVA_CONF
    assert h.tempest_conf.read_text() == ds.TEMPEST_CONF


def test_nova_without_adapter_warns(tmp_path):
    h = _harness(tmp_path, 'fake', HARNESS_SERVICES='n-cpu',
                 HARNESS_NOVA_ADAPTER='absent')
    result = h.run('stack', *ds.PHASES)
    assert 'no Nova adapter (compute_driver.nova.driver)' in result.stderr
    assert h.nova_conf.read_text() == ds.NOVA_CONF
    assert not h.shim.exists()


def test_nova_driver_setting_wins(tmp_path):
    h = _harness(tmp_path, 'fake', HARNESS_SERVICES='n-cpu',
                 HARNESS_NOVA_ADAPTER='present',
                 COMPUTE_DRIVER_NOVA_DRIVER='cd_shim.Driver')
    h.run('stack', *ds.PHASES)
    assert h.read_ini(h.nova_conf)['DEFAULT']['compute_driver'] == (
        'cd_shim.Driver')
    # Loading the adapter another way is the operator's business.
    assert not h.shim.exists()


def test_nova_driver_setting_of_the_default_installs_the_shim(tmp_path):
    h = _harness(tmp_path, 'fake', HARNESS_SERVICES='n-cpu',
                 HARNESS_NOVA_ADAPTER='present',
                 COMPUTE_DRIVER_NOVA_DRIVER=cd_nova.NOVA_COMPUTE_DRIVER)
    h.run('stack', *ds.PHASES)
    assert h.shim.read_text() == shim.render()


def test_nova_shim_failure_fails_the_stack_before_nova_conf(tmp_path):
    h = _harness(tmp_path, 'fake', HARNESS_SERVICES='n-cpu',
                 HARNESS_NOVA_ADAPTER='present')
    h.shim.write_text('# the operator\'s own module\n')
    before = h.snapshot()
    result = h.run('stack', *ds.PHASES, ok=False)
    assert result.returncode != 0
    assert ('cannot install the Nova shim: Cannot install the Nova shim '
            '%s: a file of that name exists that compute-driver did not '
            'write; remove it, or install with --force to replace it'
            % h.shim) in result.stderr
    assert h.nova_conf.read_text() == ds.NOVA_CONF
    h.run('clean')
    assert h.snapshot() == before


def test_nova_not_installed_fails_the_stack(tmp_path):
    h = ds.Harness(tmp_path, 'fake', cli='real', nova=False,
                   env={'HARNESS_SERVICES': 'n-cpu',
                        'HARNESS_NOVA_ADAPTER': 'present'})
    # Whatever this environment has installed, the plugin's Python finds
    # this nova first, and it has no nova.virt.
    (h.work / 'no-nova' / 'nova').mkdir(parents=True)
    (h.work / 'no-nova' / 'nova' / '__init__.py').write_text('')
    result = h.run('stack', *ds.PHASES, ok=False,
                   PYTHONPATH=str(h.work / 'no-nova'))
    assert result.returncode != 0
    assert ('cannot install the Nova shim: Nova is not installed for '
            in result.stderr)
    assert 'has no virt package' in result.stderr
    assert h.nova_conf.read_text() == ds.NOVA_CONF


def test_clean_leaves_a_shim_it_did_not_install(tmp_path):
    h = _harness(tmp_path, 'fake', HARNESS_SERVICES='n-cpu',
                 HARNESS_NOVA_ADAPTER='present')
    h.shim.write_text(shim.render())
    h.run('stack', *ds.PHASES)
    h.run('clean')
    assert h.shim.read_text() == shim.render()
    assert h.nova_conf.read_text() == ds.NOVA_CONF


def test_clean_removes_the_shims_bytecode(tmp_path):
    h = _harness(tmp_path, 'fake', HARNESS_SERVICES='n-cpu',
                 HARNESS_NOVA_ADAPTER='present')
    cache = h.nova_virt / '__pycache__'
    cache.mkdir()
    before = h.snapshot()
    h.run('stack', *ds.PHASES)
    # As nova-compute importing the shim would leave it.
    (cache / 'compute_driver_nova.cpython-311.pyc').write_bytes(b'')
    h.run('clean')
    assert h.snapshot() == before


def test_disabled_plugin_does_nothing(tmp_path):
    h = _harness(tmp_path, 'docker',
                 HARNESS_DISABLED_SERVICES='compute-driver')
    before = h.snapshot()
    for mode in ('stack', 'unstack', 'clean'):
        h.run(mode)
    assert h.snapshot() == before
    assert h.calls() == ['define_plugin compute-driver'] * 3


def test_restack_then_clean_restores_the_root(tmp_path):
    h = _harness(tmp_path, 'docker', HARNESS_SERVICES='n-cpu,tempest',
                 HARNESS_NOVA_ADAPTER='present')
    before = h.snapshot()
    h.run('stack')
    h.run('unstack')
    h.run('stack')
    assert h.read_ini(h.nova_conf)['DEFAULT']['compute_driver'] == (
        cd_nova.NOVA_COMPUTE_DRIVER)
    assert h.shim.read_text() == shim.render()
    h.run('unstack')
    h.run('clean')
    assert h.snapshot() == before
    assert [c.split()[:2] for c in h.calls('run_process', 'stop_process')
            ] == [['run_process', 'cd-dockerd'],
                  ['stop_process', 'cd-dockerd']] * 2


def test_clean_restores_a_config_file_it_did_not_create(tmp_path):
    h = _harness(tmp_path, 'docker')
    h.conf_path.parent.mkdir(parents=True)
    h.conf_path.write_text('# mine\n[DEFAULT]\ncompute_driver = fake\n'
                           'flavor = c1:1:64\n')
    h.conf_path.chmod(0o600)
    before = h.snapshot()
    h.run('stack')
    assert h.read_ini(h.conf_path) == {
        'DEFAULT': {'compute_driver': 'docker', 'flavor': 'c1:1:64'},
        'docker': {'api_url': 'tcp://127.0.0.1:2375'}}
    h.run('clean')
    assert h.snapshot() == before
