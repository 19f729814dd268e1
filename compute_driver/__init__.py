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

"""One Nova-like compute driver interface over VMs and containers.

Typical use::

    from compute_driver import conf, loader

    cfg = conf.build_conf(config_files=['/etc/compute-driver/'
                                        'compute-driver.conf'])
    backend = loader.load_driver(cfg)
    backend.init_host(cfg.host)

This package imports nothing heavy on purpose: the CLI starts fast and the
loader imports only the backend it is asked for.
"""

import logging

#: Name of the logger for warnings an operator must see about the command
#: or call that caused them (a host that will run guests slowly, an option
#: that is ignored). The CLI shows its records as one ``warning: ...``
#: line even at its default verbosity, where it hides every other record;
#: inside a service they are ordinary warnings in its log.
OPERATOR_LOGGER = 'compute_driver.operator'

#: The logger behind :data:`OPERATOR_LOGGER`.
OPERATOR_LOG = logging.getLogger(OPERATOR_LOGGER)
