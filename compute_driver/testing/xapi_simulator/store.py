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

"""The simulator's object database, with XAPI's errors and events.

Records hold what XAPI puts on the wire: 64-bit integers are decimal
strings (XML-RPC's ``int`` is 32-bit, so XAPI sends every ``int`` field as
a string), references are ``OpaqueRef:<uuid>``, ``Ref:null``
(:data:`NULL_REF`) stands for no object, and maps are string to string.
Every change is recorded as an event for ``event.from``.
"""

import copy
import dataclasses
import threading
import time
import typing
import uuid as uuidlib
import xmlrpc.client

NULL_REF = 'OpaqueRef:NULL'

Record = dict[str, typing.Any]


class ApiError(Exception):
    """A XAPI failure: ``ErrorDescription`` is ``[code] + params``."""

    def __init__(self, code: str, *params: object) -> None:
        super().__init__(code, *params)
        self.code = code
        self.params = [str(p) for p in params]

    @property
    def description(self) -> list[str]:
        return [self.code] + self.params


def new_ref() -> str:
    return 'OpaqueRef:%s' % uuidlib.uuid4()


def now() -> xmlrpc.client.DateTime:
    """The current time as XAPI sends it: an XML-RPC dateTime in UTC."""
    return xmlrpc.client.DateTime(time.strftime('%Y%m%dT%H:%M:%SZ',
                                                time.gmtime()))


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    """What the simulator knows of one XAPI class.

    :param defaults: every field with its default value; ``uuid`` and the
        fields named in ``refs``/``ref_sets`` are filled in by the store.
    :param writable: fields with a generated ``set_<field>``.
    :param maps: fields with generated ``add_to_``/``remove_from_``.
    :param has_name: whether ``get_by_name_label`` exists.
    """

    defaults: Record
    writable: frozenset[str] = frozenset()
    maps: frozenset[str] = frozenset()
    has_name: bool = True


def _spec(defaults: Record, writable: str = '', maps: str = '',
          has_name: bool = True) -> ClassSpec:
    return ClassSpec(defaults, frozenset(writable.split()),
                     frozenset(maps.split()), has_name)


