"""Pipeline: steps compiled into the graph the server runs (the ``azureml.pipeline.core``
counterpart).

Nothing is uploaded while a pipeline is built. ``validate()`` lists every problem at once,
from the SDK's own checks and from the server's; ``submit()`` uploads each source directory
as a content-addressed snapshot (only files the workspace lacks) and starts a run.

The graph format is the one ``runs/graph.py`` documents: each step names its script, its
snapshot's digest, its compute target, its inputs (``pipeline_data``, datastore + path, or a
datapath parameter), its outputs (a datastore, optionally a path) and its arguments, where
data and parameters appear as ``{"input": ...}``, ``{"output": ...}`` and
``{"parameter": ...}``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pipelines.sdk._compile import Compiled, Compiler, Problem
from pipelines.sdk.data import DataPath, datastore_name
from pipelines.sdk.data_reference import DataReference, normalize_path
from pipelines.sdk.exceptions import ValidationError, _unsupported
from pipelines.sdk.snapshot import upload_snapshot
from pipelines.sdk.steps import PythonScriptStep

if TYPE_CHECKING:
    from pipelines.sdk.workspace import Workspace

__all__ = ["Pipeline"]

# Problem kinds the SDK checks itself; the server's messages of the same kind are left out
# when the SDK already reported one, so a problem is not listed twice.
_SERVER_KINDS = {
    "names": re.compile(r"two steps are named|letters, digits, '_'"),
    "produced": re.compile(r"is already produced by step"),
    "never": re.compile(r"is never produced by any step|consumes its own output"),
    "cycle": re.compile(r"the graph has a cycle"),
    "run_after": re.compile(r"unknown step|cannot run after itself"),
    "script": re.compile(r"is not in the step's source directory|unknown snapshot|needs a script"),
    "argument": re.compile(r"must be text, or one of"),
    "input": re.compile(r"needs pipeline_data, datastore|must be an object\.$"),
}


def _flatten(steps: Any, where: str = "steps") -> list[PythonScriptStep]:
    """Steps from a step or (nested) lists of steps, each once, in order."""
    if isinstance(steps, PythonScriptStep):
        return [steps]
    if not isinstance(steps, (list, tuple)):
        raise TypeError(f"Pipeline {where}: expected a step or a list of steps, not {steps!r}.")
    flat: list[PythonScriptStep] = []
    for index, item in enumerate(steps):
        for step in _flatten(item, f"{where}[{index}]"):
            if not any(step is known for known in flat):
                flat.append(step)
    return flat


def _closure(given: list[PythonScriptStep]) -> list[PythonScriptStep]:
    """The given steps and every step upstream of them, upstream ones first."""
    order: list[PythonScriptStep] = []
    seen: set[int] = set()
    for start in given:
        if id(start) in seen:
            continue
        seen.add(id(start))
        # Iterative depth-first walk: a long chain must not hit the recursion limit.
        stack: list[tuple[PythonScriptStep, Iterable[PythonScriptStep]]] = [
            (start, iter(list(start._upstream())))
        ]
        while stack:
            step, upstream = stack[-1]
            for other in upstream:
                if id(other) not in seen:
                    seen.add(id(other))
                    stack.append((other, iter(list(other._upstream()))))
                    break
            else:
                stack.pop()
                order.append(step)
    return order


def _default_name(script_name: str) -> str:
    """A valid step name from a script's name (``scripts/1-prep.py`` → ``scripts_1-prep.py``)."""
    name = re.sub(r"[^A-Za-z0-9_.\- ]", "_", script_name.strip().replace("\\", "/").lstrip("./"))
    if not name or not re.match(r"[A-Za-z_]", name):
        name = f"step_{name}"
    return name[:120].strip() or "step"


def _unique_names(steps: list[PythonScriptStep]) -> dict[int, str]:
    """Each step's name: its own, or its script's made unique (``train.py``, ``train.py_2``)."""
    used = {s.name for s in steps if s.name}
    names: dict[int, str] = {}
    for step in steps:
        if step.name:
            names[id(step)] = step.name
            continue
        base = _default_name(step.script_name)
        candidate, number = base, 2
        while candidate in used:
            candidate, number = f"{base}_{number}", number + 1
        used.add(candidate)
        names[id(step)] = candidate
    return names


