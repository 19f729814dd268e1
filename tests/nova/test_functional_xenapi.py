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

"""The functional suite on the xenapi backend (see :mod:`.functional_base`).

XAPI is the simulator (``compute_driver.testing.xapi_simulator``), one per
test, served over HTTP on 127.0.0.1: the backend reaches it through the
XenAPI client as it reaches a pool master, and moves disk bytes through
its ``/import_raw_vdi`` and ``/export_raw_vdi``. The images Nova boots
are the simulator's templates, except in the Glance round trips, where
they are VHDs in Nova's image service (the data-keeping fixture, or a
real Glance on 127.0.0.1).
"""

import hashlib
import http.client
import itertools
import os
import shutil
import subprocess
import typing
import urllib.parse

import fixtures
from nova.tests.functional.api import client as api_client
import XenAPI

from compute_driver.testing import fixtures as cd_fixtures
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator import server as sim_server
from tests.nova import functional_base
from tests.nova import test_functional_network

MIB = 1024 * 1024
#: The simulator's stock templates, as the backend lists them (image
#: references hold no spaces).
TEMPLATE = 'Debian_Bookworm_12'
OTHER_TEMPLATE = 'Other_install_media'


def _digest(*parts: typing.Iterable[bytes]) -> tuple[int, str]:
    """Size and SHA-256 of the concatenated chunks of ``parts``."""
    digest, size = hashlib.sha256(), 0
    for chunk in itertools.chain(*parts):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


class SimulatorMixin:
    """A simulator of this test's own, and the backend's options for it.

    Mixed in before :class:`functional_base.AdapterTestBase`.
    """

    backend_name = 'xenapi'
    backend_images = {functional_base.IMAGE: TEMPLATE,
                      functional_base.OTHER_IMAGE: OTHER_TEMPLATE}

    def setUp(self) -> None:
        self.simulator = sim_server.Simulator(
            '127.0.0.1', 0,
            users={sim_fixture.USERNAME: sim_fixture.PASSWORD}).start()
        self.addCleanup(self.simulator.stop)
        directory = self.useFixture(fixtures.TempDir()).path
        self.backend_options = {
            'xenapi': sim_fixture.xenapi_options(self.simulator),
            # Where the backend keeps images it downloads (and, when it
            # has its own image service, snapshots): not under /var/lib.
            'image_service': sim_fixture.image_service_options(directory)}
        super().setUp()

    def _get_provider_uuid_by_host(self, host: str) -> str:
        # The node is the pool master XAPI names (the simulator's
        # hostname), not the compute service's host, as for Nova's own
        # XenAPI driver; Nova's helper looks hypervisors up by name.
        [node] = self.backend(host).get_available_nodes()
        return str(super()._get_provider_uuid_by_host(node))

    def _session(self) -> XenAPI.Session:
        session = XenAPI.Session(self.simulator.url)
        session.xenapi.login_with_password(
            sim_fixture.USERNAME, sim_fixture.PASSWORD, '2.21', 'cdtest')
        self.addCleanup(session.xenapi.session.logout)
        return session

    def _vm(self, server: dict) -> dict:
        """The simulator's record of the server's VM."""
        ref = self.backend(self.host).find_instance(
            server['id']).info.internal_id
        return self.simulator.objects('VM')[ref]


