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

"""The bad-input table every backend's CLI is held to, and its assertions.

Each :class:`Case` is one mistake an operator makes: a bad name, flavor,
image, property, configuration value, URI, a command run in the wrong
state or a misused command line. :func:`check` runs it through the CLI
in-process (as the unit tests do; ``capfd`` sees what C libraries print
on file descriptor 2 too) and asserts what every mistake must give on
every backend: the expected exit status, exactly one line on stderr
matching the case's words, nothing on stdout, no traceback, and a
backend left exactly as it was.

A backend's test module supplies a :class:`Target`: its configuration,
image, flavor, an instance in each of the states the wrong-state cases
need, and a snapshot of what it has on the hypervisor.
"""

import collections.abc
import dataclasses
import os
import re

import pytest

from compute_driver.cmd import main

#: Exit statuses of the CLI.
FAILED = 1
USAGE = 2

Sections = dict[str, dict[str, str | None]]


@dataclasses.dataclass(frozen=True)
class Case:
    """One mistake and the one line it must produce.

    ``argv`` and ``config`` values may name the target's fields in braces
    (``{image}``, ``{flavor}``, ``{stopped}``, ``{running}``,
    ``{prefix}``, ``{section}``, ``{tmp}``).

    :param id: the test id.
    :param argv: the command line after ``--config-file``.
    :param words: a regular expression the error line must match.
    :param status: the exit status.
    :param config: options to set (a ``None`` value removes one) on top
        of the target's configuration.
    :param text: raw text appended to the configuration file.
    :param before: global options before ``--config-file`` and ``argv``;
        ``--config-file`` itself is left out when one of them is.
    :param needs: target fields the case needs (``running``); it is left
        out for targets without them.
    """

    id: str
    argv: tuple[str, ...]
    words: str
    status: int = FAILED
    config: Sections = dataclasses.field(default_factory=dict)
    text: str = ''
    before: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


def _boot(name: str, image: str = '{image}', flavor: str = '{flavor}',
          *extra: str) -> tuple[str, ...]:
    return ('boot', name, '--image', image, '--flavor', flavor, *extra)


def _flavor_case(id: str, spec: str, words: str) -> Case:
    return Case(id, ('list',), words,
                config={'DEFAULT': {'flavor': spec}})


NOT_FOUND = r'could not be found'
BAD_NAME = r"^Invalid instance name .*: use 1 to 63 letters"
BAD_IMAGE = r'^Invalid input: image reference .* must be 1 to 255'
WRONG_STATE = (r'^(Cannot [a-z ]+ instance {stopped} while it is shutdown; '
               r'it must be |The \w+ backend does not support )')
WRONG_STATE_RUNNING = (r'^(Cannot [a-z ]+ instance {running} while it is '
                       r'running; it must be |The \w+ backend does not '
                       r'support )')
USAGE_LINE = r"^compute-driver.*: error: .*\(see '.*--help'\)$"
BAD_CONFIG = r'^Invalid configuration: '

