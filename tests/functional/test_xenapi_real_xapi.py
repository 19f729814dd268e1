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

"""The xenapi backend against the simulator behaving as real XAPI does:
stock templates, guests without tools, slow and interrupted spawns,
ceilings and error messages."""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from compute_driver import exception
from compute_driver import flavors
from compute_driver import leftovers
from compute_driver import loader
from compute_driver import objects
from compute_driver import power_state
from compute_driver.testing import fixtures
from compute_driver.testing import xapi_simulator
from compute_driver.testing.xapi_simulator import fixture as sim_fixture
from compute_driver.testing.xapi_simulator.fixture import (  # noqa: F401
    xapi_simulator as simulator)
from compute_driver.testing.xapi_simulator import seed
from compute_driver.xenapi import connection
from compute_driver.xenapi import driver as xdriver
from compute_driver.xenapi import mapping

IMAGE = 'Debian_Bookworm_12'
#: A stock template whose guests run no agent and no PV drivers.
NO_TOOLS = 'Other_install_media'


@pytest.fixture
def made():
    backends = []
    yield backends
    for backend in backends:
        backend.cleanup_host('test')


@pytest.fixture
def make_driver(made):
    def make(sim, **options):
        conf = fixtures.make_conf('xenapi', {
            'xenapi': sim_fixture.xenapi_options(sim, **options)})
        backend = loader.load_driver(conf)
        made.append(backend)
        backend.init_host(conf.host)
        return backend
    return make


def _instance(name='vm1', flavor='m1.nano', image=IMAGE):
    conf = fixtures.make_conf('fake')
    return objects.Instance.new(name, flavors.get_flavor(conf, flavor),
                                image)


def _spawn(backend, instance, power_on=True):
    backend.spawn(instance, power_on=power_on)


def _leftovers(sim):
    """Everything a spawn may create: VMs (no templates), VDIs, VBDs, VIFs.

    Templates count when a spawn named them: a half-built VM is one.
    """
    vms = {ref for ref, rec in sim.objects('VM').items()
           if not rec['is_control_domain'] and (
               not rec['is_a_template'] or
               not rec['is_default_template'])}
    return {'VM': vms, **{cls: set(sim.objects(cls))
                          for cls in ('VDI', 'VBD', 'VIF')}}


def _vm_of(sim, instance):
    [(ref, record)] = [
        (ref, rec) for ref, rec in sim.objects('VM').items()
        if rec['other_config'].get('compute_driver_uuid') == instance.uuid]
    return ref, record


# -- 1. stock templates ----------------------------------------------------

def test_spawn_from_a_stock_template_fills_in_the_default_sr(
        simulator, make_driver):  # noqa: F811
    # The simulator refuses the stock template's raw provision...
    template = [r for r in simulator.objects('VM').values()
                if r['name_label'] == 'Debian Bookworm 12'][0]
    assert 'sr=""' in template['other_config']['disks']
    # ...which the backend spawns from by naming the SR.
    backend = make_driver(simulator)
    instance = _instance()
    _spawn(backend, instance)
    ref, record = _vm_of(simulator, instance)
    assert record['is_a_template'] is False
    [vbd] = record['VBDs']
    vdi = simulator.objects('VBD')[vbd]['VDI']
    [pool] = simulator.objects('pool').values()
    assert simulator.objects('VDI')[vdi]['SR'] == pool['default_SR']


def test_spawn_uses_the_configured_sr(simulator, make_driver):  # noqa
    second = simulator.store.create('SR', {
        'name_label': 'Fast storage', 'physical_size': str(100 * 1024 ** 3)})
    backend = make_driver(simulator, sr_name='Fast storage')
    instance = _instance()
    _spawn(backend, instance, power_on=False)
    _, record = _vm_of(simulator, instance)
    vdi = simulator.objects('VBD')[record['VBDs'][0]]['VDI']
    assert simulator.objects('VDI')[vdi]['SR'] == second


