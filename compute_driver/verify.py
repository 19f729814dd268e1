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

"""Run the whole driver contract on a live backend and time each step.

:class:`Verifier` boots ``count`` instances on ``concurrency`` threads and
takes each one through every operation of the contract in :data:`STEPS`,
calling it through :data:`compute_driver.driver.OPERATIONS` and checking
right after each call (operations are synchronous) the power state its
:data:`~compute_driver.driver.TRANSITIONS` entry promises. It removes
everything it created, even when a step fails or the run is interrupted,
and returns a :class:`Report`; it prints nothing, so the CLI's ``verify``
command and other callers format the report as they like::

    verifier = verify.Verifier(backend, flavors.get_flavor(conf, 'm1.nano'),
                               verify.default_image(backend), count=5)
    report = verifier.run()
"""

import collections.abc
import concurrent.futures
import dataclasses
import math
import threading
import time
import typing
import uuid as uuidlib

from compute_driver import console as cd_console
from compute_driver import driver as contract
from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state

PASSED = 'passed'
FAILED = 'failed'
SKIPPED = 'skipped'
NOT_RUN = 'not run'

DEFAULT_FLAVOR = 'm1.nano'
DEFAULT_NAME_PREFIX = 'verify-'

#: Live resize shrinks memory to half the flavor's, but not below this.
MIN_RESIZE_MEMORY_MB = 32

#: Keys every backend's get_diagnostics fills in.
DIAGNOSTICS_KEYS = ('state', 'driver', 'vcpus', 'memory_mb')

#: ``progress(done, total, failed)``: steps finished (whatever their
#: outcome), steps planned, steps failed so far.
ProgressCallback = collections.abc.Callable[[int, int, int], object]

#: ``on_instance(name, results)``: an instance finished, every one of its
#: steps recorded (in :data:`STEPS` order) and what it created removed.
InstanceCallback = collections.abc.Callable[
    [str, tuple['StepResult', ...]], object]


class CheckFailed(exception.ComputeDriverError):
    """The backend answered, but not what the contract promises."""


class CheckSkipped(exception.ComputeDriverError):
    """An answer the contract allows but that cannot confirm the step.

    A console that is empty because the image printed nothing: the step
    is reported as skipped with this reason instead of failing a healthy
    backend.
    """

    msg_fmt = "%(reason)s"

    reason: str


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What happened to one step of one instance.

    :param instance: the instance's name; empty for an instance that was
        never started because the run was stopped.
    :param operation: the step's name, from :data:`STEPS`.
    :param status: :data:`PASSED`, :data:`FAILED`, :data:`SKIPPED` or
        :data:`NOT_RUN`.
    :param seconds: how long the backend call(s) took, for a passed step.
    :param message: why it failed or was skipped, on one line.
    """

    instance: str
    operation: str
    status: str
    seconds: float | None = None
    message: str | None = None


def percentile(values: collections.abc.Sequence[float],
               pct: float) -> float | None:
    """Nearest-rank percentile of ``values``.

    :returns: the smallest value with ``pct`` percent of the values at or
        below it; ``None`` for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclasses.dataclass(frozen=True)
class OperationStats:
    """Every instance's outcome of one step.

    :param timings: seconds of each passed call.
    :param first_error: the first failure's message, prefixed with its
        instance's name.
    :param skip_reasons: why the step was skipped, each reason once, in
        the order they first occurred.
    """

    operation: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    not_run: int = 0
    timings: tuple[float, ...] = ()
    first_error: str | None = None
    skip_reasons: tuple[str, ...] = ()

    @property
    def p50(self) -> float | None:
        return percentile(self.timings, 50)

    @property
    def p95(self) -> float | None:
        return percentile(self.timings, 95)

    @property
    def max(self) -> float | None:
        return max(self.timings) if self.timings else None


