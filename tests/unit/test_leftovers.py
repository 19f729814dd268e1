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

"""Markers, owner labels and sweeps (compute_driver.leftovers), and how
the docker backend decides what is a leftover."""

import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from compute_driver.docker import mapping
from compute_driver import exception
from compute_driver import leftovers
from compute_driver import loader
from compute_driver import objects
from compute_driver.testing import fixtures


def test_marker_is_live_while_held_and_stale_after(tmp_path):
    path = str(tmp_path / 'x.spawning')
    marker = leftovers.Marker.claim(path, 'vm1')
    with open(path, encoding='utf-8') as handle:
        assert handle.read() == 'vm1'
    with leftovers.probe(path) as stale:
        assert stale is False
    with pytest.raises(FileExistsError):
        leftovers.Marker.claim(path, 'vm2')
    marker.abandon()
    with leftovers.probe(path) as stale:
        assert stale is True
    # No temporary file stays beside it.
    assert os.listdir(tmp_path) == ['x.spawning']


def test_released_marker_is_gone(tmp_path):
    path = str(tmp_path / 'x.spawning')
    leftovers.Marker.claim(path, 'vm1').release()
    assert os.listdir(tmp_path) == []
    with leftovers.probe(path) as stale:
        assert stale is False


def _hold_until_killed(path, ready):
    leftovers.Marker.claim(path, 'child')
    ready.set()
    time.sleep(3600)


def test_marker_of_a_killed_process_is_stale(tmp_path):
    path = str(tmp_path / 'x.spawning')
    ready = multiprocessing.get_context('fork').Event()
    child = multiprocessing.get_context('fork').Process(
        target=_hold_until_killed, args=(path, ready))
    child.start()
    try:
        assert ready.wait(60)
        with leftovers.probe(path) as stale:
            assert stale is False
    finally:
        child.kill()
        child.join()
    with leftovers.probe(path) as stale:
        assert stale is True


def test_owner_label_names_this_process():
    label = leftovers.owner_label()
    assert label.split('/')[1] == str(os.getpid())
    assert leftovers.owner_gone(label) is False


def test_owner_gone_after_exit():
    child = subprocess.run(
        [sys.executable, '-c',
         'from compute_driver import leftovers; '
         'print(leftovers.owner_label())'],
        capture_output=True, text=True, check=True)
    assert leftovers.owner_gone(child.stdout.strip()) is True


@pytest.mark.parametrize('label', [
    '', 'garbage', 'other-boot/1/1', '%s/notapid/1'])
def test_owner_of_another_boot_or_damaged_is_unknown(label):
    if '%s' in label:
        label = label % leftovers.owner_label().split('/')[0]
    assert leftovers.owner_gone(label) is None


def test_sweep_reports_and_survives_failures():
    removed = []

    def fail():
        raise OSError(13, 'Permission denied')

    found = leftovers.sweep('demo', [
        leftovers.Candidate('a', 'why a', lambda: removed.append('a')),
        leftovers.Candidate('b', 'why b', fail),
        leftovers.Candidate('c', 'why c', lambda: removed.append('c'))],
        dry_run=False)
    assert removed == ['a', 'c']
    assert [(f.what, f.removed, bool(f.error)) for f in found] == [
        ('a', True, False), ('b', False, True), ('c', True, False)]
    assert 'Permission denied' in found[1].error
    assert leftovers.sweep('demo', [
        leftovers.Candidate('a', 'why', lambda: removed.append('x'))],
        dry_run=True) == [objects.Leftover('demo', 'a', 'why')]
    assert 'x' not in removed


def test_partial_downloads_of_an_image_cache(tmp_path):
    from compute_driver.image import cache as image_cache
    path = tmp_path / 'cache'
    assert list(leftovers.partial_downloads(str(path))) == []
    path.mkdir()
    (path / 'img-a').write_bytes(b'whole')
    assert list(leftovers.partial_downloads(str(path))) == []
    stale = path / '.img-a.part-0123456789ab'
    live = path / '.img-b.part-ba9876543210'
    for partial in (stale, live):
        partial.write_bytes(b'partial')
    cache = image_cache.ImageCache(str(path))
    # The lock of a download under way, held by another open file.
    with cache.lock('img-b'):
        found = leftovers.sweep(
            'demo', leftovers.partial_downloads(str(path)), dry_run=False)
    assert found == [objects.Leftover(
        'demo', 'file %s' % stale, 'a partial image download',
        removed=True)]
    assert sorted(os.listdir(path)) == ['.img-b.part-ba9876543210', '.locks',
                                        'img-a']


