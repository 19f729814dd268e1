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

"""A domain's ports: ``<interface>`` elements, their record, hot-plug.

Each port becomes one ``<interface>``:

* ``bridge`` (os-vif's ``linux_bridge``): ``type='bridge'`` on the port's
  Linux bridge; libvirt creates the tap and puts it on the bridge.
* ``ovs``: ``type='bridge'`` on the integration bridge with an
  ``openvswitch`` virtualport whose ``interfaceid`` is the port id, what
  Neutron's agent looks for.
* ``tap`` (os-vif's ``noop``): ``type='ethernet'``; libvirt creates the
  tap and whoever owns the port (Neutron's agent) wires it.

with the port's MAC, the ``virtio`` model (kvm and qemu), its MTU and the
port's device name as the tap's name. The ports themselves (addresses
included, which the XML has no place for) are recorded in the domain's
``<metadata>`` under :data:`PORTS_NS`, in the persistent and the live
definition alike, so the domain alone says which ports it has.

The bridges are plugged through os-vif on this host before the domain
starts, which only means something for a local libvirtd.
"""

import logging
import time
import typing

import libvirt

from compute_driver import exception
from compute_driver.network import model
from compute_driver import objects

if typing.TYPE_CHECKING:  # pragma: no cover
    # The functions import it: a listing, which parses no XML, then
    # does not pay for the import (with pyexpat, 1.5 ms).
    import xml.etree.ElementTree as ET

LOG = logging.getLogger(__name__)

PORTS_NS = 'http://openstack.org/xmlns/compute-driver/ports/1.0'
PORTS_PREFIX = 'cdports'
PORTS_TAG = 'ports'

#: How long a guest is given to let a hot-unplugged NIC go: PCI
#: hot-unplug needs the guest's cooperation (ACPI), and libvirt answers
#: before it is done.
DETACH_TIMEOUT = 30.0

_AFFECT_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_AFFECT_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


def interface_element(port: model.Port, virt_type: str) -> 'ET.Element':
    """The ``<interface>`` of one port."""
    import xml.etree.ElementTree as ET
    if port.vif_type == model.VIF_TYPE_TAP:
        element = ET.Element('interface', type='ethernet')
    else:
        element = ET.Element('interface', type='bridge')
        ET.SubElement(element, 'source', bridge=str(port.bridge))
        if port.vif_type == model.VIF_TYPE_OVS:
            virtualport = ET.SubElement(element, 'virtualport',
                                        type='openvswitch')
            ET.SubElement(virtualport, 'parameters', interfaceid=port.id)
    ET.SubElement(element, 'mac', address=port.mac)
    if virt_type in ('kvm', 'qemu'):
        ET.SubElement(element, 'model', type='virtio')
    if port.mtu is not None:
        ET.SubElement(element, 'mtu', size=str(port.mtu))
    if virt_type != 'lxc':
        # An LXC guest's veth is named by libvirt.
        ET.SubElement(element, 'target', dev=port.devname)
    return element


def interface_xml(port: model.Port, virt_type: str) -> str:
    """:func:`interface_element` as text, for (at|de)tachDeviceFlags."""
    import xml.etree.ElementTree as ET
    return ET.tostring(interface_element(port, virt_type),
                       encoding='unicode')


def ports_element(ports: tuple[model.Port, ...]) -> 'ET.Element':
    """The record of ``ports`` as it goes into ``<metadata>``."""
    import xml.etree.ElementTree as ET
    element = ET.Element('{%s}%s' % (PORTS_NS, PORTS_TAG))
    element.text = model.to_record(ports)
    return element


def ports_xml(ports: tuple[model.Port, ...]) -> str:
    """The record for ``setMetadata`` (which adds the namespace)."""
    import xml.etree.ElementTree as ET
    element = ET.Element(PORTS_TAG)
    element.text = model.to_record(ports)
    return ET.tostring(element, encoding='unicode')


def with_ports(domain_xml: str, ports: tuple[model.Port, ...],
               virt_type: str) -> str:
    """``domain_xml`` with the ports' interfaces and their record."""
    import xml.etree.ElementTree as ET
    if not ports:
        return domain_xml
    ET.register_namespace(PORTS_PREFIX, PORTS_NS)
    root = ET.fromstring(domain_xml)
    devices = root.find('devices')
    metadata = root.find('metadata')
    if devices is None or metadata is None:
        raise exception.InvalidInput(
            reason='domain XML without <devices> or <metadata>')
    for port in ports:
        devices.append(interface_element(port, virt_type))
    metadata.append(ports_element(ports))
    ET.indent(root)
    return ET.tostring(root, encoding='unicode')


