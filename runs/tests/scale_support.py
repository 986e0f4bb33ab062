"""Filling the database with many runs and step runs fast, for the scale tests
(runs/tests/test_scale.py) and the page benchmark (bench/pages.py).

On PostgreSQL one ``INSERT … SELECT … FROM generate_series`` per table writes 100,000 runs in
a couple of seconds and 1,000,000 step runs in well under a minute; elsewhere (SQLite) rows go
through ``bulk_create`` in batches. Every column the statement does not set explicitly gets
its model default, so a field added later does not break the fill.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from django.db import connection, models

from pipelines.models import Pipeline
from portal.models import Workspace
from runs.models import TERMINAL, Experiment, PipelineRun, Status, StepRun

# Most runs finish; a few fail, are canceled or are still going.
STATUS_MIX = [Status.COMPLETED] * 12 + [
    Status.FAILED,
    Status.FAILED,
    Status.CANCELED,
    Status.RUNNING,
    Status.QUEUED,
    Status.NOT_STARTED,
]
TAG_BUCKETS = 100


def step_graph(steps: int) -> dict[str, Any]:
    """A chain of ``steps`` steps passing data along, as a run keeps its graph."""
    chain: list[dict[str, Any]] = []
    for i in range(steps):
        step: dict[str, Any] = {
            "name": f"step_{i:04}",
            "script": "step.py",
            "snapshot": "0" * 64,
            "arguments": ["--out", {"output": f"data_{i}"}],
            "outputs": {f"data_{i}": {"datastore": "workspaceblobstore"}},
            "compute_target": "local",
            "allow_reuse": True,
        }
        if i:
            step["inputs"] = {"source": {"pipeline_data": f"data_{i - 1}"}}
            step["arguments"] += ["--in", {"input": "source"}]
        chain.append(step)
    return {"parameters": {}, "steps": chain}


def _columns(
    model: type[models.Model], given: dict[str, str]
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Columns, SQL expressions and named parameters: the ``given`` columns as written, every
    other concrete column its model default."""
    missing = set(given) - {f.column for f in model._meta.concrete_fields}
    assert not missing, f"no such columns on {model.__name__}: {missing}"
    columns, expressions, params = [], [], {}
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(str(field.column)))
        if field.column in given:
            expressions.append(given[field.column])
        else:
            key = f"default_{field.column}"
            params[key] = field.get_db_prep_save(field.get_default(), connection)
            expressions.append(f"%({key})s")
    return columns, expressions, params


def fill_runs(
    *,
    workspace: Workspace,
    count: int,
    experiments: Sequence[Experiment],
    pipelines: Sequence[Pipeline | None],
    user_ids: Sequence[int],
    steps_per_run: int = 0,
    newest: dt.datetime | None = None,
    graph: dict[str, Any] | None = None,
) -> None:
    """Add ``count`` runs (each with ``steps_per_run`` step runs) to a workspace, spread over
    the experiments, pipelines, users, statuses and 100 ``batch`` tag values. Runs are one
    second apart going back from ``newest``, three at a time sharing an instant (so keyset
    pagination's tie-break is exercised)."""
    newest = newest or dt.datetime.now(dt.UTC)
    graph = graph if graph is not None else step_graph(steps_per_run)
    if connection.vendor == "postgresql":
        _fill_postgresql(
            workspace, count, experiments, pipelines, user_ids, steps_per_run, newest, graph
        )
    else:
        _fill_batches(
            workspace, count, experiments, pipelines, user_ids, steps_per_run, newest, graph
        )


def _fill_postgresql(
    workspace: Workspace,
    count: int,
    experiments: Sequence[Experiment],
    pipelines: Sequence[Pipeline | None],
    user_ids: Sequence[int],
    steps_per_run: int,
    newest: dt.datetime,
    graph: dict[str, Any],
) -> None:
    status = "(%(statuses)s::text[])[1 + g %% %(n_statuses)s]"
    created = "%(newest)s::timestamptz - (g / 3) * interval '1 second'"
    given = {
        "uuid": "gen_random_uuid()",
        "workspace_id": "%(workspace)s",
        "experiment_id": "(%(experiments)s::bigint[])[1 + g %% %(n_experiments)s]",
        "pipeline_id": "(%(pipelines)s::bigint[])[1 + g %% %(n_pipelines)s]",
        "status": status,
        "graph": "%(graph)s::jsonb",
        "tags": f"jsonb_build_object('batch', (g %% {TAG_BUCKETS})::text)",
        "submitted_by_id": "(%(users)s::bigint[])[1 + g %% %(n_users)s]",
        "created_at": created,
        "started_at": f"{created} + interval '2 seconds'",
        "finished_at": (
            f"CASE WHEN {status} = ANY(%(terminal)s::text[]) "
            f"THEN {created} + interval '2 seconds' + (g %% 600) * interval '1 second' END"
        ),
    }
    columns, expressions, defaults = _columns(PipelineRun, given)
    params: dict[str, Any] = {
        "workspace": workspace.pk,
        "experiments": [e.pk for e in experiments],
        "n_experiments": len(experiments),
        "pipelines": [p.pk if p is not None else None for p in pipelines],
        "n_pipelines": len(pipelines),
        "statuses": [str(s) for s in STATUS_MIX],
        "n_statuses": len(STATUS_MIX),
        "terminal": [str(s) for s in TERMINAL],
        "users": list(user_ids),
        "n_users": len(user_ids),
        "graph": json.dumps(graph),
        "newest": newest,
        "count": count,
        **defaults,
    }
    table = PipelineRun._meta.db_table
    with connection.cursor() as cursor:
        # Table and column names come from the models; every value is a parameter.
        cursor.execute("SELECT coalesce(max(id), 0) FROM " + table)  # noqa: S608
        (first_id,) = cursor.fetchone()
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
            f"SELECT {', '.join(expressions)} FROM generate_series(1, %(count)s) AS g",
            params,
        )
        if steps_per_run:
            _fill_steps_postgresql(cursor, table, first_id, steps_per_run, graph)
        _settle(cursor, table)


