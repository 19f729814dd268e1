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

"""Typed errors of the networking helpers.

Each is a subclass of one of :mod:`compute_driver.exception`'s classes,
so callers that already handle :class:`~compute_driver.exception.
InvalidInput` or :class:`~compute_driver.exception.BackendError` (and
the Nova adapter's translation of them) handle these too.
"""

import importlib
import typing

from compute_driver import exception


def import_sdk(module: str) -> typing.Any:
    """Import ``module`` (os-vif's or pyroute2's), which the extra installs.

    The networking modules import them only when a port is plugged, so
    that the CLI and the backends without networking never load them.

    :raises BackendSDKMissing: naming the extra that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise exception.BackendSDKMissing(
            name='network', module=module.split('.')[0],
            hint='pip install "compute-driver[network]"') from exc


class InvalidPort(exception.InvalidInput):
    """A port that no backend could plug as given."""

    msg_fmt = "Invalid port %(port)s: %(reason)s"

    port: str


class InvalidMAC(InvalidPort):
    msg_fmt = "Invalid MAC address %(mac)r for port %(port)s: %(reason)s"

    mac: object


class InvalidMTU(InvalidPort):
    msg_fmt = ("Invalid MTU %(mtu)r for port %(port)s: it must be an "
               "integer from %(minimum)d to %(maximum)d.")

    mtu: object
    minimum: int
    maximum: int


class InvalidFixedIP(InvalidPort):
    msg_fmt = "Invalid fixed IP %(address)r for port %(port)s: %(reason)s"

    address: object


class UnknownVIFType(InvalidPort):
    msg_fmt = ("Port %(port)s has VIF type %(vif_type)r, which no plugin "
               "handles; known types: %(known)s.")

    vif_type: object
    known: str


class DuplicatePort(exception.InvalidInput):
    """Two ports of one instance share a MAC, an id or a device name."""

    msg_fmt = ("Ports %(first)s and %(second)s both have %(what)s "
               "%(value)s.")

    first: str
    second: str
    what: str
    value: str


class BridgeNotFound(exception.InvalidInput):
    msg_fmt = ("Bridge %(bridge)s of port %(port)s does not exist on this "
               "host.")

    bridge: str
    port: str


class NetnsNotFound(exception.InvalidInput):
    msg_fmt = "Network namespace %(netns)s does not exist: %(reason)s"

    netns: str


class PlugFailed(exception.BackendError):
    """os-vif (or the netlink wiring) could not plug a port.

    Ports plugged before it in the same call have been unplugged again.
    """

    msg_fmt = ("Plugging port %(port)s with the %(plugin)s plugin failed: "
               "%(reason)s")

    port: str
    plugin: str


class UnplugFailed(exception.BackendError):
    msg_fmt = ("Unplugging port %(port)s with the %(plugin)s plugin "
               "failed: %(reason)s")

    port: str
    plugin: str


class NetlinkError(exception.BackendError):
    msg_fmt = "Cannot %(operation)s %(device)s: %(reason)s"

    operation: str
    device: str


class PortNotAttached(exception.InvalidInput):
    """A port to detach that the instance does not have."""

    msg_fmt = ("Instance %(instance)s has no port %(port)s; its ports: "
               "%(ports)s.")

    instance: str
    port: str
    ports: str
