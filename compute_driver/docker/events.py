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

"""A thread following ``docker events`` for this backend's containers.

Docker's event stream is the only source of lifecycle events: every
start, stop, kill, pause and unpause, whether the driver or someone with
the docker CLI did it, reaches the listener once. The stream is filtered
by our uuid and host labels, so other containers cost nothing.

When dockerd goes away the stream ends; the thread reconnects with a
growing delay and asks for the events since the last one it saw (dockerd
replays them from its in-memory log), so a restart loses none of the
events dockerd kept.

Besides lifecycle events, the stream carries the ``create`` and
``destroy`` of our containers and every state change to an optional
observer, :class:`Observer`: it keeps the driver's resource totals
(:mod:`.usage`) and wakes the operations waiting for a container to
reach a state or disappear (:class:`Waiters`) instead of polling.
"""

import collections.abc
import contextlib
import itertools
import logging
import threading
import time
import typing

from compute_driver.docker import mapping
from compute_driver.docker import usage as dusage
from compute_driver import exception

LOG = logging.getLogger(__name__)

#: Seconds between reconnection attempts: doubled after each failure up
#: to the maximum.
RETRY_INITIAL = 0.2
RETRY_MAX = 5.0

#: ``emit(uuid, transition, timestamp)``.
Emit = collections.abc.Callable[[str, int, float], None]

#: ``observe(action, container_id, attributes)``: every event of ours,
#: ``attributes`` being the container's labels plus ``name`` and
#: ``image``.
Observe = collections.abc.Callable[[str, str, dict], None]

#: Numbers every stream connection of the process, across watchers, so
#: that a new watcher's first connection is not taken for an old one's.
_CONNECTION_IDS = itertools.count(1)

#: Actions followed besides the lifecycle ones of ``mapping.EVENT_MAP``.
CHANGE_ACTIONS = ('create', 'destroy')

#: Docker's state of a container after each event that changes it.
STATE_AFTER_EVENT = {'create': 'created', 'start': 'running',
                     'unpause': 'running', 'pause': 'paused',
                     'die': 'exited'}

#: Seconds between two checks of a container awaited without events (the
#: stream is down): the first wait, doubled up to the last.
POLL_INITIAL = 0.01
POLL_MAX = 0.5
#: The longest wait for an event before checking anyway: the event
#: normally wakes the waiter long before.
EVENT_WAIT_MAX = 1.0


class EventWatcher:
    """Follow the event stream on a daemon thread until :meth:`stop`.

    :param make_client: returns a fresh ``APIClient``; called for every
        connection, so a long-lived stream never shares a connection with
        the operations.
    :param host: the compute host, as in the containers' host label.
    :param emit: called for each lifecycle event, from the thread.
    :param observe: called for every event, before ``emit``.
    """

    def __init__(self, make_client: collections.abc.Callable[[], typing.Any],
                 host: str, emit: Emit,
                 observe: Observe | None = None) -> None:
        self._make_client = make_client
        self._filters = {'type': ['container'],
                         'event': sorted(set(mapping.EVENT_MAP) |
                                         set(CHANGE_ACTIONS)),
                         'label': [mapping.UUID,
                                   '%s=%s' % (mapping.HOST, host)]}
        self._emit = emit
        self._observe = observe
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._stream: typing.Any = None
        # dockerd's clock, in nanoseconds, of the last event handled.
        self._since_ns = time.time_ns()
        self._thread = threading.Thread(
            target=self._run, name='docker-events', daemon=True)
        #: Times the stream was (re)opened; for tests and logs.
        self.connections = 0
        self._connection_id = 0

    def start(self, wait: float = 5.0) -> bool:
        """Start the thread and wait until the stream is open.

        :returns: whether it opened within ``wait`` seconds; events that
            happen before are replayed once it does.
        """
        self._thread.start()
        return self._connected.wait(wait)

    def stop(self, timeout: float = 5.0) -> None:
        """Close the stream and wait for the thread to end."""
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                LOG.debug('Closing the event stream failed', exc_info=True)
        if self._thread.is_alive() and (
                self._thread is not threading.current_thread()):
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def generation(self) -> int | None:
        """The stream's current connection, or ``None`` when it is down.

        It changes at each reconnection, after which events may have been
        lost (a restarted dockerd has forgotten them).
        """
        if not self._connected.is_set():
            return None
        return self._connection_id

    def _since(self) -> str:
        seconds, nanos = divmod(self._since_ns, 10 ** 9)
        return '%d.%09d' % (seconds, nanos)

    def _run(self) -> None:
        delay = RETRY_INITIAL
        while not self._stop.is_set():
            try:
                self._follow()
                delay = RETRY_INITIAL
            except Exception as exc:
                if self._stop.is_set():
                    break
                LOG.warning('Docker event stream lost (%s); reconnecting '
                            'in %.1fs', exc, delay)
            self._connected.clear()
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, RETRY_MAX)

    def _follow(self) -> None:
        api = self._make_client()
        try:
            stream = api.events(since=self._since(), filters=self._filters,
                                decode=True)
            with self._lock:
                self._stream = stream
            if self._stop.is_set():
                return
            self.connections += 1
            self._connection_id = next(_CONNECTION_IDS)
            self._connected.set()
            for event in stream:
                if self._stop.is_set():
                    return
                self._handle(event)
        finally:
            with self._lock:
                self._stream = None
            api.close()

    def _handle(self, event: dict) -> None:
        time_ns = event.get('timeNano') or 0
        if time_ns:
            # The next connection asks for what came after this one only.
            self._since_ns = max(self._since_ns, time_ns + 1)
        action = (event.get('Action') or event.get('status') or ''
                  ).split(':')[0]
        actor = event.get('Actor') or {}
        labels = actor.get('Attributes') or {}
        if self._observe is not None:
            try:
                self._observe(action, actor.get('ID') or event.get('id') or
                              '', labels)
            except Exception:
                LOG.exception('Handling Docker event %s failed', action)
        transition = mapping.EVENT_MAP.get(action)
        uuid = labels.get(mapping.UUID)
        if transition is None or not uuid:
            return
        self._emit(uuid, transition, time_ns / 1e9 if time_ns else
                   time.time())


