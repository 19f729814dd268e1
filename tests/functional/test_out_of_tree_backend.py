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

"""A backend distributed on its own is found, configured and conformant.

The distribution in ``outoftree/`` (its package, its two entry points, its
``[mybackend]`` option group and its conformance test) is what
doc/source/writing-a-backend.rst shows. It is installed into a virtualenv
of its own that also sees this interpreter's packages, and everything is
run there in new processes, as a third party would.
"""

import json
import pathlib
import shutil
import site
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = pathlib.Path(__file__).resolve().parent / 'outoftree'

#: Runs a console script of the virtualenv's interpreter by its entry
#: point: the scripts on PATH belong to the environment running the tests,
#: which does not see the backend.
_RUN_SCRIPT = textwrap.dedent('''
    import sys
    from importlib import metadata
    ep = next(iter(metadata.entry_points(group='console_scripts',
                                         name=sys.argv[1])))
    sys.argv = sys.argv[1:]
    sys.exit(ep.load()())
''')


class VirtualEnv:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.python = str(path / 'bin' / 'python')

    def run(self, *argv: str, cwd: pathlib.Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([self.python, *argv], cwd=cwd,
                                capture_output=True, text=True, timeout=300)
        if check:
            assert result.returncode == 0, '%s exited %d:\n%s\n%s' % (
                ' '.join(argv), result.returncode, result.stdout,
                result.stderr)
        return result

    def script(self, name: str, *argv: str,
               check: bool = True) -> subprocess.CompletedProcess:
        return self.run('-c', _RUN_SCRIPT, name, *argv, check=check)


@pytest.fixture(scope='module')
def source(tmp_path_factory) -> pathlib.Path:
    """A copy of the distribution: building it writes beside it."""
    copy = tmp_path_factory.mktemp('outoftree') / 'compute-driver-mybackend'
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns(
        'conftest.py', '__pycache__', 'build', '*.egg-info'))
    return copy


@pytest.fixture(scope='module')
def venv(tmp_path_factory, source) -> VirtualEnv:
    """A virtualenv with the backend and this interpreter's packages."""
    env = VirtualEnv(tmp_path_factory.mktemp('venv') / 'env')
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages',
                    '--without-pip', str(env.path)], check=True)
    # --system-site-packages reaches the base interpreter's packages; when
    # the tests run in a virtualenv themselves (tox), the project and its
    # requirements are in that one's.
    purelib = env.run('-c', 'import sysconfig; '
                      'print(sysconfig.get_path("purelib"))').stdout.strip()
    lines = ['import site; site.addsitedir(%r)' % d
             for d in site.getsitepackages()]
    pathlib.Path(purelib, 'compute_driver_tests_parent.pth').write_text(
        '\n'.join(lines) + '\n')
    # pip and setuptools come from the same packages; nothing is
    # downloaded.
    env.run('-m', 'pip', 'install', '--quiet', '--no-deps', '--no-index',
            '--no-build-isolation', str(source))
    return env


def _write_conf(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / 'compute-driver.conf'
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_drivers_lists_it(venv, tmp_path):
    conf = _write_conf(tmp_path, '[DEFAULT]\ncompute_driver = fake\n')
    out = venv.script('compute-driver', '--config-file', conf, 'drivers',
                      '-f', 'json').stdout
    rows = {row['Name']: row for row in json.loads(out)}
    assert rows['mybackend'] == {'Name': 'mybackend',
                                 'Entry Point': 'mybackend.driver:MyDriver',
                                 'Status': 'ok'}
    assert {'fake', 'docker', 'libvirt', 'xenapi'} <= set(rows)


def test_sample_config_includes_its_group(venv, tmp_path):
    sample = tmp_path / 'sample.conf'
    venv.script('oslo-config-generator', '--namespace', 'compute_driver',
                '--output-file', str(sample))
    text = sample.read_text()
    assert '\n[mybackend]\n' in text
    assert '\n#vcpus = 8\n' in text.split('[mybackend]')[1]
    assert '\n[fake]\n' in text


def test_its_configuration_loads_it(venv, tmp_path):
    conf = _write_conf(tmp_path, '''
        [DEFAULT]
        compute_driver = mybackend
        host = oot-host

        [mybackend]
        vcpus = 4
        memory_mb = 2048
    ''')
    out = venv.script('compute-driver', '--config-file', conf, 'check',
                      '-f', 'json').stdout
    shown = json.loads(out)
    assert shown['driver'] == 'mybackend'
    assert shown['hypervisor_type'] == 'mybackend'
    assert (shown['vcpus'], shown['memory_mb']) == (4, 2048)


def _flavors_error(venv: VirtualEnv, tmp_path: pathlib.Path,
                   backend: str, section: str) -> str:
    """What ``compute-driver flavors`` says of a file; it must refuse it."""
    conf = _write_conf(tmp_path, '[DEFAULT]\ncompute_driver = %s\n\n%s'
                       % (backend, textwrap.dedent(section)))
    result = venv.script('compute-driver', '--config-file', conf, 'flavors',
                         check=False)
    assert result.returncode != 0, result.stdout
    return result.stderr.replace(conf, 'FILE')


def test_its_options_are_checked_like_the_shipped_ones(venv, tmp_path):
    said = _flavors_error(venv, tmp_path, 'mybackend', """
        [mybackend]
        vcpu = 4
    """)
    assert ('unknown option vcpu in section [mybackend] of FILE; did you '
            'mean vcpus?') in said


def test_a_file_shared_with_other_backends_is_accepted(venv, tmp_path):
    # A host running fake reads the [mybackend] section written for
    # another one, and still checks its values.
    conf = _write_conf(tmp_path, """
        [DEFAULT]
        compute_driver = fake

        [mybackend]
        vcpus = 4
    """)
    venv.script('compute-driver', '--config-file', conf, 'flavors')
    said = _flavors_error(venv, tmp_path, 'fake', """
        [mybackend]
        vcpus = 0
    """)
    assert '[mybackend] vcpus in FILE' in said


def test_class_attributes_agree_with_its_opts_entry_point(venv):
    result = venv.run('-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                      '-k', 'agree_with_the_opts_entry_point and mybackend',
                      str(ROOT / 'tests' / 'unit' / 'test_loader.py'),
                      cwd=ROOT)
    assert '1 passed' in result.stdout


def test_conformance_suite_passes_on_it(venv, source):
    result = venv.run('-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                      'test_conformance.py', cwd=source)
    last = result.stdout.strip().splitlines()[-1]
    assert ' passed' in last and 'failed' not in last, result.stdout
