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

"""Servers with Neutron ports through Nova's API, on the fake backend.

Nova's ``NeutronFixture`` stands for Neutron's API; :class:`PlugAgent`
stands for its agent on the host: once the backend has wired a port, it
marks the port ACTIVE and sends Nova ``network-vif-plugged`` through the
API, as Neutron's server does when its agent reports the port up. The
adapter waits for that event at spawn as Nova's libvirt driver does.
"""

import copy
import os
import typing

import fixtures

from compute_driver.testing import fixtures as cd_fixtures
from tests.functional import docker_env
from tests.nova import functional_base
from tests.nova import test_functional_docker
from tests.nova import test_functional_fake

#: The kernel's ``uname``, before Nova's test base forbids calling it.
REAL_UNAME = os.uname


def _port_id(number: int) -> str:
    """A port id whose first 11 characters (its device name) are unique."""
    return '%08x-0000-4000-8000-%012x' % (number, number)


class PlugAgent(fixtures.Fixture):
    """Reports a port up to Nova once the backend has wired it.

    It wraps the backend's spawn and attach hooks, as an agent watches
    the host's devices: after a hook returns, each of its ports that
    :meth:`wire` finds wired is marked ACTIVE in the Neutron fixture and
    announced with ``network-vif-plugged``. ``silent`` agents announce
    nothing, as an agent that is down.
    """

    def __init__(self, test: functional_base.AdapterTestBase, host: str,
                 silent: bool = False) -> None:
        super().__init__()
        self.test = test
        self.host = host
        self.silent = silent
        #: (server uuid, port id) of every event sent.
        self.sent: list[tuple[str, str]] = []

    def wire(self, backend: typing.Any, instance: typing.Any,
             port: typing.Any) -> bool:
        """Whether the backend wired ``port``; the fake backend says."""
        return port.id in backend.plugged_ports(instance)

    def _setUp(self) -> None:
        backend = self.test.backend(self.host)
        create = backend._create
        attach = backend._attach_interface

        def created(instance: typing.Any, image: typing.Any,
                    power_on: bool, network_info: typing.Any,
                    block_device_info: typing.Any) -> None:
            create(instance, image, power_on, network_info,
                   block_device_info)
            self._report(backend, instance, network_info)

        def attached(handle: typing.Any, instance: typing.Any,
                     port: typing.Any) -> None:
            attach(handle, instance, port)
            self._report(backend, instance, (port,))

        # Instance attributes shadow the class's methods until removed.
        backend._create = created
        backend._attach_interface = attached
        self.addCleanup(delattr, backend, '_create')
        self.addCleanup(delattr, backend, '_attach_interface')

    def _report(self, backend: typing.Any, instance: typing.Any,
                ports: typing.Any) -> None:
        if self.silent:
            return
        events = []
        for port in ports:
            if not self.wire(backend, instance, port):
                continue
            self.test.neutron._ports[port.id]['status'] = 'ACTIVE'
            events.append({'name': 'network-vif-plugged',
                           'server_uuid': instance.uuid, 'tag': port.id,
                           'status': 'completed'})
            self.sent.append((instance.uuid, port.id))
        if events:
            self.test.admin_api.create_server_external_events(events)


class BridgingAgent(PlugAgent):
    """An agent that puts a ``tap`` port's host device on its bridge.

    What Neutron's agents do for the ``tap`` VIF type: the host only
    creates the device (the backend's veth end, named after the port),
    and the agent wires it.
    """

    def __init__(self, test: functional_base.AdapterTestBase, host: str,
                 bridge: str) -> None:
        super().__init__(test, host)
        self.bridge = bridge

    def wire(self, backend: typing.Any, instance: typing.Any,
             port: typing.Any) -> bool:
        from compute_driver.network import netlink
        if not netlink.link_exists(port.devname):
            return False
        netlink.attach_to_bridge(port.devname, self.bridge, port.id)
        return True


class _PortsMixin:
    """Ports in Nova's Neutron fixture, and servers booted with them."""

    host = 'compute1'

    def setUp(self) -> None:
        super().setUp()
        # The Neutron fixture turns the wait off, as its ports never
        # report; here the agent reports them.
        self.flags(vif_plugging_timeout=300, vif_plugging_is_fatal=True)
        self._start_compute(self.host)

    def _down_port(self, number: int, vif_type: str = 'ovs') -> dict:
        """A port on the fixture's network that Neutron has not wired."""
        port = copy.deepcopy(self.neutron.port_1)
        port.update({'binding:vif_type': vif_type})
        port.update(id=_port_id(number),
                    mac_address='fa:16:3e:00:01:%02x' % number,
                    status='DOWN', fixed_ips=[{
                        'ip_address': '192.168.1.%d' % (100 + number),
                        'subnet_id': self.neutron.subnet_1['id']}])
        self.neutron._ports[port['id']] = port
        return port

    def _boot_with(self, port: dict, expected: str = 'ACTIVE') -> dict:
        return self._create_server(
            image_uuid=functional_base.IMAGE, flavor_id='1',
            networks=[{'port': port['id']}], expected_state=expected)

    def _ports_on_backend(self, server: dict) -> list[str]:
        backend = self.backend(self.host)
        instance = backend.find_instance(server['id']).instance
        return [p.id for p in backend.get_interfaces(instance)]


