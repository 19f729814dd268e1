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

"""The local image store and the instance disks made from it.

An image is ``NAME.json`` in ``[libvirt] images_path``::

    {"file": "NAME.qcow2", "disk_format": "qcow2",
     "kernel": "NAME.vmlinuz", "ramdisk": "NAME.initrd",
     "cmdline": "console=ttyS0", "min_ram": 64, "min_disk": 0,
     "properties": {"os_type": "linux"}}

File names are relative to the store. ``kernel``, ``ramdisk`` and
``cmdline`` are optional and ask for direct kernel boot. A snapshot is an
image like any other whose properties carry ``image_type: snapshot`` and
``instance_uuid``; it keeps the kernel of the image it was taken from.

Instance disks are made with ``qemu-img``: the image is first copied once
into ``INSTANCES_PATH/_base`` (named after the image and its file's size
and modification time, so a replaced image gets a new base), and a qcow2
instance disk is an overlay backed by that copy; a raw one is a full
conversion of it. A revert converts the snapshot straight into the disk.
Nothing prunes ``_base`` yet: a copy stays after its image is replaced or
deleted.
"""

import collections.abc
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
import struct
import subprocess
import threading

from compute_driver import exception
from compute_driver import leftovers
from compute_driver.libvirt import conf as libvirt_conf
from compute_driver import objects

LOG = logging.getLogger(__name__)

#: Property marking an image made by ``snapshot``.
SNAPSHOT_TYPE = 'snapshot'

#: Directory of ``instances_path`` holding the cached image copies.
BASE_DIR = libvirt_conf.BASE_DIR

_QEMU_IMG_TIMEOUT = 600
_COPY_CHUNK = 1 << 20

#: The disk formats an image of the store may declare.
DISK_FORMATS = ('qcow2', 'raw')

# -- format inspection --------------------------------------------------------
#
# qemu trusts what an image file says about itself: a qcow2 header may name
# a backing file or an external data file anywhere on the host, which qemu
# then opens (and a guest reads) with the hypervisor's rights, and a file
# declared raw but holding qcow2 boots as an unusable disk. So, as Nova's
# format inspector does, every image's header is read before the image is
# used, and an image is refused when its real format is not the declared
# one or when it refers to other files.

_QCOW2_MAGIC = b'QFI\xfb'
_QCOW2_INCOMPAT_DATA_FILE = 1 << 2
_QCOW2_EXT_DATA_FILE = 0x44415441
_QCOW2_EXT_END = 0
# The header is at most one cluster; 64 KiB covers the default cluster
# size, so the extensions a data file is named in are read too.
_HEADER_BYTES = 64 * 1024
# ISO 9660 volume descriptors start at sector 16 (of 2 KiB); the ID is
# one byte into it, and the first descriptor may be at one of the next two.
_ISO_OFFSETS = (0x8001, 0x8801, 0x9001)

#: Formats a declared ``raw`` image may hold: qemu reads them as plain
#: bytes, as it would any raw disk.
_RAW_LIKE = frozenset(('raw', 'iso', 'gpt', 'mbr'))


@dataclasses.dataclass(frozen=True)
class InspectedFormat:
    """What an image file's header says it is.

    :param format: ``qcow2``, ``qed``, ``vmdk``, ``vhd``, ``vhdx``,
        ``vdi``, ``luks``, ``iso``, ``gpt``, ``mbr`` or ``raw`` (nothing
        recognised).
    :param unsafe: why the file must not be used whatever its declared
        format (a backing file, an external data file, encryption), or
        ``''``.
    :param virtual_size: bytes of the disk a guest sees, as the header
        says (the file's size for a raw file), when read: for qcow2 and
        raw files.
    """

    format: str
    unsafe: str = ''
    virtual_size: int | None = None


