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

It long-polls ``event.from`` on the VM class with its own session (a
blocked call would otherwise hold a pooled one), remembers the power state
of every instance VM and emits a lifecycle event for each change it sees,
whoever made it: this backend, another client or the guest itself.

XAPI coalesces the changes of one object between two polls into one event,
so a VM stopped and started again between two polls looks unchanged;
the contract requires no event for such pairs (reboots).
"""

import logging
import threading
import typing

from compute_driver.xenapi import session as xsession
from compute_driver.xenapi import vm_utils

LOG = logging.getLogger(__name__)

Emit = typing.Callable[[str, int], None]


class EventWatcher:
    """Polls ``event.from`` in a daemon thread until :meth:`stop`.

    :param pool: where to log in; the watcher's session is its own.
    :param emit: called with ``(instance uuid, EVENT_LIFECYCLE_*)``.
    :param poll_timeout: seconds one ``event.from`` waits.
    """

    def __init__(self, pool: xsession.SessionPool, emit: Emit,
                 poll_timeout: float) -> None:
        self._pool = pool
        self._emit = emit
        self._poll_timeout = poll_timeout
        self._stopping = threading.Event()
        self._session: typing.Any = None
        self._session_lock = threading.Lock()
        # VM ref -> (instance uuid, XAPI power state)
        self._known: dict[str, tuple[str, str]] = {}
        self._thread = threading.Thread(target=self._run,
                                        name='xenapi-events', daemon=True)
        self.synced = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling, and log the watcher's session out."""
        self._stopping.set()
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
                    result = session.xenapi.event_from(
                        ['vm'], token, float(self._poll_timeout))
                    token = result['token']
                    for event in result['events']:
                        self._handle(event)
            except Exception as exc:
                if self._stopping.is_set():
                    break
                LOG.warning('XAPI event polling failed, starting over: %s',
                            exc)
                with self._session_lock:
                    broken, self._session = self._session, None
                if broken is not None:
                    xsession.close_session(broken)
                self._stopping.wait(1.0)

    def _sync(self, session: typing.Any, emit: bool) -> str:
        """Learn every instance's state; emit what changed if ``emit``.

        :returns: the token to poll from.
        """
        result = session.xenapi.event_from(['vm'], '', 0.0)
        seen = set()
        for event in result['events']:
            seen.add(event['ref'])
            self._handle(event, emit=emit)
        for ref in set(self._known) - seen:
            self._handle({'ref': ref, 'operation': 'del'}, emit=emit)
        return result['token']

    def _handle(self, event: dict[str, typing.Any],
                emit: bool = True) -> None:
        ref = event['ref']
        record = event.get('snapshot')
        if event['operation'] == 'del' or record is None:
            known = self._known.pop(ref, None)
            if known is not None and emit and known[1] != 'Halted':
                self._send(known[0], 'Halted', known[1])
            return
        if not vm_utils.is_instance(record):
            self._known.pop(ref, None)
            return
        uuid = record['other_config'][vm_utils.KEY_UUID]
        after = record['power_state']
        before = self._known.get(ref, (uuid, 'Halted'))[1]
        self._known[ref] = (uuid, after)
        if emit:
            self._send(uuid, after, before)

    def _send(self, uuid: str, after: str, before: str) -> None:
        change = vm_utils.transition(before, after)
        if change is not None:
            self._emit(uuid, change)
