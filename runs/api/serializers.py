"""Shapes of the runs API: runs, steps, logs, metrics, outputs, experiments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import reverse
from rest_framework import serializers

from portal.api.serializers import StrictSerializer
from runs.models import Experiment, Output, PipelineRun, StepRun


def duration(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    return round((finished - started).total_seconds(), 3)


class RunSubmitSerializer(StrictSerializer):
    experiment_name = serializers.CharField(max_length=255)
    graph = serializers.JSONField(required=False, default=None)
    pipeline_id = serializers.UUIDField(required=False, default=None)
    pipeline_name = serializers.CharField(
        max_length=255, required=False, allow_blank=True, allow_null=True, default=None
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")
    parameters = serializers.JSONField(required=False, default=None)
    tags = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, default=None
    )
    regenerate_outputs = serializers.BooleanField(required=False, default=False)
    continue_on_step_failure = serializers.BooleanField(required=False, default=False)
    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field named "source"
        choices=["sdk", "rest"], required=False, default="rest"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (attrs.get("graph") is None) == (attrs.get("pipeline_id") is None):
            raise serializers.ValidationError(
                {"graph": ["Give either a graph or a pipeline_id (exactly one)."]}
            )
        return attrs


class TagsSerializer(StrictSerializer):
    tags = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=1000))


class StepSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    compute_target = serializers.SerializerMethodField()
    reused_from = serializers.SerializerMethodField()
    duration_seconds = serializers.SerializerMethodField()
    script = serializers.SerializerMethodField()
    arguments = serializers.SerializerMethodField()
    outputs = serializers.SerializerMethodField()

    class Meta:
        model = StepRun
        fields = [
            "id",
            "name",
            "status",
            "compute_target",
            "depends_on",
            "reused_from",
            "reuse_explanation",
            "attempt",
            "exit_code",
            "error",
            "timings",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "log_seq",
            "script",
            "arguments",
            "outputs",
        ]

    def get_compute_target(self, step: StepRun) -> str | None:
        return step.spec.get("compute_target")

    def get_reused_from(self, step: StepRun) -> dict[str, str] | None:
        origin = step.reused_from
        if origin is None:
            return None
        return {"run": str(origin.run.uuid), "step": str(origin.uuid)}

    def get_duration_seconds(self, step: StepRun) -> float | None:
        return duration(step.started_at, step.finished_at)

    def get_script(self, step: StepRun) -> str | None:
        return step.spec.get("script")

    def get_arguments(self, step: StepRun) -> list[Any]:
        return list(step.spec.get("arguments") or [])

    def get_outputs(self, step: StepRun) -> list[str]:
        return sorted(step.spec.get("outputs") or {})


class RunSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    experiment = serializers.CharField(source="experiment.name", read_only=True)
    pipeline_id = serializers.SerializerMethodField()
    submitted_by = serializers.SerializerMethodField()
    duration_seconds = serializers.SerializerMethodField()
    portal_url = serializers.SerializerMethodField()

    class Meta:
        model = PipelineRun
        fields = [
            "id",
            "experiment",
            "pipeline_id",
            "status",
            "parameters",
            "tags",
            "source",
            "submitted_by",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "error",
            "continue_on_step_failure",
            "regenerate_outputs",
            "portal_url",
        ]

    def get_pipeline_id(self, run: PipelineRun) -> str | None:
        return str(run.pipeline.uuid) if run.pipeline_id and run.pipeline else None

    def get_submitted_by(self, run: PipelineRun) -> str | None:
        return run.submitted_by.username if run.submitted_by else None

    def get_duration_seconds(self, run: PipelineRun) -> float | None:
        return duration(run.started_at or run.created_at, run.finished_at)

    def get_portal_url(self, run: PipelineRun) -> str:
        path = reverse("run-detail", args=[run.workspace.uuid, run.uuid])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class RunDetailSerializer(RunSerializer):
    steps = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "steps"]

    def get_steps(self, run: PipelineRun) -> Any:
        steps = run.steps.select_related("reused_from__run").order_by("id")
        return StepSerializer(steps, many=True).data


class LogsSerializer(serializers.Serializer):
    log = serializers.CharField()
    lines = serializers.ListField(child=serializers.ListField())
    last_seq = serializers.IntegerField()
    more = serializers.BooleanField()
    logs = serializers.ListField(child=serializers.CharField())


class OutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Output
        fields = ["name", "datastore", "path", "kind", "file_count"]


class ExperimentSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    run_count = serializers.IntegerField(read_only=True)
    last_run_at = serializers.DateTimeField(read_only=True)
    last_status = serializers.CharField(read_only=True)

    class Meta:
        model = Experiment
        fields = ["id", "name", "created_at", "run_count", "last_run_at", "last_status"]
