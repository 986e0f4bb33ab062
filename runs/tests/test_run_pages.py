"""The run page, the step panel, the log download, compare, cancel and resubmit, through
django.test.Client: who may see and do what (outsider 404, reader 403 on writes), what the page
shows without JS (log text, metrics, outputs, reuse), and query counts that do not grow with
the steps. Runs are submitted through the real service; their progress is written as a worker
would write it (no worker runs here)."""

from __future__ import annotations

import html
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pipelines.snapshots import snapshot_from_directory
from portal import services as portal_services
from portal.datastores import storage_for
from portal.models import Datastore, Workspace
from runs import run_views
from runs.models import LogChunk, Metric, Output, PipelineRun, Status, StepRun
from runs.services import submit_pipeline_run

# --- helpers -----------------------------------------------------------------------------------


def body_of(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def text(response: Any) -> str:
    return html.unescape(body_of(response).decode())


def login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def graph_of(digest: str, names: list[str]) -> dict[str, Any]:
    """A chain of steps; the first writes PipelineData 'prepared', the second reads it."""
    steps: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        step: dict[str, Any] = {
            "name": name,
            "script": "train.py",
            "snapshot": digest,
            "compute_target": "local",
            "arguments": ["--lr", {"parameter": "lr"}],
        }
        if i == 0:
            step["outputs"] = {"prepared": {"datastore": "workspacefilestore"}}
            step["arguments"] = ["--out", {"output": "prepared"}]
        elif i == 1:
            step["inputs"] = {"prepared": {"pipeline_data": "prepared"}}
            step["arguments"] = ["--data", {"input": "prepared"}, "--lr", {"parameter": "lr"}]
        else:
            step["run_after"] = [names[i - 1]]
        steps.append(step)
    return {
        "parameters": {
            "lr": {"type": "float", "default": 0.1},
            "epochs": {"type": "int", "default": 3},
        },
        "steps": steps,
    }


def write_lines(step: StepRun, lines: list[tuple[str, str]], log: str = "driver") -> None:
    """Store log lines as the worker's LogWriter does: numbered after the step's last one."""
    first = step.log_seq + 1
    numbered = [[first + i, stream, line] for i, (stream, line) in enumerate(lines)]
    LogChunk.objects.create(
        step_run=step, log=log, first_seq=first, last_seq=first + len(lines) - 1, lines=numbered
    )
    step.log_seq = first + len(lines) - 1
    StepRun.objects.filter(pk=step.pk).update(log_seq=step.log_seq)


def finish(step: StepRun, status: str = Status.COMPLETED, **fields: Any) -> None:
    now = timezone.now()
    values = {
        "status": status,
        "started_at": now - timedelta(seconds=12),
        "finished_at": now,
        "exit_code": 0 if status == Status.COMPLETED else 1,
        "attempt": 1,
        "timings": {
            "queued": 0.5,
            "environment": 1.0,
            "inputs": 0.2,
            "running": 9.8,
            "outputs": 0.4,
        },
        **fields,
    }
    StepRun.objects.filter(pk=step.pk).update(**values)
    step.refresh_from_db()


@dataclass
class Scene:
    ws: Workspace
    other: Workspace
    run: PipelineRun
    second: PipelineRun
    prepare: StepRun
    train: StepRun
    evaluate: StepRun
    reused: StepRun  # run 2's prepare, reused from run 1's
    rerun: StepRun  # run 2's train, which ran because a parameter changed


@pytest.fixture
def data_root(tmp_path: Path, settings: Any) -> Path:
    settings.MILLRACE_DATA_ROOT = tmp_path / "data"
    return tmp_path / "data"


@pytest.fixture
def digest(ws: Workspace, data_root: Path, tmp_path: Path) -> str:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("import sys\nprint('training with', sys.argv)\n")
    snapshot, _ = snapshot_from_directory(ws, source)
    return snapshot.digest


def submit(ws: Workspace, user: Any, graph: dict[str, Any], **parameters: Any) -> PipelineRun:
    return submit_pipeline_run(
        actor=portal_services.Actor(user=user),
        workspace=ws,
        experiment_name="forecast",
        graph=graph,
        pipeline_parameters=parameters,
        tags={"team": "energy"},
        source="rest",
    )


@pytest.fixture
def scene(ws: Workspace, other: Workspace, alice: Any, digest: str) -> Scene:
    graph = graph_of(digest, ["prepare", "train", "evaluate"])
    # An earlier run whose train step completed: the one a later run's train compares with.
    earlier = submit(ws, alice, graph, lr=0.1)
    finish(
        earlier.steps.get(name="train"),
        reuse_parts={"definition": "d2", "snapshot": "s1", "parameters": "p1"},
    )
    run = submit(ws, alice, graph, lr=0.1)
    PipelineRun.objects.filter(pk=run.pk).update(
        status=Status.RUNNING, started_at=timezone.now() - timedelta(seconds=30)
    )
    run.refresh_from_db()
    prepare, train, evaluate = (run.steps.get(name=n) for n in ("prepare", "train", "evaluate"))

    # prepare: done, with logs, system logs, metrics and an output folder holding a CSV.
    write_lines(prepare, [("stdout", "installing nothing")], log="build")
    write_lines(prepare, [("stdout", "split 40 rows"), ("stderr", "warning: <b>tiny</b> data")])
    finish(prepare, reuse_parts={"definition": "d1", "snapshot": "s1", "parameters": "p1"})
    for i, loss in enumerate([0.9, 0.5, 0.25]):
        Metric.objects.create(step_run=prepare, name="loss", kind="scalar", value=loss, seq=i)
    Metric.objects.create(step_run=prepare, name="rows", kind="scalar", value=40, seq=3)
    Metric.objects.create(
        step_run=prepare,
        name="split",
        kind="table",
        value={"part": ["train", "test"], "n": [30, 10]},
    )
    Metric.objects.create(step_run=prepare, name="kind", kind="tag", value="linear")
    folder = f"azureml/{prepare.uuid}/prepared/"
    store = Datastore.objects.select_related("workspace").get(
        workspace=ws, name="workspacefilestore"
    )
    csv = b"x,y\n1,4\n2,7\n"
    storage_for(store).write(folder + "points.csv", io.BytesIO(csv), length=len(csv))
    Output.objects.create(
        step_run=prepare, name="prepared", datastore="workspacefilestore", path=folder, file_count=1
    )

    # train: running, printing.
    StepRun.objects.filter(pk=train.pk).update(
        status=Status.RUNNING, started_at=timezone.now(), attempt=1
    )
    train.refresh_from_db()
    write_lines(train, [("stdout", f"epoch {i}") for i in range(1, 6)])

    # Run 2: another lr; prepare reused from run 1, train ran because the parameter changed.
    second = submit(ws, alice, graph, lr=0.2)
    reused = second.steps.get(name="prepare")
    finish(
        reused,
        reused_from=prepare,
        reuse_explanation=f"Reused step run {prepare.uuid} of run {run.uuid}: the same script.",
    )
    rerun = second.steps.get(name="train")
    finish(
        rerun,
        reuse_parts={"definition": "d2", "snapshot": "s1", "parameters": "p2"},
        reuse_explanation=f"Ran: a parameter value changed since run {earlier.uuid}.",
    )
    for i, loss in enumerate([0.8, 0.3]):
        Metric.objects.create(step_run=rerun, name="loss", kind="scalar", value=loss, seq=i)
    Metric.objects.create(step_run=train, name="loss", kind="scalar", value=0.7, seq=0)
    return Scene(
        ws=ws,
        other=other,
        run=run,
        second=second,
        prepare=prepare,
        train=train,
        evaluate=evaluate,
        reused=reused,
        rerun=rerun,
    )


def run_url(scene: Scene, run: PipelineRun | None = None, suffix: str = "") -> str:
    return f"/w/{scene.ws.uuid}/runs/{(run or scene.run).uuid}/{suffix}"


def step_url(scene: Scene, step: StepRun, suffix: str = "") -> str:
    return f"/w/{scene.ws.uuid}/runs/{step.run.uuid}/steps/{step.uuid}/{suffix}"


def compare_url(scene: Scene) -> str:
    return f"/w/{scene.ws.uuid}/runs/compare/?runs={scene.run.uuid}&runs={scene.second.uuid}"


# --- the permission matrix ---------------------------------------------------------------------

READS: dict[str, Callable[[Scene], str]] = {
    "run page": lambda s: run_url(s),
    "run page, a step chosen": lambda s: run_url(s) + f"?step={s.prepare.uuid}",
    "step page": lambda s: step_url(s, s.prepare),
    "step panel fragment": lambda s: step_url(s, s.prepare) + "?fragment=panel",
    "step row fragment": lambda s: step_url(s, s.prepare) + "?fragment=row",
    "log download": lambda s: step_url(s, s.prepare, "log.txt"),
    "compare": compare_url,
}
WRITES: dict[str, Callable[[Scene], str]] = {
    "cancel": lambda s: run_url(s, suffix="cancel/"),
    "resubmit": lambda s: run_url(s, suffix="resubmit/"),
}


@pytest.mark.parametrize("page", READS)
@pytest.mark.parametrize(
    ("actor", "expected"),
    [("anonymous", 302), ("charlie", 404), ("carol", 200), ("bob", 200), ("alice", 200)],
)
def test_who_may_read_each_page(
    client: Client,
    scene: Scene,
    request: pytest.FixtureRequest,
    page: str,
    actor: str,
    expected: int,
) -> None:
    if actor != "anonymous":
        login(client, request.getfixturevalue(actor))
    response = client.get(READS[page](scene))
    assert response.status_code == expected, text(response)[:500]
    if expected == 302:
        assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("page", WRITES)
@pytest.mark.parametrize(
    ("actor", "expected"), [("anonymous", 302), ("charlie", 404), ("carol", 403)]
)
def test_outsiders_and_readers_cannot_write(
    client: Client,
    scene: Scene,
    request: pytest.FixtureRequest,
    page: str,
    actor: str,
    expected: int,
) -> None:
    if actor != "anonymous":
        login(client, request.getfixturevalue(actor))
    runs_before = PipelineRun.objects.count()
    response = client.post(WRITES[page](scene))
    assert response.status_code == expected
    scene.run.refresh_from_db()
    assert scene.run.status == Status.RUNNING
    assert PipelineRun.objects.count() == runs_before
    if actor == "carol":
        assert "needs the contributor role" in text(response)


@pytest.mark.parametrize("page", [*READS, *WRITES])
def test_an_outsider_gets_404_with_a_run_of_another_workspace(
    client: Client, scene: Scene, charlie: Any, page: str
) -> None:
    """Charlie owns 'other': the run's id under his own workspace is still not found."""
    login(client, charlie)
    path = {**READS, **WRITES}[page](scene).replace(str(scene.ws.uuid), str(scene.other.uuid))
    response = client.post(path) if page in WRITES else client.get(path)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/w/{ws}/runs/not-a-uuid/",
        "/w/{ws}/runs/00000000-0000-0000-0000-000000000000/",
        "/w/{ws}/runs/{run}/steps/not-a-uuid/",
        "/w/{ws}/runs/{run}/steps/{other_step}/",
        "/w/{ws}/runs/{run}/?step={other_step}",
    ],
)
def test_unknown_ids_are_404(client: Client, scene: Scene, alice: Any, path: str) -> None:
    login(client, alice)
    url = path.format(ws=scene.ws.uuid, run=scene.run.uuid, other_step=scene.rerun.uuid)
    assert client.get(url).status_code == 404


