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

"""The verify engine, on the fake backend and tiny broken variants of it."""

import concurrent.futures

import pytest

from compute_driver import driver as contract
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver import flavors
from compute_driver import objects
from compute_driver.testing import fixtures
from compute_driver import verify

IMAGE = 'cirros-0.6.3-x86_64-disk'
OPERATIONS = [step.operation for step in verify.STEPS]


class NoSuspendDriver(fake_driver.FakeDriver):
    capabilities = {**fake_driver.FakeDriver.capabilities,
                    'supports_suspend': False, 'supports_resume': False}


class BrokenPauseDriver(fake_driver.FakeDriver):
    def _pause(self, guest, instance):
        raise exception.BackendError(operation='pause',
                                     instance=instance.name, reason='boom')


class LyingPauseDriver(fake_driver.FakeDriver):
    """Says it paused, leaves the instance running."""

    def _pause(self, guest, instance):
        pass


class InterruptedDriver(fake_driver.FakeDriver):
    """Ctrl-C lands while a snapshot is being taken."""

    def _snapshot(self, guest, instance, current, image_id):
        super()._snapshot(guest, instance, current, image_id)
        raise KeyboardInterrupt()


class UndeletableDriver(fake_driver.FakeDriver):
    def _destroy(self, instance, destroy_disks):
        raise exception.BackendError(operation='destroy',
                                     instance=instance.name, reason='stuck')


class NoImageListDriver(fake_driver.FakeDriver):
    capabilities = {**fake_driver.FakeDriver.capabilities,
                    'supports_list_images': False}


def _backend(cls=fake_driver.FakeDriver):
    backend = cls(fixtures.make_conf('fake'))
    backend.name = 'fake'
    backend.init_host('host1')
    return backend


def _verifier(backend, **kwargs):
    return verify.Verifier(backend, flavors.BUILTIN[0], IMAGE, **kwargs)


def _stats(report):
    return {op.operation: op for op in report.operations}


def _assert_nothing_left(backend):
    # Only FakeDriver's own images may remain; every snapshot was deleted.
    assert backend.list_instance_records() == []
    assert [i.name for i in backend.list_images()] == [IMAGE]


def test_all_steps_pass_and_everything_is_removed():
    backend = _backend()
    report = _verifier(backend, count=5, concurrency=2).run()

    assert report.ok
    assert [op.operation for op in report.operations] == OPERATIONS
    for op in report.operations:
        if op.operation == 'execute':
            # Fake instances run no processes: skipped as unsupported.
            assert (op.passed, op.failed, op.skipped) == (0, 0, 5)
            continue
        assert (op.operation, op.passed, op.failed, op.skipped,
                op.not_run) == (op.operation, 5, 0, 0, 0)
        assert len(op.timings) == 5
        assert op.p50 <= op.p95 <= op.max
    assert len(report.steps) == 5 * len(OPERATIONS)
    assert not report.cleanup_errors and not report.interrupted
    _assert_nothing_left(backend)


def test_instance_and_snapshot_names_use_the_prefix():
    backend = _backend()
    seen = []
    original = backend.snapshot

    def snapshot(instance, image_id, update_task_state=None):
        seen.append((instance.name, image_id))
        return original(instance, image_id, update_task_state)

    backend.snapshot = snapshot
    _verifier(backend, name_prefix='cd.').run()

    [(name, image_id)] = seen
    assert name.startswith('cd.') and len(name) == len('cd.') + 8
    assert image_id == name + '-snap'


def test_unsupported_operations_are_skipped_not_failed():
    backend = _backend(NoSuspendDriver)
    report = _verifier(backend, count=2).run()

    stats = _stats(report)
    for name in ('suspend', 'resume'):
        assert (stats[name].skipped, stats[name].passed,
                stats[name].failed) == (2, 0, 0)
        assert stats[name].p50 is None
    assert stats['destroy'].passed == 2
    assert report.ok
    skipped = [s for s in report.steps if s.operation == 'suspend']
    assert 'does not support suspend, resume' in skipped[0].message
    _assert_nothing_left(backend)


