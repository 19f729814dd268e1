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

"""The expressions of ``<class>.get_all_records_where``.

XAPI's grammar: ``true``, ``false``, ``not E``, ``E and E``, ``E or E``,
``(E)`` and ``V = V`` / ``V <> V`` where a value ``V`` is ``field "name"``
or a double-quoted literal. Fields compare as their wire strings
(``"true"``/``"false"`` for booleans), e.g.::

    field "is_a_template" = "false" and not (field "name__label" = "x")

XAPI spells ``name_label`` and ``name_description`` with a double
underscore in these expressions, as its database columns are named.
"""

import re
import typing

from compute_driver.testing.xapi_simulator import store as db

_TOKEN = re.compile(r'\s*(?:(\()|(\))|(<>|=)|"((?:[^"\\]|\\.)*)"|(\w+))')

Node = tuple[typing.Any, ...]


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise db.ApiError('INTERNAL_ERROR',
                              'cannot parse expression %r' % text)
        pos = match.end()
        lparen, rparen, op, literal, word = match.groups()
        if lparen or rparen:
            tokens.append(('paren', lparen or rparen))
        elif op:
            tokens.append(('op', op))
        elif literal is not None:
            tokens.append(('str', literal.replace('\\"', '"')))
        else:
            tokens.append(('word', word))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def fail(self) -> typing.NoReturn:
        raise db.ApiError('INTERNAL_ERROR',
                          'cannot parse expression %r' % self.text)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            self.fail()
        self.pos += 1
        return token

    def expression(self) -> Node:
        node = self.conjunction()
        while self.peek() == ('word', 'or'):
            self.take()
            node = ('or', node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.unary()
        while self.peek() == ('word', 'and'):
            self.take()
            node = ('and', node, self.unary())
        return node

    def unary(self) -> Node:
        token = self.peek()
        if token == ('word', 'not'):
            self.take()
            return ('not', self.unary())
        if token == ('paren', '('):
            self.take()
            node = self.expression()
            if self.take() != ('paren', ')'):
                self.fail()
            return node
        if token in (('word', 'true'), ('word', 'false')):
            self.take()
            return ('const', token[1] == 'true')
        left = self.value()
        kind, op = self.take()
        if kind != 'op':
            self.fail()
        return (op, left, self.value())

    def value(self) -> Node:
        kind, text = self.take()
        if kind == 'word' and text == 'field':
            kind, name = self.take()
            if kind != 'str':
                self.fail()
            return ('field', name)
        if kind == 'str':
            return ('literal', text)
        self.fail()


def parse(text: str) -> Node:
    """The tree of an expression; ``INTERNAL_ERROR`` if it is invalid."""
    parser = _Parser(str(text))
    node = parser.expression()
    if parser.peek() is not None:
        parser.fail()
    return node


def _wire(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def _value(node: Node, record: db.Record) -> str:
    if node[0] == 'literal':
        return str(node[1])
    name = node[1].replace('__', '_')
    return _wire(record.get(name, ''))


def matches(node: Node, record: db.Record) -> bool:
    """Whether ``record`` satisfies a parsed expression."""
    kind = node[0]
    if kind == 'const':
        return bool(node[1])
    if kind == 'not':
        return not matches(node[1], record)
    if kind == 'and':
        return matches(node[1], record) and matches(node[2], record)
    if kind == 'or':
        return matches(node[1], record) or matches(node[2], record)
    equal = _value(node[1], record) == _value(node[2], record)
    return equal if kind == '=' else not equal
