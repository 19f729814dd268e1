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

"""Volumes as virtio disks of libvirt domains.

A connected volume's block device becomes a ``<disk type='block'>`` on
the virtio bus at the attachment's target (``/dev/vdb`` is ``vdb``):
hot-plugged into a running guest and written to its definition at once
(``VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG``), or to its
definition only when it is shut off. The domain records its attachments
in its own ``<metadata>``, under :data:`NS`, beside the instance record;
that element is what :func:`attachments` reads, so every process sees
the same attachments and nothing else keeps them.
"""

import threading
import typing
import weakref
import xml.etree.ElementTree as ET

import libvirt

from compute_driver import exception
from compute_driver.libvirt import errors
from compute_driver import objects
from compute_driver.volume import model as vol_model

NS = 'http://openstack.org/compute-driver/volumes/1'
PREFIX = 'cdvol'
TAG = 'volumes'
# The prefix a whole definition written back gives the record.
ET.register_namespace(PREFIX, NS)


def _flags(live: bool) -> int:
    if live:
        return (libvirt.VIR_DOMAIN_AFFECT_LIVE |
                libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return libvirt.VIR_DOMAIN_AFFECT_CONFIG


def target(mountpoint: str) -> str:
    """The ``<target dev>`` of a guest device name: ``/dev/vdb`` -> vdb."""
    return mountpoint.rpartition('/')[2]


def disk_element(attachment: vol_model.Attachment) -> ET.Element:
    """The ``<disk>`` of an attached volume."""
    disk = ET.Element('disk', type='block', device='disk')
    # No host page cache: the volume may be attached elsewhere next, and
    # what the guest wrote must be on the device when it is detached.
    ET.SubElement(disk, 'driver', name='qemu', type='raw', cache='none',
                  io='native')
    ET.SubElement(disk, 'source', dev=attachment.device_path)
    ET.SubElement(disk, 'target', dev=target(attachment.mountpoint),
                  bus='virtio')
    return disk


def disk_xml(attachment: vol_model.Attachment) -> str:
    return ET.tostring(disk_element(attachment), encoding='unicode')


def _record_xml(attachments: typing.Iterable[vol_model.Attachment]) -> str:
    element = ET.Element(TAG)
    element.text = vol_model.dumps(attachments)
    return ET.tostring(element, encoding='unicode')


def attachments(dom: typing.Any, gone_ok: bool = False
                ) -> list[vol_model.Attachment]:
    """The volumes the domain's definition records.

    :param gone_ok: answer ``[]`` for a domain removed meanwhile (destroy
        is idempotent) instead of raising.
    """
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS,
                            libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError as exc:
        if errors.code(exc) == libvirt.VIR_ERR_NO_DOMAIN_METADATA or (
                gone_ok and errors.code(exc) == libvirt.VIR_ERR_NO_DOMAIN):
            return []
        raise
    return vol_model.loads(ET.fromstring(text).text)


def _record(dom: typing.Any,
            found: typing.Iterable[vol_model.Attachment], live: bool) -> None:
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, _record_xml(found),
                    PREFIX, NS, _flags(live))


def with_volumes(domain_xml: str,
                 found: list[vol_model.Attachment]) -> str:
    """A new domain's XML with the disks and record of its volumes.

    The root volume (boot index 0) is already its ``vda``; the others are
    added after it.
    """
    if not found:
        return domain_xml
    root = ET.fromstring(domain_xml)
    devices = root.find('devices')
    metadata = root.find('metadata')
    if devices is None or metadata is None:
        raise exception.InvalidInput(reason='domain XML without devices')
    position = len(devices.findall('disk'))
    for attachment in found:
        if attachment.boot_index != 0:
            devices.insert(position, disk_element(attachment))
            position += 1
    record = ET.SubElement(metadata, '{%s}%s' % (NS, TAG))
    record.text = vol_model.dumps(found)
    ET.register_namespace(PREFIX, NS)
    return ET.tostring(root, encoding='unicode')


# What a volume operation's hooks read of a domain, by the handle the
# pipeline looked up for that operation (a new one each time): its state
# check, its checks and its change share one read of the definition. Each
# entry is the definition and whether that read also told the domain was
# shut off (None: not asked).
_definitions: ('weakref.WeakKeyDictionary[typing.Any, '
               'tuple[ET.Element, bool | None]]') = (
    weakref.WeakKeyDictionary())
_definitions_lock = threading.Lock()


def _definition(dom: typing.Any) -> ET.Element:
    """The domain's persistent definition, read once per handle.

    With ``VIR_DOMAIN_XML_SECURE``: it is written back whole, secrets
    included. Every write below forgets it (see :func:`_forget`).
    """
    with _definitions_lock:
        found = _definitions.get(dom)
    if found is not None:
        return found[0]
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE |
                                     libvirt.VIR_DOMAIN_XML_SECURE))
    with _definitions_lock:
        _definitions[dom] = (root, None)
    return root


def shut_off(dom: typing.Any) -> bool:
    """Whether the domain is shut off, from its XML.

    A shut-off domain's XML (no ``id``) is its persistent definition:
    kept for :func:`recorded` and the change that follows, so the state
    check, the checks and the change take one read. A running domain's
    live XML is not kept; its definition is read when needed.
    """
    with _definitions_lock:
        found = _definitions.get(dom)
    if found is not None and found[1]:
        return True
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
    if root.get('id') is not None:
        return False
    with _definitions_lock:
        _definitions[dom] = (root, True)
    return True


def _forget(dom: typing.Any) -> None:
    with _definitions_lock:
        _definitions.pop(dom, None)


def _record_element(root: ET.Element) -> ET.Element | None:
    metadata = root.find('metadata')
    if metadata is None:
        return None
    return metadata.find('{%s}%s' % (NS, TAG))


