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

Operations:

- spawn: find or load the image (:mod:`.images`), claim the flavor
  against the host, create the container with the flavor's limits and
  hardened defaults (:mod:`.hostconfig`), start it unless
  ``power_on=False``. Any failure after the create removes the container.
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

import functools
import itertools
import logging
import os
import socket
import threading
import time
import typing
import urllib.parse
import uuid as uuidlib

from docker import errors as docker_errors

from compute_driver.docker import client as dclient
from compute_driver.docker import conf as docker_conf
from compute_driver.docker import events as devents
from compute_driver.docker import hostconfig
from compute_driver.docker import images as dimages
from compute_driver.docker import mapping
from compute_driver.docker import usage as dusage
from compute_driver import driver
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import leftovers
from compute_driver import objects
from compute_driver import power_state

LOG = logging.getLogger(__name__)

#: How long a container under its spawning name whose creator cannot be
#: checked (it ran on another machine sharing dockerd, or before this
#: machine's last boot) is given before it counts as a leftover; a spawn
#: is image loading and two API calls, far shorter.
ORPHAN_SPAWN_AGE = 3600

# Nova's task states, passed to update_task_state during a snapshot.
IMAGE_PENDING_UPLOAD = 'image_pending_upload'
IMAGE_UPLOADING = 'image_uploading'

GIB = 1024 ** 3

#: Docker's state of a container after each event that changes it.
STATE_AFTER_EVENT = {'create': 'created', 'start': 'running',
                     'unpause': 'running', 'pause': 'paused',
                     'die': 'exited'}

#: Seconds between two checks of a container awaited without events (the
#: stream is down): the first wait, doubled up to the last.
POLL_INITIAL = 0.01
POLL_MAX = 0.5
#: The longest wait for an event before checking anyway: the event
#: normally wakes the waiter long before.
EVENT_WAIT_MAX = 1.0