def test_a_reader_sees_no_cancel_or_resubmit(client: Client, scene: Scene, carol: Any) -> None:
    login(client, carol)
    page = text(client.get(run_url(scene)))
    assert 'id="run-status"' in page
    assert "Cancel</button>" not in page
    assert "Resubmit</button>" not in page
    assert 'id="cancel-form"' not in page


def test_a_contributor_sees_cancel_and_resubmit(client: Client, scene: Scene, bob: Any) -> None:
    login(client, bob)
    page = text(client.get(run_url(scene)))
    assert 'id="cancel-form"' in page
    assert f'action="/w/{scene.ws.uuid}/runs/{scene.run.uuid}/cancel/"' in page
    assert f'action="/w/{scene.ws.uuid}/runs/{scene.run.uuid}/resubmit/"' in page


def test_a_finished_run_offers_resubmit_but_not_cancel(
    client: Client, scene: Scene, bob: Any
) -> None:
    PipelineRun.objects.filter(pk=scene.run.pk).update(status=Status.COMPLETED)
    login(client, bob)
    page = text(client.get(run_url(scene)))
    assert 'id="cancel-form"' not in page
    assert 'id="resubmit-form"' in page


def test_a_contributor_cancels_a_run(client: Client, scene: Scene, bob: Any) -> None:
    login(client, bob)
    response = client.post(run_url(scene, suffix="cancel/"))
    assert response.status_code == 302
    assert response["Location"] == run_url(scene)
    scene.run.refresh_from_db()
    assert scene.run.status == Status.CANCEL_REQUESTED
    statuses = dict(scene.run.steps.values_list("name", "status"))
    assert statuses == {
        "prepare": Status.COMPLETED,
        "train": Status.CANCEL_REQUESTED,
        "evaluate": Status.CANCELED,
    }
    page = text(client.get(response["Location"]))
    assert "Cancel requested: running steps are being stopped." in page


