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

"""pytest set-up for Nova's unittest-based test cases.

Nova's tests derive from ``nova.test.TestCase`` (testtools/oslotest) and
are normally run by stestr; pytest runs them through its unittest support
once the clash handled in :func:`_keep_test_method` is out of the way.
Nova's package initialisation is done by this directory's ``__init__``.

This also registers the report of the tests of Nova's driver suite that
passed only because the driver raised NotImplementedError (see
:mod:`tests.nova.unsupported`): printed at the end of the run, written to a
JSON file with ``--nova-unsupported-report=PATH``, and available to tests
through the ``nova_unsupported_calls`` fixture.
"""

from collections.abc import Callable
from collections.abc import Iterator
import typing

from nova import conf as nova_conf
from nova import test as nova_test
from nova.tests.unit.virt import test_virt_drivers as nova_tvd
from oslo_config import fixture as config_fixture
import pytest

from tests.nova import unsupported

_REPORT_OPTION = '--nova-unsupported-report'


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the option naming the JSON report's file."""
    parser.addoption(
        _REPORT_OPTION, metavar='PATH', default=None,
        help="Write the tests of Nova's driver suite that passed only by "
             'raising NotImplementedError, per test class, to PATH as '
             'JSON. Give it as --nova-unsupported-report=PATH: pytest '
             'takes a separate argument naming an existing file for a test '
             'path, which changes the test ids.')


def _keep_test_method(
        clear_attrs: Callable[[nova_test.TestCase], None],
) -> Callable[[nova_test.TestCase], None]:
    """Wrap ``TestCase._clear_attrs`` so it spares the running test method.

    To free memory, Nova's test base deletes every public attribute of the
    test case in a cleanup. pytest sets the bound test method as an
    attribute of the instance while the test runs and deletes it when the
    test is over; the second deletion fails, and pytest reports every test
    as failed with an AttributeError.
    """
    def wrapper(self: nova_test.TestCase) -> None:
        method = self.__dict__.get(self._testMethodName)
        clear_attrs(self)
        if method is not None:
            self.__dict__[self._testMethodName] = method
    return wrapper


def pytest_configure(config: pytest.Config) -> None:
    """Make Nova's test cases runnable and install the report."""
    original = nova_test.TestCase.__dict__['_clear_attrs']
    nova_test.TestCase._clear_attrs = _keep_test_method(original)
    config.add_cleanup(
        lambda: setattr(nova_test.TestCase, '_clear_attrs', original))
    unsupported.install(config, nova_tvd._VirtDriverTestCase,
                        config.getoption(_REPORT_OPTION))


def pytest_terminal_summary(terminalreporter: typing.Any) -> None:
    """List the exceptions among Nova's server tests, when they ran."""
    rows = []
    for report in terminalreporter.stats.get('xfailed', []):
        path, _, test = report.nodeid.partition('::')
        if not path.endswith('test_nova_servers.py'):
            continue
        from tests.nova import test_nova_servers
        class_name, _, name = test.partition('::')
        reason = test_nova_servers.exception_reason(
            getattr(test_nova_servers, class_name), name)
        rows.append(('%s.%s' % (class_name, name), str(reason)))
    if not rows:
        return
    terminalreporter.section(
        "Nova's server tests that fail on the adapter (expected)")
    width = max(len(test) for test, _ in rows)
    for test, reason in sorted(rows):
        terminalreporter.write_line('  %-*s  %s' % (width, test, reason))


@pytest.fixture(scope='session')
def nova_unsupported_calls() -> Iterator[list[unsupported.UnsupportedCall]]:
    """The calls recorded so far in this session (a live list)."""
    yield unsupported.recorded_calls()


@pytest.fixture
def flags() -> Iterator[Callable[..., None]]:
    """Set nova.conf options for one test: ``flags(name=value, group=)``.

    What ``nova.test.TestCase.flags`` does, for plain pytest tests. The
    configuration is parsed (from no arguments and no files) as in a
    running nova-compute, so that options registered at parse time, such
    as ``config_file``, which Nova's node identity reads, exist.
    """
    fixture = config_fixture.Config(nova_conf.CONF)
    fixture.setUp()
    nova_conf.CONF([], project='nova', default_config_files=[])
    yield fixture.config
    fixture.cleanUp()
