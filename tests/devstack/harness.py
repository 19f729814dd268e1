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

"""Run the DevStack plugin through DevStack's own scripts from pytest.

:class:`Session` prepares what every run shares: writable copies of
DevStack and openstack/requirements, DevStack's global virtualenv (made by
DevStack's ``setup_devstack_virtualenv`` and ``install_infra``), and a
git repository of this project, branch ``main``, for ``enable_plugin`` to
fetch. :class:`Stack` is one deployment: its own copy of DevStack with a
``local.conf``, its own ``DEST`` and ``HOME``, driven through
``devstack.sh``.
"""

import configparser
import os
import pathlib
import pwd
import shutil
import stat
import subprocess
import tempfile

from compute_driver.testing import fixtures

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
SCRIPT = HERE / 'devstack.sh'
BIN = HERE / 'bin'

PHASES = ('pre-install', 'install', 'post-config', 'extra', 'test-config')

#: Where CI keeps DevStack and openstack/requirements, from the project.
SHARED = PROJECT.parent / 'shared'

NOVA_CONF = """[DEFAULT]
debug = True
compute_driver = libvirt.LibvirtDriver

[libvirt]
virt_type = qemu
"""

# Stands in for Nova's clone in DEST: the shim only needs an installed
# nova.virt package to write into; Nova itself is not imported.
NOVA_SETUP = """[metadata]
name = nova
version = 0.0.1

[options]
packages = find:
"""


def devstack_dir() -> pathlib.Path:
    """DevStack's tree, from ``DEVSTACK_DIR``; skip or fail without it."""
    value = os.environ.get('DEVSTACK_DIR')
    if not value:
        fixtures.skip_or_fail('DEVSTACK_DIR does not name a DevStack tree '
                              '(tools/test-all.sh sets it to '
                              '../shared/devstack when that exists)')
    path = pathlib.Path(value)
    if not (path / 'functions-common').is_file():
        fixtures.skip_or_fail('DEVSTACK_DIR=%s is not a DevStack tree' % value)
    return path


def requirements_dir(devstack: pathlib.Path) -> pathlib.Path:
    """openstack/requirements' tree: ``REQUIREMENTS_DIR``, else beside it."""
    value = os.environ.get('REQUIREMENTS_DIR')
    path = (pathlib.Path(value) if value
            else devstack.parent / 'requirements')
    if not (path / 'upper-constraints.txt').is_file():
        fixtures.skip_or_fail(
            'no openstack/requirements tree at %s (set REQUIREMENTS_DIR)'
            % path)
    return path


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          **kwargs)


def _git(*args: str, cwd: pathlib.Path) -> None:
    _run(['git', '-c', 'user.name=compute-driver tests',
          '-c', 'user.email=tests@compute-driver.invalid', *args], cwd=cwd)


def _project_files() -> list[str]:
    """The project's files as git sees them, uncommitted changes included."""
    if (PROJECT / '.git').exists():
        out = _run(['git', 'ls-files', '-z', '--cached', '--others',
                    '--exclude-standard'], cwd=PROJECT).stdout
        return [f for f in out.split('\0')
                if f and (PROJECT / f).is_file()]
    return [str(p.relative_to(PROJECT)) for p in PROJECT.rglob('*')
            if p.is_file() and not {'.tox', '.git', '__pycache__'} &
            set(p.relative_to(PROJECT).parts)]


