"""prepare → train → evaluate, data passed through PipelineData on a workspaceblobstore that
lives in Azurite, on the `docker` target and on `local`, with real workers."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from portal import datastores, services
from portal.datastores import storage_for
from portal.models import ComputeTarget, Datastore, Workspace
from runs.logs import log_text
from runs.models import Metric, Output, Status
from runs.services import submit_pipeline_run
from tests.engine.conftest import Worker, wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

RAW = "x,y\n" + "".join(f"{x},{3 * x + 1}\n" for x in range(40))

PREPARE = """
import csv, os, sys
raw, out = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(os.path.join(raw, "points.csv"))))
train, test = rows[:30], rows[30:]
for name, part in (("train.csv", train), ("test.csv", test)):
    with open(os.path.join(out, name), "w") as fh:
        fh.write("x,y\\n" + "".join(f"{r['x']},{r['y']}\\n" for r in part))
print(f"split {len(rows)} rows into {len(train)} train and {len(test)} test")
"""

TRAIN = """
import csv, json, os, sys
from pipelines.sdk import Run
run = Run.get_context()
data, model_dir = sys.argv[1], sys.argv[2]
path = os.path.join(data, "train.csv")
rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(open(path))]
n = len(rows)
mx = sum(x for x, _ in rows) / n
my = sum(y for _, y in rows) / n
slope = sum((x - mx) * (y - my) for x, y in rows) / sum((x - mx) ** 2 for x, _ in rows)
intercept = my - slope * mx
run.log("slope", slope)
run.log("intercept", intercept)
with open(os.path.join(model_dir, "model.json"), "w") as fh:
    json.dump({"slope": slope, "intercept": intercept}, fh)
