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

"""Nova's own server tests with the driver switched to the adapter.

The classes of ``nova.tests.functional.test_servers`` below run as Nova
wrote them, except that every compute service runs the adapter over the
fake backend (loaded through the shim) instead of Nova's fake driver.
Every test passes as on Nova's driver except those in :data:`EXCEPTIONS`,
which run as expected failures (an unexpected pass fails the run) and are
listed with their reasons at the end of the run.

They take several minutes more than the rest of ``tests/nova``, so they
run only with ``COMPUTE_DRIVER_NOVA_SERVER_TESTS=1``, as ``tox -e
nova-servers`` sets it.
"""

import os
import unittest

import fixtures
from nova.tests.fixtures import glance as glance_fixture
from nova.tests.functional import test_servers as nova_servers
import pytest

import compute_driver.nova
from tests.nova import functional_base

#: The environment variable that enables these tests.
ENABLE = 'COMPUTE_DRIVER_NOVA_SERVER_TESTS'

pytestmark = pytest.mark.skipif(
    os.environ.get(ENABLE) != '1',
    reason='set %s=1 (tox -e nova-servers) to run them' % ENABLE)

FAKE_IMAGE = 'cirros-0.6.3-x86_64-disk'

_PATCHES_FAKE = ("patches nova.virt.fake.FakeDriver.spawn, Nova's fake "
                 "driver's internals")

#: Tests of Nova's that fail on the adapter, as ``Class.test``: reason.
EXCEPTIONS = {
    'ServersTest.test_create_server_with_error': _PATCHES_FAKE,
    'ServersTest.test_create_server_with_error_with_retries': _PATCHES_FAKE,
    'ServersTest.test_create_server_with_error_with_no_retries':
        _PATCHES_FAKE,
}

#: Every image of Nova's GlanceFixture, by name, is the fake backend's.
IMAGE_MAP = {image['name']: FAKE_IMAGE
             for image in vars(glance_fixture.GlanceFixture).values()
             if isinstance(image, dict) and 'name' in image}


class _OnAdapter:
    """Runs a Nova test class's compute services on the adapter."""

    # What Nova's ProviderUsageBaseTestCase-based classes configure.
    compute_driver = compute_driver.nova.NOVA_COMPUTE_DRIVER

    def setUp(self) -> None:
        config = self.useFixture(fixtures.TempDir()).join(
            'compute-driver.conf')
        with open(config, 'w') as f:
            # Nova's SmallFakeDriver's host.
            f.write('[fake]\nvcpus = 2\nmemory_mb = 8192\ndisk_gb = 1028\n')
        self.useFixture(functional_base.ShimFixture())
        self.flags(compute_driver=compute_driver.nova.NOVA_COMPUTE_DRIVER,
                   api_paste_config=functional_base.api_paste_config())
        self.flags(backend='fake', config_file=config, image_map=IMAGE_MAP,
                   volume_boot_image=FAKE_IMAGE,
                   image_service='backend',
                   group='compute_driver_adapter')
        # -- volumes: every volume Nova's CinderFixture hands out is a loop
        # device of its own, which the adapter and os-brick connect.
        from tests.functional import volume_env
        volume_env.require_loop()
        loops = volume_env.LoopDevices(
            self.useFixture(fixtures.TempDir()).path)
        self.addCleanup(loops.release)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.cinder.CinderFixture.VOLUME_CONNECTION_INFO',
            _LoopPerVolume(loops)))
        super().setUp()


class _LoopPerVolume(dict):
    """Connection info of a new loop device for each volume id."""

    def __init__(self, loops) -> None:
        super().__init__()
        self._loops = loops

    def get(self, key, default=None):
        if key not in self:
            self[key] = {'driver_volume_type': 'local',
                         'data': {'device_path': self._loops.make()}}
        return self[key]


def exception_reason(cls: type, name: str) -> str | None:
    """Why the test ``name`` of ``cls`` is in :data:`EXCEPTIONS`, if it is.

    Subclasses of Nova's classes inherit its tests: ServersTestV21's are
    ServersTest's, and so are their exceptions.
    """
    for base in cls.__mro__[1:]:
        reason = EXCEPTIONS.get('%s.%s' % (base.__name__, name))
        if reason is not None:
            return reason
    return None


def _with_exceptions(cls: type) -> type:
    """Mark the tests of ``cls`` in :data:`EXCEPTIONS` expected failures."""
    for name in dir(cls):
        if name.startswith('test') and exception_reason(cls, name):
            setattr(cls, name, unittest.expectedFailure(getattr(cls, name)))
    return cls


@_with_exceptions
class ServersTest(_OnAdapter, nova_servers.ServersTest):
    pass


@_with_exceptions
class ServersTestV21(_OnAdapter, nova_servers.ServersTestV21):
    pass


@_with_exceptions
class ServersTestV219(_OnAdapter, nova_servers.ServersTestV219):
    pass


@_with_exceptions
class ServerTestV220(_OnAdapter, nova_servers.ServerTestV220):
    pass


@_with_exceptions
class ServerTestV269(_OnAdapter, nova_servers.ServerTestV269):
    pass


@_with_exceptions
class ServerRebuildTestCase(_OnAdapter, nova_servers.ServerRebuildTestCase):
    pass


@_with_exceptions
class ServerRebuildTestCaseV293(_OnAdapter,
                                nova_servers.ServerRebuildTestCaseV293):
    pass


@_with_exceptions
class ServersTestV280(_OnAdapter, nova_servers.ServersTestV280):
    pass


@_with_exceptions
class ServerSoftDeleteTests(_OnAdapter, nova_servers.ServerSoftDeleteTests):
    pass


@_with_exceptions
class ServerDeleteBuildTests(_OnAdapter,
                             nova_servers.ServerDeleteBuildTests):
    pass


@_with_exceptions
class TraitsBasedSchedulingTest(_OnAdapter,
                                nova_servers.TraitsBasedSchedulingTest):
    pass
