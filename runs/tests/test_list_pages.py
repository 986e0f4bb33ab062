"""The pipelines, pipeline, experiments and runs pages: who may see them, their filters, search
and sort, keyset pagination (also across runs created at the same instant), the compare form,
and query counts that do not grow with the rows."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from pipelines.models import Pipeline
from portal.models import Workspace
from runs.models import Experiment, PipelineRun, Status
from runs.views import RUN_PAGE_SIZE, human_duration

# Written out rather than reversed: a route that moves must fail these tests.
PATHS = {
    "pipeline-list": "/w/{ws}/pipelines/",
    "pipeline-detail": "/w/{ws}/pipelines/{pipeline}/",
    "experiment-list": "/w/{ws}/experiments/",
    "run-list": "/w/{ws}/runs/",
}

GRAPH = {
    "parameters": {"n": {"type": "int", "default": 3}, "mode": {"type": "string"}},
    "steps": [
        {
            "name": "prep",
            "script": "prep.py",
            "snapshot": "a" * 64,
            "arguments": ["--out", {"output": "prepared"}, "--n", {"parameter": "n"}],
            "inputs": {"raw": {"datastore": "workspaceblobstore", "path": "raw/", "mode": "mount"}},
            "outputs": {"prepared": {"datastore": "workspaceblobstore"}},
            "compute_target": "local",
            "environment": {"pip_packages": ["pandas==2.2.3"], "base_image": "python:3.11-slim"},
            "allow_reuse": True,
        },
        {
            "name": "train",
            "script": "train.py",
            "snapshot": "a" * 64,
            "arguments": ["--data", {"input": "prepared"}, "--model", {"output": "model"}],
            "inputs": {"prepared": {"pipeline_data": "prepared", "mode": "download"}},
            "outputs": {"model": {}},
            "compute_target": "gpu-pool",
            "allow_reuse": False,
            "max_retries": 0,
            "timeout_seconds": 600,
        },
        {
            "name": "report",
            "script": "report.py",
            "snapshot": "a" * 64,
            "compute_target": "local",
            "run_after": ["train"],
        },
    ],
}


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


def run_uuids(response: Any) -> list[str]:
    """The runs listed on a page, top to bottom."""
    return re.findall(r'<tr data-run="([0-9a-f-]{36})"', response.content.decode())


def path(name: str, ws: Workspace, **kwargs: Any) -> str:
    return PATHS[name].format(ws=ws.uuid, **{k: str(v) for k, v in kwargs.items()})


def make_pipeline(
    ws: Workspace, name: str = "forecast", *, steps: int | None = None, **extra: Any
) -> Pipeline:
    graph = GRAPH if steps is None else chain_graph(steps)
    return Pipeline.objects.create(
        workspace=ws,
        name=name,
        digest=f"{name}-{steps}-{Pipeline.objects.count()}".ljust(64, "0")[:64],
        graph=graph,
        step_count=len(graph["steps"]),
        **extra,
    )


def chain_graph(n: int) -> dict[str, Any]:
    steps = []
    for i in range(n):
        step: dict[str, Any] = {
            "name": f"s{i:03}",
            "script": "s.py",
            "compute_target": "local",
            "outputs": {f"d{i}": {}},
        }
        if i:
            step["inputs"] = {"x": {"pipeline_data": f"d{i - 1}"}}
        steps.append(step)
    return {"steps": steps}


def make_runs(
    ws: Workspace,
    count: int,
    *,
    experiment: Experiment | None = None,
    pipeline: Pipeline | None = None,
    status: str = Status.COMPLETED,
    user: Any = None,
    tags: dict[str, str] | None = None,
    created_at: dt.datetime | None = None,
) -> list[PipelineRun]:
    """``count`` runs; with ``created_at`` they all share that instant."""
    if experiment is None:
        experiment, _ = Experiment.objects.get_or_create(workspace=ws, name="default")
    now = timezone.now()
    runs = PipelineRun.objects.bulk_create(
        [
            PipelineRun(
                workspace=ws,
                experiment=experiment,
                pipeline=pipeline,
                status=status,
                graph={"steps": []},
                tags=dict(tags or {}),
                submitted_by=user,
                started_at=now - dt.timedelta(minutes=3, seconds=4),
                finished_at=now if status in (Status.COMPLETED, Status.FAILED) else None,
            )
            for _ in range(count)
        ]
    )
    if created_at is not None:
        PipelineRun.objects.filter(pk__in=[r.pk for r in runs]).update(created_at=created_at)
    return runs


@pytest.fixture
def scene(ws: Workspace, other: Workspace, alice: Any, bob: Any) -> dict[str, Any]:
    pipeline = make_pipeline(ws, created_by=alice)
    experiment = Experiment.objects.create(workspace=ws, name="nightly")
    runs = make_runs(ws, 2, experiment=experiment, pipeline=pipeline, user=bob)
    make_runs(other, 1)  # the outsider's own run must never show in ws
    return {"pipeline": pipeline, "experiment": experiment, "runs": runs}


# --- who may see -------------------------------------------------------------------------------

PAGES = ["pipeline-list", "pipeline-detail", "experiment-list", "run-list"]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(
    ("actor", "expected"),
    [("anonymous", 302), ("charlie", 404), ("carol", 200), ("bob", 200), ("alice", 200)],
)
def test_members_read_every_page_and_outsiders_get_404(
    client: Client,
    scene: dict[str, Any],
    ws: Workspace,
    page: str,
    actor: str,
    expected: int,
    django_user_model: Any,
) -> None:
    if actor != "anonymous":
        client.force_login(django_user_model.objects.get(username=actor))
    response = client.get(path(page, ws, pipeline=scene["pipeline"].uuid))
    assert response.status_code == expected
    if expected == 302:
        assert (
            response["Location"].startswith("/accounts/login/") or "login" in response["Location"]
        )


def test_a_pipeline_of_another_workspace_is_not_found(
    client: Client, ws: Workspace, other: Workspace, charlie: Any, carol: Any
) -> None:
    theirs = make_pipeline(other, "secret-pipeline")
    client.force_login(carol)
    assert client.get(path("pipeline-detail", ws, pipeline=theirs.uuid)).status_code == 404
    assert client.get(path("pipeline-detail", ws, pipeline="not-a-uuid")).status_code == 404


def test_the_run_list_shows_only_this_workspaces_runs(
    client: Client, scene: dict[str, Any], ws: Workspace, carol: Any
) -> None:
    client.force_login(carol)
    response = client.get(path("run-list", ws))
    assert set(run_uuids(response)) == {str(r.uuid) for r in scene["runs"]}


def test_the_navigation_links_to_the_new_pages(
    client: Client, scene: dict[str, Any], ws: Workspace, carol: Any
) -> None:
    client.force_login(carol)
    page = text(client.get(f"/w/{ws.uuid}/"))
    for name in ("pipeline-list", "experiment-list", "run-list"):
        assert f'href="{path(name, ws)}"' in page


# --- the runs list -----------------------------------------------------------------------------


def test_a_run_row_shows_status_experiment_pipeline_submitter_duration_and_tags(
    client: Client, ws: Workspace, bob: Any, carol: Any
) -> None:
    pipeline = make_pipeline(ws)
    experiment = Experiment.objects.create(workspace=ws, name="nightly")
    (run,) = make_runs(
        ws,
        1,
        experiment=experiment,
        pipeline=pipeline,
        user=bob,
        status=Status.FAILED,
        tags={"team": "ml"},
    )
    client.force_login(carol)
    row = re.search(
        rf'<tr data-run="{run.uuid}".*?</tr>', text(client.get(path("run-list", ws))), re.S
    )
    assert row is not None
    row_text = row.group(0)
    assert 'class="badge status-badge status-Failed"' in row_text
    assert ">nightly</a>" in row_text and ">forecast</a>" in row_text
    assert "bob" in row_text and "3 min 4 s" in row_text and "team=ml" in row_text
    assert f'href="/w/{ws.uuid}/runs/{run.uuid}/"' in row_text


def test_the_compare_form_submits_the_ticked_runs_to_the_compare_page(
    client: Client, scene: dict[str, Any], ws: Workspace, carol: Any
) -> None:
    client.force_login(carol)
    for page in (
        path("run-list", ws),
        path("pipeline-detail", ws, pipeline=scene["pipeline"].uuid),
    ):
        body = text(client.get(page))
        form = re.search(r'<form method="get" action="([^"]+)" id="run-compare-form">', body)
        assert form is not None and form.group(1) == f"/w/{ws.uuid}/runs/compare/"
        for run in scene["runs"]:
            assert f'type="checkbox" name="runs" value="{run.uuid}"' in body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "Failed"}, {"failed"}),
        ({"status": "Running"}, {"running"}),
        ({"experiment": "EXP"}, {"in-exp"}),
        ({"pipeline": "PIPE"}, {"in-pipe"}),
        ({"submitter": "bob"}, {"by-bob"}),
        ({"tag": "team"}, {"tagged-ml", "tagged-cv"}),
        ({"tag": "team=cv"}, {"tagged-cv"}),
        ({"tag": "team = ml"}, {"tagged-ml"}),
        ({"since": "2026-03-02"}, {"new"}),
        (
            {"until": "2026-03-01"},
            {"old", "failed", "running", "in-exp", "in-pipe", "by-bob", "tagged-ml", "tagged-cv"},
        ),
        (
            {"since": "2026-03-01", "until": "2026-03-01"},
            {"failed", "running", "in-exp", "in-pipe", "by-bob", "tagged-ml", "tagged-cv"},
        ),
        ({"status": "Failed", "submitter": "bob"}, set()),
    ],
)
def test_filters_narrow_the_run_list(
    client: Client, ws: Workspace, bob: Any, carol: Any, query: dict[str, str], expected: set[str]
) -> None:
    march1 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    exp = Experiment.objects.create(workspace=ws, name="special")
    pipe = make_pipeline(ws, "special")
    named = {
        "old": make_runs(ws, 1, created_at=march1 - dt.timedelta(days=3)),
        "failed": make_runs(ws, 1, status=Status.FAILED, created_at=march1),
        "running": make_runs(ws, 1, status=Status.RUNNING, created_at=march1),
        "in-exp": make_runs(ws, 1, experiment=exp, created_at=march1),
        "in-pipe": make_runs(ws, 1, pipeline=pipe, created_at=march1),
        "by-bob": make_runs(ws, 1, user=bob, created_at=march1),
        "tagged-ml": make_runs(ws, 1, tags={"team": "ml"}, created_at=march1),
        "tagged-cv": make_runs(ws, 1, tags={"team": "cv", "x": "ml"}, created_at=march1),
        "new": make_runs(ws, 1, created_at=march1 + dt.timedelta(days=2)),
    }
    names = {str(runs[0].uuid): name for name, runs in named.items()}
    params = {
        k: v.replace("EXP", str(exp.uuid)).replace("PIPE", str(pipe.uuid)) for k, v in query.items()
    }
    client.force_login(carol)
    response = client.get(path("run-list", ws), params)
    assert response.status_code == 200
    assert {names[u] for u in run_uuids(response)} == expected


@pytest.mark.parametrize(
    "query",
    [
        {"since": "yesterday"},
        {"status": "Bogus"},
        {"since": "2026-03-02", "until": "2026-03-01"},
        {"tag": "=ml"},
        {"experiment": "not-a-uuid"},
    ],
)
def test_a_bad_filter_is_explained_not_crashed_on(
    client: Client, ws: Workspace, carol: Any, query: dict[str, str]
) -> None:
    make_runs(ws, 2)
    client.force_login(carol)
    response = client.get(path("run-list", ws), query)
    assert response.status_code == 400
    assert "is-invalid" in text(response) or "alert-danger" in text(response)
    assert run_uuids(response) == []


def walk(client: Client, ws: Workspace, query: str = "") -> tuple[list[list[str]], str]:
    """Follow 'Older' links from the first page; return each page's runs and the last page."""
    pages = []
    link = path("run-list", ws) + query
    while True:
        response = client.get(link)
        assert response.status_code == 200
        pages.append(run_uuids(response))
        older = re.search(r'id="page-older" href="([^"]+)"', response.content.decode())
        if older is None:
            return pages, link
        link = path("run-list", ws) + html.unescape(older.group(1))


