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

"""Typed errors of volume attachments.

Each is a subclass of one of :mod:`compute_driver.exception`'s classes,
so callers that already handle ``InvalidInput`` or ``BackendError`` (and
the Nova adapter's translation of them) handle these too.
"""

from compute_driver import exception


class InvalidConnectionInfo(exception.InvalidInput):
    """Connection info no connector could use as given."""

    msg_fmt = "Invalid connection info for volume %(volume)s: %(reason)s"

    volume: str


class VolumeDeviceNotFound(exception.ComputeDriverError):
    """A connection that leads to no block device on this host."""

    msg_fmt = ("Volume %(volume)s: %(device)s is not a block device on "
               "this host: %(reason)s")

    volume: str
    device: str


class VolumeInUse(exception.ComputeDriverError):
    """A block device something else on the host holds."""

    msg_fmt = "Volume %(volume)s: device %(device)s is in use: %(reason)s"

    volume: str
    device: str


class VolumeAlreadyAttached(exception.ComputeDriverError):
    msg_fmt = ("Volume %(volume)s is already attached to instance "
               "%(instance)s at %(mountpoint)s.")

    volume: str
    instance: str


class MountpointInUse(exception.InvalidInput):
    msg_fmt = ("Instance %(instance)s already has volume %(volume)s at "
               "%(mountpoint)s.")

    instance: str
    mountpoint: str


class VolumeNotAttached(exception.ComputeDriverError):
    msg_fmt = "Volume %(volume)s is not attached to instance %(instance)s."

    volume: str
    instance: str


class VolumeConnectionFailed(exception.ComputeDriverError):
    """os-brick could not connect (or disconnect) a volume."""

    msg_fmt = "Cannot connect volume %(volume)s: %(reason)s"

    volume: str
