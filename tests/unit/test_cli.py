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

"""The compute-driver CLI, run in-process on the fake backend."""

import argparse
import gc
import importlib.metadata
import io
import json
import logging
import subprocess
import sys
import textwrap

import pytest

import compute_driver
from compute_driver.cmd import main
from compute_driver.cmd import server
from compute_driver import conf as cd_conf
from compute_driver import driver as contract
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver import loader
from compute_driver import probe
from compute_driver import verify

IMAGE = 'cirros-0.6.3-x86_64-disk'


@pytest.fixture
def config(tmp_path):
    """Write a config file so that no test reads /etc or ~."""
    def write(text='', **fake):
        lines = ['[DEFAULT]', 'compute_driver = fake', 'host = testhost',
                 'flavor = c1.test:2:256:1']
        lines += text.splitlines()
        if fake:
            lines.append('[fake]')
            lines += ['%s = %s' % item for item in fake.items()]
        path = tmp_path / ('compute-driver-%d.conf' % len(list(
            tmp_path.iterdir())))
        path.write_text('\n'.join(lines) + '\n')
        return str(path)
    return write


@pytest.fixture
def app(config):
    """One App kept across commands, as the interactive mode keeps it."""
    conf_file = config()
    apps = []

    def run(*argv):
        # Built on first use, inside the test: the App keeps the
        # sys.stdout and sys.stderr it was built with, and capsys replaces
        # them for the test itself only.
        if not apps:
            apps.append(main.App())
        return apps[0].run(['--config-file', conf_file, *argv])

    yield run
    for application in apps:
        application.close()


