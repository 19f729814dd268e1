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

"""The conformance suite on the xenapi backend against the simulator.

The simulator runs in this process but the backend reaches it over real
HTTP through the unmodified XenAPI SDK.
"""

import pytest

from compute_driver.testing import conformance
from compute_driver.testing import fixtures
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    module_xapi_simulator)


class TestXenAPIConformance(conformance.DriverConformanceTests):
    backend_name = 'xenapi'

    @pytest.fixture
    def conf(self, module_xapi_simulator, tmp_path):  # noqa: F811
        return fixtures.make_conf(self.backend_name, {
            'xenapi': sim_fixture.xenapi_options(module_xapi_simulator),
            'image_service': sim_fixture.image_service_options(
                str(tmp_path))})
