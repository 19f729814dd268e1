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

"""Downloads read into reused buffers (compute_driver.image.api) and the
Glance service's reading of the HTTP response (compute_driver.image.glance),
against a real HTTP server on 127.0.0.1; the functional tests run the same
path against a real Glance."""

import errno
import fcntl
import gzip
import hashlib
import http.server
import io
import mmap
import os
import socket
import threading

import pytest
import requests

from compute_driver.image import api
from compute_driver.image import exception as image_exception
from compute_driver.image import glance

KIB = 1024


@pytest.fixture
def small_buffers(monkeypatch):
    # Buffers of 64 KiB, 3 of them: a few hundred KiB of data reuse each
    # one several times, which is what the checks below are about.
    monkeypatch.setattr(api, 'DOWNLOAD_BUFFER_SIZE', 64 * KIB)
    monkeypatch.setattr(api, 'DOWNLOAD_BUFFERS', 3)


def _record(data, **fields):
    values = {'id': 'img', 'name': 'img', 'size': len(data),
              'os_hash_algo': 'sha512',
              'os_hash_value': hashlib.sha512(data).hexdigest()}
    values.update(fields)
    return api.ImageRecord(**values)


def _visible(directory):
    return sorted(os.listdir(directory))


class _Dribble(io.RawIOBase):
    """A raw stream that gives at most ``step`` bytes a read.

    As a socket does; it raises ``fail`` instead of its end when set.
    """

    def __init__(self, data, step=5000, fail=None):
        self._data = memoryview(data)
        self._step = step
        self._fail = fail
        self.reads = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        self.reads += 1
        count = min(len(buffer), self._step, len(self._data))
        if not count and self._fail is not None:
            raise self._fail
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


@pytest.mark.parametrize('verified', [True, False])
def test_reused_buffers_carry_every_byte(small_buffers, tmp_path, verified):
    data = os.urandom(10 * 64 * KIB + 12345)
    record = _record(data) if verified else _record(
        data, os_hash_algo=None, os_hash_value=None)
    source = _Dribble(data)
    api.write_verified('test', record, source, str(tmp_path / 'disk'))
    # The hash matched (else ImageChecksumMismatch) and the file holds
    # the data: no buffer was refilled before it was written and hashed,
    # and without a hash the written buffers still went back to the pool.
    assert (tmp_path / 'disk').read_bytes() == data
    assert source.reads >= len(data) // 5000


def test_readable_cut_short_is_incomplete_and_leaves_no_file(
        small_buffers, tmp_path):
    data = os.urandom(5 * 64 * KIB)
    source = _Dribble(data[:3 * 64 * KIB + 7])
    with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
        api.write_verified('test', _record(data), source,
                           str(tmp_path / 'disk'))
    assert info.value.received == 3 * 64 * KIB + 7
    assert info.value.expected == str(len(data))
    assert _visible(tmp_path) == []


def test_readable_transport_error_is_one_typed_error(small_buffers,
                                                     tmp_path):
    data = os.urandom(5 * 64 * KIB)
    reset = ConnectionResetError(104, 'Connection reset by peer')
    source = _Dribble(data[:2 * 64 * KIB], fail=reset)
    with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
        api.write_verified('test', _record(data), source,
                           str(tmp_path / 'disk'))
    assert info.value.received == 2 * 64 * KIB
    assert info.value.__cause__ is reset
    assert _visible(tmp_path) == []


def test_readable_checksum_mismatch_leaves_no_file(small_buffers, tmp_path):
    data = bytearray(os.urandom(7 * 64 * KIB + 3))
    record = _record(bytes(data))
    data[-1] ^= 0xff
    with pytest.raises(image_exception.ImageChecksumMismatch) as info:
        api.write_verified('test', record, _Dribble(bytes(data)),
                           str(tmp_path / 'disk'))
    assert info.value.algorithm == 'sha512'
    assert _visible(tmp_path) == []


