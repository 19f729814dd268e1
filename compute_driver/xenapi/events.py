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

"""The thread that turns XAPI's VM events into lifecycle events.

It long-polls ``event.from`` on the VM and task classes with its own
session (a blocked call would otherwise hold a pooled one), remembers the
power state and instance of every instance VM and the records of the
templates and snapshots (the images), and emits a lifecycle event
for each change it sees, whoever made it: this backend, another client or
the guest itself. The instances it knows let the driver claim resources
and find VMs without listing them all, and the tasks it sees finish wake
whoever waits for them (:meth:`EventWatcher.wait_task`), so a task is
followed without polling it.

XAPI coalesces the changes of one object between two polls into one event,
so a VM stopped and started again between two polls looks unchanged;
the contract requires no event for such pairs (reboots).
"""

import collections
import logging
import threading
import typing

from compute_driver import objects
from compute_driver.xenapi import connection
from compute_driver.xenapi import mapping

LOG = logging.getLogger(__name__)

Emit = typing.Callable[[str, int], None]

#: How many finished tasks are remembered for a waiter that asks for one
#: after the event went by; XAPI tasks of this backend are destroyed by
#: it as soon as it has read them.
FINISHED_TASKS = 1024

#: How many VMs :meth:`EventWatcher.behind` remembers the last event of.
TOUCHED_VMS = 4096


