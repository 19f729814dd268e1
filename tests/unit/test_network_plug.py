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

"""The all-or-nothing logic of plugging, with the plugins replaced."""

import pytest

from compute_driver import exception
from compute_driver.network import exception as net_exception
from compute_driver.network import model
from compute_driver.network import netlink
from compute_driver.network import plug

PORTS = [
    model.Port(id='%db4a3c9e-8f3d-4a55-9d0b-2f7c7f3f0a11' % n,
               mac='fa:16:3e:00:00:0%d' % n, vif_type=vif_type,
               bridge='brq-test' if vif_type == 'bridge' else None)
    for n, vif_type in enumerate(('bridge', 'tap', 'ovs'))]


class OsVifError(Exception):
    """Stands for os_vif.exception.PlugException.

    Like it, it keeps the plugin's error in ``kwargs['err']``.
    """

    def __init__(self, err):
        super().__init__('Failed to plug VIF VIFBridge(...). Got error: %s'
                         % err)
        self.kwargs = {'err': err}


class _Calls(list):
    failing: dict


@pytest.fixture
def calls(monkeypatch):
    record = _Calls()
    failing = {}

    def fake_call(action, vif, info):
        record.append((action, vif.id))
        error = failing.get((action, vif.id))
        if error is not None:
            raise error

    monkeypatch.setattr(plug, 'initialize', lambda in_process=None: {})
    monkeypatch.setattr(plug, '_call', fake_call)
    monkeypatch.setattr(model, 'to_os_vif', lambda port: _Vif(port))
    monkeypatch.setattr(netlink, 'delete_link',
                        lambda name, netns=None: record.append(
                            ('delete', name)) or False)
    record.failing = failing
    return record


class _Vif:
    def __init__(self, port):
        self.id = port.id
        self.plugin = port.plugin


def test_plug_all(calls):
    assert plug.plug(PORTS, 'info') == PORTS
    assert calls == [('plug', port.id) for port in PORTS]


def test_failure_unplugs_the_ports_before_it(calls):
    calls.failing[('plug', PORTS[2].id)] = OsVifError(
        RuntimeError('ovsdb unreachable'))
    with pytest.raises(net_exception.PlugFailed) as exc:
        plug.plug(PORTS, 'info')
    assert (exc.value.port, exc.value.plugin) == (PORTS[2].id, 'ovs')
    assert str(exc.value).endswith('RuntimeError: ovsdb unreachable')
    assert isinstance(exc.value, exception.BackendError)
    plugged = [('plug', port.id) for port in PORTS]
    undone = [item for port in (PORTS[1], PORTS[0])
              for item in (('unplug', port.id), ('delete', port.devname))]
    assert calls == plugged + undone


def test_bad_input_inside_os_vif_keeps_its_type(calls):
    missing = net_exception.BridgeNotFound(bridge='brq-test',
                                           port=PORTS[0].id)
    calls.failing[('plug', PORTS[0].id)] = OsVifError(missing)
    with pytest.raises(net_exception.BridgeNotFound) as exc:
        plug.plug(PORTS, 'info')
    assert exc.value is missing
    assert calls == [('plug', PORTS[0].id)]


def test_duplicate_ports_plug_nothing(calls):
    with pytest.raises(net_exception.DuplicatePort):
        plug.plug([PORTS[0], PORTS[0]], 'info')
    assert calls == []


def test_unplug_tries_every_port(calls):
    calls.failing[('unplug', PORTS[0].id)] = OsVifError(
        RuntimeError('busy'))
    with pytest.raises(net_exception.UnplugFailed) as exc:
        plug.unplug(PORTS, 'info')
    assert exc.value.port == PORTS[0].id
    assert [c for c in calls if c[0] == 'unplug'] == [
        ('unplug', port.id) for port in PORTS]
    assert ('delete', PORTS[2].devname) in calls


def test_netns_path_refuses_what_is_not_a_namespace(tmp_path):
    with pytest.raises(net_exception.NetnsNotFound):
        netlink.netns_path('cdnet-no-such-namespace')
    with pytest.raises(net_exception.NetnsNotFound):
        netlink.netns_path(str(tmp_path / 'absent'))
    for bad in ('', '..', None, True):
        with pytest.raises(net_exception.NetnsNotFound):
            netlink.netns_path(bad)
    assert netlink.netns_path(str(tmp_path)) == str(tmp_path)


def test_a_missing_sdk_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'pyroute2', None)
    with pytest.raises(exception.BackendSDKMissing) as exc:
        netlink.link_exists('lo')
    assert exc.value.module == 'pyroute2'
    assert 'compute-driver[network]' in str(exc.value)
