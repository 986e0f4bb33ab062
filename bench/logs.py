"""Log benchmark: from a step's print() to a websocket client, latency and throughput.

Starts the web server (daphne, ``portal.asgi:application``) and a Celery worker, then for each
case submits a one-step run on ``local`` whose script sleeps 2 s (so the client is connected
and following before the first line: live delivery is measured, not replay) and prints lines
that carry their number and ``time.time()``. A websocket client on ``ws/runs/<uuid>/`` (bearer
token) sends ``follow`` and stamps each line on arrival.

- latency: 2,000 lines at about 200 lines/s; p50/p95/max of arrival - print time
  (budget ≤ 150 ms p95);
- throughput: 200,000 lines as fast as the script prints them; lines/s from the first print to
  the last arrival, and lost lines (budget ≥ 20,000 lines/s with none lost).

Run it with bench/run, which provides PostgreSQL, Redis and a data root::

    bench/run bench/logs.py [--latency-lines 2000] [--rate 200] [--throughput-lines 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from bench.engine import (
    BenchError,
    Child,
    Fixture,
    celery_worker,
    free_port,
    make_fixture,
    running,
    snapshot_of,
    stop_on_sigterm,
)
from portal import services
from runs.models import TERMINAL, PipelineRun, Status
from runs.services import submit_pipeline_run

BUDGET_P95_MS = 150.0
BUDGET_LINES_PER_S = 20_000.0
START_DELAY_S = 2.0
CASE_TIMEOUT_S = 600.0
QUIET_S = 10.0  # after the run ends, stop waiting once nothing arrives for this long

PRINTER = """\
import sys
import time

count, rate, delay = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
time.sleep(delay)
write = sys.stdout.write
if rate > 0:
    start, interval = time.time(), 1.0 / rate
    for i in range(count):
        pause = start + i * interval - time.time()
        if pause > 0:
            time.sleep(pause)
        write(f"L {i} {time.time():.6f}\\n")
else:
    for i in range(count):
        write(f"L {i} {time.time():.6f}\\n")
