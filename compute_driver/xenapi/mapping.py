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

"""Mapping between XAPI records and the library's objects.

The instance a VM stands for is kept in the VM's ``other_config`` under the
``compute_driver_*`` keys (:data:`KEY_UUID` ...): XAPI is the only place
the backend stores anything, so a VM can be listed, found and destroyed by
any process that can reach the pool. A VM being spawned carries its
spawn's owner in its name (:func:`spawn_name`) until the spawn succeeds.
"""

import dataclasses
import functools
import json
import logging
import os
import re
import socket
import typing
import xml.dom.minidom

from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state

LOG = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB

KEY_UUID = 'compute_driver_uuid'
KEY_NAME = 'compute_driver_name'
KEY_FLAVOR = 'compute_driver_flavor'
KEY_IMAGE = 'compute_driver_image_ref'
KEY_METADATA = 'compute_driver_metadata'
#: On a snapshot: the uuid of the instance it was taken of.
KEY_SNAPSHOT_OF = 'compute_driver_snapshot_of'
#: On a VM whose spawn had not finished, in earlier versions (spawns now
#: mark it by its name): ``<machine>:<pid>`` of the
#: process spawning it.
KEY_SPAWNING = 'compute_driver_spawning'

#: A VM being spawned is named ``<prefix> <owner> <uuid>`` until the spawn
#: succeeds, so whatever an interrupted spawn left can be found and swept
#: by ``init_host`` and ``compute-driver cleanup``.
SPAWN_PREFIX = 'compute-driver-spawn'

#: What each guest operation needs XAPI to allow: the operation in the
#: VM's ``allowed_operations`` and the guest feature it stands for.
GUEST_FEATURES = {
    'clean_shutdown': 'a guest agent with PV drivers (feature-shutdown)',
    'clean_reboot': 'a guest agent with PV drivers (feature-reboot)',
    'suspend': 'a guest agent with PV drivers (feature-suspend)',
    'changing_VCPUs_live': 'vCPU hot-plug (feature-vcpu-hotplug)',
}

#: XAPI's vm_power_state -> the library's power state.
POWER_STATES = {
    'Halted': power_state.SHUTDOWN,
    'Running': power_state.RUNNING,
    'Paused': power_state.PAUSED,
    'Suspended': power_state.SUSPENDED,
    'Crashed': power_state.CRASHED,
}

Record = dict[str, typing.Any]


def state_of(record: Record) -> int:
    """The library's power state of a VM record (NOSTATE if unknown)."""
    return POWER_STATES.get(record.get('power_state', ''),
                            power_state.NOSTATE)


@dataclasses.dataclass
class VM:
    """The backend's handle on an instance's VM.

    :param ref: the VM's reference.
    :param state: its XAPI power state, as last known.
    :param record: its record once read from XAPI (``None`` until then).
    :param instance: the instance it stands for, as stored at spawn.
    """

    ref: str
    state: str
    record: Record | None = None
    instance: objects.Instance | None = None


def state_name(state: int) -> str:
    """XAPI's name of a library power state (``Halted``...)."""
    return next(k for k, v in POWER_STATES.items() if v == state)


def guest_can(record: Record, operation: str) -> bool:
    """Whether XAPI allows a guest operation on a VM now.

    XAPI lists in ``allowed_operations`` only what the guest's agent
    and drivers support (``VM_guest_metrics.other``); a guest
    without tools lacks the clean operations and vCPU hot-plug.
    """
    return operation in record.get('allowed_operations', ())


def spawn_name(owner: str, uuid: str) -> str:
    """The name of a VM while ``owner`` spawns instance ``uuid``."""
    return '%s %s %s' % (SPAWN_PREFIX, owner, uuid)


def spawn_owner(record: Record) -> tuple[str, str] | None:
    """``(owner, instance uuid)`` of a VM whose spawn did not finish.

    Also reads the ``other_config`` mark of earlier versions; ``None``
    for any other VM and for snapshots.
    """
    other = record.get('other_config', {})
    owner = other.get(KEY_SPAWNING)
    uuid = other.get(KEY_UUID, '')
    label = record.get('name_label', '')
    if owner is None and label.startswith(SPAWN_PREFIX + ' '):
        _, owner, uuid = (label.split(' ') + ['', ''])[:3]
    if owner is None or record.get('is_a_snapshot'):
        return None
    return owner, uuid


