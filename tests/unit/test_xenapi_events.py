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

"""The xenapi event watcher next to the driver's own announcements.

A fake feed hands the watcher the answers of numbered polls, as its
thread would: a poll is issued (numbered), the driver may change the VM
and announce it, then the poll's answer is handled.
"""

import pytest
import XenAPI

from compute_driver import event as virtevent
from compute_driver import objects
from compute_driver.xenapi import events
from compute_driver.xenapi import mapping

FLAVOR = objects.Flavor('m1.test', vcpus=1, memory_mb=256, root_gb=1,
                        ephemeral_gb=0)
STARTED = virtevent.EVENT_LIFECYCLE_STARTED
STOPPED = virtevent.EVENT_LIFECYCLE_STOPPED
PAUSED = virtevent.EVENT_LIFECYCLE_PAUSED


def _vm(instance, state, domid='-1'):
    return {'uuid': 'u-1', 'name_label': instance.name,
            'is_a_template': False, 'is_a_snapshot': False,
            'is_control_domain': False, 'power_state': state,
            'domid': domid,
            'other_config': mapping.instance_tags(instance)}


class _Feed:
    """The watcher's polls, issued and answered one at a time."""

    def __init__(self):
        self.emitted = []
        self.watcher = events.EventWatcher(
            None, lambda *e: self.emitted.append(e), 1)
        self.watcher.synced.set()

    def issue(self):
        return self.watcher._issue()

    def answer(self, number, *events):
        for ref, state, record in events:
            if record is None:
                event = {'ref': ref, 'operation': 'del'}
            else:
                event = {'ref': ref, 'operation': 'mod',
                         'snapshot': _vm(record, state[0], state[1])}
            self.watcher._handle(event, number=number)
        self.watcher._read = number
        self.watcher._expire(number)

    def poll(self, *events):
        self.answer(self.issue(), *events)


def _running(feed, instance, domid='5'):
    feed.poll(('r1', ('Running', domid), instance))
    assert feed.emitted == [(instance.uuid, STARTED)]
    feed.emitted.clear()


def _operated(feed, instance, state, **kwargs):
    """An operation of the driver, ending while a poll is in flight.

    :returns: the number of that poll.
    """
    in_flight = feed.issue()
    feed.watcher.claim(instance.uuid)
    feed.watcher.settle(instance.uuid, state, **kwargs)
    return in_flight


@pytest.fixture
def one():
    return objects.Instance.new('one', FLAVOR, 'img')


def test_held_back_during_an_operation_and_not_repeated_after(one):
    feed = _Feed()
    _running(feed, one)
    feed.watcher.claim(one.uuid)
    # Seen while the driver stops it: the driver announces it.
    feed.poll(('r1', ('Halted', '-1'), one))
    assert feed.watcher.settle(one.uuid, 'Halted') == []
    feed.poll()
    assert feed.emitted == []


@pytest.mark.parametrize('seen', [
    # The poll in flight was answered after the change: a duplicate.
    ('Halted', '-1'),
    # Or before: the VM as it was, same domain, stale.
    ('Running', '5')], ids=['duplicate', 'stale'])
def test_an_answer_of_the_poll_in_flight_tells_nothing_new(one, seen):
    feed = _Feed()
    _running(feed, one)
    in_flight = _operated(feed, one, 'Halted')
    feed.answer(in_flight, ('r1', seen, one))
    # The next poll, issued after, has the change, if not told yet.
    feed.poll(('r1', ('Halted', '-1'), one))
    assert feed.emitted == []


def test_a_spawn_seen_halted_then_running_emits_nothing_more(one):
    feed = _Feed()
    in_flight = _operated(feed, one, 'Running')
    # The clone as it was before the start; then the started VM.
    feed.answer(in_flight, ('r1', ('Halted', '-1'), one))
    feed.poll(('r1', ('Running', '3'), one))
    assert feed.emitted == []
    # A restart by someone else is still seen.
    feed.poll(('r1', ('Running', '4'), one))
    assert feed.emitted == [(one.uuid, STOPPED), (one.uuid, STARTED)]


def test_a_whole_lifecycle_in_one_answer_emits_nothing(one):
    # XAPI batches: spawn, stop and removal reach the watcher at once.
    feed = _Feed()
    in_flight = feed.issue()
    for state in ('Running', 'Halted', None):
        feed.watcher.claim(one.uuid)
        feed.watcher.settle(one.uuid, state)
    feed.answer(in_flight)
    feed.poll(('r1', ('Halted', '-1'), one))
    feed.poll(('r1', None, None))
    assert feed.emitted == []


