"""Following a pipeline run as it happens: status changes and every log line, printed once each.

The run's websocket (``ws(s)://<server>/ws/runs/<id>/``) first replays the stored lines after the
numbers the client already has, then forwards live ones; lines carry per-step sequence numbers,
so a client that lost its connection reconnects with ``after`` = the last number it printed per
step and gets exactly what it missed. When the websocket cannot be used at all (refused, a
handshake error such as a 404 from a plain WSGI server or a proxy, ``MILLRACE_SDK_WEBSOCKET=0``)
the same output comes from polling the REST API every ``POLL_SECONDS``.

Either way the REST API has the last word: the run's status is re-read over HTTP when the
websocket is silent for ``CHECK_SECONDS`` (realtime delivery is best effort on the server), and
when the run ends the lines still missing are fetched over HTTP before the final statuses are
printed.

Output, on stdout::

    PipelineRun Status: Running
    StepRun: train → Running
    [train] epoch 1 loss 0.31
    [train prep] Downloading input 'raw' ...
    StepRun: train → Completed
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from pipelines.sdk.exceptions import RunTimeoutError

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

    from pipelines.sdk._http import HttpClient

__all__ = [
    "POLL_SECONDS",
    "TERMINAL",
    "WEBSOCKET_ENV",
    "Follower",
    "websocket_enabled",
    "websocket_url",
]

WEBSOCKET_ENV = "MILLRACE_SDK_WEBSOCKET"
TERMINAL = ("Completed", "Failed", "Canceled")
# Later states rank higher: a status message older than what the REST API already said is
# ignored (a step retried after an infrastructure failure shows its final status only).
RANK = {
    "NotStarted": 0,
    "Queued": 1,
    "Preparing": 2,
    "Running": 3,
    "Finalizing": 4,
    "CancelRequested": 5,
    "Completed": 6,
    "Failed": 6,
    "Canceled": 6,
}
POLL_SECONDS = 1.0
# Websocket silence after which the run's status is re-read over HTTP.
CHECK_SECONDS = 5.0
# Pauses between reconnection attempts after a lost websocket; then polling takes over.
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
OPEN_TIMEOUT = 10.0
LOG_LIMIT = 10_000


def websocket_enabled() -> bool:
    """False when ``MILLRACE_SDK_WEBSOCKET`` is ``0``/``false``/``no``/``off``.

    Returns:
        Whether following may use the websocket.
    """
    return os.environ.get(WEBSOCKET_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def websocket_url(base_url: str, run_id: str) -> str:
    """The run's websocket URL on the server at ``base_url``.

    Args:
        base_url: the server's root (``http://host:8000`` or ``https://host/prefix``).
        run_id: the run's id.

    Returns:
        ``ws://host:8000/ws/runs/<id>/`` (``wss://`` for https; a path prefix is kept).
    """
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/ws/runs/{run_id}/"


def _origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


class WebsocketUnavailable(Exception):
    """The websocket cannot be used here; the follower polls instead."""


class _Done(Exception):
    """The followed run (or step) reached a terminal status."""


@dataclass
class _Step:
    name: str
    status: str = ""
    seen: int = 0  # the last sequence number printed: every line up to it was printed
    reused: bool = False
    logs: list[str] = field(default_factory=lambda: ["driver"])
    # A terminal status the REST API showed before the step's last lines were printed:
    # (status, reused, the step's last sequence number then), printed once they are.
    ending: tuple[str, bool, int] | None = None


class Follower:
    """Follows one run until it (or one of its steps) ends, printing what happens.

    Args:
        client: the HttpClient of the run's workspace.
        run_path: the run's API path, ``workspaces/<ws>/runs/<id>/``.
        run_id: the run's id.
        show_output: print status changes and log lines; False: only wait.
        step_id: follow only this step (its lines and status) and stop when it ends.
        websocket: use the websocket; None: unless ``MILLRACE_SDK_WEBSOCKET=0``.
        out: where to print; None: ``sys.stdout`` at the time of printing.
        poll_seconds: pause between polls; None: ``POLL_SECONDS``.
    """

    def __init__(
        self,
        client: HttpClient,
        run_path: str,
        run_id: str,
        *,
        show_output: bool = True,
        step_id: str | None = None,
        websocket: bool | None = None,
        out: TextIO | None = None,
        poll_seconds: float | None = None,
    ) -> None:
        self.client = client
        self.run_path = run_path
        self.run_id = run_id
        self.show_output = show_output
        self.step_id = step_id
        self.use_websocket = websocket_enabled() if websocket is None else websocket
        self._out = out
        self.poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
        self.steps: dict[str, _Step] = {}
        self.run_status = ""
        self.ended = ""  # the run's terminal status, known but not printed yet
        self.detail: dict[str, Any] = {}
        self.mode = "websocket" if self.use_websocket else "polling"
        self._heard = False  # a websocket message arrived since the last (re)connect

    # ----- the whole follow -------------------------------------------------------------

    def follow(self, timeout_seconds: float) -> dict[str, Any]:
        """Print what happens until the run (or the followed step) ends.

        Args:
            timeout_seconds: give up after this many seconds.

        Returns:
            The run's JSON (with its steps) once it ended.

        Raises:
            RunTimeoutError: still not ended after ``timeout_seconds``; the run goes on.
            KeyboardInterrupt: Ctrl-C; following stops, the run goes on.
            MillraceError: the server refused (NotFoundError for a run this token cannot see).
        """
        deadline = time.monotonic() + max(0.0, float(timeout_seconds))
        try:
            if self.use_websocket:
                try:
                    self._follow_websocket(deadline)
                except WebsocketUnavailable:
                    self.mode = "polling"
                    self._follow_polling(deadline)
            else:
                self._follow_polling(deadline)
            # The end: lines still missing come over HTTP, then the final statuses.
            self._refresh(with_logs=True, final=True)
        except KeyboardInterrupt:
            print(
                f"\nStopped following PipelineRun {self.run_id}; it goes on "
                f"(status {self.run_status or 'unknown'}). Cancel it with run.cancel().",
                file=sys.stderr,
            )
            raise
        return self.detail

    def _timeout(self) -> RunTimeoutError:
        what = f"PipelineRun {self.run_id}"
        status = self.run_status or "unknown"
        if self.step_id and self.step_id in self.steps:
            step = self.steps[self.step_id]
            what = f"StepRun '{step.name}' ({self.step_id}) of {what}"
            status = step.status or "unknown"
        return RunTimeoutError(
            f"{what} is still {status}: wait_for_completion gave up after its timeout. "
            "The run goes on; wait again or cancel it.",
            run_id=self.run_id,
            status=status,
        )

    def _done(self) -> bool:
        if self.ended or self.run_status in TERMINAL:
            return True
        if self.step_id is not None:
            step = self.steps.get(self.step_id)
            return step is not None and (step.status in TERMINAL or step.ending is not None)
        return False

    # ----- polling ----------------------------------------------------------------------

    def _follow_polling(self, deadline: float) -> None:
        while True:
            self._refresh(with_logs=self.show_output)
            if self._done():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout()
            time.sleep(min(self.poll_seconds, remaining))

    # ----- websocket --------------------------------------------------------------------

    def _follow_websocket(self, deadline: float) -> None:
        from websockets.exceptions import ConnectionClosed

        conn = self._connect(deadline)
        drops = 0
        try:
            while True:
                try:
                    # Joined the run's group at connect: read the state now, and no change
                    # after this read can be missed. Lines wait for "follow" (replay, then
                    # live); without output only statuses are wanted.
                    if self.show_output:
                        conn.send(json.dumps({"type": "follow", "after": self._after()}))
                    self._refresh(with_logs=False)
                    if self._done():
                        return
                    self._receive(conn, deadline)
                    return
                except ConnectionClosed:
                    conn.close()
                    # A server that accepts and drops again and again is no better than none.
                    drops = 0 if self._heard else drops + 1
                    self._heard = False
                    if drops > len(RECONNECT_DELAYS):
                        raise WebsocketUnavailable("the connection keeps dropping") from None
                    conn = self._reconnect(deadline)
        finally:
            conn.close()

    def _after(self) -> dict[str, int]:
        return {sid: step.seen for sid, step in self.steps.items() if step.seen}

    def _connect(self, deadline: float) -> ClientConnection:
        try:
            from websockets.exceptions import WebSocketException
            from websockets.sync.client import connect
            from websockets.typing import Origin
        except ImportError as exc:  # a bare environment without websockets: poll
            raise WebsocketUnavailable(str(exc)) from exc
        url = websocket_url(self.client.base_url, self.run_id)
        remaining = deadline - time.monotonic()
        try:
            connection = connect(
                url,
                additional_headers=self.client.auth_headers(),
                # Channels' origin check refuses a handshake without an Origin header.
                origin=Origin(_origin(self.client.base_url)),
                open_timeout=max(0.5, min(OPEN_TIMEOUT, remaining)),
                # A replay sends up to 5,000 whole lines per message.
                max_size=None,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise WebsocketUnavailable(f"{url}: {exc}") from exc
        # Entering it is how websockets >= 15 wants a connection kept (and a no-op before).
        return connection.__enter__()

    def _reconnect(self, deadline: float) -> ClientConnection:
        last: WebsocketUnavailable | None = None
        for delay in RECONNECT_DELAYS:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout()
            time.sleep(min(delay, remaining))
            try:
                return self._connect(deadline)
            except WebsocketUnavailable as exc:
                last = exc
        raise WebsocketUnavailable(f"the connection was lost and could not be restored ({last})")

    def _receive(self, conn: ClientConnection, deadline: float) -> None:
        """Handle messages until the end; raises ConnectionClosed when the link is lost."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout()
            try:
                raw = conn.recv(timeout=min(CHECK_SECONDS, remaining))
            except TimeoutError:
                self._refresh(with_logs=False)
                if self._done():
                    return
                continue
            self._heard = True
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if isinstance(message, dict):
                self._handle(message)
            if self._done():
                return

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "log_lines":
            step = self.steps.get(str(message.get("step")))
            if step is None:  # a step we have not heard of: the REST detail names it
                self._refresh(with_logs=False)
                step = self.steps.get(str(message.get("step")))
            if step is not None:
                self._print_lines(str(message["step"]), str(message.get("log")), message["lines"])
        elif kind == "step_status":
            sid = str(message.get("step"))
            if sid not in self.steps:
                self.steps[sid] = _Step(name=str(message.get("name") or sid))
            self._set_step_status(
                sid, str(message.get("status")), reused=bool(message.get("reused_from"))
            )
        elif kind == "run_status":
            self._set_run_status(str(message.get("status")), announce=False)

    # ----- REST: state and lines --------------------------------------------------------

    def _refresh(self, *, with_logs: bool, final: bool = False) -> None:
        """Read the run over HTTP: waiting/running statuses first, then the new lines, then
        the statuses that end steps, each once the step's lines are all printed (``final``:
        whatever is left, and the run's end)."""
        detail = self.client.get_json(self.run_path)
        self.detail = detail
        ending: list[tuple[str, str, bool, int]] = []
        for data in detail.get("steps") or []:
            sid = str(data["id"])
            step = self.steps.setdefault(sid, _Step(name=str(data.get("name") or sid)))
            step.name = str(data.get("name") or step.name)
            reused = bool(data.get("reused_from"))
            status = str(data.get("status") or "")
            log_seq = 0 if reused else int(data.get("log_seq") or 0)
            if status in TERMINAL:
                ending.append((sid, status, reused, log_seq))
            else:
                self._set_step_status(sid, status, reused=reused)
            if with_logs and self.show_output and self._wanted(sid) and log_seq > step.seen:
                self._fetch_lines(sid, final=final)
        for sid, status, reused, log_seq in ending:
            step = self.steps[sid]
            if final or not self.show_output or not self._wanted(sid) or step.seen >= log_seq:
                step.ending = None
                self._set_step_status(sid, status, reused=reused)
            elif step.status not in TERMINAL:
                step.ending = (status, reused, log_seq)
        self._set_run_status(str(detail.get("status") or ""), announce=final)

    def _fetch_lines(self, sid: str, *, final: bool) -> None:
        """Print the step's lines after the last one printed, from every log it has, in
        sequence order. A line missing from the middle (written but not yet readable) stops
        the printing there until the next poll, except at the end (``final``)."""
        step = self.steps[sid]
        start = step.seen
        gathered: list[tuple[int, str, str, str]] = []
        queue = list(step.logs)
        done: set[str] = set()
        while queue:
            log_name = queue.pop(0)
            if log_name in done:
                continue
            done.add(log_name)
            cursor = start
            while True:
                body = self.client.get_json(
                    f"{self.run_path}steps/{sid}/logs/",
                    params={"log": log_name, "after": cursor, "limit": LOG_LIMIT},
                )
                for other in body.get("logs") or []:
                    if other not in step.logs:
                        step.logs.append(other)
                    if other not in done:
                        queue.append(other)
                lines = body.get("lines") or []
                gathered.extend((int(s), log_name, str(st), str(t)) for s, st, t in lines)
                last = int(body.get("last_seq") or (lines[-1][0] if lines else cursor))
                # Stop when the server says so, and when it made no progress (a number
                # reserved whose line is not committed yet).
                if not body.get("more") or last <= cursor:
                    break
                cursor = last
        gathered.sort()
        expected = start + 1
        batch: list[tuple[int, str, str, str]] = []
        for line in gathered:
            if line[0] < expected:
                continue
            if line[0] > expected and not final:
                break
            batch.append(line)
            expected = line[0] + 1
        for seq, log_name, stream, text in batch:
            self._print_line(step, log_name, stream, text)
            step.seen = seq
        self._caught_up(sid)

    def _wanted(self, sid: str) -> bool:
        return self.step_id is None or sid == self.step_id

    # ----- printing ---------------------------------------------------------------------

    def _print(self, text: str) -> None:
        if self.show_output:
            out = self._out or sys.stdout
            out.write(text + "\n")
            out.flush()

    def _print_lines(self, sid: str, log_name: str, lines: list[list[Any]]) -> None:
        step = self.steps[sid]
        if not self._wanted(sid):
            return
        for seq, stream, text in lines:
            if int(seq) <= step.seen:  # already printed (a replay overlapping a live batch)
                continue
            self._print_line(step, log_name, str(stream), str(text))
            step.seen = int(seq)
        self._caught_up(sid)

    def _caught_up(self, sid: str) -> None:
        step = self.steps[sid]
        if step.ending is not None and step.seen >= step.ending[2]:
            status, reused, _ = step.ending
            step.ending = None
            self._set_step_status(sid, status, reused=reused)

    def _print_line(self, step: _Step, log_name: str, stream: str, text: str) -> None:
        prefix = step.name if log_name == "driver" else f"{step.name} {log_name}"
        self._print(f"[{prefix}] {text}")

    def _set_step_status(self, sid: str, status: str, *, reused: bool = False) -> None:
        step = self.steps[sid]
        if not status or status == step.status:
            return
        if step.status and RANK.get(status, 0) < RANK.get(step.status, 0):
            return  # an older message than what we know
        step.status = status
        step.ending = None
        step.reused = step.reused or reused
        if self._wanted(sid):
            note = " (reused from an earlier run)" if reused and status == "Completed" else ""
            self._print(f"StepRun: {step.name} → {status}{note}")

    def _set_run_status(self, status: str, *, announce: bool = True) -> None:
        """Record the run's status; its end is printed only with ``announce`` (at the very
        end, after every line)."""
        if not status or status == self.run_status or self.run_status in TERMINAL:
            return
        if status in TERMINAL and not announce:
            self.ended = status
            return
        self.run_status = status
        if self.step_id is None:
            self._print(f"PipelineRun Status: {status}")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from the API, or None.

    Args:
        value: text like ``2026-01-02T03:04:05.123456Z`` or None.

    Returns:
        The aware datetime, or None when missing or unreadable.
    """
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
