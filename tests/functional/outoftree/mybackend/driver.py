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

"""The backend: instances are entries of a dict, kept in the process."""

import dataclasses
import threading

from compute_driver import driver
from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state

from mybackend import conf as my_conf


@dataclasses.dataclass
class _Server:
    """What the hypervisor would hold: the instance and its power state."""

    instance: objects.Instance
    state: int


class MyDriver(driver.ComputeDriver):
    """An in-memory host, entry point ``mybackend``."""

    # What the library reads from the class: the option group the loader
    # registers, the Nova image types and the kind of instance.
    CONFIG_GROUP = my_conf.GROUP
    CONFIG_OPTS = my_conf.opts
    image_types = ('raw',)
    runs_containers = False

    hypervisor_type = 'mybackend'
    # No hypervisor event stream here: the library emits each operation's
    # lifecycle events itself.
    emits_lifecycle_events = False
    # The optional operations it offers; every other one raises
    # NotSupported, which the conformance suite checks.
    capabilities = {'supports_instance_exists': True,
                    'supports_power_off': True,
                    'supports_power_on': True,
                    'supports_list_images': True}

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi=virtapi)
        self._opts = conf.mybackend
        self._lock = threading.Lock()
        self._servers: dict[str, _Server] = {}

    # -- required hooks: the library calls them with the instance locked,
    # the power state checked and the flavor claimed, and emits the events.

    def _connect(self):
        """Nothing to reach: the host is this process's memory."""

    def _find(self, instance):
        with self._lock:
            try:
                return self._servers[instance.uuid]
            except KeyError:
                raise exception.InstanceNotFound(
                    instance=instance.name) from None

    def _power_state(self, server):
        return server.state

    def _get_image(self, instance):
        if instance.image_ref not in self._opts.images:
            raise exception.ImageNotFound(
                image=instance.image_ref,
                available=', '.join(self._opts.images))
        return objects.ImageMeta(instance.image_ref)

    def _create(self, instance, image, power_on, network_info,
                block_device_info):
        state = power_state.RUNNING if power_on else power_state.SHUTDOWN
        with self._lock:
            self._servers[instance.uuid] = _Server(instance, state)

    def _destroy(self, instance, destroy_disks):
        with self._lock:
            server = self._servers.pop(instance.uuid, None)
        return None if server is None else server.state

    def _resources(self, pending):
        with self._lock:
            servers = list(self._servers.values())
        listed = {s.instance.uuid for s in servers}
        flavors = [s.instance.flavor for s in servers] + [
            i.flavor for i in pending if i.uuid not in listed]
        return objects.HostResources(
            vcpus=self._opts.vcpus, memory_mb=self._opts.memory_mb,
            local_gb=self._opts.disk_gb,
            vcpus_used=sum(f.vcpus for f in flavors),
            memory_mb_used=sum(f.memory_mb for f in flavors),
            local_gb_used=sum(f.disk_gb for f in flavors),
            hypervisor_type=self.hypervisor_type, hypervisor_version=1000,
            hypervisor_hostname=self.host,
            running_vms=sum(1 for s in servers
                            if s.state in driver.ACTIVE_STATES),
            cpu_info={'arch': 'x86_64'})

    def list_instance_records(self):
        with self._lock:
            return [
                objects.InstanceRecord(
                    instance=s.instance,
                    info=objects.InstanceInfo(state=s.state,
                                              internal_id=uuid))
                for uuid, s in self._servers.items()]

    # -- the optional operations of capabilities; instance_exists needs no
    # hook of its own.

    def _power_off(self, server, instance, current, timeout, retry_interval):
        server.state = power_state.SHUTDOWN

    def _power_on(self, server, instance):
        server.state = power_state.RUNNING

    def list_images(self):
        return [objects.ImageMeta(name) for name in self._opts.images]
