"""Execution and tracking: experiments, pipeline runs, step runs and their attempts, logs,
metrics and outputs. The row is the truth; Celery only carries ids."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models.fields.json import KeyTextTransform

from portal.models import ComputeTarget, Workspace


class Status(models.TextChoices):
    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"


TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELED)
ACTIVE = (Status.QUEUED, Status.PREPARING, Status.RUNNING, Status.FINALIZING)


class Experiment(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="experiment_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class PipelineRun(models.Model):
    """One execution of a pipeline graph. ``graph`` is the graph it ran, kept with the run."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="runs")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    pipeline = models.ForeignKey(
        "pipelines.Pipeline", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NOT_STARTED)
    graph = models.JSONField()
    parameters = models.JSONField(default=dict)  # resolved values
    tags = models.JSONField(default=dict)
    source = models.CharField(max_length=16, default="sdk")  # sdk, rest, portal, schedule
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    continue_on_step_failure = models.BooleanField(default=False)
    regenerate_outputs = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # The run lists page by (created_at, id) newest first, within a workspace and under
        # each filter (runs/views.py); a GIN index on tags is added on PostgreSQL only
        # (migration 0004). Experiment and pipeline imply the workspace.
        indexes = [
            models.Index(fields=["workspace", "-created_at", "-id"], name="run_ws_created"),
            models.Index(
                fields=["workspace", "status", "-created_at", "-id"], name="run_ws_status_created"
            ),
            models.Index(fields=["experiment", "-created_at", "-id"], name="run_exp_created"),
            models.Index(fields=["pipeline", "-created_at", "-id"], name="run_pipeline_created"),
            models.Index(
                fields=["workspace", "submitted_by", "-created_at", "-id"],
                name="run_ws_submitter_created",
            ),
            models.Index(fields=["status"]),
        ]

    def __str__(self) -> str:
        return str(self.uuid)


class StepRun(models.Model):
    """One step of a run. ``spec`` is the step as the run's graph defines it, with its inputs
    resolved once known; ``reused_from`` links a reused step to the run that really ran."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NOT_STARTED)
    compute_target = models.ForeignKey(
        ComputeTarget, null=True, on_delete=models.SET_NULL, related_name="step_runs"
    )
    spec = models.JSONField()
    depends_on = models.JSONField(default=list)  # names of the steps this one waits for
    reuse_key = models.CharField(max_length=64, blank=True, db_index=True)
    reuse_parts = models.JSONField(default=dict)  # component → hash, to explain reuse misses
    reused_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reused_by"
    )
    reuse_explanation = models.TextField(blank=True)
    attempt = models.PositiveIntegerField(default=0)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # {"queued": s, "environment": s, "inputs": s, "running": s, "outputs": s}
    timings = models.JSONField(default=dict)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    log_seq = models.BigIntegerField(default=0)  # last sequence number written

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name"], name="step_name_unique_in_run")
        ]
        indexes = [models.Index(fields=["status", "compute_target"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


class StepAttempt(models.Model):
    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    worker = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["step_run", "number"], name="attempt_number_unique")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} ({self.status})"


class LogChunk(models.Model):
    """Consecutive log lines of one step's log, ``first_seq``..``last_seq``, newline-joined.

    Logs: ``driver`` (the script's stdout+stderr, azureml-logs/70_driver_log.txt), ``prep``
    (input preparation), ``build`` (environment/image build), ``post`` (output upload).
    """

    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="log_chunks")
    log = models.CharField(max_length=16, default="driver")
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    # [[seq, stream, text], ...] as JSON: every line keeps its number and stream.
    lines = models.JSONField()

    class Meta:
        ordering = ["first_seq"]
        indexes = [models.Index(fields=["step_run", "first_seq"])]

    def __str__(self) -> str:
        return f"{self.log} {self.first_seq}-{self.last_seq}"


class Metric(models.Model):
    """A value logged from inside a step: scalar, list, row, table, image, or a tag."""

    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16)  # scalar, list, row, table, image, tag
    value = models.JSONField()
    seq = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["step_run", "name"])]

    def __str__(self) -> str:
        return f"{self.name}={self.value}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "value": self.value}


class Output(models.Model):
    """Where a step's named output lives: a folder on a datastore."""

    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="outputs")
    name = models.CharField(max_length=255)
    datastore = models.CharField(max_length=255)
    path = models.CharField(max_length=1024)
    kind = models.CharField(max_length=16, default="pipeline_data")  # or "file" (upload_file)
    # An empty output folder is still an output (blob storage has no empty folders).
    file_count = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["step_run", "name"], name="output_name_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} → {self.datastore}:{self.path}"


def tagged(runs: models.QuerySet[PipelineRun], key: str, value: str | None) -> Any:
    """Runs with tag ``key`` (any value when ``value`` is None, else that value). Keys are
    matched as data, never as lookups ("a__b" is a key, not a path)."""
    if value is None:
        return runs.filter(tags__has_key=key)
    if connection.vendor == "postgresql":
        # tags @> '{"key": "value"}' is answered by the GIN index.
        return runs.filter(tags__contains={key: value})
    return runs.alias(tag_value=KeyTextTransform(key, "tags")).filter(tag_value=value)
