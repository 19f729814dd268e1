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

"""libvirt's domain lifecycle events as the contract's lifecycle events.

libvirt's event loop (:mod:`compute_driver.libvirt.connection`) calls
:meth:`DomainEvents.on_domain_event` for every domain event; the events
of this library's domains become lifecycle events
(:class:`~compute_driver.event.LifecycleEvent`) handed to the driver's
``emit_event``. A Stopped event is held back for ``[libvirt]
lifecycle_event_delay`` seconds and dropped when the domain starts again
within that time, so a reboot does not look like a shutdown. A clean
shutdown waits on the same events (:meth:`DomainEvents.wait_for_shutoff`)
rather than polling.
"""

import logging
import threading
import time
import typing

import libvirt

from compute_driver import event as virtevent
from compute_driver.libvirt import mapping

LOG = logging.getLogger(__name__)

#: The longest a clean shutdown waits without looking at the domain's
#: state, should its Stopped event be lost (a reconnect in between).
_SHUTOFF_POLL = 2.0


def map_event(event: int, detail: int) -> int | None:
    """A libvirt lifecycle event as an ``EVENT_LIFECYCLE_*``, or ``None``.

    A managed save stops the domain with detail ``SAVED``: that is a
    suspend. Defined, undefined, shutdown-requested and crashed events have
    no lifecycle transition.
    """
    if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
        return virtevent.EVENT_LIFECYCLE_STARTED
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED:
            return virtevent.EVENT_LIFECYCLE_SUSPENDED
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
            return virtevent.EVENT_LIFECYCLE_MIGRATION_COMPLETED
        return virtevent.EVENT_LIFECYCLE_STOPPED
    if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED:
        if detail == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY:
            return virtevent.EVENT_LIFECYCLE_POSTCOPY_STARTED
        return virtevent.EVENT_LIFECYCLE_PAUSED
    if event == libvirt.VIR_DOMAIN_EVENT_RESUMED:
        return virtevent.EVENT_LIFECYCLE_RESUMED
    if event == libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED:
        return virtevent.EVENT_LIFECYCLE_SUSPENDED
    return None


class DomainEvents:
    """The lifecycle events of this library's domains.

    :param emit: called with each :class:`~compute_driver.event.Event`;
        never on libvirt's event-loop thread.
    :param stop_delay: seconds a Stopped event is held back (``[libvirt]
        lifecycle_event_delay``); 0 emits it at once.
    """

    def __init__(self, emit: typing.Callable[[virtevent.Event], None],
                 stop_delay: float) -> None:
        self._emit = emit
        self._stop_delay = stop_delay
        self._lock = threading.Lock()
        # uuid -> set when a Stopped event for the domain arrives; what
        # wait_for_shutoff waits on.
        self._stop_waiters: dict[str, list[threading.Event]] = {}
        self._held_stops: dict[str, threading.Timer] = {}

    def on_domain_event(self, uuid: str, name: str, event: int,
                        detail: int) -> None:
        """Handle one libvirt lifecycle event; for the event loop.

        Returns at once: listeners run on threads of their own.
        """
        if not name.startswith(mapping.DOMAIN_PREFIX):
            return
        transition = map_event(event, detail)
        if transition is None:
            return
        with self._lock:
            if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
                for waiter in self._stop_waiters.get(uuid, ()):
                    waiter.set()
            held = self._held_stops.pop(uuid, None)
            if held is not None:
                held.cancel()
                if transition == virtevent.EVENT_LIFECYCLE_STARTED:
                    LOG.debug('Instance %s started again; dropping its '
                              'held Stopped event', uuid)
            if (transition == virtevent.EVENT_LIFECYCLE_STOPPED and
                    self._stop_delay):
                lifecycle = virtevent.LifecycleEvent(uuid, transition)
                timer = threading.Timer(self._stop_delay, self._emit_held,
                                        (uuid, lifecycle))
                timer.daemon = True
                self._held_stops[uuid] = timer
                timer.start()
                return
        # Listeners may call back into the driver: never on the event-loop
        # thread, which those calls need.
        threading.Thread(
            target=self._emit,
            args=(virtevent.LifecycleEvent(uuid, transition),),
            name='libvirt-event-%s' % uuid[:8], daemon=True).start()

    def _emit_held(self, uuid: str, lifecycle: virtevent.Event) -> None:
        with self._lock:
            timer = self._held_stops.get(uuid)
            if timer is None or timer is not threading.current_thread():
                return
            del self._held_stops[uuid]
        self._emit(lifecycle)

    def wait_for_shutoff(self, dom: typing.Any, timeout: float,
                         retry_interval: float) -> bool:
        """Ask the guest to shut down until it has or time runs out.

        Waits for the domain's Stopped event rather than polling; its
        state is read again at each shutdown request and at least every
        :data:`_SHUTOFF_POLL` seconds, in case the event was lost.

        :returns: whether the domain is shut off.
        """
        uuid = dom.UUIDString()
        stopped = threading.Event()
        with self._lock:
            self._stop_waiters.setdefault(uuid, []).append(stopped)
        try:
            deadline = time.monotonic() + timeout
            next_request = 0.0
            while True:
                # Cleared before the state is read: an event arriving in
                # between ends the next wait at once.
                stopped.clear()
                if dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF:
                    return True
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now >= next_request:
                    try:
                        dom.shutdown()
                    except libvirt.libvirtError as exc:
                        # The guest may have stopped between the calls.
                        LOG.debug('Shutdown request failed: %s', exc)
                    next_request = now + retry_interval
                stopped.wait(max(0.0, min(next_request, deadline,
                                          now + _SHUTOFF_POLL) - now))
        finally:
            with self._lock:
                waiters = self._stop_waiters[uuid]
                waiters.remove(stopped)
                if not waiters:
                    del self._stop_waiters[uuid]

    def close(self) -> None:
        """Drop the Stopped events still held back."""
        with self._lock:
            for timer in self._held_stops.values():
                timer.cancel()
            self._held_stops.clear()
