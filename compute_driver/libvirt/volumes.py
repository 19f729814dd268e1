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
definition only when it is shut off. Either way it is one
``attachDeviceFlags`` or ``detachDeviceFlags``: the disk is the record of
its attachment, and :func:`attachments` reads the definition's disks.
A local volume of a stopped guest is detached by its alias, without a
read.

A volume's disk carries the user alias ``ua-cdvol-<volume id>`` (the id
escaped by :func:`alias`), which marks it as a volume's and names the
volume; libvirtd refuses a second device with the same alias, and a
second disk at the same target, so it makes both checks of an attach
itself. It also carries the volume id as its ``<serial>`` when QEMU takes
its characters, which the guest sees (``/dev/disk/by-id``). The source
is the connected device: all a local volume's connection info says.
Connection info a disk cannot tell (an iSCSI target's) stays in the
domain's ``<metadata>`` under :data:`NS2`, by volume id, together with
the id of the volume the instance boots from.

Domains defined by earlier releases recorded whole attachments in the
metadata under :data:`NS` instead, their disks bearing no alias: those
attachments are read, checked and detached as before. Where libvirtd
drops user aliases (other drivers than QEMU's, releases before 3.9.0)
attachments are still recorded that way.

What the last read of a domain found is remembered for its handle,
which the driver keeps for the process: a stopped guest's attach of a
local volume then needs no read for its checks when the domain has no
record of the earlier kind, to which nothing is added where disks keep
their aliases, and its detach none either when nothing else is kept.
"""

import dataclasses
import functools
import json
import os
import re
import threading
import typing
import weakref
import xml.etree.ElementTree as ET

import libvirt

from compute_driver import exception
from compute_driver.libvirt import connection
from compute_driver.libvirt import errors
from compute_driver.libvirt import mapping
from compute_driver import objects
from compute_driver.volume import exception as vol_exc
from compute_driver.volume import model as vol_model

#: Where earlier releases recorded whole attachments, as domains whose
#: libvirtd drops user aliases still do (see :func:`keeps_aliases`).
NS = 'http://openstack.org/compute-driver/volumes/1'
PREFIX = 'cdvol'
TAG = 'volumes'
#: Where the connection info disks cannot tell is kept, by volume id, and
#: the root volume's id (attribute ``root``).
NS2 = 'http://openstack.org/compute-driver/volumes/2'
PREFIX2 = 'cdvol2'
# The prefixes a whole definition written back gives the records.
ET.register_namespace(PREFIX, NS)
ET.register_namespace(PREFIX2, NS2)

#: The user alias of a volume's disk is this and the escaped volume id.
ALIAS_PREFIX = 'ua-cdvol-'
# libvirt keeps user aliases of these characters only (it drops others
# without a word), so the rest of a volume id is escaped as _XX.
_ALIAS_SAFE = re.compile(r'[A-Za-z0-9-]')
_ESCAPED = re.compile(r'_([0-9a-f]{2})')
# What QEMU takes in a disk serial.
_SERIAL_RE = re.compile(r'[A-Za-z0-9 _.+-]+')


def _quoteattr(value: str) -> str:
    # xml.sax.saxutils imports urllib.request (and with it http.client
    # and ssl): imported by the first volume operation, not by every CLI
    # command that loads the backend.
    from xml.sax import saxutils
    return saxutils.quoteattr(value)


def _flags(live: bool) -> int:
    if live:
        return (libvirt.VIR_DOMAIN_AFFECT_LIVE |
                libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return libvirt.VIR_DOMAIN_AFFECT_CONFIG


def target(mountpoint: str) -> str:
    """The ``<target dev>`` of a guest device name: ``/dev/vdb`` -> vdb."""
    return mountpoint.rpartition('/')[2]


# Built for every attach and detach of a volume, from its id alone.
@functools.lru_cache(maxsize=1024)
def alias(volume_id: str) -> str:
    """The user alias of a volume's disk: ``vol:1`` -> ``ua-cdvol-vol_3a1``."""
    return ALIAS_PREFIX + ''.join(
        c if _ALIAS_SAFE.fullmatch(c) else '_%02x' % ord(c)
        for c in volume_id)


def volume_of(name: str | None) -> str | None:
    """The volume id of a disk's alias, or ``None`` for no volume's."""
    if not name or not name.startswith(ALIAS_PREFIX):
        return None
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)),
                        name[len(ALIAS_PREFIX):])