def _inspect_qcow2(header: bytes) -> InspectedFormat:
    if len(header) < 72:
        return InspectedFormat('qcow2', 'its qcow2 header is truncated')
    (version, backing_offset, _, cluster_bits, virtual_size,
     crypt) = struct.unpack_from('>IQIIQI', header, 4)
    if version not in (2, 3) or not 9 <= cluster_bits <= 21:
        return InspectedFormat(
            'qcow2', 'its qcow2 header is corrupt (version %d, cluster_bits '
                     '%d)' % (version, cluster_bits))
    if backing_offset:
        return InspectedFormat('qcow2', 'it has a backing file')
    if crypt:
        return InspectedFormat('qcow2', 'it is encrypted')
    if version == 2:
        return InspectedFormat('qcow2', virtual_size=virtual_size)
    if len(header) < 104:
        return InspectedFormat('qcow2', 'its qcow2 header is truncated')
    (incompatible,) = struct.unpack_from('>Q', header, 72)
    if incompatible & _QCOW2_INCOMPAT_DATA_FILE:
        return InspectedFormat('qcow2', 'it has an external data file')
    (offset,) = struct.unpack_from('>I', header, 100)
    # Header extensions: type, length, data padded to 8 bytes; the data
    # file's name may be there without the feature bit.
    while offset + 8 <= len(header):
        kind, length = struct.unpack_from('>II', header, offset)
        if kind == _QCOW2_EXT_END:
            break
        if kind == _QCOW2_EXT_DATA_FILE:
            return InspectedFormat('qcow2', 'it names an external data file')
        offset += 8 + (length + 7) // 8 * 8
    return InspectedFormat('qcow2', virtual_size=virtual_size)


def inspect_format(path: str) -> InspectedFormat:
    """Read the header of a disk image file and tell its format.

    Only headers are read, never the whole file, and nothing is executed:
    this is safe on any file, which ``qemu-img info`` alone is not (it
    follows backing files).

    :raises OSError: when the file cannot be read.
    """
    with open(path, 'rb') as handle:
        header = handle.read(_HEADER_BYTES)
        size = os.fstat(handle.fileno()).st_size
        footer = b''
        if size >= 512:
            handle.seek(size - 512)
            footer = handle.read(512)
        iso = b''
        for offset in _ISO_OFFSETS:
            if size >= offset + 5:
                handle.seek(offset)
                iso = handle.read(5)
                if iso == b'CD001':
                    break
    if header.startswith(_QCOW2_MAGIC):
        return _inspect_qcow2(header)
    if header.startswith(b'QED\x00'):
        return InspectedFormat('qed')
    if header.startswith(b'KDMV') or header.startswith(
            b'# Disk DescriptorFile'):
        return InspectedFormat('vmdk')
    if header.startswith(b'vhdxfile'):
        return InspectedFormat('vhdx')
    # A dynamic VHD starts with a copy of its footer; a fixed one has only
    # the footer, at the end.
    if header.startswith(b'conectix') or footer.startswith(b'conectix'):
        return InspectedFormat('vhd')
    if header[64:68] == b'\x7f\x10\xda\xbe':
        return InspectedFormat('vdi')
    if header.startswith(b'LUKS\xba\xbe'):
        return InspectedFormat('luks')
    if iso == b'CD001':
        return InspectedFormat('iso', virtual_size=size)
    if header[512:520] == b'EFI PART':
        return InspectedFormat('gpt', virtual_size=size)
    if header[510:512] == b'\x55\xaa':
        return InspectedFormat('mbr', virtual_size=size)
    return InspectedFormat('raw', virtual_size=size)


def check_image_file(name: str, path: str, declared: str) -> InspectedFormat:
    """Refuse an image file that is unsafe or not of its declared format.

    :param name: the image's name, for the error.
    :raises ImageUnacceptable: for a format the store does not take, an
        unreadable file, a backing file, an external data file or
        encryption.
    :raises ImageFormatMismatch: when the file's format is not
        ``declared`` (a declared ``raw`` file may also be an ISO or a
        partitioned disk, which qemu reads as bytes all the same).
    """
    if declared not in DISK_FORMATS:
        raise exception.ImageUnacceptable(
            image=name, reason='its disk_format %r is not one of %s' % (
                declared, ', '.join(DISK_FORMATS)))
    return _inspect_declared(name, path, declared)


