#!/usr/bin/env python3
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

"""Boot from Glance on docker: the driver against the raw docker SDK.

In one run, against one Glance (started here on 127.0.0.1, see
compute_driver.testing.glance) and one dockerd, interleaved cycles of:

(a) the driver: ``spawn`` of an instance whose image is a Glance image id
    (look the image up, stream its data into ``docker load`` with the
    checksum verified, tag it, create and start the container);
(b) the raw SDK: a plain streamed ``GET /v2/images/ID/file`` from the same
    Glance fed to ``APIClient.load_image``, then ``create_container`` and
    ``start``, with nothing verified;
(c) the same as (b), computing on the way the sha512 that Glance recorded
    (``os_hash_value``), which the driver verifies before dockerd may
    finish the load: what verification costs by itself.

Before every cycle dockerd has no copy of the image, so both load it. The
image is a ``docker save`` of a commit of the test image made for the run
(``cdbench-glance:<hex>``) with ``--pad-mib`` MiB of random data added,
so the transfer is not negligible. Prints the median of each and their
ratio (goal: <= 1.1x). Everything it makes is removed at the end.

Usage: tools/bench_docker_images.py [--cycles N] [--pad-mib N]
Needs Glance (tools/test-setup.d/60-glance.sh, or COMPUTE_DRIVER_GLANCE_
PYTHON) and the docker test image (tools/build-docker-test-image.sh).
"""

import argparse
import hashlib
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
import uuid as uuidlib

import docker
from docker import errors as docker_errors
import requests

from compute_driver.docker import images as docker_images
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures
from compute_driver.testing import glance as glance_server

IMAGE = os.environ.get('COMPUTE_DRIVER_DOCKER_TEST_IMAGE',
                       'compute-driver/busybox:test')
API_URL = os.environ.get('COMPUTE_DRIVER_DOCKER_URL',
                         'unix:///var/run/docker.sock')
MIB = 1024 * 1024
FLAVOR = objects.Flavor('cdbench.image', vcpus=1, memory_mb=64, root_gb=0)


def _make_image(api: docker.APIClient, pad_mib: int, path: str) -> str:
    """Save a commit of the test image with padding; returns its ref."""
    tag = uuidlib.uuid4().hex[:10]
    ref = 'cdbench-glance:%s' % tag
    container = api.create_container(IMAGE)
    try:
        if pad_mib:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode='w') as tar:
                data = os.urandom(pad_mib * MIB)
                info = tarfile.TarInfo('pad.bin')
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            api.put_archive(container['Id'], '/', buffer.getvalue())
        api.commit(container['Id'], repository='cdbench-glance', tag=tag)
    finally:
        api.remove_container(container['Id'], force=True)
    with open(path, 'wb') as f:
        for chunk in api.get_image(ref, chunk_size=MIB):
            f.write(chunk)
    return ref


def _forget(api: docker.APIClient, refs: list[str]) -> None:
    for ref in refs:
        try:
            api.remove_image(ref, force=True)
        except docker_errors.NotFound:
            pass


def _raw_boot(api: docker.APIClient, glance_url: str, image_id: str,
              name: str, verify: str | None = None) -> float:
    start = time.perf_counter()
    response = requests.get('%s/v2/images/%s/file' % (glance_url, image_id),
                            stream=True, timeout=60)
    response.raise_for_status()
    body = response.iter_content(MIB)
    digest = hashlib.sha512()
    if verify is not None:
        body = (digest.update(chunk) or chunk for chunk in body)
    loaded = ''
    for message in api.load_image(body):
        text = str(message.get('stream') or '')
        if text.startswith('Loaded image'):
            loaded = text.split(': ', 1)[1].strip()
    container = api.create_container(
        loaded, name=name, detach=True,
        host_config=api.create_host_config(network_mode='none'))
    api.start(container['Id'])
    elapsed = time.perf_counter() - start
    if verify is not None and digest.hexdigest() != verify:
        raise AssertionError('the raw download does not match Glance\'s '
                             'os_hash_value')
    api.remove_container(container['Id'], force=True)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cycles', type=int, default=7)
    parser.add_argument('--pad-mib', type=int, default=64)
    args = parser.parse_args(argv)
    api = docker.APIClient(base_url=API_URL, version='auto', timeout=300)
    host = 'cdbench-%s' % uuidlib.uuid4().hex[:8]
    workdir = tempfile.TemporaryDirectory(prefix='cdbench-images-')
    server = glance_server.GlanceServer().start()
    made: list[str] = []
    backend = None
    try:
        tarball = os.path.join(workdir.name, 'image.tar')
        ref = _make_image(api, args.pad_mib, tarball)
        made.append(ref)
        conf = fixtures.make_conf('docker', {
            'DEFAULT': {'host': host},
            'docker': {'api_url': API_URL, 'network_mode': 'none'},
            'image_service': {
                'backend': 'glance',
                'cache_path': os.path.join(workdir.name, 'cache')},
            'glance': {'api_servers': [server.url]}})
        backend = loader.load_driver(conf)
        backend.init_host(host)
        record = backend.image_service.upload(
            'cdbench-%s' % ref.split(':')[1], tarball, 'raw', 'docker')
        made.append(docker_images.service_tag(record.id))
        print('image: %s, %.1f MiB in Glance' % (record.id,
                                                 record.size / MIB))
        drivers, raws, verified = [], [], []
        for cycle in range(args.cycles):
            _forget(api, made)
            instance = objects.Instance.new('cdbench-%d' % cycle, FLAVOR,
                                            record.id)
            start = time.perf_counter()
            backend.spawn(instance)
            drivers.append(time.perf_counter() - start)
            backend.destroy(instance)
            _forget(api, made)
            raws.append(_raw_boot(api, server.url, record.id,
                                  '%s-raw-%d' % (host, cycle)))
            _forget(api, made)
            verified.append(_raw_boot(api, server.url, record.id,
                                      '%s-sha-%d' % (host, cycle),
                                      verify=record.os_hash_value))
        driver_median = statistics.median(drivers)
        raw_median = statistics.median(raws)
        verified_median = statistics.median(verified)
        print('boot from Glance, median of %d: driver %.3fs, raw SDK '
              '(GET + docker load + create + start) %.3fs, ratio %.2fx '
              '(goal <= 1.1x)' % (args.cycles, driver_median, raw_median,
                                  driver_median / raw_median))
        print('raw SDK also computing the sha512 Glance recorded, as the '
              'driver verifies it: %.3fs, driver ratio %.2fx'
              % (verified_median, driver_median / verified_median))
        backend.image_service.delete(record.id)
    finally:
        if backend is not None:
            for found in backend.list_instance_records():
                backend.destroy(found.instance)
            backend.cleanup_host(host)
        _forget(api, made)
        server.stop()
        workdir.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
