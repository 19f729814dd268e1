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

import difflib
import os
import pathlib

from oslo_config import cfg
from oslo_config import generator
import pytest

from compute_driver import conf as cd_conf
from compute_driver.conf import opts
from compute_driver import exception
from compute_driver.image import conf as image_conf
from compute_driver import loader

ROOT = pathlib.Path(__file__).resolve().parents[2]
ETC = ROOT / 'etc' / 'compute-driver'
GENERATOR_CONF = ETC / 'compute-driver-config-generator.conf'
SAMPLE = ETC / 'compute-driver.conf.sample'
#: The Nova adapter's options, for nova.conf.
NOVA_GENERATOR_CONF = ETC / 'nova-adapter-config-generator.conf'
NOVA_SAMPLE = ETC / 'nova-adapter.conf.sample'


def _write(tmp_path, text):
    path = tmp_path / 'compute-driver.conf'
    path.write_text(text)
    return str(path)


def test_defaults_without_files():
    conf = cd_conf.build_conf(config_files=[])
    assert conf.compute_driver == 'fake'
    assert conf.fake.vcpus == 1000
    assert conf.flavor == []


def test_file_values_are_read(tmp_path):
    path = _write(tmp_path, '[DEFAULT]\ncompute_driver = fake\n'
                            'flavor = x1.one:1:32\n[fake]\nvcpus = 8\n')
    conf = cd_conf.build_conf(config_files=[path])
    assert conf.fake.vcpus == 8
    assert conf.flavor == ['x1.one:1:32']


