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
import json
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
    from compute_driver.image import api as image_api
    from compute_driver.image import cache as image_cache_mod
    # Imported where the volume operations use them: a listing or a
    # show, in a new process, needs none of them.
    from compute_driver.volume import connection as vol_connection
    from compute_driver.volume import model as vol_model

# The standard library's logging, not oslo.log's: this module is on the
# path of every CLI start and oslo.log costs a third of the start-up time
# budget to import. Inside nova-compute, oslo.log configures the root logger
# and so formats these records like its own.
LOG = logging.getLogger(__name__)

#: Records kept at most from image_for for fetch_image (boots in flight
#: at once, and more).
_FRESH_RECORDS_MAX = 64

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
    # A resize on this host ends in the power state it started from. A
    # cold migration's first step follows the same rule on its source,
    # which it leaves stopped (its events say so).
    'resize': Transition((power_state.RUNNING, power_state.SHUTDOWN), None),
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
    _operation('resize', needs=('flavor',),
               hooks=('_power_off', '_power_on', '_resize',
                      '_confirm_migration', '_revert_migration')),
    _operation('cold_migrate', 'migrate_disk_and_power_off',
               needs=('dest', 'flavor'),
               hooks=('_power_off', '_power_on', '_migrate_out',
                      '_migrate_in', '_confirm_migration',
                      '_revert_migration')),
    _operation('plug_vifs', needs=('network_info',),
               hooks=('_plug_vifs', '_interfaces')),
    _operation('unplug_vifs', needs=('network_info',),
               hooks=('_unplug_vifs',)),
    _operation('attach_interface', needs=('vif',),
               hooks=('_attach_interface', '_interfaces')),
    _operation('detach_interface', needs=('vif',),
               hooks=('_detach_interface', '_interfaces')),
    _operation('interfaces', 'get_interfaces', hooks=('_interfaces',)),
    # -- volumes --
    _operation('attach_volume', needs=('connection_info', 'mountpoint'),
               hooks=('_volume_attachments', '_attach_volume')),
    _operation('live_attach_volume', 'attach_volume',
               needs=('connection_info', 'mountpoint'),
               hooks=('_volume_attachments', '_attach_volume')),
    _operation('detach_volume', needs=('connection_info', 'mountpoint'),
               hooks=('_volume_attachments', '_detach_volume')),
    _operation('swap_volume',
               needs=('old_connection_info', 'new_connection_info',
                      'mountpoint'),
               hooks=('_volume_attachments', '_swap_volume')),
    _operation('extend_volume', needs=('connection_info', 'requested_size'),
               hooks=('_volume_attachments', '_extend_volume')),
    # -- consoles --
    _operation('serial_console', 'get_serial_console',
               hooks=('_serial_console',)),
    _operation('vnc_console', 'get_vnc_console', hooks=('_vnc_console',)),
    _operation('attach_console', 'open_console', hooks=('_open_console',)),
    _operation('execute', needs=('command',), hooks=('_execute',)),
    # -- live migration --
    _operation('live_migrate', 'live_migration', needs=('dest',),
               hooks=('_live_migrate',)),
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
    'resize', 'migrate_disk_and_power_off', 'finish_migration',
    'confirm_migration', 'finish_revert_migration',
    'plug_vifs', 'unplug_vifs', 'attach_interface', 'detach_interface',
    'get_interfaces',
    # -- volumes --
    'get_volume_connector', 'attach_volume', 'detach_volume', 'swap_volume',
    'extend_volume', 'list_volume_attachments',
    'get_serial_console', 'get_vnc_console', 'open_console', 'execute',
    # -- live migration --
    'check_can_live_migrate_destination',
    'cleanup_live_migration_destination_check',
    'check_can_live_migrate_source', 'pre_live_migration', 'live_migration',
    'post_live_migration', 'post_live_migration_at_destination',
    'rollback_live_migration_at_source',
    'rollback_live_migration_at_destination',
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


