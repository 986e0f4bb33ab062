"""runs.graph without a database: validation reports every problem at once, naming where it is,
and parameter values are resolved with their types checked."""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest

from runs.graph import (
    MAX_STEPS,
    GraphError,
    Known,
    Problem,
    find_cycle,
    resolve_parameters,
    validate,
)

SNAP = "a" * 64


def known(**overrides: Any) -> Known:
    base = Known(
        compute_targets={"local", "docker"},
        datastores={"workspaceblobstore", "workspacefilestore"},
        snapshots={SNAP: ["prepare.py", "train.py", "pkg/score.py"]},
    )
    for key, value in overrides.items():
        setattr(base, key, value)
    return base


def step(name: str, script: str = "train.py", **extra: Any) -> dict[str, Any]:
    return {"name": name, "script": script, "snapshot": SNAP, "compute_target": "local", **extra}


def good_graph() -> dict[str, Any]:
    return {
        "parameters": {
            "n": {"type": "int", "default": 3},
            "rate": {"type": "float", "default": 0.5},
            "name": {"type": "string", "default": "x"},
            "flag": {"type": "bool", "default": False},
        },
        "steps": [
            step(
                "prepare",
                "prepare.py",
                arguments=["--raw", {"input": "raw"}, "--out", {"output": "prepared"}],
                inputs={"raw": {"datastore": "workspacefilestore", "path": "raw/"}},
                outputs={"prepared": {"datastore": "workspaceblobstore"}},
            ),
            step(
                "train",
                arguments=[
                    {"input": "prepared"},
                    "--n",
                    {"parameter": "n"},
                    "--rate",
                    {"parameter": "rate"},
                    7,
                    1.5,
                    {"output": "model"},
                ],
                inputs={"prepared": {"pipeline_data": "prepared", "mode": "download"}},
                outputs={"model": {}},
                timeout_seconds=60,
                max_retries=0,
            ),
            step("score", "pkg/score.py", run_after=["train"], allow_reuse=False),
        ],
    }


def problems_of(graph: Any, k: Known | None = None) -> list[Problem]:
    with pytest.raises(GraphError) as caught:
        validate(graph, k or known())
    assert caught.value.problems, "GraphError without problems"
    # The exception's text carries every problem too.
    for problem in caught.value.problems:
        assert str(problem) in str(caught.value)
    return caught.value.problems


def only_problem(graph: Any, k: Known | None = None) -> Problem:
    problems = problems_of(graph, k)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# --- a good graph ---------------------------------------------------------------------------


def test_a_good_graph_validates_and_returns_each_steps_dependencies():
    assert validate(good_graph(), known()) == {
        "prepare": [],
        "train": ["prepare"],
        "score": ["train"],
    }


def test_validate_does_not_change_the_graph():
    graph = good_graph()
    before = copy.deepcopy(graph)
    validate(graph, known())
    assert graph == before


# --- cycles ---------------------------------------------------------------------------------


def test_a_cycle_through_pipeline_data_is_reported_with_its_path():
    graph = {
        "steps": [
            step("a", inputs={"x": {"pipeline_data": "from_c"}}, outputs={"from_a": {}}),
            step("b", inputs={"x": {"pipeline_data": "from_a"}}, outputs={"from_b": {}}),
            step("c", inputs={"x": {"pipeline_data": "from_b"}}, outputs={"from_c": {}}),
            step("d", inputs={"x": {"pipeline_data": "from_c"}}),
        ]
    }
    problem = only_problem(graph)
    assert problem.where == "steps"
    assert "cycle" in problem.message
    # The path names the steps of the cycle in order and closes it: a waits for c, c for b...
    assert "a → c → b → a" in problem.message
    assert "d" not in problem.message.split(":", 1)[1]


def test_a_cycle_through_run_after_is_reported():
    graph = {"steps": [step("a", run_after=["b"]), step("b", run_after=["a"])]}
    problem = only_problem(graph)
    assert "cycle" in problem.message
    assert "a → b → a" in problem.message


