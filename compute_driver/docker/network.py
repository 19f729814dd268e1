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

"""A container's ports: os-vif plugging and veth pairs in its namespace.

A container given ports is created with ``network_mode: none`` and its
ports recorded in a label (:data:`PORTS`), so that the container alone
says which ports it has. Each port is plugged through os-vif (its bridge
exists, or is created when the network provides it) before the container
starts, then wired once its network namespace exists: a veth pair whose
host end is the port's device on its bridge and whose other end becomes
``eth0``, ``eth1``... in the container, with the port's MAC, MTU,
addresses and default routes (:mod:`compute_driver.network.netlink`).

Docker gives a container a new namespace at every start, so the ports
are wired again after each start, restart and revert, by the operation
itself and, for a start this process did not make (another client, a
restarted dockerd's restart policy), by the event watcher.

Labels cannot change after a container is created, so the ports of a
container are the ones it was spawned with: attaching or detaching a
port later is declared unsupported rather than kept anywhere else.
"""

import logging
import typing

from compute_driver.docker import mapping
from compute_driver import exception
from compute_driver.network import model
from compute_driver import objects

LOG = logging.getLogger(__name__)

#: The label that records a container's ports (:func:`model.to_record`).
PORTS = mapping.LABEL_NS + 'ports'

#: The network mode of a container with ports: none but its loopback,
#: until the ports are wired.
NETWORK_MODE = 'none'


def labels(ports: tuple[model.Port, ...]) -> dict[str, str]:
    """The labels recording ``ports``; none for no port."""
    return {PORTS: model.to_record(ports)} if ports else {}


def ports_of(data_or_labels: dict) -> tuple[model.Port, ...]:
    """The ports recorded on a container (inspect data or its labels).

    A damaged record is logged and counts as no port: the container stays
    usable and listed.
    """
    found = (mapping.container_labels(data_or_labels)
             if 'Config' in data_or_labels else data_or_labels)
    try:
        return model.from_record(found.get(PORTS))
    except exception.InvalidInput as exc:
        LOG.warning('Ignoring the damaged %s label of container %s: %s',
                    PORTS, data_or_labels.get('Id', '?'),
                    exception.one_line(exc))
        return ()


def ifname(index: int) -> str:
    """The name of a container's ``index``-th port: ``eth<index>``."""
    return 'eth%d' % index


def _info(instance: objects.Instance) -> typing.Any:
    return model.instance_info(instance.uuid, instance.name)


def plug(instance: objects.Instance,
         ports: tuple[model.Port, ...]) -> None:
    """Plug ``ports`` through os-vif, before the container starts.

    :raises BridgeNotFound: for a missing bridge (nothing stays plugged).
    :raises PlugFailed: when a plugin fails (likewise).
    """
    if ports:
        from compute_driver.network import plug as net_plug
        net_plug.plug(ports, _info(instance))


def wire(instance: objects.Instance, ports: tuple[model.Port, ...],
         pid: int) -> None:
    """Wire ``ports`` into the namespace of process ``pid``, all or none.

    Ports wired already are only checked, so this is also the re-plug
    after a start. A port that fails unwires those wired before it.

    :raises NetlinkError: when the kernel refuses a step.
    """
    if not ports:
        return
    from compute_driver.network import netlink
    done: list[model.Port] = []
    try:
        for index, port in enumerate(ports):
            netlink.plug_veth(
                port, pid, ifname(index),
                attach=port.vif_type == model.VIF_TYPE_BRIDGE)
            done.append(port)
    except BaseException:
        for port in done:
            netlink.unplug_veth(port)
        raise
    LOG.debug('Wired %d port(s) into %s (pid %d)', len(ports),
              instance.name, pid)


def unwire(instance: objects.Instance,
           ports: tuple[model.Port, ...]) -> None:
    """Delete the veth pairs of ``ports`` once their container stopped.

    The kernel frees a stopped container's network namespace, and the
    veth ends in it, in the background, some time after the process
    exited; until then the host ends stay on their bridges. Deleting them
    here means none is left once the stop has returned. The ports stay
    plugged (their bridge and os-vif state are kept for the next start).
    """
    if not ports:
        return
    from compute_driver.network import netlink
    for port in ports:
        netlink.unplug_veth(port)
    LOG.debug('Unwired %d port(s) of %s', len(ports), instance.name)


def unplug(instance: objects.Instance,
           ports: tuple[model.Port, ...]) -> None:
    """Unplug ``ports`` and delete their veth pairs; gone is fine."""
    if not ports:
        return
    from compute_driver.network import netlink
    from compute_driver.network import plug as net_plug
    for port in ports:
        netlink.unplug_veth(port)
    net_plug.unplug(ports, _info(instance))


def unplug_quietly(instance: objects.Instance,
                   ports: tuple[model.Port, ...]) -> None:
    """:func:`unplug`, logging instead of raising: for rollbacks."""
    if ports:
        from compute_driver.network import plug as net_plug
        net_plug.quietly(unplug, instance, ports)
