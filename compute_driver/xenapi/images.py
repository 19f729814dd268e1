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

"""Templates and snapshots: the backend's images.

XAPI keeps both as VMs flagged ``is_a_template``; a snapshot taken by
:meth:`ImageStore.snapshot` also names the instance it was taken of in
its ``other_config``. The event watcher knows every template, so finding
one usually costs no call.
"""

import contextlib
import dataclasses
import http.client
import io
import logging
import os
import struct
import typing
import urllib.parse
import xml.dom.minidom

from compute_driver import exception
from compute_driver import objects
from compute_driver.xenapi import connection
from compute_driver.xenapi import events
from compute_driver.xenapi import mapping

LOG = logging.getLogger(__name__)

Record = dict[str, typing.Any]

_T = typing.TypeVar('_T')

#: Bytes sent at a time to ``/import_raw_vdi``.
_CHUNK = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Template(objects.ImageMeta):
    """An image with the template or snapshot VM it stands for.

    :param ref: the VM's reference.
    :param record: the VM's record.
    """

    ref: str = ''
    record: Record = dataclasses.field(default_factory=dict, compare=False,
                                       repr=False)


class ImageStore:
    """The templates and snapshots of the pool.

    :param xapi: the connection to call through.
    :param default_template: ``[xenapi] default_template``, listed first.
    """

    def __init__(self, xapi: connection.Connection,
                 default_template: str) -> None:
        self._xapi = xapi
        self._default = default_template
        #: Set once :meth:`init_host` started it.
        self.watcher: events.EventWatcher | None = None
        # What get() found through the watcher, by reference, and the
        # watcher and images_version() it found them at.
        self._found: tuple[events.EventWatcher | None, int | None,
                           dict[str, Template]] = (None, None, {})

    def _all(self, records: dict[str, Record] | None = None
             ) -> list[tuple[str, Record]]:
        if records is None:
            records = self._xapi.call('VM.get_all_records')
        return [(ref, rec) for ref, rec in records.items()
                if mapping.is_image(rec)]

    def find(self, ref: str, records: dict[str, Record] | None = None
             ) -> tuple[str, Record] | None:
        """The template or snapshot an image reference names.

        :param records: VM records to look in; all of them by default.
        :raises InvalidInput: when several share the name.
        """
        matches = [(r, rec) for r, rec in self._all(records)
                   if mapping.matches_image(rec, ref)]
        if len(matches) > 1:
            exact = [m for m in matches if m[1]['uuid'] == ref]
            if len(exact) == 1:
                return exact[0]
            raise exception.InvalidInput(
                reason='%d templates are named %s; name one by uuid: %s'
                       % (len(matches), ref,
                          ', '.join(m[1]['uuid'] for m in matches)))
        return matches[0] if matches else None

    def get(self, ref: str) -> Template:
        """The image to boot from, from what the event watcher knows.

        When the watcher does not know it (yet), one call reads every
        template, however many VMs there are.

        :raises ImageNotFound: naming the images there are.
        """
        watcher = self.watcher
        # Taken before the templates are read: a change made meanwhile
        # leaves what is found unused.
        version = watcher.images_version() if watcher is not None else None
        found_by, found_at, templates = self._found
        if version is not None and (found_by, found_at) == (watcher,
                                                            version):
            template = templates.get(ref)
            if template is not None:
                return template
        else:
            templates = {}
        known = watcher.templates() if watcher is not None else None
        found = self.find(ref, known) if known is not None else None
        watched = found is not None
        records = known or {}
        if found is None:
            records = self._xapi.call('VM.get_all_records_where',
                                      'field "is_a_template" = "true"')
            found = self.find(ref, records)
        if found is None:
            raise exception.ImageNotFound(
                image=ref, available=', '.join(sorted(
                    mapping.image_name(rec) for _, rec in
                    self._all(records))) or 'none')
        meta = mapping.image_meta(found[1])
        template = Template(**{f.name: getattr(meta, f.name)
                               for f in dataclasses.fields(meta)},
                            ref=found[0], record=found[1])
        if watched and version is not None:
            # The templates a spawn boots from rarely change: the next
            # spawn from this one scans none of them until one does.
            self._found = (watcher, version, {**templates, ref: template})
        return template

    def list_images(self) -> list[objects.ImageMeta]:
        """Every image, ``[xenapi] default_template`` first."""
        images = [mapping.image_meta(rec) for _, rec in self._all()]
        # The default template first: callers that boot "the first image"
        # (verify, the conformance suite) then boot it.
        images.sort(key=lambda m: (
            m.properties.get('name_label') != self._default and
            m.name != self._default,
            m.properties.get('image_type') == 'snapshot', m.name))
        return images

    def snapshots_of(self, instance: objects.Instance) -> list[str]:
        """Names of the snapshots taken of ``instance``."""
        return [meta.name for meta in self.list_images()
                if meta.properties.get('instance_uuid') == instance.uuid]

    def snapshot(self, ref: str, instance: objects.Instance,
                 image_id: str) -> str:
        """Snapshot the instance's VM as ``image_id``; returns its ref.

        Nothing is left of a snapshot that fails.
        """
        snap = self._xapi.task('VM.snapshot', ref, image_id)
        try:
            self._xapi.call('VM.add_to_other_config', snap,
                            mapping.KEY_SNAPSHOT_OF, instance.uuid)
        except connection.XapiCallFailed:
            self._xapi.remove_vm(snap)
            raise
        return snap

    def snapshot_named(self, image_id: str) -> tuple[str, Record] | None:
        """The snapshot ``image_id``, or ``None`` when there is none.

        :raises InvalidInput: when the image is not a snapshot.
        """
        found = self.find(image_id)
        if found is None:
            return None
        if not found[1]['is_a_snapshot'] or (
                mapping.KEY_SNAPSHOT_OF not in found[1]['other_config']):
            raise exception.InvalidInput(
                reason='image %s is not a snapshot' % image_id)
        return found

    def delete_snapshot(self, image_id: str) -> None:
        """Delete a snapshot and its own disks; absent is fine."""
        found = self.snapshot_named(image_id)
        if found is not None:
            self._xapi.remove_vm(found[0])

    def snapshot_root_vdi(self, ref: str) -> str:
        """The root disk's VDI of VM (or snapshot) ``ref``.

        The bootable disk, else the one at device 0.

        :raises ImageUnacceptable: when the VM has no disk.
        """
        vbds = self._xapi.call('VBD.get_all_records_where',
                               'field "VM" = %s' % connection.quote(ref))
        disks = sorted(
            (not vbd['bootable'], vbd['userdevice'], vbd['VDI'])
            for vbd in vbds.values()
            if vbd['type'] == 'Disk' and not vbd['empty'])
        if not disks:
            raise exception.InvalidInput(
                reason='VM %s has no disk to take an image of' % ref)
        return str(disks[0][2])