def _tells(connection_info: dict[str, typing.Any]) -> bool:
    """Whether a disk tells this connection info: a local device's."""
    return connection_info.get('driver_volume_type') == vol_model.LOCAL


def _local_info(volume_id: str, device_path: str) -> dict[str, typing.Any]:
    return {'driver_volume_type': vol_model.LOCAL,
            'data': {'device_path': device_path, 'volume_id': volume_id}}


def disk_element(attachment: vol_model.Attachment,
                 aliases: bool = True) -> ET.Element:
    """The ``<disk>`` of an attached volume.

    :param aliases: whether it carries the attachment (see
        :func:`keeps_aliases`); without, the metadata records it.
    """
    disk = ET.Element('disk', type='block', device='disk')
    # No host page cache: the volume may be attached elsewhere next, and
    # what the guest wrote must be on the device when it is detached.
    ET.SubElement(disk, 'driver', name='qemu', type='raw', cache='none',
                  io='native')
    ET.SubElement(disk, 'source', dev=attachment.device_path)
    ET.SubElement(disk, 'target', dev=target(attachment.mountpoint),
                  bus='virtio')
    if aliases:
        _mark(disk, attachment.volume_id)
    return disk


def _mark(disk: ET.Element, volume_id: str) -> None:
    """Give a disk the volume's serial (when QEMU takes it) and alias."""
    for tag in ('serial', 'alias'):
        for old in disk.findall(tag):
            disk.remove(old)
    if _SERIAL_RE.fullmatch(volume_id):
        ET.SubElement(disk, 'serial').text = volume_id
    ET.SubElement(disk, 'alias', name=alias(volume_id))


def disk_xml(attachment: vol_model.Attachment, aliases: bool = True) -> str:
    """:func:`disk_element` as text.

    Formatted directly: it is built on every attach, and ElementTree's
    serialiser costs several times more.
    """
    marks = ''
    if aliases:
        if _SERIAL_RE.fullmatch(attachment.volume_id):
            marks = '<serial>%s</serial>' % attachment.volume_id
        marks += '<alias name=%s/>' % _quoteattr(
            alias(attachment.volume_id))
    return ("<disk type='block' device='disk'><driver name='qemu' "
            "type='raw' cache='none' io='native'/><source dev=%s/>"
            "<target dev=%s bus='virtio'/>%s</disk>" % (
                _quoteattr(attachment.device_path),
                _quoteattr(target(attachment.mountpoint)), marks))


#: Whether libvirtd keeps the user aliases of a domain's disks (see
#: :func:`compute_driver.libvirt.connection.keeps_aliases`).
keeps_aliases = connection.keeps_aliases


#: Where libvirtd's system QEMU driver keeps a ``<domain>.pid`` file for
#: each running guest.
QEMU_RUN_DIR = '/run/libvirt/qemu'


