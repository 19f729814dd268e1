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

"""Spawns interrupted at each step leave nothing once swept.

``compute-driver boot`` runs as a subprocess talking to the daemon
through :class:`fault_proxy.HoldingProxy`, which stops it at a chosen
call; the test then SIGKILLs the CLI, or drops the proxy as a dying
daemon would drop its connections (the daemons are shared: they are
never killed). Afterwards, through the daemon's real socket, ``cleanup
--dry-run`` must list exactly what the spawn left, ``cleanup`` remove it,
and nothing of the instance must remain: no container, domain, file or
marker, and no instance listed.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import uuid as uuidlib

import pytest

from compute_driver.testing import fixtures
from tests.functional import docker_env
from tests.functional import fault_proxy

#: How long a step may take to be reached: image checks, a qemu-img
#: copy and software emulation on a loaded machine.
STEP_TIMEOUT = 300


def _run_cli(conf_file, tmp_path, *argv):
    result = subprocess.run(
        [fixtures.console_script(), '--config-file', str(conf_file), *argv],
        env=dict(os.environ, HOME=str(tmp_path)), capture_output=True,
        text=True, timeout=STEP_TIMEOUT)
    assert 'Traceback' not in result.stderr, result.stderr
    return result


def _boot_until_held(conf_file, tmp_path, proxy, *argv):
    """Start ``boot`` and return it once the proxy holds its call."""
    process = subprocess.Popen(
        [fixtures.console_script(), '--config-file', str(conf_file), 'boot',
         *argv], env=dict(os.environ, HOME=str(tmp_path)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wakes up to notice a CLI that ended without reaching the step.
        while not proxy.held.wait(1):
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail('boot ended (%s) before the held call; calls '
                            'seen: %s; stderr: %s' % (
                                process.returncode, proxy.calls, err))
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return process


def _kill(process):
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


def _cleanup_rows(conf_file, tmp_path, dry_run):
    argv = ['cleanup', '-f', 'json'] + (['--dry-run'] if dry_run else [])
    result = _run_cli(conf_file, tmp_path, *argv)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- docker -----------------------------------------------------------------

DOCKER_STEPS = [
    # (call, phase, whether the spawn leaves a container)
    (('POST', r'/containers/create'), 'before', False),
    (('POST', r'/containers/create'), 'after', True),
    (('POST', r'/containers/[^/]+/start'), 'before', True),
    (('POST', r'/containers/[^/]+/start'), 'after', True),
    (('POST', r'/containers/[^/]+/rename'), 'before', True),
]


def _docker_conf(path, api_url, host):
    options = docker_env.overrides(host, api_url=api_url)['docker']
    lines = ['[DEFAULT]', 'compute_driver = docker', 'host = %s' % host,
             '[docker]']
    lines += ['%s = %s' % (key, ','.join(value) if isinstance(value, list)
                           else value) for key, value in options.items()]
    path.write_text('\n'.join(lines) + '\n')
    return path


def _ours(api, host):
    return api.containers(all=True, filters={
        'label': ['org.openstack.compute-driver.host=%s' % host]})


@pytest.mark.parametrize('death', ['cli', 'daemon'])
@pytest.mark.parametrize('call, phase, leaves', DOCKER_STEPS,
                         ids=['%s-%s' % (c[1].split('/')[-1], p)
                              for c, p, _ in DOCKER_STEPS])
def test_docker_spawn_interrupted(tmp_path, call, phase, leaves, death):
    api = docker_env.raw_client()
    if not docker_env.API_URL.startswith('unix://'):
        pytest.skip('the proxy only stands in front of a unix socket')
    host = docker_env.unique_host()
    proxy = fault_proxy.HoldingProxy(
        docker_env.API_URL[len('unix://'):], str(tmp_path / 'docker.sock'),
        fault_proxy.http_framer)
    method, pattern = call
    proxy.hold(lambda key: key[0] == method and re.fullmatch(
        pattern, key[1]) is not None, phase)
    through_proxy = _docker_conf(tmp_path / 'proxy.conf',
                                 'unix://' + proxy.path, host)
    direct = _docker_conf(tmp_path / 'direct.conf', docker_env.API_URL,
                          host)
    name = 'cdfault-%s' % uuidlib.uuid4().hex[:6]
    try:
        process = _boot_until_held(through_proxy, tmp_path, proxy, name,
                                   '--image', docker_env.IMAGE,
                                   '--flavor', 'm1.tiny')
        if death == 'cli':
            _kill(process)
            proxy.close()
        else:
            proxy.die()
            out, err = process.communicate(timeout=STEP_TIMEOUT)
            assert process.returncode == 1, err
            assert 'Traceback' not in err
            lines = err.splitlines()
            # The error, and the rollback's one-line warning naming the
            # container it could not remove.
            assert 1 <= len(lines) <= 2, err
            if leaves and len(lines) == 2:
                assert '-spawning' in lines[0], err
        left = _ours(api, host)
        assert len(left) == int(leaves), left
        for container in left:
            assert container['Names'][0].endswith('-spawning')
        rows = _cleanup_rows(direct, tmp_path, dry_run=True)
        assert [(r['Backend'], r['Reason'], r['Result']) for r in rows] == [
            ('docker', 'its spawn was interrupted', 'would remove')
        ] * int(leaves)
        assert len(_ours(api, host)) == int(leaves)
        rows = _cleanup_rows(direct, tmp_path, dry_run=False)
        assert [r['Result'] for r in rows] == ['removed'] * int(leaves)
        assert _ours(api, host) == []
        result = _run_cli(direct, tmp_path, 'list', '-f', 'json')
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == []
    finally:
        proxy.close()
        for container in _ours(api, host):
            api.remove_container(container['Id'], force=True, v=True)


def test_docker_list_does_not_show_a_half_spawned_container(tmp_path):
    """The issue's case: dockerd gone between create and start."""
    api = docker_env.raw_client()
    if not docker_env.API_URL.startswith('unix://'):
        pytest.skip('the proxy only stands in front of a unix socket')
    host = docker_env.unique_host()
    proxy = fault_proxy.HoldingProxy(
        docker_env.API_URL[len('unix://'):], str(tmp_path / 'docker.sock'),
        fault_proxy.http_framer)
    proxy.hold(lambda key: key[0] == 'POST' and key[1].endswith('/start'))
    through_proxy = _docker_conf(tmp_path / 'proxy.conf',
                                 'unix://' + proxy.path, host)
    name = 'cdfault-%s' % uuidlib.uuid4().hex[:6]
    try:
        process = _boot_until_held(through_proxy, tmp_path, proxy, name,
                                   '--image', docker_env.IMAGE,
                                   '--flavor', 'm1.tiny')
        proxy.die()
        process.communicate(timeout=STEP_TIMEOUT)
        assert process.returncode == 1
        # A driver in this process, with its sweep off, sees the container
        # and still lists no instance.
        from compute_driver import loader
        backend = loader.load_driver(fixtures.make_conf(
            'docker', docker_env.overrides(host)), 'docker')
        backend.sweep_leftovers_at_init = False
        backend.init_host(host)
        try:
            assert len(_ours(api, host)) == 1
            assert backend.list_instances() == []
            assert backend.list_instance_records() == []
            found = backend.cleanup_leftovers()
            assert [f.removed for f in found] == [True]
        finally:
            backend.cleanup_host(host)
        assert _ours(api, host) == []
    finally:
        proxy.close()
        for container in _ours(api, host):
            api.remove_container(container['Id'], force=True, v=True)