class DockerDriver(driver.ComputeDriver):
    """The docker backend, entry point ``docker``."""

    capabilities = {
        **{'supports_' + op: True for op in driver.OPTIONAL_OPERATIONS},
        # Docker cannot save a container's memory to disk without CRIU.
        'supports_suspend': False,
        'supports_resume': False,
    }
    hypervisor_type = 'docker'
    CONFIG_GROUP = docker_conf.GROUP
    CONFIG_OPTS = docker_conf.opts
    image_types = ()
    runs_containers = True

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi=virtapi)
        group = conf.docker
        # Refuse bad options now rather than at the first spawn.
        dclient.tls_config(group)
        hostconfig.security_options(group)
        hostconfig.network_mode(group)
        self._host: str = conf.host
        self._api: typing.Any = None
        self._info: dict = {}
        self._watcher: devents.EventWatcher | None = None
        self._lock = threading.Lock()
        self._instance_locks: dict[str, threading.Lock] = {}
        # Flavors of spawns between their claim and their create, so that
        # concurrent spawns in this process cannot overcommit the host.
        self._pending: dict[str, objects.Instance] = {}
        self._claim_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        # Container id -> (Docker state, its record or None when its
        # labels describe no instance), from the last listing.
        self._parsed: dict[str, tuple[str, objects.InstanceRecord | None]] = {}
        # Ids of the containers this process is spawning right now.
        self._spawning: set[str] = set()
        # What this host's containers claim, kept without listing them.
        self._usage = dusage.Usage()
        self._waiters = devents.Waiters()

    # -- connection ----------------------------------------------------------

    @property
    def api(self) -> typing.Any:
        """The connected ``docker.APIClient``; connects on first use."""
        if self._api is None:
            with self._lock:
                if self._api is None:
                    self._api = dclient.connect(self.conf, self._host)
        return self._api

    @property
    def _url(self) -> str:
        return self.conf.docker.api_url

    def _translated(self, operation: str, instance: str = '-'):
        return dclient.translated(self._url, operation, instance)

    def _container_name(self, uuid: str) -> str:
        return self.conf.docker.name_prefix + uuid

    def _instance_lock(self, uuid: str) -> threading.Lock:
        with self._lock:
            return self._instance_locks.setdefault(uuid, threading.Lock())

    def _refresh_info(self) -> dict:
        with self._translated('docker info'):
            self._info = self.api.info()
        return self._info

    # -- lookups -------------------------------------------------------------

    def _label_filters(self) -> dict[str, list[str]]:
        return {'label': [mapping.UUID,
                          '%s=%s' % (mapping.HOST, self._host)]}

    def _summaries(self) -> list[dict]:
        """Our containers, in one summary call."""
        with self._translated('list containers'):
            return self.api.containers(all=True,
                                       filters=self._label_filters())

    def _records(self, summaries: list[dict] | None = None
                 ) -> list[objects.InstanceRecord]:
        records: dict[str, objects.InstanceRecord] = {}
        cache = self._parsed
        fresh: dict[str, tuple[str, objects.InstanceRecord | None]] = {}
        for summary in (self._summaries() if summaries is None
                        else summaries):
            if mapping.is_spawning(summary):
                continue
            container_id = summary.get('Id') or ''
            state = summary.get('State') or ''
            # A container's labels never change, so each one is parsed
            # once, and its record is rebuilt only when its state changes.
            cached = cache.get(container_id)
            if cached is not None and cached[0] == state:
                record = cached[1]
            elif cached is not None and cached[1] is not None:
                record = objects.InstanceRecord(
                    instance=cached[1].instance,
                    info=objects.InstanceInfo(
                        state=mapping.power_state_of(state),
                        internal_id=container_id))
            else:
                record = mapping.record_from_summary(summary)
            fresh[container_id] = (state, record)
            if record is None:
                continue
            uuid = record.instance.uuid
            # During a revert the old container lives on briefly under
            # another name; the one with the instance's name is the real
            # one.
            if uuid in records and '/' + self._container_name(uuid) not in (
                    summary.get('Names') or ()):
                continue
            records[uuid] = record
        self._parsed = fresh
        return list(records.values())

    def _inspect(self, instance: objects.Instance) -> dict:
        """The container of ``instance``.

        :raises InstanceNotFound: when there is none, or it is not ours.
        """
        name = self._container_name(instance.uuid)
        with self._translated('inspect', instance.name):
            try:
                data = self.api.inspect_container(name)
            except docker_errors.NotFound:
                raise exception.InstanceNotFound(
                    instance=instance.name) from None
        labels = (data.get('Config') or {}).get('Labels') or {}
        if (labels.get(mapping.UUID) != instance.uuid or
                labels.get(mapping.HOST) != self._host):
            raise exception.InstanceNotFound(instance=instance.name)
        return data

    @staticmethod
    def _state_of(data: dict) -> int:
        return mapping.power_state_of((data.get('State') or {}).get('Status'))

    @staticmethod
    def _stored_instance(data: dict,
                         fallback: objects.Instance) -> objects.Instance:
        try:
            return mapping.instance_from_labels(
                (data.get('Config') or {}).get('Labels'))
        except exception.InvalidInput:
            return fallback

    # -- required ------------------------------------------------------------

    def init_host(self, host):
        """Connect to dockerd, check its API version, follow its events.

        :raises HypervisorUnavailable: when dockerd cannot be reached.
        :raises HypervisorVersionTooOld: for an API older than 1.25.
        """
        self._host = host
        self._refresh_info()
        if self._watcher is None:
            self._watcher = devents.EventWatcher(
                self._event_client, host, self._on_event,
                observe=self._observe_event)
            if not self._watcher.start():
                LOG.warning('The Docker event stream did not open within '
                            '5s; events will follow once it does')
        self.sweep_leftovers()
        LOG.debug('Docker compute host %s ready: dockerd %s, API %s', host,
                  self._info.get('ServerVersion'), self.api.api_version)

    def _event_client(self):
        # Its own connection: the stream holds one open indefinitely.
        return dclient.connect(self.conf, self._host)

    def _on_event(self, uuid: str, transition: int, timestamp: float) -> None:
        self.emit_event(virtevent.LifecycleEvent(uuid, transition, timestamp))

    def _observe_event(self, action: str, container_id: str,
                       attributes: dict) -> None:
        if action == 'create':
            self._usage.add_labelled(container_id, attributes)
        elif action == 'destroy':
            self._usage.remove(container_id)
        elif action in STATE_AFTER_EVENT:
            self._usage.set_state(container_id, STATE_AFTER_EVENT[action])
        name = attributes.get('name')
        if name:
            self._waiters.notify(name)
        self._waiters.notify(container_id)

    def _event_generation(self) -> int | None:
        watcher = self._watcher
        return None if watcher is None else watcher.generation

    def _sync_usage(self) -> None:
        """List our containers into the totals unless they are fresh.

        Called with the claim lock held.
        """
        generation = self._event_generation()
        if self._usage.fresh(generation, self.conf.docker.usage_sync_interval):
            return
        with self._translated('list containers'):
            self._usage.sync(generation, self._summaries)

    def _wait_for(self, name: str, operation: str, done: typing.Callable[
            [], bool], what: typing.Callable[[], str]) -> None:
        """Wait until ``done()``, woken by events about container ``name``.

        Without an event stream it checks again after a growing delay.

        :raises BackendError: after ``[docker] timeout`` seconds, saying
            ``what()``.
        """
        timeout = self.conf.docker.timeout
        deadline = time.monotonic() + timeout
        delay = POLL_INITIAL
        with self._waiters.watching(name) as changed:
            while True:
                # Cleared before the check: an event in between wakes the
                # wait below at once.
                changed.clear()
                if done():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise exception.BackendError(
                        operation=operation, instance=name,
                        reason='%s after %ds' % (what(), timeout))
                if self._event_generation() is None:
                    changed.wait(min(delay, left))
                    delay = min(delay * 2, POLL_MAX)
                else:
                    changed.wait(min(EVENT_WAIT_MAX, left))

    def get_info(self, instance, use_cache=True):
        data = self._inspect(instance)
        return objects.InstanceInfo(state=self._state_of(data),
                                    internal_id=data.get('Id'))

    def list_instances(self):
        return [r.instance.name for r in self._records()]

    def list_instance_uuids(self):
        return [r.instance.uuid for r in self._records()]

    def list_instance_records(self):
        return self._records()

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        driver.check_spawn_instance(instance)
        image_ref = image_meta.name if image_meta else instance.image_ref
        objects.validate_image_ref(image_ref)
        host_config_args = hostconfig.host_config_args(self.conf,
                                                       instance.flavor)
        with self._translated('spawn', instance.name):
            image = dimages.ImageStore(self.api, self.conf.docker).ensure(
                image_ref)
            self._claim(instance)
            container_id = None
            try:
                container_id = self._create(instance, image_ref, image,
                                            host_config_args)
            finally:
                # Counted from now on by the totals instead: atomically,
                # or a claim in between would miss it.
                with self._claim_lock:
                    self._pending.pop(instance.uuid, None)
                    if container_id is not None:
                        self._usage.add(container_id, instance)
        # Until the rename below, the container has its spawning name: it
        # is not an instance yet, and if this process dies, or dockerd
        # does and the removal below fails, a sweep knows it for a
        # leftover (see cleanup_leftovers).
        try:
            if power_on:
                with self._translated('start', instance.name):
                    self._start(instance, container_id)
                self._usage.set_state(container_id, 'running')
            with self._translated('spawn', instance.name):
                try:
                    self.api.rename(container_id,
                                    self._container_name(instance.uuid))
                except docker_errors.APIError as exc:
                    if dclient.is_status(exc, 409):
                        raise exception.InstanceExists(
                            instance=instance.uuid) from exc
                    raise
        except BaseException:
            self._roll_back_spawn(container_id, instance)
            raise
        finally:
            self._spawning.discard(container_id)

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
        with self._translated('list leftovers'):
            summaries = self.api.containers(
                all=True, filters={
                    **self._label_filters(),
                    'name': [mapping.SPAWNING_SUFFIX + '$']})
        return leftovers.sweep(self.name, itertools.chain(
            self._leftover_candidates(summaries),
            self._partial_tarballs()), dry_run)

    def _partial_tarballs(self) -> typing.Iterator[leftovers.Candidate]:
        store = dimages.ImageStore(self.api, self.conf.docker)
        for path in store.partial_tarballs():
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
        with self._translated('remove leftover', container_id[:12]):
            try:
                self.api.remove_container(container_id, force=True, v=True)
            except docker_errors.NotFound:
                pass
        self._usage.remove(container_id)

    def _claim(self, instance: objects.Instance) -> None:
        """Check the flavor fits and reserve it until the create is done.

        :raises InstanceExists: when the uuid or the name is taken.
        :raises InsufficientResources: when the flavor does not fit.
        """
        info = self._info or self._refresh_info()
        # The totals count every container of this host (spawns under way
        # in other processes too); the pending ones are this process's
        # claims not created yet. A spawn moves from one to the other
        # under this lock.
        with self._claim_lock:
            self._sync_usage()
            self._usage.check_unique(instance)
            pending = list(self._pending.values())
            for other in pending:
                if other.uuid == instance.uuid:
                    raise exception.InstanceExists(instance=instance.uuid)
                if other.name == instance.name:
                    raise exception.InstanceExists(instance=instance.name)
            capacity = self._capacity(info)
            # A pending spawn's create event can be counted before the
            # spawn moves it over: count it once.
            used = tuple(a + b for a, b in zip(
                self._usage.totals(),
                _usage([p for p in pending
                        if not self._usage.counts(p.uuid)])))
            group = self.conf.docker
            flavor = instance.flavor
            for resource, requested, index, ratio in (
                    ('vcpus', flavor.vcpus, 0, group.cpu_allocation_ratio),
                    ('memory_mb', flavor.memory_mb, 1,
                     group.ram_allocation_ratio),
                    ('disk_gb', flavor.disk_gb, 2,
                     group.disk_allocation_ratio)):
                total = capacity[index]
                if resource == 'disk_gb' and total == 0:
                    continue  # unknown: a remote daemon without disk_gb
                limit = int(total * ratio)
                if requested > limit - used[index]:
                    raise exception.InsufficientResources(
                        resource=resource, host=self._host,
                        requested=requested, free=limit - used[index],
                        total=limit)
            self._pending[instance.uuid] = instance

    def _create(self, instance: objects.Instance, image_ref: str,
                image: dict, host_config_args: dict) -> str:
        api = self.api
        labels = mapping.instance_labels(instance, self._host)
        labels[mapping.SPAWN_OWNER] = leftovers.owner_label()
        try:
            result = api.create_container(
                image=image.get('Id') or image_ref,
                name=(self._container_name(instance.uuid) +
                      mapping.SPAWNING_SUFFIX),
                hostname=instance.name[:63], labels=labels,
                host_config=api.create_host_config(**host_config_args),
                detach=True)
        except docker_errors.APIError as exc:
            text = dclient.api_error_text(exc)
            if dclient.is_status(exc, 409):
                raise exception.InstanceExists(instance=instance.uuid) from exc
            if dclient.is_status(exc, 400):
                raise exception.InvalidInput(
                    reason='Docker refused to create %s: %s'
                           % (instance.name, text)) from exc
            if dclient.is_status(exc, 404):
                raise exception.ImageNotFound(
                    image=image_ref, available=text) from exc
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
            if dclient.is_status(exc, 400):
                raise exception.BackendError(
                    operation='start', instance=instance.name,
                    reason=dclient.api_error_text(exc)) from exc
            raise

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

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        name = self._container_name(instance.uuid)
        with self._instance_lock(instance.uuid), self._translated(
                'destroy', instance.name):
            try:
                self.api.remove_container(name, force=True, v=True)
            except docker_errors.NotFound:
                LOG.debug('Instance %s is already gone', instance.uuid)
            except docker_errors.APIError as exc:
                # Someone else is removing it: wait for them.
                if not dclient.is_status(exc, 409):
                    raise
                self._wait_gone(name)
            self._usage.remove_instance(instance.uuid)
        with self._lock:
            self._instance_locks.pop(instance.uuid, None)

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

    def _capacity(self, info: dict) -> tuple[int, int, int]:
        return (int(info.get('NCPU') or 0),
                int(info.get('MemTotal') or 0) // (1024 * 1024),
                self._disk_gb(info))

    def _disk_gb(self, info: dict) -> int:
        configured = self.conf.docker.disk_gb
        if configured:
            return configured
        root = info.get('DockerRootDir')
        # statvfs sees this machine's disks: only right for a local daemon.
        if not (root and self._url.startswith('unix://')):
            return 0
        try:
            stat = os.statvfs(root)
        except OSError:
            return 0
        return stat.f_blocks * stat.f_frsize // GIB

    def get_available_resource(self, nodename):
        info = self._refresh_info()
        with self._claim_lock:
            self._sync_usage()
        vcpus, memory_mb, local_gb = self._capacity(info)
        used = self._usage.totals()
        running = self._usage.running()
        version = '.'.join(
            ''.join(c for c in part if c.isdigit()) or '0'
            for part in str(info.get('ServerVersion') or '0').split(
                '+')[0].split('-')[0].split('.')[:3])
        return objects.HostResources(
            vcpus=vcpus, memory_mb=memory_mb, local_gb=local_gb,
            vcpus_used=used[0], memory_mb_used=used[1],
            local_gb_used=used[2], hypervisor_type=self.hypervisor_type,
            hypervisor_version=objects.version_to_int(version),
            hypervisor_hostname=self._host, running_vms=running,
            cpu_info={'arch': info.get('Architecture') or 'unknown',
                      'model': 'container', 'vendor': 'docker',
                      'topology': {'sockets': 1, 'cores': vcpus,
                                   'threads': 1},
                      'kernel': info.get('KernelVersion') or '',
                      'cgroup_version': info.get('CgroupVersion') or ''})

    def get_available_nodes(self, refresh=False):
        return [self._host]

    def get_host_identity(self):
        """dockerd's daemon ID (``docker info``'s ``ID``)."""
        return self._refresh_info().get('ID') or None

    # -- optional ------------------------------------------------------------

    def cleanup_host(self, host):
        """Stop following events and close the connection."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        api, self._api = self._api, None
        if api is not None:
            api.close()

    def instance_exists(self, instance):
        try:
            self._inspect(instance)
        except exception.InstanceNotFound:
            return False
        return True

    def _act(self, instance: objects.Instance, operation: str,
             action: typing.Callable[[str, dict], object],
             result: str) -> None:
        """Check the power state, then run ``action(name, container)``.

        :param result: the Docker state the container is in after it, for
            the running count of the totals (its event says so too, a
            moment later).
        """
        with self._instance_lock(instance.uuid):
            data = self._inspect(instance)
            self.check_power_state(instance, operation, self._state_of(data))
            with self._translated(operation.replace('_', ' '),
                                  instance.name):
                action(self._container_name(instance.uuid), data)
            self._usage.set_state(data.get('Id') or '', result)

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        kind = driver.reboot_kind(reboot_type)
        if kind == driver.REBOOT_SOFT:
            self._act(instance, 'soft_reboot', lambda name, data: (
                self.api.restart(
                    name, timeout=self.conf.docker.stop_grace_period)),
                'running')
            return

        def hard(name: str, data: dict) -> None:
            state = self._state_of(data)
            if state == power_state.PAUSED:
                # The freezer holds the signal until a thaw.
                self.api.unpause(name)
                self._settle(name, 'running')
            if state in (power_state.RUNNING, power_state.PAUSED,
                         power_state.CRASHED):
                self.api.stop(name, timeout=0)
            self.api.start(name)

        self._act(instance, 'hard_reboot', hard, 'running')

    def power_off(self, instance, timeout=0, retry_interval=0):
        if timeout < 0 or retry_interval < 0:
            raise exception.InvalidInput(
                reason='timeout and retry_interval must be >= 0')

        def stop(name: str, data: dict) -> None:
            if self._state_of(data) == power_state.PAUSED:
                self.api.unpause(name)
                self._settle(name, 'running')
            self.api.stop(name, timeout=timeout)

        self._act(instance, 'power_off', stop, 'exited')

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        self._act(instance, 'power_on',
                  lambda name, data: self._start(instance), 'running')

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

    def pause(self, instance):
        def pause(name: str, data: dict) -> None:
            self.api.pause(name)
            self._settle(name, 'paused')

        self._act(instance, 'pause', pause, 'paused')

    def unpause(self, instance):
        def unpause(name: str, data: dict) -> None:
            self.api.unpause(name)
            self._settle(name, 'running')

        self._act(instance, 'unpause', unpause, 'running')

    def snapshot(self, context, instance, image_id, update_task_state):
        dimages.validate_reference(image_id)
        store = dimages.ImageStore(self.api, self.conf.docker)
        with self._instance_lock(instance.uuid), self._snapshot_lock:
            data = self._inspect(instance)
            self.check_power_state(instance, 'snapshot',
                                   self._state_of(data))
            with self._translated('snapshot', instance.name):
                if store.inspect(image_id) is not None:
                    raise exception.InvalidInput(
                        reason='an image named %s exists already'
                               % image_id)
            if update_task_state is not None:
                update_task_state(task_state=IMAGE_PENDING_UPLOAD)
                update_task_state(task_state=IMAGE_UPLOADING,
                                  expected_state=IMAGE_PENDING_UPLOAD)
            repo, tag = dimages.split_tag(image_id)
            stored = self._stored_instance(data, instance)
            # A committed image inherits the container's labels; blank the
            # instance's so a container run from the image by hand is not
            # taken for the instance.
            labels = {key: '' for key in mapping.INSTANCE_KEYS}
            labels.update({mapping.IMAGE_TYPE: mapping.SNAPSHOT,
                           mapping.SNAPSHOT_OF: instance.uuid,
                           mapping.SNAPSHOT_NAME: image_id,
                           mapping.BASE_IMAGE: stored.image_ref})
            with self._translated('snapshot', instance.name):
                try:
                    self.api.commit(
                        self._container_name(instance.uuid), repository=repo,
                        tag=tag, conf={'Labels': labels},
                        message='snapshot of %s' % instance.uuid)
                except docker_errors.APIError as exc:
                    # dockerd 20.10 answers 500 to a bad name in a commit,
                    # after making the image: remove it.
                    if dclient.is_status(exc, 400) or (
                            'reference format' in str(exc)):
                        self._remove_untagged_snapshot(image_id)
                        raise exception.InvalidInput(
                            reason='Docker refused the image name %r: %s'
                                   % (image_id, dclient.api_error_text(exc))
                        ) from exc
                    raise
                try:
                    store.save(image_id)
                except OSError as exc:
                    self._remove_image_quietly(image_id)
                    raise exception.BackendError(
                        operation='snapshot', instance=instance.name,
                        reason='cannot save the image into %s: %s' % (
                            self.conf.docker.image_directory,
                            exception.one_line(exc))) from exc
                except BaseException:
                    self._remove_image_quietly(image_id)
                    raise

    def _remove_untagged_snapshot(self, image_id: str) -> None:
        try:
            for image in self.api.images(filters={
                    'dangling': True,
                    'label': '%s=%s' % (mapping.SNAPSHOT_NAME, image_id)}):
                self._remove_image_quietly(image['Id'])
        except Exception as exc:
            LOG.warning('Could not look for the image of a refused '
                        'snapshot name %r; an untagged image may be left: '
                        '%s', image_id, exception.one_line(exc))
            LOG.debug('Lookup failure', exc_info=True)

    def _remove_image_quietly(self, ref: str) -> None:
        try:
            self.api.remove_image(ref)
        except Exception as exc:
            LOG.warning('Could not remove image %s after a failed '
                        'snapshot; it is left: %s', ref,
                        exception.one_line(exc))
            LOG.debug('Removal failure', exc_info=True)

    def delete_snapshot(self, context, image_id):
        store = dimages.ImageStore(self.api, self.conf.docker)
        with self._snapshot_lock, self._translated('delete snapshot',
                                                   image_id):
            found = store.inspect(image_id)
            if found is None:
                store.remove_tarball(image_id)
                return
            labels = (found.get('Config') or {}).get('Labels')
            if dimages.snapshot_of(labels) is None:
                raise exception.InvalidInput(
                    reason='image %s is not a snapshot' % image_id)
            try:
                self.api.remove_image(image_id)
            except docker_errors.NotFound:
                pass
            except docker_errors.APIError as exc:
                # A reverted instance runs from it: untag it only; Docker
                # frees the layers with the last container using them.
                if not dclient.is_status(exc, 409):
                    raise
                self.api.remove_image(image_id, force=True, noprune=True)
            store.remove_tarball(image_id)

    def revert_to_snapshot(self, context, instance, image_id):
        store = dimages.ImageStore(self.api, self.conf.docker)
        with self._instance_lock(instance.uuid):
            data = self._inspect(instance)
            with self._translated('revert', instance.name):
                image = store.inspect(image_id)
                if image is None or dimages.snapshot_of(
                        (image.get('Config') or {}).get('Labels')
                ) != instance.uuid:
                    mine = [m.name for m in store.list_images()
                            if m.properties.get('instance_uuid') ==
                            instance.uuid]
                    raise exception.ImageNotFound(
                        image='%s (a snapshot of %s)' % (image_id,
                                                         instance.name),
                        available=', '.join(mine) or 'none')
            self.check_power_state(instance, 'revert_to_snapshot',
                                   self._state_of(data))
            with self._translated('revert', instance.name):
                self._replace_container(instance, data, image)

    def _replace_container(self, instance: objects.Instance, old: dict,
                           image: dict) -> None:
        """Swap the container of ``instance`` for one from ``image``.

        The old one is stopped and renamed aside, the new one created
        under the instance's name with the same labels; only then is the
        old one removed. A failure puts the old one back as it was.
        """
        api = self.api
        name = self._container_name(instance.uuid)
        was_running = self._state_of(old) == power_state.RUNNING
        stored = self._stored_instance(old, instance)
        aside = '%s-reverting-%s' % (name, uuidlib.uuid4().hex[:8])
        labels = (old.get('Config') or {}).get('Labels') or {}
        host_config = api.create_host_config(
            **hostconfig.host_config_args(self.conf, stored.flavor))
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
        except BaseException:
            if new_id is not None:
                self._remove_quietly(new_id, instance)
            api.rename(old['Id'], name)
            if was_running:
                api.start(old['Id'])
            raise
        self._remove_quietly(old['Id'], instance)

    def live_resize(self, context, instance, vcpus=None, memory_mb=None):
        with self._instance_lock(instance.uuid):
            data = self._inspect(instance)
            stored = self._stored_instance(data, instance)
            # The stored flavor is what spawn claimed; the caller's copy of
            # the instance may say otherwise.
            self.check_live_resize(stored, vcpus, memory_mb)
            if memory_mb is not None:
                hostconfig.check_memory(memory_mb, 'live resize of %s'
                                        % instance.name)
            self.check_power_state(instance, 'live_resize',
                                   self._state_of(data))
            current_vcpus, current_memory = hostconfig.current_limits(
                data.get('HostConfig') or {})
            limits = hostconfig.Limits(
                vcpus=vcpus or current_vcpus or stored.flavor.vcpus,
                memory_mb=(memory_mb or current_memory or
                           stored.flavor.memory_mb),
                swap_mb=stored.flavor.swap)
            with self._translated('live resize', instance.name):
                try:
                    self.api.update_container(
                        self._container_name(instance.uuid),
                        **limits.update_args())
                except docker_errors.APIError as exc:
                    if dclient.is_status(exc, 400):
                        raise exception.InvalidInput(
                            reason='Docker refused to resize %s: %s' % (
                                instance.name, dclient.api_error_text(exc))
                        ) from exc
                    raise

    def get_console_output(self, context, instance):
        self._inspect(instance)
        with self._translated('console log', instance.name):
            output = self.api.logs(
                self._container_name(instance.uuid), stdout=True,
                stderr=True, timestamps=False,
                tail=self.conf.docker.console_log_lines)
        return output.decode('utf-8', errors='replace')

    def get_diagnostics(self, instance):
        data = self._inspect(instance)
        state = self._state_of(data)
        stored = self._stored_instance(data, instance)
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
        if state in driver.ACTIVE_STATES:
            with self._translated('diagnostics', instance.name):
                kwargs = {}
                if dclient._version_tuple(self.api.api_version) >= (1, 41):
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
                'rx_bytes': sum(n.get('rx_bytes', 0)
                                for n in networks.values()),
                'tx_bytes': sum(n.get('tx_bytes', 0)
                                for n in networks.values()),
            })
        return result

    def get_host_ip_addr(self):
        url = self._url
        if not url.startswith('unix://'):
            host = urllib.parse.urlsplit(url).hostname
            if host:
                return host
        # The address of the default route's interface: connecting a UDP
        # socket picks it without sending anything.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect(('192.0.2.1', 9))
            return probe.getsockname()[0]
        except OSError:
            return '127.0.0.1'
        finally:
            probe.close()

    def get_host_uptime(self):
        info = self._refresh_info()
        running = info.get('ContainersRunning', 0)
        if self._url.startswith('unix://'):
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
        with self._translated('list images'):
            return dimages.ImageStore(self.api, self.conf.docker).list_images()


def _usage(instances: list[objects.Instance]) -> tuple[int, int, int]:
    return (sum(i.flavor.vcpus for i in instances),
            sum(i.flavor.memory_mb for i in instances),
            sum(i.flavor.disk_gb for i in instances))
