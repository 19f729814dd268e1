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

"""Commands about the host and its backends.

``drivers``, ``check``, ``resources``, ``images``, ``flavors`` and
``cleanup``.
"""

from compute_driver.cmd import common
from compute_driver import exception
from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects


def _nodename(backend) -> str | None:
    nodes = backend.get_available_nodes()
    return nodes[0] if nodes else None


def _resource_fields(resources: objects.HostResources) -> dict[str, object]:
    data = resources.to_dict()
    data['hypervisor_version'] = objects.version_to_str(
        resources.hypervisor_version)
    data['vcpus_free'] = resources.vcpus_free
    data['memory_mb_free'] = resources.memory_mb_free
    data['local_gb_free'] = resources.local_gb_free
    # Nova's dict carries cpu_info as JSON text; show the structure.
    data['cpu_info'] = common.DictColumn(resources.cpu_info)
    del data['numa_topology']
    return data


class ListDrivers(common.Lister):
    """List the installed backends and whether each one can be loaded.

    Whether a backend loads is read from the installed packages' metadata
    (its extra's requirements, its modules on the path) without importing
    it or its SDK; --load imports each one instead. No configuration is
    read and no hypervisor is contacted.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--load', action='store_true',
            help='Import each backend and its SDK to tell whether it '
                 'loads, which also catches a module that fails to import; '
                 'slower than reading package metadata.')
        return parser

    def take_action(self, parsed_args):
        # Here rather than with the module's imports: only this command
        # needs it.
        from compute_driver import probe
        rows = []
        for name, target in loader.entry_point_targets().items():
            try:
                probe.check_driver(name, load=parsed_args.load)
            except exception.BackendSDKMissing as exc:
                status = 'missing SDK module %r: %s' % (exc.module, exc.hint)
            except exception.ComputeDriverError as exc:
                status = exception.one_line(exc)
            else:
                status = 'ok'
            rows.append((name, target, status))
        return ('Name', 'Entry Point', 'Status'), rows


class CheckHost(common.ShowOne):
    """Load the configured backend, connect to its host and describe it.

    Exits non-zero with the reason when the backend cannot be loaded or
    its hypervisor cannot be used; prints each of the backend's host
    warnings as one ``warning:`` line on stderr and still exits 0.
    """

    def take_action(self, parsed_args):
        backend = self.app.driver
        for warning in backend.host_warnings():
            self.app.stderr.write(
                'warning: %s\n' % ' '.join(str(warning).split()))
        resources = backend.get_available_resource(_nodename(backend))
        supported = sorted(op for op in backend.capabilities
                           if backend.capabilities[op])
        data = {
            'driver': backend.name,
            'host': self.app.conf.host,
            'hypervisor_type': resources.hypervisor_type,
            'hypervisor_version': objects.version_to_str(
                resources.hypervisor_version),
            'hypervisor_hostname': resources.hypervisor_hostname,
            'vcpus': resources.vcpus,
            'vcpus_free': resources.vcpus_free,
            'memory_mb': resources.memory_mb,
            'memory_mb_free': resources.memory_mb_free,
            'local_gb': resources.local_gb,
            'local_gb_free': resources.local_gb_free,
            'running_vms': resources.running_vms,
            'capabilities': common.ListColumn(
                [op[len('supports_'):] for op in supported]),
        }
        return tuple(data), tuple(data.values())


class ShowResources(common.ShowOne):
    """Show the host's capacity and what the backend's instances use."""

    def take_action(self, parsed_args):
        backend = self.app.driver
        data = _resource_fields(
            backend.get_available_resource(_nodename(backend)))
        names = sorted(data)
        return names, [data[n] for n in names]


class ListImages(common.Lister):
    """List the images the backend can boot, snapshots included.

    "Snapshot Of" names the instance a snapshot was taken from, with its
    uuid (the uuid alone once the instance is gone).
    """

    def take_action(self, parsed_args):
        backend = self.app.driver
        common.require(backend, 'list_images')
        images = backend.list_images()
        sources = [i.properties.get('instance_uuid') for i in images]
        names = ({r.instance.uuid: r.instance.name
                  for r in backend.list_instance_records()}
                 if any(sources) else {})
        rows = [(i.name, i.disk_format or '', i.container_format or '',
                 i.min_ram, i.min_disk, i.size,
                 _snapshot_of(source, names),
                 common.DictColumn(i.properties))
                for i, source in zip(images, sources)]
        return (('Name', 'Disk Format', 'Container Format', 'Min RAM (MB)',
                 'Min Disk (GB)', 'Size', 'Snapshot Of', 'Properties'), rows)


def _snapshot_of(uuid: str | None, names: dict[str, str]) -> str:
    if not uuid:
        return ''
    name = names.get(uuid)
    return '%s (%s)' % (name, uuid) if name else uuid


class ListFlavors(common.Lister):
    """List the built-in and configured flavors."""

    def take_action(self, parsed_args):
        rows = [(f.name, f.vcpus, f.memory_mb, f.root_gb, f.ephemeral_gb,
                 f.swap, common.DictColumn(f.extra_specs))
                for f in flavors.get_flavors(self.app.conf).values()]
        return (('Name', 'vCPUs', 'Memory (MB)', 'Root (GB)',
                 'Ephemeral (GB)', 'Swap (MB)', 'Extra Specs'), rows)


class CleanupLeftovers(common.Lister):
    """Remove what interrupted or failed operations left on the host.

    One row per object: the backend, the object and why it is a leftover
    (a spawn killed half-way, a rollback that could not remove what it
    made), then whether it was removed. Instances, and operations still
    running in any process, are never touched. Every other command's
    start sweeps the same way; this one lists what it removes. Exits 1
    when an object could not be removed.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--dry-run', action='store_true',
            help='List the leftovers without removing anything.')
        return parser

    def take_action(self, parsed_args):
        backend = self.app.load_driver(sweep=False)
        found = backend.cleanup_leftovers(dry_run=parsed_args.dry_run)
        if not found:
            self.app.stderr.write('Nothing to clean up on the %s backend.\n'
                                  % backend.name)
        self._failed = [f for f in found if f.error]
        rows = [(f.backend, f.what, f.reason,
                 'would remove' if parsed_args.dry_run else
                 'failed: %s' % f.error if f.error else 'removed')
                for f in found]
        return ('Backend', 'Object', 'Reason', 'Result'), rows

    def run(self, parsed_args):
        self._failed = []
        status = super().run(parsed_args)
        if status == 0 and self._failed:
            self.app.stderr.write('%d of the leftovers could not be '
                                  'removed.\n' % len(self._failed))
            return common.EXIT_FAILURE
        return status
