"""Pipeline graphs: their shape, validation (every problem at once) and parameter resolution.

Model-free: callers pass in what exists in the workspace (compute targets, datastores,
snapshots) so this module can be tested without a database.

A graph::

    {"parameters": {"n": {"type": "int", "default": 3}},
     "steps": [{"name": "train", "script": "train.py", "snapshot": "<digest>",
                "arguments": ["--data", {"input": "prepared"}, "--n", {"parameter": "n"},
                              "--model", {"output": "model"}],
                "inputs": {"prepared": {"pipeline_data": "prepared"},
                           "raw": {"datastore": "workspaceblobstore", "path": "raw/",
                                   "mode": "mount"}},
                "outputs": {"model": {"datastore": "workspaceblobstore"},
                            "scores": {"datastore": "workspaceblobstore",
                                       "path": "scores/{run-id}/{output-name}"}},
                "compute_target": "local", "environment": {"pip_packages": []},
                "allow_reuse": true, "run_after": [], "timeout_seconds": null,
                "max_retries": 2}]}

Parameter types: string, int, float, bool, and datapath — a data location
``{"datastore": "<name>", "path": "<path>"}`` that a step takes as an input with
``{"parameter": "<name>", "mode": "mount"}`` (Azure's DataPath + DataPathComputeBinding), so
the data can change per submission. An output's optional ``path`` fixes where it is written
(Azure's OutputFileDatasetConfig destination); ``{run-id}`` and ``{output-name}`` in it are
replaced. Without a path an output gets a folder of its own per step run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\- ]{0,127}$")
PARAM_TYPES = {"string": str, "int": int, "float": float, "bool": bool, "datapath": dict}
OUTPUT_PLACEHOLDERS = ("{run-id}", "{output-name}")
INPUT_MODES = ("mount", "download")
MAX_STEPS = 5000
DEFAULT_MAX_RETRIES = 2


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class GraphError(Exception):
    """Every problem found in a graph or its parameters."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Known:
    """What exists in the workspace, for validation."""

    compute_targets: set[str] = field(default_factory=set)
    datastores: set[str] = field(default_factory=set)
    # snapshot digest → the set of file paths in it
    snapshots: Mapping[str, Iterable[str]] = field(default_factory=dict)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "datapath":
        return (
            isinstance(value, dict)
            and set(value) == {"datastore", "path"}
            and isinstance(value["datastore"], str)
            and isinstance(value["path"], str)
        )
    return isinstance(value, str)


def _bad_path(path: str) -> str | None:
    """Why a relative datastore path is unacceptable, or None."""
    parts = path.replace("\\", "/").split("/")
    if path.startswith("/") or ".." in parts or "\0" in path:
        return f"{path!r} must be a relative path without '..'."
    return None


def _datapath_problem(value: Any, known: Known | None) -> str | None:
    if not _is_type(value, "datapath"):
        return 'must be {"datastore": "<name>", "path": "<path>"}.'
    if known is not None and value["datastore"] not in known.datastores:
        return f"unknown datastore {value['datastore']!r}."
    return _bad_path(value["path"])


def _is_environment(env: Any) -> bool:
    if not isinstance(env, dict):
        return False
    packages = env.get("pip_packages") or []
    return (
        isinstance(packages, list)
        and all(isinstance(p, str) for p in packages)
        and isinstance(env.get("base_image") or "", str)
        and isinstance(env.get("name") or "", str)
    )


