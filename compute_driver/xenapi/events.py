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

The driver announces the transitions of its own operations itself, once
the instance's lock is released, since XAPI batches changes (a waiting
``event.from`` answers 50 ms after it wakes) and a whole spawn and stop
can reach the watcher as one event. So the watcher emits only what the
driver did not announce. While an operation of the driver runs on an
instance (:meth:`EventWatcher.claim`), its VM's events are not emitted;
when it ends (:meth:`EventWatcher.settle`) the state it left is what
listeners know. Then, for the events of answers to polls issued before
the operation ended -- answers that may have been produced before the
change, or after it -- an event is

* a duplicate, and skipped, when its power state is the one announced;
* stale, and skipped, when its state (and, for a live VM, its domain) is
  the one the VM had before the operation: the answer was produced
  before the change;
* otherwise a change by someone else after the operation, and emitted.

The first answer to a poll issued after the operation ended holds every
change made before, so from there on each event is compared with what
listeners know, as for any change. XAPI reports nothing of a VM created
and destroyed between two of its answers: a VM the driver created and
someone else removed before any answer told of it is taken for stopped
once that first answer is read without it, or, should the answer to the
poll in flight not tell of it, once ``VM.get_power_state`` says it is
gone (one call, made only then).

Limits: an outside change that brings the VM back to the state it had
before the operation (a guest that shuts itself down just after the
driver started it), made before the poll in flight when the operation
ended was answered, is taken for stale and not emitted; XAPI answers
with records only, with nothing that would order such a change after
the driver's own. A changed domain tells a restart from a stale record
for live VMs only.
"""

import collections
import dataclasses
import logging
import threading
import typing

import XenAPI

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


@dataclasses.dataclass
class _Claim:
    """An operation of the driver under way on one instance."""

    #: Nested claims (an operation made of others).
    depth: int
    #: (power state, domid) listeners knew when it began.
    before: tuple[str, str]
    #: The VM's ref, when known.
    ref: str | None = None
    #: (VM ref, power state, domid) of the latest event held back.
    latest: tuple[str, str, str] | None = None


@dataclasses.dataclass
class _Told:
    """What the driver announced, until the watcher reads past it."""

    #: The power state announced; ``None``: the VM is gone.
    state: str | None
    before: tuple[str, str]
    #: The number of the last poll issued when it was announced.
    issued: int
    #: The ref of a VM the operation created that no event told of yet.
    unseen: str | None = None


#: Fields of a template that change while XAPI clones it and that
#: nothing found of an image depends on.
_BUSY_FIELDS = frozenset(('current_operations', 'allowed_operations'))


def _same(old: dict[str, typing.Any] | None,
          new: dict[str, typing.Any] | None) -> bool:
    """Whether two records of a template say the same of it as an image.

    XAPI reports a template each time a spawn clones it.
    """
    if old is None or new is None:
        return old is new
    return old.keys() == new.keys() and all(
        old[key] == new[key] for key in old if key not in _BUSY_FIELDS)


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
        # Changed whenever an image among them is; see images_version().
        self._images_version = 0
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
        # Instance uuid -> the driver's operation under way / the state
        # it announced at the end of one; see claim() and settle().
        self._claims: dict[str, _Claim] = {}
        self._told: dict[str, _Told] = {}
        # VM refs that _expire() took for gone; see vanished().
        self._vanished: collections.OrderedDict[str, None]
        self._vanished = collections.OrderedDict()
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
                        self._handle(event, number=number)
                    self._read = number
                    self._expire(number, session)
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
            self._handle(event, emit=emit, number=number)
        for ref in set(self._known) - seen:
            self._handle({'ref': ref, 'operation': 'del'}, emit=emit,
                         number=number)
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
                emit: bool = True, number: int = 0) -> None:
        ref = event['ref']
        record = event.get('snapshot')
        if event.get('class', 'vm').lower() == 'task':
            self._task_event(ref, record)
            return
        with self._changed:
            self._touch(ref)
        if event['operation'] == 'del' or record is None:
            with self._changed:
                known = self._known.pop(ref, None)
                self._forget(ref)
                self._template(ref, None)
                held = known is not None and self._held(
                    known[0], ref, None, '-1', number)
            if (known is not None and emit and known[1] != 'Halted' and
                    not held):
                self._send(known[0], 'Halted', known[1])
            return
        instance = (mapping.instance_of(record)
                    if mapping.is_instance(record) else None)
        with self._changed:
            self._template(ref, record if (
                record.get('is_a_template') and
                not record.get('is_control_domain')) else None)
        if instance is None:
            self._known.pop(ref, None)
            with self._changed:
                self._forget(ref)
            return
        uuid = instance.uuid
        after = record['power_state']
        domid = str(record.get('domid', '-1'))
        with self._changed:
            self._instances[ref] = (instance, after)
            self._by_uuid[uuid] = ref
            # For wait_vm().
            self._changed.notify_all()
        # settle() changes what listeners know from the driver's thread.
        with self._changed:
            if self._held(uuid, ref, after, domid, number):
                return
            _, before, was = self._known.get(ref, (uuid, 'Halted', '-1'))
            self._known[ref] = (uuid, after, domid)
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

    def _held(self, uuid: str, ref: str, after: str | None, domid: str,
              number: int) -> bool:
        """Whether an event is the driver's to announce, or announced.

        ``after`` is ``None`` for a VM gone. See the module's docstring
        for the rules.
        """
        with self._changed:
            claim = self._claims.get(uuid)
            if claim is not None:
                if after is not None:
                    claim.latest = (ref, after, domid)
                else:
                    claim.latest = None
                return True
            told = self._told.get(uuid)
            if told is None:
                return False
            if told.unseen == ref:
                told.unseen = None
            if told.state is not None and after is not None:
                # What listeners know, should the VM have been new to
                # the watcher when the operation ended.
                self._known.setdefault(ref, (uuid, told.state, '-1'))
            if number > told.issued:
                # Answered after the announcement: compared with what
                # listeners know, as any event.
                del self._told[uuid]
                return False
        if after is None or told.state is None:
            # A VM gone, as announced; or a record of the VM the driver
            # removed, from before.
            return told.state is None
        if after == told.state:
            # Duplicate: listeners know it; learn its domain.
            self._known[ref] = (uuid, after, domid)
            return True
        if after == told.before[0] and (
                after != 'Running' or
                domid in (told.before[1], '-1') or told.before[1] == '-1'):
            return True
        return False

    def claim(self, uuid: str) -> None:
        """Hold back the events of an instance the driver is changing.

        Until the matching :meth:`settle`; claims nest.
        """
        with self._changed:
            claim = self._claims.get(uuid)
            if claim is not None:
                claim.depth += 1
                return
            told = self._told.pop(uuid, None)
            ref = self._by_uuid.get(uuid) or (told.unseen if told else None)
            known = self._known.get(ref) if ref is not None else None
            before = (known[1], known[2]) if known else ('Halted', '-1')
            self._claims[uuid] = _Claim(1, before, ref)

    def settle(self, uuid: str, state: str | None, failed: bool = False,
               created: str | None = None) -> list[tuple[str, str, str]]:
        """End a :meth:`claim`: the driver announces ``state``.

        :param state: the XAPI power state the operation left, ``None``
            when it removed the VM.
        :param failed: the operation failed, and announces nothing: what
            the events held back changed is returned instead.
        :param created: the ref of the VM the operation created. XAPI
            tells nothing of a VM created and destroyed between two of
            its answers: if no event tells of it by the time a poll
            issued after this one is read, it is gone, and its stop is
            emitted then.
        :returns: ``(uuid, after, before)`` transitions for the caller to
            emit (see :meth:`send`) once the instance's lock is released.
        """
        with self._changed:
            claim = self._claims.get(uuid)
            if claim is None:
                return []
            claim.depth -= 1
            if claim.depth > 0:
                return []
            del self._claims[uuid]
            latest = claim.latest
            ref = (latest[0] if latest else
                   created or claim.ref or self._by_uuid.get(uuid))
            if failed:
                if latest is None:
                    return []
                self._known[latest[0]] = (uuid, latest[1], latest[2])
                return [(uuid, latest[1], claim.before[0])]
            self._told[uuid] = _Told(
                state, claim.before, self._issued,
                created if latest is None and state is not None else None)
            if ref is None:
                return []
            if state is None:
                self._known.pop(ref, None)
            elif latest is not None and latest[1] == state:
                self._known[ref] = (uuid, state, latest[2])
            else:
                # Its domain is learnt from the next event.
                self._known[ref] = (uuid, state, '-1')
            return []

    def _expire(self, number: int, session: typing.Any = None) -> None:
        """Forget the announcements poll ``number`` was issued after.

        Its answer, read in full, held every change made before them:
        what listeners know is up to date. A VM the driver created that
        the answer to the poll in flight at its announcement did not
        tell of is looked up with ``session``: that answer may have
        been produced before the VM was created, or after it was
        destroyed, and the next may not come before the poll's timeout.
        """
        gone = []
        unseen = []
        with self._changed:
            if not self._told:
                return
            for uuid, told in list(self._told.items()):
                if told.unseen is None or told.state is None:
                    if told.issued < number:
                        del self._told[uuid]
                elif told.issued < number:
                    # Created and destroyed between two answers.
                    del self._told[uuid]
                    self._vanish(told.unseen)
                    gone.append((uuid, 'Halted', told.state))
                elif told.issued == number and session is not None:
                    unseen.append((uuid, told.unseen))
        for uuid, ref in unseen:
            try:
                session.xenapi.VM.get_power_state(ref)
                continue
            except XenAPI.Failure as exc:
                if str(exc.details[0]) != 'HANDLE_INVALID':
                    raise
            with self._changed:
                left = self._told.get(uuid)
                if (left is None or left.unseen != ref or
                        left.state is None):
                    continue
                del self._told[uuid]
                self._vanish(ref)
                gone.append((uuid, 'Halted', left.state))
        self.send(gone)

    def _touch(self, ref: str) -> None:
        # Number a VM event handled (see behind()); with self._changed
        # held.
        self._handled += 1
        self._touched[ref] = self._handled
        self._touched.move_to_end(ref)
        if len(self._touched) > TOUCHED_VMS:
            _, self._forgotten = self._touched.popitem(last=False)

    def _vanish(self, ref: str) -> None:
        # A VM no event will tell of; with self._changed held.
        self._known.pop(ref, None)
        self._touch(ref)
        self._vanished[ref] = None
        if len(self._vanished) > TOUCHED_VMS:
            self._vanished.popitem(last=False)

    def vanished(self, ref: str) -> bool:
        """Whether VM ``ref`` was created and destroyed unseen.

        See :meth:`settle`'s ``created``.
        """
        with self._changed:
            return ref in self._vanished

    def send(self, changes: list[tuple[str, str, str]]) -> None:
        """Emit what :meth:`settle` returned."""
        for uuid, after, before in changes:
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

    def _template(self, ref: str,
                  record: dict[str, typing.Any] | None) -> None:
        # Note a template's record, None for one gone or no template any
        # more; with self._changed held.
        old = (self._templates.pop(ref, None) if record is None
               else self._templates.get(ref))
        if record is not None:
            self._templates[ref] = record
        if any(r is not None and mapping.is_image(r) for r in (old, record)) \
                and not _same(old, record):
            self._images_version += 1

    def images_version(self) -> int | None:
        """A number that changes whenever an image among the templates does.

        That is, whenever one appears, changes or goes; a template a
        spawn is building is no image. ``None`` while the watcher is not
        in sync with XAPI.
        """
        if not self.synced.is_set():
            return None
        with self._changed:
            return self._images_version

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