def _settle(cursor: Any, table: str) -> None:
    """Statistics for the planner and, outside a transaction (the benchmark), the visibility
    map that autovacuum would have built by now, so counts can be index-only as in production."""
    cursor.execute(("ANALYZE " if connection.in_atomic_block else "VACUUM ANALYZE ") + table)


def _fill_steps_postgresql(
    cursor: Any, run_table: str, first_id: int, steps_per_run: int, graph: dict[str, Any]
) -> None:
    specs = [json.dumps(step) for step in graph["steps"][:steps_per_run]]
    # Step s of a run ends when the run's steps, spread evenly, reach it; the run's status
    # decides whether its steps finished.
    given = {
        "uuid": "gen_random_uuid()",
        "run_id": "r.id",
        "name": "'step_' || lpad((s - 1)::text, 4, '0')",
        "status": (
            "CASE WHEN r.status = 'Completed' OR s < %(steps)s THEN 'Completed' ELSE r.status END"
        ),
        "spec": "(%(specs)s::jsonb[])[s]",
        "depends_on": (
            "CASE WHEN s = 1 THEN '[]'::jsonb "
            "ELSE jsonb_build_array('step_' || lpad((s - 2)::text, 4, '0')) END"
        ),
        "timings": (
            "jsonb_build_object('queued', 0.05, 'environment', 0.2, 'inputs', 0.1, "
            "'running', 1 + s %% 7, 'outputs', 0.1)"
        ),
        "queued_at": "r.started_at",
        "started_at": "r.started_at + (s - 1) * interval '2 seconds'",
        "finished_at": "r.started_at + s * interval '2 seconds'",
    }
    columns, expressions, defaults = _columns(StepRun, given)
    cursor.execute(
        f"INSERT INTO {StepRun._meta.db_table} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(expressions)} FROM {run_table} AS r "
        "CROSS JOIN generate_series(1, %(steps)s) AS s WHERE r.id > %(first_id)s",
        {"steps": steps_per_run, "specs": specs, "first_id": first_id, **defaults},
    )
    _settle(cursor, StepRun._meta.db_table)


def _fill_batches(
    workspace: Workspace,
    count: int,
    experiments: Sequence[Experiment],
    pipelines: Sequence[Pipeline | None],
    user_ids: Sequence[int],
    steps_per_run: int,
    newest: dt.datetime,
    graph: dict[str, Any],
    batch: int = 5000,
) -> None:
    for start in range(1, count + 1, batch):
        runs = []
        for g in range(start, min(start + batch, count + 1)):
            status = STATUS_MIX[g % len(STATUS_MIX)]
            created = newest - dt.timedelta(seconds=g // 3)
            runs.append(
                PipelineRun(
                    workspace=workspace,
                    experiment=experiments[g % len(experiments)],
                    pipeline=pipelines[g % len(pipelines)],
                    status=status,
                    graph=graph,
                    tags={"batch": str(g % TAG_BUCKETS)},
                    submitted_by_id=user_ids[g % len(user_ids)],
                    started_at=created + dt.timedelta(seconds=2),
                    finished_at=created + dt.timedelta(seconds=2 + g % 600)
                    if status in TERMINAL
                    else None,
                )
            )
            runs[-1]._created = created  # type: ignore[attr-defined]
        created_runs = PipelineRun.objects.bulk_create(runs)
        # auto_now_add overrides created_at on insert: set it afterwards.
        for run in created_runs:
            run.created_at = run._created  # type: ignore[attr-defined]
        PipelineRun.objects.bulk_update(created_runs, ["created_at"], batch_size=1000)
        if steps_per_run:
            StepRun.objects.bulk_create(
                StepRun(
                    run=run,
                    name=step["name"],
                    status=Status.COMPLETED,
                    spec=step,
                    depends_on=[graph["steps"][i - 1]["name"]] if i else [],
                )
                for run in created_runs
                for i, step in enumerate(graph["steps"][:steps_per_run])
            )
