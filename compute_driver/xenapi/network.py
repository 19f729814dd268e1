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

"""An instance's ports as XAPI VIFs.

Each port becomes one VIF of the instance's VM, on the XAPI network
whose ``bridge`` is the port's bridge (the Linux bridge of a ``bridge``
port, the integration bridge of an ``ovs`` one); when no network carries
that bridge, the network whose ``name_label`` is the port's bridge or
network label, when exactly one has it. The VIF has the port's MAC, its
MTU (also as ``other_config:mtu``, which is what xenopsd gives the guest's
device; without one, the network's) and the port id as
``other_config:neutron-port-id``, the key Nova's XenAPI driver set and
the Neutron agents of XenServer read.

XAPI plugs a VM's VIFs when it starts and keeps them across reboots,
suspends and host restarts, so nothing needs re-applying; a VIF added to
a running VM is plugged at once (``VIF.plug``), one removed is unplugged
first (``VIF.unplug``). Everything is checked before the first VIF is
created, and what a failing call had created is removed again.
"""

import collections.abc
import logging
import typing

from compute_driver import exception
from compute_driver.network import exception as net_exception
from compute_driver.network import model
from compute_driver.xenapi import connection

LOG = logging.getLogger(__name__)

Record = dict[str, typing.Any]

#: The VM's ``other_config`` key recording its ports, in NIC order, as
#: :func:`compute_driver.network.model.to_record` writes them.
KEY_PORTS = 'compute_driver_ports'
#: The VIF's ``other_config`` key holding the port id.
KEY_PORT = 'neutron-port-id'
#: The ``other_config`` key xenopsd reads the guest device's MTU from.
KEY_MTU = 'mtu'

#: XAPI refusals of a hot-plug that say what the guest lacks.
_GUEST_CODES = {
    'VM_MISSING_PV_DRIVERS': 'PV drivers',
    'OPERATION_NOT_ALLOWED': 'VIF hot-plug support',
}


class NetworkNotFound(net_exception.BridgeNotFound):
    """No XAPI network carries a port's bridge."""

    msg_fmt = ("No XAPI network carries bridge %(bridge)s of port "
               "%(port)s; the pool's networks: %(known)s.")

    known: str


def port_id(vif: Record) -> str | None:
    """The port a VIF was created for, or ``None`` for another VIF."""
    value = vif.get('other_config', {}).get(KEY_PORT)
    return str(value) if value else None


class Planned(typing.NamedTuple):
    """A VIF to create: the port, its network and the record."""

    port: model.Port
    network: str
    record: Record


