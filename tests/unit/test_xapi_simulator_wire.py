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

"""The simulator's XML-RPC answers are xmlrpc.client's, byte for byte."""

import datetime
import xmlrpc.client

import pytest

from compute_driver.testing.xapi_simulator import api as xapi
from compute_driver.testing.xapi_simulator import seed
from compute_driver.testing.xapi_simulator import store as db
from compute_driver.testing.xapi_simulator import wire


def _stdlib(value):
    return xmlrpc.client.dumps((value,), methodresponse=1, allow_none=False,
                               encoding='utf-8')


VALUES = [
    '',
    'plain',
    'a <tag> & "quotes" \'too\' ]]> \u00e9\u4e2d\U0001f600',
    '<&>' * 3,
    0, 1, -1, xmlrpc.client.MAXINT, xmlrpc.client.MININT,
    True, False,
    0.0, 1.5, -2.25e-300, 1e300, float('inf'), float('nan'),
    xmlrpc.client.DateTime('19700101T00:00:00Z'),
    datetime.datetime(2026, 12, 3, 12, 0, 1),
    datetime.datetime(7, 1, 2, 3, 4, 5),
    b'bytes \x00\xff',
    [], {}, (), ['a', 1, [2.0, {'k': 'v'}]],
    ('t', True),
    {'<key&>': {'nested': {'deeper': ['x', {'y': False}]}}},
    {'Status': 'Failure', 'ErrorDescription': ['HANDLE_INVALID', 'VM',
                                               'OpaqueRef:x']},
]


@pytest.mark.parametrize('value', VALUES, ids=repr)
def test_same_text_as_xmlrpc_client(value):
    assert wire.dumps_response(value) == _stdlib(value)


def test_records_of_every_class_as_xmlrpc_client():
    store = db.Store()
    seed.populate(store, dict(seed.DEFAULT_SEED, address='127.0.0.1'))
    records = {cls: dict(table) for cls, table in store.objects.items()}
    assert records['VM'] and records['host'] and records['SR']
    answer = {'Status': 'Success', 'Value': records}
    assert wire.dumps_response(answer) == _stdlib(answer)


def test_snapshot_marshalled_once_per_key():
    cache = {}
    record = db.copy_record(db.CLASSES['VM'].defaults)
    record['other_config'] = {'a&b': '<x>'}
    first = wire.Snapshot(record, ('VM', 'OpaqueRef:a', 7), cache)
    expected = _stdlib({'snapshot': record})
    assert wire.dumps_response({'snapshot': first}) == expected
    assert list(cache) == [('VM', 'OpaqueRef:a', 7)]
    # The same key is the same text, whatever the dict holds: the key
    # names the event that last changed the record.
    again = wire.Snapshot({}, ('VM', 'OpaqueRef:a', 7), cache)
    assert wire.dumps_response({'snapshot': again}) == expected
    changed = wire.Snapshot(dict(record, name_label='new'),
                            ('VM', 'OpaqueRef:a', 8), cache)
    assert wire.dumps_response({'snapshot': changed}) == _stdlib(
        {'snapshot': dict(record, name_label='new')})


def test_snapshot_cache_bounded(monkeypatch):
    monkeypatch.setattr(wire.Snapshot, 'LIMIT', 3)
    cache = {}
    for key in range(5):
        wire.dumps_response(wire.Snapshot({'n': str(key)}, (key,), cache))
    assert list(cache) == [(2,), (3,), (4,)]


@pytest.mark.parametrize('value', [
    None, {'a': None}, xmlrpc.client.MAXINT + 1, {1: 'x'}, object(),
])
def test_unmarshallable_raises_as_xmlrpc_client(value):
    with pytest.raises(Exception) as stdlib:
        _stdlib(value)
    with pytest.raises(stdlib.type, match=str(stdlib.value)):
        wire.dumps_response(value)
    snapshot = wire.Snapshot({'x': value}, ('k',), {})
    with pytest.raises(stdlib.type):
        wire.dumps_response(snapshot)


def test_recursive_refused_as_xmlrpc_client():
    value = {'a': []}
    value['a'].append(value)
    with pytest.raises(TypeError, match='recursive'):
        wire.dumps_response(value)


def test_event_from_answer_as_xmlrpc_client():
    store = db.Store()
    seed.populate(store, dict(seed.DEFAULT_SEED, address='127.0.0.1'))
    api = xapi.Api(store, xapi.Settings())
    session = api.call('session.login_with_password',
                       ['root', 'password', '1.0', 'test'])
    token = api.call('event.from', [session, ['vm'], '', 0.0])['token']
    [template] = [ref for ref, rec in store.table('VM').items()
                  if rec['is_a_template']][:1]
    api.call('VM.clone', [session, template, 'a <new> & vm'])
    answer = api.dispatch('event.from', [session, ['*'], token, 0.0])
    snapshots = [e['snapshot'] for e in answer['Value']['events']
                 if 'snapshot' in e]
    assert snapshots and all(isinstance(s, wire.Snapshot)
                             for s in snapshots)
    plain = xmlrpc.client.loads(wire.dumps_response(answer))[0][0]
    assert _stdlib(plain) == wire.dumps_response(answer)
    # Twice, as a second poller with the same token: from the cache.
    again = api.dispatch('event.from', [session, ['*'], token, 0.0])
    assert store.marshalled
    assert wire.dumps_response(again) == _stdlib(plain).replace(
        *_timestamps(plain, again))


def _timestamps(first, second):
    # Each answer stamps its events with the time it was made.
    old = first['Value']['events'][0]['timestamp'].value
    new = second['Value']['events'][0]['timestamp'].value
    return ('<dateTime.iso8601>%s<' % old, '<dateTime.iso8601>%s<' % new)
