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

"""Entry point of ``oslo-config-generator`` for the ``compute_driver``
namespace.

``[DEFAULT]`` is the library's own group
(:mod:`compute_driver.conf.default`), and so are the image service's
``[image_service]`` and ``[glance]`` (:mod:`compute_driver.image.conf`).
Every other group belongs to a backend, which declares it on its driver
class (``CONFIG_GROUP``, ``CONFIG_OPTS``) and lists it through an entry
point of
:data:`compute_driver.loader.OPTS_NAMESPACE` named like the backend. Those
entry points are found at run time, so the sample includes each installed
backend, third-party ones too, and their option modules import no SDK.
"""

import logging

from oslo_config import cfg

from compute_driver.conf import default
from compute_driver import exception
from compute_driver.image import conf as image_conf
from compute_driver import loader
from compute_driver.volume import conf as volume_conf

LOG = logging.getLogger(__name__)

OptList = list[tuple[str | cfg.OptGroup, list[cfg.Opt]]]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the library's own options (every group but ``[glance]``).

    ``[glance]`` is registered by :func:`register_image_service_opts` once
    the files are read, and a backend's group by
    :func:`compute_driver.loader.register_backend_opts`.
    """
    default.register_opts(conf)
    image_conf.register_service_opts(conf)
    volume_conf.register_opts(conf)


def register_image_service_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[glance]`` on a parsed ``conf`` that uses Glance.

    Only then: its options are keystoneauth's, and importing keystoneauth
    would slow every command down that uses the local image service.
    """
    if image_conf.uses_glance(conf):
        image_conf.register_glance_opts(conf)


def library_opts(glance: bool = True) -> OptList:
    """``[(group, [opts])]`` of the library's own groups.

    :param glance: include ``[glance]``, which imports keystoneauth.
    """
    result: OptList = list(default.list_opts().items())
    if glance:
        result.extend(image_conf.list_opts().items())
    else:
        result.append((image_conf.GROUP, image_conf.opts))
    result.extend(volume_conf.list_opts().items())
    return result


def backend_names() -> list[str]:
    """Every backend with an options entry point, sorted.

    Nothing is imported.
    """
    return sorted({ep.name for ep in loader.entry_points(
        namespace=loader.OPTS_NAMESPACE)})


def installed_backend_opts(skip_broken: bool = False) -> OptList:
    """``[(group, [opts])]`` of every installed backend, by backend name.

    :param skip_broken: leave out, with a debug record, a backend whose
        options do not load instead of raising.
    :raises DriverLoadError: for a backend whose options do not load.
    """
    result: OptList = []
    for name in backend_names():
        try:
            result.extend(loader.backend_opts(name) or ())
        except exception.DriverLoadError as exc:
            if not skip_broken:
                raise
            LOG.debug('Leaving out the options of backend %s: %s', name,
                      exc)
    return result


def list_opts() -> OptList:
    """``[(group, [opts])]`` for every group, as the generator wants it.

    ``[DEFAULT]`` first, then the image service's groups, then each
    installed backend's group by backend name. A group is its name, or an
    ``OptGroup`` when it has a title or help.

    :raises DriverLoadError: for an installed backend whose options do
        not load, so the generator does not leave it out silently.
    """
    result = library_opts()
    result.extend(installed_backend_opts())
    return result
