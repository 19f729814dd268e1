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

"""The docker SDK's errors, as the library's exceptions.

:func:`translate` is the driver's ``_translate`` hook: a lost connection
is ``HypervisorUnavailable``, any other SDK error a ``BackendError``
naming the operation. What an HTTP status means depends on the call (a
409 is a name taken on create, a removal under way on remove), so callers
check :func:`is_status` inside the block for those.
"""

import collections.abc
import contextlib

from docker import errors as docker_errors
import requests

from compute_driver import exception

#: Errors meaning dockerd could not be reached or did not answer.
CONNECTION_ERRORS = (requests.exceptions.ConnectionError,
                     requests.exceptions.Timeout, ConnectionError)


def reason(exc: BaseException) -> str:
    """What an SDK error says, on one line."""
    text = getattr(exc, 'explanation', None) or str(exc) or type(
        exc).__name__
    return ' '.join(str(text).split())


def is_status(exc: BaseException, *codes: int) -> bool:
    """Whether ``exc`` is an APIError with one of these HTTP statuses."""
    return (isinstance(exc, docker_errors.APIError) and
            exc.status_code in codes)


@contextlib.contextmanager
def translate(api_url: str, operation: str, instance: str = '-'
              ) -> collections.abc.Iterator[None]:
    """Turn SDK errors raised in the block into the library's.

    The library's own errors pass through unchanged.

    :param api_url: the daemon's address, for ``HypervisorUnavailable``.
    :param operation: the operation, in words, for ``BackendError``.
    :param instance: the instance's name, or what is being acted on.
    """
    try:
        yield
    except exception.ComputeDriverError:
        raise
    except CONNECTION_ERRORS as exc:
        raise exception.HypervisorUnavailable(
            host=api_url, reason=reason(exc)) from exc
    except docker_errors.DockerException as exc:
        raise exception.BackendError(
            operation=operation, instance=instance,
            reason=reason(exc)) from exc