def test_disk_full_with_reused_buffers_is_one_typed_error(small_buffers):
    if not os.path.exists('/dev/full'):
        pytest.skip('/dev/full is needed to fill a disk')
    data = os.urandom(6 * 64 * KIB)
    with open('/dev/full', 'wb', buffering=0) as full:
        with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
            api._copy_chunks('test', _record(data), _Dribble(data),
                             api._FileWriter(full), reuse_buffers=True)
    assert 'No space left on device' in str(info.value)


def test_a_failed_write_stops_the_transfer(small_buffers):
    # The write runs in a thread of its own: its error must still stop
    # the receiving, not only be found once the whole image has arrived.
    if not os.path.exists('/dev/full'):
        pytest.skip('/dev/full is needed to fill a disk')
    data = os.urandom(10 * 64 * KIB)
    source = _Dribble(data)
    with open('/dev/full', 'wb', buffering=0) as full:
        with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
            api._copy_chunks('test', _record(data), source,
                             api._FileWriter(full), reuse_buffers=True)
    assert info.value.received < len(data)
    assert isinstance(info.value.__cause__, OSError)


def test_a_buffer_is_refilled_only_once_written_and_hashed(
        small_buffers, monkeypatch):
    # The first write waits until every buffer has been hashed: a buffer
    # given back to the pool by the hash alone would be refilled with
    # later data before it is written.
    hashed = threading.Semaphore(0)
    new = hashlib.new

    class Counted:
        def __init__(self, *args, **kwargs):
            self._hash = new(*args, **kwargs)

        def update(self, data):
            self._hash.update(data)
            hashed.release()

        def hexdigest(self):
            return self._hash.hexdigest()

    monkeypatch.setattr(api.hashlib, 'new', Counted)
    data = os.urandom(8 * 64 * KIB + 99)
    written = []

    def write(chunk):
        if not written:
            for _ in range(api.DOWNLOAD_BUFFERS):
                assert hashed.acquire(timeout=60)
        written.append(bytes(chunk))

    api._copy_chunks('test', _record(data), _Dribble(data), write,
                     reuse_buffers=True)
    assert b''.join(written) == data


@pytest.mark.parametrize('readable, minimum, size, direct', [
    (True, 64 * KIB, 'exact', True),
    # An iterable's chunks (Nova's image API gives 64 KiB ones) are not
    # aligned in memory, and each would wait for the disk in turn.
    (False, 64 * KIB, 'exact', False),
    # A small image is read back soon, from the page cache.
    (True, 1024 * KIB, 'exact', False),
    # Nor is an image of unknown size, which may be small.
    (True, 64 * KIB, None, False),
])
def test_only_large_downloads_own_buffers_are_written_direct(
        small_buffers, tmp_path, monkeypatch, readable, minimum, size,
        direct):
    monkeypatch.setattr(api, 'DIRECT_MIN_BYTES', minimum)
    asked = []
    monkeypatch.setattr(api, '_set_direct',
                        lambda fd, direct: asked.append(direct) or False)
    data = os.urandom(5 * 64 * KIB + 1)
    source = (_Dribble(data) if readable
              else [data[i:i + 64 * KIB] for i in range(0, len(data),
                                                        64 * KIB)])
    record = _record(data, **({} if size == 'exact' else {'size': size}))
    api.write_verified('test', record, source, str(tmp_path / 'disk'))
    assert asked == ([True] if direct else [])
    assert (tmp_path / 'disk').read_bytes() == data


@pytest.mark.parametrize('direct, size', [
    # Large writes to the disk; through the page cache, buffers the CPU's
    # caches still hold when they are written and hashed.
    (True, 256 * KIB), (False, 64 * KIB)])
