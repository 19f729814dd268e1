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

"""Nova's remote consoles through the adapter (see :mod:`.functional_base`).

``POST /servers/{id}/remote-consoles`` returns a URL holding a console
token; ``GET /os-console-auth-tokens/{token}`` (admin) returns where the
proxy would connect, which for libvirt is then connected to: the VNC
display speaks RFB and the TCP serial port carries the guest's shell.
Nova's own ``[vnc]`` and ``[serial_console]`` settings decide what the
guests get.
"""

import os
import re
import shutil
import socket
import time
from urllib import parse
import uuid

from nova.tests.functional.api import client

from compute_driver import loader
from compute_driver.testing import fixtures as cd_fixtures
from tests.nova import functional_base
from tests.nova import test_functional_fake
from tests.nova import test_functional_libvirt

#: Microversion of os-console-auth-tokens.
MICROVERSION = '2.31'


class ConsoleMixin:
    """Asks Nova's API for consoles of one server."""

    host = 'compute1'

    def setUp(self) -> None:
        super().setUp()
        self._start_compute(self.host)

    def _at_microversion(self, call, *args):
        saved, self.api.microversion = self.api.microversion, MICROVERSION
        try:
            return call(*args)
        finally:
            self.api.microversion = saved

    def _boot(self) -> dict:
        return self._create_server(
            image_uuid=functional_base.IMAGE, flavor_id=self.flavor_id,
            networks='none')

    def console_url(self, server: dict, protocol: str, kind: str) -> str:
        body = {'remote_console': {'protocol': protocol, 'type': kind}}
        return self._at_microversion(
            self.api.api_post, '/servers/%s/remote-consoles' % server['id'],
            body).body['remote_console']['url']

    def connect_info(self, url: str) -> dict:
        # noVNC's URL carries the token in its quoted path parameter.
        token = re.search('token=([^&]+)', parse.unquote(url)).group(1)
        return self._at_microversion(
            self.api.api_get,
            '/os-console-auth-tokens/%s' % token).body['console']

    def console_error(self, server: dict, protocol: str, kind: str) -> int:
        with self.assertRaises(client.OpenStackApiException) as caught:
            self.console_url(server, protocol, kind)
        return caught.exception.response.status_code


class FakeConsoleTests(ConsoleMixin, functional_base.AdapterTestBase):
    backend_name = 'fake'
    backend_options = test_functional_fake.FakeBackendServerTests\
        .backend_options
    nova_images = test_functional_fake.FakeBackendServerTests.nova_images
    flavor_id = '1'

    def test_vnc_and_serial_urls(self) -> None:
        self.flags(enabled=True, group='serial_console')
        server = self._boot()
        url = self.console_url(server, 'vnc', 'novnc')
        self.assertTrue(url.startswith(
            self.flags_value('vnc', 'novncproxy_base_url')), url)
        info = self.connect_info(url)
        self.assertEqual((server['id'], '127.0.0.1', 5900),
                         (info['instance_uuid'], info['host'],
                          info['port']))
        info = self.connect_info(self.console_url(server, 'serial',
                                                  'serial'))
        self.assertEqual(10000, info['port'])

    def test_stopped_server_has_no_console(self) -> None:
        server = self._boot()
        self.api.post_server_action(server['id'], {'os-stop': None})
        self._wait_for_state_change(server, 'SHUTOFF')
        self.assertEqual(409, self.console_error(server, 'vnc', 'novnc'))

    def flags_value(self, group: str, name: str) -> str:
        from nova import conf
        return str(conf.CONF[group][name])


