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

"""XAPI's disk transfers: ``PUT /import_raw_vdi``, ``GET /export_raw_vdi``.

What they do follows xapi's own handlers (ocaml/xapi/import_raw_vdi.ml,
export_raw_vdi.ml, importexport.ml and xapi_http.ml):

- credentials: a ``session_id`` query parameter or cookie naming a live
  session, or HTTP basic authentication with a user's password; anything
  else is ``401 Unauthorised`` and no task is touched.
- ``vdi``: a VDI reference or uuid. ``format``: ``raw`` (the default) or
  ``vhd``; another is ``404`` and fails the task with ``INTERNAL_ERROR
  ["Unknown format x"]``. A ``Transfer-Encoding`` on an import is
  refused the same way (xapi reads a ``Content-Length`` body only).
- ``task_id``: a task the caller made with ``task.create``, which the
  transfer completes (an import's result is the VDI) or fails; without
  one, xapi makes a task of its own and forgets it afterwards.
- xapi answers ``200`` with a ``task-id`` header before it reads or
  writes any disk byte, then moves the data and closes the connection;
  a failure after that shows in the task only.
- an import without ``vdi`` but with ``sr_id`` or ``sr_uuid`` and a raw
  body of known length creates ``Imported VDI`` of that size first.
- an export streams the whole virtual disk (raw) or a dynamic VHD of it
  whose unwritten 2 MiB blocks are left out, without a
  ``Content-Length``, as ``vhd-tool send`` does.

Disk contents are real bytes, kept in sparse files (one per VDI) under a
directory of the simulator's own: an import writes them, clones,
snapshots and copies copy them, an export reads them back, and a VDI's
``physical_utilisation`` (and its SR's) counts the bytes written into it.
Not simulated: xapi's own sparse ``chunked`` encoding, ``base`` (delta)
exports and the ``tar`` format.
"""

import base64
import errno
import http
import os
import shutil
import struct
import tempfile
import threading
import time
import typing
import urllib.parse
import uuid as uuidlib

from compute_driver.testing.xapi_simulator import store as db

CHUNK = 1024 * 1024
SECTOR = 512
#: The block size of the dynamic VHDs exports write (vhd-tool's and the
#: VHD specification's default).
BLOCK_SIZE = 2 * 1024 * 1024
#: vhd-tool's limit on a VHD's virtual size (Constants.max_vhd_size).
MAX_VHD_SIZE = 2040 * 1024 * 1024 * 1024
#: Seconds between 1970-01-01 and 2000-01-01, the VHD epoch.
VHD_EPOCH = 946684800
_UNUSED = 0xFFFFFFFF
_NO_OFFSET = 0xFFFFFFFFFFFFFFFF

FORMATS = {'raw': 'application/octet-stream', 'vhd': 'application/vhd'}


class TransferError(Exception):
    """A transfer failed after its ``200``: the task says why."""

    def __init__(self, *description: object) -> None:
        super().__init__(*description)
        self.description = [str(d) for d in description]


# -- disk contents ------------------------------------------------------------