def test_a_contributor_resubmits_a_run(client: Client, scene: Scene, bob: Any) -> None:
    PipelineRun.objects.filter(pk=scene.run.pk).update(
        regenerate_outputs=True, continue_on_step_failure=True
    )
    login(client, bob)
    before = set(PipelineRun.objects.values_list("pk", flat=True))
    response = client.post(run_url(scene, suffix="resubmit/"))
    assert response.status_code == 302
    new = PipelineRun.objects.exclude(pk__in=before).get()
    assert response["Location"] == run_url(scene, new)
    assert new.source == "portal"
    assert new.submitted_by == bob
    assert new.experiment_id == scene.run.experiment_id
    assert new.graph == scene.run.graph
    assert new.parameters == scene.run.parameters
    assert new.tags == {"team": "energy"}
    assert new.pipeline_id == scene.run.pipeline_id
    assert new.regenerate_outputs and new.continue_on_step_failure  # the same settings
    assert sorted(new.steps.values_list("name", flat=True)) == ["evaluate", "prepare", "train"]
    page = text(client.get(response["Location"]))
    assert f"Resubmitted as run {new.uuid}." in page
    assert 'via <span id="run-source">portal</span>' in page


def test_cancel_and_resubmit_take_only_post(client: Client, scene: Scene, bob: Any) -> None:
    login(client, bob)
    assert client.get(run_url(scene, suffix="cancel/")).status_code == 405
    assert client.get(run_url(scene, suffix="resubmit/")).status_code == 405


