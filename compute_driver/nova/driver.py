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

"""The Nova adapter: a ``nova.virt.driver.ComputeDriver`` over any backend.

nova.conf selects it with ``[DEFAULT] compute_driver =``
:data:`compute_driver.nova.NOVA_COMPUTE_DRIVER` (through the shim that
:mod:`compute_driver.nova.shim` installs in ``nova.virt``) and names the
backend and the library's configuration file in ``[compute_driver_adapter]``
(:mod:`compute_driver.nova.conf`).

What the adapter does on top of the backend:

* turns Nova's objects into the library's and the library's errors into
  Nova's (:mod:`compute_driver.nova.convert`);
* calls operations through the contract's table
  (:data:`compute_driver.driver.OPERATIONS`): one the backend's
  ``capabilities`` lack is refused with ``NotImplementedError``, Nova's
  signal for it, and, as in Nova's own drivers, one whose result already
  holds (unpausing a running instance) is done
  (``already_done_is_success``);
* forwards the backend's lifecycle events to Nova's compute manager as
  ``nova.virt.event.LifecycleEvent``;
* reports VCPU, MEMORY_MB and DISK_GB inventory to placement with Nova's
  allocation ratios and ``reserved_host_*`` options;
* names each node with a uuid derived from the backend's host identity
  (:mod:`compute_driver.nova.node`);
* disables its compute service while the backend is unavailable
  (:mod:`compute_driver.nova.service`).
"""

import contextlib
import logging
import threading
import typing

import os_resource_classes as orc

from nova.compute import utils as compute_utils
from nova import conf as nova_conf
from nova import exception as nova_exception
from nova.objects import fields as obj_fields
from nova.virt import driver
from nova.virt import event as nova_event
from nova.virt import hardware

from compute_driver import conf as cd_conf
from compute_driver import driver as contract
from compute_driver import event as cd_event
from compute_driver import exception
from compute_driver import loader
from compute_driver.nova import conf as adapter_conf
from compute_driver.nova import convert
from compute_driver.nova import images as nova_images
from compute_driver.nova import node
from compute_driver.nova import service
from compute_driver import objects
from compute_driver import power_state

LOG = logging.getLogger(__name__)

CONF = nova_conf.CONF
adapter_conf.register_opts(CONF)

#: Nova methods of an optional operation that the adapter serves without
#: it, as Nova's own defaults do.
_SERVED_WITHOUT_BACKEND = ('cleanup_host', 'instance_exists',
                           'get_host_ip_addr')


def _architecture(resources: objects.HostResources) -> str:
    """The architecture of the backend's host, in Nova's spelling.

    The backend's own ``cpu_info`` says it: the host it drives may be
    another machine than nova-compute's (a remote dockerd, a XenServer
    pool), and asking the local kernel (``os.uname``, which Nova's test
    fixtures forbid) is only the fallback for a backend that does not say.
    """
    arch = resources.cpu_info.get('arch')
    if isinstance(arch, str):
        try:
            return str(obj_fields.Architecture.canonicalize(arch))
        except nova_exception.InvalidArchitectureName:
            LOG.debug('The backend reports an unknown architecture %r',
                      arch)
    return str(obj_fields.Architecture.from_host())


def _hypervisor_spec(resources: objects.HostResources,
                     containers: bool) -> list[list[str]]:
    """``supported_instances`` for the compute node record.

    Nova only accepts hypervisor types it knows (``HVType``); a backend
    reporting another type gets no entry rather than a broken record.

    :param containers: the backend's ``runs_containers``: its instances
        are processes on the host (Nova's ``exe`` mode), not machines.
    """
    hv_type = resources.hypervisor_type.lower()
    if hv_type not in obj_fields.HVType.ALL:
        return []
    vm_mode = (obj_fields.VMMode.EXE if containers
               else obj_fields.VMMode.HVM)
    return [[_architecture(resources), hv_type, vm_mode]]


