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

"""The compute driver contract every backend implements.

Method names, signatures and power-state/event values follow
``nova.virt.driver.ComputeDriver`` so the Nova adapter stays a thin layer.
Arguments Nova passes and a standalone library has no use for (``context``,
``network_info``, ``block_device_info``...) are kept in the signatures and
may be ``None``.

The abstract methods are what a backend must implement to exist. The
optional ones raise :class:`~compute_driver.exception.NotSupported` here; a
backend that implements one sets the matching ``supports_*`` key of
:attr:`ComputeDriver.capabilities` to ``True``. Callers check
:meth:`ComputeDriver.supports` instead of catching errors, and the
conformance suite in :mod:`compute_driver.testing` fails a backend whose
capabilities and behaviour disagree.
"""

import abc
import collections.abc
import dataclasses
import logging
import re
import threading
import typing
import unicodedata

from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state

if typing.TYPE_CHECKING:  # pragma: no cover
    from oslo_config import cfg

# The standard library's logging, not oslo.log's: this module is on the
# path of every CLI start and oslo.log costs a third of the start-up time
# budget to import. Inside nova-compute, oslo.log configures the root logger
# and so formats these records like its own.
LOG = logging.getLogger(__name__)

REBOOT_SOFT = 'SOFT'
REBOOT_HARD = 'HARD'

#: Optional operation name -> the method that implements it. The
#: capability key of an operation is ``'supports_' + name``.
OPTIONAL_OPERATIONS: dict[str, str] = {
    'cleanup_host': 'cleanup_host',
    'instance_exists': 'instance_exists',
    'soft_reboot': 'reboot',
    'hard_reboot': 'reboot',
    'power_off': 'power_off',
    'power_on': 'power_on',
    'pause': 'pause',
    'unpause': 'unpause',
    'suspend': 'suspend',
    'resume': 'resume',
    'snapshot': 'snapshot',
    'delete_snapshot': 'delete_snapshot',
    'revert_to_snapshot': 'revert_to_snapshot',
    'live_resize': 'live_resize',
    'console_output': 'get_console_output',
    'diagnostics': 'get_diagnostics',
    'host_ip_addr': 'get_host_ip_addr',
    'host_uptime': 'get_host_uptime',
    'list_images': 'list_images',
}

#: Methods every backend must implement.
REQUIRED_METHODS = (
    'init_host', 'get_info', 'list_instances', 'list_instance_uuids',
    'list_instance_records', 'spawn', 'destroy', 'get_available_resource',
    'get_available_nodes',
)


@dataclasses.dataclass(frozen=True)
class Transition:
    """What a power operation needs and does.

    :param allowed: power states the instance may be in beforehand.
    :param result: the power state afterwards; ``None`` leaves it unchanged.
    :param events: lifecycle transitions the backend emits, in order.
    """

    allowed: tuple[int, ...]
    result: int | None
    events: tuple[int, ...] = ()


_ANY_LIVE = (power_state.RUNNING, power_state.PAUSED, power_state.SUSPENDED,
             power_state.SHUTDOWN, power_state.CRASHED)