def _inspect_declared(name: str, path: str,
                      declared: str) -> InspectedFormat:
    # The header check both the store and the image service's downloads
    # pass: readable, of its declared format, naming no other file.
    try:
        found = inspect_format(path)
    except OSError as exc:
        raise exception.ImageUnacceptable(
            image=name, reason='its file cannot be read: %s'
                               % exception.one_line(exc)) from exc
    matches = (found.format in _RAW_LIKE if declared == 'raw'
               else found.format == declared)
    if not matches:
        raise exception.ImageFormatMismatch(
            image=name, declared=declared, inspected=found.format)
    if found.unsafe:
        raise exception.ImageUnacceptable(image=name, reason=found.unsafe)
    return found


def check_with_qemu_img(name: str, path: str, disk_format: str) -> None:
    """Have ``qemu-img info`` confirm what the header inspection found.

    qemu-img parses the whole qcow2 metadata, so it also catches a header
    that looks right over tables that are not; called only on a file that
    :func:`check_image_file` accepted, whose backing files it cannot
    follow since it has none. A raw file has no metadata to check.

    :raises ImageUnacceptable: when qemu-img cannot open the file as
        ``disk_format`` or reports a backing or data file.
    """
    try:
        output = run_qemu_img('info', '--output=json', '-f', disk_format,
                              path)
    except exception.BackendError as exc:
        raise exception.ImageUnacceptable(
            image=name, reason=exc.reason) from exc
    _qemu_img_info(name, output)


def _qemu_img_info(image: str, output: str) -> dict:
    """Read ``qemu-img info --output=json``, refusing backing/data files.

    :raises ImageUnacceptable: when it is no JSON or names either.
    """
    try:
        info = json.loads(output)
    except ValueError as exc:
        raise exception.ImageUnacceptable(
            image=image, reason='qemu-img info gave no JSON: %s' % exc
        ) from exc
    specific = (info.get('format-specific') or {}).get('data') or {}
    if info.get('backing-filename') or specific.get('data-file'):
        raise exception.ImageUnacceptable(
            image=image, reason='qemu-img reports a backing or data file')
    return info


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreImage(objects.ImageMeta):
    """One image of the store, with absolute paths.

    What the backend's ``_get_image`` returns: the contract's
    :class:`~compute_driver.objects.ImageMeta` (``min_ram`` in MiB,
    ``min_disk`` in GiB, free-form string ``properties``) plus what the
    domain and the disk are made from.

    :param disk_format: ``qcow2`` or ``raw``.
    :param path: the disk file.
    :param kernel: a kernel for direct boot, or ``None``.
    :param ramdisk: its initial ramdisk, or ``None``.
    :param cmdline: the kernel command line.
    """

    disk_format: str = 'raw'
    path: str
    kernel: str | None = None
    ramdisk: str | None = None
    cmdline: str = ''

    @property
    def is_snapshot(self) -> bool:
        return self.properties.get('image_type') == SNAPSHOT_TYPE

    def to_meta(self) -> objects.ImageMeta:
        """The image as the contract's :class:`objects.ImageMeta`."""
        try:
            size: int | None = os.path.getsize(self.path)
        except OSError:
            size = None
        return objects.ImageMeta(
            name=self.name, disk_format=self.disk_format,
            container_format='bare', min_ram=self.min_ram,
            min_disk=self.min_disk, size=size,
            properties=dict(self.properties))


