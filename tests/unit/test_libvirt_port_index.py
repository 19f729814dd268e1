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

"""Every instance's ports in one listing: the record index's port entries.

On ``test:///default``, whose domains have no devices of their own to
report; the devices of running domains are faked in the stats.
"""

import json
import uuid

import libvirt
import pytest

from compute_driver import exception
from compute_driver.libvirt import network as lv_network
from compute_driver.libvirt import recordindex
from compute_driver.network import model
from tests.unit import test_libvirt
from tests.unit import test_libvirt_scaling

make_driver = test_libvirt.make_driver
backend = test_libvirt_scaling.backend
_spawned = test_libvirt_scaling._spawned


def _port(number, devname=''):
    return model.Port(id=str(uuid.uuid4()),
                      mac='fa:16:3e:00:01:%02x' % number,
                      vif_type=model.VIF_TYPE_TAP, devname=devname,
                      fixed_ips=(model.FixedIP(
                          address='192.0.2.%d' % number,
                          cidr='192.0.2.0/24'),))


def _spawn(backend, name, ports, power_on=False):
    instance = test_libvirt._instance(backend.conf, name)
    _spawned.append(instance)
    backend.spawn(instance, power_on=power_on, network_info=list(ports))
    return instance


def _index_path(tmp_path):
    return tmp_path / 'instances' / 'records.json'


def _index(tmp_path):
    return json.loads(_index_path(tmp_path).read_text())


class _Reads:
    """Counts the domain definitions read, the port record's source."""

    def __init__(self, monkeypatch):
        self.names = []
        original = libvirt.virDomain.XMLDesc

        def xml_desc(dom, flags=0):
            self.names.append(dom.name())
            return original(dom, flags)

        monkeypatch.setattr(libvirt.virDomain, 'XMLDesc', xml_desc)


def test_a_new_process_lists_the_ports_from_the_index(
        backend, make_driver, monkeypatch):
    first = _spawn(backend, 'cdunit-ports1', [_port(1), _port(2)])
    second = _spawn(backend, 'cdunit-ports2', [])
    expected = {first.uuid: backend.get_interfaces(first),
                second.uuid: ()}
    assert [p.mac for p in expected[first.uuid]] == [
        'fa:16:3e:00:01:01', 'fa:16:3e:00:01:02']
    reads = _Reads(monkeypatch)
    test_libvirt_scaling._no_metadata(monkeypatch)
    listed = make_driver().list_instance_interfaces()
    assert {u: listed[u] for u in expected} == expected
    assert reads.names == []


def test_an_index_of_an_earlier_release_is_read_once_and_completed(
        backend, make_driver, tmp_path, monkeypatch):
    instance = _spawn(backend, 'cdunit-old', [_port(3)])
    ports = backend.get_interfaces(instance)
    data = _index(tmp_path)
    del data['ports']
    _index_path(tmp_path).write_text(json.dumps(data))

    reads = _Reads(monkeypatch)
    assert make_driver().list_instance_interfaces()[instance.uuid] == ports
    assert reads.names.count('cdrv-cdunit-old') == 1
    assert instance.uuid in _index(tmp_path)['ports']
    reads.names.clear()
    assert make_driver().list_instance_interfaces()[instance.uuid] == ports
    assert reads.names == []


def test_a_change_cut_short_is_read_from_the_domain(
        backend, make_driver, tmp_path, monkeypatch):
    # As a process killed between writing the domain's port record and
    # the index: the index still has the mark the change began with.
    instance = _spawn(backend, 'cdunit-killed', [_port(4)])
    dom = backend._find(instance)
    added = _port(5)
    with pytest.raises(KeyboardInterrupt):
        with backend._records.changing_ports(
                instance.uuid, lambda: lv_network.recorded(dom)):
            lv_network.record(dom, lv_network.recorded(dom) + (added,))
            raise KeyboardInterrupt
    assert _index(tmp_path)['ports'][instance.uuid]['ports'] is None

    reads = _Reads(monkeypatch)
    listed = make_driver().list_instance_interfaces()[instance.uuid]
    assert [p.id for p in listed][1:] == [added.id]
    assert reads.names == ['cdrv-cdunit-killed']
    reads.names.clear()
    assert make_driver().list_instance_interfaces()[instance.uuid] == listed
    assert reads.names == []


