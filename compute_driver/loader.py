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

"""Find and load one backend through stevedore.

Only the entry point that is asked for is imported, so loading ``fake``
never imports docker, libvirt or XenAPI. stevedore and the driver contract
are imported on first load, so that listing backends, or telling from
package metadata whether one loads (:mod:`compute_driver.probe`), pays for
neither.
"""

import importlib.metadata
import logging
import sys
import typing

from compute_driver import exception

if typing.TYPE_CHECKING:  # pragma: no cover
    # Only for annotations: "compute-driver drivers" lists backends without
    # paying for oslo.config's import.
    from oslo_config import cfg

    from compute_driver import driver as contract

LOG = logging.getLogger(__name__)

NAMESPACE = 'compute_driver.drivers'

# Module names whose PyPI distribution is called something else.
PACKAGE_OF_MODULE = {'libvirt': 'libvirt-python'}


#: Entry-point namespace of each backend's options: a callable named like
#: the backend's entry point returning ``[(group, [opts])]`` and importing
#: no SDK, so the configuration and ``oslo-config-generator`` reach every
#: installed backend's options without loading any backend.
OPTS_NAMESPACE = 'compute_driver.driver_opts'

# Every entry point by sys.path: reading them scans every installed
# distribution's metadata, whichever namespace is asked for, and a command
# asks for several (its own, the backends', their options').
_EP_CACHE: dict[tuple[str, ...], typing.Any] = {}


def entry_points(name: str | None = None, namespace: str = NAMESPACE
                 ) -> list[importlib.metadata.EntryPoint]:
    """The installed entry points of ``namespace``, or those named ``name``.

    :param namespace: :data:`NAMESPACE` (the backends),
        :data:`OPTS_NAMESPACE` (their options), or any other.

    Nothing is imported. The backends' are read from the distributions'
    metadata, once per ``sys.path`` for all namespaces, and carry their
    distribution (``ep.dist``: what a backend needs). The others come
    from stevedore's cache of the same metadata, which cliff and the
    backend loader read anyway: a command that only needs its own entry
    point and its backend's options does not scan every installed
    distribution.
    """
    if namespace == NAMESPACE:
        found = list(_all_entry_points().select(group=namespace))
    else:
        found = _cached_group(namespace)
    return [ep for ep in found if name is None or ep.name == name]


def _all_entry_points() -> typing.Any:
    key = tuple(sys.path)
    found = _EP_CACHE.get(key)
    if found is None:
        # All groups, each distribution once (the first on sys.path), as
        # importlib.metadata.entry_points(group=...) would read them.
        found = _EP_CACHE[key] = importlib.metadata.entry_points()
    return found


def _cached_group(namespace: str) -> list[importlib.metadata.EntryPoint]:
    try:
        # Keyed by sys.path and the mtimes of its entries and their
        # entry_points.txt files, so an installation shows at once.
        from stevedore import _cache
        return list(_cache.get_group_all(namespace))
    except Exception as exc:
        # A stevedore without it, or a cache it cannot read or build.
        LOG.debug('Not using stevedore\'s entry point cache: %s', exc)
        return list(_all_entry_points().select(group=namespace))


def entry_point_targets() -> dict[str, str]:
    """Every installed backend's name and ``module:Class``, sorted by name.

    Nothing is imported.
    """
    targets: dict[str, str] = {}
    for ep in sorted(entry_points(), key=lambda ep: ep.name):
        targets.setdefault(ep.name, ep.value)
    return targets


def installed_drivers() -> list[str]:
    """Names of every installed backend, without importing any of them."""
    return list(entry_point_targets())


def install_hint(name: str, module: str | None) -> str:
    """How to install what backend ``name`` is missing.

    Prefers the backend distribution's extra of the same name (``pip install
    'compute-driver[docker]'``) and falls back to the module's package.
    """
    for ep in entry_points(name):
        dist = getattr(ep, 'dist', None)
        if dist is None:
            continue
        extras = dist.metadata.get_all('Provides-Extra') or []
        if name in extras:
            return "pip install '%s[%s]'" % (dist.metadata['Name'], name)
    package = PACKAGE_OF_MODULE.get(module or '', module or name)
    return 'pip install %s' % package


