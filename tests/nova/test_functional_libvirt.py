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

"""The functional suite on a real libvirtd with QEMU (see
:mod:`.functional_base`).

Guests are the busybox test image of ``tests/functional/test_libvirt.py``,
emulated (``virt_type = qemu``): they boot slowly, so this module keeps
the lifecycle tests that exercise the backend (boot and delete, the power
operations, snapshot then boot, console output, the out-of-band power-off
event, a compute service restart) and leaves the ones about Nova's own
bookkeeping to the fake and docker modules.

libvirtd is shared with other users of the machine, and the backend
counts every domain it defined as its own: each test runs with an
``instances_path`` and a host name of its own, and looks at (and cleans
up) only the domains of the servers its Nova created.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import typing
import uuid
from xml.etree import ElementTree

import fixtures as fixtures_lib

from compute_driver import loader
from compute_driver.nova import node
from compute_driver.testing import fixtures
from nova.tests import fixtures as nova_fixtures
from tests.functional import volume_env
from tests.nova import functional_base

try:
    import libvirt
except ImportError:  # pragma: no cover - depends on the environment
    libvirt = None

URI = 'qemu:///system'
IMAGE = 'cdtest-busybox'
IMAGES_PATH = '/var/lib/compute-driver/libvirt/images'
INSTANCES_PATH = '/var/lib/compute-driver/libvirt/instances'
#: What the test image's init prints on the serial console once booted.
BOOT_LINE = 'compute-driver test guest booted'
#: Seconds a guest may take to boot under software emulation.
BOOT_TIMEOUT = 180


def require_libvirtd() -> None:
    """Skip (fail under strict mode) without libvirtd or the test image."""
    if libvirt is None:
        fixtures.skip_or_fail('libvirt-python is not installed')
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        fixtures.skip_or_fail('libvirtd is not reachable at %s: %s'
                              % (URI, exc.get_error_message()))
    conn.close()
    if not os.path.exists(os.path.join(IMAGES_PATH, IMAGE + '.json')):
        fixtures.skip_or_fail(
            'the test image %s is not in %s; run '
            'tools/build-libvirt-test-image.sh' % (IMAGE, IMAGES_PATH))


class LibvirtBackendServerTests(functional_base.VolumeTests,
                                functional_base.ServerLifecycleTests,
                                functional_base.AdapterTestBase):
    backend_name = 'libvirt'
    backend_images = {functional_base.IMAGE: IMAGE,
                      functional_base.OTHER_IMAGE: IMAGE}
    # Domains outlive the compute service: a restart loads a new adapter,
    # which finds them on libvirtd.
    restart_keeps_driver = False

    # Left to the fake and docker modules: they test Nova's bookkeeping
    # rather than the backend, and each costs several emulated boots.
    # None rather than a skip, so that a skip here always means something.
    test_multi_create = None
    test_rebuild_to_another_image = None
    test_shelve_offload_unshelve = None
    test_vanished_guest_found_by_power_sync = None
    test_resize_fails_cleanly = None
    test_resize_stopped_server_stays_stopped = None
    test_resize_that_does_not_fit_the_backend_rolls_back = None
    test_boot_from_volume_fails_cleanly = None
    nova_image_tests = ('test_glance_round_trip_through_novas_image_api',
                        'test_real_glance_round_trip_through_novas_image_api')
    real_glance_tests = (
        'test_real_glance_round_trip_through_novas_image_api',)

    def setUp(self) -> None:
        require_libvirtd()
        suffix = uuid.uuid4().hex[:8]
        self.host = 'cdtest-%s' % suffix
        instances_path = os.path.join(INSTANCES_PATH, 'nova-' + suffix)
        self.addCleanup(shutil.rmtree, instances_path, ignore_errors=True)
        self.backend_options = {'libvirt': {
            'virt_type': 'qemu', 'connection_uri': URI,
            'images_path': IMAGES_PATH, 'instances_path': instances_path,
            'lifecycle_event_delay': 1, 'soft_reboot_timeout': 30,
            'shutdown_retry_interval': 3},
            # An emulated guest may be slow to let go of an unplugged disk.
            'volume': {'detach_timeout': 120}}
        # Nova's flavors claim more disk than a copy-on-write overlay of
        # the test image uses; the test machine need not have it.
        self.flags(disk_allocation_ratio=1000.0)
        # The backend counts the domains other users of a shared libvirtd
        # defined with this library: they must not keep this test's
        # servers off the host.
        self.flags(cpu_allocation_ratio=1000.0, ram_allocation_ratio=1000.0)
        # The busybox guest ignores ACPI: a stop powers it off once
        # Nova's clean shutdown time is over, so keep that short.
        self.flags(shutdown_timeout=5)
        #: The servers this test created: the only domains it may touch.
        self.created: set[str] = set()
        # A new compute service refuses to start when its driver lists
        # instances; on a shared libvirtd other users' domains of this
        # library are listed, and none of them is this new host's.
        self.useFixture(fixtures_lib.MonkeyPatch(
            'nova.compute.manager.ComputeManager._sanity_check_new_host',
            lambda manager: None))
        super().setUp()

    def _create_server(self, *args: typing.Any,
                       **kwargs: typing.Any) -> dict:
        server = super()._create_server(*args, **kwargs)
        self.created.add(server['id'])
        return server

    def backend_uuids(self, host: str) -> set[str]:
        return super().backend_uuids(host) & self.created

    def _remove_backend_leftovers(self) -> None:
        # The compute services have stopped, and cleaned their adapters
        # up, by now: a backend of its own removes what a failed test left.
        backend = loader.load_driver(
            fixtures.make_conf('libvirt', self.backend_options), 'libvirt')
        try:
            for image_id in self.snapshots:
                backend.delete_snapshot(image_id)
            for record in backend.list_instance_records():
                if record.instance.uuid in self.created:
                    # A revert point outlives destroy.
                    backend.confirm_migration(record.instance)
                    backend.destroy(record.instance)
        finally:
            backend.cleanup_host(self.host)

    def wait_for_boot_line(self, server: dict) -> None:
        """Wait until the guest of ``server`` printed :data:`BOOT_LINE`."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        output = ''
        # The console fills as the emulated guest boots: poll the API,
        # the path under test, for the line the image's init prints.
        while BOOT_LINE not in output:
            self.assertLess(time.monotonic(), deadline,
                            'no %r on the console: %r' % (BOOT_LINE, output))
            time.sleep(1)
            output = self.api.post_server_action(
                server['id'], {'os-getConsoleOutput': {}})['output']

    def test_console_output(self) -> None:
        server = self._boot()
        self.wait_for_boot_line(server)
        self.assertIn(BOOT_LINE, self.backend(self.host).get_console_output(
            self.backend(self.host).find_instance(server['id']).instance))
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_node_is_the_libvirt_host(self) -> None:
        # The node uuid derives from libvirtd's own host UUID, so every
        # nova-compute serving this host under this name agrees on it.
        conn = libvirt.open(URI)
        self.addCleanup(conn.close)
        host_uuid = ElementTree.fromstring(
            conn.getCapabilities()).findtext('host/uuid')
        backend = self.backend(self.host)
        self.assertEqual(host_uuid, backend.get_host_identity())
        self.assertEqual('libvirt/%s/%s' % (self.host, host_uuid),
                         node.host_identity(backend, self.host))
        self.assertEqual(node.derived_uuid(backend, self.host),
                         self._get_provider_uuid_by_host(self.host))

    def _domain_files(self, server: dict) -> tuple[str, str, str]:
        """The kernel, initramfs and disk the server's domain runs."""
        conn = libvirt.open(URI)
        self.addCleanup(conn.close)
        xml = ElementTree.fromstring(
            conn.lookupByUUIDString(server['id']).XMLDesc(0))
        return (xml.findtext('os/kernel'), xml.findtext('os/initrd'),
                xml.find('devices/disk/source').get('file'))

    def assert_runs_cached(self, server: dict, disk: str, kernel: str,
                           ramdisk: str) -> None:
        """The domain boots the cache's copies of these Glance images.

        Its kernel and initramfs are the cached files of the kernel and
        ramdisk images, and its disk is an overlay on the cached file of
        the disk image, each holding exactly the bytes Glance has.
        """
        cache = self.backend(self.host).image_cache
        booted_kernel, booted_ramdisk, overlay = self._domain_files(server)
        self.assertEqual((cache.path_of(kernel), cache.path_of(ramdisk)),
                         (booted_kernel, booted_ramdisk))
        # -U: the running guest's QEMU holds the overlay's lock.
        info = json.loads(subprocess.run(
            ['qemu-img', 'info', '-U', '--output=json', overlay],
            check=True, capture_output=True, text=True).stdout)
        self.assertEqual(cache.path_of(disk), info['backing-filename'])
        for image_id in (disk, kernel, ramdisk):
            data = self.glance_data(image_id)
            with open(cache.path_of(image_id), 'rb') as cached:
                self.assertEqual(hashlib.sha256(data).hexdigest(),
                                 hashlib.sha256(cached.read()).hexdigest())

    def test_glance_round_trip_through_novas_image_api(self) -> None:
        self.glance_round_trip()

    def test_real_glance_round_trip_through_novas_image_api(self) -> None:
        self.glance_round_trip()

    def glance_round_trip(self) -> None:
        """Boot a Glance image, snapshot it, boot the snapshot."""
        # The test guest as Glance keeps it: an AKI, an ARI, and a qcow2
        # disk naming them, as Nova's libvirt driver boots it.
        stem = os.path.join(IMAGES_PATH, IMAGE)
        kernel = self.add_glance_image(stem + '.vmlinuz', 'aki', 'aki')
        ramdisk = self.add_glance_image(stem + '.initrd', 'ari', 'ari')
        base = self.add_glance_image(
            stem + '.qcow2', 'qcow2', 'bare', kernel_id=kernel['id'],
            ramdisk_id=ramdisk['id'],
            os_command_line='console=ttyS0 panic=-1 quiet')

        server = self._boot(image_uuid=base['id'])
        self.assert_runs_cached(server, base['id'], kernel['id'],
                                ramdisk['id'])
        for image_id in (base['id'], kernel['id'], ramdisk['id']):
            self.assert_downloaded_once(server, image_id)

        image_id = self.snapshot(server, 'snap-%s' % server['id'])
        image = self.assert_nova_snapshot(server, image_id, 'qcow2', 'bare')
        props = image['properties']
        self.assertEqual(
            (base['id'], kernel['id'], ramdisk['id']),
            (props['base_image_ref'], props['kernel_id'],
             props['ramdisk_id']))
        # What Glance got is one qcow2 file any host boots: no backing
        # file, whatever the guest's disk was an overlay on.
        header = self.glance_data(image_id)[:64]
        self.assertEqual(b'QFI\xfb', header[:4])
        self.assertEqual(b'\0' * 8, header[8:16])  # backing file offset
        self.assert_actions_succeeded(server, ['create', 'createImage'])

        clone = self._boot(image_uuid=image_id)
        self.assert_runs_cached(clone, image_id, kernel['id'],
                                ramdisk['id'])
        # The kernel and initramfs were cached: only the disk came.
        for downloaded in (image_id, kernel['id'], ramdisk['id']):
            self.assert_downloaded_once(server, downloaded)
        self.wait_for_boot_line(clone)
        self._delete_server(clone)
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))

    # -- volumes --------------------------------------------------------------
    # The test image's init prints the first line of every new virtio disk
    # (``cdvol: vdb starts with: ...``) and the block devices whenever they
    # change (see tools/build-libvirt-test-image.sh): the guest's own view.

    def console(self, server: dict) -> str:
        return self.api.post_server_action(
            server['id'], {'os-getConsoleOutput': {}})['output'].replace(
                '\r\n', '\n')

    def wait_for_console(self, server: dict, pattern: str,
                         after: int = 0) -> str:
        """The console past ``after`` once ``pattern`` matches in it."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            output = self.console(server)[after:]
            if re.search(pattern, output, re.MULTILINE):
                return output
            self.assertLess(time.monotonic(), deadline,
                            'no %r on the console: %r' % (pattern, output))
            time.sleep(1)

    def domain_disks(self, server: dict, inactive: bool = False
                     ) -> dict[str, tuple[str | None, str | None]]:
        """Target -> (source device or file, serial) of the domain."""
        conn = libvirt.open(URI)
        self.addCleanup(conn.close)
        xml = ElementTree.fromstring(conn.lookupByUUIDString(
            server['id']).XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0))
        return {d.find('target').get('dev'): (
            d.find('source').get('dev') or d.find('source').get('file'),
            d.findtext('serial')) for d in xml.findall('devices/disk')}

    def attach(self, server: dict, volume: str) -> str:
        """Attach through Nova's API; the guest device Nova gave it."""
        self.api.post_server_volume(
            server['id'], {'volumeAttachment': {'volumeId': volume}})
        self.wait_for_action_event(server, 'attach_volume',
                                   'compute_attach_volume', 'success')
        return self.api.get_server_volume(server['id'], volume)['device']

    def detach(self, server: dict, volume: str) -> None:
        self.api.delete_server_volume(server['id'], volume)
        for _ in range(self.wait_retries):
            if not any(v['volumeId'] == volume for v in
                       self.api.get_server_volumes(server['id'])):
                return
            time.sleep(0.5)
        self.fail('volume %s stayed attached to %s' % (volume, server['id']))

    def test_attach_and_detach_volume(self) -> None:
        volume = '8a1b2c3d-0000-4000-8000-00000000cd03'
        # Both guests boot while the first is used.
        first, second = self._boot(), self._boot()
        for server, other in ((first, second), (second, first)):
            before = len(self.console(server))
            device = self.attach(server, volume)
            # Named after the root disk, vda, as the guest names it.
            self.assertEqual('/dev/vdb', device)
            dev = device.rpartition('/')[2]
            # A virtio disk of the loop device, named by the volume: live
            # and in the definition.
            for inactive in (False, True):
                self.assertEqual((self.device, volume),
                                 self.domain_disks(server, inactive)[dev])
            self.assertNotIn(dev, self.domain_disks(other))
            [attachment] = self._attachments(server)
            self.assertEqual((volume, device, self.device),
                             (attachment.volume_id, attachment.mountpoint,
                              attachment.device_path))
            # The guest reads what was on the volume before either had it,
            # and its /proc/partitions has the loop device's 16 MiB.
            output = self.wait_for_console(
                server, 'vdb starts with: cdvol-nova', before)
            self.assertRegex(output, r'(?m)^ +\d+ +\d+ +16384 vdb *$')
            shown = len(self.console(server))
            self.detach(server, volume)
            self.assertNotIn(dev, self.domain_disks(server))
            self.assertNotIn(dev, self.domain_disks(server, inactive=True))
            self.assertEqual([], self._attachments(server))
            # ...and saw it go: its list of block devices has vda only.
            self.wait_for_console(server, r'^cdvol: block devices: vda *$',
                                  shown)
            volume_env.check_free(self.device)
        self.assert_actions_succeeded(
            first, ['create', 'attach_volume', 'detach_volume'])
        self._delete_server(first)
        self._delete_server(second)
        self.assertEqual(set(), self.backend_uuids(self.host))

    def test_boot_from_volume(self) -> None:
        volume = nova_fixtures.CinderFixture.IMAGE_BACKED_VOL
        server = self._post_volume_backed(volume)
        self.created.add(server['id'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        # The volume is the root disk, vda, and what the guest finds on it
        # is what the volume holds.
        self.assertEqual((self.device, volume),
                         self.domain_disks(server)['vda'])
        [attachment] = self._attachments(server)
        self.assertEqual((volume, self.device, 0),
                         (attachment.volume_id, attachment.device_path,
                          attachment.boot_index))
        output = self.wait_for_console(server, 'vda starts with: cdvol-nova')
        self.assertRegex(output, r'(?m)^ +\d+ +\d+ +16384 vda *$')
        self._delete_server(server)
        self.assertEqual(set(), self.backend_uuids(self.host))
        volume_env.check_free(self.device)
