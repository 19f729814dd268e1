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

"""Plugging and unplugging ports through os-vif.

:func:`plug` hands each port to the os-vif plugin of its VIF type
(``linux_bridge``, ``ovs`` or ``noop``) before the instance starts, and
:func:`unplug` takes them back on destroy. A port that fails to plug
raises :class:`~compute_driver.network.exception.PlugFailed` naming the
port and the plugin, after the ports plugged before it in the same call
have been unplugged: an instance is never left half plugged.

os-vif is initialised once per process, whichever thread plugs first.
"""

import collections.abc
import importlib
import logging
import os
import threading
import typing

from compute_driver import exception
from compute_driver.network import exception as net_exception
from compute_driver.network import model
from compute_driver.network import netlink

LOG = logging.getLogger(__name__)

_LOCK = threading.Lock()
_STATE: dict[str, typing.Any] = {}

# The privsep contexts of os-vif's plugins; as root they run in this
# process instead of a privsep daemon started through sudo, which a host
# running the library as root may not even have.
_PRIVSEP_CONTEXTS = (
    'vif_plug_ovs.privsep',
    'vif_plug_linux_bridge.privsep',
)


def _load_plugins(os_vif: typing.Any, in_process: bool,
                  result: dict[str, typing.Any]) -> None:
    try:
        if in_process:
            for module in _PRIVSEP_CONTEXTS:
                try:
                    context = importlib.import_module(module).vif_plug
                except (ImportError, AttributeError):
                    continue
                context.set_client_mode(False)
        os_vif.initialize()
        plugins: dict[str, typing.Any] = {
            info.plugin_name: None
            for info in os_vif.host_info().plugin_info}
        if 'linux_bridge' not in plugins:
            from compute_driver.network import linux_bridge
            plugins['linux_bridge'] = linux_bridge.LinuxBridgePlugin.load(
                linux_bridge.PLUGIN_NAME)
        result['plugins'] = plugins
    except BaseException as exc:
        result['error'] = exc


def initialize(in_process: bool | None = None) -> dict[str, typing.Any]:
    """Initialise os-vif and load its plugins, once per process.

    :param in_process: run the plugins' privileged calls in this process
        rather than through a privsep daemon; by default when running as
        root. Only the first call's value counts.
    :returns: the plugins by name.
    :raises BackendSDKMissing: when os-vif is not installed.
    """
    with _LOCK:
        if 'plugins' in _STATE:
            return typing.cast(dict[str, typing.Any], _STATE['plugins'])
        os_vif = net_exception.import_sdk('os_vif')
        if in_process is None:
            in_process = os.geteuid() == 0
        # os-vif's OVS plugin imports os_vif.internal, which keeps the
        # stack of its first importer in module globals for good: loaded
        # on a thread of its own, that stack does not pin the caller's
        # frames (a backend in the middle of a spawn, with its
        # connection) for the life of the process.
        result: dict[str, typing.Any] = {}
        loader = threading.Thread(
            target=_load_plugins, args=(os_vif, in_process, result),
            name='os-vif-init', daemon=True)
        loader.start()
        loader.join()
        if 'error' in result:
            raise result['error']
        plugins = typing.cast(dict[str, typing.Any], result['plugins'])
        _STATE['os_vif'] = os_vif
        _STATE['plugins'] = plugins
        LOG.debug('os-vif plugins: %s', ', '.join(sorted(plugins)))
        return plugins


def _call(action: str, vif: typing.Any, info: typing.Any) -> None:
    plugins = initialize()
    own = plugins.get(vif.plugin)
    if own is not None:
        # Ours, not os-vif's: called the way os-vif would call it.
        getattr(own, action)(vif, info)
        return
    if vif.plugin not in plugins:
        raise net_exception.PlugFailed(
            port=vif.id, plugin=vif.plugin,
            reason='no such os-vif plugin is installed (installed: %s)'
                   % ', '.join(sorted(plugins)))
    getattr(_STATE['os_vif'], action)(vif, info)


def _inner(exc: BaseException) -> BaseException:
    # os-vif wraps the plugin's error in PlugException, whose message
    # repeats the whole VIF object; the plugin's error is what a user
    # needs to read.
    kwargs = getattr(exc, 'kwargs', None)
    inner = kwargs.get('err') if isinstance(kwargs, dict) else None
    return inner if isinstance(inner, BaseException) else exc


def _reason(exc: BaseException) -> str:
    return exception.one_line(_inner(exc))


def _known_error(exc: BaseException) -> BaseException | None:
    """A bad-input error inside an os-vif one, to re-raise as it is.

    A missing bridge is the caller's mistake and keeps its own type;
    anything else is a plugging failure, reported as :class:`PlugFailed`.
    """
    inner = _inner(exc)
    if isinstance(inner, exception.InvalidInput):
        return inner
    return None


def plug(ports: collections.abc.Iterable[model.Port],
         instance: typing.Any) -> list[model.Port]:
    """Plug ``ports`` for ``instance``, all or none.

    :param instance: os-vif's ``InstanceInfo``
        (:func:`compute_driver.network.model.instance_info`).
    :returns: the ports, in the order they were plugged.
    :raises DuplicatePort: when two ports collide (nothing is plugged).
    :raises BridgeNotFound: when a port's bridge is missing (the ports
        before it are unplugged).
    :raises PlugFailed: when a plugin fails (likewise).
    """
    ports = list(model.validate_ports(ports))
    initialize()
    done: list[model.Port] = []
    for port in ports:
        try:
            _call('plug', model.to_os_vif(port), instance)
        except BaseException as exc:
            _rollback(done, instance)
            known = _known_error(exc)
            if known is not None and known is not exc:
                raise known from exc
            if known is not None or not isinstance(exc, Exception):
                raise
            raise net_exception.PlugFailed(
                port=port.id, plugin=port.plugin,
                reason=_reason(exc)) from exc
        done.append(port)
    return done


def _rollback(done: list[model.Port], instance: typing.Any) -> None:
    for port in reversed(done):
        try:
            unplug([port], instance)
        except Exception:
            # The plug error is the one to report; this one is logged so
            # an operator can still find what stayed behind.
            LOG.exception('Could not unplug port %s after a later port '
                          'failed to plug', port.id)


def unplug(ports: collections.abc.Iterable[model.Port],
           instance: typing.Any, remove_device: bool = True) -> None:
    """Unplug ``ports``; a port already gone is not an error.

    Every port is tried even when one fails.

    :param remove_device: also delete a host device (tap or veth end)
        still named like the port, so nothing is left behind.
    :raises UnplugFailed: for the first port that could not be unplugged.
    """
    first: BaseException | None = None
    initialize()
    for port in ports:
        try:
            _call('unplug', model.to_os_vif(port), instance)
            if remove_device:
                netlink.delete_link(port.devname)
        except Exception as exc:
            LOG.warning('Unplugging port %s failed: %s', port.id, exc)
            if first is None:
                first = net_exception.UnplugFailed(
                    port=port.id, plugin=port.plugin, reason=_reason(exc))
                first.__cause__ = exc
    if first is not None:
        raise first


def quietly(unplug_ports: collections.abc.Callable[..., object],
            instance: typing.Any, ports: collections.abc.Sequence[
                model.Port]) -> None:
    """Call ``unplug_ports(instance, ports)``, logging instead of raising.

    For rollbacks: the error being rolled back is the one to report.

    :param instance: the library's instance (its ``name`` is logged).
    """
    try:
        unplug_ports(instance, ports)
    except Exception as exc:
        LOG.warning('Could not unplug the ports of %s: %s',
                    getattr(instance, 'name', instance),
                    exception.one_line(exc))