# --- what the pages show -----------------------------------------------------------------------


def test_the_run_page_header_says_what_and_who(client: Client, scene: Scene, alice: Any) -> None:
    login(client, alice)
    page = text(client.get(run_url(scene)))
    assert str(scene.run.uuid) in page
    assert 'data-status="Running"' in page
    assert "forecast" in page
    assert 'by <strong>alice</strong> via <span id="run-source">REST API</span>' in page
    assert re.search(r'id="run-tags">.*team: energy', page)
    assert re.search(r"<code>lr</code> = <strong[^>]*>0.1</strong>", page)
    assert re.search(r"<code>epochs</code> = <strong[^>]*>3</strong>", page)


def test_the_run_page_lists_steps_with_status_and_phase_timings(
    client: Client, scene: Scene, alice: Any
) -> None:
    login(client, alice)
    page = text(client.get(run_url(scene)))
    rows = re.findall(
        r'<tr class="step-row[^"]*" id="step-row-([0-9a-f-]+)"[^>]*data-status="(\w+)"', page
    )
    assert rows == [
        (str(scene.prepare.uuid), "Completed"),
        (str(scene.train.uuid), "Running"),
        (str(scene.evaluate.uuid), "NotStarted"),
    ]
    assert "Phase timings of prepare: queued 0.50 s, environment 1.00 s, inputs 0.20 s" in page
    assert 'title="running: 9.80 s"' in page


