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

"""Consoles of libvirt guests: the serial port and the VNC display.

A kvm or qemu guest's first serial port is a PTY or a TCP socket
(``[libvirt] serial_console_type``) whose output libvirt also writes to
the console log. ``compute-driver console`` reaches a PTY through
libvirtd (``virDomainOpenConsole``), so it needs no access to the PTY
device and libvirtd enforces one session at a time; a TCP port is
reached directly, as Nova's serial proxy does. The VNC display's port is
chosen by libvirt when the guest starts and read back from the live
domain.
"""

import errno
import socket
import threading
import typing
import xml.etree.ElementTree as ET

import libvirt

from compute_driver import console
from compute_driver import exception
from compute_driver import objects


def port_range(text: str) -> range:
    """``[libvirt] serial_port_range`` as a range of ports.

    :raises InvalidConfiguration: for a range outside 1024:65535 or empty.
    """
    first, _, last = text.partition(':')
    low, high = int(first), int(last)
    if not 1024 <= low <= high <= 65535:
        raise exception.InvalidConfiguration(
            reason='[libvirt] serial_port_range must be FIRST:LAST with '
                   '1024 <= FIRST <= LAST <= 65535, got %r' % text)
    return range(low, high + 1)


def serial_endpoint(root: ET.Element) -> tuple[str, int] | None:
    """The host and port of a domain's TCP serial console, if it has one.

    :param root: the domain's XML.
    """
    for serial in root.findall('devices/serial'):
        source = serial.find('source')
        if (serial.get('type') == 'tcp' and source is not None and
                source.get('mode') == 'bind'):
            return source.get('host', ''), int(source.get('service', '0'))
    return None


def has_pty_serial(root: ET.Element) -> bool:
    """Whether a domain's first serial port is a PTY."""
    serial = root.find('devices/serial')
    return serial is not None and serial.get('type') == 'pty'


def vnc_endpoint(root: ET.Element) -> tuple[str, int] | None:
    """The listen address and port of a running domain's VNC display.

    :returns: ``None`` when it has none, or none with a port yet.
    """
    graphics = root.find("devices/graphics[@type='vnc']")
    if graphics is None:
        return None
    port = int(graphics.get('port', '-1'))
    if port <= 0:
        return None
    listen = graphics.get('listen')
    if not listen:
        element = graphics.find("listen[@type='address']")
        listen = element.get('address') if element is not None else None
    return listen or '127.0.0.1', port


def free_serial_port(address: str, ports: range,
                     taken: typing.Collection[int]) -> int:
    """A port of ``ports`` that no domain uses and that can be bound now.

    :param taken: ports other domains' serial consoles are defined with,
        running or not: a stopped one gets its port back when it starts.
    :raises InsufficientResources: when every port is in use.
    """
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    for port in ports:
        if port in taken:
            continue
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise exception.InvalidConfiguration(
                reason='[libvirt] serial_listen_address %s cannot be used: '
                       '%s' % (address, exc)) from exc
        finally:
            probe.close()
        return port
    raise exception.InsufficientResources(
        resource='serial console ports', host=address,
        requested=1, free=0, total=len(ports))


class DomainConsoleStream(console.ConsoleStream):
    """A domain's PTY console through libvirtd's console stream.

    The stream is non-blocking and driven by libvirt's event loop (which
    the backend runs in a thread): :meth:`read` waits for the loop's
    "readable" callback, so that :meth:`close` from another thread can
    wake it, which a blocking ``recv`` would not allow.

    :param conn: the libvirt connection.
    :param dom: the running domain.
    :param instance: its instance, for error messages.
    :raises ConsoleBusy: when another session holds the console.
    :raises ConsoleUnavailable: when its serial port is not a PTY.
    """

    _EVENTS = (libvirt.VIR_STREAM_EVENT_READABLE |
               libvirt.VIR_STREAM_EVENT_ERROR |
               libvirt.VIR_STREAM_EVENT_HANGUP)

    def __init__(self, conn: typing.Any, dom: typing.Any,
                 instance: objects.Instance) -> None:
        self._closed = threading.Event()
        self._ready = threading.Event()
        self._writable = threading.Event()
        self._lock = threading.Lock()
        self._stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            # SAFE: refuse rather than take the console from a session
            # that holds it (FORCE would cut that session off).
            dom.openConsole(None, self._stream,
                            libvirt.VIR_DOMAIN_CONSOLE_SAFE)
        except libvirt.libvirtError as exc:
            self._abort()
            text = exc.get_error_message() or ''
            if 'Active console session' in text or 'busy' in text:
                raise exception.ConsoleBusy(
                    console='serial', instance=instance.name) from exc
            if 'not using a PTY' in text or 'cannot find' in text:
                raise exception.ConsoleUnavailable(
                    instance=instance.name, console='serial',
                    reason='its serial port is not a PTY (it was created '
                           'with another serial_console_type)') from exc
            raise
        self._stream.eventAddCallback(self._EVENTS, self._on_event, None)

    def _on_event(self, stream: typing.Any, events: int,
                  opaque: object) -> None:
        if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
            self._writable.set()
            # Writable stays true while the buffer has room: stop asking
            # until the next write blocks, or the loop spins.
            stream.eventUpdateCallback(self._EVENTS)
        if events & ~libvirt.VIR_STREAM_EVENT_WRITABLE:
            self._ready.set()

    def read(self) -> bytes:
        while not self._closed.is_set():
            self._ready.clear()
            try:
                data = self._stream.recv(65536)
            except libvirt.libvirtError:
                # The domain stopped or libvirtd went away: the end.
                return b''
            if data == -2:
                self._ready.wait()
                continue
            return typing.cast(bytes, data)
        return b''

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._closed.is_set():
                raise ConnectionError('the console stream is closed')
            self._writable.clear()
            try:
                sent = self._stream.send(bytes(view))
            except libvirt.libvirtError as exc:
                raise ConnectionError(exc.get_error_message()) from exc
            if sent == -2:
                self._stream.eventUpdateCallback(
                    self._EVENTS | libvirt.VIR_STREAM_EVENT_WRITABLE)
                self._writable.wait()
                continue
            view = view[sent:]

    def _abort(self) -> None:
        try:
            self._stream.abort()
        except libvirt.libvirtError:
            pass  # the stream already ended; aborting is only tidying

    def close(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        self._ready.set()
        self._writable.set()
        try:
            self._stream.eventRemoveCallback()
        except libvirt.libvirtError:
            pass  # never added, or the stream already ended
        try:
            # finish, not abort: it delivers what was written but is still
            # queued (the last keys typed before the end of a pipe).
            self._stream.finish()
        except libvirt.libvirtError:
            self._abort()


def connect_tcp(host: str, port: int,
                instance: objects.Instance) -> console.SocketStream:
    """Connect to a TCP serial console.

    :raises ConsoleUnavailable: when nothing listens there.
    """
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        raise exception.ConsoleUnavailable(
            instance=instance.name, console='serial',
            reason='cannot connect to %s port %d: %s'
                   % (host, port, exc.strerror or exc)) from exc
    sock.settimeout(None)
    return console.SocketStream(sock)
