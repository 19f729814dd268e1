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

"""Install the module through which nova-compute loads the adapter.

Since Newton, nova-compute imports its driver as ``'nova.virt.' +
compute_driver`` (nova.conf's ``[DEFAULT]`` option), so the adapter must be
importable as a module of the installed ``nova.virt`` package. The shim is
that module: ``compute_driver_nova.py`` (named after
:data:`compute_driver.nova.SHIM_MODULE`) in ``nova.virt``'s directory,
re-exporting ``compute_driver.nova.driver.ComputeDriverAdapter`` and
nothing else. It holds no logic, so upgrading compute-driver never
requires rewriting it; only replacing nova's package directory
(reinstalling nova) removes it.

Why not ship ``nova/virt/compute_driver_nova.py`` in this project's wheel:
where nova is installed editable (DevStack) or by the distribution under
another prefix than pip's, that directory would not be on
``nova.virt.__path__``; and shipping ``nova/__init__.py`` would replace
nova's own.

Nothing here imports nova: the package is located with
:func:`importlib.util.find_spec`, which searches ``sys.path`` without
running nova's code. The console script ``compute-driver-nova-shim``
(:func:`main`) installs, checks and removes the shim.
"""

import argparse
import collections.abc
import contextlib
import enum
import importlib
import importlib.machinery
import importlib.util
import os
import pathlib
import sys
import tempfile

from compute_driver.cmd import common
from compute_driver import exception
from compute_driver import nova

#: The module the shim imports the adapter from.
ADAPTER_MODULE = 'compute_driver.nova.driver'

#: The header line that marks a shim written by this module; a file of the
#: shim's name without it is someone else's, and is left alone.
MARKER = '# compute-driver-nova-shim: generated file, do not edit.'

_TEMPLATE = '''\
# Written by compute-driver-nova-shim (compute-driver) so that nova-compute
# can load compute-driver's Nova adapter with
#     [DEFAULT] compute_driver = %(driver)s
# Nova only loads drivers from inside nova.virt. This file has no logic and
# needs no update when compute-driver is upgraded. Remove it with
# "compute-driver-nova-shim remove" once no nova.conf names it.
%(marker)s
from %(module)s import %(cls)s  # noqa

__all__ = [%(cls)r]
'''

# The shim is written by whoever installs it (often root) and read by the
# user nova-compute runs as.
_MODE = 0o644

PROG = 'compute-driver-nova-shim'


class Status(enum.Enum):
    """What :func:`check` found where the shim belongs."""

    #: No file of the shim's name.
    MISSING = 'missing'
    #: The shim this version of compute-driver writes.
    CURRENT = 'current'
    #: A shim compute-driver wrote, but with other text (another version,
    #: or edited); :func:`install` rewrites it.
    DIFFERENT = 'different'
    #: A file of the shim's name that compute-driver did not write.
    FOREIGN = 'foreign'


def find_nova_virt_dir() -> pathlib.Path:
    """The directory of the installed ``nova.virt`` package.

    :returns: the first ``virt`` directory holding an ``__init__.py`` in
        the search locations of the ``nova`` package that this interpreter
        would import.
    :raises NovaNotInstalled: when there is no such package.
    """
    python = sys.executable or 'this Python'
    try:
        spec = importlib.util.find_spec('nova')
    except (ImportError, ValueError) as exc:
        # "No module named 'nova'" reads better without the type name.
        raise exception.NovaNotInstalled(
            python=python,
            reason=' '.join(str(exc).split()) or type(exc).__name__
        ) from exc
    if spec is None:
        raise exception.NovaNotInstalled(
            python=python, reason="no module named 'nova' on its path")
    locations = list(spec.submodule_search_locations or [])
    if not locations:
        raise exception.NovaNotInstalled(
            python=python,
            reason="'nova' is the module %s, not Nova's package" % (
                spec.origin,))
    for location in locations:
        virt = pathlib.Path(location) / 'virt'
        if (virt / '__init__.py').is_file():
            return virt
    raise exception.NovaNotInstalled(
        python=python, reason='the nova package in %s has no virt package' % (
            ', '.join(locations),))