def qemu_pids(uri: str) -> list[str] | None:
    """The processes of the running QEMU guests of libvirtd at ``uri``.

    From the pid files libvirtd's system QEMU driver writes: a volume's
    device is open in another instance only if it is open in one of
    these, so a look at their open files replaces one at every process
    of the host. ``None`` when they cannot be told (another URI, another
    layout): look at every QEMU process then.
    """
    if not uri.startswith('qemu:///system'):
        return None
    try:
        names = os.listdir(QEMU_RUN_DIR)
    except OSError:
        return None
    pids = []
    for name in names:
        # driver.pid is libvirtd's own.
        if not name.endswith('.pid') or name == 'driver.pid':
            continue
        # Raw reads: a volume operation reads one file per running guest.
        try:
            fd = os.open(os.path.join(QEMU_RUN_DIR, name),
                         os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            pid = os.read(fd, 32).strip().decode()
        except (OSError, UnicodeDecodeError):
            continue
        finally:
            os.close(fd)
        if pid.isdigit():
            pids.append(pid)
    return pids


# -- reading -----------------------------------------------------------------

@dataclasses.dataclass
class _Read:
    """What one read of a domain's definition found.

    For the next steps of the same operation on the same handle.

    :param legacy: the attachments an earlier release recorded (``NS``).
    :param connections: the connection info kept under ``NS2``.
    :param root: the root volume's id kept under ``NS2``.
    :param targets: the targets of all the definition's disks.
    """

    legacy: list[vol_model.Attachment]
    connections: dict[str, dict[str, typing.Any]]
    root: str | None
    targets: frozenset[str]


# What the last read of each handle found (updated by this process's own
# writes, see _remember), and whether the last state check of a volume
# operation found it shut off. The driver keeps one handle per domain, so
# a read outlives its operation: later ones trust it only for what no
# other process adds, see checks_at_attach and detaches_by_alias.
_reads: 'weakref.WeakKeyDictionary[typing.Any, _Read]' = (
    weakref.WeakKeyDictionary())
_shut_off: 'weakref.WeakKeyDictionary[typing.Any, bool]' = (
    weakref.WeakKeyDictionary())
_lock = threading.Lock()


def _metadata(root: ET.Element, namespace: str) -> ET.Element | None:
    metadata = root.find('metadata')
    if metadata is None:
        return None
    return metadata.find('{%s}%s' % (namespace, TAG))


def _parse(root: ET.Element) -> tuple[list[vol_model.Attachment], _Read]:
    legacy_el = _metadata(root, NS)
    legacy = vol_model.loads(None if legacy_el is None else legacy_el.text)
    kept = _metadata(root, NS2)
    connections: dict[str, dict[str, typing.Any]] = {}
    root_volume = None
    if kept is not None:
        root_volume = kept.get('root')
        try:
            found = json.loads(kept.text or '{}')
        except ValueError:
            found = {}
        if isinstance(found, dict):
            connections = {k: v for k, v in found.items()
                           if isinstance(v, dict)}
    found_attachments = list(legacy)
    targets: set[str] = set()
    for disk in root.findall('devices/disk'):
        alias_el = disk.find('alias')
        volume_id = volume_of(None if alias_el is None
                              else alias_el.get('name'))
        source = disk.find('source')
        target_el = disk.find('target')
        if target_el is not None:
            targets.add(target_el.get('dev') or '')
        if volume_id is None or source is None or target_el is None:
            continue
        path = source.get('dev') or ''
        found_attachments.append(vol_model.Attachment(
            volume_id=volume_id,
            mountpoint='/dev/' + (target_el.get('dev') or ''),
            connection_info=connections.get(volume_id) or _local_info(
                volume_id, path),
            device_path=path,
            boot_index=0 if volume_id == root_volume else None))
    return found_attachments, _Read(legacy, connections, root_volume,
                                    frozenset(targets))


def _read(dom: typing.Any, flags: int = 0) -> ET.Element:
    return ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | flags))


def attachments(dom: typing.Any, gone_ok: bool = False
                ) -> list[vol_model.Attachment]:
    """The volumes of the domain's definition: one read of it.

    :param gone_ok: answer ``[]`` for a domain removed meanwhile (destroy
        is idempotent) instead of raising.
    """
    try:
        root = _read(dom)
    except libvirt.libvirtError as exc:
        if gone_ok and errors.code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return []
        raise
    found, read = _parse(root)
    with _lock:
        _reads[dom] = read
    return found


#: Where libvirtd's system QEMU driver keeps the managed-save image of a
#: domain, ``<domain>.save``.
QEMU_SAVE_DIR = '/var/lib/libvirt/qemu/save'


