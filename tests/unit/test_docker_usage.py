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

"""The docker backend's resource totals and event waits, without dockerd."""

import threading

import pytest

from compute_driver.docker import events as devents
from compute_driver.docker import mapping
from compute_driver.docker import usage as dusage
from compute_driver import exception
from compute_driver import objects


def _instance(name='vm', vcpus=2, memory_mb=256, disk_gb=1):
    flavor = objects.Flavor('x1', vcpus=vcpus, memory_mb=memory_mb,
                            root_gb=disk_gb)
    return objects.Instance.new(name, flavor, 'img')


def _summary(container_id, instance, state='running', name=None):
    return {'Id': container_id, 'State': state,
            'Names': ['/' + (name or 'c-' + instance.uuid)],
            'Labels': mapping.instance_labels(instance, 'h')}


def test_totals_follow_adds_and_removes():
    usage = dusage.Usage()
    a, b = _instance('a'), _instance('b', vcpus=1, memory_mb=64)
    usage.add('1', a, 'running')
    usage.add('1', a, 'running')  # the create event after the driver's
    usage.add('2', b)
    assert usage.totals() == (3, 320, 2)
    assert usage.running() == 1
    usage.set_state('2', 'paused')
    assert usage.running() == 2
    usage.remove('1')
    usage.remove('1')
    assert usage.totals() == (1, 64, 1)
    usage.remove_instance(b.uuid)
    assert usage.totals() == (0, 0, 0)
    assert usage.running() == 0


def test_an_instance_counts_once_across_its_containers():
    # A revert briefly has the old container aside and the new one.
    usage = dusage.Usage()
    a = _instance('a')
    usage.add('old', a)
    usage.add('new', a)
    assert usage.totals() == (2, 256, 1)
    usage.remove('old')
    assert usage.totals() == (2, 256, 1)
    usage.remove('new')
    assert usage.totals() == (0, 0, 0)


def test_taken_uuid_and_name_are_refused():
    usage = dusage.Usage()
    a = _instance('a')
    usage.add('1', a)
    with pytest.raises(exception.InstanceExists):
        usage.check_unique(a)
    with pytest.raises(exception.InstanceExists):
        usage.check_unique(_instance('a'))
    usage.check_unique(_instance('b'))
    assert usage.counts(a.uuid)
    usage.remove('1')
    usage.check_unique(a)
    assert not usage.counts(a.uuid)


def test_labels_that_describe_no_instance_are_ignored():
    usage = dusage.Usage()
    usage.add_labelled('1', {mapping.UUID: 'x'})
    assert usage.totals() == (0, 0, 0)
    a = _instance('a')
    usage.add_labelled('2', mapping.instance_labels(a, 'h'))
    assert usage.totals() == (2, 256, 1)


def test_sync_replaces_the_totals_and_replays_what_raced_with_it():
    usage = dusage.Usage()
    stale, kept, created, removed = (_instance(n) for n in 'skcr')
    usage.add('stale', stale)

    def listing():
        # Events handled while the listing is in flight: one container
        # created after dockerd answered, one removed after.
        usage.add('created', created)
        usage.remove('removed')
        return [_summary('kept', kept), _summary('removed', removed),
                {'Id': 'foreign', 'Labels': {}, 'Names': ['/x']}]

    usage.sync(7, listing)
    assert usage.totals() == (4, 512, 2)
    usage.check_unique(stale)
    usage.check_unique(removed)
    with pytest.raises(exception.InstanceExists):
        usage.check_unique(created)


def test_a_failed_sync_keeps_the_totals_and_stays_stale():
    usage = dusage.Usage()
    usage.add('1', _instance())

    def listing():
        raise ConnectionError('dockerd went away')

    with pytest.raises(ConnectionError):
        usage.sync(1, listing)
    assert usage.totals() == (2, 256, 1)
    assert not usage.fresh(1, 60)


def test_freshness_needs_the_same_connected_stream_and_a_recent_sync():
    usage = dusage.Usage()
    assert not usage.fresh(1, 60)
    usage.sync(1, list)
    assert usage.fresh(1, 60)
    # Reconnected: events may have been lost in between.
    assert not usage.fresh(2, 60)
    # No stream: nothing keeps the totals up to date.
    assert not usage.fresh(None, 60)
    # 0 lists at every claim.
    assert not usage.fresh(1, 0)


