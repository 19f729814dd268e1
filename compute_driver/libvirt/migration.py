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

"""Resize of a stopped domain on its host.

Before a resize changes anything, the domain's revert point is kept in
``instances_path/<uuid>.resize/``: a copy of its disk (of a qcow2
overlay, only the overlay: the base image is shared and never written),
its inactive domain XML and its instance record. The disk then grows to
the new root size (``qemu-img resize``) and the domain is defined again
with the new vCPUs, memory and record. Confirming removes the revert
point; reverting puts its disk back and defines the old XML, also after
the resized domain and its directory were destroyed, as Nova does before
a revert. A revert point's flavor counts in the host's usage until then,
as the old allocation does in Nova's placement.
"""

import json
import os
import shutil
import typing

from compute_driver import exception
from compute_driver.libvirt import mapping
from compute_driver import objects

# The functions import xml.etree: a listing, which imports this module
# with the backend but parses no XML, then does not pay for it.

#: Suffix of an instance's revert point directory.
SUFFIX = '.resize'
_DISK = 'disk'
_XML = 'domain.xml'
_RECORD = 'instance.json'


def resized_xml(xml: str, resized: objects.Instance) -> str:
    """The inactive domain ``xml`` with ``resized``'s flavor and record.

    The flavor's vCPUs and memory are the domain's maximum and current
    values, as at spawn; everything else stays.
    """
    from xml.etree import ElementTree as ET
    ET.register_namespace(mapping.METADATA_PREFIX, mapping.METADATA_NS)
    domain = ET.fromstring(xml)
    flavor = resized.flavor
    for tag in ('memory', 'currentMemory'):
        element = domain.find(tag)
        if element is None:
            element = ET.SubElement(domain, tag)
        element.text = str(flavor.memory_mb * 1024)
        element.set('unit', 'KiB')
    vcpu = domain.find('vcpu')
    if vcpu is None:
        vcpu = ET.SubElement(domain, 'vcpu')
    vcpu.text = str(flavor.vcpus)
    vcpu.set('current', str(flavor.vcpus))
    metadata = domain.find('metadata')
    if metadata is None:
        metadata = ET.SubElement(domain, 'metadata')
    tag = '{%s}%s' % (mapping.METADATA_NS, mapping.METADATA_TAG)
    for old in metadata.findall(tag):
        metadata.remove(old)
    metadata.append(mapping.metadata_element(resized))
    return ET.tostring(domain, encoding='unicode')


def disk_format(xml: str) -> str | None:
    """The format of the domain's first file disk, from its XML."""
    from xml.etree import ElementTree as ET
    driver = ET.fromstring(xml).find("devices/disk[@device='disk']/driver")
    return None if driver is None else driver.get('type')


class RevertPoints:
    """The revert points of resizes under ``instances_path``."""

    def __init__(self, instances_path: str) -> None:
        self.instances_path = instances_path

    def path(self, uuid: str) -> str:
        return os.path.join(self.instances_path, uuid + SUFFIX)

    def keep(self, instance: objects.Instance, disk: str, xml: str) -> None:
        """Keep ``instance``'s disk, domain XML and record.

        :raises InvalidInput: when it has a revert point already.
        """
        directory = self.path(instance.uuid)
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            raise exception.InvalidInput(
                reason='instance %s has a resize to confirm or revert first'
                       % instance.name) from None
        try:
            if os.path.exists(disk):
                shutil.copy2(disk, os.path.join(directory, _DISK))
            self._write(os.path.join(directory, _XML), xml)
            # Last: a directory with a record is a complete revert point.
            self._write(os.path.join(directory, _RECORD),
                        json.dumps(instance.to_dict(), sort_keys=True))
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    @staticmethod
    def _write(path: str, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                     os.O_CLOEXEC, 0o600)
        with open(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)

    def load(self, uuid: str) -> tuple[objects.Instance, str] | None:
        """The kept record and domain XML, or ``None`` without one."""
        directory = self.path(uuid)
        try:
            with open(os.path.join(directory, _RECORD),
                      encoding='utf-8') as handle:
                record = objects.Instance.from_dict(json.load(handle))
            with open(os.path.join(directory, _XML),
                      encoding='utf-8') as handle:
                return record, handle.read()
        except FileNotFoundError:
            return None
        except (ValueError, exception.InvalidInput) as exc:
            raise exception.BackendError(
                operation='revert resize', instance=uuid,
                reason='its revert point %s is damaged: %s'
                       % (directory, exc)) from exc

    def restore_disk(self, uuid: str, disk: str) -> None:
        """Move the kept disk back to ``disk``."""
        kept = os.path.join(self.path(uuid), _DISK)
        if os.path.exists(kept):
            os.replace(kept, disk)

    def drop(self, uuid: str) -> None:
        shutil.rmtree(self.path(uuid), ignore_errors=True)

    def flavors(self) -> list[objects.Flavor]:
        """The flavors of every revert point, for the host's usage."""
        try:
            entries = os.listdir(self.instances_path)
        except OSError:
            return []
        found = []
        for entry in entries:
            if entry.endswith(SUFFIX):
                loaded = self._quiet_load(entry[:-len(SUFFIX)])
                if loaded is not None:
                    found.append(loaded[0].flavor)
        return found

    def _quiet_load(self, uuid: str
                    ) -> typing.Optional[tuple[objects.Instance, str]]:
        try:
            return self.load(uuid)
        except (exception.BackendError, OSError):
            return None
