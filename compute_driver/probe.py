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

"""Tell whether a backend loads without importing it or its SDK.

Importing every installed SDK to answer ``compute-driver drivers`` costs a
second; the installed packages' metadata answers in milliseconds. For the
backend named ``NAME``, the distribution that declares its entry point must
have an extra called ``NAME`` (``compute-driver[docker]``); every
requirement of that extra must be installed at a version it accepts, each
installed requirement's top-level modules must be found on ``sys.path``,
and so must the backend's own module. Nothing is imported: modules are
located with :mod:`importlib.machinery` path finders.

When the metadata cannot answer (a backend without an extra of its own
name, a requirement or marker too complex to evaluate without the
``packaging`` library, an SDK found on ``sys.path`` without metadata, a
backend module that cannot be located), that one backend is imported with
:func:`compute_driver.loader.load_driver_class`, so its status is still
right.
"""

import email
import email.message
import functools
import importlib.machinery
import importlib.metadata
import importlib.util
import re
import sys

from compute_driver import exception
from compute_driver import loader

# A PEP 508 requirement: name, optional extras, a version specifier (bare
# or in parentheses) and an optional marker after ";".
_REQUIREMENT = re.compile(
    r'^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*'
    r'(?:\[[^\]]*\])?\s*'
    r'(?:\((?P<paren>[^)]*)\)|(?P<spec>[^;@]*))\s*'
    r'(?:;\s*(?P<marker>.*?))?\s*$')
# The marker pbr and setuptools write for an extra's requirement.
_EXTRA_MARKER = re.compile(
    r'''^extra\s*==\s*(?P<q>['"])(?P<extra>[^'"]+)(?P=q)$''')
_CLAUSE = re.compile(r'^(?P<op>~=|==|!=|<=|>=|<|>)\s*(?P<version>\S+)$')
_RELEASE = re.compile(r'^v?(?P<release>\d+(?:\.\d+)*)$')


class _Undecided(Exception):
    """The metadata cannot answer; the backend has to be imported."""


def _canonical(name: str) -> str:
    """A distribution or extra name as PEP 503 and PEP 685 compare them."""
    return re.sub(r'[-_.]+', '-', name).lower()


def _release(version: str) -> tuple[int, ...]:
    match = _RELEASE.match(version.strip())
    if match is None:
        # Pre-, post-, dev- and local versions order by rules this
        # module does not reimplement.
        raise _Undecided(version)
    return tuple(int(part) for part in match.group('release').split('.'))


