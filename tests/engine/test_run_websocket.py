"""The run's live channel (``ws/runs/<uuid>/``) through the real ASGI app and the real Redis
channel layer, against a run that a real worker executes: a client joining mid-step gets every
line exactly once and in order (replay, then live), a reconnecting client gets exactly what it
missed, and only members of the run's workspace may listen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from conftest import PASSWORD
from portal import services
from portal.asgi import application
from portal.consumers import CLOSE_UNAUTHENTICATED
from portal.models import Role
from portal.realtime import run_group
from runs.consumers import CLOSE_NOT_FOUND
from runs.models import Experiment, Metric, PipelineRun, Status, StepRun
from runs.services import submit_pipeline_run
from tests.engine.conftest import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TIMEOUT = 15.0  # one message / connect
OVERALL = 180.0  # a whole follow, start to Completed
DRAIN = 1.0  # after Completed, how long a silence ends the collection
N_LINES = 3000

# 3,000 numbered lines at about 300 per second, with a metric every 500 lines.
STREAM = """
import sys, time
from pipelines.sdk import Run
run = Run.get_context()
n = int(sys.argv[1])
for i in range(1, n + 1):
    print("line %d" % i, flush=True)
    if i % 500 == 0:
        run.log("progress", i)
    time.sleep(1 / 300)
print("done")
"""


def run_async(coro_fn: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(coro_fn)()


def session_cookie(username: str) -> tuple[bytes, bytes]:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    sessionid = client.cookies[settings.SESSION_COOKIE_NAME].value
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={sessionid}".encode())


def bearer(secret: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {secret}".encode())


def communicator(run: PipelineRun, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application,
        f"/ws/runs/{run.uuid}/",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"), *headers],
    )


async def close(conn: WebsocketCommunicator) -> None:
    # A receive that timed out has already cancelled the consumer: nothing left to close.
    if not conn.future.done():
        await conn.disconnect(timeout=TIMEOUT)


async def follow(
    conn: WebsocketCommunicator,
    after: dict[str, int],
    *,
    stop: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Send follow, then collect messages until the run_status Completed/Failed/Canceled message
    and a short silence after it (or until ``stop`` says so)."""
    await conn.send_json_to({"type": "follow", "after": after})
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + OVERALL
    ended = False
    while time.monotonic() < deadline:
        # receive_nothing, unlike a receive that times out, leaves the consumer running.
        if ended and await conn.receive_nothing(timeout=DRAIN):
            return messages
        try:
            message = await conn.receive_json_from(timeout=TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"no message for {TIMEOUT} s; got {len(messages)} so far"
            ) from None
        messages.append(message)
        if message["type"] == "run_status" and message["status"] in (
            Status.COMPLETED,
            Status.FAILED,
            Status.CANCELED,
        ):
            ended = True
        if stop is not None and stop(messages):
            return messages
    raise AssertionError(f"the follow did not end within {OVERALL} s")


def lines_of(messages: list[dict[str, Any]], step: str) -> list[list[Any]]:
    return [
        line
        for m in messages
        if m["type"] == "log_lines" and m["step"] == step
        for line in m["lines"]
    ]


def numbered(lines: list[list[Any]]) -> list[int]:
    return [int(text.split()[1]) for _, _, text in lines if text.startswith("line ")]


def submit_stream(engine_ws: Any, alice: Any, snapshot_of: Any) -> tuple[PipelineRun, StepRun]:
    digest = snapshot_of({"stream.py": STREAM})
    run = submit_pipeline_run(
        actor=services.Actor(user=alice),
        workspace=engine_ws,
        experiment_name="live",
        graph={
            "steps": [
                {
                    "name": "stream",
                    "script": "stream.py",
                    "snapshot": digest,
                    "compute_target": "local",
                    "arguments": [N_LINES],
                }
            ]
        },
    )
    return run, StepRun.objects.get(run=run, name="stream")


def wait_for_lines(step: StepRun, at_least: int, worker: Any) -> None:
    """Until the step has stored ``at_least`` lines (of any of its logs)."""
    deadline = time.monotonic() + OVERALL
    while time.monotonic() < deadline:
        step.refresh_from_db()
        if step.log_seq >= at_least:
            return
        if step.status in (Status.COMPLETED, Status.FAILED, Status.CANCELED):
            break
        time.sleep(0.05)
    raise AssertionError(f"step {step.status} with {step.log_seq} lines\n{worker.tail()}")


