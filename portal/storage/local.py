"""Datastore kind ``local``: a folder on this machine (under the data root)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from portal.storage.base import (
    CHUNK_SIZE,
    Conflict,
    Entry,
    InvalidPath,
    NotFound,
    Readable,
    Storage,
    StorageError,
    clean_path,
    clean_prefix,
)


class LocalStorage(Storage):
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _resolve(self, path: str, *, allow_root: bool = False) -> Path:
        relative = clean_path(path, allow_root=allow_root)
        full = self.root / relative if relative else self.root
        # A symlink inside the folder must not lead out of it.
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(full)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise InvalidPath(f"The path {path!r} leads outside the datastore.")
        return full

    def _entry(self, full: Path) -> Entry:
        st = full.stat()
        relative = full.relative_to(self.root).as_posix()
        modified = datetime.fromtimestamp(st.st_mtime, tz=UTC)
        if full.is_dir():
            return Entry(path=relative + "/", is_dir=True, modified=modified)
        return Entry(path=relative, is_dir=False, size=st.st_size, modified=modified)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"Cannot create the folder {self.root}: {exc.strerror}.") from None
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"The folder {self.root} is not writable.")

    def list(self, prefix: str = "", *, recursive: bool = False) -> Iterator[Entry]:
        base = clean_prefix(prefix)
        folder = self._resolve(base, allow_root=True)
        if folder.is_dir():
            yield from self._walk(folder, recursive)

    def _walk(self, folder: Path, recursive: bool) -> Iterator[Entry]:
        # Path order, as blob stores list: a folder sorts as 'name/' ('a.txt' before 'a/').
        # Symlinks are neither shown nor followed; uploads still being written are hidden.
        children = [c for c in folder.iterdir() if not c.is_symlink() and not _is_partial(c.name)]
        for child in sorted(children, key=lambda c: f"{c.name}/" if c.is_dir() else c.name):
            if child.is_dir() and recursive:
                yield from self._walk(child, recursive)
            else:
                yield self._entry(child)

    def stat(self, path: str) -> Entry:
        full = self._resolve(path)
        if not full.exists():
            raise NotFound(f"No file or folder at '{clean_path(path)}'.")
        return self._entry(full)

    def open_read(
        self, path: str, *, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        full = self._resolve(path)
        if not full.is_file():
            raise NotFound(f"No file at '{clean_path(path)}'.")
        return self._chunks(full, offset, length)

    @staticmethod
    def _chunks(full: Path, offset: int, length: int | None) -> Iterator[bytes]:
        remaining = length
        with full.open("rb") as fh:
            fh.seek(offset)
            while remaining is None or remaining > 0:
                chunk = fh.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def _target(self, path: str, overwrite: bool) -> Path:
        """Where ``path`` will be put: refused if it is a folder, or exists and may not be
        replaced; its parent folders made."""
        full = self._resolve(path)
        if full.is_dir() or (not overwrite and full.exists()):
            raise Conflict(clean_path(path))
        try:
            full.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidPath(
                f"Cannot write '{clean_path(path)}': a parent of it is a file."
            ) from None
        return full

    @staticmethod
    def _place(source: str | Path, full: Path, path: str, overwrite: bool) -> None:
        """Rename ``source`` onto ``full`` in one step (never over an existing file unless
        ``overwrite``: a target that appeared meanwhile is a Conflict)."""
        if overwrite:
            os.replace(source, full)
            return
        try:
            os.link(source, full)
        except FileExistsError:
            raise Conflict(clean_path(path)) from None
        os.unlink(source)

    def write(
        self, path: str, stream: Readable, *, overwrite: bool = False, length: int | None = None
    ) -> Entry:
        full = self._target(path, overwrite)
        # Write beside the target, then move it into place in one step, so no reader ever sees
        # half a file and a failed upload leaves nothing behind.
        fd, tmp_name = tempfile.mkstemp(dir=full.parent, prefix=f".{full.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, CHUNK_SIZE)
            self._place(tmp_name, full, path, overwrite)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return self._entry(full)

    def move(self, source: str, target: str, *, overwrite: bool = False) -> Entry:
        """A rename: atomic, and no byte is copied."""
        src = self._resolve(source)
        if not src.is_file():
            raise NotFound(f"No file at '{clean_path(source)}'.")
        full = self._target(target, overwrite)
        self._place(src, full, target, overwrite)
        return self._entry(full)

    def delete(self, path: str) -> int:
        full = self._resolve(path)
        if full.is_dir():
            count = sum(len(files) for _, _, files in os.walk(full))
            shutil.rmtree(full)
            return count
        if not full.exists():
            raise NotFound(f"No file or folder at '{clean_path(path)}'.")
        full.unlink()
        return 1


def _is_partial(name: str) -> bool:
    """An upload still being written (see write)."""
    return name.startswith(".") and name.endswith(".part")
