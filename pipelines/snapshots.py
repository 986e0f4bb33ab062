"""Content-addressed snapshots of a step's source directory.

Every file is stored once, by its SHA-256, in the workspace's ``workspaceblobstore`` under
``azureml/snapshots/blobs/``; a Snapshot row holds the manifest (path → hash, size, mode). A
worker materializes a snapshot once per node into ``<data root>/cache/snapshots/<digest>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from pipelines.models import Snapshot, SnapshotBlob
from portal.datastores import storage_for
from portal.models import BLOBSTORE, Datastore, Workspace
from portal.services import UploadTooLarge
from portal.storage import InvalidPath, NotFound, Storage, clean_path

BLOB_PREFIX = "azureml/snapshots/blobs/"
INCOMING_PREFIX = "azureml/snapshots/incoming/"
CHUNK = 1024 * 1024


def blob_path(sha256: str) -> str:
    return f"{BLOB_PREFIX}{sha256[:2]}/{sha256}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_of_directory(directory: Path) -> dict[str, dict[str, Any]]:
    """path → {sha256, size, mode} for every file below ``directory`` (symlinks skipped)."""
    manifest: dict[str, dict[str, Any]] = {}
    root = Path(directory)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in {"__pycache__", ".git"})
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if full.is_symlink() or not full.is_file():
                continue
            relative = clean_path(full.relative_to(root).as_posix())
            st = full.stat()
            manifest[relative] = {
                "sha256": file_sha256(full),
                "size": st.st_size,
                "mode": st.st_mode & 0o777,
            }
    return manifest


def manifest_digest(manifest: dict[str, dict[str, Any]]) -> str:
    canonical = json.dumps(
        {p: [m["sha256"], m["mode"] & 0o100] for p, m in sorted(manifest.items())},
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def blob_storage(workspace: Workspace) -> Storage:
    datastore = Datastore.objects.select_related("workspace").get(
        workspace=workspace, name=BLOBSTORE
    )
    return storage_for(datastore)


SHA256 = re.compile(r"^[0-9a-f]{64}$")
MANIFEST_MAX_FILES = 100_000
MISSING_MAX = 10_000


def missing_blobs(workspace: Workspace, hashes: set[str]) -> set[str]:
    """Which of these file hashes the workspace does not have yet (one query per 1,000)."""
    wanted = sorted(hashes)
    have: set[str] = set()
    for start in range(0, len(wanted), 1000):
        have.update(
            SnapshotBlob.objects.filter(
                workspace=workspace, sha256__in=wanted[start : start + 1000]
            ).values_list("sha256", flat=True)
        )
    return set(wanted) - have


class _Hashing:
    """Reads through to ``stream``, hashing and counting, refusing more than ``limit``."""

    def __init__(self, stream: Any, limit: int, sha256: str) -> None:
        self._stream = stream
        self._limit = limit
        self._sha256 = sha256
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self.count += len(data)
        if self.count > self._limit:
            raise UploadTooLarge(self._limit, self._sha256)
        self.digest.update(data)
        return data


def store_blob(
    workspace: Workspace, sha256: str, stream: Any, length: int | None, limit: int
) -> bool:
    """Store one file's content under its hash, checking that it hashes to ``sha256``.

    Returns:
        True if stored now, False if the workspace already had it (the body is not read).

    Raises:
        ValidationError: not a sha256, or the content hashes to something else (nothing kept).
        UploadTooLarge: more than ``limit`` bytes.
    """
    if not SHA256.match(sha256):
        raise ValidationError({"sha256": "Give the file's sha256 as 64 lowercase hex digits."})
    if SnapshotBlob.objects.filter(workspace=workspace, sha256=sha256).exists():
        return False
    if length is not None and length > limit:
        raise UploadTooLarge(limit, sha256)
    storage = blob_storage(workspace)
    reader = _Hashing(stream, limit, sha256)
    # Into a private name first: a wrong upload never touches the blob others may be reading.
    incoming = f"{INCOMING_PREFIX}{uuid.uuid4().hex}"
    try:
        storage.write(incoming, reader, overwrite=True, length=length)
        actual = reader.digest.hexdigest()
        if actual != sha256:
            raise ValidationError(
                {"sha256": f"The content's sha256 is {actual}, not {sha256}; nothing was kept."}
            )
        storage.move(incoming, blob_path(sha256), overwrite=True)
    finally:
        with contextlib.suppress(NotFound):
            storage.delete(incoming)
    SnapshotBlob.objects.get_or_create(
        workspace=workspace, sha256=sha256, defaults={"size": reader.count}
    )
    return True


def check_manifest(manifest: Any) -> dict[str, dict[str, Any]]:
    """A manifest's shape, paths and hashes, every problem at once.

    Raises:
        ValidationError: keyed by ``manifest.<path>``.
    """
    if not isinstance(manifest, dict) or not manifest:
        raise ValidationError({"manifest": "Give an object of path → {sha256, size, mode}."})
    if len(manifest) > MANIFEST_MAX_FILES:
        raise ValidationError({"manifest": f"At most {MANIFEST_MAX_FILES:,} files."})
    problems: dict[str, str] = {}
    clean: dict[str, dict[str, Any]] = {}
    for path, entry in manifest.items():
        where = f"manifest.{path}"
        try:
            cleaned = clean_path(path)
        except InvalidPath as exc:
            problems[where] = str(exc)
            continue
        if cleaned != path:
            problems[where] = f"write the path as {cleaned!r}."
            continue
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and SHA256.match(entry["sha256"])
            and isinstance(entry.get("size"), int)
            and entry["size"] >= 0
            and isinstance(entry.get("mode", 0o644), int)
        ):
            problems[where] = "needs sha256 (64 hex digits), size (bytes) and mode (integer)."
            continue
        clean[path] = {
            "sha256": entry["sha256"],
            "size": entry["size"],
            "mode": entry.get("mode", 0o644) & 0o777,
        }
    if problems:
        raise ValidationError(problems)
    return clean


def commit_snapshot(
    workspace: Workspace, manifest: dict[str, dict[str, Any]]
) -> tuple[Snapshot, bool]:
    """Record a manifest whose blobs are all stored. Idempotent: same files → same row.
    Returns the snapshot and whether it is new.

    Raises:
        ValidationError: bad paths or entries, or files not uploaded yet (named).
    """
    manifest = check_manifest(manifest)
    digest = manifest_digest(manifest)
    existing = Snapshot.objects.filter(workspace=workspace, digest=digest).first()
    if existing is not None:
        return existing, False
    absent = missing_blobs(workspace, {m["sha256"] for m in manifest.values()})
    if absent:
        paths = sorted(p for p, m in manifest.items() if m["sha256"] in absent)
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        raise ValidationError({"manifest": f"{len(paths)} file(s) are not uploaded yet: {shown}."})
    try:
        with transaction.atomic():
            created = Snapshot.objects.create(
                workspace=workspace,
                digest=digest,
                manifest=manifest,
                total_bytes=sum(m["size"] for m in manifest.values()),
            )
        return created, True
    except IntegrityError:  # committed concurrently
        return Snapshot.objects.get(workspace=workspace, digest=digest), False


def snapshot_from_directory(workspace: Workspace, directory: Path) -> tuple[Snapshot, int]:
    """Upload the files of ``directory`` that the workspace lacks; return the snapshot and
    how many bytes were uploaded (0 when nothing changed)."""
    manifest = manifest_of_directory(directory)
    by_hash = {m["sha256"]: path for path, m in manifest.items()}
    uploaded = 0
    for sha in missing_blobs(workspace, set(by_hash)):
        source = Path(directory) / by_hash[sha]
        size = source.stat().st_size
        with source.open("rb") as fh:
            store_blob(workspace, sha, fh, size, limit=max(size, 1))
        uploaded += size
    snapshot, _ = commit_snapshot(workspace, manifest)
    return snapshot, uploaded


def materialize(snapshot: Snapshot, cache_root: Path) -> Path:
    """The snapshot's files in a local folder, fetched once per node and kept by digest."""
    target = Path(cache_root) / snapshot.digest
    if (target / ".millrace-ready").exists():
        return target
    Path(cache_root).mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{snapshot.digest[:12]}-", dir=cache_root))
    try:
        storage = blob_storage(snapshot.workspace)
        for relative, meta in sorted(snapshot.manifest.items()):
            dest = building / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("wb") as out:
                for chunk in storage.open_read(blob_path(meta["sha256"])):
                    out.write(chunk)
            dest.chmod(meta.get("mode", 0o644) | 0o400)
        (building / ".millrace-ready").write_text(snapshot.digest)
        try:
            building.rename(target)
        except OSError:
            # Another step on this node fetched it first.
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target
