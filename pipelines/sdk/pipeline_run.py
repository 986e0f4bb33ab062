"""PipelineRun and StepRun: one execution of a pipeline and its steps (the
``azureml.pipeline.core.PipelineRun`` / ``StepRun`` counterparts).

A PipelineRun comes from ``Experiment.submit`` or ``PipelineRun(experiment, run_id)``; its steps
from ``get_steps()`` / ``find_step_run(name)``. ``wait_for_completion(show_output=True)`` prints
each step's status changes and every log line once, as they happen (see ``_follow``).

Statuses are Azure's: NotStarted, Queued, Preparing, Running, Finalizing, CancelRequested,
Completed, Failed, Canceled (the last three end a run). ``.status`` is the status as last read
from the server; ``get_status()`` reads it again.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin

from pipelines.sdk._follow import Follower
from pipelines.sdk.exceptions import (
    NotFoundError,
    RunFailedError,
    _unsupported,
)
from pipelines.sdk.step_run import (
    LOG_FILES,
    TAIL_LINES,
    PortDataReference,
    StepRun,
    StepRunOutput,
    _error_dict,
    _ServerRun,
)

if TYPE_CHECKING:
    from pipelines.sdk._http import HttpClient
    from pipelines.sdk.experiment import Experiment
    from pipelines.sdk.workspace import Workspace

__all__ = ["LOG_FILES", "PipelineRun", "PortDataReference", "StepRun", "StepRunOutput"]


class PipelineRun(_ServerRun):
    """One run of a pipeline.

    ``PipelineRun(experiment, run_id)`` fetches an existing run; ``Experiment.submit`` returns
    one for a new run.

    Args:
        experiment: the Experiment the run belongs to (its workspace is used to reach it).
        run_id: the run's id.
        _service_endpoint: accepted for compatibility; ignored.
        kwargs: other azureml options; ignored.

    Raises:
        NotFoundError: no such run in the experiment's workspace, or this token cannot see it.
        MillraceError: another server or connection error.
    """

    experiment: Experiment
    _data: dict[str, Any]

    def __init__(
        self,
        experiment: Experiment,
        run_id: str,
        _service_endpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        path = _run_path(experiment.workspace, str(run_id))
        try:
            data = experiment.workspace._client.get_json(path)
        except NotFoundError as exc:
            raise NotFoundError(
                f"PipelineRun '{run_id}' was not found in workspace "
                f"'{experiment.workspace.name}' (or this token cannot see it).",
                status_code=exc.status_code,
                url=exc.url,
            ) from None
        self._set(experiment, data)

    def _set(self, experiment: Experiment, data: dict[str, Any]) -> None:
        named = data.get("experiment")
        if named and named != experiment.name:
            from pipelines.sdk.experiment import Experiment

            experiment = Experiment(experiment.workspace, str(named))
        self.experiment = experiment
        self._data = dict(data)

    @classmethod
    def _from_data(cls, experiment: Experiment, data: dict[str, Any]) -> PipelineRun:
        """A PipelineRun from the server's JSON, without a request."""
        run = cls.__new__(cls)
        run._set(experiment, data)
        return run

    # ----- plumbing ---------------------------------------------------------------------

    @property
    def _workspace(self) -> Workspace:
        return self.experiment.workspace

    @property
    def _client(self) -> HttpClient:
        return self._workspace._client

    @property
    def _path(self) -> str:
        return _run_path(self._workspace, self.id)

    # ----- identity ---------------------------------------------------------------------

    @property
    def type(self) -> str:
        """``"azureml.PipelineRun"``, as in azureml."""
        return "azureml.PipelineRun"

    @property
    def parent(self) -> None:
        """None: a pipeline run has no parent run."""
        return None

    @property
    def name(self) -> str:
        """The run's id, which also names it (azureml's display name)."""
        return self.id

    display_name = name

    @property
    def workspace(self) -> Workspace:
        """The run's Workspace."""
        return self._workspace

    def __repr__(self) -> str:
        return (
            f"PipelineRun(experiment={self.experiment.name!r}, id={self.id!r}, "
            f"status={self.status!r})"
        )

    # ----- reading ----------------------------------------------------------------------

    def get_details(self) -> dict[str, Any]:
        """The run's details, shaped like azureml's.

        Returns:
            ``{"runId", "status", "experimentName", "startTimeUtc", "endTimeUtc",
            "createdTimeUtc", "durationSeconds", "submittedBy", "properties", "tags",
            "parameters", "portalUrl", "error"}`` (``error`` is None or
            ``{"error": {"code", "message"}}``).

        Raises:
            MillraceError: the server could not answer.
        """
        return self._details(self._refresh())

    def _details(self, data: dict[str, Any]) -> dict[str, Any]:
        error = str(data.get("error") or "")
        if not error and data.get("status") == "Failed":
            failed = [s["name"] for s in data.get("steps") or [] if s.get("status") == "Failed"]
            if failed:
                error = f"Step(s) failed: {', '.join(failed)}."
        return {
            "runId": str(data.get("id")),
            "status": data.get("status"),
            "experimentName": data.get("experiment"),
            "startTimeUtc": data.get("started_at"),
            "endTimeUtc": data.get("finished_at"),
            "createdTimeUtc": data.get("created_at"),
            "durationSeconds": data.get("duration_seconds"),
            "submittedBy": data.get("submitted_by"),
            "properties": {
                "azureml.runsource": "azureml.PipelineRun",
                "runSource": data.get("source"),
                "azureml.pipelineid": data.get("pipeline_id"),
                "azureml.continue_on_step_failure": bool(data.get("continue_on_step_failure")),
                "azureml.regenerate_outputs": bool(data.get("regenerate_outputs")),
            },
            "tags": dict(data.get("tags") or {}),
            "parameters": dict(data.get("parameters") or {}),
            "portalUrl": self._portal_url(data),
            "error": _error_dict(error),
        }

    def get_properties(self) -> dict[str, Any]:
        """The run's properties (``get_details()["properties"]``).

        Returns:
            The properties dict.
        """
        return dict(self.get_details()["properties"])

    def get_tags(self) -> dict[str, str]:
        """The run's tags, read again from the server.

        Returns:
            Tag name → value.
        """
        return dict(self._refresh().get("tags") or {})

    def get_portal_url(self) -> str:
        """The run's page in the portal.

        Returns:
            An absolute URL.
        """
        return self._portal_url(self._data)

    def _portal_url(self, data: dict[str, Any]) -> str:
        url = str(data.get("portal_url") or f"/w/{self._workspace.id}/runs/{self.id}/")
        return urljoin(self._client.base_url + "/", url)

    def get_steps(self) -> list[StepRun]:
        """The run's steps, as azureml orders them: the most recently started first; steps
        that have not started yet come last, in the pipeline's order.

        Returns:
            A list of StepRun.

        Raises:
            MillraceError: the server could not answer.
        """
        body = self._client.get_json(f"{self._path}steps/")
        items = body if isinstance(body, list) else body.get("results", [])
        steps = [StepRun._from_data(self, data) for data in items]
        started = [s for s in steps if s._started is not None]
        waiting = [s for s in steps if s._started is None]
        started.sort(key=lambda s: s._started, reverse=True)
        return started + waiting

    get_children = get_steps

    def find_step_run(self, name: str) -> list[StepRun]:
        """The steps of this run with that name.

        Args:
            name: the step's name.

        Returns:
            A list (one StepRun, or empty when no step has that name), as in azureml.
        """
        return [s for s in self.get_steps() if s.name == name]

    def get_metrics(self) -> dict[str, dict[str, Any]]:
        """Every step's metrics.

        Returns:
            Step name → metric name → value (a name logged once) or list of values (logged
            several times); ``log_row`` rows as column → values. A reused step shows the
            metrics of the run it reuses.

        Raises:
            MillraceError: the server could not answer.
        """
        return dict(self._client.get_json(f"{self._path}metrics/"))

    def get_pipeline_output(self, pipeline_output_name: str) -> PortDataReference:
        """The data a step wrote to the output of that name.

        Args:
            pipeline_output_name: the output's name (the PipelineData's name).

        Returns:
            A PortDataReference to download it.

        Raises:
            NotFoundError: no step of this run has that output.
        """
        for step in self.get_steps():
            outputs = step.get_outputs()
            if pipeline_output_name in outputs:
                return outputs[pipeline_output_name].get_port_data_reference()
        raise NotFoundError(
            f"No step of PipelineRun {self.id} has an output named '{pipeline_output_name}'."
        )

    # ----- writing ----------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the run: waiting steps end at once, running ones are stopped.

        Raises:
            PermissionDeniedError: the token's user is a reader.
            MillraceError: another server error.
        """
        self._data = dict(self._client.send_json("POST", f"{self._path}cancel/", {}))

    def tag(self, key: str, value: str | None = None) -> None:
        """Add or change one tag.

        Args:
            key: the tag's name.
            value: its value; None: an empty value (a tag used as a label).

        Raises:
            PermissionDeniedError: the token's user is a reader.
        """
        self.set_tags({key: "" if value is None else str(value)})

    def set_tags(self, tags: dict[str, str]) -> None:
        """Add or change several tags (others are kept).

        Args:
            tags: tag name → value.

        Raises:
            PermissionDeniedError: the token's user is a reader.
            ValidationError: a value is not text.
        """
        body = {"tags": {str(k): "" if v is None else str(v) for k, v in tags.items()}}
        self._data = dict(self._client.send_json("POST", f"{self._path}tags/", body))

    publish_pipeline = _unsupported(
        "PipelineRun.publish_pipeline",
        "Publishing is not offered yet: submit the Pipeline with Experiment.submit.",
    )

    # ----- waiting ----------------------------------------------------------------------

    def wait_for_completion(
        self,
        show_output: bool = True,
        timeout_seconds: float = sys.maxsize,
        raise_on_error: bool = True,
    ) -> dict[str, Any]:
        """Wait until the run ends, printing what happens.

        With ``show_output``, each step's status changes (``StepRun: train → Running``) and
        every log line (``[train] ...``; other logs than the script's as ``[train prep] ...``)
        are printed once, in order, as they happen: over the run's websocket, reconnecting
        after a lost connection without gap or repeat, or by polling the REST API every
        second when the websocket cannot be used (or ``MILLRACE_SDK_WEBSOCKET=0``). Ctrl-C
        stops the waiting, not the run.

        Args:
            show_output: print status changes and log lines.
            timeout_seconds: give up after this many seconds.
            raise_on_error: raise RunFailedError when the run ends Failed.

        Returns:
            ``get_details()`` of the ended run. A Completed run, a Canceled one (canceling is
            deliberate: it does not raise, as in azureml; check ``["status"]``), and a Failed
            one with ``raise_on_error=False``.

        Raises:
            RunFailedError: the run ended Failed and ``raise_on_error``; names each failed
                step with its error and last log lines.
            RunTimeoutError: not ended after ``timeout_seconds`` (also a TimeoutError); the run
                goes on.
            KeyboardInterrupt: Ctrl-C; the run goes on.
            MillraceError: the server refused (NotFoundError, AuthenticationError...).
        """
        if show_output:
            print(f"PipelineRunId: {self.id}")
            print(f"Link to the portal: {self.get_portal_url()}")
        follower = Follower(self._client, self._path, self.id, show_output=show_output)
        self._data = dict(follower.follow(timeout_seconds))
        details = self._details(self._data)
        if show_output:
            print()
            print("PipelineRun Execution Summary")
            print("==============================")
            print(f"PipelineRun Status: {details['status']}")
            for step in self._data.get("steps") or []:
                reused = " (reused)" if step.get("reused_from") else ""
                print(f"  {step.get('name')}: {step.get('status')}{reused}")
            print()
        if details["status"] == "Failed" and raise_on_error:
            raise self._failure(details)
        return details

    def _failure(self, details: dict[str, Any]) -> RunFailedError:
        failed = []
        lines = [f"PipelineRun {self.id} (experiment '{self.experiment.name}') Failed."]
        for data in self._data.get("steps") or []:
            if data.get("status") != "Failed":
                continue
            step = StepRun._from_data(self, data)
            tail = step._log_tail(TAIL_LINES)
            failed.append(
                {
                    "name": step.name,
                    "id": step.id,
                    "error": data.get("error") or "",
                    "log_tail": tail,
                }
            )
            lines.append(f"Step '{step.name}' failed: {data.get('error') or 'no error recorded'}")
            if tail:
                lines.append("  its last log lines:")
                lines.extend(f"    {line}" for line in tail)
        if not failed and self._data.get("error"):
            lines.append(str(self._data["error"]))
        return RunFailedError(
            "\n".join(lines),
            run_id=self.id,
            status=str(details["status"]),
            failed_steps=failed,
            details=details,
        )


def _run_path(workspace: Workspace, run_id: str) -> str:
    return f"{workspace._api}runs/{quote(run_id, safe='')}/"
