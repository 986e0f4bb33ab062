"""Downloads shared by the pages and the API: a step's whole log as a streamed text file."""

from __future__ import annotations

from django.http import StreamingHttpResponse

from runs.logs import LOG_FILES, iter_log_text
from runs.models import StepRun


def log_download(step: StepRun, log_name: str) -> StreamingHttpResponse:
    """``log_name`` (a key of LOG_FILES) of ``step`` — of its origin when it was reused — as
    an attachment named like Azure's file, streamed chunk by chunk."""
    source = step.reused_from or step
    response = StreamingHttpResponse(
        iter_log_text(source, log_name), content_type="text/plain; charset=utf-8"
    )
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in step.name)
    response["Content-Disposition"] = f'attachment; filename="{safe_name}-{LOG_FILES[log_name]}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
