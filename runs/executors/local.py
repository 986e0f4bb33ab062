"""Kind ``local``: the step runs as a process on the worker's machine, in its own process
group, in a virtualenv built for its environment (the worker's own Python when the environment
has no pip packages, so the default needs no network)."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Queue
from typing import IO

from runs.executors.base import (
    BuildLog,
    EnvironmentSpec,
    Execution,
    Executor,
    ExecutorError,
    Launch,
    Stream,
    substitute,
    substitute_env,
)

READ_SIZE = 64 * 1024
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # The step must not outlive a worker that was killed (its run is retried elsewhere).
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class LocalExecution(Execution):
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._queue: Queue[tuple[Stream, bytes] | None] = Queue(maxsize=256)
        self._readers = [
            threading.Thread(target=self._pump, args=("stdout", process.stdout), daemon=True),
            threading.Thread(target=self._pump, args=("stderr", process.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        # One blocking wait in a thread: the worker's wait(0.1) polls cost nothing and the end
        # is noticed at once (Popen.wait(timeout) sleeps in growing steps).
        self._done = threading.Event()
        threading.Thread(target=self._wait_for_exit, daemon=True).start()

    def _wait_for_exit(self) -> None:
        self.process.wait()
        # Whatever the script left running in its group (it would hold the output pipes open)
        # ends with it.
        self._signal(signal.SIGKILL)
        self._done.set()

    def _pump(self, stream: Stream, pipe: IO[bytes] | None) -> None:
        assert pipe is not None
        try:
            while chunk := pipe.read1(READ_SIZE):  # type: ignore[attr-defined]
                self._queue.put((stream, chunk))
        finally:
            self._queue.put(None)

    def output(self) -> Iterator[tuple[Stream, bytes]]:
        open_streams = len(self._readers)
        while open_streams:
            item = self._queue.get()
            if item is None:
                open_streams -= 1
                continue
            yield item

    def wait(self, timeout: float | None = None) -> int | None:
        if self._done.wait(timeout):
            return self.process.returncode
        return None

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def cleanup(self) -> None:
        # Whatever the step started in its group goes with it.
        self._signal(signal.SIGKILL)
        self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


class LocalExecutor(Executor):
    kind = "local"

    def __init__(self, venv_root: Path) -> None:
        self.venv_root = Path(venv_root)

    def prepare(self, environment: EnvironmentSpec, log: BuildLog) -> str:
        if not environment.pip_packages:
            log(f"Using the worker's Python ({sys.executable}); no packages to install.")
            return sys.executable
        venv = self.venv_root / environment.digest
        python = venv / "bin" / "python"
        if (venv / ".ready").exists():
            log(f"Reusing the environment {environment.digest} ({venv}).")
            return str(python)
        self.venv_root.mkdir(parents=True, exist_ok=True)
        with (self.venv_root / f"{environment.digest}.lock").open("w") as lock:
            # One build per environment on this machine; a second worker waits and reuses it.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (venv / ".ready").exists():
                log(f"Reusing the environment {environment.digest} ({venv}).")
                return str(python)
            return self._build(environment, venv, log)

    def _build(self, environment: EnvironmentSpec, venv: Path, log: BuildLog) -> str:
        python = venv / "bin" / "python"
        log(f"Building the environment {environment.digest} in {venv}.")
        building = venv.with_name(venv.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        commands = [
            [sys.executable, "-m", "venv", "--system-site-packages", str(building)],
            [
                str(building / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                *environment.pip_packages,
            ],
        ]
        for command in commands:
            log("$ " + " ".join(command))
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            for line in (result.stdout + result.stderr).splitlines():
                log(line)
            if result.returncode != 0:
                shutil.rmtree(building, ignore_errors=True)
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
                raise ExecutorError(
                    f"Building the environment failed (exit {result.returncode}):\n{tail}"
                )
        (building / ".ready").write_text("ok")
        # If another worker finished the same environment first, use theirs.
        with contextlib.suppress(OSError):
            building.rename(venv)
        return str(python)

    def start(self, launch: Launch, handle: str) -> Execution:
        paths = {m.name: str(m.host_path) for m in launch.mounts}
        argv = substitute(launch.argv, paths)
        if argv and argv[0] == "python":
            argv[0] = handle
        workdir = paths.get(launch.workdir_mount)
        if workdir is None:
            raise ExecutorError(f"The working folder mount '{launch.workdir_mount}' is missing.")
        # With setpriv, the kill-on-worker-death flag is set after exec, so Popen can use
        # vfork: a preexec_fn would force a full fork of the (large) worker.
        setpriv = shutil.which("setpriv")
        if setpriv:
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        try:
            process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=substitute_env(launch.env, paths),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=None if setpriv else _die_with_parent,
            )
        except OSError as exc:
            raise ExecutorError(f"Cannot start the step: {exc}") from None
        return LocalExecution(process)
