"""The engine end to end on the `local` target with a real Celery worker."""

from __future__ import annotations

from typing import Any

import pytest

from portal import services
from runs.logs import log_text
from runs.models import Metric, Output, Status, StepRun
from runs.services import submit_pipeline_run
from tests.engine.conftest import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PREPARE = """
import sys, os
out = sys.argv[1]
with open(os.path.join(out, "numbers.txt"), "w") as fh:
    fh.write("\\n".join(str(i) for i in range(10)))
print("prepared 10 numbers")
"""
TRAIN = """
import sys, os
from pipelines.sdk import Run
run = Run.get_context()
data, model, factor = sys.argv[1], sys.argv[2], int(sys.argv[3])
numbers = [int(x) for x in open(os.path.join(data, "numbers.txt"))]
total = sum(numbers) * factor
for i, n in enumerate(numbers):
    run.log("loss", 1.0 / (i + 1))
run.log("total", total)
with open(os.path.join(model, "model.txt"), "w") as fh:
    fh.write(str(total))
print("trained", total)
print("to stderr", file=sys.stderr)
"""


def graph(digest: str, target: str = "local") -> dict[str, Any]:
    return {
        "parameters": {"factor": {"type": "int", "default": 2}},
        "steps": [
            {
                "name": "prepare",
                "script": "prepare.py",
                "snapshot": digest,
                "arguments": [{"output": "numbers"}],
                "outputs": {"numbers": {"datastore": "workspaceblobstore"}},
                "compute_target": target,
            },
            {
                "name": "train",
                "script": "train.py",
                "snapshot": digest,
                "arguments": [{"input": "numbers"}, {"output": "model"}, {"parameter": "factor"}],
                "inputs": {"numbers": {"pipeline_data": "numbers"}},
                "outputs": {"model": {"datastore": "workspaceblobstore"}},
                "compute_target": target,
            },
        ],
    }


def test_a_two_step_pipeline_runs_and_is_reused(worker, engine_ws, alice, snapshot_of):
    digest = snapshot_of({"prepare.py": PREPARE, "train.py": TRAIN})
    actor = services.Actor(user=alice)
    run = submit_pipeline_run(
        actor=actor, workspace=engine_ws, experiment_name="e", graph=graph(digest)
    )
    run = wait_for(run, worker)
    steps = {s.name: s for s in run.steps.all()}
    assert run.status == Status.COMPLETED, [(s.name, s.status, s.error) for s in steps.values()]
    train = steps["train"]
    assert "trained 90" in log_text(train)
    assert "to stderr" in log_text(train)
    assert Metric.objects.get(step_run=train, name="total").value == 90
    assert Metric.objects.filter(step_run=train, name="loss").count() == 10
    assert Output.objects.get(step_run=train, name="model").path.endswith("/model/")
    again = submit_pipeline_run(
        actor=actor, workspace=engine_ws, experiment_name="e", graph=graph(digest)
    )
    again = wait_for(again, worker)
    assert again.status == Status.COMPLETED
    reused = {s.name: s for s in again.steps.all()}
    assert reused["train"].reused_from_id == train.pk
    assert reused["prepare"].reused_from_id == steps["prepare"].pk
    assert not StepRun.objects.filter(run=again, attempt__gt=0).exists()
