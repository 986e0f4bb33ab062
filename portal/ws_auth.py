"""Websocket authentication by ``Authorization: Bearer`` header, beside the session cookie."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware

from portal.auth import TokenRejected, resolve_token


@database_sync_to_async
def _resolve(secret: str) -> Any:
    try:
        token = resolve_token(secret)
    except TokenRejected:
        return None
    return token


class BearerTokenMiddleware(BaseMiddleware):
    """Sets ``scope["user"]`` and ``scope["token"]`` from a bearer token when one is sent.

    A rejected token leaves the connection anonymous, so the consumer refuses it.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        header = headers.get(b"authorization", b"").decode("latin-1").split()
        if len(header) == 2 and header[0].lower() == "bearer":
            from django.contrib.auth.models import AnonymousUser

            token = await _resolve(header[1])
            scope = dict(scope)
            scope["token"] = token
            scope["user"] = token.user if token is not None else AnonymousUser()
        return await super().__call__(scope, receive, send)
