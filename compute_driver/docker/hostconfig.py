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

"""A flavor and the ``[docker]`` options, as a container's host config.

Limits, enforced by the kernel's cgroups:

- memory: ``Memory`` is the flavor's memory; ``MemorySwap`` is memory plus
  the flavor's swap, so a flavor without swap gets none (Docker's default
  would allow as much swap again).
- CPU: a CFS quota of ``vcpus`` CPUs (``CpuQuota = vcpus * CpuPeriod``).
  A quota is a ceiling, as a VM's vCPU count is; CPU shares only weigh
  containers against each other under contention and cap nothing. The
  quota is written as period and quota rather than ``NanoCpus`` because
  Docker's update API (live resize) changes period and quota and refuses
  to mix the two forms, and because ``NanoCpus`` cannot exceed the host's
  CPU count while a flavor may.
- processes: ``PidsLimit`` from the flavor's ``quota:pids_limit`` extra
  spec, else ``[docker] pids_limit``.
- disk: the flavor's root_gb is counted in the host's resources but not
  enforced; overlay2 can only cap a container's layer on XFS with project
  quotas.

Security, since containers share the host kernel and rely on MAC,
capabilities and cgroups for isolation: never privileged unless
``[docker] allow_privileged`` is set and the flavor asks with
``docker:privileged=true``; every capability dropped but ``[docker]
capabilities``; ``no-new-privileges``; optional read-only root, AppArmor
profile, SELinux labels and seccomp profile.
"""

import dataclasses
import json
import typing

from compute_driver import exception
from compute_driver import objects

if typing.TYPE_CHECKING:  # pragma: no cover
    from oslo_config import cfg

#: Docker refuses memory limits below this (6 MiB).
MIN_MEMORY_MB = 6
#: The CFS period, in microseconds: the kernel's and Docker's default.
CPU_PERIOD = 100000
MIB = 1024 * 1024

EXTRA_PRIVILEGED = 'docker:privileged'
EXTRA_PIDS_LIMIT = 'quota:pids_limit'

_TRUE = frozenset(('1', 'true', 'yes', 'on'))


@dataclasses.dataclass(frozen=True)
class Limits:
    """The resource limits of one container, in the contract's units."""

    vcpus: int
    memory_mb: int
    swap_mb: int = 0

    def update_args(self) -> dict[str, int]:
        """Keyword arguments of ``APIClient.update_container``."""
        return {
            'cpu_period': CPU_PERIOD,
            'cpu_quota': self.vcpus * CPU_PERIOD,
            'mem_limit': self.memory_mb * MIB,
            'memswap_limit': (self.memory_mb + self.swap_mb) * MIB,
        }

    @classmethod
    def of_flavor(cls, flavor: objects.Flavor) -> 'Limits':
        return cls(vcpus=flavor.vcpus, memory_mb=flavor.memory_mb,
                   swap_mb=flavor.swap)


