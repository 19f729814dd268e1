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

"""Running totals of what this host's containers claim.

A claim must know what the host's instances use. Listing every container
on each claim is one call whose payload grows with the number of
containers, made under the claim lock; instead :class:`Usage` keeps the
flavors of this host's containers (instances and spawns under way, in any
process sharing dockerd) up to date from three sources:

- the driver's own spawns and destroys, as they return;
- the event stream (``create`` and ``destroy`` of containers with our
  labels, so other processes' spawns and someone's ``docker rm`` count);
- a full listing (:meth:`Usage.sync`) when the totals cannot be trusted:
  before the first claim of a process, whenever the event stream is not
  connected or has reconnected since the last listing (dockerd restarted
  and lost its event log), and every ``[docker] usage_sync_interval``
  seconds to repair anything the above missed.

Events and the driver's own updates that arrive while a listing is in
flight are journalled and applied again on top of it, so a listing never
undoes a change it raced with.
"""

import collections
import threading
import time
import typing

from compute_driver.docker import mapping
from compute_driver import driver
from compute_driver import exception
from compute_driver import objects


def _flavor_usage(instance: objects.Instance) -> tuple[int, int, int]:
    flavor = instance.flavor
    return flavor.vcpus, flavor.memory_mb, flavor.disk_gb


class Usage:
    """The containers of one compute host and the sum of their flavors.

    Thread-safe. An instance counts once however many containers carry
    its uuid (a revert briefly has two).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # One listing at a time: a second one would replace the journal
        # of the first, and the first would then drop updates.
        self._sync_lock = threading.Lock()
        # Container id -> (instance, Docker state).
        self._containers: dict[str, tuple[objects.Instance, str]] = {}
        # Instance uuid -> ids of its containers.
        self._ids: dict[str, set[str]] = {}
        self._names: collections.Counter[str] = collections.Counter()
        self._totals = [0, 0, 0]
        # Updates made while a listing is in flight, to apply on top of it.
        self._journal: list[tuple[str, tuple]] | None = None
        self._synced_at: float | None = None
        self._generation: object = None

    # -- reading -------------------------------------------------------------

    def fresh(self, generation: object, interval: float) -> bool:
        """Whether the totals may be used without a listing.

        :param generation: identifies the event stream's connection now;
            ``None`` when it is not connected.
        :param interval: the longest time since the last listing.
        """
        with self._lock:
            return (generation is not None and
                    self._synced_at is not None and
                    generation == self._generation and
                    time.monotonic() - self._synced_at < interval)

    def totals(self) -> tuple[int, int, int]:
        """vCPUs, MiB of memory and GiB of disk claimed."""
        with self._lock:
            return typing.cast(tuple[int, int, int], tuple(self._totals))

    def running(self) -> int:
        """Instances in an active power state (running or paused)."""
        with self._lock:
            active = set()
            for instance, state in self._containers.values():
                if mapping.power_state_of(state) in driver.ACTIVE_STATES:
                    active.add(instance.uuid)
            return len(active)

    def counts(self, uuid: str) -> bool:
        """Whether a container of instance ``uuid`` is counted."""
        with self._lock:
            return uuid in self._ids

    def state_of(self, uuid: str) -> str | None:
        """The Docker state of instance ``uuid``'s container, if counted.

        While a revert briefly gives the instance two containers, the one
        not stopped (the old one is stopped first).
        """
        with self._lock:
            ids = self._ids.get(uuid)
            if not ids:
                return None
            states = [self._containers[i][1] for i in ids]
            return next((s for s in states if s != 'exited'), states[0])

    def check_unique(self, instance: objects.Instance) -> None:
        """:raises InstanceExists: when its uuid or name is taken."""
        with self._lock:
            if instance.uuid in self._ids:
                raise exception.InstanceExists(instance=instance.uuid)
            if self._names[instance.name]:
                raise exception.InstanceExists(instance=instance.name)

    # -- updating ------------------------------------------------------------

    def add(self, container_id: str, instance: objects.Instance,
            state: str = 'created') -> None:
        """Count a container (idempotent)."""
        with self._lock:
            self._record('add', (container_id, instance, state))

    def add_labelled(self, container_id: str, labels: dict,
                     state: str = 'created') -> None:
        """Count a container from its labels; ignores foreign ones."""
        try:
            instance = mapping.instance_from_labels(labels)
        except exception.InvalidInput:
            return
        self.add(container_id, instance, state)

    def set_state(self, container_id: str, state: str) -> None:
        """Record a container's new Docker state, when it is counted."""
        with self._lock:
            self._record('state', (container_id, state))

    def remove(self, container_id: str) -> None:
        """Stop counting a container (idempotent)."""
        with self._lock:
            self._record('remove', (container_id,))

    def remove_instance(self, uuid: str) -> None:
        """Stop counting every container of instance ``uuid``."""
        with self._lock:
            self._record('remove_instance', (uuid,))

    def sync(self, generation: object,
             list_summaries: typing.Callable[[], list[dict]]) -> None:
        """Replace the totals by a listing's.

        :param generation: the event stream's connection the listing is
            taken under, or ``None``; :meth:`fresh` compares it.
        :param list_summaries: makes the ``GET /containers/json`` call.
        """
        with self._sync_lock:
            self._sync(generation, list_summaries)

    def _sync(self, generation: object,
              list_summaries: typing.Callable[[], list[dict]]) -> None:
        with self._lock:
            self._journal = []
        try:
            summaries = list_summaries()
        except BaseException:
            with self._lock:
                self._journal = None
            raise
        with self._lock:
            journal, self._journal = self._journal or [], None
            self._containers.clear()
            self._ids.clear()
            self._names.clear()
            self._totals = [0, 0, 0]
            for summary in summaries:
                record = mapping.record_from_summary(summary)
                if record is not None:
                    self._add(summary.get('Id') or '', record.instance,
                              summary.get('State') or '')
            for operation, args in journal:
                getattr(self, '_' + operation)(*args)
            self._synced_at = time.monotonic()
            self._generation = generation

    def _record(self, operation: str, args: tuple) -> None:
        if self._journal is not None:
            self._journal.append((operation, args))
        getattr(self, '_' + operation)(*args)

    def _add(self, container_id: str, instance: objects.Instance,
             state: str) -> None:
        if container_id in self._containers:
            return
        self._containers[container_id] = (instance, state)
        ids = self._ids.setdefault(instance.uuid, set())
        ids.add(container_id)
        if len(ids) == 1:
            self._names[instance.name] += 1
            for i, amount in enumerate(_flavor_usage(instance)):
                self._totals[i] += amount

    def _state(self, container_id: str, state: str) -> None:
        found = self._containers.get(container_id)
        if found is not None:
            self._containers[container_id] = (found[0], state)

    def _remove(self, container_id: str) -> None:
        found = self._containers.pop(container_id, None)
        if found is None:
            return
        instance = found[0]
        ids = self._ids.get(instance.uuid, set())
        ids.discard(container_id)
        if not ids:
            self._ids.pop(instance.uuid, None)
            self._names[instance.name] -= 1
            if self._names[instance.name] <= 0:
                del self._names[instance.name]
            for i, amount in enumerate(_flavor_usage(instance)):
                self._totals[i] -= amount

    def _remove_instance(self, uuid: str) -> None:
        for container_id in list(self._ids.get(uuid, ())):
            self._remove(container_id)