def legacy_owner_gone(owner: str) -> bool | None:
    """Whether the ``<machine>:<pid>`` owner of earlier versions ended.

    :returns: ``None`` for another machine's or a damaged owner, whose
        spawn may still run elsewhere.
    """
    host, _, pid = owner.rpartition(':')
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def transition(before: str, after: str) -> int | None:
    """The lifecycle event of a power-state change, or ``None``."""
    if before == after:
        return None
    if after == 'Running':
        return (virtevent.EVENT_LIFECYCLE_RESUMED if before == 'Paused'
                else virtevent.EVENT_LIFECYCLE_STARTED)
    if after in ('Halted', 'Crashed'):
        return virtevent.EVENT_LIFECYCLE_STOPPED
    if after == 'Paused':
        return virtevent.EVENT_LIFECYCLE_PAUSED
    if after == 'Suspended':
        return virtevent.EVENT_LIFECYCLE_SUSPENDED
    return None


def instance_tags(instance: objects.Instance) -> dict[str, str]:
    """The ``other_config`` entries that record an instance."""
    return {
        KEY_UUID: instance.uuid,
        KEY_NAME: instance.name,
        KEY_FLAVOR: json.dumps(instance.flavor.to_dict(), sort_keys=True),
        KEY_IMAGE: instance.image_ref,
        KEY_METADATA: json.dumps(instance.metadata, sort_keys=True),
    }


def is_instance(record: Record) -> bool:
    """Whether a VM record is an instance this backend created.

    Templates (a half-built instance still is one), snapshots and the
    control domain never are.
    """
    return (KEY_UUID in record.get('other_config', {}) and
            not record.get('is_a_template') and
            not record.get('is_a_snapshot') and
            not record.get('is_control_domain'))


def instance_of(record: Record) -> objects.Instance | None:
    """Rebuild the instance a VM record stands for.

    :returns: ``None`` (and logs why) for a VM that is not one or whose
        tags were damaged by hand.
    """
    if not is_instance(record):
        return None
    tags = record['other_config']
    try:
        return objects.Instance.from_dict({
            'uuid': tags[KEY_UUID], 'name': tags[KEY_NAME],
            'flavor': json.loads(tags[KEY_FLAVOR]),
            'image_ref': tags[KEY_IMAGE],
            'metadata': json.loads(tags.get(KEY_METADATA) or '{}')})
    except (KeyError, ValueError, exception.InvalidInput) as exc:
        LOG.warning('Ignoring VM %s: its %s* other_config keys are not a '
                    'valid instance: %s', record.get('uuid'),
                    'compute_driver_', exc)
        return None


_IMAGE_REF_RE = objects.IMAGE_REF_RE


def image_name(record: Record) -> str:
    """The image reference a template or snapshot is listed under.

    Its name_label when that is a valid reference; XAPI's own template
    names contain spaces, so those are listed with each run of
    whitespace replaced by ``_`` (``Debian_Bookworm_12``), or by uuid when
    even that is not valid.
    """
    label = record.get('name_label', '')
    if _IMAGE_REF_RE.fullmatch(label):
        return label
    slug = re.sub(r'\s+', '_', label.strip())
    if _IMAGE_REF_RE.fullmatch(slug):
        return slug
    return record['uuid']


def image_meta(record: Record) -> objects.ImageMeta:
    """A template or snapshot as an image."""
    tags = record.get('other_config', {})
    properties = {'xapi_uuid': record['uuid'],
                  'name_label': record.get('name_label', '')}
    if record.get('is_a_snapshot'):
        properties['image_type'] = 'snapshot'
        if KEY_SNAPSHOT_OF in tags:
            properties['instance_uuid'] = tags[KEY_SNAPSHOT_OF]
    else:
        properties['image_type'] = 'template'
    return objects.ImageMeta(
        name=image_name(record), disk_format='vhd', container_format='bare',
        min_ram=0, properties=properties)