def _load_error(name: str, exc: BaseException) -> exception.ComputeDriverError:
    if isinstance(exc, exception.ComputeDriverError):
        return exc
    if isinstance(exc, ImportError):
        module = (exc.name or '').split('.')[0] or None
        if module and not module.startswith('compute_driver'):
            return exception.BackendSDKMissing(
                name=name, module=module, hint=install_hint(name, module))
    return exception.DriverLoadError(
        name=name, reason='%s: %s' % (type(exc).__name__, exc))


def load_driver_class(name: str) -> 'type[contract.ComputeDriver]':
    """Import backend ``name`` and return its class, without building it.

    :raises DriverNotFound: when no such entry point is installed.
    :raises BackendSDKMissing: when its SDK is not installed.
    :raises DriverLoadError: when it does not import or is not a
        :class:`~compute_driver.driver.ComputeDriver`.
    """
    from stevedore import driver as stevedore_driver
    from stevedore import exception as stevedore_exc

    from compute_driver import driver as contract

    def on_failure(manager: object, ep: object, exc: BaseException) -> None:
        raise _load_error(name, exc) from exc

    try:
        manager: stevedore_driver.DriverManager[contract.ComputeDriver] = (
            stevedore_driver.DriverManager(
                NAMESPACE, name, invoke_on_load=False,
                on_load_failure_callback=on_failure))
    except stevedore_exc.NoMatches:
        raise exception.DriverNotFound(
            name=name,
            installed=', '.join(installed_drivers()) or 'none') from None
    except stevedore_exc.MultipleMatches as exc:
        raise exception.DriverLoadError(name=name, reason=str(exc)) from None
    cls = manager.driver
    if not (isinstance(cls, type) and
            issubclass(cls, contract.ComputeDriver)):
        raise exception.DriverLoadError(
            name=name,
            reason='%r is not a compute_driver.driver.ComputeDriver '
                   'subclass' % (cls,))
    return cls


def _option_groups(name: str, groups: typing.Any
                   ) -> 'list[tuple[cfg.OptGroup, list[cfg.Opt]]]':
    """``groups`` as ``[(OptGroup, [opts])]``, checked.

    :raises DriverLoadError: when it is not a list of (group, options)
        pairs, or names ``DEFAULT``, which is the library's.
    """
    from oslo_config import cfg

    result = []
    try:
        pairs = list(groups.items() if isinstance(groups, dict)
                     else groups)
        for group, group_opts in pairs:
            if not isinstance(group, cfg.OptGroup):
                group = cfg.OptGroup(group)
            group_opts = list(group_opts)
            if not all(isinstance(o, cfg.Opt) for o in group_opts):
                raise TypeError('options of [%s] are not all cfg.Opt'
                                % group.name)
            if group.name == 'DEFAULT':
                raise TypeError('[DEFAULT] is the library\'s; a backend '
                                'owns a group of its own')
            # A copy: ConfigOpts keeps a shallow copy of the group it is
            # given, so one shared between ConfigOpts would carry
            # overrides from one into the next.
            result.append((cfg.OptGroup(group.name, title=group.title,
                                        help=group.help), group_opts))
    except (TypeError, ValueError) as exc:
        raise exception.DriverLoadError(
            name=name, reason='bad options: %s' % exc) from None
    return result


