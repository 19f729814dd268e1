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

"""The ``compute-driver`` command.

Commands are cliff plugins in the ``compute_driver.cli`` entry-point
namespace, so only the module of the command being run is imported. The
configuration and the backend are built on first use and kept on the
:class:`App`: ``compute-driver drivers`` never builds them, and the
interactive mode (``compute-driver`` with no command) keeps one backend,
and the fake backend's instances, across commands.
"""

import argparse
import atexit
import gc
import importlib.metadata
import logging
import os
import sys
import threading
import typing

from cliff import app
from cliff import commandmanager

import compute_driver
from compute_driver.cmd import common
from compute_driver import exception
from compute_driver import loader

if typing.TYPE_CHECKING:  # pragma: no cover
    # Only for annotations: both are imported on first use, so that
    # commands needing neither do not pay for them.
    from oslo_config import cfg

    from compute_driver import driver as contract

NAMESPACE = 'compute_driver.cli'

#: Commands known even where the package's metadata predates them (a
#: source tree run in place); setup.cfg lists them too.
BUILTIN_COMMANDS = {
    'image upload': 'compute_driver.cmd.image:UploadImage',
    'image list': 'compute_driver.cmd.image:ListServiceImages',
    'image show': 'compute_driver.cmd.image:ShowServiceImage',
    'image delete': 'compute_driver.cmd.image:DeleteServiceImage',
    'image cache list': 'compute_driver.cmd.image:ListImageCache',
    'image cache prune': 'compute_driver.cmd.image:PruneImageCache',
    'interface list': 'compute_driver.cmd.network:ListInterfaces',
    'interface attach': 'compute_driver.cmd.network:AttachInterface',
    'interface detach': 'compute_driver.cmd.network:DetachInterface',
    'volume attach': 'compute_driver.cmd.volume:AttachVolume',
    'volume detach': 'compute_driver.cmd.volume:DetachVolume',
    'volume list': 'compute_driver.cmd.volume:ListVolumes',
    'resize': 'compute_driver.cmd.resize:ResizeInstance',
    'resize-confirm': 'compute_driver.cmd.resize:ConfirmResize',
    'resize-revert': 'compute_driver.cmd.resize:RevertResize',
    'console': 'compute_driver.cmd.console:AttachConsole',
    'exec': 'compute_driver.cmd.console:ExecCommand',
    'console-url': 'compute_driver.cmd.console:ShowConsoleURL',
}
EXIT_INTERRUPTED = 130
#: cliff's verbosity without -v or -q.
DEFAULT_VERBOSE_LEVEL = 1


def _default_verbosity_filter(record: logging.LogRecord) -> bool:
    """Whether a record is shown at the default verbosity.

    Operator warnings (:data:`compute_driver.OPERATOR_LOG`) and cliff's
    own error records (the application's logger) are; nothing else.
    """
    if record.name == compute_driver.OPERATOR_LOGGER:
        return True
    return record.name == App.NAME and record.levelno >= logging.ERROR


class _OneLineFormatter(logging.Formatter):
    """One line per record, never a traceback: the default verbosity's."""

    def format(self, record: logging.LogRecord) -> str:
        text = ' '.join(record.getMessage().split())
        if record.name == compute_driver.OPERATOR_LOGGER:
            return 'warning: %s' % text
        return text


def _version() -> str:
    try:
        return importlib.metadata.version('compute-driver')
    except importlib.metadata.PackageNotFoundError:
        return 'unknown'