class XenAPIBackendServerTests(SimulatorMixin,
                               functional_base.ServerLifecycleTests,
                               functional_base.AdapterTestBase):
    # The VMs live in XAPI: a restart loads a new adapter, which finds
    # them there.
    restart_keeps_driver = False
    nova_image_tests = ('test_glance_round_trip_through_novas_image_api',
                        'test_real_glance_round_trip_through_novas_image_api')
    real_glance_tests = (
        'test_real_glance_round_trip_through_novas_image_api',)

    # -- XAPI as the simulator sees it ----------------------------------------

    def _root_vdi(self, server: dict) -> str:
        ref = self.backend(self.host).find_instance(
            server['id']).info.internal_id
        [vdi] = [vbd['VDI'] for vbd in self.simulator.objects('VBD').values()
                 if vbd['VM'] == ref and vbd['bootable']]
        return vdi

    def _export_digest(self, vdi: str) -> tuple[int, str]:
        """Size and SHA-256 of the VDI's bytes, from /export_raw_vdi.

        Streamed: a root disk is the flavor's gigabyte.
        """
        session = self._session()
        conn = http.client.HTTPConnection(self.simulator.host,
                                          self.simulator.port, timeout=30)
        self.addCleanup(conn.close)
        conn.request('GET', '/export_raw_vdi?' + urllib.parse.urlencode(
            {'session_id': session._session, 'vdi': vdi, 'format': 'raw'}))
        response = conn.getresponse()
        self.assertEqual(200, response.status)
        return _digest(iter(lambda: response.read(MIB), b''))

    def _vdis(self) -> set[str]:
        return set(self.simulator.objects('VDI'))

    # -- what XAPI cannot do --------------------------------------------------

    def test_console_output(self) -> None:
        # No console log to read: Nova's API says the driver lacks it.
        server = self._boot()
        self.assertFalse(self.backend(self.host).supports('console_output'))
        exc = self.assertRaises(
            api_client.OpenStackApiException,
            self.api.post_server_action, server['id'],
            {'os-getConsoleOutput': {}})
        self.assertEqual(501, exc.response.status_code)
        self.assertEqual('ACTIVE', self._show_server(server)['status'])
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    # -- the VM behind the server ---------------------------------------------

    def test_server_is_a_vm_of_the_pool(self) -> None:
        vdis = self._vdis()
        server = self._boot(flavor_id='2')  # m1.small
        vm = self._vm(server)
        self.assertEqual('Running', vm['power_state'])
        self.assertEqual(server['id'], vm['other_config'][
            'compute_driver_uuid'])
        self.assertEqual('1', vm['VCPUs_max'])
        self.assertEqual(str(2048 * MIB), vm['memory_static_max'])
        # The flavor's root disk, provisioned from the template's disks.
        [root] = self._vdis() - vdis
        self.assertEqual(str(20 * 1024 * MIB),
                         self.simulator.objects('VDI')[root]['virtual_size'])
        server = self._stop_server(server)
        self.assertEqual('Halted', self._vm(server)['power_state'])
        server = self._start_server(server)
        self.assertEqual('Running', self._vm(server)['power_state'])
        self._delete_server(server)
        self.assertEqual(vdis, self._vdis())

    # -- images in Nova's image service ---------------------------------------

    def _disk(self) -> tuple[bytes, str]:
        """A 6 MiB raw disk with data at known places, and its VHD."""
        qemu_img = shutil.which('qemu-img')
        if qemu_img is None:
            if cd_fixtures.strict_mode():
                self.fail('qemu-img is not installed (strict mode)')
            self.skipTest('qemu-img is not installed')
        directory = self.useFixture(fixtures.TempDir()).path
        raw, vhd = sim_fixture.write_test_disk(directory, qemu_img)
        with open(raw, 'rb') as f:
            return f.read(), vhd

    def _vhd_digest(self, data: bytes) -> tuple[int, str]:
        """Size and SHA-256 of the disk a VHD holds, read by qemu-img."""
        directory = self.useFixture(fixtures.TempDir()).path
        vhd = os.path.join(directory, 'snap.vhd')
        raw = os.path.join(directory, 'snap.raw')
        with open(vhd, 'wb') as f:
            f.write(data)
        subprocess.run(['qemu-img', 'convert', '-f', 'vpc', '-O', 'raw',
                        vhd, raw], check=True)
        with open(raw, 'rb') as f:
            return _digest(iter(lambda: f.read(MIB), b''))

    def test_glance_round_trip_through_novas_image_api(self) -> None:
        self.glance_round_trip()

    def test_real_glance_round_trip_through_novas_image_api(self) -> None:
        self.glance_round_trip()

    def glance_round_trip(self) -> None:
        """Boot a Glance VHD, snapshot it, boot the snapshot."""
        raw, vhd = self._disk()
        base = self.add_glance_image(vhd, 'vhd', 'bare',
                                     os_distro='cdtest')
        vdis = self._vdis()

        server = self._boot(image_uuid=base['id'])
        self.assert_downloaded_once(server, base['id'])
        # The root disk is a VDI imported from the image: its bytes, and
        # the flavor's size (m1.tiny's 1 GiB is larger), zeros after them.
        root = self._root_vdi(server)
        self.assertEqual(str(1024 * MIB), self.simulator.objects('VDI')[
            root]['virtual_size'])
        zeros = 1024 * MIB - len(raw)
        disk = _digest([raw], [b'\0' * MIB] * (zeros // MIB),
                       [b'\0' * (zeros % MIB)])
        self.assertEqual(disk, self._export_digest(root))

        image_id = self.snapshot(server, 'snap-%s' % server['id'])
        image = self.assert_nova_snapshot(server, image_id, 'vhd', 'bare')
        props = image['properties']
        self.assertEqual((base['id'], 'cdtest'),
                         (props['base_image_ref'], props['os_distro']))
        # Glance holds the VDI exported as a VHD: the instance's disk,
        # without its unwritten blocks.
        data = self.glance_data(image_id)
        self.assertLess(len(data), 64 * MIB)
        self.assertEqual(disk, self._vhd_digest(data))
        self.assert_actions_succeeded(server, ['create', 'createImage'])

        clone = self._boot(image_uuid=image_id)
        self.assert_downloaded_once(clone, image_id)
        self.assertEqual(disk, self._export_digest(self._root_vdi(clone)))
        self.assertEqual(1, self.backend_state(self.host, clone))
        self._delete_server(clone)
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))
        # Nothing of either server stays in XAPI; the snapshot VM the
        # export was taken from is gone too.
        self.assertEqual(vdis, self._vdis())
        self.assertEqual([], [
            rec for rec in self.simulator.objects('VM').values()
            if rec['is_a_snapshot']])

    # -- volumes --------------------------------------------------------------

    def _volume(self) -> str:
        """A VDI standing for a Cinder volume on the pool's SR; its uuid.

        XAPI reaches a volume through an SR of its own: the volume's id
        is the VDI's uuid, whatever the connection info says of the
        target.
        """
        session = self._session()
        sr = session.xenapi.pool.get_default_SR(
            session.xenapi.pool.get_all()[0])
        vdi = session.xenapi.VDI.create({
            'name_label': 'cdtest-volume', 'SR': sr,
            'virtual_size': str(MIB), 'type': 'user', 'sharable': False,
            'read_only': False, 'other_config': {}})
        return str(session.xenapi.VDI.get_uuid(vdi))

    def _volume_vbds(self, volume: str) -> list[dict]:
        [vdi] = [ref for ref, rec in self.simulator.objects('VDI').items()
                 if rec['uuid'] == volume]
        vbds = self.simulator.objects('VBD')
        return [vbds[ref] for ref in
                self.simulator.objects('VDI')[vdi]['VBDs']]

    def test_attach_and_detach_volume(self) -> None:
        self.assertTrue(self.backend(self.host).supports('attach_volume'))
        # What Cinder hands over for storage the pool reaches: an iSCSI
        # target, which XAPI's SR, not this host, connects to; the
        # fixture adds the volume's id.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.cinder.CinderFixture.VOLUME_CONNECTION_INFO',
            {'fake': {'driver_volume_type': 'iscsi', 'data': {
                'target_portal': '192.0.2.10:3260',
                'target_iqn': 'iqn.2010-10.org.openstack:volume',
                'target_lun': 1}}}))
        server = self._boot()
        volume = self._volume()
        self._attach_volume(server, volume)
        # Plugged live into the running VM, at the device Nova chose.
        [attachment] = self.api.get_server_volumes(server['id'])
        # Named after the backend's root device, /dev/xvda.
        self.assertEqual((volume, '/dev/xvdb'),
                         (attachment['volumeId'], attachment['device']))
        [vbd] = self._volume_vbds(volume)
        self.assertEqual(self._vm(server)['uuid'], self.simulator.objects(
            'VM')[vbd['VM']]['uuid'])
        self.assertTrue(vbd['currently_attached'])
        self.assertEqual(str(ord(attachment['device'][-1]) - ord('a')),
                         vbd['userdevice'])
        backend = self.backend(self.host)
        [recorded] = backend.list_volume_attachments(
            backend.find_instance(server['id']).instance)
        self.assertEqual((volume, attachment['device']),
                         (recorded.volume_id, recorded.mountpoint))

        self.api.delete_server_volume(server['id'], volume)
        self._wait_for_volume_detach(server['id'], volume)
        # The VBD is gone; the VDI, the volume's data, stays.
        self.assertEqual([], self._volume_vbds(volume))
        self.assertEqual([], backend.list_volume_attachments(
            backend.find_instance(server['id']).instance))
        self.assert_actions_succeeded(
            server, ['create', 'attach_volume', 'detach_volume'])
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))


