"""advance_run: move a run forward. Idempotent and safe to call twice at once: every state
change is a conditional UPDATE whose row count says who won.

For each step whose upstream steps are all Completed it computes the reuse key (step
definition, snapshot, environment, the parameters it uses, the identity of each input); a
Completed step run with the same key whose outputs still exist makes the step *reused*;
otherwise the step is claimed (NotStarted → Queued) and sent to its compute target's queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from portal.datastores import storage_for
from portal.models import ComputeTarget, Datastore
from portal.realtime import RunStatus, StepStatus, publish, run_group
from portal.storage import Entry, NotFound, Storage, clean_prefix
from portal.storage.local import LocalStorage
from runs.executors.base import EnvironmentSpec
from runs.graph import as_argument
from runs.models import ACTIVE, TERMINAL, Output, PipelineRun, Status, StepRun

log = logging.getLogger(__name__)

REUSE_PART_WORDS = {
    "definition": "the script, its arguments or the step's inputs/outputs",
    "snapshot": "the source directory",
    "environment": "the environment",
    "parameters": "a parameter value",
}


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def output_path(run: PipelineRun, step: StepRun, name: str, fixed: str | None = None) -> str:
    """Where a step run writes output ``name``: its own folder, or the graph's fixed path
    with ``{run-id}`` and ``{output-name}`` filled in."""
    if fixed:
        filled = fixed.replace("{run-id}", str(run.uuid)).replace("{output-name}", name)
        return clean_prefix(filled)
    return f"azureml/{step.uuid}/{name}/"


def environment_of(spec: dict[str, Any]) -> EnvironmentSpec:
    env = spec.get("environment") or {}
    return EnvironmentSpec(
        pip_packages=tuple(env.get("pip_packages") or ()),
        base_image=env.get("base_image") or None,
        name=env.get("name") or "default",
    )


def _datastore(run: PipelineRun, name: str) -> Datastore:
    datastore = Datastore.objects.get(workspace_id=run.workspace_id, name=name)
    datastore.workspace = run.workspace
    return datastore


# (datastore pk, path, size, modified) → sha256 of a local file's content, per process.
_content_hashes: dict[tuple[int, str, int | None, str], str] = {}


def _content_identity(datastore: Datastore, storage: Storage, entry: Entry) -> str:
    """What a file holds: its MD5 where the service keeps one, its content hash for a local
    file (cached while size and time are unchanged), else its size and time. Rewriting a file
    with the same bytes (a script re-uploading its data) keeps steps reusable."""
    if entry.content_md5:
        return f"md5:{entry.content_md5}"
    if not isinstance(storage, LocalStorage):
        return f"time:{entry.size}:{entry.modified}"
    key = (datastore.pk, entry.path, entry.size, str(entry.modified))
    if key not in _content_hashes:
        digest = hashlib.sha256()
        for chunk in storage.open_read(entry.path):
            digest.update(chunk)
        _content_hashes[key] = f"sha256:{digest.hexdigest()}"
    return _content_hashes[key]


def _listing_identity(run: PipelineRun, datastore_name: str, path: str) -> str:
    """What a data reference points at now: the names, sizes and contents below it."""
    datastore = _datastore(run, datastore_name)
    storage = storage_for(datastore)
    try:
        entry = storage.stat(path) if path.strip("/") else None
    except NotFound:
        return _sha(["missing", datastore_name, path])
    if entry is not None and not entry.is_dir:
        return _sha([entry.path, entry.size, _content_identity(datastore, storage, entry)])
    listing = [
        [e.path, e.size, _content_identity(datastore, storage, e)]
        for e in storage.list(clean_prefix(path), recursive=True)
    ]
    return _sha(listing)


def resolve_step(run: PipelineRun, step: StepRun, by_name: dict[str, StepRun]) -> dict[str, Any]:
    """The step's inputs, outputs and arguments as concrete locations and strings."""
    spec = step.spec
    producers = {oname: s for s in by_name.values() for oname in (s.spec.get("outputs") or {})}
    inputs: dict[str, dict[str, Any]] = {}
    for iname, ispec in (spec.get("inputs") or {}).items():
        mode = ispec.get("mode", "mount")
        if "pipeline_data" in ispec:
            producer = producers[ispec["pipeline_data"]]
            out = Output.objects.get(step_run=producer, name=ispec["pipeline_data"])
            inputs[iname] = {
                "datastore": out.datastore,
                "path": out.path,
                "mode": mode,
                "from_step": producer.name,
            }
        elif "parameter" in ispec:
            value = run.parameters[ispec["parameter"]]
            inputs[iname] = {"datastore": value["datastore"], "path": value["path"], "mode": mode}
        else:
            inputs[iname] = {
                "datastore": ispec["datastore"],
                "path": ispec.get("path", ""),
                "mode": mode,
            }
    default_store = run.graph.get("default_datastore") or "workspaceblobstore"
    outputs = {
        oname: {
            "datastore": (ospec or {}).get("datastore") or default_store,
            "path": output_path(run, step, oname, (ospec or {}).get("path")),
        }
        for oname, ospec in (spec.get("outputs") or {}).items()
    }
    arguments: list[Any] = []
    for arg in spec.get("arguments") or []:
        if isinstance(arg, dict) and "parameter" in arg:
            arguments.append(as_argument(run.parameters[arg["parameter"]]))
        elif isinstance(arg, dict):
            arguments.append(arg)
        else:
            arguments.append(str(arg))
    return {"inputs": inputs, "outputs": outputs, "arguments": arguments}