def recorded(dom: typing.Any) -> list[vol_model.Attachment]:
    """The volumes the domain's definition records, for a volume operation.

    What :func:`attachments` answers, read from the whole definition
    instead of its metadata alone: a shut-off domain's attach or detach
    then changes that same definition without reading it again.
    """
    record = _record_element(_definition(dom))
    return vol_model.loads(None if record is None else record.text)


def _redefine(conn: typing.Any, dom: typing.Any,
              change: typing.Callable[[ET.Element], None],
              found: list[vol_model.Attachment]) -> None:
    """Write a shut-off domain's changed disks and its record at once.

    One ``defineXML`` of the definition :func:`recorded` read, with
    ``change`` applied to its ``<devices>`` and ``found`` as the record:
    the domain keeps its old definition when it fails.
    """
    try:
        root = _definition(dom)
        devices = root.find('devices')
        metadata = root.find('metadata')
        if devices is None or metadata is None:
            raise exception.InvalidInput(reason='domain XML without devices')
        change(devices)
        record = _record_element(root)
        if record is None:
            record = ET.SubElement(metadata, '{%s}%s' % (NS, TAG))
        record.text = vol_model.dumps(found)
        conn.defineXML(ET.tostring(root, encoding='unicode'))
    finally:
        # Changed in place, written or not: never to be read again.
        _forget(dom)


def _disk_at(devices: ET.Element, dev: str) -> ET.Element | None:
    for disk in devices.findall('disk'):
        found = disk.find('target')
        if found is not None and found.get('dev') == dev:
            return disk
    return None


def attach(conn: typing.Any, dom: typing.Any, instance: objects.Instance,
           attachment: vol_model.Attachment, live: bool) -> None:
    """Plug the disk and record it; unplug it again if recording fails.

    A shut-off domain gets the disk and the record in one definition,
    one write of its configuration rather than two.
    """
    current = recorded(dom)
    if not live:
        def add(devices: ET.Element) -> None:
            disks = devices.findall('disk')
            position = list(devices).index(disks[-1]) + 1 if disks else 0
            devices.insert(position, disk_element(attachment))
        _redefine(conn, dom, add, [*current, attachment])
        return
    _forget(dom)
    dom.attachDeviceFlags(disk_xml(attachment), _flags(live))
    try:
        _record(dom, [*current, attachment], live)
    except BaseException:
        dom.detachDeviceFlags(disk_xml(attachment), _flags(live))
        raise


def _has_target(dom: typing.Any, dev: str, flags: int = 0) -> bool:
    root = ET.fromstring(dom.XMLDesc(flags))
    return any(t.get('dev') == dev
               for t in root.findall('devices/disk/target'))


def detach(conn: typing.Any, dom: typing.Any, instance: objects.Instance,
           attachment: vol_model.Attachment, live: bool,
           timeout: float) -> None:
    """Unplug the disk, waiting for the guest to release it, and forget it.

    A running guest releases a hot-unplugged disk when it acknowledges
    the removal; libvirt reports it with a device-removed event, which is
    awaited up to ``timeout`` seconds.

    :raises BackendError: when the guest does not release it in time.
    """
    dev = target(attachment.mountpoint)
    rest = [a for a in recorded(dom) if a.volume_id != attachment.volume_id]
    if not live:
        def remove(devices: ET.Element) -> None:
            disk = _disk_at(devices, dev)
            if disk is not None:
                devices.remove(disk)
        _redefine(conn, dom, remove, rest)
        return
    devices = _definition(dom).find('devices')
    configured = devices is not None and _disk_at(devices, dev) is not None
    _forget(dom)
    removed = threading.Event()

    def on_removed(conn: typing.Any, domain: typing.Any, alias: str,
                   opaque: object) -> None:
        removed.set()

    callback = conn.domainEventRegisterAny(
        dom, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_removed, None)
    try:
        if configured:
            dom.detachDeviceFlags(disk_xml(attachment), _flags(live))
        elif _has_target(dom, dev):
            dom.detachDeviceFlags(disk_xml(attachment),
                                  libvirt.VIR_DOMAIN_AFFECT_LIVE)
        while _has_target(dom, dev):
            if not removed.wait(timeout):
                raise exception.BackendError(
                    operation='detach volume', instance=instance.name,
                    reason='the guest did not release %s within %d seconds'
                           % (dev, timeout))
            removed.clear()
    finally:
        conn.domainEventDeregisterAny(callback)
    _record(dom, rest, live)


def swap(conn: typing.Any, dom: typing.Any, instance: objects.Instance,
         old: vol_model.Attachment, new: vol_model.Attachment) -> None:
    """Put the new volume's device in the old one's place (shut off).

    Only the disk's source changes, in the same definition write as the
    record: a root volume keeps its boot order and driver settings.
    """
    dev = target(old.mountpoint)
    found = [new if a.volume_id == old.volume_id else a
             for a in recorded(dom)]

    def replace(devices: ET.Element) -> None:
        disk = _disk_at(devices, dev)
        if disk is None:
            raise exception.BackendError(
                operation='swap volume', instance=instance.name,
                reason='no disk at %s' % dev)
        source = disk.find('source')
        if disk.get('type') != 'block' or source is None:
            raise exception.BackendError(
                operation='swap volume', instance=instance.name,
                reason='the disk at %s is not a block device' % dev)
        source.set('dev', new.device_path)
    _redefine(conn, dom, replace, found)


def extend(dom: typing.Any, attachment: vol_model.Attachment, size: int,
           live: bool) -> None:
    """Tell a running guest its disk grew; a stopped one sees it at boot."""
    if live:
        dom.blockResize(target(attachment.mountpoint), size,
                        libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
