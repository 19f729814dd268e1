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

"""Options of the ``[docker]`` group: the Docker backend."""

from oslo_config import cfg

GROUP = 'docker'

TITLE = 'Docker backend options'
HELP = ('The docker backend runs each instance as one container of a local '
        'or remote dockerd, through the docker SDK. Containers carry their '
        'instance in labels; there is no other state.')

#: Capabilities Docker grants by default minus those a workload rarely
#: needs and an attacker likes (NET_RAW for spoofing, MKNOD, AUDIT_WRITE,
#: SYS_CHROOT).
DEFAULT_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL',
                        'SETGID', 'SETUID', 'SETPCAP', 'NET_BIND_SERVICE']

opts = [
    cfg.StrOpt(
        'api_url', default='unix:///var/run/docker.sock',
        regex=r'^(unix|tcp|https|http|ssh)://\S+$',
        help='Where dockerd listens: unix:///path/to/docker.sock, or '
             'tcp://host:port for a remote daemon (use the tls_* options '
             'to protect it).'),
    cfg.StrOpt(
        'api_version', default='auto', regex=r'^(auto|1\.\d+)$',
        help='Docker API version to speak, e.g. 1.41, or "auto" to '
             'negotiate the highest version both the SDK and the daemon '
             'support. The backend needs at least API 1.25 (Docker 1.13).'),
    cfg.IntOpt(
        'timeout', default=60, min=1, max=3600,
        help='Seconds to wait for one answer of dockerd before the call '
             'fails. Stopping a container waits for its grace period on '
             'top of this.'),
    cfg.IntOpt(
        'max_connections', default=16, min=1, max=1024,
        help='Connections to dockerd kept open for reuse; raise it when '
             'more operations than this run at once.'),
    cfg.BoolOpt(
        'tls', default=False,
        help='Talk TLS to a tcp:// api_url. Implied by tls_ca_cert, '
             'tls_client_cert and tls_client_key.'),
    cfg.BoolOpt(
        'tls_verify', default=True,
        help='Check the daemon\'s certificate against tls_ca_cert (or the '
             'system\'s CA bundle when unset) and its host name. Turn it '
             'off only to debug; without it anyone on the path can '
             'impersonate dockerd.'),
    cfg.StrOpt(
        'tls_ca_cert',
        help='PEM file of the CA that signed the daemon\'s certificate.'),
    cfg.StrOpt(
        'tls_client_cert',
        help='PEM file of this client\'s certificate, for a daemon that '
             'requires client authentication (dockerd --tlsverify).'),
    cfg.StrOpt(
        'tls_client_key', secret=True,
        help='PEM file of the private key of tls_client_cert.'),
    cfg.StrOpt(
        'name_prefix', default='compute-driver-',
        regex=r'^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$',
        help='Containers are named this prefix followed by the instance '
             'uuid. Docker allows letters, digits, "_", "." and "-", '
             'starting with a letter or digit.'),
    cfg.StrOpt(
        'image_directory',
        help='Directory of "docker save" tarballs. An image that dockerd '
             'does not have is loaded from IMAGE.tar here, where IMAGE is '
             'the image reference with every "/" replaced by "_" (e.g. '
             'library_busybox:1.36.tar); snapshots are saved here the same '
             'way. Unset: no tarballs are read or written.'),
    cfg.ListOpt(
        'images', default=[],
        help='Image references list_images offers (and so what "verify" '
             'boots when given no --image), before the tarballs of '
             'image_directory and the snapshots. Empty: every tagged image '
             'dockerd has that has a command to run.'),
    cfg.StrOpt(
        'registry',
        help='Registry (host[:port]) to pull an image from when it is '
             'neither in dockerd nor in image_directory; the image '
             'REF is pulled as REGISTRY/REF and tagged REF. Unset: images '
             'are never pulled.'),
    cfg.StrOpt(
        'registry_username',
        help='User name to log in to the registry with; unset pulls '
             'anonymously.'),
    cfg.StrOpt(
        'registry_password', secret=True,
        help='Password of registry_username.'),
    cfg.StrOpt(
        'network_mode', default='bridge',
        regex=r'^[a-zA-Z0-9][a-zA-Z0-9_.:-]*$',
        help='Network of every container: "none" (no network), "bridge" '
             '(Docker\'s default NAT bridge), "host" (the host\'s stack; '
             'only when allow_host_network is set) or the name of a '
             'network created with "docker network create".'),
    cfg.BoolOpt(
        'allow_host_network', default=False,
        help='Allow network_mode = host, which gives every container the '
             'host\'s network stack.'),
    cfg.BoolOpt(
        'allow_privileged', default=False,
        help='Allow flavors with the extra spec docker:privileged=true to '
             'run privileged containers, which have every capability and '
             'device of the host. Without this such a flavor is refused.'),
    cfg.ListOpt(
        'capabilities', default=DEFAULT_CAPABILITIES,
        help='Linux capabilities containers keep; every other one is '
             'dropped. Names as in capabilities(7) without CAP_, e.g. '
             'NET_ADMIN. Empty drops them all.'),
    cfg.BoolOpt(
        'no_new_privileges', default=True,
        help='Set no-new-privileges, so that setuid binaries and file '
             'capabilities cannot raise a process\'s privileges inside a '
             'container.'),
    cfg.BoolOpt(
        'read_only_root', default=False,
        help='Mount each container\'s root file system read-only, with '
             'a writable tmpfs on /tmp and /run. Snapshots of such '
             'containers hold no changes.'),
    cfg.StrOpt(
        'apparmor_profile',
        help='AppArmor profile of every container; unset keeps dockerd\'s '
             'default (docker-default when AppArmor is enabled).'),
    cfg.ListOpt(
        'selinux_labels', default=[],
        help='SELinux label options of every container, e.g. '
             'type:svirt_lxc_net_t or level:s0:c100,c200 (written as '
             'security-opt label=VALUE); empty keeps dockerd\'s default.'),
    cfg.StrOpt(
        'seccomp_profile',
        help='Seccomp profile of every container: the path of a JSON '
             'profile file, or "unconfined" (not recommended); unset keeps '
             'dockerd\'s default profile.'),
    cfg.IntOpt(
        'pids_limit', default=1024, min=0, max=4194304,
        help='Most processes a container may run, unless its flavor sets '
             'the extra spec quota:pids_limit; 0 means no limit.'),
    cfg.IntOpt(
        'stop_grace_period', default=10, min=0, max=3600,
        help='Seconds a container gets to stop after SIGTERM before it is '
             'killed, for a soft reboot and a revert of a running '
             'instance. power_off takes its own timeout.'),
    cfg.IntOpt(
        'console_log_lines', default=1000, min=1, max=1000000,
        help='Lines of container output get_console_output returns (the '
             'tail of the log).'),
    cfg.IntOpt(
        'disk_gb', default=0, min=0, max=1 << 30,
        help='Disk in GiB reported as the host\'s when the Docker root '
             'directory cannot be measured from here (a remote daemon); 0 '
             'measures it when dockerd is local and reports 0 otherwise.'),
    cfg.IntOpt(
        'usage_sync_interval', default=60, min=0, max=86400,
        help='Most seconds between two full listings of this host\'s '
             'containers to correct the resource totals that claims and '
             'get_available_resource use. Between listings the totals '
             'follow the driver\'s own spawns and destroys and the Docker '
             'event stream, so the listing only repairs what both missed; '
             'the totals are also listed afresh whenever the event stream '
             'has been down. 0 lists at every claim, which costs one call '
             'with a payload growing with the number of containers.'),
]


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """The ``compute_driver.driver_opts`` entry point: imports no SDK."""
    return [(cfg.OptGroup(GROUP, title=TITLE, help=HELP), opts)]
