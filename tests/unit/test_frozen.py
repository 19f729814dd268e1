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

"""compute_driver._frozen.dataclass against dataclass(frozen=True)."""

import copy
import dataclasses
import inspect
import pickle
import typing

import pytest

from compute_driver import _frozen
from compute_driver.network import model
from compute_driver import objects


def _make(decorate, name):
    """The same class, made by ``decorate``, found as ``name``."""
    class Sample:
        """A sample."""

        name: str
        size: int = 1
        tags: dict[str, str] = dataclasses.field(default_factory=dict)
        note: str = dataclasses.field(default='', compare=False)
        label: dataclasses.InitVar[str] = '?'

        def __post_init__(self, label):
            if self.size < 0:
                raise ValueError('%s: negative size' % label)
            object.__setattr__(self, 'name', self.name.strip())
    Sample.__qualname__ = Sample.__name__ = name
    return decorate(Sample)


def _standard(cls):
    return dataclasses.dataclass(frozen=True)(cls)


# Module level, so that pickle finds them by name.
Ours = _make(_frozen.dataclass, 'Ours')
Theirs = _make(_standard, 'Theirs')


def _fields_repr(obj):
    return repr(obj).partition('(')[2]


def test_a_dataclass_as_the_standard_decorator_makes():
    assert dataclasses.is_dataclass(Ours)
    assert str(inspect.signature(Ours)) == str(inspect.signature(Theirs))
    assert (repr(Ours.__init__.__annotations__) ==
            repr(Theirs.__init__.__annotations__))
    for name in ('__init__', '__repr__', '__eq__', '__hash__',
                 '__setattr__', '__delattr__'):
        assert getattr(Ours, name).__qualname__ == 'Ours.' + name
    assert Ours.__match_args__ == Theirs.__match_args__
    assert (repr(dataclasses.fields(Ours)) ==
            repr(dataclasses.fields(Theirs)))
    assert (repr(Ours.__dataclass_params__) ==
            repr(Theirs.__dataclass_params__))
    assert Ours.__dataclass_params__.frozen


def test_instances_behave_as_the_standard_ones():
    assert _fields_repr(Ours('a')) == _fields_repr(Theirs('a'))
    for cls in (Ours, Theirs):
        one = cls(' a ', 2, {'k': 'v'}, note='x', label='L')
        assert repr(one) == ("%s(name='a', size=2, tags={'k': 'v'}, "
                             "note='x')" % cls.__name__)
        assert one == cls('a', 2, {'k': 'v'}, note='other')
        assert one != cls('a', 3, {'k': 'v'})
        assert one != ('a', 2, {'k': 'v'}, 'x')
        # A fresh dict each: the factory is called per instance.
        assert cls('b').tags is not cls('b').tags
        assert dataclasses.asdict(one) == {'name': 'a', 'size': 2,
                                           'tags': {'k': 'v'}, 'note': 'x'}
        assert dataclasses.replace(one, size=5).size == 5
        assert pickle.loads(pickle.dumps(one)) == one
        assert copy.deepcopy(one) == one
        with pytest.raises(ValueError, match='L: negative size'):
            cls('a', -1, label='L')
        with pytest.raises(TypeError):
            cls()


def test_hash_of_the_compared_fields():
    @_frozen.dataclass
    class Point:
        """A point."""

        x: int
        y: int = dataclasses.field(default=0, compare=False)

    assert hash(Point(1, 2)) == hash(Point(1, 3)) == hash((1,))
    assert {Point(1, 2), Point(1, 3)} == {Point(1, 0)}
    with pytest.raises(TypeError, match='unhashable'):
        hash(Ours('a'))


def test_frozen():
    one = Ours('a')
    with pytest.raises(dataclasses.FrozenInstanceError,
                       match="cannot assign to field 'size'"):
        one.size = 2
    with pytest.raises(dataclasses.FrozenInstanceError,
                       match="cannot delete field 'size'"):
        del one.size
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.other = 1
    assert one.size == 1


def test_a_subclass_may_add_attributes_but_not_change_fields():
    class Sub(Ours):
        pass

    sub = Sub('a')
    sub.extra = 1
    assert sub.extra == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        sub.size = 2
    # Not equal to an instance of the base class, as with the standard.
    assert sub != Ours('a')


def test_recursive_repr():
    @_frozen.dataclass
    class Node:
        """A node."""

        children: list = dataclasses.field(default_factory=list)

    node = Node()
    node.children.append(node)
    assert repr(node).endswith('Node(children=[...])')


@pytest.mark.parametrize('body', [
    {'__annotations__': {'a': int, 'b': typing.ClassVar[int]}, 'b': 1},
    {'__annotations__': {'a': int, 'b': int},
     'b': dataclasses.field(default=0, kw_only=True)},
    {'__annotations__': {'a': int, 'b': int},
     'b': dataclasses.field(default=0, init=False)},
    {'__annotations__': {'a': 'int'}},
    {'__annotations__': {'a': int},
     '__repr__': lambda self: 'own'},
])
def test_what_it_does_not_handle_goes_to_the_standard_decorator(body):
    cls = type('Odd', (), dict(body, __doc__='Odd.'))
    made = _frozen.dataclass(cls)
    assert dataclasses.is_dataclass(made)
    assert made.__dataclass_params__.frozen
    one = made(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = 2


def test_the_library_objects_are_frozen_dataclasses():
    for cls in (objects.Flavor, objects.Instance, objects.InstanceInfo,
                objects.InstanceRecord, objects.ImageMeta, objects.Leftover,
                objects.HostResources, model.Port, model.FixedIP):
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen, cls
        assert 'self' not in str(inspect.signature(cls)), cls