def reuse_parts(run: PipelineRun, step: StepRun, resolved: dict[str, Any]) -> dict[str, str]:
    spec = step.spec
    used = sorted(
        {
            a["parameter"]
            for a in spec.get("arguments") or []
            if isinstance(a, dict) and "parameter" in a
        }
    )
    parts = {
        "definition": _sha(
            {
                "script": spec.get("script"),
                "arguments": spec.get("arguments"),
                "inputs": {
                    k: v.get("mode", "mount") for k, v in (spec.get("inputs") or {}).items()
                },
                "outputs": {
                    name: (ospec or {}).get("path")
                    for name, ospec in (spec.get("outputs") or {}).items()
                },
            }
        ),
        "snapshot": str(spec.get("snapshot")),
        "environment": environment_of(spec).digest,
        "parameters": _sha({name: run.parameters.get(name) for name in used}),
    }
    for iname, where in resolved["inputs"].items():
        if "from_step" in where:
            # An upstream output: its location names the step run that made it.
            parts[f"input:{iname}"] = _sha([where["datastore"], where["path"]])
        else:
            parts[f"input:{iname}"] = _listing_identity(run, where["datastore"], where["path"])
    return parts


def _outputs_exist(origin: StepRun) -> bool:
    for out in origin.outputs.filter(kind="pipeline_data").exclude(file_count=0):
        try:
            datastore = Datastore.objects.get(
                workspace_id=origin.run.workspace_id, name=out.datastore
            )
            storage_for(datastore).stat(out.path)
        except (Datastore.DoesNotExist, NotFound):
            return False
    return True


def _explain_miss(run: PipelineRun, step: StepRun, parts: dict[str, str]) -> str:
    previous = (
        StepRun.objects.filter(
            run__experiment_id=run.experiment_id, name=step.name, status=Status.COMPLETED
        )
        .exclude(run=run)
        .exclude(reuse_parts={})
        .order_by("-finished_at", "-id")
        .first()
    )
    if previous is None:
        return "Ran: no earlier run of this step to reuse."
    changed = [
        REUSE_PART_WORDS.get(
            key, f"input '{key.split(':', 1)[1]}'" if key.startswith("input:") else key
        )
        for key in sorted(set(parts) | set(previous.reuse_parts))
        if parts.get(key) != previous.reuse_parts.get(key)
    ]
    if not changed:
        return "Ran: the earlier identical step run's outputs are gone."
    return f"Ran: {', '.join(changed)} changed since run {previous.run.uuid}."


def _find_reusable(run: PipelineRun, step: StepRun, key: str) -> StepRun | None:
    candidates = (
        StepRun.objects.filter(
            run__workspace_id=run.workspace_id, reuse_key=key, status=Status.COMPLETED
        )
        .exclude(pk=step.pk)
        .select_related("run", "reused_from")
        .order_by("-finished_at", "-id")[:5]
    )
    for candidate in candidates:
        origin = candidate.reused_from or candidate
        if _outputs_exist(origin):
            return candidate
    return None


def _publish_step(run: PipelineRun, step: StepRun) -> None:
    message: StepStatus = {
        "type": "step_status",
        "run": str(run.uuid),
        "step": str(step.uuid),
        "name": step.name,
        "status": step.status,
        "reused_from": str(step.reused_from.uuid) if step.reused_from else None,
        "exit_code": step.exit_code,
    }
    _safe_publish(run, message)


