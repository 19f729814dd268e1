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

"""The connection to libvirtd, its event loop and its version gates.

:class:`Host` owns one ``virConnect`` and makes every call on it
(:meth:`Host.call`). libvirt delivers domain events and notices a dropped
connection only while an event loop runs, so the first :class:`Host`
registers libvirt's default event implementation
(``virEventRegisterDefaultImpl``) and starts one daemon thread that runs it
for the whole process. Callbacks run on that thread; :class:`Host` hands
them straight to the driver's callables, which must not block.

When libvirtd goes away (a restart), the close callback marks the
connection dead; the next call reconnects, waiting up to ``[libvirt]
reconnect_timeout`` seconds, and registers the lifecycle callback again.
"""

import logging
import os
import stat
import sys
import threading
import time
import typing
import urllib.parse

import libvirt

from compute_driver import exception
from compute_driver.libvirt import errors
from compute_driver import objects

if typing.TYPE_CHECKING:  # pragma: no cover
    # Imported where XML is parsed: a listing, which parses none, then
    # does not pay for the import (with pyexpat, 1.5 ms).
    from xml.etree import ElementTree

LOG = logging.getLogger(__name__)


def __getattr__(name: str) -> typing.Any:
    # ElementTree was a module attribute; callers that used it get it.
    if name == 'ElementTree':
        from xml.etree import ElementTree
        return ElementTree
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


# Errors after which the connection is no use and a reconnect may help.
_CONNECTION_ERRORS = frozenset((
    libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR,
    libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC))


class VersionGate(typing.NamedTuple):
    """The versions one ``virt_type`` needs.

    :param libvirt: the least libvirt version.
    :param hypervisor: the least version ``getVersion()`` may report, or
        ``None`` when there is no separate hypervisor to check.
    :param hypervisor_name: what ``getType()`` answers for the hypervisor
        the gate is about (``QEMU``, ``Xen``); the hypervisor check applies
        only to connections of that type.
    """

    # A named tuple, not a dataclass: the class is made at import, and a
    # frozen dataclass's generated methods cost every command a fraction
    # of a millisecond to compile.

    libvirt: tuple[int, int, int]
    hypervisor: tuple[int, int, int] | None = None
    hypervisor_name: str = ''


#: The minimum every virt_type shares: libvirt's Xen documentation says
#: "With Xen, the minimum level of libvirt you should use is 1.2.9", and
#: nothing older is tested with this backend.
MIN_LIBVIRT_VERSION = (1, 2, 9)

#: Refused below these versions. Each virt_type has its own entry so that
#: one can be raised without touching the others. QEMU 2.1 and Xen 4.4 are
#: the hypervisor releases contemporary with libvirt 1.2.9.
MIN_VERSIONS: dict[str, VersionGate] = {
    'kvm': VersionGate(MIN_LIBVIRT_VERSION, (2, 1, 0), 'QEMU'),
    'qemu': VersionGate(MIN_LIBVIRT_VERSION, (2, 1, 0), 'QEMU'),
    'xen': VersionGate(MIN_LIBVIRT_VERSION, (4, 4, 0), 'Xen'),
    'lxc': VersionGate(MIN_LIBVIRT_VERSION),
}

#: Accepted with a deprecation warning below these: the minimums of the
#: next release, announced one release ahead as Nova's ``NEXT_MIN_*`` are.
NEXT_MIN_VERSIONS: dict[str, VersionGate] = {
    'kvm': VersionGate((6, 0, 0), (4, 2, 0), 'QEMU'),
    'qemu': VersionGate((6, 0, 0), (4, 2, 0), 'QEMU'),
    'xen': VersionGate((6, 0, 0), (4, 11, 0), 'Xen'),
    'lxc': VersionGate((6, 0, 0)),
}


def keeps_aliases(virt_type: str, version: tuple[int, int, int]) -> bool:
    """Whether libvirtd keeps the user aliases of a domain's disks.

    Its QEMU driver does since 3.9.0; others, and older releases, drop
    them without a word, so their domains record attachments in the
    metadata (under :data:`compute_driver.libvirt.volumes.NS`) as
    earlier releases of this library did.
    """
    return virt_type in ('kvm', 'qemu') and version >= (3, 9, 0)


_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError:
            # One failed iteration must not end event delivery for the
            # whole process.
            LOG.exception('libvirt event loop iteration failed')
            time.sleep(0.1)


def _ignore_error(opaque: object, error: object) -> None:
    """An error handler that leaves reporting to the exceptions."""


def green_threads() -> bool:
    """Whether eventlet has monkey patched this process's threads.

    A thread started then is a green thread, and the event loop's thread
    would block the whole process in ``virEventRunDefaultImpl``, a C call
    that never yields to eventlet's hub: nothing else would run until the
    next event, which may never come.
    """
    patcher = sys.modules.get('eventlet.patcher')
    return bool(patcher is not None and patcher.is_monkey_patched('thread'))


