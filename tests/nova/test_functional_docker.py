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

from tests.functional import docker_env
from tests.nova import functional_base


class DockerBackendServerTests(functional_base.ServerLifecycleTests,
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

    def setUp(self) -> None:
        docker_env.raw_client()
        self.host = docker_env.unique_host()
        # Nova's flavors claim gigabytes of disk a container never uses;
        # overcommit disk so the suite runs on small test machines.
        self.flags(disk_allocation_ratio=1000.0)
        super().setUp()
