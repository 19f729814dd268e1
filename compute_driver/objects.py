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

"""Typed data passed to and returned by every backend.

These are plain dataclasses that validate themselves when built, so a bad
value is refused with :class:`~compute_driver.exception.InvalidInput` before
any backend sees it. The Nova adapter converts Nova's versioned objects to
these.
"""

import collections.abc
import dataclasses
import json
import re
import typing

from compute_driver import exception
from compute_driver import power_state

# A name every backend can store unchanged: a Docker container name, a libvirt
# domain name, a XAPI name_label and a DNS label all accept it.
NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,62}')
# Image references are Docker-style (``repo/name:tag``), file names or
# template names; whitespace and control characters are never part of one.
IMAGE_REF_RE = re.compile(r'[^\s\x00-\x1f\x7f]{1,255}')
# The form validate_uuid returns: a uuid already in it (every record this
# library stored) is returned as it is.
_CANONICAL_UUID_RE = re.compile(
    r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


def validate_name(name: object) -> str:
    """Check an instance name.

    :param name: the proposed name.
    :returns: the name.
    :raises InvalidInstanceName: when it is not 1 to 63 characters of
        letters, digits, ``_``, ``.`` and ``-`` starting with a letter or
        digit.
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise exception.InvalidInstanceName(
            name=name,
            reason='use 1 to 63 letters, digits, "_", "." or "-", starting '
                   'with a letter or digit')
    return name


def validate_uuid(value: object) -> str:
    """Return ``value`` as a canonical lower-case uuid string.

    :raises InvalidInput: when it is not a uuid.
    """
    text = str(value)
    if _CANONICAL_UUID_RE.fullmatch(text):
        return text
    # What uuid.UUID(text) accepts, without the uuid module: its import
    # (it imports platform) would cost every command a few milliseconds,
    # and find_instance asks this of every instance name.
    digits = text.replace('urn:', '').replace('uuid:', '')
    digits = digits.strip('{}').replace('-', '')
    try:
        if len(digits) != 32:
            raise ValueError(digits)
        number = int(digits, 16)
    except ValueError:
        raise exception.InvalidInput(
            reason='%r is not a valid uuid' % (value,)) from None
    digits = '%032x' % number
    return '%s-%s-%s-%s-%s' % (digits[:8], digits[8:12], digits[12:16],
                               digits[16:20], digits[20:])


def validate_image_ref(ref: object) -> str:
    """Check an image reference.

    :raises InvalidInput: when it is empty or contains whitespace.
    """
    if not isinstance(ref, str) or not IMAGE_REF_RE.fullmatch(ref):
        raise exception.InvalidInput(
            reason='image reference %r must be 1 to 255 characters with no '
                   'whitespace' % (ref,))
    return ref


#: The most vCPUs one instance may have: KVM's long-standing per-guest
#: limit, above what Xen and Docker hosts run in practice. Larger values are
#: mistakes that would otherwise reach the hypervisor's API.
MAX_VCPUS = 1024
#: The most memory (and swap), in MiB, one instance may have: 16 TiB.
MAX_MEMORY_MB = 16 * 1024 * 1024
#: The most disk, in GiB, one instance's root or ephemeral disk may have:
#: 1 PiB.
MAX_DISK_GB = 1024 * 1024


def _check_int(owner: str, field: str, value: object, minimum: int,
               maximum: int | None = None) -> None:
    # bool is an int subclass; True vCPUs is a bug, not one vCPU.
    if (not isinstance(value, int) or isinstance(value, bool)
            or value < minimum):
        raise exception.InvalidInput(
            reason='%s %s must be an integer >= %d, got %r' % (
                owner, field, minimum, value))
    if maximum is not None and value > maximum:
        raise exception.InvalidInput(
            reason='%s %s must be at most %d, got %d' % (
                owner, field, maximum, value))


@dataclasses.dataclass(frozen=True)
class Flavor:
    """The size of an instance.

    :param name: the flavor's name, e.g. ``m1.small``.
    :param vcpus: virtual CPUs, 1 to :data:`MAX_VCPUS`.
    :param memory_mb: memory in MiB, 1 to :data:`MAX_MEMORY_MB`.
    :param root_gb: root disk in GiB, up to :data:`MAX_DISK_GB`; 0 means
        the image's own size.
    :param ephemeral_gb: extra ephemeral disk in GiB, up to
        :data:`MAX_DISK_GB`.
    :param swap: swap in MiB, up to :data:`MAX_MEMORY_MB`.
    :param extra_specs: backend-specific hints (``hw:...`` keys in Nova).
    """

    name: str
    vcpus: int
    memory_mb: int
    root_gb: int = 0
    ephemeral_gb: int = 0
    swap: int = 0
    extra_specs: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise exception.InvalidInput(
                reason='flavor name must be a non-empty string')
        owner = 'flavor %s' % self.name
        _check_int(owner, 'vcpus', self.vcpus, 1, MAX_VCPUS)
        _check_int(owner, 'memory_mb', self.memory_mb, 1, MAX_MEMORY_MB)
        _check_int(owner, 'root_gb', self.root_gb, 0, MAX_DISK_GB)
        _check_int(owner, 'ephemeral_gb', self.ephemeral_gb, 0, MAX_DISK_GB)
        _check_int(owner, 'swap', self.swap, 0, MAX_MEMORY_MB)
        if not all(isinstance(k, str) and isinstance(v, str)
                   for k, v in self.extra_specs.items()):
            raise exception.InvalidInput(
                reason='%s extra_specs keys and values must be strings'
                       % owner)

    @property
    def disk_gb(self) -> int:
        """Local disk the flavor claims: root plus ephemeral."""
        return self.root_gb + self.ephemeral_gb

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: collections.abc.Mapping[str, typing.Any]
                  ) -> 'Flavor':
        """Rebuild a flavor stored by a backend (labels, metadata).

        The values are whatever the backend read back, so they are typed
        ``Any`` here and checked by the constructor.

        :raises InvalidInput: when ``data`` is not a valid flavor.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in fields})
        except TypeError as exc:
            raise exception.InvalidInput(
                reason='bad flavor record %r: %s' % (data, exc)) from None


