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


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


async def apublish(group: str, message: Message) -> None:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    await layer.group_send(group, dict(message))


def publish(group: str, message: Message) -> None:
    """Send ``message`` to every consumer in ``group`` (from sync code, e.g. on_commit)."""
    async_to_sync(apublish)(group, message)


class RunStatus(TypedDict):
    type: Literal["run_status"]
    run: str
    status: str


class StepStatus(TypedDict):
    type: Literal["step_status"]
    run: str
    step: str
    name: str
    status: str
    reused_from: str | None
    exit_code: int | None


class LogLines(TypedDict):
    type: Literal["log_lines"]
    step: str
    log: str
    # [[seq, stream, text], ...]
    lines: list[list[object]]


class MetricPoint(TypedDict):
    type: Literal["metric"]
    step: str
    name: str
    kind: str
    value: object


def run_group(run_uuid: object) -> str:
    return f"run-{run_uuid}"


Message = Pong | RunStatus | StepStatus | LogLines | MetricPoint