def test_keyset_pages_cover_every_run_once_even_at_the_same_instant(
    client: Client, ws: Workspace, carol: Any
) -> None:
    instant = timezone.now() - dt.timedelta(hours=1)
    # 2.5 pages of runs all created at one instant, between newer and older ones.
    newest = make_runs(ws, 7)
    same = make_runs(ws, RUN_PAGE_SIZE * 2 + RUN_PAGE_SIZE // 2, created_at=instant)
    oldest = make_runs(ws, 5, created_at=instant - dt.timedelta(days=1))
    client.force_login(carol)

    pages, _ = walk(client, ws)

    seen = [u for page in pages for u in page]
    expected = list(
        PipelineRun.objects.filter(workspace=ws)
        .order_by("-created_at", "-id")
        .values_list("uuid", flat=True)
    )
    assert seen == [str(u) for u in expected]
    assert len(seen) == len(newest) + len(same) + len(oldest)
    assert [len(p) for p in pages] == [RUN_PAGE_SIZE, RUN_PAGE_SIZE, len(seen) - 2 * RUN_PAGE_SIZE]


def test_newer_links_walk_back_through_the_same_pages(
    client: Client, ws: Workspace, carol: Any
) -> None:
    make_runs(ws, RUN_PAGE_SIZE * 3 + 3, created_at=timezone.now() - dt.timedelta(minutes=5))
    client.force_login(carol)
    forward, last_link = walk(client, ws)

    backward = []
    link = last_link
    while True:
        response = client.get(link)
        backward.append(run_uuids(response))
        newer = re.search(r'id="page-newer" href="([^"]+)"', response.content.decode())
        if newer is None:
            break
        link = path("run-list", ws) + html.unescape(newer.group(1))
    assert backward[::-1] == forward
    first = client.get(path("run-list", ws)).content.decode()
    assert 'id="page-newer"' not in first


def test_pagination_keeps_the_filters(client: Client, ws: Workspace, carol: Any) -> None:
    make_runs(ws, RUN_PAGE_SIZE + 5, status=Status.FAILED)
    make_runs(ws, RUN_PAGE_SIZE + 5, status=Status.COMPLETED)
    client.force_login(carol)
    pages, _ = walk(client, ws, "?status=Failed")
    assert [len(p) for p in pages] == [RUN_PAGE_SIZE, 5]
    failed = set(PipelineRun.objects.filter(status=Status.FAILED).values_list("uuid", flat=True))
    assert {u for p in pages for u in p} == {str(u) for u in failed}


def test_an_unknown_cursor_shows_the_first_page(client: Client, ws: Workspace, carol: Any) -> None:
    runs = make_runs(ws, 3)
    client.force_login(carol)
    for cursor in ("after=nonsense", "before=00000000-0000-0000-0000-000000000000"):
        response = client.get(path("run-list", ws) + "?" + cursor)
        assert response.status_code == 200
        assert set(run_uuids(response)) == {str(r.uuid) for r in runs}


def test_an_empty_run_list_says_what_to_do(client: Client, ws: Workspace, carol: Any) -> None:
    client.force_login(carol)
    assert "No runs yet" in text(client.get(path("run-list", ws)))
    assert "No runs match" in text(client.get(path("run-list", ws), {"status": "Failed"}))


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, ""),
        (0.25, "250 ms"),
        (4, "4 s"),
        (184, "3 min 4 s"),
        (7500, "2 h 5 min"),
        (90000, "1 d 1 h"),
    ],
)
def test_durations_read_like_a_person_would_say_them(seconds: float | None, expected: str) -> None:
    assert human_duration(seconds) == expected


