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

"""VNC consoles of XAPI VMs.

A running VM has ``console`` records; the ``rfb`` one's ``location`` is a
URL on its host's HTTP server (``https://192.0.2.1/console?ref=...``).
A client issues ``CONNECT <path>?<query>&session_id=<session>`` there and
then speaks RFB on the same connection, which is what a console proxy
does with the :class:`~compute_driver.console.VNCConsole` built here.
"""

import typing
import urllib.parse

from compute_driver import console
from compute_driver import exception
from compute_driver import objects

#: Ports of the location URL's schemes when it names none.
_DEFAULT_PORTS = {'https': 443, 'http': 80}


def vnc_console(records: typing.Iterable[dict[str, typing.Any]],
                session: str, instance: objects.Instance
                ) -> console.VNCConsole:
    """The VNC console among a VM's console records.

    :param records: the VM's ``console`` records.
    :param session: the session reference the proxy authenticates with.
    :raises ConsoleUnavailable: when the VM has no RFB console.
    """
    for record in records:
        if record.get('protocol') != 'rfb' or not record.get('location'):
            continue
        url = urllib.parse.urlsplit(record['location'])
        if url.scheme not in _DEFAULT_PORTS or not url.hostname:
            continue
        query = '&'.join(filter(None, [
            url.query, urllib.parse.urlencode({'session_id': session})]))
        return console.VNCConsole(
            host=url.hostname, port=url.port or _DEFAULT_PORTS[url.scheme],
            internal_access_path='%s?%s' % (url.path or '/', query))
    raise exception.ConsoleUnavailable(
        instance=instance.name, console='VNC',
        reason='XAPI lists no RFB console for its VM')
