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

"""Drive tests/devstack/harness.sh from pytest.

:class:`Harness` runs the DevStack plugin on a temporary root through
``harness.sh`` and reads back what it wrote and which DevStack functions
it called.
"""

import configparser
import os
import pathlib
import stat
import subprocess
import sys

from compute_driver.testing import fixtures

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = HERE / 'harness.sh'

PHASES = ('pre-install', 'install', 'post-config', 'extra', 'test-config')

NOVA_CONF = """[DEFAULT]
debug = True
compute_driver = libvirt.LibvirtDriver

[libvirt]
virt_type = qemu
"""

TEMPEST_CONF = """[compute]
flavor_ref = 42

[compute-feature-enabled]
pause = True
"""

# Stands in for the compute-driver command when the backend is not
# installed: it logs its arguments and answers "check" as the environment
# says.
FAKE_CLI = """#!%(python)s
import json
import os
import sys

with open(os.path.join(os.environ['HARNESS_WORK'], 'calls.log'), 'a') as f:
    f.write(' '.join(['compute-driver'] + sys.argv[1:]) + '\\n')
rc = int(os.environ.get('HARNESS_CHECK_RC', '0'))
if rc:
    sys.stderr.write(os.environ.get('HARNESS_CHECK_MESSAGE', '') + '\\n')
    sys.exit(rc)
caps = os.environ.get('HARNESS_CAPABILITIES', '').split()
print(json.dumps({'capabilities': caps}))
"""


def real_cli() -> str:
    """The compute-driver console script of the running interpreter."""
    return fixtures.console_script()


class Harness:
    """The plugin on a temporary root under ``tmp_path``.

    :param tmp_path: an empty directory for the root and the work files.
    :param backend: ``COMPUTE_DRIVER_BACKEND``.
    :param record: record package, pip and process calls instead of
        making them.
    :param cli: ``"real"`` for the installed compute-driver command,
        ``"fake"`` for one that answers as ``HARNESS_CHECK_*`` say.
    :param env: more environment variables for every run (settings,
        ``HARNESS_SERVICES``, ``HARNESS_NOVA_ADAPTER`` ...).
    :param nova: put a nova package (``nova/__init__.py`` and
        ``nova/virt/__init__.py``, nothing else) under the root, where
        DevStack clones nova, and first on the plugin's ``PYTHONPATH``, so
        that the plugin installs the real shim into it.
    """

    def __init__(self, tmp_path: pathlib.Path, backend: str,
                 record: bool = True, cli: str = 'fake',
                 env: dict[str, str] | None = None,
                 nova: bool = True) -> None:
        self.root = tmp_path / 'root'
        self.work = tmp_path / 'work'
        self.root.mkdir()
        self.work.mkdir()
        self.nova_conf = self.root / 'etc' / 'nova' / 'nova.conf'
        self.tempest_conf = (self.root / 'opt' / 'stack' / 'tempest' /
                             'etc' / 'tempest.conf')
        self.conf_path = (self.root / 'etc' / 'compute-driver' /
                          'compute-driver.conf')
        self.state_dir = (self.root / 'opt' / 'stack' / 'data' /
                          'compute-driver')
        for path, text in ((self.nova_conf, NOVA_CONF),
                           (self.tempest_conf, TEMPEST_CONF)):
            path.parent.mkdir(parents=True)
            path.write_text(text)
        # DevStack makes DATA_DIR before any plugin runs.
        (self.root / 'opt' / 'stack' / 'data').mkdir()
        nova_dir = self.root / 'opt' / 'stack' / 'nova'
        self.nova_virt = nova_dir / 'nova' / 'virt'
        self.shim = self.nova_virt / 'compute_driver_nova.py'
        if nova:
            self.nova_virt.mkdir(parents=True)
            for package in (self.nova_virt.parent, self.nova_virt):
                (package / '__init__.py').write_text('')
        if cli == 'fake':
            cli_path = self.work / 'compute-driver'
            cli_path.write_text(FAKE_CLI % {'python': sys.executable})
            cli_path.chmod(cli_path.stat().st_mode | stat.S_IXUSR)
            cli = str(cli_path)
        elif cli == 'real':
            cli = real_cli()
        self.env = dict(
            os.environ,
            HARNESS_ROOT=str(self.root),
            HARNESS_WORK=str(self.work),
            PYTHON=sys.executable,
            PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                  os.environ.get('PATH', '')]),
            STANDIN_RECORD='1' if record else '0',
            COMPUTE_DRIVER_BACKEND=backend,
            COMPUTE_DRIVER_CLI=cli,
            HOME=str(self.work))
        if nova:
            self.env['HARNESS_NOVA_DIR'] = str(nova_dir)
        self.env.update(env or {})

    def run(self, mode: str, *phases: str, ok: bool = True,
            **env: str) -> subprocess.CompletedProcess:
        """Run ``harness.sh MODE [PHASE...]``.

        :param ok: assert that it succeeded.
        :param env: environment variables for this run only.
        """
        result = subprocess.run(
            ['bash', str(SCRIPT), mode, *phases],
            env=dict(self.env, **env), capture_output=True, text=True,
            timeout=900)
        if ok:
            assert result.returncode == 0, (result.stdout[-3000:],
                                            result.stderr[-3000:])
        return result

    def calls(self, *kinds: str) -> list[str]:
        """The logged calls, only those of the given functions if any."""
        log = self.work / 'calls.log'
        lines = log.read_text().splitlines() if log.exists() else []
        return [line for line in lines
                if not kinds or line.split(' ', 1)[0] in kinds]

    def clear_calls(self) -> None:
        (self.work / 'calls.log').unlink(missing_ok=True)

    def snapshot(self) -> dict[str, tuple[int, bytes | None]]:
        """Every path under the root with its mode and file content."""
        tree: dict[str, tuple[int, bytes | None]] = {}
        for path in sorted(self.root.rglob('*')):
            info = path.lstat()
            content = path.read_bytes() if path.is_file() else None
            tree[str(path.relative_to(self.root))] = (
                stat.S_IMODE(info.st_mode), content)
        return tree

    @staticmethod
    def read_ini(path: pathlib.Path) -> dict[str, dict[str, str]]:
        """The sections and options of an INI file, DEFAULT included."""
        parser = configparser.RawConfigParser(
            default_section='__none__', strict=False)
        parser.read_string(path.read_text())
        return {section: dict(parser.items(section))
                for section in parser.sections()}