# --- experiments -------------------------------------------------------------------------------


def test_experiments_show_run_count_and_latest_status_and_link_to_their_runs(
    client: Client, ws: Workspace, carol: Any
) -> None:
    nightly = Experiment.objects.create(workspace=ws, name="nightly")
    Experiment.objects.create(workspace=ws, name="empty-one")
    make_runs(ws, 3, experiment=nightly, created_at=timezone.now() - dt.timedelta(hours=2))
    make_runs(ws, 1, experiment=nightly, status=Status.RUNNING)
    client.force_login(carol)
    body = text(client.get(path("experiment-list", ws)))
    row = re.search(r'<tr data-experiment="nightly">.*?</tr>', body, re.S)
    assert row is not None
    assert '<td class="text-end">4</td>' in row.group(0)
    assert "status-Running" in row.group(0)
    assert f"?experiment={nightly.uuid}" in row.group(0)
    assert "no runs" in re.search(r'<tr data-experiment="empty-one">.*?</tr>', body, re.S).group(0)  # type: ignore[union-attr]
    filtered = text(client.get(path("experiment-list", ws), {"q": "NIGHT"}))
    assert 'data-experiment="nightly"' in filtered and "empty-one" not in filtered


# --- pipelines ---------------------------------------------------------------------------------


def pipeline_names(response: Any) -> list[str]:
    return re.findall(
        r'<tr data-pipeline="[^"]+">\s*<td>\s*<a href="[^"]+">([^<]+)</a>', text(response)
    )


