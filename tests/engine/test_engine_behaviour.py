"""The engine's behaviour end to end on the `local` target, with real Celery workers against the
test database: reuse and why it missed, cancel, signals, failures with and without
continue-on-step-failure, timeouts, a worker killed mid-step, per-target concurrency, logs of
every size, metrics and the step's environment.

Every wait is bounded and nothing asserts how long something took."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import os
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from portal import services
from portal.datastores import storage_for
from portal.models import ComputeTarget, Datastore, Workspace
from portal.storage import NotFound
from runs.logs import log_text
from runs.models import (
    ACTIVE,
    TERMINAL,
    LogChunk,
    Metric,
    Output,
    PipelineRun,
    Status,
    StepAttempt,
    StepRun,
)
from runs.reconcile import RUNNING_STATES, reconcile
from runs.services import cancel_run, cancel_step, submit_pipeline_run
from tests.engine.conftest import Worker, wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Bounds, generous on purpose: a slow machine must never fail these tests.
WAIT = 120.0
POLL = 0.05


# --- helpers --------------------------------------------------------------------------------


def submit(workspace: Workspace, user: Any, graph: dict[str, Any], **kwargs: Any) -> PipelineRun:
    kwargs.setdefault("experiment_name", "behaviour")
    return submit_pipeline_run(
        actor=services.Actor(user=user), workspace=workspace, graph=graph, **kwargs
    )


def wait_until(
    check: Callable[[], Any],
    what: str,
    worker: Worker | None = None,
    timeout: float = WAIT,
    poll: float = POLL,
) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"Not within {timeout} s: {what}\n" + (worker.tail() if worker else ""))


def steps_of(run: PipelineRun) -> dict[str, StepRun]:
    return {s.name: s for s in StepRun.objects.filter(run=run).select_related("reused_from")}


def status_of(run: PipelineRun, name: str) -> str:
    return StepRun.objects.values_list("status", flat=True).get(run=run, name=name)


def summary(run: PipelineRun) -> list[tuple[str, str, str]]:
    return [(s.name, s.status, s.error) for s in StepRun.objects.filter(run=run)]


def blob_exists(workspace: Workspace, path: str) -> bool:
    try:
        blob_storage(workspace).stat(path)
    except NotFound:
        return False
    return True


def driver_has(run: PipelineRun, name: str, text: str) -> bool:
    step = StepRun.objects.get(run=run, name=name)
    return text in log_text(step)


def processes_with(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def counted(counter: Path) -> list[str]:
    """Names of the steps that really ran (each appends its name when its process starts)."""
    return counter.read_text().split() if counter.exists() else []


def blob_storage(workspace: Workspace, name: str = "workspaceblobstore") -> Any:
    return storage_for(
        Datastore.objects.select_related("workspace").get(workspace=workspace, name=name)
    )


def read_output(workspace: Workspace, out: Output, relative: str = "") -> bytes:
    storage = blob_storage(workspace, out.datastore)
    return b"".join(storage.open_read(out.path + relative))


# A generic step: records that it ran, reads every --in (a file or a folder), writes what it
# read to data.txt in every --out, and prints it. Other flags are recorded as flag=value.
STEP = """
import os, sys
counter, name, *rest = sys.argv[1:]
with open(counter, "a") as fh:
    fh.write(name + "\\n")
seen, outs = [], []
pairs = iter(rest)
for flag in pairs:
    value = next(pairs)
    if flag == "--in":
        if os.path.isdir(value):
            for f in sorted(os.listdir(value)):
                seen.append(open(os.path.join(value, f)).read())
        else:
            seen.append(open(value).read())
    elif flag == "--out":
        outs.append(value)
    else:
        seen.append(flag + "=" + value)
for out in outs:
    with open(os.path.join(out, "data.txt"), "w") as fh:
        fh.write(name + "(" + ",".join(seen) + ")")