print(f"fitted y = {slope:.3f} x + {intercept:.3f}")
"""

EVALUATE = """
import csv, json, os, sys
from pipelines.sdk import Run
run = Run.get_context()
data, model_dir, threshold = sys.argv[1], sys.argv[2], float(sys.argv[3])
model = json.load(open(os.path.join(model_dir, "model.json")))
path = os.path.join(data, "test.csv")
rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(open(path))]
mse = sum((model["slope"] * x + model["intercept"] - y) ** 2 for x, y in rows) / len(rows)
run.log("mse", mse)
run.log("passed", mse < threshold)
print(f"test mse {mse:.6f} (threshold {threshold})")
"""


@pytest.fixture
def azurite(settings: Any) -> Iterator[str]:
    conn = os.environ.get("MILLRACE_TEST_AZURITE_CONNECTION_STRING")
    if not conn:
        pytest.fail("MILLRACE_TEST_AZURITE_CONNECTION_STRING is not set: run bin/test.")
    settings.MILLRACE_AZURE_STORAGE_CONNECTION_STRING = conn
    yield conn


@pytest.fixture
def blob_ws(azurite: str, alice: Any, transactional_db: Any) -> Iterator[Workspace]:
    workspace = services.create_workspace(
        actor=services.Actor(user=alice), name="Blob", slug="blob"
    )
    ComputeTarget.objects.create(workspace=workspace, name="docker", kind="docker", queue="docker")
    yield workspace
    service = BlobServiceClient.from_connection_string(azurite)
    container = datastores.platform_container(workspace)
    if service.get_container_client(container).exists():
        service.delete_container(container)


@pytest.fixture
def blob_worker(azurite: str, data_root: Path, tmp_path: Path) -> Iterator[Worker]:
    worker = Worker(
        data_root,
        tmp_path / "worker.log",
        extra_env={"MILLRACE_AZURE_STORAGE_CONNECTION_STRING": azurite},
    )
    worker.start()
    yield worker
    worker.stop()


def pipeline(digest: str, target: str) -> dict[str, Any]:
    common = {"snapshot": digest, "compute_target": target}
    return {
        "parameters": {"threshold": {"type": "float", "default": 0.01}},
        "steps": [
            {
                "name": "prepare",
                "script": "prepare.py",
                "arguments": [{"input": "raw"}, {"output": "prepared"}],
                "inputs": {
                    "raw": {"datastore": "workspaceblobstore", "path": "raw/", "mode": "download"}
                },
                "outputs": {"prepared": {"datastore": "workspaceblobstore"}},
                **common,
            },
            {
                "name": "train",
                "script": "train.py",
                "arguments": [{"input": "prepared"}, {"output": "model"}],
                "inputs": {"prepared": {"pipeline_data": "prepared"}},
                "outputs": {"model": {"datastore": "workspaceblobstore"}},
                **common,
            },
            {
                "name": "evaluate",
                "script": "evaluate.py",
                "arguments": [
                    {"input": "prepared"},
                    {"input": "model"},
                    {"parameter": "threshold"},
                ],
                "inputs": {
                    "prepared": {"pipeline_data": "prepared"},
                    "model": {"pipeline_data": "model"},
                },
                **common,
            },
        ],
    }


@pytest.mark.parametrize("target", ["docker", "local"])
def test_prepare_train_evaluate_through_azurite(blob_worker, blob_ws, alice, data_root, target):
    blobstore = Datastore.objects.get(workspace=blob_ws, name="workspaceblobstore")
    assert blobstore.kind == "azure_blob"
    storage = storage_for(blobstore)
    storage.write("raw/points.csv", io.BytesIO(RAW.encode()), overwrite=True)
    source = data_root / "src"
    source.mkdir()
    for name, text in (("prepare.py", PREPARE), ("train.py", TRAIN), ("evaluate.py", EVALUATE)):
        (source / name).write_text(text)
    from pipelines.snapshots import snapshot_from_directory

    snapshot, _ = snapshot_from_directory(blob_ws, source)
    run = submit_pipeline_run(
        actor=services.Actor(user=alice),
        workspace=blob_ws,
        experiment_name="regression",
        graph=pipeline(snapshot.digest, target),
    )
    run = wait_for(run, blob_worker, timeout=300)
    steps = {s.name: s for s in run.steps.all()}
    assert run.status == Status.COMPLETED, {n: (s.status, s.error) for n, s in steps.items()}
    assert all(s.compute_target and s.compute_target.name == target for s in steps.values())
    # Logs, by content.
    assert "split 40 rows into 30 train and 10 test" in log_text(steps["prepare"])
    assert "fitted y = 3.000 x + 1.000" in log_text(steps["train"])
    assert "test mse 0.000000" in log_text(steps["evaluate"])
    # Metrics, by value.
    metrics = {m.name: m.value for m in Metric.objects.filter(step_run__run=run)}
    assert metrics["slope"] == pytest.approx(3.0)
    assert metrics["intercept"] == pytest.approx(1.0)
    assert metrics["mse"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["passed"] is True
    # Outputs: in Azurite, under the producing step's folder.
    model = Output.objects.get(step_run=steps["train"], name="model")
    assert model.datastore == "workspaceblobstore"
    content = b"".join(storage.open_read(model.path + "model.json"))
    assert json.loads(content) == pytest.approx({"slope": 3.0, "intercept": 1.0})
    service = BlobServiceClient.from_connection_string(
        os.environ["MILLRACE_TEST_AZURITE_CONNECTION_STRING"]
    )
    container = service.get_container_client(blobstore.container_name)
    blobs = {b.name for b in container.list_blobs()}
    assert f"azureml/{steps['prepare'].uuid}/prepared/train.csv" in blobs
    # The Azure-named log file is written just after the step ends.
    log_file = container.get_blob_client(
        f"azureml/{steps['train'].uuid}/azureml-logs/70_driver_log.txt"
    )
    deadline = time.monotonic() + 60
    while not log_file.exists():
        assert time.monotonic() < deadline, "the driver log file was never written"
        time.sleep(0.1)
    assert b"fitted y = 3.000 x + 1.000" in log_file.download_blob().readall()
