"""Step logs: every line kept durably first (LogChunk rows), then published to the run's
group, each with the step's next sequence number, so a reader can replay and then follow
without gaps or duplicates."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import connection

from portal.realtime import LogLines, publish, run_group
from runs.models import LogChunk, StepRun

log = logging.getLogger(__name__)

FLUSH_LINES = 2000
FLUSH_BYTES = 1024 * 1024
FLUSH_SECONDS = 0.1
# A single line larger than this is stored whole but sent live in pieces of this size.
LIVE_LINE_LIMIT = 64 * 1024


class LogWriter:
    """Buffers lines of one step and writes them in chunks (thread-safe)."""

    def __init__(self, step: StepRun, run_uuid: Any, log_name: str = "driver") -> None:
        self.step = step
        self.run_uuid = run_uuid
        self.log_name = log_name
        # One lock per step for all its logs: numbers are reserved and lines published in the
        # same order, so a follower never sees a later line before an earlier one.
        self._lock = _step_lock(step.pk)
        self._buffer_lock = threading.Lock()
        self._pending: list[list[Any]] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        self.lines_written = 0

    def write(self, stream: str, text: str) -> None:
        with self._buffer_lock:
            self._pending.append([0, stream, text])
            self._pending_bytes += len(text)
            due = (
                len(self._pending) >= FLUSH_LINES
                or self._pending_bytes >= FLUSH_BYTES
                or time.monotonic() - self._last_flush >= FLUSH_SECONDS
            )
        if due:
            self.flush()

    def write_many(self, stream: str, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(stream, line)

    def flush(self) -> None:
        with self._lock:
            with self._buffer_lock:
                if not self._pending:
                    self._last_flush = time.monotonic()
                    return
                lines, self._pending, self._pending_bytes = self._pending, [], 0
                self._last_flush = time.monotonic()
            # Take a range of sequence numbers in one UPDATE: several writers (driver, metrics)
            # of one step never hand out the same number.
            last = _take_sequence_numbers(self.step.pk, len(lines))
            first = last - len(lines) + 1
            for offset, line in enumerate(lines):
                line[0] = first + offset
            LogChunk.objects.create(
                step_run=self.step, log=self.log_name, first_seq=first, last_seq=last, lines=lines
            )
            self.lines_written += len(lines)
            self._publish(lines)

    def _publish(self, lines: list[list[Any]]) -> None:
        message: LogLines = {
            "type": "log_lines",
            "step": str(self.step.uuid),
            "log": self.log_name,
            "lines": [
                [
                    s,
                    st,
                    t
                    if len(t) <= LIVE_LINE_LIMIT
                    else t[:LIVE_LINE_LIMIT] + " …[line continues in the stored log]",
                ]
                for s, st, t in lines
            ],
        }
        try:
            publish(run_group(self.run_uuid), message)
        except Exception:
            log.warning("Could not publish log lines", exc_info=True)


_step_locks: dict[int, threading.Lock] = {}
_step_locks_guard = threading.Lock()


def _step_lock(step_id: int) -> threading.Lock:
    with _step_locks_guard:
        if len(_step_locks) > 10_000:  # a long-lived worker: forget old steps
            _step_locks.clear()
        return _step_locks.setdefault(step_id, threading.Lock())


def _take_sequence_numbers(step_id: int, count: int) -> int:
    """Reserve ``count`` numbers in one statement; returns the last one."""
    table = StepRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET log_seq = log_seq + %s WHERE id = %s RETURNING log_seq",  # noqa: S608
            [count, step_id],
        )
        row = cursor.fetchone()
    return int(row[0])


class LineSplitter:
    """Turns byte chunks of one stream into text lines (a partial line waits for its end)."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in complete]

    def end(self) -> list[str]:
        rest, self._partial = self._partial, b""
        return [rest.decode("utf-8", errors="replace")] if rest else []


def read_chunks(
    step: StepRun, *, after: int = 0, upto: int | None = None
) -> list[tuple[str, list[list[Any]]]]:
    """Stored lines with ``after`` < seq (<= ``upto``), grouped by log, in order."""
    chunks = LogChunk.objects.filter(step_run=step, last_seq__gt=after).order_by("first_seq")
    if upto is not None:
        chunks = chunks.filter(first_seq__lte=upto)
    out: list[tuple[str, list[list[Any]]]] = []
    for chunk in chunks.iterator():
        lines = [
            line for line in chunk.lines if line[0] > after and (upto is None or line[0] <= upto)
        ]
        if not lines:
            continue
        if out and out[-1][0] == chunk.log:
            out[-1][1].extend(lines)
        else:
            out.append((chunk.log, lines))
    return out


# Each log of a step and its Azure file name (azureml-logs/<name>).
LOG_FILES = {
    "driver": "70_driver_log.txt",
    "prep": "65_job_prep.txt",
    "build": "20_image_build_log.txt",
    "post": "75_job_post.txt",
}
LOG_NAMES = tuple(LOG_FILES)


def iter_log_text(step: StepRun, log_name: str = "driver") -> Iterator[bytes]:
    """The whole log as UTF-8 text, one stored chunk at a time (for streamed downloads)."""
    for chunk in (
        LogChunk.objects.filter(step_run=step, log=log_name).order_by("first_seq").iterator()
    ):
        yield "".join(f"{text}\n" for _, _, text in chunk.lines).encode()


def log_text(step: StepRun, log_name: str = "driver") -> str:
    """The whole log as text (the azureml-logs file)."""
    return b"".join(iter_log_text(step, log_name)).decode()
