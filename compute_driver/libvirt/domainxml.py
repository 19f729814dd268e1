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

"""Guests as libvirt domain XML, for each ``virt_type``.

:func:`domain_xml` turns a :class:`GuestSpec` (the instance, its disk and
console log, what to boot) into the ``<domain>`` a spawn defines, with
the instance record of :mod:`~compute_driver.libvirt.mapping` in its
``<metadata>``. Apart from :mod:`~compute_driver.libvirt.mapping` so that
what only spawns use is imported by spawns only: a listing or a show in
a new process reads domains, it never writes one.

Guests by ``virt_type``:

* ``kvm``/``qemu``: an ``hvm`` guest with a virtio disk and the first
  serial port written to the instance's console log; direct kernel boot
  when the image has a kernel.
* ``xen``: paravirtualized (``<type>xen</type>``, the image's kernel,
  ramdisk and command line, a ``xvda`` disk and the PV console ``hvc0``
  logged to the file) when the image property ``vm_mode`` is ``xen``,
  otherwise HVM with the serial port logged.
* ``lxc``: a container (``<type>exe</type>`` with ``<init>``) whose root
  filesystem is the instance disk, mounted through a loop (raw) or nbd
  (qcow2) device; LXC has only pty consoles, so no console log.
"""

import dataclasses
import xml.etree.ElementTree as ET

from compute_driver import exception
from compute_driver.libvirt import mapping
from compute_driver import objects

#: The console libvirt logs for a Xen PV guest, and what its kernel
#: command line must name for the boot messages to reach it.
XEN_PV_CONSOLE = 'hvc0'

# Every builder below makes its elements so.
_sub = mapping.sub_element


@dataclasses.dataclass(frozen=True)
class BootImage:
    """What the domain XML needs from an image.

    :param kernel: path of a kernel for direct boot, or ``None``.
    :param ramdisk: path of its initial ramdisk, or ``None``.
    :param cmdline: the kernel command line.
    :param vm_mode: ``xen`` for a Xen PV guest, ``hvm`` otherwise.
    :param init: the program an LXC container runs.
    """

    kernel: str | None = None
    ramdisk: str | None = None
    cmdline: str = ''
    vm_mode: str = 'hvm'
    init: str = '/sbin/init'


@dataclasses.dataclass(frozen=True)
class GuestSpec:
    """Everything :func:`domain_xml` turns into one domain.

    :param instance: the instance; its flavor sizes the guest.
    :param virt_type: ``kvm``, ``qemu``, ``xen`` or ``lxc``.
    :param disk_path: the instance's disk file.
    :param disk_format: ``qcow2`` or ``raw``.
    :param console_path: the console log file.
    :param boot: kernel, ramdisk and mode from the image.
    :param machine_type: the hvm machine type; empty for libvirt's default.
    :param serial_tcp: the address and port of a TCP serial console
        (kvm, qemu); ``None`` for a PTY.
    :param vnc: the VNC display (kvm, qemu), or ``None`` for none.
    """

    instance: objects.Instance
    virt_type: str
    disk_path: str
    disk_format: str
    console_path: str
    boot: BootImage = BootImage()
    machine_type: str = ''
    serial_tcp: tuple[str, int] | None = None
    vnc: 'VNCSpec | None' = None


@dataclasses.dataclass(frozen=True)
class VNCSpec:
    """A VNC display of a kvm or qemu guest.

    :param listen: the address it listens on; libvirt picks the port.
    :param password: its password, or empty for none (a secret: not in
        ``repr``).
    """

    listen: str
    password: str = dataclasses.field(default='', repr=False)


def _disk(devices: ET.Element, spec: GuestSpec, target: str,
          bus: str) -> None:
    if spec.disk_path.startswith('/dev/'):
        # A volume as the root disk (boot from volume): a host device.
        disk = _sub(devices, 'disk', type='block', device='disk')
        _sub(disk, 'driver', name='qemu', type='raw', cache='none',
             io='native')
        _sub(disk, 'source', dev=spec.disk_path)
        _sub(disk, 'target', dev=target, bus=bus)
        return
    disk = _sub(devices, 'disk', type='file', device='disk')
    _sub(disk, 'driver', name='qemu', type=spec.disk_format)
    _sub(disk, 'source', file=spec.disk_path)
    _sub(disk, 'target', dev=target, bus=bus)


def _logged_serial(devices: ET.Element, spec: GuestSpec) -> None:
    # append: the driver writes a line of its own before each boot, and a
    # restarted guest must not wipe what the previous boot printed.
    if spec.virt_type not in ('kvm', 'qemu'):
        serial = _sub(devices, 'serial', type='file')
        _sub(serial, 'source', path=spec.console_path, append='on')
        _sub(serial, 'target', port='0')
        return
    # An interactive port whose output libvirt also logs to the file (its
    # <log>, as Nova's guests have), so the console log keeps working
    # while someone is attached.
    if spec.serial_tcp is None:
        serial = _sub(devices, 'serial', type='pty')
    else:
        host, port = spec.serial_tcp
        serial = _sub(devices, 'serial', type='tcp')
        _sub(serial, 'source', mode='bind', host=host, service=str(port))
        _sub(serial, 'protocol', type='raw')
    _sub(serial, 'log', file=spec.console_path, append='on')
    _sub(serial, 'target', port='0')


def _vnc(devices: ET.Element, spec: GuestSpec) -> None:
    if spec.vnc is None or spec.virt_type not in ('kvm', 'qemu'):
        return
    attrs = {'type': 'vnc', 'autoport': 'yes', 'listen': spec.vnc.listen}
    if spec.vnc.password:
        attrs['passwd'] = spec.vnc.password
    graphics = _sub(devices, 'graphics', **attrs)
    _sub(graphics, 'listen', type='address', address=spec.vnc.listen)