# -- ports ------------------------------------------------------------------

class XapiAgent(test_functional_network.PlugAgent):
    """Reports a port up once XAPI has its VIF plugged into the VM.

    What Neutron's agents on XenServer watch for: the VIF carrying the
    port's id in ``other_config``, attached.
    """

    def wire(self, backend: typing.Any, instance: typing.Any,
             port: typing.Any) -> bool:
        return bool(self.test._vif(instance.uuid, port.id).get(
            'currently_attached'))


class XenAPIBackendNetworkTests(test_functional_network._PortsMixin,
                                SimulatorMixin,
                                functional_base.AdapterTestBase):
    """Servers with Neutron ports: one VIF per port in XAPI."""

    def setUp(self) -> None:
        super().setUp()
        # The XAPI network the ports' bridge is: Neutron's integration
        # bridge for the fixture's ovs ports.
        self.network = self._session().xenapi.network.create({
            'name_label': 'cdtest integration', 'name_description': '',
            'MTU': '1450', 'other_config': {}, 'bridge': 'br-int'})

    def _vif(self, server_id: str, port_id: str) -> dict:
        """The VIF of ``port_id`` on the server's VM, or ``{}``."""
        vms = self.simulator.objects('VM')
        for vif in self.simulator.objects('VIF').values():
            owner = vms.get(vif['VM'], {}).get('other_config', {})
            if (owner.get('compute_driver_uuid') == server_id and
                    vif['other_config'].get('neutron-port-id') == port_id):
                return vif
        return {}

    def test_boot_waits_for_the_vif_to_be_plugged(self) -> None:
        agent = self.useFixture(XapiAgent(self, self.host))
        port = self._down_port(7)
        server = self._boot_with(port)
        self.assertEqual([(server['id'], port['id'])], agent.sent)
        self.assertEqual([port['id']], self._ports_on_backend(server))
        vif = self._vif(server['id'], port['id'])
        self.assertEqual((port['mac_address'], self.network, '0', True),
                         (vif['MAC'], vif['network'], vif['device'],
                          vif['currently_attached']))
        self.assert_actions_succeeded(server, ['create'])
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))
        self.assertEqual({}, self.simulator.objects('VIF'))

    def test_attach_and_detach_an_interface(self) -> None:
        self.useFixture(XapiAgent(self, self.host))
        first = self._down_port(8)
        server = self._boot_with(first)
        second = self._down_port(9)
        self.api.attach_interface(
            server['id'], {'interfaceAttachment': {'port_id': second['id']}})
        # Hot-plugged into the running VM.
        self.assertTrue(self._vif(server['id'], second['id'])[
            'currently_attached'])
        self.assertEqual([first['id'], second['id']],
                         self._ports_on_backend(server))
        self.api.detach_interface(server['id'], first['id'])
        self.wait_for_action_event(server, 'detach_interface',
                                   'compute_detach_interface', 'success')
        self.assertEqual({}, self._vif(server['id'], first['id']))
        self.assertEqual([second['id']], self._ports_on_backend(server))
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))
