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

"""The typed port a backend plugs, and its conversions.

A :class:`Port` is what Neutron (or a standalone user's ``--network``)
gives an instance: a MAC on a bridge, an MTU and fixed IPs. It validates
itself when built, so a malformed port is refused with a typed
:class:`~compute_driver.exception.InvalidInput` before anything is
created on the host. :func:`from_network_info` reads Nova's
``network_info`` and :func:`to_os_vif` builds the os-vif objects that
:mod:`compute_driver.network.plug` hands to os-vif's plugins.
"""

import collections.abc
import dataclasses
import ipaddress
import json
import re
import typing

from compute_driver import exception
from compute_driver.network import exception as net_exception
from compute_driver import objects

#: Nova's VIF types this library plugs, with the os-vif plugin of each.
#: ``tap`` is Nova's name for a port the Neutron agent wires itself (the
#: host only creates the tap or veth), hence os-vif's ``noop`` plugin.
VIF_TYPE_BRIDGE = 'bridge'
VIF_TYPE_OVS = 'ovs'
VIF_TYPE_TAP = 'tap'
PLUGINS = {
    VIF_TYPE_BRIDGE: 'linux_bridge',
    VIF_TYPE_OVS: 'ovs',
    VIF_TYPE_TAP: 'noop',
}

#: IPv4's minimum datagram size (RFC 791) and the largest value the
#: kernel's 16-bit MTU field and Neutron's ``mtu`` attribute take.
MIN_MTU = 68
MAX_MTU = 65535

#: Integration bridge of the ``ovs`` VIF type when the port names none,
#: Neutron's default.
DEFAULT_INTEGRATION_BRIDGE = 'br-int'

# Linux refuses interface names of 16 bytes or more (IFNAMSIZ), and ones
# with "/", ":" or whitespace; "." and ".." are reserved.
_IFNAME_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.@-]{0,14}')
_MAC_RE = re.compile(r'[0-9a-f]{2}(:[0-9a-f]{2}){5}')
# Nova's device names: "tap" and the first 11 characters of the port id
# (nova.network.model.NIC_NAME_LEN is 14).
_DEVNAME_PREFIX = 'tap'
_DEVNAME_LEN = 14


def validate_ifname(name: object, port: str, what: str) -> str:
    """Check a Linux interface name (a tap, veth or bridge).

    :raises InvalidPort: when the kernel would refuse it.
    """
    if (not isinstance(name, str) or not _IFNAME_RE.fullmatch(name)
            or name in ('.', '..')):
        raise net_exception.InvalidPort(
            port=port,
            reason='%s %r is not a Linux interface name (1 to 15 letters, '
                   'digits, "_", ".", "-" or "@")' % (what, name))
    return name


def validate_mac(mac: object, port: str) -> str:
    """Return ``mac`` in lower case with colons.

    :raises InvalidMAC: when it is not six octets, or is a multicast or
        all-zero address (no NIC may send from those).
    """
    text = mac.strip().lower().replace('-', ':') if isinstance(
        mac, str) else ''
    if not _MAC_RE.fullmatch(text):
        raise net_exception.InvalidMAC(
            mac=mac, port=port,
            reason='expected six hexadecimal octets such as '
                   'fa:16:3e:00:00:01')
    if int(text[:2], 16) & 1:
        raise net_exception.InvalidMAC(
            mac=mac, port=port, reason='it is a multicast address')
    if text == '00:00:00:00:00:00':
        raise net_exception.InvalidMAC(
            mac=mac, port=port, reason='it is the all-zero address')
    return text


def validate_mtu(mtu: object, port: str) -> int | None:
    """Return ``mtu`` as an int, or ``None`` for the bridge's own.

    :raises InvalidMTU: when it is not an integer from :data:`MIN_MTU` to
        :data:`MAX_MTU`.
    """
    if mtu is None:
        return None
    if isinstance(mtu, bool) or not isinstance(mtu, (int, str)):
        raise net_exception.InvalidMTU(
            mtu=mtu, port=port, minimum=MIN_MTU, maximum=MAX_MTU)
    try:
        value = int(mtu)
    except ValueError:
        raise net_exception.InvalidMTU(
            mtu=mtu, port=port, minimum=MIN_MTU, maximum=MAX_MTU) from None
    if not MIN_MTU <= value <= MAX_MTU:
        raise net_exception.InvalidMTU(
            mtu=mtu, port=port, minimum=MIN_MTU, maximum=MAX_MTU)
    return value