class EventWatcher:
    """Polls ``event.from`` in a daemon thread until :meth:`stop`.

    :param pool: where to log in; the watcher's session is its own.
    :param emit: called with ``(instance uuid, EVENT_LIFECYCLE_*)``.
    :param poll_timeout: seconds one ``event.from`` waits.
    """

    def __init__(self, pool: connection.SessionPool, emit: Emit,
                 poll_timeout: float) -> None:
        self._pool = pool
        self._emit = emit
        self._poll_timeout = poll_timeout
        self._stopping = threading.Event()
        self._session: typing.Any = None
        self._session_lock = threading.Lock()
        # ref -> (instance uuid, power state, domid) as last seen.
        self._known: dict[str, tuple[str, str, str]] = {}
        # VM ref -> (the instance it stands for, XAPI power state)
        self._instances: dict[str, tuple[objects.Instance, str]] = {}
        # Instance uuid -> VM ref, to find one instance without a scan.
        self._by_uuid: dict[str, str] = {}
        # VM ref -> record of each template and snapshot
        self._templates: dict[str, dict[str, typing.Any]] = {}
        # Task ref -> its record once it finished; waiters are notified.
        self._finished: collections.OrderedDict[str, dict[str, typing.Any]]
        self._finished = collections.OrderedDict()
        self._changed = threading.Condition()
        # Polls issued, and the number of the last one whose events were
        # all handled: see mark() and caught_up().
        self._issued = 0
        self._read = 0
        # VM events handled; VM ref -> the number of its last one.
        self._handled = 0
        self._touched: collections.OrderedDict[str, int]
        self._touched = collections.OrderedDict()
        # The highest number _touched forgot.
        self._forgotten = 0
        self._thread = threading.Thread(target=self._run,
                                        name='xenapi-events', daemon=True)
        self.synced = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling, and log the watcher's session out."""
        self._stopping.set()
        self.synced.clear()
        with self._changed:
            self._changed.notify_all()
        with self._session_lock:
            session, self._session = self._session, None
        if session is not None:
            # The transport refuses further connections, so the SDK cannot
            # log in again; logging the session out over another
            # connection makes XAPI end the event.from in flight, and
            # closing the socket ends a call that XAPI has not answered.
            session.transport.abort()
            self._pool.logout_handle(session.handle)
        self._thread.join(timeout)

    def _connect(self) -> typing.Any:
        # The timeout must outlast the long poll it waits for.
        session = self._pool.login(timeout=self._poll_timeout + 30)
        with self._session_lock:
            self._session = session
        return session

    def _run(self) -> None:
        first = True
        while not self._stopping.is_set():
            try:
                session = self._session or self._connect()
                token = self._sync(session, emit=not first)
                first = False
                self.synced.set()
                while not self._stopping.is_set():
                    number = self._issue()
                    result = session.xenapi.event_from(
                        ['vm', 'task'], token, float(self._poll_timeout))
                    token = result['token']
                    for event in result['events']:
                        self._handle(event)
                    self._read = number
            except Exception as exc:
                # Until the next sync, what the watcher knows may be stale:
                # callers fall back to asking XAPI.
                self.synced.clear()
                if self._stopping.is_set():
                    break
                LOG.warning('XAPI event polling failed, starting over: %s',
                            exc)
                with self._session_lock:
                    broken, self._session = self._session, None
                if broken is not None:
                    connection.close_session(broken)
                self._stopping.wait(1.0)

    def _sync(self, session: typing.Any, emit: bool) -> str:
        """Learn every instance's state; emit what changed if ``emit``.

        :returns: the token to poll from.
        """
        number = self._issue()
        result = session.xenapi.event_from(['vm', 'task'], '', 0.0)
        seen = set()
        for event in result['events']:
            if event.get('class', 'vm').lower() == 'vm':
                seen.add(event['ref'])
            self._handle(event, emit=emit)
        for ref in set(self._known) - seen:
            self._handle({'ref': ref, 'operation': 'del'}, emit=emit)
        self._read = number
        return result['token']

    def _issue(self) -> int:
        with self._changed:
            self._issued += 1
            return self._issued

    def mark(self) -> tuple[int, int]:
        """A mark to pass :meth:`behind` once XAPI made a change to a VM.

        Take it after the call that made the change returned.
        """
        with self._changed:
            return self._issued, self._handled

    def behind(self, mark: tuple[int, int], ref: str) -> bool:
        """Whether the watcher knows nothing of VM ``ref`` after ``mark``.

        That is, neither that change for sure nor a later one: so until
        the watcher read in full a poll it issued after the mark was
        taken (whose answer holds every change XAPI made before), or
        handled an event of the VM after it; the poll in flight at the
        mark may have been answered before the change, or after a later
        one. False while the watcher is not in sync.
        """
        issued, handled = mark
        with self._changed:
            last = self._touched.get(ref)
            if last is None:
                last = self._forgotten
            return (self.synced.is_set() and self._read <= issued and
                    last <= handled)

    def _handle(self, event: dict[str, typing.Any],
                emit: bool = True) -> None:
        ref = event['ref']
        record = event.get('snapshot')
        if event.get('class', 'vm').lower() == 'task':
            self._task_event(ref, record)
            return
        with self._changed:
            self._handled += 1
            self._touched[ref] = self._handled
            self._touched.move_to_end(ref)
            if len(self._touched) > TOUCHED_VMS:
                _, self._forgotten = self._touched.popitem(last=False)
        if event['operation'] == 'del' or record is None:
            known = self._known.pop(ref, None)
            with self._changed:
                self._forget(ref)
                self._templates.pop(ref, None)
            if known is not None and emit and known[1] != 'Halted':
                self._send(known[0], 'Halted', known[1])
            return
        instance = (mapping.instance_of(record)
                    if mapping.is_instance(record) else None)
        with self._changed:
            if (record.get('is_a_template') and
                    not record.get('is_control_domain')):
                self._templates[ref] = record
            else:
                self._templates.pop(ref, None)
        if instance is None:
            self._known.pop(ref, None)
            with self._changed:
                self._forget(ref)
            return
        uuid = instance.uuid
        after = record['power_state']
        domid = str(record.get('domid', '-1'))
        _, before, was = self._known.get(ref, (uuid, 'Halted', '-1'))
        self._known[ref] = (uuid, after, domid)
        with self._changed:
            self._instances[ref] = (instance, after)
            self._by_uuid[uuid] = ref
            # For wait_vm().
            self._changed.notify_all()
        if not emit:
            return
        if (before == after and was != domid and
                '-1' not in (was, domid)):
            # event.from reports the latest record of what changed since
            # the last poll: a stop and start in between leave the power
            # state as it was, but the domain is a new one.
            self._send(uuid, 'Halted', before)
            before = 'Halted'
        self._send(uuid, after, before)

    def _forget(self, ref: str) -> None:
        # Called with self._changed held.
        gone = self._instances.pop(ref, None)
        if gone is not None and self._by_uuid.get(gone[0].uuid) == ref:
            del self._by_uuid[gone[0].uuid]

    def _task_event(self, ref: str,
                    record: dict[str, typing.Any] | None) -> None:
        if record is None or record.get('status') == 'pending':
            return
        with self._changed:
            self._finished[ref] = record
            self._finished.move_to_end(ref)
            while len(self._finished) > FINISHED_TASKS:
                self._finished.popitem(last=False)
            self._changed.notify_all()

    def wait_task(self, task: str,
                  timeout: float) -> dict[str, typing.Any] | None:
        """The record of a task once it finished, or ``None``.

        ``None`` when ``timeout`` seconds passed first, or the watcher is
        not following events (stopped, or starting over after a
        failure): the caller then asks XAPI itself.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: (task in self._finished or
                         not self.synced.is_set()), timeout)
            return self._finished.pop(task, None)

    def instances(self) -> dict[str, tuple[objects.Instance, str]] | None:
        """Every instance VM: ref -> (instance, XAPI power state).

        ``None`` while the watcher is not in sync with XAPI.
        """
        if not self.synced.is_set():
            return None
        with self._changed:
            return dict(self._instances)

    def find(self, uuid: str
             ) -> tuple[str, objects.Instance, str] | None:
        """``(VM ref, instance, XAPI power state)`` of one instance.

        ``None`` when the watcher does not know it, or is not in sync.
        """
        if not self.synced.is_set():
            return None
        with self._changed:
            ref = self._by_uuid.get(uuid)
            if ref is None:
                return None
            instance, state = self._instances[ref]
            return ref, instance, state

    def wait_vm(self, uuid: str, state: str | None, timeout: float
                ) -> tuple[str, objects.Instance, str] | None:
        """What :meth:`find` returns, once the watcher knows the instance.

        :param state: also wait until its VM is in this XAPI power state.
        :returns: ``None`` when ``timeout`` seconds passed first, or the
            watcher is not in sync.
        """
        def seen() -> bool:
            ref = self._by_uuid.get(uuid)
            return not self.synced.is_set() or (
                ref is not None and
                state in (None, self._instances[ref][1]))

        with self._changed:
            if not self._changed.wait_for(seen, timeout):
                return None
        return self.find(uuid)

    def templates(self) -> dict[str, dict[str, typing.Any]] | None:
        """The records of every template and snapshot, by VM ref.

        ``None`` while the watcher is not in sync with XAPI.
        """
        if not self.synced.is_set():
            return None
        with self._changed:
            return dict(self._templates)

    def _send(self, uuid: str, after: str, before: str) -> None:
        change = mapping.transition(before, after)
        if change is not None:
            self._emit(uuid, change)
