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

"""Run this library's backends under a stock nova-compute.

Nova loads its driver from ``[DEFAULT] compute_driver`` in nova.conf, and
only from inside the ``nova.virt`` package: it imports
``'nova.virt.' + compute_driver``. The adapter itself lives in
:mod:`compute_driver.nova.driver`; a one-line module installed into
``nova.virt`` under the name :data:`SHIM_MODULE` re-exports it (see
:mod:`compute_driver.nova.shim`), and nova.conf names it with
:data:`NOVA_COMPUTE_DRIVER`.

This package is the only part of the library that imports ``nova``, and
only in its submodules: importing this one is cheap and safe without Nova.
"""

#: The module the shim installs inside ``nova.virt``.
SHIM_MODULE = 'compute_driver_nova'

#: The class the adapter exports, as the shim re-exports it.
ADAPTER_CLASS = 'ComputeDriverAdapter'

#: The value of nova.conf's ``[DEFAULT] compute_driver`` that loads the
#: adapter through the shim.
NOVA_COMPUTE_DRIVER = '%s.%s' % (SHIM_MODULE, ADAPTER_CLASS)
