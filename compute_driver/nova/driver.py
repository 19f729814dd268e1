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
import json
import logging
import threading
import typing

import os_resource_classes as orc
from oslo_config import cfg

from nova.compute import utils as compute_utils
from nova import conf as nova_conf
from nova.console import type as ctype
from nova import exception as nova_exception
from nova import objects as nova_objects
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
# Loaded with the adapter, not at the first attach as by the CLI: Nova
# asks for the volume connector of every attach, and the module reads the
# host's machine type when it loads, which Nova's test fixtures forbid
# once a test runs.
from compute_driver.volume import connection as _vol_connection  # noqa: F401
from compute_driver.volume import model as vol_model

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


def _proxy_target(host: str, proxyclient_address: str) -> str:
    """The address Nova's console proxy connects to for ``host``.

    A console listening on every address (``0.0.0.0``, ``::``) cannot be
    reached at that address from the proxy's host: as Nova's own libvirt
    driver does, the proxy is then sent to this compute's
    ``proxyclient_address``. A specific listen address is the one that
    answers, so it is kept.
    """
    if host in ('0.0.0.0', '::', ''):
        return proxyclient_address
    return host


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
            self._follow_nova_console_settings(group.backend)
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
        self._declare_network_capabilities()
        # Nova's image cache pass calls manage_image_cache only then.
        self.capabilities['has_imagecache'] = True

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
        ``resume_state_on_host_boot`` (a hard reboot),
        ``live_migration_force_complete`` (``live_migrate``) and the four
        methods of a resize or cold migration (``resize`` or
        ``cold_migrate``),
        when the backend's ``capabilities`` lack all their operations;
        they raise ``NotImplementedError``.
        """
        needs = {'resume_state_on_host_boot': ['hard_reboot'],
                 'live_migration_force_complete': ['live_migrate']}
        for method in ('migrate_disk_and_power_off', 'finish_migration',
                       'confirm_migration', 'finish_revert_migration'):
            needs[method] = ['resize', 'cold_migrate']
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

    def _spawn_on_backend(self, context: typing.Any, instance: typing.Any,
                          image_meta: typing.Any, injected_files: typing.Any,
                          admin_password: str | None, allocations: typing.Any,
                          network_info: typing.Any = None,
                          block_device_info: typing.Any = None,
                          power_on: bool = True,
                          accel_info: typing.Any = None) -> None:
        """Create the instance from its image.

        The image is looked up in the backend's image service (Nova's
        image API unless ``[compute_driver_adapter] image_service`` says
        otherwise, see :meth:`_use_image_service`) under
        ``[compute_driver_adapter] image_map``'s entry for it, else under
        its Glance id, then its Glance name; the first found is booted.

        :raises NotImplementedError: for volumes in ``block_device_info``
            on a backend that takes none at spawn, or accelerators.
        :raises nova.exception.ImageNotFound: when the backend has none of
            the image's references.
        """
        volumes = driver.block_device_info_get_mapping(block_device_info)
        # Checked first: a backend that takes no volumes at spawn boots
        # from none either, and rescheduling to another of its hosts
        # cannot help.
        if (not self.backend.boots_from_volume() and
                any(bdm.get('boot_index') == 0 for bdm in volumes)):
            # Not rescheduled: no host of this backend can build it.
            raise nova_exception.BuildAbortException(
                instance_uuid=instance.uuid,
                reason='the %s backend cannot boot from a volume'
                       % self.backend.name)
        if volumes and not self.backend.takes_spawn_volumes():
            raise NotImplementedError(
                'The %s backend cannot attach volumes; boot from an image'
                % self.backend.name)
        if accel_info:
            raise NotImplementedError(
                'The %s backend has no accelerators' % self.backend.name)
        if volumes and self.backend.runs_containers:
            block_device_info = convert.container_volumes(block_device_info)
        candidates = convert.image_candidates(image_meta, self.image_map)
        # -- volumes: a volume-backed instance boots the volume, with the
        # backend image configured for that (its kernel, for libvirt).
        boot_image = CONF.compute_driver_adapter.volume_boot_image
        if not candidates and volumes and boot_image:
            candidates = [boot_image]
        ports = convert.ports(network_info)
        for ref in candidates:
            with convert.nova_errors(instance.uuid):
                ours = convert.instance(instance, image_ref=ref)
                try:
                    self.backend.spawn(
                        ours, power_on=power_on, network_info=ports,
                        context=context, injected_files=injected_files,
                        admin_password=admin_password,
                        allocations=allocations,
                        block_device_info=(block_device_info if volumes
                                           else None))
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

    # -- resize and cold migration -------------------------------------------

    def _move_destination(self, context: typing.Any, instance: typing.Any,
                          dest: str) -> str:
        """The node name a resize or cold migration moves ``instance`` to.

        Nova passes the destination's address (``migration.dest_host``),
        which several compute services share on one machine; the node is
        in the migration its migration context names. Without one (a
        caller outside the compute manager) ``dest`` is taken as the node.
        """
        try:
            migration_context = instance.migration_context
        except (AttributeError, NotImplementedError,
                nova_exception.OrphanedObjectError):
            return dest
        if migration_context is None:
            return dest
        migration = nova_objects.Migration.get_by_id_and_instance(
            context, migration_context.migration_id, instance.uuid)
        return str(migration.dest_node or migration.dest_compute)

    def migrate_disk_and_power_off(self, context: typing.Any,
                                   instance: typing.Any, dest: str,
                                   flavor: typing.Any,
                                   network_info: typing.Any,
                                   block_device_info: typing.Any = None,
                                   timeout: int = 0,
                                   retry_interval: int = 0) -> str:
        """Stop the instance and hand its move to the destination.

        A resize to this node needs the backend's ``resize``, a move to
        another ``cold_migrate``; lacking it is Nova's
        ``NotImplementedError``. Any other failure left the instance as it
        was (the contract promises it), so it is raised inside Nova's
        ``InstanceFaultRollback``: Nova sets the server back to its state
        before the move and restores its allocations.
        """
        if driver.block_device_info_get_mapping(block_device_info):
            raise NotImplementedError(
                'The %s backend cannot move an instance with volumes'
                % self.backend.name)
        node_name = self._move_destination(context, instance, dest)
        operation = ('resize' if node_name == self.backend.host
                     else 'cold_migrate')
        if not self.backend.supports(operation):
            raise NotImplementedError(
                'The %s backend cannot %s instances'
                % (self.backend.name, operation.replace('_', ' ')))
        try:
            with convert.nova_errors(instance.uuid):
                return self.backend.migrate_disk_and_power_off(
                    self._instance(instance), node_name,
                    convert.flavor(flavor), timeout=timeout,
                    retry_interval=retry_interval, context=context)
        except nova_exception.NovaException as exc:
            raise nova_exception.InstanceFaultRollback(
                inner_exception=exc) from exc

    def finish_migration(self, context: typing.Any, migration: typing.Any,
                         instance: typing.Any, disk_info: str,
                         network_info: typing.Any, image_meta: typing.Any,
                         resize_instance: bool, allocations: typing.Any,
                         block_device_info: typing.Any = None,
                         power_on: bool = True,
                         share_info: typing.Any = None) -> None:
        with convert.nova_errors(instance.uuid):
            self.backend.finish_migration(
                self._instance(instance), disk_info, power_on=power_on,
                context=context,
                network_info=convert.network_info(network_info))

    def confirm_migration(self, context: typing.Any, migration: typing.Any,
                          instance: typing.Any,
                          network_info: typing.Any) -> None:
        with convert.nova_errors(instance.uuid):
            self.backend.confirm_migration(self._instance(instance),
                                           context=context)

    def finish_revert_migration(self, context: typing.Any,
                                instance: typing.Any,
                                network_info: typing.Any,
                                migration: typing.Any,
                                block_device_info: typing.Any = None,
                                power_on: bool = True,
                                share_info: typing.Any = None) -> None:
        with convert.nova_errors(instance.uuid):
            self.backend.finish_revert_migration(
                self._instance(instance), power_on=power_on,
                context=context,
                network_info=convert.network_info(network_info))

    # -- live migration ------------------------------------------------------
    # Nova's steps go to the contract's methods of the same names; the
    # contract's migrate_data document travels inside Nova's
    # LibvirtLiveMigrateData (the registered kind Nova's own fake driver
    # uses, which every Nova service can deserialise), as JSON in its
    # ``filename``. Neither shared storage nor a shared instance path:
    # Nova then asks the destination to roll back after a failure and the
    # source to clean up after success, which the contract's rollback and
    # cleanup steps serve.

    def _pre_check(self, instance: typing.Any
                   ) -> typing.ContextManager[None]:
        """Library errors of a live migration check as Nova's pre-check one.

        ``MigrationPreCheckError`` is what Nova's conductor handles
        cleanly: the migration goes to error and the server stays ACTIVE
        where it was, its allocations restored.
        """
        @contextlib.contextmanager
        def translated() -> typing.Iterator[None]:
            try:
                yield
            except exception.ComputeDriverError as exc:
                raise nova_exception.MigrationPreCheckError(
                    reason=str(exc)) from exc
        if not self.backend.supports('live_migrate'):
            raise nova_exception.MigrationPreCheckError(
                reason='the %s backend cannot live-migrate instances'
                       % self.backend.name)
        return translated()

    @staticmethod
    def _to_nova_migrate_data(document: dict[str, typing.Any],
                              into: typing.Any = None) -> typing.Any:
        data = into
        if data is None:
            data = nova_objects.LibvirtLiveMigrateData()
            data.is_shared_instance_path = False
            data.is_shared_block_storage = False
        data.filename = json.dumps(document, sort_keys=True)
        data.block_migration = bool(document.get('block_migration'))
        return data

    @staticmethod
    def _from_nova_migrate_data(data: typing.Any) -> object:
        """The contract's document in Nova's ``migrate_data``, if any."""
        if data is None or 'filename' not in data:
            return None
        try:
            return json.loads(data.filename)
        except ValueError:
            return None

    def check_can_live_migrate_destination(
            self, context: typing.Any, instance: typing.Any,
            src_compute_info: typing.Any, dst_compute_info: typing.Any,
            block_migration: bool = False,
            disk_over_commit: bool = False) -> typing.Any:
        with self._pre_check(instance):
            document = self.backend.check_can_live_migrate_destination(
                self._instance(instance), block_migration=block_migration,
                disk_over_commit=disk_over_commit, context=context)
        return self._to_nova_migrate_data(document)

    def cleanup_live_migration_destination_check(
            self, context: typing.Any, dest_check_data: typing.Any) -> None:
        with convert.nova_errors(), \
                contextlib.suppress(exception.NotSupported):
            self.backend.cleanup_live_migration_destination_check(
                self._from_nova_migrate_data(dest_check_data),
                context=context)

    def check_can_live_migrate_source(
            self, context: typing.Any, instance: typing.Any,
            dest_check_data: typing.Any,
            block_device_info: typing.Any = None) -> typing.Any:
        with self._pre_check(instance):
            if driver.block_device_info_get_mapping(block_device_info):
                raise nova_exception.MigrationPreCheckError(
                    reason='the %s backend cannot live-migrate an instance '
                           'with volumes' % self.backend.name)
            document = self.backend.check_can_live_migrate_source(
                self._instance(instance),
                self._from_nova_migrate_data(dest_check_data),
                context=context)
        return self._to_nova_migrate_data(document, dest_check_data)

    def get_instance_disk_info(self, instance: typing.Any,
                               block_device_info: typing.Any = None) -> None:
        # What a block migration copies travels with the guest over the
        # backend's own path (see live_migration): nothing for Nova to
        # hand over.
        return None

    def pre_live_migration(self, context: typing.Any, instance: typing.Any,
                           block_device_info: typing.Any,
                           network_info: typing.Any, disk_info: typing.Any,
                           migrate_data: typing.Any) -> typing.Any:
        with convert.nova_errors(instance.uuid):
            document = self.backend.pre_live_migration(
                self._instance(instance),
                self._from_nova_migrate_data(migrate_data),
                network_info=convert.network_info(network_info),
                context=context)
        return self._to_nova_migrate_data(document, migrate_data)

    def live_migration(self, context: typing.Any, instance: typing.Any,
                       dest: str, post_method: typing.Any,
                       recover_method: typing.Any,
                       block_migration: bool = False,
                       migrate_data: typing.Any = None) -> None:
        """Move the guest, then call Nova back as its drivers do.

        ``post_method`` after the guest moved; ``recover_method`` when it
        did not, and then the guest runs on this host as before, so
        nothing is raised: Nova's rollback puts the server back ACTIVE
        here and the migration in error.
        """
        self._require_live_migration()
        document = self._from_nova_migrate_data(migrate_data)
        node_name = dest
        if isinstance(document, dict) and document.get('dest'):
            node_name = str(document['dest'])
        try:
            with convert.nova_errors(instance.uuid):
                self.backend.live_migration(
                    self._instance(instance), node_name, document,
                    block_migration=block_migration, context=context)
        except Exception:
            LOG.exception('Live migration of %s to %s failed; it stays '
                          'here', instance.uuid, dest)
            recover_method(context, instance, dest, migrate_data)
            return
        post_method(context, instance, dest, block_migration, migrate_data)

    def _require_live_migration(self) -> None:
        if not self.backend.supports('live_migrate'):
            raise NotImplementedError(
                'The %s backend cannot live-migrate instances'
                % self.backend.name)

    def live_migration_force_complete(self, instance: typing.Any) -> None:
        # live_migration returns once the guest moved: nothing is left to
        # force.
        self._require_live_migration()

    def post_live_migration(self, context: typing.Any, instance: typing.Any,
                            block_device_info: typing.Any,
                            migrate_data: typing.Any = None) -> None:
        with convert.nova_errors(instance.uuid):
            self.backend.post_live_migration(
                self._instance(instance),
                migrate_data=self._from_nova_migrate_data(migrate_data),
                context=context)

    def post_live_migration_at_source(self, context: typing.Any,
                                      instance: typing.Any,
                                      network_info: typing.Any) -> None:
        # The ports left with the guest and post_live_migration removed
        # what was left of it here: nothing is plugged on this host.
        return None

    def post_live_migration_at_destination(
            self, context: typing.Any, instance: typing.Any,
            network_info: typing.Any, block_migration: bool = False,
            block_device_info: typing.Any = None) -> None:
        with convert.nova_errors(instance.uuid):
            self.backend.post_live_migration_at_destination(
                self._instance(instance),
                network_info=convert.network_info(network_info),
                block_migration=block_migration, context=context)

    def rollback_live_migration_at_source(self, context: typing.Any,
                                          instance: typing.Any,
                                          migrate_data: typing.Any) -> None:
        with convert.nova_errors(instance.uuid), \
                contextlib.suppress(exception.NotSupported):
            self.backend.rollback_live_migration_at_source(
                self._instance(instance),
                migrate_data=self._from_nova_migrate_data(migrate_data),
                context=context)

    def rollback_live_migration_at_destination(
            self, context: typing.Any, instance: typing.Any,
            network_info: typing.Any, block_device_info: typing.Any,
            destroy_disks: bool = True,
            migrate_data: typing.Any = None) -> None:
        with convert.nova_errors(instance.uuid):
            self.backend.rollback_live_migration_at_destination(
                self._instance(instance), destroy_disks=destroy_disks,
                migrate_data=self._from_nova_migrate_data(migrate_data),
                context=context)

    # -- network -------------------------------------------------------------

    def _declare_network_capabilities(self) -> None:
        # Nova's compute manager refuses an interface attach itself, and
        # reports the COMPUTE_NET_ATTACH_INTERFACE trait, from this key.
        self.capabilities['supports_attach_interface'] = (
            self.backend.supports('attach_interface') and
            self.backend.supports('detach_interface'))

    @nova_images.with_request()
    def spawn(self, context: typing.Any, instance: typing.Any,
              image_meta: typing.Any, injected_files: typing.Any,
              admin_password: str | None, allocations: typing.Any,
              network_info: typing.Any = None,
              block_device_info: typing.Any = None, power_on: bool = True,
              accel_info: typing.Any = None) -> None:
        """Create the instance, then wait for Neutron to wire its ports.

        The backend plugs the ports of ``network_info`` as it builds the
        instance (see :meth:`_spawn_on_backend` for the image). As Nova's
        libvirt driver does, a spawn that powers the instance on waits up
        to ``[DEFAULT] vif_plugging_timeout`` seconds for Neutron's
        ``network-vif-plugged`` event of every port Neutron has not
        reported active. When one fails or does not arrive in time and
        ``[DEFAULT] vif_plugging_is_fatal`` is set, the instance is
        destroyed and the build fails with
        ``VirtualInterfaceCreateException``; otherwise a warning is
        logged and the instance runs.

        Nova's libvirt driver creates its guest paused and resumes it
        once the events arrived; the backends here build and start the
        instance in one call, so its guest may start before its ports
        are wired, and its DHCP client retries until they are.
        """
        with convert.nova_errors(instance.uuid):
            ports = convert.ports(network_info)
        timeout = CONF.vif_plugging_timeout
        events = (convert.plug_events(network_info)
                  if power_on and timeout else [])
        try:
            with self.virtapi.wait_for_instance_event(
                    instance, events, timeout=timeout,
                    error_callback=self._neutron_failed_callback):
                self._spawn_on_backend(
                    context, instance, image_meta, injected_files,
                    admin_password, allocations, network_info=ports,
                    block_device_info=block_device_info, power_on=power_on,
                    accel_info=accel_info)
        except (nova_exception.InstanceEventTimeout,
                nova_exception.VirtualInterfaceCreateException) as exc:
            if not CONF.vif_plugging_is_fatal:
                LOG.warning('Neutron did not report the ports of %s '
                            'plugged (%s); vif_plugging_is_fatal is off, '
                            'so it runs anyway', instance.uuid,
                            type(exc).__name__)
                return
            LOG.error('Neutron did not report the ports of %s plugged; '
                      'removing it', instance.uuid)
            self.destroy(context, instance, network_info, block_device_info)
            raise nova_exception.VirtualInterfaceCreateException() from exc

    @staticmethod
    def _neutron_failed_callback(event_name: str, instance: typing.Any
                                 ) -> None:
        LOG.error('Neutron reported failure on event %s for instance %s',
                  event_name, instance.uuid)
        if CONF.vif_plugging_is_fatal:
            raise nova_exception.VirtualInterfaceCreateException()

    def plug_vifs(self, instance: typing.Any, network_info: typing.Any
                  ) -> None:
        """Wire the instance's ports on the host again; Nova's host start.

        :raises NotImplementedError: for a backend that cannot plug ports,
            which Nova's compute manager expects and ignores.
        """
        with convert.nova_errors(instance.uuid):
            ports = convert.ports(network_info)
        self._perform('plug_vifs', instance, network_info=ports)

    def unplug_vifs(self, instance: typing.Any, network_info: typing.Any
                    ) -> None:
        """Unwire the instance's ports on the host.

        An instance the backend no longer has is done with: its destroy
        unplugged its ports, as Nova's build clean-up expects.
        """
        with convert.nova_errors(instance.uuid):
            ports = convert.ports(network_info)
        try:
            self._perform('unplug_vifs', instance, network_info=ports)
        except nova_exception.InstanceNotFound:
            LOG.debug('No instance %s to unplug ports of', instance.uuid)

    def attach_interface(self, context: typing.Any, instance: typing.Any,
                         image_meta: typing.Any, vif: typing.Any) -> None:
        """Add Nova's ``vif`` to the instance, live when it runs.

        Nova's compute manager turns a failure into
        ``InterfaceAttachFailed`` and gives the port back to Neutron.
        """
        with convert.nova_errors(instance.uuid):
            [port] = convert.ports([vif])
        self._perform('attach_interface', instance, vif=port,
                      context=context)

    def detach_interface(self, context: typing.Any, instance: typing.Any,
                         vif: typing.Any) -> None:
        self._perform('detach_interface', instance, vif=str(vif['id']),
                      context=context)

    # -- volumes -------------------------------------------------------------
    # Nova's volume calls, argument for argument, go to the backend's
    # pipeline; a backend without the capability raises NotSupported,
    # which nova_errors turns into NotImplementedError.

    def default_root_device_name(self, instance: typing.Any,
                                 image_meta: typing.Any,
                                 root_bdm: typing.Any) -> str:
        """The backend's root device name, which Nova numbers volumes after.

        See ``ComputeDriver.root_device_name``; a backend without one gets
        Nova's default (``NotImplementedError``).
        """
        name = self.backend.root_device_name
        if name is None:
            raise NotImplementedError()
        return str(name)

    def get_volume_connector(self, instance: typing.Any) -> dict:
        # The address Cinder exports volumes to, as for Nova's drivers.
        with convert.nova_errors(getattr(instance, 'uuid', None)):
            return self.backend.get_volume_connector(
                ip=CONF.my_block_storage_ip)

    def attach_volume(self, context: typing.Any, connection_info: dict,
                      instance: typing.Any, mountpoint: str,
                      disk_bus: str | None = None,
                      device_type: str | None = None,
                      encryption: typing.Any = None) -> None:
        self._perform('attach_volume', instance,
                      connection_info=connection_info,
                      mountpoint=mountpoint, encryption=encryption)

    def detach_volume(self, context: typing.Any, connection_info: dict,
                      instance: typing.Any, mountpoint: str,
                      encryption: typing.Any = None) -> None:
        """Detach a volume; of an instance already gone, disconnect it.

        Nova detaches the root volume of an instance it has destroyed
        (rebuilding a volume-backed one) and expects the volume to be
        disconnected from the host, as Nova's libvirt driver does.
        """
        try:
            self._perform('detach_volume', instance,
                          connection_info=connection_info,
                          mountpoint=mountpoint)
        except nova_exception.InstanceNotFound:
            LOG.warning('Instance %s is gone; disconnecting its volume',
                        instance.uuid)
            with convert.nova_errors(instance.uuid):
                self.backend.volume_connector.disconnect(
                    vol_model.parse(connection_info), None)

    def swap_volume(self, context: typing.Any, old_connection_info: dict,
                    new_connection_info: dict, instance: typing.Any,
                    mountpoint: str, resize_to: int) -> None:
        self._perform('swap_volume', instance,
                      old_connection_info=old_connection_info,
                      new_connection_info=new_connection_info,
                      mountpoint=mountpoint, resize_to=resize_to)

    def extend_volume(self, context: typing.Any, connection_info: dict,
                      instance: typing.Any, requested_size: int) -> None:
        self._perform('extend_volume', instance,
                      connection_info=connection_info,
                      requested_size=requested_size)

    # -- consoles ------------------------------------------------------------

    def _follow_nova_console_settings(self, backend: str) -> None:
        # nova.conf's [vnc] and [serial_console] decide, as they do for
        # Nova's own drivers, whether guests get a display and a TCP
        # serial port and where those listen; a backend without such
        # options (docker, xenapi) is left alone.
        settings = {
            'vnc_enabled': CONF.vnc.enabled,
            'vnc_listen_address': CONF.vnc.server_listen,
            'serial_console_type': (
                'tcp' if CONF.serial_console.enabled else 'pty'),
            'serial_listen_address': CONF.serial_console.proxyclient_address,
            'serial_port_range': CONF.serial_console.port_range,
        }
        try:
            known = set(self.conf[backend])
        except cfg.NoSuchOptError:
            return
        for name, value in settings.items():
            if name in known and value is not None:
                self.conf.set_override(name, value, group=backend)

    def _console(self, operation: str, instance: typing.Any,
                 context: typing.Any) -> typing.Any:
        try:
            return self._perform(operation, instance, context=context)
        except nova_exception.InstanceInvalidState as exc:
            # What Nova's API answers 409 for: the instance has no console
            # to offer until it runs.
            raise nova_exception.InstanceNotReady(
                instance_id=instance.uuid) from exc
        except nova_exception.InternalError as exc:
            cause = exc.__cause__
            if isinstance(cause, exception.ConsoleUnavailable):
                # Nova's answer names the console type only: the reason
                # (a port out of reach, say) is for the operator's log.
                LOG.warning('%s', cause)
                raise nova_exception.ConsoleTypeUnavailable(
                    console_type=cause.kwargs.get('console')) from cause
            raise

    def get_vnc_console(self, context: typing.Any,
                        instance: typing.Any) -> typing.Any:
        found = self._console('vnc_console', instance, context)
        return ctype.ConsoleVNC(
            host=_proxy_target(found.host,
                               CONF.vnc.server_proxyclient_address),
            port=found.port,
            internal_access_path=found.internal_access_path)

    def get_serial_console(self, context: typing.Any,
                           instance: typing.Any) -> typing.Any:
        found = self._console('serial_console', instance, context)
        return ctype.ConsoleSerial(
            host=_proxy_target(found.host,
                               CONF.serial_console.proxyclient_address),
            port=found.port)

    # -- images --------------------------------------------------------------

    def manage_image_cache(self, context: typing.Any,
                           all_instances: typing.Any) -> None:
        """Nova's image cache pass: prune the backend's unused images.

        ``all_instances`` are the instances of every host that shares this
        one's storage; their images stay, with those of the backend's own
        instances, as Nova's ``[image_cache]`` options say.
        """
        if not CONF.image_cache.remove_unused_base_images:
            return
        refs = [instance.image_ref for instance in all_instances
                if getattr(instance, 'image_ref', None)]
        with nova_images.request(context), convert.nova_errors():
            removed = self.backend.manage_image_cache(
                max_age=CONF.image_cache
                .remove_unused_original_minimum_age_seconds,
                image_refs=refs)
        if removed:
            LOG.info('Removed %d unused image(s) from the image cache: %s',
                     len(removed),
                     ', '.join(cached.image_id for cached in removed))
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
