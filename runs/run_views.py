"""Run page, step panel, compare, cancel and resubmit.

Thin like portal.views: the workspace through the access helper, the run and its steps looked
up inside it (outsiders get 404), one service per write. The step panel is one template used
three ways: inside the run page, on its own page (no JS) and as an htmx fragment; the step row
likewise serves the first render and the live refresh of a finished step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from pipelines.models import Snapshot
from pipelines.snapshots import blob_path, blob_storage
from portal.access import Access, get_workspace_for_user
from portal.datastores import storage_for
from portal.lib.secrets_box import CredentialsUnreadable
from portal.models import Datastore, Role
from portal.storage import StorageError
from portal.views import _actor, _flash, _page
from runs import services
from runs.downloads import log_download
from runs.logs import LOG_FILES, LOG_NAMES
from runs.models import ACTIVE, TERMINAL, LogChunk, Metric, Output, PipelineRun, Status, StepRun
from runs.orchestrator import REUSE_PART_WORDS
from runs.zipstream import zip_stream

# The panel shows the end of a log; the download has all of it.
PANEL_LINES = 5000
SYSTEM_LOGS = ("build", "prep", "post")
PHASES = ("queued", "environment", "inputs", "running", "outputs")
SOURCES = {"sdk": "SDK", "rest": "REST API", "portal": "portal", "schedule": "schedule"}
COMPARE_MIN, COMPARE_MAX = 2, 10
OUTPUT_LISTING = 20
SNAPSHOT_PREVIEW_BYTES = 256 * 1024


# --- lookups -----------------------------------------------------------------------------------


def _key(raw: str, what: str) -> UUID:
    try:
        return UUID(str(raw))
    except ValueError:
        raise Http404(f"No such {what}.") from None


def _run_for(access: Access, run_id: str) -> PipelineRun:
    """The run by public id inside the member's workspace, or 404."""
    run = (
        PipelineRun.objects.filter(workspace=access.workspace, uuid=_key(run_id, "run"))
        .select_related("experiment", "submitted_by", "pipeline")
        .first()
    )
    if run is None:
        raise Http404("No such run.")
    run.workspace = access.workspace
    return run


def _steps_of(run: PipelineRun) -> list[StepRun]:
    steps = list(run.steps.select_related("reused_from__run", "compute_target"))
    for step in steps:
        step.run = run
    return steps


def _step_for(run: PipelineRun, step_id: str) -> StepRun:
    step = (
        StepRun.objects.filter(run=run, uuid=_key(step_id, "step"))
        .select_related("reused_from__run", "compute_target")
        .first()
    )
    if step is None:
        raise Http404("No such step in this run.")
    step.run = run
    return step


# --- small formatting helpers ------------------------------------------------------------------


def duration_text(seconds: float | None) -> str:
    """'0.42 s', '12.3 s', '4 min 05 s', '2 h 07 min' — or '' when unknown."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def value_text(value: Any) -> str:
    """A metric or parameter value as a person reads it (floats to 6 significant digits)."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict) and set(value) == {"datastore", "path"}:
        return f"{value['datastore']}:{value['path']}"
    return str(value)


def _elapsed(start: Any, end: Any) -> float | None:
    if start is None:
        return None
    return max(0.0, ((end or timezone.now()) - start).total_seconds())


@dataclass
class Phase:
    name: str
    seconds: float
    percent: float
    text: str


def _phases(step: StepRun) -> list[Phase]:
    timings = step.timings if isinstance(step.timings, dict) else {}
    known = [
        (name, float(timings[name]))
        for name in PHASES
        if isinstance(timings.get(name), int | float) and timings[name] >= 0
    ]
    total = sum(seconds for _, seconds in known)
    return [
        Phase(
            name=name,
            seconds=seconds,
            # Every phase stays visible, however short, so the bar reads as a timeline.
            percent=max(1.5, 100 * seconds / total) if total else 0,
            text=duration_text(seconds),
        )
        for name, seconds in known
    ]


