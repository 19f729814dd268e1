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

"""The functional suite on the fake backend (see :mod:`.functional_base`)."""

import hashlib

from tests.nova import functional_base


class FakeBackendServerTests(functional_base.VolumeTests,
                             functional_base.ServerLifecycleTests,
                             functional_base.AdapterTestBase):
    backend_name = 'fake'
    # A small host, so that the claims and Nova's allocation ratios meet.
    backend_options = {'fake': {'vcpus': 2, 'memory_mb': 8192,
                                'disk_gb': 100}}
    # The images come from Nova's image API, data and all.
    nova_images = True

    def guest_disk(self, server: dict) -> dict:
        backend = self.backend(self.host)
        return backend.get_diagnostics(
            backend.find_instance(server['id']).instance)

    def test_image_bytes_through_novas_image_api(self) -> None:
        data = self.glance.data_of(functional_base.IMAGE)
        server = self._boot()
        # The guest's disk is the image's data, downloaded through Nova's
        # image API and verified against Glance's hash.
        disk = self.guest_disk(server)
        self.assertEqual(hashlib.sha256(data).hexdigest(),
                         disk['disk_sha256'])
        self.assertEqual(len(data),
                         self.glance.downloaded[functional_base.IMAGE])

        image_id = self.snapshot(server, 'snap-%s' % server['id'])
        # Nova's own image, now holding the guest's disk: no other image.
        image = self.glance.show(self.ctxt, image_id)
        self.assertEqual('active', image['status'])
        self.assertEqual('snap-%s' % server['id'], image['name'])
        self.assertEqual(('raw', 'bare'), (image['disk_format'],
                                           image['container_format']))
        self.assertEqual(data, self.glance.data_of(image_id))
        self.assertEqual(hashlib.sha512(data).hexdigest(),
                         image['os_hash_value'])
        self.assertEqual('snapshot', image['properties']['image_type'])
        self.assertEqual(server['id'],
                         image['properties']['instance_uuid'])
        self.assertEqual(1, len([i for i in self.glance.images.values()
                                 if i['name'] == image['name']]))
        self.assert_actions_succeeded(server, ['create', 'createImage'])

        clone = self._boot(image_uuid=image_id)
        self.assertEqual(disk['disk_sha256'],
                         self.guest_disk(clone)['disk_sha256'])
        self.assertEqual(len(data), self.glance.downloaded[image_id])
        self._delete_server(clone)
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_boot_of_an_image_with_bad_data_fails_cleanly(self) -> None:
        # Glance's record says one thing, its store returns another, of
        # the same size. Nova gives up on the image rather than trying
        # another host.
        size = len(self.glance.data_of(functional_base.OTHER_IMAGE))
        self.glance._imagedata[functional_base.OTHER_IMAGE] = b'X' * size
        server = self._boot(image_uuid=functional_base.OTHER_IMAGE,
                            expected_state='ERROR')
        self.assertIn('Build of instance %s aborted: Image %s failed '
                      'verification' % (server['id'],
                                        functional_base.OTHER_IMAGE),
                      server['fault']['message'])
        self.assertEqual(set(), self.backend_uuids(self.host))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self._delete_server(server)