def test_an_outside_change_after_the_operation_is_emitted_once(one):
    feed = _Feed()
    feed.poll(('r1', ('Halted', '-1'), one))
    in_flight = _operated(feed, one, 'Running')
    # Paused by another client before the poll in flight was answered.
    feed.answer(in_flight, ('r1', ('Paused', '3'), one))
    assert feed.emitted == [(one.uuid, PAUSED)]
    # The guest shuts itself down later.
    feed.poll(('r1', ('Halted', '-1'), one))
    feed.poll()
    assert feed.emitted == [(one.uuid, PAUSED), (one.uuid, STOPPED)]


def test_a_restart_after_a_stop_is_not_taken_for_stale(one):
    feed = _Feed()
    _running(feed, one, domid='5')
    in_flight = _operated(feed, one, 'Halted')
    # Running again, in a new domain: started by someone else.
    feed.answer(in_flight, ('r1', ('Running', '9'), one))
    assert feed.emitted == [(one.uuid, STARTED)]


def test_a_failed_operation_reports_what_changed(one):
    feed = _Feed()
    _running(feed, one)
    feed.watcher.claim(one.uuid)
    # The guest stopped itself while the driver tried to pause it.
    feed.poll(('r1', ('Halted', '-1'), one))
    assert feed.emitted == []
    changes = feed.watcher.settle(one.uuid, None, failed=True)
    feed.watcher.send(changes)
    assert feed.emitted == [(one.uuid, STOPPED)]
    feed.poll(('r1', ('Halted', '-1'), one))
    assert feed.emitted == [(one.uuid, STOPPED)]


def test_claims_nest(one):
    feed = _Feed()
    _running(feed, one)
    feed.watcher.claim(one.uuid)
    feed.watcher.claim(one.uuid)
    feed.watcher.settle(one.uuid, 'Halted')
    # Still held by the outer claim.
    feed.poll(('r1', ('Halted', '-1'), one))
    feed.watcher.settle(one.uuid, 'Halted')
    feed.poll()
    assert feed.emitted == []


def test_an_announcement_is_forgotten_once_read_past(one):
    feed = _Feed()
    _running(feed, one)
    feed.watcher.claim(one.uuid)
    feed.watcher.settle(one.uuid, 'Halted')
    assert one.uuid in feed.watcher._told
    # A poll issued after, telling of other VMs only.
    feed.poll()
    assert feed.watcher._told == {}
    # So an old state is a change again: started by someone else.
    feed.poll(('r1', ('Running', '5'), one))
    assert feed.emitted == [(one.uuid, STARTED)]


def test_a_vm_created_and_removed_between_two_answers_is_stopped(one):
    # XAPI tells nothing of a VM created and destroyed since a poll's
    # token: the spawn's VM, removed by someone else at once.
    feed = _Feed()
    in_flight = _operated(feed, one, 'Running', created='r1')
    feed.answer(in_flight)
    assert feed.emitted == []
    feed.poll()
    assert feed.emitted == [(one.uuid, STOPPED)]
    feed.poll()
    assert feed.emitted == [(one.uuid, STOPPED)]


def test_a_created_vm_removed_by_someone_else_is_stopped_once(one):
    feed = _Feed()
    in_flight = _operated(feed, one, 'Running', created='r1')
    feed.answer(in_flight, ('r1', None, None))
    feed.poll()
    assert feed.emitted == [(one.uuid, STOPPED)]


class _Lookup:
    """Answers VM.get_power_state as XAPI does for a VM that is gone."""

    def __init__(self, exists):
        self.xenapi = self
        self.VM = self
        self.exists = exists
        self.asked = []

    def get_power_state(self, ref):
        self.asked.append(ref)
        if not self.exists:
            raise XenAPI.Failure(['HANDLE_INVALID', 'VM', ref])
        return 'Running'


@pytest.mark.parametrize('exists', [True, False])
def test_a_created_vm_the_poll_in_flight_missed_is_looked_up(one, exists):
    feed = _Feed()
    in_flight = _operated(feed, one, 'Running', created='r1')
    lookup = _Lookup(exists)
    feed.answer(in_flight)
    feed.watcher._expire(in_flight, lookup)
    assert lookup.asked == ['r1']
    assert feed.emitted == ([] if exists else [(one.uuid, STOPPED)])
    if exists:
        # Created after that answer: the next one tells of it.
        feed.poll(('r1', ('Running', '3'), one))
        assert feed.emitted == []
