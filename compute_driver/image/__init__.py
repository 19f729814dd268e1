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

"""Images from an image service: the contract and its implementations.

:mod:`~compute_driver.image.api` holds the :class:`ImageService` contract
and the :class:`ImageRecord` every service returns;
:mod:`~compute_driver.image.local` keeps images in a directory (the
standalone default), :mod:`~compute_driver.image.glance` in Glance v2, and
:mod:`~compute_driver.image.cache` shares downloads between instances.
:func:`load` picks the service the configuration names.
"""

import typing

if typing.TYPE_CHECKING:
    from oslo_config import cfg

    from compute_driver.image import api
    from compute_driver.image.api import ImageRecord  # noqa: F401
    from compute_driver.image.api import ImageService  # noqa: F401


def __getattr__(name: str) -> typing.Any:
    # ImageRecord and ImageService, from api on first use: every command
    # imports this package (the options, the image errors), and few use
    # an image service.
    if name in ('ImageRecord', 'ImageService'):
        from compute_driver.image import api
        return getattr(api, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


def load(conf: 'cfg.ConfigOpts') -> 'api.ImageService':
    """The image service ``[image_service] backend`` names.

    ``conf`` must have ``[image_service]`` registered (the library's
    configuration has); ``[glance]`` is registered here when it is not
    yet. The Glance service's modules are imported only when it is
    chosen, so the local one needs no Glance client installed and does
    not import keystoneauth.

    :raises InvalidConfiguration: for Glance options that name no
        endpoint.
    """
    section = conf['image_service']
    if section.backend == 'glance':
        from compute_driver.image import conf as image_conf
        from compute_driver.image import glance
        if image_conf.GLANCE_GROUP not in conf:
            # Chosen after the files were read (an override).
            image_conf.register_glance_opts(conf)
        return glance.GlanceImageService.from_conf(conf)
    from compute_driver.image import local
    return local.LocalImageService(section.local_path)