# -- libvirt ----------------------------------------------------------------

#: libvirt's remote procedures (remote_protocol.x).
DEFINE_XML, DEFINE_XML_FLAGS = 11, 350
CREATE, CREATE_WITH_FLAGS = 9, 196

LIBVIRT_STEPS = [
    # (procedures, phase): disk made, domain not defined; defined, not
    # started; started, spawn not complete.
    ((DEFINE_XML, DEFINE_XML_FLAGS), 'before'),
    ((CREATE, CREATE_WITH_FLAGS), 'before'),
    ((CREATE, CREATE_WITH_FLAGS), 'after'),
]
LIBVIRT_SOCKET = '/run/libvirt/libvirt-sock'


@pytest.fixture
def libvirt_paths():
    """A private instances_path QEMU can reach, and the test image store."""
    from tests.functional import test_libvirt
    test_libvirt._require_libvirtd()
    if not os.path.exists(LIBVIRT_SOCKET):
        fixtures.skip_or_fail('libvirtd has no socket at %s'
                              % LIBVIRT_SOCKET)
    # Beside the shared one, whose other users' sweeps must not meet ours.
    instances = os.path.join(
        os.path.dirname(test_libvirt.INSTANCES_PATH),
        'faulttest-%s' % uuidlib.uuid4().hex[:8])
    yield test_libvirt.IMAGES_PATH, instances
    shutil.rmtree(instances, ignore_errors=True)


def _libvirt_conf(path, uri, images, instances):
    path.write_text('\n'.join([
        '[DEFAULT]', 'compute_driver = libvirt', 'host = faulttest',
        '[libvirt]', 'virt_type = qemu', 'connection_uri = %s' % uri,
        'images_path = %s' % images, 'instances_path = %s' % instances,
        'lifecycle_event_delay = 0']) + '\n')
    return path