#: The power-state machine every backend enforces: an operation attempted
#: from a state outside ``allowed`` raises InvalidPowerState and changes
#: nothing. Reboots may emit STOPPED/STARTED pairs on some hypervisors (a
#: Docker restart does, a libvirt guest reboot does not), so none are
#: required of them.
TRANSITIONS: dict[str, Transition] = {
    'power_off': Transition(
        (power_state.RUNNING, power_state.PAUSED, power_state.SUSPENDED,
         power_state.CRASHED),
        power_state.SHUTDOWN, (virtevent.EVENT_LIFECYCLE_STOPPED,)),
    'power_on': Transition(
        (power_state.SHUTDOWN, power_state.CRASHED),
        power_state.RUNNING, (virtevent.EVENT_LIFECYCLE_STARTED,)),
    'soft_reboot': Transition((power_state.RUNNING,), power_state.RUNNING),
    'hard_reboot': Transition(_ANY_LIVE, power_state.RUNNING),
    'pause': Transition(
        (power_state.RUNNING,), power_state.PAUSED,
        (virtevent.EVENT_LIFECYCLE_PAUSED,)),
    'unpause': Transition(
        (power_state.PAUSED,), power_state.RUNNING,
        (virtevent.EVENT_LIFECYCLE_RESUMED,)),
    'suspend': Transition(
        (power_state.RUNNING,), power_state.SUSPENDED,
        (virtevent.EVENT_LIFECYCLE_SUSPENDED,)),
    'resume': Transition(
        (power_state.SUSPENDED,), power_state.RUNNING,
        (virtevent.EVENT_LIFECYCLE_STARTED,)),
    'snapshot': Transition(
        (power_state.RUNNING, power_state.PAUSED, power_state.SUSPENDED,
         power_state.SHUTDOWN), None),
    'revert_to_snapshot': Transition(
        (power_state.RUNNING, power_state.SHUTDOWN), None),
    'live_resize': Transition((power_state.RUNNING,), None),
}


#: States in which an instance has a live guest on the host (a libvirt
#: "active" domain, a Docker container with a process): what
#: ``HostResources.running_vms`` counts.
ACTIVE_STATES = (power_state.RUNNING, power_state.PAUSED)


def default_capabilities() -> dict[str, bool]:
    """Every ``supports_*`` key, all ``False``."""
    return {'supports_' + op: False for op in OPTIONAL_OPERATIONS}


EventCallback = collections.abc.Callable[[virtevent.Event], object]


def reboot_kind(reboot_type: object) -> str:
    """``reboot_type`` as :data:`REBOOT_SOFT` or :data:`REBOOT_HARD`.

    Nova passes the upper-case strings; any case is accepted.

    :raises InvalidInput: for anything else.
    """
    kind = str(reboot_type).upper()
    if kind not in (REBOOT_SOFT, REBOOT_HARD):
        raise exception.InvalidInput(
            reason='reboot type must be SOFT or HARD, got %r'
                   % (reboot_type,))
    return kind


#: Nova's API limits for instance metadata: the default
#: ``metadata_items`` quota, and its key pattern and lengths.
MAX_METADATA_ITEMS = 128
MAX_METADATA_LENGTH = 255
METADATA_KEY_RE = re.compile(r'[a-zA-Z0-9_:. -]{1,255}')


def check_metadata(metadata: collections.abc.Mapping[str, str]) -> None:
    """Refuse instance metadata any backend could not store unchanged.

    Keys follow Nova's API (1 to 255 letters, digits, ``-_:.`` and
    spaces); values are at most 255 characters with no control character
    (libvirt's XML cannot hold most, and a newline or escape sequence in a
    label would reach whoever lists it) and no lone surrogate.

    :raises InvalidInput: naming the key and the problem.
    """
    if len(metadata) > MAX_METADATA_ITEMS:
        raise exception.InvalidInput(
            reason='instance metadata has %d items; at most %d are allowed'
                   % (len(metadata), MAX_METADATA_ITEMS))
    for key, value in metadata.items():
        if not METADATA_KEY_RE.fullmatch(key):
            raise exception.InvalidInput(
                reason='instance metadata key %r must be 1 to %d letters, '
                       'digits, "-", "_", ":", "." or spaces'
                       % (key, MAX_METADATA_LENGTH))
        if len(value) > MAX_METADATA_LENGTH:
            raise exception.InvalidInput(
                reason='instance metadata value of %s has %d characters; '
                       'at most %d are allowed'
                       % (key, len(value), MAX_METADATA_LENGTH))
        bad = [c for c in value if unicodedata.category(c) in ('Cc', 'Cs')]
        if bad:
            raise exception.InvalidInput(
                reason='instance metadata value of %s contains the control '
                       'character %r' % (key, bad[0]))


