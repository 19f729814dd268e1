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

"""A Nova control plane driving the adapter: the functional suite's base.

Nova's own functional framework (``nova.tests.functional``) runs the API,
conductor and scheduler in this process against an in-memory database,
with placement, Glance, Neutron and Cinder fixtures; compute services run
a real ``ComputeManager`` whose virt driver is the adapter, loaded the way
a nova-compute loads it: through the shim in ``nova.virt``. RPC casts are
asynchronous, as in a deployment. Subclasses name the backend; the tests
themselves are in :class:`ServerLifecycleTests` and run on every backend.
"""

import dataclasses
import hashlib
from importlib import metadata
import os
import time
import typing
from unittest import mock

import fixtures
from nova import context as nova_context
from nova.image import glance as nova_glance
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers

import compute_driver.nova
from compute_driver.nova import driver as adapter
from compute_driver.nova import shim
from tests.nova import glance_fixture

#: Nova's own image service, before its Glance fixture replaces it.
_NOVA_IMAGE_SERVICE = nova_glance.get_default_image_service

#: Images of Nova's GlanceFixture the tests boot.
IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'
OTHER_IMAGE = 'a2459075-d96c-40d5-893e-577ff92e721c'


def api_paste_config() -> str:
    """Where pip installed Nova's ``api-paste.ini``.

    Nova's test configuration looks for it next to the ``nova`` package,
    where it is in a source checkout; a wheel installs it as a data file
    under the environment's ``etc/nova``.
    """
    for path in metadata.files('nova') or ():
        if path.name == 'api-paste.ini':
            return str(path.locate())
    raise RuntimeError("Nova's api-paste.ini is not installed")


class ShimFixture(fixtures.Fixture):
    """The shim in the real ``nova/virt``, as an operator installs it.

    Removed again afterwards when it was not there before.
    """

    def _setUp(self) -> None:
        if shim.check() is not shim.Status.CURRENT:
            shim.install()
            self.addCleanup(shim.remove)


