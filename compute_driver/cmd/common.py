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

"""Base classes and argument helpers shared by every CLI command.

Every command reports an error as one line on stderr and an exit code (1
for a failed operation, 2 for a bad command line) instead of cliff's
logged exception; ``--debug`` hands the exception back to cliff, which
prints the traceback.
"""

import argparse
import collections.abc
import sys
import types
import typing

from cliff import columns
from cliff import command
from cliff import lister
from cliff import show

from compute_driver import exception

if typing.TYPE_CHECKING:  # pragma: no cover
    # Only for annotations: main imports this module, and commands must
    # not pay for importing the driver contract before they need it.
    from compute_driver.cmd import main
    from compute_driver import driver as contract

#: Exit code of an operation that failed.
EXIT_FAILURE = 1
#: Exit code of a command line that makes no sense, as argparse uses.
EXIT_USAGE = 2


class UsageError(exception.ComputeDriverError):
    """Options that each parse but do not make sense together."""


class CommandFailed(exception.ComputeDriverError):
    """A command failed for a reason already worded for the user."""


def _one_line_error(parser: argparse.ArgumentParser, message: str) -> None:
    # argparse prints the whole usage block before the error; operators
    # scripting this tool want the error alone on one line.
    sys.stderr.write("%s: error: %s (see '%s --help')\n" % (
        parser.prog, ' '.join(message.split()), parser.prog))
    sys.exit(EXIT_USAGE)


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` report a bad command line on one line of stderr."""
    # cliff builds the parser, so it cannot be a subclass overriding
    # error(); replacing the method on this one instance is the point.
    parser.error = types.MethodType(  # type: ignore[method-assign]
        _one_line_error, parser)


def int_at_least(minimum: int) -> collections.abc.Callable[[str], int]:
    """An argparse ``type`` accepting integers ``>= minimum``."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                'must be an integer >= %d, got %r' % (minimum, text))
        return value
    return convert


class KeyValueAction(argparse.Action):
    """Collect repeated ``KEY=VALUE`` arguments into a dict."""

    def __call__(self, parser, namespace, values, option_string=None):
        key, sep, value = values.partition('=')
        if not sep or not key:
            raise argparse.ArgumentError(
                self, 'expected KEY=VALUE, got %r' % values)
        result = dict(getattr(namespace, self.dest) or {})
        result[key] = value
        setattr(namespace, self.dest, result)


class DictColumn(columns.FormattableColumn):
    """A dict shown as ``key='value', ...`` in tables, as a dict in JSON."""

    def human_readable(self) -> str:
        return ', '.join('%s=%r' % (k, v)
                         for k, v in sorted((self._value or {}).items()))


class ListColumn(columns.FormattableColumn):
    """A list shown one item a line in tables, as a list in JSON."""

    def human_readable(self) -> str:
        return '\n'.join(str(item) for item in self._value or ())


def require(driver: 'contract.ComputeDriver', operation: str) -> None:
    """Refuse an optional operation the backend does not implement.

    :raises NotSupported: when ``driver.supports(operation)`` is false.
    """
    if not driver.supports(operation):
        raise driver.unsupported(operation)


class _ErrorHandling(command.Command):
    """Mixin turning exceptions into one line of stderr and an exit code.

    It derives from cliff's Command only so that type checkers know what
    ``super()`` and ``self.app`` are; listed before a cliff base, it still
    comes first in the method resolution order.
    """

    #: The application running the command, with its conf and driver.
    app: 'main.App'

    #: Whether the garbage collector, paused for the start-up, stays
    #: paused until the command ends. For a command that only reads and
    #: prints (a listing, a show), whose objects hold no cycles and all
    #: go when it ends, the collections its allocations would trigger
    #: free nothing: milliseconds of a listing of hundreds of instances.
    keeps_gc_paused = False

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        one_line_errors(parser)
        return parser

    def get_epilog(self) -> str:
        # cliff's default scans every installed distribution to say which
        # plugin provides the command (tenths of a second); all of ours
        # come from this one.
        return self._epilog or ''

    def run(self, parsed_args: argparse.Namespace) -> int:
        self.app.gc_held = self.keeps_gc_paused
        try:
            return super().run(parsed_args)
        except UsageError as exc:
            self.app.stderr.write('%s: error: %s\n' % (
                self.app.NAME, exception.one_line(exc)))
            return EXIT_USAGE
        except Exception as exc:
            if self.app_args is not None and self.app_args.debug:
                # cliff logs the exception with its traceback.
                raise
            self.app.stderr.write(exception.one_line(exc) + '\n')
            return EXIT_FAILURE
        finally:
            self.app.gc_held = False


class Command(_ErrorHandling, command.Command):
    """A command that prints nothing on success, as openstackclient's."""


#: cliff's table formatter, whose module imports prettytable: a command
#: printing JSON or values has no use for it.
_TABLE = ('table', 'cliff.formatters.table:TableFormatter')


class _TableWhenNeeded(command.Command):
    """Mixin importing the table formatter only for a command line using it.

    cliff loads every formatter of a command to offer them, and the table
    formatter imports prettytable: some 2 ms of a ``list -f json`` or a
    ``show NAME -f value``. When the command line chooses another known
    formatter, has no ``--help`` and no option the parser does not know
    without the table formatter's (checked once the parser is built), the
    table formatter is not imported; anything else (no ``--format``, the
    table's own options, an abbreviation) loads it as cliff does.
    """

    app: 'main.App'
    _deferred_table: '_DeferredFormatter | None' = None

    def _load_formatter_plugins(self) -> typing.Any:
        import stevedore

        from compute_driver import loader
        entry_points = loader.entry_points(
            namespace=self.formatter_namespace)  # type: ignore[attr-defined]
        argv = getattr(self.app, 'subcommand_argv', None)
        if not _other_format(argv, {ep.name for ep in entry_points}) or not \
                any((ep.name, ep.value) == _TABLE for ep in entry_points):
            return super()._load_formatter_plugins()  # type: ignore[misc]
        extensions = []
        for ep in entry_points:
            if (ep.name, ep.value) == _TABLE:
                self._deferred_table = _DeferredFormatter(ep)
                extensions.append(stevedore.extension.Extension(
                    ep.name, ep, typing.cast(typing.Any, None),
                    self._deferred_table))
                continue
            try:
                plugin = ep.load()
                extensions.append(stevedore.extension.Extension(
                    ep.name, ep, plugin, plugin()))
            except Exception as exc:
                # As stevedore: a formatter that cannot load is left out.
                import logging
                logging.getLogger('stevedore.extension').error(
                    'Could not load %r: %s', ep.name, exc)
        return stevedore.ExtensionManager.make_test_instance(
            extensions, namespace=self.formatter_namespace)  # type: ignore

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        deferred = self._deferred_table
        if deferred is not None and _unknown_options(
                parser, self.app.subcommand_argv or ()):
            deferred.load().add_argument_group(parser)
        return parser


class _DeferredFormatter:
    """A formatter whose module is imported only when it is used."""

    def __init__(self, entry_point: typing.Any) -> None:
        self._entry_point = entry_point
        self._formatter: typing.Any = None

    def load(self) -> typing.Any:
        """The formatter, its module imported now if not yet."""
        if self._formatter is None:
            self._formatter = self._entry_point.load()()
        return self._formatter

    def add_argument_group(self, parser: argparse.ArgumentParser) -> None:
        # _TableWhenNeeded.get_parser adds them, if the command line needs
        # them, once the parser knows every other option.
        pass

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self.load(), name)


def _other_format(argv: collections.abc.Sequence[str] | None,
                  names: set[str]) -> bool:
    """Whether ``argv`` chooses a known formatter other than the table."""
    if argv is None or '--' in argv:
        return False
    chosen = None
    for index, token in enumerate(argv):
        if token in ('-h', '--help'):
            return False
        if token in ('-f', '--format'):
            chosen = argv[index + 1] if index + 1 < len(argv) else None
        elif token.startswith('--format='):
            chosen = token[len('--format='):]
        elif token.startswith('-f') and not token.startswith('--'):
            chosen = token[2:]
    return chosen is not None and chosen != _TABLE[0] and chosen in names


def _unknown_options(parser: argparse.ArgumentParser,
                     argv: collections.abc.Sequence[str]) -> bool:
    """Whether ``argv`` has an option-like word ``parser`` does not know."""
    known = parser._option_string_actions
    for token in argv:
        if not token.startswith('-') or token == '-':
            continue
        if token.partition('=')[0] in known:
            continue
        if not token.startswith('--') and token[:2] in known:
            # -fjson, -cName: a short option with its value.
            continue
        return True
    return False


class Lister(_ErrorHandling, _TableWhenNeeded, lister.Lister):
    """A command printing a table of rows."""

    def produce_output(self, parsed_args: argparse.Namespace,
                       column_names: collections.abc.Sequence[str],
                       data: collections.abc.Iterable[
                           collections.abc.Sequence[typing.Any]]) -> int:
        # Loaded already: cliff loads every formatter to offer them.
        from cliff.formatters import json_format
        formatter = self.formatter
        if type(formatter) is not json_format.JSONFormatter:
            return super().produce_output(parsed_args, column_names, data)
        self.formatter = typing.cast(typing.Any, _JSONList(formatter))
        try:
            return super().produce_output(parsed_args, column_names, data)
        finally:
            self.formatter = formatter


class _JSONList:
    """cliff's JSON formatter, writing rows of strings in one go.

    cliff's ``json.dump(rows, indent=2)`` encodes in Python, value by
    value, and writes each piece: milliseconds for a listing of hundreds
    of instances. Rows of strings only (every listing's, as a rule) are
    written here as the same text; anything else goes to cliff's.
    """

    def __init__(self, formatter: typing.Any) -> None:
        self._formatter = formatter

    def emit_list(self, column_names: collections.abc.Sequence[str],
                  data: collections.abc.Iterable[
                      collections.abc.Sequence[typing.Any]],
                  stdout: typing.TextIO,
                  parsed_args: argparse.Namespace) -> None:
        import json
        names = list(column_names)
        rows = list(data)
        encode = json.encoder.encode_basestring_ascii
        try:
            # cliff's dicts: one key a name; an empty one is "{}".
            if (parsed_args.noindent or not all(rows) or not names or
                    len(set(names)) != len(names)):
                raise TypeError(names)
            # zip pairs names and values as cliff's does; a value that
            # is not a string (a FormattableColumn, None, a number) is a
            # TypeError, which leaves the rows to cliff.
            keys = ['    %s: ' % encode(name) for name in names]
            text = ',\n'.join([
                '  {\n%s\n  }' % ',\n'.join([key + encode(value)
                                             for key, value in zip(keys, row)])
                for row in rows])
        except TypeError:
            self._formatter.emit_list(names, rows, stdout, parsed_args)
            return
        stdout.write('[\n%s\n]\n' % text if rows else '[]\n')

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._formatter, name)


class ShowOne(_ErrorHandling, _TableWhenNeeded, show.ShowOne):
    """A command printing one object's fields."""
