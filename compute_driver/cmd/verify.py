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

"""The ``verify`` command: the contract on the configured backend."""

import collections
import time
import typing

from cliff import columns

from compute_driver.cmd import common
from compute_driver import exception
from compute_driver import flavors
from compute_driver import verify

EXIT_INTERRUPTED = 130


class _Millis(columns.FormattableColumn):
    """Seconds shown as milliseconds; blank in tables when unknown."""

    def human_readable(self) -> str:
        return '' if self._value is None else '%.3f' % self._value

    def machine_readable(self) -> float | None:
        return None if self._value is None else round(self._value, 3)


class _Progress:
    """No progress shown (``-q``); the interface of those that show it."""

    def __enter__(self) -> '_Progress':
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def step(self, done: int, total: int, failed: int) -> None:
        """A step finished; see :data:`verify.ProgressCallback`."""

    def instance(self, name: str,
                 results: tuple[verify.StepResult, ...]) -> None:
        """An instance finished; see :data:`verify.InstanceCallback`."""


class _LineProgress(_Progress):
    """Progress as plain lines, for logs and pipes.

    A line when an instance finishes, at most one every ``interval``
    seconds so that a large ``--count`` does not flood the log (the last
    instance, and any instance with a failed step, always get one); and,
    while instances take longer than ``heartbeat`` seconds, a line on the
    next finished step so a long run still shows it is moving.

    :param clock: returns seconds; ``time.monotonic`` by default.
    """

    def __init__(self, stream: typing.TextIO, count: int,
                 interval: float = 5.0, heartbeat: float = 30.0,
                 clock: typing.Callable[[], float] = time.monotonic
                 ) -> None:
        self._stream = stream
        self._count = count
        self._interval = interval
        self._heartbeat = heartbeat
        self._clock = clock
        self._start = clock()
        self._last: float | None = None
        self._instances = 0
        self._steps = (0, 0, 0)

    def _write(self, text: str) -> None:
        self._last = self._clock()
        done, total, failed = self._steps
        self._stream.write(
            'verify: %s; %d/%d instances, %d/%d steps, %d failed, %.0f s\n'
            % (text, self._instances, self._count, done, total, failed,
               self._last - self._start))
        self._stream.flush()

    def step(self, done: int, total: int, failed: int) -> None:
        self._steps = (done, total, failed)
        if self._clock() - (
                self._start if self._last is None else self._last
        ) >= self._heartbeat:
            self._write('in progress')

    def instance(self, name: str,
                 results: tuple[verify.StepResult, ...]) -> None:
        self._instances += 1
        counts = collections.Counter(r.status for r in results)
        failed = counts[verify.FAILED]
        due = (self._last is None or failed or
               self._instances == self._count or
               self._clock() - self._last >= self._interval)
        if not due:
            return
        text = '%s done: %d passed, %d failed, %d skipped' % (
            name, counts[verify.PASSED], failed, counts[verify.SKIPPED])
        if counts[verify.NOT_RUN]:
            text += ', %d not run' % counts[verify.NOT_RUN]
        self._write(text)

    def __enter__(self) -> '_LineProgress':
        self._start = self._clock()
        return self


class _TerminalProgress(_Progress):
    """A progress bar redrawn in place on a terminal, drawn by rich."""

    def __init__(self, stream: typing.TextIO, count: int) -> None:
        # Imported here: only verify on a terminal draws a bar, and every
        # other command would pay for rich's import.
        from rich import console
        from rich import progress

        self._instances = 0
        self._progress = progress.Progress(
            progress.TextColumn('verify'),
            progress.BarColumn(),
            progress.TaskProgressColumn(),
            progress.MofNCompleteColumn(),
            progress.TextColumn(
                'steps, {task.fields[failed]} failed, '
                '{task.fields[instances]}/%d instances' % count),
            progress.TimeElapsedColumn(),
            console=console.Console(file=stream),
            # The table follows; the bar is not part of the result.
            transient=True)
        self._task = self._progress.add_task(
            'verify', total=count * len(verify.STEPS), failed=0,
            instances=0)

    def __enter__(self) -> '_TerminalProgress':
        self._progress.start()
        return self

    def step(self, done: int, total: int, failed: int) -> None:
        self._progress.update(self._task, completed=done, total=total,
                              failed=failed)

    def instance(self, name: str,
                 results: tuple[verify.StepResult, ...]) -> None:
        self._instances += 1
        self._progress.update(self._task, instances=self._instances)

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()


