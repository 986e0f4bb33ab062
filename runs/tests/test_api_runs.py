"""The REST API behind the SDK: snapshots (content-addressed), pipelines (validate, store,
dedup), runs (submit, list with filters and keyset pages, get, cancel, tag), steps (logs with
offsets, metrics, outputs), experiments — with the cast's permissions. No worker runs here:
runs stay NotStarted; logs and metrics are written as a worker would."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from pipelines.models import Pipeline, Snapshot, SnapshotBlob
from portal.models import AuditEvent, Workspace
from runs.models import LogChunk, Metric, Output, PipelineRun, Status, StepRun

pytestmark = pytest.mark.django_db

SCRIPT = b"print('hello')\n"


@pytest.fixture(autouse=True)
def _data_root(tmp_path: Path, settings: Any) -> None:
    settings.MILLRACE_DATA_ROOT = tmp_path / "data"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def base(ws: Workspace) -> str:
    return f"/api/v1/workspaces/{ws.uuid}/"


def upload(client: Any, ws: Workspace, files: dict[str, bytes]) -> str:
    """Upload a snapshot through the API; returns its digest."""
    hashes = [sha(data) for data in files.values()]
    missing = client.post(f"{base(ws)}snapshots/missing/", {"hashes": hashes}, format="json")
    assert missing.status_code == 200, missing.json()
    for data in files.values():
        if sha(data) in missing.json()["missing"]:
            put = client.put(
                f"{base(ws)}snapshots/blobs/{sha(data)}",
                data=data,
                content_type="application/octet-stream",
            )
            assert put.status_code in (200, 201), put.content
    manifest = {p: {"sha256": sha(d), "size": len(d), "mode": 0o644} for p, d in files.items()}
    committed = client.post(f"{base(ws)}snapshots/", {"manifest": manifest}, format="json")
    assert committed.status_code in (200, 201), committed.json()
    digest: str = committed.json()["digest"]
    return digest


def graph_of(digest: str, **extra: Any) -> dict[str, Any]:
    return {
        "parameters": {"n": {"type": "int", "default": 3}},
        "steps": [
            {
                "name": "prep",
                "script": "main.py",
                "snapshot": digest,
                "compute_target": "local",
                "arguments": ["--out", {"output": "prepared"}],
                "outputs": {"prepared": {}},
            },
            {
                "name": "train",
                "script": "main.py",
                "snapshot": digest,
                "compute_target": "local",
                "arguments": ["--in", {"input": "prepared"}, "--n", {"parameter": "n"}],
                "inputs": {"prepared": {"pipeline_data": "prepared"}},
            },
        ],
        **extra,
    }


@pytest.fixture
def digest(api: Any, alice: Any, ws: Workspace) -> str:
    return upload(api(alice), ws, {"main.py": SCRIPT, "lib/util.py": b"X = 1\n"})


def submit(client: Any, ws: Workspace, body: dict[str, Any]) -> Any:
    return client.post(f"{base(ws)}runs/", body, format="json")


# ----- snapshots ---------------------------------------------------------------------------


def test_a_snapshot_upload_sends_only_missing_files(api: Any, alice: Any, ws: Workspace) -> None:
    client = api(alice)
    upload(client, ws, {"main.py": SCRIPT})
    answer = client.post(
        f"{base(ws)}snapshots/missing/",
        {"hashes": [sha(SCRIPT), sha(b"new")]},
        format="json",
    )
    assert answer.json() == {"missing": [sha(b"new")]}
    again = client.put(
        f"{base(ws)}snapshots/blobs/{sha(SCRIPT)}",
        data=SCRIPT,
        content_type="application/octet-stream",
    )
    assert again.status_code == 200 and again.json()["stored"] is False


def test_committing_the_same_manifest_twice_answers_the_same_snapshot(
    api: Any, alice: Any, ws: Workspace
) -> None:
    client = api(alice)
    first = upload(client, ws, {"main.py": SCRIPT})
    manifest = {"main.py": {"sha256": sha(SCRIPT), "size": len(SCRIPT), "mode": 0o644}}
    second = client.post(f"{base(ws)}snapshots/", {"manifest": manifest}, format="json")
    assert second.status_code == 200 and second.json()["digest"] == first
    detail = client.get(f"{base(ws)}snapshots/{first}/")
    assert detail.json()["manifest"]["main.py"]["sha256"] == sha(SCRIPT)
    file = client.get(f"{base(ws)}snapshots/{first}/files/main.py")
    assert b"".join(file.streaming_content) == SCRIPT
    assert Snapshot.objects.filter(workspace=ws).count() == 1


def test_a_blob_whose_content_does_not_match_its_hash_is_refused_and_not_kept(
    api: Any, alice: Any, ws: Workspace
) -> None:
    answer = api(alice).put(
        f"{base(ws)}snapshots/blobs/{sha(b'expected')}",
        data=b"something else",
        content_type="application/octet-stream",
    )
    assert answer.status_code == 400
    assert "sha256" in answer.json()["fields"]
    assert not SnapshotBlob.objects.exists()


def test_a_too_large_blob_is_refused(api: Any, alice: Any, ws: Workspace, settings: Any) -> None:
    settings.MILLRACE_MAX_UPLOAD_BYTES = 10
    data = b"x" * 11
    answer = api(alice).put(
        f"{base(ws)}snapshots/blobs/{sha(data)}", data=data, content_type="application/octet-stream"
    )
    assert answer.status_code == 413
    assert not SnapshotBlob.objects.exists()


def test_a_manifest_with_bad_paths_or_unuploaded_files_is_refused_naming_them(
    api: Any, alice: Any, ws: Workspace
) -> None:
    client = api(alice)
    entry = {"sha256": sha(b"never sent"), "size": 10, "mode": 0o644}
    bad = client.post(
        f"{base(ws)}snapshots/",
        {"manifest": {"../escape.py": entry, "/abs.py": entry, "ok.py": {"sha256": "zz"}}},
        format="json",
    )
    assert bad.status_code == 400
    fields = bad.json()["fields"]
    assert {"manifest.../escape.py", "manifest./abs.py", "manifest.ok.py"} <= set(fields)
    missing = client.post(f"{base(ws)}snapshots/", {"manifest": {"train.py": entry}}, format="json")
    assert missing.status_code == 400 and "train.py" in missing.json()["detail"]
    assert not Snapshot.objects.exists()


def test_bad_hashes_are_refused(api: Any, alice: Any, ws: Workspace) -> None:
    answer = api(alice).post(
        f"{base(ws)}snapshots/missing/", {"hashes": ["../../etc/passwd"]}, format="json"
    )
    assert answer.status_code == 400


def test_snapshot_permissions(api: Any, carol: Any, charlie: Any, ws: Workspace) -> None:
    body = {"hashes": [sha(SCRIPT)]}
    assert api(carol).post(f"{base(ws)}snapshots/missing/", body, format="json").status_code == 403
    put = api(carol).put(
        f"{base(ws)}snapshots/blobs/{sha(SCRIPT)}", data=SCRIPT, content_type="text/plain"
    )
    assert put.status_code == 403
    assert (
        api(charlie).post(f"{base(ws)}snapshots/missing/", body, format="json").status_code == 404
    )
    assert api(None).post(f"{base(ws)}snapshots/missing/", body, format="json").status_code in (
        401,
        403,
    )


# ----- pipelines ---------------------------------------------------------------------------


def test_validate_lists_every_problem_and_stores_nothing(
    api: Any, alice: Any, ws: Workspace, digest: str
) -> None:
    graph = graph_of(digest)
    graph["steps"][0]["run_after"] = ["train"]  # a cycle with the data edge
    graph["steps"][1]["compute_target"] = "gpu-cluster"
    graph["steps"][1]["arguments"].append({"parameter": "epochs"})
    answer = api(alice).post(
        f"{base(ws)}pipelines/validate/",
        {"graph": graph, "parameters": {"n": "three", "lr": 0.1}},
        format="json",
    )
    assert answer.status_code == 400
    fields = answer.json()["fields"]
    text = str(fields)
    assert "cycle" in text
    assert "gpu-cluster" in text
    assert "epochs" in text
    assert fields["pipeline_parameters.n"] == ["'three' is not of type int."]
    assert "unknown parameter" in fields["pipeline_parameters.lr"][0]
    assert not Pipeline.objects.exists() and not PipelineRun.objects.exists()


def test_validate_accepts_source_directories_not_uploaded_yet(
    api: Any, alice: Any, ws: Workspace
) -> None:
    local = "f" * 64
    graph = graph_of(local)
    client = api(alice)
    answer = client.post(
        f"{base(ws)}pipelines/validate/",
        {"graph": graph, "snapshots": {local: ["main.py"]}},
        format="json",
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json() == {"valid": True, "steps": 2}
    wrong = client.post(
        f"{base(ws)}pipelines/validate/",
        {"graph": graph, "snapshots": {local: ["other.py"]}},
        format="json",
    )
    assert "'main.py' is not in the step's source directory" in str(wrong.json()["fields"])


def test_validate_and_create_refuse_malformed_bodies_and_store_nothing(
    api: Any, alice: Any, ws: Workspace, digest: str
) -> None:
    client = api(alice)
    url = f"{base(ws)}pipelines/validate/"
    for body, field in [
        ({"graph": graph_of(digest), "snapshots": ["not", "a", "map"]}, "snapshots"),
        ({"graph": graph_of(digest), "snapshots": {"d": [1, 2]}}, "snapshots"),
        ({"graph": graph_of(digest), "parameters": [1]}, "parameters"),
        ({"graph": "steps"}, "graph"),
        ({"graph": {"steps": []}}, "steps"),
    ]:
        answer = client.post(url, body, format="json")
        assert answer.status_code == 400, body
        assert any(key.startswith(field) for key in answer.json()["fields"]), answer.json()
    cyclic = graph_of(digest)
    cyclic["steps"][0]["run_after"] = ["train"]
    created = client.post(f"{base(ws)}pipelines/", {"graph": cyclic, "name": "C"}, format="json")
    assert created.status_code == 400 and "cycle" in str(created.json()["fields"])
    assert not Pipeline.objects.exists()


def test_storing_the_same_graph_twice_gives_one_pipeline(
    api: Any, alice: Any, ws: Workspace, digest: str
) -> None:
    client = api(alice)
    body = {"graph": graph_of(digest), "name": "Train", "description": "two steps"}
    first = client.post(f"{base(ws)}pipelines/", body, format="json")
    second = client.post(f"{base(ws)}pipelines/", body, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    listed = client.get(f"{base(ws)}pipelines/?search=train").json()
    assert listed["count"] == 1
    assert listed["results"][0]["parameters"] == {"n": {"type": "int", "default": 3}}
    assert client.get(f"{base(ws)}pipelines/?ordering=bogus").status_code == 400


# ----- runs --------------------------------------------------------------------------------


def test_submitting_a_graph_stores_the_pipeline_run_and_steps(
    api: Any, alice: Any, ws: Workspace, digest: str
) -> None:
    answer = submit(
        api(alice),
        ws,
        {
            "experiment_name": "Compare_Models_Exp",
            "graph": graph_of(digest),
            "parameters": {"n": 5},
            "tags": {"team": "forecast"},
            "source": "sdk",
        },
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["status"] == "NotStarted"
    assert body["parameters"] == {"n": 5}
    assert body["source"] == "sdk" and body["submitted_by"] == "alice"
    assert [s["name"] for s in body["steps"]] == ["prep", "train"]
    assert body["steps"][1]["depends_on"] == ["prep"]
    assert body["portal_url"].endswith(f"/w/{ws.uuid}/runs/{body['id']}/")
    run = PipelineRun.objects.get(uuid=body["id"])
    assert run.pipeline is not None and run.pipeline.name == "Compare_Models_Exp"
    again = submit(api(alice), ws, {"experiment_name": "Other", "pipeline_id": body["pipeline_id"]})
    assert again.status_code == 201 and again.json()["pipeline_id"] == body["pipeline_id"]
    assert again.json()["parameters"] == {"n": 3}


@pytest.mark.parametrize(
    ("parameters", "where", "message"),
    [
        ({"m": 1}, "m", "unknown parameter"),
        ({"n": "3"}, "n", "is not of type int"),
        ({"n": True}, "n", "is not of type int"),
    ],
)
def test_bad_parameters_are_refused_with_nothing_stored(
    api: Any, alice: Any, ws: Workspace, digest: str, parameters: Any, where: str, message: str
) -> None:
    answer = submit(
        api(alice),
        ws,
        {"experiment_name": "E", "graph": graph_of(digest), "parameters": parameters},
    )
    assert answer.status_code == 400
    assert message in answer.json()["fields"][f"pipeline_parameters.{where}"][0]
    assert not PipelineRun.objects.exists() and not Pipeline.objects.exists()


def test_a_required_parameter_without_a_value_is_refused(
    api: Any, alice: Any, ws: Workspace, digest: str
) -> None:
    graph = graph_of(digest)
    graph["parameters"]["n"] = {"type": "int"}
    answer = submit(api(alice), ws, {"experiment_name": "E", "graph": graph})
    assert answer.status_code == 400
    assert "required" in answer.json()["fields"]["pipeline_parameters.n"][0]


def test_submit_needs_exactly_one_of_graph_and_pipeline_and_known_fields(
    api: Any, alice: Any, ws: Workspace, digest: str
) -> None:
    client = api(alice)
    assert submit(client, ws, {"experiment_name": "E"}).status_code == 400
    typo = submit(client, ws, {"experiment_name": "E", "graph": graph_of(digest), "tag": {}})
    assert typo.status_code == 400 and "tag" in typo.json()["fields"]
    unknown = submit(client, ws, {"experiment_name": "E", "pipeline_id": str(ws.uuid)})
    assert unknown.status_code == 404
    assert submit(client, ws, {"experiment_name": "", "graph": graph_of(digest)}).status_code == 400
    assert not PipelineRun.objects.exists()


def test_a_datapath_parameter_feeds_a_step_input(api: Any, alice: Any, ws: Workspace) -> None:
    digest = upload(api(alice), ws, {"main.py": SCRIPT})
    graph = {
        "parameters": {
            "data": {
                "type": "datapath",
                "default": {"datastore": "workspaceblobstore", "path": "raw/v1"},
            }
        },
        "steps": [
            {
                "name": "read",
                "script": "main.py",
                "snapshot": digest,
                "compute_target": "local",
                "inputs": {"data": {"parameter": "data", "mode": "download"}},
                "arguments": [{"input": "data"}],
                "outputs": {"scores": {"path": "scores/{run-id}/{output-name}"}},
            }
        ],
    }
    ok = submit(
        api(alice),
        ws,
        {
            "experiment_name": "E",
            "graph": graph,
            "parameters": {"data": {"datastore": "workspacefilestore", "path": "raw/v2"}},
        },
    )
    assert ok.status_code == 201, ok.json()
    assert ok.json()["parameters"]["data"] == {"datastore": "workspacefilestore", "path": "raw/v2"}
    bad = submit(
        api(alice),
        ws,
        {
            "experiment_name": "E",
            "graph": graph,
            "parameters": {"data": {"datastore": "nope", "path": "../x"}},
        },
    )
    assert bad.status_code == 400
    assert "unknown datastore 'nope'" in bad.json()["fields"]["pipeline_parameters.data"][0]


def test_run_permissions(
    api: Any, alice: Any, bob: Any, carol: Any, charlie: Any, ws: Workspace, digest: str
) -> None:
    body = {"experiment_name": "E", "graph": graph_of(digest)}
    assert submit(api(carol), ws, body).status_code == 403
    assert submit(api(charlie), ws, body).status_code == 404
    run_id = submit(api(bob), ws, body).json()["id"]
    assert api(charlie).get(f"{base(ws)}runs/{run_id}/").status_code == 404
    assert api(carol).get(f"{base(ws)}runs/{run_id}/").status_code == 200
    assert api(carol).post(f"{base(ws)}runs/{run_id}/cancel/").status_code == 403
    assert (
        api(carol).post(f"{base(ws)}runs/{run_id}/tags/", {"tags": {"a": "b"}}, format="json")
    ).status_code == 403
    assert PipelineRun.objects.get(uuid=run_id).status == Status.NOT_STARTED
    canceled = api(bob).post(f"{base(ws)}runs/{run_id}/cancel/")
    # Waiting steps end at once; the orchestrator (not running here) then ends the run.
    assert canceled.status_code == 200 and canceled.json()["status"] == "CancelRequested"
    assert {s["status"] for s in canceled.json()["steps"]} == {"Canceled"}
    assert AuditEvent.objects.filter(verb="run.cancel").count() == 1


def test_a_token_of_another_workspace_sees_nothing(
    bearer: Any, make_token: Any, charlie: Any, other: Workspace, ws: Workspace, digest: str
) -> None:
    client = bearer(make_token(charlie, other))
    assert client.get(f"{base(ws)}runs/").status_code == 404
    assert client.get(f"{base(ws)}pipelines/").status_code == 404


def test_tags_are_merged(api: Any, alice: Any, ws: Workspace, digest: str) -> None:
    client = api(alice)
    run_id = submit(
        client, ws, {"experiment_name": "E", "graph": graph_of(digest), "tags": {"a": "1"}}
    ).json()["id"]
    answer = client.post(f"{base(ws)}runs/{run_id}/tags/", {"tags": {"b": "2"}}, format="json")
    assert answer.json()["tags"] == {"a": "1", "b": "2"}
    bad = [
        {"tags": {"": "x"}},  # an empty key
        {"tags": ["a", "b"]},  # not an object
        {"tags": {f"k{i}": "v" for i in range(101)}},  # over the limit of 100
        {"labels": {"a": "b"}},  # an unknown field
    ]
    for body in bad:
        refused = client.post(f"{base(ws)}runs/{run_id}/tags/", body, format="json")
        assert refused.status_code == 400, body
    assert PipelineRun.objects.get(uuid=run_id).tags == {"a": "1", "b": "2"}


def test_the_runs_list_filters_and_pages_by_keyset(
    api: Any, alice: Any, bob: Any, ws: Workspace, digest: str
) -> None:
    client = api(alice)
    ids = []
    for i in range(7):
        who = client if i % 2 else api(bob)
        answer = submit(
            who,
            ws,
            {
                "experiment_name": "even" if i % 2 == 0 else "odd",
                "graph": graph_of(digest),
                "tags": {"i": str(i)},
            },
        )
        ids.append(answer.json()["id"])
    now = timezone.now()
    # All in the same second: pages must still neither repeat nor skip a run.
    PipelineRun.objects.update(created_at=now)
    seen: list[str] = []
    url: str | None = f"{base(ws)}runs/?page_size=3"
    while url:
        page = client.get(url).json()
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    odd = client.get(f"{base(ws)}runs/?experiment=odd").json()["results"]
    assert len(odd) == 3
    by_bob = client.get(f"{base(ws)}runs/?submitted_by=bob").json()["results"]
    assert len(by_bob) == 4
    tagged = client.get(f"{base(ws)}runs/?tag=i:4").json()["results"]
    assert [r["id"] for r in tagged] == [ids[4]]
    later = (now + timedelta(hours=1)).isoformat()
    assert client.get(f"{base(ws)}runs/", {"created_after": later}).json()["results"] == []
    # A key is data, never an ORM path: "a__b" matches nothing and breaks nothing.
    assert client.get(f"{base(ws)}runs/?tag=i__x:4").json()["results"] == []
    assert client.get(f"{base(ws)}runs/?tag=i__x").json()["results"] == []
    assert client.get(f"{base(ws)}runs/?status=Bogus").status_code == 400
    assert client.get(f"{base(ws)}runs/?created_after=yesterday").status_code == 400
    assert len(client.get(f"{base(ws)}runs/?status=NotStarted").json()["results"]) == 7
    experiments = client.get(f"{base(ws)}experiments/").json()["results"]
    assert [(e["name"], e["run_count"]) for e in experiments] == [("even", 4), ("odd", 3)]


# ----- steps: logs, metrics, outputs -------------------------------------------------------


@pytest.fixture
def finished(api: Any, alice: Any, ws: Workspace, digest: str) -> tuple[PipelineRun, StepRun]:
    run_id = submit(api(alice), ws, {"experiment_name": "E", "graph": graph_of(digest)}).json()[
        "id"
    ]
    run = PipelineRun.objects.get(uuid=run_id)
    step = run.steps.get(name="prep")
    LogChunk.objects.create(
        step_run=step,
        log="prep",
        first_seq=1,
        last_seq=2,
        lines=[[1, "stdout", "p1"], [2, "stdout", "p2"]],
    )
    LogChunk.objects.create(
        step_run=step,
        log="driver",
        first_seq=3,
        last_seq=6,
        lines=[[3, "stdout", "a"], [4, "stderr", "warn"], [5, "stdout", "b"], [6, "stdout", "c"]],
    )
    StepRun.objects.filter(pk=step.pk).update(log_seq=6, status=Status.COMPLETED)
    for i, value in enumerate([0.9, 0.5, 0.3]):
        Metric.objects.create(step_run=step, name="loss", kind="scalar", value=value, seq=i)
    Metric.objects.create(step_run=step, name="accuracy", kind="scalar", value=0.97, seq=3)
    Metric.objects.create(step_run=step, name="roc", kind="row", value={"fpr": 0, "tpr": 0}, seq=4)
    Metric.objects.create(step_run=step, name="roc", kind="row", value={"fpr": 1, "tpr": 1}, seq=5)
    Output.objects.create(
        step_run=step, name="prepared", datastore="workspaceblobstore", path="azureml/x/prepared/"
    )
    return run, step


def test_logs_page_by_sequence_number_and_download_as_text(
    api: Any, alice: Any, ws: Workspace, finished: tuple[PipelineRun, StepRun]
) -> None:
    run, step = finished
    url = f"{base(ws)}runs/{run.uuid}/steps/{step.uuid}/logs/"
    client = api(alice)
    first = client.get(url, {"limit": 2}).json()
    assert first["lines"] == [[3, "stdout", "a"], [4, "stderr", "warn"]]
    assert first["more"] is True and first["logs"] == ["driver", "prep"]
    rest = client.get(url, {"after": first["last_seq"]}).json()
    assert [line[0] for line in rest["lines"]] == [5, 6] and rest["more"] is False
    prep = client.get(url, {"log": "prep"}).json()
    assert [line[2] for line in prep["lines"]] == ["p1", "p2"]
    text = client.get(url, {"format": "text"})
    assert b"".join(text.streaming_content) == b"a\nwarn\nb\nc\n"
    assert client.get(url, {"log": "secret"}).status_code == 400
    assert client.get(url, {"after": "x"}).status_code == 400


def test_metrics_and_outputs(
    api: Any, alice: Any, ws: Workspace, finished: tuple[PipelineRun, StepRun]
) -> None:
    run, step = finished
    client = api(alice)
    summary = client.get(f"{base(ws)}runs/{run.uuid}/metrics/").json()
    assert summary["prep"] == {
        "loss": [0.9, 0.5, 0.3],
        "accuracy": 0.97,
        "roc": {"fpr": [0, 1], "tpr": [0, 1]},
    }
    assert summary["train"] == {}
    step_metrics = client.get(f"{base(ws)}runs/{run.uuid}/steps/{step.uuid}/metrics/").json()
    assert [m["name"] for m in step_metrics["metrics"]][:3] == ["loss", "loss", "loss"]
    outputs = client.get(f"{base(ws)}runs/{run.uuid}/steps/{step.uuid}/outputs/").json()
    assert outputs["outputs"][0]["path"] == "azureml/x/prepared/"
    steps = client.get(f"{base(ws)}runs/{run.uuid}/steps/").json()
    assert [s["name"] for s in steps] == ["prep", "train"]
    assert steps[0]["status"] == "Completed" and steps[0]["log_seq"] == 6


def test_a_reused_step_serves_its_origins_logs_and_metrics(
    api: Any, alice: Any, ws: Workspace, digest: str, finished: tuple[PipelineRun, StepRun]
) -> None:
    origin_run, origin = finished
    client = api(alice)
    run_id = submit(client, ws, {"experiment_name": "E", "graph": graph_of(digest)}).json()["id"]
    reused = StepRun.objects.get(run__uuid=run_id, name="prep")
    StepRun.objects.filter(pk=reused.pk).update(reused_from=origin, status=Status.COMPLETED)
    step = client.get(f"{base(ws)}runs/{run_id}/steps/{reused.uuid}/").json()
    assert step["reused_from"] == {"run": str(origin_run.uuid), "step": str(origin.uuid)}
    logs = client.get(f"{base(ws)}runs/{run_id}/steps/{reused.uuid}/logs/").json()
    assert [line[2] for line in logs["lines"]] == ["a", "warn", "b", "c"]
    assert logs["reused_from"] == str(origin.uuid)
    assert client.get(f"{base(ws)}runs/{run_id}/metrics/").json()["prep"]["accuracy"] == 0.97


def test_step_urls_of_another_run_or_workspace_are_404(
    api: Any, alice: Any, charlie: Any, ws: Workspace, finished: tuple[PipelineRun, StepRun]
) -> None:
    run, step = finished
    assert api(charlie).get(f"{base(ws)}runs/{run.uuid}/steps/{step.uuid}/logs/").status_code == 404
    assert api(alice).get(f"{base(ws)}runs/{run.uuid}/steps/not-a-uuid/").status_code == 404