def _run(capsys, conf_file, *argv):
    rc = main.main(['--config-file', conf_file, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _json(capsys, app, *argv):
    capsys.readouterr()
    assert app(*argv, '-f', 'json') == 0
    out, err = capsys.readouterr()
    assert err == ''
    return json.loads(out)


def _one_error_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert 'Traceback' not in err
    return lines[0]


def _use_backend(monkeypatch, cls):
    monkeypatch.setattr(loader, 'load_driver_class', lambda name: cls)


# -- commands that need no backend --------------------------------------------

def test_drivers_lists_fake_without_conf_or_backend(capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('drivers must not build conf or a backend')

    monkeypatch.setattr(cd_conf, 'build_conf', refuse)
    monkeypatch.setattr(loader, 'load_driver', refuse)
    assert main.main(['drivers', '-f', 'json']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {'Name': 'fake',
            'Entry Point': 'compute_driver.fake.driver:FakeDriver',
            'Status': 'ok'} in rows


def test_drivers_shows_why_a_backend_cannot_load(capsys, monkeypatch):
    def load_driver_class(name):
        raise exception.BackendSDKMissing(
            name=name, module='docker',
            hint="pip install 'compute-driver[docker]'")

    monkeypatch.setattr(loader, 'load_driver_class', load_driver_class)
    assert main.main(['drivers', '--load', '-f', 'value', '-c',
                      'Status']) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "missing SDK module 'docker': pip install 'compute-driver[docker]'")


def test_drivers_reads_metadata_without_importing_sdks(capsys, monkeypatch):
    # Without --load, a backend with an extra of its name is not imported:
    # the SDK missing from the metadata is what the status reports.
    monkeypatch.setattr(loader, 'load_driver_class',
                        lambda name: pytest.fail('%s imported' % name)
                        if name != 'fake' else None)
    real = importlib.metadata.distribution

    def distribution(name):
        if name == 'docker':
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, 'distribution', distribution)
    monkeypatch.setattr(probe, 'module_exists',
                        lambda module: module != 'docker')
    assert main.main(['drivers', '-f', 'json']) == 0
    status = {row['Name']: row['Status']
              for row in json.loads(capsys.readouterr().out)}
    assert status['docker'] == (
        "missing SDK module 'docker': pip install 'compute-driver[docker]'")
    assert status['fake'] == 'ok'


def test_flavors_needs_no_backend(capsys, config, monkeypatch):
    monkeypatch.setattr(loader, 'load_driver',
                        lambda *a, **k: pytest.fail('backend loaded'))
    rc, out, err = _run(capsys, config(), 'flavors', '-f', 'json')
    assert rc == 0, err
    by_name = {row['Name']: row for row in json.loads(out)}
    assert by_name['m1.nano']['Memory (MB)'] == 64
    assert by_name['c1.test']['vCPUs'] == 2


# -- host commands ------------------------------------------------------------

def test_check_describes_the_host(capsys, app):
    data = _json(capsys, app, 'check')
    assert data['driver'] == 'fake'
    assert data['hypervisor_type'] == 'fake'
    assert data['hypervisor_version'] == '1.0.0'
    assert data['hypervisor_hostname'] == 'testhost'
    assert data['vcpus_free'] == 1000
    assert 'live_resize' in data['capabilities']


def test_resources_include_free_values(capsys, app):
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'c1.test')
    data = _json(capsys, app, 'resources')
    assert data['vcpus_used'] == 2
    assert data['vcpus_free'] == data['vcpus'] - 2
    assert data['memory_mb_free'] == data['memory_mb'] - 256
    assert data['running_vms'] == 1
    assert data['cpu_info']['arch'] == 'x86_64'


def test_images_lists_the_configured_images(capsys, app):
    assert [i['Name'] for i in _json(capsys, app, 'images')] == [IMAGE]


# -- output formatters --------------------------------------------------------

@pytest.mark.parametrize('options', [
    ['-f', 'json', '--max-width', '10'], ['--format=json', '--fit-width'],
    ['-fjson', '--print-empty'], ['-f', 'json', '--max-w', '10']])
def test_table_options_are_taken_with_another_format(capsys, app, options):
    # The table formatter is imported only for a command line using it;
    # its options stay valid (they are ignored) with any other format.
    _json(capsys, app, 'boot', 'vm1', '--image', IMAGE, '--flavor',
          'm1.nano')
    capsys.readouterr()
    for command in (['list'], ['show', 'vm1']):
        assert app(*command, *options) == 0
        out, err = capsys.readouterr()
        assert err == ''
        assert 'vm1' in json.dumps(json.loads(out))


@pytest.mark.parametrize('command', [['list'], ['show', 'vm1']])
def test_the_table_is_still_the_default_and_in_the_help(capsys, app,
                                                        command):
    _json(capsys, app, 'boot', 'vm1', '--image', IMAGE, '--flavor',
          'm1.nano')
    capsys.readouterr()
    for options in ([], ['-f', 'table'], ['-f', 'value', '-f', 'table']):
        assert app(*command, *options) == 0
        out, err = capsys.readouterr()
        assert out.startswith('+-') and 'vm1' in out, options


@pytest.mark.parametrize('command', ['list', 'show'])
def test_the_help_shows_every_formatter(capsys, config, command):
    rc, out, err = _run(capsys, config(), 'help', command)
    assert rc == 0
    assert 'table formatter:' in out and '--max-width' in out
    assert 'defaults to table' in ' '.join(out.split())


def test_a_bad_format_names_every_formatter(capsys, config):
    rc, out, err = _run(capsys, config(), 'list', '-f', 'nope')
    assert rc == 2
    line = _one_error_line(err)
    assert 'nope' in line and "'table'" in line and "'json'" in line


# -- instance lifecycle -------------------------------------------------------

def test_instance_lifecycle_in_one_app(capsys, app):
    data = _json(capsys, app, 'boot', 'vm1', '--image', IMAGE, '--flavor',
                 'm1.nano', '--property', 'role=web', '--property', 'a=b=c')
    assert data['state'] == 'running'
    assert data['properties'] == {'role': 'web', 'a': 'b=c'}
    uuid = data['uuid']

    rows = _json(capsys, app, 'list')
    assert rows == [{'Name': 'vm1', 'UUID': uuid, 'State': 'running',
                     'Flavor': 'm1.nano', 'Image': IMAGE, 'Networks': ''}]
    assert _json(capsys, app, 'show', uuid)['name'] == 'vm1'

    def state_after(*command):
        assert app(*command) == 0
        return _json(capsys, app, 'show', 'vm1')['state']

    assert state_after('stop', 'vm1', '--timeout', '0') == 'shutdown'
    assert state_after('start', 'vm1') == 'running'
    assert state_after('reboot', 'vm1') == 'running'
    assert state_after('pause', 'vm1') == 'paused'
    assert state_after('unpause', 'vm1') == 'running'
    assert state_after('suspend', 'vm1') == 'suspended'
    assert state_after('reboot', '--hard', 'vm1') == 'running'
    assert state_after('suspend', 'vm1') == 'suspended'
    assert state_after('resume', 'vm1') == 'running'

    assert app('snapshot', 'vm1', 'vm1-snap') == 0
    images = {i['Name']: i for i in _json(capsys, app, 'images')}
    assert images['vm1-snap']['Properties']['instance_uuid'] == uuid
    assert images['vm1-snap']['Snapshot Of'] == 'vm1 (%s)' % uuid
    assert images[IMAGE]['Snapshot Of'] == ''
    assert state_after('revert', 'vm1', 'vm1-snap') == 'running'

    assert app('live-resize', 'vm1', '--memory', '32') == 0
    assert _json(capsys, app, 'show', 'vm1')['memory_mb'] == 32

    capsys.readouterr()
    assert app('console-log', 'vm1', '--lines', '2') == 0
    log = capsys.readouterr().out.splitlines()
    assert len(log) == 2
    assert 'resized to 1 CPUs, 32 MiB' in log[-1]

    assert app('delete', 'vm1') == 0
    assert _json(capsys, app, 'list') == []


def test_boot_stopped(capsys, app):
    data = _json(capsys, app, 'boot', 'vm1', '--image', IMAGE, '--flavor',
                 'm1.nano', '--stopped')
    assert data['state'] == 'shutdown'


def test_delete_keeps_going_and_reports_failures(capsys, app):
    for name in ('vm1', 'vm2'):
        app('boot', name, '--image', IMAGE, '--flavor', 'm1.nano')
    capsys.readouterr()
    assert app('delete', 'vm1', 'nosuch', 'vm2') == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line == ('Failed to delete 1 of 3 instances: Instance nosuch '
                    'could not be found.')
    assert _json(capsys, app, 'list') == []


def test_interactive_mode_keeps_the_backend(capsys, config):
    commands = ('boot vm1 --image %s --flavor m1.nano -f value -c state\n'
                'stop vm1 --timeout 0\n'
                'list -f value -c Name -c State\n'
                'stop vm1\n' % IMAGE)
    application = main.App(stdin=io.StringIO(commands))
    try:
        assert application.run(['--config-file', config()]) == 0
    finally:
        application.close()
    out, err = capsys.readouterr()
    assert out.split() == ['running', 'vm1', 'shutdown']
    assert 'Cannot power off instance vm1 while it is shutdown' in err


# -- errors -------------------------------------------------------------------

def test_unknown_backend_is_one_line(capsys, config):
    rc, out, err = _run(capsys, config('compute_driver = nosuch'), 'check')
    assert rc == 1
    line = _one_error_line(err)
    assert "'nosuch'" in line and 'Installed drivers: ' in line
    # Other backends may be installed too; fake always is.
    assert 'fake' in line.split('Installed drivers: ')[1]


def test_invalid_option_value_is_one_line(capsys, config):
    rc, out, err = _run(capsys, config(vcpus=-1), 'list')
    assert rc == 1
    line = _one_error_line(err)
    assert line.startswith('Invalid configuration: [fake] vcpus')


def test_missing_config_file_is_one_line(capsys, tmp_path):
    rc, out, err = _run(capsys, str(tmp_path / 'nope.conf'), 'flavors')
    assert rc == 1
    assert 'nope.conf' in _one_error_line(err)


def test_unknown_flavor(capsys, config):
    rc, out, err = _run(capsys, config(), 'boot', 'vm1', '--image', IMAGE,
                        '--flavor', 'm1.huge')
    assert rc == 1
    assert _one_error_line(err).startswith(
        'Flavor m1.huge could not be found. Available: m1.nano')


def test_bad_instance_name(capsys, config):
    rc, out, err = _run(capsys, config(), 'boot', 'bad name', '--image',
                        IMAGE, '--flavor', 'm1.nano')
    assert rc == 1
    assert _one_error_line(err).startswith("Invalid instance name 'bad name'")


def test_unknown_instance(capsys, config):
    rc, out, err = _run(capsys, config(), 'show', 'nosuch')
    assert rc == 1
    assert _one_error_line(err) == 'Instance nosuch could not be found.'


def test_stop_stopped_instance(capsys, app):
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano', '--stopped')
    capsys.readouterr()
    assert app('stop', 'vm1') == 1
    assert _one_error_line(capsys.readouterr().err) == (
        'Cannot power off instance vm1 while it is shutdown; it must be '
        'running or paused or suspended or crashed.')


def test_instance_actions_are_operations_of_the_table():
    actions = [cls for cls in vars(server).values()
               if isinstance(cls, type) and
               issubclass(cls, server._InstanceAction) and
               not cls.__name__.startswith('_')]
    assert len(actions) == 11
    assert all(cls.operation in contract.OPERATIONS for cls in actions)


def test_hard_reboot_resets_a_paused_instance(capsys, app):
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano')
    app('pause', 'vm1')
    assert app('reboot', 'vm1') == 1
    capsys.readouterr()
    assert app('reboot', '--hard', 'vm1') == 0
    assert _json(capsys, app, 'show', 'vm1')['state'] == 'running'


def test_unsupported_operation(capsys, app, monkeypatch):
    class NoPause(fake_driver.FakeDriver):
        capabilities = {**fake_driver.FakeDriver.capabilities,
                        'supports_pause': False}

    _use_backend(monkeypatch, NoPause)
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano')
    capsys.readouterr()
    assert app('pause', 'vm1') == 1
    assert _one_error_line(capsys.readouterr().err) == (
        'The fake backend does not support pause.')


@pytest.mark.parametrize('argv, message', [
    (['stop', 'vm1', '--timeout', '-1'], 'argument --timeout: must be an '
                                         "integer >= 0, got '-1'"),
    (['console-log', 'vm1', '--lines', '0'], 'argument --lines'),
    (['boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano', '--property',
      'novalue'], "expected KEY=VALUE, got 'novalue'"),
    (['boot', 'vm1'], 'the following arguments are required: --image'),
    (['live-resize', 'vm1'], 'live-resize needs --vcpus, --memory or both'),
    (['live-resize', 'vm1', '--vcpus', 'two'], 'argument --vcpus'),
    (['verify', '--count', '0'], 'argument --count'),
    (['verify', '--count', '2', '--concurrency', '3'],
     '--concurrency (3) cannot exceed --count (2)'),
    (['verify', '--name-prefix', '_x'], 'name prefix'),
])
def test_usage_errors_exit_2_on_one_line(capsys, config, argv, message):
    rc, out, err = _run(capsys, config(), *argv)
    assert rc == 2
    assert message in _one_error_line(err)


def test_debug_shows_the_traceback(capsys, config):
    rc, out, err = _run(capsys, config('compute_driver = nosuch'),
                        '--debug', 'check')
    assert rc == 1
    assert 'Traceback' in err
    assert 'DriverNotFound' in err


def test_unexpected_error_names_its_type(capsys, app, monkeypatch):
    def broken(self):
        raise RuntimeError('boom')

    monkeypatch.setattr(fake_driver.FakeDriver, 'list_instance_records',
                        broken)
    capsys.readouterr()
    assert app('list') == 1
    assert _one_error_line(capsys.readouterr().err) == 'RuntimeError: boom'


def test_keyboard_interrupt_exits_130(capsys, config, monkeypatch):
    def interrupted(self):
        raise KeyboardInterrupt()

    monkeypatch.setattr(fake_driver.FakeDriver, 'list_instance_records',
                        interrupted)
    rc, out, err = _run(capsys, config(), 'list')
    assert rc == 130
    assert 'Traceback' not in err


# -- verify -------------------------------------------------------------------

def test_verify_prints_one_row_per_step(capsys, config):
    rc, out, err = _run(capsys, config(), 'verify', '--count', '3',
                        '--concurrency', '2', '-f', 'json')
    assert rc == 0, err
    rows = {row['Operation']: row for row in json.loads(out)}
    assert len(rows) == len(verify.STEPS)
    assert rows['spawn']['Passed'] == 3
    assert rows['delete_snapshot']['Failed'] == 0
    assert rows['live_resize_down']['Max (ms)'] is not None
    assert rows['resize']['Failed'] == 0


def test_verify_skips_unsupported_steps(capsys, config, monkeypatch):
    class NoSuspend(fake_driver.FakeDriver):
        capabilities = {**fake_driver.FakeDriver.capabilities,
                        'supports_suspend': False, 'supports_resume': False}

    _use_backend(monkeypatch, NoSuspend)
    rc, out, err = _run(capsys, config(), 'verify', '-f', 'json')
    assert rc == 0, err
    rows = {row['Operation']: row for row in json.loads(out)}
    assert rows['suspend']['Skipped'] == 1
    assert rows['suspend']['p50 (ms)'] is None


def test_verify_failure_exits_1_and_names_the_step(capsys, config,
                                                   monkeypatch):
    class BrokenPause(fake_driver.FakeDriver):
        def _pause(self, guest, instance):
            raise exception.BackendError(operation='pause',
                                         instance=instance.name,
                                         reason='boom')

    _use_backend(monkeypatch, BrokenPause)
    rc, out, err = _run(capsys, config(), 'verify', '--count', '2',
                        '--name-prefix', 'v-', '-f', 'value')
    assert rc == 1
    # Off a terminal, progress lines come first; then the problems.
    progress = [ln for ln in err.splitlines() if ln.startswith('verify: ')]
    assert len(progress) == 2
    line = _one_error_line('\n'.join(err.splitlines()[len(progress):]))
    assert line.startswith('pause failed on 2 of 2 instances; first error '
                           'on v-')
    assert 'pause failed on instance v-' in line
    assert line.endswith(': boom')
    rows = [row.split() for row in out.splitlines()]
    assert ['unpause', '0', '0', '0', '2'] in [r[:5] for r in rows]


def test_verify_needs_an_image_it_can_find(capsys, config, monkeypatch):
    class NoImages(fake_driver.FakeDriver):
        capabilities = {**fake_driver.FakeDriver.capabilities,
                        'supports_list_images': False}

    _use_backend(monkeypatch, NoImages)
    rc, out, err = _run(capsys, config(), 'verify')
    assert rc == 2
    assert '--image' in _one_error_line(err)
    rc, out, err = _run(capsys, config(), 'verify', '--image', IMAGE)
    assert rc == 0, err


@pytest.mark.parametrize('argv', [['snapshot', '--help'],
                                  ['help', 'snapshot']])
def test_help_after_a_command_is_the_commands_help(capsys, config, argv):
    rc, out, err = _run(capsys, config(), *argv)
    assert rc == 0
    assert out.startswith('usage: compute-driver snapshot')
    assert 'INSTANCE IMAGE' in out


# -- one line means one line --------------------------------------------------

class _NoisyFailingSpawn(fake_driver.FakeDriver):
    """Logs as a real backend does while a spawn fails and rolls back."""

    def _create(self, instance, *args, **kwargs):
        log = logging.getLogger('compute_driver.fake.driver')
        log.info('Loading image %s', instance.image_ref)
        log.warning('Spawn of %s failed; removing what it created',
                    instance.name)
        try:
            raise RuntimeError('rollback failed')
        except RuntimeError:
            log.exception('Could not remove %s', instance.name)
        raise exception.BackendError(operation='spawn',
                                     instance=instance.name,
                                     reason='the hypervisor said no')


@pytest.mark.parametrize('verbosity', [[], ['-q']])
def test_library_logs_are_hidden_at_default_verbosity(capsys, config,
                                                      monkeypatch, verbosity):
    _use_backend(monkeypatch, _NoisyFailingSpawn)
    rc, out, err = _run(capsys, config(), *verbosity, 'boot', 'vm1',
                        '--image', IMAGE, '--flavor', 'm1.nano')
    assert rc == 1
    assert _one_error_line(err) == (
        'spawn failed on instance vm1: the hypervisor said no')


@pytest.mark.parametrize('verbosity,shown', [
    (['-v'], ['Loading image', 'removing what it created', 'Could not '
              'remove vm1', 'Traceback']),
    (['--debug'], ['Loading image', 'removing what it created',
                   'Traceback']),
])
def test_verbose_shows_library_logs(capsys, config, monkeypatch, verbosity,
                                    shown):
    _use_backend(monkeypatch, _NoisyFailingSpawn)
    rc, out, err = _run(capsys, config(), *verbosity, 'boot', 'vm1',
                        '--image', IMAGE, '--flavor', 'm1.nano')
    assert rc == 1
    for words in shown:
        assert words in err


def test_operator_warnings_are_one_line_each(capsys, config, monkeypatch):
    class Warns(fake_driver.FakeDriver):
        def list_instance_records(self):
            compute_driver.OPERATOR_LOG.warning(
                'the fake host is\npretend %s', 'only')
            return super().list_instance_records()

    _use_backend(monkeypatch, Warns)
    rc, out, err = _run(capsys, config(), 'list')
    assert rc == 0
    assert err == 'warning: the fake host is pretend only\n'


def test_check_prints_host_warnings_and_succeeds(capsys, config,
                                                 monkeypatch):
    class Slow(fake_driver.FakeDriver):
        def host_warnings(self):
            return ['/dev/kvm is missing: guests run emulated, slowly',
                    'a second\nproblem']

    _use_backend(monkeypatch, Slow)
    rc, out, err = _run(capsys, config(), 'check', '-f', 'json')
    assert rc == 0
    assert err.splitlines() == [
        'warning: /dev/kvm is missing: guests run emulated, slowly',
        'warning: a second problem']
    assert json.loads(out)['driver'] == 'fake'


def test_host_warnings_default_to_none(config):
    backend = fake_driver.FakeDriver(cd_conf.build_conf(
        config_files=[config()]))
    assert backend.host_warnings() == []


@pytest.mark.parametrize('argv,line', [
    (['bot', 'vm1'], "compute-driver: error: 'bot' is not a compute-driver "
                     "command; did you mean 'boot' or 'reboot'? (see "
                     "'compute-driver --help')"),
    (['zzzzzz'], "compute-driver: error: 'zzzzzz' is not a compute-driver "
                 "command (see 'compute-driver --help')"),
])
def test_unknown_command_is_one_line(capsys, config, argv, line):
    rc, out, err = _run(capsys, config(), *argv)
    assert rc == 2
    assert out == ''
    assert _one_error_line(err) == line


def test_unknown_option_in_config_fails_every_command(capsys, config):
    path = config('[libvirt]\nconection_uri = qemu:///system')
    for argv in (['check'], ['list'], ['flavors'], ['images']):
        rc, out, err = _run(capsys, path, *argv)
        assert rc == 1
        assert _one_error_line(err) == (
            'Invalid configuration: unknown option conection_uri in '
            'section [libvirt] of %s; did you mean connection_uri?' % path)


def test_missing_config_dir_is_one_line(capsys, config, tmp_path):
    missing = str(tmp_path / 'nonexistent.d')
    rc, out, err = _run(capsys, config(), '--config-dir', missing, 'list')
    assert rc == 1
    assert _one_error_line(err) == (
        'Invalid configuration: configuration directory %s does not exist '
        'or is not a directory' % missing)


# -- validation before the backend acts ---------------------------------------

@pytest.mark.parametrize('prop,words', [
    ('k=a\x07b', "control character '\\x07'"),
    ('k=' + 'x' * 300, 'has 300 characters'),
    ('bad\tkey=v', "key 'bad\\tkey'"),
])
def test_bad_metadata_never_reaches_the_backend(capsys, config, monkeypatch,
                                                prop, words):
    class Refuses(fake_driver.FakeDriver):
        def _claim(self, instance):
            raise AssertionError('the backend received the instance')

    _use_backend(monkeypatch, Refuses)
    rc, out, err = _run(capsys, config(), 'boot', 'vm1', '--image', IMAGE,
                        '--flavor', 'm1.nano', '--property', prop)
    assert rc == 1
    assert words in _one_error_line(err)


@pytest.mark.parametrize('vcpus', ['4096', '999999999999'])
def test_absurd_configured_flavor_fails_every_command(capsys, config, vcpus):
    rc, out, err = _run(capsys, config('flavor = x1.huge:%s:64' % vcpus),
                        'list')
    assert rc == 1
    assert _one_error_line(err) == (
        "Invalid configuration: flavor 'x1.huge:%s:64': flavor x1.huge "
        "vcpus must be at most 1024, got %s" % (vcpus, vcpus))


# -- snapshots ----------------------------------------------------------------

def test_snapshot_delete(capsys, app):
    uuid = _json(capsys, app, 'boot', 'vm1', '--image', IMAGE, '--flavor',
                 'm1.nano')['uuid']
    for name in ('snap1', 'snap2', 'snap3'):
        assert app('snapshot', 'vm1', name) == 0
    assert app('delete', 'vm1') == 0
    images = {i['Name']: i for i in _json(capsys, app, 'images')}
    # The instance is gone; its uuid still says where the snapshot came
    # from.
    assert images['snap1']['Snapshot Of'] == uuid

    capsys.readouterr()
    assert app('snapshot-delete', 'snap1') == 0
    assert app('snapshot-delete', 'snap2', 'snap3') == 0
    assert capsys.readouterr().err == ''
    assert [i['Name'] for i in _json(capsys, app, 'images')] == [IMAGE]


@pytest.mark.parametrize('argv,line', [
    (['snapshot-delete', 'nosuch'],
     'Image nosuch could not be found. Available: snap1.'),
    (['snapshot-delete', IMAGE],
     'Invalid input: image %s is not a snapshot; only snapshots can be '
     'deleted' % IMAGE),
    (['snapshot-delete', 'nosuch', 'snap1'],
     'Failed to delete 1 of 2 snapshots: Image nosuch could not be found. '
     'Available: snap1.'),
])
def test_snapshot_delete_refuses_what_is_not_a_snapshot(
        capsys, app, argv, line):
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano')
    app('snapshot', 'vm1', 'snap1')
    capsys.readouterr()
    assert app(*argv) == 1
    assert _one_error_line(capsys.readouterr().err) == line
    names = [i['Name'] for i in _json(capsys, app, 'images')]
    assert IMAGE in names
    assert ('snap1' in names) == ('snap1' not in argv)


def test_snapshot_delete_needs_the_operation(capsys, app, monkeypatch):
    class NoDelete(fake_driver.FakeDriver):
        capabilities = {**fake_driver.FakeDriver.capabilities,
                        'supports_delete_snapshot': False}

    _use_backend(monkeypatch, NoDelete)
    assert app('snapshot-delete', 'snap1') == 1
    assert _one_error_line(capsys.readouterr().err) == (
        'The fake backend does not support delete_snapshot.')


def test_cleanup_on_the_fake_says_there_is_nothing(capsys, config):
    for argv in (['cleanup'], ['cleanup', '--dry-run', '-f', 'json']):
        rc, out, err = _run(capsys, config(), *argv)
        assert rc == 0
        assert err == 'Nothing to clean up on the fake backend.\n'
    assert json.loads(out) == []


def _as_program(tmp_path, code, *args):
    """Run ``code`` in a new process, as the console script would run."""
    return subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=120,
        env={'HOME': str(tmp_path), 'PATH': '/usr/bin:/bin'})


