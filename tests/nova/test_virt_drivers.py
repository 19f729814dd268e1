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

"""Nova's own generic virt driver suite, run against the adapter.

``nova.tests.unit.virt.test_virt_drivers._VirtDriverTestCase`` is the
suite Nova runs against its in-tree drivers; out-of-tree drivers
subclassed it the same way. Nova's suite passes a test whose driver call
raises ``NotImplementedError``, so on top of it every test here checks
that each such call is one the adapter declares unsupported: a Nova
method the adapter does not implement at all, or one whose backend
operation the backend's ``capabilities`` say it lacks. The calls are
listed per backend at the end of the run (see ``conftest.py``).
"""

import functools
import logging
import os
import typing
from unittest import mock
import uuid

from nova.compute import power_state
from nova import test
from nova.tests.unit.virt import test_virt_drivers as nova_suite
from os_brick.initiator.connectors import local as brick_local

from compute_driver.nova import driver as adapter
from compute_driver.volume import model as vol_model
from tests.functional import docker_env
from tests.functional import volume_env

#: The image Nova's test instances are booted from, in Nova's GlanceFixture.
NOVA_TEST_IMAGE = 'cedef40a-ed67-4d10-800e-17455edce175'
#: The kernel's ``uname``, before Nova's test base forbids calling it.
REAL_UNAME = os.uname


class _UnsupportedCalls(logging.Handler):
    """Collects what Nova's ``catch_notimplementederror`` logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.methods: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, dict) and 'method' in record.args:
            self.methods.append(str(record.args['method']))


#: os-brick's local connector as it is, before Nova's fixture stubs it.
_REAL_LOCAL = {name: getattr(brick_local.LocalConnector, name)
               for name in ('connect_volume', 'disconnect_volume')}


class _AdapterSuite(nova_suite._VirtDriverTestCase):
    """Nova's suite on the adapter; subclasses name the backend."""

    backend_name = ''
    #: What the backend calls Nova's test image.
    backend_image = ''
    #: Lines of the library's configuration file, by group.
    backend_options: dict[str, dict[str, object]] = {}

    def setUp(self) -> None:
        self.driver_module = '%s.%s' % (adapter.__name__,
                                        adapter.ComputeDriverAdapter.__name__)
        self.flags(host='nova-suite-%s' % uuid.uuid4().hex[:8])
        config = self.useFixture(nova_suite.fixtures.TempDir()).join(
            'compute-driver.conf')
        with open(config, 'w') as f:
            for group, values in self.backend_options.items():
                f.write('[%s]\n' % group)
                f.writelines('%s = %s\n' % kv for kv in values.items())
        self.flags(backend=self.backend_name, config_file=config,
                   image_map={NOVA_TEST_IMAGE: self.backend_image},
                   image_service='backend',
                   group='compute_driver_adapter')
        self.unsupported = _UnsupportedCalls()
        suite_log = logging.getLogger(nova_suite.__name__)
        suite_log.addHandler(self.unsupported)
        self.addCleanup(suite_log.removeHandler, self.unsupported)
        self._fake_volumes()
        super().setUp()
        # Nova's test base stubs os-brick's connectors out (every device
        # is /dev/sda); the local one connects the loop devices for real.
        for name in ('connect_volume', 'disconnect_volume'):
            self.useFixture(nova_suite.fixtures.MonkeyPatch(
                '%s.LocalConnector.%s' % (brick_local.__name__, name),
                _REAL_LOCAL[name]))
        self.connection.init_host(nova_suite.CONF.host)
        # Runs before the handler is removed: cleanups are last in, first
        # out.
        self.addCleanup(self._check_unsupported_calls)
        self.addCleanup(self._remove_instances)

    def _fake_volumes(self) -> None:
        # Nova's suite hands out connection info of its own fake volume
        # driver, as Nova's libvirt test case registers one. Here each
        # volume id (Nova's suite has one, or none) is a real loop device,
        # which the backend connects through os-brick like any other.
        volume_env.require_loop()
        loops = volume_env.LoopDevices(
            self.useFixture(nova_suite.fixtures.TempDir()).path)
        self.addCleanup(loops.release)
        devices: dict[str, str] = {}
        parse = vol_model.parse

        def parse_fake(connection_info: typing.Any) -> typing.Any:
            if (isinstance(connection_info, dict) and
                    connection_info.get('driver_volume_type') == 'fake'):
                serial = str(connection_info.get('serial', ''))
                if serial not in devices:
                    devices[serial] = loops.make()
                connection_info = {
                    **volume_env.local(devices[serial]),
                    'serial': connection_info.get('serial')}
            return parse(connection_info)

        self.useFixture(nova_suite.fixtures.MonkeyPatch(
            vol_model.__name__ + '.parse', parse_fake))

    def _remove_instances(self) -> None:
        backend = self.connection.backend
        uuids = set(backend.list_instance_uuids())
        if backend.supports('list_images'):
            for image in backend.list_images():
                if image.properties.get('instance_uuid') in uuids:
                    backend.delete_snapshot(image.name)
        for record in backend.list_instance_records():
            backend.destroy(record.instance)
        self.connection.cleanup_host(nova_suite.CONF.host)

    def _check_unsupported_calls(self) -> None:
        declared = set(self.connection.unsupported_methods())
        implemented = set(vars(adapter.ComputeDriverAdapter))
        for method in self.unsupported.methods:
            if method in implemented and method not in declared:
                self.fail('%s raised NotImplementedError, but the %s '
                          'backend declares it supported'
                          % (method, self.backend_name))

    # Nova's versions of these two assume a libvirt-like driver (live
    # migration data, an ``active_migrations`` dict) and are not wrapped
    # in catch_notimplementederror; Nova's AbstractDriverTestCase skips
    # them. Here: a backend without live migration says so; one with it
    # calls Nova's recover_method for a host it cannot reach, and the
    # instance keeps running here.
    def test_live_migration(self) -> None:
        instance, _ = self._get_running_instance()
        post, recover = mock.Mock(), mock.Mock()
        call = functools.partial(self.connection.live_migration, self.ctxt,
                                 instance, 'otherhost', post, recover)
        if not self.connection.backend.supports('live_migrate'):
            self.assertRaises(NotImplementedError, call)
            return
        call()
        recover.assert_called_once_with(self.ctxt, instance, 'otherhost',
                                        None)
        post.assert_not_called()
        self.assertEqual(power_state.RUNNING,
                         self.connection.get_info(instance).state)

    # Nova's moves the instance to another host; a backend that resizes
    # only on its own host (docker, libvirt) is asked for that instead,
    # and one with neither must say so.
    def test_migrate_disk_and_power_off(self) -> None:
        instance, network_info = self._get_running_instance()
        backend = self.connection.backend
        dest = ('dest_host' if backend.supports('cold_migrate')
                else nova_suite.CONF.host)
        call = functools.partial(
            self.connection.migrate_disk_and_power_off, self.ctxt, instance,
            dest, nova_suite.test_utils.get_test_flavor(), network_info)
        if not (backend.supports('cold_migrate') or
                backend.supports('resize')):
            self.assertRaises(NotImplementedError, call)
            return
        self.assertIsInstance(call(), str)
        self.assertEqual(power_state.SHUTDOWN,
                         self.connection.get_info(instance).state)

    def test_live_migration_force_complete(self) -> None:
        instance, _ = self._get_running_instance()
        call = functools.partial(
            self.connection.live_migration_force_complete, instance)
        if not self.connection.backend.supports('live_migrate'):
            self.assertRaises(NotImplementedError, call)
            return
        # The guest has moved by the time live_migration returns.
        self.assertIsNone(call())