def is_image(record: Record) -> bool:
    """Whether a VM record is a template or snapshot offered as an image.

    Never a half-built instance: a template carrying instance tags or
    named by a spawn in progress.
    """
    return bool(record['is_a_template'] and not record['is_control_domain']
                and (record['is_a_snapshot'] or not (
                    KEY_UUID in record['other_config'] or
                    record['name_label'].startswith(SPAWN_PREFIX + ' '))))


def matches_image(record: Record, ref: str) -> bool:
    return ref in (record.get('uuid'), record.get('name_label'),
                   image_name(record))


def resize_disks(disks_xml: str, flavor: objects.Flavor,
                 sr_uuid: str = '') -> str:
    """A template's ``other_config:disks`` sized for a flavor.

    Spawns of one template and flavor reuse the result.

    The bootable disk (else the first) gets the flavor's ``root_gb`` when
    it asks for one, and an ephemeral disk of ``ephemeral_gb`` is added.
    Every disk whose ``sr`` is empty -- as in XAPI's stock templates --
    gets ``sr_uuid``: ``VM.provision`` looks ``sr`` up as an SR uuid and
    fails on an empty one (``xe vm-install`` rewrites it the same way).

    :raises InvalidInput: when the template's disk list is not XML.
    """
    return _resized_disks(disks_xml, flavor.root_gb, flavor.ephemeral_gb,
                          sr_uuid)


@functools.lru_cache(maxsize=64)
def _resized_disks(disks_xml: str, root_gb: int, ephemeral_gb: int,
                   sr_uuid: str) -> str:
    try:
        document = xml.dom.minidom.parseString(disks_xml or '<provision/>')
    except Exception as exc:
        raise exception.InvalidInput(
            reason='the template\'s other_config:disks is not XML: %s'
                   % exc) from None
    root = typing.cast(xml.dom.minidom.Element, document.documentElement)
    disks = root.getElementsByTagName('disk')
    if root_gb and disks:
        boot = next((d for d in disks
                     if d.getAttribute('bootable') == 'true'), disks[0])
        boot.setAttribute('size', str(root_gb * GiB))
    if ephemeral_gb:
        devices = [int(d.getAttribute('device') or 0) for d in disks]
        extra = document.createElement('disk')
        for key, value in (('device', str(max(devices, default=-1) + 1)),
                           ('size', str(ephemeral_gb * GiB)),
                           ('sr', ''), ('bootable', 'false'),
                           ('type', 'ephemeral')):
            extra.setAttribute(key, value)
        root.appendChild(extra)
    if sr_uuid:
        for disk in root.getElementsByTagName('disk'):
            if not disk.getAttribute('sr'):
                disk.setAttribute('sr', sr_uuid)
    return root.toxml()


def host_resources(host: Record, memory_total: int, sr: Record | None,
                   flavors: typing.Iterable[objects.Flavor], running: int,
                   hypervisor_type: str) -> objects.HostResources:
    """The pool master's resources with instances of these flavors on it.

    :param memory_total: the master's memory in bytes.
    :param sr: the record of the SR instance disks go on, if any.
    """
    flavors = list(flavors)
    software = host.get('software_version', {})
    version = (software.get('product_version') or
               software.get('platform_version') or '0')
    try:
        version_int = objects.version_to_int(
            '.'.join(version.split('.')[:3]))
    except ValueError:
        version_int = 0
    cpu_info = host.get('cpu_info', {})
    cpus = len(host.get('host_CPUs', [])) or int(
        cpu_info.get('cpu_count', 0))
    sockets = int(cpu_info.get('socket_count', 1) or 1)
    return objects.HostResources(
        vcpus=cpus, memory_mb=memory_total // MiB,
        local_gb=int((sr or {}).get('physical_size', 0)) // GiB,
        vcpus_used=sum(f.vcpus for f in flavors),
        memory_mb_used=sum(f.memory_mb for f in flavors),
        local_gb_used=sum(f.disk_gb for f in flavors),
        hypervisor_type=hypervisor_type,
        hypervisor_version=version_int,
        hypervisor_hostname=host['hostname'] or host['name_label'],
        running_vms=running,
        cpu_info={'arch': 'x86_64',
                  'model': cpu_info.get('modelname', ''),
                  'vendor': cpu_info.get('vendor', ''),
                  'topology': {'sockets': sockets,
                               'cores': max(1, cpus // sockets),
                               'threads': 1}})
