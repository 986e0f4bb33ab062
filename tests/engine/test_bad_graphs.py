"""submit_pipeline_run refuses a bad graph whole: a django ValidationError that names where each
problem is, and nothing stored (no experiment, run, step run or audit event)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from pipelines.models import Pipeline
from portal import services
from portal.models import AuditEvent, Workspace
from runs.models import Experiment, PipelineRun, StepRun
from runs.services import submit_pipeline_run

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MODELS = (Experiment, PipelineRun, StepRun, AuditEvent, Pipeline)


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def step(name: str, digest: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "script": "train.py",
        "snapshot": digest,
        "compute_target": "local",
        **extra,
    }


def bad_graphs(digest: str) -> dict[str, tuple[Any, dict[str, Any] | None, str, str]]:
    """case → (graph, pipeline_parameters, where, words of the message)."""
    p = {"n": {"type": "int", "default": 1}, "rate": {"type": "float"}}
    return {
        "cycle": (
            {"steps": [step("a", digest, run_after=["b"]), step("b", digest, run_after=["a"])]},
            None,
            "steps",
            "cycle: a → b → a",
        ),
        "input never produced": (
            {"steps": [step("train", digest, inputs={"data": {"pipeline_data": "prepared"}})]},
            None,
            "steps[0] (train).inputs.data",
            "never produced",
        ),
        "output produced twice": (
            {
                "steps": [
                    step("a", digest, outputs={"model": {}}),
                    step("b", digest, outputs={"model": {}}),
                ]
            },
            None,
            "steps[1] (b).outputs.model",
            "already produced by step 'a'",
        ),
        "unknown compute target": (
            {"steps": [step("a", digest, compute_target="gpu-cluster")]},
            None,
            "steps[0] (a).compute_target",
            "'gpu-cluster'",
        ),
        "unknown datastore": (
            {"steps": [step("a", digest, inputs={"raw": {"datastore": "nope", "path": "x"}})]},
            None,
            "steps[0] (a).inputs.raw",
            "unknown datastore 'nope'",
        ),
        "unknown snapshot": (
            {"steps": [step("a", "f" * 64)]},
            None,
            "steps[0] (a).snapshot",
            "unknown snapshot",
        ),
        "script missing from the snapshot": (
            {"steps": [step("a", digest, script="ghost.py")]},
            None,
            "steps[0] (a).script",
            "'ghost.py'",
        ),
        "bad argument reference": (
            {"steps": [step("a", digest, arguments=["--x", {"output": "model"}])]},
            None,
            "steps[0] (a).arguments[1]",
            "output 'model'",
        ),
        "run_after unknown": (
            {"steps": [step("a", digest, run_after=["ghost"])]},
            None,
            "steps[0] (a).run_after",
            "'ghost'",
        ),
        "run_after itself": (
            {"steps": [step("a", digest, run_after=["a"])]},
            None,
            "steps[0] (a).run_after",
            "itself",
        ),
        "bad timeout": (
            {"steps": [step("a", digest, timeout_seconds=-1)]},
            None,
            "steps[0] (a).timeout_seconds",
            "whole number",
        ),
        "unknown parameter": (
            {"parameters": p, "steps": [step("a", digest)]},
            {"rate": 0.1, "epochs": 3},
            "pipeline_parameters.epochs",
            "unknown parameter",
        ),
        "bool is not int": (
            {"parameters": p, "steps": [step("a", digest)]},
            {"rate": 0.1, "n": True},
            "pipeline_parameters.n",
            "not of type int",
        ),
        "missing required parameter": (
            {"parameters": p, "steps": [step("a", digest)]},
            {},
            "pipeline_parameters.rate",
            "required",
        ),
        "no steps": ({"steps": []}, None, "steps", "at least one step"),
        "a graph that is not an object": ([step("a", digest)], None, "graph", "object"),
    }


@pytest.fixture
def digest(snapshot_of: Callable[[dict[str, str]], str], data_root: Any) -> str:
    return snapshot_of({"train.py": "print('hi')\n"})


CASES = [
    "cycle",
    "input never produced",
    "output produced twice",
    "unknown compute target",
    "unknown datastore",
    "unknown snapshot",
    "script missing from the snapshot",
    "bad argument reference",
    "run_after unknown",
    "run_after itself",
    "bad timeout",
    "unknown parameter",
    "bool is not int",
    "missing required parameter",
    "no steps",
    "a graph that is not an object",
]


def submit(workspace: Workspace, user: Any, graph: Any, **kwargs: Any) -> PipelineRun:
    return submit_pipeline_run(
        actor=services.Actor(user=user),
        workspace=workspace,
        experiment_name="bad",
        graph=graph,
        **kwargs,
    )


@pytest.mark.parametrize("case", CASES)
def test_a_bad_graph_is_refused_whole_and_nothing_is_stored(case, engine_ws, alice, digest):
    graph, parameters, where, words = bad_graphs(digest)[case]
    before = counts()
    with pytest.raises(ValidationError) as caught:
        submit(engine_ws, alice, graph, pipeline_parameters=parameters)
    problems = caught.value.message_dict
    assert where in problems, problems
    assert any(words in message for message in problems[where]), problems[where]
    assert counts() == before


def test_every_problem_is_in_the_error_each_under_its_place(engine_ws, alice, digest):
    graph = {
        "steps": [
            step("a", digest, compute_target="nowhere"),
            step("b", digest, script="ghost.py"),
            step("c", digest, inputs={"x": {"pipeline_data": "never"}}),
            step("d", digest, timeout_seconds=-5),
        ]
    }
    before = counts()
    with pytest.raises(ValidationError) as caught:
        submit(engine_ws, alice, graph)
    assert sorted(caught.value.message_dict) == [
        "steps[0] (a).compute_target",
        "steps[1] (b).script",
        "steps[2] (c).inputs.x",
        "steps[3] (d).timeout_seconds",
    ]
    assert counts() == before


def test_two_problems_in_the_same_place_are_both_reported(engine_ws, alice, digest):
    """Two unknown run_after names share one place: neither message may be dropped."""
    graph = {"steps": [step("a", digest, run_after=["ghost", "phantom"])]}
    with pytest.raises(ValidationError) as caught:
        submit(engine_ws, alice, graph)
    messages = " ".join(caught.value.message_dict["steps[0] (a).run_after"])
    assert "'ghost'" in messages
    assert "'phantom'" in messages


def test_a_snapshot_of_another_workspace_is_unknown(engine_ws, alice, charlie, other, digest):
    """The digest exists, but in engine_ws: charlie's workspace cannot run it."""
    graph = {"steps": [step("a", digest)]}
    before = counts()
    with pytest.raises(ValidationError) as caught:
        submit(other, charlie, graph)
    problems = caught.value.message_dict
    assert "steps[0] (a).snapshot" in problems
    assert "steps[0] (a).compute_target" not in problems  # `local` exists in every workspace
    assert counts() == before


