"""Experiment and run list pages: filters as GET forms, keyset pagination newest first, a
fixed number of queries however many runs there are (indexes in migration 0004)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils import timezone
from django.views.decorators.http import require_GET

from pipelines.models import Pipeline
from portal.access import get_workspace_for_user
from portal.models import Membership
from portal.views import _page
from runs.models import Experiment, PipelineRun, Status, tagged

RUN_PAGE_SIZE = 50
EXPERIMENT_PAGE_SIZE = 50
# The pipeline filter lists the newest definitions; older ones are reached from their page.
PIPELINE_CHOICES = 300

# What a run row shows; the graph (big for 100+ steps) and parameters stay in the database.
ROW_FIELDS = (
    "uuid",
    "status",
    "tags",
    "source",
    "created_at",
    "started_at",
    "finished_at",
    "experiment__uuid",
    "experiment__name",
    "pipeline__uuid",
    "pipeline__name",
    "pipeline__step_count",
    "submitted_by__username",
)


def human_duration(seconds: float | None) -> str:
    """'3 min 4 s', '2 h 5 min', '850 ms'; '' when unknown."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f} ms"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def run_duration(run: PipelineRun, now: dt.datetime) -> tuple[str, bool]:
    """(text, still running?) from when the run started to when it finished (or now)."""
    if run.started_at is None:
        return "", False
    end = run.finished_at or now
    return human_duration((end - run.started_at).total_seconds()), run.finished_at is None


# --- filters -----------------------------------------------------------------------------------


class RunFilterForm(forms.Form):
    """The run list's filters. Choices come from the workspace (see ``for_workspace``)."""

    status = forms.ChoiceField(required=False)
    experiment = forms.ChoiceField(required=False)
    pipeline = forms.ChoiceField(required=False)
    submitter = forms.ChoiceField(required=False, label="Submitted by")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    tag = forms.CharField(
        required=False, max_length=300, help_text="key, or key=value", label="Tag"
    )

    def __init__(self, data: QueryDict, *, workspace: Any) -> None:
        super().__init__(data)
        self.experiments = list(
            Experiment.objects.filter(workspace=workspace).only("uuid", "name").order_by("name")
        )
        self.pipelines = list(
            Pipeline.objects.filter(workspace=workspace)
            .only("uuid", "name", "digest", "created_at")
            .order_by("-created_at", "-id")[:PIPELINE_CHOICES]
        )
        self.members = list(
            Membership.objects.filter(workspace=workspace)
            .select_related("user")
            .only("user__id", "user__username")
            .order_by("user__username")
        )
        fields = self.fields
        fields["status"].choices = [("", "Any status"), *Status.choices]  # type: ignore[attr-defined]
        fields["experiment"].choices = [  # type: ignore[attr-defined]
            ("", "Any experiment"),
            *((str(e.uuid), e.name) for e in self.experiments),
        ]
        fields["pipeline"].choices = [  # type: ignore[attr-defined]
            ("", "Any pipeline"),
            *((str(p.uuid), f"{p.name} ({p.digest[:8]})") for p in self.pipelines),
        ]
        fields["submitter"].choices = [  # type: ignore[attr-defined]
            ("", "Anyone"),
            *((m.user.username, m.user.username) for m in self.members),
        ]
        # A pipeline linked from its own page may be older than the newest few listed.
        wanted = data.get("pipeline")
        if wanted and wanted not in {str(p.uuid) for p in self.pipelines}:
            fields["pipeline"].choices.append((wanted, "the linked pipeline"))  # type: ignore[attr-defined]

    def clean_tag(self) -> tuple[str, str | None] | None:
        text = (self.cleaned_data.get("tag") or "").strip()
        if not text:
            return None
        key, sep, value = text.partition("=")
        if not key.strip():
            raise ValidationError("Give a tag key, or key=value.")
        return key.strip(), (value.strip() if sep else None)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError("'From' is after 'To'.")
        return data

    def apply(self, runs: QuerySet[PipelineRun]) -> QuerySet[PipelineRun]:
        data = self.cleaned_data
        if data.get("status"):
            runs = runs.filter(status=data["status"])
        if data.get("experiment"):
            runs = runs.filter(experiment__uuid=data["experiment"])
        if data.get("pipeline"):
            runs = runs.filter(pipeline__uuid=data["pipeline"])
        if data.get("submitter"):
            user_ids = [m.user.pk for m in self.members if m.user.username == data["submitter"]]
            runs = runs.filter(submitted_by_id__in=user_ids)
        # Whole days in the server's time zone, as bounds on created_at so the index is used.
        tz = timezone.get_current_timezone()
        if data.get("since"):
            runs = runs.filter(created_at__gte=dt.datetime.combine(data["since"], dt.time(), tz))
        if data.get("until"):
            end = data["until"] + dt.timedelta(days=1)
            runs = runs.filter(created_at__lt=dt.datetime.combine(end, dt.time(), tz))
        if data.get("tag"):
            key, value = data["tag"]
            runs = tagged(runs, key, value)
        return runs


# --- keyset pagination -------------------------------------------------------------------------


@dataclass
class RunPage:
    runs: list[PipelineRun]
    newer: str | None  # the ``before`` cursor of the previous (newer) page
    older: str | None  # the ``after`` cursor of the next (older) page


