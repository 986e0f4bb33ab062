"""Engine benchmark: per-step orchestration overhead, from submit to the run's Completed.

Cases, on each compute kind asked for (``local``, ``docker``):

- chain: a 20-step chain of no-op steps (each runs after the previous; allow_reuse False);
- fan-out: 1 → 50 → 1 no-op steps (target max_concurrency 50; the worker has 8 threads);

and, on ``local``:

- reuse: resubmitting an unchanged 20-step chain (reuse allowed) once a first run warmed it;
- submit: submit_pipeline_run alone (validate + store) for a 1,000-step pipeline.

Floors are measured in the same invocation: spawning the same Python process (local) and a
bare ``docker run`` of the base image (docker), each the median of 20; for the fan-out, the
same 1 → 50 → 1 shape of bare commands with 8 at once. Budgets are those of DESIGN.md
("Budgets"). After the table, the engine's own timestamps (StepRun.queued_at, started_at,
finished_at, timings) show where a step's time goes. This prints numbers; it never fails on
time.

Run it with bench/run, which provides PostgreSQL, Redis and a data root::

    bench/run bench/engine.py [--kinds local,docker] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from pipelines.snapshots import snapshot_from_directory  # noqa: E402
from portal import services  # noqa: E402
from portal.models import ComputeTarget, Workspace  # noqa: E402
from runs.models import TERMINAL, PipelineRun, Status, StepRun  # noqa: E402
from runs.services import cancel_run, submit_pipeline_run  # noqa: E402

CHAIN_STEPS = 20
FAN_WIDTH = 50
SUBMIT_STEPS = 1000
FLOOR_SAMPLES = 20
WORKER_THREADS = 8
POLL_SECONDS = 0.005
RUN_TIMEOUT = 600.0
PARKED_QUEUE = "bench-parked"  # a queue no worker serves: steps sent there never start

# DESIGN.md, "Budgets"
BUDGET_LOCAL_MS_PER_STEP = 40.0
BUDGET_FANOUT_S = 1.0
BUDGET_DOCKER_OVERHEAD_MS = 150.0
BUDGET_REUSE_S = 0.5
BUDGET_SUBMIT_S = 2.0


class BenchError(Exception):
    pass


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A subprocess in its own session (so stopping it stops what it started), output to a
    log file; ready when ``ready`` appears in its log (or the callable says so)."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, ready: bytes | Callable[[], bool]
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.ready = ready
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(self.ready):
                if self.ready():
                    return
            elif self.ready in self.log_path.read_bytes():
                return
            if self.process.poll() is not None:
                raise BenchError(f"The {self.name} died:\n{self.tail()}")
            time.sleep(0.1)
        raise BenchError(f"The {self.name} did not get ready:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds (user + system) of the process itself and of its children that ended
        (for a worker: the local step processes), from /proc."""
        if self.process is None:
            return 0.0, 0.0
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return 0.0, 0.0
        fields = stat.rsplit(")", 1)[1].split()
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        tick = os.sysconf("SC_CLK_TCK")
        return (utime + stime) / tick, (cutime + cstime) / tick

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def celery_worker(log_path: Path, queues: str = "celery,local,docker") -> Child:
    """A Celery worker like bin/run's (threads), serving the engine's queues."""
    return Child(
        "worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "-Q",
            queues,
            "-P",
            "threads",
            "-c",
            str(WORKER_THREADS),
            "-l",
            "info",
            "-n",
            f"bench-{os.getpid()}-{secrets.token_hex(3)}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        log_path,
        b"ready.",
    )


@contextlib.contextmanager
def running(child: Child) -> Iterator[Child]:
    child.start()
    try:
        yield child
    finally:
        child.stop()


# --- fixtures ---------------------------------------------------------------------------


@dataclass
class Fixture:
    actor: services.Actor
    workspace: Workspace
    user: Any


