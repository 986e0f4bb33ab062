"""The run page's live channel: status changes, log lines and metric points of one run."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.consumers import CLOSE_UNAUTHENTICATED
from portal.models import Workspace
from portal.realtime import run_group
from runs.logs import read_chunks
from runs.models import Metric, PipelineRun, StepRun

CLOSE_NOT_FOUND = 4404
REPLAY_BATCH = 5000


class RunConsumer(AsyncJsonWebsocketConsumer):
    """``ws/runs/<uuid>/``. Authorised in connect (members of the run's workspace; a token only
    in its own workspace), then joins ``run-<uuid>``.

    The client sends ``{"type": "follow", "after": {"<step uuid>": <last seq seen>}}`` (after a
    reconnect, the numbers it has): the consumer first replays stored lines after those
    numbers, then forwards live ones, dropping any line it already sent — so every line
    arrives exactly once, in order, whenever the client joins. Metric points work the same
    way for the steps named in ``"metrics_after": {"<step uuid>": <last metric seq seen>}``
    (a metric's seq is its id); other steps' points are forwarded live only.
    """

    run_uuid: str
    sent: dict[str, int]

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        raw = self.scope["url_route"]["kwargs"]["run_id"]
        if not await self._allowed(user, raw, self.scope.get("token")):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.run_uuid = str(UUID(raw))
        self.sent = {}
        self.metrics_sent: dict[str, int] = {}
        self.following = False
        await self.channel_layer.group_add(run_group(self.run_uuid), self.channel_name)
        await self.accept()

    @database_sync_to_async
    def _allowed(self, user: Any, raw: str, token: Any) -> bool:
        try:
            key = UUID(raw)
        except ValueError:
            return False
        workspaces = Workspace.objects.for_user(user, token)
        return PipelineRun.objects.filter(uuid=key, workspace__in=workspaces).exists()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "run_uuid"):
            await self.channel_layer.group_discard(run_group(self.run_uuid), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "follow":
            await self.send_json(
                {"type": "error", "detail": 'Send {"type": "follow", "after": {}}.'}
            )
            return
        after = content.get("after") or {}
        if not isinstance(after, dict):
            after = {}
        for step, seq in after.items():
            if isinstance(seq, int):
                self.sent[str(step)] = max(self.sent.get(str(step), 0), seq)
        for step_uuid, log_name, lines in await self._stored():
            await self._send_lines(step_uuid, log_name, lines)
        metrics_after = content.get("metrics_after") or {}
        if isinstance(metrics_after, dict):
            wanted = {str(k): v for k, v in metrics_after.items() if isinstance(v, int)}
            for point in await self._stored_metrics(wanted):
                await self._send_metric(point)
        self.following = True

    @database_sync_to_async
    def _stored(self) -> list[tuple[str, str, list[list[Any]]]]:
        out = []
        for step in StepRun.objects.filter(run__uuid=self.run_uuid).order_by("id"):
            key = str(step.uuid)
            for log_name, lines in read_chunks(step, after=self.sent.get(key, 0)):
                out.append((key, log_name, lines))
        return out

    @database_sync_to_async
    def _between(self, step: str, after: int, upto: int) -> list[tuple[str, list[list[Any]]]]:
        found = StepRun.objects.filter(uuid=step, run__uuid=self.run_uuid).first()
        return read_chunks(found, after=after, upto=upto) if found else []

    async def _send_lines(self, step: str, log: str, lines: list[list[Any]]) -> None:
        last = self.sent.get(step, 0)
        fresh = [line for line in lines if line[0] > last]
        if fresh and fresh[0][0] > last + 1:
            # A gap (a live message lost or late): fill it from the stored log first.
            for missing_log, missing in await self._between(step, last, fresh[0][0] - 1):
                await self._send_batch(step, missing_log, missing)
                last = missing[-1][0]
            self.sent[step] = last
        if fresh:
            await self._send_batch(step, log, fresh)
            self.sent[step] = fresh[-1][0]

    async def _send_batch(self, step: str, log: str, lines: list[list[Any]]) -> None:
        for start in range(0, len(lines), REPLAY_BATCH):
            batch = lines[start : start + REPLAY_BATCH]
            await self.send_json({"type": "log_lines", "step": step, "log": log, "lines": batch})

    async def log_lines(self, event: dict[str, Any]) -> None:
        # Live lines wait until the replay is done (consumers handle one message at a time).
        if self.following:
            await self._send_lines(event["step"], event["log"], event["lines"])

    async def step_status(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def run_status(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    @database_sync_to_async
    def _stored_metrics(self, after: dict[str, int]) -> list[dict[str, Any]]:
        valid = {}
        for key, seq in after.items():
            try:
                step = str(UUID(key))
            except ValueError:
                continue
            valid[step] = seq
            self.metrics_sent[step] = max(self.metrics_sent.get(step, 0), seq)
        points = []
        for found in StepRun.objects.filter(run__uuid=self.run_uuid, uuid__in=list(valid)):
            key = str(found.uuid)
            for metric in Metric.objects.filter(step_run=found, id__gt=valid[key]).order_by("id"):
                points.append(
                    {
                        "type": "metric",
                        "step": key,
                        "name": metric.name,
                        "kind": metric.kind,
                        "value": metric.value,
                        "seq": metric.pk,
                    }
                )
        return points

    async def _send_metric(self, event: dict[str, Any]) -> None:
        step, seq = str(event.get("step")), event.get("seq")
        if isinstance(seq, int) and step in self.metrics_sent:
            if seq <= self.metrics_sent[step]:
                return  # already replayed
            self.metrics_sent[step] = seq
        await self.send_json(event)

    async def metric(self, event: dict[str, Any]) -> None:
        if self.following:
            await self._send_metric(event)