@dataclasses.dataclass(frozen=True)
class ImageMeta:
    """What a backend knows about an image.

    :param name: the reference used to boot it (a Docker image name, an image
        file in the libvirt image store, a XAPI template's name).
    :param disk_format: ``qcow2``, ``raw``, ``docker``, ``vhd``...
    :param container_format: ``bare``, ``docker``...
    :param min_ram: memory in MiB the image needs.
    :param min_disk: disk in GiB the image needs.
    :param size: size in bytes when known.
    :param properties: free-form properties; snapshots carry
        ``instance_uuid`` naming the instance they were taken from.
    """

    name: str
    disk_format: str | None = None
    container_format: str | None = None
    min_ram: int = 0
    min_disk: int = 0
    size: int | None = None
    properties: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_image_ref(self.name)
        _check_int('image %s' % self.name, 'min_ram', self.min_ram, 0)
        _check_int('image %s' % self.name, 'min_disk', self.min_disk, 0)

    @property
    def id(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class Instance:
    """One virtual machine or container as the library knows it.

    Backends store every field in the hypervisor (domain metadata, container
    labels, VM other_config) and rebuild this object from there: there is no
    database.

    :param uuid: the instance's uuid, canonical lower-case.
    :param name: see :func:`validate_name`.
    :param flavor: the :class:`Flavor` it was booted with.
    :param image_ref: the image it was booted from.
    :param metadata: free-form user key/value pairs.
    """

    uuid: str
    name: str
    flavor: Flavor
    image_ref: str
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__ once, at build time.
        object.__setattr__(self, 'uuid', validate_uuid(self.uuid))
        validate_name(self.name)
        validate_image_ref(self.image_ref)
        if not isinstance(self.flavor, Flavor):
            raise exception.InvalidInput(
                reason='instance flavor must be a Flavor, got %r'
                       % (self.flavor,))
        if not all(isinstance(k, str) and isinstance(v, str)
                   for k, v in self.metadata.items()):
            raise exception.InvalidInput(
                reason='instance metadata keys and values must be strings')

    @classmethod
    def new(cls, name: str, flavor: Flavor, image_ref: str,
            metadata: dict[str, str] | None = None) -> 'Instance':
        """Build an instance with a fresh random uuid."""
        import uuid as uuidlib
        return cls(uuid=str(uuidlib.uuid4()), name=name, flavor=flavor,
                   image_ref=image_ref, metadata=dict(metadata or {}))

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: collections.abc.Mapping[str, typing.Any]
                  ) -> 'Instance':
        """Rebuild an instance from :meth:`to_dict` output.

        The values are whatever the backend read back, so they are typed
        ``Any`` here and checked by the constructor.

        :raises InvalidInput: when the record is incomplete or invalid.
        """
        try:
            flavor = data['flavor']
            if isinstance(flavor, dict):
                flavor = Flavor.from_dict(flavor)
            return cls(uuid=data['uuid'], name=data['name'], flavor=flavor,
                       image_ref=data['image_ref'],
                       metadata=dict(data.get('metadata') or {}))
        except (KeyError, TypeError) as exc:
            raise exception.InvalidInput(
                reason='bad instance record: missing or wrong %s' % exc
            ) from None


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """An instance's current status, as Nova's ``InstanceInfo``.

    :param state: one of :mod:`compute_driver.power_state`.
    :param internal_id: the backend's own handle (domain uuid, container id,
        VM opaque ref), for logs and debugging.
    """

    state: int
    internal_id: str | None = None

    def __post_init__(self) -> None:
        if self.state not in power_state.ALL:
            raise exception.InvalidInput(
                reason='unknown power state %r' % (self.state,))


