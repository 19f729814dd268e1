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

"""Nova's objects turned into the library's, and the library's errors
turned into Nova's.

Nova hands drivers versioned objects (``Instance``, ``Flavor``,
``ImageMeta``) and a ``NetworkInfo`` model; the backends take the plain,
self-validating dataclasses of :mod:`compute_driver.objects`. The
functions here read only the fields the contract needs, so a backend
never sees a Nova object.
"""

import collections.abc
import contextlib
import copy
import ipaddress
import logging
import typing

from nova import exception as nova_exception

from compute_driver import exception
from compute_driver.network import exception as net_exception
from compute_driver import objects

LOG = logging.getLogger(__name__)

#: Stands for the image of an instance Nova keeps no image for (one booted
#: from a volume). Backends look instances up by uuid, so for any call but
#: spawn the reference only has to be well formed.
NO_IMAGE = 'none'


def flavor(nova_flavor: typing.Any) -> objects.Flavor:
    """The library's :class:`~compute_driver.objects.Flavor` of a Nova one.

    :raises InvalidInput: when a value is out of the library's bounds.
    """
    return objects.Flavor(
        name=str(nova_flavor.name),
        vcpus=int(nova_flavor.vcpus),
        memory_mb=int(nova_flavor.memory_mb),
        root_gb=int(nova_flavor.root_gb or 0),
        ephemeral_gb=int(nova_flavor.ephemeral_gb or 0),
        swap=int(nova_flavor.swap or 0),
        extra_specs={str(k): str(v) for k, v in
                     (nova_flavor.extra_specs or {}).items()})


def instance(nova_instance: typing.Any,
             image_ref: str | None = None) -> objects.Instance:
    """The library's :class:`~compute_driver.objects.Instance` of a Nova one.

    :param image_ref: the backend's reference of the instance's image, as
        :func:`image_ref` resolved it at spawn time; other calls leave it
        out and get Nova's image id (or :data:`NO_IMAGE`).
    :raises InvalidInput: when Nova's name for the instance (from
        ``[DEFAULT] instance_name_template``) is not one every backend
        can store.
    """
    # Nova's compute manager hands over instances with their metadata
    # loaded; reading an unloaded field would cost a database round trip
    # per call for a value no backend needs to find the instance.
    loaded = getattr(nova_instance, 'obj_attr_is_set', None)
    metadata = ((nova_instance.metadata or {})
                if loaded is None or loaded('metadata') else {})
    return objects.Instance(
        uuid=nova_instance.uuid,
        name=nova_instance.name,
        flavor=flavor(nova_instance.flavor),
        image_ref=image_ref or nova_instance.image_ref or NO_IMAGE,
        metadata={str(k): str(v) for k, v in metadata.items()})


def image_candidates(image_meta: typing.Any,
                     image_map: collections.abc.Mapping[str, str]
                     ) -> list[str]:
    """The backend references an image may be known under, best first.

    An ``image_map`` entry for the Glance id, then for the Glance name;
    without one, the id itself (the name snapshots taken through the
    adapter are stored under), then the name. Those that cannot be an
    image reference (a Glance name with spaces) are left out.
    """
    glance_id = image_meta.id if image_meta.obj_attr_is_set('id') else None
    name = image_meta.name if image_meta.obj_attr_is_set('name') else None
    refs = [ref for ref in (glance_id, name) if ref]
    for key in refs:
        if key in image_map:
            refs = [image_map[key]]
            break
    candidates = []
    for ref in refs:
        try:
            candidates.append(objects.validate_image_ref(ref))
        except exception.InvalidInput:
            LOG.debug('%r cannot be a backend image reference', ref)
    return candidates


def container_volumes(block_device_info: typing.Any) -> typing.Any:
    """``block_device_info`` with container paths as mount devices.

    Nova puts ``/dev/`` in front of every device name a server's block
    device mapping gives, a path included: ``/data`` becomes
    ``/dev//data``. A container backend mounts volumes at paths in the
    container, so the path given is restored; Nova's own names
    (``/dev/sdb``) are left as they are. The mappings are copied, Nova's
    are not changed.
    """
    if not block_device_info:
        return block_device_info
    mappings = []
    for bdm in block_device_info.get('block_device_mapping') or ():
        mapping = dict(bdm)
        mount = mapping.get('mount_device')
        if isinstance(mount, str) and mount.startswith('/dev//'):
            mapping['mount_device'] = mount[len('/dev/'):]
        mappings.append(mapping)
    return dict(block_device_info, block_device_mapping=mappings)


def network_info(nova_network_info: typing.Any) -> list[dict[str, object]]:
    """Nova's ``NetworkInfo`` as plain data: one dict per port.

    Each has the port ``id``, the MAC ``address``, the VIF ``type``,
    ``devname``, the network's ``id``, ``bridge``, ``label`` and ``mtu``,
    and the fixed ``ips`` with their ``cidr``.
    """
    ports: list[dict[str, object]] = []
    for vif in nova_network_info or []:
        network = vif.get('network') or {}
        ips = []
        for subnet in network.get('subnets') or []:
            for ip in subnet.get('ips') or []:
                ips.append({'address': str(ip['address']),
                            'cidr': str(subnet.get('cidr') or '')})
        ports.append({
            'id': vif.get('id'),
            'address': vif.get('address'),
            'type': vif.get('type'),
            'devname': vif.get('devname'),
            'network_id': network.get('id'),
            'bridge': network.get('bridge'),
            'label': network.get('label'),
            'mtu': (network.get('meta') or {}).get('mtu'),
            'ips': ips,
        })
    return ports


