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

from collections.abc import Iterable
from collections.abc import Sequence
import glob
import importlib.metadata
import os
import re

from oslo_config import cfg

from compute_driver.conf import opts
from compute_driver import exception
from compute_driver import loader

PROJECT = 'compute-driver'

_LOCATION_DETAIL = re.compile(r"detail='([^']+)'")

register_opts = opts.register_opts
list_opts = opts.list_opts


def build_conf(args: Sequence[str] | None = None,
               config_files: Sequence[str] | None = None,
               config_dirs: Sequence[str] | None = None,
               validate: bool = True,
               backend: str | None = None) -> cfg.ConfigOpts:
    """Build, parse and check a private configuration object.

    The ``[DEFAULT]`` options and the option group of one backend are
    registered: ``backend``'s, or the one ``[DEFAULT] compute_driver``
    names (see :func:`compute_driver.loader.register_backend_opts`).

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
    :param backend: entry-point name of the backend whose options to
        register, for a caller that picks the backend itself (the Nova
        adapter, the conformance suite).
    :returns: the parsed ``cfg.ConfigOpts``.
    :raises InvalidConfiguration: for a missing, unreadable or invalid file
        or value.
    :raises DriverLoadError: when the backend's options do not load.
    """
    if config_dirs is None and config_files is not None:
        config_dirs = []
    for directory in config_dirs or ():
        # oslo.config silently skips a missing default directory; one the
        # caller named is a mistake, as a missing file is.
        if not os.path.isdir(os.path.expanduser(directory)):
            raise exception.InvalidConfiguration(
                reason='configuration directory %s does not exist or is '
                       'not a directory' % directory)
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
    except OSError as exc:
        # oslo.config lets a file it cannot open (a directory, a file
        # removed meanwhile) through as it is.
        raise exception.InvalidConfiguration(
            reason='cannot read %s: %s' % (exc.filename, exc.strerror)
        ) from exc
    if backend is None:
        try:
            backend = conf.compute_driver
        except (cfg.Error, ValueError):
            # A bad name, which check_values reports with the file.
            backend = None
    if backend:
        loader.register_backend_opts(conf, backend)
    opts.register_image_service_opts(conf)
    if validate:
        check_unknown(conf)
        check_values(conf)
    return conf


_GLANCE = 'glance'

#: oslo.config's own options, which any file may set.
_OSLO_CONFIG_OPTS = {'config_file', 'config_dir', 'config_source',
                     'shell_completion'}

#: Libraries whose options (``oslo.config.opts`` entry points) a file may
#: hold although this library does not register them: oslo.log's
#: ``[DEFAULT] debug``, ``log_file``... are read wherever the library runs
#: inside a service that sets up oslo.log.
ACCEPTED_NAMESPACES = ('oslo.log',)


def _opt_names(opt: cfg.Opt) -> Iterable[tuple[str | None, str]]:
    yield None, opt.dest
    yield None, opt.name.replace('-', '_')
    for old in opt.deprecated_opts:
        if old.name:
            yield old.group, old.name.replace('-', '_')


def _options_by_section(
        groups: Iterable[tuple[str | cfg.OptGroup | None, list[cfg.Opt]]]
) -> dict[str, dict[str, cfg.Opt]]:
    # Every name an option answers to in a file, deprecated ones under
    # their own group, keyed as oslo.config matches sections.
    options: dict[str, dict[str, cfg.Opt]] = {}
    for group, group_opts in groups:
        name = (group.name if isinstance(group, cfg.OptGroup)
                else group or 'DEFAULT')
        for opt in group_opts:
            for old_group, opt_name in _opt_names(opt):
                options.setdefault(_section_key(old_group or name),
                                   {})[opt_name] = opt
    return options


def _namespace_options(namespace: str) -> dict[str, dict[str, cfg.Opt]]:
    for ep in importlib.metadata.entry_points(group='oslo.config.opts'):
        if ep.name == namespace:
            try:
                groups = ep.load()()
            except Exception:
                # Not installed as it should be: its options are then not
                # accepted, which the error about them will show.
                return {}
            return _options_by_section(groups)
    return {}


def _section_key(section: str) -> str:
    # oslo.config matches every section name but DEFAULT case-blind.
    return section if section == 'DEFAULT' else section.lower()


def _files_read(conf: cfg.ConfigOpts) -> list[str]:
    files = list(conf.config_file or [])
    dirs = conf.config_dirs or [d for d in conf.default_config_dirs
                                if os.path.isdir(d)]
    for directory in dirs:
        pattern = os.path.join(os.path.expanduser(directory), '*.conf')
        files.extend(sorted(glob.glob(pattern)))
    return files


def _nearest(word: str, candidates: Iterable[str]) -> str | None:
    # Only for a misspelt option: not an import every command pays for.
    import difflib
    matches = difflib.get_close_matches(word, sorted(candidates), n=1,
                                        cutoff=0.6)
    return matches[0] if matches else None


def _registered(conf: cfg.ConfigOpts) -> dict[str, set[str]]:
    """The names of the options registered on ``conf``, by section."""
    known: dict[str, set[str]] = {'DEFAULT': set(_OSLO_CONFIG_OPTS)}
    for name in conf:
        try:
            value = conf[name]
        except (cfg.Error, ValueError):
            # An option (groups always resolve) whose bad value
            # check_values reports with its name.
            value = None
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            known.setdefault(_section_key(name), set()).update(value)
        else:
            known['DEFAULT'].add(name)
    return known