def _safe_publish(run: PipelineRun, message: Any) -> None:
    # Realtime is best effort: the row is the truth, a page reload shows it.
    try:
        publish(run_group(run.uuid), message)
    except Exception:
        log.warning("Could not publish to %s", run_group(run.uuid), exc_info=True)


def publish_step_later(run: PipelineRun, step: StepRun) -> None:
    transaction.on_commit(lambda: _publish_step(run, step))


def enqueue_step(step: StepRun, queue: str) -> None:
    from runs.tasks import execute_step

    execute_step.apply_async(args=[step.pk], queue=queue)


def _skip(run: PipelineRun, step: StepRun, reason: str) -> bool:
    now = timezone.now()
    done = StepRun.objects.filter(pk=step.pk, status=Status.NOT_STARTED).update(
        status=Status.CANCELED, error=reason, finished_at=now
    )
    if done:
        step.status, step.error = Status.CANCELED, reason
        publish_step_later(run, step)
    return bool(done)


def _reuse(
    run: PipelineRun, step: StepRun, found: StepRun, key: str, parts: dict[str, str]
) -> bool:
    origin = found.reused_from or found
    explanation = (
        f"Reused step run {origin.uuid} of run {origin.run.uuid}: the same script, source "
        "directory, environment, parameters and inputs."
    )
    now = timezone.now()
    with transaction.atomic():
        done = StepRun.objects.filter(pk=step.pk, status=Status.NOT_STARTED).update(
            status=Status.COMPLETED,
            reused_from=origin,
            reuse_key=key,
            reuse_parts=parts,
            reuse_explanation=explanation,
            exit_code=origin.exit_code,
            started_at=now,
            finished_at=now,
        )
        if not done:
            return False
        Output.objects.bulk_create(
            [
                Output(
                    step_run=step,
                    name=o.name,
                    datastore=o.datastore,
                    path=o.path,
                    kind=o.kind,
                    file_count=o.file_count,
                )
                for o in origin.outputs.all()
            ]
        )
    step.status, step.reused_from = Status.COMPLETED, origin
    _publish_step(run, step)
    return True


@dataclass
class Claim:
    step: StepRun
    key: str
    parts: dict[str, str]
    resolved: dict[str, Any]
    explanation: str


_collected = threading.local()


@contextmanager
def collect_claims() -> Iterator[list[tuple[int, str]]]:
    """Note the (step id, queue) of every step claimed inside the block, so a worker that
    just finished a step can run the next one at once instead of waiting for the queue."""
    claims: list[tuple[int, str]] = []
    _collected.claims = claims
    try:
        yield claims
    finally:
        _collected.claims = None


def _claim_many(run: PipelineRun, claims: list[Claim]) -> None:
    """Claim ready steps (NotStarted → Queued) in one transaction, within each target's free
    slots, and send them to their queues on commit."""
    by_target: dict[int, list[Claim]] = {}
    for claim in claims:
        assert claim.step.compute_target is not None
        by_target.setdefault(claim.step.compute_target.pk, []).append(claim)
    now = timezone.now()
    with transaction.atomic():
        for group in by_target.values():
            target = group[0].step.compute_target
            assert target is not None
            # Max concurrent steps per target, across every run of the workspace.
            active = StepRun.objects.filter(
                compute_target=target, status__in=[*ACTIVE, Status.CANCEL_REQUESTED]
            ).count()
            for claim in group[: max(0, target.max_concurrency - active)]:
                step = claim.step
                done = StepRun.objects.filter(pk=step.pk, status=Status.NOT_STARTED).update(
                    status=Status.QUEUED,
                    queued_at=now,
                    reuse_key=claim.key,
                    reuse_parts=claim.parts,
                    reuse_explanation=claim.explanation,
                    spec={**step.spec, "resolved": claim.resolved},
                )
                if not done:
                    continue
                step.status = Status.QUEUED
                publish_step_later(run, step)
                queue = target.queue
                transaction.on_commit(lambda s=step, q=queue: enqueue_step(s, q))  # type: ignore[misc]
                collector = getattr(_collected, "claims", None)
                if collector is not None:
                    collector.append((step.pk, queue))


def _finish_run(run: PipelineRun, steps: list[StepRun]) -> None:
    if not all(s.status in TERMINAL for s in steps):
        return
    failed = [s for s in steps if s.status == Status.FAILED]
    if run.status == Status.CANCEL_REQUESTED:
        final, error = Status.CANCELED, "Canceled on request."
    elif failed:
        final = Status.FAILED
        error = "Failed steps: " + ", ".join(s.name for s in failed)
    elif any(s.status == Status.CANCELED for s in steps):
        final, error = Status.CANCELED, "Some steps were canceled."
    else:
        final, error = Status.COMPLETED, ""
    done = (
        PipelineRun.objects.filter(pk=run.pk)
        .exclude(status__in=TERMINAL)
        .update(status=final, error=error, finished_at=timezone.now())
    )
    if done:
        run.status = final
        message: RunStatus = {"type": "run_status", "run": str(run.uuid), "status": final}
        _safe_publish(run, message)