def test_half_of_a_pair_skips_both():
    class NoPowerOn(fake_driver.FakeDriver):
        capabilities = {**fake_driver.FakeDriver.capabilities,
                        'supports_power_on': False}

    report = _verifier(_backend(NoPowerOn)).run()

    stats = _stats(report)
    assert stats['power_off'].skipped == stats['power_on'].skipped == 1
    assert stats['soft_reboot'].passed == 1
    assert report.ok


def test_failed_step_stops_that_instance_and_still_cleans_up():
    backend = _backend(BrokenPauseDriver)
    report = _verifier(backend, count=3, concurrency=3).run()

    stats = _stats(report)
    assert stats['pause'].failed == 3
    assert 'boom' in stats['pause'].first_error
    after = OPERATIONS[OPERATIONS.index('pause') + 1:]
    for name in after:
        assert stats[name].not_run == 3
    for name in OPERATIONS[:OPERATIONS.index('pause')]:
        assert stats[name].passed == 3
    assert not report.ok
    assert [op.operation for op in report.failed_operations] == ['pause']
    _assert_nothing_left(backend)


def test_state_is_checked_after_each_operation():
    report = _verifier(_backend(LyingPauseDriver)).run()

    pause = _stats(report)['pause']
    assert pause.failed == 1
    assert 'is running afterwards, expected paused' in pause.first_error


def test_snapshot_is_deleted_when_a_later_step_fails():
    class BrokenConsole(fake_driver.FakeDriver):
        def _console_output(self, guest, instance):
            return None

    backend = _backend(BrokenConsole)
    report = _verifier(backend).run()

    assert _stats(report)['console_output'].failed == 1
    assert _stats(report)['delete_snapshot'].not_run == 1
    _assert_nothing_left(backend)


def test_keyboard_interrupt_in_a_step_stops_and_cleans_up():
    backend = _backend(InterruptedDriver)
    report = _verifier(backend, count=4, concurrency=2).run()

    assert report.interrupted
    assert not report.ok
    stats = _stats(report)
    assert stats['snapshot'].passed == 0
    assert stats['destroy'].passed == 0
    assert stats['destroy'].not_run == 4
    _assert_nothing_left(backend)


def test_stop_lets_running_instances_finish_their_step_then_cleans_up():
    backend = _backend()
    verifiers = []

    def progress(done, total, failed):
        # Stop as soon as the first instance exists, as a signal handler
        # calling stop() would.
        if backend.list_instance_records():
            verifiers[0].stop()

    verifiers.append(_verifier(backend, count=6, concurrency=2,
                               progress=progress))
    report = verifiers[0].run()

    assert report.interrupted
    stats = _stats(report)
    assert 1 <= stats['spawn'].passed <= 2
    assert stats['spawn'].not_run == 6 - stats['spawn'].passed
    assert stats['destroy'].passed == 0
    _assert_nothing_left(backend)


def test_ctrl_c_in_the_calling_thread_stops_and_cleans_up(monkeypatch):
    backend = _backend()
    real_wait = concurrent.futures.wait
    calls = []

    def wait(futures, *args, **kwargs):
        calls.append(futures)
        if len(calls) == 1:
            raise KeyboardInterrupt()
        return real_wait(futures, *args, **kwargs)

    monkeypatch.setattr(concurrent.futures, 'wait', wait)
    report = _verifier(backend, count=8, concurrency=2).run()

    assert report.interrupted
    assert len(calls) == 2
    assert len(report.steps) == 8 * len(OPERATIONS)
    _assert_nothing_left(backend)


def test_cleanup_failures_are_reported():
    backend = _backend(UndeletableDriver)
    report = _verifier(backend).run()

    assert _stats(report)['destroy'].failed == 1
    assert len(report.cleanup_errors) == 1
    assert 'stuck' in report.cleanup_errors[0]
    assert not report.ok
    # The snapshot does not depend on the instance and is still removed.
    assert [i.name for i in backend.list_images()] == [IMAGE]


def test_progress_reports_every_step():
    calls = []
    verifier = _verifier(_backend(), count=2,
                         progress=lambda *args: calls.append(args))
    verifier.run()

    assert len(calls) == verifier.total_steps
    assert calls[-1] == (verifier.total_steps, verifier.total_steps, 0)


