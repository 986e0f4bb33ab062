"""The periodic reconciler (Celery beat): the database row is the truth, so whatever a lost
message, a killed worker or a restarted Redis did, this puts every run back on its way."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from runs.graph import max_retries_of
from runs.models import TERMINAL, PipelineRun, Status, StepAttempt, StepRun
from runs.orchestrator import advance_run, enqueue_step, publish_step_later

log = logging.getLogger(__name__)

RUNNING_STATES = (Status.PREPARING, Status.RUNNING, Status.FINALIZING, Status.CANCEL_REQUESTED)


def _enqueue_on_commit(step: StepRun, queue: str) -> None:
    transaction.on_commit(lambda: enqueue_step(step, queue))


def reconcile() -> dict[str, int]:
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.MILLRACE_HEARTBEAT_TIMEOUT)
    counts = {"retried": 0, "failed": 0, "canceled": 0, "resent": 0, "advanced": 0}
    stale = Q(heartbeat_at__lt=stale_before) | Q(
        status=Status.CANCEL_REQUESTED, heartbeat_at__isnull=True
    )
    for step in StepRun.objects.select_related("run", "compute_target").filter(
        stale, status__in=RUNNING_STATES
    ):
        lost = f"The worker {step.worker or '?'} stopped heartbeating (worker lost)."
        StepAttempt.objects.filter(
            step_run=step, number=step.attempt, finished_at__isnull=True
        ).update(status=Status.FAILED, error=lost, finished_at=now)
        with transaction.atomic():
            if step.status == Status.CANCEL_REQUESTED:
                done = StepRun.objects.filter(pk=step.pk, status=step.status).update(
                    status=Status.CANCELED, error="Canceled (its worker was lost).", finished_at=now
                )
                counts["canceled"] += done
            elif step.attempt <= max_retries_of(step.spec) and step.compute_target:
                done = StepRun.objects.filter(pk=step.pk, status=step.status).update(
                    status=Status.QUEUED, queued_at=now, error=lost, worker=""
                )
                if done:
                    _enqueue_on_commit(step, step.compute_target.queue)
                counts["retried"] += done
            else:
                done = StepRun.objects.filter(pk=step.pk, status=step.status).update(
                    status=Status.FAILED, error=lost, finished_at=now
                )
                counts["failed"] += done
            if done:
                publish_step_later(step.run, step)
        if done:
            advance_run(step.run_id)
    # Queue messages can be lost (a Redis restart): re-send old Queued steps. Claiming is
    # conditional, so a duplicate message is harmless.
    resend_before = now - timedelta(seconds=settings.MILLRACE_REQUEUE_AFTER)
    for step in StepRun.objects.select_related("compute_target").filter(
        status=Status.QUEUED, queued_at__lt=resend_before
    ):
        if step.compute_target is not None:
            StepRun.objects.filter(pk=step.pk, status=Status.QUEUED).update(queued_at=now)
            enqueue_step(step, step.compute_target.queue)
            counts["resent"] += 1
    for run_id in PipelineRun.objects.exclude(status__in=TERMINAL).values_list("id", flat=True)[
        :500
    ]:
        advance_run(run_id)
        counts["advanced"] += 1
    if any(counts.values()):
        log.info("reconcile: %s", counts)
    return counts