def test_the_pipelines_page_searches_and_sorts(client: Client, ws: Workspace, carol: Any) -> None:
    make_pipeline(ws, "beta", steps=5)
    make_pipeline(ws, "alpha", steps=12, description="trains the churn model")
    make_pipeline(ws, "gamma", steps=1)
    client.force_login(carol)
    page = path("pipeline-list", ws)
    assert pipeline_names(client.get(page)) == ["gamma", "alpha", "beta"]  # newest first
    assert pipeline_names(client.get(page, {"sort": "name"})) == ["alpha", "beta", "gamma"]
    assert pipeline_names(client.get(page, {"sort": "-name"})) == ["gamma", "beta", "alpha"]
    assert pipeline_names(client.get(page, {"sort": "-steps"})) == ["alpha", "beta", "gamma"]
    assert pipeline_names(client.get(page, {"sort": "nonsense"})) == ["gamma", "alpha", "beta"]
    assert pipeline_names(client.get(page, {"q": "CHURN"})) == ["alpha"]
    assert pipeline_names(client.get(page, {"q": "et"})) == ["beta"]
    assert "No pipeline matches" in text(client.get(page, {"q": "nothing-like-it"}))


def test_the_pipelines_page_sorts_by_latest_run(client: Client, ws: Workspace, carol: Any) -> None:
    a, b = make_pipeline(ws, "a"), make_pipeline(ws, "b")
    make_pipeline(ws, "never-run")
    make_runs(ws, 1, pipeline=b, created_at=timezone.now() - dt.timedelta(days=1))
    make_runs(ws, 1, pipeline=a)
    client.force_login(carol)
    names = pipeline_names(client.get(path("pipeline-list", ws), {"sort": "-last_run"}))
    assert names == ["a", "b", "never-run"]


