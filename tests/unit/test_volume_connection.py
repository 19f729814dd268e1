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

"""Who on the host has a volume's device open: the scan of /proc."""

import os

from compute_driver.volume import connection


def _own_name():
    with open('/proc/self/comm') as handle:
        return handle.read().strip()


def test_device_user_names_the_process_holding_it(tmp_path):
    path = tmp_path / 'device'
    path.write_bytes(b'')
    # Through a symlink, as /dev/disk/by-* paths are.
    link = tmp_path / 'link'
    link.symlink_to(path)
    assert connection.device_user(str(link)) is None
    with open(path, 'rb'):
        expected = 'process %d (%s) has it open' % (os.getpid(), _own_name())
        assert connection.device_user(str(link)) == expected
        assert connection.device_user(str(path),
                                      (_own_name()[:4],)) == expected
        # Only the named programs are looked at.
        assert connection.device_user(str(path), ('cdunit-none',)) is None
    assert connection.device_user(str(path)) is None


def test_device_user_passes_over_processes_gone(tmp_path):
    # A listed process may exit before its files are read.
    path = tmp_path / 'device'
    path.write_bytes(b'')
    gone = str(2 ** 22 + 1)  # above pid_max's ceiling: never a process
    with open(path, 'rb'):
        assert connection.device_user(
            str(path), pids=[gone, str(os.getpid())]) == (
            'process %d (%s) has it open' % (os.getpid(), _own_name()))
        assert connection.device_user(str(path), pids=[gone]) is None
