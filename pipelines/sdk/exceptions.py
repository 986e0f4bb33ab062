"""The errors the SDK raises (the counterpart of ``azureml.exceptions``).

Every error carries the server's own words in ``detail`` where there was a server answer, and
never the API token.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = [
    "ActivityFailedException",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "MillraceConnectionError",
    "MillraceError",
    "NotFoundError",
    "PermissionDeniedError",
    "RunFailedError",
    "RunTimeoutError",
    "ServiceError",
    "ValidationError",
]


class MillraceError(Exception):
    """Base class of every error the SDK raises on purpose.

    Args:
        detail: what went wrong, in words a user can act on.
        status_code: the HTTP status of the server's answer, if there was one.
        url: the URL that was called, if any (never carries credentials).

    Attributes:
        detail: the message.
        status_code: the HTTP status or None.
        url: the URL or None.
    """

    def __init__(self, detail: str, *, status_code: int | None = None, url: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.url = url


class ConfigurationError(MillraceError):
    """The SDK cannot tell where or as whom to connect: no ``config.json`` was found, or it
    lacks the server URL, or no token was given. The message says where it looked."""


class MillraceConnectionError(MillraceError):
    """The server could not be reached (refused, timed out, TLS failure, dropped stream).
    The message names the URL."""


class ServiceError(MillraceError):
    """The server answered with an error that has no more specific class (5xx, 413, 411...)."""


class AuthenticationError(MillraceError):
    """401: the token is missing, unknown, revoked or expired; the server's message says which."""


class PermissionDeniedError(MillraceError):
    """403: the token's user may not do this (a reader writing, a token creating a workspace)."""


class NotFoundError(MillraceError):
    """404: no such object, or it is in a workspace this token cannot see."""


class ConflictError(MillraceError):
    """409: the target already exists and overwrite was not asked for.

    Args:
        detail: the message.
        path: the datastore path that clashed, when the server (or the SDK's own check) named one.
        status_code: the HTTP status (409) or None for a clash the SDK found before sending.
        url: the URL that was called, if any.

    Attributes:
        path: the clashing datastore path, or None.
    """

    def __init__(
        self,
        detail: str,
        *,
        path: str | None = None,
        status_code: int | None = None,
        url: str | None = None,
    ):
        super().__init__(detail, status_code=status_code, url=url)
        self.path = path


class ValidationError(MillraceError):
    """400: the server refused the input.

    Args:
        detail: the server's summary ("Invalid input. name: ...").
        fields: field name → list of messages, as the server gave them.
        status_code: the HTTP status (400).
        url: the URL that was called.

    Attributes:
        fields: field name → list of messages.
    """

    def __init__(
        self,
        detail: str,
        *,
        fields: dict[str, list[str]] | None = None,
        status_code: int | None = None,
        url: str | None = None,
    ):
        super().__init__(detail, status_code=status_code, url=url)
        self.fields: dict[str, list[str]] = dict(fields or {})


class RunFailedError(MillraceError):
    """``wait_for_completion(raise_on_error=True)`` saw the run end Failed (azureml's
    ``ActivityFailedException``). The message names each failed step, its error and the last
    lines of its log.

    Args:
        detail: the message.
        run_id: the pipeline run's id.
        status: the run's final status.
        failed_steps: one ``{"name", "id", "error", "log_tail": [lines]}`` per failed step.
        details: the run's ``get_details()`` at the end.

    Attributes:
        run_id: the pipeline run's id.
        status: the run's final status.
        failed_steps: as given.
        details: as given.
    """

    def __init__(
        self,
        detail: str,
        *,
        run_id: str,
        status: str,
        failed_steps: list[dict[str, Any]] | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(detail)
        self.run_id = run_id
        self.status = status
        self.failed_steps: list[dict[str, Any]] = list(failed_steps or [])
        self.details: dict[str, Any] = dict(details or {})


ActivityFailedException = RunFailedError


class RunTimeoutError(MillraceError, TimeoutError):
    """``wait_for_completion`` gave up after ``timeout_seconds``; the run goes on.

    Args:
        detail: the message (names the run and its status).
        run_id: the run's id.
        status: its status when the wait ended.

    Attributes:
        run_id: the run's id.
        status: its status when the wait ended.
    """

    def __init__(self, detail: str, *, run_id: str, status: str):
        super().__init__(detail)
        self.run_id = run_id
        self.status = status


def _unsupported(name: str, hint: str = "") -> Any:
    """A stand-in for an azureml call that Millrace does not offer.

    Args:
        name: the call as a user would write it, e.g. ``"Workspace.list"``.
        hint: an optional sentence saying what to do instead.

    Returns:
        A staticmethod that raises, usable as a class attribute (so both ``Workspace.list()``
        and ``ws.delete()`` raise).

    Raises:
        NotImplementedError: from the returned callable, naming the call.
    """
    message = f"{name} is not offered by Millrace's SDK."
    if hint:
        message += f" {hint}"

    def unsupported(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(message)

    unsupported.__name__ = name.rsplit(".", 1)[-1]
    unsupported.__qualname__ = name
    unsupported.__doc__ = f"Not offered: raises NotImplementedError. {hint}".strip()
    return staticmethod(unsupported)