def shut_off_on_disk(uri: str, name: str) -> bool:
    """Whether libvirtd's own files say the domain is shut off, unsaved.

    libvirtd's system QEMU driver keeps a status file ``<domain>.xml`` in
    :data:`QEMU_RUN_DIR` from the moment it starts a domain until it has
    stopped it, and a managed save in :data:`QEMU_SAVE_DIR`: neither
    there is a shut-off domain, told with a few ``stat`` calls instead of
    a round trip to libvirtd. An answer of the same age as that round
    trip's: a start by another client afterwards is not seen by either.
    False whenever the files cannot tell (another URI, another layout,
    a file there): ask libvirtd then.
    """
    if not uri.startswith('qemu:///system'):
        return False
    try:
        # The driver writes its own pid file at startup: proof that these
        # are the running libvirtd's directories.
        os.stat(QEMU_RUN_DIR + '/driver.pid')
        os.stat(QEMU_SAVE_DIR)
    except OSError:
        return False
    for path in ('%s/%s.xml' % (QEMU_RUN_DIR, name),
                 '%s/%s.save' % (QEMU_SAVE_DIR, name)):
        try:
            os.stat(path)
        except FileNotFoundError:
            continue
        except OSError:
            return False
        return False
    return True


def power_state(dom: typing.Any, uri: str = '') -> int:
    """The power state a volume operation checks, in one call mostly.

    A domain of libvirtd's system QEMU driver that its files show shut
    off (see :func:`shut_off_on_disk`) needs no call. Otherwise the
    shut-off reason tells whether the domain has a managed save
    (``SAVED``), as listings trust it; only a domain never started, or
    shut off before libvirtd restarted, has no reason (``UNKNOWN``) and
    needs the question.

    :param uri: libvirtd's URI.
    """
    if shut_off_on_disk(uri, dom.name()):
        with _lock:
            _shut_off[dom] = True
        return mapping.map_state(libvirt.VIR_DOMAIN_SHUTOFF,
                                 libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN, False)
    state, reason = dom.state()
    managed = None
    if (state == libvirt.VIR_DOMAIN_SHUTOFF and
            reason == libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN):
        managed = bool(dom.hasManagedSaveImage(0))
    with _lock:
        _shut_off[dom] = state == libvirt.VIR_DOMAIN_SHUTOFF
    return mapping.map_state(state, reason, managed)


def checks_at_attach(dom: typing.Any, connection: vol_model.Connection,
                     aliases: bool = True) -> bool:
    """Whether attaching ``connection`` needs no read of the domain first.

    True for a local volume on a domain that the state check just found
    shut off and whose definition was read before without a record of an
    earlier release: libvirtd then refuses a volume already attached (its
    alias) or a taken target itself, and :func:`attach` says which.
    Elsewhere the checks come first: a running guest's QEMU holds the
    volume's device, which would be reported as in use, and a failed
    attach of a remote volume disconnects it, which must not happen to
    one in use.
    """
    with _lock:
        read = _reads.get(dom)
        shut_off = _shut_off.get(dom)
    return (aliases and bool(shut_off) and
            connection.protocol == vol_model.LOCAL and
            read is not None and not read.legacy)


def detaches_by_alias(dom: typing.Any,
                      connection: vol_model.Connection) -> bool:
    """Whether a detach of ``connection`` may go by its alias, unread.

    True for a local volume of a domain that the state check just found
    shut off, and whose definition was read before in this process with
    no record of an earlier release, no root volume and no connection
    info kept: the alias then names the volume's disk, which a local
    volume's connection info describes, and libvirtd reports a volume not
    attached. A root volume is a spawn's, and records of earlier releases
    are never added to, so neither can have come since; connection info
    kept since by another process would be a remote volume's under the
    id of this local one, which its caller would have got wrong.
    """
    with _lock:
        read = _reads.get(dom)
        shut_off = _shut_off.get(dom)
    return (bool(shut_off) and connection.protocol == vol_model.LOCAL and
            read is not None and not read.legacy and read.root is None and
            not read.connections)