def start_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread.

    Idempotent and thread-safe: the loop is per process, and libvirt wants
    it registered before the first connection is opened.

    :raises InvalidConfiguration: when eventlet has monkey patched threads
        (see :func:`green_threads`), rather than hanging the process.
    """
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        if green_threads():
            raise exception.InvalidConfiguration(
                reason="the libvirt backend runs libvirt's event loop in "
                       "an OS thread, and eventlet has monkey patched "
                       "this process's threads; run it without eventlet "
                       "(nova-compute: [DEFAULT] concurrency_backend = "
                       "threading)")
        # libvirt prints every error to stderr unless told otherwise; the
        # driver reports the ones that matter as exceptions.
        libvirt.registerErrorHandler(_ignore_error, None)
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(
            target=_run_event_loop, name='libvirt-event-loop', daemon=True)
        _loop_thread.start()


def version_tuple(version: int) -> tuple[int, int, int]:
    """libvirt's integer ``1002009`` as ``(1, 2, 9)``."""
    return (version // 1000000, version // 1000 % 1000, version % 1000)


def _dotted(version: tuple[int, ...]) -> str:
    return '.'.join(str(part) for part in version)


LifecycleCallback = typing.Callable[[str, str, int, int], None]


#: The device node of the kernel's KVM module.
KVM_DEVICE = '/dev/kvm'


def parse_dac_label(caps: 'ElementTree.Element',
                    virt_type: str) -> tuple[int, int] | None:
    """``(uid, gid)`` of the DAC ``baselabel`` for ``virt_type`` in ``caps``.

    libvirt writes it as ``+64055:+108`` in ``<host><secmodel>``.
    """
    for model in caps.iterfind('./host/secmodel'):
        if model.findtext('model') != 'dac':
            continue
        labels = {label.get('type'): (label.text or '')
                  for label in model.iterfind('baselabel')}
        text = labels.get(virt_type, '')
        user, sep, group = text.partition(':')
        try:
            return int(user.lstrip('+')), int(group.lstrip('+'))
        except ValueError:
            return None
    return None


def _user_groups(uid: int, gid: int) -> tuple[str, set[int]]:
    # As libvirt computes them for QEMU: the label's group, plus the
    # user's primary group and every group that lists the user. pwd and
    # grp are imported here: only a /dev/kvm QEMU cannot open needs them.
    import pwd
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return str(uid), {gid}
    return entry.pw_name, {gid} | set(os.getgrouplist(entry.pw_name,
                                                      entry.pw_gid))


def _group_name(gid: int) -> str:
    import grp
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def kvm_access_problem(device: str, st: os.stat_result, uid: int,
                       gid: int) -> str | None:
    """Why the user ``uid`` (group ``gid``) cannot open ``device``, if not.

    :param st: the device's ``os.stat`` result.
    :returns: one line naming the device's owner and mode, the user, and
        the commands that bring the node into the state udev's ``kvm``
        rule would, or ``None`` when the user can read and write it.
    """
    if uid == 0:
        return None
    user, groups = _user_groups(uid, gid)
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == uid:
        allowed = mode >> 6 & 0o6 == 0o6
    elif st.st_gid in groups:
        allowed = mode >> 3 & 0o6 == 0o6
    else:
        allowed = mode & 0o6 == 0o6
    if allowed:
        return None
    fix = 'chgrp kvm %s && chmod 0660 %s' % (device, device)
    if 'kvm' not in {_group_name(g) for g in groups}:
        # libvirtd reads its QEMU user's groups when it starts.
        fix += ' && usermod -a -G kvm %s, then restart libvirtd' % user
    return ("%s is %s:%s %04o, which libvirt's QEMU user %s cannot open, "
            "so libvirtd re-probes QEMU on every call and each define can "
            "take a minute; run '%s' (what udev's kvm rule does)"
            % (device, _owner_name(st.st_uid), _group_name(st.st_gid), mode,
               user, fix))


def _owner_name(uid: int) -> str:
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Host:
    """One libvirt connection that survives libvirtd restarts.

    :param uri: the connection URI.
    :param virt_type: the ``[libvirt] virt_type``, for the version gates.
    :param lifecycle_callback: called on the event-loop thread with the
        domain's uuid and name, libvirt's event and its detail for every
        domain lifecycle event; it must not block.
    :param reconnect_timeout: seconds to keep trying to reconnect.
    """

    def __init__(self, uri: str, virt_type: str,
                 lifecycle_callback: LifecycleCallback | None = None,
                 reconnect_timeout: int = 30) -> None:
        self.uri = uri
        self.virt_type = virt_type
        self._lifecycle_callback = lifecycle_callback
        self._reconnect_timeout = reconnect_timeout
        self._lock = threading.Lock()
        self._conn: typing.Any = None
        self._facts: tuple[typing.Any, dict[str, typing.Any]] | None = None
        self._callback_id: int | None = None
        self._closed = False

    # -- the connection -------------------------------------------------------

    def _open(self) -> typing.Any:
        start_event_loop()
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise exception.HypervisorUnavailable(
                host=self.uri, reason=exc.get_error_message()) from exc
        try:
            conn.registerCloseCallback(self._close_callback, None)
        except libvirt.libvirtError as exc:
            # The test driver has no close callback; is_alive() still
            # notices a dead connection.
            LOG.debug('No close callback on %s: %s', self.uri, exc)
        if self._lifecycle_callback is not None:
            self._callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                self._domain_event, None)
        LOG.debug('Connected to %s', self.uri)
        return conn

    def _close_callback(self, conn: typing.Any, reason: int,
                        opaque: object) -> None:
        LOG.warning('Connection to %s closed (reason %s); reconnecting on '
                    'next use', self.uri, reason)
        # No lock: this runs on the event-loop thread, which must not wait
        # for a caller that holds the lock while it reconnects.
        if self._conn is conn:
            self._conn = None
            self._facts = None
            self._callback_id = None

    def _domain_event(self, conn: typing.Any, dom: typing.Any, event: int,
                      detail: int, opaque: object) -> None:
        if self._lifecycle_callback is None:
            return
        try:
            self._lifecycle_callback(dom.UUIDString(), dom.name(), event,
                                     detail)
        except Exception:
            LOG.exception('Lifecycle callback failed for event %s/%s',
                          event, detail)

    def get_connection(self) -> typing.Any:
        """The live connection, reconnecting when libvirtd went away.

        :raises HypervisorUnavailable: when libvirtd cannot be reached
            within the reconnect timeout.
        """
        with self._lock:
            if self._closed:
                raise exception.HypervisorUnavailable(
                    host=self.uri, reason='the driver was cleaned up')
            conn = self._conn
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                LOG.warning('Connection to %s is dead; reconnecting',
                            self.uri)
                self._conn = None
                self._facts = None
            deadline = time.monotonic() + self._reconnect_timeout
            while True:
                try:
                    self._conn = self._open()
                    return self._conn
                except exception.HypervisorUnavailable:
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(0.5)

    def drop_connection(self, conn: typing.Any) -> None:
        """Forget ``conn`` after a call on it failed for connection reasons.

        The next :meth:`get_connection` opens a new one.
        """
        with self._lock:
            if self._conn is conn:
                self._conn = None
                self._facts = None
                self._callback_id = None

    def call(self, func: typing.Callable[[typing.Any], typing.Any]
             ) -> typing.Any:
        """Run ``func(conn)``, reconnecting once if the connection died.

        :raises libvirtError: what ``func`` raised, when the connection
            is alive or the retry failed too.
        :raises HypervisorUnavailable: when libvirtd cannot be reached.
        """
        conn = self.get_connection()
        try:
            return func(conn)
        except libvirt.libvirtError as exc:
            if errors.code(exc) not in _CONNECTION_ERRORS:
                raise
            try:
                alive = conn.isAlive()
            except libvirt.libvirtError:
                alive = False
            if alive:
                raise
            LOG.warning('Connection to %s lost (%s); reconnecting',
                        self.uri, exc)
            self.drop_connection(conn)
            return func(self.get_connection())

    def lookup(self, how: str, key: str) -> typing.Any:
        """``conn.<how>(key)``, or ``None`` when no domain matches.

        :param how: ``lookupByUUIDString`` or ``lookupByName``.
        :raises libvirtError: for any other failure.
        """
        try:
            return self.call(lambda conn: getattr(conn, how)(key))
        except libvirt.libvirtError as exc:
            if errors.code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def close(self) -> None:
        """Drop the event callback and close the connection for good."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            self._facts = None
            callback_id, self._callback_id = self._callback_id, None
        if conn is None:
            return
        try:
            if callback_id is not None:
                conn.domainEventDeregisterAny(callback_id)
            conn.unregisterCloseCallback()
        except libvirt.libvirtError as exc:
            LOG.debug('Ignoring error deregistering callbacks: %s', exc)
        try:
            conn.close()
        except libvirt.libvirtError as exc:
            LOG.debug('Ignoring error closing %s: %s', self.uri, exc)

    # -- versions -------------------------------------------------------------

    def _fact(self, name: str,
              read: typing.Callable[[typing.Any], typing.Any]) -> typing.Any:
        # What does not change while a connection lasts, read once per
        # connection: start-up's version checks and the driver's own
        # set-up each ask, and every question is a round trip.
        conn = self.get_connection()
        facts = self._facts
        if facts is None or facts[0] is not conn:
            facts = self._facts = (conn, {})
        try:
            return facts[1][name]
        except KeyError:
            value = facts[1][name] = read(conn)
            return value

    def get_libvirt_version(self) -> tuple[int, int, int]:
        """The version of libvirt on the other end of the connection."""
        return version_tuple(self._fact('lib', lambda c: c.getLibVersion()))

    def get_hypervisor_version(self) -> tuple[int, int, int]:
        """What ``getVersion()`` reports: QEMU's or Xen's version."""
        return version_tuple(self._fact('hv', lambda c: c.getVersion()))

    def get_hypervisor_type(self) -> str:
        """``getType()``: ``QEMU``, ``Xen``, ``LXC``, ``TEST``..."""
        return str(self._fact('type', lambda c: c.getType()))

    def check_versions(self) -> None:
        """Apply :data:`MIN_VERSIONS` and :data:`NEXT_MIN_VERSIONS`.

        :raises HypervisorVersionTooOld: naming the component, the version
            found, the one required and the virt_type.
        """
        gate = MIN_VERSIONS[self.virt_type]
        upcoming = NEXT_MIN_VERSIONS[self.virt_type]
        found = self.get_libvirt_version()
        self._check('libvirt', found, gate.libvirt, upcoming.libvirt)
        if gate.hypervisor is None:
            return
        hv_type = self.get_hypervisor_type()
        if hv_type != gate.hypervisor_name:
            LOG.debug('Not checking the %s version: %s is a %s connection',
                      gate.hypervisor_name, self.uri, hv_type)
            return
        self._check(gate.hypervisor_name, self.get_hypervisor_version(),
                    gate.hypervisor, upcoming.hypervisor)

    def _check(self, component: str, found: tuple[int, int, int],
               minimum: tuple[int, int, int],
               upcoming: tuple[int, int, int] | None) -> None:
        if found < minimum:
            raise exception.HypervisorVersionTooOld(
                component=component, found=_dotted(found),
                virt_type=self.virt_type, required=_dotted(minimum))
        if upcoming is not None and found < upcoming:
            LOG.warning(
                'Running %s %s with virt_type %s is deprecated: the next '
                'release will require at least %s.', component,
                _dotted(found), self.virt_type, _dotted(upcoming))

    # -- host checks ----------------------------------------------------------

    def is_local_qemu(self) -> bool:
        """Whether the connection is to a QEMU driver on this machine.

        Only then do this machine's device nodes say anything about the
        hypervisor.
        """
        parsed = urllib.parse.urlsplit(self.uri)
        scheme = parsed.scheme.split('+')[0]
        transport = parsed.scheme.partition('+')[2]
        return (scheme == 'qemu' and not parsed.hostname and
                transport in ('', 'unix'))

    def kvm_device_warnings(self, device: str = KVM_DEVICE) -> list[str]:
        """Say when ``device`` exists but libvirt's QEMU user cannot use it.

        libvirtd probes QEMU as root and then checks whether its QEMU
        user can open ``/dev/kvm``; when root can and that user cannot (a
        host where udev never applied its ``kvm`` rule), libvirtd
        invalidates its capability cache on every lookup, so each define
        re-probes QEMU for about a minute. That holds for ``virt_type =
        qemu`` too, so the check is made for every local QEMU connection.

        :returns: one line for the operator, or nothing.
        """
        if not self.is_local_qemu():
            return []
        try:
            st = os.stat(device)
        except FileNotFoundError:
            return []
        except OSError as exc:
            return ['cannot inspect %s: %s' % (device, exc.strerror)]
        if not stat.S_ISCHR(st.st_mode):
            return []
        label = self.get_dac_label()
        if label is None:
            return []
        uid, gid = label
        message = kvm_access_problem(device, st, uid, gid)
        return [message] if message else []

    def hypervisor_version_int(self) -> int:
        """The hypervisor's version as Nova's integer ``8000001``."""
        return objects.version_to_int(self.get_hypervisor_version())

    def get_dac_label(self) -> tuple[int, int] | None:
        """The uid and gid the hypervisor's processes run as, if known.

        Read from the DAC security model of the host capabilities
        (``<baselabel type='kvm'>+64055:+108</baselabel>``), which is
        what ``qemu.conf``'s ``user`` and ``group`` resolved to. ``None``
        when libvirt reports no DAC label (a session connection runs
        guests as the caller).
        """
        from xml.etree import ElementTree
        try:
            caps = ElementTree.fromstring(
                self.get_connection().getCapabilities())
        except (libvirt.libvirtError, ElementTree.ParseError) as exc:
            LOG.debug('Cannot read the capabilities of %s: %s', self.uri,
                      exc)
            return None
        return parse_dac_label(caps, self.virt_type)
