"""Submitting and following runs through ``pipelines.sdk`` against the live stack (daphne + a
Celery worker on the test database): every printed line reaches ``wait_for_completion`` once
and in order, over the websocket and by polling; failures, cancel, steps, metrics, logs,
outputs and files; and who may do what.

Graphs and their source snapshots are made server-side (``snapshot_from_directory``); the
submission itself goes through ``Experiment.submit`` and the REST API, like any SDK user's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import pipelines.sdk._follow as follow_module
from pipelines.sdk import Experiment, NotFoundError, PermissionDeniedError, PipelineRun
from pipelines.sdk.exceptions import RunFailedError
from pipelines.snapshots import snapshot_from_directory
from tests.sdk.conftest import Team

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TIMEOUT = 300  # seconds; generous bounds only, no test asserts a duration
N = 30

# Numbered lines, slowly (the follower sees them arrive live), metrics, an output folder, a
# file uploaded to the run, and a line on stderr.
COUNT = """
import os, sys, time
from pipelines.sdk import Run
run = Run.get_context()
n, out = int(sys.argv[1]), sys.argv[2]
for i in range(1, n + 1):
    print(f"line {i}", flush=True)
    if i % 10 == 0:
        run.log("progress", i)
    time.sleep(0.05)
print("a warning", file=sys.stderr, flush=True)
run.log("loss", 0.25)
run.log_row("table", epoch=1, acc=0.5)
run.log_row("table", epoch=2, acc=0.75)
with open(os.path.join(out, "numbers.txt"), "w") as fh:
    fh.write("\\n".join(str(i) for i in range(1, n + 1)))
with open("notes.txt", "w") as fh:
    fh.write("kept with the run")
