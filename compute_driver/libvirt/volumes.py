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
import xml.etree.ElementTree as ET

import libvirt

from compute_driver import exception
from compute_driver.libvirt import errors
from compute_driver import objects
from compute_driver.volume import model as vol_model

NS = 'http://openstack.org/compute-driver/volumes/1'
PREFIX = 'cdvol'
TAG = 'volumes'


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


def _redefine(conn: typing.Any, dom: typing.Any,
              change: typing.Callable[[ET.Element], None],
              record_change: typing.Callable[[list[vol_model.Attachment]],
                                             list[vol_model.Attachment]]
              ) -> None:
    """Change a shut-off domain's definition and record, in one write.

    The record is read from the same definition: one round trip to read,
    one to write.
    """
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE |
                                     libvirt.VIR_DOMAIN_XML_SECURE))
    devices = root.find('devices')
    metadata = root.find('metadata')
    if devices is None or metadata is None:
        raise exception.InvalidInput(reason='domain XML without devices')
    change(devices)
    text = None
    for old in metadata.findall('{%s}%s' % (NS, TAG)):
        text = old.text
        metadata.remove(old)
    record = ET.SubElement(metadata, '{%s}%s' % (NS, TAG))
    record.text = vol_model.dumps(record_change(vol_model.loads(text)))
    ET.register_namespace(PREFIX, NS)
    conn.defineXML(ET.tostring(root, encoding='unicode'))


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
    if not live:
        def add(devices: ET.Element) -> None:
            disks = devices.findall('disk')
            position = list(devices).index(disks[-1]) + 1 if disks else 0
            devices.insert(position, disk_element(attachment))
        _redefine(conn, dom, add, lambda found: [*found, attachment])
        return
    current = attachments(dom)
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
    if not live:
        def remove(devices: ET.Element) -> None:
            disk = _disk_at(devices, dev)
            if disk is not None:
                devices.remove(disk)
        _redefine(conn, dom, remove,
                  lambda found: [a for a in found
                                 if a.volume_id != attachment.volume_id])
        return
    removed = threading.Event()

    def on_removed(conn: typing.Any, domain: typing.Any, alias: str,
                   opaque: object) -> None:
        removed.set()

    callback = None
    if live:
        callback = conn.domainEventRegisterAny(
            dom, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_removed,
            None)
    try:
        if _has_target(dom, dev, libvirt.VIR_DOMAIN_XML_INACTIVE):
            dom.detachDeviceFlags(disk_xml(attachment), _flags(live))
        elif live and _has_target(dom, dev):
            dom.detachDeviceFlags(disk_xml(attachment),
                                  libvirt.VIR_DOMAIN_AFFECT_LIVE)
        while live and _has_target(dom, dev):
            if not removed.wait(timeout):
                raise exception.BackendError(
                    operation='detach volume', instance=instance.name,
                    reason='the guest did not release %s within %d seconds'
                           % (dev, timeout))
            removed.clear()
    finally:
        if callback is not None:
            conn.domainEventDeregisterAny(callback)
    _record(dom, [a for a in attachments(dom)
                  if a.volume_id != attachment.volume_id], live)


def swap(dom: typing.Any, old: vol_model.Attachment,
         new: vol_model.Attachment) -> None:
    """Put the new volume's device in the old one's place (shut off)."""
    flags = _flags(False)
    found = attachments(dom)
    dom.detachDeviceFlags(disk_xml(old), flags)
    try:
        dom.attachDeviceFlags(disk_xml(new), flags)
    except BaseException:
        dom.attachDeviceFlags(disk_xml(old), flags)
        raise
    _record(dom, [new if a.volume_id == old.volume_id else a
                  for a in found], False)


def extend(dom: typing.Any, attachment: vol_model.Attachment, size: int,
           live: bool) -> None:
    """Tell a running guest its disk grew; a stopped one sees it at boot."""
    if live:
        dom.blockResize(target(attachment.mountpoint), size,
                        libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