def run_qemu_img(*args: str) -> str:
    """Run ``qemu-img`` and raise on failure.

    :returns: what it printed on stdout.
    :raises BackendError: with qemu-img's own message.
    """
    command = ['qemu-img', *args]
    try:
        return subprocess.run(
            command, check=True, capture_output=True, text=True,
            timeout=_QEMU_IMG_TIMEOUT).stdout
    except FileNotFoundError:
        raise exception.BackendError(
            operation='qemu-img %s' % args[0], instance='-',
            reason='qemu-img is not installed (Debian package qemu-utils)'
        ) from None
    except subprocess.CalledProcessError as exc:
        raise exception.BackendError(
            operation='qemu-img %s' % args[0], instance='-',
            reason=(exc.stderr or exc.stdout or str(exc)).strip()) from None
    except subprocess.TimeoutExpired as exc:
        raise exception.BackendError(
            operation='qemu-img %s' % args[0], instance='-',
            reason='timed out after %ss' % exc.timeout) from None


class ImageStore:
    """The images of ``images_path`` and the base cache of instance disks.

    :param images_path: the store's directory.
    :param instances_path: where the ``_base`` cache lives.
    """

    def __init__(self, images_path: str, instances_path: str) -> None:
        self.images_path = images_path
        self.base_path = os.path.join(instances_path, BASE_DIR)
        self._lock = threading.Lock()

    def _meta_path(self, name: str) -> str:
        return os.path.join(self.images_path, name + '.json')

    def _load(self, name: str) -> StoreImage:
        with open(self._meta_path(name), encoding='utf-8') as handle:
            data = json.load(handle)

        def local(key: str) -> str | None:
            value = data.get(key)
            return os.path.join(self.images_path, value) if value else None

        path = local('file')
        if not path:
            raise ValueError('no "file"')
        return StoreImage(
            name=name, path=path,
            disk_format=str(data.get('disk_format') or 'raw'),
            kernel=local('kernel'), ramdisk=local('ramdisk'),
            cmdline=str(data.get('cmdline') or ''),
            min_ram=int(data.get('min_ram') or 0),
            min_disk=int(data.get('min_disk') or 0),
            container_format='bare',
            properties={str(k): str(v) for k, v in
                        (data.get('properties') or {}).items()})

    def names(self) -> list[str]:
        """Names of the images in the store, sorted."""
        try:
            entries = os.listdir(self.images_path)
        except FileNotFoundError:
            return []
        return sorted(e[:-5] for e in entries
                      if e.endswith('.json') and not e.startswith('.'))

    def list(self) -> list[StoreImage]:
        """Every readable image; unreadable metadata is logged, skipped."""
        images = []
        for name in self.names():
            try:
                images.append(self._load(name))
            except (OSError, ValueError, TypeError,
                    exception.InvalidInput) as exc:
                LOG.warning('Skipping image %s: %s', name, exc)
        return images

    def get(self, name: str) -> StoreImage:
        """One image, with its files checked.

        :raises ImageNotFound: when it is not in the store, its metadata is
            unreadable or one of its files is missing.
        """
        objects.validate_image_ref(name)
        if '/' in name or name.startswith('.'):
            raise self._not_found(name)
        try:
            image = self._load(name)
        except FileNotFoundError:
            raise self._not_found(name) from None
        except (OSError, ValueError, TypeError,
                exception.InvalidInput) as exc:
            raise self._not_found(
                '%s (unreadable metadata: %s)' % (name, exc)) from None
        for path in (image.path, image.kernel, image.ramdisk):
            if path and not os.path.isfile(path):
                raise self._not_found(
                    '%s (its file %s is missing)' % (name, path))
        return image

    def _not_found(self, what: str) -> exception.ImageNotFound:
        return exception.ImageNotFound(
            image=what, available=', '.join(self.names()) or 'none')

    def exists(self, name: str) -> bool:
        return os.path.exists(self._meta_path(name))

    # -- instance disks ----------------------------------------------------

    def _base_of(self, image: StoreImage) -> str:
        stat = os.stat(image.path)
        key = '%s:%s:%d:%d' % (image.name, image.path, stat.st_size,
                               stat.st_mtime_ns)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        return os.path.join(self.base_path, name)

    def check(self, image: StoreImage) -> None:
        """Refuse an image whose file is unsafe or not its declared format.

        Reads the file's header only (see :func:`check_image_file`).

        :raises ImageUnacceptable: see :func:`check_image_file`.
        """
        check_image_file(image.name, image.path, image.disk_format)

    def cached_base(self, image: StoreImage) -> str:
        """The image's copy in ``_base``, made and checked on first use.

        The copy is checked, not the image: it is what instances use, and
        the image may change while it is copied. A copy that fails the
        check is removed, so a refused image leaves nothing in ``_base``;
        one interrupted is locked while written, so a sweep knows it for
        a leftover (see :meth:`LibvirtDriver.cleanup_leftovers`).

        :raises ImageUnacceptable: when the copy fails the check.
        """
        base = self._base_of(image)
        with self._lock:
            if os.path.exists(base):
                return base
            # Copies may be of snapshots, tenant data: only this user and,
            # through libvirt's dynamic ownership of the backing chain at
            # start, QEMU read them; the directory is searched by name.
            os.makedirs(self.base_path, mode=0o711, exist_ok=True)
            partial = '%s.part-%s' % (base, secrets.token_hex(4))
            marker = leftovers.Marker.create(partial, 0o600)
            try:
                with open(image.path, 'rb') as source:
                    with open(marker.fd, 'wb', closefd=False) as target:
                        shutil.copyfileobj(source, target, _COPY_CHUNK)
                check_image_file(image.name, partial, image.disk_format)
                if image.disk_format != 'raw':
                    check_with_qemu_img(image.name, partial,
                                        image.disk_format)
                os.rename(partial, base)
            except BaseException:
                leftovers.unlink_quietly(partial)
                raise
            finally:
                marker.abandon()
        return base

    def create_disk(self, image: StoreImage, dest: str, disk_format: str,
                    size_gb: int = 0, cache: bool = True,
                    base: str | None = None,
                    virtual_size: int | None = None,
                    fits: bool = False) -> None:
        """Make an instance disk from an image.

        :param dest: the new disk file.
        :param disk_format: ``qcow2`` for an overlay on the cached base,
            ``raw`` for a full copy.
        :param size_gb: grow the disk to this size; 0 keeps the image's.
        :param cache: ``False`` makes a standalone copy instead, for an
            image only one instance uses (a revert to its own snapshot),
            which would only fill the cache.
        :param base: the checked file to back the disk with, instead of
            a copy of ``image.path`` in ``_base`` (an image of the image
            service, already in its cache).
        :param virtual_size: the base's virtual size when checked to be
            at most ``size_gb``: a qcow2 overlay is then created at its
            size in one qemu-img call, which does not open the base.
        :param fits: the caller checks that the base's virtual size is at
            most ``size_gb`` before anything reads the disk (the guest is
            defined only then): the overlay is made as with
            ``virtual_size``, and the base need not exist yet.
        :raises BackendError: when qemu-img fails.
        """
        if not cache:
            check_image_file(image.name, image.path, image.disk_format)
            if image.disk_format != 'raw':
                check_with_qemu_img(image.name, image.path,
                                    image.disk_format)
            if image.disk_format == disk_format == 'raw':
                shutil.copyfile(image.path, dest)
            else:
                run_qemu_img('convert', '-q', '-f', image.disk_format, '-O',
                             disk_format, image.path, dest)
            return
        base = self.cached_base(image) if base is None else base
        if disk_format == 'qcow2':
            sized = size_gb and (fits or (
                virtual_size is not None
                and virtual_size <= size_gb * 1024 ** 3))
            # Sized, qemu-img need not open the base (-u): the overlay
            # is made while the base's own check may still run, and
            # nothing opens the base before it has passed.
            run_qemu_img('create', '-q', '-f', 'qcow2', '-F',
                         image.disk_format, '-b', base,
                         *(('-u', dest, '%dG' % size_gb) if sized
                           else (dest,)))
            if sized:
                return
        elif image.disk_format == 'raw':
            shutil.copyfile(base, dest)
        else:
            run_qemu_img('convert', '-q', '-f', image.disk_format, '-O',
                         'raw', base, dest)
        if size_gb:
            run_qemu_img('resize', '-q', '-f', disk_format, dest,
                         '%dG' % size_gb)

    # -- snapshots ---------------------------------------------------------

    def add_snapshot(self, name: str, disk: str, disk_format: str,
                     source: StoreImage | None, min_disk: int,
                     properties: dict[str, str],
                     force_share: bool = False,
                     claimed: (collections.abc.Callable[[], object]
                               | None) = None) -> StoreImage:
        """Write an instance disk into the store as a new qcow2 image.

        The kernel, ramdisk, command line and minimum memory come from the
        image the instance was booted from, when it is still there.

        :param force_share: read a disk that a paused guest's qemu holds
            open (qemu-img's ``-U``).
        :param claimed: called once the name is this call's (its disk
            file created), before the copy: an interrupted call leaves
            that file, without metadata, from then on (see
            :meth:`remove_unfinished_snapshot`).
        :raises InvalidInput: when an image of that name exists.
        :raises BackendError: when qemu-img fails.
        """
        file_name = name + '.qcow2'
        target = os.path.join(self.images_path, file_name)
        meta_path = self._meta_path(name)
        with self._lock:
            if os.path.exists(meta_path) or os.path.exists(target):
                raise exception.InvalidInput(
                    reason='an image named %s exists already' % name)
            # Claims the name before the long copy.
            with open(target, 'x'):
                pass
        try:
            if claimed is not None:
                claimed()
            args = ['convert', '-q', '-f', disk_format, '-O', 'qcow2']
            if force_share:
                args.append('-U')
            run_qemu_img(*args, disk, target)
            # The tenant's data; only this process reads it (into _base).
            os.chmod(target, 0o600)
            data: dict[str, object] = {
                'file': file_name, 'disk_format': 'qcow2',
                'container_format': 'bare', 'min_disk': min_disk,
                'properties': properties,
            }
            if source is not None:
                data.update(
                    min_ram=source.min_ram, cmdline=source.cmdline,
                    kernel=(os.path.relpath(source.kernel, self.images_path)
                            if source.kernel else None),
                    ramdisk=(os.path.relpath(source.ramdisk,
                                             self.images_path)
                             if source.ramdisk else None))
            partial = meta_path + '.part'
            with open(partial, 'w', encoding='utf-8') as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
            os.rename(partial, meta_path)
        except BaseException:
            self.remove_unfinished_snapshot(name)
            raise
        return self._load(name)

    def remove_unfinished_snapshot(self, name: str) -> None:
        """Remove the files of a snapshot whose writing failed or was killed.

        :meth:`add_snapshot` claims the name with the disk file and
        writes the metadata last; a snapshot with its metadata is whole
        and stays.
        """
        meta_path = self._meta_path(name)
        with self._lock:
            if os.path.exists(meta_path):
                return
            for path in (os.path.join(self.images_path, name + '.qcow2'),
                         meta_path + '.part'):
                leftovers.unlink_quietly(path)

    def delete(self, name: str) -> None:
        """Remove an image's metadata and disk file; idempotent."""
        try:
            image = self._load(name)
        except (OSError, ValueError, TypeError):
            image = None
        with self._lock:
            for path in (self._meta_path(name),
                         image.path if image else None):
                if path and os.path.exists(path):
                    os.unlink(path)