class Session:
    """What every :class:`Stack` of a test session shares.

    :param base: an empty directory every user can traverse.
    """

    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.devstack = devstack_dir()
        self.requirements = base / 'requirements'
        shutil.copytree(requirements_dir(self.devstack), self.requirements,
                        ignore=shutil.ignore_patterns('.git'))
        _run(['chmod', '-R', 'u+w', str(self.requirements)])
        # pbr versions it from git, as DevStack's clone of it.
        _git('init', '-q', cwd=self.requirements)
        _git('add', '-A', cwd=self.requirements)
        _git('commit', '-q', '-m', 'requirements under test',
             cwd=self.requirements)
        self.venv = base / 'venv'
        self.upstream = base / 'compute-driver.git'
        self._make_upstream()
        self.nova = base / 'nova-src'
        self._make_nova()
        # DevStack's apt_get does not wait for the dpkg lock, which other
        # work on a shared test host may hold.
        self.apt_config = base / 'apt.conf'
        self.apt_config.write_text('DPkg::Lock::Timeout "600";\n')
        self.pip_cache = os.environ.get(
            'PIP_CACHE_DIR', os.path.expanduser('~/.cache/pip'))
        self.bootstrap()

    def _make_upstream(self) -> None:
        """Make this tree (uncommitted changes too) a repo's ``main``."""
        work = self.base / 'compute-driver-src'
        for name in _project_files():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, target)
        _git('init', '-q', '-b', 'main', cwd=work)
        _git('add', '-A', cwd=work)
        _git('commit', '-q', '-m', 'compute-driver under test', cwd=work)
        _git('clone', '-q', '--bare', str(work), str(self.upstream),
             cwd=self.base)
        shutil.rmtree(work)

    def _make_nova(self) -> None:
        for package in ('nova', 'nova/virt'):
            (self.nova / package).mkdir(parents=True)
            (self.nova / package / '__init__.py').write_text('')
        (self.nova / 'setup.cfg').write_text(NOVA_SETUP)
        (self.nova / 'setup.py').write_text(
            'import setuptools\nsetuptools.setup()\n')
        _git('init', '-q', '-b', 'master', cwd=self.nova)

    def bootstrap(self) -> None:
        """Make DevStack's global venv and requirements venv.

        The project's own requirements go in too, so that each stack only
        installs the project and its backend's SDK.
        """
        stack = Stack(self, 'bootstrap')
        stack.run('bootstrap')
        stack.pip('install', '-q', '-c',
                  str(self.requirements / 'upper-constraints.txt'),
                  '-r', str(PROJECT / 'requirements.txt'))
        # What stack.sh's install_nova does with Nova's clone.
        stack.pip('install', '-q', '-e', str(self.nova))
        shutil.rmtree(stack.dir)

    def give_to(self, user: str) -> None:
        """Let ``user`` install into the venv, as DevStack's STACK_USER."""
        for path in (self.venv, self.requirements, self.nova,
                     self.upstream):
            _run(['chown', '-R', user, str(path)])