@dataclasses.dataclass(frozen=True)
class FixedIP:
    """One fixed address of a port, with the subnet it belongs to.

    :param address: the address, IPv4 or IPv6.
    :param cidr: the subnet, e.g. ``192.0.2.0/24``.
    :param gateway: the subnet's gateway, or ``None`` for a subnet
        without one.
    :param port: the port's id, only to name it in errors.
    """

    address: str
    cidr: str
    gateway: str | None = None
    port: dataclasses.InitVar[str] = '?'

    def __post_init__(self, port: str) -> None:
        try:
            address = ipaddress.ip_address(str(self.address).strip())
        except ValueError:
            raise net_exception.InvalidFixedIP(
                address=self.address, port=port,
                reason='it is not an IPv4 or IPv6 address') from None
        try:
            network = ipaddress.ip_network(str(self.cidr).strip(),
                                           strict=True)
        except ValueError:
            raise net_exception.InvalidFixedIP(
                address=self.address, port=port,
                reason='its subnet %r is not a network in CIDR notation'
                       % (self.cidr,)) from None
        if address not in network:
            raise net_exception.InvalidFixedIP(
                address=self.address, port=port,
                reason='it is outside its subnet %s' % network)
        if address in (network.network_address,
                       network.broadcast_address) and (
                network.version == 4 and network.prefixlen < 31):
            raise net_exception.InvalidFixedIP(
                address=self.address, port=port,
                reason="it is subnet %s's network or broadcast address"
                       % network)
        gateway = None
        if self.gateway not in (None, ''):
            try:
                gateway_ip = ipaddress.ip_address(str(self.gateway).strip())
            except ValueError:
                raise net_exception.InvalidFixedIP(
                    address=self.address, port=port,
                    reason='its gateway %r is not an IP address'
                           % (self.gateway,)) from None
            if gateway_ip not in network:
                raise net_exception.InvalidFixedIP(
                    address=self.address, port=port,
                    reason='its gateway %s is outside its subnet %s'
                           % (gateway_ip, network))
            gateway = str(gateway_ip)
        object.__setattr__(self, 'address', str(address))
        object.__setattr__(self, 'cidr', str(network))
        object.__setattr__(self, 'gateway', gateway)

    @property
    def version(self) -> int:
        """4 or 6."""
        return ipaddress.ip_address(self.address).version

    @property
    def prefixlen(self) -> int:
        """The subnet's prefix length, for the address on the interface."""
        # cidr is normalised (str of its network): a listing of many
        # ports need not parse it again for each.
        return int(self.cidr.rpartition('/')[2])

    @property
    def interface(self) -> str:
        """``address/prefixlen``, as an interface carries it."""
        return '%s/%d' % (self.address, self.prefixlen)