# -- images from the image service -------------------------------------------
#
# An image of the image service is downloaded, verified against its
# checksum, into the backend's cache (``_base/images/<image id>``, beside
# the disks it backs, where QEMU can read it), then checked here before any
# instance uses it: its header must match its disk_format and name no
# other file, and ``qemu-img info`` must agree. Formats QEMU cannot back an
# overlay with efficiently are converted once, into ``_base``.

#: Subdirectory of ``_base`` holding the downloads of the image service.
SERVICE_CACHE_DIR = libvirt_conf.SERVICE_CACHE_DIR

#: Glance disk formats booted as they are, and those converted to raw
#: first, with qemu-img's name for each (Glance's vhd is qemu's vpc).
NATIVE_FORMATS = {'raw': 'raw', 'qcow2': 'qcow2'}
CONVERTED_FORMATS = {'vhd': 'vpc', 'vhdx': 'vhdx', 'vdi': 'vdi'}

#: The kernel command line of a directly booted kernel when the image has
#: no ``os_command_line`` property: Nova's libvirt driver's default.
DEFAULT_CMDLINE = 'root=/dev/vda console=tty0 console=ttyS0'


@dataclasses.dataclass(frozen=True)
class ServiceImageInfo:
    """What checking a downloaded image found.

    :param qemu_format: its format in qemu-img's words.
    :param virtual_size: bytes of the disk the guest sees.
    """

    qemu_format: str
    virtual_size: int


