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

"""The connection to dockerd and the translation of its errors.

The low-level ``docker.APIClient`` is used throughout: it is one HTTP call
per method, where the SDK's high-level ``containers.list()`` inspects every
container it lists.
"""

import collections.abc
import contextlib
import typing

import docker
from docker import errors as docker_errors
from docker import tls as docker_tls
import requests

from compute_driver import exception

if typing.TYPE_CHECKING:  # pragma: no cover
    from oslo_config import cfg

#: The oldest Docker API accepted: 1.25 (Docker 1.13, January 2017).
#: Older daemons have been out of support for years and are not tested.
MIN_API_VERSION = (1, 25)

#: Errors meaning dockerd could not be reached or did not answer.
CONNECTION_ERRORS = (requests.exceptions.ConnectionError,
                     requests.exceptions.Timeout, ConnectionError)


class APIClient(docker.APIClient):
    """The SDK's low-level client, keeping the TLS trust it was given.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace a
    session's ``verify`` (requests issue 3829): with either set, as many
    distributions do, ``tls_ca_cert`` would be ignored and ``tls_verify =
    false`` would still verify against the system bundle. The configured
    value wins here; the environment only applies to the default (verify
    against the system's CAs).
    """

    def merge_environment_settings(self, url, proxies, stream, verify,
                                   cert):
        settings = super().merge_environment_settings(
            url, proxies, stream, verify, cert)
        if verify is None and self.verify is not True:
            settings['verify'] = self.verify
        return settings


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split('.') if p.isdigit())


def tls_config(group: typing.Any) -> docker_tls.TLSConfig | bool:
    """The SDK's TLS settings from the ``[docker] tls*`` options.

    ``tls_verify`` means verify: the daemon's certificate must chain to
    ``tls_ca_cert`` (or, when unset, to the system's CA bundle) and match
    the host name. (nova-docker's flag of the same purpose was inverted.)

    :returns: ``False`` for plain HTTP, else a ``TLSConfig``.
    :raises InvalidConfiguration: for a client certificate without key, or
        TLS on a unix socket.
    """
    wanted = (group.tls or group.tls_ca_cert or group.tls_client_cert or
              group.tls_client_key)
    if not wanted:
        return False
    if group.api_url.startswith('unix://'):
        raise exception.InvalidConfiguration(
            reason='[docker] tls options need a tcp:// api_url, not %s'
                   % group.api_url)
    if bool(group.tls_client_cert) != bool(group.tls_client_key):
        raise exception.InvalidConfiguration(
            reason='[docker] tls_client_cert and tls_client_key go '
                   'together')
    client_cert = ((group.tls_client_cert, group.tls_client_key)
                   if group.tls_client_cert else None)
    verify: bool | str = group.tls_verify
    if group.tls_verify and group.tls_ca_cert:
        verify = group.tls_ca_cert
    try:
        return docker_tls.TLSConfig(client_cert=client_cert, verify=verify)
    except docker_errors.TLSParameterError as exc:
        raise exception.InvalidConfiguration(
            reason='[docker] tls options: %s' % exc) from None


def base_url(group: typing.Any) -> str:
    """``api_url`` as the SDK wants it: ``https://`` when TLS is on."""
    url = group.api_url
    if url.startswith('tcp://') and tls_config(group):
        return 'https://' + url[len('tcp://'):]
    return url


def connect(conf: 'cfg.ConfigOpts', host: str) -> APIClient:
    """A client of the configured dockerd, its API version agreed.

    :raises HypervisorUnavailable: when dockerd cannot be reached.
    :raises HypervisorVersionTooOld: below :data:`MIN_API_VERSION`.
    :raises InvalidConfiguration: for unusable TLS options.
    """
    group = conf.docker
    tls = tls_config(group)
    try:
        client = APIClient(
            base_url=base_url(group), version=group.api_version,
            timeout=group.timeout, tls=tls,
            max_pool_size=group.max_connections)
    except docker_errors.DockerException as exc:
        # "auto" asks dockerd for its version while connecting.
        raise exception.HypervisorUnavailable(
            host=group.api_url, reason=_reason(exc)) from exc
    except CONNECTION_ERRORS as exc:
        raise exception.HypervisorUnavailable(
            host=group.api_url, reason=_reason(exc)) from exc
    version = _version_tuple(client.api_version)
    if version < MIN_API_VERSION:
        raise exception.HypervisorVersionTooOld(
            component='Docker API', found=client.api_version,
            virt_type='docker',
            required='.'.join(str(p) for p in MIN_API_VERSION))
    return client


def _reason(exc: BaseException) -> str:
    text = getattr(exc, 'explanation', None) or str(exc) or type(
        exc).__name__
    return ' '.join(str(text).split())


def api_error_text(exc: docker_errors.APIError) -> str:
    """What dockerd said, on one line."""
    return _reason(exc)


def is_status(exc: BaseException, *codes: int) -> bool:
    """Whether ``exc`` is an APIError with one of these HTTP statuses."""
    return (isinstance(exc, docker_errors.APIError) and
            exc.status_code in codes)


@contextlib.contextmanager
def translated(api_url: str, operation: str, instance: str
               ) -> collections.abc.Iterator[None]:
    """Turn SDK errors raised in the block into the library's.

    A lost connection is ``HypervisorUnavailable``; any other SDK error is
    ``BackendError`` naming the operation and instance. Errors that
    should mean something more specific (404, 409) are for the caller to
    catch inside the block.
    """
    try:
        yield
    except exception.ComputeDriverError:
        raise
    except CONNECTION_ERRORS as exc:
        raise exception.HypervisorUnavailable(
            host=api_url, reason=_reason(exc)) from exc
    except docker_errors.DockerException as exc:
        raise exception.BackendError(
            operation=operation, instance=instance,
            reason=_reason(exc)) from exc