def test_partial_downloads_of_a_cache_this_user_cannot_use(
        tmp_path, monkeypatch):
    # Root's cache, seen by another user's command: nothing to sweep, and
    # no error that would stop the command.
    from compute_driver.image import cache as image_cache
    path = tmp_path / 'cache'
    path.mkdir()
    (path / '.img-a.part-0123456789ab').write_bytes(b'partial')

    def refused(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(image_cache.ImageCache, 'stale_partial_downloads',
                        refused)
    assert list(leftovers.partial_downloads(str(path))) == []
    monkeypatch.setattr(os, 'listdir', refused)
    assert list(leftovers.partial_downloads(str(path))) == []


def test_contract_default_finds_nothing_and_init_sweep_never_raises():
    backend = loader.load_driver(fixtures.make_conf('fake', {}), 'fake')
    assert backend.cleanup_leftovers() == []
    assert backend.cleanup_leftovers(dry_run=True) == []

    def broken(dry_run=False):
        raise exception.BackendError(operation='sweep', instance='-',
                                     reason='daemon gone')

    backend.cleanup_leftovers = broken
    backend.sweep_leftovers()  # logged, not raised
    backend.sweep_leftovers_at_init = False
    backend.cleanup_leftovers = None  # not even called
    backend.sweep_leftovers()


# -- docker's decision, on listing entries -----------------------------------


class _FakeAPI:
    def __init__(self, summaries):
        self.summaries = summaries
        self.filters = None
        self.removed = []

    def containers(self, all, filters):
        self.filters = filters
        return self.summaries

    def remove_container(self, container, force, v):
        self.removed.append(container)


@pytest.fixture
def use_api(monkeypatch):
    """Make the docker backend connect to a fake client."""
    connection = pytest.importorskip('compute_driver.docker.connection')

    def use(api):
        monkeypatch.setattr(connection, 'connect', lambda conf: api)
    return use


def _summary(cid, owner, spawning=True, created=None):
    name = '/compute-driver-%s%s' % (cid, mapping.SPAWNING_SUFFIX
                                     if spawning else '')
    return {'Id': cid * 16, 'Names': [name], 'State': 'created',
            'Created': int(time.time() if created is None else created),
            'Labels': {mapping.SPAWN_OWNER: owner}}


def test_docker_leftovers(use_api):
    backend = loader.load_driver(fixtures.make_conf(
        'docker', {'DEFAULT': {'host': 'h1'}}), 'docker')
    me = leftovers.owner_label()
    boot = me.split('/')[0]
    dead = subprocess.run(
        [sys.executable, '-c', 'from compute_driver import leftovers; '
         'print(leftovers.owner_label())'],
        capture_output=True, text=True, check=True).stdout.strip()
    api = _FakeAPI([
        _summary('a', dead),                        # killed spawn
        _summary('b', me),                          # failed here, left
        _summary('c', me),                          # spawning here now
        _summary('d', '%s/1/0' % boot),             # pid 1, other start
        _summary('e', 'otherboot/5/5'),             # unknown, young
        _summary('f', 'otherboot/5/5', created=0),  # unknown, old
        _summary('g', dead, spawning=False),        # an instance
    ])
    use_api(api)
    backend._spawning.add('c' * 16)
    found = backend.cleanup_leftovers(dry_run=True)
    assert api.filters['label'] == [mapping.UUID,
                                    '%s=h1' % mapping.HOST]
    assert [(f.what.split()[2], f.reason) for f in found] == [
        ('(aaaaaaaaaaaa)', 'its spawn was interrupted'),
        ('(bbbbbbbbbbbb)', 'its spawn failed and could not remove it'),
        ('(dddddddddddd)', 'its spawn was interrupted'),
        ('(ffffffffffff)', 'its spawn did not complete within 3600s')]
    assert api.removed == []
    backend.cleanup_leftovers()
    assert api.removed == [c * 16 for c in 'abdf']


def test_spawning_containers_are_not_instances(use_api):
    summary = _summary('a', 'x')
    summary['Labels'].update(mapping.instance_labels(objects.Instance.new(
        'vm1', objects.Flavor('f', vcpus=1, memory_mb=64), 'img'), 'h1'))
    assert mapping.is_spawning(summary)
    use_api(_FakeAPI([summary]))
    backend = loader.load_driver(fixtures.make_conf('docker', {}), 'docker')
    assert backend.list_instance_records() == []
    summary['Names'] = ['/compute-driver-a']
    assert [r.instance.name
            for r in backend.list_instance_records()] == ['vm1']


class _SaveAPI:
    def __init__(self, chunks):
        self.chunks = chunks

    def get_image(self, ref, chunk_size):
        for chunk in self.chunks:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk


def _image_store(tmp_path, api):
    pytest.importorskip('docker')
    from compute_driver.docker import images as dimages
    conf = fixtures.make_conf('docker', {'docker': {
        'image_directory': str(tmp_path)}})
    return dimages.ImageStore(api, conf.docker)


def test_snapshot_tarball_is_private_and_interruptions_leave_nothing(
        tmp_path):
    store = _image_store(tmp_path, _SaveAPI([b'tar', b'ball']))
    path = store.save('snap:1')
    assert os.listdir(tmp_path) == ['snap:1.tar']
    assert os.stat(path).st_mode & 0o777 == 0o600
    store = _image_store(tmp_path, _SaveAPI([b'tar', KeyboardInterrupt()]))
    with pytest.raises(KeyboardInterrupt):
        store.save('snap:2')
    assert os.listdir(tmp_path) == ['snap:1.tar']


def test_partial_tarball_of_a_dead_writer_is_swept(tmp_path, use_api):
    store = _image_store(tmp_path, None)
    stale = tmp_path / 'snap:3.tar.partial-1234abcd'
    stale.write_bytes(b'half')
    live = leftovers.Marker.create(str(tmp_path / 'snap:4.tar.partial-x'))
    try:
        assert list(store.partial_tarballs()) == [str(stale)]
        backend = loader.load_driver(fixtures.make_conf('docker', {
            'DEFAULT': {'host': 'h1'},
            'docker': {'image_directory': str(tmp_path)}}), 'docker')
        use_api(_FakeAPI([]))
        found = backend.cleanup_leftovers()
        assert [(f.what, f.removed) for f in found] == [
            ('file %s' % stale, True)]
        assert os.path.exists(live.path) and not stale.exists()
    finally:
        live.release()
