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

"""The DevStack plugin under DevStack's own scripts (DEVSTACK_DIR).

Each test deploys with tests/devstack/devstack.sh, which sources DevStack's
functions, stackrc and libraries as stack.sh does, fetches the plugin from
a git repository of this tree with the ``enable_plugin`` line of
devstack/README.rst, and runs its phases with DevStack's run_phase, then
unstack and clean as unstack.sh and clean.sh do. Packages, the global
venv and daemons are real; see tests/devstack/README.rst for what is not.
"""

import grp
import os
import pathlib
import re
import shutil
import subprocess
import uuid

import pytest

from compute_driver.testing import fixtures
from compute_driver.testing.xapi_simulator import fixture as xapi_fixture
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    xapi_simulator as simulator)
from tests.devstack import harness as ds

DOCKER_SOCKET = '/var/run/docker.sock'
PLUGIN_LINE = re.compile(r'^\s*(#\s*)?enable_plugin compute-driver\b.*$',
                         re.MULTILINE)
README_LINE = 'enable_plugin compute-driver GIT_URL main'


@pytest.fixture(scope='module')
def session():
    if os.geteuid() != 0:
        fixtures.skip_or_fail('running DevStack needs root (or password-'
                              'less sudo, which the tests set up as root)')
    ds.devstack_dir()
    base = ds.make_base()
    try:
        yield ds.Session(base)
    finally:
        # git_clone marks each clone safe in /etc/gitconfig; unstack.sh
        # removes its own, the bootstrap's is ours.
        subprocess.run(['sed', '-i', '\\+directory = %s+ d' % base,
                        '/etc/gitconfig'], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _stack(session, name, *settings, user='root'):
    line = README_LINE.replace('GIT_URL', 'file://%s' % session.upstream)
    return ds.Stack(session, name, user=user, settings=settings,
                    plugin_line=line)


def _dockerd_pids():
    result = subprocess.run(['pgrep', '-x', 'dockerd'], capture_output=True,
                            text=True)
    return sorted(result.stdout.split())


def _assert_nothing_left(stack, root_before, dists_before):
    assert stack.snapshot() == root_before
    assert stack.venv_dists() == dists_before
    assert stack.units_running() == []
    assert not (stack.data / 'compute-driver').exists()


def _need_dockerd():
    if not os.path.exists(DOCKER_SOCKET):
        fixtures.skip_or_fail('dockerd is not running on %s' % DOCKER_SOCKET)


def _plugin_lines(doc):
    text = (ds.PROJECT / doc).read_text()
    return [m.group(0).strip().lstrip('#').strip()
            for m in PLUGIN_LINE.finditer(text)]


def test_docs_enable_plugin_lines_name_the_branch():
    """Every enable_plugin line the docs show is the one the tests run.

    The plugin's README shows it, and the manual's DevStack page includes
    that README; any other page that shows the line must name the branch
    too (DevStack asks for master, which this repository lacks).
    """
    docs = ['README.rst', 'devstack/README.rst'] + sorted(
        str(path.relative_to(ds.PROJECT))
        for path in (ds.PROJECT / 'doc' / 'source').glob('*.rst'))
    found = {doc: _plugin_lines(doc) for doc in docs}
    assert found['devstack/README.rst']
    stale = {doc: [line for line in lines if line != README_LINE]
             for doc, lines in found.items()}
    assert {doc: lines for doc, lines in stale.items() if lines} == {}


def test_fake_stack_unstack_stack_clean(session):
    """fetch_plugins clones branch main; nothing is left after clean."""
    stack = _stack(session, 'fake', 'COMPUTE_DRIVER_BACKEND=fake')
    root, dists = stack.snapshot(), stack.venv_dists()
    result = stack.run('stack')
    assert (stack.plugin_dir / 'devstack' / 'plugin.sh').is_file()
    assert stack.read_ini(stack.conf_path) == {
        'DEFAULT': {'compute_driver': 'fake'}}
    assert '| hypervisor_type' in result.stdout
    assert 'compute-driver==' in ' '.join(stack.venv_dists() - dists)
    stack.run('unstack')
    stack.run('stack')
    stack.run('clean')
    _assert_nothing_left(stack, root, dists)


def test_clean_removes_the_nova_shim(session):
    """clean runs the shim's removal with DevStack's Python, not python3."""
    stack = _stack(session, 'nova', 'COMPUTE_DRIVER_BACKEND=fake',
                   'enable_service n-cpu')
    stack.seed_nova_conf()
    shim = session.nova / 'nova' / 'virt' / 'compute_driver_nova.py'
    root, dists = stack.snapshot(), stack.venv_dists()
    stack.run('stack')
    assert shim.is_file()
    conf = stack.read_ini(stack.nova_conf)
    assert conf['DEFAULT']['compute_driver'] == (
        'compute_driver_nova.ComputeDriverAdapter')
    assert conf['compute_driver_adapter'] == {
        'backend': 'fake', 'config_file': str(stack.conf_path)}
    stack.run('unstack')
    assert shim.is_file()
    stack.run('clean')
    assert not shim.exists()
    assert not list(shim.parent.glob('__pycache__/compute_driver_nova*'))
    _assert_nothing_left(stack, root, dists)


def test_docker_with_the_hosts_dockerd(session):
    """The SDK goes into the venv and out again; dockerd is left alone."""
    _need_dockerd()
    stack = _stack(session, 'docker', 'COMPUTE_DRIVER_BACKEND=docker',
                   'COMPUTE_DRIVER_DOCKER_API_URL=unix://' + DOCKER_SOCKET)
    root, dists, pids = (stack.snapshot(), stack.venv_dists(),
                         _dockerd_pids())
    result = stack.run('stack')
    assert 'dockerd already answers' in result.stdout
    assert '| hypervisor_type' in result.stdout
    added = {d.split('==')[0].lower() for d in stack.venv_dists() - dists}
    assert {'compute-driver', 'docker'} <= added
    stack.run('unstack')
    stack.run('clean')
    assert _dockerd_pids() == pids
    _assert_nothing_left(stack, root, dists)


def test_xenapi_against_the_xapi_simulator(session, simulator):  # noqa: F811
    """check passes over real HTTP; the password file goes with clean."""
    stack = _stack(session, 'xenapi', 'COMPUTE_DRIVER_BACKEND=xenapi',
                   'COMPUTE_DRIVER_XENAPI_URL=%s' % simulator.url,
                   'COMPUTE_DRIVER_XENAPI_USER=%s' % xapi_fixture.USERNAME,
                   'COMPUTE_DRIVER_XENAPI_PASSWORD=%s'
                   % xapi_fixture.PASSWORD)
    root, dists = stack.snapshot(), stack.venv_dists()
    result = stack.run('stack')
    assert '| hypervisor_type' in result.stdout
    assert stack.read_ini(stack.conf_path)['xenapi'] == {
        'connection_url': simulator.url,
        'username': xapi_fixture.USERNAME,
        'password': xapi_fixture.PASSWORD}
    assert stack.conf_path.stat().st_mode & 0o777 == 0o640
    added = {d.split('==')[0].lower() for d in stack.venv_dists() - dists}
    assert {'compute-driver', 'xenapi'} <= added
    stack.run('unstack')
    stack.run('clean')
    _assert_nothing_left(stack, root, dists)


def test_dockerd_the_plugin_started_is_stopped_by_unstack(session):
    """Also after a stack that died while the daemon came up."""
    stack = _stack(session, 'dockerd', 'COMPUTE_DRIVER_BACKEND=docker',
                   'COMPUTE_DRIVER_START_TIMEOUT=2')
    sock = stack.dir / 'docker.sock'
    hung = stack.dir / 'hung-dockerd'
    hung.write_text('#!/bin/sh\nexec sleep 600\n')
    hung.chmod(0o755)
    conf = stack.top / 'local.conf'
    settings = conf.read_text() + (
        'COMPUTE_DRIVER_DOCKER_API_URL=unix://%s\n'
        'COMPUTE_DRIVER_DOCKERD=%%s\n' % sock)
    conf.write_text(settings % hung)
    root, dists = stack.snapshot(), stack.venv_dists()

    result = stack.run('stack', 'pre-install', 'install', ok=False)
    assert result.returncode != 0
    assert 'did not answer within 2s' in result.stdout + result.stderr
    assert stack.units_running() == ['devstack@cd-dockerd.service']
    stack.run('unstack')
    assert stack.units_running() == []

    conf.write_text(settings % (ds.BIN / 'fake-dockerd'))
    stack.run('stack', 'pre-install', 'install', 'post-config')
    assert stack.units_running() == ['devstack@cd-dockerd.service']
    assert sock.is_socket()
    stack.run('unstack')
    assert stack.units_running() == []
    stack.run('clean')
    _assert_nothing_left(stack, root, dists)


def test_purge_packages_must_be_a_boolean(session):
    stack = _stack(session, 'purge', 'COMPUTE_DRIVER_PURGE_PACKAGES=maybe')
    result = stack.run('stack', 'pre-install', ok=False)
    assert result.returncode != 0
    assert ("COMPUTE_DRIVER_PURGE_PACKAGES must be True or False, not "
            "'maybe'") in result.stdout + result.stderr
    assert not stack.conf_path.exists()


def test_libvirt_type_follows_what_the_host_can_run(session, tmp_path):
    missing = tmp_path / 'kvm'
    stack = _stack(session, 'libvirt-type', 'COMPUTE_DRIVER_BACKEND=libvirt',
                   'VIRT_DRIVER=libvirt',
                   'COMPUTE_DRIVER_KVM_DEVICE=%s' % missing)
    lib = stack.plugin_dir / 'devstack' / 'lib' / 'compute-driver'
    out = stack.eval(
        'source %s\n'
        'echo "$LIBVIRT_TYPE $(_compute_driver_virt_type)"\n'
        # A device every user may open stands for a usable /dev/kvm.
        'COMPUTE_DRIVER_KVM_DEVICE=/dev/null\n'
        'echo "$LIBVIRT_TYPE $(_compute_driver_virt_type)"\n' % lib)
    assert out.stdout.splitlines()[-2:] == ['kvm qemu', 'kvm kvm']
    stack.run('stack', 'pre-install', 'post-config')
    assert stack.read_ini(stack.conf_path)['libvirt'] == {
        'virt_type': 'qemu'}
    stack.run('clean')

    explicit = _stack(session, 'libvirt-kvm', 'COMPUTE_DRIVER_BACKEND=libvirt',
                      'COMPUTE_DRIVER_LIBVIRT_VIRT_TYPE=kvm',
                      'COMPUTE_DRIVER_KVM_DEVICE=%s' % missing)
    result = explicit.run('stack', 'pre-install', ok=False)
    assert result.returncode != 0
    assert 'COMPUTE_DRIVER_LIBVIRT_VIRT_TYPE=kvm but QEMU cannot use' in (
        result.stdout + result.stderr)


DEB_LIBVIRT = ('libvirt-daemon-system libvirt-clients libvirt-dev pkg-config '
               'qemu-utils qemu-system-x86')
RPM_LIBVIRT = ('libvirt-daemon-config-network libvirt-client libvirt-devel '
               'pkgconf-pkg-config libvirt-daemon-kvm qemu-img')


def test_packages_per_distribution(session):
    """DevStack's is_ubuntu and is_fedora choose the package names."""
    if os.uname().machine != 'x86_64':
        pytest.skip('the expected QEMU package is that of x86_64')
    stack = _stack(session, 'packages',
                   'COMPUTE_DRIVER_LIBVIRT_VIRT_TYPE=qemu')
    lib = stack.plugin_dir / 'devstack' / 'lib' / 'compute-driver'
    out = stack.eval(
        'source %s\n'
        'for os in Debian:deb Ubuntu:deb Fedora:rpm RockyLinux:rpm; do\n'
        '    os_VENDOR=${os%%:*} os_PACKAGE=${os#*:}\n'
        '    for COMPUTE_DRIVER_BACKEND in docker libvirt fake; do\n'
        '        echo "$os_VENDOR $COMPUTE_DRIVER_BACKEND:" '
        '$(_compute_driver_packages)\n'
        '    done\n'
        'done\n'
        'os_VENDOR=openSUSE os_PACKAGE=rpm COMPUTE_DRIVER_BACKEND=docker\n'
        'validate_compute_driver_settings\n' % lib, ok=False)
    lines = out.stdout.splitlines()
    start = lines.index('Debian docker: docker.io curl')
    assert lines[start:start + 12] == [
        'Debian docker: docker.io curl',
        'Debian libvirt: ' + DEB_LIBVIRT,
        'Debian fake:',
        'Ubuntu docker: docker.io curl',
        'Ubuntu libvirt: ' + DEB_LIBVIRT,
        'Ubuntu fake:',
        'Fedora docker: moby-engine curl',
        'Fedora libvirt: ' + RPM_LIBVIRT,
        'Fedora fake:',
        'RockyLinux docker: docker-ce curl',
        'RockyLinux libvirt: ' + RPM_LIBVIRT,
        'RockyLinux fake:',
    ]
    assert out.returncode != 0
    assert 'has no package names for openSUSE' in out.stdout + out.stderr


@pytest.fixture
def stack_user(session):
    name = 'cdstack%s' % uuid.uuid4().hex[:6]
    ds.create_user(name)
    session.give_to(name)
    try:
        yield name
    finally:
        session.give_to('root')
        ds.delete_user(name)


def test_non_root_stack_user_with_docker(session, stack_user):
    """STACK_USER joins the docker group for check; clean undoes it."""
    _need_dockerd()
    stack = _stack(session, 'non-root', 'COMPUTE_DRIVER_BACKEND=docker',
                   'COMPUTE_DRIVER_DOCKER_API_URL=unix://' + DOCKER_SOCKET,
                   user=stack_user)
    root, dists, pids = (stack.snapshot(), stack.venv_dists(),
                         _dockerd_pids())
    result = stack.run('stack')
    assert '| hypervisor_type' in result.stdout
    assert stack_user in grp.getgrnam('docker').gr_mem
    assert pathlib.Path(stack.conf_path).stat().st_uid == (
        pathlib.Path(stack.home).stat().st_uid)
    stack.run('unstack')
    stack.run('stack')
    stack.run('clean')
    assert stack_user not in grp.getgrnam('docker').gr_mem
    assert _dockerd_pids() == pids
    _assert_nothing_left(stack, root, dists)