@dataclasses.dataclass(frozen=True)
class Port:
    """A port to plug into an instance.

    :param id: the port's uuid (Neutron's port id).
    :param mac: its MAC address; normalised to lower case with colons.
    :param vif_type: one of :data:`PLUGINS`' keys.
    :param devname: the host-side device (tap or veth end); Nova's
        ``tap`` + the first 11 characters of the id when empty.
    :param bridge: the Linux bridge of a ``bridge`` port, or the
        integration bridge of an ``ovs`` one (default
        :data:`DEFAULT_INTEGRATION_BRIDGE`); ``None`` for ``tap``.
    :param mtu: the network's MTU, or ``None`` to keep the bridge's.
    :param fixed_ips: the port's addresses, each with its subnet.
    :param vlan: the VLAN id the host tags the port's traffic with, when
        the host provides the VLAN (Neutron's ``should_create_vlan``).
    :param network_id: the network's id, when known.
    :param network_label: the network's name, when known.
    :param should_provide_bridge: whether plugging may create the
        bridge (Neutron's ``should_create_bridge``); otherwise a missing
        bridge is an error.
    :param bridge_interface: the host interface the VLAN is made on.
    """

    id: str
    mac: str
    vif_type: str
    devname: str = ''
    bridge: str | None = None
    mtu: int | None = None
    fixed_ips: tuple[FixedIP, ...] = ()
    vlan: int | None = None
    network_id: str | None = None
    network_label: str | None = None
    should_provide_bridge: bool = False
    bridge_interface: str | None = None

    def __post_init__(self) -> None:
        try:
            port_id = objects.validate_uuid(self.id)
        except exception.InvalidInput:
            raise net_exception.InvalidPort(
                port=self.id, reason='its id is not a uuid') from None
        object.__setattr__(self, 'id', port_id)
        object.__setattr__(self, 'mac', validate_mac(self.mac, port_id))
        if self.vif_type not in PLUGINS:
            raise net_exception.UnknownVIFType(
                port=port_id, vif_type=self.vif_type,
                known=', '.join(sorted(PLUGINS)))
        devname = self.devname or (_DEVNAME_PREFIX + port_id)[:_DEVNAME_LEN]
        object.__setattr__(self, 'devname', validate_ifname(
            devname, port_id, 'device name'))
        bridge = self.bridge or None
        if self.vif_type == VIF_TYPE_OVS and bridge is None:
            bridge = DEFAULT_INTEGRATION_BRIDGE
        if self.vif_type == VIF_TYPE_BRIDGE and bridge is None:
            raise net_exception.InvalidPort(
                port=port_id, reason='a bridge port needs a bridge name')
        if bridge is not None:
            validate_ifname(bridge, port_id, 'bridge')
        object.__setattr__(self, 'bridge', bridge)
        object.__setattr__(self, 'mtu', validate_mtu(self.mtu, port_id))
        if self.vlan is not None and (
                isinstance(self.vlan, bool) or not isinstance(self.vlan, int)
                or not 1 <= self.vlan <= 4094):
            raise net_exception.InvalidPort(
                port=port_id,
                reason='VLAN %r is not an integer from 1 to 4094'
                       % (self.vlan,))
        if self.bridge_interface is not None:
            validate_ifname(self.bridge_interface, port_id,
                            'bridge interface')
        ips = []
        for ip in self.fixed_ips:
            if not isinstance(ip, FixedIP):
                raise net_exception.InvalidFixedIP(
                    address=ip, port=port_id,
                    reason='expected a FixedIP, got %s' % type(ip).__name__)
            ips.append(ip)
        seen = set()
        for ip in ips:
            if ip.address in seen:
                raise net_exception.InvalidFixedIP(
                    address=ip.address, port=port_id,
                    reason='the port lists it twice')
            seen.add(ip.address)
        object.__setattr__(self, 'fixed_ips', tuple(ips))

    @property
    def plugin(self) -> str:
        """The os-vif plugin that plugs this port."""
        return PLUGINS[self.vif_type]

    def gateways(self) -> dict[int, str]:
        """The first gateway of each IP version, for default routes."""
        found: dict[int, str] = {}
        for ip in self.fixed_ips:
            if ip.gateway is not None:
                found.setdefault(ip.version, ip.gateway)
        return found


def validate_ports(ports: collections.abc.Iterable[Port]) -> tuple[Port, ...]:
    """Check the ports of one instance against each other.

    :returns: the ports, as a tuple, in their order.
    :raises DuplicatePort: when two share an id, a MAC or a device name:
        one host cannot tell such ports apart.
    """
    result = tuple(ports)
    for what, key in (('the id', 'id'), ('the MAC', 'mac'),
                      ('the device name', 'devname')):
        owners: dict[object, str] = {}
        for port in result:
            value = getattr(port, key)
            if value in owners:
                raise net_exception.DuplicatePort(
                    first=owners[value], second=port.id, what=what,
                    value=value)
            owners[value] = port.id
    return result


def _field(mapping: collections.abc.Mapping[str, typing.Any],
           key: str) -> typing.Any:
    # Any, not Optional: the value is checked by the dataclass it goes to.
    return mapping.get(key)


def _meta(mapping: collections.abc.Mapping[str, typing.Any],
          key: str) -> collections.abc.Mapping[str, typing.Any]:
    value = mapping.get(key)
    return value if isinstance(value, collections.abc.Mapping) else {}


def _vlan(value: typing.Any, port_id: str) -> int | None:
    # Nova's details carry the VLAN as a string as often as an int.
    if value in (None, ''):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise net_exception.InvalidPort(
            port=port_id,
            reason='VLAN %r is not an integer from 1 to 4094' % (value,)
        ) from None


def _port_from_nova_vif(vif: collections.abc.Mapping[str, typing.Any]
                        ) -> Port:
    port_id = str(vif.get('id'))
    network = _meta(vif, 'network')
    meta = _meta(network, 'meta')
    details = _meta(vif, 'details')
    ips = []
    for subnet in network.get('subnets') or []:
        gateway = _meta(subnet, 'gateway').get('address')
        for ip in subnet.get('ips') or []:
            address = _field(ip, 'address') if isinstance(
                ip, collections.abc.Mapping) else ip
            ips.append(FixedIP(address=address, cidr=subnet.get('cidr'),
                               gateway=gateway, port=port_id))
    vlan = meta.get('vlan') if meta.get('should_create_vlan') else None
    if vlan is None:
        vlan = details.get('vlan')
    return Port(
        id=port_id, mac=_field(vif, 'address'),
        vif_type=_field(vif, 'type'), devname=vif.get('devname') or '',
        bridge=network.get('bridge'),
        mtu=meta.get('mtu'), fixed_ips=tuple(ips),
        vlan=_vlan(vlan, port_id),
        network_id=network.get('id'), network_label=network.get('label'),
        should_provide_bridge=bool(meta.get('should_create_bridge')),
        bridge_interface=meta.get('bridge_interface'))