def test_the_program_ends_after_its_exit_functions(config, tmp_path):
    # main() without arguments is the program: it ends the process
    # without the interpreter's teardown (no object of __main__ is
    # finalised), after the atexit functions, with the command's exit
    # code, its output flushed and its log file complete.
    log = tmp_path / 'cd.log'
    result = _as_program(tmp_path, '''
        import atexit, sys
        from compute_driver.cmd import main

        class TornDown:
            def __del__(self):
                print('torn down')

        kept = TornDown()
        atexit.register(print, 'atexit ran')
        conf_file, log_file, command = sys.argv[1:]
        sys.argv = ['compute-driver', '--config-file', conf_file,
                    '--log-file', log_file, '-v', command, 'nosuch']
        sys.exit(main.main())
    ''', config(), str(log), 'show')
    assert result.returncode == 1
    assert result.stdout == 'atexit ran\n'
    assert 'Instance nosuch could not be found.' in (
        result.stderr.splitlines())
    # Logged by the backend's cleanup, after the command.
    assert log.read_text().rstrip().endswith('cleaned up')


def test_the_program_waits_for_the_threads_it_started(config, tmp_path):
    # A thread that is not a daemon keeps the process, as the interpreter
    # would: main() returns and the exit is Python's own.
    result = _as_program(tmp_path, '''
        import sys, threading
        from compute_driver.cmd import main

        release = threading.Event()
        worker = threading.Thread(
            target=lambda: release.wait() and print('worker done'))
        worker.start()
        sys.argv = ['compute-driver', '--config-file', sys.argv[1],
                    'flavors', '-f', 'value', '-c', 'Name']
        code = main.main()
        print('main returned', code)
        release.set()
    ''', config())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert 'c1.test' in lines
    assert lines[-2:] == ['main returned 0', 'worker done']


