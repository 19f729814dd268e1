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

import pytest

from compute_driver import exception


def test_message_is_formatted_and_kwargs_kept():
    exc = exception.InvalidPowerState(operation='pause', instance='vm1',
                                      current='paused', expected='running')
    assert str(exc) == ('Cannot pause instance vm1 while it is paused; it '
                        'must be running.')
    assert exc.current == 'paused'
    assert exc.kwargs['expected'] == 'running'


def test_explicit_message_wins():
    assert str(exception.InvalidInput('plain words')) == 'plain words'


def test_missing_format_key_still_reports_values():
    exc = exception.InstanceNotFound(uuid='u1')
    assert 'u1' in str(exc)
    assert 'could not be found' in str(exc)


@pytest.mark.parametrize('cls', [
    c for c in vars(exception).values()
    if isinstance(c, type) and issubclass(c, exception.ComputeDriverError)])
def test_every_error_is_one_line_sentence(cls):
    assert '\n' not in cls.msg_fmt
    assert issubclass(cls, exception.ComputeDriverError)


def test_one_line_keeps_library_words_and_names_bugs():
    assert exception.one_line(
        exception.InvalidInput('two\n  lines')) == 'two lines'
    assert (exception.one_line(KeyError('uuid')) == "KeyError: 'uuid'")
    assert exception.one_line(RuntimeError()) == 'RuntimeError'