def shim_path() -> pathlib.Path:
    """Where the shim belongs: ``<nova.virt's directory>/<SHIM_MODULE>.py``.

    :raises NovaNotInstalled: when Nova cannot be found.
    """
    return find_nova_virt_dir() / (nova.SHIM_MODULE + '.py')


def render() -> str:
    """The exact text of the shim."""
    return _TEMPLATE % {'driver': nova.NOVA_COMPUTE_DRIVER,
                        'marker': MARKER,
                        'module': ADAPTER_MODULE,
                        'cls': nova.ADAPTER_CLASS}


def _status(path: pathlib.Path) -> Status:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Status.MISSING
    except OSError as exc:
        raise _shim_error('read', path, exc) from exc
    text = data.decode('utf-8', errors='replace')
    if text == render():
        return Status.CURRENT
    if MARKER in text.splitlines():
        return Status.DIFFERENT
    return Status.FOREIGN


def check() -> Status:
    """Whether the shim is in place and is this version's.

    :raises NovaNotInstalled: when Nova cannot be found.
    :raises NovaShimError: when the file cannot be read.
    """
    return _status(shim_path())


def install(force: bool = False) -> bool:
    """Write the shim, unless it is already there as :func:`render` says.

    The text goes to a temporary file in the same directory, which then
    replaces the shim in one rename: nova-compute never reads half a file,
    and a failure leaves whatever was there before.

    :param force: replace a file of the shim's name that compute-driver
        did not write.
    :returns: whether the file was written.
    :raises NovaNotInstalled: when Nova cannot be found.
    :raises NovaShimError: for someone else's file without ``force``, when
        the directory is not writable, or when ``nova.virt`` would not
        import the file written.
    """
    path = shim_path()
    status = _status(path)
    if status is Status.FOREIGN and not force:
        raise exception.NovaShimError(
            operation='install', path=str(path),
            reason='a file of that name exists that compute-driver did not '
                   'write; remove it, or install with --force to replace it')
    if status is not Status.CURRENT:
        try:
            _write_atomically(path, render())
            # Python trusts a cached .pyc whose source has the same size
            # and mtime (to the second); an overwritten file can match.
            _remove_bytecode(path)
        except OSError as exc:
            raise _shim_error('install', path, exc) from exc
    try:
        _check_importable(path)
    except exception.NovaShimError:
        if status is Status.MISSING:
            # Leave nothing behind that nova-compute cannot use anyway.
            path.unlink(missing_ok=True)
        raise
    return status is not Status.CURRENT


def remove() -> bool:
    """Remove the shim and its cached bytecode, if compute-driver wrote it.

    :returns: whether there was a shim to remove.
    :raises NovaNotInstalled: when Nova cannot be found.
    :raises NovaShimError: for a file compute-driver did not write (which
        is left in place) or one that cannot be removed.
    """
    path = shim_path()
    status = _status(path)
    if status is Status.FOREIGN:
        raise exception.NovaShimError(
            operation='remove', path=str(path),
            reason='compute-driver did not write it, so it is left in place')
    try:
        if status is not Status.MISSING:
            path.unlink()
        _remove_bytecode(path)
    except OSError as exc:
        raise _shim_error('remove', path, exc) from exc
    return status is not Status.MISSING


def _write_atomically(path: pathlib.Path, text: str) -> None:
    # Hidden, and not ending in .py, so that nothing can import it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.%s.' % path.name,
                               suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600.
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _remove_bytecode(path: pathlib.Path) -> None:
    # Every interpreter's and optimization level's copy, e.g.
    # compute_driver_nova.cpython-311.opt-1.pyc.
    for pyc in (path.parent / '__pycache__').glob(path.stem + '.*.pyc'):
        pyc.unlink(missing_ok=True)


