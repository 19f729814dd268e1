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

"""The library's configuration.

The library never touches the global ``cfg.CONF``: :func:`build_conf`
returns a private ``ConfigOpts`` so the library can live inside another
oslo.config user such as nova-compute.
"""

from collections.abc import Sequence
import re

from oslo_config import cfg

from compute_driver.conf import opts
from compute_driver import exception

PROJECT = 'compute-driver'

_LOCATION_DETAIL = re.compile(r"detail='([^']+)'")

register_opts = opts.register_opts
list_opts = opts.list_opts


def build_conf(args: Sequence[str] | None = None,
               config_files: Sequence[str] | None = None,
               config_dirs: Sequence[str] | None = None,
               validate: bool = True) -> cfg.ConfigOpts:
    """Build, parse and check a private configuration object.

    :param args: command-line style arguments (``--config-file`` ...).
    :param config_files: files to read; ``None`` searches oslo.config's
        standard places (``~/.compute-driver/``, ``/etc/compute-driver/``
        ...); ``[]`` reads none.
    :param config_dirs: directories of ``*.conf`` files to read after the
        files; ``None`` searches the standard ``compute-driver.conf.d``
        places only when ``config_files`` is ``None`` too, so that an
        explicit list of files (even an empty one) reads nothing else.
    :param validate: read every option now so a bad value is reported here
        rather than at first use.
    :returns: the parsed ``cfg.ConfigOpts``.
    :raises InvalidConfiguration: for a missing, unreadable or invalid file
        or value.
    """
    if config_dirs is None and config_files is not None:
        config_dirs = []
    conf = cfg.ConfigOpts()
    register_opts(conf)
    try:
        conf(args=list(args or []), project=PROJECT,
             default_config_files=(None if config_files is None
                                   else list(config_files)),
             default_config_dirs=(None if config_dirs is None
                                  else list(config_dirs)),
             validate_default_values=True)
    except (cfg.Error, ValueError) as exc:
        raise exception.InvalidConfiguration(
            reason=_one_line(exc)) from exc
    if validate:
        check_values(conf)
    return conf


def check_values(conf: cfg.ConfigOpts) -> None:
    """Read every registered option of the library once.

    oslo.config converts values lazily; this moves the error for ``vcpus =
    -1`` from the first spawn to start-up, with the option's name in it.

    :raises InvalidConfiguration: naming the group, option and problem.
    """
    for group, group_opts in list_opts():
        group_name = group.name if isinstance(group, cfg.OptGroup) else group
        section = (conf if group_name == 'DEFAULT'
                   else getattr(conf, group_name))
        for opt in group_opts:
            try:
                getattr(section, opt.dest)
            except (cfg.Error, ValueError) as exc:
                raise exception.InvalidConfiguration(
                    reason=_describe(group_name, opt, exc)) from exc
    # Flavors are strings to oslo.config; parse them now for the same
    # reason.
    from compute_driver import flavors
    flavors.get_flavors(conf)


def _one_line(exc: BaseException) -> str:
    return ' '.join(str(exc).split())


def _describe(group: str, opt: cfg.Opt, exc: BaseException) -> str:
    # oslo.config says "Value for option X from LocationInfo(location=...,
    # detail='<file>') is not valid: <problem>"; say the file and the
    # problem in words.
    text = _one_line(exc)
    problem = text.partition(' is not valid: ')[2]
    where = _LOCATION_DETAIL.search(text) if problem else None
    place = ' in %s' % where.group(1) if where else ''
    return '[%s] %s%s: %s' % (group, opt.name, place, problem or text)
