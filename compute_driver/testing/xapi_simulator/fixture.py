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

"""pytest fixtures that run the XAPI simulator for a test.

Use them from a ``conftest.py``::

    from compute_driver.testing.xapi_simulator.fixture import (  # noqa
        xapi_simulator)

or build a :class:`~.server.Simulator` directly. :func:`xenapi_options`
gives the ``[xenapi]`` options that point the backend at a simulator;
:func:`provisioned_clone` builds a VM as ``xe vm-install`` would.
"""

import collections.abc
import os
import subprocess

import pytest
import XenAPI

from compute_driver.testing.xapi_simulator import server

USERNAME = 'root'
PASSWORD = 'password'


def xenapi_options(simulator: server.Simulator,
                   **extra: object) -> dict[str, object]:
    """``[xenapi]`` option values that reach ``simulator``.

    :param extra: further options, overriding these.
    """
    options: dict[str, object] = {
        'connection_url': simulator.url, 'username': USERNAME,
        'password': PASSWORD, 'event_poll_timeout': 5,
        'login_timeout': 5, 'call_timeout': 30}
    options.update(extra)
    return options


def provisioned_clone(simulator: server.Simulator, name_label: str,
                      template: str = 'Other install media') -> str:
    """Clone a stock template and provision its disks, over XML-RPC.

    What ``xe vm-install`` does, and what a spawn interrupted after its
    provisioning leaves: the VM is halted, with its disks on the pool's
    default SR.

    :returns: the new VM's uuid.
    """
    session = XenAPI.Session(simulator.url)
    session.xenapi.login_with_password(USERNAME, PASSWORD, '2.21',
                                       'provisioned_clone')
    try:
        [source] = session.xenapi.VM.get_by_name_label(template)
        ref = session.xenapi.VM.clone(source, name_label)
        other = session.xenapi.VM.get_other_config(ref)
        other.pop('default_template', None)
        [pool] = session.xenapi.pool.get_all()
        sr = session.xenapi.SR.get_uuid(
            session.xenapi.pool.get_default_SR(pool))
        other['disks'] = other.get('disks', '').replace(
            'sr=""', 'sr="%s"' % sr)
        session.xenapi.VM.set_other_config(ref, other)
        session.xenapi.VM.provision(ref)
        return str(session.xenapi.VM.get_uuid(ref))
    finally:
        session.xenapi.session.logout()


def _running() -> collections.abc.Iterator[server.Simulator]:
    simulator = server.Simulator(
        '127.0.0.1', 0, users={USERNAME: PASSWORD}).start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def xapi_simulator() -> collections.abc.Iterator[server.Simulator]:
    """A simulator on 127.0.0.1 with a free port, stopped afterwards."""
    yield from _running()


@pytest.fixture(scope='module')
def module_xapi_simulator() -> collections.abc.Iterator[server.Simulator]:
    """One simulator shared by the tests of a module."""
    yield from _running()


def image_service_options(directory: str) -> dict[str, object]:
    """``[image_service]`` values keeping images and cache in ``directory``.

    Snapshots go to the image service: tests keep them out of the
    defaults under ``/var/lib``.
    """
    return {'local_path': os.path.join(directory, 'images'),
            'cache_path': os.path.join(directory, 'cache')}


def write_test_disk(directory: str, qemu_img: str = 'qemu-img'
                    ) -> tuple[str, str]:
    """Write a 6 MiB raw disk with data at known places, and its VHD.

    The data sits in the first, the second and the sixth MiB, so a
    dynamic VHD of it has allocated and unallocated blocks, which is
    what an import or export through XAPI must tell apart.

    :returns: the raw file's path and the dynamic VHD's path.
    """
    mib = 1024 * 1024
    raw = os.path.join(directory, 'disk.raw')
    with open(raw, 'wb') as f:
        f.truncate(6 * mib)
        f.write(b'compute-driver xapi image\n')
        f.seek(mib + 4096)
        f.write(os.urandom(512 * 1024))
        f.seek(5 * mib)
        f.write(os.urandom(mib))
    vhd = os.path.join(directory, 'disk.vhd')
    subprocess.run([qemu_img, 'convert', '-f', 'raw', '-O', 'vpc', '-o',
                    'subformat=dynamic,force_size=on', raw, vhd],
                   check=True)
    return raw, vhd