@dataclasses.dataclass(frozen=True)
class InstanceRecord:
    """An instance together with its status, as listed by a backend."""

    instance: Instance
    info: InstanceInfo


@dataclasses.dataclass(frozen=True)
class Leftover:
    """Something an interrupted or failed operation left on the host.

    :param backend: the backend's name (``libvirt``, ``docker`` ...).
    :param what: the object, as an operator finds it (a domain, a
        directory, a container).
    :param reason: why it is a leftover.
    :param removed: whether it was removed; ``False`` on a dry run.
    :param error: why removing it failed, or ``''``.
    """

    backend: str
    what: str
    reason: str
    removed: bool = False
    error: str = ''


@dataclasses.dataclass(frozen=True)
class HostResources:
    """What a host has and what this backend's instances use of it.

    Field names follow the dictionary Nova's ``get_available_resource``
    returns; :meth:`to_dict` gives that dictionary.
    """

    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    hypervisor_type: str
    hypervisor_version: int
    hypervisor_hostname: str
    running_vms: int = 0
    cpu_info: dict[str, object] = dataclasses.field(default_factory=dict)
    disk_available_least: int | None = None

    @property
    def vcpus_free(self) -> int:
        return self.vcpus - self.vcpus_used

    @property
    def memory_mb_free(self) -> int:
        return self.memory_mb - self.memory_mb_used

    @property
    def local_gb_free(self) -> int:
        return self.local_gb - self.local_gb_used

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data['cpu_info'] = json.dumps(self.cpu_info, sort_keys=True)
        if data['disk_available_least'] is None:
            data['disk_available_least'] = self.local_gb_free
        data['numa_topology'] = None
        return data


def version_to_int(version: str | tuple[int, ...]) -> int:
    """Turn ``'8.0.1'`` or ``(8, 0, 1)`` into Nova's integer ``8000001``.

    :raises ValueError: for more than three parts or a non-numeric part.
    """
    parts = (version.split('.') if isinstance(version, str)
             else list(version))
    if not 1 <= len(parts) <= 3:
        raise ValueError('version %r must have 1 to 3 parts' % (version,))
    numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
    return numbers[0] * 1000000 + numbers[1] * 1000 + numbers[2]


def version_to_str(version: int) -> str:
    """Turn Nova's integer ``8000001`` back into ``'8.0.1'``."""
    return '%d.%d.%d' % (version // 1000000, version // 1000 % 1000,
                         version % 1000)