class _VersionAction(argparse._VersionAction):
    """``--version``, reading the version only when asked for it.

    Parsing the package metadata costs every command a few
    milliseconds otherwise.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        self.version = '%s %s' % (App.NAME, _version())
        super().__call__(parser, namespace, values, option_string)


#: Commands also listed in setup.cfg, known without the package's
#: metadata (a checkout run from source, an older installed copy).


class CommandManager(commandmanager.CommandManager):
    """cliff's command manager, importing a command only when it runs.

    cliff's own imports every command module at start-up to list them,
    which costs every command the import time of all the others.
    """

    def load_commands(self, namespace: str) -> None:
        self.group_list.append(namespace)
        # The loader's: the metadata is then read once per command, which
        # also looks up backends and their options.
        for ep in loader.entry_points(namespace=namespace):
            name = (ep.name.replace('_', ' ') if self.convert_underscores
                    else ep.name)
            self.commands[name] = ep
        if namespace == NAMESPACE:
            for name, value in BUILTIN_COMMANDS.items():
                self.commands.setdefault(name, importlib.metadata.EntryPoint(
                    name.replace(' ', '_'), value, namespace))


class App(app.App):
    """The ``compute-driver`` application.

    :param stdin: input of the interactive mode; ``sys.stdin`` by default.
    :param stdout: where results go; ``sys.stdout`` by default.
    :param stderr: where errors and logs go; ``sys.stderr`` by default.
    """

    # cliff derives the name from sys.argv[0], which is "pytest" or
    # "main.py" when the app is not run through its console script.
    NAME = 'compute-driver'
    LOG = logging.getLogger(NAME)

    def __init__(self, stdin: typing.TextIO | None = None,
                 stdout: typing.TextIO | None = None,
                 stderr: typing.TextIO | None = None) -> None:
        super().__init__(
            description='Drive VMs and containers through one Nova-like '
                        'compute driver interface.',
            # Read from the metadata only for --version (_VersionAction).
            version='',
            command_manager=CommandManager(NAMESPACE),
            stdin=stdin, stdout=stdout, stderr=stderr,
            # As openstackclient: "compute-driver boot --help" shows the
            # command's help, not the application's.
            deferred_help=True)
        self._conf: cfg.ConfigOpts | None = None
        self._driver: contract.ComputeDriver | None = None
        self._log_handlers: list[logging.Handler] = []
        self._interacted = False

    def build_option_parser(
            self, description: str | None, version: str | None,
            argparse_kwargs: dict[str, typing.Any] | None = None
    ) -> argparse.ArgumentParser:
        parser = super().build_option_parser(description, version,
                                             argparse_kwargs)
        parser.prog = self.NAME
        version_action = parser._option_string_actions.get('--version')
        if version_action is not None:
            version_action.__class__ = _VersionAction
        common.one_line_errors(parser)
        parser.add_argument(
            '--config-file', metavar='PATH', action='append',
            dest='config_files',
            help='Read this configuration file; repeat for more, later '
                 'files override earlier ones. Without it the standard '
                 'places are searched: ~/.compute-driver/, ~/, '
                 '/etc/compute-driver/ and /etc/ for compute-driver.conf.')
        parser.add_argument(
            '--config-dir', metavar='DIR', action='append',
            dest='config_dirs',
            help='Also read every *.conf file of this directory, in '
                 'alphabetical order, after the configuration files; '
                 'repeatable.')
        return parser

    def configure_logging(self) -> None:
        # cliff adds its handlers to the root logger on every run(); drop
        # ours from a previous run so a reused App does not log twice.
        self._remove_log_handlers()
        root = logging.getLogger()
        before = list(root.handlers)
        super().configure_logging()
        self._log_handlers = [h for h in root.handlers if h not in before]
        verbose = self.options.verbose_level
        if verbose <= DEFAULT_VERBOSE_LEVEL and not self.options.debug:
            # At the default verbosity an error is the one line the
            # command prints: the library's records (a backend's "removing
            # what it created", a rollback's traceback) are for -v and
            # --debug. Only operator warnings, and cliff's own error line,
            # get through, each on one line.
            for handler in self._log_handlers:
                if (isinstance(handler, logging.StreamHandler) and
                        not isinstance(handler, logging.FileHandler)):
                    handler.setLevel(logging.WARNING)
                    handler.addFilter(_default_verbosity_filter)
                    handler.setFormatter(_OneLineFormatter())
        # The loader turns stevedore's failures into typed errors that are
        # reported anyway; its own warnings would repeat them.
        logging.getLogger('stevedore').setLevel(
            logging.ERROR if verbose < 2 else logging.NOTSET)

    def _remove_log_handlers(self) -> None:
        root = logging.getLogger()
        for handler in self._log_handlers:
            root.removeHandler(handler)
            handler.close()
        self._log_handlers = []

    @property
    def conf(self) -> 'cfg.ConfigOpts':
        """The parsed private ``ConfigOpts``, built on first use.

        :raises InvalidConfiguration: for a bad file or value.
        """
        if self._conf is None:
            # Imported here so that commands needing no configuration do
            # not pay for parsing it.
            from compute_driver import conf as cd_conf
            self._conf = cd_conf.build_conf(
                config_files=self.options.config_files,
                config_dirs=self.options.config_dirs)
        return self._conf

    @property
    def driver(self) -> 'contract.ComputeDriver':
        """The configured backend, loaded and ``init_host``-ed once.

        :raises ComputeDriverError: when it cannot be loaded or reached.
        """
        if self._driver is None:
            self._driver = self.load_driver()
        return self._driver

    #: The command line of the command being run, for its commands to
    #: see what it asks for before the parser is built.
    subcommand_argv: list[str] | None = None

    def run_subcommand(self, argv: list[str]) -> int:
        self.subcommand_argv = list(argv)
        try:
            return self._run_subcommand(argv)
        finally:
            self.subcommand_argv = None

    def _run_subcommand(self, argv: list[str]) -> int:
        try:
            self.command_manager.find_command(argv)
        except ValueError:
            # cliff prints three lines on stdout ("... is not a command",
            # "Did you mean one of these?", the candidates); an unknown
            # command is a usage error like any other: one line, stderr.
            import difflib
            matches = difflib.get_close_matches(
                argv[0], sorted(self.command_manager.commands), n=3)
            hint = ('; did you mean %s?' % ' or '.join(
                repr(m) for m in matches) if matches else '')
            self.stderr.write(
                "%s: error: %r is not a %s command%s (see '%s --help')\n"
                % (self.NAME, argv[0], self.NAME, hint, self.NAME))
            return common.EXIT_USAGE
        return super().run_subcommand(argv)

    def load_driver(self, sweep: bool = True) -> 'contract.ComputeDriver':
        """Load the configured backend and ``init_host`` it.

        :param sweep: whether ``init_host`` removes leftovers of
            interrupted operations; ``cleanup`` loads it without, to list
            them first.
        :raises ComputeDriverError: when it cannot be loaded or reached.
        """
        if self._driver is not None:
            return self._driver
        backend = loader.load_driver(self.conf)
        backend.sweep_leftovers_at_init = sweep
        backend.init_host(self.conf.host)
        self._driver = backend
        if not self.gc_held:
            self.resume_gc()
        return backend

    #: Whether :func:`main` paused the cyclic garbage collector for the
    #: start-up, until :meth:`resume_gc`.
    gc_paused = False

    #: Set while a command runs whose objects all go when it ends (see
    #: :attr:`compute_driver.cmd.common.Command.keeps_gc_paused`): the
    #: collector then stays paused until the end, not just the start-up.
    gc_held = False

    def resume_gc(self) -> None:
        """Turn the garbage collector back on once start-up is over.

        What start-up made (modules, the configuration, the backend)
        lives as long as the process: it is frozen out of every later
        collection.
        """
        if self.gc_paused:
            self.gc_paused = False
            gc.freeze()
            gc.enable()

    def interact(self) -> None:
        self.resume_gc()
        # Imported here: it imports cmd2, which only this mode needs.
        from compute_driver.cmd import interactive
        if self.interactive_app_factory is None:
            self.interactive_app_factory = interactive.InteractiveApp
        super().interact()
        self._interacted = True

    def run(self, argv: list[str]) -> int:
        result = super().run(argv)
        # cliff returns 1 after an interactive session however it went; a
        # session that reached its end (EOF, "quit") is a success.
        if self._interacted:
            self._interacted = False
            return 0
        return result

    def close(self) -> None:
        """Release the backend and the logging handlers."""
        backend, self._driver = self._driver, None
        try:
            if backend is not None:
                try:
                    if backend.supports('cleanup_host'):
                        # The driver property built the conf before the
                        # backend, so this only returns it.
                        backend.cleanup_host(self.conf.host)
                except Exception as exc:
                    self.stderr.write(
                        'Could not clean up the %s backend: %s\n' % (
                            backend.name, exception.one_line(exc)))
        finally:
            self._remove_log_handlers()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the console script ``compute-driver``.

    :param argv: arguments without the program name. ``None`` means the
        process is the command (the console script, ``python -m``): the
        arguments are ``sys.argv[1:]``, and once the command is over the
        process ends here, without the interpreter's teardown (see
        :func:`_end_process`), unless a thread the command started still
        runs.
    :returns: the exit code.
    """
    if argv is not None:
        return _run(argv)
    code = _run(sys.argv[1:])
    _end_process(code)
    return code


