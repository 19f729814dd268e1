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

"""A real Glance API for tests, on 127.0.0.1 without Keystone.

The ``glance`` package from PyPI, run the way Glance is deployed since
its standalone server was removed: its WSGI application
(``glance.wsgi.api:application``) under gunicorn, with a SQLite database
that ``glance-manage db_sync`` creates, the filesystem store, and the
paste pipeline whose context middleware is Glance's own
``unauthenticated-context`` (every request is an admin, no token). Each
:class:`GlanceServer` has its own directory and port, so tests in
parallel do not share images.

The interpreter that runs Glance is ``COMPUTE_DRIVER_GLANCE_PYTHON`` when
set (any Python with ``glance`` and ``gunicorn``), else that of the
``.tox/glance-server`` virtualenv that ``tools/test-setup.d/60-glance.sh``
makes in the source tree, else the one running the tests.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

#: Environment variable naming the Python interpreter that has Glance.
PYTHON_ENV = 'COMPUTE_DRIVER_GLANCE_PYTHON'

#: Seconds Glance may take to answer ``/versions`` after it is started:
#: loading Glance, its stores and its database takes a few seconds.
START_TIMEOUT = 120.0

_PASTE = textwrap.dedent('''\
    # Glance's own pipeline without Keystone (its etc/glance-api-paste.ini
    # "default" flavor): every request gets an admin context.
    [pipeline:glance-api]
    pipeline = versionnegotiation unauthenticated-context rootapp

    [composite:rootapp]
    paste.composite_factory = glance.api:root_app_factory
    /: apiversions
    /v2: apiv2app

    [app:apiversions]
    paste.app_factory = glance.api.versions:create_resource

    [app:apiv2app]
    paste.app_factory = glance.api.v2.router:API.factory

    [filter:versionnegotiation]
    paste.filter_factory = glance.api.middleware.version_negotiation:\
VersionNegotiationFilter.factory

    [filter:unauthenticated-context]
    paste.filter_factory = glance.api.middleware.context:\
UnauthenticatedContextMiddleware.factory
    ''')

#: The pipeline of a Glance deployed with Keystone (its etc's "keystone"
#: flavor): keystonemiddleware's auth_token refuses a request without a
#: token with 401 before it reaches Glance, as in any real deployment; no
#: Keystone is needed for that refusal.
_PASTE_KEYSTONE = _PASTE.replace(
    'versionnegotiation unauthenticated-context rootapp',
    'versionnegotiation authtoken context rootapp') + textwrap.dedent('''\

    [filter:authtoken]
    paste.filter_factory = keystonemiddleware.auth_token:filter_factory

    [filter:context]
    paste.filter_factory = glance.api.middleware.context:\
ContextMiddleware.factory
    ''')

_CONF_KEYSTONE = textwrap.dedent('''\

    [keystone_authtoken]
    # Where the 401 tells clients to authenticate; nothing listens there.
    www_authenticate_uri = http://127.0.0.1:9/identity
    delay_auth_decision = false
    ''')

_CONF = textwrap.dedent('''\
    [DEFAULT]
    enabled_backends = store1:file
    worker_self_reference_url = %(url)s
    image_cache_dir = %(dir)s/cache
    enabled_import_methods = []
    debug = false

    [database]
    connection = sqlite:///%(dir)s/glance.sqlite

    [paste_deploy]
    config_file = %(dir)s/glance-api-paste.ini

    [glance_store]
    default_backend = store1

    [store1]
    filesystem_store_datadir = %(dir)s/images

    [os_glance_staging_store]
    filesystem_store_datadir = %(dir)s/staging

    [os_glance_tasks_store]
    filesystem_store_datadir = %(dir)s/tasks

    [oslo_policy]
    # The unauthenticated context has no roles and no project, which
    # Glance's secure RBAC defaults refuse everything to; its legacy
    # defaults, still shipped, let it act as the admin it is.
    enforce_new_defaults = false
    enforce_scope = false
    ''')


class GlanceUnavailable(Exception):
    """Glance is not installed here, or did not start."""


#: The virtualenv tools/test-setup.d/60-glance.sh makes, relative to the
#: source tree this package is in.
SETUP_VENV = os.path.join('.tox', 'glance-server')


def glance_python() -> str:
    """The interpreter that runs Glance (see the module's docstring)."""
    if os.environ.get(PYTHON_ENV):
        return os.environ[PYTHON_ENV]
    tree = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    python = os.path.join(tree, SETUP_VENV, 'bin', 'python')
    if os.path.exists(python):
        return python
    return sys.executable


def check_installed(python: str | None = None) -> None:
    """Raise :class:`GlanceUnavailable` unless Glance can run.

    :param python: the interpreter; :func:`glance_python` by default.
    """
    python = python or glance_python()
    probe = subprocess.run(
        [python, '-c', 'import glance.wsgi, gunicorn'],
        capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise GlanceUnavailable(
            '%s cannot import glance and gunicorn (install them with '
            'tools/test-setup.d/60-glance.sh, or set %s to a Python that '
            'has them): '
            '%s' % (python, PYTHON_ENV,
                    (probe.stderr.strip().splitlines()
                     or ['exit status %d' % probe.returncode])[-1]))


class GlanceServer:
    """One Glance API process on a free port of 127.0.0.1.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    :param workdir: directory for the database, the store and the log;
        a new temporary one (removed by :meth:`stop`) when ``None``.
    :param python: interpreter with Glance; :func:`glance_python` when
        ``None``.
    :param keystone: run Glance behind Keystone's auth_token middleware,
        which refuses every request that has no valid token (with no
        Keystone to validate one, every request): a Glance refusing auth.
    """

    def __init__(self, workdir: str | None = None,
                 python: str | None = None,
                 keystone: bool = False) -> None:
        self.keystone = keystone
        self._tmp = None if workdir else tempfile.TemporaryDirectory(
            prefix='compute-driver-glance-')
        self.workdir = workdir or self._tmp.name  # type: ignore[union-attr]
        self.python = python or glance_python()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.workdir, 'glance-api.log')

    @property
    def url(self) -> str:
        """The endpoint, e.g. ``http://127.0.0.1:40123``."""
        return 'http://127.0.0.1:%d' % self.port

    @property
    def store_dir(self) -> str:
        """The filesystem store's directory (one file per image id)."""
        return os.path.join(self.workdir, 'images')

    def _write_config(self) -> None:
        for sub in ('images', 'staging', 'tasks', 'cache'):
            os.makedirs(os.path.join(self.workdir, sub), exist_ok=True)
        values = {'dir': self.workdir, 'url': self.url}
        with open(os.path.join(self.workdir, 'glance-api.conf'), 'w') as f:
            f.write(_CONF % values)
            if self.keystone:
                f.write(_CONF_KEYSTONE)
        with open(os.path.join(self.workdir, 'glance-api-paste.ini'),
                  'w') as f:
            f.write(_PASTE_KEYSTONE if self.keystone else _PASTE)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # glance.common.wsgi_app reads its files from this directory.
        env['OS_GLANCE_CONFIG_DIR'] = self.workdir
        return env

    def start(self) -> 'GlanceServer':
        """Create the database, start Glance and wait until it answers.

        :raises GlanceUnavailable: when Glance is missing, its database
            cannot be created, or it does not answer in time.
        """
        check_installed(self.python)
        # Bound here and handed to gunicorn as a file descriptor, so no
        # other process can take the port between choosing and listening.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(('127.0.0.1', 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        try:
            self._write_config()
            conf = os.path.join(self.workdir, 'glance-api.conf')
            sync = subprocess.run(
                [self.python, '-m', 'glance.cmd.manage', '--config-file',
                 conf, 'db_sync'],
                capture_output=True, text=True, env=self._env(), check=False)
            if sync.returncode != 0:
                raise GlanceUnavailable('glance-manage db_sync failed: %s'
                                        % sync.stderr.strip()[-2000:])
            with open(self.log_path, 'ab') as log:
                self.process = subprocess.Popen(
                    [self.python, '-m', 'gunicorn',
                     '--bind', 'fd://%d' % listener.fileno(),
                     # One process keeps the server's state in one place;
                     # threads serve concurrent requests as uwsgi's do in
                     # DevStack.
                     '--workers', '1', '--worker-class', 'gthread',
                     '--threads', '16', '--timeout', '600',
                     '--graceful-timeout', '5',
                     'glance.wsgi.api:application'],
                    stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                    pass_fds=(listener.fileno(),), start_new_session=True,
                    cwd=self.workdir)
        finally:
            listener.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.05
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise GlanceUnavailable(
                    'Glance exited with status %s while starting: %s'
                    % (self.process.returncode, self.log_tail()))
            try:
                conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                                  timeout=5)
                conn.request('GET', '/versions')
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                # Not accepting yet (the socket exists, the worker not).
                status = None
            if time.monotonic() > deadline:
                self.stop()
                raise GlanceUnavailable(
                    'Glance did not answer /versions within %ds (last '
                    'status %s): %s' % (START_TIMEOUT, status,
                                        self.log_tail()))
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def log_tail(self, size: int = 4000) -> str:
        """The end of Glance's log, for failure messages."""
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(max(0, os.path.getsize(self.log_path) - size))
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return '(no log)'

    def kill(self) -> None:
        """Kill Glance at once, as a crash would.

        SIGKILL to its process group: every open connection drops.
        """
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop Glance and remove its temporary directory."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> 'GlanceServer':
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def require_glance_client() -> None:
    """Skip a test, or fail it in strict mode, without python-glanceclient.

    The test talks to Glance through the library's Glance image service,
    which needs the client (the ``glance`` extra).
    """
    try:
        import glanceclient  # noqa: F401
    except ImportError as exc:
        from compute_driver.testing import fixtures
        fixtures.skip_or_fail('python-glanceclient is not installed (pip '
                              'install compute-driver[glance]): %s' % exc)