def check_service_image(image_id: str, path: str,
                        disk_format: str | None) -> ServiceImageInfo:
    """Refuse a downloaded image that is unsafe or not its disk_format.

    The header is read first (:func:`inspect_format`, which follows
    nothing), then ``qemu-img info --output=json`` is asked without a
    format, so that its probe, run only on a file known to name no other
    file, reports the real format.

    :raises ImageUnacceptable: for a format this backend cannot run, a
        backing file, an external data file, encryption, or a file
        qemu-img cannot read.
    :raises ImageFormatMismatch: when the file's format is not
        ``disk_format``.
    """
    check = start_service_image_check(image_id, path, disk_format)
    try:
        return check.wait()
    finally:
        check.close()


def start_service_image_check(image_id: str, path: str,
                              disk_format: str | None
                              ) -> 'ServiceImageCheck':
    """:func:`check_service_image`, its ``qemu-img info`` left running.

    The header is checked before this returns, so that nothing, qemu-img
    included, opens a file that names another; ``qemu-img info`` then
    runs while the caller goes on, and :meth:`ServiceImageCheck.wait`
    gives its verdict. A boot makes the instance disk meanwhile, an
    overlay that nothing reads before the guest is defined, and defines
    the guest only once the check has passed.

    :returns: the check under way, which the caller must
        :meth:`~ServiceImageCheck.close`.
    :raises: what :func:`check_service_image` raises for the header.
    """
    declared = disk_format or ''
    qemu_format = (NATIVE_FORMATS.get(declared) or
                   CONVERTED_FORMATS.get(declared))
    if qemu_format is None:
        raise exception.ImageUnacceptable(
            image=image_id,
            reason='its disk_format %r is not one the libvirt backend runs '
                   '(%s)' % (disk_format, ', '.join(
                       sorted({**NATIVE_FORMATS, **CONVERTED_FORMATS}))))
    found = _inspect_declared(image_id, path, declared)
    return ServiceImageCheck(image_id, path, declared, qemu_format,
                             found.virtual_size)


