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

"""``get_host_identity`` of every backend, without a real hypervisor.

libvirt runs against its in-process test driver; docker and xenapi get a
stand-in for the daemon's answer. The real daemons' identities are
checked by the functional tests.
"""

from unittest import mock

import libvirt
import pytest

from compute_driver import conf as cd_conf
from compute_driver import driver as contract
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver import loader
from compute_driver.testing import fixtures
from tests.unit import test_libvirt


def test_contract_default_is_none():
    # Additive: a backend that does not override it has no identity.
    assert contract.ComputeDriver.get_host_identity(mock.Mock()) is None


def _fake(**fake_opts):
    conf = cd_conf.build_conf(config_files=[])
    for name, value in fake_opts.items():
        conf.set_override(name, value, group='fake')
    backend = fake_driver.FakeDriver(conf)
    backend.init_host('host1')
    return backend


def test_fake_identity_comes_from_config():
    assert _fake().get_host_identity() is None
    assert _fake(host_identity='fake-host-7').get_host_identity() == (
        'fake-host-7')


CAPS = """<capabilities>
  <host>
    <uuid>%s</uuid>
    <cpu><arch>x86_64</arch></cpu>
  </host>
  <guest><os_type>hvm</os_type></guest>
</capabilities>"""


@pytest.mark.parametrize('uuid, expected', [
    ('4c4c4544-0042-3510-8052-b4c04f4e3332',
     '4c4c4544-0042-3510-8052-b4c04f4e3332'), ('', None)])
def test_libvirt_identity_is_the_host_uuid(tmp_path, monkeypatch, uuid,
                                           expected):
    # libvirt's test driver reports no host uuid; libvirtd does (checked
    # against the real one by the functional tests).
    backend = loader.load_driver(test_libvirt.store_conf(tmp_path),
                                 'libvirt')
    conn = mock.Mock()
    conn.getCapabilities.return_value = CAPS % uuid
    monkeypatch.setattr(backend._host, 'call', lambda func: func(conn))
    assert backend.get_host_identity() == expected


def test_libvirt_identity_unreachable_is_unavailable(tmp_path, monkeypatch):
    backend = loader.load_driver(test_libvirt.store_conf(tmp_path),
                                 'libvirt')

    def fail(func):
        raise libvirt.libvirtError('connection closed')
    monkeypatch.setattr(backend._host, 'call', fail)
    with pytest.raises(exception.HypervisorUnavailable):
        backend.get_host_identity()


@pytest.mark.parametrize('daemon_id, expected', [
    ('3XQF:ABCD:EFGH', '3XQF:ABCD:EFGH'), ('', None), (None, None)])
def test_docker_identity_is_the_daemon_id(daemon_id, expected,
                                          monkeypatch):
    from compute_driver.docker import connection
    api = mock.Mock()
    api.info.return_value = {'ID': daemon_id, 'NCPU': 2}
    monkeypatch.setattr(connection, 'connect', lambda conf: api)
    backend = loader.load_driver(
        fixtures.make_conf('docker', {'docker': {}}), 'docker')
    assert backend.get_host_identity() == expected
    api.info.assert_called_once_with()


def test_xenapi_identity_is_the_pool_masters_uuid():
    backend = loader.load_driver(fixtures.make_conf('xenapi', {
        'xenapi': {'connection_url': 'https://127.0.0.1:1',
                   'username': 'root', 'password': 'secret'}}), 'xenapi')
    records = {
        ('pool.get_all_records',): {'OpaqueRef:p': {
            'master': 'OpaqueRef:h2'}},
        ('host.get_record', 'OpaqueRef:h2'): {
            'uuid': '7c1a8a07-2f3c-4c8e-9d45-2b8d1f0e6a11',
            'hostname': 'xs2', 'name_label': 'xs2'}}
    with mock.patch.object(backend._xapi, 'call', autospec=True,
                           side_effect=lambda *args: records[args]):
        assert backend.get_host_identity() == (
            '7c1a8a07-2f3c-4c8e-9d45-2b8d1f0e6a11')
