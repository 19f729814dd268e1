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

import importlib.metadata
import subprocess
import sys
import textwrap

from oslo_config import cfg
import pytest
from stevedore import driver as stevedore_driver
from stevedore import extension

from compute_driver import conf as cd_conf
from compute_driver import driver
from compute_driver import exception
from compute_driver.fake import driver as fake_driver
from compute_driver import loader


@pytest.fixture
def conf():
    return cd_conf.build_conf(config_files=[])


def _use_plugin(monkeypatch, plugin, name='thing'):
    """Make the loader find ``plugin`` instead of real entry points."""
    ext = extension.Extension(name, None, plugin, None)
    manager = stevedore_driver.DriverManager.make_test_instance(
        ext, namespace=loader.NAMESPACE)
    monkeypatch.setattr(stevedore_driver, 'DriverManager',
                        lambda *args, **kwargs: manager)


def test_fake_is_installed_and_loads(conf):
    assert 'fake' in loader.installed_drivers()
    backend = loader.load_driver(conf)
    assert isinstance(backend, fake_driver.FakeDriver)
    assert backend.name == 'fake'
    assert backend.conf is conf


def test_unknown_driver_lists_installed(conf):
    with pytest.raises(exception.DriverNotFound) as exc:
        loader.load_driver(conf, 'nosuch')
    assert "'nosuch'" in str(exc.value)
    assert 'fake' in str(exc.value)


def test_configured_name_is_used(conf):
    conf.set_override('compute_driver', 'nosuch')
    with pytest.raises(exception.DriverNotFound):
        loader.load_driver(conf)


def test_non_driver_class_is_refused(monkeypatch, conf):
    _use_plugin(monkeypatch, dict)
    with pytest.raises(exception.DriverLoadError) as exc:
        loader.load_driver(conf, 'thing')
    assert 'not a compute_driver.driver.ComputeDriver' in str(exc.value)


def test_constructor_errors_keep_their_type(monkeypatch, conf):
    class Broken(fake_driver.FakeDriver):
        def __init__(self, conf, virtapi=None):
            raise exception.InvalidConfiguration(reason='[thing] bad')

    _use_plugin(monkeypatch, Broken)
    with pytest.raises(exception.InvalidConfiguration):
        loader.load_driver(conf, 'thing')


def test_constructor_crash_is_wrapped(monkeypatch, conf):
    class Crashing(fake_driver.FakeDriver):
        def __init__(self, conf, virtapi=None):
            raise RuntimeError('boom')

    _use_plugin(monkeypatch, Crashing)
    with pytest.raises(exception.DriverLoadError) as exc:
        loader.load_driver(conf, 'thing')
    assert 'RuntimeError: boom' in str(exc.value)


def test_missing_sdk_names_module_and_package(monkeypatch):
    def failing_manager(namespace, name, invoke_on_load,
                        on_load_failure_callback):
        error = ModuleNotFoundError("No module named 'libvirt'",
                                    name='libvirt')
        on_load_failure_callback(None, None, error)

    monkeypatch.setattr(stevedore_driver, 'DriverManager', failing_manager)
    with pytest.raises(exception.BackendSDKMissing) as exc:
        loader.load_driver_class('libvirt')
    message = str(exc.value)
    assert "'libvirt'" in message
    assert 'pip install' in message
    assert 'libvirt' in message


def test_install_hint_prefers_the_extra_named_after_the_backend(
        monkeypatch):
    # The docker backend lands later; its entry point will live in this
    # distribution, which already declares a "docker" extra.
    ep = loader.entry_points('fake')[0]
    monkeypatch.setattr(loader, 'entry_points', lambda name=None: [ep])
    assert (loader.install_hint('docker', 'docker') ==
            "pip install 'compute-driver[docker]'")


