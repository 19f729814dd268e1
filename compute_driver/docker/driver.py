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

"""Instances as Docker containers, Zun-style, through the docker SDK.

Each instance is one container named ``[docker] name_prefix`` plus its
uuid. The container's labels (see :mod:`.mapping`) record the instance's
uuid, name, flavor, image, metadata and compute host: they are the source
of truth, there is no database, and separate processes see the same
instances. Listings are one ``GET /containers/json`` filtered by our
labels, never one inspect per container.

The contract's pipeline (:class:`compute_driver.driver.ComputeDriver`)
validates, locks, claims and checks transitions; the hooks here act:

- spawn: find or load the image (:mod:`.images`), create the container
  with the flavor's limits and hardened defaults (:mod:`.hostconfig`)
  under a spawning name, start it unless ``power_on=False``, and rename
  it to the instance's. Any failure after the create removes the
  container.
- power_off(timeout): ``docker stop`` with that grace (0 kills at once);
  power_on: ``docker start``.
- reboot: soft is ``docker restart`` with ``[docker] stop_grace_period``,
  hard is ``docker kill`` then ``docker start``.
- pause/unpause: the cgroup freezer. Docker has no suspend to disk
  (checkpoints need CRIU and experimental mode), so suspend and resume are
  declared unsupported in :attr:`DockerDriver.capabilities`.
- snapshot: ``docker commit`` to a new image labelled as a snapshot of the
  instance, and ``docker save`` into ``[docker] image_directory`` when
  set. revert: a new container from the snapshot with the same name and
  labels replaces the old one, so the instance keeps its identity.
- live resize: ``docker update`` of the CPU quota and memory limits.
- console: the tail of the container's log; diagnostics: one stats sample.
- events: a thread follows ``docker events`` (:mod:`.events`).
- resources: CPUs, memory and (for a local daemon) the disk of the Docker
  root directory from the daemon; used is the sum of our containers'
  flavors, kept as running totals (:mod:`.usage`) so that neither a claim
  nor ``get_available_resource`` lists every container.
"""

import dataclasses
import functools
import itertools
import logging
import os
import threading
import time
import typing
import uuid as uuidlib

from docker import errors as docker_errors

from compute_driver.docker import conf as docker_conf
from compute_driver.docker import connection
from compute_driver.docker import console as docker_console
from compute_driver.docker import errors
from compute_driver.docker import events
from compute_driver.docker import hostconfig
from compute_driver.docker import images
from compute_driver.docker import mapping
from compute_driver.docker import migration
from compute_driver.docker import network
from compute_driver.docker import usage as dusage
from compute_driver.docker import volumes
from compute_driver import driver
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver.image import exception as image_exception
from compute_driver import leftovers
from compute_driver import objects
from compute_driver import power_state

LOG = logging.getLogger(__name__)

#: How long a container under its spawning name whose creator cannot be
#: checked (it ran on another machine sharing dockerd, or before this
#: machine's last boot) is given before it counts as a leftover; a spawn
#: is image loading and two API calls, far shorter.
ORPHAN_SPAWN_AGE = 3600