print(name, "ran with", seen)
"""

# Prints a marker (in its own command line too), then sleeps: something to cancel or kill.
SLEEPER = """
import sys, time
print("started", sys.argv[1], flush=True)
time.sleep(300)
print("woke up: nobody stopped me")
"""


def generic(name: str, digest: str, counter: Path, *args: Any, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "script": "step.py",
        "snapshot": digest,
        "compute_target": "local",
        "arguments": [str(counter), name, *args],
        **extra,
    }


@pytest.fixture
def counter(tmp_path: Path) -> Path:
    return tmp_path / "ran.txt"


@pytest.fixture
def alice_actor(alice: Any) -> services.Actor:
    return services.Actor(user=alice)


# --- reuse ----------------------------------------------------------------------------------


def reuse_graph(digest: str, counter: Path, report_allows_reuse: bool = True) -> dict[str, Any]:
    return {
        "parameters": {"factor": {"type": "int", "default": 2}},
        "steps": [
            generic(
                "prepare",
                digest,
                counter,
                "--out",
                {"output": "prepared"},
                outputs={"prepared": {"datastore": "workspaceblobstore"}},
            ),
            generic(
                "train",
                digest,
                counter,
                "--in",
                {"input": "prepared"},
                "--factor",
                {"parameter": "factor"},
                "--out",
                {"output": "model"},
                inputs={"prepared": {"pipeline_data": "prepared"}},
                outputs={"model": {}},
            ),
            generic(
                "report", digest, counter, run_after=["train"], allow_reuse=report_allows_reuse
            ),
        ],
    }


def test_an_identical_resubmit_reuses_every_step_without_running_a_process(
    worker, engine_ws, alice, snapshot_of, counter
):
    digest = snapshot_of({"step.py": STEP})
    first = wait_for(submit(engine_ws, alice, reuse_graph(digest, counter)), worker)
    assert first.status == Status.COMPLETED, summary(first)
    assert sorted(counted(counter)) == ["prepare", "report", "train"]
    origin = steps_of(first)
    assert all(s.attempt == 1 and s.reused_from is None for s in origin.values())
    assert all(s.reuse_explanation.startswith("Ran:") for s in origin.values())

    again = wait_for(submit(engine_ws, alice, reuse_graph(digest, counter)), worker)
    assert again.status == Status.COMPLETED, summary(again)
    assert sorted(counted(counter)) == ["prepare", "report", "train"], "a reused step ran"
    for name, step in steps_of(again).items():
        assert step.status == Status.COMPLETED
        assert step.attempt == 0, name
        assert step.reused_from_id == origin[name].pk, name
        assert str(first.uuid) in step.reuse_explanation, step.reuse_explanation
        assert str(origin[name].uuid) in step.reuse_explanation
        assert step.reuse_explanation.startswith("Reused")
        # The reused step points at the same outputs as the one that ran.
        assert {(o.name, o.path) for o in step.outputs.all()} == {
            (o.name, o.path) for o in origin[name].outputs.all()
        }
    assert not StepAttempt.objects.filter(step_run__run=again).exists()
    assert not LogChunk.objects.filter(step_run__run=again).exists()

    # A third run reuses through the second (a reuse of a reuse links to the step that ran).
    third = wait_for(submit(engine_ws, alice, reuse_graph(digest, counter)), worker)
    assert third.status == Status.COMPLETED
    assert {n: s.reused_from_id for n, s in steps_of(third).items()} == {
        n: s.pk for n, s in origin.items()
    }

    # regenerate_outputs: everything runs again, nothing is reused.
    fresh = wait_for(
        submit(engine_ws, alice, reuse_graph(digest, counter), regenerate_outputs=True), worker
    )
    assert fresh.status == Status.COMPLETED, summary(fresh)
    assert sorted(counted(counter)) == ["prepare", "prepare", "report", "report", "train", "train"]
    for step in steps_of(fresh).values():
        assert step.attempt == 1
        assert step.reused_from is None
        assert "regenerate" in step.reuse_explanation
    # train read the new prepare's output, not the old one.
    fresh_train = steps_of(fresh)["train"]
    [prepared] = fresh_train.spec["resolved"]["inputs"].values()
    assert prepared["path"] == steps_of(fresh)["prepare"].outputs.get().path


def test_a_step_that_does_not_allow_reuse_always_runs(
    worker, engine_ws, alice, snapshot_of, counter
):
    digest = snapshot_of({"step.py": STEP})
    graph = reuse_graph(digest, counter, report_allows_reuse=False)
    first = wait_for(submit(engine_ws, alice, graph), worker)
    assert first.status == Status.COMPLETED, summary(first)
    again = wait_for(submit(engine_ws, alice, graph), worker)
    assert again.status == Status.COMPLETED, summary(again)
    assert sorted(counted(counter)) == ["prepare", "report", "report", "train"]
    steps = steps_of(again)
    assert steps["prepare"].reused_from is not None
    assert steps["train"].reused_from is not None
    report = steps["report"]
    assert report.reused_from is None
    assert report.attempt == 1
    assert "allow_reuse" in report.reuse_explanation


def test_a_step_whose_outputs_were_deleted_runs_again(
    worker, engine_ws, alice, snapshot_of, counter
):
    digest = snapshot_of({"step.py": STEP})
    graph = reuse_graph(digest, counter)
    first = wait_for(submit(engine_ws, alice, graph), worker)
    assert first.status == Status.COMPLETED, summary(first)
    prepared = steps_of(first)["prepare"].outputs.get(name="prepared")
    assert blob_storage(engine_ws).delete(prepared.path) == 1
    again = wait_for(submit(engine_ws, alice, graph), worker)
    assert again.status == Status.COMPLETED, summary(again)
    steps = steps_of(again)
    assert steps["prepare"].reused_from is None
    assert "gone" in steps["prepare"].reuse_explanation
    assert steps["train"].reused_from is None  # its input is a new location now
    assert steps["report"].reused_from is not None  # run_after carries no data
    assert sorted(counted(counter)) == ["prepare", "prepare", "report", "train", "train"]


EMPTY_OUTPUT = """
import os, sys
print("wrote nothing to", os.path.basename(sys.argv[1]))
"""
LIST_INPUT = """
import os, sys
print("input holds", sorted(os.listdir(sys.argv[1])))
"""


def test_an_empty_output_folder_is_still_an_output(worker, engine_ws, alice, snapshot_of):
    """A step may write nothing to its output (no rows matched a filter): the consumer gets an
    empty folder, and a resubmit reuses both steps."""
    digest = snapshot_of({"empty.py": EMPTY_OUTPUT, "list.py": LIST_INPUT})
    graph = {
        "steps": [
            {
                "name": "empty",
                "script": "empty.py",
                "snapshot": digest,
                "compute_target": "local",
                "arguments": [{"output": "nothing"}],
                "outputs": {"nothing": {}},
            },
            {
                "name": "consume",
                "script": "list.py",
                "snapshot": digest,
                "compute_target": "local",
                "arguments": [{"input": "nothing"}],
                "inputs": {"nothing": {"pipeline_data": "nothing"}},
            },
        ]
    }
    first = wait_for(submit(engine_ws, alice, graph), worker)
    assert first.status == Status.COMPLETED, summary(first)
    assert "input holds []" in log_text(steps_of(first)["consume"])
    again = wait_for(submit(engine_ws, alice, graph), worker)
    assert again.status == Status.COMPLETED, summary(again)
    assert all(s.reused_from is not None for s in steps_of(again).values()), [
        (s.name, s.reuse_explanation) for s in steps_of(again).values()
    ]


def test_a_changed_input_file_reruns_its_reader_and_dependants_only(
    worker, engine_ws, alice, snapshot_of, counter
):
    actor = services.Actor(user=alice)
    filestore = Datastore.objects.select_related("workspace").get(
        workspace=engine_ws, name="workspacefilestore"
    )
    for path, text in (("inputs/a.txt", b"A1"), ("inputs/b.txt", b"B1")):
        services.upload_to_datastore(
            actor=actor, datastore=filestore, path=path, stream=io.BytesIO(text), length=len(text)
        )
    digest = snapshot_of({"step.py": STEP})
    graph = {
        "steps": [
            generic(
                "read_a",
                digest,
                counter,
                "--in",
                {"input": "raw_a"},
                "--out",
                {"output": "a_out"},
                inputs={"raw_a": {"datastore": "workspacefilestore", "path": "inputs/a.txt"}},
                outputs={"a_out": {}},
            ),
            generic(
                "read_b",
                digest,
                counter,
                "--in",
                {"input": "raw_b"},
                "--out",
                {"output": "b_out"},
                inputs={
                    "raw_b": {
                        "datastore": "workspacefilestore",
                        "path": "inputs/b.txt",
                        "mode": "download",
                    }
                },
                outputs={"b_out": {}},
            ),
            generic(
                "combine",
                digest,
                counter,
                "--in",
                {"input": "a_out"},
                "--in",
                {"input": "b_out"},
                "--out",
                {"output": "combined"},
                inputs={"a_out": {"pipeline_data": "a_out"}, "b_out": {"pipeline_data": "b_out"}},
                outputs={"combined": {}},
            ),
            generic(
                "only_b",
                digest,
                counter,
                "--in",
                {"input": "b_out"},
                inputs={"b_out": {"pipeline_data": "b_out"}},
            ),
        ]
    }
    first = wait_for(submit(engine_ws, alice, graph), worker)
    assert first.status == Status.COMPLETED, summary(first)
    combined = steps_of(first)["combine"].outputs.get(name="combined")
    assert read_output(engine_ws, combined, "data.txt") == b"combine(read_a(A1),read_b(B1))"

    # Same size, new content: what a user does when they fix a value in a file.
    storage_for(filestore).write("inputs/a.txt", io.BytesIO(b"A2"), overwrite=True, length=2)
    second = wait_for(submit(engine_ws, alice, graph), worker)
    assert second.status == Status.COMPLETED, summary(second)
    steps = steps_of(second)
    ran = {name for name, s in steps.items() if s.reused_from is None}
    assert ran == {"read_a", "combine"}, {n: s.reuse_explanation for n, s in steps.items()}
    assert sorted(counted(counter)) == sorted(
        ["read_a", "read_b", "combine", "only_b", "read_a", "combine"]
    )
    assert "input 'raw_a'" in steps["read_a"].reuse_explanation
    assert str(first.uuid) in steps["read_a"].reuse_explanation
    assert "input 'a_out'" in steps["combine"].reuse_explanation
    assert "raw_b" not in steps["read_a"].reuse_explanation
    combined = steps["combine"].outputs.get(name="combined")
    assert read_output(engine_ws, combined, "data.txt") == b"combine(read_a(A2),read_b(B1))"


def test_a_changed_parameter_value_reruns_the_steps_that_use_it(
    worker, engine_ws, alice, snapshot_of, counter
):
    digest = snapshot_of({"step.py": STEP})
    graph = reuse_graph(digest, counter)
    first = wait_for(submit(engine_ws, alice, graph, pipeline_parameters={"factor": 2}), worker)
    assert first.status == Status.COMPLETED, summary(first)
    second = wait_for(submit(engine_ws, alice, graph, pipeline_parameters={"factor": 3}), worker)
    assert second.status == Status.COMPLETED, summary(second)
    steps = steps_of(second)
    assert steps["prepare"].reused_from is not None
    # `report` only runs after train (run_after carries no data) and uses no parameter.
    assert steps["report"].reused_from is not None
    train = steps["train"]
    assert train.reused_from is None
    assert train.attempt == 1
    assert "a parameter value" in train.reuse_explanation
    assert str(first.uuid) in train.reuse_explanation
    assert read_output(engine_ws, train.outputs.get(name="model"), "data.txt") == (
        b"train(prepare(),--factor=3)"
    )
    # The default (2) is the value of the first run: all reused again.
    third = wait_for(submit(engine_ws, alice, graph), worker)
    assert all(s.reused_from is not None for s in steps_of(third).values()), summary(third)
    assert sorted(counted(counter)) == ["prepare", "report", "train", "train"]


def test_a_graph_that_validates_never_fails_resolving_its_inputs(
    worker, engine_ws, alice, snapshot_of, counter
):
    """validate() accepts an input given by a parameter ({"parameter": name}); then the step must
    run with it, or submit must refuse it. Failing at run time with a KeyError is neither."""
    digest = snapshot_of({"step.py": STEP})
    graph = {
        "parameters": {"where": {"type": "string", "default": "inputs/"}},
        "steps": [
            generic(
                "reads",
                digest,
                counter,
                "--in",
                {"input": "data"},
                inputs={"data": {"parameter": "where"}},
            )
        ],
    }
    try:
        run = submit(engine_ws, alice, graph)
    except ValidationError as exc:
        assert any("data" in where for where in exc.message_dict), exc.message_dict
        return
    run = wait_for(run, worker)
    assert "Cannot resolve" not in StepRun.objects.get(run=run).error, summary(run)


# --- cancel ---------------------------------------------------------------------------------


def sleeper_graph(digest: str, marker: str, **extra: Any) -> dict[str, Any]:
    return {
        "steps": [
            {
                "name": "sleeper",
                "script": "sleeper.py",
                "snapshot": digest,
                "compute_target": "local",
                "arguments": [marker],
                "outputs": {"slept": {}},
                **extra,
            },
            {
                "name": "after",
                "script": "sleeper.py",
                "snapshot": digest,
                "compute_target": "local",
                "arguments": [marker + "-after"],
                "inputs": {"slept": {"pipeline_data": "slept"}},
            },
        ]
    }


def test_cancel_mid_step_stops_its_process_and_ends_the_run_canceled(
    worker, engine_ws, alice_actor, snapshot_of
):
    marker = f"mlr-cancel-{uuid.uuid4().hex}"
    digest = snapshot_of({"sleeper.py": SLEEPER})
    run = submit(engine_ws, alice_actor.user, sleeper_graph(digest, marker))
    wait_until(lambda: driver_has(run, "sleeper", f"started {marker}"), "first line", worker)
    assert processes_with(marker), "the step's process should be running with the marker"
    cancel_run(actor=alice_actor, run=run)
    run = wait_for(run, worker, timeout=60)
    steps = steps_of(run)
    assert run.status == Status.CANCELED, summary(run)
    assert steps["sleeper"].status == Status.CANCELED
    assert "Cancel" in steps["sleeper"].error
    assert steps["after"].status == Status.CANCELED
    assert steps["after"].attempt == 0
    wait_until(lambda: not processes_with(marker), "the step's process to be gone", worker, 30)
    text = log_text(steps["sleeper"])
    assert "SIGTERM" in text
    assert "woke up" not in text
    # The run's own cancel is recorded, and canceling again changes nothing.
    assert cancel_run(actor=alice_actor, run=run).status == Status.CANCELED


SIGTERM_IGNORER = """
import signal, sys, time
def ignore(signum, frame):
    print("got SIGTERM, ignoring it", flush=True)
