"""Experiment and run list pages (placeholder until issue 6's pages land)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def experiment_list(request: HttpRequest, workspace_id: str) -> HttpResponse:
    raise Http404("Not built yet.")


def run_list(request: HttpRequest, workspace_id: str) -> HttpResponse:
    raise Http404("Not built yet.")
