"""One shape for every API error: ``{"detail": "...", "fields": {"name": ["..."]}}``.

``detail`` is a sentence a user can act on; ``fields`` (validation errors only) says where.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Nested DRF error details → {"a.b": ["msg", ...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for sub, messages in _flatten(value, name).items():
                out.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out.setdefault(prefix or "non_field_errors", []).extend(str(i) for i in detail)
        else:
            for index, item in enumerate(detail):
                name = f"{prefix}[{index}]" if prefix else f"[{index}]"
                for sub, messages in _flatten(item, name).items():
                    out.setdefault(sub, []).extend(messages)
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


class PayloadTooLarge(exceptions.APIException):
    status_code = 413


class StorageFailed(exceptions.APIException):
    status_code = 502


class ConflictError(exceptions.APIException):
    status_code = 409


def _to_drf(exc: Exception) -> Exception:
    # Imported here: the storage package must stay importable without DRF.
    from portal.lib.secrets_box import CredentialsUnreadable
    from portal.services import UploadTooLarge
    from portal.storage import Conflict, InvalidPath, NotFound, StorageError

    if isinstance(exc, InvalidPath):
        return exceptions.ValidationError({"path": [str(exc)]})
    if isinstance(exc, NotFound):
        return exceptions.NotFound(str(exc))
    if isinstance(exc, Conflict):
        return ConflictError(str(exc))
    if isinstance(exc, UploadTooLarge):
        return PayloadTooLarge(str(exc))
    if isinstance(exc, StorageError):
        return StorageFailed(f"The storage service failed: {exc}")
    if isinstance(exc, CredentialsUnreadable):
        return exceptions.APIException(str(exc))  # 500: the server's keys changed
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        return exceptions.ValidationError(detail=detail)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(detail=str(exc) or None)
    if isinstance(exc, Http404):
        return exceptions.NotFound(detail=str(exc) or None)
    return exc


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    from portal.storage import Conflict

    original = exc
    exc = _to_drf(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        summary = "; ".join(
            f"{name}: {' '.join(messages)}" if name != "non_field_errors" else " ".join(messages)
            for name, messages in fields.items()
        )
        response.data = {"detail": f"Invalid input. {summary}", "fields": fields}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"])}
    if isinstance(original, Conflict):
        response.data["path"] = original.path
    return response
