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

"""The libvirt backend's cost per instance, on ``test:///default``.

One instance is resolved without listing the others, a new process lists
without a metadata round trip per domain, spawns overlap outside the claim
and a clean shutdown wakes on the Stopped event.
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading

import libvirt
import pytest

from compute_driver import exception
from compute_driver.libvirt import mapping
from compute_driver.libvirt import recordindex
from compute_driver import objects
from compute_driver import power_state
from tests.unit import test_libvirt

make_driver = test_libvirt.make_driver
IMAGE = test_libvirt.IMAGE


# test:///default keeps its domains for the life of the process: every
# test removes the ones it spawned.
_spawned: list[objects.Instance] = []


@pytest.fixture
def backend(make_driver):
    driver = make_driver()
    driver.init_host('test')
    yield driver
    while _spawned:
        driver.destroy(_spawned.pop())


def _spawn(backend, instance, power_on=True):
    _spawned.append(instance)
    backend.spawn(instance, power_on=power_on)


def _no_listing(monkeypatch):
    """Make every whole-host listing fail the test."""
    def refuse(self, *args):
        raise AssertionError('listed every domain')

    for name in ('listAllDomains', 'getAllDomainStats', 'listDomainsID',
                 'listDefinedDomains'):
        monkeypatch.setattr(libvirt.virConnect, name, refuse)


def _no_metadata(monkeypatch):
    def refuse(self, *args):
        raise AssertionError('read the metadata of %s' % self.name())

    monkeypatch.setattr(libvirt.virDomain, 'metadata', refuse)


def test_find_instance_looks_one_domain_up(backend, make_driver,
                                           monkeypatch):
    instances = [test_libvirt._instance(backend.conf, 'cdunit-find%d' % n)
                 for n in range(3)]
    for number, instance in enumerate(instances):
        _spawn(backend, instance, power_on=number != 1)
    # A new process: nothing cached, so one metadata read per lookup.
    fresh = make_driver()
    _no_listing(monkeypatch)
    reads = []
    metadata = libvirt.virDomain.metadata

    def counted(self, *args):
        reads.append(self.name())
        return metadata(self, *args)

    monkeypatch.setattr(libvirt.virDomain, 'metadata', counted)
    found = fresh.find_instance(instances[1].name)
    assert found.instance == instances[1]
    assert found.info.state == power_state.SHUTDOWN
    found = fresh.find_instance(instances[2].uuid.upper())
    assert found.instance == instances[2]
    assert found.info.state == power_state.RUNNING
    assert reads == [mapping.domain_name(i.name) for i in instances[1:]]


def test_find_instance_misses(backend, monkeypatch):
    instance = test_libvirt._instance(backend.conf)
    _spawn(backend, instance)
    _no_listing(monkeypatch)
    foreign = backend._host.get_connection().lookupByName('test')
    for ref in ('test', foreign.UUIDString(), 'cdunit-nothing',
                '00000000-0000-0000-0000-000000000000',
                mapping.domain_name(instance.name)):
        with pytest.raises(exception.InstanceNotFound):
            backend.find_instance(ref)


def test_find_instance_by_a_name_shaped_like_a_uuid(backend):
    # Names are free text: one may look like another instance's uuid.
    first = test_libvirt._instance(backend.conf, 'cdunit-first')
    _spawn(backend, first)
    named = test_libvirt._instance(backend.conf,
                                   '11111111-2222-3333-4444-555555555555')
    _spawn(backend, named)
    assert backend.find_instance(named.name).instance == named
    assert backend.find_instance(first.uuid).instance == first


def test_new_process_lists_from_the_record_index(backend, make_driver,
                                                 monkeypatch):
    instances = [test_libvirt._instance(backend.conf, 'cdunit-list%d' % n)
                 for n in range(3)]
    for instance in instances:
        _spawn(backend, instance)
    _no_metadata(monkeypatch)
    fresh = make_driver()
    listed = {r.instance.uuid: r.instance
              for r in fresh.list_instance_records()}
    assert all(listed[i.uuid] == i for i in instances)
    assert set(make_driver().list_instances()) >= {i.name for i in instances}


def _index(tmp_path):
    return json.loads((tmp_path / 'instances' / 'records.json').read_text())


def test_destroy_drops_the_index_entry(backend, tmp_path):
    instance = test_libvirt._instance(backend.conf)
    _spawn(backend, instance)
    assert instance.uuid in _index(tmp_path)['records']
    backend.destroy(instance)
    assert instance.uuid not in _index(tmp_path)['records']


def test_a_domain_missing_from_the_index_is_read_and_added(
        backend, make_driver, tmp_path, monkeypatch):
    # As after an upgrade from a release without the index; an entry of a
    # domain that is gone is dropped on the way.
    instance = test_libvirt._instance(backend.conf)
    _spawn(backend, instance)
    gone = test_libvirt._instance(backend.conf, 'cdunit-gone')
    (tmp_path / 'instances' / 'records.json').write_text(json.dumps(
        {'version': 1, 'records': {gone.uuid: gone.to_dict()}}))
    assert instance.uuid in make_driver().list_instance_uuids()
    indexed = _index(tmp_path)['records']
    assert instance.uuid in indexed and gone.uuid not in indexed
    _no_metadata(monkeypatch)
    assert instance.uuid in [r.instance.uuid for r in
                             make_driver().list_instance_records()]


@pytest.mark.parametrize('content', [
    'not json', '[]', '{"version": 99, "records": {}}',
    '{"version": 1, "records": []}'])
def test_an_unusable_index_falls_back_to_the_metadata(
        backend, make_driver, tmp_path, content):
    instance = test_libvirt._instance(backend.conf)
    _spawn(backend, instance)
    (tmp_path / 'instances' / 'records.json').write_text(content)
    assert instance.uuid in make_driver().list_instance_uuids()
    assert instance.uuid in _index(tmp_path)['records']


def test_an_index_entry_of_another_instance_is_not_trusted(
        backend, make_driver, tmp_path):
    instance = test_libvirt._instance(backend.conf)
    other = test_libvirt._instance(backend.conf, 'cdunit-other')
    _spawn(backend, instance)
    (tmp_path / 'instances' / 'records.json').write_text(json.dumps(
        {'version': 1, 'records': {instance.uuid: other.to_dict()}}))
    records = {r.instance.uuid: r.instance
               for r in make_driver().list_instance_records()}
    assert records[instance.uuid] == instance


def test_an_unwritable_index_costs_round_trips_only(
        backend, make_driver, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError('read-only on purpose')

    monkeypatch.setattr(recordindex.RecordIndex, '_locked', refuse)
    instance = test_libvirt._instance(backend.conf)
    _spawn(backend, instance)
    assert instance.uuid in make_driver().list_instance_uuids()
    backend.destroy(instance)


def test_spawns_overlap_outside_the_claim(backend, monkeypatch):
    first = test_libvirt._instance(backend.conf, 'cdunit-slow')
    second = test_libvirt._instance(backend.conf, 'cdunit-fast')
    copying = threading.Event()
    release = threading.Event()
    create_disk = backend.store.create_disk

    def slow_create_disk(image, path, *args, **kwargs):
        if first.uuid in path:
            copying.set()
            assert release.wait(60)
        return create_disk(image, path, *args, **kwargs)

    monkeypatch.setattr(backend.store, 'create_disk', slow_create_disk)
    errors = []

    def spawn_first():
        try:
            _spawn(backend, first)
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=spawn_first)
    thread.start()
    try:
        assert copying.wait(60)
        # The first spawn holds a claim: it counts as used, and its name
        # and uuid are taken although it has no domain yet.
        used = backend.get_available_resource(None).memory_mb_used
        assert used >= first.flavor.memory_mb
        clash = test_libvirt._instance(backend.conf, first.name)
        with pytest.raises(exception.InstanceExists):
            _spawn(backend, clash)
        # ... and does not stop another spawn from finishing.
        _spawn(backend, second)
        assert second.uuid in backend.list_instance_uuids()
        assert first.uuid not in backend.list_instance_uuids()
    finally:
        release.set()
        thread.join(60)
    assert not errors
    assert first.uuid in backend.list_instance_uuids()
    assert not backend._pending
    # Counted once: from its domain, not also as pending.
    assert (backend.get_available_resource(None).memory_mb_used ==
            used + second.flavor.memory_mb)


def test_a_claim_lists_the_domains_before_its_lock(backend, monkeypatch):
    # libvirtd answers a listing only once the domain it is starting is
    # up: a claim waiting on it must not stop the other spawns, nor take
    # what they took meanwhile. test:///default has 16 CPUs: at a ratio
    # of 1.0, one 16-vCPU guest fits.
    backend.conf.set_override('cpu_allocation_ratio', 1.0)
    wide = objects.Flavor('cdunit.wide', vcpus=16, memory_mb=32)
    waiting, early = (dataclasses.replace(
        test_libvirt._instance(backend.conf, name), flavor=wide)
        for name in ('cdunit-waiting', 'cdunit-early'))
    listed, go = threading.Event(), threading.Event()
    stats = libvirt.virConnect.getAllDomainStats
    waiter = []

    def held_stats(self, *args):
        found = stats(self, *args)
        if threading.current_thread() in waiter:
            listed.set()
            assert go.wait(60)
        return found

    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats', held_stats)
    errors = []

    def spawn_waiting():
        try:
            _spawn(backend, waiting, power_on=False)
        except Exception as exc:  # checked below
            errors.append(exc)

    thread = threading.Thread(target=spawn_waiting)
    waiter.append(thread)
    thread.start()
    try:
        assert listed.wait(60)
        _spawn(backend, early, power_on=False)
    finally:
        go.set()
        thread.join(60)
    assert [type(e) for e in errors] == [exception.InsufficientResources]
    uuids = backend.list_instance_uuids()
    assert early.uuid in uuids and waiting.uuid not in uuids
    assert not backend._pending and not backend._reading


def test_a_failed_spawn_releases_its_claim(backend, monkeypatch):
    instance = test_libvirt._instance(backend.conf)

    def broken(*args, **kwargs):
        raise OSError('disk full on purpose')

    monkeypatch.setattr(backend.store, 'create_disk', broken)
    with pytest.raises(OSError):
        _spawn(backend, instance)
    assert not backend._pending


class _StoppingDomain:
    """A domain that shuts off when the test says so."""

    def __init__(self, uuid):
        self.uuid = uuid
        self.off = False
        self.state_calls = 0
        self.shutdown_requested = threading.Event()

    def UUIDString(self):
        return self.uuid

    def state(self):
        self.state_calls += 1
        return ((libvirt.VIR_DOMAIN_SHUTOFF if self.off
                 else libvirt.VIR_DOMAIN_RUNNING), 0)

    def shutdown(self):
        self.shutdown_requested.set()


def test_clean_shutdown_wakes_on_the_stopped_event(backend, monkeypatch):
    # Were the event not awaited, the wait would last the whole timeout
    # and read the state far more often.
    monkeypatch.setattr('compute_driver.libvirt.events._SHUTOFF_POLL', 600)
    dom = _StoppingDomain('6f1c1a52-8d7e-4b7e-9a55-7c1d2f3e4a5b')

    def guest():
        assert dom.shutdown_requested.wait(60)
        dom.off = True
        backend._events.on_domain_event(
            dom.uuid, mapping.domain_name('cdunit-x'),
            libvirt.VIR_DOMAIN_EVENT_STOPPED,
            libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN)

    thread = threading.Thread(target=guest)
    thread.start()
    assert backend._events.wait_for_shutoff(dom, timeout=600,
                                            retry_interval=600)
    thread.join(60)
    assert dom.state_calls == 2
    assert not backend._events._stop_waiters


def test_clean_shutdown_times_out(backend, monkeypatch):
    dom = _StoppingDomain('6f1c1a52-8d7e-4b7e-9a55-7c1d2f3e4a5c')
    assert not backend._events.wait_for_shutoff(dom, timeout=0,
                                                retry_interval=1)
    assert not backend._events._stop_waiters


def test_claim_checks_uniqueness_without_listing(backend, monkeypatch):
    instance = test_libvirt._instance(backend.conf)
    _spawn(backend, instance)
    _no_listing(monkeypatch)
    same_uuid = dataclasses.replace(instance, name='cdunit-other')
    same_name = test_libvirt._instance(backend.conf, instance.name)
    for clash in (same_uuid, same_name):
        with pytest.raises(exception.InstanceExists):
            backend._check_unique(clash)
    backend._check_unique(test_libvirt._instance(backend.conf, 'cdunit-new'))


def test_claims_count_vcpus_under_the_allocation_ratio(backend):
    # test:///default has 16 CPUs: four 16-vCPU guests fit under the
    # default ratio of 4.0, a fifth does not.
    wide = objects.Flavor('cdunit.wide', vcpus=16, memory_mb=32)
    for number in range(4):
        _spawn(backend, dataclasses.replace(
            test_libvirt._instance(backend.conf, 'cdunit-wide%d' % number),
            flavor=wide), power_on=False)
    extra = dataclasses.replace(
        test_libvirt._instance(backend.conf, 'cdunit-wide4'), flavor=wide)
    with pytest.raises(exception.InsufficientResources) as caught:
        _spawn(backend, extra)
    assert caught.value.resource == 'vcpus'
    assert extra.uuid not in backend.list_instance_uuids()
    backend.conf.set_override('cpu_allocation_ratio', 5.0)
    _spawn(backend, extra, power_on=False)


def test_show_and_list_import_only_what_they_use(backend, tmp_path):
    # A new process's show and list import neither the uuid module (nor
    # platform, which it imports) nor the image service's contract, nor
    # the modules of the image store, of domain XML and of volumes: each
    # costs every command milliseconds of its start-up. The domain is
    # defined in the new process from the XML of one spawned here, since
    # test:///default keeps its domains per process.
    instance = test_libvirt._instance(backend.conf, 'cdunit-startup')
    _spawn(backend, instance, power_on=False)
    dom = backend._host.get_connection().lookupByUUIDString(instance.uuid)
    (tmp_path / 'domain.xml').write_text(dom.XMLDesc(0))
    config = tmp_path / 'startup.conf'
    config.write_text(
        '[DEFAULT]\ncompute_driver = libvirt\n[libvirt]\nvirt_type = qemu\n'
        'connection_uri = %s\nimages_path = %s\ninstances_path = %s\n' % (
            test_libvirt.TEST_URI, tmp_path / 'images',
            tmp_path / 'startup-instances'))
    code = textwrap.dedent('''
        import sys
        import libvirt
        conn = libvirt.open(sys.argv[2])
        with open(sys.argv[3], encoding='utf-8') as handle:
            conn.defineXML(handle.read())
        from compute_driver.cmd import main
        codes = [main.main(['--config-file', sys.argv[1], 'show', name,
                            '-f', 'value', '-c', 'name'])
                 for name in (sys.argv[4], 'cdunit-nothing')]
        codes.append(main.main(['--config-file', sys.argv[1], 'list',
                                '-f', 'value', '-c', 'Name']))
        print(codes)
        print(sorted(m for m in sys.modules
                     if m in ('uuid', 'platform',
                              'compute_driver.image.api',
                              'compute_driver.libvirt.domainxml',
                              'compute_driver.libvirt.images',
                              'compute_driver.libvirt.volumes',
                              'compute_driver.volume.connection',
                              'compute_driver.volume.model')))
    ''')
    result = subprocess.run(
        [sys.executable, '-c', code, str(config), test_libvirt.TEST_URI,
         str(tmp_path / 'domain.xml'), instance.name],
        capture_output=True, text=True, env={'HOME': str(tmp_path),
                                             'PATH': '/usr/bin:/bin'},
        timeout=120, check=True)
    lines = result.stdout.splitlines()
    assert lines[:2] == [instance.name, instance.name], result.stderr
    assert lines[-2:] == ['[0, 1, 0]', '[]'], result.stderr


def test_list_of_indexed_instances_parses_no_xml(backend, tmp_path):
    # Listing instances the record index knows neither parses XML nor
    # draws random bytes, so it imports neither xml.etree (with pyexpat)
    # nor secrets (with hmac and OpenSSL's hashes), and printing values
    # it does not import the table formatter (prettytable). The process
    # shares the index of the domain spawned here, and defines it from
    # its XML (test:///default keeps its domains per process).
    instance = test_libvirt._instance(backend.conf, 'cdunit-noxml')
    _spawn(backend, instance, power_on=False)
    dom = backend._host.get_connection().lookupByUUIDString(instance.uuid)
    (tmp_path / 'domain.xml').write_text(dom.XMLDesc(0))
    config = tmp_path / 'noxml.conf'
    config.write_text(
        '[DEFAULT]\ncompute_driver = libvirt\n[libvirt]\nvirt_type = qemu\n'
        'connection_uri = %s\nimages_path = %s\ninstances_path = %s\n' % (
            test_libvirt.TEST_URI, tmp_path / 'images',
            backend.instances_path))
    code = textwrap.dedent('''
        import sys
        import libvirt
        conn = libvirt.open(sys.argv[2])
        with open(sys.argv[3], encoding='utf-8') as handle:
            xml = handle.read()
        from compute_driver.cmd import main
        # Defined only now: reading the XML file imported nothing.
        conn.defineXML(xml)
        print(main.main(['--config-file', sys.argv[1], 'list', '-f',
                         'value', '-c', 'Name']))
        print(sorted(m for m in sys.modules
                     if m in ('xml.etree.ElementTree', 'pyexpat',
                              'secrets', 'hmac', 'prettytable')))
    ''')
    result = subprocess.run(
        [sys.executable, '-c', code, str(config), test_libvirt.TEST_URI,
         str(tmp_path / 'domain.xml')],
        capture_output=True, text=True, env={'HOME': str(tmp_path),
                                             'PATH': '/usr/bin:/bin'},
        timeout=120, check=True)
    lines = result.stdout.splitlines()
    assert instance.name in lines, result.stderr
    assert lines[-2:] == ['0', '[]'], result.stderr


def test_domain_xml_names_are_still_found_in_mapping():
    # Moved to domainxml, so that listings need not import them; code
    # written before finds them where they were.
    from compute_driver.libvirt import domainxml
    for name in ('BootImage', 'GuestSpec', 'VNCSpec', 'XEN_PV_CONSOLE',
                 'domain_element', 'domain_xml'):
        assert getattr(mapping, name) is getattr(domainxml, name)
    with pytest.raises(AttributeError):
        mapping.no_such_name


def test_image_types_are_the_formats_the_images_module_takes(backend):
    # Spelt out in the class so that defining it needs no import of the
    # images module.
    from compute_driver.libvirt import images
    assert backend.image_types == (*images.NATIVE_FORMATS,
                                   *images.CONVERTED_FORMATS)


def test_image_store_is_made_once_on_first_use(make_driver):
    # The store (and the images module) come with the first use, one
    # store for all the threads asking at once.
    fresh = make_driver()
    assert fresh._store is None
    stores = []
    threads = [threading.Thread(target=lambda: stores.append(fresh.store))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(store) for store in stores}) == 1
    from compute_driver.libvirt import images
    store = stores[0]
    assert isinstance(store, images.ImageStore)
    conf = fresh.conf.libvirt
    assert store.images_path == conf.images_path
    assert store.base_path == os.path.join(conf.instances_path,
                                           images.BASE_DIR)


def test_reads_after_find_instance_look_nothing_up(backend, make_driver,
                                                   monkeypatch):
    # compute-driver show: find_instance, then the instance's usage and
    # ports, on the domain handle it found; a domain gone since is an
    # InstanceNotFound, as the lookup would have said.
    instance = test_libvirt._instance(backend.conf)
    _spawn(backend, instance)
    fresh = make_driver()
    fresh.init_host('test')
    found = fresh.find_instance(instance.name).instance
    lookups = []
    for name in ('lookupByUUIDString', 'lookupByName'):
        method = getattr(libvirt.virConnect, name)
        monkeypatch.setattr(
            libvirt.virConnect, name,
            lambda self, key, method=method: lookups.append(key) or
            method(self, key))
    assert fresh.get_diagnostics(found)['uuid'] == instance.uuid
    assert fresh.get_interfaces(found) == ()
    assert lookups == []
    backend.destroy(instance)
    for read in (fresh.get_diagnostics, fresh.get_interfaces):
        with pytest.raises(exception.InstanceNotFound):
            read(found)


def test_the_index_is_compact_sorted_json(backend, tmp_path):
    # One line, keys sorted, no spaces: what json.dumps writes with the
    # C encoder, the same text as json.dump wrote, only faster.
    for number in range(2):
        _spawn(backend, test_libvirt._instance(
            backend.conf, 'cdunit-index%d' % number), power_on=False)
    text = (tmp_path / 'instances' / 'records.json').read_text()
    assert text == json.dumps(json.loads(text), separators=(',', ':'),
                              sort_keys=True)
    assert len(_index(tmp_path)['records']) == 2


def test_the_index_writes_each_flavor_once(backend, tmp_path):
    small = objects.Flavor('m1.index', vcpus=1, memory_mb=64)
    large = objects.Flavor('m1.index', vcpus=2, memory_mb=64,
                           extra_specs={'hw:x': 'y'})
    instances = [objects.Instance.new('cdunit-flavor%d' % number, flavor,
                                      IMAGE)
                 for number, flavor in enumerate((small, small, large))]
    for instance in instances:
        _spawn(backend, instance, power_on=False)
    data = _index(tmp_path)
    assert data['version'] == 2
    # One flavor of each, though two share a name.
    assert len(data['flavors']) == 2
    assert {json.dumps(f, sort_keys=True)
            for f in data['flavors'].values()} == {
        json.dumps(f.to_dict(), sort_keys=True) for f in (small, large)}
    for instance in instances:
        entry = data['records'][instance.uuid]
        assert data['flavors'][entry['flavor']] == instance.flavor.to_dict()
        assert dict(entry, flavor=instance.flavor.to_dict()) == (
            instance.to_dict())


def test_a_version_1_index_is_read_then_rewritten_as_version_2(
        backend, make_driver, tmp_path, monkeypatch):
    # As left by a release writing version 1: each record holds its
    # flavor; its port entries are read as they are.
    instances = [test_libvirt._instance(backend.conf, 'cdunit-v1x%d' % n)
                 for n in range(2)]
    for instance in instances:
        _spawn(backend, instance, power_on=False)
    data = _index(tmp_path)
    path = tmp_path / 'instances' / 'records.json'
    path.write_text(json.dumps({
        'version': 1,
        'records': {i.uuid: i.to_dict() for i in instances},
        'ports': data['ports']}))
    with monkeypatch.context() as patch:
        _no_metadata(patch)
        fresh = make_driver()
        listed = {r.instance.uuid: r.instance
                  for r in fresh.list_instance_records()}
        assert all(listed[i.uuid] == i for i in instances)
        # Equal flavors of the entries are built once, and shared.
        assert listed[instances[0].uuid].flavor is (
            listed[instances[1].uuid].flavor)
        assert fresh.list_instance_interfaces(instances) == {
            i.uuid: () for i in instances}
    assert json.loads(path.read_text())['version'] == 1
    # Its next change writes version 2, with the entries it had.
    added = test_libvirt._instance(backend.conf, 'cdunit-v1added')
    _spawn(backend, added, power_on=False)
    data = _index(tmp_path)
    assert data['version'] == 2
    assert set(data['records']) >= {i.uuid for i in instances + [added]}
    _no_metadata(monkeypatch)
    listed = {r.instance.uuid: r.instance
              for r in make_driver().list_instance_records()}
    assert all(listed[i.uuid] == i for i in instances + [added])


@pytest.mark.parametrize('flavors', [{}, {'0': 'm1.bad'}, [], None])
def test_a_record_naming_no_usable_flavor_is_read_from_its_domain(
        backend, make_driver, tmp_path, flavors):
    instance = test_libvirt._instance(backend.conf)
    _spawn(backend, instance, power_on=False)
    path = tmp_path / 'instances' / 'records.json'
    data = json.loads(path.read_text())
    data['flavors'] = flavors
    path.write_text(json.dumps(data))
    records = {r.instance.uuid: r.instance
               for r in make_driver().list_instance_records()}
    assert records[instance.uuid] == instance
    # Read from the domain, and written back with its flavor.
    data = _index(tmp_path)
    assert data['flavors'][data['records'][instance.uuid]['flavor']] == (
        instance.flavor.to_dict())


def _entry_of(instance, **changes):
    data = json.loads(json.dumps(instance.to_dict()))
    data.update(changes)
    return {instance.uuid: data}


def test_an_index_entry_is_read_back_as_the_instance():
    instance = objects.Instance.new(
        'cdunit-entry', objects.Flavor('m1.entry', vcpus=2, memory_mb=64,
                                       extra_specs={'hw:x': 'y'}),
        'cdunit-image', metadata={'key': 'value'})
    flavors = {}
    name = mapping.domain_name(instance.name)
    for _ in range(2):  # the second with the flavor already built
        record = recordindex.entry(_entry_of(instance), instance.uuid, name,
                                   flavors)
        assert record == instance
        assert record.flavor.disk_gb == 0
    assert recordindex.entry(_entry_of(instance), instance.uuid,
                             name) == instance


@pytest.mark.parametrize('changes', [
    {'name': 'bad name'}, {'name': 7}, {'image_ref': 'two words'},
    {'image_ref': None}, {'metadata': {'key': 1}}, {'metadata': ['x']},
    {'flavor': {'name': 'm1.bad', 'vcpus': True, 'memory_mb': 64}},
    {'flavor': {'name': 'm1.bad', 'vcpus': 1, 'memory_mb': 64,
                'extra_specs': {'a': 1}}},
    {'flavor': 'm1.bad'}, {'uuid': 'not-a-uuid'}])
def test_a_malformed_index_entry_is_ignored(changes):
    instance = objects.Instance.new(
        'cdunit-entry', objects.Flavor('m1.entry', vcpus=1, memory_mb=64),
        'cdunit-image')
    data = _entry_of(instance, **changes)
    name = mapping.domain_name(instance.name)
    if 'name' in changes and isinstance(changes['name'], str):
        name = mapping.domain_name(changes['name'])
    assert recordindex.entry(data, instance.uuid, name, {}) is None