def test_the_run_page_opens_the_running_step_with_its_log_without_js(
    client: Client, scene: Scene, alice: Any
) -> None:
    login(client, alice)
    page = text(client.get(run_url(scene)))
    panel = page[page.index('id="step-panel"') :]
    assert f'data-step="{scene.train.uuid}"' in panel[:200]
    assert 'data-live="true"' in panel[:400]
    assert 'data-shown-seq="5"' in panel[:400]
    for i in range(1, 6):
        assert f'<span class="log-text">epoch {i}</span>' in panel
    # The live channel is told where each step's log is.
    seqs = re.search(r'<script id="run-seqs" type="application/json">([^<]*)</script>', page)
    assert seqs is not None
    assert f'"{scene.prepare.uuid}": 3' in seqs.group(1)
    assert f'"{scene.train.uuid}": 5' in seqs.group(1)


def test_the_step_panel_shows_logs_metrics_outputs_and_snapshot_without_js(
    client: Client, scene: Scene, alice: Any
) -> None:
    login(client, alice)
    response = client.get(step_url(scene, scene.prepare))
    assert response.status_code == 200
    page = response.content.decode()
    # Log lines, stderr marked, user text escaped.
    assert '<span class="log-text">split 40 rows</span>' in page
    assert 'log-stderr" data-seq="3"' in page
    assert "warning: &lt;b&gt;tiny&lt;/b&gt; data" in page
    assert "<b>tiny</b>" not in page
    # System logs apart from the script's output.
    system = page[page.index('id="log-system"') :]
    assert "installing nothing" in system
    driver = page[page.index('id="log-driver"') : page.index('id="log-system"')]
    assert "installing nothing" not in driver
    # Metrics: scalars as a table (last value, how many), a series charted, tables, tags.
    assert re.search(
        r'<tr data-metric="loss"><td>loss</td><td class="metric-last">0.25</td>'
        r'<td class="text-end metric-count">3</td></tr>',
        page,
    )
    assert '<tr data-metric="rows"><td>rows</td><td class="metric-last">40</td>' in page
    assert 'class="col-md-6 metric-chart mb-0" data-metric="loss"' in page
    assert 'data-metric="rows"><figcaption' not in page  # one value: no chart
    assert '"scalars": {"loss": [0.9, 0.5, 0.25], "rows": [40.0]}' in page
    table = page[page.index('data-metric="split"') :]
    table = table[: table.index("</table>")]
    assert "<caption" in table
    assert "<th>part</th>" in table
    assert "<th>n</th>" in table
    assert re.search(r"<tr>(<td>train</td><td>30</td>|<td>30</td><td>train</td>)</tr>", table)
    assert "kind: linear" in page
    # Outputs: the folder and its files, linked to the datastore browser's preview.
    folder = f"azureml/{scene.prepare.uuid}/prepared/"
    browse = f"/w/{scene.ws.uuid}/datastores/workspacefilestore/browse/"
    assert f'href="{browse}{folder}"' in page
    assert f'<a href="{browse}{folder}points.csv">points.csv</a>' in page
    # Snapshot files, one shown on request.
    assert "train.py" in page
    shown = text(client.get(step_url(scene, scene.prepare) + "?file=train.py"))
    assert "print('training with', sys.argv)" in shown


def test_an_output_link_opens_the_datastore_preview(
    client: Client, scene: Scene, carol: Any
) -> None:
    login(client, carol)
    page = client.get(step_url(scene, scene.prepare)).content.decode()
    link = re.search(r'<a href="([^"]+points\.csv)">points\.csv</a>', page)
    assert link is not None
    preview = text(client.get(link.group(1)))
    assert 'id="csv-preview"' in preview
    assert "<th>x</th><th>y</th>" in preview


def test_a_folder_output_downloads_as_one_zip_streamed(
    client: Client, scene: Scene, carol: Any, charlie: Any
) -> None:
    login(client, carol)
    page = client.get(step_url(scene, scene.prepare)).content.decode()
    link = re.search(r'<a class="[^"]*output-zip" href="([^"]+)"', page)
    assert link is not None
    response = client.get(link.group(1))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response.streaming  # made while it downloads
    archive = zipfile.ZipFile(io.BytesIO(body_of(response)))
    assert "points.csv" in archive.namelist()
    assert archive.read("points.csv").startswith(b"x,y")
    assert client.get(link.group(1).replace(".zip", "-nope.zip")).status_code == 404
    client.logout()
    login(client, charlie)
    assert client.get(link.group(1)).status_code == 404