# Field names and value types follow XAPI's data model; only the fields a
# compute driver reads or writes are kept.
CLASSES: dict[str, ClassSpec] = {
    'session': _spec({
        'this_host': NULL_REF, 'this_user': NULL_REF, 'last_active': '',
        'pool': False, 'originator': '', 'other_config': {},
    }, has_name=False),
    'pool': _spec({
        'name_label': '', 'name_description': '', 'master': NULL_REF,
        'default_SR': NULL_REF, 'other_config': {},
    }, 'name_label name_description default_SR other_config',
        'other_config'),
    'host': _spec({
        'name_label': '', 'name_description': '', 'hostname': '',
        'address': '', 'enabled': True, 'API_version_major': '2',
        'API_version_minor': '21', 'API_version_vendor': 'XenSource',
        'software_version': {}, 'cpu_info': {}, 'other_config': {},
        'metrics': NULL_REF, 'host_CPUs': [], 'resident_VMs': [],
        'memory_overhead': '0', 'control_domain': NULL_REF,
    }, 'name_label name_description other_config', 'other_config'),
    'host_metrics': _spec({
        'memory_total': '0', 'memory_free': '0', 'live': True,
        'last_updated': '', 'other_config': {},
    }, has_name=False),
    'host_cpu': _spec({
        'host': NULL_REF, 'number': '0', 'vendor': '', 'speed': '0',
        'modelname': '', 'family': '0', 'model': '0', 'stepping': '0',
        'flags': '', 'features': '', 'utilisation': 0.0, 'other_config': {},
    }, has_name=False),
    'VM': _spec({
        'name_label': '', 'name_description': '', 'power_state': 'Halted',
        'user_version': '1', 'is_a_template': False,
        'is_default_template': False, 'is_a_snapshot': False,
        'snapshot_of': NULL_REF, 'snapshots': [], 'snapshot_time': '',
        'parent': NULL_REF, 'children': [], 'is_control_domain': False,
        'domid': '-1', 'resident_on': NULL_REF, 'affinity': NULL_REF,
        'memory_overhead': '0', 'memory_target': '0',
        'memory_static_max': '0', 'memory_dynamic_max': '0',
        'memory_dynamic_min': '0', 'memory_static_min': '0',
        'VCPUs_params': {}, 'VCPUs_max': '1', 'VCPUs_at_startup': '1',
        'actions_after_shutdown': 'destroy',
        'actions_after_reboot': 'restart', 'actions_after_crash': 'restart',
        'consoles': [], 'VIFs': [], 'VBDs': [], 'crash_dumps': [],
        'PV_bootloader': '', 'PV_kernel': '', 'PV_ramdisk': '',
        'PV_args': '', 'HVM_boot_policy': 'BIOS order',
        'HVM_boot_params': {}, 'platform': {}, 'other_config': {},
        'xenstore_data': {}, 'tags': [], 'blocked_operations': {},
        'allowed_operations': [], 'current_operations': {},
        'metrics': NULL_REF, 'guest_metrics': NULL_REF,
        'domain_type': 'hvm', 'suspend_VDI': NULL_REF,
    }, 'name_label name_description is_a_template other_config '
       'VCPUs_params PV_args HVM_boot_params platform xenstore_data tags '
       'blocked_operations actions_after_shutdown actions_after_reboot '
       'actions_after_crash affinity domain_type',
       'other_config VCPUs_params HVM_boot_params platform xenstore_data '
       'blocked_operations'),
    'VM_metrics': _spec({
        'memory_actual': '0', 'VCPUs_number': '0', 'state': [],
        'start_time': '', 'install_time': '', 'last_updated': '',
        'other_config': {},
    }, has_name=False),
    'VBD': _spec({
        'VM': NULL_REF, 'VDI': NULL_REF, 'device': '', 'userdevice': '0',
        'bootable': False, 'mode': 'RW', 'type': 'Disk', 'empty': False,
        'unpluggable': True, 'currently_attached': False,
        'other_config': {}, 'qos_algorithm_type': '',
        'qos_algorithm_params': {},
    }, 'userdevice bootable mode type unpluggable other_config',
        'other_config', has_name=False),
    'VDI': _spec({
        'name_label': '', 'name_description': '', 'SR': NULL_REF,
        'VBDs': [], 'virtual_size': '0', 'physical_utilisation': '0',
        'type': 'user', 'sharable': False, 'read_only': False,
        'managed': True, 'missing': False, 'is_a_snapshot': False,
        'snapshot_of': NULL_REF, 'snapshots': [], 'snapshot_time': '',
        'location': '', 'other_config': {}, 'sm_config': {}, 'tags': [],
    }, 'name_label name_description other_config sharable read_only tags',
        'other_config sm_config'),
    'SR': _spec({
        'name_label': '', 'name_description': '', 'VDIs': [], 'PBDs': [],
        'physical_size': '0', 'physical_utilisation': '0',
        'virtual_allocation': '0', 'type': 'ext', 'content_type': 'user',
        'shared': False, 'other_config': {}, 'sm_config': {}, 'tags': [],
    }, 'name_label name_description other_config tags', 'other_config'),
    'VIF': _spec({
        'VM': NULL_REF, 'network': NULL_REF, 'device': '0', 'MAC': '',
        'MTU': '1500', 'currently_attached': False, 'other_config': {},
        'qos_algorithm_type': '', 'qos_algorithm_params': {},
        'locking_mode': 'network_default',
    }, 'other_config locking_mode', 'other_config', has_name=False),
    'network': _spec({
        'name_label': '', 'name_description': '', 'VIFs': [], 'PIFs': [],
        'bridge': '', 'MTU': '1500', 'other_config': {}, 'tags': [],
    }, 'name_label name_description other_config MTU tags',
        'other_config'),
    'task': _spec({
        'name_label': '', 'name_description': '', 'status': 'pending',
        'progress': 0.0, 'type': '', 'result': '', 'error_info': [],
        'created': '', 'finished': '', 'resident_on': NULL_REF,
        'other_config': {}, 'allowed_operations': [],
        'current_operations': {},
    }, 'other_config', 'other_config'),
}