def _decorate(step: StepRun) -> StepRun:
    """Attach what the row and the panel show (no queries)."""
    step.duration = duration_text(_elapsed(step.started_at, step.finished_at))  # type: ignore[attr-defined]
    step.phases = _phases(step)  # type: ignore[attr-defined]
    step.is_active = step.status in ACTIVE or step.status == Status.CANCEL_REQUESTED  # type: ignore[attr-defined]
    return step


def _link(name: str, **kwargs: Any) -> str | None:
    """A page of the other helpers' apps, or None while it is not there."""
    try:
        return reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        return None


# --- the step panel ----------------------------------------------------------------------------


@dataclass
class LogView:
    name: str
    file_name: str
    lines: list[list[Any]] = field(default_factory=list)
    cut: bool = False  # earlier lines exist that the panel does not show


def _tail(source: StepRun, names: tuple[str, ...], limit: int) -> tuple[list[list[Any]], bool]:
    """The last ``limit`` lines of the given logs of a step, in order, [seq, stream, text, log]."""
    picked: list[list[Any]] = []
    cut = False
    chunks = LogChunk.objects.filter(step_run=source, log__in=names).order_by("-first_seq")
    for chunk in chunks.iterator():
        if len(picked) >= limit:
            cut = True
            break
        picked.extend([*line, chunk.log] for line in reversed(chunk.lines))
    if len(picked) > limit:
        picked, cut = picked[:limit], True
    picked.reverse()
    return picked, cut