class Waiters:
    """Threads waiting for something to happen to a container.

    :meth:`watching` gives a ``threading.Event`` that :meth:`notify`
    sets whenever an event about that container arrives; the waiter
    clears it, checks the container, and waits on it again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = {}

    @contextlib.contextmanager
    def watching(self, name: str) -> collections.abc.Iterator[
            threading.Event]:
        """Be woken by events about container ``name`` in the block."""
        changed = threading.Event()
        with self._lock:
            self._waiting.setdefault(name, []).append(changed)
        try:
            yield changed
        finally:
            with self._lock:
                waiting = self._waiting.get(name, [])
                waiting.remove(changed)
                if not waiting:
                    self._waiting.pop(name, None)

    def notify(self, name: str) -> None:
        """Wake whoever waits on container ``name``."""
        with self._lock:
            waiting = list(self._waiting.get(name, ()))
        for changed in waiting:
            changed.set()

    def wait(self, name: str, done: collections.abc.Callable[[], bool],
             timeout: float, streaming: collections.abc.Callable[[], bool],
             operation: str, what: collections.abc.Callable[[], str]
             ) -> None:
        """Wait until ``done()``, woken by events about container ``name``.

        :param streaming: whether the event stream is connected; without
            it the check is repeated after a growing delay.
        :raises BackendError: after ``timeout`` seconds, saying
            ``what()``.
        """
        deadline = time.monotonic() + timeout
        delay = POLL_INITIAL
        with self.watching(name) as changed:
            while True:
                # Cleared before the check: an event in between wakes the
                # wait below at once.
                changed.clear()
                if done():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise exception.BackendError(
                        operation=operation, instance=name,
                        reason='%s after %ds' % (what(), timeout))
                if streaming():
                    changed.wait(min(EVENT_WAIT_MAX, left))
                else:
                    changed.wait(min(delay, left))
                    delay = min(delay * 2, POLL_MAX)


class Observer:
    """Follows every event of ours into the totals and the waiters.

    The :class:`EventWatcher`'s ``observe`` callable.
    """

    def __init__(self, usage: dusage.Usage, waiters: Waiters) -> None:
        self._usage = usage
        self._waiters = waiters

    def __call__(self, action: str, container_id: str,
                 attributes: dict) -> None:
        if action == 'create':
            self._usage.add_labelled(container_id, attributes)
        elif action == 'destroy':
            self._usage.remove(container_id)
        elif action in STATE_AFTER_EVENT:
            self._usage.set_state(container_id, STATE_AFTER_EVENT[action])
        name = attributes.get('name')
        if name:
            self._waiters.notify(name)
        self._waiters.notify(container_id)