class Pipeline:
    """Steps to run together, with the data that flows between them.

    Args:
        workspace: the Workspace the pipeline runs in.
        steps: steps, or (nested) lists of steps.
        description: a description, shown with the pipeline on the server.
        default_datastore: the datastore (or its name) for outputs that name none; default
            ``workspaceblobstore``.
        default_source_directory: the source directory of steps that name none; default the
            current folder (as of each step's creation).
        resolve_closure: also include every step upstream of the given ones (producers of
            their PipelineData and OutputFileDatasetConfig inputs, ``run_after`` steps), so
            passing the last step is enough.
        _workflow_provider: accepted for compatibility; ignored.
        _service_endpoint: accepted for compatibility; ignored.
        kwargs: other azureml options; accepted and ignored.

    Raises:
        TypeError: ``steps`` holds something that is not a step.
    """

    def __init__(
        self,
        workspace: Workspace,
        steps: Any,
        description: str | None = None,
        default_datastore: Any = None,
        default_source_directory: str | os.PathLike[str] | None = None,
        resolve_closure: bool = True,
        _workflow_provider: Any = None,
        _service_endpoint: Any = None,
        **kwargs: Any,
    ) -> None:
        self._workspace = workspace
        self.description = description
        self._default_datastore = default_datastore
        if default_datastore is not None:
            datastore_name(default_datastore, "Pipeline default_datastore")
        self._default_source_directory = (
            os.path.abspath(os.fspath(default_source_directory))
            if default_source_directory is not None
            else None
        )
        self._resolve_closure = resolve_closure
        given = _flatten(steps)
        if not given:
            raise TypeError("Pipeline steps: a pipeline needs at least one step.")
        self._steps = _closure(given) if resolve_closure else given
        self._names = _unique_names(self._steps)

    # ----- public surface -------------------------------------------------------------------

    @property
    def steps(self) -> list[PythonScriptStep]:
        """The pipeline's steps (with their upstream steps under ``resolve_closure``)."""
        return list(self._steps)

    def step_name(self, step: PythonScriptStep) -> str:
        """The name a step has in this pipeline (its own, or derived from its script).

        Args:
            step: one of the pipeline's steps.

        Returns:
            The name.

        Raises:
            KeyError: the step is not in the pipeline.
        """
        try:
            return self._names[id(step)]
        except KeyError:
            raise KeyError(f"{step!r} is not a step of this pipeline.") from None

    def validate(self) -> list[str]:
        """Check everything at once, without uploading anything: the SDK's own checks (step
        names, data produced and consumed, cycles, scripts in their source directories,
        argument types, environments) and the server's (compute targets, datastores,
        parameters). Each problem is printed and returned.

        Returns:
            The problems, as ``"<where>: <what>"`` texts; empty when the pipeline is valid.

        Raises:
            MillraceError: the server could not be asked (connection, authentication).
        """
        compiled = self._compile()
        problems = list(compiled.problems)
        body = {
            "graph": compiled.graph,
            "snapshots": {m.digest: sorted(m.files) for m in compiled.manifests.values()},
        }
        api = f"{self._workspace._api}pipelines/validate/"
        try:
            self._workspace._client.send_json("POST", api, body)
        except ValidationError as exc:
            reported = {p.kind for p in problems if p.kind}
            server = [
                Problem(where, str(message))
                for where, messages in (exc.fields or {}).items()
                for message in (messages if isinstance(messages, list) else [messages])
            ] or [Problem("server", exc.detail)]
            for problem in server:
                kind = next(
                    (k for k, rx in _SERVER_KINDS.items() if rx.search(problem.message)), ""
                )
                if kind not in reported:
                    problems.append(problem)
        texts = [str(p) for p in problems]
        if texts:
            print(f"The pipeline has {len(texts)} problem(s):")
            for text in texts:
                print(f"  - {text}")
        else:
            print(f"The pipeline is valid ({len(compiled.graph['steps'])} steps).")
        return texts

    def submit(
        self,
        experiment_name: str,
        pipeline_parameters: dict[str, Any] | None = None,
        continue_on_step_failure: bool = False,
        regenerate_outputs: bool = False,
        tags: dict[str, str] | None = None,
        credential_passthrough: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Upload the source directories and run the pipeline in an experiment
        (``Experiment(workspace, experiment_name).submit(pipeline, ...)``).

        Args:
            experiment_name: the experiment; created if new.
            pipeline_parameters: values of PipelineParameters by name (a DataPath for datapath
                parameters).
            continue_on_step_failure: keep running independent steps after a step fails.
            regenerate_outputs: run every step, reusing nothing.
            tags: tags of the run.
            credential_passthrough: accepted for compatibility; ignored.
            kwargs: passed on to ``Experiment.submit``.

        Returns:
            The PipelineRun.

        Raises:
            ValidationError: the pipeline has problems (all listed).
            MillraceError: the server refused the run or could not be reached.
        """
        from pipelines.sdk.experiment import Experiment

        return Experiment(self._workspace, experiment_name).submit(
            self,
            pipeline_parameters=pipeline_parameters,
            continue_on_step_failure=continue_on_step_failure,
            regenerate_outputs=regenerate_outputs,
            tags=tags,
            **kwargs,
        )

    publish = _unsupported(
        "Pipeline.publish", "Submit the pipeline; publishing arrives with published pipelines."
    )
    load_yaml = _unsupported("Pipeline.load_yaml", "Build the pipeline in Python.")
    service_endpoint = _unsupported("Pipeline.service_endpoint")

    def __repr__(self) -> str:
        names = [self._names[id(s)] for s in self._steps]
        return f"Pipeline(steps={names!r}, description={self.description!r})"

    # ----- the interface Experiment.submit uses ----------------------------------------------

    def _graph(self) -> dict[str, Any]:
        """The graph, with snapshot digests computed locally (nothing is uploaded).

        Returns:
            The graph as ``runs/graph.py`` describes it.

        Raises:
            ValidationError: the SDK's own checks found problems (all listed, keyed by where).
        """
        compiled = self._compile()
        _raise_for(compiled.problems)
        return compiled.graph

    def _submission(
        self, show_progress: bool = True, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Check the pipeline (here, then on the server with ``parameters``, before anything
        is uploaded), upload each distinct source directory's snapshot (only files the
        workspace lacks) and return what ``POST runs/`` takes.

        Args:
            show_progress: show a progress bar while files upload.
            parameters: the submitted parameter values (JSON), checked with the graph.

        Returns:
            ``{"graph": ..., "pipeline_name": None, "description": ...}``.

        Raises:
            ValidationError: the SDK's own checks found problems (all listed), or the server
                refused a snapshot.
            MillraceError: another server or connection error.
        """
        compiled = self._compile()
        _raise_for(compiled.problems)
        self._workspace._client.send_json(
            "POST",
            f"{self._workspace._api}pipelines/validate/",
            {
                "graph": compiled.graph,
                "parameters": dict(parameters or {}),
                "snapshots": {m.digest: sorted(m.files) for m in compiled.manifests.values()},
            },
        )
        for manifest in compiled.manifests.values():
            upload_snapshot(self._workspace, manifest, show_progress=show_progress)
        return {"graph": compiled.graph, "pipeline_name": None, "description": self.description}

    def _parameter_values(self, pipeline_parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        """Submitted parameter values as JSON: a DataPath (or DataReference) becomes
        ``{"datastore": <name>, "path": <path>}``; numpy scalars become numbers.

        Args:
            pipeline_parameters: name → value.

        Returns:
            name → JSON value.

        Raises:
            TypeError: a name that is not text, or a value of another type (named).
        """
        values: dict[str, Any] = {}
        for name, value in (pipeline_parameters or {}).items():
            if not isinstance(name, str):
                raise TypeError(f"pipeline_parameters: names must be text, not {name!r}.")
            values[name] = _parameter_value(name, value)
        return values

    # ----- compilation -----------------------------------------------------------------------

    def _compile(self) -> Compiled:
        return Compiler(self).run()


def _raise_for(problems: list[Problem]) -> None:
    if not problems:
        return
    fields: dict[str, list[str]] = {}
    for problem in problems:
        fields.setdefault(problem.where, []).append(problem.message)
    listing = "\n".join(f"  - {p}" for p in problems)
    raise ValidationError(f"The pipeline has {len(problems)} problem(s):\n{listing}", fields=fields)


def _parameter_value(name: str, value: Any) -> Any:
    if isinstance(value, DataPath):
        return value._to_json()
    if isinstance(value, DataReference):
        return {"datastore": value.datastore.name, "path": normalize_path(value.path_on_datastore)}
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    if isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"pipeline_parameters.{name}: {value!r} is not a finite number.")
        return value
    raise TypeError(
        f"pipeline_parameters.{name}: {type(value).__name__} is not a parameter value; give a "
        "str, int, float, bool or DataPath."
    )
