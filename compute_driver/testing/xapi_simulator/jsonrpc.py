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

"""XAPI's JSON-RPC wire format, served on ``/jsonrpc``.

The C#, Go, Java and PowerShell SDKs speak JSON-RPC rather than XML-RPC.
The calls and their parameters are the same; the encoding differs:

- a request is ``{"jsonrpc": "2.0", "method": ..., "params": [...],
  "id": ...}`` (version 1.0 requests carry no ``jsonrpc`` member);
- success is ``{"jsonrpc": "2.0", "result": value, "id": ...}``;
- a failure is ``{"jsonrpc": "2.0", "error": {"code": 1, "message":
  CODE, "data": [params...]}, "id": ...}`` -- XAPI always sends code 1,
  which it keeps only for the JSON-RPC 2.0 specification, and the SDKs
  read the message and data -- and in version 1.0 ``{"result": null,
  "error": [CODE, params...], "id": ...}``;
- ``int`` fields are JSON numbers (XML-RPC sends decimal strings) and
  ``datetime`` values are strings such as ``20240101T12:00:00Z``.
"""

import json
import typing
import xmlrpc.client

from compute_driver.testing.xapi_simulator import store as db

_CLASSES = {cls.lower(): cls for cls in db.CLASSES}


def _plain(value: typing.Any) -> typing.Any:
    """Every DateTime of a value as its ISO 8601 string."""
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _record(cls: str, record: typing.Any) -> typing.Any:
    ints = db.CLASSES[cls].ints
    if not isinstance(record, dict):
        return record
    return {k: (int(v) if k in ints and isinstance(v, str) else v)
            for k, v in record.items()}


def encode_result(method: str, value: typing.Any) -> typing.Any:
    """A call's result with ``int`` fields as numbers.

    :param method: ``<class>.<message>``, telling which fields are ints.
    """
    value = _plain(value)
    cls, _, message = method.rpartition('.')
    if cls.startswith('Async.'):
        return value
    if cls == 'event' and message in ('from', 'event_from'):
        for event in value.get('events', []):
            name = _CLASSES.get(event.get('class', ''))
            if name and 'snapshot' in event:
                event['snapshot'] = _record(name, event['snapshot'])
        return value
    if cls not in db.CLASSES:
        return value
    if message == 'get_record':
        return _record(cls, value)
    if message in ('get_all_records', 'get_all_records_where'):
        return {ref: _record(cls, rec) for ref, rec in value.items()}
    field = message[len('get_'):] if message.startswith('get_') else ''
    if field in db.CLASSES[cls].ints and isinstance(value, str):
        return int(value)
    return value


def decode_params(value: typing.Any) -> typing.Any:
    """JSON numbers as the decimal strings the simulator stores."""
    if isinstance(value, bool) or not isinstance(value, (int, list, dict)):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return [decode_params(v) for v in value]
    return {k: decode_params(v) for k, v in value.items()}


def handle(body: bytes, dispatch: typing.Callable[
        [str, typing.Any], dict[str, typing.Any]]) -> bytes:
    """Answer one JSON-RPC request body.

    :param dispatch: answers ``(method, params)`` with XAPI's
        ``Status``/``Value``/``ErrorDescription`` structure.
    """
    try:
        request = json.loads(body)
        method = request['method']
        params = request.get('params', [])
        if not isinstance(method, str) or not isinstance(params, list):
            raise ValueError('method must be a string, params a list')
    except (ValueError, KeyError, TypeError) as exc:
        return json.dumps({'jsonrpc': '2.0', 'id': None, 'error': {
            'code': -32700, 'message': 'Parse error', 'data': [str(exc)]}
        }).encode()
    version2 = request.get('jsonrpc') == '2.0'
    answer = dispatch(method, decode_params(params))
    reply: dict[str, typing.Any] = {'id': request.get('id')}
    if answer['Status'] == 'Success':
        reply['result'] = encode_result(method, answer['Value'])
        if not version2:
            reply['error'] = None
    elif version2:
        description = answer['ErrorDescription']
        reply['error'] = {'code': 1, 'message': description[0],
                          'data': description[1:]}
    else:
        reply.update(result=None, error=answer['ErrorDescription'])
    if version2:
        reply['jsonrpc'] = '2.0'
    return json.dumps(reply).encode()
