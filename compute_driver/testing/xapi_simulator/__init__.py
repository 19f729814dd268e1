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

"""A XAPI simulator that the unmodified XenAPI SDK talks to over HTTP.

Nothing else simulates XAPI: Nova's XenAPI tests replaced the SDK with an
in-process fake module. This package serves XAPI's XML-RPC protocol (and
JSON-RPC on ``/jsonrpc``) instead, so the real SDK and everything above it
are exercised, and behaves as XAPI does -- refusals included::

    from compute_driver.testing import xapi_simulator

    with xapi_simulator.Simulator() as sim:     # 127.0.0.1, free port
        session = XenAPI.Session(sim.url)
        session.xenapi.login_with_password('root', 'password', '2.21',
                                           'my-tests')
        session.xenapi.VM.get_all_records()

Knobs: :meth:`Simulator.add_member` (a pool member answering
``HOST_IS_SLAVE``), :meth:`Simulator.invalidate_sessions` and
:meth:`Simulator.set_max_idle` (session expiry), :meth:`Simulator.fail`
(injected failures), :meth:`Simulator.hold` (slow operations),
:meth:`Simulator.go_down` (a xapi that died),
:meth:`Simulator.set_guest_tools`, :meth:`Simulator.set_sm_features`
(SR types that resize plugged disks) and :attr:`Simulator.calls`. The
``compute-driver-xapi-simulator`` console script serves one standalone.
The package's documentation (``doc/source/xapi-simulator.rst``) lists
what it models and what not.
"""

from compute_driver.testing.xapi_simulator.server import main
from compute_driver.testing.xapi_simulator.server import Simulator
from compute_driver.testing.xapi_simulator.store import ApiError
from compute_driver.testing.xapi_simulator.store import NULL_REF

__all__ = ['ApiError', 'NULL_REF', 'Simulator', 'main']
