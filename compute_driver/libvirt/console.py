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

Before an endpoint is handed out it is connected to from this thread
(:func:`check_reachable`): QEMU listens in libvirtd's network namespace,
and a libvirtd started from inside another namespace (``ip netns exec``,
or a thread that entered one: a child inherits its thread's namespace)
puts every guest's console there, where an address such as ``127.0.0.1``
is out of reach of this host's Nova proxies: the port refuses them, or
is another process's. The guest runs and its log fills as before, since
libvirtd is reached through a Unix socket; only its TCP consoles are
lost.
"""

import errno
import ipaddress
import os
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


#: Seconds a reachability probe waits for the connection to be accepted;
#: a probe that times out says nothing certain and lets the endpoint by.
PROBE_TIMEOUT = 3.0


def network_namespace(pid: int | str) -> str | None:
    """A process's network namespace as ``net:[inode]``, if readable.

    :param pid: a process id, or ``'thread-self'`` for the calling
        thread's (``setns`` is per thread).
    """
    try:
        return os.readlink('/proc/%s/ns/net' % pid)
    except OSError:
        return None


def qemu_pid(domain_uuid: str) -> int | None:
    """The pid of the local QEMU process of the domain ``domain_uuid``.

    libvirt gives QEMU the domain's uuid (``-uuid UUID``), unique where
    its name is not: several libvirtds on one host may each run a domain
    of the same name. A remote or invisible process gives ``None``.
    """
    wanted = domain_uuid.lower().encode()
    try:
        entries = os.listdir('/proc')
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                argv = handle.read().split(b'\0')
        except OSError:
            continue  # gone meanwhile, or not ours to read
        for flag, value in zip(argv, argv[1:]):
            if flag == b'-uuid' and value.lower() == wanted:
                return int(entry)
    return None


def _loopback(host: str) -> bool:
    # A loopback or wildcard listen address: reachable from inside the
    # listener's network namespace only.
    if host in ('', 'localhost'):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: resolved where the proxy runs
    return address.is_loopback or address.is_unspecified


def foreign_namespace(domain_uuid: str) -> str | None:
    """Why the guest's QEMU is out of this thread's network namespace.

    :returns: ``None`` when its QEMU is in this thread's namespace, or it
        cannot be told (no such local process, ``/proc`` not readable).
    """
    pid = qemu_pid(domain_uuid)
    if pid is None:
        return None
    theirs = network_namespace(pid)
    ours = network_namespace('thread-self')
    if theirs is None or ours is None or theirs == ours:
        return None
    return ('its QEMU process %d is in network namespace %s, not in this '
            "thread's %s, and listens there (was libvirtd started from "
            'inside a network namespace? its guests inherit it)'
            % (pid, theirs, ours))


def unreachable_reason(host: str, port: int, error: OSError,
                       domain_uuid: str | None = None) -> str:
    """Why a guest's console at ``host``:``port`` could not be connected to.

    Names the network namespace of the guest's QEMU when it differs from
    the calling thread's, the usual cause of a refused loopback console.
    """
    reason = 'nothing accepts connections at %s port %d from here (%s)' % (
        host, port, error.strerror or error)
    elsewhere = foreign_namespace(domain_uuid) if domain_uuid else None
    return reason + '; ' + elsewhere if elsewhere else reason


def _check_namespace(host: str, port: int, instance: objects.Instance,
                     console_name: str, domain_uuid: str | None) -> None:
    if domain_uuid and _loopback(host):
        elsewhere = foreign_namespace(domain_uuid)
        if elsewhere:
            raise exception.ConsoleUnavailable(
                instance=instance.name, console=console_name,
                reason='%s port %d is out of reach: %s' % (
                    host, port, elsewhere))


def check_reachable(host: str, port: int, instance: objects.Instance,
                    console_name: str, domain_uuid: str | None = None,
                    timeout: float = PROBE_TIMEOUT) -> None:
    """Check that a console endpoint is the guest's and takes connections.

    A loopback (or wildcard) address is the guest's only when its QEMU is
    in this thread's network namespace: in another one, whatever answers
    here at that port is some other process (another guest's display).
    Then the endpoint is connected to once, as a proxy would, and hung up
    on; a wildcard address through the loopback one. A probe that times
    out passes: only a definite failure is reported.

    :param console_name: the console's name in the error (``VNC``...).
    :param domain_uuid: the guest's domain, to find its QEMU process.
    :raises ConsoleUnavailable: when the guest listens in another network
        namespace, or the connection is refused or the address cannot be
        reached from this host.
    """
    _check_namespace(host, port, instance, console_name, domain_uuid)
    target = {'0.0.0.0': '127.0.0.1', '::': '::1', '': '127.0.0.1'}.get(
        host, host)
    try:
        probe = socket.create_connection((target, port), timeout=timeout)
    except TimeoutError:
        return
    except OSError as exc:
        raise exception.ConsoleUnavailable(
            instance=instance.name, console=console_name,
            reason=unreachable_reason(host, port, exc, domain_uuid)
        ) from exc
    probe.close()


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


def connect_tcp(host: str, port: int, instance: objects.Instance,
                domain_uuid: str | None = None) -> console.SocketStream:
    """Connect to a TCP serial console.

    :param domain_uuid: the guest's domain, to find its QEMU process.
    :raises ConsoleUnavailable: when nothing listens there, or the guest
        listens in another network namespace (see
        :func:`check_reachable`).
    """
    _check_namespace(host, port, instance, 'serial', domain_uuid)
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        raise exception.ConsoleUnavailable(
            instance=instance.name, console='serial',
            reason=unreachable_reason(host, port, exc, domain_uuid)
        ) from exc
    sock.settimeout(None)
    return console.SocketStream(sock)