# -- images from the image service --------------------------------------------

#: Nova's disk formats XAPI imports through ``/import_raw_vdi``.
DISK_FORMATS = ('raw', 'vhd')

_SECTOR = 512


@dataclasses.dataclass(frozen=True)
class ServiceDisk(Template):
    """An image service image, with the template its VM is built from.

    The VM is a clone of ``[xenapi] default_template`` (:attr:`ref`,
    :attr:`record`) whose root disk is a new VDI filled with the image.
    """


def check_format(image: objects.ImageMeta) -> None:
    """Refuse an image XAPI cannot import as a disk, before any download.

    :raises ImageUnacceptable: naming the formats it takes.
    """
    if (image.container_format or 'bare') != 'bare' or (
            image.disk_format not in DISK_FORMATS):
        raise exception.ImageUnacceptable(
            image=image.id,
            reason='XAPI imports container_format=bare images whose '
                   'disk_format is %s; this one is container_format=%s, '
                   'disk_format=%s' % (' or '.join(DISK_FORMATS),
                                       image.container_format,
                                       image.disk_format))


def vhd_virtual_size(image: str, path: str) -> int:
    """The virtual size of the VHD at ``path``, from its footer.

    :raises ImageUnacceptable: when the file is not a VHD XAPI can
        import on its own: no valid footer, or a differencing disk, which
        needs its parent.
    """
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        if size < _SECTOR:
            raise exception.ImageUnacceptable(
                image=image, reason='it is %d bytes, too short for a VHD'
                % size)
        f.seek(size - _SECTOR)
        footer = f.read(_SECTOR)
        if footer[:8] != b'conectix':
            # A dynamic VHD also keeps a copy at its start.
            f.seek(0)
            footer = f.read(_SECTOR)
    if footer[:8] != b'conectix':
        raise exception.ImageUnacceptable(
            image=image, reason='its disk_format is vhd but it has no VHD '
                                'footer')
    body = footer[:64] + bytes(4) + footer[68:]
    stored, = struct.unpack_from('>I', footer, 64)
    if (~sum(body)) & 0xFFFFFFFF != stored:
        raise exception.ImageUnacceptable(
            image=image, reason='its VHD footer checksum is wrong')
    virtual, = struct.unpack_from('>Q', footer, 48)
    disk_type, = struct.unpack_from('>I', footer, 60)
    if disk_type not in (2, 3):
        raise exception.ImageUnacceptable(
            image=image, reason='its VHD is of type %d; XAPI imports fixed '
            '(2) and dynamic (3) ones, a differencing one needs its parent'
            % disk_type)
    return int(virtual)


def disk_size(image: objects.ImageMeta, path: str) -> int:
    """Bytes of the virtual disk the image file at ``path`` holds."""
    if image.disk_format == 'vhd':
        return vhd_virtual_size(image.id, path)
    return os.path.getsize(path)