@dataclass
class MetricsView:
    scalars: list[dict[str, Any]] = field(default_factory=list)
    # Names drawn as line charts: scalars logged more than once, lists of numbers.
    charts: list[str] = field(default_factory=list)
    # For the charts (and live points added to them): numeric scalar values and number lists.
    data: dict[str, dict[str, list[float | None]]] = field(
        default_factory=lambda: {"scalars": {}, "lists": {}}
    )
    tables: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    tags: list[tuple[str, str]] = field(default_factory=list)
    # The id of the last metric shown: the live channel replays and sends only later ones.
    last_seq: int = 0

    @property
    def empty(self) -> bool:
        return not (self.scalars or self.tables or self.images or self.tags)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _table_of(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    return {
        "name": name,
        "columns": columns,
        "rows": [[value_text(row.get(c)) for c in columns] for row in rows],
    }


def _metrics_view(access: Access, source: StepRun) -> MetricsView:
    view = MetricsView()
    scalars: dict[str, list[Any]] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    tables: dict[str, dict[str, Any]] = {}
    for metric in Metric.objects.filter(step_run=source).order_by("id").iterator():
        view.last_seq = metric.pk
        value = metric.value
        if metric.kind == "scalar":
            scalars.setdefault(metric.name, []).append(value)
        elif metric.kind == "list" and isinstance(value, list):
            numbers = [_number(v) for v in value]
            if numbers and all(n is not None for n in numbers):
                view.data["lists"][metric.name] = numbers
                if metric.name not in view.charts:
                    view.charts.append(metric.name)
            tables[metric.name] = {"name": metric.name, "columns": ["value"]} | {
                "rows": [[value_text(v)] for v in value]
            }
        elif metric.kind == "row" and isinstance(value, dict):
            rows.setdefault(metric.name, []).append(value)
        elif metric.kind == "table" and isinstance(value, dict):
            columns = [str(c) for c in value]
            length = max((len(v) for v in value.values() if isinstance(v, list)), default=0)
            cells = [
                [
                    value_text(col[i]) if isinstance(col, list) and i < len(col) else ""
                    for col in value.values()
                ]
                for i in range(length)
            ]
            tables[metric.name] = {"name": metric.name, "columns": columns, "rows": cells}
        elif metric.kind == "image" and isinstance(value, dict) and value.get("file"):
            try:
                url = reverse(
                    "api-datastore-file",
                    kwargs={
                        "workspace_id": access.workspace.uuid,
                        "name": "workspaceblobstore",
                        "path": f"azureml/{source.uuid}/files/{value['file']}",
                    },
                )
            except NoReverseMatch:  # a name the step wrote that no file URL can carry
                continue
            view.images.append({"name": metric.name, "url": f"{url}?inline=1"})
        elif metric.kind == "tag":
            view.tags.append((metric.name, "" if value is None else str(value)))
    for name, values in scalars.items():
        numbers = [_number(v) for v in values]
        if all(n is not None for n in numbers):
            view.data["scalars"][name] = numbers
            if len(values) > 1:
                view.charts.append(name)
        view.scalars.append({"name": name, "last": value_text(values[-1]), "count": len(values)})
    view.tables = [_table_of(name, r) for name, r in rows.items()] + list(tables.values())
    return view


@dataclass
class OutputView:
    output: Output
    browse_url: str
    download_url: str | None
    zip_url: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False
    problem: str = ""


def _outputs_view(access: Access, step: StepRun) -> list[OutputView]:
    outputs = list(step.outputs.all())
    datastores = {
        d.name: d
        for d in Datastore.objects.filter(
            workspace=access.workspace, name__in={o.datastore for o in outputs}
        )
    }
    ws = access.workspace.uuid
    views = []
    for output in outputs:
        browse = reverse(
            "datastore-browse",
            kwargs={"workspace_id": ws, "name": output.datastore, "path": output.path},
        )
        is_file = output.kind == "file"
        view = OutputView(
            output=output,
            browse_url=browse,
            download_url=reverse(
                "api-datastore-file",
                kwargs={"workspace_id": ws, "name": output.datastore, "path": output.path},
            )
            if is_file
            else None,
            zip_url=None
            if is_file
            else reverse(
                "step-output-zip",
                kwargs={
                    "workspace_id": ws,
                    "run_id": step.run.uuid,
                    "step_id": step.uuid,
                    "name": output.name,
                },
            ),
        )
        datastore = datastores.get(output.datastore)
        if not is_file and datastore is not None and step.is_terminal:
            datastore.workspace = access.workspace
            try:
                listing = storage_for(datastore).list(output.path, recursive=True)
                for entry in listing:
                    if len(view.files) == OUTPUT_LISTING:
                        view.more = True
                        break
                    view.files.append(
                        {
                            "name": entry.path[len(output.path) :] or entry.name,
                            "size": entry.size,
                            "url": reverse(
                                "datastore-browse",
                                kwargs={
                                    "workspace_id": ws,
                                    "name": output.datastore,
                                    "path": entry.path,
                                },
                            ),
                        }
                    )
            except (StorageError, CredentialsUnreadable) as exc:
                view.problem = f"Could not list the files: {exc}"
        elif datastore is None:
            view.problem = f"The datastore '{output.datastore}' is no longer registered."
        views.append(view)
    return views


@dataclass
class SnapshotView:
    digest: str
    files: list[tuple[str, int]]
    shown: str = ""
    text: str | None = None
    problem: str = ""


def _snapshot_view(access: Access, step: StepRun, wanted: str) -> SnapshotView | None:
    digest = step.spec.get("snapshot") if isinstance(step.spec, dict) else None
    if not isinstance(digest, str):
        return None
    snapshot = Snapshot.objects.filter(workspace=access.workspace, digest=digest).first()
    if snapshot is None:
        return SnapshotView(digest=digest, files=[], problem="The snapshot is gone.")
    manifest = snapshot.manifest if isinstance(snapshot.manifest, dict) else {}
    view = SnapshotView(
        digest=digest, files=sorted((p, int(m.get("size", 0))) for p, m in manifest.items())
    )
    if wanted and wanted in manifest:
        view.shown = wanted
        entry = manifest[wanted]
        try:
            chunks = blob_storage(access.workspace).open_read(
                blob_path(entry["sha256"]), length=SNAPSHOT_PREVIEW_BYTES
            )
            data = b"".join(chunks)
        except (StorageError, CredentialsUnreadable) as exc:
            view.problem = f"Could not read {wanted}: {exc}"
            return view
        if b"\0" in data[:4096]:
            view.problem = f"{wanted} is not a text file."
        else:
            view.text = data.decode("utf-8", errors="replace")
            if entry.get("size", 0) > SNAPSHOT_PREVIEW_BYTES:
                view.problem = f"Showing the first {SNAPSHOT_PREVIEW_BYTES // 1024} KB."
    return view


SINCE_RUN = re.compile(r"changed since run ([0-9a-f-]{36})")


def _reuse_parts_view(run: PipelineRun, step: StepRun) -> tuple[list[dict[str, Any]], Any]:
    """For a step that ran: each reuse key part, and whether it changed since the last
    completed run of this step in the experiment (the run the explanation names)."""
    if step.reused_from_id or not step.reuse_parts:
        return [], None
    candidates = (
        StepRun.objects.filter(
            run__experiment_id=run.experiment_id, name=step.name, status=Status.COMPLETED
        )
        .exclude(run=run)
        .exclude(reuse_parts={})
        .select_related("run")
    )
    # The run the orchestrator compared with, as its explanation names it; else the last one.
    named = SINCE_RUN.search(step.reuse_explanation or "")
    previous = (
        candidates.filter(run__uuid=named.group(1)).first()
        if named
        else candidates.filter(id__lt=step.id).order_by("-finished_at", "-id").first()
    )
    before = previous.reuse_parts if previous else {}
    parts = []
    for key in sorted(set(step.reuse_parts) | set(before)):
        label = REUSE_PART_WORDS.get(
            key, f"input '{key.split(':', 1)[1]}'" if key.startswith("input:") else key
        )
        now_value, old_value = step.reuse_parts.get(key), before.get(key)
        parts.append(
            {
                "key": key,
                "label": label,
                "value": (now_value or "")[:12],
                "changed": previous is not None and now_value != old_value,
            }
        )
    return parts, previous.run if previous else None


def _panel(access: Access, run: PipelineRun, step: StepRun, *, wanted_file: str = "") -> dict:
    """Everything the step panel shows; a constant number of queries."""
    _decorate(step)
    source = step.reused_from or step
    driver, driver_cut = _tail(source, ("driver",), PANEL_LINES)
    system, system_cut = _tail(source, SYSTEM_LOGS, PANEL_LINES)
    # Live lines continue after the last one shown (one sequence per step across its logs).
    shown_seq = max([line[0] for line in driver + system], default=0)
    parts, previous_run = _reuse_parts_view(run, step)
    ws = access.workspace.uuid
    download = reverse(
        "step-log-download", kwargs={"workspace_id": ws, "run_id": run.uuid, "step_id": step.uuid}
    )
    logs = [
        {"name": name, "file_name": LOG_FILES[name], "url": f"{download}?log={name}"}
        for name in LOG_NAMES
    ]
    spec = step.spec if isinstance(step.spec, dict) else {}
    return {
        "run": run,
        "step": step,
        "source": source,
        "live": source is step and not step.is_terminal,
        "driver_lines": driver,
        "driver_cut": driver_cut,
        "system_lines": system,
        "system_cut": system_cut,
        "shown_seq": shown_seq if source is step else 0,
        "logs": logs,
        "download_url": f"{download}?log=driver",
        "metrics": _metrics_view(access, source),
        "outputs": _outputs_view(access, step),
        "snapshot": _snapshot_view(access, step, wanted_file),
        "reuse_parts": parts,
        "previous_run": previous_run,
        "script": spec.get("script", ""),
        "arguments": [_argument_text(run, a) for a in spec.get("arguments") or []],
        "step_url": reverse(
            "step-detail", kwargs={"workspace_id": ws, "run_id": run.uuid, "step_id": step.uuid}
        ),
        "run_url": reverse("run-detail", kwargs={"workspace_id": ws, "run_id": run.uuid}),
    }


def _argument_text(run: PipelineRun, arg: Any) -> str:
    """An argument as the step sees it: a parameter's value, an input or output by name."""
    if isinstance(arg, dict):
        if "parameter" in arg:
            return value_text(run.parameters.get(arg["parameter"], f"<{arg['parameter']}>"))
        for kind in ("input", "output"):
            if kind in arg:
                return f"<{kind} {arg[kind]}>"
    return value_text(arg)


def _default_step(steps: list[StepRun]) -> StepRun | None:
    """The step a person most likely wants: one that is running, else one that failed."""
    for wanted in (ACTIVE, (Status.CANCEL_REQUESTED,), (Status.FAILED,)):
        for step in steps:
            if step.status in wanted:
                return step
    return steps[0] if steps else None


# --- pages -------------------------------------------------------------------------------------


def _header(access: Access, run: PipelineRun) -> dict[str, Any]:
    ws = access.workspace.uuid
    run_list = _link("run-list", workspace_id=ws)
    return {
        "source_label": SOURCES.get(run.source, run.source),
        "duration": duration_text(_elapsed(run.started_at or run.created_at, run.finished_at)),
        "experiment_url": f"{run_list}?experiment={run.experiment.uuid}" if run_list else None,
        "pipeline_url": _link("pipeline-detail", workspace_id=ws, pipeline_id=run.pipeline.uuid)
        if run.pipeline
        else None,
        "parameters": [(k, value_text(v)) for k, v in sorted(run.parameters.items())],
        "tags": sorted(run.tags.items()),
        "can_write": access.can(Role.CONTRIBUTOR),
        "terminal": run.status in TERMINAL,
    }


def _dag(run: PipelineRun, steps: list[StepRun]) -> Any:
    try:
        from runs import dag
    except ImportError:  # the shared renderer lands with the pipelines pages
        return None
    picture = dag.layout(
        run.graph,
        statuses={s.name: s.status for s in steps},
        reused={s.name for s in steps if s.reused_from_id},
    )
    # A box opens its step's panel (the JS loads it in place).
    base = reverse("run-detail", kwargs={"workspace_id": run.workspace.uuid, "run_id": run.uuid})
    uuids = {s.name: s.uuid for s in steps}
    for node in picture.nodes:
        if node.name in uuids:
            node.href = f"{base}?step={uuids[node.name]}"
    return picture


@login_required
@require_GET
def run_detail(request: HttpRequest, workspace_id: str, run_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    run = _run_for(access, run_id)
    steps = [_decorate(s) for s in _steps_of(run)]
    wanted = request.GET.get("step")
    selected = next((s for s in steps if str(s.uuid) == wanted), None) if wanted else None
    if wanted and selected is None:
        raise Http404("No such step in this run.")
    selected = selected or _default_step(steps)
    context: dict[str, Any] = {"run": run}
    if selected is not None:
        # The panel's context (its step, logs, metrics...) is the page's too.
        context = _panel(access, run, selected, wanted_file=request.GET.get("file", ""))
    return _page(
        request,
        "runs/run_detail.html",
        access,
        steps=steps,
        selected=selected,
        seqs={str(s.uuid): s.log_seq for s in steps},
        dag=_dag(run, steps),
        **_header(access, run),
        **context,
    )


@login_required
@require_GET
def step_detail(request: HttpRequest, workspace_id: str, run_id: str, step_id: str) -> HttpResponse:
    """The step panel: its own page without JS, the panel fragment for htmx
    (``HX-Request`` or ``?fragment=panel``), or the step's row (``?fragment=row``)."""
    access = get_workspace_for_user(request.user, workspace_id)
    run = _run_for(access, run_id)
    step = _step_for(run, step_id)
    fragment = request.GET.get("fragment") or ("panel" if request.headers.get("HX-Request") else "")
    if fragment == "row":
        return _page(request, "runs/_step_row.html", access, run=run, step=_decorate(step))
    context = _panel(access, run, step, wanted_file=request.GET.get("file", ""))
    if fragment == "panel":
        return _page(request, "runs/_step_panel.html", access, **context)
    # The live channel carries every step of the run: say how far each one is already.
    seqs = {str(u): seq for u, seq in run.steps.values_list("uuid", "log_seq")}
    seqs[str(step.uuid)] = context["shown_seq"]
    return _page(request, "runs/step_detail.html", access, seqs=seqs, **context)


@login_required
@require_GET
def step_log_download(
    request: HttpRequest, workspace_id: str, run_id: str, step_id: str
) -> HttpResponseBase:
    """A whole log as a text file, streamed chunk by chunk (``?log=driver|prep|build|post``)."""
    access = get_workspace_for_user(request.user, workspace_id)
    run = _run_for(access, run_id)
    step = _step_for(run, step_id)
    log_name = request.GET.get("log", "driver")
    if log_name not in LOG_FILES:
        return HttpResponseBadRequest(
            f"Unknown log '{log_name}': use one of {', '.join(LOG_NAMES)}.",
            content_type="text/plain",
        )
    return log_download(step, log_name)


@login_required
@require_POST
def run_cancel(request: HttpRequest, workspace_id: str, run_id: str) -> HttpResponse:
    access = get_workspace_for_user(
        request.user, workspace_id, role=Role.CONTRIBUTOR, action="canceling runs"
    )
    run = _run_for(access, run_id)
    if run.status in TERMINAL:
        messages.info(request, f"The run already ended ({run.status}).")
    else:
        _flash(
            request,
            lambda: services.cancel_run(actor=_actor(request), run=run),
            "Cancel requested: running steps are being stopped.",
        )
    return redirect("run-detail", workspace_id=access.workspace.uuid, run_id=run.uuid)


@login_required
@require_POST
def run_resubmit(request: HttpRequest, workspace_id: str, run_id: str) -> HttpResponse:
    access = get_workspace_for_user(
        request.user, workspace_id, role=Role.CONTRIBUTOR, action="resubmitting runs"
    )
    run = _run_for(access, run_id)
    try:
        new = services.submit_pipeline_run(
            actor=_actor(request),
            workspace=access.workspace,
            experiment_name=run.experiment.name,
            graph=run.graph,
            pipeline=run.pipeline,
            pipeline_parameters=run.parameters,
            tags=run.tags,
            regenerate_outputs=run.regenerate_outputs,
            continue_on_step_failure=run.continue_on_step_failure,
            source="portal",
        )
    except ValidationError as exc:
        for error in exc.messages:
            messages.error(request, f"Could not resubmit: {error}")
        return redirect("run-detail", workspace_id=access.workspace.uuid, run_id=run.uuid)
    messages.success(request, f"Resubmitted as run {new.uuid}.")
    return redirect("run-detail", workspace_id=access.workspace.uuid, run_id=new.uuid)


# --- compare -----------------------------------------------------------------------------------


def _wanted_runs(request: HttpRequest) -> list[str]:
    ids: list[str] = []
    for raw in request.GET.getlist("runs"):
        for part in raw.split(","):
            part = part.strip()
            if part and part not in ids:
                ids.append(part)
    return ids


def _differs(values: list[Any]) -> bool:
    return len({repr(v) for v in values}) > 1


@login_required
@require_GET
def run_compare(request: HttpRequest, workspace_id: str) -> HttpResponse:
    """2 to 10 runs side by side: parameters, steps, final metrics, series on one chart each."""
    access = get_workspace_for_user(request.user, workspace_id)
    ids = _wanted_runs(request)
    if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
        return _page(
            request,
            "runs/run_compare.html",
            access,
            status=400,
            problem=f"Choose {COMPARE_MIN} to {COMPARE_MAX} runs to compare "
            f"(you chose {len(ids)}).",
            runs=[],
            run_list_url=_link("run-list", workspace_id=access.workspace.uuid),
        )
    keys = [_key(i, "run") for i in ids]
    found = {
        r.uuid: r
        for r in PipelineRun.objects.filter(
            workspace=access.workspace, uuid__in=keys
        ).select_related("experiment", "submitted_by")
    }
    if len(found) != len(keys):
        raise Http404("No such run.")
    runs = [found[k] for k in keys]
    by_pk = {r.pk: i for i, r in enumerate(runs)}
    steps: QuerySet[StepRun] = StepRun.objects.filter(run__in=runs).only(
        "id", "run_id", "name", "status", "started_at", "finished_at", "reused_from_id"
    )
    step_names: list[str] = []
    step_cells: dict[str, list[dict[str, Any] | None]] = {}
    # Metric source step → (run index, step name) of each step showing its metrics: a reused
    # step shows its origin's, which may be a step of another compared run.
    source_of: dict[int, list[tuple[int, str]]] = {}
    for step in steps:
        index = by_pk[step.run_id]
        if step.name not in step_cells:
            step_names.append(step.name)
            step_cells[step.name] = [None] * len(runs)
        step_cells[step.name][index] = {
            "status": step.status,
            "duration": duration_text(_elapsed(step.started_at, step.finished_at)),
            "reused": bool(step.reused_from_id),
        }
        source_of.setdefault(step.reused_from_id or step.id, []).append((index, step.name))
    last: dict[tuple[str, str], list[Any]] = {}
    series: dict[tuple[str, str], list[list[float | None]]] = {}
    for step_id, name, value in (
        Metric.objects.filter(step_run_id__in=list(source_of), kind="scalar")
        .order_by("id")
        .values_list("step_run_id", "name", "value")
        .iterator()
    ):
        for index, step_name in source_of[step_id]:
            key = (step_name, name)
            last.setdefault(key, [None] * len(runs))[index] = value
            series.setdefault(key, [[] for _ in runs])[index].append(_number(value))
    parameter_names = sorted({k for r in runs for k in r.parameters})
    parameters = []
    for name in parameter_names:
        values = [r.parameters.get(name) for r in runs]
        parameters.append(
            {"name": name, "values": [value_text(v) for v in values], "differs": _differs(values)}
        )
    step_rows = []
    for name in step_names:
        cells = step_cells[name]
        statuses = [c["status"] if c else None for c in cells]
        step_rows.append({"name": name, "cells": cells, "differs": _differs(statuses)})
    metric_rows = [
        {
            "step": step_name,
            "name": name,
            "values": [value_text(v) if v is not None else "" for v in values],
            "differs": _differs(values),
        }
        for (step_name, name), values in sorted(last.items())
    ]
    charts = [
        {"title": f"{step_name} · {name}", "series": per_run}
        for (step_name, name), per_run in sorted(series.items())
        if any(len(points) > 1 for points in per_run)
    ]
    ws = access.workspace.uuid
    columns = [
        {
            "run": r,
            "url": reverse("run-detail", kwargs={"workspace_id": ws, "run_id": r.uuid}),
            "duration": duration_text(_elapsed(r.started_at or r.created_at, r.finished_at)),
            "source_label": SOURCES.get(r.source, r.source),
        }
        for r in runs
    ]
    return _page(
        request,
        "runs/run_compare.html",
        access,
        runs=runs,
        columns=columns,
        parameters=parameters,
        step_rows=step_rows,
        metric_rows=metric_rows,
        chart_data={"runs": [str(r.uuid)[:8] for r in runs], "charts": charts},
        run_list_url=_link("run-list", workspace_id=ws),
    )


@login_required
@require_GET
def step_output_zip(
    request: HttpRequest, workspace_id: str, run_id: str, step_id: str, name: str
) -> HttpResponseBase:
    """A folder output as one zip, streamed: the archive is made while it downloads."""
    access = get_workspace_for_user(request.user, workspace_id)
    run = _run_for(access, run_id)
    step = _step_for(run, step_id)
    output = step.outputs.filter(name=name).exclude(kind="file").first()
    if output is None:
        raise Http404("No such folder output of this step.")
    datastore = Datastore.objects.filter(workspace=access.workspace, name=output.datastore).first()
    if datastore is None:
        raise Http404(f"The datastore '{output.datastore}' is no longer registered.")
    datastore.workspace = access.workspace
    storage = storage_for(datastore)
    prefix = output.path

    def files() -> Iterator[tuple[str, Iterator[bytes]]]:
        for entry in storage.list(prefix, recursive=True):
            yield entry.path[len(prefix) :] or entry.name, storage.open_read(entry.path)

    response = StreamingHttpResponse(zip_stream(files()), content_type="application/zip")
    filename = f"{step.name}-{output.name}.zip"
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    response["X-Content-Type-Options"] = "nosniff"
    return response
