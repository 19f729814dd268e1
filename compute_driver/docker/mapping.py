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

"""What Docker says, in the contract's terms: labels and power states.

The labels a container is created with are the only record of the instance
it runs; :func:`instance_labels` writes them and :func:`instance_from_labels`
reads them back. Values are strings, so the flavor and the metadata are
stored as JSON.

Docker's container states map to power states as follows:

============  ==========  =================================================
Docker        power       why
============  ==========  =================================================
created       shutdown    made by spawn(power_on=False), never started
running       running
paused        paused      frozen by the cgroup freezer
restarting    crashed     its process died and a restart policy is retrying
exited        shutdown    stopped, by us or by its own main process
dead          crashed     dockerd failed to remove it; only removal helps
removing      pending     being removed; it will be gone shortly
============  ==========  =================================================

An unknown state maps to pending (NOSTATE), as Nova does for an unknown
libvirt domain state.
"""

import collections.abc
import json
import logging

from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state

LOG = logging.getLogger(__name__)

#: Every label key this backend writes starts with this.
LABEL_NS = 'org.openstack.compute-driver.'
UUID = LABEL_NS + 'uuid'
NAME = LABEL_NS + 'name'
FLAVOR = LABEL_NS + 'flavor'
IMAGE = LABEL_NS + 'image'
METADATA = LABEL_NS + 'metadata'
HOST = LABEL_NS + 'host'

#: Labels of a snapshot image (never found on a container we list).
IMAGE_TYPE = LABEL_NS + 'image-type'
SNAPSHOT_OF = LABEL_NS + 'snapshot-of'
BASE_IMAGE = LABEL_NS + 'base-image'
#: The name the snapshot was given, which may omit the ``:latest`` tag.
SNAPSHOT_NAME = LABEL_NS + 'snapshot-name'
SNAPSHOT = 'snapshot'

#: The labels :func:`instance_labels` writes.
INSTANCE_KEYS = (UUID, NAME, FLAVOR, IMAGE, METADATA, HOST)

#: The process that created the container, as
#: :func:`compute_driver.leftovers.owner_label` names it: while the
#: container still has its spawning name (:data:`SPAWNING_SUFFIX`), a gone
#: owner means an interrupted spawn.
SPAWN_OWNER = LABEL_NS + 'spawn-owner'
#: Appended to the container's name until its spawn succeeds; a container
#: with it is never listed as an instance.
SPAWNING_SUFFIX = '-spawning'

STATE_MAP = {
    'created': power_state.SHUTDOWN,
    'running': power_state.RUNNING,
    'paused': power_state.PAUSED,
    'restarting': power_state.CRASHED,
    'exited': power_state.SHUTDOWN,
    'dead': power_state.CRASHED,
    'removing': power_state.NOSTATE,
}

#: ``docker events`` actions that are lifecycle transitions. A stop or a
#: kill is followed by "die", a restart by "die" then "start", so those
#: two are enough for every path to SHUTDOWN and RUNNING.
EVENT_MAP = {
    'start': virtevent.EVENT_LIFECYCLE_STARTED,
    'die': virtevent.EVENT_LIFECYCLE_STOPPED,
    'pause': virtevent.EVENT_LIFECYCLE_PAUSED,
    'unpause': virtevent.EVENT_LIFECYCLE_RESUMED,
}


def is_spawning(summary: dict) -> bool:
    """Whether a container (a listing entry) is still being spawned."""
    return any(name.endswith(SPAWNING_SUFFIX)
               for name in summary.get('Names') or ())


def power_state_of(docker_state: str | None) -> int:
    """The power state of a container in Docker state ``docker_state``."""
    return STATE_MAP.get((docker_state or '').lower(), power_state.NOSTATE)


def instance_labels(instance: objects.Instance, host: str) -> dict[str, str]:
    """The labels that record ``instance`` on its container.

    :param host: the compute host; listings only show this host's
        containers, so hosts sharing a remote dockerd stay apart.
    """
    return {
        UUID: instance.uuid,
        NAME: instance.name,
        FLAVOR: json.dumps(instance.flavor.to_dict(), sort_keys=True),
        IMAGE: instance.image_ref,
        METADATA: json.dumps(instance.metadata, sort_keys=True),
        HOST: host,
    }


