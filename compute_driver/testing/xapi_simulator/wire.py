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

"""XML-RPC answers, byte for byte as :func:`xmlrpc.client.dumps` writes them.

XAPI is a compiled daemon: marshalling an ``event.from`` answer full of
VM records costs it little. :class:`xmlrpc.client.Marshaller` spends
several method calls per value, so in the simulator the marshalling of
records dominated what a client following events cost the host, a cost
of the simulator, not of the client. :func:`dumps_response` writes the
same text with one type test per value; a value of any other type than
XAPI's (the sub-class of a basic type, ``None``, an instance) goes to
:func:`xmlrpc.client.dumps`, which marshals it or raises as it always
did.
"""

import typing
import xmlrpc.client

_HEAD = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
_TAIL = '</param>\n</params>\n</methodResponse>\n'
_MAXINT = xmlrpc.client.MAXINT
_MININT = xmlrpc.client.MININT


class _Unhandled(Exception):
    """A value this module leaves to :mod:`xmlrpc.client`."""


class Snapshot(dict):
    """A record as it was at one event, marshalled once for every poller.

    Several clients following events, or one reading the same object
    again, get the same text: :func:`dumps_response` keeps it in
    ``cache`` under ``key``, which must name the object and the event
    that last changed it, so that a change (always followed by an event)
    makes a new key. It is a plain ``dict`` to everything else.
    """

    __slots__ = ('key', 'cache')

    #: How many records a cache keeps; the oldest go first.
    LIMIT = 2048

    def __init__(self, record: dict[str, typing.Any], key: tuple,
                 cache: dict[tuple, str]) -> None:
        super().__init__(record)
        self.key = key
        self.cache = cache


def _escape(text: str) -> str:
    if '&' in text or '<' in text or '>' in text:
        return text.replace('&', '&amp;').replace(
            '<', '&lt;').replace('>', '&gt;')
    return text


def _dump(value: typing.Any, write: typing.Callable[[str], object],
          seen: set[int]) -> None:
    kind = type(value)
    if kind is str:
        write('<value><string>%s</string></value>\n' % _escape(value))
    elif kind is dict:
        _dump_struct(value, write, seen)
    elif kind is Snapshot:
        text = value.cache.get(value.key)
        if text is None:
            out: list[str] = []
            _dump_struct(value, out.append, seen)
            text = value.cache[value.key] = ''.join(out)
            if len(value.cache) > Snapshot.LIMIT:
                try:
                    del value.cache[next(iter(value.cache))]
                except (KeyError, RuntimeError, StopIteration):
                    pass  # another thread evicted it first
        write(text)
    elif kind is list or kind is tuple:
        if id(value) in seen:
            raise _Unhandled()
        seen.add(id(value))
        write('<value><array><data>\n')
        for item in value:
            _dump(item, write, seen)
        write('</data></array></value>\n')
        seen.discard(id(value))
    elif kind is bool:
        write('<value><boolean>1</boolean></value>\n' if value
              else '<value><boolean>0</boolean></value>\n')
    elif kind is int:
        if value > _MAXINT or value < _MININT:
            raise _Unhandled()
        write('<value><int>%d</int></value>\n' % value)
    elif kind is float:
        write('<value><double>%r</double></value>\n' % value)
    elif kind is xmlrpc.client.DateTime:
        write('<value><dateTime.iso8601>%s</dateTime.iso8601></value>\n'
              % value.value)
    else:
        raise _Unhandled()


def _dump_struct(value: dict[str, typing.Any],
                 write: typing.Callable[[str], object],
                 seen: set[int]) -> None:
    if id(value) in seen:
        raise _Unhandled()
    seen.add(id(value))
    write('<value><struct>\n')
    for key, item in value.items():
        if type(key) is not str:
            raise _Unhandled()
        # Most members of a XAPI record are strings: inlined.
        if type(item) is str:
            write('<member>\n<name>%s</name>\n<value><string>%s'
                  '</string></value>\n</member>\n'
                  % (_escape(key), _escape(item)))
        else:
            write('<member>\n<name>%s</name>\n' % _escape(key))
            _dump(item, write, seen)
            write('</member>\n')
    write('</struct></value>\n')
    seen.discard(id(value))


def dumps_response(value: typing.Any) -> str:
    """``xmlrpc.client.dumps((value,), methodresponse=True)``, faster.

    :raises TypeError: ``value`` holds what XML-RPC cannot carry.
    :raises OverflowError: an ``int`` beyond 32 bits.
    """
    out: list[str] = [_HEAD]
    try:
        _dump(value, out.append, set())
    except _Unhandled:
        # A Snapshot is a dict to xmlrpc.client only once plain again.
        return xmlrpc.client.dumps((_plain(value),), methodresponse=True)
    out.append(_TAIL)
    return ''.join(out)


def _plain(value: typing.Any, seen: set[int] | None = None) -> typing.Any:
    seen = set() if seen is None else seen
    kind = type(value)
    if kind not in (dict, Snapshot, list, tuple) or id(value) in seen:
        # A recursive value stays so: xmlrpc.client refuses it as before.
        return value
    seen.add(id(value))
    if kind is list or kind is tuple:
        plain: typing.Any = kind(_plain(item, seen) for item in value)
    else:
        plain = {key: _plain(item, seen) for key, item in value.items()}
    seen.discard(id(value))
    return plain
