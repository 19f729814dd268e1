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
from compute_driver import objects
from compute_driver import power_state

UUID = '6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0'


def _flavor(**kwargs):
    values = dict(name='m1.test', vcpus=1, memory_mb=64, root_gb=1)
    values.update(kwargs)
    return objects.Flavor(**values)


@pytest.mark.parametrize('name', ['vm1', 'a', 'web-01.prod_2', 'A' * 63])
def test_valid_names(name):
    assert objects.validate_name(name) == name


@pytest.mark.parametrize('name', [
    '', 'bad name', '-leading-dash', '.hidden', 'a/b', 'x' * 64, 'tab\there',
    'ünicode', None, 42])
def test_invalid_names(name):
    with pytest.raises(exception.InvalidInstanceName) as exc:
        objects.validate_name(name)
    assert repr(name) in str(exc.value)


@pytest.mark.parametrize('ref', ['cirros', 'busybox:1.36', 'reg:5000/a/b:c',
                                 'disk.qcow2'])
def test_valid_image_refs(ref):
    assert objects.validate_image_ref(ref) == ref


@pytest.mark.parametrize('ref', ['', 'with space', 'tab\t', 'nl\n', None,
                                 'x' * 256])
def test_invalid_image_refs(ref):
    with pytest.raises(exception.InvalidInput):
        objects.validate_image_ref(ref)


@pytest.mark.parametrize('field,value', [
    ('vcpus', 0), ('vcpus', -1), ('vcpus', True), ('vcpus', 1.5),
    ('memory_mb', 0), ('memory_mb', '512'), ('root_gb', -1),
    ('ephemeral_gb', -1), ('swap', -1)])
def test_flavor_rejects_bad_values(field, value):
    with pytest.raises(exception.InvalidInput) as exc:
        _flavor(**{field: value})
    assert field in str(exc.value)


def test_flavor_rejects_empty_name_and_bad_specs():
    with pytest.raises(exception.InvalidInput):
        _flavor(name=' ')
    with pytest.raises(exception.InvalidInput):
        _flavor(extra_specs={'hw:cpu_policy': 2})


def test_flavor_round_trip_and_disk():
    flavor = _flavor(root_gb=10, ephemeral_gb=5, extra_specs={'k': 'v'})
    assert flavor.disk_gb == 15
    assert objects.Flavor.from_dict(flavor.to_dict()) == flavor


def test_flavor_from_bad_record():
    with pytest.raises(exception.InvalidInput):
        objects.Flavor.from_dict({'name': 'x'})


def test_instance_normalises_uuid_and_round_trips():
    inst = objects.Instance(uuid=UUID.upper(), name='vm1', flavor=_flavor(),
                            image_ref='cirros', metadata={'a': 'b'})
    assert inst.uuid == UUID
    assert objects.Instance.from_dict(inst.to_dict()) == inst


@pytest.mark.parametrize('text', [
    UUID, UUID.upper(), UUID.replace('-', ''), '{%s}' % UUID,
    'urn:uuid:' + UUID, 'not-a-uuid', 'cdunit-vm', '', 'x' * 32,
    UUID[:-1] + 'g', UUID + '0', '0_' + '1' * 30])
def test_validate_uuid_accepts_what_the_uuid_module_does(text):
    # Parsed without importing the uuid module (see objects.py), to the
    # same canonical form, and refused for the same texts.
    import uuid
    try:
        expected = str(uuid.UUID(text))
    except ValueError:
        with pytest.raises(exception.InvalidInput):
            objects.validate_uuid(text)
    else:
        assert objects.validate_uuid(text) == expected


def test_instance_new_gets_fresh_uuids():
    a = objects.Instance.new('a', _flavor(), 'cirros')
    b = objects.Instance.new('b', _flavor(), 'cirros')
    assert a.uuid != b.uuid
    assert a.metadata == {}