def test_the_pipelines_page_pages(client: Client, ws: Workspace, carol: Any) -> None:
    for i in range(30):
        make_pipeline(ws, f"p{i:02}")
    client.force_login(carol)
    first = client.get(path("pipeline-list", ws), {"sort": "name"})
    second = client.get(path("pipeline-list", ws), {"sort": "name", "page": "2"})
    assert pipeline_names(first) == [f"p{i:02}" for i in range(25)]
    assert pipeline_names(second) == [f"p{i:02}" for i in range(25, 30)]
    assert "sort=name&amp;page=2" in first.content.decode()


def test_a_pipeline_row_shows_steps_parameters_last_run_and_no_published_versions(
    client: Client, ws: Workspace, carol: Any
) -> None:
    pipeline = make_pipeline(ws)
    make_runs(ws, 1, pipeline=pipeline, created_at=timezone.now() - dt.timedelta(hours=1))
    (latest,) = make_runs(ws, 1, pipeline=pipeline, status=Status.FAILED)
    client.force_login(carol)
    body = text(client.get(path("pipeline-list", ws)))
    row = re.search(rf'<tr data-pipeline="{pipeline.uuid}">.*?</tr>', body, re.S)
    assert row is not None
    cells = row.group(0)
    assert '<td class="text-end">3</td>' in cells  # steps
    assert ">n=3</span>" in cells and ">mode</span>" in cells
    assert f"/runs/{latest.uuid}/" in cells and "status-Failed" in cells
    assert "not published" in cells