def make_fixture(name: str = "Bench") -> Fixture:
    """A fresh user who owns a fresh workspace (with its built-in `local` target)."""
    tag = secrets.token_hex(4)
    user = get_user_model().objects.create_user(
        username=f"bench-{tag}", password=secrets.token_urlsafe(16)
    )
    actor = services.Actor(user=user)
    workspace = services.create_workspace(actor=actor, name=f"{name} {tag}")
    return Fixture(actor=actor, workspace=workspace, user=user)


def snapshot_of(workspace: Workspace, files: dict[str, str]) -> str:
    """Store a source directory with these files; return the snapshot's digest."""
    with tempfile.TemporaryDirectory(prefix="bench-src-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        snapshot, _ = snapshot_from_directory(workspace, Path(tmp))
    return snapshot.digest


def wait_terminal(run: PipelineRun, started: float, timeout: float = RUN_TIMEOUT) -> float:
    """Poll the run's row every 5 ms until it ends; the seconds since ``started``."""
    rows = PipelineRun.objects.filter(pk=run.pk).values_list("status", flat=True)
    while True:
        status = rows.get()
        if status in TERMINAL:
            elapsed = time.perf_counter() - started
            break
        if time.perf_counter() - started > timeout:
            raise BenchError(f"Run {run.uuid} still {status} after {timeout:.0f} s.")
        time.sleep(POLL_SECONDS)
    if status != Status.COMPLETED:
        problems = "\n".join(
            f"  {s.name}: {s.status} {s.error}"
            for s in run.steps.exclude(status=Status.COMPLETED).order_by("id")[:10]
        )
        raise BenchError(f"Run {run.uuid} ended {status}:\n{problems}")
    return elapsed


# --- graphs -----------------------------------------------------------------------------


def noop_step(
    name: str, digest: str, target: str, after: list[str], *, reuse: bool, salt: str
) -> dict[str, Any]:
    # The arguments make each step's definition (and reuse key) distinct; noop.py ignores them.
    return {
        "name": name,
        "script": "noop.py",
        "snapshot": digest,
        "compute_target": target,
        "arguments": ["--salt", salt, "--step", name],
        "allow_reuse": reuse,
        "run_after": after,
    }


def chain_graph(
    digest: str, target: str, steps: int = CHAIN_STEPS, *, reuse: bool = False, salt: str = ""
) -> dict[str, Any]:
    names = [f"s{i:02d}" for i in range(steps)]
    return {
        "steps": [
            noop_step(name, digest, target, names[i - 1 : i], reuse=reuse, salt=salt)
            for i, name in enumerate(names)
        ]
    }


def fanout_graph(digest: str, target: str, width: int = FAN_WIDTH) -> dict[str, Any]:
    middle = [f"m{i:02d}" for i in range(width)]
    return {
        "steps": [
            noop_step("first", digest, target, [], reuse=False, salt=""),
            *(noop_step(m, digest, target, ["first"], reuse=False, salt="") for m in middle),
            noop_step("last", digest, target, middle, reuse=False, salt=""),
        ]
    }


def data_chain_graph(digest: str, target: str, steps: int = SUBMIT_STEPS) -> dict[str, Any]:
    """A chain linked by data: each step reads the previous step's output and writes its
    own (what a real long pipeline looks like to validation and storage)."""
    out = []
    for i in range(steps):
        step: dict[str, Any] = {
            "name": f"step_{i:04d}",
            "script": "noop.py",
            "snapshot": digest,
            "compute_target": target,
            "arguments": ["--out", {"output": f"data_{i:04d}"}],
            "outputs": {f"data_{i:04d}": {}},
            "allow_reuse": True,
        }
        if i:
            step["inputs"] = {"previous": {"pipeline_data": f"data_{i - 1:04d}"}}
            step["arguments"] += ["--in", {"input": "previous"}]
        out.append(step)
    return {"steps": out}


# --- measuring --------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def time_run(fx: Fixture, graph: dict[str, Any], experiment: str) -> tuple[float, PipelineRun]:
    started = time.perf_counter()
    run = submit_pipeline_run(
        actor=fx.actor, workspace=fx.workspace, experiment_name=experiment, graph=graph
    )
    return wait_terminal(run, started), run


def floor_samples(command: list[str], samples: int = FLOOR_SAMPLES) -> list[float]:
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        out.append(time.perf_counter() - started)
    return out


def fanout_floor(command: list[str], repeat: int, width: int = FAN_WIDTH) -> float:
    """The same 1 → width → 1 shape run bare, with as many at once as the worker has threads."""

    def once(_: int = 0) -> None:
        subprocess.run(command, capture_output=True, check=True)

    totals = []
    with ThreadPoolExecutor(max_workers=WORKER_THREADS) as pool:
        for _ in range(repeat):
            started = time.perf_counter()
            once()
            list(pool.map(once, range(width)))
            once()
            totals.append(time.perf_counter() - started)
    return median(totals)


@dataclass
class Row:
    case: str
    kind: str
    median: str
    floor: str
    overhead: str
    budget: str
    verdict: str


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "no budget"
    return "within budget" if ok else "over budget"


def print_table(rows: list[Row]) -> None:
    header = Row("case", "kind", "median", "floor", "overhead", "budget", "")
    cells = [header, *rows]
    widths = [max(len(getattr(r, f)) for r in cells) for f in Row.__dataclass_fields__]
    for index, row in enumerate(cells):
        values = [getattr(row, f) for f in Row.__dataclass_fields__]
        print("  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


def at(moment: datetime | None) -> datetime:
    """A timestamp the engine must have written by now."""
    if moment is None:
        raise BenchError("A finished run is missing a timestamp.")
    return moment


def chain_breakdown(runs: list[PipelineRun]) -> list[tuple[str, float]]:
    """Where a chain step's time goes, in ms per step (mean over the runs), from the rows the
    engine writes: submit → first step queued, queued → a worker claims it, the worker's own
    phases (timings), the step's end → the next step queued, the last step → the run ends."""
    parts: dict[str, float] = {}

    def add(name: str, start: datetime | None, end: datetime | None) -> None:
        parts[name] = parts.get(name, 0.0) + (at(end) - at(start)).total_seconds() * 1000

    steps_per_run = 0
    for run in runs:
        run.refresh_from_db()
        steps = list(StepRun.objects.filter(run=run).order_by("id"))
        steps_per_run = len(steps)
        add("submit → first step queued (once)", run.created_at, steps[0].queued_at)
        for index, step in enumerate(steps):
            add("queued → claimed by a worker", step.queued_at, step.started_at)
            phases = 0.0
            for key in ("environment", "inputs", "running", "outputs"):
                value = float(step.timings.get(key, 0.0)) * 1000
                phases += value
                parts[f"worker: {key}"] = parts.get(f"worker: {key}", 0.0) + value
            add("worker: claim/bookkeeping between phases", step.started_at, step.finished_at)
            parts["worker: claim/bookkeeping between phases"] -= phases
            if index + 1 < len(steps):
                add(
                    "step finished → next step queued", step.finished_at, steps[index + 1].queued_at
                )
        add("last step finished → run Completed (once)", steps[-1].finished_at, run.finished_at)
    return [(name, ms / len(runs) / steps_per_run) for name, ms in parts.items()]


def fanout_breakdown(runs: list[PipelineRun]) -> list[tuple[str, float]]:
    """Where a fan-out's time goes, in ms per run (mean over the runs)."""
    parts: dict[str, list[float]] = {}

    def add(name: str, start: Any, end: Any) -> None:
        parts.setdefault(name, []).append((end - start).total_seconds() * 1000)

    for run in runs:
        run.refresh_from_db()
        by_name = {s.name: s for s in StepRun.objects.filter(run=run)}
        first, last = by_name.pop("first"), by_name.pop("last")
        middle = list(by_name.values())
        queued = sorted(at(s.queued_at) for s in middle)
        started = sorted(at(s.started_at) for s in middle)
        finished = sorted(at(s.finished_at) for s in middle)
        add("submit → first step finished", run.created_at, first.finished_at)
        add("first finished → 1st middle step queued", first.finished_at, queued[0])
        add(f"1st → {len(middle)}th middle step queued (claiming)", queued[0], queued[-1])
        add("1st middle step queued → claimed by a worker", queued[0], started[0])
        add("1st middle claimed → last middle finished", started[0], finished[-1])
        add("last middle finished → last step queued", finished[-1], last.queued_at)
        add("last step queued → finished", last.queued_at, last.finished_at)
        add("last step finished → run Completed", last.finished_at, run.finished_at)
    return [(name, sum(values) / len(values)) for name, values in parts.items()]


def print_breakdown(title: str, parts: list[tuple[str, float]]) -> None:
    per = "per step" if "chain" in title else "per run, overlapping spans"
    print(f"\nWhere the time goes: {title} (mean ms {per}, from the engine's rows)")
    for name, ms in parts:
        print(f"  {name:<50} {ms:8.1f}")
    if "chain" in title:
        print(f"  {'sum':<50} {sum(ms for _, ms in parts):8.1f}")


# --- docker -----------------------------------------------------------------------------


def docker_unavailable(image: str) -> str | None:
    """Why the docker cases cannot run here, or None when they can."""
    try:
        importlib.import_module("runs.executors.docker")
    except ImportError as exc:
        return f"the docker executor (runs/executors/docker.py) is not importable: {exc}"
    if shutil.which("docker") is None:
        return "there is no `docker` command"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "the Docker engine does not answer `docker info`"
    inspect = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, check=False
    )
    if inspect.returncode != 0:
        return f"the base image {image} is missing (bin/test or bin/run builds it)"
    return None


# --- cases ------------------------------------------------------------------------------


def print_cpu(worker: Child, before: tuple[float, float], steps: int) -> None:
    own, children = (a - b for a, b in zip(worker.cpu_seconds(), before, strict=True))
    print(
        f"    worker CPU: {own * 1000 / steps:.1f} ms/step in the worker process, "
        f"{children * 1000 / steps:.1f} ms/step in local step processes",
        flush=True,
    )


def repeat_runs(
    fx: Fixture, graph: dict[str, Any], name: str, repeat: int
) -> tuple[list[float], list[PipelineRun]]:
    """Submit ``graph`` ``repeat`` times; the seconds each took to Completed, and the runs."""
    times, runs = [], []
    for _ in range(repeat):
        seconds, run = time_run(fx, graph, name)
        times.append(seconds)
        runs.append(run)
    return times, runs


def chain_case(
    fx: Fixture,
    digest: str,
    kind: str,
    repeat: int,
    floor_s: float,
    rows: list[Row],
    worker: Child,
) -> list[PipelineRun]:
    graph = chain_graph(digest, kind)
    cpu = worker.cpu_seconds()
    times, runs = repeat_runs(fx, graph, f"chain-{kind}", repeat)
    total = median(times)
    per_step_ms = total * 1000 / CHAIN_STEPS
    overhead_ms = per_step_ms - floor_s * 1000
    if kind == "local":
        budget, ok = (
            f"≤ {BUDGET_LOCAL_MS_PER_STEP:.0f} ms/step",
            per_step_ms <= BUDGET_LOCAL_MS_PER_STEP,
        )
    else:
        budget = f"overhead ≤ {BUDGET_DOCKER_OVERHEAD_MS:.0f} ms/step"
        ok = overhead_ms <= BUDGET_DOCKER_OVERHEAD_MS
    rows.append(
        Row(
            f"(a) {CHAIN_STEPS}-step chain",
            kind,
            f"{total:.2f} s = {per_step_ms:.1f} ms/step",
            f"{floor_s * 1000:.1f} ms/step",
            f"{overhead_ms:.1f} ms/step",
            budget,
            verdict(ok),
        )
    )
    print(f"  chain {kind}: " + ", ".join(f"{t:.2f} s" for t in times), flush=True)
    print_cpu(worker, cpu, CHAIN_STEPS * repeat)
    return runs


def fanout_case(
    fx: Fixture,
    digest: str,
    kind: str,
    repeat: int,
    floor_s: float,
    rows: list[Row],
    worker: Child,
) -> list[PipelineRun]:
    graph = fanout_graph(digest, kind)
    cpu = worker.cpu_seconds()
    times, runs = repeat_runs(fx, graph, f"fanout-{kind}", repeat)
    total = median(times)
    ok: bool | None = None
    budget = "none in DESIGN.md"
    if kind == "local":
        budget, ok = f"≤ {BUDGET_FANOUT_S:.1f} s", total <= BUDGET_FANOUT_S
    rows.append(
        Row(
            f"(b) 1→{FAN_WIDTH}→1 fan-out",
            kind,
            f"{total:.2f} s",
            f"{floor_s:.2f} s (bare, {WORKER_THREADS} at once)",
            f"{total - floor_s:+.2f} s total",
            budget,
            verdict(ok),
        )
    )
    print(f"  fan-out {kind}: " + ", ".join(f"{t:.2f} s" for t in times), flush=True)
    print_cpu(worker, cpu, (FAN_WIDTH + 2) * repeat)
    return runs


def reuse_case(fx: Fixture, digest: str, repeat: int, rows: list[Row]) -> None:
    times = []
    for _ in range(repeat):
        graph = chain_graph(digest, "local", reuse=True, salt=secrets.token_hex(6))
        time_run(fx, graph, "reuse")  # warms: every step runs
        seconds, run = time_run(fx, graph, "reuse")
        reused = run.steps.filter(reused_from__isnull=False).count()
        if reused != CHAIN_STEPS:
            raise BenchError(f"Only {reused} of {CHAIN_STEPS} steps were reused in {run.uuid}.")
        times.append(seconds)
    total = median(times)
    rows.append(
        Row(
            f"(c) resubmit {CHAIN_STEPS}-step chain, all reused",
            "local",
            f"{total:.3f} s",
            "—",
            "—",
            f"≤ {BUDGET_REUSE_S:.1f} s",
            verdict(total <= BUDGET_REUSE_S),
        )
    )
    print("  reuse: " + ", ".join(f"{t:.3f} s" for t in times), flush=True)


def submit_case(fx: Fixture, digest: str, repeat: int, rows: list[Row]) -> None:
    ComputeTarget.objects.get_or_create(
        workspace=fx.workspace,
        name="parked",
        defaults={"kind": "local", "queue": PARKED_QUEUE, "max_concurrency": 1},
    )
    graph = data_chain_graph(digest, "parked")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run = submit_pipeline_run(
            actor=fx.actor, workspace=fx.workspace, experiment_name="submit-1000", graph=graph
        )
        times.append(time.perf_counter() - started)
        # Its first step waits on a queue nobody serves: cancel it so the worker goes idle.
        cancel_run(actor=fx.actor, run=run)
        deadline = time.monotonic() + 120
        while PipelineRun.objects.get(pk=run.pk).status not in TERMINAL:
            if time.monotonic() > deadline:
                raise BenchError(f"The canceled run {run.uuid} did not end.")
            time.sleep(0.05)
    total = median(times)
    rows.append(
        Row(
            f"(d) submit a {SUBMIT_STEPS}-step pipeline",
            "—",
            f"{total:.3f} s",
            "—",
            "—",
            f"≤ {BUDGET_SUBMIT_S:.0f} s",
            verdict(total <= BUDGET_SUBMIT_S),
        )
    )
    print("  submit: " + ", ".join(f"{t:.3f} s" for t in times), flush=True)


def run_kind(
    fx: Fixture,
    digest: str,
    kind: str,
    floor_cmd: list[str],
    repeat: int,
    rows: list[Row],
    breakdowns: list[tuple[str, list[tuple[str, float]]]],
    worker: Child,
) -> None:
    print(f"[{kind}] floor: {' '.join(floor_cmd)}", flush=True)
    samples = floor_samples(floor_cmd)
    floor_s = median(samples)
    print(
        f"  median {floor_s * 1000:.1f} ms (min {min(samples) * 1000:.1f}, "
        f"max {max(samples) * 1000:.1f}) over {len(samples)}",
        flush=True,
    )
    fan_floor = fanout_floor(floor_cmd, repeat)
    print(f"[{kind}] warm-up run (snapshot fetch, first imports)", flush=True)
    time_run(fx, chain_graph(digest, kind, steps=2), f"warmup-{kind}")
    runs = chain_case(fx, digest, kind, repeat, floor_s, rows, worker)
    breakdowns.append((f"{CHAIN_STEPS}-step chain on {kind}", chain_breakdown(runs)))
    runs = fanout_case(fx, digest, kind, repeat, fan_floor, rows, worker)
    breakdowns.append((f"1→{FAN_WIDTH}→1 fan-out on {kind}", fanout_breakdown(runs)))


def stop_on_sigterm() -> None:
    """Let SIGTERM unwind (so the worker and web server subprocesses are stopped too)."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="local,docker", help="local, docker or both")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - {"local", "docker"}
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    image = str(settings.MILLRACE_BASE_IMAGE)

    skip_docker = docker_unavailable(image) if "docker" in kinds else None
    if skip_docker:
        print(f"Docker cases skipped: {skip_docker}.", flush=True)
        kinds.remove("docker")

    data_root = Path(settings.MILLRACE_DATA_ROOT)
    data_root.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; "
        f"worker: -P threads -c {WORKER_THREADS}; repeat {args.repeat}; data in {data_root}",
        flush=True,
    )
    fx = make_fixture()
    if "docker" in kinds:
        ComputeTarget.objects.create(
            workspace=fx.workspace, name="docker", kind="docker", queue="docker", max_concurrency=50
        )
    ComputeTarget.objects.filter(workspace=fx.workspace, name="local").update(max_concurrency=50)
    digest = snapshot_of(fx.workspace, {"noop.py": "pass\n"})
    scratch = Path(tempfile.mkdtemp(prefix="bench-engine-", dir=data_root))
    noop = scratch / "noop.py"
    noop.write_text("pass\n")

    rows: list[Row] = []
    breakdowns: list[tuple[str, list[tuple[str, float]]]] = []
    worker = celery_worker(scratch / "worker.log")
    try:
        with running(worker):
            for kind in kinds:
                if kind == "local":
                    floor_cmd = [sys.executable, "-u", str(noop)]
                else:
                    floor_cmd = [
                        "docker",
                        "run",
                        "--rm",
                        "--network",
                        "none",
                        "-v",
                        f"{noop}:/noop.py:ro",
                        image,
                        "python3",
                        "-u",
                        "/noop.py",
                    ]
                run_kind(fx, digest, kind, floor_cmd, args.repeat, rows, breakdowns, worker)
            print("[reuse] resubmitting an unchanged chain", flush=True)
            reuse_case(fx, digest, args.repeat, rows)
            print(f"[submit] a {SUBMIT_STEPS}-step pipeline", flush=True)
            submit_case(fx, digest, args.repeat, rows)
    except BenchError as exc:
        print(f"\nBenchmark stopped: {exc}\n--- worker log (end) ---\n{worker.tail()}")
        raise SystemExit(1) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print_table(rows)
    if skip_docker:
        print(f"(docker cases skipped: {skip_docker})")
    for title, parts in breakdowns:
        print_breakdown(title, parts)


if __name__ == "__main__":
    main()
