"""The pipeline page's typed "Submit a run" form: one field per parameter, of its type; bad
values are named on their field and store nothing; readers and outsiders cannot submit."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from conftest import PASSWORD
from pipelines.models import Pipeline
from pipelines.services import create_pipeline
from pipelines.snapshots import snapshot_from_directory
from portal import services
from portal.models import Workspace
from runs.models import PipelineRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def pipeline(ws: Workspace, alice: Any, tmp_path: Path, settings: Any) -> Pipeline:
    settings.MILLRACE_DATA_ROOT = tmp_path / "data"
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('hi')\n")
    snapshot, _ = snapshot_from_directory(ws, source)
    graph = {
        "parameters": {
            "epochs": {"type": "int", "default": 3},
            "rate": {"type": "float", "default": 0.75},
            "shuffle": {"type": "bool", "default": True},
            "label": {"type": "string"},
            "data": {
                "type": "datapath",
                "default": {"datastore": "workspaceblobstore", "path": "raw/"},
            },
        },
        "steps": [
            {
                "name": "train",
                "script": "train.py",
                "snapshot": snapshot.digest,
                "compute_target": "local",
                "inputs": {"data": {"parameter": "data"}},
                "arguments": [
                    {"input": "data"},
                    {"parameter": "epochs"},
                    {"parameter": "rate"},
                    {"parameter": "shuffle"},
                    {"parameter": "label"},
                ],
            }
        ],
    }
    made, _ = create_pipeline(
        actor=services.Actor(user=alice), workspace=ws, graph=graph, name="Train"
    )
    return made


def client_for(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def urls(ws: Workspace, pipeline: Pipeline) -> tuple[str, str]:
    return (
        reverse("pipeline-detail", args=[ws.uuid, pipeline.uuid]),
        reverse("pipeline-submit", args=[ws.uuid, pipeline.uuid]),
    )


GOOD = {
    "experiment_name": "nightly",
    "param_epochs": "10",
    "param_rate": "0.5",
    "param_shuffle": "false",
    "param_label": "v2",
    "param_data": "workspacefilestore:in/2026/",
    "tags": "team=forecast, why=demo",
    "continue_on_step_failure": "on",
}


def test_a_contributor_submits_a_run_with_typed_values(
    bob: Any, ws: Workspace, pipeline: Pipeline
) -> None:
    detail, submit = urls(ws, pipeline)
    page = client_for(bob).get(detail).content.decode()
    assert "Submit a run" in page
    assert re.search(r'name="param_rate" id="id_param_rate" value="0.75"', page)
    answer = client_for(bob).post(submit, GOOD)
    run = PipelineRun.objects.get()
    assert answer.status_code == 302
    assert answer["Location"] == reverse("run-detail", args=[ws.uuid, run.uuid])
    assert run.parameters == {
        "epochs": 10,
        "rate": 0.5,
        "shuffle": False,
        "label": "v2",
        "data": {"datastore": "workspacefilestore", "path": "in/2026/"},
    }
    assert run.pipeline == pipeline and run.source == "portal" and run.submitted_by == bob
    assert run.tags == {"team": "forecast", "why": "demo"}
    assert run.experiment.name == "nightly"
    assert run.continue_on_step_failure and not run.regenerate_outputs


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("param_epochs", "ten", "Enter a whole number."),
        ("param_rate", "fast", "Enter a number."),
        ("param_label", "", "This field is required."),
        ("param_data", "nowhere", "Write datastore:path."),
        ("param_data", "nope:raw/", "unknown datastore 'nope'"),
        ("param_data", "workspaceblobstore:../etc", "without '..'"),
        ("tags", "=x", "write key=value"),
    ],
)
def test_bad_values_are_named_on_their_field_and_nothing_is_stored(
    bob: Any, ws: Workspace, pipeline: Pipeline, field: str, value: str, message: str
) -> None:
    _, submit = urls(ws, pipeline)
    answer = client_for(bob).post(submit, {**GOOD, field: value})
    assert answer.status_code == 400
    assert message in html.unescape(answer.content.decode())
    assert not PipelineRun.objects.exists()


def test_readers_see_no_form_and_cannot_submit_outsiders_get_404(
    carol: Any, charlie: Any, ws: Workspace, pipeline: Pipeline
) -> None:
    detail, submit = urls(ws, pipeline)
    assert b"Submit a run" not in client_for(carol).get(detail).content
    assert client_for(carol).post(submit, GOOD).status_code == 403
    assert client_for(charlie).post(submit, GOOD).status_code == 404
    assert client_for(charlie).get(detail).status_code == 404
    assert not PipelineRun.objects.exists()