def test_parallel_updates_keep_the_totals_exact():
    usage = dusage.Usage()
    instances = [_instance('vm%d' % i, vcpus=1, memory_mb=1, disk_gb=0)
                 for i in range(200)]

    def churn(part):
        for i, instance in enumerate(part):
            usage.add(instance.uuid, instance)
            if i % 2:
                usage.remove(instance.uuid)

    threads = [threading.Thread(target=churn, args=(instances[i::4],))
               for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert usage.totals() == (100, 100, 0)


# -- events ------------------------------------------------------------------

class _Stream:
    """Its events, then open until closed, as dockerd's stream stays."""

    def __init__(self, events):
        self.events = events
        self.closed = threading.Event()

    def __iter__(self):
        yield from self.events
        self.closed.wait(5)

    def close(self):
        self.closed.set()


class _EventApi:
    def __init__(self, events):
        self.stream = _Stream(events)
        self.filters = None

    def events(self, since, filters, decode):
        self.filters = filters
        stream, self.stream = self.stream, _Stream([])
        return stream

    def close(self):
        pass


def test_watcher_hands_every_event_to_the_observer():
    a = _instance('a')
    labels = dict(mapping.instance_labels(a, 'h'), name='c-a')
    api = _EventApi([
        {'Action': 'create', 'timeNano': 1, 'id': 'abc',
         'Actor': {'ID': 'abc', 'Attributes': labels}},
        {'Action': 'start', 'timeNano': 2,
         'Actor': {'ID': 'abc', 'Attributes': labels}},
        {'Action': 'destroy', 'timeNano': 3,
         'Actor': {'ID': 'abc', 'Attributes': labels}},
    ])
    observed, emitted = [], []
    done = threading.Event()

    def observe(action, container_id, attributes):
        observed.append((action, container_id, attributes['name']))
        if action == 'destroy':
            done.set()

    watcher = devents.EventWatcher(
        lambda: api, 'h', lambda *args: emitted.append(args[:2]),
        observe=observe)
    assert watcher.start()
    assert done.wait(5)
    generation = watcher.generation
    assert generation is not None
    watcher.stop()
    assert watcher.generation is None
    # Another watcher's connection is another generation.
    again = devents.EventWatcher(lambda: _EventApi([]), 'h',
                                 lambda *args: None)
    assert again.start()
    assert again.generation not in (None, generation)
    again.stop()
    assert {'create', 'destroy', 'start', 'die'} <= set(
        api.filters['event'])
    assert observed == [('create', 'abc', 'c-a'), ('start', 'abc', 'c-a'),
                        ('destroy', 'abc', 'c-a')]
    assert [uuid for uuid, _ in emitted] == [a.uuid]


def test_waiters_are_woken_by_events_about_their_container():
    waiters = devents.Waiters()
    with waiters.watching('c1') as changed, waiters.watching('c1') as same:
        waiters.notify('c2')
        assert not changed.is_set()
        waiters.notify('c1')
        assert changed.is_set() and same.is_set()
    # Nobody waits any more: a notification is a no-op.
    waiters.notify('c1')


def test_state_of_an_instance_prefers_its_live_container():
    usage = dusage.Usage()
    a = _instance('a')
    assert usage.state_of(a.uuid) is None
    usage.add('old', a, 'exited')
    assert usage.state_of(a.uuid) == 'exited'
    # A revert's new container, created while the old one is stopped.
    usage.add('new', a, 'running')
    assert usage.state_of(a.uuid) == 'running'


def test_syncs_run_one_at_a_time():
    usage = dusage.Usage()
    a, b = _instance('a'), _instance('b', vcpus=1)
    listing = threading.Event()
    release = threading.Event()
    calls = []

    def slow():
        calls.append('first')
        listing.set()
        assert release.wait(5)
        return [_summary('1', a)]

    def second():
        calls.append('second')
        return [_summary('1', a), _summary('2', b)]

    first = threading.Thread(target=usage.sync, args=(1, slow))
    first.start()
    assert listing.wait(5)
    other = threading.Thread(target=usage.sync, args=(1, second))
    other.start()
    # Made while the first listing is in flight: replayed on top of it,
    # and the second listing, which starts after, sees the container.
    usage.add('2', b)
    other.join(0.2)
    assert calls == ['first']
    release.set()
    first.join(5)
    other.join(5)
    assert calls == ['first', 'second']
    assert usage.totals()[0] == 3


def test_observer_keeps_the_totals_and_wakes_waiters():
    usage, waiters = dusage.Usage(), devents.Waiters()
    observe = devents.Observer(usage, waiters)
    a = _instance('a')
    labels = dict(mapping.instance_labels(a, 'h'), name='c-a')
    with waiters.watching('c-a') as by_name, \
            waiters.watching('abc') as by_id:
        observe('create', 'abc', labels)
        assert by_name.is_set() and by_id.is_set()
    assert usage.totals() == (2, 256, 1) and usage.running() == 0
    observe('start', 'abc', labels)
    assert usage.running() == 1
    observe('pause', 'abc', labels)
    assert usage.state_of(a.uuid) == 'paused'
    observe('destroy', 'abc', labels)
    assert usage.totals() == (0, 0, 0)


@pytest.mark.parametrize('streaming', [True, False])
def test_wait_ends_when_done_and_times_out_in_words(streaming):
    waiters = devents.Waiters()
    checks = []

    def done():
        checks.append(None)
        if len(checks) == 2:
            return True
        waiters.notify('c1')
        return False

    waiters.wait('c1', done, 5, lambda: streaming, 'wait', lambda: 'x')
    assert len(checks) == 2
    with pytest.raises(exception.BackendError) as exc:
        waiters.wait('c1', lambda: False, 0, lambda: streaming, 'destroy',
                     lambda: 'the container is still being removed')
    assert 'still being removed after 0s' in str(exc.value)
