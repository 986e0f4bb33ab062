"""API token secrets: generated with 256 bits of entropy, stored only as a SHA-256 digest.

A plain (unsalted) SHA-256 is the right hash here: the secret is random and long, so there is
nothing to brute-force, and a digest lets a request find its token with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "mlr_"  # noqa: S105 - a public marker, not a secret
DISPLAY_PREFIX_LENGTH = 12


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]