class Stack:
    """One deployment: its own DevStack copy, local.conf, DEST and HOME.

    :param session: the shared :class:`Session`.
    :param name: a directory name for this deployment.
    :param user: ``STACK_USER``, who runs the scripts (root or a user with
        password-less sudo, as DevStack requires).
    :param settings: more ``local.conf`` lines for ``[[local|localrc]]``
        (``KEY=value`` or DevStack calls such as ``enable_service n-cpu``).
    """

    def __init__(self, session: Session, name: str, user: str = 'root',
                 settings: tuple[str, ...] = (),
                 plugin_line: str | None = None) -> None:
        self.session = session
        self.user = user
        self.dir = session.base / ('stack-' + name)
        self.top = self.dir / 'devstack'
        shutil.copytree(session.devstack, self.top,
                        ignore=shutil.ignore_patterns('.git'))
        # The tree may be read-only; DevStack writes into its own.
        _run(['chmod', '-R', 'u+w', str(self.top)])
        _git('init', '-q', cwd=self.top)
        self.home = self.dir / 'home'
        self.home.mkdir()
        self.dest = self.dir / 'opt' / 'stack'
        self.data = self.dest / 'data'
        self.root = self.dir / 'root'
        self.root.mkdir()
        self.nova_conf_dir = self.root / 'etc' / 'nova'
        self.nova_conf = self.nova_conf_dir / 'nova.conf'
        self.conf_path = (self.root / 'etc' / 'compute-driver' /
                          'compute-driver.conf')
        self.plugin_dir = self.dest / 'compute-driver'
        if plugin_line is None:
            plugin_line = 'enable_plugin compute-driver %s main' % (
                'file://%s' % session.upstream)
        lines = [
            '[[local|localrc]]',
            'DEST=%s' % self.dest,
            'DATA_DIR=%s' % self.data,
            'DEVSTACK_VENV=%s' % session.venv,
            'REQUIREMENTS_DIR=%s' % session.requirements,
            'STACK_USER=%s' % user,
            # Units under HOME, started by the systemctl stand-in.
            'USER_UNITS=True',
            'disable_all_services',
            'COMPUTE_DRIVER_ROOT=%s' % self.root,
            plugin_line,
            *settings,
        ]
        (self.top / 'local.conf').write_text('\n'.join(lines) + '\n')
        if user != 'root':
            _run(['chown', '-R', user, str(self.dir)])
        self.env = {
            'PATH': os.pathsep.join([str(BIN), '/usr/local/sbin',
                                     '/usr/local/bin', '/usr/sbin',
                                     '/usr/bin', '/sbin', '/bin']),
            'HOME': str(self.home),
            'LANG': 'C.UTF-8',
            'TOP_DIR': str(self.top),
            'TEST_NOVA_CONF_DIR': str(self.nova_conf_dir),
            'PIP_DISABLE_PIP_VERSION_CHECK': '1',
            'APT_CONFIG': str(session.apt_config),
        }
        if user == 'root':
            self.env['PIP_CACHE_DIR'] = session.pip_cache

    def seed_nova_conf(self) -> None:
        """nova.conf as lib/nova would have written it."""
        self.nova_conf_dir.mkdir(parents=True)
        self.nova_conf.write_text(NOVA_CONF)
        if self.user != 'root':
            _run(['chown', '-R', self.user, str(self.root)])

    def _command(self, *args: str) -> list[str]:
        cmd = ['bash', str(SCRIPT), *args]
        if self.user != 'root':
            env = ['%s=%s' % item for item in self.env.items()]
            cmd = ['sudo', '-u', self.user, '--', 'env', '-i', *env, *cmd]
        return cmd

    def run(self, mode: str, *args: str, ok: bool = True
            ) -> subprocess.CompletedProcess:
        """``devstack.sh MODE ARGS...`` as STACK_USER.

        :param ok: assert that it succeeded (else return the result).
        """
        result = subprocess.run(
            self._command(mode, *args), env=self.env, capture_output=True,
            text=True, timeout=900, cwd=str(self.dir))
        if ok:
            assert result.returncode == 0, (result.stdout[-4000:],
                                            result.stderr[-4000:])
        return result

    def eval(self, script: str, ok: bool = True
             ) -> subprocess.CompletedProcess:
        """Run ``script`` after stack.sh's sourcing, no phase."""
        return self.run('eval', script, ok=ok)

    def pip(self, *args: str) -> str:
        cmd = [str(self.session.venv / 'bin' / 'pip'), *args]
        if self.user != 'root':
            cmd = ['sudo', '-u', self.user, '--'] + cmd
        return _run(cmd, env=dict(self.env)).stdout

    def venv_dists(self) -> set[str]:
        """``name==version`` of each distribution inside the venv itself."""
        out = _run([str(self.session.venv / 'bin' / 'python3'), '-c',
                    'import importlib.metadata as m, sys, os\n'
                    'for d in m.distributions(path=[p for p in sys.path '
                    'if p.startswith(sys.prefix)]):\n'
                    '    print(d.metadata["Name"] + "==" + d.version)'],
                   env={'PATH': '/usr/bin:/bin'}).stdout
        return set(out.split())

    def snapshot(self) -> dict[str, tuple[int, bytes | None]]:
        """Every path under the test root with its mode and content."""
        tree: dict[str, tuple[int, bytes | None]] = {}
        for path in sorted(self.root.rglob('*')):
            info = path.lstat()
            content = path.read_bytes() if path.is_file() else None
            tree[str(path.relative_to(self.root))] = (
                stat.S_IMODE(info.st_mode), content)
        return tree

    def units_running(self) -> list[str]:
        """The devstack@ units the systemctl stand-in has running."""
        state = self.home / '.local' / 'state' / 'fake-systemd'
        running = []
        for pidfile in sorted(state.glob('*.pid')):
            try:
                os.kill(int(pidfile.read_text()), 0)
            except (ProcessLookupError, ValueError):
                continue
            running.append(pidfile.name[:-len('.pid')])
        return running

    @staticmethod
    def read_ini(path: pathlib.Path) -> dict[str, dict[str, str]]:
        """The sections and options of an INI file, DEFAULT included."""
        parser = configparser.RawConfigParser(
            default_section='__none__', strict=False)
        parser.read_string(path.read_text())
        return {section: dict(parser.items(section))
                for section in parser.sections()}


def make_base() -> pathlib.Path:
    """A session directory every user can traverse (pytest's are 0700)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix='cd-devstack-'))
    base.chmod(0o755)
    return base


def create_user(name: str) -> None:
    """Create a throw-away STACK_USER with password-less sudo."""
    if shutil.which('sudo') is None:
        fixtures.skip_or_fail('sudo is not installed '
                              '(tools/test-setup.d/50-devstack.sh)')
    try:
        pwd.getpwnam(name)
    except KeyError:
        _run(['useradd', '--create-home', '--shell', '/bin/bash', name])
    sudoers = pathlib.Path('/etc/sudoers.d') / name
    sudoers.write_text('%s ALL=(root) NOPASSWD:ALL\n'
                       'Defaults:%s env_keep += "APT_CONFIG"\n'
                       % (name, name))
    sudoers.chmod(0o440)


def delete_user(name: str) -> None:
    (pathlib.Path('/etc/sudoers.d') / name).unlink(missing_ok=True)
    subprocess.run(['userdel', '--remove', name], capture_output=True)


__all__ = ['Session', 'Stack', 'PHASES', 'make_base', 'create_user',
           'delete_user']
