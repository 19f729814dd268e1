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

"""``boot --network``, ``interface ...`` and NICs in ``show``/``list``."""

import re

import pytest

from compute_driver.cmd import network as cmd_network
from tests.unit import test_cli

IMAGE = test_cli.IMAGE
config = test_cli.config
app = test_cli.app
_json = test_cli._json

PORT = '0d8e5f7a-1b2c-4d3e-8f90-a1b2c3d4e5f6'


def test_boot_with_two_networks_shows_the_nics(capsys, app):
    data = _json(capsys, app, 'boot', 'vm1', '--image', IMAGE, '--flavor',
                 'm1.nano', '--network', 'br0', '--network',
                 'bridge=br1,mac=FA:16:3E:00:00:02,mtu=1400,'
                 'ip=192.0.2.5/24,gateway=192.0.2.1,id=%s' % PORT)
    first, second = data['nics'].splitlines()
    assert re.fullmatch(r'eth0 fa:16:3e(:[0-9a-f]{2}){3} on br0', first)
    assert second == 'eth1 fa:16:3e:00:00:02 192.0.2.5/24 on br1'
    rows = _json(capsys, app, 'list')
    assert rows[0]['Networks'] == data['nics']

    ports = _json(capsys, app, 'interface', 'list', 'vm1')
    assert [p['nic'] for p in ports] == ['eth0', 'eth1']
    assert ports[1] == {
        'nic': 'eth1', 'id': PORT, 'mac': 'fa:16:3e:00:00:02',
        'type': 'bridge', 'bridge': 'br1', 'device': 'tap' + PORT[:11],
        'mtu': 1400, 'addresses': '192.0.2.5/24'}


def test_interface_attach_and_detach(capsys, app):
    _json(capsys, app, 'boot', 'vm1', '--image', IMAGE, '--flavor',
          'm1.nano')
    added = _json(capsys, app, 'interface', 'attach', 'vm1', '--network',
                  'type=tap,mac=fa:16:3e:00:00:09')
    assert (added['nic'], added['type'], added['bridge']) == (
        'eth0', 'tap', '')
    assert _json(capsys, app, 'show', 'vm1')['nics'].startswith(
        'eth0 fa:16:3e:00:00:09')
    assert app('interface', 'detach', 'vm1', 'fa:16:3e:00:00:09') == 0
    assert _json(capsys, app, 'show', 'vm1')['nics'] == ''


@pytest.mark.parametrize('argv, words', [
    (['--network', 'bridge=br0,mac=fa:16:3e:00:00:05', '--network',
      'bridge=br1,mac=FA:16:3E:00:00:05'], 'both have the MAC'),
    (['--network', 'bridge=br0,mtu=70000'], 'Invalid MTU'),
    (['--network', 'bridge=br0,type=macvtap'], 'no plugin handles'),
    (['--network', 'bridge=br0,ip=192.0.2.300/24'], 'Invalid fixed IP'),
    (['--network', 'bridge=br0,ip=192.0.2.5'], 'ADDRESS/PREFIX'),
    (['--network', 'bridge=br0,colour=red'], 'KEY=VALUE'),
    (['--network', 'bridge=br/0'], 'not a Linux interface name'),
])
def test_bad_network_is_one_line_and_boots_nothing(capsys, app, argv,
                                                   words):
    rc = app('boot', 'vm1', '--image', IMAGE, '--flavor', 'm1.nano',
             *argv)
    out, err = capsys.readouterr()
    assert rc != 0
    line = test_cli._one_error_line(err)
    assert words in line, line
    assert _json(capsys, app, 'list') == []


def test_detach_of_an_unknown_port(capsys, app):
    _json(capsys, app, 'boot', 'vm1', '--image', IMAGE, '--flavor',
          'm1.nano', '--network', 'br0')
    capsys.readouterr()
    assert app('interface', 'detach', 'vm1', PORT) != 0
    line = test_cli._one_error_line(capsys.readouterr()[1])
    assert 'has no port %s' % PORT in line


def test_generated_macs_are_unicast_and_local_to_neutrons_oui():
    macs = {cmd_network.generated_mac() for _ in range(20)}
    assert len(macs) > 1
    assert all(m.startswith('fa:16:3e:') for m in macs)