def test_buffers_are_smaller_for_downloads_through_the_page_cache(
        tmp_path, monkeypatch, direct, size):
    monkeypatch.setattr(api, 'DOWNLOAD_BUFFER_SIZE', 256 * KIB)
    monkeypatch.setattr(api, 'CACHED_BUFFER_SIZE', 64 * KIB)
    monkeypatch.setattr(api, 'DIRECT_MIN_BYTES', 64 * KIB)
    monkeypatch.setattr(api, '_set_direct', lambda fd, on: direct)
    sizes = []
    real_pool = api._BufferPool

    def pool(count, buffer_size):
        sizes.append(buffer_size)
        return real_pool(count, buffer_size)

    monkeypatch.setattr(api, '_BufferPool', pool)
    data = os.urandom(3 * 256 * KIB + 5)
    monkeypatch.setattr(api._FileWriter, '__call__',
                        lambda self, chunk: self._out.write(chunk))
    api.write_verified('test', _record(data), _Dribble(data),
                       str(tmp_path / 'disk'))
    assert sizes == [size]
    assert (tmp_path / 'disk').read_bytes() == data


def _direct(fd):
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


@pytest.fixture
def direct_file(tmp_path):
    if not hasattr(os, 'O_DIRECT'):
        pytest.skip('no O_DIRECT on this platform')
    with open(tmp_path / 'disk', 'wb', buffering=0) as out:
        if not api._set_direct(out.fileno(), True):
            pytest.skip('the file system of %s has no direct I/O'
                        % tmp_path)
        api._set_direct(out.fileno(), False)
        yield out


def test_whole_blocks_are_written_direct_and_the_tail_cached(
        direct_file, tmp_path, monkeypatch):
    # O_DIRECT needs aligned memory and lengths: the buffers are pages
    # of anonymous memory, and the last partial one is not written so.
    writeback = []
    monkeypatch.setattr(api, 'WRITEBACK_BYTES', 4)
    monkeypatch.setattr(api, '_sync_file_range',
                        lambda: lambda *args: writeback.append(args[1:3]))
    blocks = mmap.mmap(-1, 2 * api.DIRECT_ALIGN)
    blocks[:] = os.urandom(len(blocks))
    tail = os.urandom(7)
    write = api._FileWriter(direct_file, direct=True)
    write(memoryview(blocks))
    assert _direct(direct_file.fileno())
    write(tail)
    assert not _direct(direct_file.fileno())
    # Only the cached tail is dirty in the page cache.
    assert writeback == [(2 * api.DIRECT_ALIGN, 7)]
    write.sync()
    assert (tmp_path / 'disk').read_bytes() == bytes(blocks) + tail


def test_a_write_refused_direct_goes_through_the_page_cache(direct_file,
                                                            tmp_path):
    class Refusing:
        # A file system that lets O_DIRECT be set, then refuses it.
        def fileno(self):
            return direct_file.fileno()

        def write(self, data):
            if _direct(direct_file.fileno()):
                raise OSError(errno.EINVAL, 'Invalid argument')
            return direct_file.write(data)

    blocks = mmap.mmap(-1, api.DIRECT_ALIGN)
    blocks[:] = os.urandom(len(blocks))
    write = api._FileWriter(Refusing(), direct=True)
    write(memoryview(blocks))
    write(memoryview(blocks))
    write.sync()
    assert (tmp_path / 'disk').read_bytes() == 2 * bytes(blocks)


