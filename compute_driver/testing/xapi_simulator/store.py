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

import collections
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


def copy_record(record: Record) -> Record:
    """A copy of a record that shares nothing mutable with it.

    XAPI's fields are atoms, sets (lists) and string maps, so copying one
    level of containers is enough; ``copy.deepcopy`` would cost the
    simulator several times as much on every read and event.
    """
    return {key: (value.copy() if isinstance(value, (dict, list))
                  else value) for key, value in record.items()}


def now() -> xmlrpc.client.DateTime:
    """The current time as XAPI sends it: an XML-RPC dateTime in UTC."""
    return xmlrpc.client.DateTime(time.strftime('%Y%m%dT%H:%M:%SZ',
                                                time.gmtime()))


#: XAPI's value for a time that never happened: the epoch, never ``''``.
EPOCH = xmlrpc.client.DateTime('19700101T00:00:00Z')


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    """What the simulator knows of one XAPI class.

    :param defaults: every field with its default value; ``uuid`` and the
        fields named in ``refs``/``ref_sets`` are filled in by the store.
    :param writable: fields with a generated ``set_<field>``.
    :param maps: fields with generated ``add_to_``/``remove_from_``.
    :param has_name: whether ``get_by_name_label`` exists.
    :param ints: the fields of XAPI type ``int``: decimal strings in
        XML-RPC, numbers in JSON-RPC.
    """

    defaults: Record
    writable: frozenset[str] = frozenset()
    maps: frozenset[str] = frozenset()
    has_name: bool = True
    ints: frozenset[str] = frozenset()


def _spec(defaults: Record, writable: str = '', maps: str = '',
          has_name: bool = True, ints: str = '') -> ClassSpec:
    return ClassSpec(defaults, frozenset(writable.split()),
                     frozenset(maps.split()), has_name,
                     frozenset(ints.split()))


# Field names and value types follow XAPI's data model (datamodel*.ml).
# Each class carries the fields tools commonly read; what is left out is
# listed in the simulator's documentation.
_OPS: Record = {'allowed_operations': [], 'current_operations': {}}

