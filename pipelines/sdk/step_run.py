"""StepRun: one step of a pipeline run (``azureml.pipeline.core.StepRun``), its logs, metrics
and outputs (``PortDataReference`` / ``StepRunOutput``). Get them from
``PipelineRun.get_steps()`` / ``find_step_run(name)``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pipelines.sdk._follow import Follower, parse_time
from pipelines.sdk._http import quote_path
from pipelines.sdk.datastore import Datastore
from pipelines.sdk.exceptions import (
    MillraceConnectionError,
    NotFoundError,
    RunFailedError,
)

if TYPE_CHECKING:
    from pipelines.sdk._http import HttpClient
    from pipelines.sdk.experiment import Experiment
    from pipelines.sdk.pipeline_run import PipelineRun

__all__ = ["LOG_FILES", "PortDataReference", "StepRun", "StepRunOutput"]

# The server's log names → the Azure-named files users know (``run.get_file_names()``).
LOG_FILES = {
    "driver": "azureml-logs/70_driver_log.txt",
    "prep": "azureml-logs/65_job_prep.txt",
    "build": "azureml-logs/20_image_build_log.txt",
    "post": "azureml-logs/75_job_post.txt",
}
LOG_PAGE = 10_000
# How many of a failed step's last lines a RunFailedError quotes.
TAIL_LINES = 10
CHUNK_SIZE = 1024 * 1024


def _error_dict(message: str, code: str = "UserError") -> dict[str, Any] | None:
    """Azure's shape of an error in run details, or None for no error."""
    if not message:
        return None
    return {"error": {"code": code, "message": message}}


class _ServerRun:
    """What a pipeline run and a step run share: the server's JSON for it (``_data``), read
    again by ``_refresh()`` from ``_path``, and the identity and status in it."""

    _data: dict[str, Any]

    @property
    def _client(self) -> HttpClient:
        raise NotImplementedError

    @property
    def _path(self) -> str:
        raise NotImplementedError

    def _refresh(self) -> dict[str, Any]:
        self._data = dict(self._client.get_json(self._path))
        return self._data

    @property
    def id(self) -> str:
        """The run's id (a UUID)."""
        return str(self._data["id"])

    @property
    def status(self) -> str:
        """The status as last read from the server (``get_status()`` reads it again)."""
        return str(self._data.get("status") or "")

    def get_status(self) -> str:
        """The status now.

        Returns:
            One of NotStarted, Queued, Preparing, Running, Finalizing, CancelRequested,
            Completed, Failed, Canceled.

        Raises:
            MillraceError: the server could not answer.
        """
        return str(self._refresh().get("status") or "")


