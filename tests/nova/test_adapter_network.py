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

"""The adapter's ports and Neutron's plug events, with real Nova objects."""

import contextlib

from nova import exception as nova_exception
from nova.network import model as network_model
from nova.virt import fake as nova_fake
import pytest

from compute_driver.network import exception as net_exception
from compute_driver.network import model
from compute_driver.nova import convert
from tests.nova.test_adapter import ctxt  # noqa: F401
from tests.nova.test_adapter import IMAGE
from tests.nova.test_adapter import image_meta
from tests.nova.test_adapter import make_adapter  # noqa: F401
from tests.nova.test_adapter import nova_instance

PORTS = ('4f1b2a9e-6d0c-4c57-9a43-2c7e8f5d1b60',
         '7a2c3b4d-5e6f-4a1b-8c9d-0e1f2a3b4c5d')


def nova_vif(port_id, active=False, vnic_type='normal', cidr='10.0.0.0/24',
             mac='fa:16:3e:00:00:01'):
    subnet = network_model.Subnet(
        cidr=cidr, gateway=network_model.IP(address='10.0.0.1'),
        ips=[network_model.FixedIP(address='10.0.0.5')])
    network = network_model.Network(
        id='3cb9bc59-5699-4588-a4b1-b87f96708bc6', bridge='br-int',
        label='private', subnets=[subnet], mtu=1450)
    return network_model.VIF(
        id=port_id, address=mac, type='ovs', network=network,
        devname='tap' + port_id[:11], active=active, vnic_type=vnic_type)


class RecordingVirtAPI(nova_fake.FakeVirtAPI):
    """Nova's fake VirtAPI, recording waits and answering as told.

    :param outcome: ``None`` (the events arrived), or the exception the
        wait raises when the block ends, as Nova's does on a timeout.
    """

    def __init__(self, outcome=None):
        super().__init__()
        self.outcome = outcome
        self.waits = []

    @contextlib.contextmanager
    def wait_for_instance_event(self, instance, event_names, timeout=300,
                                error_callback=None):
        self.waits.append((list(event_names), timeout))
        yield
        if event_names and self.outcome == 'failed':
            error_callback(event_names[0], instance)
        elif event_names and self.outcome is not None:
            raise self.outcome


def test_ports_keep_what_the_backends_plug_with():
    [port] = convert.ports(network_model.NetworkInfo([nova_vif(PORTS[0])]))
    assert isinstance(port, model.Port)
    assert (port.id, port.mac, port.vif_type, port.bridge, port.mtu) == (
        PORTS[0], 'fa:16:3e:00:00:01', 'ovs', 'br-int', 1450)
    assert port.fixed_ips == (model.FixedIP('10.0.0.5', '10.0.0.0/24',
                                            '10.0.0.1'),)
    assert convert.ports(None) == ()


def test_ports_take_a_subnet_with_host_bits():
    # Older Neutron releases kept the CIDR as given.
    [port] = convert.ports([nova_vif(PORTS[0], cidr='10.0.0.1/24')])
    assert port.fixed_ips[0].cidr == '10.0.0.0/24'


def test_ports_refuse_what_no_backend_plugs():
    vif = nova_vif(PORTS[0])
    vif['type'] = 'hw_veb'
    with pytest.raises(net_exception.UnknownVIFType):
        convert.ports([vif])


def test_plug_events_are_those_of_ports_not_yet_active():
    info = network_model.NetworkInfo([
        nova_vif(PORTS[0]), nova_vif(PORTS[1], active=True),
        nova_vif('0c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f',
                 vnic_type='remote-managed')])
    assert convert.plug_events(info) == [('network-vif-plugged', PORTS[0])]
    assert convert.plug_events(None) == []


def test_plug_failure_is_novas_plug_exception():
    error = net_exception.PlugFailed(port=PORTS[0], plugin='ovs',
                                     reason='no br-int')
    assert isinstance(convert.nova_error(error),
                      nova_exception.VirtualInterfacePlugException)


def _adapter(make_adapter, virtapi):  # noqa: F811
    driver = make_adapter(image_map={'cirros': IMAGE})
    driver.virtapi = virtapi
    return driver


