"""Engine tests run real Celery workers (subprocesses) against the test database, with the
Redis, Azurite and Docker engine that bin/test starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from pipelines.snapshots import snapshot_from_directory
from portal import services
from portal.models import ComputeTarget, Workspace
from runs.models import TERMINAL, PipelineRun

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """A `celery worker` process serving the engine's queues."""

    def __init__(
        self,
        data_root: Path,
        log_path: Path,
        queues: str = "celery,local,docker",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.data_root = data_root
        self.log_path = log_path
        self.queues = queues
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        db = settings.DATABASES["default"]
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": (
                    f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
                ),
                "MILLRACE_DATA_ROOT": str(self.data_root),
                "MILLRACE_HEARTBEAT_TIMEOUT": "6",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "-Q",
                self.queues,
                "-P",
                "threads",
                "-c",
                "6",
                "-l",
                "info",
                "-n",
                f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if b"ready." in self.log_path.read_bytes():
                return
            if self.process.poll() is not None:
                raise RuntimeError("The worker died:\n" + self.tail())
            time.sleep(0.2)
        raise RuntimeError("The worker did not get ready:\n" + self.tail())

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signum)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture
def data_root(tmp_path: Path, settings: Any) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    settings.MILLRACE_DATA_ROOT = root
    return root


@pytest.fixture
def worker(data_root: Path, tmp_path: Path, transactional_db: Any) -> Iterator[Worker]:
    w = Worker(data_root, tmp_path / "worker.log")
    w.start()
    yield w
    w.stop()


@pytest.fixture
def engine_ws(transactional_db: Any, alice: Any) -> Workspace:
    actor = services.Actor(user=alice)
    workspace = services.create_workspace(actor=actor, name="Engine", slug="engine")
    ComputeTarget.objects.create(
        workspace=workspace, name="docker", kind="docker", queue="docker", max_concurrency=4
    )
    return workspace


@pytest.fixture
def snapshot_of(engine_ws: Workspace) -> Callable[[dict[str, str]], str]:
    """snapshot_of({"train.py": "print(1)"}) → the digest of a stored snapshot."""

    counter = {"n": 0}

    def make(files: dict[str, str], base: Path | None = None) -> str:
        counter["n"] += 1
        folder = Path(base or settings.MILLRACE_DATA_ROOT) / f"src-{counter['n']}"
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        snapshot, _ = snapshot_from_directory(engine_ws, folder)
        return snapshot.digest

    return make


def wait_for(run: PipelineRun, worker: Worker | None = None, timeout: float = 120) -> PipelineRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in TERMINAL:
            return run
        time.sleep(0.1)
    steps = "\n".join(f"  {s.name}: {s.status} {s.error}" for s in run.steps.all())
    raise AssertionError(
        f"Run still {run.status} after {timeout} s:\n{steps}\n" + (worker.tail() if worker else "")
    )
