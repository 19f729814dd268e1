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

"""nova.conf options of the Nova adapter: ``[compute_driver_adapter]``.

These live in Nova's configuration, not the library's: they say which
backend nova-compute runs and where the library's own configuration file
is. Everything about the backend itself stays in that file.
"""

from oslo_config import cfg

GROUP = 'compute_driver_adapter'

TITLE = 'compute-driver Nova adapter options'
HELP = ('Used when nova.conf sets [DEFAULT] compute_driver = '
        'compute_driver_nova.ComputeDriverAdapter: the adapter runs one of '
        'the compute-driver backends under nova-compute.')

opts = [
    cfg.StrOpt(
        'backend',
        regex=r'^[A-Za-z0-9_.-]+$',
        help='Name of the compute-driver backend nova-compute runs, as '
             'listed by "compute-driver drivers": docker, libvirt, xenapi '
             'or fake, or a third-party backend. Required: there is no '
             'default, so that a compute host never runs the in-memory '
             'fake backend by accident.'),
    cfg.StrOpt(
        'config_file',
        help='Path of the compute-driver configuration file holding the '
             'backend\'s own options (its [docker], [libvirt], [xenapi] or '
             '[fake] group). Unset reads no file, so the backend runs on '
             'its defaults. [DEFAULT] host and compute_driver in that file '
             'are ignored: nova.conf\'s host and the backend option above '
             'win.'),
    cfg.DictOpt(
        'image_map',
        default={},
        help='Glance image ids or names mapped to the backend\'s own image '
             'references, for images the backend knows under another '
             'name, e.g. "cirros:cirros-0.6.3-x86_64-disk". Without an '
             'entry, an image is looked up on the backend under its Glance '
             'id, then under its Glance name.'),
    # -- volumes --
    cfg.StrOpt(
        'volume_boot_image',
        regex=r'^[A-Za-z0-9_.:@/-]+$',
        help='The backend image a volume-backed instance is spawned with '
             'when its volume names no image the backend has (Cinder does '
             'not pass the volume\'s image id to the compute host): for '
             'libvirt, the image whose kernel and ramdisk boot the root '
             'volume. Unset: such instances fail to build with '
             'ImageNotFound.'),
    cfg.StrOpt(
        'image_service',
        default='nova',
        choices=[
            ('nova', "Nova's image API: nova.conf's [glance] options and "
                     "the request's credentials; images are downloaded "
                     "into the backend's cache and snapshots uploaded "
                     "into the image Nova created for them."),
            ('backend', "The backend's own image service (the library "
                        "configuration file's [image_service], or the "
                        "fake backend's in-memory images), with "
                        "image_map for images it knows by other names."),
        ],
        help='Where the backend gets the images it boots and puts the '
             'snapshots it takes.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the group on nova's configuration object."""
    conf.register_group(cfg.OptGroup(GROUP, title=TITLE, help=HELP))
    conf.register_opts(opts, group=GROUP)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """The ``compute_driver.nova`` namespace of oslo-config-generator."""
    return [(cfg.OptGroup(GROUP, title=TITLE, help=HELP), opts)]
