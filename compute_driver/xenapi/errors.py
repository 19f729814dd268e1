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

"""XAPI failures as the library's exceptions.

XAPI answers a refused call with an error code and parameters
(``VM_BAD_POWER_STATE [vm, expected, actual]``); :func:`failure` turns
the codes callers can act on into typed errors with the numbers and the
option to change, and anything else into a one-line ``BackendError``.
"""

import contextlib
import dataclasses
import logging
import typing

from compute_driver import exception
from compute_driver import objects
from compute_driver.xenapi import connection
from compute_driver.xenapi import mapping

LOG = logging.getLogger(__name__)

Record = dict[str, typing.Any]


def gib(value: object) -> str:
    try:
        return '%.1f GiB' % (int(str(value)) / mapping.GiB)
    except ValueError:
        return str(value)


def mib(value: object) -> str:
    try:
        return '%d MiB' % (int(str(value)) // mapping.MiB)
    except ValueError:
        return str(value)


@dataclasses.dataclass(frozen=True)
class HostContext:
    """What messages tell of the host, read when a failure needs it.

    :param hostname: the pool master's name, or ``-``.
    :param memory_total: the master's memory in bytes, when known.
    :param sr_record: the record of the SR for instance disks, read now;
        may raise XapiCallFailed or a library error.
    :param sr_option: ``[xenapi] sr_name``.
    """

    hostname: typing.Callable[[], str]
    memory_total: typing.Callable[[], int | None]
    sr_record: typing.Callable[[], Record]
    sr_option: str


def failure(exc: connection.XapiCallFailed, operation: str,
            instance: objects.Instance | None,
            host: HostContext) -> Exception:
    """The library's exception for a XAPI failure.

    :param operation: the operation, in words.
    """
    name = instance.name if instance is not None else '-'
    code, params = exc.code, exc.params
    if code == 'HANDLE_INVALID' and params[:1] == ['VM']:
        return exception.InstanceNotFound(instance=name)
    if code == 'VM_BAD_POWER_STATE' and len(params) >= 3:
        return exception.InvalidPowerState(
            operation=operation.replace('_', ' '), instance=name,
            current=params[2], expected=params[1])
    if code == 'SR_FULL':
        return _sr_full(params, host)
    if code == 'HOST_NOT_ENOUGH_FREE_MEMORY':
        total = host.memory_total()
        return exception.InsufficientResources(
            resource='memory', host=host.hostname(),
            requested=mib(params[0] if params else '?'),
            free=mib(params[1] if len(params) > 1 else '?'),
            total=mib(total) if total is not None else '?')
    return exception.BackendError(operation=operation, instance=name,
                                  reason=' '.join(exc.details))


def _sr_full(params: list[str], host: HostContext) -> Exception:
    """SR_FULL ``[requested, maximum]`` with the SR's numbers."""
    name, total = host.sr_option or 'the default SR', '?'
    try:
        sr = host.sr_record()
        name = '%s (%s)' % (sr['name_label'], sr['uuid'])
        total = gib(sr['physical_size'])
        free = gib(int(sr['physical_size']) -
                   int(sr['physical_utilisation']))
    except (connection.XapiCallFailed, exception.ComputeDriverError):
        free = gib(params[1] if len(params) > 1 else '?')
    return exception.InsufficientResources(
        resource='disk space on SR %s, chosen by [xenapi] sr_name' % name,
        host=host.hostname(), requested=gib(params[0] if params else '?'),
        free=free, total=total)


@contextlib.contextmanager
def translate(operation: str, instance: objects.Instance | None,
              host: HostContext) -> typing.Iterator[None]:
    """Raise XAPI failures inside the block as library exceptions.

    Library exceptions pass through unchanged.
    """
    try:
        yield
    except connection.XapiCallFailed as exc:
        raise failure(exc, operation, instance, host) from exc
