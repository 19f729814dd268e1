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

"""Instances as libvirt domains: the name, the record, the state.

The instance record a domain carries, libvirt's domain states as the
contract's power states (:func:`map_state`), and the domain name of an
instance. The domain XML a spawn defines is
:mod:`~compute_driver.libvirt.domainxml`'s.

There is no database: the instance's uuid, name, flavor, image and
metadata live in the domain's ``<metadata>`` element, in this library's
own XML namespace (:data:`METADATA_NS`), and :func:`parse_metadata` rebuilds
the :class:`~compute_driver.objects.Instance` from it. The domain's uuid is
the instance's and its name is :data:`DOMAIN_PREFIX` plus the instance's,
so that a domain of this library is recognisable without reading its XML.
"""

import typing

import libvirt

from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state

if typing.TYPE_CHECKING:  # pragma: no cover
    # The functions import it: a listing, which parses no XML, then
    # does not pay for the import (with pyexpat, 1.5 ms).
    import xml.etree.ElementTree as ET

#: The XML namespace of the instance record in ``<metadata>``.
METADATA_NS = 'http://openstack.org/xmlns/compute-driver/instance/1.0'
#: The element name of the instance record.
METADATA_TAG = 'instance'
#: The namespace prefix libvirt writes for it.
METADATA_PREFIX = 'cdinst'
#: Starts the name of every domain this library defines.
DOMAIN_PREFIX = 'cdrv-'

_NS = '{%s}' % METADATA_NS

#: The namespace of the live-resize targets, kept in the running domain's
#: live metadata only: a restart goes back to the flavor.
RESIZE_NS = 'http://openstack.org/xmlns/compute-driver/live-resize/1.0'
RESIZE_PREFIX = 'cdresize'


#: libvirt's domain states as the contract's power states, as Nova maps
#: them. A shut-off domain with a managed-save image is SUSPENDED; see
#: :func:`map_state`.
LIBVIRT_POWER_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: power_state.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: power_state.RUNNING,
    # Only Xen reports BLOCKED: running, with its vCPUs idle.
    libvirt.VIR_DOMAIN_BLOCKED: power_state.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: power_state.PAUSED,
    # SHUTDOWN means "being shut down"; SHUTOFF is off. Both count as
    # SHUTDOWN, as in Nova.
    libvirt.VIR_DOMAIN_SHUTDOWN: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: power_state.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: power_state.SUSPENDED,
}


def map_state(state: int, reason: int,
              managed_save: bool | None = None) -> int:
    """A libvirt state and reason as a contract power state.

    :param managed_save: whether the domain has a managed-save image, when
        known; otherwise the shut-off reason ``SAVED`` tells.
    """
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        saved = (managed_save if managed_save is not None
                 else reason == libvirt.VIR_DOMAIN_SHUTOFF_SAVED)
        if saved:
            return power_state.SUSPENDED
    return LIBVIRT_POWER_STATE.get(state, power_state.NOSTATE)


def domain_name(instance_name: str) -> str:
    """The libvirt domain name of an instance."""
    return DOMAIN_PREFIX + instance_name


def sub_element(parent: 'ET.Element', tag: str, text: str | None = None,
                **attrs: str) -> 'ET.Element':
    """A new child of ``parent`` with these attributes, and ``text``."""
    import xml.etree.ElementTree as ET
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


# -- the instance record ------------------------------------------------------

def metadata_element(instance: objects.Instance) -> 'ET.Element':
    """The instance record as it goes into ``<metadata>``."""
    import xml.etree.ElementTree as ET
    root = ET.Element(_NS + METADATA_TAG)
    sub_element(root, _NS + 'uuid', instance.uuid)
    sub_element(root, _NS + 'name', instance.name)
    sub_element(root, _NS + 'image', instance.image_ref)
    flavor = instance.flavor
    element = sub_element(root, _NS + 'flavor', name=flavor.name,
                          vcpus=str(flavor.vcpus),
                          memory_mb=str(flavor.memory_mb),
                          root_gb=str(flavor.root_gb),
                          ephemeral_gb=str(flavor.ephemeral_gb),
                          swap=str(flavor.swap))
    for key, value in sorted(flavor.extra_specs.items()):
        sub_element(element, _NS + 'extra_spec', value, key=key)
    element = sub_element(root, _NS + 'metadata')
    for key, value in sorted(instance.metadata.items()):
        sub_element(element, _NS + 'item', value, key=key)
    return root


