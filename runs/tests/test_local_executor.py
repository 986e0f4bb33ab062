"""The local executor: steps as process groups on the worker's machine, real processes."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runs.executors.base import EnvironmentSpec, Execution, ExecutorError, Launch, Mount
from runs.executors.local import LocalExecutor
from runs.tests.executor_support import (
    BOTH_STREAMS,
    Collected,
    assert_both_streams_whole,
    run_to_end,
)


@pytest.fixture
def executor(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(venv_root=tmp_path / "venvs")


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    folder = tmp_path / "snapshot"
    folder.mkdir()
    return folder


def launch_script(snapshot: Path, code: str, **overrides: Any) -> Launch:
    (snapshot / "step.py").write_text(code)
    values: dict[str, Any] = {
        "step_run_id": f"test-{uuid.uuid4().hex}",
        "argv": ["python", "-u", "{mount:snapshot}/step.py"],
        "workdir_mount": "snapshot",
        "mounts": [Mount(snapshot, "snapshot"), *overrides.pop("mounts", [])],
        "env": {"LANG": "C.UTF-8"},
    }
    values.update(overrides)
    return Launch(**values)


def start(executor: LocalExecutor, launch: Launch) -> Execution:
    return executor.start(launch, executor.prepare(launch.environment, lambda _: None))


def run(executor: LocalExecutor, launch: Launch, timeout: float = 60) -> tuple[int, str, str]:
    return run_to_end(start(executor, launch), timeout)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def gone_soon(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Grandchildren a test starts: killed afterwards whatever happened."""
    started: list[int] = []
    yield started
    for pid in started:
        if alive(pid):
            os.kill(pid, 9)


def test_it_captures_every_line_of_both_streams_in_order(
    executor: LocalExecutor, snapshot: Path
) -> None:
    assert_both_streams_whole(run(executor, launch_script(snapshot, BOTH_STREAMS)))


@pytest.mark.parametrize("status", [0, 3])
def test_it_reports_the_exit_code(executor: LocalExecutor, snapshot: Path, status: int) -> None:
    exit_code, _, _ = run(executor, launch_script(snapshot, f"raise SystemExit({status})"))
    assert exit_code == status


def test_the_step_starts_in_its_workdir_with_mount_paths(
    executor: LocalExecutor, snapshot: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    code = "import os, sys\nprint(os.getcwd())\nprint(sys.argv[1])\n"
    launch = launch_script(
        snapshot,
        code,
        argv=["python", "{mount:snapshot}/step.py", "--data={mount:inputs/raw}"],
        mounts=[Mount(data, "inputs/raw")],
    )
    exit_code, out, _ = run(executor, launch)
    assert exit_code == 0
    assert out.splitlines() == [str(snapshot), f"--data={data}"]


def test_start_refuses_an_unknown_mount_and_a_missing_workdir(
    executor: LocalExecutor, snapshot: Path
) -> None:
    with pytest.raises(ExecutorError, match="unknown mount 'nope'"):
        executor.start(launch_script(snapshot, "", argv=["python", "{mount:nope}"]), "python3")
    with pytest.raises(ExecutorError, match="working folder mount 'elsewhere'"):
        executor.start(launch_script(snapshot, "", workdir_mount="elsewhere"), "python3")


SPAWNS_A_GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(120)"],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
print(child.pid, flush=True)
print("ready", flush=True)
time.sleep(120)
"""


def test_terminate_stops_the_step_and_its_grandchildren(
    executor: LocalExecutor, snapshot: Path, pids: list[int]
) -> None:
    execution = start(executor, launch_script(snapshot, SPAWNS_A_GRANDCHILD))
    try:
        collected = Collected(execution)
        collected.wait_for("ready")
        grandchild = int(collected.text("stdout").split()[0])
        pids.append(grandchild)
        assert alive(grandchild)
        assert execution.wait(0.2) is None
        started = time.monotonic()
        execution.terminate()
        assert execution.wait(5) == -15
        assert time.monotonic() - started < 5
        assert gone_soon(grandchild)
        collected.join()
    finally:
        execution.cleanup()


def test_kill_stops_a_step_that_ignores_sigterm(executor: LocalExecutor, snapshot: Path) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('ignoring TERM', flush=True))\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    execution = start(executor, launch_script(snapshot, code))
    try:
        collected = Collected(execution)
        collected.wait_for("ready")
        execution.terminate()
        collected.wait_for("ignoring TERM")
        assert execution.wait(1.0) is None
        execution.kill()
        assert execution.wait(5) == -9
        collected.join()
        # Signalling a step that has ended is harmless.
        execution.terminate()
        execution.kill()
    finally:
        execution.cleanup()


def test_what_the_step_left_running_ends_with_it(
    executor: LocalExecutor, snapshot: Path, pids: list[int]
) -> None:
    # The step itself exits at once; the child it started would run on (and hold the output
    # pipes open): it is killed when the step ends, and cleanup stays idempotent.
    code = SPAWNS_A_GRANDCHILD.replace('print("ready", flush=True)\ntime.sleep(120)\n', "")
    assert code.count("sleep") == 1
    execution = start(executor, launch_script(snapshot, code))
    collected = Collected(execution)
    assert execution.wait(20) == 0
    collected.join()
    grandchild = int(collected.text("stdout").split()[0])
    pids.append(grandchild)
    assert gone_soon(grandchild)
    execution.cleanup()
    execution.cleanup()  # idempotent


def test_the_step_sees_exactly_its_environment(
    executor: LocalExecutor, snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "worker-secret-that-must-not-leak-0123456789")
    monkeypatch.setenv("DATABASE_URL", "postgres://worker:secret@db/millrace")
    env = {"LANG": "C.UTF-8", "AZUREML_RUN_ID": "r-1", "EMPTY": ""}
    code = "import json, os\nprint(json.dumps(dict(os.environ)))\n"
    exit_code, out, _ = run(executor, launch_script(snapshot, code, env=env))
    assert exit_code == 0
    assert json.loads(out) == env


def test_prepare_without_packages_uses_the_workers_python(executor: LocalExecutor) -> None:
    lines: list[str] = []
    assert executor.prepare(EnvironmentSpec(), lines.append) == sys.executable
    assert not executor.venv_root.exists()  # nothing built


def test_prepare_builds_a_venv_once_per_digest(executor: LocalExecutor, snapshot: Path) -> None:
    environment = EnvironmentSpec(pip_packages=("six==1.17.0",))
    first: list[str] = []
    second: list[str] = []
    python = executor.prepare(environment, first.append)
    venv = executor.venv_root / environment.digest
    assert python == str(venv / "bin" / "python")
    assert any(line.startswith("$ ") for line in first)
    assert executor.prepare(environment, second.append) == python
    assert not any(line.startswith("$ ") for line in second), second
    code = "import six, sys\nprint(six.__version__, sys.prefix)\n"
    launch = launch_script(snapshot, code, environment=environment)
    assert run(executor, launch)[:2] == (0, f"1.17.0 {venv}\n")


def test_a_bad_package_fails_prepare_with_the_pip_error(executor: LocalExecutor) -> None:
    environment = EnvironmentSpec(pip_packages=("millrace-no-such-package-zz==0.0.1",))
    lines: list[str] = []
    with pytest.raises(ExecutorError, match="Building the environment failed"):
        executor.prepare(environment, lines.append)
    assert any("No matching distribution" in line for line in lines), lines
    assert not (executor.venv_root / environment.digest).exists()
