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

"""Commands acting on instances.

Instances are named on the command line by name or uuid, as in
openstackclient. Action commands print nothing on success.
"""

from compute_driver.cmd import common
from compute_driver.cmd import network
from compute_driver import driver as contract
from compute_driver import exception
from compute_driver import flavors
from compute_driver import objects
from compute_driver import power_state

#: Nova's default ``shutdown_timeout`` and retry interval, in seconds.
DEFAULT_STOP_TIMEOUT = 60
STOP_RETRY_INTERVAL = 10


def _instance_fields(backend, record: objects.InstanceRecord):
    instance = record.instance
    vcpus, memory_mb = instance.flavor.vcpus, instance.flavor.memory_mb
    if backend.supports('diagnostics'):
        # The flavor is what was booted; a live resize may have changed
        # what the instance has now.
        diagnostics = backend.get_diagnostics(instance)
        vcpus = diagnostics.get('vcpus', vcpus)
        memory_mb = diagnostics.get('memory_mb', memory_mb)
    data = {
        'name': instance.name,
        'uuid': instance.uuid,
        'state': power_state.name(record.info.state),
        'flavor': instance.flavor.name,
        'vcpus': vcpus,
        'memory_mb': memory_mb,
        'image': instance.image_ref,
        'properties': common.DictColumn(instance.metadata),
        'internal_id': record.info.internal_id or '',
        'nics': '\n'.join(network.nics(backend, instance)),
    }
    return tuple(data), tuple(data.values())


def _add_instance_argument(parser, nargs=None):
    parser.add_argument('instance', metavar='INSTANCE', nargs=nargs,
                        help='Instance name or uuid.')


class BootInstance(common.ShowOne):
    """Create an instance and, unless --stopped, start it."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='NAME', help='New instance name.')
        parser.add_argument('--image', metavar='IMAGE', required=True,
                            help='Image to boot from: an id, or a name only '
                                 'one image has (see "images" and "image '
                                 'list").')
        parser.add_argument('--flavor', metavar='FLAVOR', required=True,
                            help='Flavor to use (see "flavors").')
        parser.add_argument('--stopped', action='store_true',
                            help='Create the instance without starting it.')
        parser.add_argument(
            '--property', metavar='KEY=VALUE', dest='properties',
            action=common.KeyValueAction, default={},
            help='Store a property with the instance; repeatable.')
        network.add_network_argument(parser)
        parser.add_argument(
            '--volume', metavar='DEVICE=MOUNTPOINT', dest='volumes',
            action=common.KeyValueAction, default={},
            help='Attach a block device of this host at MOUNTPOINT (a '
                 'guest device such as /dev/vdb, or a directory in a '
                 'container); /dev/vda boots from it. Repeatable.')
        return parser

    def take_action(self, parsed_args):
        flavor = flavors.get_flavor(self.app.conf, parsed_args.flavor)
        instance = objects.Instance.new(
            parsed_args.name, flavor, parsed_args.image,
            metadata=parsed_args.properties)
        backend = self.app.driver
        # -- volumes: Nova's block_device_info, /dev/vda the root disk.
        bdi = {'root_device_name': '/dev/vda', 'block_device_mapping': [
            {'connection_info': {'driver_volume_type': 'local',
                                 'data': {'device_path': device}},
             'mount_device': mount,
             'boot_index': 0 if mount == '/dev/vda' else None}
            for device, mount in parsed_args.volumes.items()]}
        backend.spawn(instance, power_on=not parsed_args.stopped,
                      network_info=network.ports_of(parsed_args),
                      block_device_info=bdi if parsed_args.volumes else None)
        return _instance_fields(backend, backend.find_instance(instance.uuid))


class ListInstances(common.Lister):
    """List the backend's instances."""

    keeps_gc_paused = True

    def take_action(self, parsed_args):
        backend = self.app.driver
        records = sorted(backend.list_instance_records(),
                         key=lambda r: (r.instance.name, r.instance.uuid))
        # Every instance's ports in one listing, not a look-up each.
        ports = (backend.list_instance_interfaces(
            [r.instance for r in records])
            if backend.supports('interfaces') else {})
        rows = [(r.instance.name, r.instance.uuid,
                 power_state.name(r.info.state), r.instance.flavor.name,
                 r.instance.image_ref,
                 '\n'.join(network.describe(index, port) for index, port in
                           enumerate(ports.get(r.instance.uuid, ()))))
                for r in records]
        return ('Name', 'UUID', 'State', 'Flavor', 'Image', 'Networks'), rows


