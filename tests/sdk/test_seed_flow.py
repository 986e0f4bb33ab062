"""The seed document's flow (shared/reference/000_324bc8a339fa92b9.txt), from ``Workspace`` to
``Experiment.submit`` and ``wait_for_completion``, with only its import lines changed, against
a live server (daphne + a Celery worker) and the docker compute target. The three scripts in
seed_project/ are real scikit-learn code: split, train, evaluate.

The body of ``run_the_seed_document`` is the document's code; the rest of this file checks
what it did, on the server and in what the SDK returns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipelines.models import Pipeline as StoredPipeline
from pipelines.models import Snapshot, SnapshotBlob

# The import lines are the only lines changed from the Azure ML original.
from pipelines.sdk import (
    AmlCompute,
    ComputeTarget,
    CondaDependencies,
    DataReference,
    Datastore,
    Experiment,
    Pipeline,
    PipelineData,
    PipelineParameter,
    PythonScriptStep,
    RunConfiguration,
    Workspace,
)
from portal import services
from runs.models import PipelineRun, Status

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SEED_PROJECT = Path(__file__).resolve().parent / "seed_project"
# Wheels with Python 3.11 builds; the docker target builds this environment once per machine.
PIP_PACKAGES = ["scikit-learn==1.5.2", "numpy==2.1.3", "scipy==1.14.1"]
TIMEOUT = 1800  # the first run builds the image (downloads ~70 MB of wheels)


def run_the_seed_document(project_folder: str, pipeline_arg: float | None = None) -> Any:
    """The document's code, in its order (names kept), adapted only where the document elides
    (its data file and scripts are ours)."""
    ws = Workspace.create(
        name="ml-team",
        subscription_id="<subscription-id>",
        resource_group="<resource-group>",
        location="<workspace_region>",
        exist_ok=True,
    )

    # Default datastore (Azure file storage)
    def_data_store = ws.get_default_datastore()
    # The above call is equivalent to this
    def_data_store = Datastore(ws, "workspacefilestore")  # noqa: F841
    # Get blob storage associated with the workspace
    def_blob_store = Datastore(ws, "workspaceblobstore")

    def_blob_store.upload_files(["./data/split.json"], target_path="breastcancer", overwrite=True)

    blob_input_data = DataReference(
        datastore=def_blob_store,
        data_reference_name="test_data",
        path_on_datastore="breastcancer/split.json",
    )
    processed_data1 = PipelineData(
        "processed_data1", datastore=def_blob_store, output_name="processed_data1"
    )
    model_data = PipelineData("model_data", datastore=def_blob_store)
    out_data3 = PipelineData("out_data3", datastore=def_blob_store)

    compute_name = "aml-compute"
    vm_size = "STANDARD_NC6"
    if compute_name in ws.compute_targets:
        compute_target = ws.compute_targets[compute_name]
        if compute_target and type(compute_target) is AmlCompute:
            print("Found compute target: " + compute_name)
    else:
        print("Creating a new compute target...")
        provisioning_config = AmlCompute.provisioning_configuration(
            vm_size=vm_size,  # NC6 is GPU-enabled
            min_nodes=1,
            max_nodes=4,
        )
        # create the compute target
        compute_target = ComputeTarget.create(ws, compute_name, provisioning_config)
        # Can poll for a minimum number of nodes and for a specific timeout.
        compute_target.wait_for_completion(
            show_output=True, min_node_count=None, timeout_in_minutes=20
        )
        # For a more detailed view of current cluster status, use the 'status' property
        print(compute_target.status.serialize())

    run_config = RunConfiguration()
    run_config.environment.docker.enabled = True
    run_config.environment.python.conda_dependencies = CondaDependencies.create(
        pip_packages=PIP_PACKAGES
    )

    trainStep = PythonScriptStep(
        script_name="prepare.py",
        arguments=["--input", blob_input_data, "--output", processed_data1],
        inputs=[blob_input_data],
        outputs=[processed_data1],
        compute_target=compute_target,
        source_directory=project_folder,
        runconfig=run_config,
    )
    extractStep = PythonScriptStep(
        script_name="train.py",
        arguments=["--input", processed_data1, "--output", model_data],
        inputs=[processed_data1],
        outputs=[model_data],
        compute_target=compute_target,
        source_directory=project_folder,
        runconfig=run_config,
    )

    pipeline_param = PipelineParameter(name="pipeline_arg", default_value=0.5)
    compareStep = PythonScriptStep(
        script_name="evaluate.py",
        arguments=[
            "--data",
            processed_data1,
            "--model",
            model_data,
            "--output",
            out_data3,
            "--threshold",
            pipeline_param,
        ],
        inputs=[processed_data1, model_data],
        outputs=[out_data3],
        target=compute_target,
        source_directory=project_folder,
        runconfig=run_config,
    )

    # list of steps to run
    compareModels = [trainStep, extractStep, compareStep]
    # Build the pipeline
    pipeline1 = Pipeline(workspace=ws, steps=[compareModels])

    # Submit the pipeline to be run
    parameters = None if pipeline_arg is None else {"pipeline_arg": pipeline_arg}
    pipeline_run1 = Experiment(ws, "Compare_Models_Exp").submit(
        pipeline1, pipeline_parameters=parameters
    )
    pipeline_run1.wait_for_completion(show_output=True, timeout_seconds=TIMEOUT)
    return pipeline_run1


def blob_state(workspace: Any) -> tuple[int, int, list[str]]:
    blobs = SnapshotBlob.objects.filter(workspace=workspace)
    return (
        blobs.count(),
        Snapshot.objects.filter(workspace=workspace).count(),
        sorted(str(b.created_at) for b in blobs),
    )


def test_the_seed_documents_flow_runs_with_only_its_imports_changed(
    stack: Any,
    alice: Any,
    make_token: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Tokens cannot create workspaces: its owner made it in the portal; the script's
    # Workspace.create(..., exist_ok=True) finds it.
    workspace = services.create_workspace(
        actor=services.Actor(user=alice), name="ML team", slug="ml-team"
    )
    monkeypatch.setenv("MILLRACE_URL", stack.url)
    monkeypatch.setenv("MILLRACE_TOKEN", make_token(alice, workspace))
    project_folder = tmp_path / "project"
    shutil.copytree(SEED_PROJECT, project_folder)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "split.json").write_text(
        json.dumps({"test_size": 0.25, "random_state": 42})
    )
    monkeypatch.chdir(tmp_path)

    first = run_the_seed_document(str(project_folder))
    out = capsys.readouterr().out
    assert first.get_status() == "Completed", out
    assert "Creating a new compute target..." in out
    # The steps' own output reached the terminal while following the run.
    assert "Split settings: {'test_size': 0.25, 'random_state': 42}" in out
    assert "Wrote 426 training and 143 test rows" in out

    steps = {step.name: step for step in first.get_steps()}
    assert len(steps) == 3
    by_script = first.get_metrics()
    evaluate_name = next(name for name in by_script if "evaluate" in name)
    prepare_name = next(name for name in by_script if "prepare" in name)
    train_name = next(name for name in by_script if "train" in name)
    assert by_script[prepare_name]["train_rows"] == 426
    assert by_script[prepare_name]["test_rows"] == 143
    assert by_script[prepare_name]["features"] == 30
    assert by_script[train_name]["train_accuracy"] > 0.95
    evaluation = by_script[evaluate_name]
    assert evaluation["threshold"] == 0.5
    assert 0.9 < evaluation["accuracy"] <= 1.0 and 0.9 < evaluation["auc"] <= 1.0

    # The outputs, downloaded through the SDK: the report matches the logged metrics and the
    # model is a pickle of the fitted scikit-learn pipeline.
    evaluate_step = first.find_step_run(evaluate_name)[0]
    report_dir = Path(evaluate_step.get_output_data("out_data3").download(str(tmp_path / "out")))
    report = json.loads(next(report_dir.rglob("report.json")).read_text())
    assert report["accuracy"] == evaluation["accuracy"] and report["test_rows"] == 143
    train_step = first.find_step_run(train_name)[0]
    model_dir = Path(train_step.get_output_data("model_data").download(str(tmp_path / "model")))
    model_bytes = next(model_dir.rglob("model.pkl")).read_bytes()
    assert model_bytes[:1] == b"\x80" and b"LogisticRegression" in model_bytes
    assert "Trained on 426 rows" in train_step.get_stdout_log()

    run_row = PipelineRun.objects.get(uuid=first.id)
    assert run_row.source == "sdk" and run_row.submitted_by == alice
    assert set(run_row.steps.values_list("compute_target__name", flat=True)) == {"aml-compute"}
    assert StoredPipeline.objects.filter(workspace=workspace).count() == 1

    # Submitting again with nothing changed: every step reused, not one snapshot byte sent.
    before = blob_state(workspace)
    second = run_the_seed_document(str(project_folder))
    capsys.readouterr()
    assert second.get_status() == "Completed"
    assert blob_state(workspace) == before
    second_row = PipelineRun.objects.get(uuid=second.id)
    assert [s.reused_from_id is not None for s in second_row.steps.all()] == [True] * 3
    assert all(s.status == Status.COMPLETED for s in second_row.steps.all())
    assert second.get_metrics()[evaluate_name]["accuracy"] == evaluation["accuracy"]
    assert StoredPipeline.objects.filter(workspace=workspace).count() == 1

    # A new parameter value reruns only the step that takes it.
    third = run_the_seed_document(str(project_folder), pipeline_arg=0.9)
    capsys.readouterr()
    third_row = PipelineRun.objects.get(uuid=third.id)
    reused = {s.name: s.reused_from_id is not None for s in third_row.steps.all()}
    assert reused == {prepare_name: True, train_name: True, evaluate_name: False}
    assert third.get_metrics()[evaluate_name]["threshold"] == 0.9
    assert third_row.parameters == {"pipeline_arg": 0.9}