def instance_from_labels(labels: dict[str, str] | None) -> objects.Instance:
    """Rebuild the instance recorded by :func:`instance_labels`.

    :raises InvalidInput: when the labels are missing or damaged, e.g. on
        a container someone ran by hand from a snapshot image.
    """
    labels = labels or {}
    try:
        flavor = json.loads(labels[FLAVOR])
        metadata = json.loads(labels.get(METADATA) or '{}')
        if not isinstance(flavor, dict) or not isinstance(metadata, dict):
            raise ValueError('flavor and metadata must be JSON objects')
        return objects.Instance.from_dict({
            'uuid': labels[UUID], 'name': labels[NAME],
            'flavor': flavor, 'image_ref': labels[IMAGE],
            'metadata': metadata})
    except (KeyError, ValueError) as exc:
        raise exception.InvalidInput(
            reason='container labels do not describe an instance: %s'
                   % exc) from None


def record_from_summary(summary: dict) -> objects.InstanceRecord | None:
    """An instance record from one entry of ``GET /containers/json``.

    :returns: ``None`` (and logs why) for a container whose labels do not
        describe an instance.
    """
    try:
        instance = instance_from_labels(summary.get('Labels'))
    except exception.InvalidInput as exc:
        LOG.debug('Ignoring container %s: %s', summary.get('Id'), exc)
        return None
    return objects.InstanceRecord(
        instance=instance,
        info=objects.InstanceInfo(state=power_state_of(summary.get('State')),
                                  internal_id=summary.get('Id')))


def container_state(data: dict) -> int:
    """The power state of a container from its ``inspect`` data."""
    return power_state_of((data.get('State') or {}).get('Status'))


def container_labels(data: dict) -> dict[str, str]:
    """The labels of a container from its ``inspect`` data."""
    return (data.get('Config') or {}).get('Labels') or {}


def is_instance_of(data: dict, uuid: str, host: str) -> bool:
    """Whether an inspected container is instance ``uuid`` of ``host``.

    A container someone named like ours, or one of another compute host
    sharing dockerd, is not.
    """
    labels = container_labels(data)
    return labels.get(UUID) == uuid and labels.get(HOST) == host


def stored_instance(data: dict,
                    fallback: objects.Instance) -> objects.Instance:
    """The instance as spawn recorded it on an inspected container.

    Its flavor is what the host granted; ``fallback`` (the caller's copy)
    stands in when the labels are damaged.
    """
    try:
        return instance_from_labels(container_labels(data))
    except exception.InvalidInput:
        return fallback


class RecordCache:
    """Instance records of listings, each container's labels parsed once.

    A container's labels never change, so a listing only parses the
    labels of containers it has not seen, and rebuilds a record only when
    its container's state changed. Not thread-safe: the cache is replaced
    whole by each listing, so a race costs a re-parse, never a wrong
    record.

    :param container_name: the name an instance's container has, given
        its uuid.
    """

    def __init__(self,
                 container_name: collections.abc.Callable[[str], str]
                 ) -> None:
        self._container_name = container_name
        # Container id -> (Docker state, its record or None when its
        # labels describe no instance), from the last listing.
        self._parsed: dict[str, tuple[str, objects.InstanceRecord | None]] = {}

    def records(self, summaries: list[dict]) -> list[objects.InstanceRecord]:
        """The instances of a ``GET /containers/json`` listing.

        Containers still being spawned are not instances yet.
        """
        records: dict[str, objects.InstanceRecord] = {}
        cache = self._parsed
        fresh: dict[str, tuple[str, objects.InstanceRecord | None]] = {}
        for summary in summaries:
            if is_spawning(summary):
                continue
            container_id = summary.get('Id') or ''
            state = summary.get('State') or ''
            cached = cache.get(container_id)
            if cached is not None and cached[0] == state:
                record = cached[1]
            elif cached is not None and cached[1] is not None:
                record = objects.InstanceRecord(
                    instance=cached[1].instance,
                    info=objects.InstanceInfo(
                        state=power_state_of(state),
                        internal_id=container_id))
            else:
                record = record_from_summary(summary)
            fresh[container_id] = (state, record)
            if record is None:
                continue
            uuid = record.instance.uuid
            # During a revert the old container lives on briefly under
            # another name; the one with the instance's name is the real
            # one.
            if uuid in records and '/' + self._container_name(uuid) not in (
                    summary.get('Names') or ()):
                continue
            records[uuid] = record
        self._parsed = fresh
        return list(records.values())


def image_file_name(ref: str) -> str:
    """The ``image_directory`` file holding image ``ref``.

    ``/`` cannot be part of a file name, so it becomes ``_``; references
    that differ only there (``a/b`` and ``a_b``) would share a file, so do
    not keep both in one directory.
    """
    return ref.replace('/', '_') + '.tar'
