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

from oslo_config import fixture as config_fixture
import pytest

from compute_driver import conf as cd_conf
from compute_driver import exception
from compute_driver import flavors


@pytest.fixture
def conf():
    conf = cd_conf.build_conf(config_files=[])
    fixture = config_fixture.Config(conf)
    fixture.setUp()
    yield fixture
    fixture.cleanUp()


def test_builtin_flavors_match_nova():
    table = {f.name: (f.vcpus, f.memory_mb, f.root_gb)
             for f in flavors.BUILTIN}
    assert table['m1.tiny'] == (1, 512, 1)
    assert table['m1.small'] == (1, 2048, 20)
    assert table['m1.medium'] == (2, 4096, 40)
    assert table['m1.large'] == (4, 8192, 80)
    assert table['m1.xlarge'] == (8, 16384, 160)


def test_parse_full_definition():
    flavor = flavors.parse_flavor(
        'c1.big:8:16384:80:10:512,hw:cpu_policy=dedicated, quota:x = 1')
    assert (flavor.vcpus, flavor.memory_mb, flavor.root_gb,
            flavor.ephemeral_gb, flavor.swap) == (8, 16384, 80, 10, 512)
    assert flavor.extra_specs == {'hw:cpu_policy': 'dedicated',
                                  'quota:x': '1'}


@pytest.mark.parametrize('spec,words', [
    ('x:1', 'expected NAME:VCPUS:MEMORY_MB'),
    ('x:1:2:3:4:5:6', 'expected NAME:VCPUS:MEMORY_MB'),
    ('x:-1:64', 'vcpus must be an integer >= 1'),
    ('x:one:64', "vcpus 'one' is not an integer"),
    ('x:1:0', 'memory_mb must be an integer >= 1'),
    ('x:1:64,novalue', "extra spec 'novalue' is not KEY=VALUE"),
    (':1:64', 'flavor name must be a non-empty string'),
])
def test_parse_rejects(spec, words):
    with pytest.raises(exception.InvalidConfiguration) as exc:
        flavors.parse_flavor(spec)
    assert words in str(exc.value)
    assert repr(spec) in str(exc.value)


def test_configured_flavors_extend_and_replace(conf):
    conf.config(flavor=['m1.tiny:2:256:1', 'x1.one:1:32'])
    table = flavors.get_flavors(conf.conf)
    assert table['m1.tiny'].vcpus == 2
    assert table['x1.one'].memory_mb == 32
    assert 'm1.xlarge' in table


def test_twice_defined_flavor_is_refused(conf):
    conf.config(flavor=['x1.one:1:32', 'x1.one:2:64'])
    with pytest.raises(exception.InvalidConfiguration) as exc:
        flavors.get_flavors(conf.conf)
    assert 'more than once' in str(exc.value)


def test_unknown_flavor_lists_available(conf):
    with pytest.raises(exception.FlavorNotFound) as exc:
        flavors.get_flavor(conf.conf, 'm1.huge')
    assert 'm1.huge' in str(exc.value)
    assert 'm1.tiny' in str(exc.value)
