"""Following a run from the SDK, without a Millrace server.

One seam is faked: the server. Its REST side is a ``FakeClient`` (an HttpClient whose
``request`` answers from a scripted ``World`` instead of the network); its websocket side is a
real ``websockets`` server on a free local port, at the URL the SDK derives from the client's
base URL, replaying the same World. Everything else (following, reconnecting, polling, printing,
errors) is the SDK's real code.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

import pipelines.sdk._follow as follow_module
from pipelines.sdk import Workspace
from pipelines.sdk._follow import websocket_url
from pipelines.sdk._http import HttpClient, error_for
from pipelines.sdk.exceptions import (
    ActivityFailedException,
    NotFoundError,
    RunFailedError,
    RunTimeoutError,
    ValidationError,
)
from pipelines.sdk.experiment import Experiment
from pipelines.sdk.pipeline_run import PipelineRun
from pipelines.sdk.unsupported import (
    PipelineEndpoint,
    PublishedPipeline,
    Schedule,
    ScheduleRecurrence,
)

SECRET = "mlr_follow_unit_secret_0123456789"
WS_ID = "6f1c1f3e-9a43-4c1b-8d1e-1d2c3b4a5f60"
RUN_ID = "0b7c2f4e-1111-4c1b-8d1e-000000000001"
TRAIN = "0b7c2f4e-2222-4c1b-8d1e-000000000002"
SCORE = "0b7c2f4e-3333-4c1b-8d1e-000000000003"
API = f"workspaces/{WS_ID}/"
RUN_PATH = f"{API}runs/{RUN_ID}/"


# ----- the fake server's state ---------------------------------------------------------------


@dataclass
class Line:
    seq: int
    log: str
    stream: str
    text: str
    visible: bool = True  # False: the number is taken, the line not committed yet


@dataclass
class World:
    """One run as the server knows it; the REST fake and the websocket server both read it."""

    run_status: str = "Running"
    run_error: str = ""
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, list[Line]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def step(self, sid: str, name: str, status: str = "Queued", **extra: Any) -> None:
        self.steps[sid] = {
            "id": sid,
            "name": name,
            "status": status,
            "reused_from": None,
            "error": "",
            "started_at": None,
            "log_seq": 0,
            **extra,
        }
        self.lines[sid] = []

    def add(
        self, sid: str, text: str, *, log: str = "driver", stream: str = "stdout", visible=True
    ) -> list[Any]:
        with self.lock:
            self.steps[sid]["log_seq"] += 1
            line = Line(self.steps[sid]["log_seq"], log, stream, text, visible)
            self.lines[sid].append(line)
            return [line.seq, line.stream, line.text]

    def reveal(self, sid: str) -> None:
        with self.lock:
            for line in self.lines[sid]:
                line.visible = True

    def detail(self) -> dict[str, Any]:
        with self.lock:
            return {
                "id": RUN_ID,
                "experiment": "exp",
                "status": self.run_status,
                "error": self.run_error,
                "tags": {},
                "parameters": {},
                "source": "sdk",
                "portal_url": f"/w/{WS_ID}/runs/{RUN_ID}/",
                "steps": [dict(s) for s in self.steps.values()],
            }

    def logs(self, sid: str, log: str, after: int, limit: int) -> dict[str, Any]:
        """Like the server: reads a window of numbers over all logs, answers one log's lines."""
        with self.lock:
            visible = [line for line in self.lines[sid] if line.visible]
            window = [line for line in visible if after < line.seq <= after + limit * 4]
            last = max([after, *(line.seq for line in window)])
            picked = [x for x in window if x.log == log]
            if len(picked) > limit:
                picked, last = picked[:limit], picked[limit - 1].seq
            lines = [[x.seq, x.stream, x.text] for x in picked]
            order = ["driver", "prep", "build", "post"]
            return {
                "log": log,
                "lines": lines,
                "last_seq": last,
                "more": last < self.steps[sid]["log_seq"],
                "logs": sorted({x.log for x in visible}, key=order.index),
            }

    def stored_after(self, after: dict[str, int]) -> Iterator[dict[str, Any]]:
        with self.lock:
            for sid, lines in self.lines.items():
                for line in lines:
                    if line.visible and line.seq > after.get(sid, 0):
                        yield {
                            "type": "log_lines",
                            "step": sid,
                            "log": line.log,
                            "lines": [[line.seq, line.stream, line.text]],
                        }