def _check_importable(path: pathlib.Path) -> None:
    # nova.virt is a regular package, so its __path__ is its directory:
    # the path finder searching that directory is what the import in
    # nova's load_compute_driver does, without running nova's code. It
    # catches, e.g., a compute_driver_nova/ package that would win.
    name = 'nova.virt.' + nova.SHIM_MODULE
    importlib.invalidate_caches()
    spec = importlib.machinery.PathFinder.find_spec(name, [str(path.parent)])
    origin = spec.origin if spec is not None else None
    if origin is None or not os.path.samefile(origin, path):
        raise exception.NovaShimError(
            operation='install', path=str(path),
            reason='%s would be imported from %s instead' % (
                name, origin or 'nowhere'))


def _shim_error(operation: str, path: pathlib.Path,
                exc: OSError) -> exception.NovaShimError:
    reason = exc.strerror or exception.one_line(exc)
    if isinstance(exc, PermissionError):
        reason += ' (run this as the owner of that directory, e.g. root)'
    return exception.NovaShimError(operation=operation, path=str(path),
                                   reason=reason)


# --- the console script -------------------------------------------------


def _cmd_install(args: argparse.Namespace) -> int:
    written = install(force=args.force)
    print('%s %s' % ('Installed' if written else 'Already installed:',
                     shim_path()))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    path = shim_path()
    status = _status(path)
    if status is Status.CURRENT:
        print('%s: %s' % (status.value, path))
        return 0
    hint = {
        Status.MISSING: 'run "%s install"' % PROG,
        Status.DIFFERENT: 'another version of compute-driver wrote it; run '
                          '"%s install" to update it' % PROG,
        Status.FOREIGN: 'compute-driver did not write it',
    }[status]
    sys.stderr.write('%s: %s (%s)\n' % (status.value, path, hint))
    return common.EXIT_FAILURE


def _cmd_remove(args: argparse.Namespace) -> int:
    path = shim_path()
    if remove():
        print('Removed %s' % path)
    else:
        print('Not installed: %s' % path)
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    print(shim_path())
    return 0


_COMMANDS: dict[str, collections.abc.Callable[[argparse.Namespace], int]] = {
    'install': _cmd_install,
    'check': _cmd_check,
    'remove': _cmd_remove,
    'path': _cmd_path,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Install, check or remove the module inside nova.virt '
                    'through which nova-compute loads compute-driver '
                    '([DEFAULT] compute_driver = %s).' % (
                        nova.NOVA_COMPUTE_DRIVER,))
    common.one_line_errors(parser)
    commands = parser.add_subparsers(dest='command', metavar='COMMAND',
                                     required=True)
    install_parser = commands.add_parser(
        'install', help='Write the shim into nova.virt, or rewrite it when '
                        'another version wrote it.')
    install_parser.add_argument(
        '--force', action='store_true',
        help='Replace a file of the same name that compute-driver did not '
             'write.')
    for sub in (install_parser,
                commands.add_parser(
                    'check', help='Exit 0 when the shim is in place and '
                                  'current, 1 otherwise.'),
                commands.add_parser(
                    'remove', help='Remove the shim if compute-driver wrote '
                                   'it.'),
                commands.add_parser(
                    'path', help='Print where the shim belongs.')):
        common.one_line_errors(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``compute-driver-nova-shim``.

    :param argv: the arguments; ``sys.argv[1:]`` by default.
    :returns: 0 on success, 1 when the operation failed or ``check`` found
        no current shim, 2 for a bad command line.
    """
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except Exception as exc:
        # An operator, or the DevStack plugin, reads this line; a
        # traceback would bury it.
        sys.stderr.write(exception.one_line(exc) + '\n')
        return common.EXIT_FAILURE


if __name__ == '__main__':
    sys.exit(main())
