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

"""Commands resizing an instance on its host.

``resize`` keeps the instance as it was until ``resize-confirm`` drops
that or ``resize-revert`` goes back to it, as ``openstack server resize``
does; ``resize --confirm`` does both steps at once.
"""

from compute_driver.cmd import server
from compute_driver import flavors


class ResizeInstance(server._InstanceAction):
    """Give an instance another flavor; it keeps its power state."""

    operation = 'resize'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--flavor', metavar='FLAVOR', required=True,
                            help='The new flavor (see "flavors"); its disks '
                                 'may not be smaller.')
        parser.add_argument('--confirm', action='store_true',
                            help='Confirm at once: nothing is kept to '
                                 'revert to.')
        return parser

    def params(self, parsed_args):
        return {'flavor': flavors.get_flavor(self.app.conf,
                                             parsed_args.flavor)}

    def act(self, backend, instance, parsed_args):
        super().act(backend, instance, parsed_args)
        if parsed_args.confirm:
            backend.confirm_migration(instance)


class ConfirmResize(server._InstanceAction):
    """Drop what a resize kept to revert to."""

    operation = 'resize'

    def act(self, backend, instance, parsed_args):
        backend.confirm_migration(instance)


class RevertResize(server._InstanceAction):
    """Put an instance back as it was before its resize."""

    operation = 'resize'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--stopped', action='store_true',
                            help='Leave it stopped; by default it runs.')
        return parser

    def act(self, backend, instance, parsed_args):
        backend.finish_revert_migration(instance,
                                        power_on=not parsed_args.stopped)