def test_attach_and_detach_keep_the_index_right(
        backend, make_driver, monkeypatch):
    # test:/// cannot hot-plug: only the port record changes here, which
    # is what the index follows (the devices are the functional tests').
    def attach(dom, instance, port, virt_type):
        lv_network.record(dom, lv_network.recorded(dom) + (port,))

    def detach(dom, instance, port, virt_type):
        lv_network.record(dom, tuple(p for p in lv_network.recorded(dom)
                                     if p.id != port.id))

    monkeypatch.setattr(lv_network, 'attach', attach)
    monkeypatch.setattr(lv_network, 'detach', detach)
    first = _port(6)
    instance = _spawn(backend, 'cdunit-plug', [first])
    added = _port(7)
    backend.attach_interface(instance, added)
    reads = _Reads(monkeypatch)
    assert make_driver().list_instance_interfaces()[instance.uuid] == (
        backend.get_interfaces(instance))
    assert [p.id for p in backend.get_interfaces(instance)] == [
        first.id, added.id]
    backend.detach_interface(instance, first.id)
    reads.names.clear()
    listed = make_driver().list_instance_interfaces()[instance.uuid]
    assert [p.id for p in listed] == [added.id]
    assert reads.names == []
    # plug_vifs records the ports the domain lacks, through the same path.
    again = _port(8)
    backend.plug_vifs(instance, [added, again])
    assert [p.id for p in make_driver().list_instance_interfaces()[
        instance.uuid]] == [added.id, again.id]


def test_running_domains_are_checked_against_their_devices(
        backend, make_driver, monkeypatch):
    port = _port(9, devname='tapcdunit9')
    instance = _spawn(backend, 'cdunit-taps', [port], power_on=True)
    devices = {'tapcdunit9'}
    original = libvirt.virConnect.getAllDomainStats

    def stats(conn, stats=0, flags=0):
        result = original(conn, libvirt.VIR_DOMAIN_STATS_STATE, flags)
        for dom, values in result:
            if dom.UUIDString() == instance.uuid:
                values['net.count'] = len(devices)
                for index, name in enumerate(sorted(devices)):
                    values['net.%d.name' % index] = name
        return result

    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats', stats)
    reads = _Reads(monkeypatch)
    assert make_driver().list_instance_interfaces()[instance.uuid] == (
        port,)
    assert reads.names == []
    # A device the entry does not know of (a port recorded behind the
    # index's back): the domain's record is read, and it wins.
    dom = backend._find(instance)
    other = _port(10, devname='tapcdunit10')
    lv_network.record(dom, (port, other))
    devices.add('tapcdunit10')
    assert make_driver().list_instance_interfaces()[instance.uuid] == (
        port, other)
    assert reads.names == ['cdrv-cdunit-taps']
    # LXC names the devices itself: no comparison there.
    reads.names.clear()
    devices.add('veth0')
    fresh = make_driver()
    fresh.runs_containers = True
    assert fresh.list_instance_interfaces()[instance.uuid] == (port, other)
    assert reads.names == []
    # The same for the instances of a listing just made, whose devices
    # are asked of the running domains only.
    lv_network.record(dom, (port,))
    devices.discard('tapcdunit10')
    devices.discard('veth0')
    fresh = make_driver()
    assert fresh.list_instance_interfaces([instance]) == {
        instance.uuid: (port,)}
    assert reads.names == ['cdrv-cdunit-taps']
    reads.names.clear()
    assert fresh.list_instance_interfaces([instance]) == {
        instance.uuid: (port,)}
    assert reads.names == []


def test_destroy_drops_the_port_entry(backend, tmp_path):
    instance = _spawn(backend, 'cdunit-gone', [_port(11)])
    assert instance.uuid in _index(tmp_path)['ports']
    backend.destroy(instance)
    _spawned.remove(instance)
    assert instance.uuid not in _index(tmp_path)['ports']


def test_a_listing_does_not_undo_a_change_that_began_meanwhile(tmp_path):
    index = recordindex.RecordIndex(str(tmp_path))
    ports = (_port(12),)
    uid = str(uuid.uuid4())
    index.update(ports={uid: ports})
    _, seen = index.load_all()
    # A change begins after the listing read the index...
    index.update(ports={uid: None})
    # ...so what the listing read from the domain may be stale.
    index.update(heal={uid: (seen[uid], ())})
    assert recordindex.port_items(index.load_all()[1], uid) is None
    # Without a change in between, what was read goes in.
    _, seen = index.load_all()
    index.update(heal={uid: (seen[uid], ports)})
    assert model.from_own_record(recordindex.port_items(
        index.load_all()[1], uid)) == ports
    # A heal of an entry that was missing needs it to be missing still.
    other = str(uuid.uuid4())
    index.update(ports={other: None})
    index.update(heal={other: (None, ports)})
    assert recordindex.port_items(index.load_all()[1], other) is None


@pytest.mark.parametrize('entry', [
    None, 'not a dict', {'token': 'x'}, {'token': 'x', 'ports': None},
    {'token': 'x', 'ports': 42}, {'token': 'x', 'ports': '[]'}])
def test_unusable_port_entries(entry):
    entries = {} if entry is None else {'u': entry}
    assert recordindex.port_items(entries, 'u') is None


