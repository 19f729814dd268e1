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

"""The report of Nova driver-suite tests that pass by not implementing.

These run single tests of Nova's own suite, on Nova's abstract base driver
(which implements nothing) and on its in-tree fake driver, the way pytest
runs them: inside Nova's test base, whose logging fixture replaces the root
logger's handlers.
"""

import unittest

from nova.tests.unit.virt import test_virt_drivers as nova_tvd
import pytest

from tests.nova import unsupported


def _run_nova_test(
        case: unittest.TestCase) -> list[unsupported.UnsupportedCall]:
    recorder = unsupported.UnsupportedCallRecorder()
    result = unittest.TestResult()
    with recorder.attached(), recorder.recording('nova-test'):
        case.run(result)
    # Nova's suite counts NotImplementedError as a pass: what the report
    # exists to expose.
    assert result.wasSuccessful(), result.errors + result.failures
    return recorder.calls


@pytest.mark.parametrize('case, expected', [
    # _get_running_instance spawns first, so the abstract driver fails there.
    (nova_tvd.AbstractDriverTestCase('test_rescue'),
     unsupported.UnsupportedCall(
         nodeid='nova-test', test='test_rescue',
         driver='nova.virt.driver.ComputeDriver', method='spawn')),
    (nova_tvd.FakeConnectionTestCase('test_get_host_uptime'),
     unsupported.UnsupportedCall(
         nodeid='nova-test', test='test_get_host_uptime',
         driver='nova.virt.fake.FakeDriver', method='get_host_uptime')),
], ids=['abstract-rescue', 'fake-host-uptime'])
def test_records_the_method_that_raised(case, expected):
    assert _run_nova_test(case) == [expected]


def test_records_nothing_for_an_implemented_operation():
    case = nova_tvd.FakeConnectionTestCase('test_list_instances')
    assert _run_nova_test(case) == []


def test_session_records_only_tests_of_the_suite(request,
                                                 nova_unsupported_calls):
    # This test is not one of the suite's, so the session's recorder must
    # not attribute the record the nested Nova test logs to it.
    logged = _run_nova_test(nova_tvd.AbstractDriverTestCase('test_init_host'))
    assert [call.method for call in logged] == ['init_host']
    assert nova_unsupported_calls is unsupported.recorded_calls()
    assert not [call for call in nova_unsupported_calls
                if call.nodeid == request.node.nodeid]