def validate(graph: Any, known: Known) -> dict[str, list[str]]:
    """Check a graph; return each step's dependencies (step name → names it waits for).

    Raises:
        GraphError: listing every problem (cycles, inputs never produced, outputs produced
            twice, unknown targets/datastores/snapshots/scripts/parameters, bad names).
    """
    problems: list[Problem] = []

    def bad(where: str, message: str) -> None:
        problems.append(Problem(where, message))

    if not isinstance(graph, dict):
        raise GraphError([Problem("graph", "must be an object with 'steps' and 'parameters'.")])
    params = graph.get("parameters", {})
    if not isinstance(params, dict):
        bad("parameters", "must be an object of name → {type, default}.")
        params = {}
    for pname, pspec in params.items():
        where = f"parameters.{pname}"
        if not isinstance(pspec, dict) or pspec.get("type") not in PARAM_TYPES:
            bad(where, f"needs a type, one of: {', '.join(PARAM_TYPES)}.")
            continue
        default = pspec.get("default")
        if default is not None and pspec["type"] == "datapath":
            if (why := _datapath_problem(default, known)) is not None:
                bad(f"{where}.default", why)
        elif default is not None and not _is_type(default, pspec["type"]):
            bad(where, f"default {default!r} is not of type {pspec['type']}.")
    steps = graph.get("steps")
    if not isinstance(steps, list) or not steps:
        raise GraphError([*problems, Problem("steps", "a pipeline needs at least one step.")])
    if len(steps) > MAX_STEPS:
        raise GraphError([Problem("steps", f"at most {MAX_STEPS} steps (got {len(steps)}).")])

    names: dict[str, int] = {}
    producers: dict[str, str] = {}  # output name → step name
    for index, step in enumerate(steps):
        where = f"steps[{index}]"
        if not isinstance(step, dict):
            bad(where, "must be an object.")
            continue
        name = step.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            bad(f"{where}.name", "use letters, digits, '_', '-', '.', spaces (at most 128).")
            continue
        if name in names:
            bad(f"{where}.name", f"two steps are named '{name}'; step names must be unique.")
        names[name] = index
        outputs = step.get("outputs", {})
        if not isinstance(outputs, dict):
            bad(f"{where}.outputs", "must be an object of name → {datastore}.")
            continue
        for oname, ospec in outputs.items():
            owhere = f"steps[{index}] ({name}).outputs.{oname}"
            if not NAME.match(oname):
                bad(owhere, "not a valid output name.")
            if oname in producers:
                bad(owhere, f"output '{oname}' is already produced by step '{producers[oname]}'.")
            else:
                producers[oname] = name
            if ospec is not None and not isinstance(ospec, dict):
                bad(owhere, 'must be an object like {"datastore": "<name>"}.')
                continue
            datastore = (ospec or {}).get("datastore")
            if datastore is not None and (
                not isinstance(datastore, str) or datastore not in known.datastores
            ):
                bad(owhere, f"unknown datastore {datastore!r}.")
            opath = (ospec or {}).get("path")
            if opath is not None:
                if not isinstance(opath, str) or not opath.strip("/"):
                    bad(f"{owhere}.path", "must be a non-empty relative path.")
                elif (why := _bad_path(opath)) is not None:
                    bad(f"{owhere}.path", why)

    deps: dict[str, list[str]] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("name"), str):
            continue
        name = step["name"]
        where = f"steps[{index}] ({name})"
        waits: list[str] = []
        target = step.get("compute_target")
        if not isinstance(target, str) or target not in known.compute_targets:
            options = ", ".join(sorted(known.compute_targets)) or "none"
            bad(
                f"{where}.compute_target",
                f"unknown compute target {target!r} (there are: {options}).",
            )
        snapshot = step.get("snapshot")
        script = step.get("script")
        if not isinstance(script, str) or not script:
            bad(f"{where}.script", "a step needs a script.")
        elif not isinstance(snapshot, str) or snapshot not in known.snapshots:
            bad(
                f"{where}.snapshot",
                f"unknown snapshot {snapshot!r}; upload the source directory first.",
            )
        elif script not in set(known.snapshots[str(snapshot)]):
            bad(f"{where}.script", f"'{script}' is not in the step's source directory.")
        inputs = step.get("inputs", {})
        if not isinstance(inputs, dict):
            bad(f"{where}.inputs", "must be an object.")
            inputs = {}
        for iname, ispec in inputs.items():
            iwhere = f"{where}.inputs.{iname}"
            if not isinstance(ispec, dict):
                bad(iwhere, "must be an object.")
                continue
            mode = ispec.get("mode", "mount")
            if mode not in INPUT_MODES:
                bad(iwhere, f"mode must be one of {', '.join(INPUT_MODES)}, not {mode!r}.")
            if "pipeline_data" in ispec:
                source = ispec["pipeline_data"]
                if not isinstance(source, str):
                    bad(iwhere, "pipeline_data must name an output of another step.")
                elif source not in producers:
                    bad(iwhere, f"input '{source}' is never produced by any step.")
                elif producers[source] == name:
                    bad(iwhere, f"step consumes its own output '{source}'.")
                else:
                    waits.append(producers[source])
            elif "datastore" in ispec:
                if (
                    not isinstance(ispec["datastore"], str)
                    or ispec["datastore"] not in known.datastores
                ):
                    bad(iwhere, f"unknown datastore {ispec['datastore']!r}.")
                if not isinstance(ispec.get("path", ""), str):
                    bad(iwhere, "path must be text.")
            elif "parameter" in ispec:
                pname = ispec["parameter"]
                if not isinstance(pname, str) or pname not in params:
                    bad(iwhere, f"refers to unknown parameter {pname!r}.")
                elif not isinstance(params[pname], dict) or params[pname].get("type") != "datapath":
                    bad(
                        iwhere,
                        f"parameter {pname!r} is not a datapath; pass a plain parameter as an "
                        'argument: {"parameter": "<name>"}.',
                    )
            else:
                bad(iwhere, "needs pipeline_data, datastore + path, or a datapath parameter.")
        outputs = step.get("outputs", {}) if isinstance(step.get("outputs"), dict) else {}
        arguments = step.get("arguments")
        if arguments is None:
            arguments = []
        elif not isinstance(arguments, list):
            bad(f"{where}.arguments", "must be a list of text and {input}/{output}/{parameter}.")
            arguments = []
        for aindex, arg in enumerate(arguments):
            awhere = f"{where}.arguments[{aindex}]"
            if isinstance(arg, (str, int, float)) and not isinstance(arg, bool):
                continue
            if not isinstance(arg, dict) or len(arg) != 1:
                bad(awhere, "must be text, or one of {input}, {output}, {parameter}.")
                continue
            ((kind, ref),) = arg.items()
            if not isinstance(ref, str):
                bad(awhere, "a reference names an input, output or parameter (text).")
            elif kind == "input" and ref not in inputs:
                bad(awhere, f"refers to input {ref!r}, which the step does not declare.")
            elif kind == "output" and ref not in outputs:
                bad(awhere, f"refers to output {ref!r}, which the step does not declare.")
            elif kind == "parameter" and ref not in params:
                bad(awhere, f"refers to unknown parameter {ref!r}.")
            elif kind not in ("input", "output", "parameter"):
                bad(awhere, f"unknown reference kind {kind!r}.")
        run_after = step.get("run_after")
        if run_after is None:
            run_after = []
        elif not isinstance(run_after, list):
            bad(f"{where}.run_after", "must be a list of step names.")
            run_after = []
        for other in run_after:
            if not isinstance(other, str):
                bad(f"{where}.run_after", f"must be a list of step names, not {other!r}.")
            elif other not in names:
                bad(f"{where}.run_after", f"unknown step {other!r}.")
            elif other == name:
                bad(f"{where}.run_after", "a step cannot run after itself.")
            else:
                waits.append(other)
        for key, limit in (("timeout_seconds", 7 * 86400), ("max_retries", 10)):
            value = step.get(key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit
            ):
                bad(f"{where}.{key}", f"must be a whole number from 0 to {limit}.")
        if step.get("allow_reuse") is not None and not isinstance(step.get("allow_reuse"), bool):
            bad(f"{where}.allow_reuse", "must be true or false.")
        if step.get("environment") is not None and not _is_environment(step["environment"]):
            bad(
                f"{where}.environment",
                'must be an object like {"pip_packages": ["<package>"], "base_image": "<image>"}.',
            )
        deps[name] = sorted(set(waits))

    # deps holds only valid edges, so a cycle is reported together with the other problems.
    cycle = find_cycle(deps)
    if cycle:
        bad("steps", "the graph has a cycle: " + " → ".join(cycle) + ".")
    if problems:
        raise GraphError(problems)
    return deps


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle as a list of step names (first repeated at the end), or None."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(deps, white)
    stack_path: list[str] = []

    def visit(node: str) -> list[str] | None:
        # Iterative DFS: a 5,000-step chain must not hit the recursion limit.
        stack: list[tuple[str, Iterable[str]]] = [(node, iter(deps.get(node, ())))]
        color[node] = grey
        stack_path.append(node)
        while stack:
            current, children = stack[-1]
            for child in children:
                if color.get(child, black) == grey:
                    return [*stack_path[stack_path.index(child) :], child]
                if color.get(child) == white:
                    color[child] = grey
                    stack_path.append(child)
                    stack.append((child, iter(deps.get(child, ()))))
                    break
            else:
                color[current] = black
                stack_path.pop()
                stack.pop()
        return None

    for node in deps:
        if color[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def resolve_parameters(
    graph: dict[str, Any], values: Mapping[str, Any] | None, known: Known | None = None
) -> dict[str, Any]:
    """Typed parameter values: the submitted ones over the defaults. With ``known``, a
    datapath value must name a datastore of the workspace.

    Raises:
        GraphError: unknown names, wrong types, missing required values (all at once).
    """
    specs: dict[str, Any] = graph.get("parameters", {}) or {}
    given = dict(values or {})
    problems = [
        Problem(
            f"pipeline_parameters.{name}",
            f"unknown parameter; the pipeline has: {', '.join(sorted(specs)) or 'none'}.",
        )
        for name in given
        if name not in specs
    ]
    resolved: dict[str, Any] = {}
    for name, spec in specs.items():
        kind = spec["type"]
        if name in given:
            value = given[name]
            if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if kind == "datapath":
                if (why := _datapath_problem(value, known)) is not None:
                    problems.append(Problem(f"pipeline_parameters.{name}", why))
                    continue
            elif not _is_type(value, kind):
                problems.append(
                    Problem(f"pipeline_parameters.{name}", f"{value!r} is not of type {kind}.")
                )
                continue
            resolved[name] = value
        elif spec.get("default") is not None:
            resolved[name] = spec["default"]
        else:
            problems.append(
                Problem(f"pipeline_parameters.{name}", "required: the parameter has no default.")
            )
    if problems:
        raise GraphError(problems)
    return resolved


def max_retries_of(spec: Mapping[str, Any]) -> int:
    """How many times a step may be retried; a missing or null ``max_retries`` is the default."""
    value = spec.get("max_retries")
    return DEFAULT_MAX_RETRIES if value is None else int(value)


def as_argument(value: Any) -> str:
    """How a parameter value reaches a script's command line."""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)