#: Field -> (class it points at, field there holding the back-references):
#: XAPI keeps both sides of a one-to-many relation up to date.
RELATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ('VBD', 'VM'): ('VM', 'VBDs'),
    ('VBD', 'VDI'): ('VDI', 'VBDs'),
    ('VIF', 'VM'): ('VM', 'VIFs'),
    ('VIF', 'network'): ('network', 'VIFs'),
    ('VDI', 'SR'): ('SR', 'VDIs'),
    ('host_cpu', 'host'): ('host', 'host_CPUs'),
    ('VM', 'snapshot_of'): ('VM', 'snapshots'),
    ('VDI', 'snapshot_of'): ('VDI', 'snapshots'),
    ('VM', 'resident_on'): ('host', 'resident_VMs'),
}


class Store:
    """Every object of the simulated pool, behind one lock.

    ``event.from`` callers sleep on :attr:`changed`, which every change
    notifies.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[str, dict[str, Record]] = {c: {} for c in CLASSES}
        # (id, class, operation, ref, snapshot or None)
        self.events: list[tuple[int, str, str, str, Record | None]] = []
        self.event_id = 0
        #: Events before this id were dropped from :attr:`events`.
        self.oldest_event = 0

    # -- access ------------------------------------------------------------

    def table(self, cls: str) -> dict[str, Record]:
        return self.objects[cls]

    def get(self, cls: str, ref: object) -> Record:
        """The live record; :class:`ApiError` HANDLE_INVALID if unknown."""
        record = self.objects[cls].get(ref) if isinstance(ref, str) else None
        if record is None:
            raise ApiError('HANDLE_INVALID', cls, ref)
        return record

    def find(self, cls: str, **fields: object) -> list[str]:
        return [ref for ref, rec in self.objects[cls].items()
                if all(rec.get(k) == v for k, v in fields.items())]

    # -- changes -----------------------------------------------------------

    def _record_event(self, cls: str, operation: str, ref: str) -> None:
        self.event_id += 1
        record = self.objects[cls].get(ref)
        self.events.append((self.event_id, cls, operation, ref,
                            copy.deepcopy(record) if record else None))
        # XAPI keeps a bounded queue too; a poller whose token is older
        # than what is left gets EVENTS_LOST.
        if len(self.events) > 20000:
            self.oldest_event = self.events[10000][0]
            del self.events[:10000]
        self.changed.notify_all()

    def create(self, cls: str, fields: Record | None = None,
               ref: str | None = None) -> str:
        """Add an object; back-references of its relations follow."""
        with self.lock:
            record = copy.deepcopy(CLASSES[cls].defaults)
            record.update(copy.deepcopy(fields or {}))
            record.setdefault('uuid', str(uuidlib.uuid4()))
            ref = ref or new_ref()
            self.objects[cls][ref] = record
            for (owner, field), (target, back) in RELATIONS.items():
                if owner == cls:
                    self._link(target, record.get(field), back, ref)
            self._record_event(cls, 'add', ref)
            return ref

    def _link(self, cls: str, ref: object, field: str, value: str) -> None:
        target = self.objects[cls].get(ref) if isinstance(ref, str) else None
        if target is not None and value not in target[field]:
            target[field].append(value)
            self._record_event(cls, 'mod', typing.cast(str, ref))

    def _unlink(self, cls: str, ref: object, field: str,
                value: str) -> None:
        target = self.objects[cls].get(ref) if isinstance(ref, str) else None
        if target is not None and value in target[field]:
            target[field].remove(value)
            self._record_event(cls, 'mod', typing.cast(str, ref))

    def update(self, cls: str, ref: str, **fields: object) -> None:
        """Change fields of an object and record one ``mod`` event."""
        with self.lock:
            record = self.get(cls, ref)
            for field, value in fields.items():
                relation = RELATIONS.get((cls, field))
                if relation is not None:
                    self._unlink(relation[0], record.get(field), relation[1],
                                 ref)
                    self._link(relation[0], value, relation[1], ref)
                record[field] = value
            self._record_event(cls, 'mod', ref)

    def touch(self, cls: str, ref: str) -> None:
        """Record a ``mod`` event after changing a record in place."""
        with self.lock:
            self._record_event(cls, 'mod', ref)

    def destroy(self, cls: str, ref: str) -> None:
        with self.lock:
            record = self.get(cls, ref)
            for (owner, field), (target, back) in RELATIONS.items():
                if owner == cls:
                    self._unlink(target, record.get(field), back, ref)
            del self.objects[cls][ref]
            self._record_event(cls, 'del', ref)
