"""Every websocket message, as a typed dict whose ``type`` is the consumer handler's name, and
the one helper that publishes to a group."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Literal, TypedDict

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


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


class _Publisher:
    """One event loop thread per process that sends messages in the order they were handed
    in, over one long-lived Redis connection. Sync callers (workers, views) never wait for
    Redis, and a new loop and connection per message (async_to_sync) is avoided."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] | None = None
        self._idle = threading.Event()
        self._pending = 0

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # new, or we were forked
                self._pid = os.getpid()
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._serve, args=(loop, ready), name="millrace-publish", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._queue = asyncio.Queue()
        ready.set()
        loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        assert self._queue is not None
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS is not configured"
        while True:
            item = await self._queue.get()
            if item is None:
                return
            group, message = item
            try:
                await layer.group_send(group, message)
            except Exception:
                log.warning("Could not publish to %s", group, exc_info=True)
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.set()

    def send(self, group: str, message: dict[str, Any]) -> None:
        loop = self._ensure()
        with self._lock:
            self._pending += 1
            self._idle.clear()
        assert self._queue is not None
        loop.call_soon_threadsafe(self._queue.put_nowait, (group, message))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything handed in so far was sent (for tests and shutdown)."""
        with self._lock:
            if self._pending == 0:
                return True
        return self._idle.wait(timeout)


_publisher = _Publisher()


def publish(group: str, message: Message) -> None:
    """Send ``message`` to every consumer in ``group`` from sync code, in order, without
    waiting for Redis (delivery is best effort: the database row is the truth)."""
    _publisher.send(group, dict(message))


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
    seq: int  # the metric's id: increasing within a step, across attempts


def run_group(run_uuid: object) -> str:
    return f"run-{run_uuid}"


Message = Pong | RunStatus | StepStatus | LogLines | MetricPoint
