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

import threading

from compute_driver import driver
from compute_driver import event
from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state

from mybackend import conf as my_conf


class MyDriver(driver.ComputeDriver):
    """An in-memory host, entry point ``mybackend``."""

    # What the library reads from the class: the option group the loader
    # registers, the Nova image types and the kind of instance.
    CONFIG_GROUP = my_conf.GROUP
    CONFIG_OPTS = my_conf.opts
    image_types = ('raw',)
    runs_containers = False

    hypervisor_type = 'mybackend'
    # The optional operations it offers; every other one raises
    # NotSupported, which the conformance suite checks.
    capabilities = {'supports_instance_exists': True,
                    'supports_power_off': True,
                    'supports_power_on': True,
                    'supports_list_images': True}

    def __init__(self, conf, virtapi=None):
        super().__init__(conf, virtapi=virtapi)
        self._opts = conf.mybackend
        self._host = conf.host
        self._lock = threading.Lock()
        # uuid -> [instance, power state]
        self._instances: dict[str, list] = {}

    def _entry(self, instance):
        try:
            return self._instances[instance.uuid]
        except KeyError:
            raise exception.InstanceNotFound(instance=instance.name) from None

    def _usage(self):
        flavors = [i.flavor for i, _ in self._instances.values()]
        return {'vcpus': sum(f.vcpus for f in flavors),
                'memory_mb': sum(f.memory_mb for f in flavors),
                'disk_gb': sum(f.disk_gb for f in flavors)}

    def _operate(self, instance, operation):
        spec = driver.TRANSITIONS[operation]
        with self._lock:
            entry = self._entry(instance)
            self.check_power_state(instance, operation, entry[1])
            entry[1] = spec.result
        # Outside the lock: a listener may call back into the driver.
        for transition in spec.events:
            self.emit_lifecycle(instance.uuid, transition)

    # -- required ----------------------------------------------------------

    def init_host(self, host):
        self._host = host

    def get_info(self, instance, use_cache=True):
        with self._lock:
            state = self._entry(instance)[1]
        return objects.InstanceInfo(state=state, internal_id=instance.uuid)

    def list_instances(self):
        with self._lock:
            return [i.name for i, _ in self._instances.values()]

    def list_instance_uuids(self):
        with self._lock:
            return list(self._instances)

    def list_instance_records(self):
        with self._lock:
            return [
                objects.InstanceRecord(
                    instance=i,
                    info=objects.InstanceInfo(state=state, internal_id=uuid))
                for uuid, (i, state) in self._instances.items()]

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        driver.check_spawn_instance(instance)
        if image_meta.name not in self._opts.images:
            raise exception.ImageNotFound(
                image=image_meta.name, available=', '.join(self._opts.images))
        with self._lock:
            if instance.uuid in self._instances or instance.name in (
                    i.name for i, _ in self._instances.values()):
                raise exception.InstanceExists(instance=instance.name)
            used = self._usage()
            for resource, requested in (
                    ('vcpus', instance.flavor.vcpus),
                    ('memory_mb', instance.flavor.memory_mb),
                    ('disk_gb', instance.flavor.disk_gb)):
                total = self._opts[resource]
                if requested > total - used[resource]:
                    raise exception.InsufficientResources(
                        resource=resource, host=self._host,
                        requested=requested, free=total - used[resource],
                        total=total)
            state = power_state.RUNNING if power_on else power_state.SHUTDOWN
            self._instances[instance.uuid] = [instance, state]
        if power_on:
            self.emit_lifecycle(instance.uuid, event.EVENT_LIFECYCLE_STARTED)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        with self._lock:
            entry = self._instances.pop(instance.uuid, None)
        if entry is not None and entry[1] != power_state.SHUTDOWN:
            self.emit_lifecycle(instance.uuid, event.EVENT_LIFECYCLE_STOPPED)

    def get_available_resource(self, nodename):
        with self._lock:
            used = self._usage()
            running = sum(1 for _, state in self._instances.values()
                          if state in driver.ACTIVE_STATES)
        return objects.HostResources(
            vcpus=self._opts.vcpus, memory_mb=self._opts.memory_mb,
            local_gb=self._opts.disk_gb, vcpus_used=used['vcpus'],
            memory_mb_used=used['memory_mb'], local_gb_used=used['disk_gb'],
            hypervisor_type=self.hypervisor_type, hypervisor_version=1000,
            hypervisor_hostname=self._host, running_vms=running,
            cpu_info={'arch': 'x86_64'})

    def get_available_nodes(self, refresh=False):
        return [self._host]

    # -- optional ----------------------------------------------------------

    def instance_exists(self, instance):
        with self._lock:
            return instance.uuid in self._instances

    def power_off(self, instance, timeout=0, retry_interval=0):
        self._operate(instance, 'power_off')

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        self._operate(instance, 'power_on')

    def list_images(self):
        return [objects.ImageMeta(name) for name in self._opts.images]