class AdapterTestBase(integrated_helpers.ProviderUsageBaseTestCase):
    """The control plane with compute services running the adapter."""

    compute_driver = compute_driver.nova.NOVA_COMPUTE_DRIVER
    #: Set by subclasses: the backend's entry point name.
    backend_name = ''
    #: Lines of the library's configuration file, by group.
    backend_options: dict[str, dict[str, object]] = {}
    #: The backend's own name for each Glance image the tests boot.
    backend_images: dict[str, str] = {}
    #: Whether the backend gets its images through Nova's image API
    #: ([compute_driver_adapter] image_service = nova), from a Glance
    #: fixture that keeps image data; otherwise from its own images.
    nova_images = False
    #: Tests of the class that get their images through Nova's image API
    #: although :attr:`nova_images` is false: the class's other tests boot
    #: the backend's own images, these Glance images holding real data.
    nova_image_tests: tuple[str, ...] = ()
    #: Tests among :attr:`nova_image_tests` whose Nova talks to a real
    #: Glance API instead of the fixture (see :meth:`use_real_glance`).
    real_glance_tests: tuple[str, ...] = ()
    #: Nova's image API client of the real Glance, when the test has one.
    real_glance: typing.Any = None

    def setUp(self) -> None:
        if self._testMethodName in self.nova_image_tests:
            self.nova_images = True
        # Before the API fixture, which the base class starts, reads it.
        self.flags(api_paste_config=api_paste_config())
        if self.nova_images:
            # Nova's test base builds its Glance fixture from this name.
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.GlanceFixture',
                glance_fixture.DataGlanceFixture))
        super().setUp()
        self.useFixture(ShimFixture())
        config = self.useFixture(fixtures.TempDir()).join(
            'compute-driver.conf')
        with open(config, 'w') as f:
            for group, values in self.backend_options.items():
                f.write('[%s]\n' % group)
                f.writelines('%s = %s\n' % kv for kv in values.items())
        self.flags(backend=self.backend_name, config_file=config,
                   image_map=self.backend_images,
                   image_service='nova' if self.nova_images else 'backend',
                   group='compute_driver_adapter')
        self.ctxt = nova_context.get_admin_context()
        if self._testMethodName in self.real_glance_tests:
            self.use_real_glance()
        #: Images snapshot() made; removed from the backends at the end.
        self.snapshots: list[str] = []
        self.addCleanup(self._remove_backend_leftovers)

    def _remove_backend_leftovers(self) -> None:
        # Deleting a server or its Glance image through Nova leaves a
        # snapshot on the backend (the adapter keeps snapshots there), and
        # a failed test may leave guests.
        for compute in self.computes.values():
            backend = compute.manager.driver.backend
            for image_id in self.snapshots:
                backend.delete_snapshot(image_id)
            moves = (backend.supports('resize') or
                     backend.supports('cold_migrate'))
            for record in backend.list_instance_records():
                # A revert point outlives destroy (see doc/source/resize).
                if moves:
                    backend.confirm_migration(record.instance)
                backend.destroy(record.instance)

    # -- waiting -------------------------------------------------------------

    #: Polls, half a second apart, before a wait gives up. Nova's helpers
    #: allow 10, made for its in-memory fake driver; a real backend on a
    #: loaded CI machine takes longer to build a few servers at once.
    wait_retries = 120

    def _wait_for_server_parameter(self, server: dict, expected_params: dict,
                                   max_retries: int | None = None,
                                   **kwargs: typing.Any) -> dict:
        return super()._wait_for_server_parameter(
            server, expected_params, max_retries or self.wait_retries,
            **kwargs)

    def _wait_for_state_change(self, server: dict, expected_status: str,
                               max_retries: int | None = None,
                               **kwargs: typing.Any) -> dict:
        return super()._wait_for_state_change(
            server, expected_status, max_retries or self.wait_retries,
            **kwargs)

    def wait_for_action_event(self, server: dict, action: str, event: str,
                              result: str) -> dict:
        """The ``event`` of the server's ``action``, once it has ``result``.

        Nova's ``_wait_for_instance_action_event`` with
        :attr:`wait_retries`.
        """
        for _ in range(self.wait_retries):
            for found in self.api.get_instance_actions(server['id']):
                if found['action'] != action:
                    continue
                for candidate in self.api.get_instance_action_details(
                        server['id'], found['request_id'])['events']:
                    if (candidate['event'] == event and
                            (candidate['result'] or '').lower() ==
                            result.lower()):
                        return dict(candidate)
            time.sleep(0.5)
        self.fail('Timed out waiting for the %s event of %s to be %s'
                  % (event, action, result))

    # -- helpers -------------------------------------------------------------

    def backend(self, host: str) -> typing.Any:
        """The backend under ``host``'s compute service."""
        driver = self.computes[host].manager.driver
        # Loaded by Nova through the shim, the adapter is this class.
        self.assertIsInstance(driver, adapter.ComputeDriverAdapter)
        return driver.backend

    def backend_uuids(self, host: str) -> set[str]:
        return set(self.backend(host).list_instance_uuids())

    def backend_state(self, host: str, server: dict) -> int:
        backend = self.backend(host)
        return backend.find_instance(server['id']).info.state

    def assert_actions_succeeded(self, server: dict,
                                 expected: list[str]) -> None:
        """The server's instance actions are ``expected``, all Success."""
        actions = self.api.get_instance_actions(server['id'])
        self.assertEqual(sorted(expected),
                         sorted(a['action'] for a in actions))
        for action in actions:
            detail = self.api.api_get(
                '/servers/%s/os-instance-actions/%s'
                % (server['id'], action['request_id'])
            ).body['instanceAction']
            results = [e['result'] for e in detail['events']]
            self.assertTrue(results, action)
            self.assertEqual(['Success'] * len(results), results, detail)

    def flavor_resources(self, flavor_id: str) -> dict[str, int]:
        """What placement allocates for the flavor ``flavor_id``."""
        flavor = self.api.get_flavor(flavor_id)
        return {'VCPU': flavor['vcpus'], 'MEMORY_MB': flavor['ram'],
                'DISK_GB': flavor['disk']}

    def assert_allocated(self, server: dict, host: str,
                         flavor_id: str) -> None:
        """The server holds exactly its flavor, on ``host``'s node."""
        rp = self._get_provider_uuid_by_host(host)
        allocations = self._get_allocations_by_server_uuid(server['id'])
        self.assertEqual({rp: self.flavor_resources(flavor_id)},
                         {uuid: a['resources']
                          for uuid, a in allocations.items()})

    def use_real_glance(self) -> None:
        """Point the whole of Nova at a real Glance API, started here.

        Glance (``compute_driver.testing.glance``) runs on 127.0.0.1 with
        its unauthenticated pipeline; Nova reaches it through its own
        image client (glanceclient over a keystoneauth session), from the
        API, the conductor and the adapter alike. Skips (fails under
        ``COMPUTE_DRIVER_STRICT=1`` or in CI) without Glance.
        """
        from compute_driver.testing import fixtures as cd_fixtures
        from compute_driver.testing import glance as glance_server
        try:
            server = glance_server.GlanceServer().start()
        except glance_server.GlanceUnavailable as exc:
            # testtools reports pytest's skip as a failure: its own.
            if cd_fixtures.strict_mode():
                self.fail('%s (strict mode)' % exc)
            self.skipTest(str(exc))
        self.addCleanup(server.stop)
        # Undo Nova's Glance fixture, which every client goes through.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.image.glance.get_default_image_service',
            _NOVA_IMAGE_SERVICE))
        # The functional API's users carry no token, and Nova's client
        # sends none without one; Glance's pipeline here ignores it.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.context._ContextAuthPlugin.get_token',
            lambda plugin, *args, **kwargs: (plugin.auth_token or
                                             'functional-user-token')))
        self.flags(api_servers=[server.url], num_retries=0, group='glance')
        self.real_glance = nova_glance.API()

    def glance_show(self, image_id: str) -> dict:
        """The image as Nova's image API shows it."""
        if self.real_glance is not None:
            return dict(self.real_glance.get(self.ctxt, image_id))
        return self.glance.show(self.ctxt, image_id)

    def glance_data(self, image_id: str) -> bytes:
        """The image's data, as Glance keeps it."""
        if self.real_glance is not None:
            return b''.join(self.real_glance.download(self.ctxt, image_id))
        return self.glance.data_of(image_id)

    def add_glance_image(self, path: str, disk_format: str,
                         container_format: str,
                         **properties: str) -> dict:
        """A new Glance image holding ``path``'s bytes.

        Only with :attr:`nova_images`: in Nova's Glance fixture, which
        keeps data, or in the real Glance. The image is ``active`` with
        its size and hashes.
        """
        meta = {'name': 'cdtest-%s' % os.path.basename(path),
                'disk_format': disk_format,
                'container_format': container_format,
                'properties': properties}
        with open(path, 'rb') as data:
            if self.real_glance is not None:
                return dict(self.real_glance.create(self.ctxt, meta,
                                                    data=data))
            self.assertIsInstance(self.glance,
                                  glance_fixture.DataGlanceFixture)
            return self.glance.create(self.ctxt, dict(
                meta, visibility='public'), data=data)

    def assert_downloaded_once(self, server: dict, image_id: str) -> None:
        """Nova's image API handed out ``image_id``'s data once, whole.

        With the credentials of the request that built ``server``: the
        backend downloaded within it, not as Nova's admin. Only the
        fixture counts; a real Glance is not asked.
        """
        if self.real_glance is not None:
            return
        self.assertEqual(len(self.glance.data_of(image_id)),
                         self.glance.downloaded.get(image_id))
        self.assertEqual([server['tenant_id']],
                         self.glance.download_projects[image_id])

    def assert_nova_snapshot(self, server: dict, image_id: str,
                             disk_format: str,
                             container_format: str) -> dict:
        """``image_id`` is Nova's own snapshot image of ``server``, filled.

        Nova's API created it ``queued`` before the compute host was asked;
        the upload went into that image, which is ``active`` with the
        backend's formats, its data's hash and Nova's snapshot
        properties. No other image got the data.

        :returns: the image.
        """
        image = self.glance_show(image_id)
        self.assertEqual('active', image['status'])
        self.assertEqual((disk_format, container_format),
                         (image['disk_format'], image['container_format']))
        data = self.glance_data(image_id)
        self.assertEqual(len(data), int(image['size']))
        self.assertEqual(hashlib.sha512(data).hexdigest(),
                         image['os_hash_value'])
        self.assertEqual('snapshot', image['properties']['image_type'])
        self.assertEqual(server['id'], image['properties']['instance_uuid'])
        if self.real_glance is not None:
            images = self.real_glance.get_all(self.ctxt)
        else:
            self.assertIn(image_id, self.glance.filled)
            images = self.glance.images.values()
        self.assertEqual([image_id], [
            i['id'] for i in images
            if (i.get('properties') or {}).get('instance_uuid') ==
            server['id']])
        return image

    def snapshot(self, server: dict, name: str) -> str:
        """Snapshot ``server`` through the API; the new image's id."""
        response = self.api.post_server_action(
            server['id'], {'createImage': {'name': name}})
        image_id = response['image_id']
        self.snapshots.append(str(image_id))
        self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None})
        return str(image_id)

    def assert_move_failed_cleanly(
            self, server: dict, action: str, host: str,
            error: str = 'NotImplementedError') -> None:
        """A resize or migration of ``server`` (m1.tiny) failed cleanly.

        As Nova handles a driver without it, or one that put the instance
        back as it was: the migration in error, the server ACTIVE on its
        old flavor on ``host``, the allocations back.

        :param error: what the traceback of the failed step names.
        """
        # The source compute's resize_instance is where the adapter says it
        # cannot (migrate_disk_and_power_off is Nova's NotImplementedError,
        # or a rolled-back failure); its action event ends after Nova has
        # put the allocations back.
        event = self.wait_for_action_event(
            server, action, 'compute_resize_instance', 'error')
        self.assertIn(error, event['traceback'])
        migration = self._wait_for_migration_status(server, ['error'])
        self.assertEqual('error', migration['status'])
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertEqual('m1.tiny', server['flavor']['original_name'])
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        # The allocations are the server's again, on the old flavor, and
        # the migration holds none.
        self.assert_allocated(server, host, '1')
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            migration['uuid']))
        rp = self._get_provider_uuid_by_host(host)
        self.assertEqual(self.flavor_resources('1'),
                         self._get_provider_usages(rp))
        self.assertEqual(1, self.backend_state(host, server))


