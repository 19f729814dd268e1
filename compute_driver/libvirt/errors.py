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

"""libvirt's errors as the library's typed exceptions.

:func:`translate` is the backend's ``_translate`` hook: a
``libvirtError`` leaving an operation becomes
:class:`~compute_driver.exception.InstanceNotFound` when the domain is
gone, :class:`~compute_driver.exception.InstanceExists` when a spawn's
define finds the name taken, and
:class:`~compute_driver.exception.BackendError` with libvirt's own
message otherwise. The library's own exceptions pass through unchanged.
"""

import contextlib
import typing

import libvirt

from compute_driver import exception
from compute_driver import objects

# What defineXML answers when another domain has the name (the code
# depends on the libvirt release).
_EXISTS = frozenset((libvirt.VIR_ERR_OPERATION_FAILED,
                     libvirt.VIR_ERR_DOM_EXIST))


def code(exc: libvirt.libvirtError) -> int | None:
    """libvirt's error code (``VIR_ERR_*``) of ``exc``."""
    return exc.get_error_code()


def message(exc: libvirt.libvirtError) -> str:
    """libvirt's message of ``exc``, or its text when it has none."""
    return exc.get_error_message() or str(exc)


@contextlib.contextmanager
def translate(operation: str, instance: objects.Instance | None,
              ref: str | None = None) -> typing.Iterator[None]:
    """Turn a ``libvirtError`` raised inside into a typed error.

    :param operation: the operation, in words, for messages; a
        ``spawn`` also turns a taken domain name into InstanceExists.
    :param instance: the instance operated on, or ``None`` for a
        listing or a lookup, where a domain gone in between is no
        instance's absence and stays a BackendError.
    :param ref: what to name in messages when ``instance`` is ``None``
        (the uuid or name looked up); ``*`` when not given.
    """
    try:
        yield
    except libvirt.libvirtError as exc:
        name = instance.name if instance is not None else ref or '*'
        if instance is not None and code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            raise exception.InstanceNotFound(instance=name) from exc
        if (operation == 'spawn' and code(exc) in _EXISTS and
                'already exists' in message(exc)):
            raise exception.InstanceExists(instance=name) from exc
        raise exception.BackendError(
            operation=operation, instance=name, reason=message(exc)) from exc