run.upload_file("notes.txt", "notes.txt")
print("done", flush=True)
"""

FAIL = """
import sys
print("about to fail", flush=True)
raise ValueError("bad input")
"""

SLEEP = """
import time
print("started", flush=True)
time.sleep(600)
"""


class GraphPipeline:
    """Stands in for a Pipeline: what ``Experiment.submit`` asks of one (the authoring
    classes have their own tests), with the snapshot stored server-side."""

    def __init__(self, team: Team, scripts: dict[str, str], steps: list[dict[str, Any]]):
        folder = team.stack.data_root / f"src-{time.monotonic_ns()}"
        folder.mkdir()
        for name, text in scripts.items():
            (folder / name).write_text(text)
        snapshot, _ = snapshot_from_directory(team.ws, folder)
        self.graph = {
            "parameters": {"n": {"type": "int", "default": N}},
            "steps": [{"snapshot": snapshot.digest, "compute_target": "local", **s} for s in steps],
        }

    def _submission(
        self, show_progress: bool = True, parameters: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"graph": self.graph, "pipeline_name": "follow", "description": "SDK follow"}

    def _parameter_values(self, pipeline_parameters: dict[str, Any] | None) -> dict[str, Any]:
        return dict(pipeline_parameters or {})


def count_pipeline(team: Team) -> GraphPipeline:
    return GraphPipeline(
        team,
        {"count.py": COUNT},
        [
            {
                "name": "count",
                "script": "count.py",
                "arguments": [{"parameter": "n"}, {"output": "numbers"}],
                "outputs": {"numbers": {"datastore": "workspaceblobstore"}},
            }
        ],
    )


def submit(team: Team, pipeline: GraphPipeline, who: str = "alice", **options: Any) -> PipelineRun:
    experiment = Experiment(team.sdk(who), "follow")
    # regenerate_outputs: an identical earlier step must run again, not be reused.
    return experiment.submit(pipeline, regenerate_outputs=True, **options)


def script_lines(out: str, step: str = "count") -> list[str]:
    prefix = f"[{step}] "
    return [line[len(prefix) :] for line in out.splitlines() if line.startswith(prefix)]


def assert_script_output(lines: list[str]) -> None:
    """Every line once, stdout in order; the stderr line somewhere after the numbered lines
    began (stdout and stderr are read apart, so their relative order is not kept)."""
    assert [x for x in lines if x != "a warning"] == [f"line {i}" for i in range(1, N + 1)] + [
        "done"
    ]
    assert lines.count("a warning") == 1


def wait_until_running(run: PipelineRun, stack: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        steps = run.get_steps()
        if steps and steps[0].status == "Running" and int(steps[0]._data["log_seq"]) > 0:
            return
        time.sleep(0.1)
    pytest.fail(f"The step never ran:\n{stack.report()}")


def test_wait_for_completion_prints_every_line_once_in_order_over_the_websocket(
    stack, team, capsys, monkeypatch
):
    def no_polling(self: Any, deadline: float) -> None:
        pytest.fail(f"The websocket was not used:\n{stack.report()}")

    monkeypatch.setattr(follow_module.Follower, "_follow_polling", no_polling)
    run = submit(team, count_pipeline(team))
    submitted = capsys.readouterr().out
    assert f"Submitted PipelineRun {run.id}" in submitted
    assert f"Link to the portal: {stack.url}w/{team.ws.uuid}/runs/{run.id}/" in submitted

    details = run.wait_for_completion(show_output=True, timeout_seconds=TIMEOUT)

    out = capsys.readouterr().out
    assert details["status"] == "Completed", out + stack.report()
    assert_script_output(script_lines(out))
    assert out.index("StepRun: count → Running") < out.index("[count] line 1\n")
    assert out.index("[count] done") < out.index("StepRun: count → Completed")
    assert "PipelineRun Status: Completed" in out
    assert details["runId"] == run.id and details["submittedBy"] == "alice"
    assert details["properties"]["runSource"] == "sdk"


def test_polling_prints_the_same_when_the_websocket_is_off_joining_mid_run(
    stack, team, capsys, monkeypatch
):
    def no_websocket(self: Any, deadline: float) -> None:
        pytest.fail("The websocket was used although MILLRACE_SDK_WEBSOCKET=0")

    monkeypatch.setenv(follow_module.WEBSOCKET_ENV, "0")
    monkeypatch.setattr(follow_module.Follower, "_connect", no_websocket)
    run = submit(team, count_pipeline(team))
    wait_until_running(run, stack)
    capsys.readouterr()

    details = run.wait_for_completion(show_output=True, timeout_seconds=TIMEOUT)

    out = capsys.readouterr().out
    assert details["status"] == "Completed", out + stack.report()
    assert_script_output(script_lines(out))
    assert "StepRun: count → Completed" in out


def test_a_failing_step_raises_naming_it_unless_told_not_to(stack, team, capsys):
    pipeline = GraphPipeline(team, {"fail.py": FAIL}, [{"name": "breaks", "script": "fail.py"}])
    run = submit(team, pipeline)

    with pytest.raises(RunFailedError) as caught:
        run.wait_for_completion(show_output=True, timeout_seconds=TIMEOUT)

    message = str(caught.value)
    assert "Step 'breaks' failed: The script exited with code 1." in message, stack.report()
    assert "ValueError: bad input" in message
    assert [s["name"] for s in caught.value.failed_steps] == ["breaks"]
    assert "[breaks] about to fail" in capsys.readouterr().out
    details = PipelineRun(run.experiment, run.id).wait_for_completion(
        show_output=False, raise_on_error=False
    )
    assert details["status"] == "Failed" and "breaks" in details["error"]["error"]["message"]


def test_cancel_stops_a_running_step_and_the_wait_returns_canceled(stack, team, capsys):
    pipeline = GraphPipeline(team, {"sleep.py": SLEEP}, [{"name": "sleepy", "script": "sleep.py"}])
    run = submit(team, pipeline)
    wait_until_running(run, stack)

    run.cancel()
    details = run.wait_for_completion(show_output=False, timeout_seconds=TIMEOUT)

    assert details["status"] == "Canceled", stack.report()
    assert run.find_step_run("sleepy")[0].get_status() == "Canceled"
    assert run.find_step_run("sleepy")[0].get_stdout_log() == "started\n"


def test_steps_metrics_logs_outputs_and_files_of_a_finished_run(stack, team, tmp_path, capsys):
    run = submit(team, count_pipeline(team), tags={"team": "forecast"})
    run.wait_for_completion(show_output=False, timeout_seconds=TIMEOUT)
    assert run.get_status() == "Completed", stack.report()

    steps = run.get_steps()
    assert [s.name for s in steps] == ["count"]
    (step,) = run.find_step_run("count")
    assert step.id == steps[0].id and not step.reused
    assert step.get_details()["target"] == "local"
    # Metrics, Azure-shaped: a name logged once → its value, several times → the list.
    metrics = run.get_metrics()
    assert metrics["count"]["progress"] == [10, 20, 30]
    assert metrics["count"]["loss"] == 0.25
    assert metrics["count"]["table"] == {"epoch": [1, 2], "acc": [0.5, 0.75]}
    assert step.get_metrics() == metrics["count"]
    assert step.get_metrics("loss") == {"loss": 0.25}
    # Logs.
    stdout = step.get_stdout_log()
    assert stdout.splitlines() == [f"line {i}" for i in range(1, N + 1)] + ["done"]
    assert step.get_stderr_log() == "a warning\n"
    assert "a warning" in step.get_job_log() and "line 30" in step.get_job_log()
    # The output folder, downloaded.
    reference = step.get_output_data("numbers")
    local = Path(reference.download(str(tmp_path / "out"), show_progress=False))
    assert local == tmp_path / "out" / reference.path_on_datastore.rstrip("/")
    assert (local / "numbers.txt").read_text().split() == [str(i) for i in range(1, N + 1)]
    assert set(step.get_outputs()) == {"numbers"}
    # A file uploaded with Run.upload_file, and the driver log under its Azure name.
    names = step.get_file_names()
    assert "notes.txt" in names and "azureml-logs/70_driver_log.txt" in names
    written = step.download_file("notes.txt", str(tmp_path / "notes-copy.txt"))
    assert Path(written).read_text() == "kept with the run"
    log_file = step.download_file("azureml-logs/70_driver_log.txt", str(tmp_path))
    assert "line 1\n" in Path(log_file).read_text()
    # Tags, the experiment's runs, and a run found again by id.
    run.tag("reviewed")
    assert run.get_tags() == {"team": "forecast", "reviewed": ""}
    experiment = Experiment(team.sdk("alice"), "follow")
    assert [r.id for r in experiment.get_runs(tags={"team": "forecast"})] == [run.id]
    assert "follow" in [e.name for e in Experiment.list(team.sdk("alice"))]
    again = PipelineRun(experiment, run.id)
    assert again.status == "Completed" and again.get_portal_url() == run.get_portal_url()


def test_a_reader_may_follow_but_not_cancel_and_an_outsider_sees_nothing(stack, team, capsys):
    pipeline = GraphPipeline(team, {"sleep.py": SLEEP}, [{"name": "sleepy", "script": "sleep.py"}])
    run = submit(team, pipeline)
    as_reader = PipelineRun(Experiment(team.sdk("carol"), "follow"), run.id)
    try:
        with pytest.raises(PermissionDeniedError):
            as_reader.cancel()
        with pytest.raises(PermissionDeniedError):
            as_reader.tag("k", "v")
        assert as_reader.get_status() in ("NotStarted", "Queued", "Preparing", "Running")
        with pytest.raises(NotFoundError):
            PipelineRun(Experiment(team.sdk("charlie"), "follow"), run.id)
    finally:
        run.cancel()
    assert run.wait_for_completion(show_output=False, timeout_seconds=TIMEOUT)["status"] == (
        "Canceled"
    )
