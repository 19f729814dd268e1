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

"""What the docker functional tests share: the daemon, the image, names.

Every test runs on a compute host name of its own (``cdtest-<hex>``), so
it only ever sees and removes containers it created, whatever else
(another test run, DevStack) uses the same dockerd.
"""

import atexit
import os
import pathlib
import shutil
import tempfile
import uuid as uuidlib


from compute_driver.testing import fixtures

#: Built by tools/build-docker-test-image.sh from busybox-static.
IMAGE = os.environ.get('COMPUTE_DRIVER_DOCKER_TEST_IMAGE',
                       'compute-driver/busybox:test')
API_URL = os.environ.get('COMPUTE_DRIVER_DOCKER_URL',
                         'unix:///var/run/docker.sock')
#: Test containers and images not made through the driver start with this.
PREFIX = 'cdtest-'
MIB = 1024 * 1024


#: The local image service and image cache of every test host of this
#: process, rather than the defaults under /var/lib (snapshots go there).
IMAGE_DIR = tempfile.mkdtemp(prefix=PREFIX + 'images-')
atexit.register(shutil.rmtree, IMAGE_DIR, ignore_errors=True)


def unique_host() -> str:
    return PREFIX + uuidlib.uuid4().hex[:8]


def overrides(host: str | None = None, **docker_options: object
              ) -> dict[str, dict[str, object]]:
    """``make_conf`` overrides for a test host with the test image."""
    options: dict[str, object] = {'api_url': API_URL, 'network_mode': 'none',
                                  'images': [IMAGE]}
    options.update(docker_options)
    return {'DEFAULT': {'host': host or unique_host()}, 'docker': options,
            'image_service': {
                'local_path': os.path.join(IMAGE_DIR, 'service'),
                'cache_path': os.path.join(IMAGE_DIR, 'cache')}}


def raw_client():
    """The docker SDK's low-level client, or skip/fail without dockerd."""
    try:
        import docker
    except ImportError as exc:
        fixtures.skip_or_fail('the docker SDK is not installed: %s' % exc)
    try:
        api = docker.APIClient(base_url=API_URL, version='auto', timeout=60)
        api.ping()
    except Exception as exc:
        fixtures.skip_or_fail('dockerd is not running at %s: %s'
                              % (API_URL, exc))
    try:
        api.inspect_image(IMAGE)
    except Exception:
        fixtures.skip_or_fail('the test image %s is missing; run '
                              'tools/build-docker-test-image.sh' % IMAGE)
    return api


#: References of the images unique_image made, which a boot from the
#: image service may bring back into dockerd; see forget_unique_images.
UNIQUE_IMAGES: list[str] = []


def unique_image(api, directory):
    """A docker image only this test has, saved, and gone from dockerd.

    :returns: (dockerd's id it had, the ``docker save`` tarball).
    """
    marker = uuidlib.uuid4().hex[:12]
    container = api.create_container(IMAGE,
                                     labels={'cdtest-image': marker})
    try:
        committed = api.commit(container['Id'],
                               repository=PREFIX + 'glance',
                               tag=marker,
                               conf={'Labels': {'cdtest-image': marker}})
    finally:
        api.remove_container(container['Id'], force=True)
    ref = '%sglance:%s' % (PREFIX, marker)
    UNIQUE_IMAGES.append(ref)
    path = pathlib.Path(directory) / 'image.tar'
    with open(path, 'wb') as f:
        for chunk in api.get_image(ref, chunk_size=MIB):
            f.write(chunk)
    api.remove_image(ref)
    assert not has_image(api, committed['Id'])
    return committed['Id'], path


def has_image(api, image_id):
    """Whether dockerd has an image of that id or name."""
    from docker import errors as docker_errors
    try:
        api.inspect_image(image_id)
    except docker_errors.NotFound:
        return False
    return True


def forget_unique_images(api):
    """Remove what ``docker load`` brought back of unique_image's images."""
    from docker import errors as docker_errors
    while UNIQUE_IMAGES:
        ref = UNIQUE_IMAGES.pop()
        try:
            api.remove_image(ref, force=True)
        except docker_errors.NotFound:
            pass
