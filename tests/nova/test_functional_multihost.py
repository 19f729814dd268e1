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

"""Several compute hosts running the adapter on one control plane.

Each compute service in this process runs its own fake backend; the
adapter gives each node a uuid derived from its backend's host identity,
so the services neither collide on one node (Nova's process-wide node
identity) nor lose theirs when restarted.
"""

import collections
import time
from unittest import mock

from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver.nova import node
from compute_driver.nova import service
from tests.nova import functional_base
from tests.nova import test_functional_fake

HOSTS = ('compute1', 'compute2', 'compute3')


class MultiHostTests(functional_base.AdapterTestBase):
    backend_name = 'fake'
    backend_options = test_functional_fake.FakeBackendServerTests.\
        backend_options
    nova_images = test_functional_fake.FakeBackendServerTests.nova_images

    def setUp(self) -> None:
        super().setUp()
        for host in HOSTS:
            self._start_compute(host)

    def _nodes(self) -> dict[str, str]:
        hypervisors = self.api.api_get(
            '/os-hypervisors/detail').body['hypervisors']
        return {h['hypervisor_hostname']: h['id'] for h in hypervisors}

    def test_each_host_is_its_own_node(self) -> None:
        expected = {host: node.derived_uuid(self.backend(host), host)
                    for host in HOSTS}
        self.assertEqual(3, len(set(expected.values())))
        self.assertEqual(expected, self._nodes())
        for host in HOSTS:
            self.assertEqual(expected[host],
                             self._get_provider_uuid_by_host(host))
        # A restarted service finds its node again.
        self.computes['compute2'] = self.restart_compute_service(
            self.computes['compute2'], keep_hypervisor_state=False)
        self.assertEqual(expected, self._nodes())

    def test_scheduler_spreads_servers(self) -> None:
        body = self._build_server(image_uuid=functional_base.IMAGE,
                                  flavor_id='1', networks='none')
        body.update(min_count=6, return_reservation_id=True)
        reservation = self.api.post_server({'server': body})
        servers = [
            self._wait_for_state_change(server, 'ACTIVE')
            for server in self.api.get_servers(search_opts={
                'reservation_id': reservation['reservation_id']})]
        by_host = collections.defaultdict(set)
        for server in servers:
            by_host[server['OS-EXT-SRV-ATTR:host']].add(server['id'])
        # Nova's RAM weigher prefers the emptiest host, so six equal
        # servers on three equal hosts are two per host.
        self.assertEqual({host: 2 for host in HOSTS},
                         {host: len(ids) for host, ids in by_host.items()})
        for host in HOSTS:
            self.assertEqual(by_host[host], self.backend_uuids(host))
            for server_id in by_host[host]:
                self.assert_allocated({'id': server_id}, host, '1')
        for server in servers:
            self._delete_server(server)
        for host in HOSTS:
            self.assertEqual(set(), self.backend_uuids(host))

    def _move(self, action: dict, flavor_id: str) -> tuple[dict, str]:
        """Move a server of compute1 elsewhere; it and its destination."""
        server = self._create_server(
            image_uuid=functional_base.IMAGE, flavor_id='1',
            networks='none', host='compute1')
        source = self.backend('compute1')
        generation = source.get_diagnostics(
            source.find_instance(server['id']).instance)['disk_generation']
        self.api.post_server_action(server['id'], action)
        server = self._wait_for_state_change(server, 'VERIFY_RESIZE')
        dest = server['OS-EXT-SRV-ATTR:host']
        self.assertIn(dest, HOSTS[1:])
        # The destination runs it with the new flavor, from the source's
        # disk; the source keeps it, stopped, until the move is confirmed.
        moved = self.backend(dest).find_instance(server['id'])
        self.assertEqual(1, moved.info.state)
        self.assertEqual(self.api.get_flavor(flavor_id)['name'],
                         moved.instance.flavor.name)
        self.assertEqual(generation + 1, self.backend(dest).get_diagnostics(
            moved.instance)['disk_generation'])
        self.assertEqual(4, self.backend_state('compute1', server))
        # Placement: the server holds the new flavor on the destination,
        # the migration the old one on the source.
        migration = self._wait_for_migration_status(server, ['finished'])
        self.assert_allocated(server, dest, flavor_id)
        self.assertEqual(
            {self._get_provider_uuid_by_host('compute1'):
             self.flavor_resources('1')},
            {uuid: a['resources'] for uuid, a in
             self._get_allocations_by_server_uuid(migration['uuid']).items()})
        return server, dest

    def _usages(self) -> dict[str, dict[str, int]]:
        return {host: self._get_provider_usages(
            self._get_provider_uuid_by_host(host)) for host in HOSTS}

    def test_cold_migrate_then_confirm(self) -> None:
        server, dest = self._move({'migrate': None}, '1')
        self._confirm_resize(server)
        server = self._show_server(server)
        self.assertEqual(dest, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(set(), self.backend_uuids('compute1'))
        self.assertEqual({server['id']}, self.backend_uuids(dest))
        self.assert_allocated(server, dest, '1')
        zero = {'VCPU': 0, 'MEMORY_MB': 0, 'DISK_GB': 0}
        self.assertEqual({host: self.flavor_resources('1') if host == dest
                          else zero for host in HOSTS}, self._usages())
        self.assertEqual(0, self.backend('compute1').get_available_resource(
            None).memory_mb_used)
        self.assert_actions_succeeded(
            server, ['create', 'migrate', 'confirmResize'])
        self._delete_server(server)
        for host in HOSTS:
            self.assertEqual(set(), self.backend_uuids(host))

    def test_resize_to_another_host_then_revert(self) -> None:
        # Without allow_resize_to_same_host a resize is a move too.
        server, dest = self._move({'resize': {'flavorRef': '2'}}, '2')
        self._revert_resize(server)
        server = self._show_server(server)
        self.assertEqual('compute1', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual('m1.tiny', server['flavor']['original_name'])
        self.assertEqual(set(), self.backend_uuids(dest))
        record = self.backend('compute1').find_instance(server['id'])
        self.assertEqual((1, 'm1.tiny'),
                         (record.info.state, record.instance.flavor.name))
        self.assert_allocated(server, 'compute1', '1')
        zero = {'VCPU': 0, 'MEMORY_MB': 0, 'DISK_GB': 0}
        self.assertEqual(
            {host: self.flavor_resources('1') if host == 'compute1'
             else zero for host in HOSTS}, self._usages())
        self.assert_actions_succeeded(
            server, ['create', 'resize', 'revertResize'])
        self._delete_server(server)

    def test_cold_migrate_without_support_fails_cleanly(self) -> None:
        # A backend that declares no cold migration: the scheduler finds
        # another host, the source's adapter says it cannot move the
        # guest, and Nova puts everything back.
        server = self._create_server(
            image_uuid=functional_base.IMAGE, flavor_id='1',
            networks='none', host='compute1')
        with mock.patch.dict(type(self.backend('compute1')).capabilities,
                             {'supports_cold_migrate': False}):
            self.api.post_server_action(server['id'], {'migrate': None})
            self.assert_move_failed_cleanly(server, 'migrate', 'compute1')
        for host in HOSTS:
            rp = self._get_provider_uuid_by_host(host)
            usage = self._get_provider_usages(rp)
            self.assertEqual(self.flavor_resources('1') if host == 'compute1'
                             else {'VCPU': 0, 'MEMORY_MB': 0, 'DISK_GB': 0},
                             usage)
        self.assertEqual({server['id']}, self.backend_uuids('compute1'))
        self._delete_server(server)

    def _wait_for_no_allocations(self, consumer: str) -> None:
        # Nova's compute drops a move's allocations after it marks the
        # migration completed: no event says when.
        for _ in range(self.wait_retries):
            if not self._get_allocations_by_server_uuid(consumer):
                return
            time.sleep(0.5)
        self.fail('%s still holds allocations' % consumer)

    def test_live_migrate_to_another_host(self) -> None:
        server = self._create_server(
            image_uuid=functional_base.IMAGE, flavor_id='1',
            networks='none', host='compute1')
        source = self.backend('compute1')
        before = source.get_diagnostics(
            source.find_instance(server['id']).instance)
        server = self._live_migrate(server, host='compute2')
        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])
        migration = self._wait_for_migration_status(server, ['completed'])
        self._wait_for_no_allocations(migration['uuid'])
        # The guest runs on compute2, the same guest: moved, not rebooted.
        self.assertEqual(set(), self.backend_uuids('compute1'))
        self.assertEqual({server['id']}, self.backend_uuids('compute2'))
        moved = self.backend('compute2').find_instance(server['id'])
        self.assertEqual(1, moved.info.state)
        after = self.backend('compute2').get_diagnostics(moved.instance)
        self.assertEqual(before['disk_generation'],
                         after['disk_generation'])
        self.assertGreater(after['console_lines'], before['console_lines'])
        # Placement and the backends: the server's flavor on compute2,
        # nothing anywhere else.
        self.assert_allocated(server, 'compute2', '1')
        zero = {'VCPU': 0, 'MEMORY_MB': 0, 'DISK_GB': 0}
        self.assertEqual({host: self.flavor_resources('1')
                          if host == 'compute2' else zero
                          for host in HOSTS}, self._usages())
        self.assertEqual(0, source.get_available_resource(
            None).memory_mb_used)
        self.assertEqual(
            self.flavor_resources('1')['MEMORY_MB'],
            self.backend('compute2').get_available_resource(
                None).memory_mb_used)
        self.assert_actions_succeeded(server, ['create', 'live-migration'])
        self._delete_server(server)
        for host in HOSTS:
            self.assertEqual(set(), self.backend_uuids(host))

    def test_live_migrate_without_support_fails_cleanly(self) -> None:
        # Backends that cannot live-migrate (docker's): the destination's
        # check refuses, as Nova's MigrationPreCheckError, and Nova keeps
        # the server running where it was.
        server = self._create_server(
            image_uuid=functional_base.IMAGE, flavor_id='1',
            networks='none', host='compute1')
        with mock.patch.dict(fake_driver.FakeDriver.capabilities,
                             {'supports_live_migrate': False}):
            self.api.post_server_action(
                server['id'], {'os-migrateLive': {
                    'host': 'compute2', 'block_migration': 'auto'}})
            migration = self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertEqual('compute1', server['OS-EXT-SRV-ATTR:host'])
        self._wait_for_no_allocations(migration['uuid'])
        self.assert_allocated(server, 'compute1', '1')
        zero = {'VCPU': 0, 'MEMORY_MB': 0, 'DISK_GB': 0}
        self.assertEqual({host: self.flavor_resources('1')
                          if host == 'compute1' else zero
                          for host in HOSTS}, self._usages())
        self.assertEqual({server['id']}, self.backend_uuids('compute1'))
        self.assertEqual(1, self.backend_state('compute1', server))
        for host in HOSTS[1:]:
            self.assertEqual(set(), self.backend_uuids(host))
            self.assertEqual(0, self.backend(host).get_available_resource(
                None).memory_mb_used)
        self._delete_server(server)

    def _service(self, host: str) -> dict:
        return self.admin_api.get_services(binary='nova-compute',
                                           host=host)[0]

    def test_host_with_unavailable_backend_is_not_chosen(self) -> None:
        # compute3's hypervisor goes away, as dockerd or libvirtd can: the
        # next resource update disables its service, and placement marks
        # its node.
        outage = exception.HypervisorUnavailable(
            host='compute3', reason='connection refused')
        with mock.patch.object(self.backend('compute3'),
                               'get_available_resource',
                               autospec=True, side_effect=outage):
            self._run_periodics()
            down = self._service('compute3')
            self.assertEqual('disabled', down['status'])
            self.assertTrue(down['disabled_reason'].startswith(
                service.DISABLE_PREFIX), down['disabled_reason'])
            self.assertIn('connection refused', down['disabled_reason'])
            rp = self._get_provider_uuid_by_host('compute3')
            self.assertIn('COMPUTE_STATUS_DISABLED',
                          self._get_provider_traits(rp))
            servers = [self._create_server(
                image_uuid=functional_base.IMAGE, flavor_id='1',
                networks='none') for _ in range(4)]
            self.assertEqual(
                {'compute1', 'compute2'},
                {server['OS-EXT-SRV-ATTR:host'] for server in servers})
            self.assertEqual(set(), self.backend_uuids('compute3'))
        # Back: the service is enabled again and takes servers.
        self._run_periodics()
        self.assertEqual('enabled', self._service('compute3')['status'])
        self.assertNotIn('COMPUTE_STATUS_DISABLED',
                         self._get_provider_traits(rp))
        server = self._create_server(image_uuid=functional_base.IMAGE,
                                     flavor_id='1', networks='none')
        self.assertEqual('compute3', server['OS-EXT-SRV-ATTR:host'])
        for server in servers + [server]:
            self._delete_server(server)

    def test_operator_disabled_host_stays_disabled(self) -> None:
        self.admin_api.put_service(
            self._service('compute2')['id'],
            {'status': 'disabled', 'disabled_reason': 'maintenance'})
        # An outage and the recovery after it leave the operator's reason.
        with mock.patch.object(
                self.backend('compute2'), 'get_available_resource',
                autospec=True, side_effect=exception.HypervisorUnavailable(
                    host='compute2', reason='connection refused')):
            self._run_periodics()
        self._run_periodics()
        self.assertEqual('disabled', self._service('compute2')['status'])
        self.assertEqual('maintenance',
                         self._service('compute2')['disabled_reason'])

    def test_restarted_service_enables_what_it_disabled(self) -> None:
        # nova-compute restarted while its service is disabled for an
        # outage (here: a new adapter, on a backend that answers again).
        with mock.patch.object(
                self.backend('compute3'), 'get_available_resource',
                autospec=True, side_effect=exception.HypervisorUnavailable(
                    host='compute3', reason='connection refused')):
            self._run_periodics()
        self.assertEqual('disabled', self._service('compute3')['status'])
        self.computes['compute3'] = self.restart_compute_service(
            self.computes['compute3'], keep_hypervisor_state=False)
        self._run_periodics()
        self.assertEqual('enabled', self._service('compute3')['status'])