@pytest.mark.parametrize("tags", [["x"], {"k": 1}, {"k": None}])
def test_bad_tags_are_refused_and_nothing_is_stored(engine_ws, alice, digest, tags):
    before = counts()
    with pytest.raises(ValidationError) as caught:
        submit(engine_ws, alice, {"steps": [step("a", digest)]}, tags=tags)
    assert "tags" in caught.value.message_dict
    assert counts() == before


@pytest.mark.parametrize("name", ["", "   ", "x" * 256])
def test_a_bad_experiment_name_is_refused_and_nothing_is_stored(engine_ws, alice, digest, name):
    before = counts()
    with pytest.raises(ValidationError) as caught:
        submit_pipeline_run(
            actor=services.Actor(user=alice),
            workspace=engine_ws,
            experiment_name=name,
            graph={"steps": [step("a", digest)]},
        )
    assert "experiment_name" in caught.value.message_dict
    assert counts() == before


def test_a_good_graph_is_stored_with_its_steps_and_two_audit_events(engine_ws, alice, digest):
    """The counterpart of the refusals: the same helper stores a good graph (as a new
    pipeline, then its run)."""
    before = counts()
    run = submit(
        engine_ws,
        alice,
        {"steps": [step("a", digest), step("b", digest, run_after=["a"])]},
    )
    after = counts()
    assert after["PipelineRun"] == before["PipelineRun"] + 1
    assert after["StepRun"] == before["StepRun"] + 2
    assert after["Pipeline"] == before["Pipeline"] + 1
    assert after["AuditEvent"] == before["AuditEvent"] + 2
    assert AuditEvent.objects.order_by("-id")[0].verb == "run.submit"
    assert dict(run.steps.values_list("name", "depends_on")) == {"a": [], "b": ["a"]}
