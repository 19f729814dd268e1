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
date: ``{"version": 2, "flavors": {key: Flavor.to_dict()}, "records":
{uuid: Instance.to_dict() with "flavor": key}, "ports": {uuid: {"token":
hex, "ports": [...]}}}``, the list being the port record the domain's
metadata holds (:mod:`compute_driver.libvirt.network`), decoded. Each
flavor is written once, however many instances have it (most hosts have
a handful for hundreds of instances): the file a listing parses is a
quarter smaller, and the listing builds each flavor once. The keys mean
nothing outside one file. An index of version 1, where each record holds
its flavor, is read as well, and written as version 2 at its next
change; a release that knows version 1 only ignores a version 2 index
(round trips, as without one) and its next change writes version 1 anew.

The domain's metadata stays the authority. The index is a cache that may
lag or be missing altogether: an entry is used only for a domain with that
uuid and the domain name derived from the entry's instance name, and a
domain without a usable entry is read from its metadata and added. Updates
are serialised between processes with ``flock`` on ``.records.lock`` and
replace the file atomically; an index that cannot be read or written
costs round trips, never correctness.

Ports, unlike records, change after spawn (attach, detach, plug). Each
change is made under a lock of its instance (``.ports.lock`` in the
instance's directory, so changes of one instance from two processes do
not interleave) and brackets the metadata's change: first the entry is
marked as changing (``"ports": null``, a new token), then, once the
metadata is written, set to what the domain records. A process killed in
between leaves the mark, and a listing reads such an entry's domain.
A listing that reads a domain (a mark, a missing entry: an index written
by an earlier release, which has no ``"ports"``) writes what it read
back, but only if no change of the instance's ports is under way (its
lock is free) and the entry still has the token it saw: a change that
began meanwhile wins. An earlier release rewriting the index drops
``"ports"`` altogether, which costs one read per domain once.