def _port_from_flat(item: collections.abc.Mapping[str, typing.Any]) -> Port:
    port_id = str(item.get('id'))
    ips = tuple(
        FixedIP(address=ip.get('address'), cidr=ip.get('cidr'),
                gateway=ip.get('gateway'), port=port_id)
        for ip in item.get('ips') or [])
    return Port(
        id=port_id, mac=_field(item, 'address'),
        vif_type=_field(item, 'type'), devname=item.get('devname') or '',
        bridge=item.get('bridge'),
        mtu=item.get('mtu'), fixed_ips=ips, vlan=item.get('vlan'),
        network_id=item.get('network_id'), network_label=item.get('label'),
        should_provide_bridge=bool(item.get('should_provide_bridge')),
        bridge_interface=item.get('bridge_interface'))


def from_network_info(network_info: typing.Any) -> tuple[Port, ...]:
    """The ports of Nova's ``network_info``, checked.

    Accepts ``nova.network.model.NetworkInfo`` (a list of dict-like VIFs),
    its JSON text (``NetworkInfo.json()``), the list that JSON decodes
    to, and the flat list :func:`compute_driver.nova.convert.network_info`
    makes (``ips`` at the top level of each port); :class:`Port` objects
    in the list are taken as they are.

    :raises InvalidInput: (a subclass) for the first malformed port, or
        when two ports collide.
    """
    if isinstance(network_info, (str, bytes)):
        try:
            network_info = json.loads(network_info)
        except ValueError as exc:
            raise net_exception.InvalidPort(
                port='?', reason='network_info is not JSON: %s' % exc
            ) from None
    if network_info is None:
        return ()
    if not isinstance(network_info, collections.abc.Iterable):
        raise net_exception.InvalidPort(
            port='?', reason='network_info must be a list of ports, not %s'
            % type(network_info).__name__)
    ports = []
    for item in network_info:
        if isinstance(item, Port):
            ports.append(item)
            continue
        if not isinstance(item, collections.abc.Mapping):
            raise net_exception.InvalidPort(
                port='?', reason='a port must be a mapping, not %s'
                % type(item).__name__)
        if 'network' in item or 'ips' not in item:
            ports.append(_port_from_nova_vif(item))
        else:
            ports.append(_port_from_flat(item))
    return validate_ports(ports)


def to_record(ports: collections.abc.Iterable[Port]) -> str:
    """``ports`` as compact JSON, for a backend's instance record.

    The flat form :func:`from_network_info` reads back (see
    :func:`from_record`), so that a restarted process rebuilds the very
    ports it plugged.
    """
    items = []
    for port in ports:
        item: dict[str, typing.Any] = {
            'id': port.id, 'address': port.mac, 'type': port.vif_type,
            'devname': port.devname,
            'ips': [{'address': ip.address, 'cidr': ip.cidr,
                     'gateway': ip.gateway} for ip in port.fixed_ips]}
        for key, value in (('bridge', port.bridge), ('mtu', port.mtu),
                           ('vlan', port.vlan),
                           ('network_id', port.network_id),
                           ('label', port.network_label),
                           ('bridge_interface', port.bridge_interface)):
            if value is not None:
                item[key] = value
        if port.should_provide_bridge:
            item['should_provide_bridge'] = True
        items.append(item)
    return json.dumps(items, separators=(',', ':'), sort_keys=True)


def from_record(text: str | None) -> tuple[Port, ...]:
    """The ports :func:`to_record` wrote; ``()`` for none."""
    if not text:
        return ()
    return from_network_info(text)