def progress_reporter(stream: typing.TextIO, count: int,
                      quiet: bool = False) -> _Progress:
    """A bar on a terminal, lines otherwise (CI logs, pipes, files).

    :param quiet: show no progress at all.
    """
    if quiet:
        return _Progress()
    if stream.isatty():
        return _TerminalProgress(stream, count)
    return _LineProgress(stream, count)


class Verify(common.Lister):
    """Boot instances and take each one through every operation.

    Each instance is booted, queried, powered off and on, soft- and
    hard-rebooted, paused and unpaused, suspended and resumed,
    snapshotted and reverted, live-resized down and back, asked for its
    console log and diagnostics, then destroyed with its snapshot. The
    state is checked after each operation; operations the backend does
    not support, and checks whose answer cannot confirm anything (an
    empty console), are skipped, and the Notes column says why.
    Everything verify created is removed, even after a failure or
    Ctrl-C. Progress goes to stderr: a bar on a terminal, a line per
    finished instance otherwise (at most one every 5 seconds), none with
    -q. Exits 1 when any step failed, 130 when interrupted.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--count', metavar='N', type=common.int_at_least(1), default=1,
            help='Instances to take through the steps (default: 1).')
        parser.add_argument(
            '--concurrency', metavar='C', type=common.int_at_least(1),
            default=1,
            help='Instances in flight at once, at most --count '
                 '(default: 1).')
        parser.add_argument(
            '--image', metavar='IMAGE',
            help='Image to boot (default: the first image the backend '
                 'lists that is not a snapshot).')
        parser.add_argument(
            '--flavor', metavar='FLAVOR', default=verify.DEFAULT_FLAVOR,
            help='Flavor to boot (default: %s).' % verify.DEFAULT_FLAVOR)
        parser.add_argument(
            '--name-prefix', metavar='PREFIX',
            default=verify.DEFAULT_NAME_PREFIX,
            help='Prefix of the instance names; 8 hex digits are appended '
                 '(default: %s).' % verify.DEFAULT_NAME_PREFIX)
        return parser

    def run(self, parsed_args):
        self._exit_code = 0
        # cliff's Lister returns 0 once the table is printed; the outcome
        # of the verification decides the exit code.
        return super().run(parsed_args) or self._exit_code

    def take_action(self, parsed_args):
        if parsed_args.concurrency > parsed_args.count:
            raise common.UsageError(
                '--concurrency (%d) cannot exceed --count (%d)' % (
                    parsed_args.concurrency, parsed_args.count))
        flavor = flavors.get_flavor(self.app.conf, parsed_args.flavor)
        backend = self.app.driver
        image = parsed_args.image or verify.default_image(backend)
        if image is None:
            raise common.UsageError(
                'the %s backend lists no image to boot; name one with '
                '--image' % backend.name)
        # cliff's -q sets the verbosity to 0.
        reporter = progress_reporter(
            self.app.stderr, parsed_args.count,
            quiet=self.app.options.verbose_level < 1)
        try:
            verifier = verify.Verifier(
                backend, flavor, image, count=parsed_args.count,
                concurrency=parsed_args.concurrency,
                name_prefix=parsed_args.name_prefix, progress=reporter.step,
                on_instance=reporter.instance)
        except exception.InvalidInput as exc:
            raise common.UsageError(str(exc)) from exc
        with reporter:
            report = verifier.run()
        self._report_problems(report)
        rows = [(op.operation, op.passed, op.failed, op.skipped, op.not_run,
                 _Millis(_ms(op.p50)), _Millis(_ms(op.p95)),
                 _Millis(_ms(op.max)), '; '.join(op.skip_reasons))
                for op in report.operations]
        return (('Operation', 'Passed', 'Failed', 'Skipped', 'Not Run',
                 'p50 (ms)', 'p95 (ms)', 'Max (ms)', 'Notes'), rows)

    def _report_problems(self, report: verify.Report) -> None:
        err = self.app.stderr
        for op in report.failed_operations:
            err.write('%s failed on %d of %d instances; first error on %s\n'
                      % (op.operation, op.failed,
                         op.passed + op.failed + op.not_run + op.skipped,
                         op.first_error))
        for error in report.cleanup_errors:
            err.write('Could not clean up: %s\n' % error)
        if report.interrupted:
            err.write('Interrupted; %s\n' % (
                'some resources were left behind, see above'
                if report.cleanup_errors
                else 'everything verify created was removed'))
            self._exit_code = EXIT_INTERRUPTED
        elif not report.ok:
            self._exit_code = common.EXIT_FAILURE


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0
