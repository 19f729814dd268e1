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

"""The resize commands, on the fake backend in interactive-mode style."""

import configparser
import importlib.metadata
import json
import os

import pytest

from compute_driver.cmd import main
from compute_driver import loader

IMAGE = 'cirros-0.6.3-x86_64-disk'
SETUP_CFG = os.path.join(os.path.dirname(__file__), '..', '..', 'setup.cfg')


def _declared_commands():
    """The resize commands as setup.cfg declares them.

    Read from the source tree so that the tests need no reinstall to see
    commands added since the package's metadata was generated.
    """
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    lines = parser['entry_points'][main.NAMESPACE].strip().splitlines()
    found = []
    for line in lines:
        name, _, value = (part.strip() for part in line.partition('='))
        if value.startswith('compute_driver.cmd.resize:'):
            found.append(importlib.metadata.EntryPoint(
                name=name, value=value, group=main.NAMESPACE))
    return found


@pytest.fixture
def app(tmp_path, monkeypatch):
    declared = _declared_commands()
    assert sorted(ep.name for ep in declared) == [
        'resize', 'resize-confirm', 'resize-revert']
    installed = loader.entry_points

    def entry_points(name=None, namespace=loader.NAMESPACE):
        found = installed(name, namespace)
        if namespace == main.NAMESPACE:
            known = {ep.name for ep in found}
            found += [ep for ep in declared if ep.name not in known and
                      (name is None or ep.name == name)]
        return found

    monkeypatch.setattr(loader, 'entry_points', entry_points)
    conf = tmp_path / 'compute-driver.conf'
    conf.write_text('[DEFAULT]\ncompute_driver = fake\nhost = testhost\n')
    apps = []

    def run(*argv):
        if not apps:
            apps.append(main.App())
        return apps[0].run(['--config-file', str(conf), *argv])

    yield run
    for application in apps:
        application.close()


def _show(capsys, app, name):
    capsys.readouterr()
    assert app('show', name, '-f', 'json') == 0
    return json.loads(capsys.readouterr().out)


def test_resize_then_confirm(app, capsys):
    assert app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano') == 0
    assert app('resize', 'vm1', '--flavor', 'm1.micro') == 0
    shown = _show(capsys, app, 'vm1')
    assert (shown['flavor'], shown['state']) == ('m1.micro', 'running')
    assert app('resize-confirm', 'vm1') == 0
    # Nothing kept: a revert stays on the new flavor.
    assert app('resize-revert', 'vm1') == 0
    assert _show(capsys, app, 'vm1')['flavor'] == 'm1.micro'


def test_resize_then_revert(app, capsys):
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano', '--stopped')
    assert app('resize', 'vm1', '--flavor', 'm1.micro') == 0
    assert _show(capsys, app, 'vm1')['state'] == 'shutdown'
    assert app('resize-revert', 'vm1', '--stopped') == 0
    shown = _show(capsys, app, 'vm1')
    assert (shown['flavor'], shown['state']) == ('m1.nano', 'shutdown')


def test_resize_with_confirm(app, capsys):
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano')
    assert app('resize', 'vm1', '--flavor', 'm1.tiny', '--confirm') == 0
    assert _show(capsys, app, 'vm1')['memory_mb'] == 512
    # Confirmed: nothing is kept to revert to.
    assert app('resize-revert', 'vm1') == 0
    assert _show(capsys, app, 'vm1')['flavor'] == 'm1.tiny'


@pytest.mark.parametrize('argv, message', [
    (('resize', 'vm1', '--flavor', 'm1.nope'), 'Flavor m1.nope could not '
     'be found'),
    (('resize', 'ghost', '--flavor', 'm1.tiny'), 'Instance ghost could not '
     'be found.'),
])
def test_resize_bad_input_is_one_line(app, capsys, argv, message):
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.tiny')
    capsys.readouterr()
    assert app(*argv) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(message), err
    assert _show(capsys, app, 'vm1')['flavor'] == 'm1.tiny'


def test_resize_to_smaller_disk_is_refused(app, capsys):
    app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.small')
    capsys.readouterr()
    assert app('resize', 'vm1', '--flavor', 'm1.tiny') == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert 'disks cannot shrink' in err
    shown = _show(capsys, app, 'vm1')
    assert (shown['flavor'], shown['state']) == ('m1.small', 'running')