class _Released:
    """The claims released while one claim read the host's state."""

    __slots__ = ('instances',)

    def __init__(self) -> None:
        self.instances: list[objects.Instance] = []


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
      :meth:`_stored`, :meth:`_check_unique`, :meth:`_info`, and
      :meth:`_host_state` with :meth:`_count_resources` (claims then read
      the host before their lock).

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

    #: Whether the pipeline also emits the events of the backend's own
    #: operations when the hypervisor reports transitions: for a
    #: hypervisor that batches its reports (XAPI answers a poll with the
    #: latest state of what changed), after which the backend reports
    #: only the changes it did not make.
    announces_own_transitions = False

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
        # One per claim reading the host's state outside _claim_lock: the
        # claims released meanwhile are added to each (see _claim_locked).
        self._reading: set[_Released] = set()
        # Image records image_for read, by id, each for one fetch_image
        # (see there), under their own lock.
        self._fresh_lock = threading.Lock()
        self._fresh_records: dict[str, 'image_api.ImageRecord'] = {}

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
            raise self.unsupported(operation)

    def unsupported(self, operation: str) -> exception.NotSupported:
        """The error for an optional operation this backend lacks.

        Where the backend does the same at another step (a container
        backend takes volumes when the instance is created, not later),
        the message says so.

        :param operation: a key of :data:`OPTIONAL_OPERATIONS`.
        """
        if (operation in ('attach_volume', 'live_attach_volume') and
                self.takes_spawn_volumes()):
            return exception.NotSupported(
                driver=self.name,
                operation='attaching a volume to an existing instance '
                          '(give its volumes when the instance is created)')
        return exception.NotSupported(driver=self.name, operation=operation)

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
        # does not report them, or that announces its own (see
        # announces_own_transitions), and after the instance's lock is
        # released, so that a listener calling back into the driver
        # cannot deadlock it.
        if self.emits_lifecycle_events and not self.announces_own_transitions:
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
        counting those still under way (see :meth:`_resources`). What is
        slow to read from the host is read before the lock is taken (see
        :meth:`_claim_locked`).

        :raises InstanceExists: when the uuid or the name is taken.
        :raises InsufficientResources: when the flavor does not fit.
        :raises FlavorExceedsHost: when it exceeds the whole host.
        """
        with self._claim_locked() as resources:
            for other in self._pending.values():
                if other.uuid == instance.uuid:
                    raise exception.InstanceExists(instance=instance.uuid)
                if other.name == instance.name:
                    raise exception.InstanceExists(instance=instance.name)
            self._check_unique(instance)
            self._check_fits(instance.flavor, resources())
            self._pending[instance.uuid] = instance
        try:
            yield
        finally:
            self._release_claim(instance.uuid)

    @contextlib.contextmanager
    def _claim_locked(self) -> typing.Iterator[
            collections.abc.Callable[[], objects.HostResources]]:
        """Hold the claim lock, the host's state read just before it.

        :meth:`_host_state` (listing the instances, asking the host its
        size) runs before the lock is taken: a hypervisor that answers
        slowly while it starts another instance then delays this claim
        only, not every claim of the process. Yields, with the lock
        held, a function returning the resources a claim checks: those
        of :meth:`_count_resources`, given the claims held now and those
        released since :meth:`_host_state` began, whose instances that
        state may lack (each counted once, by uuid). A backend that reads
        no state (the default) gets :meth:`_resources` under the lock.
        """
        released = _Released()
        with self._claim_lock:
            self._reading.add(released)
        try:
            state = self._host_state()
        except BaseException:
            with self._claim_lock:
                self._reading.discard(released)
            raise

        def resources() -> objects.HostResources:
            pending = dict(self._pending)
            if state is None:
                return self._resources(list(pending.values()))
            for instance in released.instances:
                pending.setdefault(instance.uuid, instance)
            return self._count_resources(state, list(pending.values()))

        with self._claim_lock:
            # Nothing is released while the lock is held: what was
            # released after the read is all in ``released`` now.
            self._reading.discard(released)
            yield resources

    def _release_claim(self, uuid: str) -> objects.Instance | None:
        """Drop the pending claim of ``uuid``; returns it, or ``None``.

        A claim reading the host's state meanwhile counts it still: the
        state it reads may predate the instance (see
        :meth:`_claim_locked`).
        """
        with self._claim_lock:
            instance = self._pending.pop(uuid, None)
            if instance is not None:
                for released in self._reading:
                    released.instances.append(instance)
            return instance

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
        ``network_info`` is the checked ports (a tuple of
        :class:`~compute_driver.network.model.Port`, empty for none).
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

        Claims call it under the claim lock, unless the backend splits it
        into :meth:`_host_state` and :meth:`_count_resources`.

        :param pending: instances whose spawn holds a claim; each one
            counts in the ``*_used`` values unless the backend already
            lists it (count it once).
        """

    # -- hooks with a default -----------------------------------------------

    def _host_state(self) -> typing.Any:
        """Read what a claim needs from the host, without the claim lock.

        For a backend whose :meth:`_resources` makes slow calls (a listing
        the hypervisor delays while it starts an instance): return what
        those calls read, for :meth:`_count_resources`; claims call it
        before taking the claim lock, so several may run at once. It
        must see every instance whose :meth:`_create` returned before it
        began, as a listing of the hypervisor does; those created after
        are counted from the claims (see :meth:`_count_resources`). The
        default reads nothing and returns ``None``: claims then call
        :meth:`_resources` under the lock.
        """
        return None

    def _count_resources(self, state: typing.Any,
                         pending: list[objects.Instance]
                         ) -> objects.HostResources:
        """:meth:`_resources` from what :meth:`_host_state` read.

        Called under the claim lock: arithmetic, no call to the
        hypervisor. Implemented by every backend whose
        :meth:`_host_state` returns something.

        :param state: what :meth:`_host_state` returned.
        :param pending: the claims held now and those released since
            ``state`` was read; each counts in the ``*_used`` values
            unless ``state`` lists it (count it once).
        """
        raise NotImplementedError(
            '%s reads a host state but does not count it'
            % type(self).__name__)

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
        :raises InvalidInput: (a subclass) for a malformed port in
            ``network_info``; :raises NotSupported: for ports given to a
            backend that cannot plug them.
        """
        check_spawn_instance(instance)
        ports = self._network_ports(network_info)
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
                self._create(instance, image, power_on, ports,
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

    # -- resize and cold migration -------------------------------------------
    # Nova's four steps: migrate_disk_and_power_off on the source,
    # finish_migration on the destination (the same backend for a resize
    # on one host), then confirm_migration on the source or, after the
    # destination destroyed its copy, finish_revert_migration there.
    # ``supports_resize`` covers a move whose destination is this host,
    # ``supports_cold_migrate`` one to another host of the same backend
    # type; each keeps a revert point until it is confirmed or reverted.

    #: Version of the ``disk_info`` document migrate_disk_and_power_off
    #: returns and finish_migration reads.
    MIGRATION_FORMAT = 1

    @staticmethod
    def check_move_flavor(old: objects.Flavor, new: objects.Flavor) -> None:
        """Refuse a move to a flavor whose disks are smaller.

        Memory and vCPUs may go down; a root or ephemeral disk cannot
        shrink without losing data (Nova's API refuses a smaller root
        disk the same way).

        :raises InvalidInput: naming the disk and both sizes.
        """
        if not isinstance(new, objects.Flavor):
            raise exception.InvalidInput(
                reason='a resize needs an objects.Flavor, got %r' % (new,))
        for field in ('root_gb', 'ephemeral_gb'):
            before, after = getattr(old, field), getattr(new, field)
            # A root_gb of 0 is the image's own size, whatever the disk
            # has become: left as it is.
            if after < before and not (field == 'root_gb' and after == 0):
                raise exception.InvalidInput(
                    reason='flavor %s has %s = %d, less than the %d of '
                           'flavor %s: disks cannot shrink'
                           % (new.name, field, after, before, old.name))

    @contextlib.contextmanager
    def _claim_move(self, instance: objects.Instance,
                    flavor: objects.Flavor) -> typing.Iterator[None]:
        """Reserve ``flavor`` for a resize of ``instance`` on this host.

        Its old flavor still counts (the revert point holds it until the
        resize is confirmed, as Nova's placement keeps the old allocation
        under the migration), so the new one is claimed on top, under a
        stand-in uuid that no backend lists.

        :raises InsufficientResources: when ``flavor`` does not fit.
        """
        import uuid as uuidlib
        stand_in = dataclasses.replace(
            instance, flavor=flavor,
            uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_OID,
                                   'resize:' + instance.uuid)))
        with self._claim_locked() as resources:
            if stand_in.uuid in self._pending:
                raise exception.InvalidInput(
                    reason='instance %s is being resized already'
                           % instance.name)
            self._check_fits(flavor, resources())
            self._pending[stand_in.uuid] = stand_in
        try:
            yield
        finally:
            self._release_claim(stand_in.uuid)

    def _restart_after_failed_move(self, handle: typing.Any,
                                   instance: objects.Instance) -> None:
        # A move that failed after the pipeline stopped the instance puts
        # it back as it was; failing that too is logged, and the move's
        # own error is the one the caller gets.
        try:
            self._power_on(handle, instance)
        except Exception:
            LOG.exception('Could not restart %s after its move failed',
                          instance.name)

    def migrate_disk_and_power_off(
            self, instance: objects.Instance, dest: str,
            flavor: objects.Flavor, network_info: object = None,
            block_device_info: object = None, timeout: int = 0,
            retry_interval: int = 0, *, context: object = None) -> str:
        """Stop the instance and prepare its move to ``dest`` with ``flavor``.

        The first step of a resize (``dest`` is :attr:`host`) or of a cold
        migration to the host ``dest`` of another backend of this type.
        The instance stays here, SHUTDOWN, until :meth:`confirm_migration`
        (which removes it after a migration) or
        :meth:`finish_revert_migration`. A failure leaves it as it was,
        restarted if it was RUNNING.

        :param dest: the destination's node name (its :attr:`host`).
        :param flavor: the flavor at the destination; its disks may not be
            smaller than the instance's.
        :param timeout: seconds to let the guest shut down cleanly.
        :returns: ``disk_info``, an opaque JSON document for
            :meth:`finish_migration` on the destination.
        :raises InvalidInput: for a flavor with smaller disks, or a bad
            ``dest``.
        :raises InsufficientResources: when ``flavor`` does not fit this
            host next to the revert point (a resize only).
        """
        if not isinstance(dest, str) or not dest:
            raise exception.InvalidInput(
                reason='the destination must be a host name, got %r'
                       % (dest,))
        same_host = dest == self.host
        self._require('resize' if same_host else 'cold_migrate')
        if timeout < 0 or retry_interval < 0:
            raise exception.InvalidInput(
                reason='timeout and retry_interval must be >= 0')
        stored: list[objects.Instance] = []

        def check(handle: typing.Any) -> None:
            stored.append(self._stored(handle, instance))
            self.check_move_flavor(stored[0].flavor, flavor)
            if same_host:
                with self._claim_locked() as resources:
                    self._check_fits(flavor, resources())

        def act(handle: typing.Any, current: int) -> tuple[int, ...]:
            if current != power_state.SHUTDOWN:
                self._power_off(handle, instance, current, timeout,
                                retry_interval)
            try:
                payload = ({} if same_host else
                           self._migrate_out(handle, stored[0], flavor,
                                             dest))
            except BaseException:
                if current != power_state.SHUTDOWN:
                    self._restart_after_failed_move(handle, instance)
                raise
            document.update(payload=payload)
            return ((virtevent.EVENT_LIFECYCLE_STOPPED,)
                    if current != power_state.SHUTDOWN else ())

        document: dict[str, object] = {}
        self._run('resize', instance, act, check=check)
        document.update(
            format=self.MIGRATION_FORMAT, backend=type(self).__name__,
            source=self.host, dest=dest, instance=stored[0].to_dict(),
            flavor=flavor.to_dict())
        return json.dumps(document, sort_keys=True)

    def _read_disk_info(self, instance: objects.Instance,
                        disk_info: str) -> tuple[objects.Instance,
                                                 dict[str, object], str]:
        """The moved instance, its payload and source of ``disk_info``."""
        try:
            document = json.loads(disk_info)
            if document.get('format') != self.MIGRATION_FORMAT:
                raise ValueError('format %r' % document.get('format'))
            if document['backend'] != type(self).__name__:
                raise ValueError('it comes from a %s backend'
                                 % document['backend'])
            moved = objects.Instance.from_dict(
                {**document['instance'],
                 'flavor': objects.Flavor.from_dict(document['flavor'])})
            payload, source = document['payload'], document['source']
        except (TypeError, ValueError, KeyError, AttributeError,
                exception.InvalidInput) as exc:
            raise exception.InvalidInput(
                reason='disk_info is not one migrate_disk_and_power_off of '
                       'this backend returned: %s' % exc) from None
        if moved.uuid != instance.uuid:
            raise exception.InvalidInput(
                reason='disk_info is that of instance %s, not %s'
                       % (moved.uuid, instance.uuid))
        if not isinstance(payload, dict) or not isinstance(source, str):
            raise exception.InvalidInput(
                reason='disk_info has no payload or source host')
        return moved, payload, source

    def finish_migration(self, instance: objects.Instance, disk_info: str,
                         *, power_on: bool = True, context: object = None,
                         migration: object = None, network_info: object = None,
                         image_meta: object = None,
                         resize_instance: bool = True,
                         allocations: object = None,
                         block_device_info: object = None) -> None:
        """Bring the moved instance up on this host with its new flavor.

        On the source's host (a resize) the instance takes the new flavor
        and what it was is kept as the revert point; on another host it
        is created from what ``disk_info`` carries, under a claim of the
        new flavor. The instance is RUNNING afterwards if ``power_on``,
        else SHUTDOWN. A failure leaves the instance as it was (a resize)
        or nothing (a migration).

        :param instance: the instance being moved; only its uuid is
            used: the flavor and the rest come from ``disk_info``, as the
            source's backend recorded them.
        :param disk_info: what :meth:`migrate_disk_and_power_off` returned.
        :raises InvalidInput: for ``disk_info`` of another instance or
            backend.
        :raises InsufficientResources: when the new flavor does not fit.
        :raises InstanceExists: when this host has the instance already
            (a migration).
        """
        moved, payload, source = self._read_disk_info(instance, disk_info)
        if source == self.host:
            self._require('resize')
            self._finish_resize(moved, power_on)
            return
        self._require('cold_migrate')
        with self._instance_locks.hold(moved.uuid):
            with self._claim(moved), \
                    self._translate('finish migration', moved):
                self._migrate_in(moved, payload)
                if power_on:
                    self._start_moved(moved)
        if power_on:
            self._announce(moved.uuid, (virtevent.EVENT_LIFECYCLE_STARTED,))

    def _start_moved(self, instance: objects.Instance) -> None:
        # A guest that does not start after its move is removed again
        # (a migration) so that nothing is left: the source still has it.
        handle = self._find(instance)
        try:
            self._power_on(handle, instance)
        except BaseException:
            with contextlib.suppress(exception.ComputeDriverError):
                self._destroy(instance, True)
            raise

    def _finish_resize(self, resized: objects.Instance,
                       power_on: bool) -> None:
        with self._instance_locks.hold(resized.uuid):
            with self._translate('finish resize', resized):
                handle = self._find(resized)
                current = self._power_state(handle)
                if current != power_state.SHUTDOWN:
                    raise exception.InvalidPowerState(
                        operation='finish resize', instance=resized.name,
                        current=power_state.name(current),
                        expected=power_state.name(power_state.SHUTDOWN))
                stored = self._stored(handle, resized)
                with self._claim_move(stored, resized.flavor):
                    self._resize(handle, stored, resized.flavor)
                if power_on:
                    self._power_on(self._find(resized), resized)
        if power_on:
            self._announce(resized.uuid,
                           (virtevent.EVENT_LIFECYCLE_STARTED,))

    def resize(self, instance: objects.Instance, flavor: objects.Flavor, *,
               power_on: bool | None = None, timeout: int = 0,
               retry_interval: int = 0, context: object = None) -> None:
        """Resize an instance on this host to ``flavor``.

        :meth:`migrate_disk_and_power_off` to this host then
        :meth:`finish_migration`; the old instance is kept until
        :meth:`confirm_migration` drops it or
        :meth:`finish_revert_migration` puts it back.

        :param power_on: whether the resized instance runs; ``None`` keeps
            the power state it had (RUNNING or SHUTDOWN).
        """
        self._require('resize')
        if power_on is None:
            power_on = self.get_info(instance).state == power_state.RUNNING
        disk_info = self.migrate_disk_and_power_off(
            instance, self.host, flavor, timeout=timeout,
            retry_interval=retry_interval, context=context)
        try:
            self.finish_migration(instance, disk_info, power_on=power_on)
        except BaseException:
            # finish_migration left the instance as it was, stopped: drop
            # the move and give it its power state back.
            with contextlib.suppress(exception.ComputeDriverError):
                self.finish_revert_migration(instance, power_on=power_on)
            raise

    def confirm_migration(self, instance: objects.Instance, *,
                          migration: object = None,
                          network_info: object = None,
                          context: object = None) -> None:
        """Drop what a move kept for a revert, on its source host.

        After a resize, the old instance; after a migration, the stopped
        instance left here. Idempotent: nothing kept is fine.
        """
        self._require_move()
        with self._instance_locks.hold(instance.uuid), \
                self._translate('confirm migration', instance):
            self._confirm_migration(instance)

    def finish_revert_migration(self, instance: objects.Instance, *,
                                power_on: bool = True,
                                migration: object = None,
                                network_info: object = None,
                                block_device_info: object = None,
                                context: object = None) -> None:
        """Put the instance back as it was before its move, on its source.

        After a resize the revert point replaces the resized instance (a
        caller following Nova destroyed that one already); after a
        migration, or one interrupted before it finished, the stopped
        instance here is taken back. It is RUNNING afterwards if
        ``power_on``, else SHUTDOWN.

        :raises InstanceNotFound: when this host has neither.
        """
        self._require_move()
        with self._instance_locks.hold(instance.uuid):
            with self._translate('revert migration', instance):
                self._revert_migration(instance)
                handle = self._find(instance)
                started = (power_on and self._power_state(handle) ==
                           power_state.SHUTDOWN)
                if started:
                    self._power_on(handle, instance)
        if started:
            self._announce(instance.uuid,
                           (virtevent.EVENT_LIFECYCLE_STARTED,))

    def _require_move(self) -> None:
        if not (self.supports('resize') or self.supports('cold_migrate')):
            self._require('resize')

    def _resize(self, handle: typing.Any, instance: objects.Instance,
                flavor: objects.Flavor) -> None:
        """Give a stopped instance ``flavor``, keeping a revert point.

        ``instance`` is as the backend stored it, old flavor. Afterwards
        the backend lists it with ``flavor`` (its stored record says so)
        and keeps what it was, not listed, until
        :meth:`_confirm_migration` or :meth:`_revert_migration`; the
        revert point counts in :meth:`_resources` when it holds what a
        flavor claims (a kept guest does; a committed container image,
        which holds no CPU or memory, need not). A destroy of the resized
        instance leaves the revert point. A failure leaves the instance
        as it was.
        """
        self._not_implemented('_resize')

    def _migrate_out(self, handle: typing.Any, instance: objects.Instance,
                     flavor: objects.Flavor, dest: str) -> dict[str, object]:
        """Prepare a stopped instance's move to the host ``dest``.

        Marks it as leaving in the backend's record and returns what the
        destination's :meth:`_migrate_in` needs to rebuild it (JSON
        types only): its disk, or where to fetch it from.
        """
        self._not_implemented('_migrate_out')

    def _migrate_in(self, instance: objects.Instance,
                    payload: dict[str, object]) -> None:
        """Create the moved instance here, stopped, from ``payload``.

        Called under the instance's lock with the new flavor claimed;
        ``instance`` carries it. A failure leaves nothing behind.
        """
        self._not_implemented('_migrate_in')

    def _confirm_migration(self, instance: objects.Instance) -> None:
        """Drop the revert point, or the instance that left; none is fine."""
        self._not_implemented('_confirm_migration')

    def _revert_migration(self, instance: objects.Instance) -> None:
        """Restore the revert point, or take back the instance that left.

        Afterwards the backend lists the instance as it was before the
        move, stopped, with its old flavor.

        :raises InstanceNotFound: when there is neither.
        """
        self._not_implemented('_revert_migration')

    # -- live migration ------------------------------------------------------
    # Nova's steps, each on the host Nova runs it on: on the destination
    # check_can_live_migrate_destination (and its cleanup), on the source
    # check_can_live_migrate_source, on the destination
    # pre_live_migration, which reserves the instance's flavor there, then
    # on the source live_migration, which moves the running guest over
    # the backend's own path between its hosts (``_live_migrate``). After
    # it, post_live_migration on the source drops what is left there and
    # post_live_migration_at_destination turns the reservation into the
    # guest's own claim; after a failure the guest still runs on the
    # source, untouched, and rollback_live_migration_at_destination drops
    # the reservation and anything that arrived. The steps pass one
    # ``migrate_data`` document along (a dict of JSON types).

    #: Version of the ``migrate_data`` document of a live migration.
    LIVE_MIGRATION_FORMAT = 1

    #: Power states a guest may be live-migrated in: it must be running,
    #: or paused with its memory in place (Nova's rule too).
    LIVE_MIGRATABLE = (power_state.RUNNING, power_state.PAUSED)

    def _read_migrate_data(self, migrate_data: object, *keys: str
                           ) -> dict[str, typing.Any]:
        """``migrate_data`` checked: this backend's, with ``keys``.

        :raises InvalidInput: for anything else.
        """
        if (not isinstance(migrate_data, dict) or
                migrate_data.get('format') != self.LIVE_MIGRATION_FORMAT or
                migrate_data.get('backend') != type(self).__name__ or
                not all(isinstance(migrate_data.get(k), str) and
                        migrate_data.get(k) for k in keys)):
            raise exception.InvalidInput(
                reason='migrate_data is not a live migration document of '
                       'this backend with %s: %r'
                       % (', '.join(keys) or 'its format', migrate_data))
        return dict(migrate_data)

    def check_can_live_migrate_destination(
            self, instance: objects.Instance, *,
            block_migration: bool | None = None,
            disk_over_commit: bool | None = None,
            context: object = None) -> dict[str, typing.Any]:
        """Whether this host can take ``instance`` live; on the destination.

        :returns: the ``migrate_data`` document, naming this host as the
            destination, for :meth:`check_can_live_migrate_source` on the
            source.
        :raises NotSupported: when the backend cannot live-migrate.
        :raises InstanceExists: when this host has the instance already.
        :raises InsufficientResources: when its flavor does not fit here.
        """
        self._require('live_migrate')
        if not isinstance(instance, objects.Instance):
            raise exception.InvalidInput(
                reason='a live migration needs an objects.Instance, got %r'
                       % (instance,))
        with self._translate('check live migration', instance), \
                self._claim_locked() as resources:
            if instance.uuid in self._pending:
                raise exception.InstanceExists(instance=instance.uuid)
            self._check_unique(instance)
            self._check_fits(instance.flavor, resources())
        return {'format': self.LIVE_MIGRATION_FORMAT,
                'backend': type(self).__name__, 'dest': self.host,
                'block_migration': bool(block_migration)}

    def cleanup_live_migration_destination_check(
            self, dest_check_data: object, *, context: object = None) -> None:
        """Drop what :meth:`check_can_live_migrate_destination` kept.

        It keeps nothing: the flavor is reserved by
        :meth:`pre_live_migration`. Here for Nova's sequence.
        """
        self._require('live_migrate')

    def check_can_live_migrate_source(
            self, instance: objects.Instance, dest_check_data: object, *,
            block_device_info: object = None,
            context: object = None) -> dict[str, typing.Any]:
        """Whether ``instance`` can leave for the destination; on the source.

        :param dest_check_data: what the destination's
            :meth:`check_can_live_migrate_destination` returned.
        :returns: the ``migrate_data`` document, with this host as the
            source and the instance as this backend stored it.
        :raises InvalidInput: for a document of another backend, or one
            naming this host as the destination.
        :raises InvalidPowerState: unless the instance is RUNNING or
            PAUSED.
        """
        self._require('live_migrate')
        document = self._read_migrate_data(dest_check_data, 'dest')
        if document['dest'] == self.host:
            raise exception.InvalidInput(
                reason='instance %s is on %s already'
                       % (getattr(instance, 'name', instance), self.host))

        def check(handle: typing.Any) -> objects.Instance:
            self._check_live_migratable(handle, instance)
            return self._stored(handle, instance)

        stored = self._run('live_migrate', instance,
                           lambda handle, current: check(handle), lock=False)
        document.update(source=self.host, instance=stored.to_dict(),
                        flavor=stored.flavor.to_dict())
        return document

    def _check_live_migratable(self, handle: typing.Any,
                               instance: objects.Instance) -> None:
        current = self._power_state(handle)
        if current not in self.LIVE_MIGRATABLE:
            raise exception.InvalidPowerState(
                operation='live migrate', instance=instance.name,
                current=power_state.name(current),
                expected=' or '.join(power_state.name(s)
                                     for s in self.LIVE_MIGRATABLE))

    def _incoming_instance(self, instance: objects.Instance,
                           document: dict[str, typing.Any]
                           ) -> objects.Instance:
        """The instance as the source stored it, from ``document``."""
        try:
            moved = objects.Instance.from_dict(
                {**document['instance'],
                 'flavor': objects.Flavor.from_dict(document['flavor'])})
        except (TypeError, ValueError, KeyError, AttributeError,
                exception.InvalidInput) as exc:
            raise exception.InvalidInput(
                reason='migrate_data carries no instance: %s' % exc
            ) from None
        if moved.uuid != instance.uuid:
            raise exception.InvalidInput(
                reason='migrate_data is that of instance %s, not %s'
                       % (moved.uuid, instance.uuid))
        return moved

    def pre_live_migration(
            self, instance: objects.Instance, migrate_data: object, *,
            network_info: object = None, block_device_info: object = None,
            disk_info: object = None,
            context: object = None) -> dict[str, typing.Any]:
        """Get ready to receive ``instance``; on the destination.

        Reserves its flavor here until
        :meth:`post_live_migration_at_destination` or
        :meth:`rollback_live_migration_at_destination`.

        :param migrate_data: what the source's
            :meth:`check_can_live_migrate_source` returned.
        :returns: ``migrate_data``, for :meth:`live_migration`.
        :raises InvalidInput: for a document not naming this host as the
            destination.
        :raises InstanceExists: when this host has the instance, or is
            receiving it already.
        :raises InsufficientResources: when its flavor does not fit here.
        """
        self._require('live_migrate')
        document = self._read_migrate_data(migrate_data, 'dest', 'source')
        if document['dest'] != self.host:
            raise exception.InvalidInput(
                reason='migrate_data names %s as the destination, not %s'
                       % (document['dest'], self.host))
        moved = self._incoming_instance(instance, document)
        with self._translate('prepare live migration', moved), \
                self._claim_locked() as resources:
            if moved.uuid in self._pending:
                raise exception.InstanceExists(instance=moved.uuid)
            self._check_unique(moved)
            self._check_fits(moved.flavor, resources())
            # Counted like a spawn under way until the guest is listed
            # here (see _resources), released by the post or rollback
            # step.
            self._pending[moved.uuid] = moved
        return document

    def _release_incoming(self, instance: objects.Instance) -> bool:
        return self._release_claim(instance.uuid) is not None

    def live_migration(self, instance: objects.Instance, dest: str,
                       migrate_data: object = None, *,
                       block_migration: bool = False,
                       context: object = None) -> None:
        """Move the running ``instance`` to the host ``dest``; on the source.

        The guest keeps running: afterwards it runs on ``dest`` and this
        host no longer lists it. On failure it runs here as before and
        ``dest`` has nothing of it.

        :param dest: the destination's node name (its :attr:`host`).
        :param migrate_data: what the destination's
            :meth:`pre_live_migration` returned; ``None`` for a backend
            that needs nothing of it.
        :raises InvalidPowerState: unless the instance is RUNNING or
            PAUSED.
        :raises MigrationFailed: when the guest could not be moved.
        """
        self._require('live_migrate')
        if not isinstance(dest, str) or not dest or dest == self.host:
            raise exception.InvalidInput(
                reason='the destination must be another host, got %r'
                       % (dest,))
        document = ({} if migrate_data is None else
                    self._read_migrate_data(migrate_data, 'dest'))
        if document and document['dest'] != dest:
            raise exception.InvalidInput(
                reason='migrate_data is for %s, not %s'
                       % (document['dest'], dest))

        def act(handle: typing.Any, current: int) -> None:
            self._check_live_migratable(handle, instance)
            self._live_migrate(handle, self._stored(handle, instance), dest,
                               document)

        self._run('live_migrate', instance, act)

    def post_live_migration(self, instance: objects.Instance, *,
                            block_device_info: object = None,
                            migrate_data: object = None,
                            context: object = None) -> None:
        """Drop what the moved instance left; on the source.

        Idempotent: nothing left is fine.
        """
        self._require('live_migrate')
        with self._instance_locks.hold(instance.uuid), \
                self._translate('clean up after live migration', instance):
            self._live_migration_left(instance)

    def post_live_migration_at_destination(
            self, instance: objects.Instance, *, network_info: object = None,
            block_migration: bool = False, block_device_info: object = None,
            context: object = None) -> None:
        """Take the arrived instance as this host's; on the destination.

        Its reservation ends: the listed guest counts itself.

        :raises InstanceNotFound: when it did not arrive.
        """
        self._require('live_migrate')
        with self._instance_locks.hold(instance.uuid):
            try:
                with self._translate('finish live migration', instance):
                    self._find(instance)
            finally:
                self._release_incoming(instance)

    def rollback_live_migration_at_source(
            self, instance: objects.Instance, *, migrate_data: object = None,
            context: object = None) -> None:
        """After a failed live migration, on the source: nothing to undo.

        :meth:`live_migration` leaves the guest as it was when it fails.
        Here for Nova's sequence.
        """
        self._require('live_migrate')

    def rollback_live_migration_at_destination(
            self, instance: objects.Instance, *, destroy_disks: bool = True,
            migrate_data: object = None, context: object = None) -> None:
        """Drop the reservation and anything that arrived; on the destination.

        Only what :meth:`pre_live_migration` prepared is removed: an
        instance this host ran before is left alone. Idempotent.
        """
        self._require('live_migrate')
        with self._instance_locks.hold(instance.uuid):
            if not self._release_incoming(instance):
                return
            with self._translate('roll back live migration', instance):
                self._destroy(instance, destroy_disks)

    def _live_migrate(self, handle: typing.Any, instance: objects.Instance,
                      dest: str, migrate_data: dict[str, typing.Any]) -> None:
        """Move the running guest to the backend on the host ``dest``.

        Over the backend's own path between its hosts (libvirt's
        migration, an XAPI pool's); ``dest`` prepared for it with
        :meth:`pre_live_migration`. Afterwards ``dest`` lists the guest,
        in the power state it had, and this backend does not. A failure
        leaves the guest as it was here and nothing on ``dest``.

        :raises MigrationFailed: when the guest could not be moved.
        """
        self._not_implemented('_live_migrate')

    def _live_migration_left(self, instance: objects.Instance) -> None:
        """Remove what a live-migrated instance left on the source.

        The default destroys whatever is left of it, keeping nothing.
        """
        self._destroy(instance, True)

    # -- network -------------------------------------------------------------
    # Ports reach a backend as typed :class:`compute_driver.network.model.
    # Port` objects, converted and checked here from whatever the caller
    # gave (Nova's ``network_info``, its JSON, the flat list of the Nova
    # adapter, or Ports). A backend that declares ``supports_plug_vifs``:
    #
    # * receives the ports as ``_create``'s ``network_info`` (a tuple,
    #   empty for none), plugs them before the instance starts, records
    #   them on the instance's backend record (libvirt metadata, Docker
    #   labels, XAPI other_config) and, when the spawn fails, unplugs
    #   them so that nothing is left (no tap, veth or bridge port);
    # * unplugs the recorded ports in ``_destroy``;
    # * re-applies the recorded ports wherever the hypervisor loses them
    #   (power on, reboot, resume, a restart of its daemon, init_host).
    #
    # The backend's record is the source of truth: ``get_interfaces``
    # reads it, so ``show`` and a restarted process know the ports.

    def _network_ports(self, network_info: object) -> tuple[typing.Any, ...]:
        """``network_info`` as checked ports; ``()`` for none.

        :raises InvalidInput: (a subclass) for a malformed port, or two
            ports that collide.
        :raises NotSupported: for ports given to a backend that cannot
            plug them.
        """
        from compute_driver.network import model as net_model
        ports = net_model.from_network_info(network_info)
        if ports:
            self._require('plug_vifs')
        return ports

    def _network_port(self, vif: object) -> typing.Any:
        """One port, checked.

        :param vif: a :class:`~compute_driver.network.model.Port` or one
            VIF of Nova's ``network_info``.
        """
        ports = self._network_ports([vif])
        if len(ports) != 1:
            raise exception.InvalidInput(reason='expected one port')
        return ports[0]

    def plug_vifs(self, instance: objects.Instance,
                  network_info: object) -> None:
        """Plug the instance's ports on the host; idempotent.

        What Nova calls when a host starts (and before a migrated
        instance runs): each port's host side is wired again as it was at
        spawn or attach time (its bridge, its tap or veth). Ports the
        backend has not recorded for the instance are recorded, so later
        re-plugs know them.

        :param network_info: the ports (see :meth:`_network_ports`).
        """
        self._require('plug_vifs')
        ports = self._network_ports(network_info)
        self._run('plug_vifs', instance,
                  lambda h, current: self._plug_vifs(h, instance, ports))

    def unplug_vifs(self, instance: objects.Instance,
                    network_info: object) -> None:
        """Unplug the instance's ports on the host; gone is fine.

        The instance keeps its record of them: a later :meth:`plug_vifs`
        or power on wires them again.
        """
        self._require('unplug_vifs')
        ports = self._network_ports(network_info)
        self._run('unplug_vifs', instance,
                  lambda h, current: self._unplug_vifs(h, instance, ports))

    def attach_interface(self, instance: objects.Instance, vif: object, *,
                         image_meta: object = None,
                         context: object = None) -> None:
        """Give the instance one more port, live when it runs.

        The port is plugged on the host, added to the guest (hot-plugged
        into a running one) and recorded; a failure undoes all three.

        :param vif: a :class:`~compute_driver.network.model.Port` or one
            VIF of Nova's ``network_info``.
        :raises DuplicatePort: when the instance has a port with the same
            id, MAC or device name (nothing is changed).
        """
        self._require('attach_interface')
        port = self._network_port(vif)

        def check(handle: typing.Any) -> None:
            from compute_driver.network import model as net_model
            net_model.validate_ports(
                tuple(self._interfaces(handle, instance)) + (port,))

        self._run('attach_interface', instance,
                  lambda h, current: self._attach_interface(h, instance,
                                                            port),
                  check=check)

    def detach_interface(self, instance: objects.Instance, vif: object, *,
                         context: object = None) -> None:
        """Take a port away from the instance, live when it runs.

        :param vif: the port, or its id (a port id is enough: the
            recorded port is the one detached).
        :raises PortNotAttached: when the instance has no such port.
        """
        self._require('detach_interface')
        if isinstance(vif, str):
            wanted = vif.lower()
        elif isinstance(vif, collections.abc.Mapping):
            wanted = str(vif.get('id', '')).lower()
        else:
            wanted = str(getattr(vif, 'id', vif)).lower()

        def detach(handle: typing.Any, current: int) -> None:
            from compute_driver.network import exception as net_exception
            recorded = tuple(self._interfaces(handle, instance))
            port = next((p for p in recorded if p.id == wanted), None)
            if port is None:
                raise net_exception.PortNotAttached(
                    instance=instance.name, port=wanted,
                    ports=', '.join(p.id for p in recorded) or 'none')
            self._detach_interface(handle, instance, port)

        self._run('detach_interface', instance, detach)

    def get_interfaces(self, instance: objects.Instance
                       ) -> tuple[typing.Any, ...]:
        """The instance's ports, as its backend record has them.

        :returns: :class:`~compute_driver.network.model.Port` objects in
            the guest's NIC order (``eth0`` first).
        """
        self._require('interfaces')
        return tuple(self._run(
            'interfaces', instance,
            lambda h, current: self._interfaces(h, instance), lock=False))

    def list_instance_interfaces(
            self, instances: collections.abc.Iterable[objects.Instance]
            | None = None) -> dict[str, tuple[typing.Any, ...]]:
        """Every instance's ports at once, by instance uuid.

        What :meth:`get_interfaces` returns for each instance that
        :meth:`list_instance_records` lists. This default asks each
        instance in turn (a look-up each); backends that can read every
        instance's ports in a constant number of round trips override
        it. An instance gone meanwhile is left out.

        :param instances: the instances of a listing just made, which
            this default then does not list again; a backend that reads
            every instance's ports at once may return more.
        :returns: :class:`~compute_driver.network.model.Port` tuples in
            NIC order, keyed by uuid.
        :raises NotSupported: when the backend does not record ports.
        """
        self._require('interfaces')
        if instances is None:
            instances = [r.instance for r in self.list_instance_records()]
        ports = {}
        for instance in instances:
            try:
                ports[instance.uuid] = self.get_interfaces(instance)
            except exception.InstanceNotFound:
                continue
        return ports

    def _plug_vifs(self, handle: typing.Any, instance: objects.Instance,
                   ports: tuple[typing.Any, ...]) -> None:
        """Wire ``ports`` on the host again (idempotent); record new ones."""
        self._not_implemented('_plug_vifs')

    def _unplug_vifs(self, handle: typing.Any, instance: objects.Instance,
                     ports: tuple[typing.Any, ...]) -> None:
        """Unwire ``ports`` on the host; keep the record."""
        self._not_implemented('_unplug_vifs')

    def _attach_interface(self, handle: typing.Any,
                          instance: objects.Instance,
                          port: typing.Any) -> None:
        """Plug ``port``, add it to the guest, record it; all or none.

        Called with ``port`` already checked against the recorded ports.
        """
        self._not_implemented('_attach_interface')

    def _detach_interface(self, handle: typing.Any,
                          instance: objects.Instance,
                          port: typing.Any) -> None:
        """Remove the recorded ``port`` from the guest, unplug, forget it."""
        self._not_implemented('_detach_interface')

    def _interfaces(self, handle: typing.Any,
                    instance: objects.Instance) -> tuple[typing.Any, ...]:
        """The recorded ports of the instance, in NIC order."""
        self._not_implemented('_interfaces')

    # -- volumes -------------------------------------------------------------
    # Cinder's connection info is validated and connected through os-brick
    # here, the same way on every backend; the backend's hooks only turn a
    # connected block device into a disk of the instance and keep the
    # attachment in the backend's own record of the instance.

    #: Power states a volume may be attached, detached, swapped or
    #: extended in; those of :data:`LIVE_VOLUME_STATES` need the live
    #: capability. A suspended guest's saved memory names its devices.
    VOLUME_STATES = (power_state.RUNNING, power_state.PAUSED,
                     power_state.SHUTDOWN, power_state.CRASHED)
    LIVE_VOLUME_STATES = (power_state.RUNNING, power_state.PAUSED)

    @property
    def volume_connector(self) -> 'vol_connection.Connector':
        """This backend's os-brick :class:`~.volume.connection.Connector`."""
        from compute_driver.volume import connection as vol_connection
        found = self.__dict__.get('_volume_connector')
        if found is None:
            found = self.__dict__.setdefault(
                '_volume_connector', vol_connection.Connector(self.conf))
        return typing.cast('vol_connection.Connector', found)

    def check_mountpoint(self, mountpoint: object) -> str:
        """Refuse a mountpoint the backend could not use.

        The default takes a guest device name, ``/dev/`` then letters and
        digits (``/dev/vdb``), as Nova's libvirt driver does; container
        backends override it.

        :raises InvalidInput: naming the mountpoint.
        """
        if (not isinstance(mountpoint, str) or
                not re.fullmatch(r'/dev/[a-z][a-z0-9]{1,15}', mountpoint)):
            raise exception.InvalidInput(
                reason='mountpoint must be a device name such as /dev/vdb, '
                       'got %r' % (mountpoint,))
        return mountpoint

    def _volume_state(self, operation: str, instance: objects.Instance,
                      handle: typing.Any) -> bool:
        """Check the power state for a volume operation; whether it is live.

        :raises InvalidPowerState: for a suspended instance.
        :raises NotSupported: for a live one on a backend that cannot.
        """
        current = self._volume_power_state(handle)
        if current not in self.VOLUME_STATES:
            raise exception.InvalidPowerState(
                operation=operation, instance=instance.name,
                current=power_state.name(current),
                expected=' or '.join(power_state.name(s)
                                     for s in self.VOLUME_STATES))
        live = current in self.LIVE_VOLUME_STATES
        if live and not self.supports('live_attach_volume', instance):
            raise exception.NotSupported(
                driver=self.name,
                operation='%s on a %s instance (stop it first)'
                          % (operation, power_state.name(current)))
        return live

    def _volume_power_state(self, handle: typing.Any) -> int:
        """The power state a volume operation checks; :meth:`_power_state`.

        A backend whose volume operations read more of the instance may
        answer it from the same read.
        """
        return self._power_state(handle)

    def _attachment_of(self, handle: typing.Any, instance: objects.Instance,
                       volume_id: str) -> 'vol_model.Attachment':
        from compute_driver.volume import exception as vol_exc
        for attachment in self._volume_attachments(handle, instance):
            if attachment.volume_id == volume_id:
                return attachment
        raise vol_exc.VolumeNotAttached(volume=volume_id,
                                        instance=instance.name)

    def _attachment_to_detach(self, handle: typing.Any,
                              instance: objects.Instance,
                              connection: 'vol_model.Connection',
                              live: bool) -> 'vol_model.Attachment':
        """The attachment :meth:`detach_volume` removes: the recorded one.

        A backend that detaches a volume by its id alone, and reports one
        that is not attached from that detach, may answer from the
        caller's ``connection`` instead of reading its record.

        :raises VolumeNotAttached: when the instance does not have it.
        """
        return self._attachment_of(handle, instance, connection.volume_id)

    def _check_free(self, handle: typing.Any, instance: objects.Instance,
                    connection: 'vol_model.Connection',
                    mountpoint: str) -> None:
        from compute_driver.volume import exception as vol_exc
        for attachment in self._volume_attachments(handle, instance):
            if attachment.volume_id == connection.volume_id:
                raise vol_exc.VolumeAlreadyAttached(
                    volume=connection.volume_id, instance=instance.name,
                    mountpoint=attachment.mountpoint)
            if attachment.mountpoint == mountpoint:
                raise vol_exc.MountpointInUse(
                    instance=instance.name, mountpoint=mountpoint,
                    volume=attachment.volume_id)

    #: Whether volumes are connected on this host, through os-brick, for
    #: the hypervisor to use. ``False`` for a backend whose hypervisor
    #: runs on another host and reaches the storage itself (XAPI's SRs):
    #: the pipeline then leaves connecting to the backend's hooks.
    connects_volumes = True

    #: The device name of an instance's root disk, whose prefix names the
    #: volumes attached after it (``/dev/xvda``: ``/dev/xvdb``...), when
    #: :meth:`check_mountpoint` takes only names of that form; ``None``
    #: lets the caller choose (Nova's default is ``/dev/sda``).
    root_device_name: str | None = None

    def _connect_volume(self, connection: 'vol_model.Connection'
                        ) -> typing.ContextManager[str]:
        """Connect a volume that nothing on the host uses yet.

        :returns: a context manager giving the device path, or the
            volume's description when :attr:`connects_volumes` is off.
        :raises VolumeInUse: naming the process that holds the device.
        """
        from compute_driver.volume import exception as vol_exc
        if not self.connects_volumes:
            return contextlib.nullcontext(connection.describe())
        holder = self._volume_user(connection)
        if holder:
            raise vol_exc.VolumeInUse(volume=connection.volume_id,
                                      device=connection.describe(),
                                      reason=holder)
        return self.volume_connector.connected(connection)

    def _volume_user(self, connection: 'vol_model.Connection'
                     ) -> str | None:
        """Who on the host has a local volume's device open, if anyone.

        A hypervisor keeps the devices of attached volumes open without
        an exclusive claim, so an exclusive open alone does not see a
        volume attached to another instance; the open files of every
        process do. Backends that attach without opening the device (the
        fake) override it.
        """
        from compute_driver.volume import connection as vol_connection
        from compute_driver.volume import model as vol_model
        if connection.protocol != vol_model.LOCAL:
            return None
        return vol_connection.device_user(connection.data['device_path'])

    @contextlib.contextmanager
    def _spawn_volumes(self, instance: objects.Instance,
                       block_device_info: object
                       ) -> typing.Iterator[list['vol_model.Attachment']]:
        """Connect the volumes of ``block_device_info`` for a spawn.

        For a backend's :meth:`_create`: yields one attachment per volume,
        the root disk (boot index 0) first, and disconnects them all when
        the spawn fails.

        :raises InvalidConnectionInfo: for malformed block device info.
        :raises NotSupported: when there are volumes and the backend does
            not declare ``supports_attach_volume`` or ``spawn_volumes``.
        """
        from compute_driver.volume import model as vol_model
        devices = vol_model.block_devices(block_device_info)
        if devices and not self.takes_spawn_volumes():
            raise exception.NotSupported(driver=self.name,
                                         operation='volumes at spawn')
        if (devices and devices[0].boot_index == 0 and
                not self.boots_from_volume()):
            raise exception.NotSupported(driver=self.name,
                                         operation='booting from a volume')
        with contextlib.ExitStack() as stack:
            attachments = []
            for device in devices:
                mountpoint = (device.mountpoint if device.boot_index == 0
                              else self.check_mountpoint(device.mountpoint))
                path = stack.enter_context(
                    self._connect_volume(device.connection))
                attachments.append(vol_model.Attachment(
                    volume_id=device.connection.volume_id,
                    mountpoint=mountpoint,
                    connection_info=device.connection.info,
                    device_path=path, boot_index=device.boot_index))
            yield attachments
            stack.pop_all()

    def _release_volumes(self, instance: objects.Instance,
                         attachments: typing.Iterable['vol_model.Attachment']
                         ) -> None:
        """Disconnect the volumes of a destroyed instance; never raises."""
        for attachment in attachments:
            if not self.connects_volumes:
                break
            try:
                self.volume_connector.disconnect(attachment.connection,
                                                 attachment.device_path)
            except exception.ComputeDriverError as exc:
                LOG.warning('Could not disconnect volume %s of %s: %s',
                            attachment.volume_id, instance.name,
                            exception.one_line(exc))

    #: Whether :meth:`spawn` takes volumes from ``block_device_info``
    #: (boot from volume, volumes at boot); ``None`` follows
    #: ``supports_attach_volume``. A backend that can only mount volumes
    #: when it creates an instance (containers) sets it to ``True``.
    spawn_volumes: bool | None = None

    #: Whether :meth:`spawn` takes a root volume (boot index 0) as the
    #: instance's root disk; ``None`` follows :meth:`takes_spawn_volumes`.
    spawn_root_volume: bool | None = None

    def boots_from_volume(self) -> bool:
        """Whether :meth:`spawn` boots from a root volume."""
        if self.spawn_root_volume is not None:
            return self.spawn_root_volume
        return self.takes_spawn_volumes()

    def takes_spawn_volumes(self) -> bool:
        """Whether :meth:`spawn` takes volumes (see :attr:`spawn_volumes`)."""
        if self.spawn_volumes is not None:
            return self.spawn_volumes
        return bool(self.capabilities.get('supports_attach_volume'))

    def get_volume_connector(self, instance: objects.Instance | None = None,
                             ip: str | None = None) -> dict[str, typing.Any]:
        """This host's connector properties, for Cinder.

        What ``initialize_connection`` takes: os-brick's
        ``get_connector_properties`` of this host.

        :param instance: accepted for Nova's sake; the properties are the
            host's.
        :param ip: the address storage reaches this host at (Nova's
            ``my_block_storage_ip``); loopback when not given.
        """
        return self.volume_connector.properties(self.host, ip)

    def attach_volume(self, instance: objects.Instance,
                      connection_info: object, mountpoint: str, *,
                      context: object = None, disk_bus: str | None = None,
                      device_type: str | None = None,
                      encryption: object = None) -> None:
        """Connect a volume and attach it to the instance at ``mountpoint``.

        Live on a RUNNING or PAUSED instance when the backend declares
        ``supports_live_attach_volume``, to its definition otherwise. A
        failure disconnects the volume and leaves the instance unchanged.

        :param connection_info: Cinder's, with ``driver_volume_type`` and
            ``data`` (see :func:`compute_driver.volume.model.parse`).
        :param mountpoint: the guest device (``/dev/vdb``), or the path in
            a container.
        :raises InvalidConnectionInfo: for malformed connection info.
        :raises VolumeAlreadyAttached: when the instance has it.
        :raises MountpointInUse: when another volume is at ``mountpoint``.
        :raises VolumeDeviceNotFound: when it leads to no block device.
        :raises VolumeInUse: when something on the host uses the device.
        :raises VolumeConnectionFailed: when os-brick cannot connect it.
        :raises NotSupported: for encrypted volumes, and live on a backend
            that cannot.
        """
        from compute_driver.volume import model as vol_model
        self._require('attach_volume')
        connection = vol_model.parse(connection_info)
        if encryption:
            raise exception.NotSupported(driver=self.name,
                                         operation='encrypted volumes')

        def attach(handle: typing.Any, current: int) -> None:
            # After the lookup: an unknown instance is reported first,
            # whatever device names its backend takes.
            checked = self.check_mountpoint(mountpoint)
            live = self._volume_state('attach volume', instance, handle)
            self._check_free(handle, instance, connection, checked)
            with self._connect_volume(connection) as path:
                self._attach_volume(handle, instance, vol_model.Attachment(
                    volume_id=connection.volume_id, mountpoint=checked,
                    connection_info=connection.info, device_path=path),
                    live)

        self._run('attach_volume', instance, attach)

    def detach_volume(self, instance: objects.Instance,
                      connection_info: object, mountpoint: str | None = None,
                      *, context: object = None,
                      encryption: object = None) -> None:
        """Detach a volume from the instance and disconnect it.

        :param mountpoint: accepted for Nova's sake: the volume id of
            ``connection_info`` names the attachment.
        :raises VolumeNotAttached: when the instance does not have it.
        """
        from compute_driver.volume import model as vol_model
        self._require('detach_volume')
        connection = vol_model.parse(connection_info)

        def detach(handle: typing.Any, current: int) -> None:
            live = self._volume_state('detach volume', instance, handle)
            attachment = self._attachment_to_detach(handle, instance,
                                                    connection, live)
            self._detach_volume(handle, instance, attachment, live)
            if self.connects_volumes:
                # The caller's connection info, when the attachment is
                # made of it, is validated already.
                self.volume_connector.disconnect(
                    connection if attachment.connection_info is
                    connection.info else attachment.connection,
                    attachment.device_path)

        self._run('detach_volume', instance, detach)

    def swap_volume(self, instance: objects.Instance,
                    old_connection_info: object, new_connection_info: object,
                    mountpoint: str | None = None, resize_to: int = 0, *,
                    context: object = None) -> None:
        """Replace an attached volume by another, copying its data.

        The instance must be stopped (SHUTDOWN or CRASHED): the data is
        copied (block by block on the host, or by the hypervisor for a
        backend that does not connect volumes), then the new volume takes
        the old one's mountpoint and the old one is disconnected.

        :param resize_to: the new volume's size in GiB when larger, as
            Nova passes it; 0 when the same.
        :raises VolumeNotAttached: when the old volume is not attached.
        :raises InvalidInput: when the new volume is smaller.
        """
        from compute_driver.volume import model as vol_model
        self._require('swap_volume')
        old = vol_model.parse(old_connection_info)
        new = vol_model.parse(new_connection_info)

        def swap(handle: typing.Any, current: int) -> None:
            live = self._volume_state('swap volume', instance, handle)
            if live:
                # Copying under a running guest's writes needs the
                # hypervisor's block job; this copies with the guest off.
                raise exception.NotSupported(
                    driver=self.name,
                    operation='swap volume on a running instance (stop it '
                              'first)')
            attachment = self._attachment_of(handle, instance,
                                             old.volume_id)
            self._check_free(handle, instance, new, '')
            with self._connect_volume(new) as path:
                replacement = vol_model.Attachment(
                    volume_id=new.volume_id,
                    mountpoint=attachment.mountpoint,
                    connection_info=new.info, device_path=path,
                    boot_index=attachment.boot_index)
                self._copy_volume(handle, instance, attachment, replacement)
                self._swap_volume(handle, instance, attachment, replacement,
                                  live)
            if self.connects_volumes:
                self.volume_connector.disconnect(attachment.connection,
                                                 attachment.device_path)

        self._run('swap_volume', instance, swap)

    def extend_volume(self, instance: objects.Instance,
                      connection_info: object, requested_size: int, *,
                      context: object = None) -> None:
        """Make the instance see an attached volume's new, larger size.

        :param requested_size: the new size in bytes, as Nova passes it.
        :raises VolumeNotAttached: when the instance does not have it.
        :raises InvalidInput: for a size that is not a positive integer or
            that the device does not have (or, where the backend grows the
            volume itself, smaller than the volume).
        """
        from compute_driver.volume import model as vol_model
        self._require('extend_volume')
        connection = vol_model.parse(connection_info)
        if (not isinstance(requested_size, int) or
                isinstance(requested_size, bool) or requested_size <= 0):
            raise exception.InvalidInput(
                reason='requested_size must be a positive number of bytes, '
                       'got %r' % (requested_size,))

        def extend(handle: typing.Any, current: int) -> None:
            live = self._volume_state('extend volume', instance, handle)
            attachment = self._attachment_of(handle, instance,
                                             connection.volume_id)
            if self.connects_volumes:
                size = self.volume_connector.extend(attachment.connection)
                if size < requested_size:
                    raise exception.InvalidInput(
                        reason='volume %s has %d bytes, fewer than the %d '
                               'requested' % (connection.volume_id, size,
                                              requested_size))
            else:
                # The hypervisor reaches the volume itself: its hook grows
                # the volume there, to the requested size.
                size = requested_size
            self._extend_volume(handle, instance, attachment, size, live)

        self._run('extend_volume', instance, extend)

    def list_volume_attachments(self, instance: objects.Instance
                                ) -> list['vol_model.Attachment']:
        """The volumes attached to an instance, as its record holds them."""
        return typing.cast(list, self._run(
            'list_volume_attachments', instance,
            lambda h, current: self._volume_attachments(h, instance),
            lock=False))

    def _volume_attachments(self, handle: typing.Any,
                            instance: objects.Instance
                            ) -> list['vol_model.Attachment']:
        """The attachments the backend's record of the instance holds."""
        self._not_implemented('_volume_attachments')

    def _attach_volume(self, handle: typing.Any, instance: objects.Instance,
                       attachment: 'vol_model.Attachment',
                       live: bool) -> None:
        """Give the instance the connected device and record it.

        :param live: whether the instance is running (hot-plug).
        """
        self._not_implemented('_attach_volume')

    def _detach_volume(self, handle: typing.Any, instance: objects.Instance,
                       attachment: 'vol_model.Attachment',
                       live: bool) -> None:
        self._not_implemented('_detach_volume')

    def _swap_volume(self, handle: typing.Any, instance: objects.Instance,
                     old: 'vol_model.Attachment',
                     new: 'vol_model.Attachment', live: bool) -> None:
        self._not_implemented('_swap_volume')

    def _extend_volume(self, handle: typing.Any, instance: objects.Instance,
                       attachment: 'vol_model.Attachment', size: int,
                       live: bool) -> None:
        """Make the instance see the volume's new size.

        :param size: bytes: what the connected device has now, or, when
            :attr:`connects_volumes` is off, the size requested, which
            the hook gives the volume.
        """
        self._not_implemented('_extend_volume')

    def _copy_volume(self, handle: typing.Any, instance: objects.Instance,
                     old: 'vol_model.Attachment',
                     new: 'vol_model.Attachment') -> None:
        """Copy the data of a swapped-out volume onto its replacement.

        Block by block between the devices connected on this host; a
        backend whose hypervisor reaches the volumes itself (see
        :attr:`connects_volumes`) copies there instead.

        :raises InvalidInput: when the new volume is smaller.
        """
        from compute_driver.volume import connection as vol_connection
        old_size = vol_connection.device_size(old.device_path)
        if vol_connection.device_size(new.device_path) < old_size:
            raise exception.InvalidInput(
                reason='volume %s is smaller than volume %s'
                       % (new.volume_id, old.volume_id))
        vol_connection.copy_device(old.device_path, new.device_path)

    # -- images ------------------------------------------------------------
    # Backends receive images through the image service, never by a name
    # in a store of their own: _get_image resolves the reference with
    # image_for, _create gets the verified bytes from the host's cache with
    # fetch_image, and _snapshot uploads with upload_snapshot.

    _image_service: 'image_api.ImageService | None' = None
    _image_cache: 'image_cache_mod.ImageCache | None' = None
    # Guards the lazy building of every backend's image service and cache.
    _image_guard = threading.RLock()

    #: Properties of a base image that its snapshots do not inherit, as
    #: Nova's ``non_inheritable_image_properties``: they describe that
    #: image's data (its signature, how it was cached), not a snapshot's.
    NON_INHERITABLE_IMAGE_PROPERTIES: typing.ClassVar[frozenset[str]] = (
        frozenset(('cache_in_nova', 'bittorrent', 'image_type',
                   'instance_uuid', 'base_image_ref', 'image_location',
                   'owner_id', 'user_id', 'direct_url', 'virtual_size')))
    NON_INHERITABLE_PREFIXES: typing.ClassVar[tuple[str, ...]] = (
        'img_signature', 'os_glance', 'stores')

    @staticmethod
    def check_image_fits_flavor(image: str, size: int | None,
                                flavor: objects.Flavor) -> None:
        """Refuse an image larger than the flavor's root disk.

        Nova's ``FlavorDiskSmallerThanImage``; a root disk of 0 means the
        image's own size and fits any image.

        :param size: bytes: the data's, or the virtual disk's once known.
        :raises ImageUnacceptable: naming both sizes.
        """
        if (size is not None and flavor.root_gb
                and size > flavor.root_gb * 1024 ** 3):
            raise exception.ImageUnacceptable(
                image=image,
                reason='it is %d bytes, larger than the %d GiB root disk of '
                       'flavor %s' % (size, flavor.root_gb, flavor.name))

    @property
    def image_service(self) -> 'image_api.ImageService':
        """The image service instances boot from and snapshots go to.

        Built on first use from ``[image_service]`` (the local directory
        or Glance), so a backend that never touches an image imports no
        Glance client. A caller with an image service of its own (the Nova
        adapter, with Nova's image API and credentials) sets it instead,
        before the first spawn.
        """
        if self._image_service is None:
            with self._image_guard:
                if self._image_service is None:
                    from compute_driver import image
                    self._image_service = image.load(self.conf)
        return self._image_service

    @image_service.setter
    def image_service(self, service: 'image_api.ImageService') -> None:
        with self._image_guard:
            self._image_service = service
            # The cache downloads through the service it was built with.
            self._image_cache = None

    @property
    def image_cache(self) -> 'image_cache_mod.ImageCache':
        """The host's cache of downloaded images.

        Its directory is :meth:`image_cache_path`. Every backend and
        command of the host using that directory shares it, locks
        included: an image is downloaded once however many boots want it
        at the same time.
        """
        if self._image_cache is None:
            with self._image_guard:
                if self._image_cache is None:
                    from compute_driver.image import cache
                    self._image_cache = cache.ImageCache(
                        self.image_cache_path(), self.image_service)
        return self._image_cache

    def image_cache_path(self) -> str:
        """The directory of :attr:`image_cache`.

        ``[image_service] cache_path``; a backend whose hypervisor reads
        the cached files itself keeps them where it can (libvirt: beside
        the instance disks they back).
        """
        return str(self.conf.image_service.cache_path)

    def image_record(self, ref: str) -> 'image_api.ImageRecord':
        """The image service's record of an ``active`` image.

        :param ref: an image id, or a name only one image has (standalone
            callers name images; Nova passes ids).
        :raises ImageNotInService: when no image has that id or name.
        :raises ImageNotActive: when the image has no data (yet).
        :raises ImageServiceUnavailable: when the service cannot be asked.
        """
        from compute_driver.image import exception as image_exception
        service = self.image_service
        record = service.show(ref)
        if record.status != 'active':
            raise image_exception.ImageNotActive(
                image=record.id, service=service.name, status=record.status,
                operation='boot from', reason=record.status)
        return record

    def image_for(self, instance: objects.Instance) -> objects.ImageMeta:
        """The image ``instance.image_ref`` names, for :meth:`_get_image`.

        Only the record is read: nothing is downloaded before the pipeline
        has checked and claimed the flavor. The result's ``id`` (and
        ``name``) is the image service's id, which :meth:`fetch_image`
        takes.

        :raises ImageUnacceptable: when the image's data is larger than
            the flavor's root disk (a root disk of 0 takes the image's
            size).
        :raises: what :meth:`image_record` raises.
        """
        record = self.image_record(instance.image_ref)
        self.check_image_fits_flavor(record.id, record.size, instance.flavor)
        # Kept for fetch_image, whose download then needs no second read
        # of the record (a request to Glance per boot).
        with self._fresh_lock:
            fresh = self._fresh_records
            fresh.pop(record.id, None)
            fresh[record.id] = record
            # Boots refused before their download leave theirs: the
            # oldest go, so that a long-lived driver keeps a few at most.
            while len(fresh) > _FRESH_RECORDS_MAX:
                del fresh[next(iter(fresh))]
        return record.to_image_meta()

    def fetch_image(self, image: objects.ImageMeta) -> str:
        """The path of the image's verified data in the host's cache.

        Downloaded on the first call for an image id, handed out from the
        cache afterwards without any transfer. A failed download leaves
        nothing in the cache.

        :param image: what :meth:`image_for` returned.
        :raises: what :meth:`ImageService.download` raises.
        """
        # The record image_for read, used once: the data is verified
        # against it, and a later boot reads a fresh one.
        with self._fresh_lock:
            record = self._fresh_records.pop(image.id, None)
        return self.image_cache.fetch(image.id, record)

    def upload_snapshot(self, instance: objects.Instance, image_id: str,
                        src: 'image_api.Source', disk_format: str,
                        container_format: str,
                        properties: dict[str, str] | None = None
                        ) -> 'image_api.ImageRecord':
        """Upload a snapshot of ``instance`` to the image service.

        The new image, named ``image_id``, carries Nova's snapshot
        properties: ``image_type=snapshot``, ``instance_uuid`` and
        ``base_image_ref``, the inheritable properties of the image the
        instance booted from (its kernel and ramdisk, OS type, hardware
        hints), its ``min_ram``, and the larger of its ``min_disk`` and
        the flavor's root disk.

        :param src: a path or a binary file object with the data.
        :param properties: further properties, applied last.
        :raises ImageUploadFailed: when the data could not be stored; the
            service then keeps nothing of the new image.
        """
        service = self.image_service
        props = {'base_image_ref': instance.image_ref}
        min_ram, min_disk = 0, instance.flavor.root_gb
        try:
            base = service.show(instance.image_ref)
        except exception.ComputeDriverError as exc:
            # The base image may have been deleted since the boot; the
            # snapshot does not need it.
            LOG.debug('The snapshot of %s inherits no image properties: %s',
                      instance.name, exception.one_line(exc))
        else:
            props = {k: v for k, v in base.properties.items()
                     if k not in self.NON_INHERITABLE_IMAGE_PROPERTIES
                     and not k.startswith(self.NON_INHERITABLE_PREFIXES)}
            props['base_image_ref'] = base.id
            min_ram, min_disk = base.min_ram, max(base.min_disk, min_disk)
        props.update(image_type='snapshot', instance_uuid=instance.uuid)
        props.update(properties or {})
        return service.upload(image_id, src, disk_format, container_format,
                              properties=props, min_ram=min_ram,
                              min_disk=min_disk)

    def image_exists(self, ref: str) -> bool:
        """Whether the image service has an image of this id or name.

        For :meth:`_has_image`: a snapshot's name must be free.
        """
        from compute_driver.image import exception as image_exception
        try:
            self.image_service.show(ref)
        except image_exception.ImageNotInService:
            return False
        except image_exception.AmbiguousImageName:
            return True
        return True

    def delete_snapshot_image(self, ref: str) -> None:
        """Delete a snapshot from the image service; absent is fine.

        For :meth:`_delete_snapshot`.

        :raises InvalidInput: when the image is not a snapshot.
        """
        from compute_driver.image import exception as image_exception
        try:
            record = self.image_service.show(ref)
        except image_exception.ImageNotInService:
            return
        if record.properties.get('image_type') != 'snapshot':
            raise exception.InvalidInput(
                reason='image %s is not a snapshot' % ref)
        self.image_service.delete(record.id)

    def snapshot_images_of(self, instance: objects.Instance) -> list[str]:
        """Ids and names of the image service's snapshots of ``instance``.

        For :meth:`_snapshots_of`.
        """
        refs: list[str] = []
        for record in self.image_service.list():
            if record.properties.get('instance_uuid') == instance.uuid:
                refs.extend((record.id, record.name))
        return refs

    def list_service_images(self) -> list[objects.ImageMeta]:
        """The image service's active images, for :meth:`list_images`.

        Each is named by its name when that is a valid reference no other
        image has, so it can be booted and deleted by it, else by its id.
        """
        records = [r for r in self.image_service.list()
                   if r.status == 'active']
        names = collections.Counter(r.name for r in records)
        result = []
        for record in records:
            meta = record.to_image_meta()
            if (names[record.name] == 1
                    and objects.IMAGE_REF_RE.fullmatch(record.name)):
                meta = dataclasses.replace(meta, name=record.name)
            result.append(meta)
        return result

    def images_in_use(self, all_instances: collections.abc.Iterable[
            objects.Instance] | None = None,
            image_refs: collections.abc.Iterable[str] = ()) -> set[str]:
        """Ids of the images the host's instances boot from.

        Each instance's image, resolved by the image service when it was
        named, and the kernel and ramdisk images it names.

        :param all_instances: the instances; ``None`` lists this
            backend's.
        :param image_refs: further images in use, e.g. those of instances
            of other hosts sharing this one's cache (Nova hands them over).
        :raises ImageServiceUnavailable: when a name cannot be resolved:
            pruning must not guess.
        """
        from compute_driver.image import exception as image_exception
        if all_instances is None:
            all_instances = [r.instance
                             for r in self.list_instance_records()]
        used: set[str] = set()
        refs = {i.image_ref for i in all_instances} | set(image_refs)
        for ref in sorted(ref for ref in refs if ref):
            used.add(ref)
            try:
                record = self.image_service.show(ref)
            except (image_exception.ImageNotInService,
                    image_exception.AmbiguousImageName):
                continue
            used.add(record.id)
            used.update(v for k, v in record.properties.items()
                        if k in ('kernel_id', 'ramdisk_id'))
        return used

    def manage_image_cache(self, context: object = None,
                           all_instances: collections.abc.Iterable[
                               objects.Instance] | None = None,
                           max_age: float | None = None,
                           image_refs: collections.abc.Iterable[str] = ()
                           ) -> list['image_cache_mod.CachedImage']:
        """Remove cached images no instance uses, unused for a while.

        Nova's periodic ``manage_image_cache``: a cached image goes once
        no instance of the host boots from it and it was last used more
        than ``max_age`` seconds ago.

        :param all_instances: the host's instances; ``None`` lists this
            backend's.
        :param max_age: seconds; ``None`` is ``[image_service]
            cache_max_age``.
        :param image_refs: further images to keep (see
            :meth:`images_in_use`).
        :returns: the images removed.
        """
        from compute_driver.image import cache
        if max_age is None:
            max_age = self.conf.image_service.cache_max_age
        in_use = self.images_in_use(all_instances, image_refs)
        removed = cache.prune(self.image_cache, max_age, in_use=in_use)
        return removed + self._prune_backend_images(max_age, in_use)

    def _prune_backend_images(self, max_age: float,
                              in_use: collections.abc.Collection[str]
                              ) -> list['image_cache_mod.CachedImage']:
        """Hook: prune the backend's own copies of image service images.

        For a backend that keeps them outside :attr:`image_cache` (dockerd
        keeps loaded images), by the rule of :meth:`manage_image_cache`.
        The default keeps none.
        """
        return []

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
