"""Background tasks of the workspace domain."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="portal.ping")
def ping(payload: str) -> str:
    """Echo ``payload``: lets tests and operators check that a worker answers."""
    return f"pong:{payload}"
