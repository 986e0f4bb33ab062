"""Compiling a Pipeline's steps into the graph the server runs (``runs/graph.py``), with
every problem found on the way: the SDK's own checks, done before anything is uploaded."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.sdk.data import (
    NAME,
    DataPath,
    OutputFileDatasetConfig,
    OutputFileDatasetInput,
    PipelineData,
    PipelineDataInput,
    PipelineParameter,
    datastore_name,
)
from pipelines.sdk.data_reference import DataReference, normalize_path
from pipelines.sdk.exceptions import ValidationError
from pipelines.sdk.runconfig import RunConfiguration
from pipelines.sdk.snapshot import Manifest, build_manifest
from pipelines.sdk.steps import PythonScriptStep, _target_name, is_datapath_input

if TYPE_CHECKING:
    from pipelines.sdk.pipeline import Pipeline

__all__ = ["DEFAULT_COMPUTE_TARGET", "DEFAULT_OUTPUT_DATASTORE", "Compiled", "Compiler", "Problem"]

# Where outputs go when neither the data nor the pipeline names a datastore (the server's
# default too).
DEFAULT_OUTPUT_DATASTORE = "workspaceblobstore"
DEFAULT_COMPUTE_TARGET = "local"


@dataclass
class Problem:
    """One problem: where it is (``step 'train': arguments[2]``), what is wrong, and its kind
    (for leaving out the server's report of the same kind)."""

    where: str
    message: str
    kind: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Compiled:
    """The graph, the problems found, and each source directory's manifest by its path."""

    graph: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    manifests: dict[str, Manifest] = field(default_factory=dict)


def _find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle as step names (the first repeated at the end), or None."""
    state: dict[str, int] = dict.fromkeys(deps, 0)  # 0 new, 1 on the path, 2 done
    for start in deps:
        if state[start]:
            continue
        path = [start]
        state[start] = 1
        stack = [iter(deps.get(start, ()))]
        while stack:
            for child in stack[-1]:
                if state.get(child, 2) == 1:
                    return [*path[path.index(child) :], child]
                if state.get(child) == 0:
                    state[child] = 1
                    path.append(child)
                    stack.append(iter(deps.get(child, ())))
                    break
            else:
                state[path.pop()] = 2
                stack.pop()
    return None


class Compiler:
    """Turns a Pipeline's steps into the graph, collecting every problem on the way."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.problems: list[Problem] = []
        self.manifests: dict[str, Manifest] = {}
        self.failed_dirs: set[str] = set()
        self.parameters: dict[str, tuple[PipelineParameter, dict[str, Any]]] = {}
        # data name → [(step name, data object)] that produce / consume it
        self.producers: dict[str, list[tuple[str, Any]]] = {}
        self.consumers: dict[str, list[tuple[str, Any]]] = {}
        self.in_pipeline = {id(s) for s in pipeline._steps}

    def bad(self, where: str, message: str, kind: str = "") -> None:
        self.problems.append(Problem(where, message, kind))

    @property
    def default_datastore(self) -> str:
        store = self.pipeline._default_datastore
        if store is None:
            return DEFAULT_OUTPUT_DATASTORE
        return datastore_name(store, "Pipeline default_datastore")

    def run(self) -> Compiled:
        steps_json = [self.step(step) for step in self.pipeline._steps]
        self.check_names()
        self.check_data()
        self.check_cycles(steps_json)
        graph: dict[str, Any] = {
            "parameters": {name: spec for name, (_, spec) in self.parameters.items()},
            "steps": steps_json,
        }
        return Compiled(graph, self.problems, self.manifests)

    # ----- one step ------------------------------------------------------------------------

    def where(self, step: PythonScriptStep) -> str:
        name = self.pipeline._names[id(step)]
        return f"step '{name}'" + (f" ({step.script_name})" if name != step.script_name else "")

    def step(self, step: PythonScriptStep) -> dict[str, Any]:
        name = self.pipeline._names[id(step)]
        where = self.where(step)
        source = step.source_directory or self.pipeline._default_source_directory or step._cwd
        script, snapshot = self.script(step, where, source)
        inputs: dict[str, dict[str, Any]] = {}
        outputs: dict[str, dict[str, Any]] = {}
        for index, item in enumerate(step.outputs):
            self.output(step, f"{where}: outputs[{index}]", item, outputs)
        for index, item in enumerate(step.inputs):
            self.input(step, f"{where}: inputs[{index}]", item, inputs)
        arguments = [
            self.argument(step, f"{where}: arguments[{index}]", item, inputs, outputs)
            for index, item in enumerate(step.arguments)
        ]
        spec: dict[str, Any] = {
            "name": name,
            "script": script,
            "snapshot": snapshot,
            "arguments": arguments,
            "inputs": inputs,
            "outputs": outputs,
            "compute_target": self.compute_target(step, where),
            "allow_reuse": step.allow_reuse,
            "run_after": self.run_after(step, where),
        }
        if not isinstance(step.allow_reuse, bool):
            self.bad(where, f"allow_reuse must be True or False, not {step.allow_reuse!r}.")
        if step.runconfig is not None:
            if isinstance(step.runconfig, RunConfiguration):
                environment, problems = step.runconfig._to_spec(where)
                spec["environment"] = environment
                for text in problems:
                    prefix, _, message = text.partition(": runconfig")
                    self.bad(prefix, f"runconfig{message}")
            else:
                self.bad(
                    where,
                    f"runconfig must be a RunConfiguration, not {type(step.runconfig).__name__}.",
                )
        return spec

    def script(self, step: PythonScriptStep, where: str, source: str) -> tuple[str, str | None]:
        """The script relative to its source directory, and the snapshot's digest."""
        manifest = self.manifest(source, where)
        script = step.script_name.strip().replace("\\", "/")
        if os.path.isabs(script):
            relative = os.path.relpath(script, source).replace(os.sep, "/")
            if relative.startswith("../") or relative == "..":
                self.bad(
                    where,
                    f"script_name {step.script_name!r} is not inside its source directory "
                    f"{source}.",
                    "script",
                )
                return script, manifest.digest if manifest else None
            script = relative
        script = normalize_path(script) if ".." not in script.split("/") else script
        if manifest is None:
            return script, None
        if script not in manifest.files:
            full = os.path.join(source, *script.split("/"))
            if ".." in step.script_name.replace("\\", "/").split("/"):
                why = "must not leave its source directory ('..')"
            elif os.path.isfile(full):
                why = (
                    f"is left out of the snapshot by {manifest.ignore_file}"
                    if manifest.ignore_file
                    else "is not a regular file"
                )
            else:
                why = "does not exist"
            self.bad(where, f"script {script!r} {why} in the source directory {source}.", "script")
        return script, manifest.digest

    def manifest(self, source: str, where: str) -> Manifest | None:
        if source in self.manifests:
            return self.manifests[source]
        if source in self.failed_dirs:
            self.bad(where, f"the source directory {source} cannot be used (see above).", "script")
            return None
        try:
            manifest = build_manifest(source)
        except FileNotFoundError:
            self.bad(where, f"the source directory {source} does not exist.", "script")
        except ValidationError as exc:
            self.bad(where, exc.detail, "script")
        else:
            self.manifests[source] = manifest
            return manifest
        self.failed_dirs.add(source)
        return None

    def compute_target(self, step: PythonScriptStep, where: str) -> str:
        if step.compute_target_name:
            return step.compute_target_name
        runconfig = step.runconfig
        if isinstance(runconfig, RunConfiguration) and runconfig.target is not None:
            try:
                name = _target_name(runconfig.target, where)
            except TypeError as exc:
                self.bad(where, f"runconfig.target: {exc}")
                return DEFAULT_COMPUTE_TARGET
            if name:
                return name
        return DEFAULT_COMPUTE_TARGET

    def run_after(self, step: PythonScriptStep, where: str) -> list[str]:
        names: list[str] = []
        for other in step._run_after:
            if other is step:
                self.bad(where, "a step cannot run after itself.", "run_after")
            elif id(other) not in self.in_pipeline:
                self.bad(
                    where,
                    f"runs after {other!r}, which is not in the pipeline; add it, or build the "
                    "pipeline with resolve_closure=True.",
                    "run_after",
                )
            else:
                names.append(self.pipeline._names[id(other)])
        return names

    # ----- data --------------------------------------------------------------------------

    def parameter(self, where: str, param: PipelineParameter) -> None:
        spec = param._to_spec()
        known = self.parameters.get(param.name)
        if known is not None and known[1] != spec:
            self.bad(
                where,
                f"two PipelineParameters are named '{param.name}' with different defaults "
                f"({known[0].default_value!r} and {param.default_value!r}); give them "
                "different names.",
            )
            return
        if known is None:
            self.parameters[param.name] = (param, spec)

    def add_input(
        self, where: str, inputs: dict[str, dict[str, Any]], key: str, spec: dict[str, Any]
    ) -> None:
        known = inputs.get(key)
        if known is not None and known != spec:
            same_data = {k: v for k, v in known.items() if k != "mode"} == {
                k: v for k, v in spec.items() if k != "mode"
            }
            if same_data and "mount" in (known.get("mode", "mount"), spec.get("mode", "mount")):
                # The same data in arguments (plain: mounted) and in inputs=[d.as_download()]:
                # the mode asked for explicitly wins, as in azureml.
                modes = {known.get("mode", "mount"), spec.get("mode", "mount")} - {"mount"}
                inputs[key] = {**spec, "mode": modes.pop() if modes else "mount"}
                return
            self.bad(
                where,
                f"two different inputs are named '{key}' ({inputs[key]} and {spec}); give "
                "them different names.",
            )
            return
        inputs[key] = spec

    def consume(
        self,
        step: PythonScriptStep,
        where: str,
        data: PipelineData | OutputFileDatasetConfig,
        mode: str,
        inputs: dict[str, dict[str, Any]],
    ) -> str:
        name = self.pipeline._names[id(step)]
        self.add_input(where, inputs, data.name, {"pipeline_data": data.name, "mode": mode})
        consumers = self.consumers.setdefault(data.name, [])
        if not any(s == name for s, _ in consumers):
            consumers.append((name, data))
        return data.name

    def datapath(
        self,
        where: str,
        param: PipelineParameter,
        mode: str,
        inputs: dict[str, dict[str, Any]],
    ) -> str | None:
        if param.type != "datapath":
            self.bad(
                where,
                f"PipelineParameter '{param.name}' has a {param.type} default; only a "
                "parameter whose default is a DataPath can be paired with a "
                "DataPathComputeBinding.",
            )
            return None
        self.parameter(where, param)
        self.add_input(where, inputs, param.name, {"parameter": param.name, "mode": mode})
        return param.name

    def reference(
        self, where: str, ref: DataReference, inputs: dict[str, dict[str, Any]]
    ) -> str | None:
        try:
            spec = ref._to_spec()
        except ValueError as exc:
            self.bad(where, f"DataReference '{ref.data_reference_name}': {exc}")
            return None
        self.add_input(
            where,
            inputs,
            ref.data_reference_name,
            {"datastore": spec["datastore"], "path": spec["path"], "mode": spec["mode"]},
        )
        return ref.data_reference_name

    def produces(self, step: PythonScriptStep, data: Any) -> bool:
        return any(data is out for out in step.outputs) or (
            isinstance(data, OutputFileDatasetConfig)
            and any(
                isinstance(out, OutputFileDatasetConfig) and out.name == data.name
                for out in step.outputs
            )
        )

    def input(
        self, step: PythonScriptStep, where: str, item: Any, inputs: dict[str, dict[str, Any]]
    ) -> str | None:
        """Record one input; returns its key in ``inputs`` (None for a bad one)."""
        if isinstance(item, DataReference):
            return self.reference(where, item, inputs)
        if isinstance(item, PipelineData):
            if self.produces(step, item):
                self.bad(
                    where,
                    f"the step both produces and consumes PipelineData '{item.name}'.",
                    "never",
                )
                return None
            return self.consume(step, where, item, "mount", inputs)
        if isinstance(item, PipelineDataInput):
            return self.consume(step, where, item.data, item.mode, inputs)
        if isinstance(item, OutputFileDatasetInput):
            return self.consume(step, where, item.output, item.mode, inputs)
        if isinstance(item, OutputFileDatasetConfig):
            return self.consume(step, where, item, "mount", inputs)
        if is_datapath_input(item):
            return self.datapath(where, item[0], item[1].mode, inputs)
        if isinstance(item, PipelineParameter) and item.type == "datapath":
            return self.datapath(where, item, "mount", inputs)
        self.bad(
            where,
            f"{type(item).__name__} {item!r} cannot be an input; inputs take DataReference, "
            "PipelineData (or its as_mount()/as_download()), OutputFileDatasetConfig.as_input() "
            "and (PipelineParameter, DataPathComputeBinding).",
        )
        return None

    def output(
        self, step: PythonScriptStep, where: str, item: Any, outputs: dict[str, dict[str, Any]]
    ) -> str | None:
        """Record one output; returns its key in ``outputs`` (None for a bad one)."""
        if isinstance(item, PipelineData):
            spec: dict[str, Any] = {"datastore": item.datastore_name or self.default_datastore}
        elif isinstance(item, OutputFileDatasetConfig):
            spec = {"datastore": item.datastore_name or self.default_datastore}
            if item.destination is not None:
                if not item.path.strip("/"):
                    self.bad(
                        where,
                        f"OutputFileDatasetConfig '{item.name}': the destination path is empty; "
                        "give a folder such as 'outputs/{run-id}'.",
                    )
                spec["path"] = item.path
        else:
            self.bad(
                where,
                f"{type(item).__name__} {item!r} cannot be an output; outputs take PipelineData "
                "and OutputFileDatasetConfig.",
            )
            return None
        if item.name in outputs:
            if outputs[item.name] != spec:
                self.bad(where, f"the step has two different outputs named '{item.name}'.")
            return item.name
        outputs[item.name] = spec
        producers = self.producers.setdefault(item.name, [])
        producers.append((self.pipeline._names[id(step)], item))
        return item.name

    def argument(
        self,
        step: PythonScriptStep,
        where: str,
        item: Any,
        inputs: dict[str, dict[str, Any]],
        outputs: dict[str, dict[str, Any]],
    ) -> Any:
        if isinstance(item, bool):
            return "True" if item else "False"
        if isinstance(item, str):
            return item
        if isinstance(item, int):
            return item
        if isinstance(item, float):
            return item if math.isfinite(item) else str(item)
        if isinstance(item, os.PathLike):
            return os.fspath(item)
        if isinstance(item, PipelineParameter):
            if item.type == "datapath":
                key = self.datapath(where, item, "mount", inputs)
                return {"input": key} if key else None
            self.parameter(where, item)
            return {"parameter": item.name}
        if isinstance(item, (PipelineData, OutputFileDatasetConfig)) and self.produces(step, item):
            return {"output": item.name}
        if isinstance(item, OutputFileDatasetConfig):
            # In arguments, an OutputFileDatasetConfig is this step's output (azureml infers it).
            key = self.output(step, where, item, outputs)
            return {"output": key} if key else None
        if isinstance(item, DataPath):
            self.bad(
                where,
                f"{item!r} cannot be an argument by itself; use (PipelineParameter(name, "
                "default_value=datapath), DataPathComputeBinding()) or datastore.path(...).",
                "argument",
            )
            return None
        if isinstance(
            item, (DataReference, PipelineData, PipelineDataInput, OutputFileDatasetInput)
        ) or is_datapath_input(item):
            key = self.input(step, where, item, inputs)
            return {"input": key} if key else None
        self.bad(
            where,
            f"{type(item).__name__} {item!r} cannot be an argument; use text, numbers, "
            "PipelineParameter, DataReference, PipelineData, OutputFileDatasetConfig (or its "
            "as_input()) or (PipelineParameter, DataPathComputeBinding).",
        )
        return None

    # ----- the whole graph ----------------------------------------------------------------

    def check_names(self) -> None:
        seen: dict[str, int] = {}
        for step in self.pipeline._steps:
            name = self.pipeline._names[id(step)]
            seen[name] = seen.get(name, 0) + 1
            if not NAME.match(name) or name != name.strip():
                self.bad(
                    self.where(step),
                    "a step name may hold letters, digits, '_', '-', '.' and spaces (at most "
                    "128), starting with a letter or '_'.",
                    "names",
                )
        for name, count in seen.items():
            if count > 1:
                self.bad(
                    f"step '{name}'",
                    f"{count} steps are named '{name}'; step names must be unique.",
                    "names",
                )

    def check_data(self) -> None:
        for data_name, producers in self.producers.items():
            if len(producers) > 1:
                steps = ", ".join(f"'{s}'" for s, _ in producers)
                self.bad(
                    f"data '{data_name}'",
                    f"produced by more than one step ({steps}); each output needs its own name.",
                    "produced",
                )
        for data_name, consumers in self.consumers.items():
            if data_name in self.producers:
                continue
            for step_name, data in consumers:
                outside = [p for p in data._producers if id(p) not in self.in_pipeline]
                if outside:
                    hint = (
                        f"its producer {outside[0]!r} is not in the pipeline; add it, or build "
                        "the pipeline with resolve_closure=True."
                    )
                else:
                    hint = "no step lists it in outputs= (or in arguments, for an " + (
                        "OutputFileDatasetConfig)."
                        if isinstance(data, OutputFileDatasetConfig)
                        else "OutputFileDatasetConfig); add it to the producing step's outputs."
                    )
                self.bad(
                    f"step '{step_name}'",
                    f"consumes {type(data).__name__} '{data_name}', which is never produced: "
                    f"{hint}",
                    "never",
                )

    def check_cycles(self, steps_json: list[dict[str, Any]]) -> None:
        deps: dict[str, list[str]] = {}
        for spec in steps_json:
            waits = list(spec["run_after"])
            for ispec in spec["inputs"].values():
                source = ispec.get("pipeline_data")
                for producer, _ in self.producers.get(str(source), []) if source else []:
                    if producer != spec["name"]:
                        waits.append(producer)
            deps.setdefault(spec["name"], []).extend(waits)
        cycle = _find_cycle(deps)
        if cycle:
            self.bad(
                "steps",
                "the steps wait for each other in a cycle: " + " → ".join(cycle) + ".",
                "cycle",
            )