#: The mistakes every backend must answer the same way.
COMMON: list[Case] = [
    # -- instance names -----------------------------------------------------
    Case('name-space', _boot('bad name'), BAD_NAME),
    Case('name-underscore-first', _boot('_x'), BAD_NAME),
    Case('name-dot-first', _boot('.hidden'), BAD_NAME),
    Case('name-64-chars', _boot('n' * 64), BAD_NAME),
    Case('name-slash', _boot('{prefix}/x'), BAD_NAME),
    Case('name-dot-dot', _boot('../etc'), BAD_NAME),
    Case('name-unicode', _boot('{prefix}-\u00fc'), BAD_NAME),
    Case('name-control-char', _boot('{prefix}\x07'), BAD_NAME),
    Case('name-newline', _boot('{prefix}\nx'), BAD_NAME),
    Case('name-shell', _boot('{prefix};id'), BAD_NAME),
    Case('name-subshell', _boot('$(id)'), BAD_NAME),
    Case('name-quote', _boot("{prefix}'x"), BAD_NAME),
    Case('name-empty', _boot(''), BAD_NAME),
    Case('name-taken', _boot('{stopped}'), r'already exists'),
    # -- flavors --------------------------------------------------------------
    Case('flavor-unknown', _boot('{prefix}-f', flavor='m1.huge'),
         r'^Flavor m1.huge could not be found. Available: m1.nano'),
    Case('flavor-empty', _boot('{prefix}-f', flavor=''),
         r'^Flavor +could not be found'),
    Case('flavor-larger-than-host',
         _boot('{prefix}-f', flavor='x1.whole'),
         r'(^Not enough memory_mb on .*: 16777216 requested|'
         r'^Flavor x1.whole asks for 16777216 memory_mb)',
         config={'DEFAULT': {'flavor': 'x1.whole:1:16777216:1'}}),
    _flavor_case('flavor-4096-vcpus', 'x1.big:4096:64',
                 BAD_CONFIG + r"flavor 'x1.big:4096:64': flavor x1.big "
                              r'vcpus must be at most 1024, got 4096$'),
    _flavor_case('flavor-absurd-vcpus', 'x1.big:999999999999:64',
                 r'vcpus must be at most 1024, got 999999999999$'),
    _flavor_case('flavor-absurd-memory', 'x1.big:1:99999999999',
                 r'memory_mb must be at most 16777216'),
    _flavor_case('flavor-absurd-disk', 'x1.big:1:64:9999999999',
                 r'root_gb must be at most 1048576'),
    _flavor_case('flavor-zero-memory', 'x1.zero:1:0',
                 r'memory_mb must be an integer >= 1, got 0$'),
    _flavor_case('flavor-zero-vcpus', 'x1.zero:0:64',
                 r'vcpus must be an integer >= 1, got 0$'),
    _flavor_case('flavor-negative-disk', 'x1.neg:1:64:-1',
                 r'root_gb must be an integer >= 0, got -1$'),
    _flavor_case('flavor-too-few-fields', 'x1.short:1',
                 r'expected NAME:VCPUS:MEMORY_MB'),
    _flavor_case('flavor-not-a-number', 'x1.word:one:64',
                 r"vcpus 'one' is not an integer$"),
    _flavor_case('flavor-bad-extra-spec', 'x1.spec:1:64,novalue',
                 r"extra spec 'novalue' is not KEY=VALUE$"),
    Case('flavor-defined-twice', ('list',),
         r'flavor x1.twice is defined more than once$',
         text='[DEFAULT]\nflavor = x1.twice:1:64\nflavor = x1.twice:1:128\n'),
    # -- images ---------------------------------------------------------------
    Case('image-unknown', _boot('{prefix}-i', image='cdbad-no-such-image'),
         r'^Image cdbad-no-such-image (\(.*\) )?could not be found'),
    Case('image-whitespace', _boot('{prefix}-i', image='a b'), BAD_IMAGE),
    Case('image-empty', _boot('{prefix}-i', image=''), BAD_IMAGE),
    Case('image-control-char', _boot('{prefix}-i', image='img\x1b[2J'),
         BAD_IMAGE),
    Case('image-too-long', _boot('{prefix}-i', image='i' * 256), BAD_IMAGE),
    Case('image-traversal', _boot('{prefix}-i', image='../../etc/passwd'),
         r'(could not be found|^Invalid input: )'),
    Case('image-url', _boot('{prefix}-i',
                            image='http://127.0.0.1:9/cirros.img'),
         r'(could not be found|^Invalid input: )'),
    # -- metadata -------------------------------------------------------------
    Case('property-control-char',
         _boot('{prefix}-p', '{image}', '{flavor}', '--property', 'k=a\x00b'),
         r"^Invalid input: instance metadata value of k contains the "
         r"control character '\\x00'$"),
    Case('property-newline',
         _boot('{prefix}-p', '{image}', '{flavor}', '--property', 'k=a\nb'),
         r"control character '\\n'$"),
    Case('property-escape',
         _boot('{prefix}-p', '{image}', '{flavor}', '--property',
               'k=\x1b]0;owned\x07'), r"control character '\\x1b'$"),
    Case('property-long-value',
         _boot('{prefix}-p', '{image}', '{flavor}', '--property',
               'k=' + 'v' * 256), r'has 256 characters; at most 255'),
    Case('property-bad-key',
         _boot('{prefix}-p', '{image}', '{flavor}', '--property', 'k/x=v'),
         r"^Invalid input: instance metadata key 'k/x' must be"),
    Case('property-no-value',
         _boot('{prefix}-p', '{image}', '{flavor}', '--property', 'novalue'),
         r"expected KEY=VALUE, got 'novalue'", status=USAGE),
    Case('property-empty-key',
         _boot('{prefix}-p', '{image}', '{flavor}', '--property', '=v'),
         r"expected KEY=VALUE, got '=v'", status=USAGE),
    # -- configuration --------------------------------------------------------
    Case('config-unknown-default-option', ('list',),
         BAD_CONFIG + r'unknown option compute_drivr in section \[DEFAULT\] '
                      r'of .*; did you mean compute_driver\?$',
         config={'DEFAULT': {'compute_drivr': 'fake'}}),
    Case('config-unknown-section', ('check',),
         BAD_CONFIG + r'unknown section \[bogus\] in ',
         text='[bogus]\nx = 1\n'),
    Case('config-misspelt-section', ('list',),
         BAD_CONFIG + r'unknown section \[libvrt\] in .*; did you mean '
                      r'\[libvirt\]\?$', text='[libvrt]\nvirt_type = qemu\n'),
    Case('config-unknown-backend-option', ('check',),
         BAD_CONFIG + r'unknown option zzz_option in section \[{section}\]',
         text='[{section}]\nzzz_option = 1\n'),
    Case('config-no-such-backend', ('check',),
         r"^Compute driver 'nosuch' is not installed",
         config={'DEFAULT': {'compute_driver': 'nosuch'}}),
    Case('config-bad-backend-name', ('list',),
         BAD_CONFIG + r'\[DEFAULT\] compute_driver',
         config={'DEFAULT': {'compute_driver': 'bad name'}}),
    Case('config-not-ini', ('list',), BAD_CONFIG,
         text='this is not an ini file\n'),
    Case('config-missing-file', ('list',),
         BAD_CONFIG + r'Failed to find some config files: .*nope.conf$',
         before=('--config-file', '{tmp}/nope.conf')),
    Case('config-file-is-a-directory', ('list',), BAD_CONFIG,
         before=('--config-file', '{tmp}')),
    Case('config-missing-dir', ('list',),
         BAD_CONFIG + r'configuration directory /nonexistent.d does not '
                      r'exist', before=('--config-dir', '/nonexistent.d')),
    Case('config-bad-bool', ('list',), BAD_CONFIG + r'\[DEFAULT\] debug',
         config={'DEFAULT': {'debug': 'maybe'}}),
    # -- command-line misuse --------------------------------------------------
    Case('cli-unknown-command', ('bot', 'x'),
         r"^compute-driver: error: 'bot' is not a compute-driver command; "
         r"did you mean 'boot'", status=USAGE),
    Case('cli-unknown-option', ('list', '--bogus'), USAGE_LINE,
         status=USAGE),
    Case('cli-unknown-global-option', ('--bogus', 'list'), USAGE_LINE,
         status=USAGE),
    Case('cli-boot-without-image', ('boot', '{prefix}-c', '--flavor',
                                    '{flavor}'),
         r'the following arguments are required: --image', status=USAGE),
    Case('cli-boot-without-flavor', ('boot', '{prefix}-c', '--image',
                                     '{image}'),
         r'the following arguments are required: --flavor', status=USAGE),
    Case('cli-boot-without-name', ('boot', '--image', '{image}', '--flavor',
                                   '{flavor}'),
         r'the following arguments are required: NAME', status=USAGE),
    Case('cli-show-without-instance', ('show',), USAGE_LINE, status=USAGE),
    Case('cli-negative-timeout', ('stop', '{stopped}', '--timeout', '-1'),
         r"argument --timeout: must be an integer >= 0, got '-1'",
         status=USAGE),
    Case('cli-word-timeout', ('stop', '{stopped}', '--timeout', 'soon'),
         r'argument --timeout', status=USAGE),
    Case('cli-zero-lines', ('console-log', '{stopped}', '--lines', '0'),
         r'argument --lines', status=USAGE),
    Case('cli-resize-nothing', ('live-resize', '{stopped}'),
         r'live-resize needs --vcpus, --memory or both', status=USAGE),
    Case('cli-resize-word', ('live-resize', '{stopped}', '--vcpus', 'two'),
         r'argument --vcpus', status=USAGE),
    Case('cli-verify-zero', ('verify', '--count', '0'), r'argument --count',
         status=USAGE),
    Case('cli-verify-concurrency', ('verify', '--count', '2',
                                    '--concurrency', '3'),
         r'--concurrency \(3\) cannot exceed --count \(2\)', status=USAGE),
    Case('cli-bad-format', ('list', '-f', 'xml'), r'argument -f',
         status=USAGE),
    # -- unknown instances and wrong states -----------------------------------
    Case('show-unknown', ('show', '{prefix}-nosuch'),
         r'^Instance {prefix}-nosuch could not be found.$'),
    Case('stop-unknown', ('stop', '{prefix}-nosuch'), NOT_FOUND),
    Case('delete-unknown', ('delete', '{prefix}-nosuch'), NOT_FOUND),
    Case('snapshot-unknown', ('snapshot', '{prefix}-nosuch',
                              '{prefix}-snap'), NOT_FOUND),
    Case('stop-stopped', ('stop', '{stopped}'), WRONG_STATE),
    Case('pause-stopped', ('pause', '{stopped}'), WRONG_STATE),
    Case('unpause-stopped', ('unpause', '{stopped}'), WRONG_STATE),
    Case('suspend-stopped', ('suspend', '{stopped}'), WRONG_STATE),
    Case('resume-stopped', ('resume', '{stopped}'), WRONG_STATE),
    Case('soft-reboot-stopped', ('reboot', '{stopped}'), WRONG_STATE),
    Case('resize-stopped', ('live-resize', '{stopped}', '--vcpus', '1'),
         WRONG_STATE),
    Case('revert-to-unknown-snapshot', ('revert', '{stopped}',
                                        '{prefix}-nosnap'), NOT_FOUND),
    Case('snapshot-over-an-image', ('snapshot', '{stopped}', '{image}'),
         r'^Invalid input: '),
    Case('snapshot-bad-name', ('snapshot', '{stopped}', 'bad name'),
         r'^Invalid input: '),
    Case('snapshot-delete-unknown', ('snapshot-delete', '{prefix}-nosnap'),
         r'^Image {prefix}-nosnap could not be found'),
    Case('snapshot-delete-an-image', ('snapshot-delete', '{image}'),
         r'^Invalid input: image {image} is not a snapshot'),
    Case('start-running', ('start', '{running}'), WRONG_STATE_RUNNING,
         needs=('running',)),
    Case('unpause-running', ('unpause', '{running}'), WRONG_STATE_RUNNING,
         needs=('running',)),
    Case('resume-running', ('resume', '{running}'), WRONG_STATE_RUNNING,
         needs=('running',)),
    Case('resize-above-flavor', ('live-resize', '{running}', '--vcpus',
                                 '999'),
         r'(vcpus must be an integer from 1 to \d+ \(flavor |'
         r'does not support live_resize)', needs=('running',)),
]


