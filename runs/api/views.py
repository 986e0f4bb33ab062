"""REST API for runs: submit, list, inspect, cancel, tag; steps with their logs, metrics and
outputs; experiments. Thin: look up, validate, call one service, answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Max, OuterRef, QuerySet, Subquery
from django.shortcuts import get_object_or_404
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from pipelines.models import Pipeline
from portal.api.views import WorkspaceScopedMixin, actor_for, parse_uuid, validated
from portal.models import Role
from runs import services
from runs.api import serializers as s
from runs.downloads import log_download
from runs.logs import LOG_NAMES, read_chunks
from runs.models import Experiment, LogChunk, Metric, PipelineRun, Status, StepRun, tagged

LOG_LIMIT = 10_000


class RunCursor(CursorPagination):
    """Keyset pages, newest first: page 1,000 costs what page 1 does."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def _when(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    value = parse_datetime(raw)
    if value is None:
        raise ValidationError({name: [f"{raw!r} is not an ISO 8601 date-time."]})
    return value


def run_queryset(workspace: Any) -> QuerySet[PipelineRun]:
    return PipelineRun.objects.filter(workspace=workspace).select_related(
        "experiment", "pipeline", "submitted_by", "workspace"
    )


def filter_runs(qs: QuerySet[PipelineRun], request: Request) -> QuerySet[PipelineRun]:
    """The runs list's filters, shared by every caller of the API."""
    params = request.query_params
    if statuses := [v for v in params.get("status", "").split(",") if v]:
        unknown = sorted(set(statuses) - set(Status.values))
        if unknown:
            raise ValidationError(
                {"status": [f"Unknown status {unknown[0]!r}; one of: {', '.join(Status.values)}."]}
            )
        qs = qs.filter(status__in=statuses)
    if experiment := params.get("experiment"):
        qs = qs.filter(experiment__name=experiment)
    if pipeline := params.get("pipeline"):
        qs = qs.filter(pipeline__uuid=parse_uuid(pipeline))
    if submitter := params.get("submitted_by"):
        qs = qs.filter(submitted_by__username=submitter)
    if source := params.get("source"):
        qs = qs.filter(source=source)
    for tag in params.getlist("tag"):
        key, sep, value = tag.partition(":")
        if not key:
            raise ValidationError({"tag": ["Write tag=<key> or tag=<key>:<value>."]})
        qs = tagged(qs, key, value if sep else None)
    if after := _when(request, "created_after"):
        qs = qs.filter(created_at__gte=after)
    if before := _when(request, "created_before"):
        qs = qs.filter(created_at__lt=before)
    return qs


def metrics_summary(metrics: list[Metric]) -> dict[str, Any]:
    """Azure's ``get_metrics()`` shape: a name logged once → its value, several times → the
    list of values; rows → columns of values; lists, tables and images as logged."""
    out: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for metric in metrics:
        if metric.kind == "tag":
            continue
        seen[metric.name] = seen.get(metric.name, 0) + 1
        if metric.kind == "row" and isinstance(metric.value, dict):
            table = out.setdefault(metric.name, {})
            for column, value in metric.value.items():
                table.setdefault(column, []).append(value)
        elif metric.kind == "scalar":
            if seen[metric.name] == 1:
                out[metric.name] = metric.value
            elif seen[metric.name] == 2:
                out[metric.name] = [out[metric.name], metric.value]
            else:
                out[metric.name].append(metric.value)
        else:
            out[metric.name] = metric.value
    return out