class ShowInstance(common.ShowOne):
    """Show one instance."""

    keeps_gc_paused = True

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _add_instance_argument(parser)
        return parser

    def take_action(self, parsed_args):
        backend = self.app.driver
        return _instance_fields(backend,
                                backend.find_instance(parsed_args.instance))


class _InstanceAction(common.Command):
    """Base of the commands running one operation on one instance.

    The operation is called as the contract's table,
    :data:`compute_driver.driver.OPERATIONS`, says, with the instance and
    :meth:`params`.
    """

    #: The operation: a key of OPERATIONS.
    operation = ''

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _add_instance_argument(parser)
        return parser

    def take_action(self, parsed_args):
        backend = self.app.driver
        common.require(backend, self.operation)
        instance = backend.find_instance(parsed_args.instance).instance
        self.act(backend, instance, parsed_args)

    def params(self, parsed_args) -> dict[str, object]:
        """The operation's arguments besides the instance."""
        return {}

    def act(self, backend, instance, parsed_args) -> object:
        """Run the operation on ``instance``; what it returns."""
        return contract.OPERATIONS[self.operation].call(
            backend, instance, **self.params(parsed_args))


class StopInstance(_InstanceAction):
    """Stop an instance, shutting its guest down cleanly first."""

    operation = 'power_off'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--timeout', metavar='SECONDS', type=common.int_at_least(0),
            default=DEFAULT_STOP_TIMEOUT,
            help='Seconds to wait for the guest to shut down before it is '
                 'forced off; 0 forces it off at once (default: %d).'
                 % DEFAULT_STOP_TIMEOUT)
        return parser

    def params(self, parsed_args):
        return {'timeout': parsed_args.timeout,
                'retry_interval': min(STOP_RETRY_INTERVAL,
                                      parsed_args.timeout)}


class StartInstance(_InstanceAction):
    """Start a stopped instance."""

    operation = 'power_on'


class RebootInstance(_InstanceAction):
    """Reboot an instance: ask its guest, or reset it with --hard."""

    operation = 'soft_reboot'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--hard', action='store_true',
            help='Reset the instance instead of asking its guest to '
                 'reboot; works from any state.')
        return parser

    def take_action(self, parsed_args):
        self.operation = 'hard_reboot' if parsed_args.hard else 'soft_reboot'
        return super().take_action(parsed_args)


class PauseInstance(_InstanceAction):
    """Freeze a running instance in memory."""

    operation = 'pause'


class UnpauseInstance(_InstanceAction):
    """Thaw a paused instance."""

    operation = 'unpause'


class SuspendInstance(_InstanceAction):
    """Save a running instance's memory to disk and stop it."""

    operation = 'suspend'


class ResumeInstance(_InstanceAction):
    """Restore a suspended instance."""

    operation = 'resume'


class _ImageAction(_InstanceAction):
    """An action on an instance and an image named after it."""

    image_help = ''

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('image', metavar='IMAGE', help=self.image_help)
        return parser

    def params(self, parsed_args):
        return {'image_id': parsed_args.image}


class SnapshotInstance(_ImageAction):
    """Save an instance's disk as a new image."""

    operation = 'snapshot'
    image_help = 'Name of the new image.'