class StepRun(_ServerRun):
    """One step of a pipeline run. Get them from ``PipelineRun.get_steps()`` or
    ``find_step_run(name)``; do not construct them.

    A step that was *reused* (``.reused``) did not run: it stands for an identical earlier
    step run (``.reused_from``), whose logs, metrics and outputs it shows.
    """

    parent: PipelineRun

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "StepRun(...) is not offered by Millrace: use PipelineRun.get_steps() or "
            "PipelineRun.find_step_run(name)."
        )

    @classmethod
    def _from_data(cls, parent: PipelineRun, data: dict[str, Any]) -> StepRun:
        step = cls.__new__(cls)
        step.parent = parent
        step._data = dict(data)
        return step

    @property
    def _client(self) -> HttpClient:
        return self.parent._client

    @property
    def _path(self) -> str:
        return f"{self.parent._path}steps/{self.id}/"

    @property
    def _started(self) -> Any:
        return parse_time(self._data.get("started_at"))

    # ----- identity ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The step's name in the pipeline."""
        return str(self._data.get("name") or "")

    @property
    def type(self) -> str:
        """``"azureml.StepRun"``, as in azureml."""
        return "azureml.StepRun"

    @property
    def experiment(self) -> Experiment:
        """The Experiment of the pipeline run."""
        return self.parent.experiment

    @property
    def pipeline_run_id(self) -> str:
        """The id of the PipelineRun this step belongs to."""
        return self.parent.id

    @property
    def reused(self) -> bool:
        """True when the step did not run but reuses an identical earlier step run."""
        return bool(self._data.get("reused_from"))

    @property
    def reused_from(self) -> dict[str, str] | None:
        """``{"run": <pipeline run id>, "step": <step run id>}`` of the step run reused, or
        None."""
        origin = self._data.get("reused_from")
        return dict(origin) if isinstance(origin, dict) else None

    @property
    def reuse_explanation(self) -> str:
        """Why the step was (or was not) reused, in words."""
        return str(self._data.get("reuse_explanation") or "")

    def __repr__(self) -> str:
        return f"StepRun(name={self.name!r}, id={self.id!r}, status={self.status!r})"

    # ----- reading ----------------------------------------------------------------------

    def get_details(self) -> dict[str, Any]:
        """The step run's details, shaped like azureml's.

        Returns:
            ``{"runId", "name", "status", "target", "startTimeUtc", "endTimeUtc",
            "queuedTimeUtc", "durationSeconds", "parentRunId", "exitCode", "attempt",
            "timings", "dependsOn", "runDefinition": {"script", "arguments"}, "properties":
            {"azureml.reusedrunid", "azureml.reusedpipelinerunid", "azureml.reused"},
            "reuseExplanation", "error"}``.
        """
        data = self._refresh()
        origin = self.reused_from or {}
        return {
            "runId": self.id,
            "name": self.name,
            "status": data.get("status"),
            "target": data.get("compute_target"),
            "startTimeUtc": data.get("started_at"),
            "endTimeUtc": data.get("finished_at"),
            "queuedTimeUtc": data.get("queued_at"),
            "durationSeconds": data.get("duration_seconds"),
            "parentRunId": self.parent.id,
            "exitCode": data.get("exit_code"),
            "attempt": data.get("attempt"),
            "timings": dict(data.get("timings") or {}),
            "dependsOn": list(data.get("depends_on") or []),
            "runDefinition": {
                "script": data.get("script"),
                "arguments": list(data.get("arguments") or []),
            },
            "properties": {
                "azureml.reused": bool(origin),
                "azureml.reusedrunid": origin.get("step"),
                "azureml.reusedpipelinerunid": origin.get("run"),
            },
            "reuseExplanation": data.get("reuse_explanation") or "",
            "error": _error_dict(str(data.get("error") or "")),
        }

    def get_metrics(self, name: str | None = None) -> dict[str, Any]:
        """The metrics the step logged with ``Run.get_context()``.

        Args:
            name: only this metric; None: all.

        Returns:
            Metric name → value (logged once) or list of values (logged several times);
            ``log_row`` rows as column → values; lists, tables and images as logged. A reused
            step shows the metrics of the step run it reuses.
        """
        body = self._client.get_json(f"{self._path}metrics/")
        summary = body.get("summary") or {}  # the server summarises, as runs/ metrics do
        if name is not None:
            return {name: summary[name]} if name in summary else {}
        return dict(summary)

    def get_tags(self) -> dict[str, str]:
        """The tags the step set with ``Run.get_context().tag(...)``.

        Returns:
            Tag name → value.
        """
        body = self._client.get_json(f"{self._path}metrics/")
        return {
            str(m["name"]): str(m["value"])
            for m in body.get("metrics") or []
            if m.get("kind") == "tag"
        }

    # ----- logs -------------------------------------------------------------------------

    def _lines(self, log: str = "driver", *, after: int = 0) -> Iterator[list[Any]]:
        """Every stored line ``[seq, stream, text]`` of one log, in order."""
        cursor = after
        while True:
            body = self._client.get_json(
                f"{self._path}logs/", params={"log": log, "after": cursor, "limit": LOG_PAGE}
            )
            yield from body.get("lines") or []
            last = int(body.get("last_seq") or cursor)
            if not body.get("more") or last <= cursor:
                return
            cursor = last

    def get_log(self, log: str = "driver") -> str:
        """One whole log as text.

        Args:
            log: ``"driver"`` (the script's stdout and stderr,
                ``azureml-logs/70_driver_log.txt``), ``"prep"``, ``"build"`` or ``"post"``.

        Returns:
            The text, one line per printed line.

        Raises:
            ValidationError: an unknown log name.
        """
        response = self._client.request(
            "GET", f"{self._path}logs/", params={"log": log, "format": "text"}
        )
        with response:
            response.encoding = response.encoding or "utf-8"
            return response.text

    def get_job_log(self) -> str:
        """The script's whole log: stdout and stderr interleaved as printed.

        Returns:
            The text of ``azureml-logs/70_driver_log.txt``.
        """
        return self.get_log("driver")

    get_driver_log = get_job_log

    def get_stdout_log(self) -> str:
        """What the script printed on stdout.

        Returns:
            The lines, each ending with a newline.
        """
        return "".join(f"{text}\n" for _, stream, text in self._lines() if stream == "stdout")

    def get_stderr_log(self) -> str:
        """What the script printed on stderr.

        Returns:
            The lines, each ending with a newline.
        """
        return "".join(f"{text}\n" for _, stream, text in self._lines() if stream == "stderr")

    def _log_names(self) -> list[str]:
        body = self._client.get_json(f"{self._path}logs/", params={"log": "driver", "limit": 1})
        return [str(name) for name in body.get("logs") or []]

    def _log_tail(self, count: int) -> list[str]:
        """The last ``count`` lines of the script's log (else of the preparation logs)."""
        seq = int(self._data.get("log_seq") or 0)
        after = max(0, seq - 50 * count)
        for log in ("driver", "prep", "build"):
            lines = [str(text) for _, _, text in self._lines(log, after=after)]
            if lines:
                return lines[-count:]
        return []

    # ----- outputs and files ------------------------------------------------------------

    def _output_rows(self) -> list[dict[str, Any]]:
        body = self._client.get_json(f"{self._path}outputs/")
        items = body.get("outputs") if isinstance(body, dict) else body
        return [dict(o) for o in items or []]

    def get_outputs(self) -> dict[str, StepRunOutput]:
        """The step's data outputs (PipelineData / OutputFileDatasetConfig), by name.

        Returns:
            Output name → StepRunOutput. Files uploaded with ``Run.upload_file`` are not
            here: see ``get_file_names()``.
        """
        return {
            o["name"]: StepRunOutput(self, o)
            for o in self._output_rows()
            if o.get("kind", "pipeline_data") != "file"
        }

    def get_output(self, name: str) -> StepRunOutput:
        """One data output.

        Args:
            name: the output's name.

        Returns:
            The StepRunOutput.

        Raises:
            NotFoundError: the step has no output of that name (the message lists those it
                has).
        """
        outputs = self.get_outputs()
        if name not in outputs:
            have = ", ".join(sorted(outputs)) or "none"
            raise NotFoundError(
                f"StepRun '{self.name}' has no output named '{name}' (it has: {have})."
            )
        return outputs[name]

    def get_output_data(self, name: str) -> PortDataReference:
        """Where a data output is, to download it.

        Args:
            name: the output's name.

        Returns:
            A PortDataReference (``.download(local_path)``).

        Raises:
            NotFoundError: the step has no output of that name.
        """
        return self.get_output(name).get_port_data_reference()

    def get_file_names(self) -> list[str]:
        """The run's files: those uploaded with ``Run.upload_file`` / ``log_image`` and the
        logs under their Azure names (``azureml-logs/70_driver_log.txt``...).

        Returns:
            The names, sorted.
        """
        files = [o["name"] for o in self._output_rows() if o.get("kind") == "file"]
        logs = [LOG_FILES[name] for name in self._log_names() if name in LOG_FILES]
        return sorted(files + logs)

    def download_file(
        self,
        name: str,
        output_file_path: str | os.PathLike[str] | None = None,
        _validate_checksum: bool = False,
    ) -> str:
        """Download one of the run's files.

        Args:
            name: a name from ``get_file_names()``.
            output_file_path: the local file to write, or a folder to write it into; None:
                the current folder, under the file's base name.
            _validate_checksum: accepted for compatibility; ignored.

        Returns:
            The local path written.

        Raises:
            NotFoundError: the run has no file of that name (the message lists those it has).
        """
        target = _local_file(name, output_file_path)
        logs = {file: log for log, file in LOG_FILES.items()}
        if name in logs:
            params = {"log": logs[name], "format": "text"}
            _stream_to(self._client, f"{self._path}logs/", target, params=params)
            return target
        for row in self._output_rows():
            if row.get("kind") == "file" and row["name"] == name:
                path = f"{_datastore_path(self, row['datastore'])}files/{quote_path(row['path'])}"
                _stream_to(self._client, path, target)
                return target
        have = ", ".join(self.get_file_names()) or "none"
        raise NotFoundError(f"StepRun '{self.name}' has no file named '{name}' (it has: {have}).")

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | os.PathLike[str] | None = None,
        output_paths: list[str] | None = None,
        batch_size: int = 100,
        append_prefix: bool = True,
    ) -> list[str]:
        """Download the run's files whose names start with ``prefix``.

        Args:
            prefix: a name prefix; None: every file.
            output_directory: the local folder; None: the current folder.
            output_paths: accepted for compatibility; ignored.
            batch_size: accepted for compatibility; ignored.
            append_prefix: keep the prefix in the local paths (False: strip it).

        Returns:
            The local paths written.
        """
        root = os.fspath(output_directory) if output_directory is not None else os.getcwd()
        written = []
        for name in self.get_file_names():
            if prefix and not name.startswith(prefix):
                continue
            relative = name if append_prefix or not prefix else name[len(prefix) :].lstrip("/")
            target = os.path.join(root, *relative.split("/"))
            written.append(self.download_file(name, target))
        return written

    # ----- writing and waiting ----------------------------------------------------------

    def cancel(self) -> None:
        """Cancel this step (its dependants are then skipped).

        Raises:
            PermissionDeniedError: the token's user is a reader.
        """
        self._data = dict(self._client.send_json("POST", f"{self._path}cancel/", {}))

    def wait_for_completion(
        self,
        show_output: bool = True,
        timeout_seconds: float = sys.maxsize,
        raise_on_error: bool = True,
    ) -> dict[str, Any]:
        """Wait until this step ends, printing its status changes and log lines (as
        ``PipelineRun.wait_for_completion`` does for the whole run).

        Args:
            show_output: print status changes and log lines.
            timeout_seconds: give up after this many seconds.
            raise_on_error: raise RunFailedError when the step ends Failed.

        Returns:
            ``get_details()`` of the ended step.

        Raises:
            RunFailedError: the step ended Failed and ``raise_on_error``.
            RunTimeoutError: not ended after ``timeout_seconds``.
            KeyboardInterrupt: Ctrl-C; the run goes on.
        """
        follower = Follower(
            self._client,
            self.parent._path,
            self.parent.id,
            show_output=show_output,
            step_id=self.id,
        )
        follower.follow(timeout_seconds)
        details = self.get_details()
        if details["status"] == "Failed" and raise_on_error:
            tail = self._log_tail(TAIL_LINES)
            error = (details["error"] or {}).get("error", {}).get("message") or "no error recorded"
            text = "\n".join(
                [f"StepRun '{self.name}' of PipelineRun {self.parent.id} Failed: {error}"]
                + (["  its last log lines:"] + [f"    {line}" for line in tail] if tail else [])
            )
            raise RunFailedError(
                text,
                run_id=self.parent.id,
                status="Failed",
                failed_steps=[{"name": self.name, "id": self.id, "error": error, "log_tail": tail}],
                details=details,
            )
        return details