def test_a_reused_step_shows_its_origin_and_explanation(
    client: Client, scene: Scene, alice: Any
) -> None:
    login(client, alice)
    page = text(client.get(run_url(scene, scene.second) + f"?step={scene.reused.uuid}"))
    info = page[page.index('id="reuse-info"') :]
    assert f'href="/w/{scene.ws.uuid}/runs/{scene.run.uuid}/?step={scene.prepare.uuid}"' in info
    assert f"Reused step run {scene.prepare.uuid} of run {scene.run.uuid}" in info
    # The origin's logs and metrics are shown (no process ran for this one).
    assert "split 40 rows" in page
    assert '<td class="metric-last">0.25</td>' in page
    assert 'data-live="false"' in page
    # The step list and the run's graph mark it.
    row = page[page.index(f'id="step-row-{scene.reused.uuid}"') :]
    assert "reused</span>" in row[:1500]


def test_a_step_that_ran_again_says_which_part_of_the_reuse_key_changed(
    client: Client, scene: Scene, alice: Any
) -> None:
    login(client, alice)
    page = text(client.get(step_url(scene, scene.rerun)))
    assert "Ran: a parameter value changed since run" in page
    changed = re.findall(r'<tr class="table-warning reuse-changed" data-part="(\w+)">', page)
    assert changed == ["parameters"]
    assert '<tr class="" data-part="snapshot">' in page


