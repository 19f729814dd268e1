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

"""Which tests of Nova's driver suite hit operations a driver lacks.

Nova's generic driver suite,
``nova.tests.unit.virt.test_virt_drivers._VirtDriverTestCase``, lets a test
pass when the driver raises NotImplementedError: its
``catch_notimplementederror`` decorator swallows the exception and only
logs an error naming the driver, the method that raised (the last frame of
the traceback) and the test. A green run therefore says nothing about how
much of the suite a driver really supports. This module turns those log
records into data: :class:`UnsupportedCallRecorder` is a logging handler
that collects them per pytest test, and :class:`UnsupportedCallReport` is
the pytest plugin (registered by this directory's conftest) that attributes
them to the running test, prints them per test class at the end of the run
and writes them to a JSON file on request.
"""

import collections
from collections.abc import Generator
from collections.abc import Iterator
from collections.abc import Mapping
import contextlib
import dataclasses
import json
import logging
from typing import Any

import pytest

#: The logger ``catch_notimplementederror`` logs through (the name of the
#: module defining Nova's driver suite).
SUITE_LOGGER = 'nova.tests.unit.virt.test_virt_drivers'

# The start of the decorator's message; the values come in record.args.
_MESSAGE_PREFIX = '%(driver)s does not implement %(method)s'


@dataclasses.dataclass(frozen=True)
class UnsupportedCall:
    """One Nova suite test that passed only by raising NotImplementedError.

    :ivar nodeid: The pytest node id of the test.
    :ivar test: The name of Nova's test method.
    :ivar driver: The driver class, as a dotted path.
    :ivar method: The function that raised NotImplementedError: the
        driver method, or a helper of it when the driver delegates.
    """

    nodeid: str
    test: str
    driver: str
    method: str

    @property
    def class_nodeid(self) -> str:
        """The node id of the test class the test belongs to."""
        return self.nodeid.rpartition('::')[0]


def _dotted_name(driver: Any) -> str:
    if isinstance(driver, type):
        return '%s.%s' % (driver.__module__, driver.__qualname__)
    return str(driver)


