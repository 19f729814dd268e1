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

"""The docker and xenapi backends' image helpers, without a daemon.

The pipe into ``docker load``, the formats each backend takes, and the
VHD footer checks; the transfers themselves run against dockerd, Glance
and the XAPI simulator in the functional tests.
"""

import os
import struct
import threading

import pytest

from compute_driver.docker import images as docker_images
from compute_driver import exception
from compute_driver import objects
from compute_driver.testing.xapi_simulator import vdi_http
from compute_driver.xenapi import images as xenapi_images

MIB = 1024 * 1024


def _drain(pipe, seen, errors):
    try:
        for chunk in pipe.chunks():
            seen.append(chunk)
    except Exception as exc:
        errors.append(exc)


@pytest.mark.parametrize('failure', [None, ValueError('checksum')])
def test_pipe_holds_the_tail_back_until_verified(failure):
    pipe = docker_images._Pipe()
    seen, errors = [], []
    reader = threading.Thread(target=_drain, args=(pipe, seen, errors))
    reader.start()
    data = os.urandom(3 * MIB + 12345)
    for start in range(0, len(data), 65536):
        pipe.write(data[start:start + 65536])
    pipe.finish(failure)
    reader.join()
    received = b''.join(seen)
    if failure is None:
        assert received == data and errors == []
        assert pipe.sent == len(data)
    else:
        # The reader never saw the last HOLD_BACK bytes, and its stream
        # ended with an error rather than an end.
        assert data.startswith(received)
        assert len(data) - len(received) >= docker_images.HOLD_BACK
        assert isinstance(errors[0], docker_images._StreamAborted)
        assert pipe.aborted
    # dockerd got chunks of 1 MiB or more, not the download's 64 KiB.
    assert all(len(c) >= MIB for c in seen[:-1])


def test_pipe_writer_stops_when_the_reader_is_gone():
    pipe = docker_images._Pipe()
    pipe.close()
    with pytest.raises(BrokenPipeError):
        for _ in range(64):
            pipe.write(bytes(MIB))


@pytest.mark.parametrize('container,disk,how', [
    ('docker', 'raw', 'load'), ('docker', None, 'load'),
    ('bare', 'raw', 'import'), ('bare', 'tar', 'import'),
    (None, 'raw', 'import'),
])
def test_docker_formats(container, disk, how):
    image = objects.ImageMeta(name='img', container_format=container,
                              disk_format=disk)
    assert docker_images.loader_of(image) == how


@pytest.mark.parametrize('container,disk', [
    ('bare', 'qcow2'), ('bare', 'vhd'), ('bare', 'iso'), ('ovf', 'raw'),
])
def test_docker_refuses_what_it_cannot_run(container, disk):
    image = objects.ImageMeta(name='img', container_format=container,
                              disk_format=disk)
    with pytest.raises(exception.ImageUnacceptable) as info:
        docker_images.loader_of(image)
    assert disk in str(info.value)


def test_service_tag_is_a_valid_reference():
    assert docker_images.service_tag('6f1c0d3e-0000-4000-8000-0123456789ab'
                                     ) == ('compute-driver-image:6f1c0d3e-'
                                           '0000-4000-8000-0123456789ab')
    odd = docker_images.service_tag('.hidden:id')
    docker_images.validate_reference(odd)


@pytest.mark.parametrize('container,disk,ok', [
    ('bare', 'raw', True), ('bare', 'vhd', True), (None, 'vhd', True),
    ('bare', 'qcow2', False), ('docker', 'raw', False),
    ('ovf', 'vhd', False),
])
def test_xenapi_formats(container, disk, ok):
    image = objects.ImageMeta(name='img', container_format=container,
                              disk_format=disk)
    if ok:
        xenapi_images.check_format(image)
    else:
        with pytest.raises(exception.ImageUnacceptable):
            xenapi_images.check_format(image)


def _vhd(tmp_path, size, disk_type=3, at_start=True, at_end=True):
    footer = vdi_http.vhd_footer(size, disk_type, 512)
    path = tmp_path / 'disk.vhd'
    path.write_bytes((footer if at_start else bytes(512)) + bytes(2048) +
                     (footer if at_end else bytes(512)))
    return str(path)


def test_vhd_virtual_size_from_either_footer(tmp_path):
    assert xenapi_images.vhd_virtual_size(
        'img', _vhd(tmp_path, 5 * MIB)) == 5 * MIB
    assert xenapi_images.vhd_virtual_size(
        'img', _vhd(tmp_path, 7 * MIB, at_end=False)) == 7 * MIB
    assert xenapi_images.vhd_virtual_size(
        'img', _vhd(tmp_path, 9 * MIB, disk_type=2,
                    at_start=False)) == 9 * MIB


@pytest.mark.parametrize('mangle,words', [
    (lambda b: bytes(len(b)), 'no VHD footer'),
    (lambda b: b[:-512] + b[-512:-400] + b'x' + b[-399:], 'checksum'),
    (lambda b: b[:8], 'too short'),
])
def test_vhd_footer_problems(tmp_path, mangle, words):
    path = _vhd(tmp_path, MIB, at_start=False)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(mangle(data))
    with pytest.raises(exception.ImageUnacceptable) as info:
        xenapi_images.vhd_virtual_size('img', path)
    assert words in str(info.value)


def test_differencing_vhd_is_refused(tmp_path):
    footer = bytearray(vdi_http.vhd_footer(MIB, 3, 512))
    struct.pack_into('>I', footer, 60, 4)
    struct.pack_into('>I', footer, 64, 0)
    struct.pack_into('>I', footer, 64, (~sum(footer)) & 0xFFFFFFFF)
    path = tmp_path / 'child.vhd'
    path.write_bytes(bytes(footer) * 2)
    with pytest.raises(exception.ImageUnacceptable) as info:
        xenapi_images.vhd_virtual_size('img', str(path))
    assert 'parent' in str(info.value)


def test_without_root_disk_keeps_the_others():
    xml = ('<provision><disk device="0" size="1" sr="a" bootable="true" '
           'type="system"/><disk device="1" size="2" sr="a" '
           'bootable="false" type="ephemeral"/></provision>')
    rest, device = xenapi_images.without_root_disk(xml)
    assert device == '0'
    assert 'device="1"' in rest and 'device="0"' not in rest
    assert xenapi_images.without_root_disk('') == ('', '0')