def _cursor_run(runs: QuerySet[PipelineRun], value: str | None) -> PipelineRun | None:
    if not value:
        return None
    try:
        return runs.select_related(None).only("created_at", "id").filter(uuid=value).first()
    except ValidationError:  # not a UUID
        return None


def _first_page(runs: QuerySet[PipelineRun], size: int) -> RunPage:
    rows = list(runs.order_by("-created_at", "-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return RunPage(rows, None, str(rows[-1].uuid) if more else None)


def keyset_page(
    runs: QuerySet[PipelineRun], *, after: str | None, before: str | None, size: int
) -> RunPage:
    """One page of runs, newest first, by (created_at, id): the page after the run ``after``
    (older), or before the run ``before`` (newer), or the first. Cursors are run UUIDs, so no
    integer id leaves the server; a cursor that names no run (in this filter) gives the first
    page. Runs created at the same instant are told apart by id, so none is skipped or shown
    twice."""
    anchor = _cursor_run(runs, after)
    if anchor is not None:
        # The redundant "created_at <=" bound lets PostgreSQL seek the (…, created_at, id)
        # index instead of filtering every newer row out of a scan.
        older = Q(created_at__lte=anchor.created_at) & (
            Q(created_at__lt=anchor.created_at) | Q(id__lt=anchor.pk)
        )
        rows = list(runs.filter(older).order_by("-created_at", "-id")[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        return RunPage(
            rows, str(rows[0].uuid) if rows else None, str(rows[-1].uuid) if more else None
        )
    anchor = _cursor_run(runs, before)
    if anchor is None:
        return _first_page(runs, size)
    newer = Q(created_at__gte=anchor.created_at) & (
        Q(created_at__gt=anchor.created_at) | Q(id__gt=anchor.pk)
    )
    rows = list(runs.filter(newer).order_by("created_at", "id")[: size + 1])
    if len(rows) <= size:
        # Back at the newest runs: show a full first page rather than a short one.
        return _first_page(runs, size)
    rows = rows[:size][::-1]
    return RunPage(rows, str(rows[0].uuid), str(rows[-1].uuid))


def run_rows(runs: QuerySet[PipelineRun]) -> QuerySet[PipelineRun]:
    """Runs with what a list row shows, in the same query."""
    return runs.select_related("experiment", "pipeline", "submitted_by").only(*ROW_FIELDS)


def decorate(runs: list[PipelineRun]) -> list[PipelineRun]:
    """Give each run its duration text (for the row template)."""
    now = timezone.now()
    for run in runs:
        run.duration_text, run.is_ongoing = run_duration(run, now)  # type: ignore[attr-defined]
    return runs


# --- pages -------------------------------------------------------------------------------------


@login_required
@require_GET
def run_list(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    form = RunFilterForm(request.GET, workspace=access.workspace)
    runs = PipelineRun.objects.filter(workspace=access.workspace)
    valid = form.is_valid()
    if valid:
        runs = form.apply(runs)
    page = keyset_page(
        run_rows(runs),
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        size=RUN_PAGE_SIZE,
    )
    query = request.GET.copy()
    for key in ("after", "before"):
        query.pop(key, None)
    filtered = any(v for k, v in query.items())
    return _page(
        request,
        "runs/run_list.html",
        access,
        form=form,
        page=page,
        runs=decorate(page.runs) if valid else [],
        query=query.urlencode(),
        filtered=filtered,
        status=200 if valid else 400,
    )


EXPERIMENT_SORTS = {
    "name": ("name", "Name A to Z"),
    "-name": ("-name", "Name Z to A"),
    "-last_run": ("-last_run_at", "Latest run first"),
    "-created": ("-created_at", "Newest first"),
}


@login_required
@require_GET
def experiment_list(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    q = (request.GET.get("q") or "").strip()[:255]
    sort = request.GET.get("sort") or "-last_run"
    if sort not in EXPERIMENT_SORTS:
        sort = "-last_run"
    latest = PipelineRun.objects.filter(experiment=OuterRef("pk")).order_by("-created_at", "-id")
    # Per-row subqueries over the (experiment, created_at, id) index: one query for the page.
    run_count = (
        PipelineRun.objects.filter(experiment=OuterRef("pk"))
        .order_by()
        .values("experiment")
        .annotate(n=Count("*"))
        .values("n")
    )
    experiments = (
        Experiment.objects.filter(workspace=access.workspace)
        .annotate(
            last_run_at=Subquery(latest.values("created_at")[:1]),
            last_run_status=Subquery(latest.values("status")[:1]),
            last_run_uuid=Subquery(latest.values("uuid")[:1]),
            run_count=Subquery(run_count, output_field=IntegerField()),
        )
        .order_by(
            F(EXPERIMENT_SORTS[sort][0].lstrip("-")).desc(nulls_last=True)
            if sort.startswith("-")
            else F(EXPERIMENT_SORTS[sort][0]).asc(),
            "id",
        )
    )
    if q:
        experiments = experiments.filter(name__icontains=q)
    page = Paginator(experiments, EXPERIMENT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return _page(
        request,
        "runs/experiment_list.html",
        access,
        page=page,
        q=q,
        sort=sort,
        sorts=[(key, label) for key, (_, label) in EXPERIMENT_SORTS.items()],
        query=query.urlencode(),
    )