def from_own_record(items: typing.Any) -> tuple[Port, ...]:
    """The ports :func:`to_record` wrote, decoded, without checking them.

    For a copy that this library wrote itself from checked ports (a
    cache such as the libvirt record index): checking every address again
    would cost a listing tens of microseconds per port. Anything else
    goes through :func:`from_record`.

    :param items: the decoded JSON list.
    :raises InvalidInput: when it is not what :func:`to_record` writes.
    """
    # Frozen dataclasses built without __post_init__, which would check
    # and normalise the values again; every field given, inline: a
    # listing builds one or more for each of hundreds of instances.
    new = object.__new__
    ports = []
    try:
        for item in items:
            fixed_ips = []
            for ip in item['ips']:
                fixed = new(FixedIP)
                fixed.__dict__.update(address=ip['address'], cidr=ip['cidr'],
                                      gateway=ip['gateway'])
                fixed_ips.append(fixed)
            port = new(Port)
            port.__dict__.update(
                id=item['id'], mac=item['address'], vif_type=item['type'],
                devname=item['devname'], bridge=item.get('bridge'),
                mtu=item.get('mtu'), fixed_ips=tuple(fixed_ips),
                vlan=item.get('vlan'), network_id=item.get('network_id'),
                network_label=item.get('label'),
                should_provide_bridge=bool(item.get('should_provide_bridge')),
                bridge_interface=item.get('bridge_interface'))
            ports.append(port)
    except (KeyError, TypeError, AttributeError) as exc:
        raise net_exception.InvalidPort(
            port='?', reason='not a port record: %r' % (exc,)) from None
    return tuple(ports)


def to_os_vif(port: Port) -> typing.Any:
    """The os-vif VIF object a plugin plugs for ``port``.

    ``bridge`` ports become ``VIFBridge`` (``linux_bridge`` plugin),
    ``ovs`` ports ``VIFOpenVSwitch`` (``ovs`` plugin, the port id as the
    OVS ``iface-id`` Neutron's agent looks for) and ``tap`` ports
    ``VIFGeneric`` (``noop`` plugin).

    :raises BackendSDKMissing: when os-vif is not installed.
    """
    objects = _os_vif_objects()
    subnets = objects.subnet.SubnetList(objects=[])
    by_cidr: dict[str, typing.Any] = {}
    for ip in port.fixed_ips:
        subnet = by_cidr.get(ip.cidr)
        if subnet is None:
            kwargs: dict[str, typing.Any] = {
                'cidr': ip.cidr,
                'ips': objects.fixed_ip.FixedIPList(objects=[])}
            if ip.gateway is not None:
                kwargs['gateway'] = ip.gateway
            subnet = objects.subnet.Subnet(**kwargs)
            by_cidr[ip.cidr] = subnet
            subnets.objects.append(subnet)
        subnet.ips.objects.append(objects.fixed_ip.FixedIP(
            address=ip.address))
    network_kwargs: dict[str, typing.Any] = {
        'id': _network_uuid(port),
        'subnets': subnets,
        'should_provide_bridge': port.should_provide_bridge,
        'should_provide_vlan': port.vlan is not None,
    }
    if port.network_label is not None:
        network_kwargs['label'] = port.network_label
    if port.bridge is not None:
        network_kwargs['bridge'] = port.bridge
    if port.mtu is not None:
        network_kwargs['mtu'] = port.mtu
    if port.vlan is not None:
        network_kwargs['vlan'] = port.vlan
    if port.bridge_interface is not None:
        network_kwargs['bridge_interface'] = port.bridge_interface
    network = objects.network.Network(**network_kwargs)
    common = {'id': port.id, 'address': port.mac, 'network': network,
              'plugin': port.plugin, 'vif_name': port.devname,
              'has_traffic_filtering': False, 'preserve_on_delete': False,
              'active': False}
    if port.vif_type == VIF_TYPE_BRIDGE:
        return objects.vif.VIFBridge(bridge_name=port.bridge, **common)
    if port.vif_type == VIF_TYPE_OVS:
        return objects.vif.VIFOpenVSwitch(
            bridge_name=port.bridge,
            port_profile=objects.vif.VIFPortProfileOpenVSwitch(
                interface_id=port.id),
            **common)
    return objects.vif.VIFGeneric(**common)


def _network_uuid(port: Port) -> str:
    # os-vif's Network.id is a uuid; a standalone network is known by a
    # name only, so it gets a stable uuid derived from that name.
    import uuid as uuidlib
    key = port.network_id or port.bridge or port.id
    try:
        return str(uuidlib.UUID(key))
    except ValueError:
        return str(uuidlib.uuid5(uuidlib.NAMESPACE_OID, key))


def instance_info(uuid: str, name: str,
                  project_id: str | None = None) -> typing.Any:
    """os-vif's ``InstanceInfo`` of an instance, for plugging its ports."""
    objects = _os_vif_objects()
    kwargs = {'uuid': uuid, 'name': name}
    if project_id is not None:
        kwargs['project_id'] = project_id
    return objects.instance_info.InstanceInfo(**kwargs)


def _os_vif_objects() -> typing.Any:
    objects = net_exception.import_sdk('os_vif.objects')
    # Registers the versioned object classes under os_vif.objects.*;
    # idempotent, and cheap after the first call.
    objects.register_all()
    return objects
