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


# Entry points of NAMESPACE by sys.path: reading them scans every
# installed distribution's metadata, which "compute-driver drivers" would
# otherwise do once per backend.
_EP_CACHE: dict[tuple[str, ...], list[importlib.metadata.EntryPoint]] = {}


def entry_points(name: str | None = None
                 ) -> list[importlib.metadata.EntryPoint]:
    """The installed backend entry points, or those named ``name``.

    Nothing is imported. Read once per ``sys.path``.
    """
    key = tuple(sys.path)
    eps = _EP_CACHE.get(key)
    if eps is None:
        eps = _EP_CACHE[key] = list(
            importlib.metadata.entry_points(group=NAMESPACE))
    return [ep for ep in eps if name is None or ep.name == name]


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
        or the backend's own (``InvalidConfiguration``...).
    """
    name = name or conf.compute_driver
    cls = load_driver_class(name)
    try:
        backend = cls(conf, virtapi=virtapi)
    except Exception as exc:
        raise _load_error(name, exc) from exc
    backend.name = name
    LOG.debug('Loaded compute driver %s (%s.%s)', name, cls.__module__,
              cls.__qualname__)
    return backend