def ports(nova_network_info: typing.Any) -> tuple[typing.Any, ...]:
    """Nova's ``NetworkInfo`` as the contract's typed ports.

    Every field the backends plug with is kept (the subnet's gateway, the
    VLAN, whether the host provides the bridge), where
    :func:`network_info`'s plain data has a summary. Ports already
    converted pass unchanged.

    :returns: :class:`~compute_driver.network.model.Port` objects, in the
        order of Nova's VIFs (the guest's NIC order).
    :raises InvalidInput: (a subclass) for a port no backend could plug:
        a VIF type without an os-vif plugin, a malformed MAC or fixed IP.
    """
    # Imported here: only an adapter given ports needs the model.
    from compute_driver.network import model as net_model
    vifs = copy.deepcopy(list(nova_network_info or []))
    for vif in vifs:
        network = vif.get('network') if isinstance(
            vif, collections.abc.Mapping) else None
        for subnet in (network or {}).get('subnets') or []:
            # Older Neutron releases stored a subnet's CIDR as given,
            # host bits included (192.0.2.1/24): the subnet is the same.
            try:
                subnet['cidr'] = str(ipaddress.ip_network(
                    str(subnet.get('cidr')), strict=False))
            except ValueError:
                continue
    return net_model.from_network_info(vifs)


def plug_events(nova_network_info: typing.Any) -> list[tuple[str, str]]:
    """The ``network-vif-plugged`` events Neutron will send for its ports.

    As Nova's libvirt driver decides: only ports Neutron has not reported
    active will go from down to up; a port Nova's cache already has as
    active, or whose state it does not know, is not waited for, and
    neither is a ``remote-managed`` one (its NIC is wired off this host).
    """
    return [('network-vif-plugged', str(vif['id']))
            for vif in nova_network_info or []
            if vif.get('active', True) is False and
            vif.get('vnic_type') != 'remote-managed']


def _uuid_of(error: exception.ComputeDriverError,
             uuid: str | None) -> str:
    return uuid or str(error.kwargs.get('instance', ''))


def nova_error(error: exception.ComputeDriverError,
               uuid: str | None = None) -> BaseException:
    """The exception Nova expects in place of one of the library's.

    Nova's compute manager acts on the type (``InstanceNotFound`` ends a
    delete quietly, ``ComputeResourcesUnavailable`` reschedules a build,
    ``NotImplementedError`` reports an unsupported operation as such), so
    each error of the contract has its Nova counterpart; the message is
    the library's.

    :param uuid: the instance the call was about, when there is one.
    """
    message = str(error)
    if isinstance(error, exception.NotSupported):
        return NotImplementedError(message)
    if isinstance(error, exception.InstanceNotFound):
        return nova_exception.InstanceNotFound(
            instance_id=_uuid_of(error, uuid))
    if isinstance(error, exception.InstanceExists):
        return nova_exception.InstanceExists(
            message=message, name=error.kwargs.get('instance'))
    if isinstance(error, exception.ImageNotFound):
        return nova_exception.ImageNotFound(
            message=message, image_id=error.kwargs.get('image'))
    if isinstance(error, exception.ImageUnacceptable):
        # Nova aborts a build on it rather than trying another host: the
        # image is as bad there.
        return nova_exception.ImageUnacceptable(
            message=message, image_id=error.kwargs.get('image'),
            reason=message)
    if isinstance(error, exception.FlavorNotFound):
        return nova_exception.FlavorNotFound(
            message=message, flavor_id=error.kwargs.get('flavor'))
    if isinstance(error, exception.InvalidPowerState):
        return nova_exception.InstanceInvalidState(
            message=message, attr='power_state',
            instance_uuid=_uuid_of(error, uuid),
            state=error.kwargs.get('current'),
            method=error.kwargs.get('operation'))
    if isinstance(error, exception.InsufficientResources):
        return nova_exception.ComputeResourcesUnavailable(reason=message)
    if isinstance(error, exception.HypervisorUnavailable):
        return nova_exception.HypervisorUnavailable(message=message)
    if isinstance(error, (exception.InvalidConfiguration,
                          exception.HypervisorVersionTooOld,
                          exception.DriverNotFound,
                          exception.DriverLoadError)):
        return nova_exception.InvalidConfiguration(message=message)
    if isinstance(error, exception.InvalidInput):
        return nova_exception.InvalidInput(reason=message)
    if isinstance(error, net_exception.PlugFailed):
        # Nova's compute manager tells a port the host could not wire by
        # this type.
        return nova_exception.VirtualInterfacePlugException(message)
    return nova_exception.InternalError(message=message)


@contextlib.contextmanager
def nova_errors(uuid: str | None = None) -> collections.abc.Iterator[None]:
    """Raise :func:`nova_error` of any library error raised inside.

    The library's exception stays attached as ``__cause__``.
    """
    try:
        yield
    except exception.ComputeDriverError as error:
        raise nova_error(error, uuid) from error
