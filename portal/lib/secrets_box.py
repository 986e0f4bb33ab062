"""Encryption at rest for credentials the platform must be able to read back (datastore keys).

Fernet (AES-128-CBC + HMAC-SHA256) with a key from ``MILLRACE_CREDENTIALS_KEY`` or, when that is
unset, derived from SECRET_KEY with HKDF. Rotating SECRET_KEY without setting
MILLRACE_CREDENTIALS_KEY therefore makes stored credentials unreadable: the error says so.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class CredentialsUnreadable(Exception):
    pass


def _fernet() -> Fernet:
    configured = getattr(settings, "MILLRACE_CREDENTIALS_KEY", "")
    if configured:
        return Fernet(configured.encode())
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"millrace-credentials")
    key = hkdf.derive(settings.SECRET_KEY.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def seal(data: dict[str, Any]) -> str:
    """Encrypt a small JSON-able dict of secrets."""
    return _fernet().encrypt(json.dumps(data, sort_keys=True).encode()).decode()


def unseal(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return dict(json.loads(_fernet().decrypt(token.encode())))
    except InvalidToken:
        raise CredentialsUnreadable(
            "Stored credentials cannot be decrypted: SECRET_KEY or MILLRACE_CREDENTIALS_KEY "
            "changed since they were saved. Register the datastore's credentials again."
        ) from None