@pytest.mark.parametrize('text,words', [
    ('[fake]\nvcpus = -1\n', '[fake] vcpus'),
    ('[fake]\nvcpus = many\n', '[fake] vcpus'),
    ('[fake]\nhost_ip = not-an-ip\n', '[fake] host_ip'),
    ('[DEFAULT]\ncompute_driver = bad name\n', '[DEFAULT] compute_driver'),
    ('[DEFAULT]\nflavor = x1:0:64\n', "flavor 'x1:0:64'"),
    ('[fake\nvcpus = 1\n', 'compute-driver.conf'),
])
def test_invalid_values_are_reported_at_build_time(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(exception.InvalidConfiguration) as exc:
        cd_conf.build_conf(config_files=[path])
    message = str(exc.value)
    assert words in message
    assert '\n' not in message
    assert 'LocationInfo' not in message


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(exception.InvalidConfiguration) as exc:
        cd_conf.build_conf(config_files=[str(tmp_path / 'nope.conf')])
    assert 'nope.conf' in str(exc.value)


def test_config_dir_is_read_after_files(tmp_path):
    path = _write(tmp_path, '[fake]\nvcpus = 8\n')
    confd = tmp_path / 'conf.d'
    confd.mkdir()
    (confd / '10-cpu.conf').write_text('[fake]\nvcpus = 16\n')
    conf = cd_conf.build_conf(config_files=[path], config_dirs=[str(confd)])
    assert conf.fake.vcpus == 16


def test_library_never_touches_global_conf():
    conf = cd_conf.build_conf(config_files=[])
    loader.load_driver(conf).init_host(conf.host)
    assert 'compute_driver' not in cfg.CONF
    assert 'fake' not in cfg.CONF
    # Private objects share no values, whichever was built first.
    before = cd_conf.build_conf(config_files=[])
    conf.set_override('vcpus', 4, group='fake')
    conf.set_override('images', ['x'], group='fake')
    after = cd_conf.build_conf(config_files=[])
    for other in (before, after):
        assert other.fake.vcpus == 1000
        assert other.fake.images == ['cirros-0.6.3-x86_64-disk']


def _own_opts():
    """Every (group, opt) of list_opts but keystoneauth's in [glance].

    keystoneauth's session, auth and adapter options are registered as
    keystoneauth defines them, as in every OpenStack service.
    """
    own = {opt.dest for opt in image_conf.glance_opts}
    for group, group_opts in opts.list_opts():
        name = getattr(group, 'name', group)
        yield group, [opt for opt in group_opts
                      if name != image_conf.GLANCE_GROUP or opt.dest in own]


def test_every_option_has_help_and_type():
    for group, group_opts in _own_opts():
        for opt in group_opts:
            assert opt.help and opt.help.rstrip().endswith('.'), opt.name
            assert opt.type is not None, opt.name


def test_integer_options_have_bounds():
    for group, group_opts in _own_opts():
        for opt in group_opts:
            if isinstance(opt, cfg.IntOpt):
                assert opt.type.min is not None, opt.name
                assert opt.type.max is not None, opt.name


def test_secret_looking_options_are_secret():
    for group, group_opts in opts.list_opts():
        for opt in group_opts:
            if any(w in opt.name for w in ('password', 'secret', 'token',
                                           'key_pass')):
                assert opt.secret, opt.name


def _without_keystoneauth(sample: str) -> str:
    """``sample`` without the [glance] options keystoneauth defines.

    Which options keystoneauth has, and how their help reads, depends on
    its version (a Python 3.10 installs an older one); the sample shows
    the version ``tox -e genconfig`` installs, and only the project's own
    options must match everywhere.
    """
    own = {opt.dest for opt in image_conf.glance_opts}
    out, section = [], None
    for block in sample.split('\n\n'):
        first = block.lstrip('\n').split('\n', 1)[0]
        if first.startswith('['):
            section = first
        names = [line[1:].split(' = ', 1)[0]
                 for line in block.splitlines()
                 if line.startswith('#') and ' = ' in line
                 and not line.startswith('# ')]
        if (section == '[%s]' % image_conf.GLANCE_GROUP and names and
                not own.intersection(names)):
            continue
        out.append(block)
    return '\n\n'.join(out)


@pytest.mark.parametrize('generator_conf,sample', [
    (GENERATOR_CONF, SAMPLE), (NOVA_GENERATOR_CONF, NOVA_SAMPLE)])
def test_committed_sample_matches_generator(tmp_path, generator_conf,
                                            sample):
    out = tmp_path / 'sample.conf'
    gen = cfg.ConfigOpts()
    generator.register_cli_opts(gen)
    gen(['--config-file', str(generator_conf), '--output-file', str(out)])
    generator.generate(gen)
    expected = _without_keystoneauth(out.read_text())
    committed = _without_keystoneauth(sample.read_text())
    diff = ''.join(difflib.unified_diff(
        committed.splitlines(True), expected.splitlines(True),
        'committed sample', 'generator output'))
    assert not diff, ('%s is out of date; run "tox -e genconfig" and commit '
                      'the result:\n%s' % (os.path.relpath(sample), diff))


def test_explicit_files_read_no_standard_directory(monkeypatch, tmp_path):
    confd = tmp_path / 'compute-driver.conf.d'
    confd.mkdir()
    (confd / 'x.conf').write_text('[fake]\nvcpus = 3\n')
    searched = []

    def find_dirs(project=None, prog=None, *args, **kwargs):
        searched.append(project)
        return [str(confd)]

    monkeypatch.setattr(cfg, 'find_config_dirs', find_dirs)
    assert cd_conf.build_conf(config_files=[]).fake.vcpus == 1000
    monkeypatch.setattr(cfg, 'find_config_files', lambda *a, **kw: [])
    assert cd_conf.build_conf().fake.vcpus == 3
    assert searched == ['compute-driver']


def test_bad_value_error_names_option_file_and_problem(tmp_path):
    path = _write(tmp_path, '[fake]\nvcpus = -1\n')
    with pytest.raises(exception.InvalidConfiguration) as exc:
        cd_conf.build_conf(config_files=[path])
    assert str(exc.value) == (
        'Invalid configuration: [fake] vcpus in %s: Should be greater than '
        'or equal to 1' % path)


@pytest.mark.parametrize('text,words', [
    ('[libvirt]\nconection_uri = qemu:///system\n',
     'unknown option conection_uri in section [libvirt] of %s; did you '
     'mean connection_uri?'),
    ('[DEFAULT]\ncompute_drivr = fake\n',
     'unknown option compute_drivr in section [DEFAULT] of %s; did you '
     'mean compute_driver?'),
    ('[dockr]\napi_url = unix:///x\n',
     'unknown section [dockr] in %s; did you mean [docker]?'),
    ('[bogus]\nx = 1\n', 'unknown section [bogus] in %s; known sections: '
     'DEFAULT, docker, fake, glance, image_service, libvirt, volume, '
     'xenapi'),
    ('[fake]\nzzz = 1\n', 'unknown option zzz in section [fake] of %s'),
])
def test_unknown_section_or_option_is_refused(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(exception.InvalidConfiguration) as caught:
        cd_conf.build_conf(config_files=[path])
    assert caught.value.reason == words % path


def test_unknown_option_in_config_dir_names_that_file(tmp_path):
    directory = tmp_path / 'conf.d'
    directory.mkdir()
    (directory / '10-good.conf').write_text('[fake]\nvcpus = 4\n')
    (directory / '20-typo.conf').write_text('[fake]\nvcpu = 4\n')
    with pytest.raises(exception.InvalidConfiguration) as caught:
        cd_conf.build_conf(config_files=[], config_dirs=[str(directory)])
    assert caught.value.reason == (
        'unknown option vcpu in section [fake] of %s; did you mean vcpus?'
        % (directory / '20-typo.conf'))


@pytest.mark.parametrize('text', [
    # oslo.log's options, which a file shared with a service holds.
    '[DEFAULT]\ndebug = true\nlog_file = /dev/null\n',
    # oslo.config's own and any case of a group name, as oslo.config
    # matches it.
    '[DEFAULT]\nconfig_dir = /etc\n[LIBVIRT]\nvirt_type = qemu\n',
    '[DEFAULT]\ncompute-driver = fake\n',
])
def test_options_others_register_are_accepted(tmp_path, text):
    cd_conf.build_conf(config_files=[_write(tmp_path, text)])


def test_unknown_options_are_accepted_without_validation(tmp_path):
    path = _write(tmp_path, '[bogus]\nx = 1\n')
    conf = cd_conf.build_conf(config_files=[path], validate=False)
    with pytest.raises(exception.InvalidConfiguration):
        cd_conf.check_unknown(conf)


def test_missing_config_dir_is_refused(tmp_path):
    missing = str(tmp_path / 'nonexistent.d')
    with pytest.raises(exception.InvalidConfiguration) as caught:
        cd_conf.build_conf(config_files=[], config_dirs=[missing])
    assert caught.value.reason == (
        'configuration directory %s does not exist or is not a directory'
        % missing)


def test_only_the_chosen_backend_group_is_registered(tmp_path):
    conf = cd_conf.build_conf(config_files=[])
    assert 'fake' in conf and 'docker' not in conf
    path = _write(tmp_path, '[DEFAULT]\ncompute_driver = docker\n')
    conf = cd_conf.build_conf(config_files=[path])
    assert 'docker' in conf and 'fake' not in conf
    assert conf.docker.api_url == 'unix:///var/run/docker.sock'


def test_backend_argument_wins_over_the_file(tmp_path):
    path = _write(tmp_path, '[DEFAULT]\ncompute_driver = fake\n')
    conf = cd_conf.build_conf(config_files=[path], backend='libvirt')
    assert conf.libvirt.virt_type == 'kvm'
    assert 'fake' not in conf


def test_unknown_backend_registers_no_group():
    conf = cd_conf.build_conf(config_files=[], backend='nosuch')
    # The library's own groups only.
    assert [name for name in conf
            if isinstance(conf[name], cfg.ConfigOpts.GroupAttr)] == [
                image_conf.GROUP, 'volume']


def test_other_installed_backend_sections_are_accepted(tmp_path):
    # One file shared by hosts running different backends.
    path = _write(tmp_path, '[DEFAULT]\ncompute_driver = fake\n'
                            '[fake]\nvcpus = 4\n'
                            '[docker]\napi_url = tcp://127.0.0.1:2375\n'
                            '[xenapi]\npassword = secret\n')
    conf = cd_conf.build_conf(config_files=[path])
    assert conf.fake.vcpus == 4


@pytest.mark.parametrize('text,words', [
    ('[docker]\napi_ulr = unix:///x\n',
     'unknown option api_ulr in section [docker] of %s; did you mean '
     'api_url?'),
    ('[docker]\ntimeout = -1\n',
     '[docker] timeout in %s: Should be greater than or equal to 1'),
    ('[dokcer]\napi_url = unix:///x\n',
     'unknown section [dokcer] in %s; did you mean [docker]?'),
])
def test_other_backend_sections_are_still_checked(tmp_path, text, words):
    path = _write(tmp_path, '[DEFAULT]\ncompute_driver = fake\n' + text)
    with pytest.raises(exception.InvalidConfiguration) as caught:
        cd_conf.build_conf(config_files=[path])
    assert caught.value.reason == words % path


def test_other_backends_options_are_read_only_when_needed(monkeypatch,
                                                          tmp_path):
    def refuse(skip_broken=False):
        raise AssertionError('every backend\'s options were listed')

    monkeypatch.setattr(opts, 'installed_backend_opts', refuse)
    path = _write(tmp_path, '[DEFAULT]\nhost = h1\n[fake]\nvcpus = 4\n')
    assert cd_conf.build_conf(config_files=[path]).fake.vcpus == 4


def test_list_opts_has_every_installed_backend_group():
    groups = [g.name if isinstance(g, cfg.OptGroup) else g
              for g, _ in opts.list_opts()]
    assert groups[:4] == ['DEFAULT', image_conf.GROUP,
                          image_conf.GLANCE_GROUP, 'volume']
    assert sorted(groups[4:]) == sorted(
        group.name for name in opts.backend_names()
        for group, _ in loader.backend_opts(name))
    assert {'fake', 'docker', 'libvirt', 'xenapi'} <= set(groups)


def test_bad_backend_option_value_is_named_at_build_time(tmp_path):
    path = _write(tmp_path, '[DEFAULT]\ncompute_driver = libvirt\n'
                            '[libvirt]\nvirt_type = vmware\n')
    with pytest.raises(exception.InvalidConfiguration) as caught:
        cd_conf.build_conf(config_files=[path])
    assert caught.value.reason.startswith(
        '[libvirt] virt_type in %s: ' % path)


def test_local_image_service_registers_no_glance_group(tmp_path):
    # [glance] is keystoneauth's options: only a host using Glance pays
    # for importing keystoneauth.
    conf = cd_conf.build_conf(config_files=[])
    assert conf.image_service.backend == 'local'
    assert image_conf.GLANCE_GROUP not in conf


def test_glance_image_service_registers_keystoneauth_options(tmp_path):
    path = _write(tmp_path, '[image_service]\nbackend = glance\n'
                            '[glance]\napi_servers = http://127.0.0.1:9292\n'
                            'auth_type = password\nusername = demo\n'
                            'cafile = /dev/null\n')
    conf = cd_conf.build_conf(config_files=[path])
    assert conf.glance.api_servers == ['http://127.0.0.1:9292']
    assert conf.glance.cafile == '/dev/null'
    assert conf.glance.username == 'demo'


def test_glance_section_accepted_with_local_image_service(tmp_path):
    # One file for hosts using either image service.
    path = _write(tmp_path, '[glance]\napi_servers = http://127.0.0.1:9292\n')
    conf = cd_conf.build_conf(config_files=[path])
    assert conf.image_service.backend == 'local'


def test_glance_section_typo_is_refused(tmp_path):
    path = _write(tmp_path, '[glance]\napi_server = http://127.0.0.1:9292\n')
    with pytest.raises(exception.InvalidConfiguration,
                       match='did you mean api_servers'):
        cd_conf.build_conf(config_files=[path])
