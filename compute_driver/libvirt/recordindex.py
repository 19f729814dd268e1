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

"""A copy of the instance records, readable in one go.

libvirt returns every domain's state in one call (``getAllDomainStats``)
but each domain's metadata, where the instance record lives, in a call of
its own. So that a new process lists N instances without N round trips,
spawn and destroy keep ``instances_path/records.json`` (``0600``) up to
date: ``{"version": 1, "records": {uuid: Instance.to_dict()}}``.

The domain's metadata stays the authority. The index is a cache that may
lag or be missing altogether: an entry is used only for a domain with that
uuid and the domain name derived from the entry's instance name, and a
domain without a usable entry is read from its metadata and added. Updates
are serialised between processes with ``flock`` on ``.records.lock`` and
replace the file atomically; an index that cannot be read or written
costs round trips, never correctness.
"""

import contextlib
import fcntl
import json
import logging
import os
import typing

from compute_driver import exception
from compute_driver.libvirt import config
from compute_driver import objects

LOG = logging.getLogger(__name__)

#: The index, in ``instances_path``.
INDEX = 'records.json'
#: Held (``flock``) by whoever rewrites the index.
LOCK = '.records.lock'
_TEMP = '.' + INDEX + '.tmp'
_VERSION = 1


def entry(records: dict[str, typing.Any], uuid: str,
          domain_name: str) -> objects.Instance | None:
    """The record of the domain ``uuid`` named ``domain_name``, if indexed.

    :param records: what :meth:`RecordIndex.load` returned.
    :returns: ``None`` when there is no entry, it is malformed, or it is
        not the record of that domain.
    """
    data = records.get(uuid)
    if not isinstance(data, dict):
        return None
    try:
        record = objects.Instance.from_dict(data)
    except (exception.InvalidInput, KeyError, TypeError, ValueError) as exc:
        LOG.debug('Ignoring the index entry of %s: %s', uuid, exc)
        return None
    if record.uuid != uuid or config.domain_name(record.name) != domain_name:
        LOG.debug('Ignoring the index entry of %s: it is not the record of '
                  'domain %s', uuid, domain_name)
        return None
    return record


class RecordIndex:
    """The record index of one ``instances_path``."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, INDEX)
        self._lock_path = os.path.join(directory, LOCK)
        self._temp = os.path.join(directory, _TEMP)

    def load(self) -> dict[str, typing.Any]:
        """The entries by uuid; empty when there is no usable index."""
        try:
            with open(self.path, 'rb') as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            LOG.debug('Not using %s: %s', self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get('version') != _VERSION:
            return {}
        records = data.get('records')
        return records if isinstance(records, dict) else {}

    def update(self, add: typing.Iterable[objects.Instance] = (),
               remove: typing.Iterable[str] = (),
               keep: typing.Collection[str] | None = None) -> None:
        """Add and remove entries; never raises for the file's sake.

        :param add: instances whose records to add or replace.
        :param remove: uuids whose entries to drop.
        :param keep: when given, drop every entry whose uuid is not in it
            (and not added): the uuids of all the domains just listed.
        """
        try:
            with self._locked():
                records = self.load()
                if keep is not None:
                    records = {uuid: data for uuid, data in records.items()
                               if uuid in keep}
                for uuid in remove:
                    records.pop(uuid, None)
                for instance in add:
                    records[instance.uuid] = instance.to_dict()
                self._write(records)
        except OSError as exc:
            # A read-only instances_path (an operator's unprivileged
            # shell) or a full disk: listings fall back to the metadata.
            LOG.debug('Cannot update %s: %s', self.path, exc)

    @contextlib.contextmanager
    def _locked(self) -> typing.Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, records: dict[str, typing.Any]) -> None:
        # One writer at a time (the lock), so one temporary name: an
        # interrupted write leaves it for the next one to overwrite.
        fd = os.open(self._temp,
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o600)
        with open(fd, 'w', encoding='utf-8') as handle:
            json.dump({'version': _VERSION, 'records': records}, handle,
                      separators=(',', ':'), sort_keys=True)
        os.replace(self._temp, self.path)
