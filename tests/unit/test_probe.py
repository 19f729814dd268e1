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

import importlib
import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

from compute_driver import exception
from compute_driver import loader
from compute_driver import probe

# The backend module of the third-party distributions below: importing it
# fails loudly, so a test that expects no import notices one.
_NO_IMPORT = 'raise ImportError("imported", name="refused_sdk")\n'


class Site:
    """A directory on sys.path holding distributions made for a test."""

    def __init__(self, path):
        self.path = path

    def dist(self, name, version, requires=(), extras=(), entry_points=None,
             files=None, top_level=None):
        info = self.path / ('%s-%s.dist-info' % (name.replace('-', '_'),
                                                 version))
        info.mkdir()
        lines = ['Metadata-Version: 2.1', 'Name: %s' % name,
                 'Version: %s' % version]
        lines += ['Provides-Extra: %s' % e for e in extras]
        lines += ['Requires-Dist: %s' % r for r in requires]
        (info / 'METADATA').write_text('\n'.join(lines) + '\n')
        if entry_points:
            (info / 'entry_points.txt').write_text(
                '[%s]\n' % loader.NAMESPACE + ''.join(
                    '%s = %s\n' % kv for kv in entry_points.items()))
        if files is not None:
            (info / 'RECORD').write_text(
                ''.join('%s,,\n' % f for f in files))
        if top_level is not None:
            (info / 'top_level.txt').write_text(
                ''.join('%s\n' % t for t in top_level))
        return importlib.metadata.PathDistribution(info)

    def module(self, dotted, text=''):
        parts = dotted.split('.')
        directory = self.path
        for part in parts[:-1]:
            directory = directory / part
            directory.mkdir(exist_ok=True)
            init = directory / '__init__.py'
            if not init.exists():
                init.write_text(_NO_IMPORT)
        (directory / ('%s.py' % parts[-1])).write_text(text)
        importlib.invalidate_caches()


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return Site(tmp_path)


def _backend(site, monkeypatch, extras=('thirdx',), requires=(
        'thirdsdk>=1.2; extra == "thirdx"',)):
    """A third-party backend "thirdx" whose module must not be imported."""
    dist = site.dist('compute-driver-thirdx', '1.0', extras=extras,
                     requires=requires,
                     entry_points={'thirdx': 'thirdx_backend.driver:Driver'})
    site.module('thirdx_backend.driver', _NO_IMPORT)
    monkeypatch.setattr(loader, 'entry_points', lambda name=None: [
        ep for ep in dist.entry_points
        if ep.group == loader.NAMESPACE and ep.name in (name, None)])
    return dist


@pytest.mark.parametrize('version,spec,expected', [
    ('6.1.0', '>=6.1.0', True),
    ('6.0.9', '>=6.1.0', False),
    ('6.1', '>=6.1.0', True),
    ('2.0', '>=1.2,<2', False),
    ('1.9.9', '>=1.2,<2', True),
    ('1.4.7', '~=1.4.2', True),
    ('1.5.0', '~=1.4.2', False),
    ('1.3', '==1.3.0', True),
    ('1.3', '!=1.3', False),
    ('7.2.0', '', True),
    ('26.21.1', '>2.0.0', True),
])
def test_satisfies_release_versions(version, spec, expected):
    assert probe.satisfies(version, spec) is expected


def test_satisfies_uses_packaging_for_what_it_cannot_order(monkeypatch):
    pytest.importorskip('packaging')
    assert probe.satisfies('2.0rc1', '>=1.0') is True
    assert probe.satisfies('1.2.post1', '==1.2.*') is True


def test_satisfies_undecided_without_packaging(monkeypatch):
    monkeypatch.setitem(sys.modules, 'packaging', None)
    with pytest.raises(probe._Undecided):
        probe.satisfies('2.0rc1', '>=1.0')
    # Simple specifiers still need no packaging.
    assert probe.satisfies('2.0', '>=1.0') is True


def test_extra_requirements_reads_every_marker_spelling(site):
    dist = site.dist('some-dist', '1.0', extras=('docker', 'other'), requires=(
        'pbr>=5.8.0',
        'oslo.config>=9.0; python_version >= "3.8"',
        'docker>=6.1.0; extra == "docker"',
        "docker-tls (>=1.0) ; extra == 'docker'",
        'Foo_Bar[x]>=2 ; extra == "Docker"',
        'other>=1; extra == "other"',
    ))
    assert probe.extra_requirements(dist, 'docker') == [
        ('docker', '>=6.1.0'), ('docker-tls', '>=1.0'), ('Foo_Bar', '>=2')]


def test_top_level_modules_from_record_or_top_level_txt(site):
    dist = site.dist('sdk-a', '1.0', files=(
        'sdka/__init__.py', 'sdka/sub/x.py', 'sdka_helper.py',
        'sdkamod.cpython-311-x86_64-linux-gnu.so', 'sdk_a.pth',
        'sdk_a-1.0.dist-info/METADATA', '../../bin/sdka',
        '__pycache__/sdka_helper.cpython-311.pyc'))
    assert sorted(probe.top_level_modules(dist)) == [
        'sdka', 'sdka_helper', 'sdkamod']
    dist = site.dist('sdk-b', '1.0', files=('x.py',), top_level=('SdkB',))
    assert probe.top_level_modules(dist) == ['SdkB']