def current_limits(host_config: dict) -> tuple[int | None, int | None]:
    """``(vcpus, memory_mb)`` a container has now, from its HostConfig.

    :returns: ``None`` for a limit that is not set.
    """
    period = host_config.get('CpuPeriod') or CPU_PERIOD
    quota = host_config.get('CpuQuota') or 0
    nano = host_config.get('NanoCpus') or 0
    vcpus: int | None = None
    if quota > 0:
        vcpus = -(-quota // period)
    elif nano > 0:
        vcpus = -(-nano // 10 ** 9)
    memory = host_config.get('Memory') or 0
    return vcpus, (memory // MIB if memory > 0 else None)


def check_memory(memory_mb: int, what: str) -> None:
    """Refuse a memory size Docker would refuse, in words.

    :raises InvalidInput: below :data:`MIN_MEMORY_MB`.
    """
    if memory_mb < MIN_MEMORY_MB:
        raise exception.InvalidInput(
            reason='%s has %d MiB of memory; Docker needs at least %d MiB '
                   'per container' % (what, memory_mb, MIN_MEMORY_MB))


def _pids_limit(flavor: objects.Flavor, default: int) -> int:
    text = flavor.extra_specs.get(EXTRA_PIDS_LIMIT)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise exception.InvalidInput(
            reason='flavor %s: %s must be an integer >= 0, got %r'
                   % (flavor.name, EXTRA_PIDS_LIMIT, text))
    return value


def security_options(group: typing.Any) -> list[str]:
    """``SecurityOpt`` entries from the ``[docker]`` options.

    :raises InvalidConfiguration: for an unreadable seccomp profile.
    """
    options = []
    if group.no_new_privileges:
        options.append('no-new-privileges')
    if group.apparmor_profile:
        options.append('apparmor=%s' % group.apparmor_profile)
    options.extend('label=%s' % label for label in group.selinux_labels)
    profile = group.seccomp_profile
    if profile == 'unconfined':
        options.append('seccomp=unconfined')
    elif profile:
        # The daemon wants the profile's content, not a path on its host.
        try:
            with open(profile, encoding='utf-8') as f:
                content = json.load(f)
        except (OSError, ValueError) as exc:
            raise exception.InvalidConfiguration(
                reason='[docker] seccomp_profile %s: %s' % (profile, exc)
            ) from None
        options.append('seccomp=%s' % json.dumps(content,
                                                 separators=(',', ':')))
    return options


def network_mode(group: typing.Any) -> str:
    """``[docker] network_mode``, once the operator's allowances admit it.

    :raises InvalidConfiguration: for ``host`` without ``[docker]
        allow_host_network``.
    """
    network = group.network_mode
    if network == 'host' and not group.allow_host_network:
        raise exception.InvalidConfiguration(
            reason='[docker] network_mode = host needs [docker] '
                   'allow_host_network = true')
    return str(network)


def check_flavor(group: typing.Any, flavor: objects.Flavor) -> bool:
    """Refuse a flavor Docker cannot run or the operator does not allow.

    :param group: the ``[docker]`` options.
    :returns: whether the flavor asks for a privileged container.
    :raises InvalidInput: for too little memory, a privileged container
        ``[docker] allow_privileged`` does not allow, or a bad
        ``quota:pids_limit``.
    """
    check_memory(flavor.memory_mb, 'flavor %s' % flavor.name)
    privileged = (flavor.extra_specs.get(EXTRA_PRIVILEGED, '').lower()
                  in _TRUE)
    if privileged and not group.allow_privileged:
        raise exception.InvalidInput(
            reason='flavor %s asks for a privileged container '
                   '(%s=true), which [docker] allow_privileged does not '
                   'allow' % (flavor.name, EXTRA_PRIVILEGED))
    _pids_limit(flavor, group.pids_limit)
    return privileged


def host_config_args(conf: 'cfg.ConfigOpts',
                     flavor: objects.Flavor) -> dict[str, typing.Any]:
    """Keyword arguments of ``APIClient.create_host_config``.

    :raises InvalidInput: for a flavor Docker cannot run or the operator
        does not allow (privileged, too little memory, bad extra spec).
    :raises InvalidConfiguration: for an unusable option.
    """
    group = conf.docker
    privileged = check_flavor(group, flavor)
    network = network_mode(group)
    limits = Limits.of_flavor(flavor).update_args()
    args: dict[str, typing.Any] = {
        'cpu_period': limits['cpu_period'],
        'cpu_quota': limits['cpu_quota'],
        'mem_limit': limits['mem_limit'],
        'memswap_limit': limits['memswap_limit'],
        'network_mode': network,
        'privileged': privileged,
        'security_opt': security_options(group),
        'read_only': group.read_only_root,
        # Nova decides when an instance runs; dockerd must not restart it
        # behind the driver's back.
        'restart_policy': {'Name': 'no'},
    }
    if not privileged:
        args['cap_drop'] = ['ALL']
        args['cap_add'] = [c.upper() for c in group.capabilities]
    pids = _pids_limit(flavor, group.pids_limit)
    if pids:
        args['pids_limit'] = pids
    if group.read_only_root:
        args['tmpfs'] = {'/tmp': 'rw,nosuid,nodev', '/run': 'rw,nosuid'}
    return args