# ----- the REST side: an HttpClient answering from the World ---------------------------------


class FakeClient(HttpClient):
    """An HttpClient whose requests are answered by ``route`` instead of the network."""

    def __init__(self, url: str, world: World) -> None:
        super().__init__(url, SECRET)
        self.world = world
        self.calls: list[tuple[str, str, Any]] = []
        self.on_detail: Callable[[int], None] | None = None  # called before each run GET
        self.details = 0
        self.runs_pages: dict[str, dict[str, Any]] = {}
        self.posted: list[tuple[str, Any]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        params = dict(kwargs.get("params") or {})
        self.calls.append((method, path, params))
        status, body = self.route(method, path, params, kwargs.get("json"))
        response = requests.Response()
        response.status_code = status
        response.url = self.url_for(path)
        if isinstance(body, str):
            response._content = body.encode()
            response.headers["Content-Type"] = "text/plain"
        else:
            response._content = json.dumps(body).encode()
            response.headers["Content-Type"] = "application/json"
        if status >= 400:
            raise error_for(response)
        return response

    def route(self, method: str, path: str, params: dict[str, Any], body: Any) -> tuple[int, Any]:
        world = self.world
        if method == "POST":
            self.posted.append((path, body))
            if path == f"{API}runs/":
                return 201, world.detail()
            if path == f"{RUN_PATH}cancel/":
                world.run_status = "CancelRequested"
                return 200, world.detail()
            return 404, {"detail": "Not found."}
        if path == RUN_PATH:
            self.details += 1
            if self.on_detail is not None:
                self.on_detail(self.details)
            return 200, world.detail()
        if path == f"{RUN_PATH}steps/":
            return 200, world.detail()["steps"]
        if path.startswith(f"{RUN_PATH}steps/") and path.endswith("/logs/"):
            sid = path.split("/")[-3]
            if params.get("format") == "text":
                lines = [x for x in world.lines[sid] if x.log == params.get("log", "driver")]
                return 200, "".join(f"{x.text}\n" for x in lines)
            return 200, world.logs(
                sid,
                str(params.get("log", "driver")),
                int(params.get("after", 0)),
                int(params.get("limit", 10_000)),
            )
        if path.startswith(f"{RUN_PATH}steps/") and path.endswith("/outputs/"):
            return 200, {
                "outputs": [
                    {
                        "name": "model",
                        "datastore": "workspaceblobstore",
                        "path": f"azureml/{TRAIN}/model/",
                        "kind": "pipeline_data",
                        "file_count": 1,
                    },
                    {
                        "name": "plots/loss.png",
                        "datastore": "workspaceblobstore",
                        "path": f"azureml/{TRAIN}/files/plots/loss.png",
                        "kind": "file",
                        "file_count": None,
                    },
                ]
            }
        if path == f"{API}runs/":
            cursor = (params.get("cursor") or [""])[0] if "cursor" in params else ""
            return 200, self.runs_pages[cursor]
        return 404, {"detail": "Not found."}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----- the websocket side: a real server on a free port --------------------------------------


class FakeSocketServer:
    """``websockets`` server replaying the World: each connection waits for ``follow``, sends
    the stored lines after the client's numbers, then runs the script given for that
    connection (``script(conn, world, n)``, n = 1 for the first connection)."""

    def __init__(
        self,
        world: World,
        scripts: list[Callable[[ServerConnection, World], None]],
        *,
        reject_with: int | None = None,
        overlap: int = 0,
    ) -> None:
        self.world = world
        self.scripts = scripts
        self.follows: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.handshakes = 0
        self.overlap = overlap
        self.reject_with = reject_with
        self.server: Server = serve(
            self.handle, "127.0.0.1", 0, process_request=self.process_request
        )
        self.port = self.server.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def process_request(self, conn: ServerConnection, request: Any) -> Any:
        self.handshakes += 1
        self.headers.append({k.lower(): v for k, v in request.headers.raw_items()})
        if self.reject_with is not None:
            return conn.respond(self.reject_with, "No websockets here.\n")
        return None

    def handle(self, conn: ServerConnection) -> None:
        number = len(self.follows)
        if number >= len(self.scripts):
            conn.close()
            return
        follow = json.loads(conn.recv(timeout=10))
        self.follows.append(follow)
        after = {k: max(0, v - self.overlap) for k, v in (follow.get("after") or {}).items()}
        for message in list(self.world.stored_after(after)):
            conn.send(json.dumps(message))
        self.scripts[number](conn, self.world)

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def drop(conn: ServerConnection) -> None:
    """Lose the connection the hard way: no closing handshake."""
    with contextlib.suppress(OSError):
        conn.socket.shutdown(socket.SHUT_RDWR)
    conn.socket.close()


def until_closed(conn: ServerConnection) -> None:
    """Keep the connection open until the client closes it."""
    with contextlib.suppress(ConnectionClosed):
        conn.recv(timeout=30)


def send_lines(conn: ServerConnection, world: World, sid: str, texts: list[str]) -> None:
    lines = [world.add(sid, text) for text in texts]
    conn.send(json.dumps({"type": "log_lines", "step": sid, "log": "driver", "lines": lines}))


def send_status(conn: ServerConnection, world: World, sid: str | None, status: str) -> None:
    if sid is None:
        world.run_status = status
        conn.send(json.dumps({"type": "run_status", "run": RUN_ID, "status": status}))
        return
    world.steps[sid]["status"] = status
    name = world.steps[sid]["name"]
    message = {"type": "step_status", "run": RUN_ID, "step": sid, "name": name, "status": status}
    conn.send(json.dumps({**message, "reused_from": None, "exit_code": None}))


# ----- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(follow_module.WEBSOCKET_ENV, raising=False)
    monkeypatch.setattr(follow_module, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(follow_module, "RECONNECT_DELAYS", (0.01, 0.01, 0.01))


@pytest.fixture
def world() -> World:
    w = World()
    w.step(TRAIN, "train", "Running", started_at="2026-01-01T10:00:01Z")
    return w


@pytest.fixture
def servers() -> Iterator[list[FakeSocketServer]]:
    made: list[FakeSocketServer] = []
    yield made
    for server in made:
        server.close()


def run_on(url: str, world: World) -> tuple[PipelineRun, FakeClient]:
    client = FakeClient(url, world)
    workspace = Workspace._from_data(client, {"id": WS_ID, "slug": "forecast", "name": "F"})
    return PipelineRun._from_data(Experiment(workspace, "exp"), world.detail()), client


def printed_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[")]


def numbered(n: int, first: int = 1) -> list[str]:
    return [f"line {i}" for i in range(first, first + n)]


# ----- the websocket path --------------------------------------------------------------------


def test_every_line_is_printed_once_in_order_across_a_lost_connection(world, servers, capsys):
    for text in numbered(3):  # stored before the client comes: replayed
        world.add(TRAIN, text)

    def first(conn: ServerConnection, w: World) -> None:
        send_lines(conn, w, TRAIN, numbered(2, 4))
        for text in numbered(3, 6):  # written while the connection is being lost
            w.add(TRAIN, text)
        drop(conn)

    def second(conn: ServerConnection, w: World) -> None:
        send_lines(conn, w, TRAIN, numbered(2, 9))
        send_status(conn, w, TRAIN, "Completed")
        send_status(conn, w, None, "Completed")
        until_closed(conn)

    # overlap=2: the second replay starts two lines early; the client must drop them.
    server = FakeSocketServer(world, [first, second], overlap=2)
    servers.append(server)
    run, client = run_on(server.url, world)

    details = run.wait_for_completion(show_output=True)

    out = capsys.readouterr().out
    assert printed_lines(out) == [f"[train] {t}" for t in numbered(10)]
    assert [f["after"] for f in server.follows] == [{}, {TRAIN: 5}]
    assert details["status"] == "Completed" and details["runId"] == RUN_ID
    assert out.index("StepRun: train → Running") < out.index("[train] line 1")
    assert out.index("[train] line 10") < out.index("StepRun: train → Completed")
    assert "PipelineRun Status: Completed" in out
    assert not client.posted  # following never writes


def test_the_handshake_carries_the_token_and_an_origin_and_the_url_follows_the_base(
    world, servers, capsys
):
    world.run_status = "Completed"
    world.steps[TRAIN]["status"] = "Completed"
    server = FakeSocketServer(world, [lambda conn, w: until_closed(conn)])
    servers.append(server)
    run, _ = run_on(server.url, world)

    run.wait_for_completion(show_output=False)

    assert server.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert server.headers[0]["origin"] == server.url
    assert websocket_url("http://h:8000", "r") == "ws://h:8000/ws/runs/r/"
    assert websocket_url("https://h/prefix/", "r") == "wss://h/prefix/ws/runs/r/"


def test_a_quiet_websocket_is_checked_against_the_rest_api(world, servers, capsys, monkeypatch):
    # The live message announcing the end never comes (realtime is best effort).
    monkeypatch.setattr(follow_module, "CHECK_SECONDS", 0.05)

    def silent(conn: ServerConnection, w: World) -> None:
        send_lines(conn, w, TRAIN, ["only line"])
        w.add(TRAIN, "stored, never sent live")
        w.steps[TRAIN]["status"] = "Completed"
        w.run_status = "Completed"
        until_closed(conn)

    server = FakeSocketServer(world, [silent])
    servers.append(server)
    run, _ = run_on(server.url, world)

    assert run.wait_for_completion()["status"] == "Completed"

    out = capsys.readouterr().out
    assert printed_lines(out) == ["[train] only line", "[train] stored, never sent live"]


def test_when_reconnecting_fails_polling_takes_over_without_gap_or_repeat(world, servers, capsys):
    def only(conn: ServerConnection, w: World) -> None:
        send_lines(conn, w, TRAIN, numbered(4))
        server.reject_with = 503  # from now on every reconnection is refused
        drop(conn)

    server = FakeSocketServer(world, [only])
    servers.append(server)
    run, client = run_on(server.url, world)

    def later(n: int) -> None:
        if n == 2:  # the first poll
            for text in numbered(3, 5):
                world.add(TRAIN, text)
        if n == 3:
            world.steps[TRAIN]["status"] = "Completed"
            world.run_status = "Completed"

    client.on_detail = later
    run.wait_for_completion()

    assert printed_lines(capsys.readouterr().out) == [f"[train] {t}" for t in numbered(7)]
    assert server.handshakes == 1 + len(follow_module.RECONNECT_DELAYS)


def test_a_server_that_accepts_and_drops_every_time_gives_way_to_polling(world, servers, capsys):
    def dropping(conn: ServerConnection, w: World) -> None:
        drop(conn)

    server = FakeSocketServer(world, [dropping] * 50)
    servers.append(server)
    run, client = run_on(server.url, world)
    world.add(TRAIN, "line 1")

    def later(n: int) -> None:
        if n == 8:
            world.steps[TRAIN]["status"] = "Completed"
            world.run_status = "Completed"

    client.on_detail = later
    assert run.wait_for_completion()["status"] == "Completed"

    assert printed_lines(capsys.readouterr().out) == ["[train] line 1"]
    assert server.handshakes <= 2 + len(follow_module.RECONNECT_DELAYS)


# ----- polling -------------------------------------------------------------------------------


def scripted_run(world: World) -> Callable[[int], None]:
    """Stages of a run, one per GET of the run: prep lines, a line whose number is taken but
    not yet readable, driver lines, the post log, the end."""

    def stage(n: int) -> None:
        if n == 2:
            world.add(TRAIN, "fetching inputs", log="prep")
            world.add(TRAIN, "line 1")
        if n == 3:
            world.add(TRAIN, "line 2")
            world.add(TRAIN, "inputs ready", log="prep", visible=False)
            world.add(TRAIN, "line 3")  # readable before the prep line above
        if n == 4:
            world.reveal(TRAIN)
            world.add(TRAIN, "oops", stream="stderr")
        if n == 5:
            world.add(TRAIN, "Output 'model': 1 file(s)", log="post")
            world.steps[TRAIN]["status"] = "Completed"
            world.run_status = "Completed"

    return stage


EXPECTED_POLLED = [
    "[train prep] fetching inputs",
    "[train] line 1",
    "[train] line 2",
    "[train prep] inputs ready",
    "[train] line 3",
    "[train] oops",
    "[train post] Output 'model': 1 file(s)",
]


@pytest.mark.parametrize("why", ["refused", "http-404", "disabled"])
def test_polling_prints_the_same_lines_when_the_websocket_cannot_be_used(
    why, world, servers, capsys, monkeypatch
):
    world.steps[TRAIN]["status"] = "Queued"
    if why == "refused":
        url = f"http://127.0.0.1:{free_port()}"
    elif why == "http-404":
        server = FakeSocketServer(world, [], reject_with=404)
        servers.append(server)
        url = server.url
    else:
        server = FakeSocketServer(world, [])
        servers.append(server)
        url = server.url
        monkeypatch.setenv(follow_module.WEBSOCKET_ENV, "0")
    run, client = run_on(url, world)
    stage = scripted_run(world)

    def later(n: int) -> None:
        stage(n)
        if n == 2:
            world.steps[TRAIN]["status"] = "Running"

    client.on_detail = later

    details = run.wait_for_completion(show_output=True)

    out = capsys.readouterr().out
    assert printed_lines(out) == EXPECTED_POLLED
    assert details["status"] == "Completed"
    assert out.index("StepRun: train → Queued") < out.index("StepRun: train → Running")
    assert out.index("[train post]") < out.index("StepRun: train → Completed")
    if why == "http-404":
        assert servers[0].handshakes == 1
    if why == "disabled":
        assert servers[0].handshakes == 0


def test_a_reused_step_is_announced_and_its_origin_logs_are_not_replayed(world, capsys):
    world.step(SCORE, "score", "Completed", reused_from={"run": "r0", "step": "s0"})
    world.steps[TRAIN]["status"] = "Completed"
    world.add(TRAIN, "trained")
    world.run_status = "Completed"
    run, _ = run_on(f"http://127.0.0.1:{free_port()}", world)

    run.wait_for_completion()

    out = capsys.readouterr().out
    assert "StepRun: score → Completed (reused from an earlier run)" in out
    assert printed_lines(out) == ["[train] trained"]


# ----- endings -------------------------------------------------------------------------------


def failing(world: World) -> None:
    world.step(SCORE, "score", "Canceled", error="Skipped: 'train' failed.")
    world.add(TRAIN, "loading data")
    world.add(TRAIN, "Traceback (most recent call last):", stream="stderr")
    world.add(TRAIN, "ValueError: bad input", stream="stderr")
    world.steps[TRAIN].update(status="Failed", error="The script exited with code 1.")
    world.run_status = "Failed"


@pytest.mark.parametrize("show_output", [True, False])
def test_a_failed_run_raises_naming_the_step_its_error_and_last_lines(world, show_output, capsys):
    failing(world)
    run, _ = run_on(f"http://127.0.0.1:{free_port()}", world)

    with pytest.raises(RunFailedError) as caught:
        run.wait_for_completion(show_output=show_output)

    error = caught.value
    assert isinstance(error, ActivityFailedException)
    assert "train" in str(error) and "The script exited with code 1." in str(error)
    assert "ValueError: bad input" in str(error)
    assert [s["name"] for s in error.failed_steps] == ["train"]
    assert error.failed_steps[0]["log_tail"][-1] == "ValueError: bad input"
    assert error.run_id == RUN_ID and error.status == "Failed"
    out = capsys.readouterr().out
    assert ("[train] ValueError: bad input" in out) == show_output


def test_raise_on_error_false_returns_the_failed_details(world, capsys):
    failing(world)
    run, _ = run_on(f"http://127.0.0.1:{free_port()}", world)

    details = run.wait_for_completion(raise_on_error=False)

    assert details["status"] == "Failed"
    assert "train" in details["error"]["error"]["message"]
    assert run.status == "Failed"


def test_a_canceled_run_returns_without_raising(world, capsys):
    world.steps[TRAIN].update(status="Canceled", error="Canceled on request.")
    world.run_status = "Canceled"
    run, _ = run_on(f"http://127.0.0.1:{free_port()}", world)

    assert run.wait_for_completion()["status"] == "Canceled"


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_the_wait_times_out_naming_the_run_and_its_status(world, servers, transport, capsys):
    if transport == "websocket":
        server = FakeSocketServer(world, [lambda conn, w: until_closed(conn)])
        servers.append(server)
        url = server.url
    else:
        url = f"http://127.0.0.1:{free_port()}"
    run, _ = run_on(url, world)

    with pytest.raises(RunTimeoutError) as caught:
        run.wait_for_completion(timeout_seconds=0.3)

    assert isinstance(caught.value, TimeoutError)
    assert RUN_ID in str(caught.value) and "Running" in str(caught.value)
    assert caught.value.status == "Running"


def test_ctrl_c_stops_following_without_canceling_the_run(world, capsys):
    run, client = run_on(f"http://127.0.0.1:{free_port()}", world)

    def interrupt(n: int) -> None:
        if n == 3:
            raise KeyboardInterrupt

    client.on_detail = interrupt

    with pytest.raises(KeyboardInterrupt):
        run.wait_for_completion()

    assert not client.posted
    assert "it goes on" in capsys.readouterr().err


def test_a_run_this_token_cannot_see_is_not_found(world):
    client = FakeClient(f"http://127.0.0.1:{free_port()}", world)
    workspace = Workspace._from_data(client, {"id": WS_ID, "slug": "forecast", "name": "F"})

    with pytest.raises(NotFoundError, match="not found in workspace 'forecast'"):
        PipelineRun(Experiment(workspace, "exp"), "0b7c2f4e-9999-4c1b-8d1e-000000000009")


# ----- the rest of the run's surface, over the same fake -------------------------------------


class FakePipeline:
    """What Experiment.submit needs of a Pipeline (the authoring helper's interface)."""

    def __init__(self) -> None:
        self.progress: list[bool] = []

    def _submission(
        self, show_progress: bool = True, parameters: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.progress.append(show_progress)
        return {"graph": {"steps": []}, "pipeline_name": "p", "description": "d"}

    def _parameter_values(self, pipeline_parameters: dict[str, Any] | None) -> dict[str, Any]:
        return {"n": 1, **(pipeline_parameters or {})}


def test_submit_sends_the_graph_and_options_and_prints_the_link(world, capsys):
    run, client = run_on("http://127.0.0.1:9", world)
    pipeline = FakePipeline()

    submitted = run.experiment.submit(
        pipeline,
        pipeline_parameters={"n": 3},
        regenerate_outputs=True,
        tags={"team": "a"},
        show_progress=False,
        credential_passthrough=True,
    )

    path, body = client.posted[0]
    assert path == f"{API}runs/"
    assert body == {
        "experiment_name": "exp",
        "graph": {"steps": []},
        "pipeline_name": "p",
        "description": "d",
        "parameters": {"n": 3},
        "tags": {"team": "a"},
        "regenerate_outputs": True,
        "continue_on_step_failure": False,
        "source": "sdk",
    }
    assert pipeline.progress == [False]
    assert submitted.id == RUN_ID
    out = capsys.readouterr().out
    assert f"Submitted PipelineRun {RUN_ID}" in out
    assert f"Link to the portal: http://127.0.0.1:9/w/{WS_ID}/runs/{RUN_ID}/" in out


class ScriptRunConfig:
    pass


@pytest.mark.parametrize("config", [ScriptRunConfig(), "train.py"])
def test_submitting_anything_but_a_pipeline_names_its_type(world, config):
    run, client = run_on("http://127.0.0.1:9", world)

    with pytest.raises(NotImplementedError, match=type(config).__name__):
        run.experiment.submit(config)

    assert not client.posted


def test_get_runs_follows_absolute_next_urls_newest_first(world):
    run, client = run_on("http://127.0.0.1:9", world)
    first, second = dict(world.detail(), id="r2"), dict(world.detail(), id="r1")
    client.runs_pages = {
        # A proxy in front of the server: next names the server's own host.
        "": {"next": f"http://internal:8000/api/v1/{API}runs/?cursor=abc&experiment=exp"}
        | {"results": [first]},
        "abc": {"next": None, "results": [second]},
    }

    runs = list(run.experiment.get_runs(tags={"team": "a"}))

    assert [r.id for r in runs] == ["r2", "r1"]
    gets = [c for c in client.calls if c[1] == f"{API}runs/"]
    assert gets[0][2] == {"experiment": "exp", "tag": ["team:a"]}
    assert gets[1][2] == {"cursor": ["abc"], "experiment": ["exp"]}


def test_steps_come_newest_started_first_with_logs_split_by_stream(world):
    world.step(SCORE, "score", "Running", started_at="2026-01-01T10:05:00Z")
    world.step("0b7c2f4e-4444-4c1b-8d1e-000000000004", "report", "NotStarted")
    world.add(TRAIN, "out 1")
    world.add(TRAIN, "err 1", stream="stderr")
    world.add(TRAIN, "prep", log="prep")
    world.add(TRAIN, "out 2")
    run, _ = run_on("http://127.0.0.1:9", world)

    steps = run.get_steps()

    assert [s.name for s in steps] == ["score", "train", "report"]
    train = run.find_step_run("train")[0]
    assert run.find_step_run("missing") == []
    assert train.get_stdout_log() == "out 1\nout 2\n"
    assert train.get_stderr_log() == "err 1\n"
    assert train.get_job_log() == "out 1\nerr 1\nout 2\n"
    assert set(train.get_outputs()) == {"model"}
    reference = train.get_output_data("model")
    assert (reference.datastore_name, reference.path_on_datastore) == (
        "workspaceblobstore",
        f"azureml/{TRAIN}/model/",
    )
    assert train.get_file_names() == [
        "azureml-logs/65_job_prep.txt",
        "azureml-logs/70_driver_log.txt",
        "plots/loss.png",
    ]
    with pytest.raises(NotFoundError, match="has: model"):
        train.get_output_data("nope")


def test_cancel_posts_and_a_refused_tag_raises_the_servers_error(world):
    run, client = run_on("http://127.0.0.1:9", world)

    run.cancel()

    assert client.posted == [(f"{RUN_PATH}cancel/", {})]
    assert run.status == "CancelRequested"

    def refuse(*args: Any) -> tuple[int, Any]:
        return 400, {"detail": "Invalid input.", "fields": {"tags": ["bad"]}}

    client.route = refuse  # type: ignore[method-assign,assignment]
    with pytest.raises(ValidationError):
        run.tag("k", "v")


@pytest.mark.parametrize(
    "call",
    [
        lambda: PublishedPipeline.get(None, "id"),
        lambda: PublishedPipeline.list(None),
        lambda: PipelineEndpoint.publish(None, "n", None, "d"),
        lambda: PipelineEndpoint.get(None, name="n"),
        lambda: Schedule.create(None, "n", "p", "e"),
        lambda: Schedule.list(None),
        lambda: ScheduleRecurrence(frequency="Day", interval=1),
        lambda: PublishedPipeline(),
    ],
)
def test_published_pipelines_endpoints_and_schedules_say_they_are_not_offered(call):
    with pytest.raises(NotImplementedError, match="not offered by Millrace yet: submit the"):
        call()


def test_not_offered_calls_name_exactly_the_call():
    with pytest.raises(NotImplementedError) as caught:
        PublishedPipeline.get(None, "id")
    assert str(caught.value) == (
        "PublishedPipeline.get is not offered by Millrace yet: submit the Pipeline with "
        "Experiment.submit."
    )