class RevertInstance(_ImageAction):
    """Put an instance's disk back to one of its snapshots."""

    operation = 'revert_to_snapshot'
    image_help = 'A snapshot of this instance.'


class LiveResizeInstance(_InstanceAction):
    """Change a running instance's vCPUs and/or memory, up to its flavor's."""

    operation = 'live_resize'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--vcpus', metavar='N',
                            type=common.int_at_least(1),
                            help='New number of vCPUs.')
        parser.add_argument('--memory', metavar='MB',
                            type=common.int_at_least(1),
                            help='New memory size in MiB.')
        return parser

    def take_action(self, parsed_args):
        if parsed_args.vcpus is None and parsed_args.memory is None:
            raise common.UsageError('live-resize needs --vcpus, --memory '
                                    'or both')
        return super().take_action(parsed_args)

    def params(self, parsed_args):
        return {'vcpus': parsed_args.vcpus, 'memory_mb': parsed_args.memory}


class ShowConsoleLog(_InstanceAction):
    """Print an instance's console log."""

    operation = 'console_output'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--lines', metavar='N',
                            type=common.int_at_least(1),
                            help='Print only the last N lines.')
        return parser

    def act(self, backend, instance, parsed_args):
        lines = str(super().act(backend, instance, parsed_args)).splitlines()
        if parsed_args.lines is not None:
            lines = lines[-parsed_args.lines:]
        for line in lines:
            self.app.stdout.write(line + '\n')


class DeleteInstance(common.Command):
    """Delete instances and everything created for them."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _add_instance_argument(parser, nargs='+')
        return parser

    def take_action(self, parsed_args):
        backend = self.app.driver
        errors = []
        for ref in parsed_args.instance:
            # Keep going, as openstackclient does: one bad name should not
            # leave the other instances running.
            try:
                instance = backend.find_instance(ref).instance
                backend.destroy(instance)
            except Exception as exc:
                if self.app_args is not None and self.app_args.debug:
                    raise
                errors.append(exception.one_line(exc))
        if errors:
            raise common.CommandFailed(
                'Failed to delete %d of %d instances: %s' % (
                    len(errors), len(parsed_args.instance),
                    '; '.join(errors)))


class DeleteSnapshot(common.Command):
    """Delete images made by "snapshot".

    Only snapshots are deleted; naming any other image, or one the
    backend does not list, fails without deleting anything of it. The
    "Snapshot Of" column of "images" says which instance each snapshot
    was taken from.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('image', metavar='SNAPSHOT', nargs='+',
                            help='Name of a snapshot (see "images").')
        return parser

    def take_action(self, parsed_args):
        backend = self.app.driver
        common.require(backend, 'delete_snapshot')
        # delete_snapshot is idempotent, as Nova's callers want; an
        # operator naming a snapshot that is not there has made a typo.
        listed = ({image.name: image for image in backend.list_images()}
                  if backend.supports('list_images') else None)
        errors = []
        for name in parsed_args.image:
            # Keep going, as delete does.
            try:
                if listed is not None:
                    image = listed.get(name)
                    if image is None:
                        raise exception.ImageNotFound(
                            image=name, available=', '.join(
                                sorted(i for i, m in listed.items()
                                       if _is_snapshot(m))) or 'none')
                    if not _is_snapshot(image):
                        raise exception.InvalidInput(
                            reason='image %s is not a snapshot; only '
                                   'snapshots can be deleted' % name)
                backend.delete_snapshot(name)
            except Exception as exc:
                if self.app_args is not None and self.app_args.debug:
                    raise
                errors.append(exception.one_line(exc))
        if len(errors) == 1 and len(parsed_args.image) == 1:
            raise common.CommandFailed(errors[0])
        if errors:
            raise common.CommandFailed(
                'Failed to delete %d of %d snapshots: %s' % (
                    len(errors), len(parsed_args.image), '; '.join(errors)))


def _is_snapshot(image: objects.ImageMeta) -> bool:
    return image.properties.get('image_type') == 'snapshot'