def test_a_client_joining_mid_step_gets_every_line_once_in_order_and_a_reconnect_gets_the_rest(
    worker, engine_ws, alice, snapshot_of
):
    run, step = submit_stream(engine_ws, alice, snapshot_of)
    key = str(step.uuid)
    wait_for_lines(step, 300, worker)
    assert step.status == Status.RUNNING, "the client must join while the step prints"
    cookie = session_cookie("alice")
    results: dict[str, Any] = {}

    async def whole() -> None:
        conn = communicator(run, cookie)
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected
            results["whole"] = await follow(conn, {})
        finally:
            await close(conn)

    async def dropped_then_back() -> None:
        # The first connection goes away after some lines, as a flaky network would do it.
        conn = communicator(run, cookie)
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected
            before = await follow(conn, {}, stop=lambda ms: len(numbered(lines_of(ms, key))) >= 600)
        finally:
            await close(conn)
        seen = lines_of(before, key)
        last = seen[-1][0]
        results["before"], results["last"] = seen, last
        conn = communicator(run, cookie)
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected
            results["after"] = await follow(conn, {key: last})
        finally:
            await close(conn)

    async def both() -> None:
        await asyncio.gather(whole(), dropped_then_back())

    run_async(both)
    run = wait_for(run, worker)
    assert run.status == Status.COMPLETED
    step.refresh_from_db()
    total = step.log_seq

    # The client that stayed: every stored line of the step exactly once, in order.
    whole_messages = results["whole"]
    lines = lines_of(whole_messages, key)
    assert [seq for seq, _, _ in lines] == list(range(1, total + 1))
    assert numbered(lines) == list(range(1, N_LINES + 1))
    statuses = [
        m["status"] for m in whole_messages if m["type"] == "step_status" and m["step"] == key
    ]
    assert Status.COMPLETED in statuses
    progress = [m for m in whole_messages if m["type"] == "metric" and m["name"] == "progress"]
    assert progress, "metric messages should arrive live"
    assert all(m["step"] == key and m["kind"] == "scalar" for m in progress)
    values = [m["value"] for m in progress]
    assert values == sorted(values)
    assert values[-1] == N_LINES
    run_statuses = [m["status"] for m in whole_messages if m["type"] == "run_status"]
    assert run_statuses[-1] == Status.COMPLETED

    # The reconnecting client: before the drop 1..k, after it exactly k+1..N.
    last = results["last"]
    assert [seq for seq, _, _ in results["before"]] == list(range(1, last + 1))
    after = lines_of(results["after"], key)
    assert [seq for seq, _, _ in after] == list(range(last + 1, total + 1))
    assert numbered(results["before"]) + numbered(after) == list(range(1, N_LINES + 1))


def test_a_client_joining_after_the_run_gets_the_stored_log(worker, engine_ws, alice, snapshot_of):
    """Replay alone (the run is over): every line once, then nothing more."""
    run, step = submit_stream(engine_ws, alice, snapshot_of)
    run = wait_for(run, worker)
    assert run.status == Status.COMPLETED
    step.refresh_from_db()
    cookie = session_cookie("alice")
    got: list[dict[str, Any]] = []

    async def body() -> None:
        conn = communicator(run, cookie)
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected
            await conn.send_json_to({"type": "follow", "after": {}})
            while not await conn.receive_nothing(timeout=2.0):
                got.append(await conn.receive_json_from(timeout=TIMEOUT))
        finally:
            await close(conn)

    run_async(body)
    lines = lines_of(got, str(step.uuid))
    assert [seq for seq, _, _ in lines] == list(range(1, step.log_seq + 1))
    assert numbered(lines) == list(range(1, N_LINES + 1))


def connect_code(run: PipelineRun, *headers: tuple[bytes, bytes]) -> tuple[bool, int | None]:
    result: list[tuple[bool, int | None]] = []

    async def body() -> None:
        conn = communicator(run, *headers)
        try:
            result.append(await conn.connect(timeout=TIMEOUT))
        finally:
            await close(conn)

    run_async(body)
    return result[0]


def test_only_members_of_the_runs_workspace_may_listen(
    worker, engine_ws, alice, charlie, other, make_token, snapshot_of
):
    digest = snapshot_of({"quick.py": "print('quick')\n"})
    run = submit_pipeline_run(
        actor=services.Actor(user=alice),
        workspace=engine_ws,
        experiment_name="private",
        graph={
            "steps": [
                {"name": "q", "script": "quick.py", "snapshot": digest, "compute_target": "local"}
            ]
        },
    )
    run = wait_for(run, worker)
    assert run.status == Status.COMPLETED
    # An outsider with a session, and with a token of his own workspace: not found.
    assert connect_code(run, session_cookie("charlie")) == (False, CLOSE_NOT_FOUND)
    assert connect_code(run, bearer(make_token(charlie, other))) == (False, CLOSE_NOT_FOUND)
    # Anonymous: unauthenticated.
    assert connect_code(run) == (False, CLOSE_UNAUTHENTICATED)
    # A member's token of another workspace does not reach this one.
    services.add_member(
        actor=services.Actor(user=charlie), workspace=other, username="alice", role=Role.READER
    )
    assert connect_code(run, bearer(make_token(alice, other))) == (False, CLOSE_NOT_FOUND)
    # A member, by session or by a token of the run's workspace, may.
    assert connect_code(run, session_cookie("alice"))[0] is True
    assert connect_code(run, bearer(make_token(alice, engine_ws)))[0] is True
    # A path that is not a uuid, or a run that does not exist, is not found either.
    missing = PipelineRun(uuid="00000000-0000-0000-0000-000000000000")
    assert connect_code(missing, session_cookie("alice")) == (False, CLOSE_NOT_FOUND)