def test_find_cycle_on_an_acyclic_diamond_is_none():
    assert find_cycle({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) is None


# --- inputs and outputs ---------------------------------------------------------------------


def test_an_input_never_produced_is_reported_where_it_is_used():
    graph = {"steps": [step("train", inputs={"data": {"pipeline_data": "prepared"}})]}
    problem = only_problem(graph)
    assert problem.where == "steps[0] (train).inputs.data"
    assert "'prepared'" in problem.message
    assert "never produced" in problem.message


def test_an_output_produced_twice_names_both_steps():
    graph = {
        "steps": [
            step("first", outputs={"model": {}}),
            step("second", outputs={"model": {}}),
        ]
    }
    problem = only_problem(graph)
    assert problem.where == "steps[1] (second).outputs.model"
    assert "'first'" in problem.message
    assert "already produced" in problem.message


def test_a_step_consuming_its_own_output_is_reported():
    graph = {"steps": [step("loop", inputs={"x": {"pipeline_data": "o"}}, outputs={"o": {}})]}
    problem = only_problem(graph)
    assert problem.where == "steps[0] (loop).inputs.x"
    assert "own output" in problem.message


def test_an_input_of_no_known_kind_and_a_bad_mode_are_reported():
    graph = {
        "steps": [
            step(
                "s",
                inputs={
                    "nothing": {"path": "x/"},
                    "moded": {"datastore": "workspacefilestore", "path": "a", "mode": "copy"},
                },
            )
        ]
    }
    problems = {p.where: p.message for p in problems_of(graph)}
    assert set(problems) == {"steps[0] (s).inputs.nothing", "steps[0] (s).inputs.moded"}
    assert "pipeline_data" in problems["steps[0] (s).inputs.nothing"]
    assert "'copy'" in problems["steps[0] (s).inputs.moded"]


def test_a_non_object_output_spec_is_a_problem_not_a_crash():
    graph = {"steps": [step("s", outputs={"model": "workspaceblobstore"})]}
    problem = only_problem(graph)
    assert problem.where.startswith("steps[0] (s).outputs")


# Graphs arrive as JSON from the REST API and the SDK: any JSON shape must give problems (a 400
# with every problem), never an exception from inside validate (a 500), and never be accepted
# in a shape the orchestrator then misreads at run time.
MALFORMED = {
    "arguments as text": {"arguments": "--n 3"},
    "arguments as an object": {"arguments": {"--n": 3}},
    "argument reference to a list": {"arguments": [{"input": ["raw"]}]},
    "run_after entry a list": {"run_after": [["other"]]},
    "run_after as text": {"run_after": "other"},
    "snapshot a list": {"snapshot": [SNAP]},
    "compute target a list": {"compute_target": ["local"]},
    "pipeline_data a list": {"inputs": {"i": {"pipeline_data": ["o"]}}},
    "input datastore a list": {"inputs": {"i": {"datastore": ["workspacefilestore"]}}},
    "allow_reuse as text": {"allow_reuse": "no"},
    "environment as text": {"environment": "python3.11"},
}


@pytest.mark.parametrize("extra", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_piece_of_a_step_is_a_problem_not_a_crash(extra):
    graph = {"steps": [step("other"), {**step("s"), **extra}]}
    problems = problems_of(graph)
    assert any(p.where.startswith("steps[1] (s)") for p in problems), [str(p) for p in problems]


# --- what the workspace has -----------------------------------------------------------------


def test_an_unknown_compute_target_lists_the_known_ones():
    graph = {"steps": [step("s", compute_target="gpu-cluster")]}
    problem = only_problem(graph)
    assert problem.where == "steps[0] (s).compute_target"
    assert "'gpu-cluster'" in problem.message
    assert "docker, local" in problem.message


def test_a_missing_compute_target_is_reported():
    graph = {"steps": [{"name": "s", "script": "train.py", "snapshot": SNAP}]}
    assert only_problem(graph).where == "steps[0] (s).compute_target"


def test_an_unknown_datastore_is_reported_for_inputs_and_outputs():
    graph = {
        "steps": [
            step(
                "s",
                inputs={"raw": {"datastore": "nope_in", "path": "x"}},
                outputs={"model": {"datastore": "nope_out"}},
            )
        ]
    }
    problems = {p.where: p.message for p in problems_of(graph)}
    assert set(problems) == {"steps[0] (s).inputs.raw", "steps[0] (s).outputs.model"}
    assert "'nope_in'" in problems["steps[0] (s).inputs.raw"]
    assert "'nope_out'" in problems["steps[0] (s).outputs.model"]


def test_an_unknown_snapshot_is_reported():
    graph = {"steps": [step("s", snapshot="b" * 64)]}
    problem = only_problem(graph)
    assert problem.where == "steps[0] (s).snapshot"
    assert "unknown snapshot" in problem.message


def test_a_script_missing_from_the_snapshot_is_reported():
    graph = {"steps": [step("s", script="missing.py")]}
    problem = only_problem(graph)
    assert problem.where == "steps[0] (s).script"
    assert "'missing.py'" in problem.message


def test_a_step_without_a_script_is_reported():
    graph = {"steps": [{"name": "s", "snapshot": SNAP, "compute_target": "local"}]}
    assert only_problem(graph).where == "steps[0] (s).script"


# --- arguments ------------------------------------------------------------------------------


def test_bad_argument_references_are_each_reported_at_their_index():
    graph = {
        "parameters": {"n": {"type": "int", "default": 1}},
        "steps": [
            step(
                "s",
                arguments=[
                    "--ok",
                    {"parameter": "n"},
                    {"input": "undeclared"},
                    {"output": "undeclared"},
                    {"parameter": "nope"},
                    {"secret": "x"},
                    {"input": "a", "output": "b"},
                    True,
                    ["a", "list"],
                    None,
                ],
            )
        ],
    }
    problems = {p.where: p.message for p in problems_of(graph)}
    where = "steps[0] (s).arguments"
    assert set(problems) == {f"{where}[{i}]" for i in range(2, 10)}
    assert "input 'undeclared'" in problems[f"{where}[2]"]
    assert "output 'undeclared'" in problems[f"{where}[3]"]
    assert "'nope'" in problems[f"{where}[4]"]
    assert "'secret'" in problems[f"{where}[5]"]


# --- run_after and limits -------------------------------------------------------------------


def test_run_after_an_unknown_step_or_itself_is_reported():
    graph = {"steps": [step("a", run_after=["ghost"]), step("b", run_after=["b"])]}
    problems = problems_of(graph)
    assert len(problems) == 2
    by_where = {p.where: p.message for p in problems}
    assert "'ghost'" in by_where["steps[0] (a).run_after"]
    assert "itself" in by_where["steps[1] (b).run_after"]


@pytest.mark.parametrize("bad", [-1, "10", 2.5, True, 7 * 86400 + 1])
def test_a_bad_timeout_is_reported(bad):
    problem = only_problem({"steps": [step("s", timeout_seconds=bad)]})
    assert problem.where == "steps[0] (s).timeout_seconds"
    assert "whole number" in problem.message


@pytest.mark.parametrize("good", [None, 0, 1, 7 * 86400])
def test_a_timeout_in_range_is_accepted(good):
    validate({"steps": [step("s", timeout_seconds=good)]}, known())


@pytest.mark.parametrize("bad", [-1, 11, "2", False])
def test_bad_max_retries_is_reported(bad):
    problem = only_problem({"steps": [step("s", max_retries=bad)]})
    assert problem.where == "steps[0] (s).max_retries"


# --- names and shape ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "1starts-with-digit", "has/slash", "x" * 129, None, 7])
def test_a_bad_step_name_is_reported(name):
    assert only_problem({"steps": [step(name)]}).where == "steps[0].name"


def test_two_steps_with_one_name_are_reported():
    problem = only_problem({"steps": [step("same"), step("same")]})
    assert problem.where == "steps[1].name"
    assert "'same'" in problem.message


@pytest.mark.parametrize("graph", [None, [], "graph", {"steps": []}, {"steps": "x"}, {}])
def test_a_graph_without_steps_is_reported(graph):
    problems = problems_of(graph)
    assert problems[-1].where in ("graph", "steps")


def test_a_bad_parameter_declaration_is_reported_with_the_steps_problem():
    graph = {
        "parameters": {"n": {"type": "integer"}, "m": {"type": "int", "default": "3"}},
        "steps": [],
    }
    problems = {p.where for p in problems_of(graph)}
    assert problems == {"parameters.n", "parameters.m", "steps"}


def test_more_than_the_maximum_number_of_steps_is_refused():
    graph = {"steps": [step(f"s{i}") for i in range(MAX_STEPS + 1)]}
    problem = only_problem(graph)
    assert str(MAX_STEPS) in problem.message


# --- every problem at once ------------------------------------------------------------------


def test_four_problems_in_one_graph_are_four_problems():
    graph = {
        "steps": [
            step("a", compute_target="nowhere"),  # 1: unknown compute target
            step("b", script="ghost.py"),  # 2: script missing from the snapshot
            step("c", inputs={"x": {"pipeline_data": "never"}}),  # 3: input never produced
            step("d", timeout_seconds=-5),  # 4: bad timeout
        ]
    }
    problems = problems_of(graph)
    assert sorted(p.where for p in problems) == [
        "steps[0] (a).compute_target",
        "steps[1] (b).script",
        "steps[2] (c).inputs.x",
        "steps[3] (d).timeout_seconds",
    ]


def test_a_cycle_is_reported_together_with_the_other_problems():
    """Every problem at once: a cycle must not wait until the other problems are fixed."""
    graph = {
        "steps": [
            step("a", run_after=["b"]),
            step("b", run_after=["a"]),
            step("c", compute_target="nowhere"),
            step("d", script="ghost.py"),
            step("e", max_retries=99),
        ]
    }
    problems = problems_of(graph)
    assert len(problems) == 4, [str(p) for p in problems]
    assert any("cycle" in p.message for p in problems)


# --- size -----------------------------------------------------------------------------------


def test_a_5000_step_chain_validates_without_recursion_errors():
    steps = [step("s0", outputs={"o0": {}})]
    for i in range(1, MAX_STEPS):
        steps.append(
            step(f"s{i}", inputs={"x": {"pipeline_data": f"o{i - 1}"}}, outputs={f"o{i}": {}})
        )
    assert len(steps) == 5000
    assert sys.getrecursionlimit() < 5000
    deps = validate({"steps": steps}, known())
    assert deps["s0"] == []
    assert deps["s4999"] == ["s4998"]
    assert len(deps) == 5000


def test_a_5000_step_cycle_is_found_without_recursion_errors():
    steps = [step(f"s{i}", run_after=[f"s{(i + 1) % MAX_STEPS}"]) for i in range(MAX_STEPS)]
    problem = only_problem({"steps": steps})
    assert "cycle" in problem.message
    assert problem.message.count("→") == MAX_STEPS


# --- parameters -----------------------------------------------------------------------------


def params_graph() -> dict[str, Any]:
    return {
        "parameters": {
            "n": {"type": "int", "default": 3},
            "rate": {"type": "float", "default": 0.5},
            "label": {"type": "string", "default": "x"},
            "flag": {"type": "bool", "default": False},
            "required": {"type": "int"},
        }
    }


def param_problems(values: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(GraphError) as caught:
        resolve_parameters(params_graph(), values)
    return {p.where: p.message for p in caught.value.problems}


def test_parameters_resolve_over_their_defaults():
    assert resolve_parameters(params_graph(), {"required": 1, "n": 10, "flag": True}) == {
        "n": 10,
        "rate": 0.5,
        "label": "x",
        "flag": True,
        "required": 1,
    }


def test_an_int_is_accepted_for_a_float_and_becomes_a_float():
    resolved = resolve_parameters(params_graph(), {"required": 1, "rate": 2})
    assert resolved["rate"] == 2.0
    assert isinstance(resolved["rate"], float)


def test_an_unknown_parameter_lists_the_pipelines_parameters():
    problems = param_problems({"required": 1, "epochs": 3})
    assert set(problems) == {"pipeline_parameters.epochs"}
    assert "flag, label, n, rate, required" in problems["pipeline_parameters.epochs"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n", True),  # bool is not int
        ("n", 1.5),
        ("n", "3"),
        ("rate", False),  # bool is not a number
        ("rate", "0.1"),
        ("label", 3),
        ("flag", 1),  # int is not bool
        ("flag", "true"),
    ],
)
def test_a_value_of_the_wrong_type_is_reported(name, value):
    problems = param_problems({"required": 1, name: value})
    assert set(problems) == {f"pipeline_parameters.{name}"}
    assert "is not of type" in problems[f"pipeline_parameters.{name}"]


def test_a_missing_required_parameter_is_reported():
    problems = param_problems({})
    assert set(problems) == {"pipeline_parameters.required"}
    assert "required" in problems["pipeline_parameters.required"]


def test_every_parameter_problem_is_reported_at_once():
    problems = param_problems({"n": True, "rate": "fast", "nope": 1})
    assert set(problems) == {
        "pipeline_parameters.n",
        "pipeline_parameters.rate",
        "pipeline_parameters.nope",
        "pipeline_parameters.required",
    }


def test_a_graph_without_parameters_takes_none():
    assert resolve_parameters({"steps": []}, None) == {}
    with pytest.raises(GraphError):
        resolve_parameters({"steps": []}, {"x": 1})
