"""Run page, step panel, compare, cancel and resubmit (placeholder until issue 6's pages land)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def run_detail(request: HttpRequest, workspace_id: str, run_id: str) -> HttpResponse:
    raise Http404("Not built yet.")


def run_compare(request: HttpRequest, workspace_id: str) -> HttpResponse:
    raise Http404("Not built yet.")


def run_cancel(request: HttpRequest, workspace_id: str, run_id: str) -> HttpResponse:
    raise Http404("Not built yet.")


def run_resubmit(request: HttpRequest, workspace_id: str, run_id: str) -> HttpResponse:
    raise Http404("Not built yet.")


def step_detail(request: HttpRequest, workspace_id: str, run_id: str, step_id: str) -> HttpResponse:
    raise Http404("Not built yet.")


def step_log_download(
    request: HttpRequest, workspace_id: str, run_id: str, step_id: str
) -> HttpResponse:
    raise Http404("Not built yet.")