"""


@dataclass
class Received:
    printed: dict[int, float] = field(default_factory=dict)  # line number → print time
    arrived: dict[int, float] = field(default_factory=dict)  # line number → arrival time
    duplicates: int = 0
    replayed: int = 0
    messages: int = 0
    run_status: str = ""
    connected_at: float = 0.0
    first_at: float = 0.0


def daphne(port: int, log_path: Path) -> Child:
    def listening() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    binary = Path(sys.executable).parent / "daphne"
    return Child(
        "web server",
        [str(binary), "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        log_path,
        listening,
    )


async def follow(url: str, token: str, origin: str, expected: int, got: Received) -> None:
    """Follow one run until its end and ``expected`` lines (or a quiet period after the end)."""
    async with connect(
        url,
        origin=Origin(origin),
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
    ) as ws:
        got.connected_at = time.time()
        await ws.send(json.dumps({"type": "follow", "after": {}}))
        ended_at: float | None = None
        while True:
            timeout = None if ended_at is None else max(0.1, ended_at + QUIET_S - time.time())
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout)
            except (TimeoutError, ConnectionClosed):
                return
            now = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "run_status" and message.get("status") in TERMINAL:
                got.run_status = message["status"]
                ended_at = now
            elif kind == "log_lines":
                got.messages += 1
                for _seq, _stream, text in message["lines"]:
                    if not text.startswith("L "):
                        continue
                    _, number, stamp = text.split()
                    i = int(number)
                    if i in got.arrived:
                        got.duplicates += 1
                        continue
                    if not got.arrived:
                        got.first_at = now
                    got.arrived[i] = now
                    got.printed[i] = float(stamp)
                    # Printed before the client was following: it came from the replay.
                    if got.connected_at and float(stamp) < got.connected_at:
                        got.replayed += 1
            if ended_at is not None and len(got.arrived) >= expected:
                return


def run_case(
    fx: Fixture, digest: str, port: int, token: str, count: int, rate: float
) -> tuple[Received, PipelineRun]:
    graph = {
        "steps": [
            {
                "name": "printer",
                "script": "printer.py",
                "snapshot": digest,
                "compute_target": "local",
                "arguments": [str(count), str(rate), str(START_DELAY_S)],
                "allow_reuse": False,
            }
        ]
    }
    run = submit_pipeline_run(
        actor=fx.actor, workspace=fx.workspace, experiment_name="logs", graph=graph
    )
    got = Received()
    url = f"ws://127.0.0.1:{port}/ws/runs/{run.uuid}/"
    try:
        asyncio.run(
            asyncio.wait_for(
                follow(url, token, f"http://127.0.0.1:{port}", count, got), CASE_TIMEOUT_S
            )
        )
    except TimeoutError:
        print(f"  note: stopped following after {CASE_TIMEOUT_S:.0f} s", flush=True)
    deadline = time.monotonic() + 60
    run.refresh_from_db()
    while run.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        run.refresh_from_db()
    if run.status != Status.COMPLETED:
        step = run.steps.first()
        raise BenchError(f"Run {run.uuid} ended {run.status}: {step.error if step else ''}")
    first_print = min(got.printed.values(), default=0.0)
    if got.connected_at and first_print and got.connected_at > first_print:
        print(
            "  note: the client connected after the first print; early lines were replayed",
            flush=True,
        )
    return got, run


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def row(*cells: str) -> str:
    widths = (22, 46, 26, 14)
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-lines", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="lines/s of the latency case")
    parser.add_argument("--throughput-lines", type=int, default=200_000)
    args = parser.parse_args()

    data_root = Path(settings.MILLRACE_DATA_ROOT)
    data_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-logs-", dir=data_root))
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}", flush=True)
    fx = make_fixture("Logs")
    _, token = services.create_token(actor=fx.actor, workspace=fx.workspace, name="bench")
    digest = snapshot_of(fx.workspace, {"printer.py": PRINTER})
    port = free_port()
    web = daphne(port, scratch / "web.log")
    worker = celery_worker(scratch / "worker.log")
    results: list[str] = []
    try:
        with running(web), running(worker):
            print("[warm-up] a short run (first imports, snapshot fetch)", flush=True)
            run_case(fx, digest, port, token, 10, 0)

            print(
                f"[latency] {args.latency_lines} lines at {args.rate:.0f}/s "
                f"(after {START_DELAY_S:.0f} s)",
                flush=True,
            )
            got, _ = run_case(fx, digest, port, token, args.latency_lines, args.rate)
            latencies = [(got.arrived[i] - got.printed[i]) * 1000 for i in got.arrived]
            lost = args.latency_lines - len(got.arrived)
            if latencies:
                p50 = statistics.median(latencies)
                p95 = percentile(latencies, 0.95)
                worst = max(latencies)
                results.append(
                    row(
                        "latency",
                        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms",
                        f"≤ {BUDGET_P95_MS:.0f} ms p95",
                        "within budget" if p95 <= BUDGET_P95_MS and not lost else "over budget",
                    )
                )
            results.append(
                row(
                    "",
                    f"{len(got.arrived)} received, {lost} lost, {got.duplicates} duplicate, "
                    f"{got.replayed} replayed, {got.messages} messages",
                    "",
                    "",
                )
            )

            print(
                f"[throughput] {args.throughput_lines} lines as fast as possible "
                f"(after {START_DELAY_S:.0f} s)",
                flush=True,
            )
            got, run = run_case(fx, digest, port, token, args.throughput_lines, 0)
            lost = args.throughput_lines - len(got.arrived)
            if got.arrived:
                first_print = min(got.printed.values())
                last_print = max(got.printed.values())
                last_arrival = max(got.arrived.values())
                end_to_end = len(got.arrived) / max(1e-9, last_arrival - first_print)
                printing = len(got.printed) / max(1e-9, last_print - first_print)
                step = run.steps.get()
                timings = step.timings
                results.append(
                    row(
                        "throughput",
                        f"{end_to_end:,.0f} lines/s end to end",
                        f"≥ {BUDGET_LINES_PER_S:,.0f} lines/s, 0 lost",
                        "within budget"
                        if end_to_end >= BUDGET_LINES_PER_S and lost == 0
                        else "over budget",
                    )
                )
                results.append(
                    row(
                        "",
                        f"{len(got.arrived):,} received, {lost:,} lost, "
                        f"{got.duplicates} duplicate, {got.replayed} replayed",
                        "",
                        "",
                    )
                )
                results.append(
                    row(
                        "",
                        f"the script printed at {printing:,.0f} lines/s "
                        f"({last_print - first_print:.2f} s)",
                        "",
                        "",
                    )
                )
                results.append(
                    row(
                        "",
                        f"last line arrived {last_arrival - last_print:.2f} s after the "
                        f"last print; {got.messages} messages",
                        "",
                        "",
                    )
                )
                results.append(
                    row(
                        "",
                        f"step 'running' {float(timings.get('running', 0)):.2f} s "
                        f"(includes the {START_DELAY_S:.0f} s sleep)",
                        "",
                        "",
                    )
                )
            else:
                results.append(row("throughput", "no line arrived", "", "over budget"))
    except BenchError as exc:
        print(f"\nBenchmark stopped: {exc}")
        print(f"--- worker log (end) ---\n{worker.tail()}\n--- web log (end) ---\n{web.tail()}")
        raise SystemExit(1) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(row("case", "result", "budget", ""))
    print(row("-" * 22, "-" * 46, "-" * 26, "-" * 14))
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
