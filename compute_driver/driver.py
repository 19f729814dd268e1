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
import contextlib
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

    # Only for annotations: consoles import socket, which every command
    # would pay for at start-up.
    from compute_driver import console as cd_console

# The standard library's logging, not oslo.log's: this module is on the
# path of every CLI start and oslo.log costs a third of the start-up time
# budget to import. Inside nova-compute, oslo.log configures the root logger
# and so formats these records like its own.
LOG = logging.getLogger(__name__)

REBOOT_SOFT = 'SOFT'
REBOOT_HARD = 'HARD'

#: Hooks every backend must implement (see :class:`ComputeDriver`).
REQUIRED_HOOKS = (
    '_connect', '_find', '_power_state', '_get_image', '_create',
    '_destroy', '_resources', 'list_instance_records',
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
    # -- consoles: only a running guest has a console to talk to --
    'serial_console': Transition((power_state.RUNNING,), None),
    'vnc_console': Transition((power_state.RUNNING,), None),
    'attach_console': Transition((power_state.RUNNING,), None),
    'execute': Transition((power_state.RUNNING,), None),
}


#: Nova's task states, passed to a snapshot's ``update_task_state``.
IMAGE_PENDING_UPLOAD = 'image_pending_upload'
IMAGE_UPLOADING = 'image_uploading'


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation of the contract, and how to call it.

    The single table of operations (:data:`OPERATIONS`) that the CLI,
    ``verify``, the conformance suite and the Nova adapter read, so that
    what an operation needs, does and is called with is written once.

    :param name: the operation's name; ``supports_<name>`` is its
        capability key when it is optional.
    :param method: the :class:`ComputeDriver` method that performs it.
    :param transition: what it needs and does to the power state, or
        ``None`` for an operation that does not change it.
    :param fixed: keyword arguments every call passes (a reboot's type).
    :param needs: further keyword arguments the caller must supply
        (``image_id`` for a snapshot).
    :param on_instance: whether its first argument is an instance.
    :param hooks: what a backend that declares it implements: the
        pipeline's hooks, or the public method itself for host
        operations that need no pipeline.
    """

    name: str
    method: str
    transition: Transition | None = None
    fixed: tuple[tuple[str, object], ...] = ()
    needs: tuple[str, ...] = ()
    on_instance: bool = True
    hooks: tuple[str, ...] = ()

    @property
    def capability(self) -> str:
        return 'supports_' + self.name

    def call(self, backend: 'ComputeDriver',
             instance: objects.Instance | None = None,
             **params: object) -> object:
        """Perform the operation on ``backend``.

        :param instance: the instance, for an operation on one.
        :param params: the arguments named by :attr:`needs`, and any
            optional keyword the method takes.
        :raises TypeError: when an argument of :attr:`needs` is missing.
        """
        missing = [n for n in self.needs if n not in params]
        if missing:
            raise TypeError('%s needs %s' % (self.name, ', '.join(missing)))
        method = getattr(backend, self.method)
        kwargs = {**dict(self.fixed), **params}
        if self.on_instance:
            return method(instance, **kwargs)
        return method(**kwargs)


def _operation(name: str, method: str | None = None,
               **kwargs: typing.Any) -> tuple[str, Operation]:
    return name, Operation(name, method or name,
                           transition=TRANSITIONS.get(name), **kwargs)


#: Every optional operation, keyed by name, in the order callers list
#: them. Its keys are those of :data:`OPTIONAL_OPERATIONS`.
OPERATIONS: dict[str, Operation] = dict((
    _operation('cleanup_host', needs=('host',), on_instance=False,
               hooks=('cleanup_host',)),
    _operation('instance_exists'),
    _operation('soft_reboot', 'reboot',
               fixed=(('reboot_type', REBOOT_SOFT),), hooks=('_reboot',)),
    _operation('hard_reboot', 'reboot',
               fixed=(('reboot_type', REBOOT_HARD),), hooks=('_reboot',)),
    _operation('power_off', hooks=('_power_off',)),
    _operation('power_on', hooks=('_power_on',)),
    _operation('pause', hooks=('_pause',)),
    _operation('unpause', hooks=('_unpause',)),
    _operation('suspend', hooks=('_suspend',)),
    _operation('resume', hooks=('_resume',)),
    _operation('snapshot', needs=('image_id',),
               hooks=('_has_image', '_snapshot')),
    _operation('delete_snapshot', needs=('image_id',), on_instance=False,
               hooks=('_delete_snapshot',)),
    _operation('revert_to_snapshot', needs=('image_id',),
               hooks=('_snapshots_of', '_revert')),
    _operation('live_resize', hooks=('_live_resize',)),
    _operation('console_output', 'get_console_output',
               hooks=('_console_output',)),
    _operation('diagnostics', 'get_diagnostics', hooks=('_diagnostics',)),
    _operation('host_ip_addr', 'get_host_ip_addr', on_instance=False,
               hooks=('get_host_ip_addr',)),
    _operation('host_uptime', 'get_host_uptime', on_instance=False,
               hooks=('get_host_uptime',)),
    _operation('list_images', on_instance=False, hooks=('list_images',)),
    # -- consoles --
    _operation('serial_console', 'get_serial_console',
               hooks=('_serial_console',)),
    _operation('vnc_console', 'get_vnc_console', hooks=('_vnc_console',)),
    _operation('attach_console', 'open_console', hooks=('_open_console',)),
    _operation('execute', needs=('command',), hooks=('_execute',)),
))

#: Public methods the pipeline owns: a backend implements their hooks and
#: never overrides them, so every backend validates, locks, checks and
#: reports the same way.
PIPELINE_METHODS = (
    'init_host', 'get_info', 'spawn', 'destroy', 'get_available_resource',
    'instance_exists', 'reboot', 'power_off', 'power_on', 'pause',
    'unpause', 'suspend', 'resume', 'snapshot', 'delete_snapshot',
    'revert_to_snapshot', 'live_resize', 'get_console_output',
    'get_diagnostics',
    'get_serial_console', 'get_vnc_console', 'open_console', 'execute',
)

#: Optional operation name -> the method that implements it. The
#: capability key of an operation is ``'supports_' + name``.
OPTIONAL_OPERATIONS: dict[str, str] = {
    name: op.method for name, op in OPERATIONS.items()}


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
                           resources: objects.HostResources,
                           check_vcpus: bool = True) -> None:
    """Refuse a flavor larger than the whole host.

    A flavor that exceeds the host's total vCPUs, memory or disk cannot
    fit however idle the host is; Nova's placement refuses it the same
    way (an inventory's ``max_unit`` is its total). Backends that
    overcommit vCPUs by design (containers share CPUs) check their own
    ratios instead.

    :param resources: the host's, from :meth:`get_available_resource`; a
        ``local_gb`` of 0 means the disk size is unknown and is not
        checked.
    :param check_vcpus: ``False`` for containers, whose vCPUs are shares
        of the host's and bounded by the allocation ratio only.
    :raises FlavorExceedsHost: naming the resource, the flavor and the
        host's total.
    """
    for resource, requested, total, used in (
            ('vcpus', flavor.vcpus, resources.vcpus, resources.vcpus_used),
            ('memory_mb', flavor.memory_mb, resources.memory_mb,
             resources.memory_mb_used),
            ('disk_gb', flavor.disk_gb, resources.local_gb,
             resources.local_gb_used)):
        if (resource == 'disk_gb' and total == 0 or
                resource == 'vcpus' and not check_vcpus):
            continue
        if requested > total:
            raise exception.FlavorExceedsHost(
                flavor=flavor.name, resource=resource, requested=requested,
                host=resources.hypervisor_hostname, free=total - used,
                total=total)


class InstanceLocks:
    """One lock per instance uuid, forgotten when nobody holds it.

    Operations on one instance run one at a time; operations on
    different instances run in parallel. Re-entrant, so a hook may call
    another operation on the same instance.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.RLock, list[int]]] = {}

    @contextlib.contextmanager
    def hold(self, uuid: str) -> typing.Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(
                uuid, (threading.RLock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._locks[uuid]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


#: The resources a claim counts: (name, flavor field, HostResources
#: total and used fields, ratio and reserved options of ``[DEFAULT]``).
_CLAIMED = (
    ('vcpus', 'vcpus', 'vcpus', 'vcpus_used',
     'cpu_allocation_ratio', 'reserved_host_cpus', 1),
    ('memory_mb', 'memory_mb', 'memory_mb', 'memory_mb_used',
     'ram_allocation_ratio', 'reserved_host_memory_mb', 1),
    ('disk_gb', 'disk_gb', 'local_gb', 'local_gb_used',
     'disk_allocation_ratio', 'reserved_host_disk_mb', 1024),
)


class ComputeDriver(abc.ABC):
    """Base class of every backend: the contract and its pipeline.

    The public methods carry Nova's names and parameter names. They are
    concrete and own what every backend needs done the same way: input
    validation, one lock per instance, the power-state check of
    :data:`TRANSITIONS` (and, when :attr:`already_done_is_success` is set,
    Nova's rule that an operation whose result already holds is done),
    one claim policy with allocation ratios and reservations, error
    translation and lifecycle events. A backend implements hooks, named
    after the operation with a leading underscore:

    * required: :meth:`_connect`, :meth:`_find`, :meth:`_power_state`,
      :meth:`_get_image`, :meth:`_create`, :meth:`_destroy`,
      :meth:`_resources` and :meth:`list_instance_records`;
    * one per optional operation it declares in :attr:`capabilities`
      (``_power_off``, ``_reboot``, ``_snapshot``...);
    * optionally :meth:`_translate` (its SDK's errors into the library's),
      :meth:`_stored`, :meth:`_check_unique`, :meth:`_info`.

    Every method that takes an instance raises
    :class:`~compute_driver.exception.InstanceNotFound` when the backend
    has no such instance, checked before anything else, except
    :meth:`destroy`, which succeeds, and :meth:`instance_exists`, which
    answers ``False``. An optional operation the backend does not declare
    raises :class:`~compute_driver.exception.NotSupported` before anything
    else. A power operation from a state its :data:`TRANSITIONS` entry
    does not allow raises
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

    #: Whether the hypervisor's own event stream reports lifecycle
    #: transitions (libvirt, Docker and XAPI do). When ``False`` the
    #: pipeline emits each operation's events itself.
    emits_lifecycle_events = True

    #: Whether instances are containers (processes on the host) rather
    #: than machines: they share the host's CPUs by design, so their vCPUs
    #: are limited by the allocation ratio only, not by the host's size,
    #: and Nova records them in its ``exe`` mode. A backend running either
    #: kind sets it per instance in ``__init__``.
    runs_containers = False

    #: Allocation ratios used when ``[DEFAULT]`` sets none: Nova's
    #: ``initial_*_allocation_ratio`` defaults, so that the backend admits
    #: what Nova's placement grants.
    default_allocation_ratios: dict[str, float] = {
        'vcpus': 4.0, 'memory_mb': 1.0, 'disk_gb': 1.0}

    #: Set by a caller that follows Nova's rule that an operation whose
    #: result already holds (unpausing a running instance, powering off a
    #: stopped one) succeeds without acting. The Nova adapter sets it;
    #: standalone callers get InvalidPowerState instead.
    already_done_is_success = False

    def __init__(self, conf: 'cfg.ConfigOpts', virtapi: object = None) -> None:
        self.conf = conf
        self.virtapi = virtapi
        #: The entry-point name the loader found this backend under.
        self.name = type(self).__name__
        #: The node name: ``[DEFAULT] host`` until :meth:`init_host`.
        self.host: str = conf.host
        self._event_callback: EventCallback | None = None
        self._event_lock = threading.Lock()
        self._instance_locks = InstanceLocks()
        # Spawns of this process that hold a claim and whose instance the
        # backend may not list yet: counted apart, and checked for
        # duplicates, under _claim_lock.
        self._claim_lock = threading.Lock()
        self._pending: dict[str, objects.Instance] = {}

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

    def _require(self, operation: str) -> None:
        if not self.capabilities.get('supports_' + operation):
            raise exception.NotSupported(driver=self.name,
                                         operation=operation)

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

    def allocation_ratio(self, resource: str) -> float:
        """The allocation ratio a claim applies to ``resource``.

        :param resource: ``vcpus``, ``memory_mb`` or ``disk_gb``.
        :returns: ``[DEFAULT]``'s ``*_allocation_ratio`` when set, else
            :attr:`default_allocation_ratios`.
        """
        option = next(c[4] for c in _CLAIMED if c[0] == resource)
        value = self.conf[option]
        if value is None:
            value = self.default_allocation_ratios[resource]
        return float(value)

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

        Backends that can resolve one instance without listing them all
        override it.

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

    def _announce(self, uuid: str, transitions: typing.Iterable[int]) -> None:
        # Emitted by the pipeline only for a backend whose hypervisor
        # does not, and after the instance's lock is released, so that a
        # listener calling back into the driver cannot deadlock it.
        if self.emits_lifecycle_events:
            return
        for transition in transitions:
            self.emit_lifecycle(uuid, transition)

    # -- the pipeline --------------------------------------------------------

    def _run(self, operation: str, instance: objects.Instance,
             act: collections.abc.Callable[[typing.Any, int], typing.Any],
             check: collections.abc.Callable[[typing.Any], object]
             | None = None,
             lock: bool = True) -> typing.Any:
        """Run one operation on one instance, the same way on every backend.

        Under the instance's lock (unless ``lock`` is false, for reads):
        look the instance up, run ``check(handle)`` (checks that come
        before the power state's), check the power state against
        :data:`TRANSITIONS`, then ``act(handle, current_state)``, with the
        backend's errors translated. A :class:`Transition`'s events are
        emitted afterwards unless the hypervisor reports them, or ``act``
        returns the transitions to emit instead.

        :returns: what ``act`` returns, unless it is a tuple of events.
        """
        if not isinstance(instance, objects.Instance):
            raise exception.InvalidInput(
                reason='%s needs an objects.Instance, got %r'
                       % (operation.replace('_', ' '), instance))
        transition = TRANSITIONS.get(operation)
        guard = (self._instance_locks.hold(instance.uuid) if lock
                 else contextlib.nullcontext())
        with guard, self._translate(operation.replace('_', ' '), instance):
            handle = self._find(instance)
            if check is not None:
                check(handle)
            # Reads (no transition) do not need the state: one round trip
            # fewer where reading it costs one.
            current = (self._power_state(handle) if transition is not None
                       else power_state.NOSTATE)
            if transition is not None:
                if (self.already_done_is_success and
                        transition.result is not None and
                        current == transition.result and
                        current not in transition.allowed):
                    LOG.debug('Instance %s is already %s; nothing to %s',
                              instance.name, power_state.name(current),
                              operation.replace('_', ' '))
                    return None
                self.check_power_state(instance, operation, current)
            result = act(handle, current)
        if transition is not None:
            events = transition.events
            if isinstance(result, tuple):
                events, result = result, None
            self._announce(instance.uuid, events)
        return result

    @contextlib.contextmanager
    def _claim(self, instance: objects.Instance) -> typing.Iterator[None]:
        """Reserve the instance's flavor until its spawn is over.

        Checked and taken under one lock so that two spawns cannot both
        take the last free resources; the spawns then overlap, each claim
        counting those still under way (see :meth:`_resources`).

        :raises InstanceExists: when the uuid or the name is taken.
        :raises InsufficientResources: when the flavor does not fit.
        :raises FlavorExceedsHost: when it exceeds the whole host.
        """
        with self._claim_lock:
            for other in self._pending.values():
                if other.uuid == instance.uuid:
                    raise exception.InstanceExists(instance=instance.uuid)
                if other.name == instance.name:
                    raise exception.InstanceExists(instance=instance.name)
            self._check_unique(instance)
            self._check_fits(instance.flavor,
                             self._resources(list(self._pending.values())))
            self._pending[instance.uuid] = instance
        try:
            yield
        finally:
            with self._claim_lock:
                del self._pending[instance.uuid]

    def _check_fits(self, flavor: objects.Flavor,
                    resources: objects.HostResources) -> None:
        """Nova's placement arithmetic, applied to one flavor.

        The limit of each resource is ``(total - reserved) * ratio``; a
        flavor larger than the whole host never fits (placement's
        ``max_unit`` is the total), except vCPUs of containers.
        """
        check_flavor_fits_host(flavor, resources,
                               check_vcpus=not self.runs_containers)
        for resource, field, total_f, used_f, _, reserved_opt, unit in (
                _CLAIMED):
            total = getattr(resources, total_f)
            if resource == 'disk_gb' and total == 0:
                continue  # unknown size: a remote daemon that cannot tell
            reserved = -(-self.conf[reserved_opt] // unit)
            limit = int((total - reserved) * self.allocation_ratio(resource))
            used = getattr(resources, used_f)
            requested = getattr(flavor, field)
            if requested > limit - used:
                raise exception.InsufficientResources(
                    resource=resource, host=resources.hypervisor_hostname,
                    requested=requested, free=max(0, limit - used),
                    total=limit)

    # -- hooks every backend implements --------------------------------------

    @abc.abstractmethod
    def _connect(self) -> None:
        """Connect to the hypervisor and check it can be used.

        Called by :meth:`init_host` once :attr:`host` is set.

        :raises HypervisorUnavailable: when it cannot be reached.
        :raises HypervisorVersionTooOld: when it is older than the minimum.
        """

    @abc.abstractmethod
    def _find(self, instance: objects.Instance) -> typing.Any:
        """The backend's handle on an instance (a domain, a container...).

        :raises InstanceNotFound: when the backend has no such instance.
        """

    @abc.abstractmethod
    def _power_state(self, handle: typing.Any) -> int:
        """The power state of the instance :meth:`_find` returned."""

    @abc.abstractmethod
    def _get_image(self, instance: objects.Instance) -> objects.ImageMeta:
        """The image ``instance.image_ref`` names, ready to boot.

        :raises ImageNotFound: when the backend has no such image.
        :raises InvalidImage: when it cannot boot it.
        """

    @abc.abstractmethod
    def _create(self, instance: objects.Instance, image: objects.ImageMeta,
                power_on: bool, network_info: object,
                block_device_info: object) -> None:
        """Build the instance; start it if ``power_on``.

        Called under the instance's lock with its claim held. A failure
        removes what was built before the error propagates.
        """

    @abc.abstractmethod
    def _destroy(self, instance: objects.Instance,
                 destroy_disks: bool) -> int | None:
        """Remove the instance and what was built for it; gone is fine.

        :returns: its power state before, or ``None`` when it was absent.
        """

    @abc.abstractmethod
    def _resources(self, pending: list[objects.Instance]
                   ) -> objects.HostResources:
        """The host's capacity and what its instances use.

        :param pending: instances whose spawn holds a claim; each one
            counts in the ``*_used`` values unless the backend already
            lists it (count it once).
        """

    # -- hooks with a default -----------------------------------------------

    def _translate(self, operation: str, instance: objects.Instance
                   ) -> typing.ContextManager[None]:
        """Turn the backend's SDK errors into the library's typed ones.

        :param operation: the operation, in words, for messages.
        """
        return contextlib.nullcontext()

    def _stored(self, handle: typing.Any,
                instance: objects.Instance) -> objects.Instance:
        """The instance as the backend stored it at spawn time.

        Its flavor is what the host granted; the caller's copy may
        differ. The default trusts the caller's.
        """
        return instance

    def _info(self, handle: typing.Any,
              instance: objects.Instance) -> objects.InstanceInfo:
        """The :class:`objects.InstanceInfo` of :meth:`get_info`."""
        return objects.InstanceInfo(state=self._power_state(handle),
                                    internal_id=instance.uuid)

    def _check_unique(self, instance: objects.Instance) -> None:
        """Refuse an instance whose uuid or name the backend has.

        The default lists every instance; backends that can look one up
        by uuid and by name override it.

        :raises InstanceExists: naming the uuid or the name.
        """
        for record in self.list_instance_records():
            if record.instance.uuid == instance.uuid:
                raise exception.InstanceExists(instance=instance.uuid)
            if record.instance.name == instance.name:
                raise exception.InstanceExists(instance=instance.name)

    def _not_implemented(self, hook: str) -> typing.NoReturn:
        raise NotImplementedError(
            '%s declares an operation but does not implement %s'
            % (type(self).__name__, hook))

    # -- hooks of optional operations ----------------------------------------
    # A backend that declares ``supports_<operation>`` implements its hook;
    # the conformance suite fails one that does not.

    def _power_off(self, handle: typing.Any, instance: objects.Instance,
                   current: int, timeout: int, retry_interval: int
                   ) -> object:
        self._not_implemented('_power_off')

    def _power_on(self, handle: typing.Any,
                  instance: objects.Instance) -> object:
        self._not_implemented('_power_on')

    def _reboot(self, handle: typing.Any, instance: objects.Instance,
                kind: str, current: int) -> object:
        self._not_implemented('_reboot')

    def _pause(self, handle: typing.Any,
               instance: objects.Instance) -> object:
        self._not_implemented('_pause')

    def _unpause(self, handle: typing.Any,
                 instance: objects.Instance) -> object:
        self._not_implemented('_unpause')

    def _suspend(self, handle: typing.Any,
                 instance: objects.Instance) -> object:
        self._not_implemented('_suspend')

    def _resume(self, handle: typing.Any,
                instance: objects.Instance) -> object:
        self._not_implemented('_resume')

    def _has_image(self, image_id: str) -> bool:
        """Whether an image of that name exists (snapshot names)."""
        self._not_implemented('_has_image')

    def _snapshot(self, handle: typing.Any, instance: objects.Instance,
                  current: int, image_id: str) -> None:
        self._not_implemented('_snapshot')

    def _delete_snapshot(self, image_id: str) -> None:
        """Delete a snapshot; absent is fine.

        :raises InvalidInput: when the image is not a snapshot.
        """
        self._not_implemented('_delete_snapshot')

    def _snapshots_of(self, instance: objects.Instance) -> list[str]:
        """Names of the snapshots taken of ``instance``."""
        self._not_implemented('_snapshots_of')

    def _revert(self, handle: typing.Any, instance: objects.Instance,
                current: int, image_id: str) -> object:
        self._not_implemented('_revert')

    def _live_resize(self, handle: typing.Any, instance: objects.Instance,
                     vcpus: int | None, memory_mb: int | None) -> object:
        self._not_implemented('_live_resize')

    def _console_output(self, handle: typing.Any,
                        instance: objects.Instance) -> str:
        self._not_implemented('_console_output')

    def _diagnostics(self, handle: typing.Any,
                     instance: objects.Instance) -> dict[str, object]:
        self._not_implemented('_diagnostics')

    # -- required ----------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Connect to the hypervisor, check it, sweep leftovers.

        :raises HypervisorUnavailable: when it cannot be reached.
        :raises HypervisorVersionTooOld: when it is older than the minimum.
        """
        self.host = host
        self._connect()
        self.sweep_leftovers()

    def get_info(self, instance: objects.Instance,
                 use_cache: bool = True) -> objects.InstanceInfo:
        """Return an instance's current power state.

        :raises InstanceNotFound: when the backend has no such instance.
        """
        return typing.cast(objects.InstanceInfo, self._run(
            'get_info', instance, lambda h, current: self._info(h, instance),
            lock=False))

    def list_instances(self) -> list[str]:
        """Names of this backend's instances, in one round trip."""
        return [r.instance.name for r in self.list_instance_records()]

    def list_instance_uuids(self) -> list[str]:
        """Uuids of this backend's instances, in one round trip."""
        return [r.instance.uuid for r in self.list_instance_records()]

    @abc.abstractmethod
    def list_instance_records(self) -> list[objects.InstanceRecord]:
        """Every instance with its power state, in one round trip.

        The instance fields come from what the backend stored at spawn time
        (domain metadata, labels, other_config); things on the hypervisor
        that this library did not create are not listed.
        """

    def spawn(self, instance: objects.Instance, image_meta: object = None,
              *, power_on: bool = True, network_info: object = None,
              block_device_info: object = None, context: object = None,
              injected_files: object = None,
              admin_password: str | None = None, allocations: object = None,
              accel_info: object = None) -> None:
        """Create an instance from ``instance.image_ref``.

        RUNNING afterwards if ``power_on``, else SHUTDOWN. A failure
        leaves nothing behind: whatever was created is removed before the
        error propagates.

        :param image_meta: accepted for Nova's sake and ignored: the
            instance names its image (one reference, ``image_ref``).
        :raises InstanceExists: when the uuid or the name is taken.
        :raises ImageNotFound: when the image is unknown.
        :raises InsufficientResources: when the flavor does not fit.
        """
        check_spawn_instance(instance)
        with self._translate('spawn', instance):
            image = self._get_image(instance)
        flavor = instance.flavor
        if flavor.memory_mb < image.min_ram:
            raise exception.InvalidInput(
                reason='flavor %s has %d MiB of memory; image %s needs %d'
                       % (flavor.name, flavor.memory_mb, image.name,
                          image.min_ram))
        if 0 < flavor.root_gb < image.min_disk:
            raise exception.InvalidInput(
                reason='flavor %s has a %d GiB root disk; image %s needs %d'
                       % (flavor.name, flavor.root_gb, image.name,
                          image.min_disk))
        with self._instance_locks.hold(instance.uuid):
            with self._claim(instance), self._translate('spawn', instance):
                self._create(instance, image, power_on, network_info,
                             block_device_info)
        if power_on:
            self._announce(instance.uuid,
                           (virtevent.EVENT_LIFECYCLE_STARTED,))

    def destroy(self, instance: objects.Instance, *,
                destroy_disks: bool = True, context: object = None,
                network_info: object = None,
                block_device_info: object = None,
                destroy_secrets: bool = True) -> None:
        """Remove an instance and everything created for it.

        Idempotent: destroying an instance that does not exist succeeds.
        """
        with self._instance_locks.hold(instance.uuid), \
                self._translate('destroy', instance):
            before = self._destroy(instance, destroy_disks)
        if before is None:
            LOG.debug('Instance %s is already gone', instance.uuid)
        elif before != power_state.SHUTDOWN:
            self._announce(instance.uuid,
                           (virtevent.EVENT_LIFECYCLE_STOPPED,))

    def get_available_resource(self, nodename: str | None = None
                               ) -> objects.HostResources:
        """The host's capacity and what this backend's instances use.

        Every instance that exists counts in the ``*_used`` values with its
        flavor, whatever its power state, as Nova's claims do, and so does
        every spawn under way in this process; ``running_vms`` counts
        those in :data:`ACTIVE_STATES`.
        """
        with self._claim_lock:
            pending = list(self._pending.values())
        return self._resources(pending)

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        """Node names this backend manages: ``[host]``."""
        return [self.host]

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
        self._require('cleanup_host')

    def instance_exists(self, instance: objects.Instance) -> bool:
        """Whether the backend has this instance, without raising."""
        self._require('instance_exists')
        try:
            with self._translate('look up', instance):
                self._find(instance)
        except exception.InstanceNotFound:
            return False
        return True

    def reboot(self, instance: objects.Instance, reboot_type: str, *,
               context: object = None, network_info: object = None,
               block_device_info: object = None,
               bad_volumes_callback: object = None,
               accel_info: object = None, share_info: object = None) -> None:
        """Reboot; the instance is RUNNING afterwards.

        :param reboot_type: :data:`REBOOT_SOFT` (ask the guest, RUNNING
            only) or :data:`REBOOT_HARD` (reset, from any state).
        """
        kind = reboot_kind(reboot_type)
        operation = kind.lower() + '_reboot'
        self._require(operation)
        self._run(operation, instance, lambda h, current: self._reboot(
            h, instance, kind, current))

    def power_off(self, instance: objects.Instance, timeout: int = 0,
                  retry_interval: int = 0) -> None:
        """Stop an instance; SHUTDOWN afterwards.

        :param timeout: seconds to let the guest shut down cleanly before it
            is forced off; 0 forces it off at once.
        :param retry_interval: how often to repeat the shutdown request
            while waiting.
        """
        self._require('power_off')
        if timeout < 0 or retry_interval < 0:
            raise exception.InvalidInput(
                reason='timeout and retry_interval must be >= 0')
        self._run('power_off', instance, lambda h, current: self._power_off(
            h, instance, current, timeout, retry_interval))

    def power_on(self, instance: objects.Instance, *, context: object = None,
                 network_info: object = None,
                 block_device_info: object = None,
                 accel_info: object = None, share_info: object = None
                 ) -> None:
        """Start a stopped instance; RUNNING afterwards."""
        self._require('power_on')
        self._run('power_on', instance,
                  lambda h, current: self._power_on(h, instance))

    def pause(self, instance: objects.Instance) -> None:
        """Freeze a RUNNING instance in memory; PAUSED afterwards."""
        self._require('pause')
        self._run('pause', instance,
                  lambda h, current: self._pause(h, instance))

    def unpause(self, instance: objects.Instance) -> None:
        """Thaw a PAUSED instance; RUNNING afterwards."""
        self._require('unpause')
        self._run('unpause', instance,
                  lambda h, current: self._unpause(h, instance))

    def suspend(self, instance: objects.Instance, *,
                context: object = None) -> None:
        """Save a RUNNING instance's memory to disk; SUSPENDED afterwards."""
        self._require('suspend')
        self._run('suspend', instance,
                  lambda h, current: self._suspend(h, instance))

    def resume(self, instance: objects.Instance, *, context: object = None,
               network_info: object = None,
               block_device_info: object = None,
               share_info: object = None) -> None:
        """Restore a SUSPENDED instance; RUNNING afterwards."""
        self._require('resume')
        self._run('resume', instance,
                  lambda h, current: self._resume(h, instance))

    def snapshot(self, instance: objects.Instance, image_id: str,
                 update_task_state: collections.abc.Callable[..., object]
                 | None = None, *, context: object = None) -> None:
        """Save the instance's disk as a new image named ``image_id``.

        The image's properties carry ``instance_uuid``; the instance's
        power state is unchanged.

        :param update_task_state: Nova's progress callback, called with
            :data:`IMAGE_PENDING_UPLOAD` then :data:`IMAGE_UPLOADING`;
            ``None`` records nothing.
        :raises InvalidInput: when ``image_id`` is not a valid reference or
            an image of that name exists.
        """
        self._require('snapshot')
        objects.validate_image_ref(image_id)

        def take(handle: typing.Any, current: int) -> None:
            if self._has_image(image_id):
                raise exception.InvalidInput(
                    reason='an image named %s exists already' % image_id)
            if update_task_state is not None:
                update_task_state(task_state=IMAGE_PENDING_UPLOAD)
                update_task_state(task_state=IMAGE_UPLOADING,
                                  expected_state=IMAGE_PENDING_UPLOAD)
            self._snapshot(handle, instance, current, image_id)

        self._run('snapshot', instance, take)

    def delete_snapshot(self, image_id: str, *,
                        context: object = None) -> None:
        """Delete an image made by :meth:`snapshot`; idempotent.

        :raises InvalidInput: when the image exists but is not a snapshot.
        """
        self._require('delete_snapshot')
        objects.validate_image_ref(image_id)
        self._delete_snapshot(image_id)

    def revert_to_snapshot(self, instance: objects.Instance, image_id: str,
                           *, context: object = None) -> None:
        """Put the instance's disk back to a snapshot of that instance.

        A RUNNING instance is restarted from the snapshot and is RUNNING
        afterwards; a SHUTDOWN one stays SHUTDOWN.

        :raises ImageNotFound: when ``image_id`` is not a snapshot of this
            instance.
        """
        self._require('revert_to_snapshot')

        def check(handle: typing.Any) -> None:
            mine = self._snapshots_of(instance)
            if image_id not in mine:
                raise exception.ImageNotFound(
                    image='%s (a snapshot of %s)' % (image_id, instance.name),
                    available=', '.join(sorted(mine)) or 'none')

        def revert(handle: typing.Any, current: int) -> object:
            result = self._revert(handle, instance, current, image_id)
            if result is None and current == power_state.RUNNING:
                return (virtevent.EVENT_LIFECYCLE_STOPPED,
                        virtevent.EVENT_LIFECYCLE_STARTED)
            return result

        self._run('revert_to_snapshot', instance, revert, check=check)

    def live_resize(self, instance: objects.Instance,
                    vcpus: int | None = None, memory_mb: int | None = None,
                    *, context: object = None) -> None:
        """Change a RUNNING instance's vCPUs and/or memory in place.

        Values may go down and back up to the flavor's, never above it (the
        flavor is what the instance claimed from the host).

        :raises InvalidInput: for a value outside 1..flavor's value, or
            when both are ``None``.
        """
        self._require('live_resize')
        self._run('live_resize', instance,
                  lambda h, current: self._live_resize(
                      h, instance, vcpus, memory_mb),
                  check=lambda h: self.check_live_resize(
                      self._stored(h, instance), vcpus, memory_mb))

    def get_console_output(self, instance: objects.Instance, *,
                           context: object = None) -> str:
        """The tail of the instance's console log."""
        self._require('console_output')
        return typing.cast(str, self._run(
            'console_output', instance,
            lambda h, current: self._console_output(h, instance),
            lock=False))

    def get_diagnostics(self, instance: objects.Instance) -> dict[str, object]:
        """One sample of the instance's usage counters.

        Keys every backend fills in: ``state`` (power-state name),
        ``driver``, ``vcpus`` and ``memory_mb`` (current, after any live
        resize); further keys are backend-specific.
        """
        self._require('diagnostics')
        return typing.cast(dict, self._run(
            'diagnostics', instance,
            lambda h, current: self._diagnostics(h, instance), lock=False))

    def get_host_ip_addr(self) -> str:
        """The address of the host this backend drives."""
        self._require('host_ip_addr')
        raise NotImplementedError

    def get_host_uptime(self) -> str:
        """The hypervisor host's uptime, as text."""
        self._require('host_uptime')
        raise NotImplementedError

    def list_images(self) -> list[objects.ImageMeta]:
        """Images the backend can boot from, snapshots included."""
        self._require('list_images')
        raise NotImplementedError

    # -- consoles ----------------------------------------------------------

    #: How each console operation is worded in a power-state error.
    _CONSOLE_WORDS: typing.ClassVar[dict[str, str]] = {
        'serial_console': 'open the serial console of',
        'vnc_console': 'open the VNC console of',
        'attach_console': 'attach to the console of',
        'execute': 'run a command in',
    }

    def _console_run(self, operation: str, instance: objects.Instance,
                     act: collections.abc.Callable[[typing.Any], typing.Any]
                     ) -> typing.Any:
        self._require(operation)
        try:
            # No instance lock: a console stays open for as long as its
            # user likes and must not block the instance's operations.
            return self._run(operation, instance,
                             lambda h, current: act(h), lock=False)
        except exception.InvalidPowerState as exc:
            if exc.operation != operation.replace('_', ' '):
                raise
            raise exception.InvalidPowerState(
                operation=self._CONSOLE_WORDS[operation],
                instance=exc.instance, current=exc.current,
                expected=exc.expected) from None

    def get_serial_console(self, instance: objects.Instance, *,
                           context: object = None
                           ) -> 'cd_console.SerialConsole':
        """Where Nova's serial console proxy connects: a raw TCP socket.

        :raises InvalidPowerState: when the instance is not RUNNING.
        :raises ConsoleUnavailable: when the instance has no TCP serial
            port (the host is configured for a PTY only).
        """
        return typing.cast('cd_console.SerialConsole', self._console_run(
            'serial_console', instance,
            lambda h: self._serial_console(h, instance)))

    def get_vnc_console(self, instance: objects.Instance, *,
                        context: object = None) -> 'cd_console.VNCConsole':
        """Where Nova's noVNC proxy connects: the instance's RFB server.

        :raises InvalidPowerState: when the instance is not RUNNING.
        :raises ConsoleUnavailable: when the instance has no graphics.
        """
        return typing.cast('cd_console.VNCConsole', self._console_run(
            'vnc_console', instance,
            lambda h: self._vnc_console(h, instance)))

    def open_console(self, instance: objects.Instance
                     ) -> 'cd_console.ConsoleStream':
        """Attach to the instance's serial console or container TTY.

        Closing the stream detaches; the instance keeps running.

        :raises InvalidPowerState: when the instance is not RUNNING.
        :raises ConsoleBusy: when another session holds a console that
            takes one client at a time.
        """
        return typing.cast('cd_console.ConsoleStream', self._console_run(
            'attach_console', instance,
            lambda h: self._open_console(h, instance)))

    def execute(self, instance: objects.Instance,
                command: collections.abc.Sequence[str], *,
                tty: bool = False) -> 'cd_console.ConsoleStream':
        """Run ``command`` in a container and stream its input and output.

        :param command: the program and its arguments, not a shell line.
        :param tty: give the command a terminal (merges its standard
            error into its output).
        :returns: a stream whose :meth:`~.ConsoleStream.exit_status` is
            the command's once its output ended.
        :raises InvalidInput: for an empty command or one that is not a
            sequence of strings.
        :raises InvalidPowerState: when the instance is not RUNNING.
        """
        if (isinstance(command, (str, bytes)) or not command or
                not all(isinstance(a, str) for a in command)):
            raise exception.InvalidInput(
                reason='a command is a non-empty list of strings, got %r'
                       % (command,))
        argv = list(command)
        if any('\0' in arg for arg in argv):
            raise exception.InvalidInput(
                reason='a command argument cannot contain a NUL character')
        return typing.cast('cd_console.ConsoleStream', self._console_run(
            'execute', instance,
            lambda h: self._execute(h, instance, argv, bool(tty))))

    def _serial_console(self, handle: typing.Any, instance: objects.Instance
                        ) -> 'cd_console.SerialConsole':
        self._not_implemented('_serial_console')

    def _vnc_console(self, handle: typing.Any, instance: objects.Instance
                     ) -> 'cd_console.VNCConsole':
        self._not_implemented('_vnc_console')

    def _open_console(self, handle: typing.Any, instance: objects.Instance
                      ) -> 'cd_console.ConsoleStream':
        self._not_implemented('_open_console')

    def _execute(self, handle: typing.Any, instance: objects.Instance,
                 command: list[str], tty: bool) -> 'cd_console.ConsoleStream':
        self._not_implemented('_execute')