CLASSES: dict[str, ClassSpec] = {
    'session': _spec({
        'this_host': NULL_REF, 'this_user': NULL_REF, 'last_active': EPOCH,
        'pool': False, 'originator': '', 'other_config': {},
        'is_local_superuser': True, 'subject': NULL_REF,
        'validation_time': EPOCH, 'auth_user_sid': '',
        'auth_user_name': '', 'rbac_permissions': [], 'tasks': [],
        'parent': NULL_REF, 'client_certificate': False,
    }, has_name=False),
    'pool': _spec({
        'name_label': '', 'name_description': '', 'master': NULL_REF,
        'default_SR': NULL_REF, 'suspend_image_SR': NULL_REF,
        'crash_dump_SR': NULL_REF, 'other_config': {}, 'ha_enabled': False,
        'ha_configuration': {}, 'tags': [], 'gui_config': {},
        'restrictions': {}, 'cpu_info': {}, 'policy_no_vendor_device': False,
        'live_patching_disabled': False, 'tls_verification_enabled': False,
        **_OPS,
    }, 'name_label name_description default_SR suspend_image_SR '
       'crash_dump_SR other_config tags', 'other_config'),
    'host': _spec({
        'name_label': '', 'name_description': '', 'hostname': '',
        'address': '', 'enabled': True, 'API_version_major': '2',
        'API_version_minor': '21', 'API_version_vendor': 'XenSource',
        'API_version_vendor_implementation': {},
        'software_version': {}, 'cpu_info': {}, 'other_config': {},
        'metrics': NULL_REF, 'host_CPUs': [], 'resident_VMs': [],
        'memory_overhead': '0', 'control_domain': NULL_REF, 'PIFs': [],
        'PBDs': [], 'capabilities': [], 'cpu_configuration': {},
        'sched_policy': 'credit', 'supported_bootloaders': ['pygrub',
                                                            'eliloader'],
        'logging': {}, 'suspend_image_sr': NULL_REF,
        'crash_dump_sr': NULL_REF, 'crashdumps': [], 'patches': [],
        'updates': [], 'ha_statefiles': [], 'ha_network_peers': [],
        'blobs': {}, 'tags': [], 'external_auth_type': '',
        'external_auth_service_name': '', 'external_auth_configuration': {},
        'edition': 'xcp-ng', 'license_params': {}, 'license_server': {},
        'bios_strings': {}, 'power_on_mode': '', 'power_on_config': {},
        'local_cache_sr': NULL_REF, 'chipset_info': {}, 'PCIs': [],
        'PGPUs': [], 'PUSBs': [], 'ssl_legacy': False, 'guest_VCPUs_params':
        {}, 'display': 'enabled', 'virtual_hardware_platform_versions':
        ['0', '1', '2'], 'iscsi_iqn': '', 'multipathing': False,
        'uefi_certificates': '', 'certificates': [], 'editions': [],
        'tls_verification_enabled': False, 'https_only': False,
        'last_software_update': EPOCH, **_OPS,
    }, 'name_label name_description other_config tags logging '
       'license_server', 'other_config logging tags',
        ints='API_version_major API_version_minor memory_overhead'),
    'host_metrics': _spec({
        'memory_total': '0', 'memory_free': '0', 'live': True,
        'last_updated': EPOCH, 'other_config': {},
    }, has_name=False, ints='memory_total memory_free'),
    'host_cpu': _spec({
        'host': NULL_REF, 'number': '0', 'vendor': '', 'speed': '0',
        'modelname': '', 'family': '0', 'model': '0', 'stepping': '0',
        'flags': '', 'features': '', 'utilisation': 0.0, 'other_config': {},
    }, has_name=False, ints='number speed family model'),
    'VM': _spec({
        'name_label': '', 'name_description': '', 'power_state': 'Halted',
        'user_version': '1', 'is_a_template': False,
        'is_default_template': False, 'is_a_snapshot': False,
        'snapshot_of': NULL_REF, 'snapshots': [], 'snapshot_time': EPOCH,
        'snapshot_info': {}, 'snapshot_metadata': '',
        'transportable_snapshot_id': '', 'parent': NULL_REF,
        'children': [], 'is_control_domain': False,
        'domid': '-1', 'domarch': '', 'resident_on': NULL_REF,
        'scheduled_to_be_resident_on': NULL_REF, 'affinity': NULL_REF,
        'memory_overhead': '0', 'memory_target': '0',
        'memory_static_max': '0', 'memory_dynamic_max': '0',
        'memory_dynamic_min': '0', 'memory_static_min': '0',
        'VCPUs_params': {}, 'VCPUs_max': '1', 'VCPUs_at_startup': '1',
        'actions_after_shutdown': 'destroy', 'actions_after_softreboot':
        'soft_reboot', 'actions_after_reboot': 'restart',
        'actions_after_crash': 'restart', 'consoles': [], 'VIFs': [],
        'VBDs': [], 'VUSBs': [], 'crash_dumps': [], 'VTPMs': [],
        'VGPUs': [], 'attached_PCIs': [], 'PV_bootloader': '',
        'PV_kernel': '', 'PV_ramdisk': '', 'PV_args': '',
        'PV_bootloader_args': '', 'PV_legacy_args': '',
        'HVM_boot_policy': 'BIOS order', 'HVM_boot_params': {},
        'HVM_shadow_multiplier': 1.0, 'platform': {}, 'PCI_bus': '',
        'other_config': {}, 'last_boot_CPU_flags': {},
        'last_booted_record': '', 'recommendations': '',
        'xenstore_data': {}, 'ha_always_run': False,
        'ha_restart_priority': '', 'tags': [], 'blocked_operations': {},
        'metrics': NULL_REF, 'guest_metrics': NULL_REF,
        'bios_strings': {}, 'protection_policy': NULL_REF,
        'is_snapshot_from_vmpp': False, 'snapshot_schedule': NULL_REF,
        'is_vmss_snapshot': False, 'appliance': NULL_REF,
        'start_delay': '0', 'shutdown_delay': '0', 'order': '0',
        'suspend_VDI': NULL_REF, 'suspend_SR': NULL_REF, 'version': '0',
        'generation_id': '', 'hardware_platform_version': '0',
        'has_vendor_device': False, 'requires_reboot': False,
        'reference_label': '', 'domain_type': 'hvm', 'NVRAM': {},
        'pending_guidances': [], 'pending_guidances_recommended': [],
        'pending_guidances_full': [], 'blobs': {}, 'groups': [], **_OPS,
    }, 'name_label name_description is_a_template other_config '
       'VCPUs_params PV_args HVM_boot_params platform xenstore_data tags '
       'blocked_operations actions_after_shutdown actions_after_reboot '
       'actions_after_crash affinity domain_type user_version '
       'HVM_boot_policy PV_bootloader PV_kernel PV_ramdisk '
       'PV_bootloader_args PV_legacy_args PCI_bus recommendations '
       'ha_always_run ha_restart_priority suspend_SR start_delay '
       'shutdown_delay order has_vendor_device',
       'other_config VCPUs_params HVM_boot_params platform xenstore_data '
       'blocked_operations',
        ints='user_version domid memory_overhead memory_target '
             'memory_static_max memory_dynamic_max memory_dynamic_min '
             'memory_static_min VCPUs_max VCPUs_at_startup start_delay '
             'shutdown_delay order version hardware_platform_version'),
    'VM_metrics': _spec({
        'memory_actual': '0', 'VCPUs_number': '0', 'VCPUs_utilisation': {},
        'VCPUs_CPU': {}, 'VCPUs_params': {}, 'VCPUs_flags': {},
        'state': [], 'start_time': EPOCH, 'install_time': EPOCH,
        'last_updated': EPOCH, 'other_config': {}, 'hvm': True,
        'nested_virt': False, 'nomigrate': False,
        'current_domain_type': 'unspecified',
    }, has_name=False, ints='memory_actual VCPUs_number'),
    # What a guest agent reports; a VM without one has none (guest_metrics
    # is the null reference).
    'VM_guest_metrics': _spec({
        'os_version': {}, 'netbios_name': {}, 'PV_drivers_version': {},
        'PV_drivers_up_to_date': False, 'PV_drivers_detected': False,
        'memory': {}, 'disks': {}, 'networks': {}, 'other': {},
        'last_updated': EPOCH, 'other_config': {}, 'live': False,
        'can_use_hotplug_vbd': 'unspecified',
        'can_use_hotplug_vif': 'unspecified',
    }, has_name=False),
    'VBD': _spec({
        'VM': NULL_REF, 'VDI': NULL_REF, 'device': '', 'userdevice': '0',
        'bootable': False, 'mode': 'RW', 'type': 'Disk', 'empty': False,
        'unpluggable': True, 'currently_attached': False,
        'storage_lock': False, 'status_code': '0', 'status_detail': '',
        'runtime_properties': {}, 'metrics': NULL_REF,
        'other_config': {}, 'qos_algorithm_type': '',
        'qos_algorithm_params': {}, 'qos_supported_algorithms': [],
        **_OPS,
    }, 'userdevice bootable mode type unpluggable other_config',
        'other_config', has_name=False, ints='status_code'),
    'VDI': _spec({
        'name_label': '', 'name_description': '', 'SR': NULL_REF,
        'VBDs': [], 'crash_dumps': [], 'virtual_size': '0',
        'physical_utilisation': '0', 'type': 'user', 'sharable': False,
        'read_only': False, 'managed': True, 'missing': False,
        'parent': NULL_REF, 'is_a_snapshot': False,
        'snapshot_of': NULL_REF, 'snapshots': [], 'snapshot_time': EPOCH,
        'location': '', 'other_config': {}, 'sm_config': {},
        'xenstore_data': {}, 'storage_lock': False, 'tags': [],
        'allow_caching': False, 'on_boot': 'persist',
        'metadata_latest': False, 'is_tools_iso': False,
        'cbt_enabled': False, **_OPS,
    }, 'name_label name_description other_config sharable read_only tags '
       'sm_config xenstore_data', 'other_config sm_config xenstore_data',
        ints='virtual_size physical_utilisation'),
    'SR': _spec({
        'name_label': '', 'name_description': '', 'VDIs': [], 'PBDs': [],
        'physical_size': '0', 'physical_utilisation': '0',
        'virtual_allocation': '0', 'type': 'ext', 'content_type': 'user',
        'shared': False, 'other_config': {}, 'sm_config': {}, 'tags': [],
        'blobs': {}, 'local_cache_enabled': False,
        'introduced_by': NULL_REF, 'clustered': False,
        'is_tools_sr': False, **_OPS,
    }, 'name_label name_description other_config tags shared',
        'other_config sm_config',
        ints='physical_size physical_utilisation virtual_allocation'),
    'PBD': _spec({
        'host': NULL_REF, 'SR': NULL_REF, 'device_config': {},
        'currently_attached': False, 'other_config': {},
    }, 'other_config', 'other_config', has_name=False),
    'VIF': _spec({
        'VM': NULL_REF, 'network': NULL_REF, 'device': '0', 'MAC': '',
        'MTU': '1500', 'currently_attached': False, 'status_code': '0',
        'status_detail': '', 'runtime_properties': {},
        'MAC_autogenerated': False, 'other_config': {},
        'qos_algorithm_type': '', 'qos_algorithm_params': {},
        'qos_supported_algorithms': [], 'metrics': NULL_REF,
        'locking_mode': 'network_default', 'ipv4_allowed': [],
        'ipv6_allowed': [], 'ipv4_configuration_mode': 'None',
        'ipv4_addresses': [], 'ipv4_gateway': '',
        'ipv6_configuration_mode': 'None', 'ipv6_addresses': [],
        'ipv6_gateway': '', **_OPS,
    }, 'other_config locking_mode', 'other_config', has_name=False,
        ints='MTU status_code'),
    'network': _spec({
        'name_label': '', 'name_description': '', 'VIFs': [], 'PIFs': [],
        'bridge': '', 'MTU': '1500', 'managed': True, 'other_config': {},
        'blobs': {}, 'tags': [], 'default_locking_mode': 'unlocked',
        'assigned_ips': {}, 'purpose': [], **_OPS,
    }, 'name_label name_description other_config MTU tags',
        'other_config', ints='MTU'),
    'PIF': _spec({
        'device': '', 'network': NULL_REF, 'host': NULL_REF, 'MAC': '',
        'MTU': '1500', 'VLAN': '-1', 'metrics': NULL_REF,
        'physical': True, 'currently_attached': True,
        'ip_configuration_mode': 'None', 'IP': '', 'netmask': '',
        'gateway': '', 'DNS': '', 'bond_slave_of': NULL_REF,
        'bond_master_of': [], 'VLAN_master_of': NULL_REF,
        'VLAN_slave_of': [], 'tunnel_access_PIF_of': [],
        'tunnel_transport_PIF_of': [], 'management': False,
        'other_config': {}, 'disallow_unplug': False,
        'ipv6_configuration_mode': 'None', 'IPv6': [], 'ipv6_gateway': '',
        'primary_address_type': 'IPv4', 'managed': True,
        'properties': {}, 'capabilities': [], 'igmp_snooping_status':
        'unknown', 'sriov_physical_PIF_of': [], 'sriov_logical_PIF_of': [],
        'PCI': NULL_REF,
    }, 'other_config disallow_unplug', 'other_config', has_name=False,
        ints='MTU VLAN'),
    'console': _spec({
        'protocol': 'rfb', 'location': '', 'VM': NULL_REF,
        'other_config': {},
    }, 'other_config', 'other_config', has_name=False),
    'message': _spec({
        'name': '', 'priority': '0', 'cls': 'VM', 'obj_uuid': '',
        'timestamp': EPOCH, 'body': '',
    }, has_name=False, ints='priority'),
    'task': _spec({
        'name_label': '', 'name_description': '', 'status': 'pending',
        'progress': 0.0, 'type': '', 'result': '', 'error_info': [],
        'created': EPOCH, 'finished': EPOCH, 'resident_on': NULL_REF,
        'subtask_of': NULL_REF, 'subtasks': [], 'backtrace': '()',
        'other_config': {}, **_OPS,
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
    ('PBD', 'host'): ('host', 'PBDs'),
    ('PBD', 'SR'): ('SR', 'PBDs'),
    ('PIF', 'host'): ('host', 'PIFs'),
    ('PIF', 'network'): ('network', 'PIFs'),
    ('console', 'VM'): ('VM', 'consoles'),
}


class Store:
    """Every object of the simulated pool, behind one lock.

    Whoever waits for a change sleeps on :attr:`changed`, which every
    change notifies; ``event.from`` callers on :attr:`polled`, which only
    a change to a class they watch (:attr:`watched`) notifies.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.polled = threading.Condition(self.lock)
        #: Class ('*': every class) -> how many waiting ``event.from``
        #: calls watch it. Waking them for other classes' changes, each
        #: to find nothing and wait again, cost the simulator more than
        #: the answers, when XAPI wakes for little.
        self.watched: collections.Counter[str] = collections.Counter()
        self.objects: dict[str, dict[str, Record]] = {c: {} for c in CLASSES}
        # (id, class, operation, ref): event.from reads the records as
        # they are when it answers, as XAPI does.
        self.events: list[tuple[int, str, str, str]] = []
        self.event_id = 0
        #: Events before this id were dropped from :attr:`events`.
        self.oldest_event = 0
        #: VM ref -> whether it runs a guest agent with PV drivers; VMs
        #: not listed follow the server's ``guest_tools`` setting.
        self.guest_tools: dict[str, bool] = {}
        #: (class, ref, event id) -> the record's XML-RPC text as it was
        #: at that event, see :class:`.wire.Snapshot`.
        self.marshalled: dict[tuple, str] = {}

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
        self.events.append((self.event_id, cls, operation, ref))
        # XAPI keeps a bounded queue too; a poller whose token is older
        # than what is left gets EVENTS_LOST.
        if len(self.events) > 20000:
            self.oldest_event = self.events[10000][0]
            del self.events[:10000]
        self.changed.notify_all()
        if self.watched[cls] or self.watched['*']:
            self.polled.notify_all()

    def wake(self) -> None:
        """Wake every waiter, whatever it waits for (with the lock held)."""
        self.changed.notify_all()
        self.polled.notify_all()

    def create(self, cls: str, fields: Record | None = None,
               ref: str | None = None) -> str:
        """Add an object; back-references of its relations follow."""
        with self.lock:
            record = copy_record(CLASSES[cls].defaults)
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