def test_listings_keep_the_collector_paused_to_their_end(
        config, capsys, monkeypatch):
    # main() pauses the cyclic garbage collector for the start-up; list
    # and show keep it paused while they read and print, other commands
    # turn it back on once the backend is up. main() turns it on again
    # at the end either way.
    seen = {}

    def spy(name, method):
        def call(self, *args, **kwargs):
            seen[name] = gc.isenabled()
            return method(self, *args, **kwargs)
        monkeypatch.setattr(fake_driver.FakeDriver, name, call)

    spy('list_instance_records', fake_driver.FakeDriver.list_instance_records)
    spy('find_instance', fake_driver.FakeDriver.find_instance)
    spy('spawn', fake_driver.FakeDriver.spawn)
    conf_file = config()
    assert gc.isenabled()
    # Each main() has a backend of its own: show finds no vm1.
    for argv, code in (
            (['boot', 'vm1', '--image', IMAGE, '--flavor', 'c1.test'], 0),
            (['list'], 0), (['show', 'vm1'], 1)):
        assert _run(capsys, conf_file, *argv)[0] == code
        assert gc.isenabled()
    assert seen == {'spawn': True, 'list_instance_records': False,
                    'find_instance': False}


@pytest.mark.parametrize('names, rows', [
    (('Name', 'UUID'), []),
    (('Name', 'Networks'), [('a', 'eth0 x\neth1 "y" \u00e9\u2603'),
                            ('b', '')]),
    (('Name', 'Count'), [('a', 1), ('b', None)]),
    (('Name', 'Name'), [('a', 'b')]),
    (('Name', 'UUID'), [('short',)]),
    (('Name',), [()]),
    ((), [()]),
])
@pytest.mark.parametrize('noindent', [False, True])
def test_json_listings_print_what_cliffs_formatter_does(names, rows,
                                                        noindent):
    from cliff.formatters import json_format

    from compute_driver.cmd import common

    formatter = json_format.JSONFormatter()
    args = argparse.Namespace(noindent=noindent)
    cliffs, ours = io.StringIO(), io.StringIO()
    formatter.emit_list(names, rows, cliffs, args)
    common._JSONList(formatter).emit_list(names, iter(rows), ours, args)
    assert ours.getvalue() == cliffs.getvalue()


@pytest.mark.parametrize('spawn_volumes, message', [
    (True, 'The fake backend does not support attaching a volume to an '
           'existing instance (give its volumes when the instance is '
           'created).'),
    (False, 'The fake backend does not support attach_volume.'),
])
def test_attach_volume_unsupported(capsys, app, monkeypatch, spawn_volumes,
                                   message):
    # A backend that takes volumes at creation says so.
    class NoAttach(fake_driver.FakeDriver):
        capabilities = {**fake_driver.FakeDriver.capabilities,
                        'supports_attach_volume': False,
                        'supports_live_attach_volume': False}

    NoAttach.spawn_volumes = spawn_volumes
    _use_backend(monkeypatch, NoAttach)
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano')
    capsys.readouterr()
    assert app('volume', 'attach', 'vm1', '--local', '/dev/loop0',
               '--mountpoint', '/dev/vdb') == 1
    assert _one_error_line(capsys.readouterr().err) == message