def _end_process(code: int) -> None:
    """End the process with ``code`` at once, as the command is over.

    What an ordinary exit does is done first: the ``atexit`` functions
    run (logging's flushes and closes its handlers) and the standard
    streams are flushed. What is skipped is the interpreter's teardown
    (freeing every module and object one by one), a fifth of a short
    command's time: tens of milliseconds, more than the whole command
    spends importing its backend. Returns instead, leaving the ordinary
    exit to Python, when a thread that is not a daemon still runs (the
    interpreter would wait for it), or when flushing a stream fails (the
    interpreter reports that).
    """
    if not isinstance(code, int) or any(
            thread.is_alive() and not thread.daemon
            for thread in threading.enumerate()
            if thread is not threading.main_thread()):
        return
    run_exitfuncs = getattr(atexit, '_run_exitfuncs', None)
    if run_exitfuncs is None:  # pragma: no cover - not CPython
        return
    run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


def _run(argv: list[str]) -> int:
    # Start-up (the imports, the configuration, the backend's connection)
    # makes thousands of objects that live as long as the process, which
    # the cyclic collector would scan again and again as they come: a few
    # milliseconds of every command. It is off until the backend is up
    # (App.resume_gc), or until the command ends.
    collecting = gc.isenabled()
    frozen = gc.get_freeze_count()
    gc.disable()
    application = None
    try:
        application = App()
        application.gc_paused = collecting
        return application.run(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        # argparse exits on a bad command line, --help and --version; turn
        # that into a return value so main() can be driven in-process.
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        sys.stderr.write('%s\n' % exc.code)
        return common.EXIT_FAILURE
    finally:
        if application is not None:
            application.close()
        if collecting:
            gc.enable()
        if not frozen:
            # For a caller running commands in-process: what this one
            # froze is collectable again.
            gc.unfreeze()


if __name__ == '__main__':
    sys.exit(main())
