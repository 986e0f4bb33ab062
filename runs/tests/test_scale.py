"""With 100,000 runs in the workspace the run list and the run page still take a fixed number
of queries: the first page, a filtered page and a page 90,000 runs deep, and a run page whether
the run has 3 steps or 60. (Server times are measured by bench/pages.py, never here.)"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pipelines.models import Pipeline
from portal.models import Workspace
from runs.models import Experiment, PipelineRun, Status, StepRun
from runs.tests.scale_support import fill_runs, step_graph
from runs.views import RUN_PAGE_SIZE

RUNS = 100_000
# session, user, workspace, membership, switcher workspaces, filter choices (experiments,
# pipelines, members) and the page of runs; a cursor adds the lookup of its run.
LIST_QUERIES = 9


@pytest.fixture
def crowded(ws: Workspace, alice: Any, bob: Any, carol: Any) -> dict[str, Any]:
    experiments = [Experiment.objects.create(workspace=ws, name=f"exp-{i}") for i in range(20)]
    pipelines: list[Pipeline | None] = [
        Pipeline.objects.create(
            workspace=ws,
            name=f"pipe-{i}",
            digest=f"{i:064}",
            graph=step_graph(3),
            step_count=3,
            created_by=alice,
        )
        for i in range(10)
    ]
    fill_runs(
        workspace=ws,
        count=RUNS,
        experiments=experiments,
        pipelines=[*pipelines, None],
        user_ids=[alice.pk, bob.pk, carol.pk],
        newest=timezone.now() - dt.timedelta(minutes=1),
    )
    assert PipelineRun.objects.filter(workspace=ws).count() == RUNS
    return {"experiments": experiments, "pipelines": pipelines}


def listed(response: Any) -> list[str]:
    return re.findall(r'<tr data-run="([0-9a-f-]{36})"', response.content.decode())


def test_the_run_list_takes_a_fixed_number_of_queries_with_100k_runs(
    client: Client,
    ws: Workspace,
    carol: Any,
    crowded: dict[str, Any],
    django_assert_num_queries: Any,
) -> None:
    everything = PipelineRun.objects.filter(workspace=ws).order_by("-created_at", "-id")
    deep = everything[90_000]
    experiment = crowded["experiments"][3]
    client.force_login(carol)
    base = f"/w/{ws.uuid}/runs/"
    cases = [
        (base, LIST_QUERIES, list(everything[:RUN_PAGE_SIZE])),
        (
            f"{base}?status=Failed&experiment={experiment.uuid}&submitter=bob&tag=batch%3D23",
            LIST_QUERIES,
            None,
        ),
        (f"{base}?status=Running", LIST_QUERIES, None),
        (
            f"{base}?after={deep.uuid}",
            LIST_QUERIES + 1,
            list(everything[90_001 : 90_001 + RUN_PAGE_SIZE]),
        ),
        (f"{base}?before={deep.uuid}", LIST_QUERIES + 1, None),
    ]
    for link, queries, expected in cases:
        with django_assert_num_queries(queries):
            response = client.get(link)
        assert response.status_code == 200, link
        rows = listed(response)
        assert len(rows) == RUN_PAGE_SIZE, link
        if expected is not None:
            assert rows == [str(r.uuid) for r in expected]
    # The filtered page really is filtered.
    failed = client.get(f"{base}?status=Failed&submitter=bob")
    statuses = set(
        re.findall(r'<tr data-run="[^"]+" data-status="([A-Za-z]+)"', failed.content.decode())
    )
    assert statuses == {"Failed"}


def _run_with_steps(ws: Workspace, experiment: Experiment, user: Any, steps: int) -> PipelineRun:
    graph = step_graph(steps)
    run = PipelineRun.objects.create(
        workspace=ws,
        experiment=experiment,
        graph=graph,
        status=Status.RUNNING,
        submitted_by=user,
        started_at=timezone.now(),
    )
    StepRun.objects.bulk_create(
        StepRun(
            run=run,
            name=step["name"],
            spec=step,
            status=Status.COMPLETED if i < steps - 1 else Status.RUNNING,
            depends_on=[graph["steps"][i - 1]["name"]] if i else [],
            timings={"queued": 0.1, "running": 2.0},
        )
        for i, step in enumerate(graph["steps"])
    )
    return run


def test_the_run_page_takes_a_fixed_number_of_queries_with_100k_runs(
    client: Client,
    ws: Workspace,
    bob: Any,
    carol: Any,
    crowded: dict[str, Any],
    django_assert_num_queries: Any,
) -> None:
    experiment = crowded["experiments"][0]
    small = _run_with_steps(ws, experiment, bob, 3)
    large = _run_with_steps(ws, experiment, bob, 60)
    client.force_login(carol)
    client.get(f"/w/{ws.uuid}/runs/{small.uuid}/")  # warm the session and caches

    with CaptureQueriesContext(connection) as small_queries:
        response = client.get(f"/w/{ws.uuid}/runs/{small.uuid}/")
    assert response.status_code == 200, "the run page (run-detail) does not answer yet"

    with django_assert_num_queries(len(small_queries.captured_queries)):
        response = client.get(f"/w/{ws.uuid}/runs/{large.uuid}/")
    assert response.status_code == 200
    assert response.content.decode().count('class="dag-node"') == 60
