"""Experiment: a named group of runs, and where pipelines are submitted (the
``azureml.core.Experiment`` counterpart).

``Experiment(ws, "forecast").submit(pipeline)`` uploads the steps' source directories (only
files the server lacks), sends the pipeline's graph and returns a PipelineRun; the server
validates everything at once and stores nothing when something is wrong. An experiment needs
no creation: the server makes it with its first run.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pipelines.sdk.exceptions import _unsupported
from pipelines.sdk.pipeline_run import PipelineRun

if TYPE_CHECKING:
    from pipelines.sdk.workspace import Workspace

__all__ = ["Experiment"]

log = logging.getLogger("pipelines.sdk")

# What azureml users submit that Millrace does not run (yet), with what to do instead.
_NOT_SUBMITTABLE = {
    "PublishedPipeline": "submit the Pipeline itself.",
    "PipelineEndpoint": "submit the Pipeline itself.",
    "ScriptRunConfig": "wrap the script in a PythonScriptStep and submit a Pipeline.",
    "Estimator": "wrap the script in a PythonScriptStep and submit a Pipeline.",
    "HyperDriveConfig": "submit one Pipeline per configuration.",
    "AutoMLConfig": "write the training step as a PythonScriptStep and submit a Pipeline.",
}


class Experiment:
    """A named group of runs in a workspace.

    Args:
        workspace: the Workspace.
        name: the experiment's name (1 to 255 characters); created by its first run.
        _skip_name_validation: accepted for compatibility; ignored.
        _id: accepted for compatibility; ignored.
        _archived_time: accepted for compatibility; ignored.
        _create_in_cloud: accepted for compatibility; ignored.
        _experiment_dto: accepted for compatibility; ignored.
        kwargs: other azureml options; ignored.

    Raises:
        ValueError: an empty name.
    """

    def __init__(
        self,
        workspace: Workspace,
        name: str,
        _skip_name_validation: bool = False,
        _id: str | None = None,
        _archived_time: Any = None,
        _create_in_cloud: bool = True,
        _experiment_dto: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("An experiment needs a name.")
        self._workspace = workspace
        self._name = name.strip()

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self._name

    @property
    def workspace(self) -> Workspace:
        """The experiment's Workspace."""
        return self._workspace

    def __repr__(self) -> str:
        return f"Experiment(workspace={self._workspace.name!r}, name={self._name!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Experiment)
            and other._workspace.id == self._workspace.id
            and other._name == self._name
        )

    def __hash__(self) -> int:
        return hash((self._workspace.id, self._name))

    # ----- submitting -------------------------------------------------------------------

    def submit(
        self,
        config: Any,
        pipeline_parameters: Mapping[str, Any] | None = None,
        regenerate_outputs: bool = False,
        continue_on_step_failure: bool = False,
        tags: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> PipelineRun:
        """Submit a Pipeline: upload its source directories, then start a run of it.

        Prints ``Submitted PipelineRun <id>`` and the run's portal link, as azureml does.

        Args:
            config: the Pipeline.
            pipeline_parameters: PipelineParameter name → value for this run (a DataPath for
                a datapath parameter); the others keep their defaults.
            regenerate_outputs: run every step, reusing none.
            continue_on_step_failure: let independent steps go on after a step fails.
            tags: tags for the run.
            kwargs: ``show_progress`` (default True: progress of the source upload on
                stderr); other azureml options are accepted and ignored.

        Returns:
            The PipelineRun (``.wait_for_completion()`` follows it).

        Raises:
            NotImplementedError: ``config`` is not a Pipeline (a PublishedPipeline,
                ScriptRunConfig, Estimator...), naming its type.
            ValidationError: the server refused the graph or the parameters; ``.fields``
                says where, and nothing was stored.
            PermissionDeniedError: the token's user is a reader.
            MillraceError: another server or connection error.
        """
        if not (hasattr(config, "_submission") and hasattr(config, "_parameter_values")):
            kind = type(config).__name__
            hint = _NOT_SUBMITTABLE.get(kind, "submit a Pipeline.")
            raise NotImplementedError(
                f"Experiment.submit({kind}) is not offered by Millrace yet: {hint}"
            )
        show_progress = bool(kwargs.pop("show_progress", True))
        if kwargs:
            log.debug("Experiment.submit ignores these azureml options: %s", sorted(kwargs))
        values = config._parameter_values(
            dict(pipeline_parameters) if pipeline_parameters is not None else None
        )
        # The values are checked with the graph before any file is uploaded.
        submission = config._submission(show_progress=show_progress, parameters=values)
        body = {
            "experiment_name": self._name,
            "graph": submission["graph"],
            "pipeline_name": submission.get("pipeline_name"),
            "description": submission.get("description") or "",
            "parameters": values,
            "tags": {str(k): "" if v is None else str(v) for k, v in (tags or {}).items()},
            "regenerate_outputs": bool(regenerate_outputs),
            "continue_on_step_failure": bool(continue_on_step_failure),
            "source": "sdk",
        }
        data = self._workspace._client.send_json("POST", f"{self._workspace._api}runs/", body)
        run = PipelineRun._from_data(self, data)
        print(f"Submitted PipelineRun {run.id}")
        print(f"Link to the portal: {run.get_portal_url()}")
        return run

    # ----- listing ----------------------------------------------------------------------

    def get_runs(
        self,
        type: str | None = None,
        tags: str | Mapping[str, str] | None = None,
        properties: str | Mapping[str, Any] | None = None,
        include_children: bool = False,
    ) -> Iterator[PipelineRun]:
        """The experiment's runs, newest first.

        Args:
            type: a run type; only ``"azureml.PipelineRun"`` (or None) has runs here.
            tags: a tag name (runs that have it) or {name: value} (runs with those values).
            properties: a property name or {name: value} of ``get_details()["properties"]``.
            include_children: accepted for compatibility; step runs are reached through
                ``PipelineRun.get_steps()``.

        Yields:
            PipelineRun objects, fetched page by page as the iteration goes.

        Raises:
            MillraceError: the server could not answer.
        """
        if type not in (None, "azureml.PipelineRun", "PipelineRun"):
            return
        params: dict[str, Any] = {"experiment": self._name}
        wanted: dict[str, str | None] = {}
        if isinstance(tags, str):
            wanted = {tags: None}
        elif tags:
            wanted = {str(k): str(v) for k, v in tags.items()}
        if wanted:
            params["tag"] = [k if v is None else f"{k}:{v}" for k, v in wanted.items()]
        client = self._workspace._client
        for data in client.iter_cursor(f"{self._workspace._api}runs/", params=params):
            run = PipelineRun._from_data(self, data)
            if properties and not _has_properties(run, properties):
                continue
            yield run

    @staticmethod
    def list(
        workspace: Workspace,
        experiment_name: str | None = None,
        view_type: str = "ActiveOnly",
        tags: Any = None,
    ) -> builtins.list[Experiment]:
        """The workspace's experiments (those with at least one run), by name.

        Args:
            workspace: the Workspace.
            experiment_name: only the experiment of this name.
            view_type: accepted for compatibility; ignored (experiments are never archived).
            tags: accepted for compatibility; ignored (experiments have no tags).

        Returns:
            A list of Experiment.

        Raises:
            MillraceError: the server could not answer.
        """
        found: builtins.list[Experiment] = []
        for data in workspace._client.iter_pages(f"{workspace._api}experiments/"):
            if experiment_name is None or data.get("name") == experiment_name:
                found.append(Experiment(workspace, str(data["name"])))
        return found

    archive = _unsupported("Experiment.archive", "Experiments are never archived.")
    reactivate = _unsupported("Experiment.reactivate", "Experiments are never archived.")
    delete = _unsupported("Experiment.delete")
    start_logging = _unsupported(
        "Experiment.start_logging", "Log from inside a step with Run.get_context()."
    )
    from_directory = _unsupported("Experiment.from_directory", "Use Experiment(ws, name).")
    set_tags = _unsupported("Experiment.set_tags", "Tag runs with PipelineRun.tag().")
    tag = _unsupported("Experiment.tag", "Tag runs with PipelineRun.tag().")


def _has_properties(run: PipelineRun, properties: str | Mapping[str, Any]) -> bool:
    have = run._details(run._data)["properties"]
    if isinstance(properties, str):
        return properties in have
    return all(k in have and str(have[k]) == str(v) for k, v in properties.items())
