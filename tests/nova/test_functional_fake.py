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

from tests.nova import functional_base


class FakeBackendServerTests(functional_base.ServerLifecycleTests,
                             functional_base.AdapterTestBase):
    backend_name = 'fake'
    # A small host, so that the claims and Nova's allocation ratios meet.
    backend_options = {'fake': {'vcpus': 2, 'memory_mb': 8192,
                                'disk_gb': 100}}
    # The images come from Nova's image API, data and all.
    nova_images = True