@dataclasses.dataclass
class Target:
    """One backend the table runs against.

    :param name: the backend's entry-point name.
    :param sections: its configuration, ``{section: {option: value}}``.
    :param image: an image it can boot.
    :param flavor: a flavor its image boots with.
    :param prefix: starts every instance name the cases use, so that
        :attr:`state` can tell this run's objects from anyone else's.
    :param state: what the backend has that a case could change, in a
        form that compares equal when nothing changed.
    :param stopped: an existing instance in state shutdown.
    :param running: an existing running instance, or ``''``.
    :param values: more names the target's own cases use in braces.
    """

    name: str
    sections: Sections
    image: str
    flavor: str
    prefix: str
    state: collections.abc.Callable[[], object]
    stopped: str = ''
    running: str = ''
    values: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def section(self) -> str:
        return self.name


def cases(*extra: Case) -> list[object]:
    """The common table and a backend's own cases, as pytest params."""
    return [pytest.param(case, id=case.id) for case in [*COMMON, *extra]]


def _fill(text: str, target: Target, tmp: str) -> str:
    return text.format(image=target.image, flavor=target.flavor,
                       stopped=target.stopped, running=target.running,
                       prefix=target.prefix, section=target.section,
                       tmp=tmp, **target.values)


def write_config(path: str, target: Target, case: Case | None = None
                 ) -> str:
    """Write the target's configuration with a case's changes."""
    sections: Sections = {s: dict(o) for s, o in target.sections.items()}
    tmp = os.path.dirname(path)
    for section, options in (case.config if case else {}).items():
        for option, value in options.items():
            if value is None:
                sections.get(section, {}).pop(option, None)
            else:
                sections.setdefault(section, {})[option] = _fill(
                    value, target, tmp)
    lines = []
    for section, options in sections.items():
        lines.append('[%s]' % section)
        lines += ['%s = %s' % item for item in options.items()]
    text = '\n'.join(lines) + '\n'
    if case and case.text:
        text += _fill(case.text, target, tmp)
    with open(path, 'w') as f:
        f.write(text)
    return path