def test_module_exists_imports_nothing(site):
    site.module('probed_pkg.sub.leaf')
    assert probe.module_exists('probed_pkg.sub.leaf')
    assert not probe.module_exists('probed_pkg.sub.nosuch')
    assert not probe.module_exists('probed_pkg.sub.leaf.deeper')
    assert not probe.module_exists('no_such_top_level_module')
    assert 'probed_pkg' not in sys.modules


def test_check_driver_ok_from_metadata_without_import(site, monkeypatch):
    _backend(site, monkeypatch)
    site.dist('thirdsdk', '1.3.0', files=('thirdsdk/__init__.py',))
    site.module('thirdsdk.api')
    probe.check_driver('thirdx')
    assert 'thirdx_backend' not in sys.modules
    assert 'thirdsdk' not in sys.modules


def test_check_driver_missing_sdk(site, monkeypatch):
    _backend(site, monkeypatch)
    with pytest.raises(exception.BackendSDKMissing) as exc:
        probe.check_driver('thirdx')
    assert exc.value.module == 'thirdsdk'
    assert exc.value.hint == "pip install 'compute-driver-thirdx[thirdx]'"


def test_check_driver_sdk_module_missing_from_installed_dist(site,
                                                             monkeypatch):
    _backend(site, monkeypatch)
    site.dist('thirdsdk', '1.3.0', files=('thirdsdk/__init__.py',))
    with pytest.raises(exception.BackendSDKMissing) as exc:
        probe.check_driver('thirdx')
    assert exc.value.module == 'thirdsdk'


def test_check_driver_sdk_too_old(site, monkeypatch):
    _backend(site, monkeypatch)
    site.dist('thirdsdk', '1.1.9', files=('thirdsdk/__init__.py',))
    site.module('thirdsdk.api')
    with pytest.raises(exception.BackendSDKVersion) as exc:
        probe.check_driver('thirdx')
    assert exc.value.requirement == 'thirdsdk>=1.2'
    assert exc.value.installed == 'thirdsdk 1.1.9'
    assert "pip install 'compute-driver-thirdx[thirdx]'" in str(exc.value)


@pytest.mark.parametrize('extras', [(), ('other',)])
def test_check_driver_without_its_extra_imports_that_backend(
        site, monkeypatch, extras):
    _backend(site, monkeypatch, extras=extras, requires=())
    loaded = []

    def load_driver_class(name):
        loaded.append(name)
        raise exception.BackendSDKMissing(name=name, module='refused_sdk',
                                          hint='pip install refused_sdk')

    monkeypatch.setattr(loader, 'load_driver_class', load_driver_class)
    with pytest.raises(exception.BackendSDKMissing):
        probe.check_driver('thirdx')
    assert loaded == ['thirdx']


def test_check_driver_sdk_without_metadata_imports(site, monkeypatch):
    # A module on the path that no distribution declares (copied there, or
    # a distro package without egg-info): only importing can tell.
    _backend(site, monkeypatch)
    site.module('thirdsdk')
    loaded = []
    monkeypatch.setattr(loader, 'load_driver_class', loaded.append)
    probe.check_driver('thirdx')
    assert loaded == ['thirdx']


def test_check_driver_load_imports(site, monkeypatch):
    _backend(site, monkeypatch)
    loaded = []
    monkeypatch.setattr(loader, 'load_driver_class', loaded.append)
    probe.check_driver('thirdx', load=True)
    assert loaded == ['thirdx']


def test_check_driver_not_installed():
    with pytest.raises(exception.DriverNotFound):
        probe.check_driver('nosuch-backend')


@pytest.mark.parametrize('name', loader.installed_drivers())
def test_metadata_agrees_with_importing(name):
    """Every installed backend's status is the same both ways."""
    def outcome(load):
        try:
            probe.check_driver(name, load=load)
        except exception.ComputeDriverError as exc:
            return type(exc).__name__, exception.one_line(exc)
        return 'ok'

    assert outcome(load=False) == outcome(load=True)


@pytest.mark.parametrize('argv', [
    ['drivers'], ['flavors'], ['--version'], ['--help'], ['drivers', '-h']])
def test_commands_needing_no_backend_import_none(argv, tmp_path):
    code = textwrap.dedent('''
        import sys
        from compute_driver.cmd import main
        try:
            main.main(sys.argv[1:])
        except SystemExit:
            pass
        heavy = ('docker', 'libvirt', 'XenAPI', 'compute_driver.docker',
                 'compute_driver.libvirt', 'compute_driver.xenapi',
                 'rich', 'packaging')
        print(sorted(m for m in sys.modules
                     if m in heavy or m.startswith(heavy[3:6])))
    ''')
    result = subprocess.run(
        [sys.executable, '-c', code, *argv], capture_output=True, text=True,
        env={'HOME': str(tmp_path), 'PATH': '/usr/bin:/bin'}, timeout=120,
        check=True)
    assert result.stdout.splitlines()[-1] == '[]', result.stderr


def test_drivers_decides_the_shipped_backends_from_metadata(tmp_path):
    # Every shipped backend has an extra of its name (the fake's asks for
    # oslo.config only), so listing them imports none of them, nor the
    # oslo.config their options need.
    code = textwrap.dedent('''
        import sys
        from compute_driver.cmd import main
        main.main(['drivers'])
        print(sorted(m for m in sys.modules
                     if m.startswith(('oslo_config', 'compute_driver.fake',
                                      'compute_driver.driver'))))
    ''')
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        env={'HOME': str(tmp_path), 'PATH': '/usr/bin:/bin'}, timeout=120,
        check=True)
    assert result.stdout.splitlines()[-1] == '[]', result.stdout
