"""The storage interface every datastore kind implements, and the path rules they share.

Paths are always relative, '/'-separated and normalized by ``clean_path`` before they reach a
backend, so no backend ever sees '..', an absolute path, a backslash, a NUL byte or an empty
segment.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

CHUNK_SIZE = 4 * 1024 * 1024
MAX_PATH_LENGTH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class StorageError(Exception):
    """The storage service refused or failed; the message says why."""


class InvalidPath(StorageError, ValueError):
    """A path that is not allowed (escapes the datastore, or is malformed)."""


class NotFound(StorageError):
    pass


class Conflict(StorageError):
    """The path exists and overwrite was not asked for."""

    def __init__(self, path: str) -> None:
        super().__init__(f"'{path}' already exists; pass overwrite=true to replace it.")
        self.path = path


@dataclass(frozen=True)
class Entry:
    """A file or a folder in a datastore. Folders have size None."""

    path: str
    is_dir: bool
    size: int | None = None
    modified: datetime | None = None
    # The content's MD5 (hex) when the service keeps one (Azure Blob does for single-shot
    # uploads); None when unknown.
    content_md5: str | None = None

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


class Readable(Protocol):
    """Anything with ``read(size)`` returning bytes: a file, a request body, an upload."""

    def read(self, size: int = -1, /) -> bytes: ...


# progress(bytes_done_since_last_call, files_done_since_last_call)
TransferProgress = Callable[[int, int], None]


def clean_path(path: str, *, allow_root: bool = False) -> str:
    """Normalize a datastore path or raise InvalidPath naming what is wrong.

    Returns the path without leading/trailing slashes ('' for the root when ``allow_root``).
    """
    if not isinstance(path, str):
        raise InvalidPath(f"A path must be text, not {type(path).__name__}.")
    if "\x00" in path:
        raise InvalidPath("The path contains a NUL byte.")
    if _CONTROL.search(path):
        raise InvalidPath(f"The path {path!r} contains a control character.")
    if "\\" in path:
        raise InvalidPath(f"The path {path!r} contains a backslash; use '/' between folders.")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidPath(f"The path is longer than {MAX_PATH_LENGTH} characters.")
    if path.startswith("/"):
        raise InvalidPath(f"The path {path!r} is absolute; give it relative to the datastore.")
    trimmed = path[:-1] if path.endswith("/") else path
    if trimmed == "":
        if allow_root:
            return ""
        raise InvalidPath("The path is empty.")
    for segment in trimmed.split("/"):
        if segment == "":
            raise InvalidPath(f"The path {path!r} has an empty segment ('//').")
        if segment in (".", ".."):
            raise InvalidPath(
                f"The path {path!r} contains '{segment}'; it must stay inside the datastore."
            )
        if segment != segment.strip():
            raise InvalidPath(f"The path {path!r} has a segment with leading or trailing spaces.")
    return trimmed


def clean_prefix(prefix: str | None) -> str:
    """A folder prefix: '' for the root, else 'a/b/' (always ending in '/')."""
    cleaned = clean_path(prefix or "", allow_root=True)
    return f"{cleaned}/" if cleaned else ""


def join(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}" if prefix.strip("/") else name


class Storage(ABC):
    """A datastore's files. Every method takes paths already or not yet cleaned: each cleans."""

    kind: str

    @abstractmethod
    def check(self) -> None:
        """Verify the storage is reachable with its credentials; raise StorageError if not."""

    @abstractmethod
    def list(self, prefix: str = "", *, recursive: bool = False) -> Iterator[Entry]:
        """Entries under ``prefix`` in name order: files and (when not recursive) folders."""

    @abstractmethod
    def stat(self, path: str) -> Entry:
        """The file or folder at ``path``; raises NotFound."""

    @abstractmethod
    def open_read(
        self, path: str, *, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        """Stream a file's bytes in chunks, never holding it whole; raises NotFound."""

    @abstractmethod
    def write(
        self, path: str, stream: Readable, *, overwrite: bool = False, length: int | None = None
    ) -> Entry:
        """Write a file from a stream. Atomic: readers see the old file or the whole new one.

        Raises:
            Conflict: the file exists and ``overwrite`` is false.
        """

    @abstractmethod
    def delete(self, path: str) -> int:
        """Delete a file, or a folder and all below it. Returns how many files went."""

    def copy(self, source: str, target: str, *, overwrite: bool = False) -> Entry:
        """Copy a file within this storage (streamed)."""
        size = self.stat(source).size
        return self.write(
            target, _IterStream(self.open_read(source)), overwrite=overwrite, length=size
        )

    def move(self, source: str, target: str, *, overwrite: bool = False) -> Entry:
        """Move a file within this storage: a copy, then the source deleted (kinds that can
        rename in place do that instead)."""
        entry = self.copy(source, target, overwrite=overwrite)
        self.delete(source)
        return entry

    def upload_dir(
        self,
        local_dir: Path,
        prefix: str = "",
        *,
        overwrite: bool = False,
        workers: int = 8,
        progress: TransferProgress | None = None,
    ) -> int:
        """Upload every file under ``local_dir`` to ``prefix``, in parallel. Returns the count.

        With ``overwrite`` false, nothing is written if any target exists (checked first).
        """
        base = clean_prefix(prefix)
        files = [p for p in sorted(Path(local_dir).rglob("*")) if p.is_file()]
        targets = [(p, clean_path(base + p.relative_to(local_dir).as_posix())) for p in files]
        if not overwrite:
            existing = {e.path for e in self.list(base, recursive=True)}
            clashes = [t for _, t in targets if t in existing]
            if clashes:
                raise Conflict(clashes[0])

        def one(item: tuple[Path, str]) -> int:
            source, target = item
            with source.open("rb") as fh:
                entry = self.write(target, fh, overwrite=overwrite, length=source.stat().st_size)
            if progress is not None:
                progress(entry.size or 0, 1)
            return 1

        return sum(_parallel(one, targets, workers))

    def materialize(
        self,
        prefix: str,
        local_dir: Path,
        *,
        overwrite: bool = False,
        workers: int = 8,
        progress: TransferProgress | None = None,
    ) -> int:
        """Download every file under ``prefix`` into ``local_dir``, in parallel."""
        base = clean_prefix(prefix)
        local_dir = Path(local_dir)
        entries = [e for e in self.list(base, recursive=True) if not e.is_dir]
        if not overwrite:
            for entry in entries:
                target = local_dir / entry.path[len(base) :]
                if target.exists():
                    raise Conflict(str(target))

        def one(entry: Entry) -> int:
            target = local_dir / entry.path[len(base) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")
            written = 0
            with partial.open("wb") as fh:
                for chunk in self.open_read(entry.path):
                    fh.write(chunk)
                    written += len(chunk)
            os.replace(partial, target)
            if progress is not None:
                progress(written, 1)
            return 1

        return sum(_parallel(one, entries, workers))


def _parallel(fn: Callable[..., int], items: Iterable[object], workers: int) -> Iterator[int]:
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        yield from (fn(i) for i in items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, items)


class _IterStream:
    """A read-only file-like object over an iterator of byte chunks (for streamed copies)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