def test_an_unknown_sr_names_the_option(simulator, make_driver):  # noqa
    backend = make_driver(simulator, sr_name='nowhere')
    before = _leftovers(simulator)
    with pytest.raises(exception.InvalidConfiguration) as info:
        _spawn(backend, _instance())
    assert '[xenapi] sr_name' in str(info.value)
    assert "'nowhere'" in str(info.value)
    assert _leftovers(simulator) == before


# -- 2. guests without tools -----------------------------------------------

def test_guest_without_tools_falls_back_or_refuses(
        simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    instance = _instance(image=NO_TOOLS)
    _spawn(backend, instance)
    ref, record = _vm_of(simulator, instance)
    assert record['guest_metrics'] == xapi_simulator.NULL_REF
    assert backend.supports('suspend')
    assert not backend.supports('suspend', instance)
    assert not backend.supports('live_resize', instance)

    with pytest.raises(exception.GuestFeatureMissing) as info:
        backend.suspend(instance)
    assert 'feature-suspend' in str(info.value)
    with pytest.raises(exception.GuestFeatureMissing) as info:
        backend.live_resize(instance, vcpus=1)
    assert 'feature-vcpu-hotplug' in str(info.value)
    assert simulator.calls['VM.set_VCPUs_number_live'] == 0
    # Memory needs no guest feature.
    backend.live_resize(instance, memory_mb=32)

    # A soft reboot reboots hard, as the libvirt backend does.
    backend.reboot(instance, 'SOFT')
    assert simulator.objects('VM')[ref]['power_state'] == 'Running'
    assert simulator.calls['VM.clean_reboot'] == 0
    assert simulator.calls['VM.hard_reboot'] == 1
    # A clean power off is not even tried: it would time out.
    backend.power_off(instance, timeout=60, retry_interval=1)
    assert simulator.objects('VM')[ref]['power_state'] == 'Halted'
    assert simulator.calls['VM.clean_shutdown'] == 0


def test_guest_with_tools_shuts_down_cleanly(simulator,  # noqa: F811
                                             make_driver):
    backend = make_driver(simulator)
    instance = _instance()
    _spawn(backend, instance)
    assert backend.supports('suspend', instance)
    backend.reboot(instance, 'SOFT')
    assert simulator.calls['VM.clean_reboot'] == 1
    backend.power_off(instance, timeout=60, retry_interval=1)
    assert simulator.calls['VM.clean_shutdown'] == 1
    assert simulator.calls['VM.hard_shutdown'] == 0


def test_a_guest_ignoring_a_soft_reboot_is_rebooted_hard(
        simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator, clean_shutdown_timeout=1)
    instance = _instance()
    _spawn(backend, instance)
    hold = simulator.hold('VM.clean_reboot')
    backend.reboot(instance, 'SOFT')
    assert simulator.calls['VM.hard_reboot'] == 1
    # The request was withdrawn, not left pending in XAPI.
    assert hold.finished.wait(30)
    assert simulator.calls['task.cancel'] == 1
    ref, record = _vm_of(simulator, instance)
    assert record['power_state'] == 'Running'
    assert record['current_operations'] == {}


# -- 3. slow clones ----------------------------------------------------------

def test_a_slow_clone_is_cancelled_and_leaves_nothing(simulator,  # noqa
                                                      make_driver):
    backend = make_driver(simulator, call_timeout=2)
    before = _leftovers(simulator)
    hold = simulator.hold('VM.clone')
    with pytest.raises(exception.HypervisorUnavailable) as info:
        _spawn(backend, _instance())
    assert '[xenapi] call_timeout' in str(info.value)
    hold.release()
    assert hold.finished.wait(30)
    assert simulator.calls['task.cancel'] == 1
    assert _leftovers(simulator) == before
    assert not [m for m in backend.list_images()
                if mapping.SPAWN_PREFIX in m.properties.get('name_label', '')]


def test_a_clone_finishing_after_the_spawn_gave_up_is_swept(
        simulator, make_driver, caplog):  # noqa: F811
    backend = make_driver(simulator, call_timeout=2)
    before = _leftovers(simulator)
    hold = simulator.hold('VM.clone', cancellable=False)
    instance = _instance()
    with pytest.raises(exception.HypervisorUnavailable):
        _spawn(backend, instance)
    hold.release()
    assert hold.finished.wait(30)
    # The late clone is named for the spawn, never offered as an image...
    [late] = [r for r in simulator.objects('VM').values()
              if r['name_label'].startswith(mapping.SPAWN_PREFIX)]
    assert instance.uuid in late['name_label']
    assert IMAGE in [m.name for m in backend.list_images()]
    assert not [m for m in backend.list_images()
                if mapping.SPAWN_PREFIX in m.properties.get('name_label', '')]
    # ...and the next init_host removes it, saying so.
    with caplog.at_level(logging.WARNING):
        make_driver(simulator)
    assert _leftovers(simulator) == before
    assert late['uuid'] in caplog.text


# -- 4. interrupted spawns ---------------------------------------------------

def test_ctrl_c_during_boot_leaves_nothing(simulator, make_driver):  # noqa
    backend = make_driver(simulator)
    before = _leftovers(simulator)
    hold = simulator.hold('VM.start')

    def interrupt():
        # Ctrl-C comes while the spawn waits for its boot.
        assert hold.reached.wait(30)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _spawn(backend, _instance())
    finally:
        interrupter.join()
    # The boot was cancelled in XAPI rather than left to run.
    assert hold.finished.wait(30)
    assert simulator.calls['task.cancel'] == 1
    assert _leftovers(simulator) == before


def test_a_double_fault_names_the_leftovers_and_init_host_sweeps_them(
        simulator, make_driver, caplog):  # noqa: F811
    backend = make_driver(simulator)
    before = _leftovers(simulator)
    simulator.fail('VM.start', 'INTERNAL_ERROR', 'boot failed')
    simulator.fail('VM.destroy', 'INTERNAL_ERROR', 'xapi is unwell')
    instance = _instance()
    with caplog.at_level(logging.INFO):
        with pytest.raises(exception.BackendError):
            _spawn(backend, instance)
    ref, record = _vm_of(simulator, instance)
    [vdi] = [simulator.objects('VDI')[simulator.objects('VBD')[v]['VDI']]
             for v in record['VBDs']]
    # The log names the VM and the disk that stay, by uuid.
    assert record['uuid'] in caplog.text and vdi['uuid'] in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        make_driver(simulator)
    assert _leftovers(simulator) == before
    assert record['uuid'] in caplog.text


def test_xapi_dying_during_provision_is_swept_later(simulator,  # noqa
                                                    make_driver):
    backend = make_driver(simulator)
    before = _leftovers(simulator)
    hold = simulator.hold('VM.provision')
    errors = []

    def spawn():
        try:
            _spawn(backend, _instance())
        except exception.ComputeDriverError as exc:
            errors.append(exc)

    spawner = threading.Thread(target=spawn)
    spawner.start()
    assert hold.reached.wait(30)
    simulator.go_down()
    spawner.join(60)
    assert [type(e) for e in errors] == [exception.HypervisorUnavailable]
    simulator.go_up()
    hold.release()
    assert hold.finished.wait(30)
    assert _leftovers(simulator) != before
    make_driver(simulator)
    assert _leftovers(simulator) == before


def test_leftovers_of_a_running_spawn_elsewhere_are_left(simulator,  # noqa
                                                         make_driver):
    [template] = [ref for ref, rec in simulator.objects('VM').items()
                  if rec['name_label'] == 'Debian Bookworm 12']
    with simulator.store.lock:
        simulator.store.create('VM', {
            'name_label': 'elsewhere', 'other_config': {
                'compute_driver_spawning': 'another-machine:1',
                'compute_driver_uuid': 'x'}})
    make_driver(simulator)
    assert 'elsewhere' in [r['name_label']
                           for r in simulator.objects('VM').values()]
    assert template in simulator.objects('VM')


# -- 5. live resize ceiling --------------------------------------------------

def test_live_resize_above_the_flavor_is_refused_before_xapi(
        simulator, make_driver):  # noqa: F811
    backend = make_driver(simulator)
    instance = _instance()
    _spawn(backend, instance)
    bigger = objects.Instance.from_dict(dict(
        instance.to_dict(), flavor=dict(instance.flavor.to_dict(), vcpus=4)))
    with pytest.raises(exception.InvalidInput) as info:
        backend.live_resize(bigger, vcpus=2)
    # The flavor spawn stored, not the caller's copy, is the ceiling.
    assert 'from 1 to 1 (flavor m1.nano)' in str(info.value)
    assert simulator.calls['VM.set_VCPUs_number_live'] == 0


# -- 6. one-line errors ------------------------------------------------------

def test_sr_full_gives_the_numbers_and_the_option(simulator,  # noqa
                                                  make_driver):
    backend = make_driver(simulator)
    simulator.fail('VM.provision', 'SR_FULL', str(10 * 1024 ** 3),
                   str(2 * 1024 ** 3))
    with pytest.raises(exception.InsufficientResources) as info:
        _spawn(backend, _instance())
    message = str(info.value)
    assert '?' not in message and '\n' not in message
    assert '10.0 GiB requested' in message
    assert '[xenapi] sr_name' in message and 'Local storage' in message


@pytest.mark.parametrize('content', [None, 'not a certificate\n'])
def test_a_bad_ca_file_names_the_option_and_the_file(simulator, tmp_path,  # noqa
                                                     content):
    path = tmp_path / 'ca.pem'
    if content is not None:
        path.write_text(content)
    conf = fixtures.make_conf('xenapi', {'xenapi': sim_fixture.xenapi_options(
        simulator, ca_file=str(path))})
    with pytest.raises(exception.InvalidConfiguration) as info:
        loader.load_driver(conf)
    message = str(info.value)
    assert '[xenapi] ca_file' in message and str(path) in message
    assert '\n' not in message


def test_a_half_built_default_template_clone_is_removed(
        simulator, make_driver, monkeypatch):  # noqa: F811
    # Should XAPI keep a stock template's default_template mark on its
    # clone, the clone could not be destroyed while still a template.
    backend = make_driver(simulator)
    before = _leftovers(simulator)
    new_vm = simulator.api._new_vm

    def keep_the_mark(source_ref, source, **fields):
        ref = new_vm(source_ref, source, **fields)
        simulator.store.get('VM', ref)['other_config'][
            'default_template'] = 'true'
        return ref

    monkeypatch.setattr(simulator.api, '_new_vm', keep_the_mark)
    simulator.fail('VM.set_other_config', 'INTERNAL_ERROR', 'injected')
    with pytest.raises(exception.BackendError):
        _spawn(backend, _instance())
    assert _leftovers(simulator) == before


def _spawn_calls(sim, backend, name):
    """The XAPI calls of one spawn, by method.

    The event thread's event.from polls are left out: it makes them
    whether or not anything is spawned; so are logins, which each pooled
    session makes once, whichever call first needs it.
    """
    before = dict(sim.calls)
    _spawn(backend, _instance(name))
    return {method: count - before.get(method, 0)
            for method, count in sim.calls.items()
            if method not in ('event.from', 'session.login_with_password')
            and count != before.get(method, 0)}


def test_calls_per_spawn_are_few_and_constant(simulator,  # noqa: F811
                                              make_driver):
    """A spawn makes at most 12 XAPI calls, as many with 50 VMs as none.

    7 once the event thread knows the image, as here, with the VIF of
    ``network_name``: the clone, provision and start, each one call
    (XAPI runs it under a task the backend cancels should it give up,
    with nothing to follow or destroy), then set_other_config,
    set_memory_limits, VIF.create and the final set_name_label. Nothing
    lists VMs, pools or hosts.
    """
    backend = make_driver(simulator, network_name=seed.DEFAULT_SEED['network'])
    alone = _spawn_calls(simulator, backend, 'counted-alone')
    for number in range(49):
        _spawn(backend, _instance('existing-%d' % number), power_on=False)
    among_50 = _spawn_calls(simulator, backend, 'counted-among-50')
    assert alone == among_50
    assert alone.get('task.get_record', 0) == 0, alone
    assert not [m for m in alone if m.startswith(('task.', 'Async.'))], \
        alone
    assert alone['VIF.create'] == 1, alone
    assert not [m for m in alone if '.get_all' in m], alone
    assert sum(alone.values()) <= 12, alone


def test_one_session_is_enough_for_a_spawn(
        simulator, make_driver, monkeypatch):  # noqa: F811
    # The calls a spawn makes side by side then take turns. The local
    # simulator answers so quickly that the backend would make them one
    # after another: they are made side by side however quick it is.
    monkeypatch.setattr(connection, 'SIDE_BY_SIDE_ROUND_TRIP', 0.0)
    backend = make_driver(simulator, concurrent_sessions=1,
                          network_name=seed.DEFAULT_SEED['network'])
    instance = _instance()
    _spawn(backend, instance)
    ref, record = _vm_of(simulator, instance)
    assert record['power_state'] == 'Running'
    assert record['name_label'] == instance.name
    assert len(record['VIFs']) == 1
    assert not simulator.objects('task')
    assert backend._xapi.side_by_side
    assert backend._xapi._executor is not None
    backend.destroy(instance)
    assert instance.uuid not in backend.list_instance_uuids()


def test_a_quick_xapi_gets_a_spawns_calls_one_after_another(
        simulator, make_driver, monkeypatch):  # noqa: F811
    # However long the simulator takes on a busy machine, it counts as
    # quick.
    monkeypatch.setattr(connection, 'SIDE_BY_SIDE_ROUND_TRIP', 3600.0)
    backend = make_driver(simulator,
                          network_name=seed.DEFAULT_SEED['network'])
    instance = _instance()
    _spawn(backend, instance)
    # No thread was started for them.
    assert not backend._xapi.side_by_side
    assert backend._xapi._executor is None
    ref, record = _vm_of(simulator, instance)
    assert record['power_state'] == 'Running'
    assert record['name_label'] == instance.name
    assert len(record['VIFs']) == 1
    backend.destroy(instance)
    assert instance.uuid not in backend.list_instance_uuids()


def test_a_held_boot_does_not_hold_up_other_calls(
        simulator, make_driver):  # noqa: F811
    # With one session, a boot XAPI takes its time over must not make
    # a power state read wait for it: long operations have sessions of
    # their own.
    backend = make_driver(simulator, concurrent_sessions=1,
                          network_name=seed.DEFAULT_SEED['network'])
    running = _instance('vm-running')
    _spawn(backend, running)
    hold = simulator.hold('VM.start')
    booting = _instance('vm-booting')
    errors = []

    def spawn():
        try:
            _spawn(backend, booting)
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=spawn)
    thread.start()
    try:
        assert hold.reached.wait(30), errors
        assert backend.get_info(running).state == power_state.RUNNING
        assert running.uuid in backend.list_instance_uuids()
    finally:
        hold.release()
        thread.join(60)
    assert not thread.is_alive() and errors == []
    assert backend.get_info(booting).state == power_state.RUNNING
    for instance in (running, booting):
        backend.destroy(instance)


