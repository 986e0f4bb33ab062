"""What a worker does with one step: claim it, prepare its environment and inputs, run it,
stream its logs and metrics, upload its outputs, record the result, and advance the run.

Called by the Celery task runs.tasks.execute_step on the compute target's queue.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, JSONField, Value
from django.utils import timezone

from pipelines.models import Snapshot
from pipelines.snapshots import materialize
from portal.datastores import local_root, storage_for
from portal.models import ComputeKind, Datastore, DatastoreKind
from portal.realtime import MetricPoint, publish, run_group
from portal.storage import NotFound
from runs.executors.base import Execution, Executor, ExecutorError, Launch, Mount
from runs.graph import max_retries_of
from runs.logs import LOG_FILES, LineSplitter, LogWriter, log_text
from runs.models import TERMINAL, Metric, Output, Status, StepAttempt, StepRun
from runs.orchestrator import (
    advance_run,
    collect_claims,
    environment_of,
    publish_step_later,
    runs_waiting_on,
)

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.1
CANCEL_GRACE_SECONDS = 10.0
CANCEL_CHECK_SECONDS = 0.5
SDK_SOURCE = Path(__file__).resolve().parent.parent / "pipelines" / "sdk"
# A plain None in a JSONField is SQL NULL, which Metric.value refuses; tag(key) sends null.
JSON_NULL = Value(None, JSONField())


def data_root() -> Path:
    return Path(settings.MILLRACE_DATA_ROOT)


_executors: dict[str, Executor] = {}


def executor_for(kind: str) -> Executor:
    if kind not in _executors:
        if kind == ComputeKind.LOCAL:
            from runs.executors.local import LocalExecutor

            _executors[kind] = LocalExecutor(data_root() / "cache" / "venvs")
        elif kind == ComputeKind.DOCKER:
            from runs.executors.docker import DockerExecutor

            _executors[kind] = DockerExecutor(
                base_image=settings.MILLRACE_BASE_IMAGE,
                build_root=data_root() / "cache" / "image-builds",
            )
        else:
            raise ExecutorError(f"No executor for compute kind '{kind}'.")
    return _executors[kind]


_sdk_dist: Path | None = None


def sdk_dist() -> Path:
    """A folder holding only the SDK package (``pipelines/sdk``), for steps' PYTHONPATH: the
    step can import the SDK and nothing else of the server. Made once per process."""
    global _sdk_dist
    if _sdk_dist is not None and _sdk_dist.exists():
        return _sdk_dist
    _sdk_dist = _make_sdk_dist()
    return _sdk_dist


def _make_sdk_dist() -> Path:
    stamp = str(max(p.stat().st_mtime_ns for p in SDK_SOURCE.rglob("*.py")))
    target = data_root() / "cache" / "sdk" / stamp
    if not (target / "pipelines" / "sdk" / "__init__.py").exists():
        # One staging folder per thread: a worker runs several steps at once in its threads.
        staging = target.with_name(f".{stamp}.{os.getpid()}.{threading.get_ident()}")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "pipelines").mkdir(parents=True)
        (staging / "pipelines" / "__init__.py").write_text("")
        shutil.copytree(
            SDK_SOURCE, staging / "pipelines" / "sdk", ignore=shutil.ignore_patterns("__pycache__")
        )
        try:
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass
class Prepared:
    launch: Launch
    workdir: Path
    outputs: dict[str, Path]
    control: Path


class StepCanceled(Exception):
    pass


def _datastore(step: StepRun, name: str) -> Datastore:
    datastore = Datastore.objects.select_related("workspace").get(
        workspace_id=step.run.workspace_id, name=name
    )
    return datastore


def prepare_inputs(step: StepRun, workdir: Path, prep: LogWriter) -> Prepared:
    spec = step.spec
    resolved = spec["resolved"]
    cache = data_root() / "cache" / "snapshots"
    snapshot_dir = cache / spec["snapshot"]
    if (snapshot_dir / ".millrace-ready").exists():
        prep.write("stdout", f"Snapshot {spec['snapshot'][:12]}: cached on this node.")
    else:
        snapshot = Snapshot.objects.select_related("workspace").get(
            workspace_id=step.run.workspace_id, digest=spec["snapshot"]
        )
        prep.write(
            "stdout",
            f"Fetching snapshot {snapshot.digest[:12]} ({len(snapshot.manifest)} files).",
        )
        snapshot_dir = materialize(snapshot, cache)
    mounts = [
        Mount(snapshot_dir, "snapshot", read_only=True),
        Mount(sdk_dist(), "sdk", read_only=True),
    ]
    control = workdir / "control"
    (control / "files").mkdir(parents=True, exist_ok=True)
    mounts.append(Mount(control, "control", read_only=False))
    for name, where in resolved["inputs"].items():
        datastore = _datastore(step, where["datastore"])
        path = where["path"].strip("/")
        empty_upstream = "from_step" in where and not _has_files(datastore, path)
        if empty_upstream:
            # The upstream step produced an empty folder: the step gets an empty folder too.
            empty = workdir / "inputs" / name
            empty.mkdir(parents=True, exist_ok=True)
            prep.write("stdout", f"Input '{name}': the output of '{where['from_step']}' is empty.")
            mounts.append(Mount(empty, f"inputs/{name}", read_only=True))
            continue
        if datastore.kind == DatastoreKind.LOCAL and where["mode"] == "mount":
            host = local_root(datastore) / path if path else local_root(datastore)
            if not host.exists():
                raise FileNotFoundError(
                    f"Input '{name}': nothing at {where['datastore']}:{where['path']}."
                )
            prep.write(
                "stdout", f"Input '{name}': {where['datastore']}:{where['path']} mounted read-only."
            )
            mounts.append(Mount(host, f"inputs/{name}", read_only=True))
            continue
        target = workdir / "inputs" / name
        target.mkdir(parents=True, exist_ok=True)
        storage = storage_for(datastore)
        entry = storage.stat(path) if path else None
        if entry is not None and not entry.is_dir:
            # A single file: keep its name inside the input folder.
            with (target / entry.name).open("wb") as out:
                for chunk in storage.open_read(entry.path):
                    out.write(chunk)
            count = 1
        else:
            count = storage.materialize(path, target)
        prep.write(
            "stdout",
            f"Input '{name}': downloaded {count} file(s) "
            f"from {where['datastore']}:{where['path']}.",
        )
        mounts.append(Mount(target, f"inputs/{name}", read_only=True))
    outputs: dict[str, Path] = {}
    for name in resolved["outputs"]:
        folder = workdir / "outputs" / name
        folder.mkdir(parents=True, exist_ok=True)
        outputs[name] = folder
        mounts.append(Mount(folder, f"outputs/{name}", read_only=False))
    argv = ["python", "-u", "{mount:snapshot}/" + spec["script"]]
    for arg in resolved["arguments"]:
        if isinstance(arg, dict) and "input" in arg:
            argv.append("{mount:inputs/" + arg["input"] + "}")
        elif isinstance(arg, dict) and "output" in arg:
            argv.append("{mount:outputs/" + arg["output"] + "}")
        else:
            argv.append(str(arg))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": "{mount:sdk}",
        "HOME": "{mount:control}",
        "MILLRACE_CONTROL_DIR": "{mount:control}",
        "MILLRACE_RUN_ID": str(step.run.uuid),
        "MILLRACE_STEP_RUN_ID": str(step.uuid),
        "MILLRACE_STEP_NAME": step.name,
        "MILLRACE_EXPERIMENT": step.run.experiment.name,
        "AZUREML_RUN_ID": str(step.uuid),
    }
    for name in resolved["inputs"]:
        env[f"AZUREML_DATAREFERENCE_{name}"] = "{mount:inputs/" + name + "}"
    target = step.compute_target
    launch = Launch(
        step_run_id=str(step.uuid),
        argv=argv,
        workdir_mount="snapshot",
        mounts=mounts,
        env=env,
        environment=environment_of(spec),
        cpu=target.cpu if target else None,
        memory_mb=target.memory_mb if target else None,
        labels={"millrace.run": str(step.run.uuid), "millrace.worker": WORKER_ID},
    )
    return Prepared(launch=launch, workdir=workdir, outputs=outputs, control=control)


def _has_files(datastore: Datastore, path: str) -> bool:
    try:
        storage_for(datastore).stat(path)
    except NotFound:
        return False
    return True


class MetricsTail:
    """Reads what the step's SDK appends to control/metrics.jsonl, line by line."""

    def __init__(self, step: StepRun, control: Path) -> None:
        self.step = step
        self.path = control / "metrics.jsonl"
        self.offset = 0
        self.partial = b""
        self.count = 0

    def poll(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        rows: list[Metric] = []
        for raw in lines:
            try:
                item = json.loads(raw)
                value = item.get("value")
                rows.append(
                    Metric(
                        step_run=self.step,
                        name=str(item["name"])[:255],
                        kind=str(item.get("kind", "scalar"))[:16],
                        value=JSON_NULL if value is None else value,
                        seq=self.count + len(rows),
                    )
                )
            except (ValueError, KeyError, TypeError):
                log.warning("Ignoring a malformed metrics line from step %s", self.step.pk)
        if rows:
            Metric.objects.bulk_create(rows)
            self.count += len(rows)
            for row in rows:
                message: MetricPoint = {
                    "type": "metric",
                    "step": str(self.step.uuid),
                    "name": row.name,
                    "kind": row.kind,
                    "value": None if row.value is JSON_NULL else row.value,
                    "seq": row.pk,
                }
                try:
                    publish(run_group(self.step.run.uuid), message)
                except Exception:
                    log.warning("Could not publish a metric", exc_info=True)


def _pump_output(execution: Execution, driver: LogWriter) -> None:
    splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
    try:
        for stream, chunk in execution.output():
            driver.write_many(stream, splitters[stream].feed(chunk))
        for name, splitter in splitters.items():
            driver.write_many(name, splitter.end())
        driver.flush()
    finally:
        connection.close()


def _set(step: StepRun, allowed: tuple[str, ...], **fields: Any) -> bool:
    # Only this attempt may change the row: a stale attempt (its worker was thought lost and
    # the step retried elsewhere) must not overwrite the new one's result.
    done = StepRun.objects.filter(pk=step.pk, status__in=allowed, attempt=step.attempt).update(
        **fields
    )
    if done:
        for key, value in fields.items():
            setattr(step, key, value)
        publish_step_later(step.run, step)
    return bool(done)


def _watch(
    step: StepRun, execution: Execution, prepared: Prepared, driver: LogWriter
) -> tuple[int, str]:
    """Wait for the step, heartbeating, following cancel and timeout. Returns (exit, error)."""
    reader = threading.Thread(target=_pump_output, args=(execution, driver), daemon=True)
    reader.start()
    metrics = MetricsTail(step, prepared.control)
    timeout = step.spec.get("timeout_seconds")
    started = time.monotonic()
    last_beat = 0.0
    stopping_since: float | None = None
    reason = ""
    while True:
        code = execution.wait(POLL_SECONDS)
        metrics.poll()
        driver.flush()
        if code is not None:
            break
        now = time.monotonic()
        if now - last_beat >= CANCEL_CHECK_SECONDS:
            last_beat = now
            status = StepRun.objects.values_list("status", flat=True).get(pk=step.pk)
            if status == Status.CANCEL_REQUESTED and stopping_since is None:
                reason = "canceled"
                driver.write("stderr", "[millrace] Cancel requested: sending SIGTERM.")
                execution.terminate()
                stopping_since = now
        if timeout and stopping_since is None and now - started > timeout:
            reason = f"Timed out after {timeout} s."
            driver.write("stderr", f"[millrace] {reason} Sending SIGTERM.")
            execution.terminate()
            stopping_since = now
        if stopping_since is not None and now - stopping_since > CANCEL_GRACE_SECONDS:
            driver.write("stderr", "[millrace] Still running after the grace period: SIGKILL.")
            execution.kill()
            stopping_since = float("inf")
    reader.join(timeout=30)
    metrics.poll()
    driver.flush()
    return code, reason


def _upload_outputs(step: StepRun, prepared: Prepared, post: LogWriter) -> None:
    resolved = step.spec["resolved"]
    for name, where in resolved["outputs"].items():
        datastore = _datastore(step, where["datastore"])
        count = storage_for(datastore).upload_dir(
            prepared.outputs[name], where["path"], overwrite=True
        )
        post.write(
            "stdout", f"Output '{name}': {count} file(s) → {where['datastore']}:{where['path']}"
        )
        Output.objects.update_or_create(
            step_run=step,
            name=name,
            defaults={"datastore": where["datastore"], "path": where["path"], "file_count": count},
        )
    files = prepared.control / "files"
    if any(files.rglob("*")):
        store = where_files = f"azureml/{step.uuid}/files/"
        datastore = _datastore(step, "workspaceblobstore")
        count = storage_for(datastore).upload_dir(files, where_files, overwrite=True)
        post.write("stdout", f"Uploaded {count} file(s) from the run to workspaceblobstore:{store}")
        for path in files.rglob("*"):
            if path.is_file():
                relative = path.relative_to(files).as_posix()
                Output.objects.update_or_create(
                    step_run=step,
                    name=relative,
                    defaults={
                        "datastore": "workspaceblobstore",
                        "path": where_files + relative,
                        "kind": "file",
                    },
                )


def _store_log_files(step: StepRun) -> None:
    """azureml-logs/70_driver_log.txt etc. next to the step's outputs, after it ends."""
    datastore = _datastore(step, "workspaceblobstore")
    storage = storage_for(datastore)
    for log_name, file_name in LOG_FILES.items():
        text = log_text(step, log_name).encode()
        if text:
            storage.write(
                f"azureml/{step.uuid}/azureml-logs/{file_name}",
                io.BytesIO(text),
                overwrite=True,
                length=len(text),
            )


def execute_step(step_id: int, queue: str | None = None) -> int | None:
    """Run one step here, if it is still ours to run (see the module docstring).

    Returns the id of a step that finishing this one made ready on the same ``queue``, for
    the caller to run next, or None.
    """
    close_old_connections()
    step = (
        StepRun.objects.select_related("run__experiment", "run__workspace", "compute_target")
        .filter(pk=step_id)
        .first()
    )
    if step is None or step.status != Status.QUEUED:
        return None
    now = timezone.now()
    # One conditional UPDATE claims the step and counts the attempt; winning it makes the row
    # ours, so the copy in memory only needs the same changes.
    claimed = StepRun.objects.filter(pk=step.pk, status=Status.QUEUED).update(
        status=Status.PREPARING,
        worker=WORKER_ID,
        heartbeat_at=now,
        started_at=now,
        error="",
        attempt=F("attempt") + 1,
    )
    if not claimed:
        return None
    step.status, step.worker, step.heartbeat_at, step.started_at, step.error = (
        Status.PREPARING,
        WORKER_ID,
        now,
        now,
        "",
    )
    step.attempt += 1
    attempt = StepAttempt.objects.create(
        step_run=step, number=step.attempt, worker=WORKER_ID, status=Status.PREPARING
    )
    publish_step_later(step.run, step)
    heartbeat = Heartbeat(step)
    heartbeat.start()
    try:
        return _execute_claimed(step, attempt, now, queue)
    finally:
        heartbeat.stop()


class Heartbeat(threading.Thread):
    """Marks the step alive every HEARTBEAT_SECONDS from claim to finish, through environment
    builds, downloads and uploads too (only while this attempt owns the step)."""

    def __init__(self, step: StepRun) -> None:
        super().__init__(name=f"heartbeat-{step.pk}", daemon=True)
        self.step_id = step.pk
        self.attempt = step.attempt
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(HEARTBEAT_SECONDS):
                StepRun.objects.filter(pk=self.step_id, attempt=self.attempt).exclude(
                    status__in=TERMINAL
                ).update(heartbeat_at=timezone.now())
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop_event.set()


def _execute_claimed(
    step: StepRun, attempt: StepAttempt, now: Any, queue: str | None
) -> int | None:
    timings: dict[str, float] = dict(step.timings)
    if step.queued_at:
        timings["queued"] = (now - step.queued_at).total_seconds()
    workdir = data_root() / "work" / str(step.uuid) / str(step.attempt)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    run_uuid = step.run.uuid
    prep, build = LogWriter(step, run_uuid, "prep"), LogWriter(step, run_uuid, "build")
    driver, post = LogWriter(step, run_uuid, "driver"), LogWriter(step, run_uuid, "post")
    execution: Execution | None = None
    final, exit_code, error = Status.FAILED, None, ""
    retry = False
    try:
        assert step.compute_target is not None
        executor = executor_for(step.compute_target.kind)
        mark = time.monotonic()
        handle = executor.prepare(
            environment_of(step.spec), lambda line: build.write("stdout", line)
        )
        build.flush()
        timings["environment"] = time.monotonic() - mark
        mark = time.monotonic()
        prepared = prepare_inputs(step, workdir, prep)
        prep.flush()
        timings["inputs"] = time.monotonic() - mark
        if not _set(step, (Status.PREPARING,), status=Status.RUNNING):
            raise StepCanceled()
        attempt.status = Status.RUNNING
        attempt.save(update_fields=["status"])
        mark = time.monotonic()
        execution = executor.start(prepared.launch, handle)
        exit_code, reason = _watch(step, execution, prepared, driver)
        timings["running"] = time.monotonic() - mark
        if reason == "canceled":
            final, error = Status.CANCELED, "Canceled on request."
        elif reason:
            final, error = Status.FAILED, reason
        elif exit_code != 0:
            final = Status.FAILED
            error = (
                f"Killed by signal {-exit_code}."
                if exit_code < 0
                else "Killed (SIGKILL, exit 137)."
                if exit_code == 137
                else f"The script exited with code {exit_code}."
            )
        else:
            _set(step, (Status.RUNNING,), status=Status.FINALIZING)
            mark = time.monotonic()
            _upload_outputs(step, prepared, post)
            post.flush()
            timings["outputs"] = time.monotonic() - mark
            final = Status.COMPLETED
    except StepCanceled:
        final, error = Status.CANCELED, "Canceled on request."
    except ExecutorError as exc:
        error = f"Infrastructure failure: {exc}"
        build.write("stderr", error)
        retry = step.attempt <= max_retries_of(step.spec)
    except Exception as exc:
        log.exception("Step %s failed in the worker", step.pk)
        error = f"{type(exc).__name__}: {exc}"
        prep.write("stderr", error)
    finally:
        if execution is not None:
            try:
                execution.cleanup()
            except Exception:
                log.exception("Cleanup of step %s failed", step.pk)
        for writer in (prep, build, driver, post):
            writer.flush()
        shutil.rmtree(workdir, ignore_errors=True)
    ready = finish(step, attempt, final, exit_code, error, timings, retry)
    # Run the next step of this queue here and now: a chain does not wait for the queue. (Its
    # queue message is sent too; whichever claims the step first runs it.)
    return next((step_id for step_id, q in ready if q == queue), None)


def finish(
    step: StepRun,
    attempt: StepAttempt,
    final: str,
    exit_code: int | None,
    error: str,
    timings: dict[str, float],
    retry: bool,
) -> list[tuple[int, str]]:
    """Record the result, advance the run; returns the steps that advancing claimed."""
    now = timezone.now()
    attempt.status, attempt.exit_code, attempt.error, attempt.finished_at = (
        final,
        exit_code,
        error,
        now,
    )
    attempt.save(update_fields=["status", "exit_code", "error", "finished_at"])
    active = (Status.PREPARING, Status.RUNNING, Status.FINALIZING, Status.CANCEL_REQUESTED)
    with transaction.atomic():
        if retry:
            requeued = StepRun.objects.filter(
                pk=step.pk, status__in=active, attempt=step.attempt
            ).update(status=Status.QUEUED, queued_at=now, error=error, timings=timings, worker="")
            if requeued:
                from runs.orchestrator import enqueue_step

                assert step.compute_target is not None
                queue = step.compute_target.queue
                transaction.on_commit(lambda: enqueue_step(step, queue))
                return []
        # A cancel that arrived while we finished wins over Completed/Failed.
        current = StepRun.objects.values_list("status", flat=True).get(pk=step.pk)
        if current == Status.CANCEL_REQUESTED and final != Status.COMPLETED:
            final, error = Status.CANCELED, error or "Canceled on request."
        _set(
            step,
            active,
            status=final,
            exit_code=exit_code,
            error=error,
            finished_at=now,
            timings=timings,
        )
    with collect_claims() as claimed:
        advance_run(step.run_id)
    # Off the critical path: the log files are for later readers, and other runs waiting for
    # a slot on this target are advanced by another task.
    from runs.tasks import after_step

    after_step.delay(step.pk)
    return claimed


def after_step(step_id: int) -> None:
    """Write a finished step's log files and advance runs waiting for a slot on its target."""
    step = StepRun.objects.select_related("run", "compute_target").filter(pk=step_id).first()
    if step is None:
        return
    try:
        _store_log_files(step)
    except Exception:  # the logs stay readable from the database
        log.warning("Could not write the log files of step %s", step.pk, exc_info=True)
    if step.compute_target is not None:
        for run_id in runs_waiting_on(step.compute_target):
            if run_id != step.run_id:
                advance_run(run_id)
