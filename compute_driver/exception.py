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

"""Typed exceptions raised by the library and by every backend.

Each class only sets ``msg_fmt``; the keyword arguments given to the
constructor fill it in and stay available as attributes, so callers can
react to ``exc.uuid`` or ``exc.current`` without parsing the message.
"""


class ComputeDriverError(Exception):
    """Base class of every error this library raises on purpose."""

    msg_fmt = "An unknown compute driver error occurred."

    # Subclasses annotate the keyword arguments their msg_fmt names: the
    # constructor sets them with setattr, which type checkers cannot follow.

    def __init__(self, message: str | None = None, **kwargs: object) -> None:
        self.kwargs = kwargs
        for key, value in kwargs.items():
            setattr(self, key, value)
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                # A wrong format key is a programming error in this library;
                # still give the caller the template and the values rather
                # than hiding the original failure behind a formatting one.
                message = "%s (%s)" % (
                    self.msg_fmt,
                    ", ".join("%s=%r" % kv for kv in sorted(kwargs.items())))
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


def one_line(exc: BaseException) -> str:
    """An exception as one line of text for a user.

    Errors of this library are worded for users and read as they are; any
    other exception is a bug somewhere, so its type is kept for the report.
    """
    text = ' '.join(str(exc).split())
    if isinstance(exc, ComputeDriverError):
        return text
    if not text:
        return type(exc).__name__
    return '%s: %s' % (type(exc).__name__, text)


class InvalidInput(ComputeDriverError):
    msg_fmt = "Invalid input: %(reason)s"

    reason: str


class InvalidInstanceName(InvalidInput):
    msg_fmt = ("Invalid instance name %(name)r: %(reason)s")

    name: object


class InstanceNotFound(ComputeDriverError):
    msg_fmt = "Instance %(instance)s could not be found."

    instance: str


class InstanceExists(ComputeDriverError):
    msg_fmt = "Instance %(instance)s already exists."

    instance: str


class InvalidPowerState(ComputeDriverError):
    msg_fmt = ("Cannot %(operation)s instance %(instance)s while it is "
               "%(current)s; it must be %(expected)s.")

    operation: str
    instance: str
    current: str
    expected: str


class ImageNotFound(ComputeDriverError):
    msg_fmt = "Image %(image)s could not be found. Available: %(available)s."

    image: str
    available: str


class FlavorNotFound(ComputeDriverError):
    msg_fmt = "Flavor %(flavor)s could not be found. Available: %(available)s."

    flavor: str
    available: str


class InsufficientResources(ComputeDriverError):
    msg_fmt = ("Not enough %(resource)s on %(host)s: %(requested)s requested, "
               "%(free)s free of %(total)s.")

    resource: str
    host: str
    requested: int
    free: int
    total: int


class FlavorExceedsHost(InsufficientResources):
    """One instance asks for more than the whole host has.

    No amount of freeing the host makes it fit, unlike its parent class;
    it stays an :class:`InsufficientResources` so that callers rescheduling
    on that (Nova) still do.
    """

    msg_fmt = ("Flavor %(flavor)s asks for %(requested)s %(resource)s; "
               "%(host)s has %(total)s in all.")

    flavor: str


class HypervisorUnavailable(ComputeDriverError):
    msg_fmt = "Hypervisor %(host)s is unavailable: %(reason)s"

    host: str
    reason: str


class HypervisorVersionTooOld(ComputeDriverError):
    msg_fmt = ("%(component)s %(found)s is too old for virt_type "
               "%(virt_type)s; at least %(required)s is required.")

    component: str
    found: str
    virt_type: str
    required: str


class NotSupported(ComputeDriverError):
    msg_fmt = "The %(driver)s backend does not support %(operation)s."

    driver: str
    operation: str


class GuestFeatureMissing(NotSupported):
    """The backend supports an operation, but this guest cannot do it.

    A subclass of :class:`NotSupported`, so callers that already handle
    an unsupported operation handle this one too.
    """

    msg_fmt = ("Cannot %(operation)s instance %(instance)s: its guest lacks "
               "%(feature)s.")

    operation: str
    instance: str
    feature: str


class MigrationFailed(ComputeDriverError):
    """A live migration did not move the instance, which stayed put."""

    msg_fmt = ("Cannot live-migrate instance %(instance)s to %(dest)s: "
               "%(reason)s")

    instance: str
    dest: str
    reason: str


class InvalidConfiguration(ComputeDriverError):
    msg_fmt = "Invalid configuration: %(reason)s"

    reason: str


class DriverNotFound(ComputeDriverError):
    msg_fmt = ("Compute driver %(name)r is not installed. Installed drivers: "
               "%(installed)s.")

    name: str
    installed: str


class DriverLoadError(ComputeDriverError):
    msg_fmt = "Compute driver %(name)r could not be loaded: %(reason)s"

    name: str
    reason: str


class BackendSDKMissing(DriverLoadError):
    msg_fmt = ("Compute driver %(name)r needs the Python module %(module)r, "
               "which is not installed; install it with: %(hint)s")

    module: str
    hint: str


class BackendSDKVersion(DriverLoadError):
    msg_fmt = ("Compute driver %(name)r needs %(requirement)s, but "
               "%(installed)s is installed; install a version it accepts "
               "with: %(hint)s")

    requirement: str
    installed: str
    hint: str


class NovaNotInstalled(ComputeDriverError):
    msg_fmt = ("Nova is not installed for %(python)s: %(reason)s; install "
               "compute-driver into nova-compute's Python environment.")

    python: str
    reason: str


class NovaShimError(ComputeDriverError):
    msg_fmt = "Cannot %(operation)s the Nova shim %(path)s: %(reason)s"

    operation: str
    path: str
    reason: str


class BackendError(ComputeDriverError):
    """A backend or SDK failure that has no more specific type.

    Backends wrap SDK exceptions in this class (keeping the original as
    ``__cause__``) so callers only ever need to catch
    :class:`ComputeDriverError`.
    """

    msg_fmt = "%(operation)s failed on instance %(instance)s: %(reason)s"

    operation: str
    instance: str
    reason: str


class ImageUnacceptable(InvalidInput):
    """An image the backend refuses to use, whatever the instance.

    Nova's name for it: the image is there, but its file is unsafe or not
    what its metadata says.
    """

    msg_fmt = "Image %(image)s is unacceptable: %(reason)s"

    image: str


class ImageFormatMismatch(ImageUnacceptable):
    msg_fmt = ("Image %(image)s is declared %(declared)s but its file is "
               "%(inspected)s.")

    image: str
    declared: str
    inspected: str


class LeftoverRemovalFailed(ComputeDriverError):
    """A rollback or a sweep could not remove what an operation left."""

    msg_fmt = ("Could not remove %(leftover)s left by %(operation)s: "
               "%(reason)s")

    leftover: str
    operation: str
    reason: str


class ConsoleUnavailable(ComputeDriverError):
    """The instance has no console of that kind (disabled, not configured).

    The backend supports the console type; this instance, or the way the
    host is configured, does not offer it.
    """

    msg_fmt = "Instance %(instance)s has no %(console)s console: %(reason)s"

    instance: str
    console: str
    reason: str


class ConsoleBusy(ComputeDriverError):
    """Another session holds a console that takes one client at a time."""

    msg_fmt = ("The %(console)s console of instance %(instance)s is in use "
               "by another session; detach it first.")

    console: str
    instance: str