def run(argv: collections.abc.Sequence[str],
        capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in this process; its status, stdout and stderr."""
    capfd.readouterr()
    status = main.main(list(argv))
    out, err = capfd.readouterr()
    return status, out, err


def check(case: Case, target: Target, tmp_path: object,
          capfd: pytest.CaptureFixture[str]) -> None:
    """Run ``case`` on ``target`` and assert all that bad input must give."""
    missing = [need for need in case.needs if not getattr(target, need)]
    if missing:
        pytest.skip('the %s target has no %s instance' % (
            target.name, ', '.join(missing)))
    tmp = str(tmp_path)
    config = write_config(os.path.join(tmp, 'bad-input.conf'), target, case)
    before = [_fill(arg, target, tmp) for arg in case.before]
    if not any(arg == '--config-file' for arg in before):
        before = ['--config-file', config, *before]
    argv = [*before, *(_fill(arg, target, tmp) for arg in case.argv)]
    state = target.state()
    status, out, err = run(argv, capfd)
    assert 'Traceback' not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, 'expected one line on stderr, got:\n%s' % err
    assert re.search(_fill(case.words, target, tmp), lines[0]), lines[0]
    assert (status, out) == (case.status, ''), (status, out, err)
    assert target.state() == state, 'the backend changed'