def check_spawn_instance(instance: object) -> None:
    """Refuse an instance no backend should receive, before spawn acts.

    Every backend calls it first in :meth:`ComputeDriver.spawn`, so the
    same input is refused the same way everywhere: anything but an
    :class:`~.objects.Instance` (whose constructor already bounds the
    flavor, see :data:`objects.MAX_VCPUS`, and checks the name and image
    reference), and metadata :func:`check_metadata` refuses.

    :raises InvalidInput: naming the problem.
    """
    if not isinstance(instance, objects.Instance):
        raise exception.InvalidInput(
            reason='spawn needs an objects.Instance, got %r' % (instance,))
    check_metadata(instance.metadata)


def check_flavor_fits_host(flavor: objects.Flavor,
                           resources: objects.HostResources) -> None:
    """Refuse a flavor larger than the whole host.

    A flavor that exceeds the host's total vCPUs, memory or disk cannot
    fit however idle the host is; Nova's placement refuses it the same
    way (an inventory's ``max_unit`` is its total). Backends that
    overcommit vCPUs by design (containers share CPUs) check their own
    ratios instead.

    :param resources: the host's, from :meth:`get_available_resource`; a
        ``local_gb`` of 0 means the disk size is unknown and is not
        checked.
    :raises FlavorExceedsHost: naming the resource, the flavor and the
        host's total.
    """
    for resource, requested, total, used in (
            ('vcpus', flavor.vcpus, resources.vcpus, resources.vcpus_used),
            ('memory_mb', flavor.memory_mb, resources.memory_mb,
             resources.memory_mb_used),
            ('disk_gb', flavor.disk_gb, resources.local_gb,
             resources.local_gb_used)):
        if resource == 'disk_gb' and total == 0:
            continue
        if requested > total:
            raise exception.FlavorExceedsHost(
                flavor=flavor.name, resource=resource, requested=requested,
                host=resources.hypervisor_hostname, free=total - used,
                total=total)


def ignore_task_state(*args: object, **kwargs: object) -> None:
    """A snapshot progress callback that records nothing.

    For callers of :meth:`ComputeDriver.snapshot` with no task state to
    keep; Nova's own callback saves it to the instance record.
    """