def test_install_hint_falls_back_to_the_package(monkeypatch):
    assert loader.install_hint('nosuch', 'libvirt') == (
        'pip install libvirt-python')
    # An installed backend whose distribution declares no extra.
    ep = importlib.metadata.EntryPoint('cdthird', 'cdthird.driver:Driver',
                                       loader.NAMESPACE)
    monkeypatch.setattr(loader, 'entry_points', lambda name=None: [ep])
    assert loader.install_hint('cdthird', 'foo') == 'pip install foo'


def test_own_import_errors_are_not_blamed_on_an_sdk(monkeypatch):
    def failing_manager(namespace, name, invoke_on_load,
                        on_load_failure_callback):
        error = ImportError('cannot import name x',
                            name='compute_driver.thing')
        on_load_failure_callback(None, None, error)

    monkeypatch.setattr(stevedore_driver, 'DriverManager', failing_manager)
    with pytest.raises(exception.DriverLoadError) as exc:
        loader.load_driver_class('thing')
    assert not isinstance(exc.value, exception.BackendSDKMissing)


def test_loading_fake_imports_no_backend_sdk():
    code = textwrap.dedent('''
        import sys
        from compute_driver import conf, loader
        c = conf.build_conf(config_files=[])
        d = loader.load_driver(c)
        d.init_host(c.host)
        heavy = sorted(m for m in sys.modules
                       if m.split('.')[0] in ('docker', 'libvirt', 'XenAPI',
                                              'requests'))
        print(','.join(heavy))
    ''')
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == ''


def test_only_the_nova_adapter_imports_nova():
    # nova is an optional extra: every other module, the CLI and every
    # backend must import without it, and must not pull it in when it is
    # there (it costs seconds and drags eventlet along).
    code = textwrap.dedent('''
        import importlib, pkgutil, sys
        import compute_driver
        adapter = ('compute_driver.nova.driver', 'compute_driver.nova.conf',
                   'compute_driver.nova.convert', 'compute_driver.nova.images',
                   'compute_driver.nova.node', 'compute_driver.nova.service')
        for info in pkgutil.walk_packages(compute_driver.__path__,
                                          'compute_driver.'):
            if info.name in adapter:
                continue
            try:
                importlib.import_module(info.name)
            except ImportError as exc:
                # A backend SDK missing here is not what is tested.
                if (exc.name or '').split('.')[0] == 'nova':
                    raise
        print(','.join(sorted(m for m in sys.modules
                              if m.split('.')[0] == 'nova')))
    ''')
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == ''


def test_loaded_class_is_a_contract_subclass():
    cls = loader.load_driver_class('fake')
    assert issubclass(cls, driver.ComputeDriver)


def test_entry_point_targets_name_the_class_without_importing():
    targets = loader.entry_point_targets()
    assert targets['fake'] == 'compute_driver.fake.driver:FakeDriver'
    assert list(targets) == loader.installed_drivers()


@pytest.mark.parametrize('name', loader.installed_drivers())
def test_class_attributes_agree_with_the_opts_entry_point(name):
    try:
        cls = loader.load_driver_class(name)
    except exception.BackendSDKMissing as exc:
        pytest.skip(str(exc))
    declared = loader.backend_opts(name)
    assert declared is not None, (
        '%s has no %s entry point' % (name, loader.OPTS_NAMESPACE))
    if cls.CONFIG_GROUP is None:
        assert declared == []
        return
    [(group, group_opts)] = declared
    assert group.name == cls.CONFIG_GROUP
    # The same objects, so that the sample documents what the class reads.
    assert [id(o) for o in group_opts] == [id(o) for o in cls.CONFIG_OPTS]
    assert isinstance(cls.image_types, tuple)
    assert all(isinstance(t, str) for t in cls.image_types)
    assert isinstance(cls.runs_containers, bool)


class _OptionedDriver(fake_driver.FakeDriver):
    """The fake backend under another group, without an opts entry point."""

    CONFIG_GROUP = 'cdloader'
    CONFIG_OPTS = [cfg.IntOpt('size', default=3, min=0, max=10,
                              help='A size.')]


