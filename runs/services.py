"""Writes of the engine: submitting and canceling runs. Each is atomic, records an audit
event, and schedules the orchestrator on commit."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from pipelines.models import Pipeline, Snapshot
from pipelines.services import clean_pipeline_name, store_pipeline
from portal.models import ComputeTarget, Datastore, Workspace
from portal.services import Actor, record_event
from runs.graph import GraphError, Known, Problem, resolve_parameters, validate
from runs.models import ACTIVE, TERMINAL, Experiment, PipelineRun, Status, StepRun
from runs.orchestrator import publish_step_later

EXPERIMENT_NAME_MAX = 255
SOURCES = ("sdk", "rest", "portal", "schedule")


def _graph_error(exc: GraphError) -> ValidationError:
    # Several problems can share one place (two unknown run_after names): keep them all.
    problems: dict[str, list[str]] = {}
    for problem in exc.problems:
        problems.setdefault(problem.where, []).append(problem.message)
    return ValidationError(problems)


def known_in(workspace: Workspace, graph: dict[str, Any]) -> Known:
    # The graph is not validated yet: any JSON may arrive here, and validate() reports it.
    steps = graph.get("steps") if isinstance(graph, dict) else None
    digests = {
        s["snapshot"]
        for s in (steps if isinstance(steps, list) else [])
        if isinstance(s, dict) and isinstance(s.get("snapshot"), str)
    }
    snapshots = {
        digest: manifest.keys()
        for digest, manifest in Snapshot.objects.filter(
            workspace=workspace, digest__in=digests
        ).values_list("digest", "manifest")
    }
    return Known(
        compute_targets=set(
            ComputeTarget.objects.filter(workspace=workspace).values_list("name", flat=True)
        ),
        datastores=set(
            Datastore.objects.filter(workspace=workspace).values_list("name", flat=True)
        ),
        snapshots=snapshots,
    )


def _check(
    workspace: Workspace,
    graph: Any,
    parameters: dict[str, Any] | None,
    local_snapshots: dict[str, list[str]] | None = None,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The graph's dependencies and the resolved parameter values (values are checked only
    when ``parameters`` is given). Raises ValidationError listing every problem of both."""
    known = known_in(workspace, graph)
    if local_snapshots:
        known.snapshots = {**local_snapshots, **known.snapshots}
    problems: list[Problem] = []
    deps: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    try:
        deps = validate(graph, known)
    except GraphError as exc:
        problems += exc.problems
    if (
        parameters is not None
        and isinstance(graph, dict)
        and isinstance(graph.get("parameters", {}), dict)
    ):
        try:
            values = resolve_parameters(graph, parameters, known)
        except GraphError as exc:
            problems += exc.problems
        except (KeyError, TypeError):
            pass  # a malformed parameter spec, already reported by validate()
    if problems:
        raise _graph_error(GraphError(problems))
    return deps, values


def validate_pipeline(
    workspace: Workspace,
    graph: dict[str, Any],
    parameters: dict[str, Any] | None = None,
    local_snapshots: dict[str, list[str]] | None = None,
) -> dict[str, list[str]]:
    """Check a graph (and parameter values, when given: a stored pipeline may leave a
    parameter without a default, to be given at each submission) against the workspace;
    raise ValidationError listing every problem, keyed by where it is. ``local_snapshots``
    (digest → file paths) describes source directories a client has not uploaded yet, so a
    graph can be checked before anything is sent."""
    return _check(workspace, graph, parameters, local_snapshots)[0]


