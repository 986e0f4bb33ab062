"""Pipeline pages: the workspace's pipelines (search, sort, pages) and one pipeline (its graph
drawn by runs/dag.py, each step's definition, parameters and runs), with a typed form that
submits a run of it. Pipelines are created by submitting runs (runs/services.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import F, Q
from django.db.models.fields.json import KeyTransform
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from pipelines.forms import SubmitRunForm, field_name
from pipelines.models import Pipeline, with_run_summary
from portal.access import Access, get_workspace_for_user
from portal.models import Role
from portal.services import Actor
from portal.views import _page
from runs.dag import layout
from runs.graph import DEFAULT_MAX_RETRIES
from runs.models import PipelineRun
from runs.services import submit_pipeline_run
from runs.views import decorate, run_rows

PAGE_SIZE = 25
RECENT_RUNS = 20

# sort key → (expression, label); "-" first means newest/largest first
SORTS = {
    "-created": ("created_at", True, "Newest first"),
    "created": ("created_at", False, "Oldest first"),
    "name": ("name", False, "Name A to Z"),
    "-name": ("name", True, "Name Z to A"),
    "-steps": ("step_count", True, "Most steps"),
    "steps": ("step_count", False, "Fewest steps"),
    "-last_run": ("last_run_at", True, "Latest run first"),
}


@login_required
@require_GET
def pipeline_list(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    q = (request.GET.get("q") or "").strip()[:255]
    sort = request.GET.get("sort") or "-created"
    if sort not in SORTS:
        sort = "-created"
    field, descending, _ = SORTS[sort]
    # The graph stays in the database; parameters come from a JSON key, not the whole graph.
    pipelines = (
        with_run_summary(Pipeline.objects.filter(workspace=access.workspace))
        .select_related("created_by")
        .only(
            "uuid",
            "name",
            "description",
            "digest",
            "step_count",
            "created_at",
            "created_by__username",
        )
        .annotate(parameter_specs=KeyTransform("parameters", "graph"))
        .order_by(
            F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_first=True),
            "-id",
        )
    )
    if q:
        pipelines = pipelines.filter(
            Q(name__icontains=q) | Q(description__icontains=q) | Q(digest__startswith=q.lower())
        )
    page = Paginator(pipelines, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return _page(
        request,
        "pipelines/pipeline_list.html",
        access,
        page=page,
        q=q,
        sort=sort,
        sorts=[(key, label) for key, (_, _, label) in SORTS.items()],
        query=query.urlencode(),
    )


# --- one pipeline ------------------------------------------------------------------------------


@dataclass
class Argument:
    """One command-line argument of a step: plain text, or a reference shown as such."""

    kind: str  # "text", "input", "output", "parameter"
    value: str


@dataclass
class StepView:
    index: int
    name: str
    anchor: str
    script: str
    arguments: list[Argument]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    compute_target: str
    environment: dict[str, Any]
    allow_reuse: bool
    run_after: list[str]
    timeout_seconds: int | None
    max_retries: int
    snapshot: str


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _arguments(raw: Any) -> list[Argument]:
    result = []
    for arg in raw if isinstance(raw, list) else []:
        if isinstance(arg, dict) and len(arg) == 1:
            ((kind, ref),) = arg.items()
            result.append(Argument(str(kind), str(ref)))
        else:
            result.append(Argument("text", str(arg)))
    return result


def step_views(graph: dict[str, Any]) -> list[StepView]:
    """The steps of a graph with what a reader needs, every field tolerated missing."""
    steps = [s for s in graph.get("steps") or [] if isinstance(s, dict)]
    # output name → (the step producing it, that step's anchor on the page)
    producers = {
        output: (str(s.get("name")), f"step-{index}")
        for index, s in enumerate(steps)
        for output in _dict(s.get("outputs"))
    }
    views = []
    for index, step in enumerate(steps):
        inputs = []
        for name, raw in _dict(step.get("inputs")).items():
            spec = _dict(raw)
            inputs.append(
                {
                    "name": name,
                    "pipeline_data": spec.get("pipeline_data"),
                    # (step name, its anchor on the page)
                    "producer": producers.get(str(spec.get("pipeline_data"))),
                    "datastore": spec.get("datastore"),
                    "path": spec.get("path", ""),
                    "mode": spec.get("mode", "mount"),
                }
            )
        outputs = [
            {"name": name, "datastore": _dict(spec).get("datastore") or "the default datastore"}
            for name, spec in _dict(step.get("outputs")).items()
        ]
        retries = step.get("max_retries")
        views.append(
            StepView(
                index=index,
                name=str(step.get("name", f"step {index}")),
                anchor=f"step-{index}",
                script=str(step.get("script") or ""),
                arguments=_arguments(step.get("arguments")),
                inputs=inputs,
                outputs=outputs,
                compute_target=str(step.get("compute_target") or ""),
                environment=_dict(step.get("environment")),
                allow_reuse=step.get("allow_reuse") is not False,
                run_after=[str(s) for s in step.get("run_after") or []],
                timeout_seconds=step.get("timeout_seconds"),
                max_retries=DEFAULT_MAX_RETRIES if retries is None else int(retries),
                snapshot=str(step.get("snapshot") or ""),
            )
        )
    return views


def _pipeline_of(access: Access, pipeline_id: str) -> Pipeline:
    try:
        pipeline = (
            Pipeline.objects.filter(workspace=access.workspace, uuid=pipeline_id)
            .select_related("created_by")
            .first()
        )
    except ValidationError:  # not a UUID
        pipeline = None
    if pipeline is None:
        raise Http404("No such pipeline in this workspace.")
    return pipeline


@login_required
@require_GET
def pipeline_detail(request: HttpRequest, workspace_id: str, pipeline_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    pipeline = _pipeline_of(access, pipeline_id)
    form = None
    if access.can(Role.CONTRIBUTOR):  # readers get no form (and no query for it)
        form = SubmitRunForm(
            parameters=pipeline.parameters,
            initial={"experiment_name": _experiment_for(pipeline)},
        )
    return _detail_page(request, access, pipeline, form)


def _experiment_for(pipeline: Pipeline) -> str:
    last = pipeline.runs.select_related("experiment").order_by("-created_at", "-id").first()
    return last.experiment.name if last else pipeline.name


def _detail_page(
    request: HttpRequest,
    access: Access,
    pipeline: Pipeline,
    form: SubmitRunForm | None,
    status: int = 200,
) -> HttpResponse:
    graph = pipeline.graph if isinstance(pipeline.graph, dict) else {}
    dag = layout(graph)
    steps = step_views(graph)
    anchors = {s.name: s.anchor for s in steps}
    for node in dag.nodes:
        node.href = f"#{anchors[node.name]}"
    runs = decorate(
        list(
            run_rows(PipelineRun.objects.filter(pipeline=pipeline)).order_by("-created_at", "-id")[
                :RECENT_RUNS
            ]
        )
    )
    # Other definitions under the same name: earlier or later versions of "this" pipeline.
    siblings = list(
        Pipeline.objects.filter(workspace=access.workspace, name=pipeline.name)
        .exclude(pk=pipeline.pk)
        .only("uuid", "digest", "step_count", "created_at")
        .order_by("-created_at", "-id")[:10]
    )
    return _page(
        request,
        "pipelines/pipeline_detail.html",
        access,
        status=status,
        pipeline=pipeline,
        dag=dag,
        steps=steps,
        parameters=sorted(pipeline.parameters.items()),
        runs=runs,
        siblings=siblings,
        recent_limit=RECENT_RUNS,
        form=form,
        can_write=form is not None,
    )


@login_required
@require_POST
def pipeline_submit(request: HttpRequest, workspace_id: str, pipeline_id: str) -> HttpResponse:
    """Submit a run of the pipeline with the form's parameter values (contributors)."""
    access = get_workspace_for_user(request.user, workspace_id)
    pipeline = _pipeline_of(access, pipeline_id)
    access.require(Role.CONTRIBUTOR, "submitting runs")
    form = SubmitRunForm(request.POST, parameters=pipeline.parameters)
    if form.is_valid():
        values = form.parameter_values()
        if form.is_valid():
            try:
                run = submit_pipeline_run(
                    actor=Actor(user=request.user, via="portal"),
                    workspace=access.workspace,
                    experiment_name=form.cleaned_data["experiment_name"],
                    pipeline=pipeline,
                    pipeline_parameters=values,
                    tags=form.cleaned_data["tags"],
                    regenerate_outputs=form.cleaned_data["regenerate_outputs"],
                    continue_on_step_failure=form.cleaned_data["continue_on_step_failure"],
                    source="portal",
                )
            except ValidationError as exc:
                for where, messages in exc.message_dict.items():
                    name = where.removeprefix("pipeline_parameters.")
                    target = field_name(name) if field_name(name) in form.fields else None
                    if where in form.fields:
                        target = where
                    form.add_error(target, messages)
            else:
                return redirect("run-detail", access.workspace.uuid, run.uuid)
    return _detail_page(request, access, pipeline, form, status=400)