def test_load_driver_registers_the_class_group(monkeypatch, conf):
    monkeypatch.setattr(loader, 'load_driver_class',
                        lambda name: _OptionedDriver)
    assert 'cdloader' not in conf
    backend = loader.load_driver(conf, 'cdloader')
    assert backend.conf.cdloader.size == 3


def test_load_driver_checks_the_class_group_values(monkeypatch, tmp_path):
    path = tmp_path / 'c.conf'
    path.write_text('[cdloader]\nsize = 11\n')
    c = cd_conf.build_conf(config_files=[str(path)], validate=False)
    monkeypatch.setattr(loader, 'load_driver_class',
                        lambda name: _OptionedDriver)
    with pytest.raises(exception.InvalidConfiguration) as caught:
        loader.load_driver(c, 'cdloader')
    assert caught.value.reason.startswith('[cdloader] size in %s: ' % path)


def test_without_opts_entry_point_the_class_is_read(monkeypatch, conf):
    monkeypatch.setattr(loader, 'load_driver_class',
                        lambda name: _OptionedDriver)
    assert loader.register_backend_opts(conf, 'cdloader') == ['cdloader']
    assert conf.cdloader.size == 3


def test_class_and_entry_point_disagreeing_is_a_load_error(conf):
    class Drifted(fake_driver.FakeDriver):
        CONFIG_GROUP = 'fake'
        CONFIG_OPTS = [cfg.IntOpt('vcpus', default=2, min=1,
                                  help='Not the entry point\'s.')]

    with pytest.raises(exception.DriverLoadError) as caught:
        loader.register_backend_opts(conf, 'fake', Drifted)
    assert 'options of [fake]' in str(caught.value)


def _use_opts_entry_point(monkeypatch, value):
    ep = importlib.metadata.EntryPoint('cdbroken', value,
                                       loader.OPTS_NAMESPACE)
    real = loader.entry_points

    def entry_points(name=None, namespace=loader.NAMESPACE):
        if namespace == loader.OPTS_NAMESPACE and name == 'cdbroken':
            return [ep]
        return real(name, namespace)

    monkeypatch.setattr(loader, 'entry_points', entry_points)


@pytest.mark.parametrize('value,words', [
    ('compute_driver.cdnosuch:list_opts',
     "its options (compute_driver.cdnosuch:list_opts) do not load: "
     "ModuleNotFoundError"),
    ('compute_driver.conf.default:GROUP',
     "its options (compute_driver.conf.default:GROUP) do not load: "
     "TypeError"),
    ('compute_driver.conf.default:list_opts',
     "bad options: [DEFAULT] is the library's"),
])
def test_broken_opts_entry_point_is_a_load_error(monkeypatch, conf, value,
                                                 words):
    _use_opts_entry_point(monkeypatch, value)
    with pytest.raises(exception.DriverLoadError) as caught:
        loader.register_backend_opts(conf, 'cdbroken')
    assert words in str(caught.value)


def test_building_conf_for_a_backend_imports_no_sdk(tmp_path):
    # "compute-driver flavors" reads the configuration of any backend
    # without importing it: its options come from its conf module.
    path = tmp_path / 'c.conf'
    path.write_text('[DEFAULT]\ncompute_driver = docker\n'
                    '[docker]\ntimeout = 5\n[libvirt]\nvirt_type = qemu\n')
    code = textwrap.dedent('''
        import sys
        from compute_driver import conf
        c = conf.build_conf(config_files=[sys.argv[1]])
        assert c.docker.timeout == 5
        print(','.join(sorted(
            m for m in sys.modules
            if m.split('.')[0] in ('docker', 'libvirt', 'XenAPI', 'requests')
            or m.endswith('.driver') and m.startswith('compute_driver.'))))
    ''')
    out = subprocess.run([sys.executable, '-c', code, str(path)],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == ''