class FakeBackendNetworkTests(_PortsMixin, functional_base.AdapterTestBase):
    backend_name = 'fake'
    backend_options = test_functional_fake.FakeBackendServerTests\
        .backend_options
    nova_images = test_functional_fake.FakeBackendServerTests.nova_images

    def test_boot_waits_for_the_plug_event(self) -> None:
        agent = self.useFixture(PlugAgent(self, self.host))
        port = self._down_port(1)
        server = self._boot_with(port)
        # The event was for this port, and the server booted once it came.
        self.assertEqual([(server['id'], port['id'])], agent.sent)
        self.assertEqual([port['id']], self._ports_on_backend(server))
        backend = self.backend(self.host)
        self.assertEqual({port['id']}, backend.plugged_ports(
            backend.find_instance(server['id']).instance))
        [interface] = self.api.get_port_interfaces(server['id'])
        self.assertEqual('fa:16:3e:00:01:01', interface['mac_addr'])
        self.assert_actions_succeeded(server, ['create'])
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_missing_plug_event_is_fatal(self) -> None:
        self.useFixture(PlugAgent(self, self.host, silent=True))
        self.flags(vif_plugging_timeout=1)
        server = self._boot_with(self._down_port(2), expected='ERROR')
        # Nova's compute manager reports VirtualInterfaceCreateException
        # so, and does not reschedule.
        self.assertEqual(
            'Build of instance %s aborted: Failed to allocate the '
            'network(s), not rescheduling.' % server['id'],
            server['fault']['message'])
        self.assertIn('VirtualInterfaceCreateException',
                      server['fault']['details'])
        # Nothing of it stays on the backend.
        self.assertEqual(set(), self.backend_uuids(self.host))
        self._delete_server(server)

    def test_missing_plug_event_is_a_warning_when_not_fatal(self) -> None:
        self.useFixture(PlugAgent(self, self.host, silent=True))
        self.flags(vif_plugging_timeout=1, vif_plugging_is_fatal=False)
        port = self._down_port(3)
        server = self._boot_with(port)
        self.assertEqual([port['id']], self._ports_on_backend(server))
        self._delete_server(server)

    def test_attach_and_detach_an_interface(self) -> None:
        self.useFixture(PlugAgent(self, self.host))
        first = self._down_port(4)
        server = self._boot_with(first)
        second = self._down_port(5)
        self.api.attach_interface(
            server['id'], {'interfaceAttachment': {'port_id': second['id']}})
        self.assertEqual([first['id'], second['id']],
                         self._ports_on_backend(server))
        self.assertEqual(
            {first['id'], second['id']},
            {i['port_id'] for i in self.api.get_port_interfaces(
                server['id'])})
        self.api.detach_interface(server['id'], first['id'])
        self.wait_for_action_event(server, 'detach_interface',
                                   'compute_detach_interface', 'success')
        self.assertEqual([second['id']], self._ports_on_backend(server))
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))


class DockerBackendNetworkTests(_PortsMixin,
                                functional_base.AdapterTestBase):
    """A container with a Neutron ``tap`` port, wired by an agent.

    The port's host device is the backend's veth end in this host's
    namespace; the test's bridge (``nxbr<hex>``) stands for the agent's,
    and is removed, with anything on it, afterwards.
    """

    backend_name = 'docker'
    backend_options = test_functional_docker.DockerBackendServerTests\
        .backend_options
    backend_images = test_functional_docker.DockerBackendServerTests\
        .backend_images

    def setUp(self) -> None:
        if os.geteuid() != 0:
            cd_fixtures.skip_or_fail('wiring ports needs root')
        docker_env.raw_client()
        self.host = docker_env.unique_host()
        self.flags(disk_allocation_ratio=1000.0)
        from compute_driver.network import netlink
        self.bridge = 'nxbr' + self.host[-8:]
        netlink.create_bridge(self.bridge)
        self.addCleanup(netlink.delete_link, self.bridge)
        super().setUp()
        # pyroute2's helper process that opens a socket in the container's
        # namespace reads the kernel version, which Nova's test base
        # forbids as host inspection.
        self.useFixture(fixtures.MonkeyPatch('os.uname', REAL_UNAME))

    def test_boot_waits_for_the_agent_to_wire_the_port(self) -> None:
        from compute_driver.network import netlink
        agent = self.useFixture(BridgingAgent(self, self.host, self.bridge))
        port = self._down_port(6, vif_type='tap')
        server = self._boot_with(port)
        self.assertEqual([(server['id'], port['id'])], agent.sent)
        self.assertEqual([port['id']], self._ports_on_backend(server))
        devname = 'tap' + port['id'][:11]
        self.assertEqual(self.bridge, netlink.link_info(devname)['master'])
        # The container's first NIC has the port's MAC and address.
        backend = self.backend(self.host)
        container = backend.find_instance(server['id']).info.internal_id
        api = docker_env.raw_client()
        exec_id = api.exec_create(container, ['ip', '-o', 'addr', 'show',
                                              'eth0'])
        shown = api.exec_start(exec_id).decode()
        self.assertIn('192.168.1.106/24', shown)
        exec_id = api.exec_create(container,
                                  ['cat', '/sys/class/net/eth0/address'])
        self.assertEqual(port['mac_address'],
                         api.exec_start(exec_id).decode().strip())
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))
        self.assertFalse(netlink.link_exists(devname))
