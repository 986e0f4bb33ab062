"""Bad submissions through the SDK against the live server: every problem is named, and
nothing is stored — no pipeline, run, snapshot or uploaded file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.models import Pipeline as StoredPipeline
from pipelines.models import Snapshot, SnapshotBlob
from pipelines.sdk import (
    Experiment,
    Pipeline,
    PipelineData,
    PipelineParameter,
    PythonScriptStep,
    ValidationError,
)
from runs.models import PipelineRun

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def nothing_stored() -> bool:
    return not (
        StoredPipeline.objects.exists()
        or PipelineRun.objects.exists()
        or Snapshot.objects.exists()
        or SnapshotBlob.objects.exists()
    )


@pytest.fixture
def pipeline(team: Any, tmp_path: Path) -> Pipeline:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("import sys; print(sys.argv)\n")
    ws = team.sdk("alice")
    data = PipelineData("prepared", datastore=ws.get_default_datastore())
    epochs = PipelineParameter("epochs", default_value=3)
    rate = PipelineParameter("rate", default_value=0.1)
    first = PythonScriptStep(
        script_name="train.py",
        name="prepare",
        arguments=["--out", data],
        outputs=[data],
        compute_target="local",
        source_directory=str(source),
    )
    second = PythonScriptStep(
        script_name="train.py",
        name="train",
        arguments=["--in", data, "--epochs", epochs, "--rate", rate],
        inputs=[data],
        compute_target="local",
        source_directory=str(source),
    )
    return Pipeline(ws, [first, second])


def test_bad_parameter_values_are_all_named_and_nothing_is_stored(
    team: Any, pipeline: Pipeline
) -> None:
    ws = team.sdk("alice")
    with pytest.raises(ValidationError) as caught:
        Experiment(ws, "errors").submit(
            pipeline, pipeline_parameters={"epochs": "ten", "rate": True, "batch": 32}
        )
    fields = caught.value.fields or {}
    assert "is not of type int" in str(fields["pipeline_parameters.epochs"])
    assert "is not of type float" in str(fields["pipeline_parameters.rate"])
    assert "unknown parameter" in str(fields["pipeline_parameters.batch"])
    assert nothing_stored()


def test_a_bad_graph_is_reported_by_validate_and_refused_by_submit(
    team: Any, tmp_path: Path
) -> None:
    ws = team.sdk("alice")
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.py").write_text("print(1)\n")
    never = PipelineData("never_made", datastore=ws.get_default_datastore())
    step = PythonScriptStep(
        script_name="missing.py",
        arguments=["--in", never],
        inputs=[never],
        compute_target="gpu-cluster",
        source_directory=str(source),
    )
    pipeline = Pipeline(ws, [step])
    problems = pipeline.validate()
    text = "\n".join(problems)
    assert "missing.py" in text and "gpu-cluster" in text and "never_made" in text
    with pytest.raises(ValidationError):
        Experiment(ws, "errors").submit(pipeline)
    assert nothing_stored()


def test_a_reader_cannot_submit(team: Any, pipeline: Pipeline) -> None:
    from pipelines.sdk import PermissionDeniedError

    reader = team.sdk("carol")
    pipeline._workspace = reader
    with pytest.raises(PermissionDeniedError):
        Experiment(reader, "errors").submit(pipeline)
    assert not PipelineRun.objects.exists()