def submit_pipeline_run(
    *,
    actor: Actor,
    workspace: Workspace,
    experiment_name: str,
    graph: dict[str, Any] | None = None,
    pipeline: Pipeline | None = None,
    pipeline_name: str | None = None,
    description: str = "",
    pipeline_parameters: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    regenerate_outputs: bool = False,
    continue_on_step_failure: bool = False,
    source: str = "sdk",
) -> PipelineRun:
    """Validate a graph (or a stored pipeline's) and its parameters, then store the pipeline
    (unless the same graph is stored already), the run and its steps in one transaction and
    start it on commit.

    Raises:
        ValidationError: every problem with the graph or the parameters; nothing is stored.
    """
    from runs.tasks import advance

    name = experiment_name.strip() if isinstance(experiment_name, str) else ""
    if not name or len(name) > EXPERIMENT_NAME_MAX:
        raise ValidationError(
            {"experiment_name": f"Give a name of 1 to {EXPERIMENT_NAME_MAX} characters."}
        )
    if pipeline is not None:
        graph = pipeline.graph
    if source not in SOURCES:
        raise ValidationError({"source": f"One of: {', '.join(SOURCES)}."})
    if pipeline_parameters is not None and not isinstance(pipeline_parameters, dict):
        raise ValidationError({"pipeline_parameters": "Give an object of name → value."})
    deps, values = _check(workspace, graph, pipeline_parameters or {})
    assert graph is not None
    title = clean_pipeline_name(pipeline_name, name)
    if tags is not None and (
        not isinstance(tags, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise ValidationError({"tags": "Tags are text keys with text values."})
    targets = {t.name: t for t in ComputeTarget.objects.filter(workspace=workspace)}
    with transaction.atomic():
        if pipeline is None:
            pipeline, _ = store_pipeline(
                actor=actor, workspace=workspace, graph=graph, name=title, description=description
            )
        experiment, _ = Experiment.objects.get_or_create(workspace=workspace, name=name)
        run = PipelineRun.objects.create(
            workspace=workspace,
            experiment=experiment,
            pipeline=pipeline,
            graph=graph,
            parameters=values,
            tags=dict(tags or {}),
            source=source,
            submitted_by=actor.user,
            continue_on_step_failure=continue_on_step_failure,
            regenerate_outputs=regenerate_outputs,
        )
        StepRun.objects.bulk_create(
            [
                StepRun(
                    run=run,
                    name=step["name"],
                    spec=step,
                    depends_on=deps[step["name"]],
                    compute_target=targets[step["compute_target"]],
                )
                for step in graph["steps"]
            ]
        )
        record_event(
            actor=actor,
            workspace=workspace,
            verb="run.submit",
            obj=run,
            object_repr=f"{name} / {run.uuid}",
            data={"steps": len(graph["steps"]), "source": source},
        )
        transaction.on_commit(lambda: advance.delay(run.pk))
    return run


@transaction.atomic
def cancel_run(*, actor: Actor, run: PipelineRun) -> PipelineRun:
    """Cancel a run: waiting steps end at once, running ones are stopped (TERM, grace, KILL)
    by their worker. Canceling a finished run changes nothing."""
    from runs.tasks import advance

    if run.status in TERMINAL:
        return run
    PipelineRun.objects.filter(pk=run.pk).exclude(status__in=TERMINAL).update(
        status=Status.CANCEL_REQUESTED
    )
    run.status = Status.CANCEL_REQUESTED
    now = timezone.now()
    for step in run.steps.exclude(status__in=TERMINAL):
        _cancel_step(run, step, now)
    record_event(actor=actor, workspace=run.workspace, verb="run.cancel", obj=run)
    transaction.on_commit(lambda: advance.delay(run.pk))
    return run


def _cancel_step(run: PipelineRun, step: StepRun, now: Any) -> None:
    if step.status in (Status.NOT_STARTED, Status.QUEUED):
        done = StepRun.objects.filter(pk=step.pk, status=step.status).update(
            status=Status.CANCELED, error="Canceled on request.", finished_at=now
        )
        if done:
            step.status = Status.CANCELED
            publish_step_later(run, step)
    elif step.status in ACTIVE:
        done = StepRun.objects.filter(pk=step.pk, status=step.status).update(
            status=Status.CANCEL_REQUESTED
        )
        if done:
            step.status = Status.CANCEL_REQUESTED
            publish_step_later(run, step)


@transaction.atomic
def cancel_step(*, actor: Actor, step: StepRun) -> StepRun:
    """Cancel one step (its dependants are then skipped)."""
    from runs.tasks import advance

    if step.status in TERMINAL:
        return step
    _cancel_step(step.run, step, timezone.now())
    record_event(
        actor=actor,
        workspace=step.run.workspace,
        verb="step.cancel",
        obj=step,
        object_repr=step.name,
    )
    transaction.on_commit(lambda: advance.delay(step.run_id))
    return step


TAG_MAX = 100


@transaction.atomic
def tag_run(*, actor: Actor, run: PipelineRun, tags: dict[str, str]) -> PipelineRun:
    """Merge tags into a run's tags (a value of "" keeps the key with an empty value).

    Raises:
        ValidationError: not text → text, or more than TAG_MAX tags in all.
    """
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and k.strip() and isinstance(v, str) for k, v in tags.items()
    ):
        raise ValidationError({"tags": "Tags are non-empty text keys with text values."})
    locked = PipelineRun.objects.select_for_update().get(pk=run.pk)
    merged = {**locked.tags, **tags}
    if len(merged) > TAG_MAX:
        raise ValidationError({"tags": f"A run has at most {TAG_MAX} tags."})
    PipelineRun.objects.filter(pk=run.pk).update(tags=merged)
    run.tags = merged
    record_event(
        actor=actor,
        workspace=run.workspace,
        verb="run.tag",
        obj=run,
        object_repr=str(run.uuid),
        data={"tags": sorted(tags)},
    )
    return run
