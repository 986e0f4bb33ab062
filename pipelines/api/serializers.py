"""Shapes of the pipelines and snapshots API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from pipelines.models import Pipeline, Snapshot
from portal.api.serializers import StrictSerializer


class MissingRequestSerializer(StrictSerializer):
    hashes = serializers.ListField(child=serializers.CharField(max_length=64), max_length=10_000)


class MissingSerializer(serializers.Serializer):
    missing = serializers.ListField(child=serializers.CharField())


class SnapshotCommitSerializer(StrictSerializer):
    manifest = serializers.JSONField(help_text="path → {sha256, size, mode}")


class SnapshotSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    file_count = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = ["id", "digest", "file_count", "total_bytes", "created_at"]

    def get_file_count(self, snapshot: Snapshot) -> int:
        return len(snapshot.manifest)


class SnapshotDetailSerializer(SnapshotSerializer):
    class Meta(SnapshotSerializer.Meta):
        fields = [*SnapshotSerializer.Meta.fields, "manifest"]


class ValidateRequestSerializer(StrictSerializer):
    graph = serializers.JSONField()
    parameters = serializers.JSONField(required=False, default=None)
    snapshots = serializers.JSONField(
        required=False,
        default=None,
        help_text="digest → file paths of source directories not uploaded yet",
    )


class ValidSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    steps = serializers.IntegerField()


class PipelineCreateSerializer(StrictSerializer):
    graph = serializers.JSONField()
    name = serializers.CharField(max_length=255)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class PipelineSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    created_by = serializers.SerializerMethodField()
    parameters = serializers.SerializerMethodField()
    run_count = serializers.SerializerMethodField()
    last_run = serializers.SerializerMethodField()

    class Meta:
        model = Pipeline
        fields = [
            "id",
            "name",
            "description",
            "digest",
            "step_count",
            "parameters",
            "created_at",
            "created_by",
            "run_count",
            "last_run",
        ]

    def get_created_by(self, pipeline: Pipeline) -> str | None:
        return pipeline.created_by.username if pipeline.created_by else None

    def get_parameters(self, pipeline: Pipeline) -> dict[str, Any]:
        return pipeline.parameters

    def get_run_count(self, pipeline: Pipeline) -> int:
        return int(getattr(pipeline, "run_count", 0) or 0)

    def get_last_run(self, pipeline: Pipeline) -> dict[str, Any] | None:
        if not getattr(pipeline, "last_run_uuid", None):
            return None
        return {
            "id": str(pipeline.last_run_uuid),  # type: ignore[attr-defined]
            "status": pipeline.last_run_status,  # type: ignore[attr-defined]
            "created_at": pipeline.last_run_at,  # type: ignore[attr-defined]
        }


class PipelineDetailSerializer(PipelineSerializer):
    class Meta(PipelineSerializer.Meta):
        fields = [*PipelineSerializer.Meta.fields, "graph"]