# -- 7. cleanup_leftovers ----------------------------------------------------

def _dead_owner(legacy=False):
    """The spawn owner of a process of this machine that has ended.

    :param legacy: as earlier versions named it, ``<machine>:<pid>``.
    """
    if legacy:
        child = subprocess.Popen(['true'])
        child.wait()
        return '%s:%d' % (socket.gethostname(), child.pid)
    return subprocess.run(
        [sys.executable, '-c',
         'from compute_driver import leftovers; '
         'print(leftovers.owner_label())'],
        check=True, capture_output=True, text=True).stdout.strip()


def _half_built(sim, owner, uuid='9d4c1c1e-0000-4000-8000-000000000001'):
    """What a spawn of ``owner`` interrupted after provisioning leaves."""
    return sim_fixture.provisioned_clone(sim, mapping.spawn_name(owner, uuid))


def _sweepless_driver(make_driver, sim, **options):
    """A driver whose init_host leaves the leftovers, as cleanup does."""
    real = xdriver.XenAPIDriver.sweep_leftovers_at_init
    xdriver.XenAPIDriver.sweep_leftovers_at_init = False
    try:
        return make_driver(sim, **options)
    finally:
        xdriver.XenAPIDriver.sweep_leftovers_at_init = real


@pytest.mark.parametrize('legacy', [False, True])
def test_cleanup_leftovers_lists_then_removes_an_interrupted_spawn(
        simulator, make_driver, legacy):  # noqa: F811
    backend = _sweepless_driver(make_driver, simulator)
    before = _leftovers(simulator)
    owner = _dead_owner(legacy)
    uuid = _half_built(simulator, owner)
    assert _leftovers(simulator) != before
    [found] = backend.cleanup_leftovers(dry_run=True)
    assert (found.backend, found.removed, found.error) == ('xenapi', False,
                                                           '')
    assert uuid in found.what and owner in found.reason
    assert _leftovers(simulator) != before
    [found] = backend.cleanup_leftovers()
    assert found.removed and uuid in found.what
    # Its disks went with it, and nothing else did.
    assert _leftovers(simulator) == before
    assert backend.cleanup_leftovers() == []


