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

"""Connecting to dockerd: the client, its TLS and its API version.

The low-level ``docker.APIClient`` is used throughout: it is one HTTP call
per method, where the SDK's high-level ``containers.list()`` inspects every
container it lists. Its connection pool reconnects by itself, so a
restarted dockerd costs the call in flight only (see :mod:`.errors`).
"""

import os
import socket
import threading
import typing
import urllib.parse

import docker
from docker import errors as docker_errors
from docker import tls as docker_tls

from compute_driver.docker import errors
from compute_driver import exception

if typing.TYPE_CHECKING:  # pragma: no cover
    from oslo_config import cfg

#: The oldest Docker API accepted: 1.25 (Docker 1.13, January 2017).
#: Older daemons have been out of support for years and are not tested.
MIN_API_VERSION = (1, 25)

GIB = 1024 ** 3


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


def version_tuple(text: str) -> tuple[int, ...]:
    """``"1.41"`` as ``(1, 41)``."""
    return tuple(int(p) for p in text.split('.') if p.isdigit())


def server_version(info: dict) -> str:
    """dockerd's version from ``docker info``, as ``MAJOR.MINOR.PATCH``.

    Suffixes (``+dfsg1``, ``-ce``) and non-digits are dropped.
    """
    return '.'.join(
        ''.join(c for c in part if c.isdigit()) or '0'
        for part in str(info.get('ServerVersion') or '0').split(
            '+')[0].split('-')[0].split('.')[:3])


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


def connect(conf: 'cfg.ConfigOpts') -> APIClient:
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
    except (docker_errors.DockerException, *errors.CONNECTION_ERRORS) as exc:
        # "auto" asks dockerd for its version while connecting.
        raise exception.HypervisorUnavailable(
            host=group.api_url, reason=errors.reason(exc)) from exc
    version = version_tuple(client.api_version)
    if version < MIN_API_VERSION:
        raise exception.HypervisorVersionTooOld(
            component='Docker API', found=client.api_version,
            virt_type='docker',
            required='.'.join(str(p) for p in MIN_API_VERSION))
    return client


class Connection:
    """The client the driver's operations share, and what dockerd said.

    It connects on first use, so that building a driver contacts nothing.
    The event stream holds a connection open indefinitely, so it gets one
    of its own from :meth:`new_client`.

    :param conf: the library's configuration, ``[docker]`` registered.
    """

    def __init__(self, conf: 'cfg.ConfigOpts') -> None:
        self.conf = conf
        self.url: str = conf.docker.api_url
        self._lock = threading.Lock()
        self._api: APIClient | None = None
        #: The last ``docker info``; empty until :meth:`refresh_info`.
        self.info: dict = {}

    @property
    def api(self) -> APIClient:
        """The connected client; connects on first use."""
        if self._api is None:
            with self._lock:
                if self._api is None:
                    self._api = connect(self.conf)
        return self._api

    def new_client(self) -> APIClient:
        """A client with a connection of its own."""
        return connect(self.conf)

    def refresh_info(self) -> dict:
        """Ask dockerd for ``docker info`` and keep it in :attr:`info`."""
        with errors.translate(self.url, 'docker info'):
            self.info = self.api.info()
        return self.info

    def close(self) -> None:
        """Close the shared client; the next use connects again."""
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            api.close()

    def capacity(self, info: dict) -> tuple[int, int, int]:
        """The host's CPUs, MiB of memory and GiB of disk.

        :param info: ``docker info``.
        """
        return (int(info.get('NCPU') or 0),
                int(info.get('MemTotal') or 0) // (1024 * 1024),
                self._disk_gb(info))

    def _disk_gb(self, info: dict) -> int:
        configured = self.conf.docker.disk_gb
        if configured:
            return int(configured)
        root = info.get('DockerRootDir')
        # statvfs sees this machine's disks: only right for a local daemon.
        if not (root and self.url.startswith('unix://')):
            return 0
        try:
            stat = os.statvfs(root)
        except OSError:
            return 0
        return stat.f_blocks * stat.f_frsize // GIB

    def host_address(self) -> str:
        """The address of the host dockerd runs on.

        A tcp:// daemon's host name; for a local one, the address of the
        default route's interface.
        """
        if not self.url.startswith('unix://'):
            host = urllib.parse.urlsplit(self.url).hostname
            if host:
                return host
        # Connecting a UDP socket picks the interface without sending.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect(('192.0.2.1', 9))
            return str(probe.getsockname()[0])
        except OSError:
            return '127.0.0.1'
        finally:
            probe.close()