class ServerLifecycleTests:
    """The lifecycle of servers through Nova's API, on one compute host.

    Mixed into a subclass of :class:`AdapterTestBase` naming a backend;
    ``host`` is started by :meth:`setUp`. ``supports_suspend`` says
    whether the backend has suspend and resume.
    """

    host = 'compute1'
    supports_suspend = True
    #: Whether the backend boots from a volume (see :class:`VolumeTests`).
    boots_from_volume = False
    #: Whether a compute service restart keeps the driver object, as
    #: Nova's tests do for in-memory drivers, or loads a new adapter that
    #: finds the guests on the backend.
    restart_keeps_driver = True
    #: Whether the backend counts what a resize keeps for a revert in its
    #: usage, as Nova's placement does, or only the resized instance (a
    #: container's revert point is an image, which holds no CPU or RAM).
    revert_point_counts = True

    def setUp(self) -> None:
        super().setUp()
        self._start_compute(self.host)

    def _boot(self, **kwargs: typing.Any) -> dict:
        kwargs.setdefault('image_uuid', IMAGE)
        kwargs.setdefault('flavor_id', '1')  # m1.tiny
        kwargs.setdefault('networks', 'none')
        return self._create_server(**kwargs)

    def test_create_and_delete_leaves_nothing(self) -> None:
        server = self._boot()
        self.assertEqual(self.host, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual({server['id']}, self.backend_uuids(self.host))
        self.assertEqual(1, server['OS-EXT-STS:power_state'])
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))
        rp = self._get_provider_uuid_by_host(self.host)
        self.assertEqual({'VCPU': 0, 'MEMORY_MB': 0, 'DISK_GB': 0},
                         self._get_provider_usages(rp))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))

    def test_multi_create(self) -> None:
        body = self._build_server(image_uuid=IMAGE, flavor_id='1',
                                  networks='none')
        body.update(min_count=3, return_reservation_id=True)
        reservation = self.api.post_server({'server': body})
        servers = self.api.get_servers(
            search_opts={'reservation_id': reservation['reservation_id']})
        self.assertEqual(3, len(servers))
        servers = [self._wait_for_state_change(s, 'ACTIVE') for s in servers]
        self.assertEqual({s['id'] for s in servers},
                         self.backend_uuids(self.host))
        rp = self._get_provider_uuid_by_host(self.host)
        self.assertEqual({rc: 3 * amount for rc, amount in
                          self.flavor_resources('1').items()},
                         self._get_provider_usages(rp))
        for server in servers:
            self.assert_allocated(server, self.host, '1')
        for server in servers:
            self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_inventory_is_the_backends(self) -> None:
        rp = self._get_provider_uuid_by_host(self.host)
        resources = self.backend(self.host).get_available_resource(self.host)
        inventory = self._get_provider_inventory(rp)
        self.assertEqual(resources.vcpus, inventory['VCPU']['total'])
        self.assertEqual(resources.memory_mb,
                         inventory['MEMORY_MB']['total'])
        if resources.local_gb:
            self.assertEqual(resources.local_gb,
                             inventory['DISK_GB']['total'])
        # The node is the backend's, under the adapter's derived uuid.
        node = self.api.api_get(
            '/os-hypervisors/detail').body['hypervisors'][0]
        self.assertEqual(rp, node['id'])
        self.assertEqual(resources.hypervisor_hostname,
                         node['hypervisor_hostname'])

    def test_power_operations(self) -> None:
        server = self._boot(flavor_id='2')  # m1.small
        self.assert_allocated(server, self.host, '2')
        server = self._stop_server(server)
        self.assertEqual(4, server['OS-EXT-STS:power_state'])
        server = self._start_server(server)
        server = self._reboot_server(server)
        server = self._reboot_server(server, hard=True)
        # A hard reboot also brings a stopped server back.
        server = self._stop_server(server)
        server = self._reboot_server(server, hard=True)
        self.assertEqual(1, server['OS-EXT-STS:power_state'])
        self.api.post_server_action(server['id'], {'pause': None})
        server = self._wait_for_state_change(server, 'PAUSED')
        self.api.post_server_action(server['id'], {'unpause': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        expected = ['create', 'stop', 'start', 'reboot', 'reboot', 'stop',
                    'reboot', 'pause', 'unpause']
        if self.supports_suspend:
            server = self._suspend_server(server)
            # Nova hard-reboots a suspended server back to ACTIVE.
            server = self._reboot_server(server, hard=True)
            server = self._suspend_server(server)
            server = self._resume_server(server)
            expected += ['suspend', 'reboot', 'suspend', 'resume']
        self.assertEqual(1, self.backend_state(self.host, server))
        self.assert_actions_succeeded(server, expected)
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_console_output(self) -> None:
        server = self._boot()
        output = self.api.post_server_action(
            server['id'], {'os-getConsoleOutput': {}})['output']
        backend = self.backend(self.host)
        self.assertEqual(backend.get_console_output(
            backend.find_instance(server['id']).instance), output)
        self.assertTrue(output.strip())

    def test_snapshot_then_boot_from_it(self) -> None:
        server = self._boot()
        image_id = self.snapshot(server, 'snap-of-%s' % server['id'])
        self.assertEqual('active', self.glance.show(
            self.ctxt, image_id)['status'])
        clone = self._boot(image_uuid=image_id)
        self.assertEqual({server['id'], clone['id']},
                         self.backend_uuids(self.host))
        self.assert_actions_succeeded(server, ['create', 'createImage'])
        self._delete_server(clone)
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_rebuild_to_another_image(self) -> None:
        server = self._boot()
        server = self._rebuild_server(server, OTHER_IMAGE)
        self.assertEqual(OTHER_IMAGE, server['image']['id'])
        self.assertEqual({server['id']}, self.backend_uuids(self.host))
        self.assertEqual(1, self.backend_state(self.host, server))
        self.assert_actions_succeeded(server, ['create', 'rebuild'])
        self._delete_server(server)

    def test_shelve_offload_unshelve(self) -> None:
        self.flags(shelved_offload_time=-1)
        server = self._boot()
        server = self._shelve_server(server, expected_state='SHELVED')
        self._shelve_offload_server(server)
        # Offloading removes the guest and frees the host.
        self.assertEqual(set(), self.backend_uuids(self.host))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        server = self._unshelve_server(server)
        self.assertEqual(self.host, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual({server['id']}, self.backend_uuids(self.host))
        self.assert_actions_succeeded(
            server, ['create', 'shelve', 'shelveOffload', 'unshelve'])
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_power_off_behind_novas_back(self) -> None:
        server = self._boot()
        backend = self.backend(self.host)
        backend.power_off(backend.find_instance(server['id']).instance)
        # The backend's stop event reaches the compute manager, which
        # syncs the power state and stops the server.
        server = self._wait_for_state_change(server, 'SHUTOFF')
        self.assertEqual(4, server['OS-EXT-STS:power_state'])
        self._delete_server(server)

    def test_vanished_guest_found_by_power_sync(self) -> None:
        server = self._boot()
        backend = self.backend(self.host)
        backend.destroy(backend.find_instance(server['id']).instance)
        self.computes[self.host].manager._sync_power_states(self.ctxt)
        server = self._wait_for_server_parameter(
            server, {'OS-EXT-STS:power_state': 0, 'status': 'ACTIVE'})
        # Deleting it is still clean.
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_compute_restart_with_servers_running(self) -> None:
        servers = [self._boot() for _ in range(2)]
        stopped = self._stop_server(self._boot())
        compute = self.restart_compute_service(
            self.computes[self.host],
            keep_hypervisor_state=self.restart_keeps_driver)
        self.computes[self.host] = compute
        for server in servers:
            server = self._show_server(server)
            self.assertEqual('ACTIVE', server['status'])
            self.assertEqual(1, self.backend_state(self.host, server))
        self.assertEqual('SHUTOFF', self._show_server(stopped)['status'])
        self._reboot_server(servers[0], hard=True)
        for server in servers + [stopped]:
            self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    # -- resize on this host --------------------------------------------------

    def _resize_to_small(self, server: dict) -> dict:
        """Resize ``server`` (m1.tiny) to m1.small on its own host."""
        self.flags(allow_resize_to_same_host=True)
        if not self.backend(self.host).supports('resize'):
            self.skipTest('the %s backend has no resize; '
                          'test_resize_fails_cleanly covers it'
                          % self.backend_name)
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': '2'}})
        server = self._wait_for_state_change(server, 'VERIFY_RESIZE')
        self.assertEqual('m1.small', server['flavor']['original_name'])
        self.assertEqual(self.host, server['OS-EXT-SRV-ATTR:host'])
        record = self.backend(self.host).find_instance(server['id'])
        self.assertEqual('m1.small', record.instance.flavor.name)
        self.assertEqual(1, record.info.state)
        # Until it is confirmed or reverted, placement holds both flavors
        # on the one node: the new under the server, the old under the
        # migration.
        migration = self._wait_for_migration_status(server, ['finished'])
        rp = self._get_provider_uuid_by_host(self.host)
        self.assert_allocated(server, self.host, '2')
        self.assertEqual({rp: self.flavor_resources('1')}, {
            uuid: a['resources'] for uuid, a in
            self._get_allocations_by_server_uuid(migration['uuid']).items()})
        self.assertEqual(
            {rc: amount + self.flavor_resources('1')[rc]
             for rc, amount in self.flavor_resources('2').items()},
            self._get_provider_usages(rp))
        return server

    def assert_backend_usage(self, *flavor_ids: str) -> None:
        """The backend counts exactly these flavors in its usage."""
        resources = self.backend(self.host).get_available_resource(None)
        flavors = [self.flavor_resources(f) for f in flavor_ids]
        self.assertEqual(
            (sum(f['VCPU'] for f in flavors),
             sum(f['MEMORY_MB'] for f in flavors)),
            (resources.vcpus_used, resources.memory_mb_used))

    def test_resize_then_confirm(self) -> None:
        server = self._resize_to_small(self._boot())
        self.assert_backend_usage(
            *(('1', '2') if self.revert_point_counts else ('2',)))
        self._confirm_resize(server)
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('m1.small', server['flavor']['original_name'])
        self.assert_allocated(server, self.host, '2')
        rp = self._get_provider_uuid_by_host(self.host)
        self.assertEqual(self.flavor_resources('2'),
                         self._get_provider_usages(rp))
        # The revert point is gone: the backend counts the new flavor only.
        self.assert_backend_usage('2')
        self.assertEqual(1, self.backend_state(self.host, server))
        self.assert_actions_succeeded(
            server, ['create', 'resize', 'confirmResize'])
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))
        self.assert_backend_usage()

    def test_resize_then_revert(self) -> None:
        server = self._resize_to_small(self._boot())
        self._revert_resize(server)
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('m1.tiny', server['flavor']['original_name'])
        self.assert_allocated(server, self.host, '1')
        rp = self._get_provider_uuid_by_host(self.host)
        self.assertEqual(self.flavor_resources('1'),
                         self._get_provider_usages(rp))
        record = self.backend(self.host).find_instance(server['id'])
        self.assertEqual('m1.tiny', record.instance.flavor.name)
        self.assertEqual(1, record.info.state)
        self.assert_backend_usage('1')
        self.assert_actions_succeeded(
            server, ['create', 'resize', 'revertResize'])
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_resize_stopped_server_stays_stopped(self) -> None:
        server = self._stop_server(self._boot())
        self.flags(allow_resize_to_same_host=True)
        if not self.backend(self.host).supports('resize'):
            self.skipTest('the %s backend has no resize' % self.backend_name)
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': '2'}})
        server = self._wait_for_state_change(server, 'VERIFY_RESIZE')
        self.assertEqual(4, self.backend_state(self.host, server))
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self._wait_for_state_change(server, 'SHUTOFF')
        self.wait_for_action_event(server, 'confirmResize',
                                   'compute_confirm_resize', 'success')
        self.assertEqual('m1.small', self.backend(self.host).find_instance(
            server['id']).instance.flavor.name)
        self._delete_server(server)

    def test_resize_that_does_not_fit_the_backend_rolls_back(self) -> None:
        # Placement lets the resize through (its inventory overcommits
        # memory here), the backend's own claim refuses it: Nova rolls
        # the server back to ACTIVE on its old flavor, as for a driver
        # that cannot resize.
        self.flags(allow_resize_to_same_host=True)
        if not self.backend(self.host).supports('resize'):
            self.skipTest('the %s backend has no resize' % self.backend_name)
        server = self._boot()
        backend = self.backend(self.host)
        resources = backend.get_available_resource(None)
        with mock.patch.object(
                type(backend), '_resources', autospec=True,
                return_value=dataclasses.replace(
                    resources, memory_mb=resources.memory_mb_used + 1024)):
            self.api.post_server_action(server['id'],
                                        {'resize': {'flavorRef': '2'}})
            # The adapter raised the backend's error from inside Nova's
            # InstanceFaultRollback, whose handler raises it again.
            self.assert_move_failed_cleanly(
                server, 'resize', self.host, 'raise error.inner_exception')
        self.assert_backend_usage('1')

    # -- what a backend may not do -------------------------------------------

    def test_resize_fails_cleanly(self) -> None:
        self.flags(allow_resize_to_same_host=True)
        if self.backend(self.host).supports('resize'):
            self.skipTest('the %s backend resizes; the test_resize_* tests '
                          'cover it' % self.backend_name)
        server = self._boot()
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': '2'}})
        self.assert_move_failed_cleanly(server, 'resize', self.host)

    def _post_volume_backed(self, volume: str) -> dict:
        """Ask Nova for a server whose root disk is ``volume``."""
        body = self._build_server(image_uuid='', flavor_id='1',
                                  networks='none')
        body['block_device_mapping_v2'] = [{
            'boot_index': 0, 'uuid': volume, 'source_type': 'volume',
            'destination_type': 'volume'}]
        return self.api.post_server({'server': body})

    def test_boot_from_volume_fails_cleanly(self) -> None:
        if self.boots_from_volume:
            self.skipTest('the backend boots from volumes: see VolumeTests')
        volume = nova_fixtures.CinderFixture.IMAGE_BACKED_VOL
        server = self._post_volume_backed(volume)
        server = self._wait_for_state_change(server, 'ERROR')
        # The adapter refuses a root volume the backend cannot boot:
        # Nova aborts the build without rescheduling, detaches the volume
        # and frees the host; the backend made nothing.
        self.assertEqual(
            'Build of instance %s aborted: the %s backend cannot boot from '
            'a volume' % (server['id'], self.backend_name),
            server['fault']['message'])
        self.assertEqual(set(), self.backend_uuids(self.host))
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            server['id']))
        self._delete_server(server)