def advance_run(run_id: int) -> None:
    """Move the run forward as far as it can go now (see the module docstring)."""
    run = PipelineRun.objects.select_related("workspace").filter(pk=run_id).first()
    if run is None or run.status in TERMINAL:
        return
    if run.status == Status.NOT_STARTED:
        PipelineRun.objects.filter(pk=run.pk, status=Status.NOT_STARTED).update(
            status=Status.RUNNING, started_at=timezone.now()
        )
        run.status = Status.RUNNING
        _safe_publish(run, {"type": "run_status", "run": str(run.uuid), "status": run.status})
    changed = True
    while changed:
        changed = False
        steps = list(run.steps.select_related("compute_target", "reused_from").order_by("id"))
        by_name = {s.name: s for s in steps}
        claims: list[Claim] = []
        canceling = run.status == Status.CANCEL_REQUESTED
        failed = next((s for s in steps if s.status == Status.FAILED), None)
        stop_all = failed is not None and not run.continue_on_step_failure
        if stop_all:
            # Without continue_on_step_failure, one failure ends the whole run: stop what runs.
            assert failed is not None
            reason = f"Stopped: step '{failed.name}' failed (continue_on_step_failure is off)."
            for step in steps:
                if step.status not in ACTIVE:
                    continue
                # A queued step has no process yet: it ends now; a running one is stopped
                # by its worker.
                final = Status.CANCELED if step.status == Status.QUEUED else Status.CANCEL_REQUESTED
                done = StepRun.objects.filter(pk=step.pk, status=step.status).update(
                    status=final, error=reason
                )
                if done:
                    step.status = final
                    changed = changed or final == Status.CANCELED
                    publish_step_later(run, step)
        for step in steps:
            if step.status != Status.NOT_STARTED:
                continue
            if canceling:
                changed |= _skip(run, step, "Canceled with the run.")
                continue
            if stop_all:
                assert failed is not None
                changed |= _skip(
                    run,
                    step,
                    f"Skipped: step '{failed.name}' failed and continue_on_step_failure is off.",
                )
                continue
            upstream = [by_name[d] for d in step.depends_on]
            blocked = [u for u in upstream if u.status in (Status.FAILED, Status.CANCELED)]
            if blocked:
                changed |= _skip(
                    run, step, f"Skipped: upstream step '{blocked[0].name}' did not complete."
                )
                continue
            if not all(u.status == Status.COMPLETED for u in upstream):
                continue
            try:
                resolved = resolve_step(run, step, by_name)
                parts = reuse_parts(run, step, resolved)
            except Exception as exc:
                log.exception("Cannot prepare step %s", step.pk)
                if StepRun.objects.filter(pk=step.pk, status=Status.NOT_STARTED).update(
                    status=Status.FAILED,
                    error=f"Cannot resolve the step's inputs: {exc}",
                    finished_at=timezone.now(),
                ):
                    step.status = Status.FAILED
                    publish_step_later(run, step)
                changed = True
                continue
            key = _sha(parts)
            reusable = step.spec.get("allow_reuse", True) and not run.regenerate_outputs
            found = _find_reusable(run, step, key) if reusable else None
            if found is not None:
                changed |= _reuse(run, step, found, key, parts)
                continue
            if not step.spec.get("allow_reuse", True):
                explanation = "Ran: the step does not allow reuse (allow_reuse=False)."
            elif run.regenerate_outputs:
                explanation = "Ran: the run asked to regenerate outputs."
            else:
                explanation = _explain_miss(run, step, parts)
            claims.append(Claim(step, key, parts, resolved, explanation))
        if claims:
            _claim_many(run, claims)
        if not changed:
            _finish_run(run, steps)


def runs_waiting_on(target: ComputeTarget, limit: int = 50) -> list[int]:
    """Runs with steps that wait only for a free slot on ``target``."""
    return list(
        PipelineRun.objects.filter(steps__compute_target=target, steps__status=Status.NOT_STARTED)
        .exclude(status__in=TERMINAL)
        .values_list("id", flat=True)
        .distinct()[:limit]
    )