def _other_options(glance: bool = False) -> dict[str, dict[str, cfg.Opt]]:
    """Options a file may set that ``conf`` need not register.

    Every name of the library's options, those of every installed
    backend (a file shared by hosts running different backends) and
    those of :data:`ACCEPTED_NAMESPACES`.
    """
    groups = opts.library_opts(glance=glance)
    # A broken third-party backend must not make every file unreadable;
    # loading it reports what is wrong with it.
    groups.extend(opts.installed_backend_opts(skip_broken=True))
    found = _options_by_section(groups)
    for namespace in ACCEPTED_NAMESPACES:
        for group, options in _namespace_options(namespace).items():
            found.setdefault(group, {}).update(options)
    return found


def check_unknown(conf: cfg.ConfigOpts) -> None:
    """Refuse a section or option no one registers in the files read.

    oslo.config ignores what it does not know, so ``conection_uri`` in
    ``[libvirt]`` would silently leave ``connection_uri`` at its default.
    Options registered on ``conf``, oslo.config's, those of every
    installed backend and those of :data:`ACCEPTED_NAMESPACES` are known;
    a value of an option not registered on ``conf`` (another backend's)
    is checked as its owner would. Sections named by ``[DEFAULT]
    config_source`` belong to oslo.config's drivers and are not checked.

    :raises InvalidConfiguration: naming the file, the section, the option
        and the nearest known name.
    """
    known = _registered(conf)
    # Registered by every oslo.config this library supports; looked up
    # softly all the same, as only its drivers' sections depend on it.
    sources = {_section_key(s)
               for s in getattr(conf, 'config_source', None) or ()}
    # Only read when a file holds something not registered here: listing
    # every installed backend's options has a cost.
    other: dict[str, dict[str, cfg.Opt]] | None = None
    for path in _files_read(conf):
        sections: dict[str, dict[str, list[str]]] = {}
        try:
            cfg.ConfigParser(path, sections).parse()
        except (OSError, cfg.Error, ValueError):
            # oslo.config parsed it a moment ago; a file that changed since
            # is reported by oslo.config next time.
            continue
        for section, options in sections.items():
            key = _section_key(section)
            if key in sources:
                continue
            for option in options:
                name = option.replace('-', '_')
                if name in known.get(key, ()):
                    continue
                if other is None or (key == _GLANCE and _GLANCE not in other):
                    # [glance]'s are keystoneauth's options: only a file
                    # that sets one pays for importing keystoneauth.
                    other = _other_options(glance=key == _GLANCE)
                opt = other.get(key, {}).get(name)
                if opt is not None:
                    # Not registered here, so oslo.config never converts
                    # it: check its value as its owner would.
                    _check_foreign_value(path, section, opt,
                                         options[option])
                    continue
                raise exception.InvalidConfiguration(
                    reason=_unknown_reason(path, section, key, name, known,
                                           other))


def _check_foreign_value(path: str, section: str, opt: cfg.Opt,
                         values: list[str]) -> None:
    for value in values:
        try:
            if opt.type is not None:
                opt.type(value)
        except ValueError as exc:
            raise exception.InvalidConfiguration(
                reason='[%s] %s in %s: %s' % (section, opt.name, path,
                                              _one_line(exc))) from exc


def _unknown_reason(path: str, section: str, key: str, option: str,
                    known: dict[str, set[str]],
                    extra: dict[str, dict[str, cfg.Opt]]) -> str:
    if key not in known and key not in extra and key != _GLANCE:
        sections = set(known) | set(extra) | {_GLANCE}
        nearest = _nearest(section, sections)
        hint = ('; did you mean [%s]?' % nearest if nearest
                else '; known sections: %s' % ', '.join(sorted(sections)))
        return 'unknown section [%s] in %s%s' % (section, path, hint)
    names = known.get(key, set()) | set(extra.get(key, {}))
    nearest = _nearest(option, names)
    hint = '; did you mean %s?' % nearest if nearest else ''
    return 'unknown option %s in section [%s] of %s%s' % (
        option, section, path, hint)


def check_group_values(conf: cfg.ConfigOpts,
                       groups: Iterable[str | None]) -> None:
    """Read every option of some groups of ``conf`` once.

    :param groups: group names; ``None`` or ``'DEFAULT'`` for the
        default group.
    :raises InvalidConfiguration: naming the group, option and problem.
    """
    for group in groups:
        section = conf if group in (None, 'DEFAULT') else conf[group]
        # Iterating conf yields its groups too, which read as they are.
        for name in list(section):
            try:
                getattr(section, name)
            except (cfg.Error, ValueError) as exc:
                raise exception.InvalidConfiguration(
                    reason=_describe(group or 'DEFAULT', name, exc)
                ) from exc


def check_values(conf: cfg.ConfigOpts) -> None:
    """Read every option registered on ``conf`` once.

    oslo.config converts values lazily; this moves the error for ``vcpus =
    -1`` from the first spawn to start-up, with the option's name in it.

    :raises InvalidConfiguration: naming the group, option and problem.
    """
    groups: list[str | None] = [None]
    for name in conf:
        try:
            if isinstance(conf[name], cfg.ConfigOpts.GroupAttr):
                groups.append(name)
        except (cfg.Error, ValueError):
            # An option of [DEFAULT], read with the group None.
            continue
    check_group_values(conf, groups)
    # Flavors are strings to oslo.config; parse them now for the same
    # reason.
    from compute_driver import flavors
    flavors.get_flavors(conf)


def _one_line(exc: BaseException) -> str:
    return ' '.join(str(exc).split())


def _describe(group: str, name: str, exc: BaseException) -> str:
    # oslo.config says "Value for option X from LocationInfo(location=...,
    # detail='<file>') is not valid: <problem>"; say the file and the
    # problem in words.
    text = _one_line(exc)
    problem = text.partition(' is not valid: ')[2]
    where = _LOCATION_DETAIL.search(text) if problem else None
    place = ' in %s' % where.group(1) if where else ''
    return '[%s] %s%s: %s' % (group, name, place, problem or text)
