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

"""Veth pairs into network namespaces, through netlink with pyroute2.

What a container backend needs to give a container the ports it was
given: the container starts with no network, and each port becomes a
veth pair whose host end (the port's device name) joins the port's
bridge and whose other end moves into the container's network namespace
as ``eth0``, ``eth1``..., with the port's MAC, MTU, addresses and
default routes. Every call talks netlink directly; nothing runs ``ip``.

Removal is idempotent: deleting what is already gone succeeds.
"""

import collections.abc
import contextlib
import ipaddress
import os
import typing

from compute_driver.network import exception as net_exception
from compute_driver.network import model

#: Where ``ip netns add`` and pyroute2 keep named namespaces.
NETNS_RUN_DIR = '/var/run/netns'

# errno values netlink answers with, named for the checks below.
_ENOENT = 2
_ENODEV = 19
_EEXIST = 17
_EBUSY = 16
_LOOPBACK_INDEX = 1

Netns = typing.Union[str, int, None]


def _pyroute2() -> typing.Any:
    return net_exception.import_sdk('pyroute2')


def netns_path(netns: str | int) -> str:
    """The file of a network namespace.

    :param netns: a process id (its namespace), a name under
        :data:`NETNS_RUN_DIR`, or a path such as docker's
        ``/var/run/docker/netns/<id>``.
    :raises NetnsNotFound: when that namespace does not exist.
    """
    if isinstance(netns, int) and not isinstance(netns, bool):
        path = '/proc/%d/ns/net' % netns
    elif isinstance(netns, str) and netns and '/' in netns:
        path = netns
    elif isinstance(netns, str) and netns not in ('', '.', '..'):
        path = os.path.join(NETNS_RUN_DIR, netns)
    else:
        raise net_exception.NetnsNotFound(
            netns=netns, reason='expected a pid, a name or a path')
    if not os.path.exists(path):
        raise net_exception.NetnsNotFound(
            netns=netns, reason='%s does not exist' % path)
    return path


@contextlib.contextmanager
def route(netns: Netns = None) -> collections.abc.Iterator[typing.Any]:
    """An rtnetlink socket in the host's namespace or in ``netns``.

    :param netns: see :func:`netns_path`; ``None`` for this process's.
    """
    pyroute2 = _pyroute2()
    if netns is None:
        ipr = pyroute2.IPRoute()
    else:
        # flags=0: open an existing namespace only; pyroute2's default
        # creates a missing one, which would hide a wrong name.
        ipr = pyroute2.NetNS(netns_path(netns), flags=0)
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: typing.Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _wrap(operation: str, device: str,
          error: Exception) -> net_exception.NetlinkError:
    reason = getattr(error, 'args', None) or (str(error),)
    return net_exception.NetlinkError(
        operation=operation, device=device,
        reason=' '.join(str(a) for a in reason))


def link_exists(name: str, netns: Netns = None) -> bool:
    """Whether interface ``name`` exists (in ``netns``)."""
    with route(netns) as ipr:
        return _index(ipr, name) is not None


def link_info(name: str, netns: Netns = None) -> dict[str, typing.Any]:
    """An interface's MAC, MTU, state, master and addresses.

    :returns: ``{'mac', 'mtu', 'up', 'master', 'kind', 'addresses'}``
        where ``master`` is the bridge's name or ``None`` and
        ``addresses`` lists ``address/prefixlen`` strings.
    :raises NetlinkError: when the interface does not exist.
    """
    with route(netns) as ipr:
        index = _index(ipr, name)
        if index is None:
            raise net_exception.NetlinkError(
                operation='read', device=name, reason='no such interface')
        link = ipr.get_links(index)[0]
        master_index = link.get_attr('IFLA_MASTER')
        master = None
        if master_index:
            master = ipr.get_links(master_index)[0].get_attr('IFLA_IFNAME')
        linkinfo = link.get_attr('IFLA_LINKINFO')
        kind = linkinfo.get_attr('IFLA_INFO_KIND') if linkinfo else None
        addresses = ['%s/%d' % (a.get_attr('IFA_ADDRESS'), a['prefixlen'])
                     for a in ipr.get_addr(index=index)]
        return {'mac': link.get_attr('IFLA_ADDRESS'),
                'mtu': link.get_attr('IFLA_MTU'),
                'up': bool(link['flags'] & 1),
                'master': master, 'kind': kind, 'addresses': addresses}


