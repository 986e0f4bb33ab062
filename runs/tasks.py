"""Celery tasks of the engine. They carry ids only, re-read the rows, and return quietly when
the row is gone or already past the state they act on."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from runs import reconcile as reconcile_module
from runs import worker
from runs.orchestrator import advance_run


@shared_task(name="runs.execute_step", acks_late=True, bind=True)
def execute_step(self: Any, step_id: int) -> None:
    """Run one step (sent to its compute target's queue), then any step of the same queue
    that it made ready."""
    queue = (self.request.delivery_info or {}).get("routing_key")
    next_id: int | None = step_id
    while next_id is not None:
        next_id = worker.execute_step(next_id, queue)


@shared_task(name="runs.after_step")
def after_step(step_id: int) -> None:
    """After a step ends: its log files, and runs that wait for a slot on its target."""
    worker.after_step(step_id)


@shared_task(name="runs.advance")
def advance(run_id: int) -> None:
    """Move a run forward (idempotent)."""
    advance_run(run_id)


@shared_task(name="runs.reconcile")
def reconcile() -> dict[str, int]:
    """Periodic: retry or fail steps whose worker stopped heartbeating, re-send lost queue
    messages, and advance runs that can move."""
    return reconcile_module.reconcile()
