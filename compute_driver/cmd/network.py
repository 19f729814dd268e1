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

"""Instance networking on the command line.

``boot --network`` (repeatable) gives an instance one port per option,
``interface list|attach|detach`` manage them afterwards, and ``show`` and
``list`` print each NIC's MAC and addresses. A ``--network`` value is
either the name of a Linux bridge on this host, for a ``bridge`` port
with a generated MAC, or ``key=value`` pairs separated by commas:

``bridge``
    the Linux bridge (``bridge`` ports) or integration bridge (``ovs``).
``type``
    ``bridge`` (the default), ``ovs`` or ``tap`` (the device only; the
    owner of the network wires it).
``mac``, ``mtu``, ``id``, ``device``
    the port's MAC (generated when missing), MTU (the bridge's when
    missing), uuid (generated) and host-side device name.
``ip``, ``gateway``
    a fixed address as ``ADDRESS/PREFIX`` and its subnet's gateway.
"""

import ipaddress
import os

from compute_driver.cmd import common
from compute_driver.network import exception as net_exception
from compute_driver.network import model

_KEYS = ('bridge', 'type', 'mac', 'mtu', 'id', 'device', 'ip', 'gateway')


def generated_mac() -> str:
    """A random MAC under the OUI Neutron uses, ``fa:16:3e``."""
    # os.urandom is what the secrets module reads; importing that module
    # (it imports hmac and OpenSSL's hashes) costs list and show, which
    # import this one, a millisecond.
    return 'fa:16:3e:' + ':'.join('%02x' % b for b in os.urandom(3))


def parse_network(text: str) -> model.Port:
    """The port a ``--network`` value describes.

    :raises UsageError: for an unknown or repeated key.
    :raises InvalidInput: (a subclass) for a value the port refuses.
    """
    if '=' not in text:
        values = {'bridge': text}
    else:
        values = {}
        for item in text.split(','):
            key, sep, value = item.partition('=')
            key = key.strip()
            if not sep or key not in _KEYS:
                raise common.UsageError(
                    '--network %r: expected a bridge name or KEY=VALUE '
                    'pairs with keys %s' % (text, ', '.join(_KEYS)))
            if key in values:
                raise common.UsageError(
                    '--network %r: %s is given twice' % (text, key))
            values[key] = value.strip()
    # Here, not at the top: the uuid module costs every command its import.
    import uuid
    port_id = values.get('id') or str(uuid.uuid4())
    fixed_ips: tuple[model.FixedIP, ...] = ()
    if values.get('ip'):
        fixed_ips = (_fixed_ip(values['ip'], values.get('gateway'),
                               port_id),)
    return model.Port(
        id=port_id, mac=values.get('mac') or generated_mac(),
        vif_type=values.get('type') or model.VIF_TYPE_BRIDGE,
        devname=values.get('device') or '',
        bridge=values.get('bridge') or None,
        mtu=model.validate_mtu(values.get('mtu') or None, port_id),
        fixed_ips=fixed_ips)


def _fixed_ip(text: str, gateway: str | None,
              port_id: str) -> model.FixedIP:
    address, slash, _ = text.partition('/')
    if not slash:
        raise net_exception.InvalidFixedIP(
            address=text, port=port_id,
            reason='give it with its prefix length, as ADDRESS/PREFIX')
    try:
        cidr = str(ipaddress.ip_interface(text).network)
    except ValueError:
        # FixedIP names what is wrong with it.
        cidr = text
    return model.FixedIP(address=address, cidr=cidr, gateway=gateway,
                         port=port_id)


def add_network_argument(parser) -> None:
    """``--network`` for ``boot``: repeatable, one port each."""
    parser.add_argument(
        '--network', metavar='NETWORK', dest='networks', action='append',
        default=[],
        help='Give the instance a port: a Linux bridge name, or '
             'KEY=VALUE pairs (%s) separated by commas; repeatable, one '
             'NIC each in order.' % ', '.join(_KEYS))


def ports_of(parsed_args) -> list[model.Port]:
    """The ports of ``boot``'s ``--network`` options, checked together."""
    return list(model.validate_ports(
        parse_network(text) for text in parsed_args.networks))


def describe(index: int, port: model.Port) -> str:
    """One NIC on one line: name, MAC, addresses, where it is plugged."""
    addresses = ' '.join(ip.interface for ip in port.fixed_ips)
    where = port.bridge or port.devname
    return ('eth%d %s %s on %s' % (index, port.mac, addresses, where)
            ).replace('  ', ' ')


def nics(backend, instance) -> list[str]:
    """The NICs of ``instance`` as :func:`describe` lines.

    ``[]`` when the backend does not record ports.
    """
    if not backend.supports('interfaces'):
        return []
    return [describe(index, port) for index, port in
            enumerate(backend.get_interfaces(instance))]


#: The columns of ``interface list`` and ``interface attach``.
PORT_COLUMNS = ('nic', 'id', 'mac', 'type', 'bridge', 'device', 'mtu',
                'addresses')


def _port_values(index: int, port: model.Port) -> tuple:
    return ('eth%d' % index, port.id, port.mac, port.vif_type,
            port.bridge or '', port.devname, port.mtu or '',
            ' '.join(ip.interface for ip in port.fixed_ips))


def _find_port(backend, instance, ref: str) -> model.Port | str:
    ref = ref.lower()
    for port in backend.get_interfaces(instance):
        if ref in (port.id, port.mac, port.devname):
            return port
    # Unknown here: the contract names the instance's ports in its error.
    return ref


class _OnInstance:
    """The INSTANCE argument, and the instance once the backend can act."""

    #: The optional operation the command needs.
    operation = ''

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)  # type: ignore[misc]
        parser.add_argument('instance', metavar='INSTANCE',
                            help='Instance name or uuid.')
        return parser

    def target(self, parsed_args):
        """``(backend, instance)``, refusing an unsupported operation."""
        backend = self.app.driver  # type: ignore[attr-defined]
        common.require(backend, self.operation)
        return backend, backend.find_instance(parsed_args.instance).instance


class ListInterfaces(_OnInstance, common.Lister):
    """List an instance's ports."""

    operation = 'interfaces'

    def take_action(self, parsed_args):
        backend, instance = self.target(parsed_args)
        return PORT_COLUMNS, [
            _port_values(index, port) for index, port in
            enumerate(backend.get_interfaces(instance))]


class AttachInterface(_OnInstance, common.ShowOne):
    """Give an instance one more port, live when it runs."""

    operation = 'attach_interface'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--network', metavar='NETWORK', required=True,
            help='The port: a Linux bridge name, or KEY=VALUE pairs (%s) '
                 'separated by commas.' % ', '.join(_KEYS))
        return parser

    def take_action(self, parsed_args):
        port = parse_network(parsed_args.network)
        backend, instance = self.target(parsed_args)
        backend.attach_interface(instance, port)
        ports = backend.get_interfaces(instance)
        index = [p.id for p in ports].index(port.id)
        return PORT_COLUMNS, _port_values(index, ports[index])


class DetachInterface(_OnInstance, common.Command):
    """Take a port away from an instance, live when it runs."""

    operation = 'detach_interface'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('port', metavar='PORT',
                            help="The port's id, MAC or device name.")
        return parser

    def take_action(self, parsed_args):
        backend, instance = self.target(parsed_args)
        backend.detach_interface(
            instance, _find_port(backend, instance, parsed_args.port))
