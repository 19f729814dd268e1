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

"""Flavors: Nova's standard ones built in, more from the config file."""

import typing


from compute_driver import exception
from compute_driver import objects

if typing.TYPE_CHECKING:  # pragma: no cover
    from oslo_config import cfg

#: DevStack's m1.nano and m1.micro, then Nova's historical defaults.
BUILTIN = (
    objects.Flavor('m1.nano', vcpus=1, memory_mb=64, root_gb=1),
    objects.Flavor('m1.micro', vcpus=1, memory_mb=128, root_gb=1),
    objects.Flavor('m1.tiny', vcpus=1, memory_mb=512, root_gb=1),
    objects.Flavor('m1.small', vcpus=1, memory_mb=2048, root_gb=20),
    objects.Flavor('m1.medium', vcpus=2, memory_mb=4096, root_gb=40),
    objects.Flavor('m1.large', vcpus=4, memory_mb=8192, root_gb=80),
    objects.Flavor('m1.xlarge', vcpus=8, memory_mb=16384, root_gb=160),
)

_FIELDS = ('vcpus', 'memory_mb', 'root_gb', 'ephemeral_gb', 'swap')


def parse_flavor(spec: str) -> objects.Flavor:
    """Parse one ``[DEFAULT] flavor`` value.

    :param spec: ``NAME:VCPUS:MEMORY_MB[:ROOT_GB[:EPHEMERAL_GB[:SWAP_MB]]]``
        optionally followed by ``,KEY=VALUE`` extra specs.
    :raises InvalidConfiguration: naming the definition and the problem.
    """
    head, _, tail = spec.partition(',')
    parts = [p.strip() for p in head.split(':')]
    if not 3 <= len(parts) <= 1 + len(_FIELDS):
        raise exception.InvalidConfiguration(
            reason='flavor %r: expected NAME:VCPUS:MEMORY_MB[:ROOT_GB'
                   '[:EPHEMERAL_GB[:SWAP_MB]]]' % spec)
    extra_specs = {}
    for item in filter(None, (i.strip() for i in tail.split(','))):
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise exception.InvalidConfiguration(
                reason='flavor %r: extra spec %r is not KEY=VALUE'
                       % (spec, item))
        extra_specs[key.strip()] = value.strip()
    values = {}
    for field, text in zip(_FIELDS, parts[1:]):
        try:
            values[field] = int(text)
        except ValueError:
            raise exception.InvalidConfiguration(
                reason='flavor %r: %s %r is not an integer'
                       % (spec, field, text)) from None
    try:
        return objects.Flavor(parts[0], extra_specs=extra_specs, **values)
    except exception.InvalidInput as exc:
        raise exception.InvalidConfiguration(
            reason='flavor %r: %s' % (spec, exc.reason)) from None


def get_flavors(conf: 'cfg.ConfigOpts') -> dict[str, objects.Flavor]:
    """Every flavor by name: the built-ins, then the configured ones.

    :raises InvalidConfiguration: for a bad or twice-defined flavor.
    """
    result = {f.name: f for f in BUILTIN}
    seen: set[str] = set()
    for spec in conf.flavor:
        flavor = parse_flavor(spec)
        if flavor.name in seen:
            raise exception.InvalidConfiguration(
                reason='flavor %s is defined more than once' % flavor.name)
        seen.add(flavor.name)
        result[flavor.name] = flavor
    return result


def get_flavor(conf: 'cfg.ConfigOpts', name: str) -> objects.Flavor:
    """Look a flavor up by name.

    :raises FlavorNotFound: listing the flavors there are.
    """
    available = get_flavors(conf)
    try:
        return available[name]
    except KeyError:
        raise exception.FlavorNotFound(
            flavor=name, available=', '.join(available)) from None