def without_root_disk(disks_xml: str) -> tuple[str, str]:
    """A template's ``other_config:disks`` without its root disk.

    The image's VDI takes the root disk's place; the others (an
    ephemeral disk) are still provisioned.

    :returns: the remaining XML and the root disk's device number.
    """
    document = xml.dom.minidom.parseString(disks_xml or '<provision/>')
    root = typing.cast(xml.dom.minidom.Element, document.documentElement)
    disks = root.getElementsByTagName('disk')
    if not disks:
        return disks_xml, '0'
    boot = next((d for d in disks if d.getAttribute('bootable') == 'true'),
                disks[0])
    device = boot.getAttribute('device') or '0'
    root.removeChild(boot)
    return root.toxml(), device


class Transfers:
    """XAPI's HTTP disk transfers, each in a task of the caller's.

    ``PUT /import_raw_vdi`` and ``GET /export_raw_vdi`` with the
    ``session_id``, ``task_id``, ``vdi`` and ``format`` parameters xapi
    reads (see its import_raw_vdi.ml and export_raw_vdi.ml): xapi answers
    ``200`` before it moves a byte, so how a transfer ended is its task's
    status, not the HTTP answer.

    :param xapi: the connection whose sessions and URL are used.
    """

    def __init__(self, xapi: connection.Connection) -> None:
        self._xapi = xapi

    @contextlib.contextmanager
    def _request(self, method: str, path: str, vdi: str, fmt: str,
                 size: int | None = None) -> typing.Iterator[
                     tuple[http.client.HTTPConnection, str]]:
        task = self._xapi.call('task.create', 'compute-driver %s' % path,
                               'image transfer of VDI %s' % vdi)
        try:
            with self._xapi.pool.session() as session:
                # The SDK keeps the session reference only here.
                params = {'session_id': session._session, 'task_id': task,
                          'vdi': vdi, 'format': fmt}
                conn = self._xapi.pool.http_connection()
                try:
                    conn.putrequest(method, '/%s?%s' % (
                        path, urllib.parse.urlencode(params)))
                    if size is not None:
                        conn.putheader('Content-Length', str(size))
                    conn.endheaders()
                    yield conn, task
                finally:
                    conn.close()
        finally:
            self._xapi.destroy_task(task)

    @staticmethod
    def _check_answer(response: http.client.HTTPResponse | None,
                      path: str, vdi: str) -> None:
        if response is not None and response.status != 200:
            raise connection.XapiCallFailed(
                method=path, details=['HTTP_%d' % response.status,
                                      response.reason, vdi])

    def import_file(self, vdi: str, path: str, fmt: str) -> None:
        """Fill VDI ``vdi`` with the file at ``path`` (``raw``/``vhd``).

        :raises XapiCallFailed: when xapi refused or failed the import.
        """
        size = os.path.getsize(path)
        with self._request('PUT', 'import_raw_vdi', vdi, fmt,
                           size) as (conn, task):
            sent_error: Exception | None = None
            try:
                with open(path, 'rb') as f:
                    while chunk := f.read(_CHUNK):
                        conn.send(chunk)
            except OSError as exc:
                # xapi stopped reading: its task says why.
                sent_error = exc
            try:
                response: http.client.HTTPResponse | None = (
                    conn.getresponse())
                typing.cast(http.client.HTTPResponse, response).read()
            except (OSError, http.client.HTTPException):
                response = None
            self._check_answer(response, 'import_raw_vdi', vdi)
            if response is None and sent_error is not None:
                LOG.debug('The import into %s broke off: %s', vdi,
                          sent_error)
            self._xapi.wait(task, 'import_raw_vdi')

    def export(self, vdi: str, fmt: str,
               consume: typing.Callable[[typing.BinaryIO], _T]) -> _T:
        """Stream VDI ``vdi`` as ``fmt`` into ``consume``.

        ``consume`` reads a file object that raises instead of ending
        when the export failed, so an upload of it fails rather than
        storing a short image.
        """
        with self._request('GET', 'export_raw_vdi', vdi, fmt) as (
                conn, task):
            response = conn.getresponse()
            self._check_answer(response, 'export_raw_vdi', vdi)
            reader = _ExportReader(response, lambda: self._xapi.wait(
                task, 'export_raw_vdi'))
            return consume(typing.cast(typing.BinaryIO, reader))


class _ExportReader(io.RawIOBase):
    """An export's body; at its end, the task must have succeeded."""

    def __init__(self, response: http.client.HTTPResponse,
                 finished: typing.Callable[[], object]) -> None:
        super().__init__()
        self._response = response
        self._finished = finished
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: typing.Any) -> int:
        count = self._response.readinto(target)
        if not count and not self._checked:
            self._checked = True
            self._finished()
        return count