def test_the_pipeline_page_draws_the_graph_and_details_every_step(
    client: Client, ws: Workspace, carol: Any
) -> None:
    pipeline = make_pipeline(ws)
    runs = make_runs(ws, 2, pipeline=pipeline)
    client.force_login(carol)
    body = text(client.get(path("pipeline-detail", ws, pipeline=pipeline.uuid)))
    for name in ("prep", "train", "report"):
        assert f'<g class="dag-node" data-step="{name}" data-status="">' in body
    assert body.count('<path class="dag-edge" d=') == 1  # prep → train carries 'prepared'
    assert body.count('<path class="dag-edge dag-edge-after" d=') == 1  # report runs after train
    assert ">prepared</text>" in body
    train = re.search(r'<details [^>]*data-step="train">.*?</details>', body, re.S)
    assert train is not None
    details = train.group(0)
    assert "train.py" in details and "gpu-pool" in details
    assert (
        "input: prepared" in details
        and "output: model" in details
        and "<code>--data</code>" in details
    )
    assert "never: the step always runs" in details and "timeout 600 s" in details
    assert 'href="#step-0">prep</a>' in details and "(download)" in details
    prep = re.search(r'<details [^>]*data-step="prep">.*?</details>', body, re.S).group(0)  # type: ignore[union-attr]
    assert (
        "pandas==2.2.3" in prep and "python:3.11-slim" in prep and "workspaceblobstore:raw/" in prep
    )
    assert (
        '<tr data-parameter="n"><td><code>n</code></td><td>int</td><td><code>3</code></td></tr>'
        in body
    )
    assert "required" in re.search(r'<tr data-parameter="mode">.*?</tr>', body).group(0)  # type: ignore[union-attr]
    assert set(run_uuids_in(body)) == {str(r.uuid) for r in runs}


def run_uuids_in(body: str) -> list[str]:
    return re.findall(r'<tr data-run="([0-9a-f-]{36})"', body)


def test_a_hundred_and_fifty_step_pipeline_page_renders(
    client: Client, ws: Workspace, carol: Any
) -> None:
    pipeline = make_pipeline(ws, "big", steps=150)
    client.force_login(carol)
    response = client.get(path("pipeline-detail", ws, pipeline=pipeline.uuid))
    assert response.status_code == 200
    assert text(response).count('class="dag-node"') == 150
    assert text(response).count('<details class="card mb-2 pipeline-step"') == 150


# --- query counts ------------------------------------------------------------------------------

# session, user, workspace, membership, the switcher's workspaces (base.html) …
BASE = 5


@pytest.fixture
def populate(ws: Workspace, alice: Any, bob: Any) -> Callable[[int], None]:
    def fill(rows: int) -> None:
        for i in range(rows):
            experiment = Experiment.objects.create(workspace=ws, name=f"exp{i}")
            pipeline = make_pipeline(ws, f"pipe{i}", created_by=alice)
            make_runs(
                ws,
                3,
                experiment=experiment,
                pipeline=pipeline,
                user=bob if i % 2 else alice,
                tags={"i": str(i)},
            )

    return fill


@pytest.mark.parametrize("rows", [1, 30])
@pytest.mark.parametrize(
    ("page", "extra", "query"),
    [
        ("run-list", 4, ""),  # experiments, pipelines, members (filter choices), the runs
        ("run-list", 4, "?status=Completed&submitter=bob&tag=i"),
        ("run-list", 5, "?after=CURSOR"),  # + the cursor run
        ("experiment-list", 2, ""),  # count, page
        ("pipeline-list", 2, "?sort=-last_run"),  # count, page
        ("pipeline-detail", 3, ""),  # pipeline, its runs, same-named pipelines
    ],
)
def test_pages_use_a_fixed_number_of_queries(
    client: Client,
    ws: Workspace,
    carol: Any,
    populate: Callable[[int], None],
    rows: int,
    page: str,
    extra: int,
    query: str,
    django_assert_num_queries: Any,
) -> None:
    populate(rows)
    pipeline = Pipeline.objects.filter(workspace=ws).first()
    assert pipeline is not None
    cursor = PipelineRun.objects.filter(workspace=ws).order_by("-created_at", "-id")[1]
    link = path(page, ws, pipeline=pipeline.uuid) + query.replace("CURSOR", str(cursor.uuid))
    client.force_login(carol)
    with django_assert_num_queries(BASE + extra):
        response = client.get(link)
    assert response.status_code == 200


def test_the_filter_form_keeps_what_was_chosen(client: Client, ws: Workspace, carol: Any) -> None:
    experiment = Experiment.objects.create(workspace=ws, name="nightly")
    client.force_login(carol)
    body = client.get(
        path("run-list", ws), {"status": "Failed", "experiment": str(experiment.uuid), "tag": "k=v"}
    ).content.decode()
    assert '<option value="Failed" selected>' in body
    assert f'<option value="{experiment.uuid}" selected>nightly</option>' in body
    assert 'name="tag" id="id_tag" value="k=v"' in body
    assert '<option value="" selected>Anyone</option>' in body
