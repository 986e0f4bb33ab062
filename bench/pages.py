"""Page benchmark: server time of the run list and run page with 100,000 runs and 1,000,000
step runs in PostgreSQL (DESIGN.md, "Budgets": ≤ 150 ms p95, constant query count).

The database is filled with one ``INSERT … SELECT generate_series`` per table
(runs/tests/scale_support.py): 100,000 runs over 20 experiments, 10 pipelines and 3 users,
10 step runs each. Each page is then requested many times in-process through Django's test
client (the whole request: middleware, session, views, templates, queries; no network), and
the p50/p95 per page are printed next to the budget with the page's query count. Static files
are collected first so templates resolve them through the production manifest storage.

Run it with bench/run, which provides PostgreSQL::

    bench/run bench/pages.py [--runs 100000] [--steps 10] [--requests 200]

It prints numbers; it never fails on time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Templates resolve static files through the manifest, as in production: collect them first,
# into a scratch folder so the checkout's staticfiles/ is left alone.
os.environ.setdefault("MILLRACE_STATIC_ROOT", tempfile.mkdtemp(prefix="bench-static-"))

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from pipelines.models import Pipeline  # noqa: E402
from portal import services  # noqa: E402
from portal.models import Role  # noqa: E402
from runs.models import Experiment, PipelineRun, StepRun  # noqa: E402
from runs.tests.scale_support import fill_runs, step_graph  # noqa: E402

BUDGET_P95_MS = 150.0  # DESIGN.md, "Budgets"
WARMUP = 5


@dataclass
class Case:
    name: str
    links: list[str]  # requested in turn


@dataclass
class Result:
    name: str
    status: int
    queries: int
    p50: float
    p95: float
    worst: float


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class QueryCounter:
    """Counts the statements a request runs (a database execute wrapper)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def measure(client: Client, case: Case, requests: int) -> Result:
    for link in case.links[:WARMUP]:
        client.get(link)
    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        response = client.get(case.links[0])
    if response.status_code != 200:
        return Result(case.name, response.status_code, counter.count, 0, 0, 0)
    times = []
    for i in range(requests):
        link = case.links[i % len(case.links)]
        started = time.perf_counter()
        response = client.get(link)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            return Result(case.name, response.status_code, counter.count, 0, 0, 0)
    return Result(
        case.name,
        200,
        counter.count,
        statistics.median(times),
        percentile(times, 0.95),
        max(times),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=10, help="step runs per run")
    parser.add_argument("--requests", type=int, default=200, help="requests per page")
    args = parser.parse_args()

    call_command("collectstatic", interactive=False, verbosity=0)
    users = get_user_model()
    alice = users.objects.create_user("bench-alice", password="x" * 20)
    bob = users.objects.create_user("bench-bob", password="x" * 20)
    carol = users.objects.create_user("bench-carol", password="x" * 20)
    actor = services.Actor(user=alice)
    ws = services.create_workspace(actor=actor, name="Bench pages")
    services.add_member(actor=actor, workspace=ws, username=bob.username, role=Role.CONTRIBUTOR)
    services.add_member(actor=actor, workspace=ws, username=carol.username, role=Role.READER)
    experiments = [Experiment.objects.create(workspace=ws, name=f"exp-{i}") for i in range(20)]
    graph = step_graph(args.steps)
    pipelines: list[Pipeline | None] = [
        Pipeline.objects.create(
            workspace=ws,
            name=f"pipeline-{i}",
            digest=f"{i:064}",
            graph=graph,
            step_count=args.steps,
            created_by=alice,
        )
        for i in range(10)
    ]

    started = time.perf_counter()
    fill_runs(
        workspace=ws,
        count=args.runs,
        experiments=experiments,
        pipelines=pipelines,
        user_ids=[alice.pk, bob.pk, carol.pk],
        steps_per_run=args.steps,
        graph=graph,
    )
    runs = PipelineRun.objects.filter(workspace=ws).count()
    steps = StepRun.objects.filter(run__workspace=ws).count()
    print(
        f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; "
        f"PostgreSQL {connection.cursor().connection.info.server_version}",
        flush=True,
    )
    print(
        f"filled {runs:,} runs and {steps:,} step runs in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

    base = f"/w/{ws.uuid}/runs/"
    ordered = PipelineRun.objects.filter(workspace=ws).order_by("-created_at", "-id")
    rng = random.Random(7)  # noqa: S311 - picks sample pages, not secrets
    deep = [ordered[rng.randrange(runs // 2, runs - 100)].uuid for _ in range(10)]
    sample = [ordered[rng.randrange(0, runs)].uuid for _ in range(20)]
    experiment = experiments[3]
    cases = [
        Case("run list, first page", [base]),
        Case("run list, status filter", [f"{base}?status=Failed"]),
        Case(
            "run list, 4 filters",
            [
                f"{base}?status=Completed&experiment={experiment.uuid}&submitter={bob.username}"
                "&tag=batch%3D23"
            ],
        ),
        Case("run list, rare status (Running)", [f"{base}?status=Running"]),
        Case("run list, deep page (keyset)", [f"{base}?after={u}" for u in deep]),
        Case("run list, newer from deep page", [f"{base}?before={u}" for u in deep]),
        Case(f"run page ({args.steps} steps)", [f"{base}{u}/" for u in sample]),
        Case("pipelines page", [f"/w/{ws.uuid}/pipelines/"]),
        Case("pipeline page", [f"/w/{ws.uuid}/pipelines/{pipelines[0].uuid}/"]),  # type: ignore[union-attr]
        Case("experiments page", [f"/w/{ws.uuid}/experiments/"]),
    ]
    client = Client(SERVER_NAME="localhost")
    client.force_login(carol)
    results = [measure(client, case, args.requests) for case in cases]

    print()
    print(
        f"{'page':<36} {'status':>6} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'max ms':>8} {'budget p95':>10}  verdict"
    )
    for r in results:
        if r.status != 200:
            print(
                f"{r.name:<36} {r.status:>6} {r.queries:>7} {'-':>8} {'-':>8} {'-':>8} "
                f"{BUDGET_P95_MS:>10.0f}  page answered {r.status}"
            )
            continue
        verdict = "within" if r.p95 <= BUDGET_P95_MS else "OVER"
        print(
            f"{r.name:<36} {r.status:>6} {r.queries:>7} {r.p50:>8.1f} {r.p95:>8.1f} "
            f"{r.worst:>8.1f} {BUDGET_P95_MS:>10.0f}  {verdict}"
        )
    print(
        f"\n{args.requests} requests per page, in-process (Django test client), "
        "after a warm-up; the budget applies to the run list and run page."
    )


if __name__ == "__main__":
    main()