def create_bridge(name: str, mtu: int | None = None,
                  netns: Netns = None) -> bool:
    """Create Linux bridge ``name`` and bring it up.

    :returns: whether it was created (``False``: it already existed).
    """
    with route(netns) as ipr:
        created = False
        if _index(ipr, name) is None:
            try:
                ipr.link('add', ifname=name, kind='bridge')
                created = True
            except Exception as exc:
                if getattr(exc, 'code', None) != _EEXIST:
                    raise _wrap('create bridge', name, exc) from exc
        index = _index(ipr, name)
        kwargs: dict[str, typing.Any] = {'state': 'up'}
        if mtu is not None:
            kwargs['mtu'] = mtu
        ipr.link('set', index=index, **kwargs)
        return created


def ensure_vlan(parent: str, vlan: int, bridge: str,
                mtu: int | None = None) -> str:
    """Create VLAN ``vlan`` on ``parent`` and make it a port of ``bridge``.

    :returns: the VLAN interface's name, ``vlan<id>`` (``parent.id`` may
        not fit in the 15 characters Linux allows).
    :raises NetlinkError: when ``parent`` does not exist.
    """
    name = 'vlan%d' % vlan
    with route() as ipr:
        if _index(ipr, name) is None:
            parent_index = _index(ipr, parent)
            if parent_index is None:
                raise net_exception.NetlinkError(
                    operation='create VLAN %d on' % vlan, device=parent,
                    reason='no such interface')
            try:
                ipr.link('add', ifname=name, kind='vlan',
                         link=parent_index, vlan_id=vlan)
            except Exception as exc:
                if getattr(exc, 'code', None) != _EEXIST:
                    raise _wrap('create VLAN %d on' % vlan, parent,
                                exc) from exc
    attach_to_bridge(name, bridge, mtu=mtu)
    return name


def _delete_index(ipr: typing.Any, name: str) -> bool:
    """Delete ``name`` through the open socket ``ipr``; gone is fine."""
    index = _index(ipr, name)
    if index is None:
        return False
    try:
        ipr.link('del', index=index)
    except Exception as exc:
        if getattr(exc, 'code', None) in (_ENODEV, _ENOENT):
            return False
        raise _wrap('delete', name, exc) from exc
    return True


def delete_link(name: str, netns: Netns = None) -> bool:
    """Delete interface ``name``; a veth's peer goes with it.

    :returns: whether it existed.
    :raises NetlinkError: when it exists and cannot be deleted.
    """
    try:
        ctx = route(netns)
        ipr = ctx.__enter__()
    except net_exception.NetnsNotFound:
        # The namespace went first (the container exited): everything in
        # it has gone with it.
        return False
    try:
        return _delete_index(ipr, name)
    finally:
        ctx.__exit__(None, None, None)


def create_veth(host_name: str, peer_name: str,
                mtu: int | None = None) -> None:
    """Create veth pair ``host_name``/``peer_name`` in this namespace.

    An existing pair of these names is kept, so a re-plug after a
    partial failure does not fail on what the first try made.

    :raises NetlinkError: when ``host_name`` exists and is no veth, or
        the kernel refuses.
    """
    with route() as ipr:
        _create_veth(ipr, host_name, peer_name, mtu)


def _create_veth(ipr: typing.Any, host_name: str, peer_name: str,
                 mtu: int | None, set_mtu: bool = True) -> None:
    # set_mtu=False: the caller sets the MTU with the next change of the
    # link, one netlink call fewer.
    index = _index(ipr, host_name)
    if index is None:
        try:
            ipr.link('add', ifname=host_name, kind='veth',
                     peer={'ifname': peer_name})
        except Exception as exc:
            raise _wrap('create veth', host_name, exc) from exc
        index = _index(ipr, host_name)
        if not set_mtu:
            return
    else:
        linkinfo = ipr.get_links(index)[0].get_attr('IFLA_LINKINFO')
        kind = linkinfo.get_attr('IFLA_INFO_KIND') if linkinfo else None
        if kind != 'veth':
            raise net_exception.NetlinkError(
                operation='create veth', device=host_name,
                reason='an interface of kind %s has that name' % kind)
    if mtu is not None:
        ipr.link('set', index=index, mtu=mtu)