@dataclasses.dataclass(frozen=True)
class Report:
    """The outcome of :meth:`Verifier.run`.

    :param operations: one entry per step of :data:`STEPS`, in order.
    :param steps: every step of every instance.
    :param cleanup_errors: what could not be removed, one line each.
    :param interrupted: the run was stopped before it finished.
    """

    operations: tuple[OperationStats, ...]
    steps: tuple[StepResult, ...]
    cleanup_errors: tuple[str, ...] = ()
    interrupted: bool = False

    @property
    def failed_operations(self) -> tuple[OperationStats, ...]:
        return tuple(op for op in self.operations if op.failed)

    @property
    def ok(self) -> bool:
        """Every step passed or was skipped, and everything was removed."""
        return not (self.failed_operations or self.cleanup_errors
                    or self.interrupted)


class _InstanceRun:
    """One instance going through the steps, and what it has created."""

    def __init__(self, instance: objects.Instance) -> None:
        self.instance = instance
        self.snapshot = instance.name + '-snap'
        # The power state the contract promises after the last step.
        self.state = power_state.NOSTATE
        self.elapsed = 0.0
        # Whether the instance and the snapshot may exist.
        self.spawned = False
        self.snapshotted = False
        self.cleanup_error: str | None = None

    def call(self, func, *args, **kwargs):
        """Call the backend, adding the call's duration to the step's."""
        start = time.perf_counter()
        result = func(*args, **kwargs)
        self.elapsed += time.perf_counter() - start
        return result


def _check_state(run: _InstanceRun, state: int, when: str) -> None:
    if state != run.state:
        raise CheckFailed('%s is %s %s, expected %s' % (
            run.instance.name, power_state.name(state), when,
            power_state.name(run.state)))


def _perform(backend, run: _InstanceRun, operation: str,
             **params) -> object:
    """Call ``operation`` as the contract's table says; check the state.

    :param operation: a key of :data:`compute_driver.driver.OPERATIONS`.
    :returns: what the operation returns.
    """
    entry = contract.OPERATIONS[operation]
    result = run.call(entry.call, backend, run.instance, **params)
    if entry.transition is not None:
        # A result of None leaves the state as it was.
        if entry.transition.result is not None:
            run.state = entry.transition.result
        _check_state(run, backend.get_info(run.instance).state, 'afterwards')
    return result


def _operation(operation: str, **params):
    """The step that only performs ``operation``."""
    def step(backend, run):
        _perform(backend, run, operation, **params)
    return step


def _snapshot_listed(backend, run: _InstanceRun) -> bool:
    return any(image.name == run.snapshot
               for image in backend.list_images())


def _spawn(backend, run):
    # Set first: an interrupted call may still have created the instance,
    # and removing one that does not exist is harmless (destroy and
    # delete_snapshot are idempotent). Names and uuids are fresh, so this
    # cannot remove anything verify did not create.
    run.spawned = True
    run.call(backend.spawn, run.instance, power_on=True)
    run.state = power_state.RUNNING


def _get_info(backend, run):
    _check_state(run, run.call(backend.get_info, run.instance).state,
                 'after spawn')


def _snapshot(backend, run):
    run.snapshotted = True  # see _spawn
    _perform(backend, run, 'snapshot', image_id=run.snapshot)
    if backend.supports('list_images'):
        image = next((i for i in backend.list_images()
                      if i.name == run.snapshot), None)
        if image is None:
            raise CheckFailed('snapshot %s is not listed by list_images'
                              % run.snapshot)
        if image.properties.get('instance_uuid') != run.instance.uuid:
            raise CheckFailed('snapshot %s has instance_uuid %r, expected '
                              '%s' % (run.snapshot,
                                      image.properties.get('instance_uuid'),
                                      run.instance.uuid))


def _revert_to_snapshot(backend, run):
    _perform(backend, run, 'revert_to_snapshot', image_id=run.snapshot)