class ServiceImageCheck:
    """``qemu-img info`` of a downloaded image whose header passed.

    :param qemu_format: the format qemu-img must find, in its words.
    :param header_size: the virtual size the header gives, which
        qemu-img must find too, or ``None`` for a format whose header
        is not read for it.
    """

    def __init__(self, image_id: str, path: str, declared: str,
                 qemu_format: str, header_size: int | None) -> None:
        self.image_id = image_id
        self.qemu_format = qemu_format
        self._declared = declared
        self._header_size = header_size
        self._result: ServiceImageInfo | None = None
        try:
            self._process: subprocess.Popen[str] | None = subprocess.Popen(
                ['qemu-img', 'info', '--output=json', path],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            raise exception.ImageUnacceptable(
                image=image_id, reason='qemu-img is not installed (Debian '
                                       'package qemu-utils)') from None

    @property
    def virtual_size(self) -> int | None:
        """The image's virtual size in bytes, as far as known.

        The header's until :meth:`wait` has returned, qemu-img's after.
        """
        if self._result is not None:
            return self._result.virtual_size
        return self._header_size

    def wait(self) -> ServiceImageInfo:
        """Wait for ``qemu-img info`` and check what it found.

        :raises ImageUnacceptable: when qemu-img cannot read the file,
            reports a backing or data file, or a virtual size other than
            the header's.
        :raises ImageFormatMismatch: when qemu-img finds another format.
        """
        if self._result is not None:
            return self._result
        process = self._process
        if process is None:
            raise exception.ImageUnacceptable(
                image=self.image_id, reason='its check was abandoned')
        try:
            out, err = process.communicate(timeout=_QEMU_IMG_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.close()
            raise exception.ImageUnacceptable(
                image=self.image_id, reason='qemu-img info timed out after '
                                            '%ss' % _QEMU_IMG_TIMEOUT
            ) from None
        self._process = None
        if process.returncode:
            raise exception.ImageUnacceptable(
                image=self.image_id,
                reason=(err or out or 'qemu-img info failed').strip())
        self._result = self._checked(out)
        return self._result

    def _checked(self, output: str) -> ServiceImageInfo:
        image_id = self.image_id
        info = _qemu_img_info(image_id, output)
        if info.get('format') != self.qemu_format:
            raise exception.ImageFormatMismatch(
                image=image_id, declared=self._declared,
                inspected='%s (qemu-img)' % info.get('format'))
        virtual_size = int(info.get('virtual-size') or 0)
        header_size = self._header_size
        # qemu counts whole 512-byte sectors.
        if header_size is not None and virtual_size not in (
                header_size, -(-header_size // 512) * 512):
            # The size the instance disk may have been made at.
            raise exception.ImageUnacceptable(
                image=image_id,
                reason='qemu-img reads a virtual size of %d bytes where '
                       'its header says %d' % (virtual_size, header_size))
        return ServiceImageInfo(qemu_format=self.qemu_format,
                                virtual_size=virtual_size)

    def close(self) -> None:
        """End ``qemu-img info`` if it still runs; idempotent.

        A check closed before :meth:`wait` was asked for its verdict
        has none: :meth:`wait` then refuses the image.
        """
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.communicate()


def convert_to_raw(image_id: str, path: str, qemu_format: str,
                   dest: str) -> None:
    """Convert a checked image to a raw file ``dest``, atomically.

    :raises BackendError: when qemu-img fails; nothing is left at
        ``dest``.
    """
    partial = '%s.part-%s' % (dest, secrets.token_hex(4))
    marker = leftovers.Marker.create(partial, 0o600)
    try:
        run_qemu_img('convert', '-q', '-f', qemu_format, '-O', 'raw', path,
                     partial)
        os.rename(partial, dest)
    except BaseException:
        leftovers.unlink_quietly(partial)
        raise
    finally:
        marker.abandon()


def export_disk(disk: str, disk_format: str, dest: str,
                force_share: bool = False) -> None:
    """Write an instance disk as a standalone qcow2 file, for an upload.

    The overlay and its backing file become one qcow2 file
    without a backing file, which any host can boot.

    :param force_share: read a disk that a paused guest's qemu holds
        open (qemu-img's ``-U``).
    :raises BackendError: when qemu-img fails.
    """
    args = ['convert', '-q', '-f', disk_format, '-O', 'qcow2']
    if force_share:
        args.append('-U')
    run_qemu_img(*args, disk, dest)