def backend_opts(name: str
                 ) -> 'list[tuple[cfg.OptGroup, list[cfg.Opt]]] | None':
    """The option groups backend ``name`` declares, without loading it.

    Read from its :data:`OPTS_NAMESPACE` entry point, which imports
    oslo.config and the backend's option module, never its SDK.

    :returns: ``[(group, [opts])]``, or ``None`` when no entry point of
        that name is installed.
    :raises DriverLoadError: when there are several, or it fails.
    """
    eps = entry_points(name, OPTS_NAMESPACE)
    if not eps:
        return None
    if len({ep.value for ep in eps}) > 1:
        raise exception.DriverLoadError(
            name=name, reason='several %s entry points are named %s: %s'
            % (OPTS_NAMESPACE, name, ', '.join(ep.value for ep in eps)))
    try:
        groups = eps[0].load()()
    except Exception as exc:
        raise exception.DriverLoadError(
            name=name, reason='its options (%s) do not load: %s: %s'
            % (eps[0].value, type(exc).__name__, exc)) from exc
    return _option_groups(name, groups)


def class_opts(name: str, cls: 'type[contract.ComputeDriver]'
               ) -> 'list[tuple[cfg.OptGroup, list[cfg.Opt]]]':
    """The option group a backend class declares.

    ``CONFIG_GROUP`` and ``CONFIG_OPTS``; none when ``CONFIG_GROUP`` is
    empty.

    :raises DriverLoadError: when they are not a group name and options.
    """
    group = getattr(cls, 'CONFIG_GROUP', None)
    if not group:
        return []
    return _option_groups(name, [(group, getattr(cls, 'CONFIG_OPTS', ()))])


def register_backend_opts(conf: 'cfg.ConfigOpts', name: str,
                          cls: 'type[contract.ComputeDriver] | None' = None
                          ) -> list[str]:
    """Register the option groups of backend ``name`` on ``conf``.

    ``conf`` is the library's own ``ConfigOpts``, never the global
    ``cfg.CONF``. The groups come from ``cls``'s ``CONFIG_GROUP`` and
    ``CONFIG_OPTS`` when it is given; otherwise from the backend's
    :data:`OPTS_NAMESPACE` entry point, so that no SDK is imported, and
    only for a backend without one from its class. A group registered
    again with the same options is left as it is.

    :returns: the names of the groups, ``[]`` for a backend that is not
        installed or does not load (:func:`load_driver` says why).
    :raises DriverLoadError: when its options do not load, or differ
        from options of the same names already registered.
    """
    from oslo_config import cfg

    if cls is not None:
        groups = class_opts(name, cls)
    else:
        found = backend_opts(name)
        if found is None:
            try:
                found = class_opts(name, load_driver_class(name))
            except exception.ComputeDriverError:
                return []
        groups = found
    for group, group_opts in groups:
        try:
            conf.register_group(group)
            conf.register_opts(group_opts, group=group.name)
        except cfg.Error as exc:
            raise exception.DriverLoadError(
                name=name, reason='options of [%s]: %s' % (
                    group.name, ' '.join(str(exc).split()))) from exc
    return [group.name for group, _ in groups]


def load_driver(conf: 'cfg.ConfigOpts', name: str | None = None,
                virtapi: object = None) -> 'contract.ComputeDriver':
    """Build the configured backend.

    :param conf: a ``ConfigOpts`` from
        :func:`compute_driver.conf.build_conf`.
    :param name: entry-point name; defaults to ``[DEFAULT] compute_driver``.
    :param virtapi: passed to the backend (the Nova adapter's VirtAPI).
    :returns: a backend instance on which ``init_host`` is still to be
        called.
    :raises ComputeDriverError: any of :func:`load_driver_class`'s errors,
        :func:`register_backend_opts`'s, ``InvalidConfiguration`` for a
        bad value of the backend's options, or the backend's own.
    """
    from compute_driver import conf as cd_conf

    name = name or conf.compute_driver
    cls = load_driver_class(name)
    # The class is what runs: its groups are registered, and their values
    # checked, even when the configuration was built for another backend.
    cd_conf.check_group_values(conf, register_backend_opts(conf, name, cls))
    try:
        backend = cls(conf, virtapi=virtapi)
    except Exception as exc:
        raise _load_error(name, exc) from exc
    backend.name = name
    LOG.debug('Loaded compute driver %s (%s.%s)', name, cls.__module__,
              cls.__qualname__)
    return backend
