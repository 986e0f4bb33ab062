"""Pipeline authoring: pipelines (immutable graphs) and content-addressed snapshots of a
step's source directory."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from portal.models import Workspace


class Snapshot(models.Model):
    """A source directory as a manifest of per-file hashes; the files are stored once each,
    by hash (pipelines/snapshots.py). ``digest`` is the hash of the manifest itself."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="snapshots")
    digest = models.CharField(max_length=64)
    # {"relative/path.py": {"sha256": "...", "size": 123, "mode": 420}}
    manifest = models.JSONField()
    total_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "digest"], name="snapshot_digest_unique")
        ]

    def __str__(self) -> str:
        return self.digest[:12]


class Pipeline(models.Model):
    """An immutable pipeline graph (runs/graph.py). Submitting the same graph again finds the
    same pipeline (``digest`` is the hash of its canonical JSON), so a pipeline gathers every
    run of one definition; each run still keeps the graph it ran."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="pipelines")
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    digest = models.CharField(max_length=64)
    graph = models.JSONField()
    step_count = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "digest"], name="pipeline_digest_unique")
        ]
        indexes = [
            models.Index(fields=["workspace", "-created_at"]),
            models.Index(fields=["workspace", "name"]),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def parameters(self) -> dict[str, dict[str, object]]:
        params = self.graph.get("parameters") or {}
        return params if isinstance(params, dict) else {}


class SnapshotBlob(models.Model):
    """A file content stored once per workspace under its sha256 (checked on upload), so
    "which of these hashes are missing" is one query, never a storage round trip per file."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "sha256"], name="snapshot_blob_unique")
        ]

    def __str__(self) -> str:
        return self.sha256[:12]


def with_run_summary(pipelines: models.QuerySet[Pipeline]) -> models.QuerySet[Pipeline]:
    """Pipelines annotated with ``run_count``, ``last_run_uuid``, ``last_run_status`` and
    ``last_run_at`` in the same query (correlated subqueries: no join over every run)."""
    from runs.models import PipelineRun

    latest = PipelineRun.objects.filter(pipeline=models.OuterRef("pk")).order_by(
        "-created_at", "-id"
    )
    run_count = (
        PipelineRun.objects.filter(pipeline=models.OuterRef("pk"))
        .order_by()
        .values("pipeline")
        .annotate(n=models.Count("*"))
        .values("n")
    )
    return pipelines.annotate(
        last_run_at=models.Subquery(latest.values("created_at")[:1]),
        last_run_status=models.Subquery(latest.values("status")[:1]),
        last_run_uuid=models.Subquery(latest.values("uuid")[:1]),
        run_count=models.Subquery(run_count, output_field=models.IntegerField()),
    )
