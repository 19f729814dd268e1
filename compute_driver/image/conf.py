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

"""Options of the image service: ``[image_service]`` and ``[glance]``.

``[glance]`` reads like every OpenStack service's: keystoneauth's session,
auth and adapter options (``auth_type``, ``auth_url``, ``cafile``,
``endpoint_override``, ``valid_interfaces``...) registered under the group
by keystoneauth itself, plus Nova's ``api_servers`` and ``num_retries``.

keystoneauth is imported only by the functions that need its options
(:func:`register_glance_opts`, :func:`list_opts`): importing it costs a
quarter of a second, which a command using the local image service must
not pay.
"""

import copy

from oslo_config import cfg

GROUP = 'image_service'
TITLE = 'Image service options'
HELP = ('Where backends get the images they boot and where snapshots go: '
        'a local directory (the default) or Glance, with a download cache '
        'shared by every instance of the host.')

GLANCE_GROUP = 'glance'
GLANCE_TITLE = 'Glance options'
GLANCE_HELP = ('How to reach the Glance v2 API when [image_service] backend '
               'is glance: keystoneauth\'s standard session, authentication '
               'and endpoint options. An unauthenticated Glance needs only '
               'api_servers (or endpoint_override) and no auth_type.')

DEFAULT_SERVICE_TYPE = 'image'

opts = [
    cfg.StrOpt(
        'backend', default='local', choices=[
            ('local', 'images are files in local_path on this host'),
            ('glance', 'images are in the Glance v2 API of the [glance] '
                       'group'),
        ],
        help='The image service that backends download images from and '
             'upload snapshots to.'),
    cfg.StrOpt(
        'local_path', default='/var/lib/compute-driver/images',
        help='Directory of the local image service: one data file and one '
             'JSON record per image, readable by the owner only.'),
    cfg.StrOpt(
        'cache_path', default='/var/lib/compute-driver/image-cache',
        help='Directory where images downloaded from the image service '
             'are kept, one file per image id, for every instance of this '
             'host to reuse.'),
    cfg.IntOpt(
        'cache_max_age', default=86400, min=0, max=10 * 365 * 86400,
        help='Seconds a cached image must have gone unused before pruning '
             'removes it, as Nova\'s '
             'remove_unused_original_minimum_age_seconds. Images of the '
             'host\'s instances are always kept.'),
]

glance_opts = [
    cfg.ListOpt(
        'api_servers', item_type=cfg.types.URI(schemes=['http', 'https']),
        help='Glance API endpoints to use, e.g. http://127.0.0.1:9292, '
             'tried in turn when one cannot be reached. Unset: '
             'endpoint_override, else the image endpoint of the service '
             'catalog.'),
    cfg.IntOpt(
        'num_retries', default=3, min=0, max=100,
        help='Times to retry a Glance request that failed to connect or '
             'that Glance answered with a temporary error, moving to the '
             'next of api_servers each time. Uploads are not retried: '
             'their data stream cannot be replayed.'),
]


def _adapter_opts() -> list[cfg.Opt]:
    # keystoneauth's adapter options, defaulting to the image service
    # as Nova's conf/utils.py does for its own [glance] group.
    from keystoneauth1 import loading as ks_loading
    result = copy.deepcopy(
        ks_loading.get_adapter_conf_options(include_deprecated=False))
    cfg.set_defaults(result, service_type=DEFAULT_SERVICE_TYPE,
                     valid_interfaces=['internal', 'public'])
    return result


def register_service_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[image_service]`` on ``conf``; imports nothing."""
    conf.register_group(cfg.OptGroup(GROUP, title=TITLE, help=HELP))
    conf.register_opts(opts, group=GROUP)


def register_glance_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[glance]`` on ``conf``, keystoneauth's options included.

    When ``conf`` is parsed and ``[glance] auth_type`` names a plugin, that
    plugin's options (``username``, ``application_credential_secret``...)
    are registered too, so a file setting them is not refused as naming
    unknown options.
    """
    from keystoneauth1 import exceptions as ks_exc
    from keystoneauth1 import loading as ks_loading
    conf.register_group(cfg.OptGroup(GLANCE_GROUP, title=GLANCE_TITLE,
                                     help=GLANCE_HELP))
    conf.register_opts(glance_opts, group=GLANCE_GROUP)
    ks_loading.register_session_conf_options(conf, GLANCE_GROUP)
    ks_loading.register_auth_conf_options(conf, GLANCE_GROUP)
    conf.register_opts(_adapter_opts(), group=GLANCE_GROUP)
    try:
        auth_type = conf[GLANCE_GROUP].auth_type
    except cfg.NotInitializedError:
        return
    if auth_type:
        try:
            plugin_opts = ks_loading.get_auth_plugin_conf_options(auth_type)
        except ks_exc.NoMatchingPlugin:
            # Reported with the option's name when the service is built.
            return
        conf.register_opts(plugin_opts, group=GLANCE_GROUP)


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[image_service]`` and ``[glance]`` on ``conf``."""
    register_service_opts(conf)
    register_glance_opts(conf)


def uses_glance(conf: cfg.ConfigOpts) -> bool:
    """Whether ``conf``'s ``[image_service] backend`` is Glance.

    A bad value reads as not Glance here; checking the values reports it.
    """
    try:
        return bool(conf[GROUP].backend == 'glance')
    except (cfg.Error, ValueError):
        return False


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    """Both groups for ``oslo-config-generator``.

    The auth options shown are the common ones and the ``password``
    plugin's, like in every OpenStack service's sample.
    """
    from keystoneauth1 import loading as ks_loading
    glance = (glance_opts
              + ks_loading.get_session_conf_options()
              + ks_loading.get_auth_common_conf_options()
              + ks_loading.get_auth_plugin_conf_options('password')
              + _adapter_opts())
    return {
        cfg.OptGroup(GROUP, title=TITLE, help=HELP): opts,
        cfg.OptGroup(GLANCE_GROUP, title=GLANCE_TITLE,
                     help=GLANCE_HELP): glance,
    }
