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

import threading
import uuid as uuidlib

import pytest

from compute_driver import event as virtevent
from compute_driver import exception
from compute_driver import flavors
from compute_driver import loader
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures

STARTED = virtevent.EVENT_LIFECYCLE_STARTED
STOPPED = virtevent.EVENT_LIFECYCLE_STOPPED


@pytest.fixture
def laptop(monkeypatch):
    """Neither strict variable set, whatever the real environment says."""
    monkeypatch.delenv(fixtures.STRICT_ENV, raising=False)
    monkeypatch.delenv('CI', raising=False)
    return monkeypatch


# -- skip_or_fail -----------------------------------------------------------

def test_skip_or_fail_skips_on_a_laptop(laptop):
    with pytest.raises(pytest.skip.Exception, match='dockerd is not running'):
        fixtures.skip_or_fail('dockerd is not running')


@pytest.mark.parametrize('name,value', [
    (fixtures.STRICT_ENV, '1'), (fixtures.STRICT_ENV, 'true'),
    (fixtures.STRICT_ENV, 'YES'), ('CI', 'true'),
])
def test_skip_or_fail_fails_when_strict(laptop, name, value):
    laptop.setenv(name, value)
    assert fixtures.strict_mode() is True
    with pytest.raises(pytest.fail.Exception,
                       match='dockerd is not running.*COMPUTE_DRIVER_STRICT'):
        fixtures.skip_or_fail('dockerd is not running')


@pytest.mark.parametrize('name,value', [
    (fixtures.STRICT_ENV, '0'), (fixtures.STRICT_ENV, ''),
    (fixtures.STRICT_ENV, 'no'), ('CI', 'false'),
])
def test_false_values_are_not_strict(laptop, name, value):
    laptop.setenv(name, value)
    assert fixtures.strict_mode() is False
    with pytest.raises(pytest.skip.Exception):
        fixtures.skip_or_fail('libvirtd is not running')


# -- make_conf --------------------------------------------------------------

def test_make_conf_applies_overrides():
    conf = fixtures.make_conf('fake', {
        'DEFAULT': {'host': 'cdconf-host', 'flavor': ['x1.test:2:256']},
        'fake': {'vcpus': 8},
    })
    assert conf.compute_driver == 'fake'
    assert conf.host == 'cdconf-host'
    assert conf.fake.vcpus == 8
    assert flavors.get_flavor(conf, 'x1.test').memory_mb == 256


def test_make_conf_without_overrides_keeps_defaults():
    conf = fixtures.make_conf('fake')
    assert conf.compute_driver == 'fake'
    assert conf.fake.vcpus == 1000
    assert conf.flavor == []


@pytest.mark.parametrize('overrides,match', [
    ({'fake': {'vcpus': 0}}, r'\[fake\] vcpus = 0'),
    ({'fake': {'no_such_option': 1}}, r'\[fake\] no_such_option'),
    ({'no_such_group': {'vcpus': 1}}, r'\[no_such_group\] vcpus'),
    ({'DEFAULT': {'flavor': ['broken:x:1']}}, r'broken:x:1'),
])
def test_make_conf_refuses_bad_overrides(overrides, match):
    with pytest.raises(exception.InvalidConfiguration, match=match):
        fixtures.make_conf('fake', overrides)


# -- EventRecorder ----------------------------------------------------------

def _uuid():
    return str(uuidlib.uuid4())


def test_recorder_keeps_events_per_instance():
    recorder = fixtures.EventRecorder()
    mine, other = _uuid(), _uuid()
    recorder(virtevent.LifecycleEvent(mine, STARTED))
    recorder(virtevent.LifecycleEvent(other, STARTED))
    recorder(virtevent.InstanceEvent(mine))
    recorder(virtevent.LifecycleEvent(mine.upper(), STOPPED))
    assert recorder.transitions(mine) == [STARTED, STOPPED]
    assert recorder.transitions(other.upper()) == [STARTED]
    assert len(recorder.events) == 4


def test_recorder_since_ignores_earlier_events():
    recorder = fixtures.EventRecorder()
    uuid = _uuid()
    recorder(virtevent.LifecycleEvent(uuid, STARTED))
    mark = recorder.mark()
    recorder(virtevent.LifecycleEvent(uuid, STOPPED))
    assert recorder.transitions(uuid, since=mark) == [STOPPED]
    with pytest.raises(AssertionError):
        recorder.wait_for(uuid, STARTED, timeout=0, since=mark)


def test_wait_for_returns_an_event_from_another_thread():
    recorder = fixtures.EventRecorder()
    uuid = _uuid()
    sent = virtevent.LifecycleEvent(uuid, STOPPED)
    threading.Thread(target=recorder, args=(sent,)).start()
    assert recorder.wait_for(uuid, STOPPED, timeout=10) is sent


def test_wait_for_timeout_lists_what_arrived():
    recorder = fixtures.EventRecorder()
    uuid = _uuid()
    recorder(virtevent.LifecycleEvent(uuid, STARTED))
    recorder(virtevent.LifecycleEvent(_uuid(), STOPPED))
    with pytest.raises(AssertionError) as caught:
        recorder.wait_for(uuid, STOPPED, timeout=0)
    message = str(caught.value)
    assert 'no Stopped event for instance %s' % uuid in message
    assert 'received for it: Started (2 events in all)' in message


def test_wait_for_timeout_with_nothing_received():
    recorder = fixtures.EventRecorder()
    with pytest.raises(AssertionError, match='received for it: nothing'):
        recorder.wait_for(_uuid(), STARTED, timeout=0)


# -- with a backend ---------------------------------------------------------

@pytest.fixture
def backend():
    conf = fixtures.make_conf('fake')
    driver = loader.load_driver(conf)
    driver.init_host(conf.host)
    return driver


@pytest.fixture
def instance(backend):
    inst = objects.Instance.new('cdconf-fixture-test',
                                flavors.get_flavor(backend.conf, 'm1.nano'),
                                backend.conf.fake.images[0])
    backend.spawn(inst)
    yield inst
    backend.destroy(inst)


def test_recorder_receives_backend_events(backend, instance):
    recorder = fixtures.EventRecorder()
    backend.register_event_listener(recorder)
    backend.power_off(instance)
    event = recorder.wait_for(instance.uuid, STOPPED)
    assert event.get_instance_uuid() == instance.uuid


def test_wait_for_state_returns_info(backend, instance):
    info = fixtures.wait_for_state(backend, instance, power_state.RUNNING)
    assert info.state == power_state.RUNNING


def test_wait_for_state_timeout_names_last_state(backend, instance):
    with pytest.raises(AssertionError,
                       match='cdconf-fixture-test is running, not paused'):
        fixtures.wait_for_state(backend, instance, power_state.PAUSED,
                                timeout=0)


def test_wait_for_state_of_missing_instance(backend, instance):
    backend.destroy(instance)
    with pytest.raises(exception.InstanceNotFound):
        fixtures.wait_for_state(backend, instance, power_state.RUNNING)