def recorded(dom: typing.Any, live: bool = False) -> tuple[model.Port, ...]:
    """The ports recorded on ``dom``; ``()`` for none.

    Read from the domain's XML rather than with ``virDomainGetMetadata``,
    which the instance record's lookups keep to a minimum
    (:mod:`compute_driver.libvirt.recordindex`).

    :param live: read the running definition's record rather than the
        persistent one.
    """
    import xml.etree.ElementTree as ET
    flags = 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE
    try:
        root = ET.fromstring(dom.XMLDesc(flags))
        element = root.find('metadata/{%s}%s' % (PORTS_NS, PORTS_TAG))
        return model.from_record(None if element is None else element.text)
    except (ET.ParseError, exception.InvalidInput) as exc:
        LOG.warning('Ignoring the damaged port record of domain %s: %s',
                    dom.name(), exc)
        return ()


def _flags(dom: typing.Any) -> int:
    return _AFFECT_CONFIG | (_AFFECT_LIVE if dom.isActive() else 0)


def record(dom: typing.Any, ports: tuple[model.Port, ...]) -> None:
    """Record ``ports`` on ``dom``, persistent and (when running) live."""
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ports_xml(ports),
                    PORTS_PREFIX, PORTS_NS, _flags(dom))


def _info(instance: objects.Instance) -> typing.Any:
    return model.instance_info(instance.uuid, instance.name)


def plug(instance: objects.Instance, ports: tuple[model.Port, ...]) -> None:
    """Plug ``ports`` on this host through os-vif (their bridges)."""
    if ports:
        from compute_driver.network import plug as net_plug
        net_plug.plug(ports, _info(instance))


def unplug(instance: objects.Instance, ports: tuple[model.Port, ...],
           remove_device: bool = True) -> None:
    """Unplug ``ports`` through os-vif; gone is fine.

    :param remove_device: also delete a tap still named like a port;
        never while the domain runs, its QEMU holds the tap.
    """
    if ports:
        from compute_driver.network import plug as net_plug
        net_plug.unplug(ports, _info(instance), remove_device=remove_device)


def unplug_quietly(instance: objects.Instance,
                   ports: tuple[model.Port, ...]) -> None:
    """:func:`unplug`, logging instead of raising: for rollbacks."""
    if ports:
        from compute_driver.network import plug as net_plug
        net_plug.quietly(unplug, instance, ports)


def attach(dom: typing.Any, instance: objects.Instance, port: model.Port,
           virt_type: str) -> None:
    """Plug ``port``, add it to ``dom`` (live when running), record it.

    A failure undoes what was done.
    """
    ports = recorded(dom)
    plug(instance, (port,))
    flags = _flags(dom)
    try:
        dom.attachDeviceFlags(interface_xml(port, virt_type), flags)
    except BaseException:
        unplug_quietly(instance, (port,))
        raise
    try:
        record(dom, ports + (port,))
    except BaseException:
        detach_device(dom, port, virt_type, flags)
        unplug_quietly(instance, (port,))
        raise


def guest_macs(dom: typing.Any, flags: int = 0) -> list[str]:
    """The MACs of ``dom``'s ``<interface>`` elements, in order.

    :param flags: ``XMLDesc``'s, e.g. ``VIR_DOMAIN_XML_INACTIVE`` for
        the persistent definition.
    """
    import xml.etree.ElementTree as ET
    root = ET.fromstring(dom.XMLDesc(flags))
    return [mac.get('address', '').lower()
            for mac in root.findall('devices/interface/mac')]


def detach_device(dom: typing.Any, port: model.Port, virt_type: str,
                  flags: int) -> None:
    """Remove ``port``'s ``<interface>``; wait for a live guest to let it go.

    :raises BackendError: when the guest still has it after
        :data:`DETACH_TIMEOUT` seconds.
    """
    dom.detachDeviceFlags(interface_xml(port, virt_type), flags)
    if not flags & _AFFECT_LIVE:
        return
    # libvirt answers once it has asked the guest; the NIC is gone when
    # the live definition no longer has its MAC.
    deadline = time.monotonic() + DETACH_TIMEOUT
    while port.mac in guest_macs(dom):
        if time.monotonic() > deadline:
            raise exception.BackendError(
                operation='detach port %s from' % port.id,
                instance=dom.name(),
                reason='the guest did not release the NIC within %ds'
                       % DETACH_TIMEOUT)
        time.sleep(0.2)


def detach(dom: typing.Any, instance: objects.Instance, port: model.Port,
           virt_type: str) -> None:
    """Remove ``port`` from ``dom``, unplug it and forget it."""
    ports = recorded(dom)
    detach_device(dom, port, virt_type, _flags(dom))
    record(dom, tuple(p for p in ports if p.id != port.id))
    unplug(instance, (port,))
