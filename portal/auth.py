"""Bearer-token authentication for the REST API (and websockets)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from portal.lib.tokens import TOKEN_PREFIX, digest_token
from portal.models import ApiToken


class TokenRejected(Exception):
    """The token is unknown, revoked or expired; the message says which."""


def resolve_token(secret: str) -> ApiToken:
    """Find the active token for ``secret`` and note its use.

    Raises:
        TokenRejected: unknown, revoked or expired token, or an inactive user.
    """
    if not secret.startswith(TOKEN_PREFIX):
        raise TokenRejected("Invalid token: Millrace tokens start with 'mlr_'.")
    try:
        token = ApiToken.objects.select_related("user", "workspace").get(
            digest=digest_token(secret)
        )
    except ApiToken.DoesNotExist:
        raise TokenRejected("Invalid token: no such token.") from None
    if token.revoked_at is not None:
        raise TokenRejected(f"Token '{token.name}' was revoked.")
    if token.is_expired:
        assert token.expires_at is not None
        raise TokenRejected(f"Token '{token.name}' expired at {token.expires_at.isoformat()}.")
    if not token.user.is_active:
        raise TokenRejected("The token's user is inactive.")
    now = timezone.now()
    resolution = timedelta(seconds=settings.MILLRACE_TOKEN_LAST_USED_RESOLUTION)
    # Write last_used_at at most once per resolution window: a busy client must not turn
    # every read into a write.
    if token.last_used_at is None or now - token.last_used_at >= resolution:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


class BearerTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer mlr_…``; request.auth is the ApiToken."""

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <token>'."
            )
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token: not ASCII.") from None
        try:
            token = resolve_token(secret)
        except TokenRejected as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
