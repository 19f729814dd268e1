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

"""The conformance suite against the in-memory backend, and its helpers."""

from compute_driver import driver as contract
from compute_driver.fake import driver as fake_driver
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import conformance


class TestFakeConformance(conformance.DriverConformanceTests):
    backend_name = 'fake'


class TestFakeSmallHostConformance(conformance.DriverConformanceTests):
    """A configured host, image and flavor instead of the defaults.

    Exercises ``config_overrides`` (both a backend group and ``DEFAULT``),
    ``image_ref`` and a flavor that only the configuration defines.
    """

    backend_name = 'fake'
    config_overrides = {
        'DEFAULT': {'host': 'cdconf-host',
                    'flavor': ['cdconf.small:2:256:2:1']},
        'fake': {'vcpus': 8, 'memory_mb': 4096, 'disk_gb': 40,
                 'images': ['cdconf-base', 'cdconf-other']},
    }
    image_ref = 'cdconf-other'
    flavor_name = 'cdconf.small'


class _SkewedDriver(contract.ComputeDriver):
    """Drifts from the contract the way Zun's drivers did.

    Abstract and never instantiated: only its class is inspected.
    """

    capabilities = {'supports_pause': True, 'supports_host_uptime': True}

    def get_info(self, instance, use_cache=False):
        raise NotImplementedError

    def pause(self, instance, force=False):
        raise NotImplementedError

    def get_host_uptime(self, verbose):
        raise NotImplementedError

    def find_instance(self, ref, strict=True):
        raise NotImplementedError

    def check_power_state(self, instance, operation, current):
        raise NotImplementedError


def test_signature_mismatches_names_each_drift():
    problems = conformance.signature_mismatches(_SkewedDriver)
    assert [p.split('(')[0] for p in problems] == [
        '_SkewedDriver.check_power_state', '_SkewedDriver.find_instance',
        '_SkewedDriver.get_host_uptime', '_SkewedDriver.get_info',
        '_SkewedDriver.pause']


def test_pipeline_overrides_are_listed():
    assert conformance.pipeline_overrides(_SkewedDriver) == [
        'get_info', 'pause']
    assert conformance.pipeline_overrides(fake_driver.FakeDriver) == []


def test_missing_required_methods_lists_hooks_of_declared_operations():
    missing = conformance.missing_required_methods(_SkewedDriver)
    # get_host_uptime is its own hook; pause needs _pause.
    assert missing == sorted(set(contract.REQUIRED_HOOKS) | {'_pause'})


def test_contract_itself_has_no_mismatch():
    assert conformance.signature_mismatches(contract.ComputeDriver) == []


def test_start_states_are_reachable_from_running():
    for state in conformance.START_STATES:
        if state != power_state.RUNNING:
            operation = conformance.DRIVE_OPERATIONS[state]
            assert contract.TRANSITIONS[operation].result == state


def test_inventory_names_are_unique_and_valid():
    inventory = conformance.Inventory()
    names = [inventory.new_name() for _ in range(3)]
    names.append(inventory.new_snapshot_name())
    assert len(set(names)) == len(names)
    assert all(objects.validate_name(n) == n for n in names)
    assert all(n == n.lower() for n in names)
    assert inventory.snapshots == names[-1:]


def test_start_states_are_those_the_transitions_reach_from_running():
    assert conformance.DRIVE_OPERATIONS == {
        power_state.SHUTDOWN: 'power_off', power_state.PAUSED: 'pause',
        power_state.SUSPENDED: 'suspend'}
    assert conformance.START_STATES == (
        power_state.RUNNING, power_state.SHUTDOWN, power_state.PAUSED,
        power_state.SUSPENDED)
