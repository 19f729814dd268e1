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

"""The compute node a backend's host is to Nova: its name and uuid.

Nova keys a compute node (and its placement resource provider) by a uuid
that must not change while the node lives. A driver that gives none gets
Nova's process-wide identity (``nova.virt.node.get_local_node_uuid``), a
random uuid kept in ``$state_path/compute_id``; every compute service of a
process then shares one uuid, and a backend host moved to another
nova-compute becomes a new node. The adapter instead derives the uuid
from the backend's own host identity (:func:`host_identity`) and the node
name, so it is the same in every process serving that host, and distinct
for every host.

Nova's identity file still wins when it exists, so a node created before
the adapter derived uuids keeps its uuid; when it does not exist, the
derived uuid is written there, as Nova's compute manager requires from
its second start on.
"""

import typing
import uuid

from nova import exception as nova_exception
from nova.virt import node as nova_node

#: The namespace of the uuids derived here (a fixed, random uuid: it only
#: has to differ from other producers of name-based uuids).
NAMESPACE = uuid.UUID('0b1f7c4e-5d1a-4f5e-9a9e-6c2f3d8b7a10')


def host_identity(backend: typing.Any, nodename: str) -> str:
    """What identifies the host behind ``backend`` serving ``nodename``.

    The backend's name, the node name (the backend's
    ``hypervisor_hostname``) and the backend's own host identity
    (``get_host_identity``: libvirtd's host UUID, dockerd's daemon ID, the
    XAPI pool master's uuid, the fake's ``[fake] host_identity``) when it
    has one. The node name stays part of it: two nova-compute hosts may
    share one dockerd, each with its own labelled containers; the host
    identity tells apart two hosts with one name, e.g. one host name
    reused against another daemon, which holds other guests.

    :param backend: the loaded backend, after ``init_host``.
    :param nodename: the node, as ``get_available_nodes`` reports it.
    :raises nova.exception.HypervisorUnavailable: when the backend cannot
        say its identity; a uuid derived without it would be another
        node's.
    """
    parts = [backend.name, nodename]
    try:
        identity = backend.get_host_identity()
    except Exception as exc:
        raise nova_exception.HypervisorUnavailable(
            message='the %s backend did not say its host identity: %s'
            % (backend.name, exc)) from exc
    if identity is not None:
        parts.append(str(identity))
    return '/'.join(parts)


def derived_uuid(backend: typing.Any, nodename: str) -> str:
    """The node uuid derived from :func:`host_identity`; stable."""
    return str(uuid.uuid5(NAMESPACE, host_identity(backend, nodename)))


def node_uuid(backend: typing.Any, nodename: str) -> str:
    """The node's uuid: Nova's identity file's, else :func:`derived_uuid`.

    The derived uuid is written to Nova's identity file when there is
    none, as Nova itself does the first time it generates one.

    :raises nova.exception.InvalidNodeConfiguration: when the identity
        file cannot be read or written.
    """
    local = nova_node.read_local_node_uuid()
    if local is not None:
        return str(local)
    derived = derived_uuid(backend, nodename)
    nova_node.write_local_node_uuid(derived)
    return derived
