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

import logging
import uuid

from nova import test
from nova.tests.unit.virt import test_virt_drivers as nova_suite

from compute_driver.nova import driver as adapter
from tests.functional import docker_env

#: The image Nova's test instances are booted from, in Nova's GlanceFixture.
NOVA_TEST_IMAGE = 'cedef40a-ed67-4d10-800e-17455edce175'


class _UnsupportedCalls(logging.Handler):
    """Collects what Nova's ``catch_notimplementederror`` logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.methods: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, dict) and 'method' in record.args:
            self.methods.append(str(record.args['method']))


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
        super().setUp()
        self.connection.init_host(nova_suite.CONF.host)
        # Runs before the handler is removed: cleanups are last in, first
        # out.
        self.addCleanup(self._check_unsupported_calls)
        self.addCleanup(self._remove_instances)

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
    # them. The contract has no live migration, so here the adapter must
    # say so.
    def test_live_migration(self) -> None:
        instance, _ = self._get_running_instance()
        self.assertRaises(NotImplementedError, self.connection.live_migration,
                          self.ctxt, instance, 'otherhost', None, None)

    def test_live_migration_force_complete(self) -> None:
        instance, _ = self._get_running_instance()
        self.assertRaises(NotImplementedError,
                          self.connection.live_migration_force_complete,
                          instance)


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