class Vifs:
    """Creates, plugs and removes the VIFs of instances.

    :param xapi: the backend's connection.
    """

    def __init__(self, xapi: connection.Connection,
                 port_network: str = '') -> None:
        self._xapi = xapi
        self._port_network = port_network

    # -- looking up --------------------------------------------------------

    def networks(self) -> dict[str, Record]:
        """Every XAPI network, by reference."""
        return typing.cast(dict[str, Record],
                           self._xapi.call('network.get_all_records'))

    def network_of(self, port: model.Port, networks: dict[str, Record]
                   ) -> tuple[str, Record]:
        """The network a port goes on.

        The network carrying its bridge; else the one named after its
        bridge or network label; else, for a port naming no bridge, the
        ``port_network`` this was made with.

        :raises NetworkNotFound: naming the pool's bridges.
        """
        for ref, record in networks.items():
            if port.bridge and record.get('bridge') == port.bridge:
                return ref, record
        fallback = None if port.bridge else self._port_network
        for name in (port.bridge, port.network_label, fallback):
            named = [(ref, record) for ref, record in networks.items()
                     if name and name in (record.get('name_label'),
                                          record.get('bridge'))]
            if len(named) == 1:
                return named[0]
        if port.bridge:
            bridge = port.bridge
        elif self._port_network:
            bridge = ('(none; [xenapi] port_network %r names no network)'
                      % self._port_network)
        else:
            bridge = '(none; [xenapi] port_network is empty)'
        raise NetworkNotFound(
            bridge=bridge,
            port=port.id, known=', '.join(sorted(
                '%s (%s)' % (n.get('bridge'), n.get('name_label'))
                for n in networks.values())) or 'none')

    def vifs_of(self, vm: str) -> dict[str, Record]:
        """The VIFs of a VM, by reference."""
        return {ref: self._xapi.call('VIF.get_record', ref)
                for ref in self._xapi.call('VM.get_VIFs', vm)}

    # -- planning ----------------------------------------------------------

    def plan(self, ports: collections.abc.Iterable[model.Port],
             existing: collections.abc.Mapping[str, Record] | None = None
             ) -> list[Planned]:
        """Check ``ports`` against the pool and the VM's other VIFs.

        Nothing is created: a port that cannot be plugged is refused
        before any VIF exists.

        :param existing: the VM's VIFs that stay, by reference.
        :raises DuplicatePort: when two ports, or a port and a VIF the VM
            has, share an id or a MAC.
        :raises NetworkNotFound: for a bridge no network carries.
        :raises InvalidMTU: for an MTU above its network's.
        """
        ports = model.validate_ports(ports)
        existing = dict(existing or {})
        taken = {int(v['device']) for v in existing.values()
                 if str(v.get('device', '')).isdigit()}
        for port in ports:
            for vif in existing.values():
                owner = port_id(vif) or 'VIF %s' % vif.get('uuid', '?')
                if port_id(vif) == port.id:
                    raise net_exception.DuplicatePort(
                        first=owner, second=port.id, what='the id',
                        value=port.id)
                if str(vif.get('MAC', '')).lower() == port.mac:
                    raise net_exception.DuplicatePort(
                        first=owner, second=port.id, what='the MAC',
                        value=port.mac)
        networks = self.networks() if ports else {}
        planned = []
        device = 0
        for port in ports:
            ref, network = self.network_of(port, networks)
            limit = int(network.get('MTU') or 1500)
            if port.mtu is not None and port.mtu > limit:
                # The network's PIFs carry no larger frames: the guest
                # would lose every packet above the network's MTU.
                raise net_exception.InvalidMTU(
                    mtu=port.mtu, port=port.id, minimum=model.MIN_MTU,
                    maximum=limit)
            while device in taken:
                device += 1
            taken.add(device)
            other = {KEY_PORT: port.id}
            if port.mtu is not None:
                other[KEY_MTU] = str(port.mtu)
            planned.append(Planned(port, ref, {
                'device': str(device), 'network': ref, 'MAC': port.mac,
                'MTU': str(port.mtu or limit), 'other_config': other,
                'qos_algorithm_type': '', 'qos_algorithm_params': {},
                'locking_mode': 'network_default', 'ipv4_allowed': [],
                'ipv6_allowed': [], 'currently_attached': False}))
        return planned

    # -- changing ----------------------------------------------------------

    def create(self, vm: str, planned: collections.abc.Sequence[Planned],
               plug: bool) -> list[str]:
        """Create the planned VIFs, plugging them if ``plug``; all or none.

        :returns: the new VIFs' references, in the ports' order.
        :raises GuestFeatureMissing: when the guest cannot hot-plug.
        """
        done: list[str] = []
        try:
            for item in planned:
                ref = self._xapi.call('VIF.create', dict(item.record, VM=vm))
                done.append(ref)
                if plug:
                    self._xapi.call('VIF.plug', ref)
                LOG.debug('VIF %s of port %s on network %s', ref,
                          item.port.id, item.network)
        except BaseException:
            self.discard(done)
            raise
        return done

    def discard(self, refs: collections.abc.Sequence[str]) -> None:
        """Remove VIFs made by a call that then failed; log what stays."""
        for ref in reversed(refs):
            try:
                if self._xapi.call('VIF.get_currently_attached', ref):
                    self._xapi.call('VIF.unplug_force', ref)
                self._xapi.call('VIF.destroy', ref)
            except (connection.XapiCallFailed,
                    exception.ComputeDriverError) as exc:
                # The first error is the one to report; this one is
                # logged so an operator finds the VIF that stayed.
                LOG.error('Could not remove VIF %s after a failure: %s',
                          ref, exception.one_line(exc))

    def remove(self, ref: str, record: Record, running: bool) -> None:
        """Unplug a VIF from a running VM, then destroy it."""
        if running and record.get('currently_attached'):
            self._xapi.call('VIF.unplug', ref)
        self._xapi.call('VIF.destroy', ref)

    def destroy_all(self, vm: str) -> None:
        """Destroy every VIF of a halted VM (those a clone inherited)."""
        for ref in self._xapi.call('VM.get_VIFs', vm):
            self._xapi.call('VIF.destroy', ref)


def guest_failure(exc: connection.XapiCallFailed, driver: str,
                  verb: str, instance: str) -> Exception | None:
    """A typed error for a hot-plug the guest cannot do, else ``None``."""
    feature = _GUEST_CODES.get(exc.code)
    if feature is None or exc.method not in ('VIF.plug', 'VIF.unplug'):
        return None
    return exception.GuestFeatureMissing(
        driver=driver, operation=verb, instance=instance, feature=feature)