class ComputeDriverAdapter(driver.ComputeDriver):
    """Run a compute-driver backend as nova-compute's virt driver.

    :param virtapi: Nova's ``VirtAPI``, handed on to the backend.
    :raises nova.exception.InvalidConfiguration: when
        ``[compute_driver_adapter] backend`` is unset, or the backend or its
        configuration file cannot be loaded.
    """

    capabilities = dict(driver.ComputeDriver.capabilities)

    def __init__(self, virtapi: typing.Any) -> None:
        super().__init__(virtapi)
        group = CONF.compute_driver_adapter
        if not group.backend:
            raise nova_exception.InvalidConfiguration(
                message='[compute_driver_adapter] backend must name the '
                        'compute-driver backend nova-compute runs')
        with convert.nova_errors():
            self.conf = cd_conf.build_conf(
                config_files=[group.config_file] if group.config_file
                else [], backend=group.backend)
            # nova.conf says which host this is and which backend runs
            # here; the library's file only holds the backend's options.
            self.conf.set_override('host', CONF.host)
            self.conf.set_override('compute_driver', group.backend)
            self._follow_nova_claim_policy()
            self.backend = loader.load_driver(self.conf, group.backend,
                                              virtapi=virtapi)
            self.backend.already_done_is_success = True
        self._use_image_service(group.image_service)
        self.image_map = dict(group.image_map)
        self._node_uuids: dict[str, str] = {}
        self._node_lock = threading.Lock()
        self._service = service.ServiceStatus(virtapi, CONF.host)
        self.capabilities = dict(self.capabilities)
        # Nova's supports_image_type_* capabilities, which it reports
        # as COMPUTE_IMAGE_TYPE_* traits.
        for image_type in self.backend.image_types:
            self.capabilities['supports_image_type_%s' % image_type] = True

    def _follow_nova_claim_policy(self) -> None:
        # The backend's claims must admit what placement granted: the
        # same ratios and reservations as the inventory reported to it.
        ratios = self._get_allocation_ratios({})
        for name, rc in (('cpu', orc.VCPU), ('ram', orc.MEMORY_MB),
                         ('disk', orc.DISK_GB)):
            self.conf.set_override('%s_allocation_ratio' % name, ratios[rc])
        for option in ('reserved_host_cpus', 'reserved_host_memory_mb',
                       'reserved_host_disk_mb'):
            self.conf.set_override(option, CONF[option])

    # -- helpers -------------------------------------------------------------

    def unsupported_methods(self) -> list[str]:
        """Nova driver methods this backend cannot serve, sorted.

        Those Nova's driver has under the method name of an operation of
        :data:`compute_driver.driver.OPERATIONS` (``reboot`` has two), and
        ``resume_state_on_host_boot`` (a hard reboot), when the backend's
        ``capabilities`` lack all their operations; they raise
        ``NotImplementedError``.
        """
        needs = {'resume_state_on_host_boot': ['hard_reboot']}
        for name, operation in contract.OPERATIONS.items():
            if (hasattr(driver.ComputeDriver, operation.method) and
                    operation.method not in _SERVED_WITHOUT_BACKEND):
                needs.setdefault(operation.method, []).append(name)
        return sorted(method for method, ops in needs.items()
                      if not any(self.backend.supports(op) for op in ops))

    def _perform(self, operation: str, instance: typing.Any = None,
                 **params: object) -> typing.Any:
        """Run an operation of the contract's table with Nova's errors.

        :param operation: a key of :data:`compute_driver.driver.OPERATIONS`.
        :param instance: Nova's instance, for an operation on one.
        :param params: the operation's further arguments.
        """
        with convert.nova_errors(getattr(instance, 'uuid', None)):
            ours = None if instance is None else self._instance(instance)
            return contract.OPERATIONS[operation].call(self.backend, ours,
                                                       **params)

    def _instance(self, instance: typing.Any) -> objects.Instance:
        """The library's instance for a Nova one.

        Nova's compute manager passes ``objects.Instance`` with its flavor
        (loaded on first use when it is not); anything less (a database
        row, as some of Nova's own tests pass, or an object without a
        context to load the flavor with) is looked up on the backend by
        uuid instead.
        """
        with convert.nova_errors(instance.uuid):
            try:
                return convert.instance(instance)
            except (AttributeError, KeyError,
                    nova_exception.OrphanedObjectError):
                return self.backend.find_instance(instance.uuid).instance

    def _emit_from_backend(self, event: cd_event.Event) -> None:
        if not isinstance(event, cd_event.LifecycleEvent):
            LOG.debug('Not forwarding %r to Nova', event)
            return
        self.emit_event(nova_event.LifecycleEvent(
            event.uuid, event.transition, event.timestamp))

    # -- host ----------------------------------------------------------------

    def init_host(self, host: str) -> None:
        with convert.nova_errors():
            self.backend.init_host(host)
        self.backend.register_event_listener(self._emit_from_backend)

    def cleanup_host(self, host: str) -> None:
        self.backend.register_event_listener(None)
        # Optional in Nova too, whose default does nothing.
        with convert.nova_errors(), \
                contextlib.suppress(exception.NotSupported):
            self.backend.cleanup_host(host)

    def get_available_resource(self, nodename: str) -> dict[str, object]:
        """The node's resources, as Nova's resource tracker records them.

        Nova calls this periodically; it is also where the adapter learns
        that the backend is unavailable, and disables this host's compute
        service until the backend answers again (see :mod:`.service`).
        """
        try:
            with convert.nova_errors():
                resources = self.backend.get_available_resource(nodename)
        except nova_exception.HypervisorUnavailable as exc:
            with self._node_lock:
                nodes = list(self._node_uuids.values())
            self._service.backend_unavailable(exc.format_message(), nodes)
            raise
        data = resources.to_dict()
        data['supported_instances'] = _hypervisor_spec(
            resources, self.backend.runs_containers)
        data['uuid'] = self._node_uuid(nodename)
        self._service.backend_available([str(data['uuid'])])
        return data

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        with convert.nova_errors():
            return self.backend.get_available_nodes(refresh)

    def get_nodenames_by_uuid(self, refresh: bool = False) -> dict[str, str]:
        """The backend's nodes by their uuids (see :mod:`.node`).

        Nova's default gives every node of the process one uuid, which
        several compute services in one process, or a backend host moved
        to another nova-compute, would collide on or lose.
        """
        return {self._node_uuid(name): name
                for name in self.get_available_nodes(refresh)}

    def _node_uuid(self, nodename: str) -> str:
        with self._node_lock:
            if nodename not in self._node_uuids:
                with convert.nova_errors():
                    self._node_uuids[nodename] = node.node_uuid(
                        self.backend, nodename)
            return self._node_uuids[nodename]

    def update_provider_tree(self, provider_tree: typing.Any, nodename: str,
                             allocations: object = None) -> None:
        """Report the host's VCPU, MEMORY_MB and DISK_GB to placement.

        Totals are the backend's capacity; ``reserved`` comes from Nova's
        ``reserved_host_cpus``, ``reserved_host_memory_mb`` and
        ``reserved_host_disk_mb``, and the allocation ratios from
        ``*_allocation_ratio`` or, when unset, what placement already has
        or ``initial_*_allocation_ratio``. A backend that cannot tell its
        disk size (docker over TCP with ``[docker] disk_gb = 0``) reports
        no DISK_GB rather than a made-up one.
        """
        with convert.nova_errors():
            resources = self.backend.get_available_resource(nodename)
        current = provider_tree.data(nodename).inventory
        ratios = self._get_allocation_ratios(current)
        totals = ((orc.VCPU, resources.vcpus, CONF.reserved_host_cpus),
                  (orc.MEMORY_MB, resources.memory_mb,
                   CONF.reserved_host_memory_mb),
                  (orc.DISK_GB, resources.local_gb,
                   compute_utils.convert_mb_to_ceil_gb(
                       CONF.reserved_host_disk_mb)))
        inventory = {}
        for rc, total, reserved in totals:
            if total <= 0:
                continue
            inventory[rc] = {
                'total': total,
                'min_unit': 1,
                'max_unit': total,
                'step_size': 1,
                'allocation_ratio': ratios[rc],
                'reserved': reserved,
            }
        provider_tree.update_inventory(nodename, inventory)

    def get_host_ip_addr(self) -> str:
        # The address other OpenStack services reach this host at, which is
        # Nova's to know: a backend sees its own (a unix-socket dockerd
        # would say 127.0.0.1).
        return str(CONF.my_ip)

    def get_host_uptime(self) -> str:
        return str(self._perform('host_uptime'))

    # -- instances -----------------------------------------------------------

    def list_instances(self) -> list[str]:
        with convert.nova_errors():
            return self.backend.list_instances()

    def list_instance_uuids(self) -> list[str]:
        with convert.nova_errors():
            return self.backend.list_instance_uuids()

    def instance_exists(self, instance: typing.Any) -> bool:
        if not self.backend.supports('instance_exists'):
            return bool(super().instance_exists(instance))
        with convert.nova_errors(instance.uuid):
            return self.backend.instance_exists(self._instance(instance))

    def get_info(self, instance: typing.Any,
                 use_cache: bool = True) -> hardware.InstanceInfo:
        with convert.nova_errors(instance.uuid):
            info = self.backend.get_info(self._instance(instance),
                                         use_cache=use_cache)
        return hardware.InstanceInfo(state=info.state,
                                     internal_id=info.internal_id)

    @nova_images.with_request()
    def spawn(self, context: typing.Any, instance: typing.Any,
              image_meta: typing.Any, injected_files: typing.Any,
              admin_password: str | None, allocations: typing.Any,
              network_info: typing.Any = None,
              block_device_info: typing.Any = None, power_on: bool = True,
              accel_info: typing.Any = None) -> None:
        """Create the instance from its image.

        The image is looked up in the backend's image service (Nova's
        image API unless ``[compute_driver_adapter] image_service`` says
        otherwise, see :meth:`_use_image_service`) under
        ``[compute_driver_adapter] image_map``'s entry for it, else under
        its Glance id, then its Glance name; the first found is booted.

        :raises NotImplementedError: for volumes in ``block_device_info``
            or accelerators: the contract has neither.
        :raises nova.exception.ImageNotFound: when the backend has none of
            the image's references.
        """
        if driver.block_device_info_get_mapping(block_device_info):
            raise NotImplementedError(
                'The %s backend cannot attach volumes; boot from an image'
                % self.backend.name)
        if accel_info:
            raise NotImplementedError(
                'The %s backend has no accelerators' % self.backend.name)
        candidates = convert.image_candidates(image_meta, self.image_map)
        ports = convert.network_info(network_info)
        for ref in candidates:
            with convert.nova_errors(instance.uuid):
                ours = convert.instance(instance, image_ref=ref)
                try:
                    self.backend.spawn(
                        ours, power_on=power_on, network_info=ports,
                        context=context, injected_files=injected_files,
                        admin_password=admin_password,
                        allocations=allocations)
                except exception.ImageNotFound:
                    # A failed spawn leaves nothing behind, so the next
                    # reference can be tried on a clean slate.
                    LOG.debug('The %s backend has no image %s',
                              self.backend.name, ref)
                    continue
            return
        image_id = (image_meta.id if image_meta.obj_attr_is_set('id')
                    else None)
        raise nova_exception.ImageNotFound(
            message='Image %s is not on the %s backend of this host under '
                    'any of: %s; add it there or map it in '
                    '[compute_driver_adapter] image_map'
                    % (image_id, self.backend.name,
                       ', '.join(candidates) or 'no reference'),
            image_id=image_id)

    def destroy(self, context: typing.Any, instance: typing.Any,
                network_info: typing.Any, block_device_info: typing.Any = None,
                destroy_disks: bool = True,
                destroy_secrets: bool = True) -> None:
        with convert.nova_errors(instance.uuid):
            self.backend.destroy(
                self._instance(instance), destroy_disks=destroy_disks,
                context=context,
                network_info=convert.network_info(network_info),
                destroy_secrets=destroy_secrets)

    def cleanup(self, context: typing.Any, instance: typing.Any,
                network_info: typing.Any, block_device_info: typing.Any = None,
                destroy_disks: bool = True, migrate_data: typing.Any = None,
                destroy_vifs: bool = True,
                destroy_secrets: bool = True) -> None:
        # The backends keep nothing apart from the instance (no VIFs or
        # volumes of their own), so cleaning up is removing whatever of it
        # is left, which destroy does idempotently.
        self.destroy(context, instance, network_info, block_device_info,
                     destroy_disks, destroy_secrets)

    def reboot(self, context: typing.Any, instance: typing.Any,
               network_info: typing.Any, reboot_type: str,
               block_device_info: typing.Any = None,
               bad_volumes_callback: typing.Any = None,
               accel_info: typing.Any = None,
               share_info: typing.Any = None) -> None:
        with convert.nova_errors(instance.uuid):
            kind = contract.reboot_kind(reboot_type)
        self._perform('%s_reboot' % kind.lower(), instance, context=context,
                      network_info=convert.network_info(network_info))

    def resume_state_on_host_boot(self, context: typing.Any,
                                  instance: typing.Any,
                                  network_info: typing.Any,
                                  share_info: typing.Any,
                                  block_device_info: typing.Any = None
                                  ) -> None:
        """Bring an instance Nova expects running back after a host boot.

        Nova calls this for instances it last saw running; a hard reboot
        starts the guest from whatever state the host's restart left. One
        that is running already is left alone: a hard reboot is allowed
        from RUNNING, so the backend would reset it.
        """
        if self.get_info(instance).state != power_state.RUNNING:
            self._perform('hard_reboot', instance, context=context,
                          network_info=convert.network_info(network_info))

    def power_off(self, instance: typing.Any, timeout: int = 0,
                  retry_interval: int = 0) -> None:
        self._perform('power_off', instance, timeout=timeout,
                      retry_interval=retry_interval)

    def power_on(self, context: typing.Any, instance: typing.Any,
                 network_info: typing.Any,
                 block_device_info: typing.Any = None,
                 accel_info: typing.Any = None,
                 share_info: typing.Any = None) -> None:
        self._perform('power_on', instance, context=context,
                      network_info=convert.network_info(network_info))

    def pause(self, instance: typing.Any) -> None:
        self._perform('pause', instance)

    def unpause(self, instance: typing.Any) -> None:
        self._perform('unpause', instance)

    def suspend(self, context: typing.Any, instance: typing.Any) -> None:
        self._perform('suspend', instance, context=context)

    def resume(self, context: typing.Any, instance: typing.Any,
               network_info: typing.Any, block_device_info: typing.Any = None,
               share_info: typing.Any = None) -> None:
        self._perform('resume', instance, context=context,
                      network_info=convert.network_info(network_info))

    @nova_images.with_request(snapshot_arg='image_id')
    def snapshot(self, context: typing.Any, instance: typing.Any,
                 image_id: str, update_task_state: typing.Any) -> None:
        """Snapshot the instance into the image ``image_id`` Nova created.

        ``update_task_state`` hears ``image_pending_upload`` then
        ``image_uploading``; with Nova's image service the data goes into
        that (queued) image, which ends ``active`` with the backend's
        ``disk_format`` and ``container_format``. A backend whose
        snapshots stay on the host keeps it there under that id.

        :raises nova.exception.InstanceNotRunning: when the backend has no
            such instance, as Nova's compute manager expects.
        """
        try:
            self._perform('snapshot', instance, image_id=image_id,
                          update_task_state=update_task_state,
                          context=context)
        except nova_exception.InstanceNotFound as exc:
            raise nova_exception.InstanceNotRunning(
                instance_id=instance.uuid) from exc

    def get_console_output(self, context: typing.Any,
                           instance: typing.Any) -> str:
        return str(self._perform('console_output', instance,
                                 context=context))

    def get_diagnostics(self, instance: typing.Any) -> dict[str, object]:
        return typing.cast(dict[str, object],
                           self._perform('diagnostics', instance))

    # -- images --------------------------------------------------------------
    # Nova's image API is the backend's image service (nova_images): spawn
    # and snapshot run inside nova_images.request with their context, so
    # the backend's downloads and uploads carry the user's credentials.

    def _use_image_service(self, choice: str) -> None:
        """Give the backend Nova's image service, as configured.

        ``[compute_driver_adapter] image_service = nova`` (the default)
        replaces whatever image service the backend would build from the
        library's configuration; ``backend`` keeps it.
        """
        if choice == 'nova':
            self.backend.image_service = nova_images.NovaImageService()
