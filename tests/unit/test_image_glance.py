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

"""The Glance image service's configuration and error mapping
(compute_driver.image.glance and .conf); the functional tests run it
against a real Glance."""

from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ks_exc
from oslo_config import cfg
import pytest

from compute_driver import exception
from compute_driver import image
from compute_driver.image import conf as image_conf
from compute_driver.image import exception as image_exception
from compute_driver.image import glance
from compute_driver.image import local


def _conf(**glance_options):
    conf = cfg.ConfigOpts()
    image_conf.register_opts(conf)
    conf([], default_config_files=[])
    for name, value in glance_options.items():
        conf.set_override(name, value, group='glance')
    return conf


def test_glance_group_has_keystoneauth_options():
    conf = _conf()
    for name in ('auth_type', 'auth_section', 'cafile', 'insecure',
                 'timeout', 'endpoint_override', 'region_name',
                 'valid_interfaces', 'api_servers', 'num_retries'):
        assert name in conf.glance, name
    assert conf.glance.service_type == 'image'
    names = {opt.dest for group, opts in image_conf.list_opts().items()
             if group.name == 'glance' for opt in opts}
    # The password plugin's options are in the sample, like Nova's.
    assert {'auth_url', 'username', 'password', 'project_name'} <= names


def test_every_option_has_help_and_bounds():
    for group, opts in image_conf.list_opts().items():
        for opt in opts:
            assert opt.help and opt.help.strip(), (group.name, opt.name)
        if group.name == 'image_service':
            for opt in opts:
                assert opt.help.rstrip().endswith('.'), opt.name
                if isinstance(opt, cfg.IntOpt):
                    assert opt.type.min is not None, opt.name
                    assert opt.type.max is not None, opt.name


def test_load_picks_the_configured_service(tmp_path):
    conf = _conf(api_servers=['http://127.0.0.1:9292'])
    conf.set_override('local_path', str(tmp_path), group='image_service')
    service = image.load(conf)
    assert isinstance(service, local.LocalImageService)
    assert service.path == str(tmp_path)
    conf.set_override('backend', 'glance', group='image_service')
    assert isinstance(image.load(conf), glance.GlanceImageService)


def test_glance_without_endpoint_or_auth_is_a_configuration_error():
    with pytest.raises(exception.InvalidConfiguration) as info:
        glance.GlanceImageService.from_conf(_conf())
    assert 'api_servers' in str(info.value)


def test_unknown_auth_plugin_is_a_configuration_error():
    with pytest.raises(exception.InvalidConfiguration) as info:
        glance.GlanceImageService.from_conf(_conf(auth_type='no-such'))
    assert '[glance]' in str(info.value)


def test_glance_image_converts_to_a_record():
    record = glance.to_record({
        'id': 'a3c5b1ae-6b52-4e4f-a7a5-1f4e6c6b3b6e', 'name': 'cirros',
        'status': 'active', 'disk_format': 'qcow2',
        'container_format': 'bare', 'size': 21430272,
        'checksum': 'c8fc807773e5354afe61636071771906',
        'os_hash_algo': 'sha512', 'os_hash_value': 'ab' * 64,
        'min_ram': 0, 'min_disk': 1, 'visibility': 'public',
        'protected': False, 'tags': [], 'owner': None,
        'self': '/v2/images/a3c5b1ae-6b52-4e4f-a7a5-1f4e6c6b3b6e',
        'hw_disk_bus': 'virtio', 'instance_uuid': None,
        'os_hidden': False, 'file': '/v2/images/x/file',
        'schema': '/v2/schemas/image',
    })
    assert (record.name, record.status, record.size) == (
        'cirros', 'active', 21430272)
    assert record.properties == {'hw_disk_bus': 'virtio'}
    queued = glance.to_record({'id': 'x', 'status': 'queued', 'size': None,
                               'min_ram': None})
    assert (queued.name, queued.size, queued.min_ram) == ('', None, 0)


@pytest.mark.parametrize('error, expected', [
    (glance_exc.HTTPNotFound(), image_exception.ImageNotInService),
    (glance_exc.HTTPUnauthorized(), image_exception.ImageServiceUnavailable),
    (ks_exc.Unauthorized(), image_exception.ImageServiceUnavailable),
    (glance_exc.CommunicationError('refused'),
     image_exception.ImageServiceUnavailable),
    (ks_exc.ConnectFailure('refused'),
     image_exception.ImageServiceUnavailable),
    (glance_exc.HTTPForbidden(), image_exception.ImageServiceError),
    (glance_exc.HTTPBadRequest(), image_exception.ImageServiceError),
])
def test_client_errors_become_typed_errors(error, expected, monkeypatch):
    service = glance.GlanceImageService(None, ['http://127.0.0.1:9'],
                                        num_retries=0)
    monkeypatch.setattr(service, '_client', lambda endpoint: endpoint)

    def fail(client):
        raise error

    with pytest.raises(expected) as info:
        service._call('show', 'img', fail)
    assert type(info.value) is expected
    assert info.value.__cause__ is error
    if error.__class__ is glance_exc.HTTPUnauthorized:
        assert 'authentication refused' in str(info.value)


def test_connection_failures_move_to_the_next_server(monkeypatch):
    service = glance.GlanceImageService(
        None, ['http://127.0.0.1:1', 'http://127.0.0.1:2'], num_retries=2)
    seen = []
    monkeypatch.setattr(service, '_client', lambda endpoint: endpoint)

    def call(endpoint):
        seen.append(endpoint)
        if len(seen) < 3:
            raise glance_exc.CommunicationError('refused')
        return 'answer'

    assert service._call('show', 'img', call) == 'answer'
    assert seen == ['http://127.0.0.1:1', 'http://127.0.0.1:2',
                    'http://127.0.0.1:1']
    seen.clear()
    with pytest.raises(image_exception.ImageServiceUnavailable):
        service._call('upload', 'img', call, retry=False)
    assert len(seen) == 1
