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

"""Helpers for tests of this library and of third-party backends.

Nothing here depends on a particular backend: build a configuration with
:func:`make_conf`, pass an :class:`EventRecorder` to
``register_event_listener``, and call :func:`skip_or_fail` when the
hypervisor a functional test needs is missing.
"""

import os
import shutil
import sys
import threading
import time
import typing

from oslo_config import cfg
import pytest

from compute_driver import conf as driver_conf
from compute_driver import driver as contract
from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import objects
from compute_driver import power_state

#: Set to a true value (``1``, ``true``, ``yes``) to turn "hypervisor
#: missing" skips into failures.
STRICT_ENV = 'COMPUTE_DRIVER_STRICT'

_TRUE_VALUES = frozenset(('1', 'true', 'yes', 'on'))


def _is_true(value: str | None) -> bool:
    return (value or '').strip().lower() in _TRUE_VALUES


def strict_mode() -> bool:
    """Whether a missing hypervisor must fail a test instead of skipping it.

    :returns: ``True`` when ``COMPUTE_DRIVER_STRICT`` or ``CI`` (which CI
        systems set to ``true``) holds a true value.
    """
    return _is_true(os.environ.get(STRICT_ENV)) or _is_true(
        os.environ.get('CI'))


def skip_or_fail(reason: str) -> typing.NoReturn:
    """Skip the current test on a laptop, fail it in CI.

    A developer without dockerd or libvirtd should still be able to run
    the functional tests of the other backends; CI has set the hypervisor
    up on purpose, so there its absence is a failure, not a skip.

    :param reason: why the test cannot run, e.g. ``dockerd is not
        running``.
    :raises pytest.skip.Exception: outside :func:`strict_mode`.
    :raises pytest.fail.Exception: in :func:`strict_mode`.
    """
    if strict_mode():
        pytest.fail('%s (%s or CI is set, so this fails instead of '
                    'skipping)' % (reason, STRICT_ENV))
    pytest.skip(reason)


def console_script(name: str = 'compute-driver') -> str:
    """The path of one of the project's console scripts, for CLI tests.

    The virtualenv running the tests may not be on ``PATH``, so the
    directory of the running interpreter is searched first.

    :raises pytest.fail.Exception: when the script is not installed.
    """
    path = os.pathsep.join([os.path.dirname(sys.executable),
                            os.environ.get('PATH', '')])
    found = shutil.which(name, path=path)
    if found is None:
        pytest.fail('the %s console script is not installed in this '
                    'environment or on PATH; run "pip install -e ." first'
                    % name)
    return found


def make_conf(backend_name: str,
              overrides: dict[str, dict[str, object]] | None = None
              ) -> cfg.ConfigOpts:
    """Build a configuration that reads no file, with some values set.

    :param backend_name: the entry-point name, stored as ``[DEFAULT]
        compute_driver``.
    :param overrides: ``{group: {option: value}}``; ``'DEFAULT'`` names
        the default group.
    :returns: a checked ``cfg.ConfigOpts``.
    :raises InvalidConfiguration: for an unknown option or a bad value.
    """
    # No files means no directories either: a test must not depend on
    # what /etc/compute-driver holds on the machine it runs on.
    conf = driver_conf.build_conf(config_files=[], validate=False,
                                  backend=backend_name)
    values: dict[str, dict[str, object]] = {
        'DEFAULT': {'compute_driver': backend_name}}
    for group, options in (overrides or {}).items():
        values.setdefault(group, {}).update(options)
    if ('glance' in values or values.get('image_service', {}).get(
            'backend') == 'glance'):
        # Registered by build_conf only when the files choose Glance.
        from compute_driver.image import conf as image_conf
        image_conf.register_glance_opts(conf)
    for group, options in values.items():
        for name, value in options.items():
            try:
                conf.set_override(
                    name, value, group=None if group == 'DEFAULT' else group)
            except (cfg.Error, ValueError) as exc:
                raise exception.InvalidConfiguration(
                    reason='[%s] %s = %r: %s' % (group, name, value, exc)
                ) from exc
    driver_conf.check_values(conf)
    return conf