# -- volumes ------------------------------------------------------------------

class VolumeTests:
    """Volumes through Nova's API, on a backend that takes them.

    Nova's CinderFixture hands out, for every volume, the connection info
    of a real loop device of this host (``local``), so that the adapter,
    os-brick and the backend connect and check a real block device.
    Mixed in after :class:`ServerLifecycleTests`.
    """

    boots_from_volume = True

    def setUp(self) -> None:
        super().setUp()
        from tests.functional import volume_env
        volume_env.require_loop()
        directory = self.useFixture(fixtures.TempDir()).path
        self.loops = volume_env.LoopDevices(directory)
        self.addCleanup(self.loops.release)
        self.device = self.loops.make(marker=b'cdvol-nova')
        # The backend's name for the image, or, when images come through
        # Nova's image API, the Glance id itself.
        self.flags(volume_boot_image=self.backend_images.get(IMAGE, IMAGE),
                   group='compute_driver_adapter')
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.cinder.CinderFixture.VOLUME_CONNECTION_INFO',
            {'fake': {'driver_volume_type': 'local',
                      'data': {'device_path': self.device}}}))

    def _attachments(self, server: dict) -> list:
        backend = self.backend(self.host)
        record = backend.find_instance(server['id'])
        return backend.list_volume_attachments(record.instance)

    def test_attach_and_detach_volume(self) -> None:
        server = self._boot()
        server = self._wait_for_state_change(server, 'ACTIVE')
        volume = '8a1b2c3d-0000-4000-8000-00000000cd01'
        self._attach_volume(server, volume)
        [attachment] = self._attachments(server)
        self.assertEqual((volume, self.device),
                         (attachment.volume_id, attachment.device_path))
        self.assertEqual(attachment.mountpoint, self.api.get_server_volumes(
            server['id'])[0]['device'])
        self.api.delete_server_volume(server['id'], volume)
        self._wait_for_volume_detach(server['id'], volume)
        self.assertEqual([], self._attachments(server))
        self._delete_server(server)

    def test_boot_from_volume(self) -> None:
        volume = nova_fixtures.CinderFixture.IMAGE_BACKED_VOL
        server = self._post_volume_backed(volume)
        server = self._wait_for_state_change(server, 'ACTIVE')
        [attachment] = self._attachments(server)
        self.assertEqual((volume, self.device, 0),
                         (attachment.volume_id, attachment.device_path,
                          attachment.boot_index))
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))
