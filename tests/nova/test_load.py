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

"""A stock Nova loads the adapter through the shim.

Nova's ``nova.virt.driver.load_compute_driver`` imports
``'nova.virt.' + [DEFAULT] compute_driver`` and nothing else, so this is
the path every nova-compute takes. The shim is installed into the Nova of
the environment running the tests (a tox virtualenv) and removed again
when it was not there before.
"""

import subprocess
import sys

from nova import conf as nova_conf
from nova.virt import driver as nova_driver
from nova.virt import fake as nova_fake
import pytest

import compute_driver.nova
from compute_driver.nova import driver as adapter
from compute_driver.nova import shim
from compute_driver.testing import fixtures as cd_fixtures

CONF = nova_conf.CONF


@pytest.fixture
def installed_shim():
    """The shim in the real ``nova/virt``, as an operator installs it."""
    was_there = shim.check() is shim.Status.CURRENT
    subprocess.run([cd_fixtures.console_script('compute-driver-nova-shim'),
                    'install'], check=True)
    yield shim.shim_path()
    if not was_there:
        shim.remove()
        sys.modules.pop('nova.virt.%s' % compute_driver.nova.SHIM_MODULE,
                        None)


def test_load_compute_driver_from_nova_conf(installed_shim, flags):
    flags(compute_driver=compute_driver.nova.NOVA_COMPUTE_DRIVER)
    flags(backend='fake', group='compute_driver_adapter')
    driver = nova_driver.load_compute_driver(nova_fake.FakeVirtAPI())
    # Nova's own check: the class must be one of its ComputeDrivers.
    assert isinstance(driver, nova_driver.ComputeDriver)
    assert type(driver) is adapter.ComputeDriverAdapter
    assert driver.backend.name == 'fake'
    driver.init_host(CONF.host)
    assert driver.get_available_nodes() == [CONF.host]
    driver.cleanup_host(CONF.host)


def test_load_compute_driver_by_name(installed_shim, flags):
    flags(backend='fake', group='compute_driver_adapter')
    driver = nova_driver.load_compute_driver(
        nova_fake.FakeVirtAPI(), compute_driver.nova.NOVA_COMPUTE_DRIVER)
    assert type(driver) is adapter.ComputeDriverAdapter


def test_shim_check_passes_once_installed(installed_shim):
    result = subprocess.run(
        [cd_fixtures.console_script('compute-driver-nova-shim'), 'check'],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_without_the_shim_nova_cannot_load_it(installed_shim, flags):
    # What an operator who skipped "compute-driver-nova-shim install" sees:
    # Nova logs the ImportError and exits.
    flags(backend='fake', group='compute_driver_adapter')
    shim.remove()
    sys.modules.pop('nova.virt.%s' % compute_driver.nova.SHIM_MODULE, None)
    try:
        with pytest.raises(SystemExit) as exited:
            nova_driver.load_compute_driver(
                nova_fake.FakeVirtAPI(),
                compute_driver.nova.NOVA_COMPUTE_DRIVER)
        assert exited.value.code == 1
    finally:
        shim.install()
