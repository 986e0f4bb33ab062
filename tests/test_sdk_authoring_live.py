"""The SDK's authoring half against a real server (pytest-django's ``live_server`` over the
test database): source-directory snapshots uploaded file by file, ``Pipeline.validate()``
asking the server, and compute targets. Users, the workspace and tokens come from
``portal.services``; everything else goes through ``pipelines.sdk`` over real sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pipelines.sdk._http as http_module
from pipelines.models import Snapshot, SnapshotBlob
from pipelines.sdk import (
    AmlCompute,
    ComputeTarget,
    ComputeTargetException,
    DataReference,
    Datastore,
    PermissionDeniedError,
    Pipeline,
    PipelineData,
    PipelineParameter,
    PythonScriptStep,
    ValidationError,
    Workspace,
)
from pipelines.sdk.snapshot import build_manifest, upload_snapshot
from portal.models import ComputeTarget as ComputeTargetRow

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _close_clients(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Close every SDK client after the test: the live server keeps a database connection per
    kept-alive HTTP connection, and open ones would stop the test database from being dropped."""
    clients: list[http_module.HttpClient] = []
    original = http_module.HttpClient.__init__

    def init(self: http_module.HttpClient, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        clients.append(self)

    monkeypatch.setattr(http_module.HttpClient, "__init__", init)
    yield
    for client in clients:
        client.close()


@pytest.fixture
def url(live_server: Any, tmp_path: Path, settings: Any) -> str:
    settings.MILLRACE_DATA_ROOT = tmp_path / "server-data"
    return str(live_server.url)


@pytest.fixture
def sdk_ws(url: str, ws: Any, alice: Any, make_token: Any) -> Workspace:
    return Workspace.get("forecast", url=url, token=make_token(alice, ws))


@pytest.fixture
def reader_ws(url: str, ws: Any, carol: Any, make_token: Any) -> Workspace:
    return Workspace.get("forecast", url=url, token=make_token(carol, ws))


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def blob_count(ws: Any) -> int:
    return SnapshotBlob.objects.filter(workspace=ws).count()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write(
        tmp_path / "project",
        {
            "train.py": "print('train')\n",
            "extract.py": "print('extract')\n",
            "compare.py": "print('compare')\n",
            "lib/util.py": "X = 1\n" * 1000,
            "lib/copy_of_util.py": "X = 1\n" * 1000,  # same content: one blob
            "weights.bin": bytes(range(256)) * 400,
        },
    )


def file_of(sdk_ws: Workspace, digest: str, path: str) -> bytes:
    response = sdk_ws._client.request("GET", f"{sdk_ws._api}snapshots/{digest}/files/{path}")
    with response:
        return response.content


def test_a_source_directory_is_uploaded_once_and_an_unchanged_resubmit_sends_nothing(
    sdk_ws, ws, project
):
    manifest = build_manifest(project)
    digest, sent = upload_snapshot(sdk_ws, manifest, show_progress=False)
    unique = {m["sha256"]: m["size"] for m in manifest.files.values()}
    assert digest == manifest.digest
    assert sent == sum(unique.values())
    assert blob_count(ws) == len(unique) == len(manifest.files) - 1
    stored = Snapshot.objects.get(workspace=ws, digest=digest)
    assert set(stored.manifest) == set(manifest.files)
    assert file_of(sdk_ws, digest, "lib/util.py") == (project / "lib/util.py").read_bytes()

    again = upload_snapshot(sdk_ws, build_manifest(project), show_progress=False)
    assert again == (digest, 0)
    assert blob_count(ws) == len(unique)
    assert Snapshot.objects.filter(workspace=ws).count() == 1


def test_a_changed_file_uploads_only_that_file(sdk_ws, ws, project):
    first, _ = upload_snapshot(sdk_ws, build_manifest(project), show_progress=False)
    before = blob_count(ws)
    (project / "train.py").write_text("print('train, better')\n")
    second, sent = upload_snapshot(sdk_ws, build_manifest(project), show_progress=False)
    assert second != first
    assert sent == len("print('train, better')\n")
    assert blob_count(ws) == before + 1
    assert file_of(sdk_ws, second, "train.py") == b"print('train, better')\n"
    assert file_of(sdk_ws, first, "train.py") == b"print('train')\n"


def test_amlignore_keeps_files_out_of_the_snapshot(sdk_ws, ws, project):
    write(
        project, {"data/big.csv": "1,2,3\n" * 1000, "data/keep.csv": "a\n", ".amlignore": "data/\n"}
    )
    digest, _ = upload_snapshot(sdk_ws, build_manifest(project), show_progress=False)
    paths = set(Snapshot.objects.get(workspace=ws, digest=digest).manifest)
    assert ".amlignore" in paths and "train.py" in paths
    assert not any(p.startswith("data/") for p in paths)


def test_a_reader_cannot_upload_a_snapshot(reader_ws, ws, project):
    with pytest.raises(PermissionDeniedError):
        upload_snapshot(reader_ws, build_manifest(project), show_progress=False)
    assert blob_count(ws) == 0


def seed_pipeline(sdk_ws: Workspace, project: Path, target: Any) -> Pipeline:
    store = Datastore(sdk_ws, "workspaceblobstore")
    raw = DataReference(
        datastore=store, data_reference_name="test_data", path_on_datastore="20news/20news.pkl"
    )
    first = PipelineData("processed_data1", datastore=store)
    second = PipelineData("processed_data2", datastore=store)
    final = PipelineData("out_data3", datastore=store)
    train = PythonScriptStep(
        "train.py",
        arguments=["--input", raw, "--output", first],
        inputs=[raw],
        outputs=[first],
        compute_target=target,
        source_directory=project,
    )
    extract = PythonScriptStep(
        "extract.py",
        arguments=["--input_data", raw, "--output", second],
        inputs=[raw],
        outputs=[second],
        compute_target=target,
        source_directory=project,
    )
    compare = PythonScriptStep(
        "compare.py",
        arguments=[
            "--d1",
            first,
            "--d2",
            second,
            "--out",
            final,
            "--param1",
            PipelineParameter("pipeline_arg", 10),
        ],
        inputs=[first, second],
        outputs=[final],
        target=target,
        source_directory=project,
    )
    return Pipeline(workspace=sdk_ws, steps=[[train, extract, compare]])


def test_validate_asks_the_server_without_uploading(sdk_ws, ws, project, capsys):
    assert seed_pipeline(sdk_ws, project, "local").validate() == []
    assert "The pipeline is valid (3 steps)." in capsys.readouterr().out
    assert blob_count(ws) == 0  # nothing was uploaded to validate

    problems = seed_pipeline(sdk_ws, project, ("gpu-cluster", "AmlCompute")).validate()
    assert len(problems) == 3
    assert all("unknown compute target 'gpu-cluster'" in p for p in problems)


def test_compute_targets_are_created_found_and_ready(sdk_ws, ws, capsys):
    config = AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", min_nodes=1, max_nodes=4
    )
    target = ComputeTarget.create(sdk_ws, "aml-compute", config)
    row = ComputeTargetRow.objects.get(workspace=ws, name="aml-compute")
    assert (row.kind, row.max_concurrency, row.min_nodes, row.vm_size) == (
        "docker",
        4,
        1,
        "STANDARD_D2_V2",
    )
    assert type(target) is AmlCompute
    target.wait_for_completion(show_output=True, min_node_count=None, timeout_in_minutes=20)
    assert "Succeeded: compute target 'aml-compute' is ready" in capsys.readouterr().out

    targets = sdk_ws.compute_targets
    assert "aml-compute" in targets and "local" in targets
    assert type(targets["aml-compute"]) is AmlCompute
    assert type(targets["local"]) is ComputeTarget and targets["local"].type == "local"
    found = AmlCompute(sdk_ws, "aml-compute")
    status = found.get_status()
    assert status.provisioning_state == "Succeeded"
    assert status.serialize()["scaleSettings"] == {"minNodeCount": 1, "maxNodeCount": 4}
    assert found.status.serialize()["vmSize"] == "STANDARD_D2_V2"

    with pytest.raises(ValidationError, match="already exists"):
        ComputeTarget.create(sdk_ws, "aml-compute", config)
    with pytest.raises(ComputeTargetException, match=r"'nope' was not found.*aml-compute, local"):
        AmlCompute(sdk_ws, "nope")


def test_a_reader_cannot_create_a_compute_target(reader_ws, ws):
    config = AmlCompute.provisioning_configuration(max_nodes=2)
    with pytest.raises(PermissionDeniedError):
        ComputeTarget.create(reader_ws, "cpu-cluster", config)
    assert not ComputeTargetRow.objects.filter(workspace=ws, name="cpu-cluster").exists()
    assert type(reader_ws.compute_targets["local"]) is ComputeTarget