@pytest.mark.parametrize('kwargs,error', [
    ({'uuid': 'not-a-uuid'}, exception.InvalidInput),
    ({'name': 'bad name'}, exception.InvalidInstanceName),
    ({'image_ref': 'has space'}, exception.InvalidInput),
    ({'flavor': 'm1.tiny'}, exception.InvalidInput),
    ({'metadata': {'k': 1}}, exception.InvalidInput),
])
def test_instance_rejects_bad_fields(kwargs, error):
    values = dict(uuid=UUID, name='vm1', flavor=_flavor(), image_ref='c')
    values.update(kwargs)
    with pytest.raises(error):
        objects.Instance(**values)


def test_instance_from_incomplete_record():
    with pytest.raises(exception.InvalidInput) as exc:
        objects.Instance.from_dict({'uuid': UUID, 'name': 'vm1'})
    assert 'flavor' in str(exc.value)


def test_instance_info_validates_state():
    assert objects.InstanceInfo(power_state.PAUSED).state == 3
    with pytest.raises(exception.InvalidInput):
        objects.InstanceInfo(2)


def test_image_meta():
    image = objects.ImageMeta('cirros', min_ram=64)
    assert image.id == 'cirros'
    with pytest.raises(exception.InvalidInput):
        objects.ImageMeta('cirros', min_disk=-1)


def test_host_resources_dict_matches_nova_keys():
    res = objects.HostResources(
        vcpus=4, memory_mb=8192, local_gb=100, vcpus_used=1,
        memory_mb_used=512, local_gb_used=1, hypervisor_type='fake',
        hypervisor_version=1000000, hypervisor_hostname='h1',
        cpu_info={'arch': 'x86_64'})
    data = res.to_dict()
    assert res.vcpus_free == 3 and res.memory_mb_free == 7680
    assert res.local_gb_free == 99
    assert data['cpu_info'] == '{"arch": "x86_64"}'
    assert data['disk_available_least'] == 99
    # The keys nova.compute.resource_tracker reads from the driver.
    for key in ('vcpus', 'memory_mb', 'local_gb', 'vcpus_used',
                'memory_mb_used', 'local_gb_used', 'hypervisor_type',
                'hypervisor_version', 'hypervisor_hostname', 'cpu_info',
                'disk_available_least', 'numa_topology'):
        assert key in data


@pytest.mark.parametrize('text,number', [
    ('1.2.9', 1002009), ('8.0', 8000000), ('10', 10000000),
    ((4, 2, 0), 4002000)])
def test_version_conversion(text, number):
    assert objects.version_to_int(text) == number
    assert objects.version_to_int(objects.version_to_str(number)) == number


@pytest.mark.parametrize('bad', ['1.2.3.4', '', 'a.b'])
def test_version_conversion_rejects(bad):
    with pytest.raises(ValueError):
        objects.version_to_int(bad)


@pytest.mark.parametrize('field,value,maximum', [
    ('vcpus', 1025, objects.MAX_VCPUS),
    ('vcpus', 4096, objects.MAX_VCPUS),
    ('vcpus', 999999999999, objects.MAX_VCPUS),
    ('memory_mb', objects.MAX_MEMORY_MB + 1, objects.MAX_MEMORY_MB),
    ('root_gb', objects.MAX_DISK_GB + 1, objects.MAX_DISK_GB),
    ('ephemeral_gb', 10 ** 12, objects.MAX_DISK_GB),
    ('swap', objects.MAX_MEMORY_MB + 1, objects.MAX_MEMORY_MB),
])
def test_flavor_values_beyond_any_host_are_refused(field, value, maximum):
    fields = {'vcpus': 1, 'memory_mb': 64, field: value}
    with pytest.raises(exception.InvalidInput) as caught:
        objects.Flavor('m1.huge', **fields)
    assert str(caught.value) == (
        'Invalid input: flavor m1.huge %s must be at most %d, got %d'
        % (field, maximum, value))


def test_flavor_at_the_bounds_is_accepted():
    objects.Flavor('m1.max', vcpus=objects.MAX_VCPUS,
                   memory_mb=objects.MAX_MEMORY_MB,
                   root_gb=objects.MAX_DISK_GB,
                   ephemeral_gb=objects.MAX_DISK_GB,
                   swap=objects.MAX_MEMORY_MB)