def _padded(a: tuple[int, ...], b: tuple[int, ...]
            ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def _clause_holds(installed: tuple[int, ...], op: str, wanted: str) -> bool:
    want = _release(wanted)
    have, want_p = _padded(installed, want)
    if op == '~=':
        if len(want) < 2:
            raise _Undecided(wanted)
        return have >= want_p and installed[:len(want) - 1] == want[:-1]
    return {'==': have == want_p, '!=': have != want_p,
            '<=': have <= want_p, '>=': have >= want_p,
            '<': have < want_p, '>': have > want_p}[op]


def satisfies(version: str, specifier: str) -> bool:
    """Whether ``version`` is one that ``specifier`` accepts.

    Release versions and the comparison operators cover what backends
    declare (``docker>=6.1.0``, ``foo>=1.2,<2``, ``~=1.4``); anything else
    is handed to ``packaging`` when it is installed.

    :raises _Undecided: when neither can tell.
    """
    clauses = [c.strip() for c in specifier.split(',') if c.strip()]
    try:
        installed = _release(version)
        holds = True
        for clause in clauses:
            match = _CLAUSE.match(clause)
            if match is None:
                raise _Undecided(clause)
            holds = holds and _clause_holds(installed, match.group('op'),
                                            match.group('version'))
        return holds
    except _Undecided:
        try:
            from packaging import specifiers
            from packaging import version as pkg_version
        except ImportError:
            raise _Undecided(specifier) from None
        try:
            return specifiers.SpecifierSet(specifier).contains(
                pkg_version.Version(version), prereleases=True)
        except (specifiers.InvalidSpecifier,
                pkg_version.InvalidVersion) as exc:
            raise _Undecided(specifier) from exc


def _marker_selects(marker: str, extra: str) -> bool:
    match = _EXTRA_MARKER.match(marker)
    if match is not None:
        return _canonical(match.group('extra')) == _canonical(extra)
    if 'extra' not in marker:
        # A base requirement with an environment marker: pip installed it
        # with the distribution when it applies.
        return False
    try:
        from packaging import markers
    except ImportError:
        raise _Undecided(marker) from None
    try:
        return markers.Marker(marker).evaluate({'extra': extra})
    except markers.InvalidMarker as exc:
        raise _Undecided(marker) from exc


@functools.lru_cache(maxsize=None)
def _headers(dist: importlib.metadata.Distribution) -> email.message.Message:
    """The metadata headers of ``dist``, read once per distribution.

    ``dist.metadata`` parses the whole file, long description included,
    on every access; compute-driver's is the README.
    """
    text = (dist.read_text('METADATA') or dist.read_text('PKG-INFO') or '')
    return email.message_from_string(
        text.replace('\r\n', '\n').split('\n\n', 1)[0] + '\n')


def extra_requirements(dist: importlib.metadata.Distribution, extra: str
                       ) -> list[tuple[str, str]]:
    """``(name, specifier)`` of each requirement ``extra`` adds.

    :raises _Undecided: for a requirement this module cannot parse.
    """
    found = []
    lines = _headers(dist).get_all('Requires-Dist')
    if lines is None:
        # An egg-info distribution lists them in requires.txt.
        lines = dist.requires or []
    for line in lines:
        match = _REQUIREMENT.match(line)
        if match is None:
            raise _Undecided(line)
        marker = match.group('marker')
        if not marker or not _marker_selects(marker, extra):
            continue
        spec = match.group('paren') or match.group('spec') or ''
        found.append((match.group('name'), spec.strip()))
    return found


def top_level_modules(dist: importlib.metadata.Distribution) -> list[str]:
    """The importable top-level names ``dist`` installs, from its metadata.

    ``top_level.txt`` when the distribution has one, otherwise the files
    its ``RECORD`` lists.
    """
    text = dist.read_text('top_level.txt')
    if text:
        return [n for n in (line.strip() for line in text.splitlines())
                if n.isidentifier()]
    names: dict[str, None] = {}
    for path in dist.files or ():
        parts = path.parts
        if not parts or parts[0] in ('..', '__pycache__'):
            continue
        head = parts[0]
        if len(parts) == 1:
            # A module ("six.py") or an extension ("libvirtmod.cpython-
            # 311-x86_64-linux-gnu.so"); not a ".pth" or other data.
            if not head.endswith(('.py', '.so', '.pyd')):
                continue
            head = head.split('.', 1)[0]
        if head.isidentifier():
            names[head] = None
    return list(names)


def module_exists(name: str) -> bool:
    """Whether module ``name`` can be found, without importing anything.

    ``importlib.util.find_spec("a.b")`` imports package ``a``; here each
    part is located in its parent's search path instead, unless the
    parent is already imported.
    """
    if name in sys.modules:
        return True
    parts = name.split('.')
    spec = importlib.util.find_spec(parts[0])
    for depth in range(1, len(parts)):
        locations = (None if spec is None
                     else spec.submodule_search_locations)
        if locations is None:
            return False
        qualified = '.'.join(parts[:depth + 1])
        if qualified in sys.modules:
            spec = sys.modules[qualified].__spec__
            continue
        spec = importlib.machinery.PathFinder.find_spec(
            qualified, list(locations))
    return spec is not None


def _sdk_module(requirement: str) -> str:
    """The module a requirement that is not installed would provide."""
    for module, package in loader.PACKAGE_OF_MODULE.items():
        if _canonical(package) == _canonical(requirement):
            return module
    return requirement.replace('-', '_').replace('.', '_')


def _check_requirement(name: str, requirement: str, specifier: str) -> None:
    try:
        dist = importlib.metadata.distribution(requirement)
    except importlib.metadata.PackageNotFoundError:
        module = _sdk_module(requirement)
        if module_exists(module):
            # Installed without metadata (copied onto sys.path, a distro
            # package without egg-info): only importing can tell.
            raise _Undecided(requirement) from None
        raise exception.BackendSDKMissing(
            name=name, module=module,
            hint=loader.install_hint(name, module)) from None
    headers = _headers(dist)
    version = headers['Version'] or dist.version
    if specifier and not satisfies(version, specifier):
        raise exception.BackendSDKVersion(
            name=name, requirement='%s%s' % (requirement, specifier),
            installed='%s %s' % (headers['Name'] or requirement,
                                 version),
            hint=loader.install_hint(name, None))
    for module in top_level_modules(dist):
        if not module_exists(module):
            raise exception.BackendSDKMissing(
                name=name, module=module,
                hint=loader.install_hint(name, module))


def _check_metadata(name: str, ep: importlib.metadata.EntryPoint) -> None:
    dist = getattr(ep, 'dist', None)
    if dist is None:
        raise _Undecided(name)
    extras = {_canonical(e)
              for e in _headers(dist).get_all('Provides-Extra') or ()}
    if _canonical(name) not in extras:
        # The distribution does not say what the backend needs.
        raise _Undecided(name)
    for requirement, specifier in extra_requirements(dist, name):
        _check_requirement(name, requirement, specifier)
    if not module_exists(ep.module):
        # Let the import word the failure exactly as loading would.
        raise _Undecided(ep.module)


def check_driver(name: str, load: bool = False) -> None:
    """Raise why backend ``name`` cannot be loaded; return if it can.

    :param load: import the backend (and its SDK) as
        :func:`~compute_driver.loader.load_driver_class` does, instead of
        reading package metadata; catches what metadata cannot (a module
        that fails to import, an entry point naming no driver class).
    :raises DriverNotFound: when no such entry point is installed.
    :raises BackendSDKMissing: when a module of its SDK is not installed.
    :raises BackendSDKVersion: when its SDK's installed version is not
        one its extra accepts (metadata only).
    :raises DriverLoadError: when it does not load (an import).
    """
    eps = loader.entry_points(name)
    if not load and len(eps) == 1:
        try:
            _check_metadata(name, eps[0])
            return
        except _Undecided:
            pass
    loader.load_driver_class(name)