def test_the_log_download_is_the_whole_log_streamed_as_an_attachment(
    client: Client, scene: Scene, carol: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = [("stdout", f"line {i}") for i in range(1, 1001)]
    write_lines(scene.train, many)
    monkeypatch.setattr(run_views, "PANEL_LINES", 100)
    login(client, carol)
    panel = text(client.get(step_url(scene, scene.train) + "?fragment=panel"))
    assert "Showing the last 100 lines" in panel
    assert "line 1000" in panel
    assert '<span class="log-text">line 900</span>' not in panel
    response = client.get(step_url(scene, scene.train, "log.txt"))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="train-70_driver_log.txt"'
    body = text(response)
    expected = "".join(f"epoch {i}\n" for i in range(1, 6)) + "".join(
        f"line {i}\n" for i in range(1, 1001)
    )
    assert body == expected


def test_the_log_download_serves_system_logs_and_refuses_unknown_ones(
    client: Client, scene: Scene, carol: Any
) -> None:
    login(client, carol)
    response = client.get(step_url(scene, scene.prepare, "log.txt") + "?log=build")
    assert (
        response["Content-Disposition"] == 'attachment; filename="prepare-20_image_build_log.txt"'
    )
    assert text(response) == "installing nothing\n"
    response = client.get(step_url(scene, scene.prepare, "log.txt") + "?log=secrets")
    assert response.status_code == 400
    assert "Unknown log 'secrets'" in response.content.decode()


def test_a_reused_steps_log_download_is_the_origins(
    client: Client, scene: Scene, carol: Any
) -> None:
    login(client, carol)
    response = client.get(step_url(scene, scene.reused, "log.txt"))
    assert text(response) == "split 40 rows\nwarning: <b>tiny</b> data\n"


def test_the_htmx_fragment_is_the_panel_alone(client: Client, scene: Scene, alice: Any) -> None:
    login(client, alice)
    response = client.get(step_url(scene, scene.prepare), HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert page.lstrip().startswith('<section class="card step-panel" id="step-panel"')
    assert "<html" not in page
    row = client.get(step_url(scene, scene.prepare) + "?fragment=row").content.decode()
    assert row.lstrip().startswith('<tr class="step-row')
    assert "Completed" in row


# --- compare -----------------------------------------------------------------------------------


def test_compare_shows_two_runs_side_by_side_with_differences_highlighted(
    client: Client, scene: Scene, carol: Any
) -> None:
    login(client, carol)
    response = client.get(compare_url(scene))
    assert response.status_code == 200
    page = text(response)
    assert re.search(
        r'<tr class="compare-differs" data-name="lr">.*?<td[^>]*>0.1</td><td[^>]*>0.2</td>', page
    )
    assert '<tr class="" data-name="epochs">' in page
    # Steps: prepare Completed in both (one reused), train Running vs Completed.
    assert '<tr class="compare-differs" data-name="train">' in page
    assert '<tr class="" data-name="prepare">' in page
    # Final metrics: the last loss of each run's step; a reused step's are its origin's.
    assert re.search(
        r'data-name="prepare.loss">.*?<td class="font-monospace small">0.25</td>'
        r'<td class="font-monospace small">0.25</td>',
        page,
        re.S,
    )
    assert re.search(
        r'<tr class="compare-differs" data-name="train.loss">.*?>0.7</td><td[^>]*>0.3</td>',
        page,
        re.S,
    )
    # Series overlaid: prepare.loss (3 points in both) and train.loss (2 points in run 2).
    data = re.search(r'<script id="compare-data" type="application/json">([^<]*)</script>', page)
    assert data is not None
    assert '"title": "prepare \\u00b7 loss", "series": [[0.9, 0.5, 0.25], [0.9, 0.5, 0.25]]' in (
        data.group(1)
    )
    assert '"series": [[0.7], [0.8, 0.3]]' in data.group(1)


def test_compare_accepts_one_comma_separated_value(
    client: Client, scene: Scene, carol: Any
) -> None:
    login(client, carol)
    url = f"/w/{scene.ws.uuid}/runs/compare/?runs={scene.run.uuid},{scene.second.uuid}"
    response = client.get(url)
    assert response.status_code == 200
    assert text(response).count('<span class="compare-swatch"') == 2


@pytest.mark.parametrize("count", [0, 1, 11])
def test_compare_needs_two_to_ten_runs(
    client: Client, scene: Scene, carol: Any, digest: str, alice: Any, count: int
) -> None:
    runs = [scene.run, scene.second]
    graph = graph_of(digest, ["a"])
    while len(runs) < count:
        runs.append(submit(scene.ws, alice, graph))
    login(client, carol)
    query = "&".join(f"runs={r.uuid}" for r in runs[:count])
    response = client.get(f"/w/{scene.ws.uuid}/runs/compare/?{query}")
    assert response.status_code == 400
    assert f"Choose 2 to 10 runs to compare (you chose {count})." in text(response)


def test_compare_refuses_a_run_of_another_workspace(
    client: Client, scene: Scene, alice: Any, charlie: Any, digest: str
) -> None:
    login(client, alice)
    foreign = f"/w/{scene.ws.uuid}/runs/compare/?runs={scene.run.uuid}&runs={scene.other.uuid}"
    assert client.get(foreign).status_code == 404
    bad = f"/w/{scene.ws.uuid}/runs/compare/?runs={scene.run.uuid}&runs=nope"
    assert client.get(bad).status_code == 404


# --- query counts ------------------------------------------------------------------------------


def queries_for(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize("page", ["run", "compare"])
def test_query_counts_do_not_grow_with_the_steps(
    client: Client, ws: Workspace, alice: Any, digest: str, page: str
) -> None:
    login(client, alice)
    counts = []
    for n in (3, 30):
        graph = graph_of(digest, [f"step{i}" for i in range(n)])
        runs = [submit(ws, alice, graph, lr=0.1), submit(ws, alice, graph, lr=0.3)]
        for run in runs:
            for step in run.steps.all():
                finish(step)
                write_lines(step, [("stdout", "hello")])
                Metric.objects.create(step_run=step, name="loss", kind="scalar", value=0.5)
                Metric.objects.create(step_run=step, name="loss", kind="scalar", value=0.4)
        if page == "run":
            url = f"/w/{ws.uuid}/runs/{runs[0].uuid}/"
        else:
            url = f"/w/{ws.uuid}/runs/compare/?runs={runs[0].uuid},{runs[1].uuid}"
        client.get(url)  # warm the session and caches
        counts.append(queries_for(client, url))
    assert counts[0] == counts[1], counts
