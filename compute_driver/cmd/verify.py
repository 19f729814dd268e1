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


class _ProgressBar:
    """A one-line progress bar redrawn in place on a terminal."""

    WIDTH = 30

    def __init__(self, stream: typing.TextIO) -> None:
        self._stream = stream
        self._shown: tuple[int, int, int] | None = None
        self._length = 0

    def __call__(self, done: int, total: int, failed: int) -> None:
        filled = self.WIDTH * done // total
        # Redrawing on every step of a long run would flood a slow
        # terminal; redraw when what is shown changes.
        shown = (filled, done * 100 // total, failed)
        if shown == self._shown and done != total:
            return
        self._shown = shown
        line = 'verify [%s%s] %3d%% %d/%d steps, %d failed' % (
            '#' * filled, '.' * (self.WIDTH - filled), done * 100 // total,
            done, total, failed)
        self._length = len(line)
        self._stream.write('\r' + line)
        self._stream.flush()

    def clear(self) -> None:
        if self._length:
            self._stream.write('\r%s\r' % (' ' * self._length))
            self._stream.flush()


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
    Ctrl-C. Exits 1 when any step failed, 130 when
    interrupted.
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
        progress = (_ProgressBar(self.app.stderr)
                    if self.app.stderr.isatty() else None)
        try:
            verifier = verify.Verifier(
                backend, flavor, image, count=parsed_args.count,
                concurrency=parsed_args.concurrency,
                name_prefix=parsed_args.name_prefix, progress=progress)
        except exception.InvalidInput as exc:
            raise common.UsageError(str(exc)) from exc
        try:
            report = verifier.run()
        finally:
            if progress is not None:
                progress.clear()
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
