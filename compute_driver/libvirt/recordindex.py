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

:class:`DomainRecords` is what the driver reads records through: a cache
by domain uuid (records never change after spawn), filled from the index,
else from the domain's metadata.
"""

import contextlib
import fcntl
import json
import logging
import os
import threading
import typing

import libvirt

from compute_driver import exception
from compute_driver.libvirt import errors
from compute_driver.libvirt import mapping
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
    if record.uuid != uuid or mapping.domain_name(record.name) != domain_name:
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


#: A listed instance of ours: its record, libvirt's state and reason.
Listed = tuple[objects.Instance, int, int]


class DomainRecords:
    """The instance record of each domain, read once per process.

    :param directory: ``instances_path``, where the index lives.
    """

    def __init__(self, directory: str) -> None:
        # uuid -> the instance record of a domain of ours, or None for a
        # domain that is not.
        self._records: dict[str, objects.Instance | None] = {}
        self._lock = threading.Lock()
        self._index = RecordIndex(directory)

    def of(self, dom: typing.Any) -> objects.Instance | None:
        """The instance record of a domain, or ``None`` if not ours.

        From the cache, else (one round trip) from the domain's metadata;
        listings fill the cache from the index first (see :meth:`fill`).

        :raises libvirtError: when the metadata cannot be read.
        """
        uuid = dom.UUIDString()
        with self._lock:
            if uuid in self._records:
                return self._records[uuid]
        record: objects.Instance | None = None
        # The name, like the uuid, is known locally: no round trip.
        if dom.name().startswith(mapping.DOMAIN_PREFIX):
            try:
                record = mapping.parse_metadata(dom.metadata(
                    libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    mapping.METADATA_NS))
            except libvirt.libvirtError as exc:
                if errors.code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                if errors.code(exc) != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                    raise
            except exception.InvalidInput as exc:
                LOG.warning('Ignoring domain %s: %s', dom.name(), exc)
        with self._lock:
            self._records[uuid] = record
        return record

    def fill(self, doms: list[typing.Any], listed: set[str]) -> None:
        """Cache the record (or ``None``) of each of ``doms``.

        Records not cached yet come from the index, read once; the
        domains it lacks are read from their metadata, one round trip
        each, and added to it, so that the next process need not.

        :param listed: the uuids of every domain of the listing, for
            dropping index entries of domains that are gone.
        :raises libvirtError: when a domain's metadata cannot be read.
        """
        with self._lock:
            misses = [d for d in doms if d.UUIDString() not in self._records]
        if not misses:
            return
        indexed = self._index.load()
        found = {}
        unindexed = []
        for dom in misses:
            uuid = dom.UUIDString()
            record = entry(indexed, uuid, dom.name())
            if record is None:
                unindexed.append(dom)
            else:
                found[uuid] = record
        with self._lock:
            self._records.update(found)
        fresh = []
        try:
            for dom in unindexed:
                record = self.of(dom)
                if record is not None and record.uuid == dom.UUIDString():
                    fresh.append(record)
        finally:
            stale = set(indexed) - listed
            if fresh or stale:
                self._index.update(add=fresh, keep=listed)

    def ours(self, doms: list[typing.Any]
             ) -> list[tuple[typing.Any, objects.Instance]]:
        """The domains of ``doms`` (a whole listing) that are ours.

        :raises libvirtError: when a record cannot be read.
        """
        listed = {d.UUIDString() for d in doms}
        self._prune(listed)
        self.fill(doms, listed)
        result = []
        for dom in doms:
            record = self.of(dom)
            if record is not None:
                result.append((dom, record))
        return result

    def from_stats(self, stats: list[tuple[typing.Any, dict]]
                   ) -> list[Listed]:
        """Our instances in ``getAllDomainStats(STATE)`` output.

        A domain whose record cannot be read is logged and skipped.
        """
        # Hot path for a service polling every instance: one pass, one
        # lock, no per-domain call into libvirt beyond reading its uuid.
        ours = []
        misses = []
        with self._lock:
            cache = self._records
            seen = set()
            for dom, values in stats:
                uuid = dom.UUIDString()
                seen.add(uuid)
                if uuid in cache:
                    record = cache[uuid]
                    if record is not None:
                        ours.append((record, values.get('state.state', 0),
                                     values.get('state.reason', 0)))
                else:
                    misses.append((dom, values))
            for uuid in set(cache) - seen:
                del cache[uuid]
        try:
            self.fill([dom for dom, _ in misses], seen)
        except libvirt.libvirtError as exc:
            # Read again one by one below, skipping the failing ones.
            LOG.debug('Reading the records of a listing failed: %s', exc)
        for dom, values in misses:
            try:
                record = self.of(dom)
            except libvirt.libvirtError as exc:
                LOG.warning('Skipping domain %s: %s', dom.name(), exc)
                continue
            if record is not None:
                ours.append((record, values.get('state.state', 0),
                             values.get('state.reason', 0)))
        return ours

    def add(self, instance: objects.Instance) -> None:
        """Record a domain just defined for ``instance``."""
        with self._lock:
            self._records[instance.uuid] = instance
        self._index.update(add=[instance])

    def forget(self, uuid: str) -> None:
        """Forget the record of a domain just undefined."""
        with self._lock:
            self._records.pop(uuid, None)
        self._index.update(remove=[uuid])

    def _prune(self, uuids: set[str]) -> None:
        with self._lock:
            for uuid in set(self._records) - uuids:
                del self._records[uuid]
