"""The live stack for SDK tests: a real **daphne** web server (HTTP + websockets) and a real
Celery worker, as subprocesses against pytest-django's test database (PostgreSQL under
``bin/test``), the Redis that ``bin/test`` starts, and one data root they share.

Use it from a module marked ``pytestmark = [pytest.mark.live,
pytest.mark.django_db(transaction=True)]``::

    def test_it(stack, team):
        ws = team.sdk("alice")                    # pipelines.sdk.Workspace over real sockets
        ...                                        # stack.url, stack.data_root, stack.worker

The processes are started once per test module (about 5 s) and killed at its end whatever
happened; the database is emptied after each test as usual (transactional tests), so each test
makes its own users, workspace and tokens (``team``). A failing readiness check raises with the
end of both logs; ``stack.report()`` gives the same for a test's own failure messages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from pipelines.sdk import Workspace
from portal import services
from portal.models import ComputeTarget, Role
from portal.models import Workspace as WorkspaceModel
from tests.engine.conftest import Worker
from tests.live import free_port

ROOT = Path(__file__).resolve().parents[2]
# Generous: a slow machine must never fail a test here; no test asserts a duration.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


@dataclass
class Stack:
    """A running web server and worker sharing ``data_root``."""

    data_root: Path
    port: int
    web_log: Path
    worker: Worker
    web: subprocess.Popen[bytes] | None = None
    _logs: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/``: what the SDK takes as its server URL."""
        return f"http://127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        """The environment both processes run with (the worker's, plus the web settings)."""
        env = self.worker.env()
        env.update(
            DEBUG="false",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            CSRF_TRUSTED_ORIGINS=f"http://127.0.0.1:{self.port}",
            MILLRACE_STATIC_ROOT=os.environ.get(
                "MILLRACE_STATIC_ROOT", str(self.data_root.parent / "static")
            ),
        )
        return env

    def web_log_tail(self, lines: int = 60) -> str:
        """The end of daphne's log."""
        try:
            return "\n".join(self.web_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def report(self) -> str:
        """The end of both logs, for a failure message."""
        return (
            f"--- web log (tail) ---\n{self.web_log_tail()}\n"
            f"--- worker log (tail) ---\n{self.worker.tail()}"
        )

    def alive(self) -> bool:
        """Both processes still run."""
        worker = self.worker.process
        return (
            self.web is not None
            and self.web.poll() is None
            and worker is not None
            and worker.poll() is None
        )

    # ----- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start daphne, then the worker, and wait until both answer."""
        log = self.web_log.open("ab")
        self._logs.append(log)
        daphne = Path(sys.executable).parent / "daphne"
        self.web = subprocess.Popen(
            [str(daphne), "-b", "127.0.0.1", "-p", str(self.port), "portal.asgi:application"],
            cwd=ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: cleanup kills all of it
        )
        self._wait_for_web()
        self.worker.start()

    def _wait_for_web(self) -> None:
        assert self.web is not None
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if self.web.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.web.returncode}:\n{self.report()}")
            try:
                # Any answer from Django (401 without a token) means the app is loaded.
                answer = requests.get(f"{self.url}api/v1/me/", timeout=5)
                if answer.status_code < 500:
                    return
                last = f"HTTP {answer.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise RuntimeError(f"daphne did not answer in {START_TIMEOUT}s ({last}):\n{self.report()}")

    def stop(self) -> None:
        """Stop both, whatever state they are in: TERM, then KILL after a grace period."""
        try:
            self.worker.stop()
        finally:
            if self.web is not None and self.web.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.web.pid, signal.SIGTERM)
                try:
                    self.web.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.web.pid, signal.SIGKILL)
                    self.web.wait(timeout=STOP_TIMEOUT)
            for log in self._logs:
                log.close()


@pytest.fixture(scope="module")
def _stack_processes(
    django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One web server and worker per test module, on the test database (set up by
    ``django_db_setup`` before, dropped after this ends)."""
    base = tmp_path_factory.mktemp("sdk-stack")
    data_root = base / "data"
    data_root.mkdir()
    worker = Worker(data_root, base / "worker.log", queues="celery,local,docker")
    stack = Stack(data_root=data_root, port=free_port(), web_log=base / "web.log", worker=worker)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(_stack_processes: Stack, transactional_db: Any, settings: Any) -> Stack:
    """The running stack; this test's own code writes to the same data root (snapshots made
    server-side, datastore files)."""
    if not _stack_processes.alive():
        pytest.fail(f"The live stack is down:\n{_stack_processes.report()}")
    settings.MILLRACE_DATA_ROOT = _stack_processes.data_root
    return _stack_processes


@dataclass
class Team:
    """The cast in workspace ``forecast`` (alice owner, bob contributor, carol reader) plus
    charlie, an outsider who owns ``charlie-lab``; each with an API token."""

    stack: Stack
    ws: WorkspaceModel
    other: WorkspaceModel
    tokens: dict[str, str]
    _clients: list[Workspace] = field(default_factory=list)

    def sdk(self, who: str = "alice", workspace: str | None = None) -> Workspace:
        """``pipelines.sdk.Workspace.get(...)`` as ``who`` (charlie: his own workspace)."""
        name = workspace or ("charlie-lab" if who == "charlie" else "forecast")
        found = Workspace.get(name, url=self.stack.url, token=self.tokens[who])
        self._clients.append(found)
        return found

    def close(self) -> None:
        for workspace in self._clients:
            workspace._client.close()


@pytest.fixture
def team(
    stack: Stack,
    ws: WorkspaceModel,
    other: WorkspaceModel,
    alice: Any,
    bob: Any,
    carol: Any,
    charlie: Any,
    make_token: Callable[..., str],
) -> Iterator[Team]:
    """Users, the ``forecast`` workspace (with a ``docker`` compute target beside ``local``)
    and a token each, made through ``portal.services``."""
    ComputeTarget.objects.get_or_create(
        workspace=ws,
        name="docker",
        defaults={"kind": "docker", "queue": "docker", "max_concurrency": 4},
    )
    tokens = {
        "alice": make_token(alice, ws),
        "bob": make_token(bob, ws),
        "carol": make_token(carol, ws),
        "charlie": make_token(charlie, other),
    }
    found = Team(stack=stack, ws=ws, other=other, tokens=tokens)
    yield found
    found.close()


__all__ = ["Role", "Stack", "Team", "services"]