def metadata_xml(instance: objects.Instance) -> str:
    """:func:`metadata_element` as text, for ``setMetadata``."""
    import xml.etree.ElementTree as ET
    ET.register_namespace(METADATA_PREFIX, METADATA_NS)
    return ET.tostring(metadata_element(instance), encoding='unicode')


def resize_xml(vcpus: int, memory_mb: int) -> str:
    """The live-resize targets, for ``setMetadata``."""
    return '<resize vcpus="%d" memory_mb="%d"/>' % (vcpus, memory_mb)


def parse_resize(text: str) -> tuple[int, int]:
    """``(vcpus, memory_mb)`` from :func:`resize_xml` output.

    :raises InvalidInput: when it is malformed.
    """
    import xml.etree.ElementTree as ET
    try:
        root = ET.fromstring(text)
        return int(root.get('vcpus', '')), int(root.get('memory_mb', ''))
    except (ET.ParseError, ValueError) as exc:
        raise exception.InvalidInput(
            reason='bad live-resize record: %s' % exc) from None


def parse_metadata(text: str) -> objects.Instance:
    """Rebuild an instance from its record.

    :param text: the record's XML, as ``virDomain.metadata()`` returns it,
        or a whole domain XML holding it.
    :raises InvalidInput: when the record is missing or malformed.
    """
    import xml.etree.ElementTree as ET
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise exception.InvalidInput(
            reason='bad instance record: %s' % exc) from None
    if root.tag not in (_NS + METADATA_TAG, METADATA_TAG):
        found = root.find('metadata/' + _NS + METADATA_TAG)
        if found is None:
            raise exception.InvalidInput(
                reason='no compute-driver instance record in the XML')
        root = found
    # virDomainGetMetadata returns the element without its namespace.
    for element in root.iter():
        element.tag = element.tag.rpartition('}')[2]

    def text_of(tag: str) -> str:
        element = root.find(tag)
        if element is None:
            raise exception.InvalidInput(
                reason='bad instance record: no <%s>' % tag)
        return element.text or ''

    flavor_el = root.find('flavor')
    if flavor_el is None:
        raise exception.InvalidInput(reason='bad instance record: no flavor')
    try:
        flavor = objects.Flavor(
            name=flavor_el.get('name', ''),
            vcpus=int(flavor_el.get('vcpus', '0')),
            memory_mb=int(flavor_el.get('memory_mb', '0')),
            root_gb=int(flavor_el.get('root_gb', '0')),
            ephemeral_gb=int(flavor_el.get('ephemeral_gb', '0')),
            swap=int(flavor_el.get('swap', '0')),
            extra_specs={e.get('key', ''): e.text or ''
                         for e in flavor_el.findall('extra_spec')})
    except ValueError as exc:
        raise exception.InvalidInput(
            reason='bad instance record flavor: %s' % exc) from None
    items = root.find('metadata')
    metadata = ({} if items is None else
                {e.get('key', ''): e.text or ''
                 for e in items.findall('item')})
    return objects.Instance(uuid=text_of('uuid'), name=text_of('name'),
                            flavor=flavor, image_ref=text_of('image'),
                            metadata=metadata)


#: What moved to :mod:`~compute_driver.libvirt.domainxml`, still found
#: here (imported on first use) by code written before.
_MOVED = frozenset(('BootImage', 'GuestSpec', 'VNCSpec', 'XEN_PV_CONSOLE',
                    'domain_element', 'domain_xml'))


def __getattr__(name: str) -> typing.Any:
    if name in _MOVED:
        from compute_driver.libvirt import domainxml
        return getattr(domainxml, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