class PortDataReference:
    """Where a step's output data is on a datastore (azureml's ``PortDataReference``)."""

    def __init__(self, step_run: StepRun, data: dict[str, Any]) -> None:
        self._step_run = step_run
        self._data = dict(data)

    @property
    def name(self) -> str:
        """The output's name."""
        return str(self._data["name"])

    data_reference_name = name

    @property
    def datastore_name(self) -> str:
        """The name of the datastore holding the data."""
        return str(self._data["datastore"])

    @property
    def path_on_datastore(self) -> str:
        """The output's folder on the datastore."""
        return str(self._data["path"])

    @property
    def datastore(self) -> Datastore:
        """The Datastore holding the data."""
        return Datastore._from_data(self._step_run.parent.workspace, {"name": self.datastore_name})

    def __repr__(self) -> str:
        return (
            f"PortDataReference(name={self.name!r}, datastore={self.datastore_name!r}, "
            f"path={self.path_on_datastore!r})"
        )

    def download(
        self,
        local_path: str | os.PathLike[str],
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> str:
        """Download the output's files.

        As in azureml, the files keep their datastore path below ``local_path``.

        Args:
            local_path: the local folder (created if missing).
            overwrite: replace local files that exist (else they are kept, with a warning).
            show_progress: show a progress bar on stderr.

        Returns:
            The local folder that holds the output: ``<local_path>/<path_on_datastore>``.

        Raises:
            MillraceError: the server or the connection failed.
        """
        path = self.path_on_datastore.rstrip("/")
        self.datastore.download(
            local_path, prefix=f"{path}/", overwrite=overwrite, show_progress=show_progress
        )
        return os.path.join(os.fspath(local_path), *path.split("/"))


class StepRunOutput:
    """A step run's named data output (azureml's ``StepRunOutput``)."""

    def __init__(self, step_run: StepRun, data: dict[str, Any]) -> None:
        self._step_run = step_run
        self._data = dict(data)

    @property
    def name(self) -> str:
        """The output's name."""
        return str(self._data["name"])

    @property
    def file_count(self) -> int | None:
        """How many files the step wrote to it (None: not known)."""
        count = self._data.get("file_count")
        return None if count is None else int(count)

    def get_port_data_reference(self) -> PortDataReference:
        """Where the data is.

        Returns:
            A PortDataReference.
        """
        return PortDataReference(self._step_run, self._data)

    def __repr__(self) -> str:
        return f"StepRunOutput(name={self.name!r}, step={self._step_run.name!r})"


# ----- helpers ---------------------------------------------------------------------------


def _datastore_path(step: StepRun, name: str) -> str:
    return f"{step.parent.workspace._api}datastores/{quote(name, safe='')}/"


def _local_file(name: str, output_file_path: str | os.PathLike[str] | None) -> str:
    base = name.rsplit("/", 1)[-1]
    if output_file_path is None:
        return os.path.join(os.getcwd(), base)
    target = os.fspath(output_file_path)
    if os.path.isdir(target):
        return os.path.join(target, base)
    return target


def _stream_to(
    client: HttpClient, path: str, target: str, *, params: dict[str, Any] | None = None
) -> None:
    """GET ``path`` into the file ``target``, through a ``.part`` file renamed when whole."""
    import requests

    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex[:8]}.part")
    response = client.request("GET", path, params=params, stream=True)
    with response:
        try:
            with open(partial, "xb") as out:
                try:
                    for chunk in response.iter_content(CHUNK_SIZE):
                        out.write(chunk)
                except requests.RequestException as exc:
                    raise MillraceConnectionError(
                        f"The download from {response.url} broke off.", url=response.url
                    ) from exc
            os.replace(partial, target)
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise
