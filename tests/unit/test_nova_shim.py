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

"""The Nova shim, on a fake installed nova (no Nova needed).

The fake is what the shim relies on: a ``nova`` package with a ``virt``
package, found on ``sys.path``. Nothing here imports the real adapter
either: where a test imports the installed shim, a stand-in
``compute_driver.nova.driver`` is put in ``sys.modules``.
"""

import ast
import importlib
import os
import re
import subprocess
import sys
import textwrap
import types

import pytest

from compute_driver import exception
from compute_driver import nova
from compute_driver.nova import shim
from compute_driver.testing import fixtures

SCRIPT = 'compute-driver-nova-shim'

# Makes "import nova" fail in a child process whatever is installed, so
# that "Nova is not installed" can be tested where Nova is.
HIDE_NOVA = """\
import sys


class _HideNova:
    def find_spec(self, name, path=None, target=None):
        if name == 'nova' or name.startswith('nova.'):
            raise ModuleNotFoundError('No module named %r' % name, name=name)
        return None


sys.meta_path.insert(0, _HideNova())
"""


def _is_nova(name):
    return name == 'nova' or name.startswith('nova.')


@pytest.fixture
def clean_modules():
    """Forget every nova module before and after the test."""
    saved = {name: mod for name, mod in sys.modules.items() if _is_nova(name)}
    for name in saved:
        del sys.modules[name]
    importlib.invalidate_caches()
    yield
    for name in [name for name in sys.modules if _is_nova(name)]:
        del sys.modules[name]
    sys.modules.update(saved)
    importlib.invalidate_caches()


def _make_site(root, virt=True):
    site = root / 'site'
    (site / 'nova').mkdir(parents=True)
    (site / 'nova' / '__init__.py').write_text('')
    if virt:
        (site / 'nova' / 'virt').mkdir()
        (site / 'nova' / 'virt' / '__init__.py').write_text('')
    return site


@pytest.fixture
def site(tmp_path, monkeypatch, clean_modules):
    """A fake installed nova, first on ``sys.path``."""
    site = _make_site(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    return site


@pytest.fixture
def virt(site):
    return site / 'nova' / 'virt'


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


def test_finds_nova_virt_without_importing_nova(virt):
    assert shim.find_nova_virt_dir() == virt
    assert shim.shim_path() == virt / 'compute_driver_nova.py'
    assert not [name for name in sys.modules if _is_nova(name)]


def test_nova_not_installed(tmp_path, monkeypatch, clean_modules):
    (tmp_path / 'empty').mkdir()
    monkeypatch.setattr(sys, 'path', [str(tmp_path / 'empty')])
    for call in (shim.find_nova_virt_dir, shim.check, shim.install,
                 shim.remove):
        with pytest.raises(exception.NovaNotInstalled) as info:
            call()
        assert str(info.value) == (
            "Nova is not installed for %s: no module named 'nova' on its "
            "path; install compute-driver into nova-compute's Python "
            "environment." % sys.executable)


def test_nova_without_virt(tmp_path, monkeypatch, clean_modules):
    site = _make_site(tmp_path, virt=False)
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(exception.NovaNotInstalled,
                       match='the nova package in %s has no virt package'
                       % (site / 'nova')):
        shim.find_nova_virt_dir()


def test_nova_module_is_not_the_package(tmp_path, monkeypatch,
                                        clean_modules):
    (tmp_path / 'nova.py').write_text('')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(exception.NovaNotInstalled,
                       match="'nova' is the module .*nova.py, not Nova's"):
        shim.find_nova_virt_dir()


def test_rendered_text_only_reexports_the_adapter():
    text = shim.render()
    tree = ast.parse(text)
    imports = [node for node in ast.walk(tree)
               if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [(node.module, [a.name for a in node.names], node.level)
            for node in imports if isinstance(node, ast.ImportFrom)] == [
        ('compute_driver.nova.driver', ['ComputeDriverAdapter'], 0)]
    assert len(imports) == 1
    # Apart from the import, only __all__ naming that class.
    assert [ast.unparse(node) for node in tree.body[1:]] == [
        "__all__ = ['ComputeDriverAdapter']"]
    assert shim.MARKER in text.splitlines()
    assert nova.NOVA_COMPUTE_DRIVER in text


def test_install_check_remove(virt):
    path = virt / 'compute_driver_nova.py'
    assert shim.check() is shim.Status.MISSING

    assert shim.install() is True
    assert path.read_text() == shim.render()
    assert path.stat().st_mode & 0o777 == 0o644
    assert shim.check() is shim.Status.CURRENT
    assert _listing(virt) == ['__init__.py', 'compute_driver_nova.py']

    assert shim.remove() is True
    assert shim.check() is shim.Status.MISSING
    assert _listing(virt) == ['__init__.py']
    assert shim.remove() is False
    assert not [name for name in sys.modules if _is_nova(name)]


def test_install_is_idempotent(virt):
    path = virt / 'compute_driver_nova.py'
    shim.install()
    before = path.stat()
    assert shim.install() is False
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (
        before.st_ino, before.st_mtime_ns)
    assert _listing(virt) == ['__init__.py', 'compute_driver_nova.py']


def test_nova_loads_the_adapter_through_the_installed_shim(virt,
                                                           monkeypatch):
    adapter = types.ModuleType('compute_driver.nova.driver')

    class ComputeDriverAdapter:
        pass

    adapter.ComputeDriverAdapter = ComputeDriverAdapter
    monkeypatch.setitem(sys.modules, 'compute_driver.nova.driver', adapter)
    shim.install()
    # What nova's load_compute_driver imports, given nova.conf's value.
    module_name, _, class_name = ('nova.virt.' + nova.NOVA_COMPUTE_DRIVER
                                  ).rpartition('.')
    module = importlib.import_module(module_name)
    assert module.__file__ == str(virt / 'compute_driver_nova.py')
    assert getattr(module, class_name) is ComputeDriverAdapter


def test_a_shim_of_another_version_is_rewritten(virt):
    path = virt / 'compute_driver_nova.py'
    path.write_text(shim.render().replace('# noqa', '# noqa  # old'))
    assert shim.check() is shim.Status.DIFFERENT
    assert shim.install() is True
    assert shim.check() is shim.Status.CURRENT


def test_a_foreign_file_is_left_alone_unless_forced(virt):
    path = virt / 'compute_driver_nova.py'
    path.write_text('DRIVER = "mine"\n')
    assert shim.check() is shim.Status.FOREIGN
    with pytest.raises(exception.NovaShimError,
                       match='did not write; remove it, or install with '
                             '--force'):
        shim.install()
    with pytest.raises(exception.NovaShimError,
                       match='did not write it, so it is left in place'):
        shim.remove()
    assert path.read_text() == 'DRIVER = "mine"\n'
    assert _listing(virt) == ['__init__.py', 'compute_driver_nova.py']

    assert shim.install(force=True) is True
    assert shim.check() is shim.Status.CURRENT


def test_remove_drops_the_shims_bytecode_only(virt):
    shim.install()
    cache = virt / '__pycache__'
    cache.mkdir()
    for name in ('compute_driver_nova.cpython-310.pyc',
                 'compute_driver_nova.cpython-311.opt-1.pyc',
                 '__init__.cpython-311.pyc'):
        (cache / name).write_bytes(b'')
    assert shim.remove() is True
    assert _listing(cache) == ['__init__.cpython-311.pyc']


def test_failed_write_keeps_the_old_file_and_no_temporary(virt,
                                                          monkeypatch):
    path = virt / 'compute_driver_nova.py'
    old = shim.render().replace('# noqa', '# noqa  # old')
    path.write_text(old)

    def fail(src, dst):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(exception.NovaShimError) as info:
        shim.install()
    assert str(info.value) == ('Cannot install the Nova shim %s: No space '
                               'left on device' % path)
    assert path.read_text() == old
    assert _listing(virt) == ['__init__.py', 'compute_driver_nova.py']


def test_a_shadowing_package_fails_the_install(virt):
    (virt / 'compute_driver_nova').mkdir()
    (virt / 'compute_driver_nova' / '__init__.py').write_text('')
    with pytest.raises(exception.NovaShimError,
                       match='nova.virt.compute_driver_nova would be '
                             'imported from .*compute_driver_nova/'
                             '__init__.py instead'):
        shim.install()
    # It was not there before, so it is not left behind.
    assert _listing(virt) == ['__init__.py', 'compute_driver_nova']


def test_importing_the_package_and_shim_does_not_import_nova(tmp_path):
    site = _make_site(tmp_path)
    # Running nova's code at all would fail loudly.
    (site / 'nova' / '__init__.py').write_text(
        'raise RuntimeError("nova was imported")\n')
    code = textwrap.dedent("""\
        import sys
        import compute_driver.nova
        from compute_driver.nova import shim
        shim.install()
        assert shim.check() is shim.Status.CURRENT
        shim.remove()
        print(sorted(m for m in sys.modules
                     if m == 'nova' or m.startswith('nova.')))
    """)
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(site)), timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, '[]\n', '')


def _run(*args, pythonpath):
    return subprocess.run(
        [fixtures.console_script(SCRIPT), *args], capture_output=True,
        text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(pythonpath)))


def _one_line_error(result):
    assert result.returncode == 1
    assert result.stdout == ''
    assert result.stderr.endswith('\n')
    assert result.stderr.count('\n') == 1
    return result.stderr.rstrip('\n')


def test_cli(tmp_path):
    site = _make_site(tmp_path)
    path = site / 'nova' / 'virt' / 'compute_driver_nova.py'

    result = _run('path', pythonpath=site)
    assert (result.returncode, result.stdout) == (0, '%s\n' % path)
    assert _one_line_error(_run('check', pythonpath=site)) == (
        'missing: %s (run "compute-driver-nova-shim install")' % path)

    result = _run('install', pythonpath=site)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, 'Installed %s\n' % path, '')
    result = _run('install', pythonpath=site)
    assert (result.returncode, result.stdout) == (
        0, 'Already installed: %s\n' % path)
    result = _run('check', pythonpath=site)
    assert (result.returncode, result.stdout) == (0, 'current: %s\n' % path)

    result = _run('remove', pythonpath=site)
    assert (result.returncode, result.stdout) == (0, 'Removed %s\n' % path)
    result = _run('remove', pythonpath=site)
    assert (result.returncode, result.stdout) == (
        0, 'Not installed: %s\n' % path)


def test_cli_foreign_file(tmp_path):
    site = _make_site(tmp_path)
    path = site / 'nova' / 'virt' / 'compute_driver_nova.py'
    path.write_text('x = 1\n')
    assert _one_line_error(_run('check', pythonpath=site)) == (
        'foreign: %s (compute-driver did not write it)' % path)
    assert _one_line_error(_run('install', pythonpath=site)) == (
        'Cannot install the Nova shim %s: a file of that name exists that '
        'compute-driver did not write; remove it, or install with --force '
        'to replace it' % path)
    assert _one_line_error(_run('remove', pythonpath=site)) == (
        'Cannot remove the Nova shim %s: compute-driver did not write it, '
        'so it is left in place' % path)
    assert path.read_text() == 'x = 1\n'

    result = _run('install', '--force', pythonpath=site)
    assert (result.returncode, result.stdout) == (0, 'Installed %s\n' % path)
    assert path.read_text() == shim.render()


def test_cli_different_shim_fails_check(tmp_path):
    site = _make_site(tmp_path)
    path = site / 'nova' / 'virt' / 'compute_driver_nova.py'
    path.write_text(shim.render() + '# edited\n')
    assert _one_line_error(_run('check', pythonpath=site)) == (
        'different: %s (another version of compute-driver wrote it; run '
        '"compute-driver-nova-shim install" to update it)' % path)


@pytest.mark.parametrize('command', ['install', 'check', 'remove', 'path'])
def test_cli_without_nova(tmp_path, command):
    hide = tmp_path / 'hide'
    hide.mkdir()
    (hide / 'sitecustomize.py').write_text(HIDE_NOVA)
    # The interpreter named is the console script's, whichever it is.
    assert re.fullmatch(
        r"Nova is not installed for /\S+: No module named 'nova'; install "
        r"compute-driver into nova-compute's Python environment\.",
        _one_line_error(_run(command, pythonpath=hide)))


def test_cli_bad_command_line(tmp_path):
    result = _run('install', '--bogus', pythonpath=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1
    assert 'unrecognized arguments: --bogus' in result.stderr