def test_readable_into_a_file_object_gets_chunks_of_its_own(small_buffers):
    # A destination may keep what it is given (docker's pipe queues it):
    # it must not get views of buffers that are then refilled.
    data = os.urandom(5 * 64 * KIB + 1)
    kept = []

    class Keeper(io.RawIOBase):
        def writable(self):
            return True

        def write(self, chunk):
            kept.append(chunk)
            return len(chunk)

    api.write_verified('test', _record(data), io.BufferedReader(
        _Dribble(data)), Keeper())
    assert all(isinstance(chunk, bytes) for chunk in kept)
    assert b''.join(kept) == data


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    # Set by each test: (headers, body, bytes to send before closing).
    reply = ({}, b'', None)

    def do_GET(self):
        headers, body, cut = self.reply
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        chunked = headers.get('Transfer-Encoding') == 'chunked'
        if not chunked:
            self.send_header('Content-Length', str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if chunked:
            # HTTP chunks of 100 KiB; cut short, the stream stops inside
            # one of them.
            pieces = [body[i:i + 100 * KIB]
                      for i in range(0, len(body), 100 * KIB)]
            framed = b''.join(b'%x\r\n%s\r\n' % (len(piece), piece)
                              for piece in pieces) + b'0\r\n\r\n'
            self.wfile.write(framed[:cut])
        else:
            self.wfile.write(body[:cut])
        self.wfile.flush()
        if cut is not None:
            self.connection.shutdown(socket.SHUT_WR)
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _get(server, reply):
    _Handler.reply = reply
    return requests.get('http://127.0.0.1:%d/file' % server.server_port,
                        stream=True, timeout=30)


def test_response_is_read_from_its_socket(http_server, small_buffers,
                                          tmp_path):
    data = os.urandom(9 * 64 * KIB + 5)
    with _get(http_server, ({}, data, None)) as response:
        body = glance._body_of(response)
        assert isinstance(body, glance._SocketBody)
        api.write_verified('glance', _record(data), body,
                           str(tmp_path / 'disk'))
    assert (tmp_path / 'disk').read_bytes() == data


@pytest.mark.parametrize('size', [None, 'recorded'])
def test_response_cut_short_is_incomplete(http_server, small_buffers,
                                          tmp_path, size):
    # Without a recorded size only the Content-Length tells a connection
    # closed early from the end of the data.
    data = os.urandom(6 * 64 * KIB)
    record = _record(data, size=None if size is None else len(data))
    with _get(http_server, ({}, data, 2 * 64 * KIB + 9)) as response:
        with pytest.raises(image_exception.ImageDownloadIncomplete) as info:
            api.write_verified('glance', record, glance._body_of(response),
                               str(tmp_path / 'disk'))
    assert info.value.received == 2 * 64 * KIB + 9
    assert _visible(tmp_path) == []


def test_response_cut_short_into_a_file_object(http_server, small_buffers):
    data = os.urandom(4 * 64 * KIB)
    out = io.BytesIO()
    with _get(http_server, ({}, data, 64 * KIB)) as response:
        with pytest.raises(image_exception.ImageDownloadIncomplete):
            api.write_verified('glance', _record(data, size=None),
                               glance._body_of(response), out)
    assert out.getvalue() == b''


def test_encoded_response_is_decoded_by_requests(http_server, tmp_path):
    data = os.urandom(300 * KIB)
    encoded = gzip.compress(data)
    with _get(http_server, ({'Content-Encoding': 'gzip'}, encoded,
                            None)) as response:
        body = glance._body_of(response)
        assert not isinstance(body, glance._SocketBody)
        api.write_verified('glance', _record(data), body,
                           str(tmp_path / 'disk'))
    assert (tmp_path / 'disk').read_bytes() == data


@pytest.mark.parametrize('cut', [None, 150 * KIB])
def test_chunked_response(http_server, small_buffers, tmp_path, cut):
    data = os.urandom(5 * 64 * KIB + 11)
    record = _record(data, size=None)
    with _get(http_server, ({'Transfer-Encoding': 'chunked'}, data,
                            cut)) as response:
        body = glance._body_of(response)
        if cut is None:
            api.write_verified('glance', record, body, str(tmp_path / 'disk'))
            assert (tmp_path / 'disk').read_bytes() == data
            return
        with pytest.raises(image_exception.ImageDownloadIncomplete):
            api.write_verified('glance', record, body, str(tmp_path / 'disk'))
    assert _visible(tmp_path) == []
