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

"""Asynchronous events emitted by backends.

The transition values equal ``nova.virt.event`` so the Nova adapter can turn
a :class:`LifecycleEvent` into Nova's with the same numbers.
"""

import time

EVENT_LIFECYCLE_STARTED = 0
EVENT_LIFECYCLE_STOPPED = 1
EVENT_LIFECYCLE_PAUSED = 2
EVENT_LIFECYCLE_RESUMED = 3
EVENT_LIFECYCLE_SUSPENDED = 4
EVENT_LIFECYCLE_POSTCOPY_STARTED = 5
EVENT_LIFECYCLE_MIGRATION_COMPLETED = 6

NAMES = {
    EVENT_LIFECYCLE_STARTED: 'Started',
    EVENT_LIFECYCLE_STOPPED: 'Stopped',
    EVENT_LIFECYCLE_PAUSED: 'Paused',
    EVENT_LIFECYCLE_RESUMED: 'Resumed',
    EVENT_LIFECYCLE_SUSPENDED: 'Suspended',
    EVENT_LIFECYCLE_POSTCOPY_STARTED: 'Postcopy started',
    EVENT_LIFECYCLE_MIGRATION_COMPLETED: 'Migration completed',
}


class Event:
    """Base class of every event; records when it happened.

    :param timestamp: seconds since the epoch; defaults to now.
    """

    def __init__(self, timestamp: float | None = None) -> None:
        self.timestamp = time.time() if timestamp is None else timestamp

    def get_timestamp(self) -> float:
        return self.timestamp

    def __repr__(self) -> str:
        return '<%s: %s>' % (type(self).__name__, self.timestamp)


class InstanceEvent(Event):
    """An event about one instance, identified by its uuid."""

    def __init__(self, uuid: str, timestamp: float | None = None) -> None:
        super().__init__(timestamp)
        self.uuid = uuid

    def get_instance_uuid(self) -> str:
        return self.uuid

    def __repr__(self) -> str:
        return '<%s: %s, %s>' % (type(self).__name__, self.timestamp,
                                 self.uuid)


class LifecycleEvent(InstanceEvent):
    """An instance changed power state.

    :param uuid: the instance's uuid.
    :param transition: one of the ``EVENT_LIFECYCLE_*`` constants.
    :param timestamp: seconds since the epoch; defaults to now.
    :raises ValueError: for a transition outside ``NAMES``.
    """

    def __init__(self, uuid: str, transition: int,
                 timestamp: float | None = None) -> None:
        if transition not in NAMES:
            raise ValueError('unknown lifecycle transition %r' % transition)
        super().__init__(uuid, timestamp)
        self.transition = transition

    def get_transition(self) -> int:
        return self.transition

    def get_name(self) -> str:
        return NAMES[self.transition]

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LifecycleEvent) and
                (self.uuid, self.transition, self.timestamp) ==
                (other.uuid, other.transition, other.timestamp))

    def __hash__(self) -> int:
        return hash((self.uuid, self.transition, self.timestamp))

    def __repr__(self) -> str:
        return '<%s: %s, %s => %s>' % (type(self).__name__, self.timestamp,
                                       self.uuid, self.get_name())