def presumed(connection: vol_model.Connection) -> vol_model.Attachment:
    """The attachment a local volume's connection info describes.

    For :func:`detach` by the volume's alias; its empty mountpoint says
    so.
    """
    return vol_model.Attachment(
        volume_id=connection.volume_id, mountpoint='',
        connection_info=connection.info,
        device_path=connection.data['device_path'])


def _refusal(dom: typing.Any, instance: objects.Instance,
             attachment: vol_model.Attachment) -> Exception | None:
    """Why libvirtd refused to attach, when it is the volume or the target.

    Read after the refusal, so that an attach that works reads nothing.
    """
    dev = target(attachment.mountpoint)
    found = attachments(dom)
    with _lock:
        read = _reads[dom]
    for other in found:
        if other.volume_id == attachment.volume_id:
            return vol_exc.VolumeAlreadyAttached(
                volume=attachment.volume_id, instance=instance.name,
                mountpoint=other.mountpoint)
    for other in found:
        if target(other.mountpoint) == dev:
            return vol_exc.MountpointInUse(
                instance=instance.name, mountpoint=attachment.mountpoint,
                volume=other.volume_id)
    if dev in read.targets:
        return vol_exc.MountpointInUse(
            instance=instance.name, mountpoint=attachment.mountpoint,
            volume='none (a disk of the instance)')
    return None


# -- changing ----------------------------------------------------------------

def _connections_xml(connections: dict[str, dict[str, typing.Any]],
                     root: str | None) -> str:
    element = ET.Element(TAG)
    if root is not None:
        element.set('root', root)
    element.text = json.dumps(connections, separators=(',', ':'),
                              sort_keys=True)
    return ET.tostring(element, encoding='unicode')


def _keep_in(metadata: ET.Element,
             connections: dict[str, dict[str, typing.Any]],
             root: str | None) -> None:
    """Put what :func:`_keep` writes into a whole definition's metadata."""
    old = metadata.find('{%s}%s' % (NS2, TAG))
    if old is not None:
        metadata.remove(old)
    if connections or root is not None:
        element = ET.SubElement(metadata, '{%s}%s' % (NS2, TAG))
        if root is not None:
            element.set('root', root)
        element.text = json.dumps(connections, separators=(',', ':'),
                                  sort_keys=True)


def _keep(dom: typing.Any, connections: dict[str, dict[str, typing.Any]],
          root: str | None, live: bool) -> None:
    if not connections and root is None:
        # Nothing to keep: the element goes.
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None,
                        NS2, _flags(live))
    else:
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                        _connections_xml(connections, root), PREFIX2, NS2,
                        _flags(live))
    _remember(dom, connections=connections, root=root)


def _remember(dom: typing.Any, **written: typing.Any) -> None:
    """Make the last read of ``dom`` say what this process wrote since."""
    with _lock:
        read = _reads.get(dom)
        if read is not None:
            _reads[dom] = dataclasses.replace(read, **written)


def _known(dom: typing.Any) -> _Read:
    """What this operation's read of the domain found (it read first)."""
    with _lock:
        read = _reads.get(dom)
    if read is None:
        attachments(dom)
        with _lock:
            read = _reads[dom]
    return read


def _record_legacy(dom: typing.Any, found: list[vol_model.Attachment],
                   live: bool) -> None:
    element = ET.Element(TAG)
    element.text = vol_model.dumps(found)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    ET.tostring(element, encoding='unicode'), PREFIX, NS,
                    _flags(live))
    _remember(dom, legacy=found)


