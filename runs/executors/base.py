"""The executor interface: how a step's process is started, watched and stopped.

Executors are model-free: the worker (runs/worker.py) resolves everything about a step into a
``Launch`` and hands it to the executor of the step's compute target kind. Paths in a Launch are
host paths; ``Launch.mounts`` says which host folders the step may see and how, and the executor
returns the path the step sees for each (the same path for ``local``, a path inside the
container for ``docker``).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Stream = Literal["stdout", "stderr"]
# build-log callback: one line of an environment/image build
BuildLog = Callable[[str], None]


class ExecutorError(Exception):
    """Infrastructure failed (image build, engine unreachable): the step may be retried."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """What a step runs with: a base image (docker only) plus pip packages."""

    pip_packages: tuple[str, ...] = ()
    base_image: str | None = None  # None: the platform's default image / the worker's Python
    name: str = "default"

    @property
    def digest(self) -> str:
        """Content hash: the cache key of the built venv or image."""
        payload = json.dumps(
            {"pip": sorted(self.pip_packages), "base": self.base_image}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Mount:
    """A host folder the step sees. ``name`` is a stable label (e.g. 'inputs/raw')."""

    host_path: Path
    name: str
    read_only: bool = True


@dataclass
class Launch:
    """Everything needed to start one attempt of one step."""

    step_run_id: str
    # argv with {mount:NAME} placeholders that the executor replaces by the in-step path,
    # e.g. ["python", "-u", "{mount:snapshot}/train.py", "--data", "{mount:inputs/raw}"]
    argv: list[str]
    workdir_mount: str  # the mount the step starts in (its snapshot)
    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    environment: EnvironmentSpec = field(default_factory=EnvironmentSpec)
    cpu: float | None = None
    memory_mb: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


class Execution(ABC):
    """A started step: its output, its end, and how to stop it."""

    @abstractmethod
    def output(self) -> Iterator[tuple[Stream, bytes]]:
        """Raw output chunks as they come (not split into lines), until the step ends."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if still running after ``timeout`` seconds."""

    @abstractmethod
    def terminate(self) -> None:
        """Ask the step to stop (SIGTERM)."""

    @abstractmethod
    def kill(self) -> None:
        """Stop it now (SIGKILL)."""

    @abstractmethod
    def cleanup(self) -> None:
        """Remove what the step left (container, process group). Always called, idempotent."""


class Executor(ABC):
    kind: str

    @abstractmethod
    def prepare(self, environment: EnvironmentSpec, log: BuildLog) -> str:
        """Build (or find cached) what ``environment`` needs; return a handle for ``start``
        (a Python interpreter path, an image tag). Raises ExecutorError on build failure."""

    @abstractmethod
    def start(self, launch: Launch, handle: str) -> Execution:
        """Start the step. ``launch.argv[0] == "python"`` means the environment's Python."""

    def cleanup_orphans(self) -> int:
        """Remove what steps of a crashed worker left behind; returns how many."""
        return 0


def substitute(argv: list[str], paths: dict[str, str]) -> list[str]:
    """Replace ``{mount:NAME}`` placeholders with in-step paths (unknown names raise)."""
    out = []
    for arg in argv:
        result = arg
        while "{mount:" in result:
            start = result.index("{mount:")
            end = result.index("}", start)
            name = result[start + len("{mount:") : end]
            if name not in paths:
                raise ExecutorError(f"Argument refers to an unknown mount '{name}'.")
            result = result[:start] + paths[name] + result[end + 1 :]
        out.append(result)
    return out


def substitute_env(env: dict[str, str], paths: dict[str, str]) -> dict[str, str]:
    """The same replacement in environment variable values."""
    return {key: substitute([value], paths)[0] for key, value in env.items()}