def _direct_boot(os_el: ET.Element, boot: BootImage, cmdline: str) -> None:
    if boot.kernel:
        _sub(os_el, 'kernel', boot.kernel)
        if boot.ramdisk:
            _sub(os_el, 'initrd', boot.ramdisk)
        if cmdline:
            _sub(os_el, 'cmdline', cmdline)


def _hvm(domain: ET.Element, spec: GuestSpec) -> None:
    os_el = _sub(domain, 'os')
    attrs = {'arch': 'x86_64'}
    if spec.machine_type and spec.virt_type != 'xen':
        attrs['machine'] = spec.machine_type
    _sub(os_el, 'type', 'hvm', **attrs)
    _direct_boot(os_el, spec.boot, spec.boot.cmdline)
    if not spec.boot.kernel:
        _sub(os_el, 'boot', dev='hd')
    features = _sub(domain, 'features')
    _sub(features, 'acpi')
    _sub(features, 'apic')
    if spec.virt_type == 'xen':
        _sub(features, 'pae')
    _sub(domain, 'on_poweroff', 'destroy')
    _sub(domain, 'on_reboot', 'restart')
    _sub(domain, 'on_crash', 'destroy')
    devices = _sub(domain, 'devices')
    if spec.virt_type == 'xen':
        _disk(devices, spec, 'xvda', 'xen')
    else:
        _disk(devices, spec, 'vda', 'virtio')
    _logged_serial(devices, spec)
    _vnc(devices, spec)
    if spec.virt_type != 'xen':
        # Lets a live resize shrink and grow the guest's memory.
        _sub(devices, 'memballoon', model='virtio')


def _xen_pv(domain: ET.Element, spec: GuestSpec) -> None:
    if not spec.boot.kernel:
        # A PV guest without a kernel of its own boots the one its disk
        # holds, through pygrub; the schema wants it before <os>.
        _sub(domain, 'bootloader', 'pygrub')
    os_el = _sub(domain, 'os')
    _sub(os_el, 'type', 'xen', arch='x86_64')
    if spec.boot.kernel:
        cmdline = spec.boot.cmdline
        if 'console=' not in cmdline:
            cmdline = ('%s console=%s' % (cmdline, XEN_PV_CONSOLE)).strip()
        _direct_boot(os_el, spec.boot, cmdline)
    _sub(domain, 'on_poweroff', 'destroy')
    _sub(domain, 'on_reboot', 'restart')
    _sub(domain, 'on_crash', 'destroy')
    devices = _sub(domain, 'devices')
    _disk(devices, spec, 'xvda', 'xen')
    console = _sub(devices, 'console', type='file')
    _sub(console, 'source', path=spec.console_path)
    _sub(console, 'target', type='xen', port='0')


def _lxc(domain: ET.Element, spec: GuestSpec) -> None:
    os_el = _sub(domain, 'os')
    _sub(os_el, 'type', 'exe')
    _sub(os_el, 'init', spec.boot.init)
    _sub(domain, 'on_poweroff', 'destroy')
    _sub(domain, 'on_reboot', 'restart')
    _sub(domain, 'on_crash', 'destroy')
    devices = _sub(domain, 'devices')
    filesystem = _sub(devices, 'filesystem', type='file',
                      accessmode='passthrough')
    if spec.disk_format == 'raw':
        _sub(filesystem, 'driver', type='loop', format='raw')
    else:
        _sub(filesystem, 'driver', type='nbd', format=spec.disk_format)
    _sub(filesystem, 'source', file=spec.disk_path)
    _sub(filesystem, 'target', dir='/')
    console = _sub(devices, 'console', type='pty')
    _sub(console, 'target', type='lxc', port='0')


def domain_element(spec: GuestSpec) -> ET.Element:
    """The ``<domain>`` of one guest.

    :raises InvalidInput: for an unknown ``virt_type``.
    """
    hypervisor = {'kvm': 'kvm', 'qemu': 'qemu', 'xen': 'xen',
                  'lxc': 'lxc'}.get(spec.virt_type)
    if hypervisor is None:
        raise exception.InvalidInput(
            reason='unknown virt_type %r' % spec.virt_type)
    instance = spec.instance
    flavor = instance.flavor
    domain = ET.Element('domain', type=hypervisor)
    _sub(domain, 'name', mapping.domain_name(instance.name))
    _sub(domain, 'uuid', instance.uuid)
    _sub(domain, 'title', instance.name)
    metadata = _sub(domain, 'metadata')
    metadata.append(mapping.metadata_element(instance))
    # The flavor is the maximum; a live resize moves the current values
    # below it and back.
    _sub(domain, 'memory', str(flavor.memory_mb * 1024), unit='KiB')
    _sub(domain, 'currentMemory', str(flavor.memory_mb * 1024), unit='KiB')
    _sub(domain, 'vcpu', str(flavor.vcpus), placement='static',
         current=str(flavor.vcpus))
    if spec.virt_type == 'lxc':
        _lxc(domain, spec)
    elif spec.virt_type == 'xen' and spec.boot.vm_mode == 'xen':
        _xen_pv(domain, spec)
    else:
        _hvm(domain, spec)
    return domain


def domain_xml(spec: GuestSpec) -> str:
    """:func:`domain_element` as text, for ``defineXML``."""
    ET.register_namespace(mapping.METADATA_PREFIX, mapping.METADATA_NS)
    element = domain_element(spec)
    ET.indent(element)
    return ET.tostring(element, encoding='unicode')
