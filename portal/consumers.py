"""Websocket consumers for the workspace domain."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.realtime import Pong, apublish, user_group

CLOSE_UNAUTHENTICATED = 4401


class PingConsumer(AsyncJsonWebsocketConsumer):
    """Answers ``{"type": "ping", "echo": "..."}`` with a ``pong`` that travels through the
    channel layer (Redis), so a round trip proves the whole realtime path works.

    Anonymous connections are refused in ``connect()`` with close code 4401.
    """

    group: str

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "ping":
            await self.send_json({"type": "error", "detail": 'Send {"type": "ping"}.'})
            return
        token = self.scope.get("token")
        message: Pong = {
            "type": "pong",
            "user": self.scope["user"].get_username(),
            "workspace": str(token.workspace.uuid) if token is not None else None,
            "echo": str(content.get("echo", ""))[:200],
        }
        await apublish(self.group, message)

    async def pong(self, event: dict[str, Any]) -> None:
        await self.send_json(event)