@pytest.mark.parametrize('kwargs', [
    {'count': 0},
    {'count': 2, 'concurrency': 3},
    {'concurrency': 0},
    {'count': True},
    {'name_prefix': '-bad'},
    {'name_prefix': 'x' * 60},
])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(exception.InvalidInput):
        _verifier(_backend(), **kwargs)


def test_bad_image_reference_is_refused():
    with pytest.raises(exception.InvalidInput):
        verify.Verifier(_backend(), flavors.BUILTIN[0], 'two words')


@pytest.mark.parametrize('values, pct, expected', [
    ([], 50, None),
    ([7.0], 95, 7.0),
    ([float(n) for n in range(10, 0, -1)], 50, 5.0),
    ([float(n) for n in range(1, 11)], 95, 10.0),
    ([float(n) for n in range(1, 101)], 95, 95.0),
])
def test_nearest_rank_percentile(values, pct, expected):
    assert verify.percentile(values, pct) == expected


def test_resize_target_never_exceeds_the_flavor():
    nano = flavors.BUILTIN[0]
    assert verify.resize_memory_mb(nano) == 32
    assert verify.resize_memory_mb(flavors.BUILTIN[2]) == 256
    tiny = objects.Flavor('t', vcpus=1, memory_mb=16)
    assert verify.resize_memory_mb(tiny) == 16


def test_default_image_skips_snapshots():
    backend = _backend()
    instance = objects.Instance.new('vm1', flavors.BUILTIN[0], IMAGE)
    backend.spawn(instance)
    # Sorted by name, this snapshot comes first.
    backend.snapshot(instance, 'aaa-snap', None)
    assert verify.default_image(backend) == IMAGE


def test_default_image_needs_list_images():
    assert verify.default_image(_backend(NoImageListDriver)) is None


def test_every_cleanup_failure_of_an_instance_is_reported():
    class Leaky(UndeletableDriver):
        def _delete_snapshot(self, image_id):
            raise exception.BackendError(operation='delete_snapshot',
                                         instance=image_id, reason='locked')

    backend = _backend(Leaky)
    report = _verifier(backend).run()

    assert len(report.cleanup_errors) == 1
    assert 'stuck' in report.cleanup_errors[0]
    assert 'locked' in report.cleanup_errors[0]


def test_empty_console_is_skipped_with_the_reason():
    class SilentImage(fake_driver.FakeDriver):
        def _console_output(self, guest, instance):
            return ''

    backend = _backend(SilentImage)
    report = _verifier(backend, count=2).run()

    console = _stats(report)['console_output']
    assert (console.passed, console.failed, console.skipped) == (0, 0, 2)
    assert console.skip_reasons == (
        'the console was read but is empty: the image printed nothing to '
        'check',)
    # The instance goes on through the remaining steps.
    assert _stats(report)['diagnostics'].passed == 2
    assert _stats(report)['delete_snapshot'].passed == 2
    assert report.ok
    _assert_nothing_left(backend)


def test_console_that_is_not_text_still_fails():
    class BrokenConsole(fake_driver.FakeDriver):
        def _console_output(self, guest, instance):
            return b'bytes'

    report = _verifier(_backend(BrokenConsole)).run()

    console = _stats(report)['console_output']
    assert console.failed == 1
    assert "is b'bytes', expected text" in console.first_error
    assert not report.ok


def test_unsupported_steps_give_their_reason():
    report = _verifier(_backend(NoSuspendDriver), count=2).run()

    assert _stats(report)['suspend'].skip_reasons == (
        'the fake backend does not support suspend, resume',)
    assert _stats(report)['resume'].skip_reasons == (
        'the fake backend does not support resume',)


def test_on_instance_reports_each_instance_once_after_clean_up():
    backend = _backend()
    calls = []

    def on_instance(name, results):
        # Called after clean-up: the instance is gone already.
        calls.append((name, [r.operation for r in results],
                      backend.list_instances()))

    verifier = _verifier(backend, count=3, concurrency=2,
                         on_instance=on_instance)
    report = verifier.run()

    assert sorted(c[0] for c in calls) == sorted(
        {r.instance for r in report.steps})
    for name, operations, listed in calls:
        assert operations == OPERATIONS
        assert name not in listed


def test_every_operation_of_the_state_machine_is_a_step():
    needed = {op for step in verify.STEPS for op in step.needs}
    assert set(contract.TRANSITIONS) <= needed
