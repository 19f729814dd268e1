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

"""The functional suite on a real dockerd (see :mod:`.functional_base`).

Each test runs its compute service under a host name of its own
(``cdtest-<hex>``), so it only sees, and removes, the containers it
created. Without dockerd or the test image the tests skip, or fail under
``COMPUTE_DRIVER_STRICT=1``.
"""

import io
import os
import subprocess
import tarfile

from docker import errors as docker_errors
import fixtures
from nova.tests import fixtures as nova_fixtures

from compute_driver.docker import images
from compute_driver.docker import mapping
from tests.functional import docker_env
from tests.functional import volume_env
from tests.nova import functional_base

#: The volume the tests boot containers with, and where it is mounted.
VOLUME = '8a1b2c3d-0000-4000-8000-00000000cd02'
MOUNT = '/data'


class DockerBackendServerTests(functional_base.VolumeTests,
                               functional_base.ServerLifecycleTests,
                               functional_base.AdapterTestBase):
    backend_name = 'docker'
    backend_options = {'docker': {'api_url': docker_env.API_URL,
                                  'network_mode': 'none'}}
    backend_images = {functional_base.IMAGE: docker_env.IMAGE,
                      functional_base.OTHER_IMAGE: docker_env.IMAGE}
    # Containers cannot be suspended to disk.
    supports_suspend = False
    # The containers outlive the compute service: a restart loads a new
    # adapter, which finds them on dockerd.
    restart_keeps_driver = False
    # A resize keeps the old container as an image (see
    # compute_driver.docker.migration).
    revert_point_counts = False
    nova_image_tests = ('test_glance_round_trip_through_novas_image_api',
                        'test_real_glance_round_trip_through_novas_image_api')
    real_glance_tests = (
        'test_real_glance_round_trip_through_novas_image_api',)
    # Volumes come with the container, never as its root (see
    # compute_driver.docker.volumes): test_boot_from_volume_fails_cleanly
    # covers booting from one.
    boots_from_volume = False
    test_boot_from_volume = None

    def setUp(self) -> None:
        # Host mounts of the test's own, removed with it.
        self.backend_options = dict(self.backend_options, volume={
            'mount_path': self.useFixture(fixtures.TempDir()).path})
        self.docker = docker_env.raw_client()
        self.addCleanup(self.docker.close)
        #: Images a test brought into dockerd; removed after its servers.
        self.docker_images: list[str] = []
        self.host = docker_env.unique_host()
        # Nova's flavors claim gigabytes of disk a container never uses;
        # overcommit disk so the suite runs on small test machines.
        self.flags(disk_allocation_ratio=1000.0)
        super().setUp()

    def _remove_backend_leftovers(self) -> None:
        # After the containers a failed test left, which would keep the
        # images in use: removing them first would only untag them.
        super()._remove_backend_leftovers()
        for ref in self.docker_images:
            try:
                self.docker.remove_image(ref, force=True)
            except docker_errors.NotFound:
                pass
        docker_env.forget_unique_images(self.docker)

    def _container(self, server: dict) -> dict:
        backend = self.backend(self.host)
        return self.docker.inspect_container(
            backend._container_name(server['id']))

    def test_glance_round_trip_through_novas_image_api(self) -> None:
        self.glance_round_trip()

    def test_real_glance_round_trip_through_novas_image_api(self) -> None:
        self.glance_round_trip()

    def glance_round_trip(self) -> None:
        """Boot a Glance image, snapshot it, boot the snapshot."""
        # An image dockerd does not have: a docker save tarball in Glance.
        docker_id, path = docker_env.unique_image(
            self.docker, self.useFixture(fixtures.TempDir()).path)
        base = self.add_glance_image(str(path), 'raw', 'docker')
        self.docker_images.append(images.service_tag(base['id']))

        server = self._boot(image_uuid=base['id'])
        # The container runs the image docker load made of the bytes
        # Nova's image API handed over, all of them.
        self.assert_downloaded_once(server, base['id'])
        self.assertEqual(docker_id, self._container(server)['Image'])
        self.assertEqual(docker_id, self.docker.inspect_image(
            images.service_tag(base['id']))['Id'])

        image_id = self.snapshot(server, 'snap-%s' % server['id'])
        self.docker_images += [images.service_tag(image_id), image_id]
        image = self.assert_nova_snapshot(server, image_id, 'raw', 'docker')
        self.assertEqual(base['id'], image['properties']['base_image_ref'])
        # Glance holds docker save of the container's commit.
        snapshot_id = self.docker.inspect_image(image_id)['Id']
        with tarfile.open(fileobj=io.BytesIO(
                self.glance_data(image_id))) as tar:
            self.assertIn('manifest.json', tar.getnames())
        self.assertEqual(server['id'], self.docker.inspect_image(
            snapshot_id)['Config']['Labels'][mapping.SNAPSHOT_OF])
        self.assert_actions_succeeded(server, ['create', 'createImage'])

        # Without dockerd's copies, booting the snapshot loads it from
        # Glance's bytes: the same image comes back.
        self.docker.remove_image(images.service_tag(image_id))
        self.docker.remove_image(image_id)
        self.assertFalse(docker_env.has_image(self.docker, snapshot_id))
        clone = self._boot(image_uuid=image_id)
        self.assert_downloaded_once(clone, image_id)
        self.assertEqual(snapshot_id, self._container(clone)['Image'])
        self.assertEqual(1, self.backend_state(self.host, clone))
        self._delete_server(clone)
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

        # Nova's image cache pass: no server uses either image now, so
        # dockerd's copies go; Glance keeps both.
        self.flags(remove_unused_original_minimum_age_seconds=0,
                   group='image_cache')
        self.computes[self.host].manager._run_image_cache_manager_pass(
            self.ctxt)
        for ref in (base['id'], image_id):
            self.assertFalse(docker_env.has_image(
                self.docker, images.service_tag(ref)))
            self.assertTrue(self.glance_data(ref))

    # -- volumes --------------------------------------------------------------

    def _exec(self, server: dict, *command: str) -> str:
        """Run ``command`` in the server's container; its output."""
        name = self.backend(self.host)._container_name(server['id'])
        run = self.docker.exec_create(name, list(command))
        output = self.docker.exec_start(run['Id']).decode()
        self.assertEqual(0, self.docker.exec_inspect(run['Id'])['ExitCode'],
                         output)
        return output

    def _boot_with_volume(self) -> dict:
        """A server whose container has :data:`VOLUME` at :data:`MOUNT`."""
        body = self._build_server(image_uuid=functional_base.IMAGE,
                                  flavor_id='1', networks='none')
        body['block_device_mapping_v2'] = [
            {'boot_index': 0, 'uuid': functional_base.IMAGE,
             'source_type': 'image', 'destination_type': 'local'},
            {'boot_index': -1, 'uuid': VOLUME, 'source_type': 'volume',
             'destination_type': 'volume', 'device_name': MOUNT}]
        server = self.api.post_server({'server': body})
        return self._wait_for_state_change(server, 'ACTIVE')

    def test_attach_and_detach_volume(self) -> None:
        # A file system with a file on it, written before any attach.
        directory = self.useFixture(fixtures.TempDir()).join('fs')
        os.mkdir(directory)
        subprocess.run(['mkfs.ext4', '-q', '-F', self.device], check=True)
        subprocess.run(['mount', self.device, directory], check=True)
        try:
            with open(os.path.join(directory, 'before.txt'), 'w') as f:
                f.write('written on the host')
        finally:
            subprocess.run(['umount', directory], check=True)

        # Through Nova's API, the volume comes with the container: Docker
        # fixes a container's mounts when it creates it.
        first = self._boot_with_volume()
        # Nova keeps the path as /dev//data, which its volume attachment
        # listing's schema refuses: the server shows the volume.
        self.assertEqual([VOLUME], [
            v['id'] for v in first['os-extended-volumes:volumes_attached']])
        [attachment] = self._attachments(first)
        self.assertEqual((VOLUME, self.device, MOUNT),
                         (attachment.volume_id, attachment.device_path,
                          attachment.mountpoint))
        self.assertEqual('written on the host',
                         self._exec(first, 'cat', MOUNT + '/before.txt'))
        self._exec(first, 'sh', '-c',
                   'echo written in %s > %s/first.txt' % (first['id'],
                                                          MOUNT))
        self.assertEqual(1, len(volume_env.host_mounts_of(self.device)))

        # A running container takes no volume: Nova's attach fails on the
        # compute host, and the server keeps running without it.
        self.api.post_server_volume(first['id'], {'volumeAttachment': {
            'volumeId': nova_fixtures.CinderFixture.IMAGE_BACKED_VOL}})
        self.wait_for_action_event(first, 'attach_volume',
                                   'compute_attach_volume', 'error')
        self.assertIn('NotImplementedError: The docker backend does not '
                      'support attaching a volume to an existing instance '
                      '(give its volumes when the instance is created)',
                      self.stdlog.logger.output)
        first = self._show_server(first)
        self.assertEqual([VOLUME], [
            v['id'] for v in first['os-extended-volumes:volumes_attached']])
        self.assertEqual('ACTIVE', first['status'])

        # Deleting the server unmounts and frees the volume, which the
        # next container gets with what the first one wrote.
        self._delete_server(first)
        self.assertEqual([], volume_env.host_mounts_of(self.device))
        volume_env.check_free(self.device)
        second = self._boot_with_volume()
        self.assertEqual('written on the host',
                         self._exec(second, 'cat', MOUNT + '/before.txt'))
        self.assertEqual('written in %s\n' % first['id'],
                         self._exec(second, 'cat', MOUNT + '/first.txt'))
        self._delete_server(second)
        self.assertEqual([], volume_env.host_mounts_of(self.device))
        self.assertEqual(set(), self.backend_uuids(self.host))
