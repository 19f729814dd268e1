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

"""``dataclasses.dataclass(frozen=True)``, cheaper to apply at import.

The standard decorator writes the source of six methods per class
(``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``) and compiles each with its own ``exec``: about half a
millisecond per class, which every command of the CLI pays for the
classes of :mod:`compute_driver.objects` and the modules it loads with
them. :func:`dataclass` compiles ``__init__`` only, the one method whose
signature and speed matter, exactly as the standard decorator writes it;
the other five are shared functions closing over the field names, which
behave as the generated ones do. The class is a dataclass like any other
(:func:`dataclasses.fields`, :func:`~dataclasses.asdict`,
:func:`~dataclasses.replace`, ``__match_args__``, ``__dataclass_params__``
saying ``frozen``).

Anything beyond fields with or without defaults or default factories,
``InitVar`` pseudo-fields and an optional ``__post_init__`` (keyword-only
fields, ``ClassVar``, fields outside ``__init__``, string annotations,
methods of its own among those six, dataclass bases, no docstring) is
handed to the standard decorator.
"""

import dataclasses
import operator
import typing

if typing.TYPE_CHECKING:  # pragma: no cover
    # Type checkers then know what dataclass makes of a class.
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**kwargs):
        return lambda function: function

_T = typing.TypeVar('_T', bound=type)

#: The methods the standard decorator would generate.
_GENERATED = ('__init__', '__repr__', '__eq__', '__hash__', '__setattr__',
              '__delattr__')


class _Factory:
    """Default of a field with a default factory, as the decorator's."""

    def __repr__(self) -> str:
        return '<factory>'


_HAS_DEFAULT_FACTORY = _Factory()


@dataclass_transform(frozen_default=True)
def dataclass(cls: _T) -> _T:
    """Make ``cls`` a frozen dataclass, as ``@dataclass(frozen=True)``."""
    if not _plain(cls):
        return typing.cast(_T, dataclasses.dataclass(frozen=True)(cls))
    # The fields, their checks and __match_args__; no generated method.
    dataclasses.dataclass(init=False, repr=False, eq=False)(cls)
    fields = dataclasses.fields(cls)
    _set(cls, '__init__', _init(cls))
    _set(cls, '__repr__', _repr(tuple(f.name for f in fields if f.repr)))
    _set(cls, '__eq__', _eq(tuple(f.name for f in fields if f.compare)))
    _set(cls, '__hash__', _hash(tuple(
        f.name for f in fields
        if (f.compare if f.hash is None else f.hash))))
    setattr_, delattr_ = _frozen(cls, tuple(f.name for f in fields))
    _set(cls, '__setattr__', setattr_)
    _set(cls, '__delattr__', delattr_)
    params = cls.__dict__['__dataclass_params__']
    params.init = params.repr = params.eq = params.frozen = True
    return cls


def _plain(cls: type) -> bool:
    """Whether ``cls`` has only what :func:`dataclass` handles itself."""
    if (any(name in cls.__dict__ for name in _GENERATED) or
            cls.__doc__ is None or
            any(dataclasses.is_dataclass(base) for base in cls.__mro__[1:])):
        return False
    for name, kind in cls.__dict__.get('__annotations__', {}).items():
        if (isinstance(kind, str) or
                kind in (dataclasses.InitVar, dataclasses.KW_ONLY,
                         typing.ClassVar) or
                typing.get_origin(kind) is typing.ClassVar):
            return False
        default = cls.__dict__.get(name)
        if isinstance(default, dataclasses.Field) and (
                not default.init or default.kw_only is True):
            return False
    return True


def _set(cls: type, name: str, function: typing.Any) -> None:
    function.__qualname__ = '%s.%s' % (cls.__qualname__, name)
    setattr(cls, name, function)


def _init(cls: type) -> typing.Any:
    """``__init__``, compiled from the text the standard decorator writes."""
    names: dict[str, typing.Any] = {
        '__dataclass_builtins_object__': object,
        '_HAS_DEFAULT_FACTORY': _HAS_DEFAULT_FACTORY}
    args = []
    body = []
    passed = []
    annotations: dict[str, typing.Any] = {}
    # The fields and the InitVar pseudo-fields, in their order.
    for f in cls.__dict__['__dataclass_fields__'].values():
        annotations[f.name] = f.type
        value = f.name
        if f.default_factory is not dataclasses.MISSING:
            names['_dflt_' + f.name] = f.default_factory
            args.append('%s=_HAS_DEFAULT_FACTORY' % f.name)
            value = '_dflt_%s() if %s is _HAS_DEFAULT_FACTORY else %s' % (
                f.name, f.name, f.name)
        elif f.default is not dataclasses.MISSING:
            names['_dflt_' + f.name] = f.default
            args.append('%s=_dflt_%s' % (f.name, f.name))
        else:
            args.append(f.name)
        if isinstance(f.type, dataclasses.InitVar):
            # Passed to __post_init__, never stored.
            passed.append(f.name)
            continue
        body.append('  __dataclass_builtins_object__.__setattr__(self, %r, '
                    '%s)' % (f.name, value))
    if hasattr(cls, '__post_init__'):
        body.append('  self.__post_init__(%s)' % ', '.join(passed))
    if not body:
        body.append('  pass')
    source = 'def __init__(%s):\n%s\n' % (
        ', '.join(['self'] + args), '\n'.join(body))
    namespace: dict[str, typing.Any] = {}
    exec(source, names, namespace)  # noqa: S102 - our own text, as above
    init = namespace['__init__']
    annotations['return'] = None
    init.__annotations__ = annotations
    return init


def _values(names: tuple[str, ...]
            ) -> typing.Callable[[typing.Any], tuple[typing.Any, ...]]:
    # A tuple whatever the number of names, as the generated code's.
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        single = operator.attrgetter(names[0])
        return lambda obj: (single(obj),)
    return lambda obj: ()


def _repr(names: tuple[str, ...]) -> typing.Any:
    import reprlib
    getters = [(name + '=', operator.attrgetter(name)) for name in names]

    # As the standard decorator's, a recursive reference is shown as
    # "...".
    @reprlib.recursive_repr()
    def __repr__(self):
        return '%s(%s)' % (self.__class__.__qualname__, ', '.join(
            [label + repr(get(self)) for label, get in getters]))
    return __repr__


def _eq(names: tuple[str, ...]) -> typing.Any:
    values = _values(names)

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented
    return __eq__


def _hash(names: tuple[str, ...]) -> typing.Any:
    values = _values(names)

    def __hash__(self):
        return hash(values(self))
    return __hash__


def _frozen(cls: typing.Any,
            names: tuple[str, ...]) -> tuple[typing.Any, typing.Any]:
    def __setattr__(self, name, value):
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(
                'cannot assign to field %r' % (name,))
        super(cls, self).__setattr__(name, value)

    def __delattr__(self, name):
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(
                'cannot delete field %r' % (name,))
        super(cls, self).__delattr__(name)
    return __setattr__, __delattr__