def with_volumes(domain_xml: str, found: list[vol_model.Attachment],
                 aliases: bool = True) -> str:
    """A new domain's XML with the disks of its volumes.

    The root volume (boot index 0) is already its ``vda``, which gets the
    volume's alias; the others are added after it.

    :param aliases: see :func:`keeps_aliases`.
    """
    if not found:
        return domain_xml
    root = ET.fromstring(domain_xml)
    devices = root.find('devices')
    metadata = root.find('metadata')
    if devices is None or metadata is None:
        raise exception.InvalidInput(reason='domain XML without devices')
    disks = devices.findall('disk')
    position = len(disks)
    root_volume = None
    for attachment in found:
        if attachment.boot_index == 0:
            root_volume = attachment.volume_id
            for disk in disks:
                source = disk.find('source')
                if (aliases and source is not None and
                        source.get('dev') == attachment.device_path):
                    _mark(disk, attachment.volume_id)
            continue
        devices.insert(position, disk_element(attachment, aliases))
        position += 1
    if not aliases:
        record = ET.SubElement(metadata, '{%s}%s' % (NS, TAG))
        record.text = vol_model.dumps(found)
        return ET.tostring(root, encoding='unicode')
    _keep_in(metadata, {a.volume_id: a.connection_info for a in found
                        if not _tells(a.connection_info)}, root_volume)
    return ET.tostring(root, encoding='unicode')


def attach(conn: typing.Any, dom: typing.Any, instance: objects.Instance,
           attachment: vol_model.Attachment, live: bool,
           aliases: bool = True) -> None:
    """Plug the volume's disk, which records it: one call for a local one.

    A volume whose connection info the disk cannot tell has it kept
    first, and forgotten again when the disk cannot be plugged.

    :param aliases: see :func:`keeps_aliases`; without, the disk is
        recorded in the metadata after it is plugged, and unplugged again
        if that fails.
    :raises VolumeAlreadyAttached: when libvirtd finds the volume's alias.
    :raises MountpointInUse: when it finds a disk at the target.
    """
    if not aliases:
        legacy = _known(dom).legacy
        xml = disk_xml(attachment, aliases=False)
        dom.attachDeviceFlags(xml, _flags(live))
        try:
            _record_legacy(dom, [*legacy, attachment], live)
        except BaseException:
            dom.detachDeviceFlags(xml, _flags(live))
            raise
        return
    kept = None
    if not _tells(attachment.connection_info):
        kept = _known(dom)
        _keep(dom, {**kept.connections,
                    attachment.volume_id: attachment.connection_info},
              kept.root, live)
    try:
        dom.attachDeviceFlags(disk_xml(attachment), _flags(live))
    except libvirt.libvirtError as exc:
        if kept is not None:
            _keep(dom, kept.connections, kept.root, live)
        refusal = _refusal(dom, instance, attachment)
        if refusal is not None:
            raise refusal from exc
        raise


def _has_target(dom: typing.Any, dev: str, flags: int = 0) -> bool:
    root = ET.fromstring(dom.XMLDesc(flags))
    return any(t.get('dev') == dev
               for t in root.findall('devices/disk/target'))


def _forget(dom: typing.Any, attachment: vol_model.Attachment,
            live: bool) -> None:
    """Drop what the metadata keeps of a detached volume, if anything."""
    read = _known(dom)
    if any(a.volume_id == attachment.volume_id for a in read.legacy):
        _record_legacy(dom, [a for a in read.legacy
                             if a.volume_id != attachment.volume_id], live)
    if attachment.volume_id in read.connections:
        _keep(dom, {k: v for k, v in read.connections.items()
                    if k != attachment.volume_id},
              None if read.root == attachment.volume_id else read.root,
              live)


def _removal_xml(attachment: vol_model.Attachment) -> str:
    # libvirtd finds a disk to detach by its target alone.
    return ("<disk type='block' device='disk'><source dev=%s/>"
            "<target dev=%s bus='virtio'/></disk>" % (
                _quoteattr(attachment.device_path),
                _quoteattr(target(attachment.mountpoint))))