def _spawn(driver, ctxt, instance, vifs, power_on=True):  # noqa: F811
    driver.spawn(ctxt, instance, image_meta(name='cirros'), [], 'pw', {},
                 network_info=network_model.NetworkInfo(vifs),
                 power_on=power_on)


def test_spawn_waits_for_the_ports_neutron_has_not_wired(
        make_adapter, ctxt, flags):  # noqa: F811
    flags(vif_plugging_timeout=42)
    virtapi = RecordingVirtAPI()
    driver = _adapter(make_adapter, virtapi)
    instance = nova_instance()
    _spawn(driver, ctxt, instance,
           [nova_vif(PORTS[0]), nova_vif(PORTS[1], active=True,
                                         mac='fa:16:3e:00:00:02')])
    assert virtapi.waits == [([('network-vif-plugged', PORTS[0])], 42)]
    ours = driver.backend.find_instance(instance.uuid).instance
    assert [p.id for p in driver.backend.get_interfaces(ours)] == list(PORTS)
    assert driver.backend.plugged_ports(ours) == set(PORTS)


@pytest.mark.parametrize('power_on, timeout', [(False, 300), (True, 0)])
def test_spawn_waits_for_nothing_when_off_or_told_so(
        make_adapter, ctxt, flags, power_on, timeout):  # noqa: F811
    flags(vif_plugging_timeout=timeout)
    virtapi = RecordingVirtAPI(nova_exception.InstanceEventTimeout())
    driver = _adapter(make_adapter, virtapi)
    instance = nova_instance()
    _spawn(driver, ctxt, instance, [nova_vif(PORTS[0])], power_on=power_on)
    assert virtapi.waits == [([], timeout)]
    assert driver.backend.list_instance_uuids() == [instance.uuid]


@pytest.mark.parametrize('outcome', [
    nova_exception.InstanceEventTimeout(), 'failed'])
def test_missing_event_when_fatal_removes_the_instance(
        make_adapter, ctxt, flags, outcome):  # noqa: F811
    flags(vif_plugging_timeout=1, vif_plugging_is_fatal=True)
    driver = _adapter(make_adapter, RecordingVirtAPI(outcome))
    with pytest.raises(nova_exception.VirtualInterfaceCreateException):
        _spawn(driver, ctxt, nova_instance(), [nova_vif(PORTS[0])])
    assert driver.backend.list_instance_uuids() == []


def test_missing_event_when_not_fatal_keeps_the_instance(
        make_adapter, ctxt, flags):  # noqa: F811
    flags(vif_plugging_timeout=1, vif_plugging_is_fatal=False)
    driver = _adapter(make_adapter, RecordingVirtAPI(
        nova_exception.InstanceEventTimeout()))
    instance = nova_instance()
    _spawn(driver, ctxt, instance, [nova_vif(PORTS[0])])
    assert driver.backend.list_instance_uuids() == [instance.uuid]


def test_interfaces_reach_the_backend(make_adapter, ctxt):  # noqa: F811
    driver = _adapter(make_adapter, RecordingVirtAPI())
    assert driver.capabilities['supports_attach_interface'] is True
    instance = nova_instance()
    _spawn(driver, ctxt, instance, [nova_vif(PORTS[0], active=True)])
    ours = driver.backend.find_instance(instance.uuid).instance
    second = nova_vif(PORTS[1], active=True, mac='fa:16:3e:00:00:02')
    driver.attach_interface(ctxt, instance, image_meta(), second)
    assert [p.id for p in driver.backend.get_interfaces(ours)] == list(PORTS)
    # Nova's compute manager gives up the port on an attach failure.
    with pytest.raises(nova_exception.InvalidInput):
        driver.attach_interface(ctxt, instance, image_meta(), second)
    driver.detach_interface(ctxt, instance, second)
    assert [p.id for p in driver.backend.get_interfaces(ours)] == [
        PORTS[0]]
    driver.unplug_vifs(instance, [nova_vif(PORTS[0], active=True)])
    assert driver.backend.plugged_ports(ours) == set()
    driver.plug_vifs(instance, [nova_vif(PORTS[0], active=True)])
    assert driver.backend.plugged_ports(ours) == {PORTS[0]}
    driver.destroy(ctxt, instance, [])
    # Nova's build clean-up unplugs the ports of an instance gone.
    driver.unplug_vifs(instance, [nova_vif(PORTS[0], active=True)])
