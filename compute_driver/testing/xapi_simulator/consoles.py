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

"""VM consoles of the simulator: their records and their endpoint.

As XAPI does, a VM has an ``rfb`` console record while it runs (created
when it starts, destroyed when it halts) whose ``location`` is
``<scheme>://<address>/console?ref=<console ref>`` on the host's own HTTP
server. A client connects there with ``CONNECT /console?ref=...&
session_id=... HTTP/1.0``; once answered ``200`` the connection carries
RFB. The simulator speaks RFB 3.8 up to the server's initialisation
message (no security, a blank 640x480 framebuffer named after the VM) and
then holds the connection open until the client leaves, which is what a
client needs to check that it reached the console.
"""

import struct
import typing
import urllib.parse

from compute_driver.testing.xapi_simulator import store as db

if typing.TYPE_CHECKING:  # pragma: no cover
    import http.server

    from compute_driver.testing.xapi_simulator import api as xapi

#: The RFB version the endpoint offers.
RFB_VERSION = b'RFB 003.008\n'
_WIDTH, _HEIGHT = 640, 480
# 32 bits per pixel, depth 24, little-endian, true colour, 8 bits a colour
# at shifts 16, 8 and 0, then padding: RFC 6143's PIXEL_FORMAT.
_PIXEL_FORMAT = struct.pack('>BBBBHHHBBBxxx', 32, 24, 0, 1, 255, 255, 255,
                            16, 8, 0)


def sync(api: 'xapi.Api', ref: str, vm: db.Record, running: bool) -> None:
    """Give a running VM its console record, and take a halted one's."""
    store = api.store
    consoles = list(vm['consoles'])
    if not running:
        for console in consoles:
            store.destroy('console', console)
        return
    if consoles or not api.settings.console_url:
        return
    console = store.create('console', {'protocol': 'rfb', 'VM': ref})
    store.update('console', console, location='%s/console?ref=%s' % (
        api.settings.console_url.rstrip('/'), console))


def _reply(handler: 'http.server.BaseHTTPRequestHandler', code: int,
           text: str) -> None:
    handler.send_response(code, text)
    handler.send_header('Content-Length', '0')
    handler.end_headers()
    handler.close_connection = True


def serve(handler: 'http.server.BaseHTTPRequestHandler',
          api: 'xapi.Api') -> None:
    """Answer ``CONNECT /console?ref=...&session_id=...``."""
    url = urllib.parse.urlsplit(handler.path)
    query = urllib.parse.parse_qs(url.query)
    if url.path != '/console':
        _reply(handler, 404, 'Not Found')
        return
    try:
        api._check_session((query.get('session_id') or [''])[0])
    except db.ApiError:
        _reply(handler, 401, 'Unauthorized')
        return
    with api.store.lock:
        consoles = api.store.table('console')
        ref = (query.get('ref') or [''])[0]
        if not ref and query.get('uuid'):
            ref = next((r for r, c in consoles.items()
                        if c['uuid'] == query['uuid'][0]), '')
        console = consoles.get(ref)
        vm = (api.store.table('VM').get(console['VM'])
              if console is not None else None)
        name = vm['name_label'] if vm is not None else ''
    if console is None or vm is None:
        _reply(handler, 404, 'Not Found')
        return
    handler.send_response(200, 'OK')
    handler.end_headers()
    handler.close_connection = True
    out, rfile = handler.wfile, handler.rfile
    out.write(RFB_VERSION)
    out.flush()
    if not rfile.read(len(RFB_VERSION)).startswith(b'RFB 003.'):
        return
    # One security type, None (1); the client picks it and is let in.
    out.write(b'\x01\x01')
    out.flush()
    if rfile.read(1) != b'\x01':
        return
    out.write(struct.pack('>I', 0))
    out.flush()
    if not rfile.read(1):  # ClientInit: whether to share the desktop
        return
    title = name.encode('utf-8')
    out.write(struct.pack('>HH', _WIDTH, _HEIGHT) + _PIXEL_FORMAT +
              struct.pack('>I', len(title)) + title)
    out.flush()
    # The framebuffer never changes: read what the client sends until
    # it leaves.
    while rfile.read(1):
        pass