def detach(conn: typing.Any, dom: typing.Any, instance: objects.Instance,
           attachment: vol_model.Attachment, live: bool,
           timeout: float) -> None:
    """Unplug the disk, waiting for the guest to release it, and forget it.

    A running guest releases a hot-unplugged disk when it acknowledges
    the removal; libvirt reports it with a device-removed event, which is
    awaited up to ``timeout`` seconds.

    :raises BackendError: when the guest does not release it in time.
    """
    if not attachment.mountpoint:
        # presumed(): the alias names the disk, and a refusal is read to
        # tell a volume not attached from another failure.
        try:
            dom.detachDeviceAlias(alias(attachment.volume_id),
                                  _flags(live))
        except libvirt.libvirtError as exc:
            if not any(a.volume_id == attachment.volume_id
                       for a in attachments(dom)):
                raise vol_exc.VolumeNotAttached(
                    volume=attachment.volume_id,
                    instance=instance.name) from exc
            raise
        return
    xml = _removal_xml(attachment)
    if not live:
        dom.detachDeviceFlags(xml, _flags(live))
        _forget(dom, attachment, live)
        return
    dev = target(attachment.mountpoint)
    removed = threading.Event()

    def on_removed(conn: typing.Any, domain: typing.Any, alias: str,
                   opaque: object) -> None:
        removed.set()

    callback = conn.domainEventRegisterAny(
        dom, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_removed, None)
    try:
        if dev in _known(dom).targets:
            dom.detachDeviceFlags(xml, _flags(live))
        elif _has_target(dom, dev):
            dom.detachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        while _has_target(dom, dev):
            if not removed.wait(timeout):
                raise exception.BackendError(
                    operation='detach volume', instance=instance.name,
                    reason='the guest did not release %s within %d seconds'
                           % (dev, timeout))
            removed.clear()
    finally:
        conn.domainEventDeregisterAny(callback)
    _forget(dom, attachment, live)


def swap(conn: typing.Any, dom: typing.Any, instance: objects.Instance,
         old: vol_model.Attachment, new: vol_model.Attachment,
         aliases: bool = True) -> None:
    """Put the new volume's device in the old one's place (shut off).

    Only the disk's source and marks change, in one definition write
    with what the metadata keeps: a root volume keeps its boot order and
    driver settings.
    """
    dev = target(old.mountpoint)
    # Written back whole, secrets included.
    root = _read(dom, libvirt.VIR_DOMAIN_XML_SECURE)
    read = _parse(root)[1]
    disk = None
    for candidate in root.findall('devices/disk'):
        found_target = candidate.find('target')
        if found_target is not None and found_target.get('dev') == dev:
            disk = candidate
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
    metadata = root.find('metadata')
    if metadata is None:
        raise exception.InvalidInput(reason='domain XML without metadata')
    legacy_el = _metadata(root, NS)
    if not aliases:
        if legacy_el is None:
            legacy_el = ET.SubElement(metadata, '{%s}%s' % (NS, TAG))
        legacy_el.text = vol_model.dumps(
            [new if a.volume_id == old.volume_id else a
             for a in read.legacy])
        conn.defineXML(ET.tostring(root, encoding='unicode'))
        with _lock:
            _reads.pop(dom, None)
        return
    _mark(disk, new.volume_id)
    if legacy_el is not None:
        legacy_el.text = vol_model.dumps(
            [a for a in read.legacy if a.volume_id != old.volume_id])
    connections = {k: v for k, v in read.connections.items()
                   if k != old.volume_id}
    if not _tells(new.connection_info):
        connections[new.volume_id] = new.connection_info
    _keep_in(metadata, connections,
             new.volume_id if old.boot_index == 0 else read.root)
    conn.defineXML(ET.tostring(root, encoding='unicode'))
    with _lock:
        _reads.pop(dom, None)


def extend(dom: typing.Any, attachment: vol_model.Attachment, size: int,
           live: bool) -> None:
    """Tell a running guest its disk grew; a stopped one sees it at boot."""
    if live:
        dom.blockResize(target(attachment.mountpoint), size,
                        libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