class RunViewSet(WorkspaceScopedMixin, viewsets.GenericViewSet):
    """Pipeline runs of a workspace."""

    lookup_field = "uuid"
    lookup_value_regex = "[^/]+"
    serializer_class = s.RunSerializer
    pagination_class = RunCursor

    def get_queryset(self) -> QuerySet[PipelineRun]:
        return run_queryset(self.access.workspace)

    def get_object(self) -> PipelineRun:
        return get_object_or_404(self.get_queryset(), uuid=parse_uuid(self.kwargs["uuid"]))

    def _detail(self, run: PipelineRun, code: int = status.HTTP_200_OK) -> Response:
        return Response(
            s.RunDetailSerializer(run, context={"request": self.request}).data, status=code
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, description="Comma-separated."),
            OpenApiParameter("experiment", OpenApiTypes.STR),
            OpenApiParameter("pipeline", OpenApiTypes.UUID),
            OpenApiParameter("submitted_by", OpenApiTypes.STR, description="A username."),
            OpenApiParameter("source", OpenApiTypes.STR),
            OpenApiParameter("tag", OpenApiTypes.STR, many=True, description="key or key:value"),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME),
        ],
        responses=s.RunSerializer(many=True),
    )
    def list(self, request: Request, workspace_id: str) -> Response:
        page = self.paginate_queryset(filter_runs(self.get_queryset(), request))
        data = s.RunSerializer(page, many=True, context={"request": request}).data
        return self.get_paginated_response(data)

    @extend_schema(request=s.RunSubmitSerializer, responses={201: s.RunDetailSerializer})
    def create(self, request: Request, workspace_id: str) -> Response:
        """Submit a run of a graph (stored as a pipeline, or found if stored already) or of a
        stored pipeline. 400 lists every problem of the graph and parameters; nothing is
        stored then."""
        self.access.require(Role.CONTRIBUTOR, "submitting runs")
        data = validated(s.RunSubmitSerializer, request)
        pipeline = None
        if data["pipeline_id"] is not None:
            pipeline = get_object_or_404(
                Pipeline, workspace=self.access.workspace, uuid=data["pipeline_id"]
            )
        run = services.submit_pipeline_run(
            actor=actor_for(request),
            workspace=self.access.workspace,
            experiment_name=data["experiment_name"],
            graph=data["graph"],
            pipeline=pipeline,
            pipeline_name=data["pipeline_name"],
            description=data["description"],
            pipeline_parameters=data["parameters"],
            tags=data["tags"],
            regenerate_outputs=data["regenerate_outputs"],
            continue_on_step_failure=data["continue_on_step_failure"],
            source=data["source"],
        )
        return self._detail(self.get_queryset().get(pk=run.pk), status.HTTP_201_CREATED)

    @extend_schema(responses=s.RunDetailSerializer)
    def retrieve(self, request: Request, workspace_id: str, uuid: str) -> Response:
        return self._detail(self.get_object())

    @extend_schema(request=None, responses=s.RunDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, workspace_id: str, uuid: str) -> Response:
        """Cancel the run: waiting steps end at once, running ones are stopped."""
        self.access.require(Role.CONTRIBUTOR, "canceling runs")
        run = services.cancel_run(actor=actor_for(request), run=self.get_object())
        return self._detail(self.get_queryset().get(pk=run.pk))

    @extend_schema(request=s.TagsSerializer, responses=s.RunDetailSerializer)
    @action(detail=True, methods=["post"])
    def tags(self, request: Request, workspace_id: str, uuid: str) -> Response:
        """Add or change tags (merged into the run's tags)."""
        self.access.require(Role.CONTRIBUTOR, "tagging runs")
        tags = validated(s.TagsSerializer, request)["tags"]
        run = services.tag_run(actor=actor_for(request), run=self.get_object(), tags=tags)
        return self._detail(self.get_queryset().get(pk=run.pk))

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def metrics(self, request: Request, workspace_id: str, uuid: str) -> Response:
        """Every step's metrics, Azure-like: step name → metric name → value(s)."""
        run = self.get_object()
        steps = list(run.steps.order_by("id"))
        sources = {step.pk: (step.reused_from_id or step.pk) for step in steps}
        by_step: dict[int, list[Metric]] = {}
        for metric in Metric.objects.filter(step_run_id__in=set(sources.values())).order_by(
            "step_run_id", "id"
        ):
            by_step.setdefault(metric.step_run_id, []).append(metric)
        return Response(
            {step.name: metrics_summary(by_step.get(sources[step.pk], [])) for step in steps}
        )