class EventRecorder:
    """A listener for ``register_event_listener`` that keeps every event.

    Backends may emit from any thread, so every access holds one lock, and
    :meth:`wait_for` sleeps on a condition until the event it wants
    arrives.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._events: list[virtevent.Event] = []

    def __call__(self, event: virtevent.Event) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    @property
    def events(self) -> list[virtevent.Event]:
        """A copy of every event received, oldest first."""
        with self._cond:
            return list(self._events)

    def mark(self) -> int:
        """A position to pass as ``since`` to ignore earlier events.

        :returns: how many events have been received so far.
        """
        with self._cond:
            return len(self._events)

    def lifecycle(self, uuid: str,
                  since: int = 0) -> list[virtevent.LifecycleEvent]:
        """The lifecycle events of one instance, oldest first.

        :param uuid: the instance's uuid, in any case.
        :param since: a :meth:`mark`; events received before it are left
            out.
        """
        with self._cond:
            return self._lifecycle(uuid, since)

    def transitions(self, uuid: str, since: int = 0) -> list[int]:
        """The ``EVENT_LIFECYCLE_*`` values received for one instance.

        :param uuid: the instance's uuid, in any case.
        :param since: a :meth:`mark`; events received before it are left
            out.
        """
        return [e.transition for e in self.lifecycle(uuid, since)]

    def wait_for(self, uuid: str, transition: int, timeout: float = 5.0,
                 since: int = 0) -> virtevent.LifecycleEvent:
        """Block until a lifecycle event arrives and return it.

        :param uuid: the instance's uuid, in any case.
        :param transition: an ``EVENT_LIFECYCLE_*`` value.
        :param timeout: seconds to wait.
        :param since: a :meth:`mark`; earlier events do not count.
        :returns: the first matching event received since ``since``.
        :raises AssertionError: on timeout, listing what was received.
        """
        def match() -> virtevent.LifecycleEvent | None:
            for evt in self._lifecycle(uuid, since):
                if evt.transition == transition:
                    return evt
            return None

        with self._cond:
            found = self._cond.wait_for(match, timeout)
            if found is not None:
                return found
            seen = [e.get_name() for e in self._lifecycle(uuid, since)]
            total = len(self._events) - since
        raise AssertionError(
            'no %s event for instance %s within %ss; received for it: %s '
            '(%d events in all)' % (
                virtevent.NAMES.get(transition, transition), uuid, timeout,
                ', '.join(seen) or 'nothing', total))

    def _lifecycle(self, uuid: str,
                   since: int) -> list[virtevent.LifecycleEvent]:
        uuid = uuid.lower()
        return [e for e in self._events[since:]
                if isinstance(e, virtevent.LifecycleEvent) and
                e.uuid.lower() == uuid]


def wait_for_state(backend: contract.ComputeDriver,
                   instance: objects.Instance, state: int,
                   timeout: float = 30.0,
                   interval: float = 0.1) -> objects.InstanceInfo:
    """Poll ``get_info`` until the instance reaches a power state.

    Operations are synchronous, so tests of an operation check the state
    right after it returns; this is for things that settle on their own,
    such as a guest shutting itself down.

    :param backend: a backend on which ``init_host`` was called.
    :param instance: the instance to watch.
    :param state: a :mod:`compute_driver.power_state` value.
    :param timeout: seconds to keep polling.
    :param interval: seconds between two polls.
    :returns: the first ``InstanceInfo`` in ``state``.
    :raises AssertionError: on timeout, naming the last state seen.
    :raises InstanceNotFound: when the instance disappears.
    """
    deadline = time.monotonic() + timeout
    while True:
        info = backend.get_info(instance, use_cache=False)
        if info.state == state:
            return info
        if time.monotonic() >= deadline:
            raise AssertionError(
                'instance %s is %s, not %s, after %ss' % (
                    instance.name, power_state.name(info.state),
                    power_state.name(state), timeout))
        time.sleep(interval)
