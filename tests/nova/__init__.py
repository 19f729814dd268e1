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

"""Tests that run against Nova itself, in the ``nova`` tox environment.

Nova's own runner discovers its tests from ``nova.tests.unit``, so that
package's initialisation always runs first: it applies or, with
``OS_NOVA_DISABLE_EVENTLET_PATCHING`` set, forbids eventlet's monkey
patching, and registers Nova's versioned objects. Both must happen before
anything else from Nova is imported (importing ``nova.test`` first fails
in native-threading mode), so this package does it before pytest loads its
conftest or any test module.
"""

import nova.tests.unit  # noqa: F401