@pytest.mark.parametrize('procedures, phase', LIBVIRT_STEPS,
                         ids=['define-before', 'create-before',
                              'create-after'])
def test_libvirt_spawn_killed(tmp_path, libvirt_paths, procedures, phase):
    import libvirt
    from tests.functional import test_libvirt
    images, instances = libvirt_paths
    proxy = fault_proxy.HoldingProxy(
        LIBVIRT_SOCKET, str(tmp_path / 'libvirt.sock'),
        fault_proxy.libvirt_framer, answer_framer=fault_proxy.libvirt_framer)
    proxy.hold(lambda key: key[0] == fault_proxy.LIBVIRT_REMOTE_PROGRAM and
               key[1] in procedures and key[2] == fault_proxy.LIBVIRT_CALL,
               phase)
    through_proxy = _libvirt_conf(
        tmp_path / 'proxy.conf',
        'qemu+unix:///system?socket=%s' % proxy.path, images, instances)
    direct = _libvirt_conf(tmp_path / 'direct.conf', test_libvirt.URI,
                           images, instances)
    name = 'cdfault-%s' % uuidlib.uuid4().hex[:6]
    domain = 'cdrv-' + name
    conn = libvirt.open(test_libvirt.URI)
    try:
        process = _boot_until_held(through_proxy, tmp_path, proxy, name,
                                   '--image', test_libvirt.IMAGE,
                                   '--flavor', test_libvirt.FLAVOR)
        _kill(process)
        proxy.close()
        left = [e for e in test_libvirt.instances_entries(instances)
                if e != '_base']
        assert len([e for e in left if e.endswith('.spawning')]) == 1, left
        defined = domain in [d.name() for d in conn.listAllDomains()]
        assert defined == (procedures[0] == CREATE)
        rows = _cleanup_rows(direct, tmp_path, dry_run=True)
        assert [(r['Backend'], r['Reason'], r['Result']) for r in rows] == [
            ('libvirt', 'its spawn was interrupted', 'would remove')]
        rows = _cleanup_rows(direct, tmp_path, dry_run=False)
        assert [r['Result'] for r in rows] == ['removed']
        assert test_libvirt.instances_entries(instances) == ['_base']
        assert domain not in [d.name() for d in conn.listAllDomains()]
        # Other users of the shared libvirtd have instances of their own.
        result = _run_cli(direct, tmp_path, 'list', '-f', 'json')
        assert result.returncode == 0, result.stderr
        assert name not in [r['Name'] for r in json.loads(result.stdout)]
    finally:
        proxy.close()
        for dom in conn.listAllDomains():
            if dom.name() == domain:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        conn.close()


def test_libvirt_boot_killed_is_swept_by_the_next_command(
        tmp_path, libvirt_paths):
    """init_host sweeps: any later command removes the leftover."""
    from tests.functional import test_libvirt
    images, instances = libvirt_paths
    proxy = fault_proxy.HoldingProxy(
        LIBVIRT_SOCKET, str(tmp_path / 'libvirt.sock'),
        fault_proxy.libvirt_framer, answer_framer=fault_proxy.libvirt_framer)
    proxy.hold(lambda key: key[1] in (DEFINE_XML, DEFINE_XML_FLAGS) and
               key[2] == fault_proxy.LIBVIRT_CALL)
    through_proxy = _libvirt_conf(
        tmp_path / 'proxy.conf',
        'qemu+unix:///system?socket=%s' % proxy.path, images, instances)
    direct = _libvirt_conf(tmp_path / 'direct.conf', test_libvirt.URI,
                           images, instances)
    try:
        process = _boot_until_held(
            through_proxy, tmp_path, proxy,
            'cdfault-%s' % uuidlib.uuid4().hex[:6], '--image',
            test_libvirt.IMAGE, '--flavor', test_libvirt.FLAVOR)
        _kill(process)
    finally:
        proxy.close()
    # _base, UUID/, UUID.spawning
    assert len(test_libvirt.instances_entries(instances)) == 3
    result = _run_cli(direct, tmp_path, '-v', 'list', '-f', 'json')
    assert result.returncode == 0, result.stderr
    # Logged at INFO, for a service's log; not a warning about the command.
    assert 'Removed spawn of instance' in result.stderr
    assert test_libvirt.instances_entries(instances) == ['_base']
    result = _run_cli(direct, tmp_path, '-q', 'list', '-f', 'json')
    assert (result.returncode, result.stderr) == (0, '')