class DockerDriver(driver.ComputeDriver):
    """The docker backend, entry point ``docker``."""

    capabilities = {
        **{'supports_' + op: True for op in driver.OPTIONAL_OPERATIONS},
        # Docker cannot save a container's memory to disk without CRIU.
        'supports_suspend': False,
        'supports_resume': False,
        # A container cannot leave its dockerd (see .migration).
        'supports_cold_migrate': False,
        # Nor move while running (CRIU again).
        'supports_live_migrate': False,
        # Labels, which record a container's ports, are fixed at create
        # time (see .network).
        'supports_attach_interface': False,
        'supports_detach_interface': False,
        # -- volumes: mounts are fixed at create (see .volumes); volumes
        # come with block_device_info at spawn only.
        'supports_attach_volume': False,
        'supports_live_attach_volume': False,
        'supports_detach_volume': False,
        'supports_swap_volume': False,
        'supports_extend_volume': False,
        # Nova's console types are a display or a serial port; a container
        # has neither (its TTY is reached with attach and exec).
        'supports_serial_console': False,
        'supports_vnc_console': False,
    }
    spawn_volumes = True
    spawn_root_volume = False
    hypervisor_type = 'docker'
    CONFIG_GROUP = docker_conf.GROUP
    CONFIG_OPTS = docker_conf.opts
    # Nova's disk formats of the images it boots: docker save and root
    # file system tarballs are both disk_format=raw in Glance.
    image_types = ('raw',)
    # Containers share the host's CPUs: their vCPUs are bounded by the
    # ratio only, which is high by default for the same reason.
    runs_containers = True
    default_allocation_ratios = {'vcpus': 16.0, 'memory_mb': 1.0,
                                 'disk_gb': 1.0}

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi=virtapi)
        group = conf.docker
        # Refuse bad options now rather than at the first spawn.
        connection.tls_config(group)
        hostconfig.security_options(group)
        hostconfig.network_mode(group)
        self._connection = connection.Connection(conf)
        self._watcher: events.EventWatcher | None = None
        self._records = mapping.RecordCache(self._container_name)
        self._snapshot_lock = threading.Lock()
        # Ids of the containers this process is spawning right now.
        self._spawning: set[str] = set()
        # What this host's containers claim, kept without listing them.
        self._usage = dusage.Usage()
        self._waiters = events.Waiters()
        self._observer = events.Observer(self._usage, self._waiters)
        # Set by _check_unique for the _resources call of the same claim
        # (the base makes both under its claim lock): one listing and
        # the cached ``docker info`` serve the whole claim.
        self._claiming = threading.local()
        # One load of an image service image at a time, per image id.
        self._image_locks: dict[str, threading.Lock] = {}
        self._image_locks_guard = threading.Lock()

    @property
    def api(self) -> typing.Any:
        """The connected ``docker.APIClient``; connects on first use."""
        return self._connection.api

    def _container_name(self, uuid: str) -> str:
        return self.conf.docker.name_prefix + uuid

    def _store(self) -> images.ImageStore:
        return images.ImageStore(self.api, self.conf.docker)

    def _label_filters(self) -> dict[str, list[str]]:
        return {'label': [mapping.UUID,
                          '%s=%s' % (mapping.HOST, self.host)]}

    def _summaries(self) -> list[dict]:
        """Our containers, in one summary call."""
        with errors.translate(self._connection.url, 'list containers'):
            return self.api.containers(all=True,
                                       filters=self._label_filters())

    def _event_generation(self) -> int | None:
        watcher = self._watcher
        return None if watcher is None else watcher.generation

    def _sync_usage(self) -> None:
        """List our containers into the totals unless they are fresh."""
        generation = self._event_generation()
        if self._usage.fresh(generation, self.conf.docker.usage_sync_interval):
            return
        with errors.translate(self._connection.url, 'list containers'):
            self._usage.sync(generation, self._summaries)

    def _wait_for(self, name: str, operation: str,
                  done: typing.Callable[[], bool],
                  what: typing.Callable[[], str]) -> None:
        self._waiters.wait(name, done, self.conf.docker.timeout,
                           lambda: self._event_generation() is not None,
                           operation, what)

    # -- required hooks -------------------------------------------------------

    def _connect(self):
        info = self._connection.refresh_info()
        if self._watcher is None:
            self._watcher = events.EventWatcher(
                self._connection.new_client, self.host, self._on_event,
                observe=self._observe)
            if not self._watcher.start():
                LOG.warning('The Docker event stream did not open within '
                            '5s; events will follow once it does')
        LOG.debug('Docker compute host %s ready: dockerd %s, API %s',
                  self.host, info.get('ServerVersion'), self.api.api_version)
        self._rewire_running()

    def _on_event(self, uuid: str, transition: int, timestamp: float) -> None:
        self.emit_event(virtevent.LifecycleEvent(uuid, transition, timestamp))

    def _translate(self, operation, instance):
        return errors.translate(self._connection.url, operation,
                                instance.name)

    def _find(self, instance):
        try:
            data = self.api.inspect_container(
                self._container_name(instance.uuid))
        except docker_errors.NotFound:
            raise exception.InstanceNotFound(instance=instance.name) from None
        if not mapping.is_instance_of(data, instance.uuid, self.host):
            raise exception.InstanceNotFound(instance=instance.name)
        return data

    def _power_state(self, data):
        return mapping.container_state(data)

    def _info(self, data, instance):
        return objects.InstanceInfo(state=mapping.container_state(data),
                                    internal_id=data.get('Id'))

    def _stored(self, data, instance):
        return mapping.stored_instance(data, instance)

    def _check_unique(self, instance):
        self._sync_usage()
        self._usage.check_unique(instance)
        self._claiming.listed = True

    def _get_image(self, instance):
        # The flavor first: nothing is pulled or loaded for an instance
        # Docker could not run.
        hostconfig.check_flavor(self.conf.docker, instance.flavor)
        found = self._image_from_service(instance)
        if isinstance(found, images.ServiceImage):
            return found
        return images.DockerImage(
            name=instance.image_ref, disk_format='docker',
            container_format='docker', size=found.get('Size'),
            image_id=found.get('Id') or '')

    def _create(self, instance, image, power_on, network_info,
                block_device_info):
        if isinstance(image, images.ServiceImage):
            image = self._bring_image(image)
        host_config_args = hostconfig.host_config_args(self.conf,
                                                       instance.flavor)
        ports = tuple(network_info)
        if ports:
            host_config_args['network_mode'] = network.NETWORK_MODE
        with self._spawn_volumes(instance, block_device_info) as found:
            mount_path = self.conf.volume.mount_path
            binds, labels = volumes.mount_all(mount_path, instance.uuid,
                                              found)
            try:
                if binds:
                    host_config_args['binds'] = binds
                self._create_and_start(instance, image, power_on,
                                       host_config_args,
                                       {**labels, **network.labels(ports)},
                                       ports)
            except BaseException:
                volumes.unmount_all(mount_path, instance.uuid, found)
                raise

    def _create_and_start(self, instance, image, power_on, host_config_args,
                          extra_labels, ports):
        network.plug(instance, ports)
        try:
            container_id = self._create_container(
                instance, image, host_config_args, extra_labels)
        except BaseException:
            network.unplug_quietly(instance, ports)
            raise
        # Until the rename below, the container has its spawning name: it
        # is not an instance yet, and if this process dies, or dockerd
        # does and the removal below fails, a sweep knows it for a
        # leftover (see cleanup_leftovers).
        try:
            # Counted by the totals from now on; the claim, still held,
            # counts it once (see _resources).
            self._usage.add(container_id, instance)
            if power_on:
                with errors.translate(self._connection.url, 'start',
                                      instance.name):
                    self._start(instance, container_id)
                self._usage.set_state(container_id, 'running')
                self._wire(instance, container_id, ports)
            try:
                self.api.rename(container_id,
                                self._container_name(instance.uuid))
            except docker_errors.APIError as exc:
                if errors.is_status(exc, 409):
                    raise exception.InstanceExists(
                        instance=instance.uuid) from exc
                raise
        except BaseException:
            self._roll_back_spawn(container_id, instance)
            network.unplug_quietly(instance, ports)
            raise
        finally:
            self._spawning.discard(container_id)

    def _create_container(self, instance: objects.Instance,
                          image: images.DockerImage,
                          host_config_args: dict,
                          extra_labels: dict | None = None) -> str:
        api = self.api
        labels = mapping.instance_labels(instance, self.host)
        labels.update(extra_labels or {})
        labels[mapping.SPAWN_OWNER] = leftovers.owner_label()
        try:
            result = api.create_container(
                image=image.image_id or image.name,
                name=(self._container_name(instance.uuid) +
                      mapping.SPAWNING_SUFFIX),
                hostname=instance.name[:63], labels=labels,
                host_config=api.create_host_config(**host_config_args),
                detach=True)
        except docker_errors.APIError as exc:
            text = errors.reason(exc)
            if errors.is_status(exc, 409):
                raise exception.InstanceExists(instance=instance.uuid) from exc
            if errors.is_status(exc, 400):
                raise exception.InvalidInput(
                    reason='Docker refused to create %s: %s'
                           % (instance.name, text)) from exc
            if errors.is_status(exc, 404):
                raise exception.ImageNotFound(
                    image=image.name, available=text) from exc
            raise
        self._spawning.add(result['Id'])
        for warning in result.get('Warnings') or ():
            LOG.warning('Creating %s: %s', instance.name, warning)
        return result['Id']

    def _start(self, instance: objects.Instance,
               container: str | None = None) -> None:
        try:
            self.api.start(container or self._container_name(instance.uuid))
        except docker_errors.APIError as exc:
            if errors.is_status(exc, 400):
                raise exception.BackendError(
                    operation='start', instance=instance.name,
                    reason=errors.reason(exc)) from exc
            raise

    def _roll_back_spawn(self, container_id: str,
                         instance: objects.Instance) -> None:
        """Remove the container of a failed spawn; never raises.

        One that cannot be removed (dockerd died) keeps its spawning name,
        so it is never listed, and the next sweep removes it.
        """
        error = self._remove_container(container_id)
        if error is not None:
            LOG.warning(
                'The failed spawn of %s left container %s%s (%s): %s; it '
                'is not listed as an instance and the next sweep '
                '(compute-driver cleanup) removes it', instance.name,
                self._container_name(instance.uuid), mapping.SPAWNING_SUFFIX,
                container_id[:12], exception.one_line(error))

    def _remove_container(self, container: str) -> Exception | None:
        """Force-remove ``container`` and drop it from the totals.

        :returns: the error when it could not be removed (a container
            already gone counts as removed), else ``None``.
        """
        try:
            self.api.remove_container(container, force=True, v=True)
        except docker_errors.NotFound:
            pass
        except Exception as exc:
            return exc
        self._usage.remove(container)
        return None

    def _remove_quietly(self, container: str,
                        instance: objects.Instance) -> None:
        error = self._remove_container(container)
        if error is not None:
            # One line naming what is left; the traceback only with -v.
            LOG.warning('Could not remove container %s of %s after a '
                        'failed operation; it is left: %s', container,
                        instance.name, exception.one_line(error))
            LOG.debug('Removal failure', exc_info=error)

    def _destroy(self, instance, destroy_disks):
        name = self._container_name(instance.uuid)
        # The totals know the container's state: no inspect beforehand.
        before = self._usage.state_of(instance.uuid)
        ports = self._recorded_ports(instance)
        try:
            attached = volumes.attachments(mapping.container_labels(
                self.api.inspect_container(name)))
        except docker_errors.NotFound:
            attached = []
        try:
            self.api.remove_container(name, force=True, v=True)
        except docker_errors.NotFound:
            self._usage.remove_instance(instance.uuid)
            network.unplug_quietly(instance, ports)
            return None
        except docker_errors.APIError as exc:
            # Someone else is removing it: wait for them.
            if not errors.is_status(exc, 409):
                raise
            self._wait_gone(name)
        self._usage.remove_instance(instance.uuid)
        migration.remove_base(self.api, instance.uuid, instance)
        network.unplug_quietly(instance, ports)
        if attached:
            volumes.unmount_all(self.conf.volume.mount_path, instance.uuid,
                                attached)
            self._release_volumes(instance, attached)
        return mapping.power_state_of(before)

    def _wait_gone(self, name: str) -> None:
        """Wait for dockerd to finish removing container ``name``."""
        def gone() -> bool:
            try:
                self.api.inspect_container(name)
            except docker_errors.NotFound:
                return True
            return False

        self._wait_for(name, 'destroy', gone,
                       lambda: 'the container is still being removed')

    def _resources(self, pending):
        connected = self._connection
        if getattr(self._claiming, 'listed', False):
            # A claim: _check_unique listed if needed, and the host's size
            # does not change between claims.
            self._claiming.listed = False
            info = connected.info or connected.refresh_info()
        else:
            info = connected.refresh_info()
            self._sync_usage()
        vcpus, memory_mb, local_gb = connected.capacity(info)
        # A pending spawn's container may already be counted (its create
        # event or the spawn itself): count it once.
        extra = [p.flavor for p in pending if not self._usage.counts(p.uuid)]
        used = self._usage.totals()
        return objects.HostResources(
            vcpus=vcpus, memory_mb=memory_mb, local_gb=local_gb,
            vcpus_used=used[0] + sum(f.vcpus for f in extra),
            memory_mb_used=used[1] + sum(f.memory_mb for f in extra),
            local_gb_used=used[2] + sum(f.disk_gb for f in extra),
            hypervisor_type=self.hypervisor_type,
            hypervisor_version=objects.version_to_int(
                connection.server_version(info)),
            hypervisor_hostname=self.host,
            running_vms=self._usage.running(),
            cpu_info={'arch': info.get('Architecture') or 'unknown',
                      'model': 'container', 'vendor': 'docker',
                      'topology': {'sockets': 1, 'cores': vcpus,
                                   'threads': 1},
                      'kernel': info.get('KernelVersion') or '',
                      'cgroup_version': info.get('CgroupVersion') or ''})

    def list_instance_records(self):
        return self._records.records(self._summaries())

    def get_host_identity(self):
        """dockerd's daemon ID (``docker info``'s ``ID``)."""
        return self._connection.refresh_info().get('ID') or None

    # -- leftovers -----------------------------------------------------------

    def cleanup_leftovers(self, dry_run=False):
        """Remove the containers of spawns that did not complete.

        Also removes the partial tarballs of snapshots interrupted while
        written into ``[docker] image_directory``.

        A spawn creates its container under a name ending in
        :data:`mapping.SPAWNING_SUFFIX`, labelled with the process doing
        it, and renames it to the instance's name once it has started (or
        been created, for ``power_on=False``). A container of this host
        still under that name is a leftover when its process is gone, or,
        for this process, no longer spawning it. When the process cannot
        be checked (another machine sharing dockerd, or an earlier boot)
        it is one after :data:`ORPHAN_SPAWN_AGE` seconds.
        """
        with errors.translate(self._connection.url, 'list leftovers'):
            summaries = self.api.containers(
                all=True, filters={
                    **self._label_filters(),
                    'name': [mapping.SPAWNING_SUFFIX + '$']})
        return leftovers.sweep(self.name, itertools.chain(
            self._leftover_candidates(summaries),
            self._partial_tarballs()), dry_run)

    def _partial_tarballs(self) -> typing.Iterator[leftovers.Candidate]:
        for path in self._store().partial_tarballs():
            yield leftovers.Candidate(
                'file %s' % path, 'a snapshot whose save was interrupted',
                functools.partial(os.unlink, path))

    def _leftover_candidates(self, summaries: list[dict]
                             ) -> typing.Iterator[leftovers.Candidate]:
        me = leftovers.owner_label()
        for summary in summaries:
            if not mapping.is_spawning(summary):
                continue
            container_id = summary.get('Id') or ''
            owner = (summary.get('Labels') or {}).get(mapping.SPAWN_OWNER,
                                                      '')
            if owner == me:
                if container_id in self._spawning:
                    continue
                reason = 'its spawn failed and could not remove it'
            else:
                gone = leftovers.owner_gone(owner)
                if gone is False:
                    continue
                if gone is None:
                    age = time.time() - float(summary.get('Created') or 0)
                    if age < ORPHAN_SPAWN_AGE:
                        continue
                    reason = ('its spawn did not complete within %ds'
                              % ORPHAN_SPAWN_AGE)
                else:
                    reason = 'its spawn was interrupted'
            names = ', '.join(n.lstrip('/') for n in summary['Names'])
            yield leftovers.Candidate(
                'container %s (%s)' % (names, container_id[:12]), reason,
                functools.partial(self._remove_leftover, container_id))

    def _remove_leftover(self, container_id: str) -> None:
        with errors.translate(self._connection.url, 'remove leftover',
                              container_id[:12]):
            try:
                self.api.remove_container(container_id, force=True, v=True)
            except docker_errors.NotFound:
                pass
        self._usage.remove(container_id)

    # -- operation hooks -----------------------------------------------------

    def cleanup_host(self, host):
        """Stop following events and close the connection."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        self._connection.close()

    def _settle(self, name: str, status: str) -> None:
        """Wait until dockerd reports the container in ``status``.

        dockerd answers a pause or unpause once containerd has frozen or
        thawed the cgroup, but records the new state when containerd's
        event about it arrives, a moment later; the contract's operations
        are synchronous, so wait for that record.
        """
        seen: list[str | None] = [None]

        def settled() -> bool:
            data = self.api.inspect_container(name)
            seen[0] = (data.get('State') or {}).get('Status')
            return seen[0] == status

        self._wait_for(name, 'wait', settled,
                       lambda: 'the container is still %s, not %s'
                               % (seen[0], status))

    def _thaw(self, name: str) -> None:
        # The freezer holds signals until a thaw.
        self.api.unpause(name)
        self._settle(name, 'running')

    def _reboot(self, data, instance, kind, current):
        name = self._container_name(instance.uuid)
        if kind == driver.REBOOT_SOFT:
            self.api.restart(name, timeout=self.conf.docker.stop_grace_period)
        else:
            if current == power_state.PAUSED:
                self._thaw(name)
            if current in (power_state.RUNNING, power_state.PAUSED,
                           power_state.CRASHED):
                self.api.stop(name, timeout=0)
                network.unwire(instance, network.ports_of(data))
            self.api.start(name)
        self._usage.set_state(data['Id'], 'running')
        self._wire(instance, data['Id'], network.ports_of(data))

    def _power_off(self, data, instance, current, timeout, retry_interval):
        name = self._container_name(instance.uuid)
        if current == power_state.PAUSED:
            self._thaw(name)
        self.api.stop(name, timeout=timeout)
        self._usage.set_state(data['Id'], 'exited')
        network.unwire(instance, network.ports_of(data))

    def _power_on(self, data, instance):
        self._start(instance)
        self._usage.set_state(data['Id'], 'running')
        self._wire(instance, data['Id'], network.ports_of(data))

    def _pause(self, data, instance):
        name = self._container_name(instance.uuid)
        self.api.pause(name)
        self._settle(name, 'paused')
        self._usage.set_state(data['Id'], 'paused')

    def _unpause(self, data, instance):
        self._thaw(self._container_name(instance.uuid))
        self._usage.set_state(data['Id'], 'running')

    def _has_image(self, image_id):
        images.validate_reference(image_id)
        return (self._store().inspect(image_id) is not None or
                self.image_exists(image_id))

    def _snapshot(self, data, instance, current, image_id):
        store = self._store()
        with self._snapshot_lock:
            # Checked again: another snapshot may have taken the name
            # while Nova's callback ran.
            if store.inspect(image_id) is not None:
                raise exception.InvalidInput(
                    reason='an image named %s exists already' % image_id)
            stored = mapping.stored_instance(data, instance)
            store.commit_snapshot(self._container_name(instance.uuid),
                                  image_id, stored)
            self._upload_snapshot(store, stored, image_id)

    def _delete_snapshot(self, image_id):
        with self._snapshot_lock, errors.translate(
                self._connection.url, 'delete snapshot', image_id):
            self._store().delete_snapshot(image_id)
            self._delete_service_snapshot(image_id)

    def _snapshots_of(self, instance):
        return self._store().snapshots_of(instance.uuid)

    def _revert(self, data, instance, current, image_id):
        image = self._store().inspect(image_id)
        if image is None:
            # Deleted since the check.
            raise exception.ImageNotFound(image=image_id, available='none')
        self._replace_container(instance, data, image)

    def _replace_container(self, instance: objects.Instance, old: dict,
                           image: dict,
                           resized: objects.Instance | None = None) -> None:
        """Swap the container of ``instance`` for one from ``image``.

        The old one is stopped and renamed aside, the new one created
        under the instance's name with the same labels (those of
        ``resized`` and its flavor's limits, when given); only then is the
        old one removed. A failure puts the old one back as it was.
        """
        api = self.api
        name = self._container_name(instance.uuid)
        was_running = mapping.container_state(old) == power_state.RUNNING
        stored = resized or mapping.stored_instance(old, instance)
        labels = mapping.container_labels(old)
        if resized is not None:
            labels = {**labels, **migration.blank_labels(),
                      **mapping.instance_labels(resized, self.host)}
        aside = '%s-reverting-%s' % (name, uuidlib.uuid4().hex[:8])
        ports = network.ports_of(old)
        host_config_args = hostconfig.host_config_args(self.conf,
                                                       stored.flavor)
        if ports:
            host_config_args['network_mode'] = network.NETWORK_MODE
        host_config = api.create_host_config(
            **host_config_args,
            **volumes.binds_of(self.conf.volume.mount_path, instance.uuid,
                               volumes.attachments(
                                   mapping.container_labels(old))))
        if was_running:
            api.stop(old['Id'], timeout=self.conf.docker.stop_grace_period)
        api.rename(old['Id'], aside)
        new_id = None
        try:
            new_id = api.create_container(
                image=image['Id'], name=name,
                hostname=(old.get('Config') or {}).get('Hostname'),
                labels=labels, host_config=host_config, detach=True)['Id']
            self._usage.add(new_id, stored,
                            'running' if was_running else 'created')
            if was_running:
                api.start(new_id)
                self._wire(instance, new_id, ports)
        except BaseException:
            if new_id is not None:
                self._remove_quietly(new_id, instance)
            api.rename(old['Id'], name)
            if was_running:
                api.start(old['Id'])
            raise
        self._remove_quietly(old['Id'], instance)

    def _live_resize(self, data, instance, vcpus, memory_mb):
        if memory_mb is not None:
            hostconfig.check_memory(memory_mb, 'live resize of %s'
                                    % instance.name)
        stored = mapping.stored_instance(data, instance)
        current_vcpus, current_memory = hostconfig.current_limits(
            data.get('HostConfig') or {})
        limits = hostconfig.Limits(
            vcpus=vcpus or current_vcpus or stored.flavor.vcpus,
            memory_mb=memory_mb or current_memory or stored.flavor.memory_mb,
            swap_mb=stored.flavor.swap)
        try:
            self.api.update_container(self._container_name(instance.uuid),
                                      **limits.update_args())
        except docker_errors.APIError as exc:
            if errors.is_status(exc, 400):
                raise exception.InvalidInput(
                    reason='Docker refused to resize %s: %s'
                           % (instance.name, errors.reason(exc))) from exc
            raise

    def _console_output(self, data, instance):
        output = self.api.logs(
            self._container_name(instance.uuid), stdout=True, stderr=True,
            timestamps=False, tail=self.conf.docker.console_log_lines)
        return output.decode('utf-8', errors='replace')

    def _diagnostics(self, data, instance):
        state = mapping.container_state(data)
        stored = mapping.stored_instance(data, instance)
        vcpus, memory_mb = hostconfig.current_limits(
            data.get('HostConfig') or {})
        result: dict[str, object] = {
            'state': power_state.name(state),
            'driver': 'docker',
            'vcpus': vcpus or stored.flavor.vcpus,
            'memory_mb': memory_mb or stored.flavor.memory_mb,
            'container_id': data.get('Id'),
            'image': (data.get('Config') or {}).get('Image'),
            'started_at': (data.get('State') or {}).get('StartedAt'),
        }
        if state not in driver.ACTIVE_STATES:
            return result
        kwargs = {}
        if connection.version_tuple(self.api.api_version) >= (1, 41):
            # One sample now instead of two a second apart.
            kwargs['one_shot'] = True
        stats = self.api.stats(self._container_name(instance.uuid),
                               stream=False, **kwargs)
        memory = stats.get('memory_stats') or {}
        cpu = (stats.get('cpu_stats') or {}).get('cpu_usage') or {}
        networks = stats.get('networks') or {}
        result.update({
            'memory_usage_bytes': memory.get('usage', 0),
            'cpu_time_ns': cpu.get('total_usage', 0),
            'pids': (stats.get('pids_stats') or {}).get('current', 0),
            'rx_bytes': sum(n.get('rx_bytes', 0) for n in networks.values()),
            'tx_bytes': sum(n.get('tx_bytes', 0) for n in networks.values()),
        })
        return result

    # -- host operations -----------------------------------------------------

    def get_host_ip_addr(self):
        return self._connection.host_address()

    def get_host_uptime(self):
        info = self._connection.refresh_info()
        running = info.get('ContainersRunning', 0)
        if self._connection.url.startswith('unix://'):
            try:
                with open('/proc/uptime', encoding='ascii') as f:
                    seconds = int(float(f.read().split()[0]))
            except (OSError, ValueError, IndexError):
                seconds = None
            if seconds is not None:
                return ' %s up %d days, %d:%02d, %d containers running' % (
                    time.strftime('%H:%M:%S'), seconds // 86400,
                    seconds // 3600 % 24, seconds // 60 % 60, running)
        return ' %s (dockerd clock), %d containers running' % (
            info.get('SystemTime', ''), running)

    def list_images(self):
        with errors.translate(self._connection.url, 'list images'):
            # A resize's images are an instance's disk, not bootable
            # images (see .migration).
            found = [image for image in self._store().list_images()
                     if not migration.is_resize_image(image.name)]
        # The image service's that docker load or import can take.
        names = {image.name for image in found}
        return found + [
            image for image in self.list_service_images()
            if image.name not in names and (
                image.container_format or 'bare',
                image.disk_format) in images.FORMATS]

    # -- resize (see .migration) --------------------------------------------

    def _resize(self, data, instance, flavor):
        hostconfig.check_flavor(self.conf.docker, flavor)
        api = self.api
        image_id = migration.commit_revert_point(api, data['Id'], data)
        resized = dataclasses.replace(instance, flavor=flavor)
        # An instance counts once, with the flavor of the container first
        # counted: uncount the old one so that the new one counts.
        self._usage.remove_instance(instance.uuid)
        try:
            self._replace_container(instance, data, {'Id': image_id},
                                    resized=resized)
        except BaseException:
            self._usage.add(data['Id'], instance, 'exited')
            self._remove_revert_point(instance)
            raise

    def _remove_revert_point(self, instance):
        try:
            self.api.remove_image(migration.revert_tag(instance.uuid))
        except docker_errors.APIError as exc:
            LOG.warning('Could not remove the revert point %s of %s: %s',
                        migration.revert_tag(instance.uuid), instance.name,
                        errors.reason(exc))

    def _confirm_migration(self, instance):
        if migration.inspect(self.api,
                             migration.revert_tag(instance.uuid)) is not None:
            migration.keep_as_base(self.api, instance.uuid)

    def _revert_migration(self, instance):
        api = self.api
        image = migration.inspect(api, migration.revert_tag(instance.uuid))
        if image is None:
            # A move that never resized left the container as it was.
            self._find(instance)
            return
        old = mapping.instance_from_labels(migration.recorded_labels(image))
        name = self._container_name(instance.uuid)
        # The resized container, unless the caller destroyed it already
        # (Nova does), gives way to the one it replaced.
        try:
            api.remove_container(name, force=True, v=True)
        except docker_errors.NotFound:
            pass
        self._usage.remove_instance(instance.uuid)
        new_id = api.create_container(
            image=image['Id'], name=name, hostname=old.name[:63],
            labels={**migration.blank_labels(),
                    **mapping.instance_labels(old, self.host)},
            host_config=api.create_host_config(
                **hostconfig.host_config_args(self.conf, old.flavor)),
            detach=True)['Id']
        self._usage.add(new_id, old)
        migration.keep_as_base(api, instance.uuid)

    # -- network -------------------------------------------------------------

    def _recorded_ports(self, instance: objects.Instance
                        ) -> tuple[typing.Any, ...]:
        try:
            data = self.api.inspect_container(
                self._container_name(instance.uuid))
        except docker_errors.NotFound:
            return ()
        return network.ports_of(data)

    def _wire(self, instance: objects.Instance, container: str,
              ports: tuple[typing.Any, ...]) -> None:
        """Wire ``ports`` into the running ``container``'s namespace."""
        if not ports:
            return
        pid = (self.api.inspect_container(container).get('State')
               or {}).get('Pid')
        if not pid:
            raise exception.BackendError(
                operation='wire the ports of', instance=instance.name,
                reason='its container has no process (it stopped)')
        network.wire(instance, ports, pid)

    def _rewire(self, uuid: str, labels: dict) -> None:
        """Wire a container started behind this process's back again."""
        try:
            instance = mapping.instance_from_labels(labels)
            with self._instance_locks.hold(uuid):
                data = self._find(instance)
                if mapping.container_state(data) == power_state.RUNNING:
                    self._wire(instance, data['Id'], network.ports_of(data))
        except Exception as exc:
            LOG.warning('Could not wire the ports of instance %s again: '
                        '%s', uuid, exception.one_line(exc))

    def _observe(self, action: str, container_id: str,
                 attributes: dict) -> None:
        self._observer(action, container_id, attributes)
        uuid = attributes.get(mapping.UUID)
        if (action == 'start' and uuid and network.PORTS in attributes
                and container_id not in self._spawning):
            # Off the event thread: the operation that started it may
            # hold the instance's lock while it waits for a later event.
            threading.Thread(target=self._rewire,
                             args=(uuid, dict(attributes)),
                             name='docker-rewire', daemon=True).start()

    def _rewire_running(self) -> None:
        """Wire the ports of running containers again, at init_host.

        After dockerd restarted, or this host rebooted, a container
        started again has a new namespace without its ports.
        """
        try:
            summaries = self._summaries()
        except exception.ComputeDriverError as exc:
            LOG.warning('Could not list containers to wire their ports '
                        'again: %s', exception.one_line(exc))
            return
        for summary in summaries:
            labels = summary.get('Labels') or {}
            if (network.PORTS in labels and summary.get('State') ==
                    'running' and not mapping.is_spawning(summary)):
                self._rewire(labels.get(mapping.UUID, ''), labels)

    def _plug_vifs(self, data, instance, ports):
        recorded = network.ports_of(data)
        known = {p.id for p in recorded}
        new = [p.id for p in ports if p.id not in known]
        if new:
            raise exception.NotSupported(
                driver=self.name,
                operation='adding ports (%s) to a container created '
                          'without them' % ', '.join(new))
        wanted = {p.id for p in ports}
        ordered = tuple(p for p in recorded if p.id in wanted)
        network.plug(instance, ordered)
        if mapping.container_state(data) == power_state.RUNNING:
            # Every recorded port, so eth<n> stays the same NIC; those
            # wired already are only checked.
            self._wire(instance, data['Id'], recorded)

    def _unplug_vifs(self, data, instance, ports):
        network.unplug(instance, tuple(ports))

    def _interfaces(self, data, instance):
        return network.ports_of(data)

    # -- volumes -------------------------------------------------------------

    def check_mountpoint(self, mountpoint):
        """A directory in the container (see :mod:`.volumes`)."""
        return volumes.check_mountpoint(mountpoint)

    def _volume_attachments(self, data, instance):
        return volumes.attachments(mapping.container_labels(data))

    # -- images from the image service ----------------------------------------

    def _image_from_service(self, instance: objects.Instance
                            ) -> images.ServiceImage | dict:
        """The image service's image, else dockerd's own image.

        The image service is asked first; only an image it does not have
        is looked for in dockerd, ``[docker] image_directory`` and
        ``[docker] registry``, as before there was one.

        :returns: a :class:`images.ServiceImage` not loaded yet, or
            dockerd's description of its own image.
        :raises ImageUnacceptable: for a format Docker cannot run.
        :raises ImageNotFound: when neither has it.
        """
        try:
            meta = self.image_for(instance)
        except image_exception.ImageNotInService:
            try:
                return self._store().ensure(instance.image_ref)
            except exception.ImageNotFound as exc:
                raise exception.ImageNotFound(
                    image='%s (in the %s image service or in dockerd)'
                          % (instance.image_ref, self.image_service.name),
                    available=exc.kwargs.get('available', 'none')) from exc
        loader = images.loader_of(meta)
        return images.ServiceImage(
            **{f.name: getattr(meta, f.name)
               for f in dataclasses.fields(objects.ImageMeta)},
            loader=loader)

    def _bring_image(self, image: images.ServiceImage) -> images.DockerImage:
        """Load ``image`` into dockerd unless an earlier boot did.

        One load per image at a time in this process; dockerd itself is
        the cache, under :func:`images.service_tag`.
        """
        lock = self._image_lock(image.id)
        loader = images.ServiceLoader(self.api, self.image_service)
        with lock, errors.translate(self._connection.url, 'load image',
                                    image.id):
            found = loader.ensure(image)
        return images.DockerImage(
            name=image.name, disk_format=image.disk_format,
            container_format=image.container_format,
            min_ram=image.min_ram, min_disk=image.min_disk,
            size=found.get('Size'), properties=dict(image.properties),
            image_id=found.get('Id') or '')

    def _upload_snapshot(self, store: images.ImageStore,
                         instance: objects.Instance, image_id: str) -> None:
        """Stream ``docker save`` of snapshot ``image_id`` to the service.

        The new image is ``container_format=docker``, ``disk_format=raw``;
        a failed upload removes the snapshot from dockerd too.

        The snapshot stays in dockerd, also tagged with the new image's
        id, so booting it on this host transfers nothing.
        """
        loader = images.ServiceLoader(self.api, self.image_service)
        try:
            with errors.translate(self._connection.url, 'snapshot',
                                  instance.name):
                record = loader.upload(image_id, lambda src: (
                    self.upload_snapshot(instance, image_id, src, 'raw',
                                         'docker')))
                repo, tag = images.split_tag(images.service_tag(record.id))
                self.api.tag(image_id, repo, tag)
        except BaseException:
            store.remove_snapshot_quietly(image_id)
            raise

    def _image_lock(self, image_id: str) -> threading.Lock:
        """The lock of image service image ``image_id`` in dockerd."""
        with self._image_locks_guard:
            return self._image_locks.setdefault(image_id.lower(),
                                                threading.Lock())

    def _prune_backend_images(self, max_age, in_use):
        """dockerd's copies of image service images, and dead snapshots.

        A snapshot this host took goes with its copy once the image
        service has no image of its name any more: Nova deletes a shelved
        server's snapshot image after unshelving it, without telling the
        driver, and nothing else would remove it from dockerd.
        """
        loader = images.ServiceLoader(self.api, self.image_service)
        with errors.translate(self._connection.url, 'prune',
                              'the image cache'):
            pruned = loader.prune(max_age, in_use, hold=self._image_lock)
            for _cached, labels in pruned:
                name = images.snapshot_name(labels)
                if name is None or name in in_use:
                    continue
                try:
                    self.image_service.show(name)
                    continue
                except image_exception.ImageNotInService:
                    pass
                with self._snapshot_lock:
                    self._store().delete_snapshot(name)
                LOG.info('Removed snapshot %s from dockerd: the %s image '
                         'service has no such image any more.', name,
                         self.image_service.name)
        return [cached for cached, _labels in pruned]

    def _delete_service_snapshot(self, image_id: str) -> None:
        """Delete snapshot ``image_id`` from the image service.

        dockerd's copy of it goes too; absent is fine.
        """
        try:
            record = self.image_service.show(image_id)
        except image_exception.ImageNotInService:
            return
        self.delete_snapshot_image(record.id)
        try:
            self.api.remove_image(images.service_tag(record.id))
        except docker_errors.NotFound:
            pass

    # -- consoles ------------------------------------------------------------

    def _open_console(self, data, instance):
        return docker_console.attach(self.api, data, instance.name)

    def _execute(self, data, instance, command, tty):
        return docker_console.execute(self.api, data, command, tty)
