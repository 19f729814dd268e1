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

"""Typed errors of the image services and the image cache.

They subclass the library's own classes so that a caller that already
handles :class:`~compute_driver.exception.ComputeDriverError` (the CLI, the
Nova adapter) handles these too, and one that handles
:class:`~compute_driver.exception.ImageNotFound` or
:class:`~compute_driver.exception.ImageUnacceptable` handles the image
service's versions of them.
"""

from compute_driver import exception


class ImageServiceError(exception.ComputeDriverError):
    """An image service failed in a way no subclass describes."""

    msg_fmt = ("The %(service)s image service could not %(operation)s "
               "image %(image)s: %(reason)s")

    service: str
    operation: str
    image: str
    reason: str


class ImageServiceUnavailable(ImageServiceError):
    """The service cannot be reached, or refuses the credentials."""

    msg_fmt = "The %(service)s image service is unavailable: %(reason)s"


class ImageNotInService(exception.ImageNotFound):
    """No image has this id or name in the image service."""

    msg_fmt = ("Image %(image)s could not be found in the %(service)s "
               "image service.")

    service: str


class AmbiguousImageName(exception.InvalidInput):
    msg_fmt = ("Image name %(name)r matches %(count)d images in the "
               "%(service)s image service (%(ids)s); use an image id.")

    name: str
    count: int
    service: str
    ids: str


class ImageNotActive(ImageServiceError):
    """The image exists but has no data to download yet (or any more)."""

    msg_fmt = ("Image %(image)s cannot be downloaded from the %(service)s "
               "image service: its status is %(status)s, not active.")

    status: str


class ImageChecksumMismatch(exception.ImageUnacceptable):
    """The bytes received are not those the image service recorded.

    An :class:`~compute_driver.exception.ImageUnacceptable`: the image is
    there, but what arrived cannot be used.
    """

    msg_fmt = ("Image %(image)s failed verification: its %(algorithm)s is "
               "%(actual)s, but the image service recorded %(expected)s.")

    algorithm: str
    actual: str
    expected: str


class ImageDownloadIncomplete(ImageServiceError):
    """The transfer stopped before every byte of the image arrived."""

    msg_fmt = ("Download of image %(image)s from the %(service)s image "
               "service stopped after %(received)d of %(expected)s bytes: "
               "%(reason)s")

    received: int
    expected: str


class ImageUploadFailed(ImageServiceError):
    msg_fmt = ("Upload of image %(image)s to the %(service)s image service "
               "failed: %(reason)s")
