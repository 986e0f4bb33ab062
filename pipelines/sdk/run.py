"""``Run.get_context()``: the run a step's code is part of.

Inside a Millrace step the worker sets ``MILLRACE_CONTROL_DIR``; logging appends one JSON line
per call to ``metrics.jsonl`` there and ``upload_file`` / ``log_image`` copy files into
``files/``. The worker reads both while the step runs and records them, so a step needs no
network access and holds no credential at all. Outside a step, ``get_context()`` returns an
offline run that keeps values in memory and prints them.

This module imports only the standard library: it must work in a bare step environment.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["OfflineRun", "Run"]

CONTROL_ENV = "MILLRACE_CONTROL_DIR"
_NAME_MAX = 255


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > _NAME_MAX:
        raise ValueError(f"A metric name must be non-empty text of at most {_NAME_MAX} characters.")
    return name


def _jsonable(value: Any, where: str) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN/inf: kept, as text
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist(), where)
    raise TypeError(f"{where}: {type(value).__name__} cannot be logged; log numbers or text.")


class Run:
    """The current step's run. Use ``Run.get_context()``; do not construct it."""

    def __init__(
        self, control_dir: Path, *, run_id: str, step_name: str, parent_id: str, experiment: str
    ) -> None:
        self._control = Path(control_dir)
        self._lock = threading.Lock()
        self.id = run_id
        self.name = step_name
        self.experiment_name = experiment
        self.parent = _Parent(parent_id)
        (self._control / "files").mkdir(parents=True, exist_ok=True)

    @classmethod
    def get_context(cls, allow_offline: bool = True, **kwargs: Any) -> Run:
        """The run of the step this code runs in, or an offline run outside of one.

        Args:
            allow_offline: when False, raise outside a step instead of returning an offline run.

        Returns:
            A Run (or an OfflineRun, which has the same methods).

        Raises:
            RuntimeError: outside a step with ``allow_offline=False``.
        """
        control = os.environ.get(CONTROL_ENV)
        if not control:
            if not allow_offline:
                raise RuntimeError("Not inside a Millrace step (MILLRACE_CONTROL_DIR is not set).")
            return OfflineRun()
        return cls(
            Path(control),
            run_id=os.environ.get("MILLRACE_STEP_RUN_ID", ""),
            step_name=os.environ.get("MILLRACE_STEP_NAME", ""),
            parent_id=os.environ.get("MILLRACE_RUN_ID", ""),
            experiment=os.environ.get("MILLRACE_EXPERIMENT", ""),
        )

    def _emit(self, kind: str, name: str, value: Any) -> None:
        line = json.dumps({"kind": kind, "name": name, "value": value}) + "\n"
        data = line.encode()
        with self._lock:
            # One write per line with O_APPEND: the worker never sees half a line from us.
            fd = os.open(
                self._control / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """Log a scalar; logging the same name again makes a series (shown as a chart).

        Args:
            name: the metric's name.
            value: a number, text or bool.
            description: ignored (azureml compatibility).
            step: ignored (azureml compatibility).

        Raises:
            ValueError / TypeError: a bad name or a value that is not a number or text.
        """
        self._emit("scalar", _check_name(name), _jsonable(value, name))

    def log_list(self, name: str, value: list[Any], description: str = "") -> None:
        """Log a list of values under one name."""
        self._emit("list", _check_name(name), _jsonable(list(value), name))

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Log one row of a table (column → value); rows under one name form the table."""
        self._emit(
            "row", _check_name(name), {k: _jsonable(v, f"{name}.{k}") for k, v in kwargs.items()}
        )

    def log_table(self, name: str, value: dict[str, list[Any]], description: str = "") -> None:
        """Log a whole table as column → list of values."""
        if not isinstance(value, dict):
            raise TypeError(f"{name}: log_table takes a dict of column name → list of values.")
        self._emit(
            "table",
            _check_name(name),
            {k: _jsonable(list(v), f"{name}.{k}") for k, v in value.items()},
        )

    def log_image(
        self, name: str, path: str | None = None, plot: Any = None, description: str = ""
    ) -> None:
        """Log an image from a file ``path`` or a matplotlib figure/pyplot ``plot``."""
        _check_name(name)
        if (path is None) == (plot is None):
            raise ValueError("log_image takes exactly one of path= or plot=.")
        target_name = f"images/{_safe(name)}.png"
        target = self._control / "files" / target_name
        target.parent.mkdir(parents=True, exist_ok=True)
        if path is not None:
            source = Path(path)
            target = target.with_suffix(source.suffix or ".png")
            target_name = f"images/{target.name}"
            shutil.copyfile(source, target)
        else:
            plot.savefig(target, format="png")
        self._emit("image", name, {"file": target_name})

    def upload_file(self, name: str, path_or_stream: str | os.PathLike[str] | BinaryIO) -> None:
        """Keep a file with the run (it becomes one of the step's outputs named ``name``)."""
        relative = "/".join(_safe(part) for part in str(name).split("/") if part)
        if not relative:
            raise ValueError("upload_file needs a file name.")
        target = self._control / "files" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if hasattr(path_or_stream, "read"):
            with target.open("wb") as out:
                shutil.copyfileobj(path_or_stream, out)  # type: ignore[arg-type]
        else:
            shutil.copyfile(os.fspath(path_or_stream), target)
        self._emit("file", relative, {"file": relative})

    def tag(self, key: str, value: Any = None) -> None:
        """Tag the step run."""
        self._emit("tag", _check_name(key), None if value is None else str(value))

    def get_status(self) -> str:
        return "Running"

    def complete(self) -> None:
        """Nothing to do: the step completes when its script exits 0."""


class OfflineRun(Run):
    """A run outside any step: keeps what is logged in ``metrics`` and prints it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.id = "OfflineRun"
        self.name = "OfflineRun"
        self.experiment_name = ""
        self.parent = _Parent("")
        self.metrics: list[dict[str, Any]] = []

    def _emit(self, kind: str, name: str, value: Any) -> None:
        self.metrics.append({"kind": kind, "name": name, "value": value})
        print(f"[offline run] {kind} {name} = {value!r}")

    def log_image(
        self, name: str, path: str | None = None, plot: Any = None, description: str = ""
    ) -> None:
        self._emit("image", _check_name(name), {"file": path or "<plot>"})

    def upload_file(self, name: str, path_or_stream: Any) -> None:
        self._emit("file", str(name), {"file": str(name)})

    def get_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in self.metrics:
            if item["kind"] == "scalar":
                previous = out.get(item["name"])
                if previous is None:
                    out[item["name"]] = item["value"]
                elif isinstance(previous, list):
                    previous.append(item["value"])
                else:
                    out[item["name"]] = [previous, item["value"]]
            else:
                out[item["name"]] = item["value"]
        return out


class _Parent:
    def __init__(self, run_id: str) -> None:
        self.id = run_id


def _safe(part: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_. " else "_" for c in part).strip(" .")
    return cleaned or "file"