class LibvirtConsoleTests(ConsoleMixin, functional_base.AdapterTestBase):
    backend_name = 'libvirt'
    backend_images = {functional_base.IMAGE: os.environ.get(
        'COMPUTE_DRIVER_CONSOLE_TEST_IMAGE', test_functional_libvirt.IMAGE)}
    flavor_id = '2'  # m1.small: the guest's kernel needs more than m1.tiny

    def setUp(self) -> None:
        test_functional_libvirt.require_libvirtd()
        suffix = uuid.uuid4().hex[:8]
        self.host = 'cdtest-%s' % suffix
        instances_path = os.path.join(test_functional_libvirt.INSTANCES_PATH,
                                      'nova-console-' + suffix)
        self.addCleanup(shutil.rmtree, instances_path, ignore_errors=True)
        self.backend_options = {'libvirt': {
            'virt_type': 'qemu', 'connection_uri': test_functional_libvirt.URI,
            'images_path': test_functional_libvirt.IMAGES_PATH,
            'instances_path': instances_path, 'lifecycle_event_delay': 1}}
        self.created: set[str] = set()
        self.flags(disk_allocation_ratio=1000.0)
        # Nova's settings, not the library file's, decide: a TCP serial
        # port on the proxy client address, in a range of its own.
        self.flags(enabled=True, proxyclient_address='127.0.0.1',
                   port_range='%d:%d' % self._free_ports(),
                   group='serial_console')
        super().setUp()

    def _boot(self) -> dict:
        server = super()._boot()
        self.created.add(server['id'])
        return server

    def _remove_backend_leftovers(self) -> None:
        # The compute service has stopped and cleaned its adapter up by
        # now; libvirtd is shared, so only this test's servers are ours.
        backend = loader.load_driver(
            cd_fixtures.make_conf('libvirt', self.backend_options),
            'libvirt')
        try:
            for record in backend.list_instance_records():
                if record.instance.uuid in self.created:
                    backend.destroy(record.instance)
        finally:
            backend.cleanup_host(self.host)

    @staticmethod
    def _free_ports() -> tuple[int, int]:
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            first = probe.getsockname()[1]
        first = max(1024, min(first, 65000))
        return first, first + 20

    def _wait_for_boot(self, server: dict) -> None:
        # The boot line is on the serial port before the test can connect
        # to it; only the log, polled through Nova's API, keeps it.
        deadline = time.monotonic() + test_functional_libvirt.BOOT_TIMEOUT
        while True:
            output = self.api.post_server_action(
                server['id'], {'os-getConsoleOutput': {}})['output']
            if test_functional_libvirt.BOOT_LINE in output:
                return
            self.assertLess(time.monotonic(), deadline, output[-2000:])
            time.sleep(1)

    def test_vnc_and_serial_consoles_work(self) -> None:
        server = self._boot()
        self._wait_for_boot(server)

        info = self.connect_info(self.console_url(server, 'vnc', 'novnc'))
        self.assertEqual('127.0.0.1', info['host'])
        with socket.create_connection((info['host'], int(info['port'])),
                                      timeout=60) as display:
            self.assertTrue(display.recv(12).startswith(b'RFB 003.'))

        info = self.connect_info(self.console_url(server, 'serial',
                                                  'serial'))
        self.assertEqual('127.0.0.1', info['host'])
        with socket.create_connection((info['host'], int(info['port'])),
                                      timeout=60) as serial:
            serial.sendall(b'\recho no$((3*3))va\r')
            seen = b''
            deadline = time.monotonic() + 120
            while b'no9va' not in seen:
                left = deadline - time.monotonic()
                self.assertGreater(left, 0, seen[-2000:])
                # Blocks until the guest writes; no poll.
                serial.settimeout(left)
                chunk = serial.recv(4096)
                self.assertTrue(chunk, 'the serial port closed after %r'
                                % seen[-2000:])
                seen += chunk
        # The serial port is logged as before, by virtlogd, after QEMU has
        # sent it to the socket: no event says when, so the log is polled.
        deadline = time.monotonic() + 60
        while 'no9va' not in self.api.post_server_action(
                server['id'], {'os-getConsoleOutput': {}})['output']:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.5)
        self._delete_server(server)
