"""Every websocket message, as a typed dict whose ``type`` is the consumer handler's name, and
the one helper that publishes to a group."""

from __future__ import annotations

from typing import Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


class Pong(TypedDict):
    type: Literal["pong"]
    user: str
    workspace: str | None
    echo: str


Message = Pong


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


async def apublish(group: str, message: Message) -> None:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    await layer.group_send(group, dict(message))


def publish(group: str, message: Message) -> None:
    """Send ``message`` to every consumer in ``group`` (from sync code, e.g. on_commit)."""
    async_to_sync(apublish)(group, message)