class FakeBackendTestCase(_AdapterSuite, test.TestCase):
    backend_name = 'fake'
    backend_image = 'cirros-0.6.3-x86_64-disk'


class DockerBackendTestCase(_AdapterSuite, test.TestCase):
    backend_name = 'docker'
    backend_image = docker_env.IMAGE
    backend_options = {'docker': {'api_url': docker_env.API_URL,
                                  'network_mode': 'none'}}

    def setUp(self) -> None:
        docker_env.raw_client()
        # Nova's test flavor claims 120 GB of disk that a container never
        # uses; overcommit disk so the suite runs on small test machines.
        self.flags(disk_allocation_ratio=1000.0)
        super().setUp()
        # -- network: Nova's test port is an Open vSwitch one on br0,
        # which a host without Open vSwitch cannot plug. As a ``tap`` port
        # (the Neutron agent wires it) the container still gets its veth
        # pair, under an id of this test's so that runs in parallel do
        # not share a device name, and its IPv4 address. pyroute2's helper
        # process for the container's namespace reads the kernel version,
        # which Nova's test base forbids.
        self.useFixture(nova_suite.fixtures.MonkeyPatch(
            'os.uname', REAL_UNAME))
        get_test_network_info = nova_suite.test_utils.get_test_network_info

        def tap_network_info(count: int = 1) -> typing.Any:
            info = get_test_network_info(count)
            for vif in info:
                vif['type'] = 'tap'
                vif['id'] = str(uuid.uuid4())
                # dockerd disables IPv6 in its containers unless told
                # otherwise: the kernel refuses the IPv6 subnet's address.
                vif['network']['subnets'] = [
                    subnet for subnet in vif['network']['subnets']
                    if subnet['version'] == 4]
            return info

        self.useFixture(nova_suite.fixtures.MonkeyPatch(
            nova_suite.test_utils.__name__ + '.get_test_network_info',
            tap_network_info))