FAST = """
import sys, time
n = int(sys.argv[1])
for start in range(1, n + 1, 2000):
    sys.stdout.write("".join("line %d\\n" % i for i in range(start, min(start + 2000, n + 1))))
    sys.stdout.flush()
    time.sleep(0.02)
"""
FAST_LINES = 200_000


def test_a_fast_step_reaches_a_following_client_without_loss(worker, engine_ws, alice, snapshot_of):
    """Tens of thousands of lines a second (the design's budget is 20,000/s with no loss):
    many live messages, flushed from two threads of the worker, while the client replays."""
    digest = snapshot_of({"fast.py": FAST})
    run = submit_pipeline_run(
        actor=services.Actor(user=alice),
        workspace=engine_ws,
        experiment_name="fast",
        graph={
            "steps": [
                {
                    "name": "fast",
                    "script": "fast.py",
                    "snapshot": digest,
                    "compute_target": "local",
                    "arguments": [FAST_LINES],
                }
            ]
        },
    )
    step = StepRun.objects.get(run=run, name="fast")
    key = str(step.uuid)
    wait_for_lines(step, 20_000, worker)
    cookie = session_cookie("alice")
    got: list[dict[str, Any]] = []

    async def body() -> None:
        conn = communicator(run, cookie)
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected
            got.extend(await follow(conn, {}))
        finally:
            await close(conn)

    run_async(body)
    run = wait_for(run, worker)
    assert run.status == Status.COMPLETED
    step.refresh_from_db()
    seqs = [seq for seq, _, _ in lines_of(got, key)]
    missing = sorted(set(range(1, step.log_seq + 1)) - set(seqs))
    assert not missing, f"{len(missing)} lines never arrived, first {missing[:5]}"
    assert seqs == list(range(1, step.log_seq + 1))
    assert numbered(lines_of(got, key)) == list(range(1, FAST_LINES + 1))


def test_metric_points_are_replayed_after_the_last_seen_and_never_sent_twice(
    alice: Any, make_token: Any, ws: Any
) -> None:
    """Metrics work like log lines: ``metrics_after`` names the last point a client has (a
    metric's seq is its id); stored later ones are replayed, live ones already replayed are
    dropped, later live ones pass."""
    run = PipelineRun.objects.create(
        workspace=ws,
        experiment=Experiment.objects.create(workspace=ws, name="metrics"),
        graph={"steps": []},
    )
    step = StepRun.objects.create(run=run, name="train", spec={})
    stored = [
        Metric.objects.create(step_run=step, name="loss", kind="scalar", value=v, seq=i)
        for i, v in enumerate([0.9, 0.5, 0.3])
    ]
    key = str(step.uuid)
    secret = make_token(alice, ws)

    async def scenario() -> None:
        conn = communicator(run, bearer(secret))
        connected, _ = await conn.connect(timeout=TIMEOUT)
        assert connected
        await conn.send_json_to(
            {"type": "follow", "after": {}, "metrics_after": {key: stored[0].pk}}
        )
        replayed = [await conn.receive_json_from(timeout=TIMEOUT) for _ in range(2)]
        assert [(m["seq"], m["value"]) for m in replayed] == [
            (stored[1].pk, 0.5),
            (stored[2].pk, 0.3),
        ]
        layer = get_channel_layer()
        assert layer is not None
        base = {"type": "metric", "step": key, "name": "loss", "kind": "scalar"}
        # The live copy of a replayed point arrives late: it is dropped; a new one passes.
        await layer.group_send(run_group(run.uuid), {**base, "value": 0.3, "seq": stored[2].pk})
        await layer.group_send(run_group(run.uuid), {**base, "value": 0.2, "seq": stored[2].pk + 1})
        live = await conn.receive_json_from(timeout=TIMEOUT)
        assert (live["seq"], live["value"]) == (stored[2].pk + 1, 0.2)
        assert await conn.receive_nothing(timeout=DRAIN)
        await close(conn)

    run_async(scenario)
