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

"""Keep the scheduler away from a host whose backend is unavailable.

Nova's scheduler places servers on any enabled compute service with free
inventory; a nova-compute whose backend (dockerd, libvirtd, the XAPI
pool) is down still looks that way. As Nova's libvirt driver does when
its connection drops, the adapter disables its compute service, with a
reason starting with :data:`DISABLE_PREFIX`, while the backend reports
itself unavailable, which also sets the ``COMPUTE_STATUS_DISABLED`` trait
on its nodes in placement, and enables it again once the backend answers.
A service an operator disabled (any other reason) is never re-enabled.
"""

import logging
import threading
import typing

from nova import context as nova_context
from nova import objects as nova_objects

LOG = logging.getLogger(__name__)

#: Starts the disabled reason of a service the adapter disabled itself.
DISABLE_PREFIX = 'AUTO: '


class ServiceStatus:
    """The enabled state of one host's compute service, kept in step.

    :param virtapi: Nova's ``VirtAPI``, which updates the disabled trait.
    :param host: nova.conf's ``host``.
    """

    def __init__(self, virtapi: typing.Any, host: str) -> None:
        self._virtapi = virtapi
        self._host = host
        self._lock = threading.Lock()
        # What was last applied; None until the service was looked at, so
        # that a restarted nova-compute re-enables a service it had
        # disabled before.
        self._enabled: bool | None = None

    def backend_available(self, node_uuids: typing.Iterable[str]) -> None:
        """Enable the service again if the adapter had disabled it."""
        self._set(True, '', node_uuids)

    def backend_unavailable(self, reason: str,
                            node_uuids: typing.Iterable[str]) -> None:
        """The backend is unavailable: disable the service."""
        self._set(False, reason, node_uuids)

    def _set(self, enabled: bool, reason: str,
             node_uuids: typing.Iterable[str]) -> None:
        with self._lock:
            if self._enabled is enabled:
                return
            ctxt = nova_context.get_admin_context()
            try:
                service = nova_objects.Service.get_by_compute_host(
                    ctxt, self._host)
            except Exception:
                # Best effort, as in Nova's libvirt driver: the next
                # resource update tries again.
                LOG.warning('Cannot look up the compute service of %s to '
                            'mark it %s', self._host,
                            'enabled' if enabled else 'disabled',
                            exc_info=True)
                return
            self._enabled = enabled
            if service.disabled != enabled:
                return  # already as wanted
            if enabled and not (service.disabled_reason or '').startswith(
                    DISABLE_PREFIX):
                LOG.info('Not enabling the compute service of %s, which '
                         'was disabled by an operator', self._host)
                return
            service.disabled = not enabled
            service.disabled_reason = (None if enabled
                                       else DISABLE_PREFIX + reason)
            service.save()
            LOG.warning('Compute service of %s %s', self._host,
                        'enabled again: its backend answers' if enabled
                        else 'disabled: %s' % reason)
            for node_uuid in node_uuids:
                try:
                    self._virtapi.update_compute_provider_status(
                        ctxt, node_uuid, enabled)
                except Exception:
                    # The resource tracker syncs the trait on its next
                    # successful update.
                    LOG.warning('Cannot update the status of node %s in '
                                'placement', node_uuid, exc_info=True)