signal.signal(signal.SIGTERM, ignore)
print("started", sys.argv[1], flush=True)
while True:
    time.sleep(1)
"""


def test_a_step_that_ignores_sigterm_is_killed_after_the_grace_period(
    worker, engine_ws, alice_actor, snapshot_of
):
    marker = f"mlr-stubborn-{uuid.uuid4().hex}"
    digest = snapshot_of({"sleeper.py": SIGTERM_IGNORER})
    run = submit(engine_ws, alice_actor.user, sleeper_graph(digest, marker))
    wait_until(lambda: driver_has(run, "sleeper", f"started {marker}"), "first line", worker)
    cancel_run(actor=alice_actor, run=run)
    run = wait_for(run, worker, timeout=90)
    assert run.status == Status.CANCELED, summary(run)
    sleeper = steps_of(run)["sleeper"]
    assert sleeper.status == Status.CANCELED
    text = log_text(sleeper)
    assert "got SIGTERM, ignoring it" in text
    assert "SIGKILL" in text
    wait_until(lambda: not processes_with(marker), "the step's process to be gone", worker, 30)


def test_cancel_step_skips_its_dependants_and_lets_other_branches_finish(
    worker, engine_ws, alice_actor, snapshot_of, counter
):
    marker = f"mlr-cancel-step-{uuid.uuid4().hex}"
    digest = snapshot_of({"sleeper.py": SLEEPER, "step.py": STEP})
    graph = sleeper_graph(digest, marker)
    graph["steps"].append(generic("other", digest, counter))
    run = submit(engine_ws, alice_actor.user, graph)
    wait_until(lambda: driver_has(run, "sleeper", f"started {marker}"), "first line", worker)
    cancel_step(actor=alice_actor, step=StepRun.objects.get(run=run, name="sleeper"))
    run = wait_for(run, worker, timeout=60)
    steps = steps_of(run)
    assert steps["sleeper"].status == Status.CANCELED, summary(run)
    assert steps["after"].status == Status.CANCELED
    assert steps["after"].error.startswith("Skipped")
    assert steps["other"].status == Status.COMPLETED
    assert run.status == Status.CANCELED
    wait_until(lambda: not processes_with(marker), "the step's process to be gone", worker, 30)


# --- failures -------------------------------------------------------------------------------


SELF_KILL = """
import os
print("about to kill myself", flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_step_killed_by_sigkill_fails_and_its_dependants_are_skipped(
    worker, engine_ws, alice, snapshot_of
):
    digest = snapshot_of({"sleeper.py": SELF_KILL})
    run = wait_for(submit(engine_ws, alice, sleeper_graph(digest, "x")), worker)
    steps = steps_of(run)
    assert run.status == Status.FAILED, summary(run)
    assert steps["sleeper"].status == Status.FAILED
    assert "signal 9" in steps["sleeper"].error
    assert steps["sleeper"].exit_code == -9
    assert steps["after"].status == Status.CANCELED
    assert steps["after"].error.startswith("Skipped")
    assert steps["after"].attempt == 0
    assert "sleeper" in run.error
    assert "about to kill myself" in log_text(steps["sleeper"])


FAIL = """
import sys
print("failing on purpose", flush=True)
sys.exit(3)
"""
# Waits for a file the test creates once `fail` has failed, so the branch is still busy then.
WAIT_FOR_GO = """
import os, sys, time
go, out = sys.argv[1], sys.argv[2]
deadline = time.time() + 180
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
with open(os.path.join(out, "data.txt"), "w") as fh:
    fh.write("go" if os.path.exists(go) else "gave up")
"""


def failing_graph(digest: str, go: Path, counter: Path) -> dict[str, Any]:
    return {
        "steps": [
            {
                "name": "fail",
                "script": "fail.py",
                "snapshot": digest,
                "compute_target": "local",
                "outputs": {"f_out": {}},
            },
            generic(
                "dependant",
                digest,
                counter,
                "--in",
                {"input": "f_out"},
                inputs={"f_out": {"pipeline_data": "f_out"}},
            ),
            {
                "name": "indep1",
                "script": "wait_for_go.py",
                "snapshot": digest,
                "compute_target": "local",
                "arguments": [str(go), {"output": "i_out"}],
                "outputs": {"i_out": {}},
            },
            generic(
                "indep2",
                digest,
                counter,
                "--in",
                {"input": "i_out"},
                inputs={"i_out": {"pipeline_data": "i_out"}},
            ),
        ]
    }


def test_a_failing_step_with_continue_on_step_failure_lets_independent_branches_complete(
    worker, engine_ws, alice, snapshot_of, tmp_path, counter
):
    digest = snapshot_of({"fail.py": FAIL, "wait_for_go.py": WAIT_FOR_GO, "step.py": STEP})
    go = tmp_path / "go"
    run = submit(
        engine_ws, alice, failing_graph(digest, go, counter), continue_on_step_failure=True
    )
    wait_until(lambda: status_of(run, "fail") in TERMINAL, "fail to end", worker)
    go.write_text("go")
    run = wait_for(run, worker)
    steps = steps_of(run)
    assert run.status == Status.FAILED, summary(run)
    assert steps["fail"].status == Status.FAILED
    assert steps["fail"].exit_code == 3
    assert "code 3" in steps["fail"].error
    assert steps["dependant"].status == Status.CANCELED
    assert steps["dependant"].error.startswith("Skipped")
    assert steps["indep1"].status == Status.COMPLETED
    assert steps["indep2"].status == Status.COMPLETED
    assert counted(counter) == ["indep2"]
    assert "fail" in run.error


def test_a_failing_step_without_continue_on_step_failure_stops_the_run(
    worker, engine_ws, alice, snapshot_of, tmp_path, counter
):
    """Azure's continue_on_step_failure=False: the first failure ends the pipeline. Steps not
    started never start, running ones are stopped, and the run ends Failed."""
    digest = snapshot_of({"fail.py": FAIL, "wait_for_go.py": WAIT_FOR_GO, "step.py": STEP})
    go = tmp_path / "go"
    run = submit(engine_ws, alice, failing_graph(digest, go, counter))
    wait_until(lambda: status_of(run, "fail") in TERMINAL, "fail to end", worker)
    try:
        wait_until(
            lambda: status_of(run, "indep1") in TERMINAL,
            "the running independent step to be stopped after 'fail' failed",
            worker,
            timeout=30,
        )
    finally:
        go.write_text("go")  # let the step end whatever happened
    run = wait_for(run, worker)
    steps = steps_of(run)
    assert run.status == Status.FAILED, summary(run)
    assert steps["fail"].status == Status.FAILED
    assert steps["dependant"].status == Status.CANCELED
    assert steps["dependant"].error.startswith("Skipped")
    assert steps["indep1"].status == Status.CANCELED, summary(run)
    assert steps["indep2"].status == Status.CANCELED, summary(run)
    assert steps["indep2"].attempt == 0
    assert counted(counter) == []


def test_a_step_past_its_timeout_is_stopped_and_fails(worker, engine_ws, alice, snapshot_of):
    marker = f"mlr-timeout-{uuid.uuid4().hex}"
    digest = snapshot_of({"sleeper.py": SLEEPER})
    run = wait_for(
        submit(engine_ws, alice, sleeper_graph(digest, marker, timeout_seconds=2)), worker
    )
    steps = steps_of(run)
    assert run.status == Status.FAILED, summary(run)
    assert steps["sleeper"].status == Status.FAILED
    assert "Timed out" in steps["sleeper"].error
    assert steps["after"].status == Status.CANCELED
    text = log_text(steps["sleeper"])
    assert f"started {marker}" in text
    assert "woke up" not in text
    wait_until(lambda: not processes_with(marker), "the step's process to be gone", worker, 30)


# --- a worker lost mid-step -----------------------------------------------------------------


ONCE_THEN_DONE = """
import os, sys, time
attempted, marker = sys.argv[1], sys.argv[2]
if os.path.exists(attempted):
    print("second attempt: done", flush=True)
    sys.exit(0)
open(attempted, "w").write("1")
print("first attempt: sleeping", marker, flush=True)
time.sleep(300)
"""


@pytest.fixture
def second_worker(data_root: Path, tmp_path: Path) -> Iterator[Worker]:
    """Another worker on the same data root, started by the test when it needs one."""
    replacement = Worker(data_root, tmp_path / "worker-2.log")
    yield replacement
    replacement.stop()


ABSENT = object()


@pytest.mark.parametrize(
    "max_retries", [ABSENT, None, 0], ids=["retried", "retries-null", "no-retries"]
)
def test_a_step_of_a_killed_worker_is_retried_elsewhere_or_fails(
    worker, second_worker, engine_ws, alice, snapshot_of, tmp_path, settings, max_retries
):
    settings.MILLRACE_HEARTBEAT_TIMEOUT = 6  # the workers run with the same value
    marker = f"mlr-lost-{uuid.uuid4().hex}"
    digest = snapshot_of({"once.py": ONCE_THEN_DONE})
    step: dict[str, Any] = {
        "name": "once",
        "script": "once.py",
        "snapshot": digest,
        "compute_target": "local",
        "arguments": [str(tmp_path / "attempted"), marker],
    }
    if max_retries is not ABSENT:
        # null is what a graph says when it leaves the default (validate accepts it).
        step["max_retries"] = max_retries
    run = submit(engine_ws, alice, {"steps": [step]})
    wait_until(lambda: driver_has(run, "once", "first attempt: sleeping"), "first attempt", worker)
    assert processes_with(marker)

    worker.kill()
    # The step's process dies with its worker (PDEATHSIG): nothing runs on unwatched.
    wait_until(lambda: not processes_with(marker), "the orphaned step to die", timeout=30)
    assert status_of(run, "once") in RUNNING_STATES

    second_worker.start()

    def reconciled() -> bool:
        reconcile()
        return status_of(run, "once") not in RUNNING_STATES

    wait_until(reconciled, "the reconciler to notice the lost worker", second_worker, 60, 0.5)
    run = wait_for(run, second_worker)
    once = steps_of(run)["once"]
    attempts = list(StepAttempt.objects.filter(step_run=once).order_by("number"))
    assert attempts[0].status == Status.FAILED
    assert "worker lost" in attempts[0].error
    if max_retries != 0:
        assert run.status == Status.COMPLETED, summary(run)
        assert once.status == Status.COMPLETED
        assert once.attempt == 2
        assert [a.status for a in attempts] == [Status.FAILED, Status.COMPLETED]
        assert attempts[0].worker != attempts[1].worker
        assert "second attempt: done" in log_text(once)
    else:
        assert run.status == Status.FAILED, summary(run)
        assert once.status == Status.FAILED
        assert "worker lost" in once.error
        assert len(attempts) == 1


def test_an_environment_that_cannot_be_built_is_retried_then_fails(
    worker, engine_ws, alice, snapshot_of
):
    """An infrastructure failure (here: pip cannot install a package) is retried max_retries
    times, each a new attempt, then the step fails saying why."""
    digest = snapshot_of({"never.py": "print('never runs')\n"})
    step = {
        "name": "unbuildable",
        "script": "never.py",
        "snapshot": digest,
        "compute_target": "local",
        "environment": {"pip_packages": ["/nonexistent/millrace-test-package"]},
        "max_retries": 1,
    }
    run = wait_for(submit(engine_ws, alice, {"steps": [step]}), worker, timeout=300)
    assert run.status == Status.FAILED, summary(run)
    unbuildable = steps_of(run)["unbuildable"]
    assert unbuildable.status == Status.FAILED
    assert "Infrastructure failure" in unbuildable.error
    assert unbuildable.attempt == 2
    attempts = StepAttempt.objects.filter(step_run=unbuildable).order_by("number")
    assert [(a.number, a.status) for a in attempts] == [(1, Status.FAILED), (2, Status.FAILED)]
    assert "never runs" not in log_text(unbuildable)
    assert "/nonexistent/millrace-test-package" in log_text(unbuildable, "build")


def make_wheel(folder: Path, extra_files: int) -> Path:
    """A pure-Python wheel (``import millrace_probe``) that pip installs offline; the extra
    files make installing it take a while, like a real package does."""
    name, version = "millrace_probe", "0.1"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: millrace-probe\nVersion: 0.1\n",
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: millrace-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    files.update({f"{name}/data/f{i}.txt": b"x\n" for i in range(extra_files)})

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{p},sha256={digest(c)},{len(c)}\n" for p, c in files.items())
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
        archive.writestr(f"{dist}/RECORD", record + f"{dist}/RECORD,,\n")
    return wheel


def test_a_step_whose_environment_builds_longer_than_the_heartbeat_timeout_is_not_lost(
    worker, engine_ws, alice, snapshot_of, tmp_path, settings
):
    """Building a venv (pip install) takes as long as it takes. The worker is alive all along,
    so the reconciler must not declare it lost, retry the step elsewhere and run it twice."""
    settings.MILLRACE_HEARTBEAT_TIMEOUT = 5  # the smallest value the setting accepts
    wheel = make_wheel(tmp_path, extra_files=40_000)
    digest = snapshot_of(
        {"probe.py": "import millrace_probe\nprint('probe', millrace_probe.VALUE)\n"}
    )
    step = {
        "name": "probe",
        "script": "probe.py",
        "snapshot": digest,
        "compute_target": "local",
        "environment": {"pip_packages": [str(wheel)]},
    }
    run = submit(engine_ws, alice, {"steps": [step]})

    def reconciled_until_done() -> bool:
        reconcile()
        run.refresh_from_db()
        return run.status in TERMINAL

    wait_until(reconciled_until_done, "the run to end", worker, 300, 0.5)
    probe = steps_of(run)["probe"]
    assert "Building the environment" in log_text(probe, "build")
    attempts = [(a.number, a.status, a.error) for a in StepAttempt.objects.filter(step_run=probe)]
    assert run.status == Status.COMPLETED, (summary(run), attempts)
    assert attempts == [(1, Status.COMPLETED, "")]
    assert log_text(probe).count("probe 42") == 1


def test_parallel_first_steps_on_a_fresh_node_all_run(worker, engine_ws, alice, snapshot_of):
    """The worker runs steps in threads; its per-node caches (the SDK copy for PYTHONPATH, the
    snapshot) are filled by whichever step comes first, and racing steps must not break."""
    digest = snapshot_of(
        {"uses_sdk.py": "import sys\nfrom pipelines.sdk import Run\nprint(sys.argv[1], Run)\n"}
    )
    graph = {
        "steps": [
            {
                "name": f"p{i}",
                "script": "uses_sdk.py",
                "snapshot": digest,
                "compute_target": "local",
                "arguments": [f"parallel-{i}"],
            }
            for i in range(4)
        ]
    }
    run = wait_for(submit(engine_ws, alice, graph), worker)
    assert run.status == Status.COMPLETED, summary(run)


def test_the_workers_sdk_copy_is_safe_to_make_from_several_threads(data_root):
    from runs.worker import sdk_dist

    for trial in range(10):
        shutil.rmtree(data_root / "cache", ignore_errors=True)
        results: list[Any] = []

        def make(into: list[Any]) -> None:
            try:
                into.append(sdk_dist())
            except Exception as exc:  # collected: the assertion below names it
                into.append(exc)

        threads = [threading.Thread(target=make, args=(results,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(isinstance(r, Path) for r in results), (trial, results)
        assert len(set(results)) == 1
        assert (results[0] / "pipelines" / "sdk" / "run.py").is_file()


# --- concurrency ----------------------------------------------------------------------------


def test_a_target_with_max_concurrency_one_runs_one_step_at_a_time(
    worker, engine_ws, alice, snapshot_of
):
    ComputeTarget.objects.create(
        workspace=engine_ws, name="single", kind="local", queue="local", max_concurrency=1
    )
    digest = snapshot_of({"nap.py": "import sys, time\nprint(sys.argv[1])\ntime.sleep(1)\n"})
    graph = {
        "steps": [
            {
                "name": f"nap{i}",
                "script": "nap.py",
                "snapshot": digest,
                "compute_target": "single",
                "arguments": [f"nap {i}"],
            }
            for i in range(3)
        ]
    }
    run = submit(engine_ws, alice, graph)
    busy = (*ACTIVE, Status.CANCEL_REQUESTED)
    timeline: list[dict[str, str]] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        timeline.append(dict(StepRun.objects.filter(run=run).values_list("name", "status")))
        run.refresh_from_db()
        if run.status in TERMINAL:
            break
        time.sleep(0.02)
    assert run.status == Status.COMPLETED, summary(run)
    for sample in timeline:
        running = [name for name, status in sample.items() if status in busy]
        assert len(running) <= 1, sample
    # Every step was seen running, one after the other.
    seen_running = {n for sample in timeline for n, s in sample.items() if s == Status.RUNNING}
    assert seen_running == {"nap0", "nap1", "nap2"}
    steps = list(StepRun.objects.filter(run=run).order_by("started_at"))
    for before, after in itertools.pairwise(steps):
        assert before.finished_at is not None and after.started_at is not None
        assert before.finished_at <= after.started_at, (before.name, after.name)


# --- logs -----------------------------------------------------------------------------------


MANY_LINES = """
import os, sys, time
n, go = int(sys.argv[1]), sys.argv[2]
batch = []
for i in range(1, n + 1):
    batch.append("line %d" % i)
    if len(batch) == 10000:
        sys.stdout.write("\\n".join(batch) + "\\n")
        batch = []
if batch:
    sys.stdout.write("\\n".join(batch) + "\\n")
sys.stdout.flush()
deadline = time.time() + 600
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
"""
LONG_LINE = """
import os, sys, time
go = sys.argv[1]
sys.stdout.write("0123456789" * 1000000 + "\\n")
sys.stdout.write("after the long line\\n")
sys.stdout.flush()
deadline = time.time() + 600
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
"""
N_LINES = 1_000_000


def driver_chunks(step: StepRun) -> Iterator[LogChunk]:
    return LogChunk.objects.filter(step_run=step, log="driver").order_by("first_seq").iterator()


def test_a_million_lines_and_a_10_mb_line_are_stored_whole_while_the_worker_stays_responsive(
    worker, engine_ws, alice, snapshot_of, tmp_path
):
    go = tmp_path / "go"
    digest = snapshot_of({"many.py": MANY_LINES, "long.py": LONG_LINE})
    big = submit(
        engine_ws,
        alice,
        {
            "steps": [
                {
                    "name": "many",
                    "script": "many.py",
                    "snapshot": digest,
                    "compute_target": "local",
                    "arguments": [N_LINES, str(go)],
                },
                {
                    "name": "long",
                    "script": "long.py",
                    "snapshot": digest,
                    "compute_target": "local",
                    "arguments": [str(go)],
                },
            ]
        },
        experiment_name="logs",
    )
    try:
        wait_until(
            lambda: StepRun.objects.filter(run=big, status=Status.RUNNING).count() == 2,
            "both log steps running",
            worker,
        )
        # Meanwhile another run gets through the same worker.
        small_digest = snapshot_of({"small.py": "print('small and quick')\n"})
        small = submit(
            engine_ws,
            alice,
            {
                "steps": [
                    {
                        "name": "small",
                        "script": "small.py",
                        "snapshot": small_digest,
                        "compute_target": "local",
                    }
                ]
            },
            experiment_name="small",
        )
        small = wait_for(small, worker)
        assert small.status == Status.COMPLETED, summary(small)
        assert big.status not in TERMINAL
        # Both steps still running (waiting for `go`), their output already stored.
        wait_until(
            lambda: driver_has(big, "long", "after the long line"), "the long line", worker, 300
        )
        many = StepRun.objects.get(run=big, name="many")
        wait_until(
            lambda: log_text_tail(many).endswith(f"line {N_LINES}\n"),
            "the last of a million lines to be stored",
            worker,
            300,
        )
        assert status_of(big, "many") == Status.RUNNING
    finally:
        go.write_text("go")
    big = wait_for(big, worker, timeout=300)
    assert big.status == Status.COMPLETED, summary(big)

    many = StepRun.objects.get(run=big, name="many")
    expected = 1
    first_seq: int | None = None
    previous_seq: int | None = None
    for chunk in driver_chunks(many):
        for seq, stream, text in chunk.lines:
            if first_seq is None:
                first_seq = seq
            assert previous_seq is None or seq == previous_seq + 1, (previous_seq, seq)
            previous_seq = seq
            assert (stream, text) == ("stdout", f"line {expected}"), (seq, stream, text)
            expected += 1
    assert expected - 1 == N_LINES
    # Every log of the step (prep, build, driver, post) shares one contiguous numbering.
    all_seqs = sorted(
        seq for chunk in LogChunk.objects.filter(step_run=many) for seq, _, _ in chunk.lines
    )
    assert all_seqs == list(range(1, many.log_seq + 1))
    # The Azure-named log file holds the same lines (written just after the step ends).
    log_file = f"azureml/{many.uuid}/azureml-logs/70_driver_log.txt"
    wait_until(lambda: blob_exists(engine_ws, log_file), "the driver log file", worker, 60)
    stored = b"".join(blob_storage(engine_ws).open_read(log_file))
    assert stored == "".join(f"line {i}\n" for i in range(1, N_LINES + 1)).encode()

    long = StepRun.objects.get(run=big, name="long")
    texts = [text for chunk in driver_chunks(long) for _, _, text in chunk.lines]
    assert texts == ["0123456789" * 1_000_000, "after the long line"]
    assert len(texts[0]) == 10_000_000


def log_text_tail(step: StepRun) -> str:
    """The text of the step's last stored driver chunk."""
    chunk = LogChunk.objects.filter(step_run=step, log="driver").order_by("-first_seq").first()
    return "".join(text + "\n" for _, _, text in chunk.lines) if chunk else ""


# --- metrics --------------------------------------------------------------------------------


METRICS = """
import hashlib, os, struct, sys, tempfile, zlib
from pipelines.sdk import Run

def png(width, height):
    raw = b"".join(b"\\x00" + bytes([255, 0, 0] * width) for _ in range(height))
    def chunk(tag, data):
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

run = Run.get_context(allow_offline=False)
run.log("accuracy", 0.5)
run.log("accuracy", 0.75)
run.log("model", "resnet")
run.log_list("losses", [3, 2.5, 1])
run.log_row("epochs", epoch=1, loss=0.5)
run.log_row("epochs", epoch=2, loss=0.25)
run.log_table("confusion", {"a": [1, 2], "b": [3, 4]})
scratch = tempfile.mkdtemp()
image = png(4, 3)
with open(os.path.join(scratch, "plot.png"), "wb") as fh:
    fh.write(image)
run.log_image("plot", path=os.path.join(scratch, "plot.png"))
with open(os.path.join(scratch, "report.txt"), "w") as fh:
    fh.write("a report written by the step\\n")
run.upload_file("outputs/report.txt", os.path.join(scratch, "report.txt"))
run.tag("stage", "train")
print("png", hashlib.sha256(image).hexdigest(), len(image))
print("ids", run.id, run.parent.id, run.name, run.experiment_name)
"""


def test_metrics_images_files_and_tags_logged_in_a_step_are_recorded(
    worker, engine_ws, alice, snapshot_of
):
    digest = snapshot_of({"metrics.py": METRICS})
    run = submit(
        engine_ws,
        alice,
        {
            "steps": [
                {
                    "name": "measure",
                    "script": "metrics.py",
                    "snapshot": digest,
                    "compute_target": "local",
                }
            ]
        },
        experiment_name="metrics",
    )
    run = wait_for(run, worker)
    assert run.status == Status.COMPLETED, summary(run)
    step = StepRun.objects.get(run=run, name="measure")
    recorded = [
        (m.name, m.kind, m.value)
        for m in Metric.objects.filter(step_run=step).order_by("seq", "id")
        if m.kind != "file"
    ]
    assert recorded == [
        ("accuracy", "scalar", 0.5),
        ("accuracy", "scalar", 0.75),
        ("model", "scalar", "resnet"),
        ("losses", "list", [3, 2.5, 1]),
        ("epochs", "row", {"epoch": 1, "loss": 0.5}),
        ("epochs", "row", {"epoch": 2, "loss": 0.25}),
        ("confusion", "table", {"a": [1, 2], "b": [3, 4]}),
        ("plot", "image", {"file": "images/plot.png"}),
        ("stage", "tag", "train"),
    ]
    text = log_text(step)
    assert f"ids {step.uuid} {run.uuid} measure metrics" in text

    report = Output.objects.get(step_run=step, name="outputs/report.txt")
    assert report.kind == "file"
    assert read_output(engine_ws, report) == b"a report written by the step\n"

    image = Output.objects.get(step_run=step, name="images/plot.png")
    assert image.kind == "file"
    content = read_output(engine_ws, image)
    assert content.startswith(b"\x89PNG\r\n\x1a\n")
    [line] = [ln for ln in text.splitlines() if ln.startswith("png ")]
    _, sha, size = line.split()
    assert (hashlib.sha256(content).hexdigest(), len(content)) == (sha, int(size))


def test_a_tag_without_a_value_and_a_none_metric_are_recorded(
    worker, engine_ws, alice, snapshot_of
):
    """azureml's ``Run.tag(key)`` takes no value; the SDK sends JSON null for it."""
    script = (
        "from pipelines.sdk import Run\n"
        "run = Run.get_context()\n"
        "run.tag('reviewed')\n"
        "run.log('nothing', None)\n"
        "run.log('after', 1)\n"
    )
    digest = snapshot_of({"tags.py": script})
    run = submit(
        engine_ws,
        alice,
        {
            "steps": [
                {"name": "tags", "script": "tags.py", "snapshot": digest, "compute_target": "local"}
            ]
        },
    )
    run = wait_for(run, worker)
    assert run.status == Status.COMPLETED, summary(run)
    step = StepRun.objects.get(run=run, name="tags")
    recorded = [(m.name, m.kind, m.value) for m in Metric.objects.filter(step_run=step)]
    assert recorded == [
        ("reviewed", "tag", None),
        ("nothing", "scalar", None),
        ("after", "scalar", 1),
    ]


# --- the step's environment -----------------------------------------------------------------


SERVER_SECRETS = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "MILLRACE_TEST_AZURITE_CONNECTION_STRING",
)


def test_a_steps_environment_holds_no_server_secrets(worker, engine_ws, alice, snapshot_of):
    present = {name: os.environ.get(name, "") for name in SERVER_SECRETS}
    assert all(present.values()), f"the test process should have these set: {present}"
    digest = snapshot_of(
        {"env.py": "import json, os\nprint('ENV ' + json.dumps(dict(os.environ)))\n"}
    )
    run = submit(
        engine_ws,
        alice,
        {
            "steps": [
                {
                    "name": "env",
                    "script": "env.py",
                    "snapshot": digest,
                    "compute_target": "local",
                }
            ]
        },
    )
    run = wait_for(run, worker)
    assert run.status == Status.COMPLETED, summary(run)
    step = StepRun.objects.get(run=run, name="env")
    text = log_text(step)
    [line] = [ln for ln in text.splitlines() if ln.startswith("ENV ")]
    environment = json.loads(line[len("ENV ") :])
    assert environment["MILLRACE_STEP_RUN_ID"] == str(step.uuid)
    for name, value in present.items():
        assert name not in environment, name
        assert value not in text, f"the value of {name} reached the step"
    assert worker.env()["DATABASE_URL"] not in text
    db = settings.DATABASES["default"]
    if db.get("PASSWORD"):
        assert all(db["PASSWORD"] not in value for value in environment.values())
    assert settings.SECRET_KEY not in text