class UnsupportedCallRecorder(logging.Handler):
    """Collects the suite's "does not implement" records of one test at a time.

    Attach it to :data:`SUITE_LOGGER` (see :meth:`attached`). It sits on
    that logger rather than on the root logger because Nova's test base
    replaces the root logger's handlers for the duration of every test
    (its StandardLogging fixture), which would silence a root handler.
    Records arriving while no test is being recorded (see :meth:`recording`)
    are ignored.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        #: Every call recorded so far, in order.
        self.calls: list[UnsupportedCall] = []
        self._nodeid: str | None = None

    @contextlib.contextmanager
    def attached(self) -> Iterator['UnsupportedCallRecorder']:
        """Receive the suite logger's records within the block."""
        logger = logging.getLogger(SUITE_LOGGER)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)

    @contextlib.contextmanager
    def recording(self, nodeid: str) -> Iterator[None]:
        """Attribute the records arriving within the block to ``nodeid``."""
        self._nodeid = nodeid
        try:
            yield
        finally:
            self._nodeid = None

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` if it is the suite's NotImplementedError one."""
        args = record.args
        if (self._nodeid is None
                or not str(record.msg).startswith(_MESSAGE_PREFIX)
                or not isinstance(args, Mapping)):
            return
        self.calls.append(UnsupportedCall(
            nodeid=self._nodeid,
            test=str(args.get('test')),
            driver=_dotted_name(args.get('driver')),
            method=str(args.get('method'))))


# The report of the running pytest session, for recorded_calls().
_active_report: 'UnsupportedCallReport | None' = None


def recorded_calls() -> list[UnsupportedCall]:
    """The calls the running pytest session has recorded so far.

    The same live list as the ``nova_unsupported_calls`` fixture, for code
    that has no access to fixtures.

    :raises RuntimeError: No session with the report plugin is running.
    """
    if _active_report is None:
        raise RuntimeError('no pytest session has installed the report of '
                           "Nova's NotImplementedError passes")
    return _active_report.calls


def install(config: pytest.Config, suite_base: type,
            json_path: str | None) -> 'UnsupportedCallReport':
    """Register the report plugin with the pytest session of ``config``.

    :param config: The session's configuration.
    :param suite_base: The base class of Nova's driver suite.
    :param json_path: Where to write the JSON report, or None.
    :returns: The registered plugin.
    """
    global _active_report
    report = UnsupportedCallReport(suite_base, json_path)
    config.pluginmanager.register(report, 'nova-unsupported-calls')
    _active_report = report
    return report


@dataclasses.dataclass
class _ClassSummary:
    tests_run: int = 0
    calls: list[UnsupportedCall] = dataclasses.field(default_factory=list)


class UnsupportedCallReport:
    """pytest plugin reporting the suite's NotImplementedError "passes".

    Only tests of classes derived from ``suite_base`` (Nova's
    ``_VirtDriverTestCase``) are recorded; their classes make up the
    table printed in the terminal summary and the JSON report.

    :param suite_base: The base class of Nova's driver suite.
    :param json_path: Where to write the JSON report, or None.
    """

    def __init__(self, suite_base: type, json_path: str | None) -> None:
        self.recorder = UnsupportedCallRecorder()
        self._suite_base = suite_base
        self._json_path = json_path
        self._tests_run: collections.Counter[str] = collections.Counter()

    @property
    def calls(self) -> list[UnsupportedCall]:
        """Every call recorded so far (a live list)."""
        return self.recorder.calls

    def _is_suite_test(self, item: pytest.Item) -> bool:
        cls = getattr(item, 'cls', None)
        return isinstance(cls, type) and issubclass(cls, self._suite_base)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(
            self, item: pytest.Item,
            nextitem: pytest.Item | None) -> Generator[None, Any, None]:
        """Record the suite's log records while a suite test runs."""
        if not self._is_suite_test(item):
            yield
            return
        self._tests_run[item.nodeid.rpartition('::')[0]] += 1
        with self.recorder.attached(), self.recorder.recording(item.nodeid):
            yield

    def summary(self) -> dict[str, _ClassSummary]:
        """The recorded calls and the tests run, per test class node id."""
        classes: dict[str, _ClassSummary] = {
            name: _ClassSummary(tests_run=count)
            for name, count in sorted(self._tests_run.items())}
        for call in self.calls:
            classes.setdefault(call.class_nodeid,
                               _ClassSummary()).calls.append(call)
        return classes

    def pytest_terminal_summary(
            self, terminalreporter: Any, exitstatus: int,
            config: pytest.Config) -> None:
        """Print, per test class, the tests and the methods that raised."""
        classes = self.summary()
        if not classes:
            return
        tr = terminalreporter
        tr.write_sep('=', "Nova driver suite: tests passed only by raising "
                          "NotImplementedError")
        for name, summary in classes.items():
            tests = {call.nodeid for call in summary.calls}
            tr.write_line('%s: %d of %d tests' % (
                name, len(tests), summary.tests_run))
            for driver in sorted({call.driver for call in summary.calls}):
                tr.write_line('  driver %s' % driver)
            width = max((len(call.test) for call in summary.calls),
                        default=0)
            for call in sorted(summary.calls,
                               key=lambda c: (c.test, c.method)):
                tr.write_line('  %s  %s' % (call.test.ljust(width),
                                            call.method))
        if self._json_path:
            tr.write_line('written to %s' % self._json_path)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Forget this report once its session is over."""
        global _active_report
        if _active_report is self:
            _active_report = None

    def pytest_sessionfinish(self, session: pytest.Session,
                             exitstatus: int) -> None:
        """Write the JSON report when one was asked for."""
        if not self._json_path:
            return
        report = {
            name: {
                'tests_run': summary.tests_run,
                'unsupported': [
                    dataclasses.asdict(call) for call in summary.calls],
            }
            for name, summary in self.summary().items()}
        with open(self._json_path, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2, sort_keys=True)
            f.write('\n')