def attach_to_bridge(name: str, bridge: str, port: str = '?',
                     mtu: int | None = None) -> None:
    """Make ``name`` a port of ``bridge`` and bring it up.

    :param port: the port's id, to name it in errors.
    :raises BridgeNotFound: when ``bridge`` does not exist or is no
        bridge.
    """
    with route() as ipr:
        _attach(ipr, name, bridge, port, mtu)


def _attach(ipr: typing.Any, name: str, bridge: str, port: str,
            mtu: int | None) -> None:
    bridge_index = _index(ipr, bridge)
    if bridge_index is None:
        raise net_exception.BridgeNotFound(bridge=bridge, port=port)
    linkinfo = ipr.get_links(bridge_index)[0].get_attr('IFLA_LINKINFO')
    if not linkinfo or linkinfo.get_attr('IFLA_INFO_KIND') != 'bridge':
        raise net_exception.BridgeNotFound(bridge=bridge, port=port)
    index = _index(ipr, name)
    if index is None:
        raise net_exception.NetlinkError(
            operation='attach to bridge %s' % bridge, device=name,
            reason='no such interface')
    kwargs: dict[str, typing.Any] = {'master': bridge_index, 'state': 'up'}
    if mtu is not None:
        kwargs['mtu'] = mtu
    try:
        ipr.link('set', index=index, **kwargs)
    except Exception as exc:
        raise _wrap('attach to bridge %s' % bridge, name, exc) from exc


def move_to_netns(name: str, netns: str | int,
                  source: Netns = None) -> None:
    """Move interface ``name`` into ``netns``.

    :param source: the namespace it is in; ``None`` for this one.
    """
    path = netns_path(netns)
    with route(source) as ipr:
        _move(ipr, name, path)


def _move(ipr: typing.Any, name: str, path: str) -> None:
    index = _index(ipr, name)
    if index is None:
        raise net_exception.NetlinkError(
            operation='move to %s' % path, device=name,
            reason='no such interface')
    fd = os.open(path, os.O_RDONLY)
    try:
        ipr.link('set', index=index, net_ns_fd=fd)
    except Exception as exc:
        raise _wrap('move to %s' % path, name, exc) from exc
    finally:
        os.close(fd)


def configure(name: str, netns: Netns = None, *,
              new_name: str | None = None, mac: str | None = None,
              mtu: int | None = None,
              addresses: collections.abc.Iterable[str] = (),
              gateways: collections.abc.Mapping[int, str] | None = None
              ) -> str:
    """Rename ``name``, set its MAC and MTU, add addresses and routes.

    The interface is brought down to be renamed and up at the end, then
    each of ``addresses`` (``address/prefixlen``) is added and a default
    route through each of ``gateways`` (``{ip_version: gateway}``).
    Addresses and routes already there are kept.

    :returns: the interface's name at the end.
    """
    with route(netns) as ipr:
        index = _index(ipr, name)
        if index is None:
            raise net_exception.NetlinkError(
                operation='configure', device=name,
                reason='no such interface')
        try:
            settings: dict[str, typing.Any] = {}
            if new_name is not None and new_name != name:
                settings['ifname'] = new_name
            if mac is not None:
                settings['address'] = mac
            if mtu is not None:
                settings['mtu'] = mtu
            try:
                ipr.link('set', index=index, state='up', **settings)
            except Exception as exc:
                # Linux renames only a link that is down. A peer just
                # moved into the namespace is, so the common case takes
                # one call; a configured one is brought down first.
                if getattr(exc, 'code', None) != _EBUSY:
                    raise
                ipr.link('set', index=index, state='down')
                ipr.link('set', index=index, state='up', **settings)
            # The loopback of a fresh namespace is down; services inside
            # (and ping to the instance's own address) need it. Its index
            # is 1 in every namespace (LOOPBACK_IFINDEX).
            ipr.link('set', index=_LOOPBACK_INDEX, state='up')
            for cidr in addresses:
                iface = ipaddress.ip_interface(cidr)
                try:
                    ipr.addr('add', index=index, address=str(iface.ip),
                             prefixlen=iface.network.prefixlen)
                except Exception as exc:
                    if getattr(exc, 'code', None) != _EEXIST:
                        raise
            for version, gateway in sorted((gateways or {}).items()):
                dst = '0.0.0.0/0' if version == 4 else '::/0'
                try:
                    ipr.route('add', dst=dst, gateway=gateway, oif=index)
                except Exception as exc:
                    if getattr(exc, 'code', None) != _EEXIST:
                        raise
        except net_exception.NetlinkError:
            raise
        except Exception as exc:
            raise _wrap('configure', name, exc) from exc
    return new_name or name


