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

"""Power states of an instance, with Nova's integer values.

The hypervisor is the authority on an instance's power state; these are the
values every backend reports through
:class:`compute_driver.objects.InstanceInfo`.
They equal ``nova.compute.power_state`` so the Nova adapter passes them
through unchanged.
"""

NOSTATE = 0x00
RUNNING = 0x01
PAUSED = 0x03
SHUTDOWN = 0x04  # the VM is powered off
CRASHED = 0x06
SUSPENDED = 0x07

STATE_MAP = {
    NOSTATE: 'pending',
    RUNNING: 'running',
    PAUSED: 'paused',
    SHUTDOWN: 'shutdown',
    CRASHED: 'crashed',
    SUSPENDED: 'suspended',
}

ALL = tuple(STATE_MAP)


def name(state: int) -> str:
    """Return the lower-case name of a power state.

    :param state: one of the module's integer constants.
    :returns: its name, or ``'unknown(N)'`` for a value outside the set.
    """
    return STATE_MAP.get(state, 'unknown(%s)' % state)
