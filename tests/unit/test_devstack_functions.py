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

"""The stand-in DevStack functions the plugin's harness runs on.

The INI functions must behave as DevStack's inc/ini-config does, or the
harness would pass a plugin that breaks in a real DevStack; these cases
follow what DevStack's own tests/test_ini_config.sh expects of them.
"""

import subprocess

import pytest

from tests.devstack import harness as ds

STANDIN = ds.HERE / 'devstack-functions.sh'

INI = """[default]
# comment an option
#log_file=./log.conf
log_file=/etc/log.conf
handlers=do not disturb

[aaa]
# the commented option should not change
#handlers=cc,dd
handlers = aa, bb

[bbb]
handlers=ee,ff

[ ccc ]
spaces  =  yes

[ddd]
empty =

[eee]
multi = foo1
multi = foo2

[key_with_spaces]
rgw special key = something

[del_same_option]
a=b
a=c
b=d
"""


@pytest.fixture
def ini(tmp_path):
    path = tmp_path / 'test.ini'
    path.write_text(INI)
    return path


def bash(script, tmp_path, **env):
    result = subprocess.run(
        ['bash', '-c', 'set -e; source "$STANDIN"; ' + script],
        env={'STANDIN': str(STANDIN), 'PATH': '/usr/bin:/bin',
             'DATA_DIR': str(tmp_path), **env},
        capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def iniget(path, section, option, tmp_path):
    return bash('iniget "$F" "$S" "$O"', tmp_path, F=str(path), S=section,
                O=option).rstrip('\n')


@pytest.mark.parametrize('section,option,value', [
    ('aaa', 'handlers', 'aa, bb'),          # spaces in the value
    (' ccc ', 'spaces', 'yes'),             # spaces in the section header
    ('bbb', 'handlers', 'ee,ff'),           # last line of the file
    ('ddd', 'empty', ''),
    ('zzz', 'handlers', ''),                # no such section
    ('aaa', 'debug', ''),                   # no such option
    ('default', 'log_file', '/etc/log.conf'),   # the comment is skipped
    ('key_with_spaces', 'rgw special key', 'something'),
    ('default', 'handlers', 'do not disturb'),
])
def test_iniget(ini, tmp_path, section, option, value):
    assert iniget(ini, section, option, tmp_path) == value


@pytest.mark.parametrize('section,option,value', [
    ('aaa', 'handlers', '11, 22'),
    ('bbb', 'handlers', '33,44'),
    ('ddd', 'empty', '42'),
    ('aaa', 'handlers', 'a|b'),
    ('fff', 'ampersand', '&y'),
    ('ggg', 'backslash', 'foo\\bar'),
    ('ggg', 'backslash', 'foo\\bar&baz'),
    ('b b', 'opt_ion', '42'),                 # new section with a space
    ('key_with_spaces', 'rgw another key', 'somethingelse'),
    ('key_with_spaces', 'rgw special key', 'newvalue'),
    ('x', 'url', 'http://h/p?a=1&b=2'),
])
def test_iniset_then_iniget(ini, tmp_path, section, option, value):
    # Three times: setting an existing value must not grow it.
    bash('for i in 1 2 3; do iniset "$F" "$S" "$O" "$V"; done', tmp_path,
         F=str(ini), S=section, O=option, V=value)
    assert iniget(ini, section, option, tmp_path) == value


def test_iniset_keeps_the_spacing_and_the_comments(ini, tmp_path):
    bash('iniset "$F" aaa handlers new; iniset "$F" " ccc " spaces no',
         tmp_path, F=str(ini))
    text = ini.read_text()
    assert 'handlers = new\n' in text
    assert 'spaces  =  no\n' in text
    assert '#handlers=cc,dd\n' in text


def test_iniset_adds_the_option_below_the_section(ini, tmp_path):
    bash('iniset "$F" bbb extra 1', tmp_path, F=str(ini))
    assert '[bbb]\nextra = 1\nhandlers=ee,ff\n' in ini.read_text()


def test_iniset_collapses_blanks_in_values(ini, tmp_path):
    bash('iniset "$F" aaa handlers "a    b"', tmp_path, F=str(ini))
    assert 'handlers = a b\n' in ini.read_text()


def test_iniset_creates_the_file(tmp_path):
    path = tmp_path / 'new.ini'
    bash('iniset "$F" test foo bar; iniset "$F" test baz qux; '
         'iniset "$F" other a b', tmp_path, F=str(path))
    assert path.read_text() == (
        '\n[test]\nbaz = qux\nfoo = bar\n\n[other]\na = b\n')


def test_iniset_without_section_or_option_does_nothing(ini, tmp_path):
    bash('iniset "$F" aaa; iniset "$F"', tmp_path, F=str(ini))
    assert ini.read_text() == INI


def test_ini_has_option(ini, tmp_path):
    out = bash('for o in "ddd empty" "bbb handlers" "aaa debug" '
               '"default log_file"; do set -- $o; '
               'if ini_has_option "$F" "$1" "$2"; then echo "$2 yes"; '
               'else echo "$2 no"; fi; done', tmp_path, F=str(ini))
    assert out.split('\n')[:4] == [
        'empty yes', 'handlers yes', 'debug no', 'log_file yes']


def test_inicomment_and_iniuncomment(ini, tmp_path):
    bash('inicomment "$F" aaa handlers', tmp_path, F=str(ini))
    assert iniget(ini, 'aaa', 'handlers', tmp_path) == ''
    assert '#handlers = aa, bb\n' in ini.read_text()
    bash('iniuncomment "$F" aaa handlers', tmp_path, F=str(ini))
    # Both commented lines of the section come back.
    assert iniget(ini, 'aaa', 'handlers', tmp_path) == (
        'cc,dd handlers = aa, bb')


def test_multiline(ini, tmp_path):
    bash('iniset_multiline "$F" eee multi bar1 bar2', tmp_path, F=str(ini))
    assert '[eee]\nmulti = bar1\nmulti = bar2\n' in ini.read_text()
    out = bash('iniget_multiline "$F" eee multi; '
               'iniadd "$F" eee multi bar3; iniget_multiline "$F" eee multi;'
               ' iniadd "$F" eee non-multi foobar1 foobar2; '
               'iniget_multiline "$F" eee non-multi', tmp_path, F=str(ini))
    assert out.splitlines() == ['bar1 bar2', 'bar1 bar2 bar3',
                                'foobar1 foobar2']


def test_multiline_adds_the_section(tmp_path):
    path = tmp_path / 'm.ini'
    path.write_text('[a]\nx = 1\n')
    bash('iniset_multiline "$F" new opt v1 v2', tmp_path, F=str(path))
    assert path.read_text() == '[a]\nx = 1\n\n[new]\nopt = v1\nopt = v2\n'


def test_inidelete(ini, tmp_path):
    bash('inidelete "$F" del_same_option a; '
         'inidelete "$F" key_with_spaces "rgw special key"; '
         'inidelete "$F" no_section a', tmp_path, F=str(ini))
    text = ini.read_text()
    assert '[del_same_option]\nb=d\n' in text
    assert '[key_with_spaces]\n\n' in text


def test_iniget_sections(ini, tmp_path):
    assert bash('iniget_sections "$F"', tmp_path, F=str(ini)).split() == [
        'default', 'aaa', 'bbb', 'ccc', 'ddd', 'eee', 'key_with_spaces',
        'del_same_option']


def test_is_service_enabled(tmp_path):
    out = bash('for s in n-cpu nova glance tempest; do '
               'if is_service_enabled $s; then echo "$s on"; '
               'else echo "$s off"; fi; done; '
               'disable_service tempest; is_service_enabled tempest || '
               'echo "tempest off"; enable_service tempest; '
               'is_service_enabled tempest || echo "tempest stays off"',
               tmp_path, ENABLED_SERVICES='key,n-cpu,tempest')
    assert out.splitlines() == ['n-cpu on', 'nova on', 'glance off',
                                'tempest on', 'tempest off',
                                'tempest stays off']


def test_die_exits_with_the_message(tmp_path):
    result = subprocess.run(
        ['bash', '-c', 'source "$STANDIN"; die 7 "it broke"; echo after'],
        env={'STANDIN': str(STANDIN), 'PATH': '/usr/bin:/bin'},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ''
    assert ':7 it broke' in result.stderr


def test_record_mode_runs_nothing(tmp_path):
    calls = tmp_path / 'calls'
    out = bash('install_package cowsay; pip_install nosuchdist; '
               'setup_develop /nowhere docker; is_package_installed cowsay '
               '&& echo installed; enable_service svc; '
               'run_process svc "/bin/false --flag"; stop_process svc',
               tmp_path, STANDIN_RECORD='1', STANDIN_CALLS=str(calls))
    assert out == 'installed\n'
    assert calls.read_text().splitlines() == [
        'install_package cowsay', 'pip_install nosuchdist',
        'setup_develop /nowhere docker', 'run_process svc /bin/false --flag',
        'stop_process svc']


def test_run_process_really_runs_and_stops(tmp_path):
    marker = tmp_path / 'ran'
    out = bash('enable_service sleeper; '
               'run_process sleeper "bash -c \'touch $M; exec sleep 60\'"; '
               'for i in $(seq 50); do [[ -e $M ]] && break; sleep 0.1; '
               'done; pid=$(<"$STANDIN_RUN_DIR/sleeper.pid"); '
               'kill -0 $pid && echo alive; stop_process sleeper; '
               'kill -0 $pid 2>/dev/null || echo stopped; '
               'run_process disabled "touch $M.2"; echo done',
               tmp_path, M=str(marker),
               STANDIN_RUN_DIR=str(tmp_path / 'run'))
    assert out.splitlines() == ['alive', 'stopped', 'done']
    assert marker.exists()
    assert not (tmp_path / 'ran.2').exists()
    assert not (tmp_path / 'run').exists()