def peer_name(port: model.Port) -> str:
    """The temporary host-side name of a port's namespace end.

    Unique per port, so two ports can be wired at once; it only lives
    until the end is moved and renamed.
    """
    return ('cdv' + port.id.replace('-', ''))[:15]


def plug_veth(port: model.Port, netns: str | int, ifname: str,
              attach: bool = True) -> None:
    """Wire ``port`` into ``netns`` as ``ifname`` through a veth pair.

    The host end is named ``port.devname`` and joins ``port.bridge``
    (unless ``attach`` is false: the ``ovs`` or ``noop`` plugin attaches
    it); the other end gets the port's MAC, MTU, fixed IPs and default
    routes. On failure the pair is deleted, so nothing is left behind.
    A port wired already is only checked, so plugging again after a
    restart keeps a working port.

    :raises BridgeNotFound: when the port's bridge does not exist.
    :raises NetnsNotFound: when ``netns`` does not exist.
    :raises NetlinkError: when the kernel refuses a step.
    """
    model.validate_ifname(ifname, port.id, 'interface name')
    path = netns_path(netns)
    peer = peer_name(port)
    bridge = port.bridge if attach else None
    settings: dict[str, typing.Any] = {
        'mac': port.mac, 'mtu': port.mtu,
        'addresses': [ip.interface for ip in port.fixed_ips],
        'gateways': port.gateways()}
    # One socket for every step on this side: opening one per step costs
    # as much as the steps themselves.
    with route() as ipr:
        if bridge is not None and _index(ipr, bridge) is None:
            raise net_exception.BridgeNotFound(bridge=bridge, port=port.id)
        if (_index(ipr, port.devname) is not None
                and _index(ipr, peer) is None):
            if link_exists(ifname, path):
                if bridge is not None:
                    _attach(ipr, port.devname, bridge, port.id, port.mtu)
                configure(ifname, path, **settings)
                return
            # Its peer is in another namespace (the container's previous
            # one): start again. The kernel may be deleting it already,
            # as it frees that namespace.
            _delete_index(ipr, port.devname)
        _create_veth(ipr, port.devname, peer, port.mtu, set_mtu=False)
        try:
            if bridge is not None:
                _attach(ipr, port.devname, bridge, port.id, port.mtu)
            else:
                up: dict[str, typing.Any] = {'state': 'up'}
                if port.mtu is not None:
                    up['mtu'] = port.mtu
                ipr.link('set', index=_index(ipr, port.devname), **up)
            _move(ipr, peer, path)
            configure(peer, path, new_name=ifname, **settings)
        except BaseException:
            delete_link(port.devname)
            raise


def unplug_veth(port: model.Port) -> bool:
    """Delete ``port``'s veth pair; ``False`` when it was already gone."""
    removed = delete_link(port.devname)
    # A failed plug may have left the peer unmoved under its temporary
    # name; deleting the host end took it too, so this only catches a
    # peer whose host end was deleted by hand.
    return delete_link(peer_name(port)) or removed