:class:`DomainRecords` is what the driver reads records through: a cache
by domain uuid (records never change after spawn), filled from the index,
else from the domain's metadata.
"""

import contextlib
import fcntl
import functools
import json
import logging
import os
import threading
import typing

import libvirt

from compute_driver import exception
from compute_driver.libvirt import errors
from compute_driver.libvirt import mapping
from compute_driver.libvirt import network
from compute_driver.network import model
from compute_driver import objects

LOG = logging.getLogger(__name__)

#: The index, in ``instances_path``.
INDEX = 'records.json'
#: Held (``flock``) by whoever rewrites the index.
LOCK = '.records.lock'
#: Held (``flock``) by whoever changes an instance's ports, in the
#: instance's directory (``instances_path`` when it has none).
PORTS_LOCK = '.ports.lock'
_TEMP = '.' + INDEX + '.tmp'
_VERSION = 2
#: Versions read: 1 holds each record's flavor in the record.
_READ_VERSIONS = (1, 2)


def entry(records: dict[str, typing.Any], uuid: str,
          domain_name: str,
          flavors: dict[int, tuple[typing.Any, objects.Flavor]] | None = None
          ) -> objects.Instance | None:
    """The record of the domain ``uuid`` named ``domain_name``, if indexed.

    :param records: what :meth:`RecordIndex.load` returned.
    :param flavors: flavors already built from entries, to share among
        the entries of a listing: :meth:`RecordIndex.load` gives the
        entries of one flavor the same dict, by which they are kept here.
    :returns: ``None`` when there is no entry, it is malformed, or it is
        not the record of that domain.
    """
    data = records.get(uuid)
    if not isinstance(data, dict):
        return None
    name = data.get('name')
    if (data.get('uuid') == uuid and isinstance(name, str) and
            mapping.domain_name(name) == domain_name):
        record = _trusted(data, flavors)
        if record is not None:
            return record
    try:
        flavor = data.get('flavor')
        if flavors is not None and isinstance(flavor, dict):
            data = dict(data, flavor=_flavor(flavor, flavors))
        record = objects.Instance.from_dict(data)
    except (exception.InvalidInput, KeyError, TypeError, ValueError) as exc:
        LOG.debug('Ignoring the index entry of %s: %s', uuid, exc)
        return None
    if record.uuid != uuid or mapping.domain_name(record.name) != domain_name:
        LOG.debug('Ignoring the index entry of %s: it is not the record of '
                  'domain %s', uuid, domain_name)
        return None
    return record


def _flavor(data: dict[str, typing.Any],
            flavors: dict[int, tuple[typing.Any, objects.Flavor]] | None
            ) -> objects.Flavor:
    """The flavor of an entry, built once per dict of a listing.

    :raises InvalidInput: (or TypeError, ValueError) for a bad flavor.
    """
    if flavors is None:
        return objects.Flavor.from_dict(data)
    # Kept with the dict itself, whose id it is: no other dict gets the
    # id while the cache holds it.
    known = flavors.get(id(data))
    if known is not None and known[0] is data:
        return known[1]
    built = objects.Flavor.from_dict(data)
    flavors[id(data)] = (data, built)
    return built


def _trusted(data: dict[str, typing.Any],
             flavors: dict[int, tuple[typing.Any, objects.Flavor]] | None
             ) -> objects.Instance | None:
    """The entry of a domain, built as Instance.from_dict would, cheaply.

    For an entry already known to carry its domain's uuid (canonical, as
    libvirt gives it) and a name the domain's derives from: the
    constructor's checks and normalisation would cost a listing of
    hundreds of instances milliseconds, so only what they would refuse
    is checked here. ``None`` for anything else, which the constructor
    then refuses with its reason.
    """
    flavor = data.get('flavor')
    image_ref = data.get('image_ref')
    metadata = data.get('metadata') or {}
    if (not isinstance(flavor, dict) or not isinstance(metadata, dict) or
            not isinstance(image_ref, str)):
        return None
    try:
        objects.validate_name(data['name'])
        objects.validate_image_ref(image_ref)
    except exception.InvalidInput:
        return None
    if metadata and not all(isinstance(k, str) and isinstance(v, str)
                            for k, v in metadata.items()):
        return None
    try:
        built = _flavor(flavor, flavors)
    except (exception.InvalidInput, TypeError, ValueError):
        return None
    # Frozen: built as the dataclass's own __init__ would, with the
    # values the checks above passed.
    record: typing.Any = object.__new__(objects.Instance)
    record.__dict__.update(uuid=data['uuid'], name=data['name'],
                           flavor=built, image_ref=image_ref,
                           metadata=dict(metadata))
    return record


class RecordIndex:
    """The record index of one ``instances_path``."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, INDEX)
        # The last content read, and what it parsed to.
        self._parsed: tuple[bytes, typing.Any] | None = None
        self._lock_path = os.path.join(directory, LOCK)
        self._temp = os.path.join(directory, _TEMP)

    def load(self) -> dict[str, typing.Any]:
        """The entries by uuid; empty when there is no usable index."""
        return self.load_all()[0]

    def load_all(self) -> tuple[dict[str, typing.Any],
                                dict[str, typing.Any]]:
        """The record entries and the port entries, by uuid.

        Each record entry holds its flavor, as ``Instance.to_dict()``
        does, the entries of one flavor the same dict. Both empty when
        there is no usable index; the port entries empty when the index
        has none (written by an earlier release).
        """
        try:
            with open(self.path, 'rb') as handle:
                text = handle.read()
            # A listing reads the index for the records, then for the
            # ports: the same bytes are parsed once.
            parsed = self._parsed
            if parsed is not None and parsed[0] == text:
                data = parsed[1]
            else:
                data = json.loads(text)
                if (isinstance(data, dict) and
                        data.get('version') in _READ_VERSIONS and
                        isinstance(data.get('records'), dict)):
                    _share_flavors(data)
                self._parsed = (text, data)
        except FileNotFoundError:
            return {}, {}
        except (OSError, ValueError) as exc:
            LOG.debug('Not using %s: %s', self.path, exc)
            return {}, {}
        if (not isinstance(data, dict) or
                data.get('version') not in _READ_VERSIONS):
            return {}, {}
        records = data.get('records')
        ports = data.get('ports')
        # Copies: callers change them; the entries themselves are
        # replaced, never changed.
        return (dict(records) if isinstance(records, dict) else {},
                dict(ports) if isinstance(ports, dict) else {})

    def update(self, add: typing.Iterable[objects.Instance] = (),
               remove: typing.Iterable[str] = (),
               keep: typing.Collection[str] | None = None,
               ports: typing.Mapping[str, tuple[model.Port, ...] | None]
               | None = None,
               heal: typing.Mapping[str, tuple[typing.Any,
                                               tuple[model.Port, ...]]]
               | None = None) -> bool:
        """Change entries; never raises for the file's sake.

        :param add: instances whose records to add or replace.
        :param remove: uuids whose entries (record and ports) to drop.
        :param keep: when given, drop every entry whose uuid is not in it
            (and not added): the uuids of all the domains just listed.
        :param ports: ports to set by uuid, each with a new token;
            ``None`` marks the entry as changing.
        :param heal: ports read from domains, by uuid, each with the port
            entry seen before the read (``None`` for none): set only where
            the entry is still that one.
        :returns: whether the index was written.
        """
        try:
            with self._locked():
                records, port_entries = self.load_all()
                if keep is not None:
                    records = {uuid: data for uuid, data in records.items()
                               if uuid in keep}
                    port_entries = {uuid: data for uuid, data in
                                    port_entries.items() if uuid in keep}
                for uuid in remove:
                    records.pop(uuid, None)
                    port_entries.pop(uuid, None)
                for instance in add:
                    records[instance.uuid] = instance.to_dict()
                for uuid, (seen, read) in (heal or {}).items():
                    if port_entries.get(uuid) == seen:
                        port_entries[uuid] = _port_entry(read)
                for uuid, value in (ports or {}).items():
                    port_entries[uuid] = _port_entry(value)
                self._write(records, port_entries)
            return True
        except OSError as exc:
            # A read-only instances_path (an operator's unprivileged
            # shell) or a full disk: listings fall back to the metadata.
            LOG.debug('Cannot update %s: %s', self.path, exc)
            return False

    @contextlib.contextmanager
    def _locked(self) -> typing.Iterator[None]:
        with _flock(self._lock_path):
            yield

    def _write(self, records: dict[str, typing.Any],
               ports: dict[str, typing.Any]) -> None:
        # dumps, then one write: json.dump encodes in Python, chunk by
        # chunk, where dumps uses the C encoder, which writes the same
        # text several times faster (some 20 ms for 500 instances, which
        # a listing pays whenever a domain comes or goes).
        flavors, records = _flavor_table(records)
        text = json.dumps({'version': _VERSION, 'flavors': flavors,
                           'records': records, 'ports': ports},
                          separators=(',', ':'), sort_keys=True)
        # One writer at a time (the lock), so one temporary name: an
        # interrupted write leaves it for the next one to overwrite.
        fd = os.open(self._temp,
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o600)
        with open(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
        os.replace(self._temp, self.path)


def _share_flavors(data: dict[str, typing.Any]) -> None:
    """Give the record entries of one flavor the same flavor dict.

    In place, in what the index parsed to: a version 2 index's keys are
    replaced by their flavors, a version 1 index's equal flavors by one
    of them. A key without a flavor is left, for the entry to be refused.
    """
    records = data['records']
    if data.get('version') == 1:
        seen: dict[str, typing.Any] = {}
        for item in records.values():
            flavor = item.get('flavor') if isinstance(item, dict) else None
            if isinstance(flavor, dict):
                item['flavor'] = seen.setdefault(repr(flavor), flavor)
        return
    table = data.get('flavors')
    if not isinstance(table, dict):
        table = {}
    for item in records.values():
        if isinstance(item, dict):
            key = item.get('flavor')
            if isinstance(key, str):
                item['flavor'] = table.get(key, key)


def _flavor_table(records: dict[str, typing.Any]
                  ) -> tuple[dict[str, typing.Any], dict[str, typing.Any]]:
    """The flavors of ``records`` by key, and the records naming them."""
    keys: dict[str, str] = {}
    # By the id of each flavor dict, which records keeps alive: the
    # entries of a loaded index share theirs, whose text is made once.
    known: dict[int, str] = {}
    table = {}
    written = {}
    for uuid, item in records.items():
        flavor = item.get('flavor') if isinstance(item, dict) else None
        if not isinstance(flavor, dict):
            written[uuid] = item
            continue
        key = known.get(id(flavor))
        if key is None:
            text = json.dumps(flavor, separators=(',', ':'), sort_keys=True)
            key = keys.get(text)
            if key is None:
                key = keys[text] = str(len(keys))
                table[key] = flavor
            known[id(flavor)] = key
        written[uuid] = dict(item, flavor=key)
    return table, written


def _same(value: typing.Any) -> typing.Any:
    return value


@contextlib.contextmanager
def _flock(path: str) -> typing.Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _port_entry(ports: tuple[model.Port, ...] | None
                ) -> dict[str, typing.Any]:
    # The token tells a listing that read a domain whether a change of
    # its ports began since (see update's heal). os.urandom, as the
    # secrets module uses, without that module's import (hmac, OpenSSL's
    # hashes), which every listing would pay.
    return {'token': os.urandom(8).hex(),
            'ports': None if ports is None else _items(ports)}


def _items(ports: tuple[model.Port, ...]) -> list[typing.Any]:
    return json.loads(model.to_record(ports))


def port_items(entries: dict[str, typing.Any],
               uuid: str) -> list[typing.Any] | None:
    """The port record of ``uuid`` in ``entries``, if it can be used.

    :param entries: port entries, as :meth:`RecordIndex.load_all` returns.
    :returns: the decoded record; ``None`` when there is no entry, it is
        malformed, or it is marked as changing.
    """
    data = entries.get(uuid)
    if not isinstance(data, dict):
        return None
    items = data.get('ports')
    return items if isinstance(items, list) else None


#: A listed instance of ours: its record, libvirt's state and reason.
Listed = tuple[objects.Instance, int, int]

#: An instance whose ports to list: its uuid, a callable returning its
#: domain (``None`` when gone; called only to read it) and its stats.
_Domain = tuple[str, typing.Callable[[], typing.Any], dict]

#: Not in DomainRecords' cache.
_UNKNOWN: typing.Any = object()

#: Passed to :meth:`DomainRecords.add`: leave the port entry alone.
UNCHANGED: typing.Any = object()


class DomainRecords:
    """The instance record of each domain, read once per process.

    :param directory: ``instances_path``, where the index lives.
    """

    def __init__(self, directory: str) -> None:
        # uuid -> the instance record of a domain of ours, or None for a
        # domain that is not.
        self._records: dict[str, objects.Instance | None] = {}
        self._lock = threading.Lock()
        self._directory = directory
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

    def fill(self, doms: list[typing.Any], listed: set[str],
             indexed: dict[str, typing.Any] | None = None) -> None:
        """Cache the record (or ``None``) of each of ``doms``.

        Records not cached yet come from the index, read once; the
        domains it lacks are read from their metadata, one round trip
        each, and added to it, so that the next process need not.

        :param listed: the uuids of every domain of the listing, for
            dropping index entries of domains that are gone.
        :param indexed: the index's record entries, when just read.
        :raises libvirtError: when a domain's metadata cannot be read.
        """
        self._fill([(dom.UUIDString(), dom) for dom in doms], listed,
                   indexed)

    def _fill(self, doms: list[tuple[str, typing.Any]], listed: set[str],
              indexed: dict[str, typing.Any] | None = None) -> None:
        # fill, with each domain's uuid read once.
        with self._lock:
            misses = [(uuid, dom) for uuid, dom in doms
                      if uuid not in self._records]
        if not misses:
            return
        if indexed is None:
            indexed = self._index.load()
        found = {}
        unindexed = []
        flavors: dict[int, tuple[typing.Any, objects.Flavor]] = {}
        for uuid, dom in misses:
            record = entry(indexed, uuid, dom.name(), flavors)
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
        return [(record, values.get('state.state', 0),
                 values.get('state.reason', 0))
                for _, values, record in self.ours_in_stats(stats)]

    def ours_in_stats(self, stats: list[tuple[typing.Any, dict]],
                      indexed: dict[str, typing.Any] | None = None
                      ) -> list[tuple[typing.Any, dict, objects.Instance]]:
        """Our domains in ``getAllDomainStats`` output, with their records.

        A domain whose record cannot be read is logged and skipped.

        :param indexed: the index's record entries, when just read.
        :returns: ``(domain, stats, record)`` of each.
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
                        ours.append((dom, values, record))
                else:
                    misses.append((uuid, dom, values))
            for uuid in set(cache) - seen:
                del cache[uuid]
        try:
            self._fill([(uuid, dom) for uuid, dom, _ in misses], seen,
                       indexed)
        except libvirt.libvirtError as exc:
            # Read again one by one below, skipping the failing ones.
            LOG.debug('Reading the records of a listing failed: %s', exc)
        for uuid, dom, values in misses:
            try:
                with self._lock:
                    record = self._records.get(uuid, _UNKNOWN)
                if record is _UNKNOWN:
                    record = self.of(dom)
            except libvirt.libvirtError as exc:
                LOG.warning('Skipping domain %s: %s', dom.name(), exc)
                continue
            if record is not None:
                ours.append((dom, values, record))
        return ours

    def interfaces(self, stats: list[tuple[typing.Any, dict]],
                   check_taps: bool = True
                   ) -> dict[str, tuple[model.Port, ...]]:
        """The ports of our instances in ``getAllDomainStats`` output.

        From the index, read once, with the records. A domain's ports are
        read from its metadata (one round trip) instead when its entry is
        missing or marked as changing, or, for a running domain whose
        stats include ``VIR_DOMAIN_STATS_INTERFACE``, when the devices
        libvirt reports are not the entry's ports' devices; what is read
        goes back into the index, unless a change of those ports is
        under way or began since.

        :param check_taps: compare device names (not for LXC, whose
            veths libvirt names).
        :returns: ports by instance uuid, in NIC order.
        :raises libvirtError: when a domain's metadata cannot be read.
        """
        indexed, entries = self._index.load_all()
        return self._ports_of(
            ((record.uuid, functools.partial(_same, dom), values)
             for dom, values, record in self.ours_in_stats(stats, indexed)),
            entries, check_taps)

    def interfaces_of(self, uuids: typing.Iterable[str],
                      running: dict[str, dict],
                      lookup: typing.Callable[[str], typing.Any],
                      check_taps: bool = True
                      ) -> dict[str, tuple[model.Port, ...]]:
        """The ports of the instances of a listing just made.

        As :meth:`interfaces`, for instances known to be ours.

        :param running: ``getAllDomainStats(INTERFACE)`` of the running
            domains, by uuid: the devices to check entries against.
        :param lookup: the domain of a uuid, or ``None`` when it is gone;
            called only for a domain to read.
        """
        _, entries = self._index.load_all()
        return self._ports_of(
            ((uuid, functools.partial(lookup, uuid), running.get(uuid, {}))
             for uuid in uuids), entries, check_taps)

    def _ports_of(self, domains: typing.Iterable[_Domain],
                  entries: dict[str, typing.Any], check_taps: bool
                  ) -> dict[str, tuple[model.Port, ...]]:
        result = {}
        heal = {}
        for uuid, domain, values in domains:
            items = port_items(entries, uuid)
            ports = None
            if items is not None:
                try:
                    # Written by this library from checked ports.
                    ports = model.from_own_record(items)
                except exception.InvalidInput as exc:
                    LOG.debug('Ignoring the port entry of %s: %s', uuid, exc)
            if ports is not None and check_taps and 'net.count' in values:
                devices = {values.get('net.%d.name' % i)
                           for i in range(values['net.count'])}
                if devices != {port.devname for port in ports}:
                    LOG.debug('Domain %s has devices %s, its index entry '
                              'says %s: reading the domain', uuid,
                              sorted(map(str, devices)),
                              sorted(p.devname for p in ports))
                    ports = None
            if ports is None:
                try:
                    dom = domain()
                    if dom is None:
                        continue
                    ports = network.recorded(dom)
                except libvirt.libvirtError as exc:
                    if errors.code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                        continue
                    raise
                if _items(ports) != items:
                    heal[uuid] = (entries.get(uuid), ports)
            result[uuid] = ports
        # Not for an instance whose ports are being changed: a change
        # marks the entry before it writes the domain, and a process
        # killed after writing it must leave the mark, not what was read
        # before. (A change that starts after this check marks the entry
        # anew, which the heal's token check sees.)
        heal = {uuid: value for uuid, value in heal.items()
                if self._ports_idle(uuid)}
        if heal:
            self._index.update(heal=heal)
        return result

    def _ports_lock(self, uuid: str) -> str:
        directory = os.path.join(self._directory, uuid)
        if not os.path.isdir(directory):
            directory = self._directory
        return os.path.join(directory, PORTS_LOCK)

    def _ports_idle(self, uuid: str) -> bool:
        """Whether no process is changing the ports of ``uuid``."""
        try:
            fd = os.open(self._ports_lock(uuid),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    @contextlib.contextmanager
    def changing_ports(self, uuid: str,
                       read: typing.Callable[[], tuple[model.Port, ...]]
                       ) -> typing.Iterator[None]:
        """Bracket a change of the ports the domain ``uuid`` records.

        Under the instance's ports lock: marks the index entry as
        changing, runs the block, then sets the entry to ``read()``, the
        ports the domain records now. A block that raises leaves the mark
        for listings to read the domain.

        :raises BackendError: when the index exists but cannot be marked:
            a change it would not know of would make it lie.
        """
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(_flock(self._ports_lock(uuid)))
            except OSError as exc:
                LOG.debug('Changing the ports of %s without %s: %s', uuid,
                          PORTS_LOCK, exc)
            if (not self._index.update(ports={uuid: None}) and
                    os.path.exists(self._index.path)):
                raise exception.BackendError(
                    operation='change ports', instance=uuid,
                    reason='cannot write %s' % self._index.path)
            yield
            try:
                ports = read()
            except Exception as exc:
                # The change is made; the mark makes listings read it.
                LOG.debug('Cannot read the ports of %s back: %s', uuid, exc)
                return
            self._index.update(ports={uuid: ports})

    def add(self, instance: objects.Instance,
            ports: tuple[model.Port, ...] | None = UNCHANGED) -> None:
        """Record a domain just defined for ``instance``.

        :param ports: the ports it records; ``None`` when unknown (the
            entry is marked for listings to read the domain);
            :data:`UNCHANGED` leaves the port entry as it is.
        """
        with self._lock:
            self._records[instance.uuid] = instance
        if ports is UNCHANGED:
            self._index.update(add=[instance])
        else:
            self._index.update(add=[instance], ports={instance.uuid: ports})

    def forget(self, uuid: str) -> None:
        """Forget the record of a domain just undefined."""
        with self._lock:
            self._records.pop(uuid, None)
        self._index.update(remove=[uuid])

    def _prune(self, uuids: set[str]) -> None:
        with self._lock:
            for uuid in set(self._records) - uuids:
                del self._records[uuid]