def test_cleanup_leftovers_takes_what_a_failed_rollback_left(
        simulator, make_driver):  # noqa: F811
    backend = _sweepless_driver(make_driver, simulator)
    before = _leftovers(simulator)
    simulator.fail('VM.start', 'INTERNAL_ERROR', 'boot failed')
    simulator.fail('VM.destroy', 'INTERNAL_ERROR', 'xapi is unwell')
    with pytest.raises(exception.BackendError):
        _spawn(backend, _instance())
    [found] = backend.cleanup_leftovers(dry_run=True)
    assert found.reason == 'its spawn failed and could not remove it'
    [found] = backend.cleanup_leftovers()
    assert found.removed
    assert _leftovers(simulator) == before


def test_cleanup_leftovers_reports_what_it_could_not_remove(
        simulator, make_driver):  # noqa: F811
    backend = _sweepless_driver(make_driver, simulator)
    owner = _dead_owner()
    uuid = _half_built(simulator, owner)
    simulator.fail('VM.destroy', 'INTERNAL_ERROR', 'xapi is unwell')
    [found] = backend.cleanup_leftovers()
    assert not found.removed and 'xapi is unwell' in found.error
    assert uuid in [r['uuid'] for r in simulator.objects('VM').values()]
    [found] = backend.cleanup_leftovers()
    assert found.removed


def test_cleanup_leftovers_leaves_spawns_that_may_still_run(
        simulator, make_driver):  # noqa: F811
    backend = _sweepless_driver(make_driver, simulator)
    before = _leftovers(simulator)
    # Another machine's (or boot's) spawn, and one of a live process of
    # this one, in both forms.
    _half_built(simulator, 'another-machine:1')
    _half_built(simulator, '%s:%d' % (socket.gethostname(), os.getppid()),
                uuid='9d4c1c1e-0000-4000-8000-000000000002')
    boot, pid, start = leftovers.owner_label().split('/')
    _half_built(simulator, 'another-boot/%s/%s' % (pid, start),
                uuid='9d4c1c1e-0000-4000-8000-000000000003')
    parent = os.getppid()
    _half_built(simulator, '%s/%d/%s' % (boot, parent,
                                         leftovers._start_time(parent)),
                uuid='9d4c1c1e-0000-4000-8000-000000000004')
    after = _leftovers(simulator)
    assert backend.cleanup_leftovers(dry_run=True) == []
    assert backend.cleanup_leftovers() == []
    assert _leftovers(simulator) == after != before