def test_a_malformed_port_entry_is_read_from_the_domain(
        backend, make_driver, tmp_path):
    instance = _spawn(backend, 'cdunit-bad', [_port(13)])
    ports = backend.get_interfaces(instance)
    data = _index(tmp_path)
    data['ports'][instance.uuid]['ports'] = [{'id': 'no other field'}]
    _index_path(tmp_path).write_text(json.dumps(data))
    assert make_driver().list_instance_interfaces()[instance.uuid] == ports
    assert _index(tmp_path)['ports'][instance.uuid]['ports'] == json.loads(
        model.to_record(ports))


def test_a_change_the_index_cannot_follow_is_refused(
        backend, tmp_path, monkeypatch):
    instance = _spawn(backend, 'cdunit-ro', [])

    def refuse(*args, **kwargs):
        raise PermissionError('read-only on purpose')

    monkeypatch.setattr(recordindex.RecordIndex, '_locked', refuse)
    dom = backend._find(instance)
    with pytest.raises(exception.BackendError, match='records.json'):
        with backend._records.changing_ports(
                instance.uuid, lambda: lv_network.recorded(dom)):
            pytest.fail('changed ports the index cannot follow')
    # Without an index there is nothing to lie.
    _index_path(tmp_path).unlink()
    with backend._records.changing_ports(
            instance.uuid, lambda: lv_network.recorded(dom)):
        pass


def test_an_instance_spawned_by_an_earlier_release(
        backend, make_driver, tmp_path, monkeypatch):
    # Neither a record nor a port entry: both read from the domain once.
    instance = _spawn(backend, 'cdunit-unindexed', [_port(14)])
    ports = backend.get_interfaces(instance)
    _index_path(tmp_path).unlink()
    assert make_driver().list_instance_interfaces()[instance.uuid] == ports
    data = _index(tmp_path)
    assert instance.uuid in data['records']
    assert instance.uuid in data['ports']


def test_own_records_read_back_unchecked_are_the_ports():
    ports = (
        model.Port(id=str(uuid.uuid4()), mac='FA:16:3E:00:02:01',
                   vif_type=model.VIF_TYPE_BRIDGE, bridge='br0', mtu=1400,
                   fixed_ips=(model.FixedIP('192.0.2.9', '192.0.2.0/24',
                                            '192.0.2.1'),
                              model.FixedIP('2001:db8::9', '2001:db8::/64')),
                   vlan=12, network_id='net', network_label='private',
                   should_provide_bridge=True, bridge_interface='eth1'),
        model.Port(id=str(uuid.uuid4()), mac='fa:16:3e:00:02:02',
                   vif_type=model.VIF_TYPE_OVS),
        _port(15))
    items = json.loads(model.to_record(ports))
    assert model.from_own_record(items) == ports
    assert model.from_own_record([]) == ()
    for bad in ([{'id': ports[0].id}], 'text', [42], None):
        with pytest.raises(exception.InvalidInput):
            model.from_own_record(bad)


def test_a_listing_leaves_the_mark_of_a_change_under_way(
        backend, make_driver, tmp_path):
    instance = _spawn(backend, 'cdunit-busy', [_port(16)])
    dom = backend._find(instance)
    ports = backend.get_interfaces(instance)
    with backend._records.changing_ports(
            instance.uuid, lambda: lv_network.recorded(dom)):
        # What the domain records now, but the change may write it any
        # moment (and its process die before telling the index).
        assert make_driver().list_instance_interfaces()[
            instance.uuid] == ports
        assert _index(tmp_path)['ports'][instance.uuid]['ports'] is None
    assert _index(tmp_path)['ports'][instance.uuid]['ports'] == json.loads(
        model.to_record(ports))


def test_the_instances_of_a_listing_just_made(backend, make_driver,
                                              monkeypatch):
    first = _spawn(backend, 'cdunit-given1', [_port(17)])
    second = _spawn(backend, 'cdunit-given2', [_port(18), _port(19)])
    third = _spawn(backend, 'cdunit-given3', [_port(20)])
    fresh = make_driver()
    instances = [r.instance for r in fresh.list_instance_records()
                 if r.instance.uuid in (first.uuid, second.uuid)]
    expected = {first.uuid: backend.get_interfaces(first),
                second.uuid: backend.get_interfaces(second)}
    reads = _Reads(monkeypatch)
    test_libvirt_scaling._no_metadata(monkeypatch)
    assert fresh.list_instance_interfaces(instances) == expected
    assert reads.names == []
    # One gone meanwhile, with no usable entry: left out.
    monkeypatch.undo()
    backend.destroy(third)
    _spawned.remove(third)
    assert fresh.list_instance_interfaces([third]) == {}
