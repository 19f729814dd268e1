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

"""``list_instance_interfaces``: the contract's default, and ``list``."""

import gc

import pytest

from compute_driver.cmd import main
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from tests.unit import test_cli
from tests.unit import test_network_contract

backend = test_network_contract.backend
_instance = test_network_contract._instance
_port = test_network_contract._port
PORT_B = test_network_contract.PORT_B
app = test_cli.app
config = test_cli.config
_json = test_cli._json


def test_every_instance_with_its_ports(backend):
    first = _instance(backend, 'vm1')
    second = _instance(backend, 'vm2')
    backend.spawn(first, network_info=[
        _port(), _port(PORT_B, 'fa:16:3e:00:00:02', bridge='br1')])
    backend.spawn(second)
    assert backend.list_instance_interfaces() == {
        first.uuid: backend.get_interfaces(first), second.uuid: ()}
    assert len(backend.list_instance_interfaces()[first.uuid]) == 2
    # The instances of a listing just made: not listed again.
    assert backend.list_instance_interfaces([second]) == {second.uuid: ()}


def test_an_instance_gone_meanwhile_is_left_out(backend, monkeypatch):
    first = _instance(backend, 'vm1')
    gone = _instance(backend, 'vm2')
    backend.spawn(first, network_info=[_port()])
    backend.spawn(gone)
    original = fake_driver.FakeDriver.get_interfaces

    def get_interfaces(self, instance):
        if instance.uuid == gone.uuid:
            raise exception.InstanceNotFound(instance=instance.name)
        return original(self, instance)

    monkeypatch.setattr(fake_driver.FakeDriver, 'get_interfaces',
                        get_interfaces)
    assert backend.list_instance_interfaces() == {
        first.uuid: backend.get_interfaces(first)}


def test_a_backend_without_ports_refuses(backend):
    backend.capabilities = {**backend.capabilities,
                            'supports_interfaces': False}
    with pytest.raises(exception.NotSupported):
        backend.list_instance_interfaces()


def test_list_asks_for_every_instance_s_ports_at_once(capsys, app,
                                                      monkeypatch):
    for number in (1, 2):
        _json(capsys, app, 'boot', 'vm%d' % number, '--image',
              test_cli.IMAGE, '--flavor', 'm1.nano', '--network',
              'type=tap,mac=fa:16:3e:00:00:0%d,ip=192.0.2.%d/24,'
              'device=tapvm%d' % (number, number, number))
    calls = []

    def at_once(self, instances=None):
        # The instances' own records, not a look-up each.
        calls.append(instances)
        return {instance.uuid: self._interfaces(self._find(instance),
                                                instance)
                for instance in instances}

    def get_interfaces(self, instance):
        pytest.fail('looked the ports of %s up' % instance.name)

    monkeypatch.setattr(fake_driver.FakeDriver, 'list_instance_interfaces',
                        at_once)
    monkeypatch.setattr(fake_driver.FakeDriver, 'get_interfaces',
                        get_interfaces)
    rows = _json(capsys, app, 'list')
    # Given the instances just listed, so that a default need not list
    # them again.
    assert [sorted(i.name for i in c) for c in calls] == [['vm1', 'vm2']]
    assert [(r['Name'], r['Networks']) for r in rows] == [
        ('vm1', 'eth0 fa:16:3e:00:00:01 192.0.2.1/24 on tapvm1'),
        ('vm2', 'eth0 fa:16:3e:00:00:02 192.0.2.2/24 on tapvm2')]


def test_main_pauses_the_collector_for_start_up_only(capsys, config,
                                                     monkeypatch):
    seen = {}

    class Spy(fake_driver.FakeDriver):
        def init_host(self, host):
            seen['start-up'] = gc.isenabled()
            super().init_host(host)

        def get_available_resource(self, nodename=None):
            seen['command'] = gc.isenabled()
            return super().get_available_resource(nodename)

        def list_instance_records(self):
            seen['listing'] = gc.isenabled()
            return super().list_instance_records()

    test_cli._use_backend(monkeypatch, Spy)
    assert gc.isenabled() and not gc.get_freeze_count()
    assert main.main(['--config-file', config(), 'resources']) == 0
    assert seen == {'start-up': False, 'command': True}
    # As it was: collecting, and nothing left frozen.
    assert gc.isenabled() and not gc.get_freeze_count()
    # A listing keeps it paused to its end (keeps_gc_paused).
    assert main.main(['--config-file', config(), 'list']) == 0
    assert seen['listing'] is False
    assert gc.isenabled() and not gc.get_freeze_count()
    # A command without a backend: collecting again once it is over.
    assert main.main(['--config-file', config(), 'flavors']) == 0
    assert gc.isenabled()
