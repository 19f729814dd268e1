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

Every option module is listed here by name, not discovered, so the
generator needs no backend SDK and the sample lists each group once.
"""

import importlib
import types

from oslo_config import cfg

#: Modules of ``compute_driver.conf`` that each own one option group, in
#: the order they appear in the sample. Each backend issue appends its own.
MODULE_NAMES = ('default', 'fake', 'docker', 'libvirt', 'xenapi')


def _modules() -> list[types.ModuleType]:
    return [importlib.import_module('compute_driver.conf.' + name)
            for name in MODULE_NAMES]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register every group of the library on ``conf``."""
    for module in _modules():
        module.register_opts(conf)


def list_opts() -> list[tuple[str | cfg.OptGroup, list[cfg.Opt]]]:
    """``[(group, [opts])]`` for every group, as the generator wants it.

    A group is its name, or an ``OptGroup`` when it has a title or help.
    """
    result: list[tuple[str | cfg.OptGroup, list[cfg.Opt]]] = []
    for module in _modules():
        result.extend(module.list_opts().items())
    return result