class Disks:
    """The bytes of every VDI, one sparse file each, made on first write.

    :param directory: where the files go; a temporary directory of its
        own, removed by :meth:`close`, by default.
    """

    def __init__(self, directory: str | None = None) -> None:
        self._directory = directory
        self._own = directory is None
        self._lock = threading.Lock()

    def path(self, vdi: str, create: bool = False) -> str | None:
        """The VDI's file; ``None`` before anything was written.

        :param create: make the directory when there is none yet.
        """
        with self._lock:
            if self._directory is None:
                if not create:
                    return None
                self._directory = tempfile.mkdtemp(prefix='xapi-sim-disks-')
            return os.path.join(self._directory, vdi.rpartition(':')[2])

    def open(self, vdi: str, size: int) -> typing.BinaryIO:
        """The VDI's file open for reading and writing, ``size`` long."""
        path = typing.cast(str, self.path(vdi, create=True))
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        stream = open(fd, 'r+b')
        if os.fstat(fd).st_size != size:
            stream.truncate(size)
        return stream

    def chunks(self, vdi: str, size: int, start: int = 0,
               length: int | None = None) -> typing.Iterator[bytes]:
        """``length`` bytes of the disk from ``start``; zeros unwritten."""
        end = size if length is None else min(size, start + length)
        path = self.path(vdi)
        try:
            stream = open(path, 'rb') if path is not None else None
        except FileNotFoundError:
            stream = None
        try:
            position = start
            while position < end:
                count = min(CHUNK, end - position)
                data = b''
                if stream is not None:
                    stream.seek(position)
                    data = stream.read(count)
                yield data + bytes(count - len(data))
                position += count
        finally:
            if stream is not None:
                stream.close()

    def written_blocks(self, vdi: str, size: int,
                       block_size: int) -> list[int]:
        """Indexes of the ``block_size`` blocks holding written bytes.

        Found with ``SEEK_DATA``/``SEEK_HOLE``, so an empty 1 TiB disk
        costs no read.
        """
        path = self.path(vdi)
        if path is None:
            return []
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        blocks: set[int] = set()
        try:
            position = 0
            while position < size:
                try:
                    start = os.lseek(fd, position, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:
                        break  # no data after position
                    # A file system without SEEK_DATA: all of it is data.
                    return list(range(-(-size // block_size)))
                end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
                blocks.update(range(start // block_size,
                                    -(-end // block_size)))
                position = end
        finally:
            os.close(fd)
        return sorted(b for b in blocks if b * block_size < size)

    def copy(self, source: str, target: str) -> None:
        """Give ``target`` the bytes of ``source``, holes kept."""
        path = self.path(source)
        try:
            src = open(path, 'rb') if path is not None else None
        except FileNotFoundError:
            src = None
        if src is None:
            return
        target_path = typing.cast(str, self.path(target, create=True))
        with src, open(target_path, 'wb') as dst:
            size = os.fstat(src.fileno()).st_size
            while chunk := src.read(CHUNK):
                if chunk.count(0) == len(chunk):
                    dst.seek(len(chunk), os.SEEK_CUR)
                else:
                    dst.write(chunk)
            dst.truncate(size)

    def remove(self, vdi: str) -> None:
        path = self.path(vdi)
        if path is None:
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Remove every file, and the directory when it is the store's."""
        with self._lock:
            directory, self._directory = self._directory, None
        if directory is not None and self._own:
            shutil.rmtree(directory, ignore_errors=True)


def disks_of(store: db.Store) -> Disks:
    """The disk contents of ``store``'s VDIs (made on first use)."""
    with store.lock:
        disks = getattr(store, 'disks', None)
        if disks is None:
            disks = store.disks = Disks()  # type: ignore[attr-defined]
        return typing.cast(Disks, disks)


def set_physical(store: db.Store, vdi: str, physical: int) -> None:
    """Set a VDI's ``physical_utilisation``; its SR's follows."""
    with store.lock:
        record = store.get('VDI', vdi)
        delta = physical - int(record['physical_utilisation'])
        store.update('VDI', vdi, physical_utilisation=str(physical))
        sr = store.table('SR').get(record['SR'])
        if sr is not None:
            store.update('SR', record['SR'], physical_utilisation=str(
                max(0, int(sr['physical_utilisation']) + delta)))


def copied(store: db.Store, source: str, target: str) -> None:
    """A VDI copy (clone, snapshot, copy, revert) gets the source's bytes."""
    disks_of(store).copy(source, target)
    set_physical(store, target, int(
        store.get('VDI', source)['physical_utilisation']))


def removed(store: db.Store, vdi: str) -> None:
    """A destroyed VDI's bytes go."""
    disks_of(store).remove(vdi)


# -- VHD ----------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    return (~sum(data)) & 0xFFFFFFFF


def _geometry(size: int) -> int:
    """CHS of ``size`` bytes, as the VHD specification computes it."""
    sectors = min(size // SECTOR, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cyl_heads = sectors // spt
    else:
        spt = 17
        cyl_heads = sectors // spt
        heads = max((cyl_heads + 1023) // 1024, 4)
        if cyl_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_heads = sectors // spt
        if cyl_heads >= heads * 1024:
            spt, heads = 63, 16
            cyl_heads = sectors // spt
    return ((cyl_heads // heads) << 16) | (heads << 8) | spt


def vhd_footer(size: int, disk_type: int, data_offset: int) -> bytes:
    """A VHD footer: ``disk_type`` 2 is fixed, 3 dynamic.

    The creator is XenServer's blktap (``tap\\0``), which tells readers
    such as qemu to take the size from the footer rather than from the
    CHS geometry.
    """
    footer = bytearray(struct.pack(
        '>8sIIQI4sIIQQIII16sB', b'conectix', 2, 0x00010000, data_offset,
        int(time.time()) - VHD_EPOCH, b'tap\x00', 0x00010000, 0x5769326B,
        size, size, _geometry(size), disk_type, 0, uuidlib.uuid4().bytes,
        0))
    footer.extend(bytes(SECTOR - len(footer)))
    struct.pack_into('>I', footer, 64, _checksum(bytes(footer)))
    return bytes(footer)


def _parse_footer(data: bytes) -> tuple[int, int, int]:
    """(disk type, current size, data offset) of a VHD footer.

    :raises TransferError: when it is not a valid footer.
    """
    if len(data) < SECTOR or data[:8] != b'conectix':
        raise TransferError('VHD_INVALID', 'no VHD footer cookie')
    copy = bytearray(data[:SECTOR])
    stored = struct.unpack_from('>I', copy, 64)[0]
    struct.pack_into('>I', copy, 64, 0)
    if _checksum(bytes(copy)) != stored:
        raise TransferError('VHD_INVALID', 'bad footer checksum')
    data_offset, = struct.unpack_from('>Q', data, 16)
    size, = struct.unpack_from('>Q', data, 48)
    disk_type, = struct.unpack_from('>I', data, 60)
    return disk_type, size, data_offset


def _bitmap_size(block_size: int) -> int:
    sectors = block_size // SECTOR
    return -(-(sectors // 8) // SECTOR) * SECTOR


def vhd_stream(disks: Disks, vdi: str, size: int) -> typing.Iterator[bytes]:
    """A dynamic VHD of the disk: blocks never written are left out."""
    blocks = -(-size // BLOCK_SIZE)
    table = -(-blocks * 4 // SECTOR) * SECTOR
    header_offset, table_offset = SECTOR, 3 * SECTOR
    present = disks.written_blocks(vdi, size, BLOCK_SIZE)
    bitmap = _bitmap_size(BLOCK_SIZE)
    first = table_offset + table
    bat = [_UNUSED] * blocks
    for n, index in enumerate(present):
        bat[index] = (first + n * (bitmap + BLOCK_SIZE)) // SECTOR
    footer = vhd_footer(size, 3, header_offset)
    header = bytearray(struct.pack(
        '>8sQQIII', b'cxsparse', _NO_OFFSET, table_offset, 0x00010000,
        blocks, BLOCK_SIZE))
    header.extend(bytes(1024 - len(header)))
    struct.pack_into('>I', header, 36, _checksum(bytes(header)))
    yield footer + bytes(header)
    yield b''.join(struct.pack('>I', e) for e in bat).ljust(table, b'\xff')
    for index in present:
        yield b'\xff' * (BLOCK_SIZE // SECTOR // 8) + bytes(
            bitmap - BLOCK_SIZE // SECTOR // 8)
        data = b''.join(disks.chunks(vdi, size, index * BLOCK_SIZE,
                                     BLOCK_SIZE))
        yield data + bytes(BLOCK_SIZE - len(data))
    yield footer


class _Body:
    """Exactly ``length`` bytes of a request body, read in order."""

    def __init__(self, rfile: typing.Any, length: int) -> None:
        self._rfile = rfile
        self.left = length
        self.position = 0

    def read(self, count: int) -> bytes:
        """``count`` bytes; :class:`TransferError` when the body ends."""
        count = min(count, self.left)
        parts, wanted = [], count
        while wanted:
            data = self._rfile.read(min(wanted, CHUNK))
            if not data:
                raise TransferError(
                    'INTERNAL_ERROR', 'Caught exception: End_of_file '
                    '(%d bytes of the body missing)' % (self.left - (
                        count - wanted)))
            parts.append(data)
            wanted -= len(data)
        self.left -= count
        self.position += count
        return b''.join(parts)

    def skip_to(self, offset: int) -> None:
        if offset < self.position:
            raise TransferError('VHD_INVALID',
                                'a block before the one read already')
        while self.position < offset:
            self.read(min(CHUNK, offset - self.position))


def _receive_raw(body: _Body, disk: typing.BinaryIO, size: int) -> int:
    if body.left > size:
        raise TransferError(
            'INTERNAL_ERROR', 'Caught exception: the %d bytes sent do not '
            'fit the %d bytes of the VDI' % (body.left, size))
    written = 0
    while body.left:
        data = body.read(CHUNK)
        disk.write(data)
        written += len(data)
    return written


def _receive_vhd(body: _Body, disk: typing.BinaryIO, size: int) -> int:
    first = body.read(SECTOR)
    if first[:8] != b'conectix':
        # A fixed VHD: the data, then the footer (the body's last sector).
        data_size = body.left
        if data_size > size:
            raise TransferError('VDI_TOO_SMALL', str(size), str(data_size))
        disk.write(first)
        written = len(first)
        while body.left > SECTOR:
            data = body.read(min(CHUNK, body.left - SECTOR))
            disk.write(data)
            written += len(data)
        disk_type, current, _ = _parse_footer(body.read(SECTOR))
        if disk_type != 2 or current != written:
            raise TransferError('VHD_INVALID', 'fixed VHD footer says %d '
                                'bytes of type %d' % (current, disk_type))
        return written
    disk_type, current, data_offset = _parse_footer(first)
    if disk_type == 4:
        raise TransferError('VHD_INVALID',
                            'a differencing VHD needs its parent')
    if disk_type != 3:
        raise TransferError('VHD_INVALID', 'disk type %d' % disk_type)
    if current > size:
        raise TransferError('VDI_TOO_SMALL', str(size), str(current))
    body.skip_to(data_offset)
    header = body.read(1024)
    if header[:8] != b'cxsparse':
        raise TransferError('VHD_INVALID', 'no dynamic header cookie')
    table_offset, = struct.unpack_from('>Q', header, 16)
    entries, block_size = struct.unpack_from('>II', header, 28)
    if block_size % SECTOR or not block_size:
        raise TransferError('VHD_INVALID', 'block size %d' % block_size)
    body.skip_to(table_offset)
    bat = struct.unpack('>%dI' % entries, body.read(entries * 4))
    bitmap_size = _bitmap_size(block_size)
    written = 0
    for sector, index in sorted((s, i) for i, s in enumerate(bat)
                                if s != _UNUSED):
        body.skip_to(sector * SECTOR)
        bitmap = body.read(bitmap_size)
        data = body.read(block_size)
        base = index * block_size
        for n in range(block_size // SECTOR):
            if not bitmap[n // 8] & (0x80 >> (n % 8)):
                continue
            offset = base + n * SECTOR
            if offset >= current:
                break
            disk.seek(offset)
            disk.write(data[n * SECTOR:(n + 1) * SECTOR])
            written += SECTOR
    # The trailing footer (and anything between): read, as vhd-tool does.
    while body.left:
        body.read(CHUNK)
    return written


# -- the HTTP handlers --------------------------------------------------------

class Handler(typing.Protocol):
    """What the simulator's request handler offers the transfers."""

    path: str
    headers: typing.Any
    rfile: typing.Any
    wfile: typing.Any
    close_connection: bool

    def send_response(self, code: int, message: str | None = None) -> None:
        ...

    def send_header(self, keyword: str, value: str) -> None:
        ...

    def end_headers(self) -> None:
        ...


def _status(handler: Handler, code: int, headers: dict[str, str] = {}
            ) -> None:
    handler.send_response(code)
    handler.send_header('Connection', 'close')
    handler.send_header('Cache-Control', 'no-cache, no-store')
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.close_connection = True


def _params(handler: Handler) -> dict[str, str]:
    """Query parameters and cookies; xapi looks in both."""
    query = urllib.parse.urlsplit(handler.path).query
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    for cookie in (handler.headers.get('Cookie') or '').split(';'):
        key, sep, value = cookie.strip().partition('=')
        if sep:
            params.setdefault(key, value)
    return params


def _authenticated(api: typing.Any, handler: Handler,
                   params: dict[str, str]) -> tuple[str | None, bool]:
    """The session of the request (``None``: 401), and whether it is new.

    A session made from basic credentials is logged out afterwards.
    """
    session = params.get('session_id')
    if session is not None:
        try:
            api._check_session(session)
        except db.ApiError:
            return None, False
        return session, False
    auth = handler.headers.get('Authorization') or ''
    kind, _, encoded = auth.partition(' ')
    if kind.lower() != 'basic':
        return None, False
    try:
        user, _, password = base64.b64decode(encoded).decode(
            'utf-8').partition(':')
    except ValueError:
        return None, False
    try:
        return str(api._login('session.login_with_password',
                              (user, password))), True
    except db.ApiError:
        return None, False


def _task(api: typing.Any, params: dict[str, str], label: str
          ) -> tuple[str, bool]:
    """The caller's task, or a new one xapi forgets afterwards."""
    store = api.store
    task = params.get('task_id')
    with store.lock:
        if task is not None:
            store.get('task', task)
            return task, False
        return store.create('task', {
            'name_label': label, 'status': 'pending', 'created': db.now(),
            'resident_on': api._master()}), True


def _finish(api: typing.Any, task: str, own: bool,
            error: list[str] | None = None, result: str = '') -> None:
    store = api.store
    with store.lock:
        if task not in store.table('task'):
            return
        if own:
            store.destroy('task', task)
            return
        if error is not None:
            store.update('task', task, status='failure', progress=1.0,
                         finished=db.now(), error_info=error)
        else:
            store.update('task', task, status='success', progress=1.0,
                         finished=db.now(), result=(
                             '<value>%s</value>' % result if result else ''))


def _vdi(api: typing.Any, ref: str) -> str:
    store = api.store
    if ref in store.table('VDI'):
        return ref
    for vdi, record in store.table('VDI').items():
        if record['uuid'] == ref:
            return vdi
    raise db.ApiError('UUID_INVALID', 'VDI', ref)


def _redirect(api: typing.Any, handler: Handler) -> bool:
    master = api.settings.master_address
    if not master:
        return False
    scheme = ('https' if hasattr(getattr(handler, 'connection', None),
                                 'getpeercert') else 'http')
    _status(handler, http.HTTPStatus.FOUND,
            {'Location': '%s://%s%s' % (scheme, master, handler.path)})
    return True


def handle(api: typing.Any, handler: Handler, method: str) -> bool:
    """Serve ``handler``'s request if it is a disk transfer.

    :returns: whether it was one.
    """
    path = urllib.parse.urlsplit(handler.path).path
    if (method, path) not in (('PUT', '/import_raw_vdi'),
                              ('GET', '/export_raw_vdi')):
        return False
    with api.store.lock:
        api.calls['HTTP %s %s' % (method, path)] += 1
    if _redirect(api, handler):
        return True
    params = _params(handler)
    session, temporary = _authenticated(api, handler, params)
    if session is None:
        _status(handler, http.HTTPStatus.UNAUTHORIZED, {
            'WWW-Authenticate': 'Basic realm="%s"' % (
                'VDI.import' if method == 'PUT' else 'VDI.export_raw')})
        return True
    try:
        task, own = _task(api, params, 'VDI.import' if method == 'PUT'
                          else 'VDI.export_raw_vdi')
    except db.ApiError:
        _status(handler, http.HTTPStatus.INTERNAL_SERVER_ERROR)
        if temporary:
            api.logout(session)
        return True
    try:
        if method == 'PUT':
            _import(api, handler, params, task, own)
        else:
            _export(api, handler, params, task, own)
    except db.ApiError:
        # Before any answer: xapi's HTTP server says 500.
        _status(handler, http.HTTPStatus.INTERNAL_SERVER_ERROR)
        if own:
            _finish(api, task, own)
    finally:
        if temporary:
            api.logout(session)
    return True


def _format(api: typing.Any, handler: Handler, params: dict[str, str],
            task: str, own: bool) -> str | None:
    name = params.get('format', 'raw').lower()
    if name not in FORMATS:
        _finish(api, task, own, ['INTERNAL_ERROR', 'Unknown format '
                                 + params['format']])
        _status(handler, http.HTTPStatus.NOT_FOUND)
        return None
    return name


def _import(api: typing.Any, handler: Handler, params: dict[str, str],
            task: str, own: bool) -> None:
    store = api.store
    fmt = _format(api, handler, params, task, own)
    if fmt is None:
        return
    length_header = handler.headers.get('Content-Length')
    if handler.headers.get('Transfer-Encoding') or 'chunked' in params:
        _finish(api, task, own, ['INTERNAL_ERROR', 'Cannot handle encoding: '
                                 + (handler.headers.get('Transfer-Encoding')
                                    or 'chunked')])
        _status(handler, http.HTTPStatus.NOT_FOUND)
        return
    with store.lock:
        if 'vdi' in params:
            vdi = _vdi(api, params['vdi'])
        else:
            sr = params.get('sr_id')
            if sr is None and 'sr_uuid' in params:
                sr = api.methods['SR.get_by_uuid'][0](params['sr_uuid'])
            if fmt != 'raw' or length_header is None or sr is None:
                _finish(api, task, own, [
                    'INTERNAL_ERROR', 'Not enough info supplied to import'])
                _status(handler, http.HTTPStatus.BAD_REQUEST)
                return
            vdi = api._vdi_create({
                'name_label': 'Imported VDI', 'SR': sr,
                'virtual_size': str(int(length_header)), 'type': 'user'})
        size = int(store.get('VDI', vdi)['virtual_size'])
    _status(handler, http.HTTPStatus.OK, {
        'task-id': task, 'Content-Type': 'application/octet-stream'})
    body = _Body(handler.rfile, int(length_header or 0))
    try:
        with disks_of(store).open(vdi, size) as disk:
            if fmt == 'raw':
                written = _receive_raw(body, disk, size)
            else:
                written = _receive_vhd(body, disk, size)
    except (TransferError, OSError) as exc:
        error = (exc.description if isinstance(exc, TransferError) else
                 ['INTERNAL_ERROR', 'Caught exception: %s' % exc])
        _finish(api, task, own, error)
        return
    with store.lock:
        if vdi in store.table('VDI'):
            set_physical(store, vdi, written)
    _finish(api, task, own, result=vdi)


def _export(api: typing.Any, handler: Handler, params: dict[str, str],
            task: str, own: bool) -> None:
    store = api.store
    if 'vdi' not in params:
        raise db.ApiError('INTERNAL_ERROR', 'Missing vdi query parameter')
    with store.lock:
        vdi = _vdi(api, params['vdi'])
        record = store.get('VDI', vdi)
        size, uuid = int(record['virtual_size']), record['uuid']
    fmt = _format(api, handler, params, task, own)
    if fmt is None:
        return
    _status(handler, http.HTTPStatus.OK, {
        'task-id': task, 'Content-Type': FORMATS[fmt],
        'Content-Disposition': 'attachment; filename="%s.%s"' % (uuid, fmt)})
    if fmt == 'vhd' and size > MAX_VHD_SIZE:
        _finish(api, task, own, ['VDI_TOO_LARGE', vdi, str(MAX_VHD_SIZE)])
        return
    disks = disks_of(store)
    chunks = (disks.chunks(vdi, size) if fmt == 'raw'
              else vhd_stream(disks, vdi, size))
    try:
        for chunk in chunks:
            handler.wfile.write(chunk)
        handler.wfile.flush()
    except OSError as exc:
        _finish(api, task, own, ['INTERNAL_ERROR',
                                 'Caught exception: %s' % exc])
        return
    _finish(api, task, own)


def register(api: typing.Any) -> None:
    """Add ``task.create``, which callers pass transfers their task with."""
    def create(label: str, description: str) -> str:
        return str(api.store.create('task', {
            'name_label': label, 'name_description': description,
            'status': 'pending', 'created': db.now(),
            'resident_on': api._master()}))
    api._add('task.create', create, 2)