class ComputeDriver(abc.ABC):
    """Base class of every backend.

    Every method that takes an instance raises
    :class:`~compute_driver.exception.InstanceNotFound` when the backend
    has no such instance, checked before anything else (so
    ``revert_to_snapshot`` of an unknown instance is InstanceNotFound
    whatever the image), except :meth:`destroy`, which succeeds, and
    :meth:`instance_exists`, which answers ``False``. A power operation
    from a state its :data:`TRANSITIONS` entry does not allow raises
    :class:`~compute_driver.exception.InvalidPowerState` and changes
    nothing.

    :param conf: the library's own ``oslo_config.cfg.ConfigOpts`` with every
        option group registered and parsed (see
        :func:`compute_driver.conf.build_conf`); never the global
        ``cfg.CONF``.
    :param virtapi: the Nova adapter's ``VirtAPI``; ``None`` standalone.
    """

    #: ``supports_<operation>`` -> bool for every optional operation.
    capabilities: dict[str, bool] = default_capabilities()

    #: The hypervisor type reported in :class:`objects.HostResources`.
    hypervisor_type = 'unknown'

    #: Name of the option group of the backend's options (``[docker]``);
    #: ``None`` for a backend without options. The loader registers it on
    #: the library's ``ConfigOpts`` before building the backend.
    CONFIG_GROUP: typing.ClassVar[str | None] = None

    #: The options of :attr:`CONFIG_GROUP`: the same ``cfg.Opt`` objects
    #: the backend's ``compute_driver.driver_opts`` entry point lists, so
    #: that they are known without importing the backend's SDK.
    CONFIG_OPTS: typing.ClassVar[collections.abc.Sequence['cfg.Opt']] = ()

    #: Nova image types the backend boots (``'raw'``, ``'qcow2'``,
    #: ``'vhd'``...), reported by the Nova adapter as
    #: ``COMPUTE_IMAGE_TYPE_*`` traits; empty for none of Nova's.
    image_types: typing.ClassVar[tuple[str, ...]] = ()

    #: Whether instances are processes on the host (containers) rather
    #: than machines. A backend running either kind may set it per
    #: instance in ``__init__``.
    runs_containers: bool = False

    def __init__(self, conf: 'cfg.ConfigOpts', virtapi: object = None) -> None:
        self.conf = conf
        self.virtapi = virtapi
        #: The entry-point name the loader found this backend under.
        self.name = type(self).__name__
        self._event_callback: EventCallback | None = None
        self._event_lock = threading.Lock()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get('capabilities')
        if declared is None:
            return
        unknown = set(declared) - set(default_capabilities())
        if unknown:
            raise TypeError('%s.capabilities has unknown keys: %s' % (
                cls.__name__, ', '.join(sorted(unknown))))
        # A class may list only the keys it changes; the rest come from its
        # parent (all False for a direct subclass), so every backend answers
        # every key and a subclass of a backend keeps what it inherits.
        # What super(cls, cls).capabilities finds, spelled as an MRO walk:
        # mypy resolves a two-argument super() against ComputeDriver's
        # own bases rather than cls's.
        inherited: dict[str, bool] = next(
            vars(base)['capabilities'] for base in cls.__mro__[1:]
            if 'capabilities' in vars(base))
        cls.capabilities = {**default_capabilities(), **inherited,
                            **declared}

    # -- helpers shared by callers and backends -----------------------------

    def supports(self, operation: str,
                 instance: objects.Instance | None = None) -> bool:
        """Whether this backend implements an optional operation.

        :param operation: a key of :data:`OPTIONAL_OPERATIONS`.
        :param instance: ask for this instance: a backend whose guests
            differ (a XAPI guest without tools cannot suspend) answers
            for it; the others ignore it.
        :raises KeyError: for an operation that is not optional.
        """
        if operation not in OPTIONAL_OPERATIONS:
            raise KeyError('unknown optional operation %r' % operation)
        return bool(self.capabilities.get('supports_' + operation))

    def _not_supported(self, operation: str) -> typing.NoReturn:
        raise exception.NotSupported(driver=self.name, operation=operation)

    @staticmethod
    def check_power_state(instance: objects.Instance, operation: str,
                          current: int) -> None:
        """Refuse ``operation`` unless ``current`` allows it.

        :param operation: a key of :data:`TRANSITIONS`.
        :raises InvalidPowerState: naming the current and allowed states.
        """
        allowed = TRANSITIONS[operation].allowed
        if current not in allowed:
            raise exception.InvalidPowerState(
                operation=operation.replace('_', ' '),
                instance=instance.name,
                current=power_state.name(current),
                expected=' or '.join(power_state.name(s) for s in allowed))

    @staticmethod
    def check_live_resize(instance: objects.Instance, vcpus: int | None,
                          memory_mb: int | None) -> None:
        """Refuse a live resize outside ``1..flavor`` or with no value.

        :param instance: the instance as the backend stored it at spawn
            time: its flavor is what the host granted.
        :raises InvalidInput: naming the value and its bounds.
        """
        if vcpus is None and memory_mb is None:
            raise exception.InvalidInput(
                reason='live resize needs vcpus, memory_mb or both')
        flavor = instance.flavor
        for field, value, maximum in (('vcpus', vcpus, flavor.vcpus),
                                      ('memory_mb', memory_mb,
                                       flavor.memory_mb)):
            if value is None:
                continue
            if (not isinstance(value, int) or isinstance(value, bool)
                    or not 1 <= value <= maximum):
                raise exception.InvalidInput(
                    reason='%s must be an integer from 1 to %d (flavor %s), '
                           'got %r' % (field, maximum, flavor.name, value))

    def host_warnings(self) -> list[str]:
        """Problems of the host that do not stop the backend from working.

        Called after :meth:`init_host` by ``compute-driver check``, which
        prints each as one ``warning: ...`` line on stderr and still exits
        0: what an operator should fix (no hardware acceleration, a
        deprecated hypervisor version) but the backend can run with.
        Backends override it; the default has nothing to report.

        :returns: one sentence per problem, without a trailing newline.
        """
        return []

    def get_host_identity(self) -> str | None:
        """The backend host's own identity, stable across processes.

        What the hypervisor itself calls its host (libvirtd's host UUID,
        dockerd's daemon ID, the XAPI pool master's uuid, the fake's
        ``[fake] host_identity``), so that every service driving that host
        can derive the same node identity from it (the Nova adapter derives
        its compute node uuid this way) and a host moved to another
        process keeps it. Read from the backend after :meth:`init_host`;
        additive: the default, for a backend that has no such identity,
        is ``None``, and callers then fall back to the node name.

        :returns: an opaque string, or ``None``.
        :raises HypervisorUnavailable: when the backend cannot be asked.
        """
        return None

    def find_instance(self, ref: str) -> objects.InstanceRecord:
        """Look an instance up by uuid or by name.

        :param ref: a uuid or a name.
        :raises InstanceNotFound: when no instance matches.
        """
        records = self.list_instance_records()
        for record in records:
            if record.instance.uuid == ref.lower():
                return record
        for record in records:
            if record.instance.name == ref:
                return record
        raise exception.InstanceNotFound(instance=ref)

    # -- events ------------------------------------------------------------

    def register_event_listener(self,
                                callback: EventCallback | None) -> None:
        """Set the one callable that receives this backend's events.

        :param callback: called with each :class:`event.Event`, from
            whichever thread the backend emits it on; ``None`` unregisters.
        """
        with self._event_lock:
            self._event_callback = callback

    def emit_event(self, event: virtevent.Event) -> None:
        """Hand an event to the registered listener.

        A listener that raises is logged and does not break the backend.

        :raises ValueError: when ``event`` is not an :class:`event.Event`.
        """
        if not isinstance(event, virtevent.Event):
            raise ValueError('Event must be an instance of '
                             'compute_driver.event.Event')
        with self._event_lock:
            callback = self._event_callback
        if callback is None:
            LOG.debug('Discarding event %s', event)
            return
        try:
            callback(event)
        except Exception:
            LOG.exception('Exception dispatching event %s', event)

    def emit_lifecycle(self, uuid: str, transition: int) -> None:
        """Emit a :class:`event.LifecycleEvent` for ``uuid`` now."""
        self.emit_event(virtevent.LifecycleEvent(uuid, transition))

    # -- required ----------------------------------------------------------

    @abc.abstractmethod
    def init_host(self, host: str) -> None:
        """Connect to the hypervisor and check it can be used.

        :raises HypervisorUnavailable: when it cannot be reached.
        :raises HypervisorVersionTooOld: when it is older than the minimum.
        """

    @abc.abstractmethod
    def get_info(self, instance: objects.Instance,
                 use_cache: bool = True) -> objects.InstanceInfo:
        """Return an instance's current power state.

        :raises InstanceNotFound: when the backend has no such instance.
        """

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Names of this backend's instances, in one round trip."""

    @abc.abstractmethod
    def list_instance_uuids(self) -> list[str]:
        """Uuids of this backend's instances, in one round trip."""

    @abc.abstractmethod
    def list_instance_records(self) -> list[objects.InstanceRecord]:
        """Every instance with its power state, in one round trip.

        The instance fields come from what the backend stored at spawn time
        (domain metadata, labels, other_config); things on the hypervisor
        that this library did not create are not listed.
        """

    @abc.abstractmethod
    def spawn(self, context: object, instance: objects.Instance,
              image_meta: objects.ImageMeta, injected_files: object,
              admin_password: str | None, allocations: object,
              network_info: object = None, block_device_info: object = None,
              power_on: bool = True, accel_info: object = None) -> None:
        """Create an instance; RUNNING if ``power_on``, else SHUTDOWN.

        A failure leaves nothing behind: whatever was created is removed
        before the error propagates.

        :raises InstanceExists: when the uuid or the name is taken.
        :raises ImageNotFound: when the image is unknown.
        :raises InsufficientResources: when the flavor does not fit.
        """

    @abc.abstractmethod
    def destroy(self, context: object, instance: objects.Instance,
                network_info: object, block_device_info: object = None,
                destroy_disks: bool = True,
                destroy_secrets: bool = True) -> None:
        """Remove an instance and everything created for it.

        Idempotent: destroying an instance that does not exist succeeds.
        """

    @abc.abstractmethod
    def get_available_resource(self,
                               nodename: str | None) -> objects.HostResources:
        """The host's capacity and what this backend's instances use.

        Every instance that exists counts in the ``*_used`` values with its
        flavor, whatever its power state, as Nova's claims do;
        ``running_vms`` counts those in :data:`ACTIVE_STATES`.
        """

    @abc.abstractmethod
    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        """Node names this backend manages: ``[hypervisor_hostname]``."""

    # -- leftovers ---------------------------------------------------------

    #: Whether :meth:`init_host` sweeps leftovers (see
    #: :meth:`cleanup_leftovers`). A caller that wants to see them first,
    #: as ``compute-driver cleanup --dry-run`` does, sets it to ``False``
    #: before calling ``init_host``.
    sweep_leftovers_at_init: bool = True

    def cleanup_leftovers(self,
                          dry_run: bool = False) -> list[objects.Leftover]:
        """Find, and unless ``dry_run`` remove, what operations left behind.

        A failed spawn removes what it created before its error
        propagates; an interrupted one (its process killed, the host
        crashed) or one whose own removal failed cannot, so backends mark
        what a spawn builds until it succeeds. This removes what such
        marks designate, once the operation that made them is over, and
        never anything the operator asked for: a listed instance, or an
        operation still running in this or another process.
        ``init_host`` calls it when :attr:`sweep_leftovers_at_init` is set
        and logs each removal.

        The default finds nothing, which is right for a backend that
        keeps no state outside the process (the fake backend).

        :returns: one :class:`objects.Leftover` per object found, with
            whether it was removed or why that failed.
        """
        return []

    def sweep_leftovers(self) -> None:
        """Sweep leftovers if :attr:`sweep_leftovers_at_init`; for init_host.

        A failure is logged, never raised: a host must start although an
        old leftover resists.
        """
        if not self.sweep_leftovers_at_init:
            return
        try:
            self.cleanup_leftovers()
        except exception.ComputeDriverError as exc:
            LOG.warning('Could not sweep the leftovers of interrupted '
                        'operations: %s', exception.one_line(exc))

    # -- optional ----------------------------------------------------------

    def cleanup_host(self, host: str) -> None:
        """Release connections and threads before the service stops."""
        self._not_supported('cleanup_host')

    def instance_exists(self, instance: objects.Instance) -> bool:
        """Whether the backend has this instance, without raising."""
        self._not_supported('instance_exists')

    def reboot(self, context: object, instance: objects.Instance,
               network_info: object, reboot_type: str,
               block_device_info: object = None,
               bad_volumes_callback: object = None, accel_info: object = None,
               share_info: object = None) -> None:
        """Reboot; the instance is RUNNING afterwards.

        :param reboot_type: :data:`REBOOT_SOFT` (ask the guest, RUNNING
            only) or :data:`REBOOT_HARD` (reset, from any state).
        """
        self._not_supported('%s_reboot' % str(reboot_type).lower())

    def power_off(self, instance: objects.Instance, timeout: int = 0,
                  retry_interval: int = 0) -> None:
        """Stop an instance; SHUTDOWN afterwards.

        :param timeout: seconds to let the guest shut down cleanly before it
            is forced off; 0 forces it off at once.
        :param retry_interval: how often to repeat the shutdown request
            while waiting.
        """
        self._not_supported('power_off')

    def power_on(self, context: object, instance: objects.Instance,
                 network_info: object, block_device_info: object = None,
                 accel_info: object = None, share_info: object = None) -> None:
        """Start a stopped instance; RUNNING afterwards."""
        self._not_supported('power_on')

    def pause(self, instance: objects.Instance) -> None:
        """Freeze a RUNNING instance in memory; PAUSED afterwards."""
        self._not_supported('pause')

    def unpause(self, instance: objects.Instance) -> None:
        """Thaw a PAUSED instance; RUNNING afterwards."""
        self._not_supported('unpause')

    def suspend(self, context: object, instance: objects.Instance) -> None:
        """Save a RUNNING instance's memory to disk; SUSPENDED afterwards."""
        self._not_supported('suspend')

    def resume(self, context: object, instance: objects.Instance,
               network_info: object, block_device_info: object = None,
               share_info: object = None) -> None:
        """Restore a SUSPENDED instance; RUNNING afterwards."""
        self._not_supported('resume')

    def snapshot(self, context: object, instance: objects.Instance,
                 image_id: str,
                 update_task_state: collections.abc.Callable[..., object]
                 ) -> None:
        """Save the instance's disk as a new image named ``image_id``.

        The image's properties carry ``instance_uuid``; the instance's
        power state is unchanged.

        :param update_task_state: Nova's progress callback; may be a no-op.
        :raises InvalidInput: when ``image_id`` is not a valid reference or
            an image of that name exists.
        """
        self._not_supported('snapshot')

    def delete_snapshot(self, context: object, image_id: str) -> None:
        """Delete an image made by :meth:`snapshot`; idempotent.

        :raises InvalidInput: when the image exists but is not a snapshot.
        """
        self._not_supported('delete_snapshot')

    def revert_to_snapshot(self, context: object, instance: objects.Instance,
                           image_id: str) -> None:
        """Put the instance's disk back to a snapshot of that instance.

        A RUNNING instance is restarted from the snapshot and is RUNNING
        afterwards; a SHUTDOWN one stays SHUTDOWN.

        :raises ImageNotFound: when ``image_id`` is not a snapshot of this
            instance.
        """
        self._not_supported('revert_to_snapshot')

    def live_resize(self, context: object, instance: objects.Instance,
                    vcpus: int | None = None,
                    memory_mb: int | None = None) -> None:
        """Change a RUNNING instance's vCPUs and/or memory in place.

        Values may go down and back up to the flavor's, never above it (the
        flavor is what the instance claimed from the host).

        :raises InvalidInput: for a value outside 1..flavor's value, or
            when both are ``None``.
        """
        self._not_supported('live_resize')

    def get_console_output(self, context: object,
                           instance: objects.Instance) -> str:
        """The tail of the instance's console log."""
        self._not_supported('console_output')

    def get_diagnostics(self, instance: objects.Instance) -> dict[str, object]:
        """One sample of the instance's usage counters.

        Keys every backend fills in: ``state`` (power-state name),
        ``driver``, ``vcpus`` and ``memory_mb`` (current, after any live
        resize); further keys are backend-specific.
        """
        self._not_supported('diagnostics')

    def get_host_ip_addr(self) -> str:
        """The address of the host this backend drives."""
        self._not_supported('host_ip_addr')

    def get_host_uptime(self) -> str:
        """The hypervisor host's uptime, as text."""
        self._not_supported('host_uptime')

    def list_images(self) -> list[objects.ImageMeta]:
        """Images the backend can boot from, snapshots included."""
        self._not_supported('list_images')