class StepViewSet(WorkspaceScopedMixin, viewsets.GenericViewSet):
    """Steps of a run. A reused step answers with its origin's logs, metrics and outputs."""

    serializer_class = s.StepSerializer

    def run(self) -> PipelineRun:
        return get_object_or_404(
            PipelineRun, workspace=self.access.workspace, uuid=parse_uuid(self.kwargs["run_id"])
        )

    def get_queryset(self) -> QuerySet[StepRun]:
        return StepRun.objects.filter(run=self.run()).select_related("reused_from__run", "run")

    def get_object(self) -> StepRun:
        return get_object_or_404(self.get_queryset(), uuid=parse_uuid(self.kwargs["step_id"]))

    def list(self, request: Request, workspace_id: str, run_id: str) -> Response:
        return Response(s.StepSerializer(self.get_queryset().order_by("id"), many=True).data)

    def retrieve(self, request: Request, workspace_id: str, run_id: str, step_id: str) -> Response:
        return Response(s.StepSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=s.StepSerializer)
    def cancel(self, request: Request, workspace_id: str, run_id: str, step_id: str) -> Response:
        self.access.require(Role.CONTRIBUTOR, "canceling steps")
        step = services.cancel_step(actor=actor_for(request), step=self.get_object())
        return Response(s.StepSerializer(self.get_queryset().get(pk=step.pk)).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("log", OpenApiTypes.STR, enum=LOG_NAMES),
            OpenApiParameter("after", OpenApiTypes.INT, description="Lines after this seq."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"At most {LOG_LIMIT}."),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "text"]),
        ],
        responses=s.LogsSerializer,
    )
    def logs(self, request: Request, workspace_id: str, run_id: str, step_id: str) -> Any:
        """A step's log lines ``[seq, stream, text]`` after a sequence number, or the whole
        log as text (``format=text``). Logs: driver (the script), prep, build, post."""
        step = self.get_object()
        source = step.reused_from or step
        params = request.query_params
        log_name = params.get("log", "driver")
        if log_name not in LOG_NAMES:
            raise ValidationError({"log": [f"One of: {', '.join(LOG_NAMES)}."]})
        try:
            after = int(params.get("after", 0))
            limit = int(params.get("limit", LOG_LIMIT))
        except ValueError:
            raise ValidationError({"after": ["after and limit are whole numbers."]}) from None
        if after < 0 or not 1 <= limit <= LOG_LIMIT:
            raise ValidationError({"limit": [f"after ≥ 0 and 1 ≤ limit ≤ {LOG_LIMIT}."]})
        if params.get("format") == "text":
            return log_download(step, log_name)
        lines: list[list[Any]] = []
        last = after
        more = False
        # Read a bounded window of sequence numbers; all logs of a step share one sequence.
        for name, chunk in read_chunks(source, after=after, upto=after + limit * 4):
            last = max(last, chunk[-1][0])
            if name == log_name:
                lines.extend(chunk)
        if len(lines) > limit:
            lines = lines[:limit]
            last = lines[-1][0]
            more = True
        elif last < source.log_seq:
            more = True
        present = sorted(
            set(LogChunk.objects.filter(step_run=source).values_list("log", flat=True).distinct()),
            key=LOG_NAMES.index,
        )
        return Response(
            {
                "log": log_name,
                "lines": lines,
                "last_seq": last,
                "more": more,
                "logs": present,
                "reused_from": str(source.uuid) if source is not step else None,
            }
        )

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def metrics(self, request: Request, workspace_id: str, run_id: str, step_id: str) -> Response:
        step = self.get_object()
        source = step.reused_from or step
        metrics = list(Metric.objects.filter(step_run=source).order_by("id"))
        return Response(
            {
                "metrics": [
                    {"name": m.name, "kind": m.kind, "value": m.value, "seq": m.seq}
                    for m in metrics
                ],
                "summary": metrics_summary(metrics),
            }
        )

    @extend_schema(responses=s.OutputSerializer(many=True))
    def outputs(self, request: Request, workspace_id: str, run_id: str, step_id: str) -> Response:
        step = self.get_object()
        return Response(
            {"outputs": s.OutputSerializer(step.outputs.order_by("name"), many=True).data}
        )


class ExperimentViewSet(WorkspaceScopedMixin, viewsets.GenericViewSet):
    """Experiments: named groups of runs."""

    serializer_class = s.ExperimentSerializer

    def get_queryset(self) -> QuerySet[Experiment]:
        last = PipelineRun.objects.filter(experiment=OuterRef("pk")).order_by("-created_at", "-id")
        return (
            Experiment.objects.filter(workspace=self.access.workspace)
            .annotate(
                run_count=Count("runs"),
                last_run_at=Max("runs__created_at"),
                last_status=Subquery(last.values("status")[:1]),
            )
            .order_by("name")
        )

    def list(self, request: Request, workspace_id: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ExperimentSerializer(page, many=True).data)
