"""Writes of pipeline authoring: storing pipelines (immutable graphs). Snapshots are written by
pipelines/snapshots.py; runs are submitted by runs/services.py."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from pipelines.models import Pipeline
from portal.models import Workspace
from portal.services import Actor, record_event

NAME_MAX = 255


def graph_digest(graph: dict[str, Any]) -> str:
    """The hash of a graph's canonical JSON: equal graphs, equal digests."""
    canonical = json.dumps(graph, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def clean_pipeline_name(name: Any, fallback: str) -> str:
    if name is None or name == "":
        name = fallback
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_MAX:
        raise ValidationError({"pipeline_name": f"Give a name of 1 to {NAME_MAX} characters."})
    return name.strip()


def store_pipeline(
    *, actor: Actor, workspace: Workspace, graph: dict[str, Any], name: str, description: str = ""
) -> tuple[Pipeline, bool]:
    """The pipeline of an already validated graph: the stored one with the same graph, or a
    new one. Returns (pipeline, created). Call inside the caller's transaction."""
    digest = graph_digest(graph)
    found = Pipeline.objects.filter(workspace=workspace, digest=digest).first()
    if found is not None:
        return found, False
    try:
        with transaction.atomic():
            pipeline = Pipeline.objects.create(
                workspace=workspace,
                name=name,
                description=description or "",
                digest=digest,
                graph=graph,
                step_count=len(graph["steps"]),
                created_by=actor.user,
            )
    except IntegrityError:  # the same graph stored concurrently
        return Pipeline.objects.get(workspace=workspace, digest=digest), False
    record_event(
        actor=actor,
        workspace=workspace,
        verb="pipeline.create",
        obj=pipeline,
        object_repr=name,
        data={"steps": pipeline.step_count},
    )
    return pipeline, True


def create_pipeline(
    *,
    actor: Actor,
    workspace: Workspace,
    graph: dict[str, Any],
    name: str,
    description: str = "",
) -> tuple[Pipeline, bool]:
    """Validate a graph and store it as a pipeline (or find the stored identical one).

    Raises:
        ValidationError: every problem of the graph; nothing is stored.
    """
    from runs.services import validate_pipeline

    name = clean_pipeline_name(name, "")
    if not isinstance(description, str):
        raise ValidationError({"description": "Must be text."})
    validate_pipeline(workspace, graph)
    with transaction.atomic():
        return store_pipeline(
            actor=actor, workspace=workspace, graph=graph, name=name, description=description
        )