def resize_memory_mb(flavor: objects.Flavor) -> int:
    """The memory the live-resize step shrinks an instance to."""
    return min(flavor.memory_mb,
               max(flavor.memory_mb // 2, MIN_RESIZE_MEMORY_MB))


def _live_resize(shrink: bool):
    def step(backend, run):
        flavor = run.instance.flavor
        memory_mb = resize_memory_mb(flavor) if shrink else flavor.memory_mb
        _perform(backend, run, 'live_resize', memory_mb=memory_mb)
        if backend.supports('diagnostics'):
            found = backend.get_diagnostics(run.instance).get('memory_mb')
            if found != memory_mb:
                raise CheckFailed('%s has memory_mb %r after live resize, '
                                  'expected %d' % (run.instance.name, found,
                                                   memory_mb))
    return step


def _resize(backend, run):
    # The same sizes under another name: a resize every host has room
    # for, which still rewrites the backend's record of the flavor.
    flavor = dataclasses.replace(run.instance.flavor,
                                 name=run.instance.flavor.name + '.resized')
    _perform(backend, run, 'resize', flavor=flavor)
    run.call(backend.confirm_migration, run.instance)
    run.instance = dataclasses.replace(run.instance, flavor=flavor)
    found = backend.find_instance(run.instance.uuid).instance.flavor
    if found != flavor:
        raise CheckFailed('%s has flavor %s after its resize, expected %s'
                          % (run.instance.name, found.name, flavor.name))


def _console_endpoint(operation: str):
    """The step that asks for a console endpoint and checks its port."""
    def step(backend, run):
        found = typing.cast(cd_console.Console,
                            _perform(backend, run, operation))
        if not found.host or not 0 < found.port < 65536:
            raise CheckFailed('%s of %s is %r, expected a host and a port'
                              % (operation, run.instance.name, found))
    return step


def _attach_console(backend, run):
    # Attaching and detaching at once: the console must be free again.
    for _ in range(2):
        typing.cast(cd_console.ConsoleStream,
                    _perform(backend, run, 'attach_console')).close()


def _execute(backend, run):
    stream = typing.cast(cd_console.ConsoleStream, _perform(
        backend, run, 'execute', command=('true',)))
    with stream:
        while stream.read():
            pass
        status = stream.exit_status()
    if status != 0:
        raise CheckFailed('"true" run in %s exited with %r'
                          % (run.instance.name, status))


def _console_output(backend, run):
    output = _perform(backend, run, 'console_output')
    if not isinstance(output, str):
        raise CheckFailed('console output of %s is %r, expected text'
                          % (run.instance.name, output))
    if not output:
        # An image whose process prints nothing (a container's silent
        # daemon) has an empty console on a healthy host: the call worked,
        # but its content cannot be checked.
        raise CheckSkipped(
            reason='the console was read but is empty: the image printed '
                   'nothing to check')


def _diagnostics(backend, run):
    data = _perform(backend, run, 'diagnostics')
    if not isinstance(data, dict):
        raise CheckFailed('diagnostics of %s are %r, expected a dict'
                          % (run.instance.name, data))
    missing = [key for key in DIAGNOSTICS_KEYS if key not in data]
    if missing:
        raise CheckFailed('diagnostics of %s lack %s' % (
            run.instance.name, ', '.join(missing)))
    flavor = run.instance.flavor
    expected = {'state': power_state.name(run.state),
                'vcpus': flavor.vcpus, 'memory_mb': flavor.memory_mb}
    for key, value in expected.items():
        if data[key] != value:
            raise CheckFailed('diagnostics of %s say %s=%r, expected %r' % (
                run.instance.name, key, data[key], value))


def _destroy(backend, run):
    run.call(backend.destroy, run.instance)
    try:
        backend.get_info(run.instance)
    except exception.InstanceNotFound:
        run.spawned = False
        return
    raise CheckFailed('%s still exists after destroy' % run.instance.name)


def _delete_snapshot(backend, run):
    _perform(backend, run, 'delete_snapshot', image_id=run.snapshot)
    if backend.supports('list_images') and _snapshot_listed(backend, run):
        raise CheckFailed('snapshot %s is still listed after '
                          'delete_snapshot' % run.snapshot)
    run.snapshotted = False


@dataclasses.dataclass(frozen=True)
class Step:
    """One operation of the contract as :class:`Verifier` runs it.

    :param operation: the step's name, as reported.
    :param run: ``run(backend, instance_run)``; raises on failure.
    :param needs: optional operations that must all be supported, else
        the step is skipped. An operation that changes the power state
        needs the one that undoes it, so a half-supported pair cannot
        strand the instance in a state the next steps refuse.
    :param after: a step of the same instance that must have passed, else
        this one is skipped.
    """

    operation: str
    run: collections.abc.Callable[[object, _InstanceRun], None]
    needs: tuple[str, ...] = ()
    after: str | None = None


#: Every step, in the order each instance goes through them.
STEPS: tuple[Step, ...] = (
    Step('spawn', _spawn),
    Step('get_info', _get_info),
    # Forced off: a clean shutdown would time the guest's OS, not the
    # backend.
    Step('power_off', _operation('power_off', timeout=0, retry_interval=0),
         ('power_off', 'power_on')),
    Step('power_on', _operation('power_on'), ('power_on',), 'power_off'),
    Step('soft_reboot', _operation('soft_reboot'), ('soft_reboot',)),
    Step('hard_reboot', _operation('hard_reboot'), ('hard_reboot',)),
    Step('pause', _operation('pause'), ('pause', 'unpause')),
    Step('unpause', _operation('unpause'), ('unpause',), 'pause'),
    Step('suspend', _operation('suspend'), ('suspend', 'resume')),
    Step('resume', _operation('resume'), ('resume',), 'suspend'),
    # A snapshot that could not be deleted would outlive the run.
    Step('snapshot', _snapshot, ('snapshot', 'delete_snapshot')),
    Step('revert_to_snapshot', _revert_to_snapshot, ('revert_to_snapshot',),
         'snapshot'),
    Step('live_resize_down', _live_resize(True), ('live_resize',)),
    Step('live_resize_up', _live_resize(False), ('live_resize',),
         'live_resize_down'),
    Step('resize', _resize, ('resize',)),
    Step('console_output', _console_output, ('console_output',)),
    Step('diagnostics', _diagnostics, ('diagnostics',)),
    # -- consoles --
    Step('vnc_console', _console_endpoint('vnc_console'), ('vnc_console',)),
    Step('serial_console', _console_endpoint('serial_console'),
         ('serial_console',)),
    Step('attach_console', _attach_console, ('attach_console',)),
    Step('execute', _execute, ('execute',)),
    Step('destroy', _destroy),
    Step('delete_snapshot', _delete_snapshot, ('delete_snapshot',),
         'snapshot'),
)


def default_image(backend: contract.ComputeDriver) -> str | None:
    """The image to boot when none is given.

    :returns: the first image ``list_images`` returns that is not a
        snapshot (else the first one), or ``None`` when the backend cannot
        list images or has none.
    """
    if not backend.supports('list_images'):
        return None
    images = backend.list_images()
    for image in images:
        if 'instance_uuid' not in image.properties:
            return image.name
    return images[0].name if images else None


class Verifier:
    """Take instances through every step of the contract.

    :param backend: a loaded backend on which ``init_host`` was called.
    :param flavor: the flavor to boot.
    :param image: the image to boot, see :func:`default_image`.
    :param count: instances to boot, at least 1.
    :param concurrency: instances in flight at once, 1 to ``count``.
    :param name_prefix: instance names are this plus 8 hex digits;
        snapshots add ``-snap``.
    :param progress: called after every step from the worker threads, one
        call at a time; see :data:`ProgressCallback`.
    :param on_instance: called when an instance is done, after its
        clean-up, from the worker threads, one call at a time and never
        at the same time as ``progress``; see :data:`InstanceCallback`.
    :raises InvalidInput: for a bad count, concurrency, prefix or image.
    """

    def __init__(self, backend: contract.ComputeDriver,
                 flavor: objects.Flavor, image: str, count: int = 1,
                 concurrency: int = 1,
                 name_prefix: str = DEFAULT_NAME_PREFIX,
                 progress: ProgressCallback | None = None,
                 on_instance: InstanceCallback | None = None) -> None:
        for field, value, low, high in (('count', count, 1, None),
                                        ('concurrency', concurrency, 1,
                                         count)):
            if (not isinstance(value, int) or isinstance(value, bool)
                    or value < low or (high is not None and value > high)):
                raise exception.InvalidInput(
                    reason='%s must be an integer from %d to %s, got %r' % (
                        field, low, high or 'any', value))
        if not isinstance(flavor, objects.Flavor):
            raise exception.InvalidInput(
                reason='flavor must be an objects.Flavor, got %r' % (flavor,))
        objects.validate_image_ref(image)
        try:
            objects.validate_name(name_prefix + '0' * 8)
        except exception.InvalidInstanceName:
            raise exception.InvalidInput(
                reason='name prefix %r does not make valid instance names: '
                       'use up to 55 letters, digits, "_", "." or "-", '
                       'starting with a letter or digit' % (name_prefix,)
            ) from None
        self.backend = backend
        self.flavor = flavor
        self.image = image
        self.count = count
        self.concurrency = concurrency
        self.name_prefix = name_prefix
        self._progress = progress
        self._on_instance = on_instance
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._live: dict[str, _InstanceRun] = {}
        self._started = 0
        self._done = 0
        self._failed = 0

    @property
    def total_steps(self) -> int:
        return self.count * len(STEPS)

    def stop(self) -> None:
        """Ask a running :meth:`run` to stop; callable from any thread.

        No new instance is started and no new step begins; each instance
        in flight finishes its current step and is removed.
        """
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> Report:
        """Run every step on every instance and remove what was created.

        A ``KeyboardInterrupt`` in the calling thread (Ctrl-C) or in a
        step stops the run as :meth:`stop` does; the report then has
        ``interrupted`` set. A second Ctrl-C while waiting for the workers
        propagates after the removal of what is left.
        """
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix='verify')
        futures: list[concurrent.futures.Future[list[StepResult]]] = []
        try:
            try:
                futures.extend(executor.submit(self._work)
                               for _ in range(self.concurrency))
                concurrent.futures.wait(futures)
            except KeyboardInterrupt:
                self.stop()
                concurrent.futures.wait(futures)
        finally:
            executor.shutdown(wait=True)
            cleanup_errors = self._sweep()
        steps: list[StepResult] = []
        for future in futures:
            steps.extend(future.result())
        # Instances never handed out because the run was stopped.
        for _ in range(self.count - self._started):
            steps.extend(StepResult('', step.operation, NOT_RUN,
                                    message='run stopped')
                         for step in STEPS)
        return Report(operations=_summarise(steps), steps=tuple(steps),
                      cleanup_errors=tuple(cleanup_errors),
                      interrupted=self.stopped)

    # -- workers -----------------------------------------------------------

    def _record(self, result: StepResult) -> StepResult:
        with self._lock:
            self._done += 1
            if result.status == FAILED:
                self._failed += 1
            if self._progress is not None:
                self._progress(self._done, self.total_steps, self._failed)
        return result

    def _skip_reason(self, step: Step, status: dict[str, str]) -> str | None:
        missing = [op for op in step.needs if not self.backend.supports(op)]
        if missing:
            return 'the %s backend does not support %s' % (
                self.backend.name, ', '.join(missing))
        if step.after and status.get(step.after) != PASSED:
            return 'needs %s, which was skipped' % step.after
        return None

    def _work(self) -> list[StepResult]:
        """One worker thread: take instances until none or stopped."""
        results: list[StepResult] = []
        while not self.stopped:
            with self._lock:
                if self._started >= self.count:
                    break
                self._started += 1
            results.extend(self._run_instance())
        return results

    def _run_instance(self) -> list[StepResult]:
        uuid = str(uuidlib.uuid4())
        name = self.name_prefix + uuid[:8]
        run = _InstanceRun(
            objects.Instance(uuid=uuid, name=name, flavor=self.flavor,
                             image_ref=self.image))
        with self._lock:
            self._live[uuid] = run
        results = []
        status: dict[str, str] = {}
        broken = None
        try:
            for step in STEPS:
                if broken or self.stopped:
                    results.append(self._record(StepResult(
                        name, step.operation, NOT_RUN,
                        message=('after %s failed' % broken if broken
                                 else 'run stopped'))))
                    continue
                reason = self._skip_reason(step, status)
                if reason:
                    status[step.operation] = SKIPPED
                    results.append(self._record(StepResult(
                        name, step.operation, SKIPPED, message=reason)))
                    continue
                run.elapsed = 0.0
                try:
                    step.run(self.backend, run)
                except KeyboardInterrupt:
                    self.stop()
                    results.append(self._record(StepResult(
                        name, step.operation, NOT_RUN,
                        message='interrupted')))
                    continue
                except CheckSkipped as exc:
                    result = StepResult(name, step.operation, SKIPPED,
                                        message=exception.one_line(exc))
                except Exception as exc:
                    broken = step.operation
                    result = StepResult(name, step.operation, FAILED,
                                        message=exception.one_line(exc))
                else:
                    result = StepResult(name, step.operation, PASSED,
                                        seconds=run.elapsed)
                status[step.operation] = result.status
                results.append(self._record(result))
        finally:
            self._clean_up(run)
        if self._on_instance is not None:
            with self._lock:
                self._on_instance(name, tuple(results))
        return results

    def _clean_up(self, run: _InstanceRun) -> None:
        """Remove what ``run`` created; idempotent, never raises."""
        errors = []
        if run.spawned:
            try:
                self.backend.destroy(run.instance)
                run.spawned = False
            except Exception as exc:
                errors.append('destroy %s: %s' % (
                    run.instance.name, exception.one_line(exc)))
        if run.snapshotted:
            try:
                self.backend.delete_snapshot(run.snapshot)
                run.snapshotted = False
            except Exception as exc:
                errors.append('delete snapshot %s: %s' % (
                    run.snapshot, exception.one_line(exc)))
        # Both, when both failed: each names something left behind.
        run.cleanup_error = '; '.join(errors) or None
        if not (run.spawned or run.snapshotted):
            with self._lock:
                self._live.pop(run.instance.uuid, None)

    def _sweep(self) -> list[str]:
        """Retry removing what a worker could not, from this thread."""
        with self._lock:
            left = list(self._live.values())
        errors = []
        for run in left:
            self._clean_up(run)
            if run.cleanup_error:
                errors.append(run.cleanup_error)
        return errors


def _summarise(steps: collections.abc.Iterable[StepResult]
               ) -> tuple[OperationStats, ...]:
    counts = {step.operation: {PASSED: 0, FAILED: 0, SKIPPED: 0, NOT_RUN: 0}
              for step in STEPS}
    timings: dict[str, list[float]] = {step.operation: [] for step in STEPS}
    first_error: dict[str, str] = {}
    skip_reasons: dict[str, dict[str, None]] = {
        step.operation: {} for step in STEPS}
    for result in steps:
        counts[result.operation][result.status] += 1
        if result.status == PASSED:
            # Every passed step is timed; the check only tells mypy so.
            if result.seconds is not None:
                timings[result.operation].append(result.seconds)
        elif result.status == FAILED:
            first_error.setdefault(result.operation, '%s: %s' % (
                result.instance, result.message))
        elif result.status == SKIPPED and result.message:
            skip_reasons[result.operation][result.message] = None
    return tuple(
        OperationStats(operation=op, passed=c[PASSED], failed=c[FAILED],
                       skipped=c[SKIPPED], not_run=c[NOT_RUN],
                       timings=tuple(timings[op]),
                       first_error=first_error.get(op),
                       skip_reasons=tuple(skip_reasons[op]))
        for op, c in counts.items())
