"""Content-addressed snapshots of a step's source directory.

Every file is stored once, by its SHA-256, in the workspace's ``workspaceblobstore`` under
``azureml/snapshots/blobs/``; a Snapshot row holds the manifest (path → hash, size, mode). A
worker materializes a snapshot once per node into ``<data root>/cache/snapshots/<digest>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction

from pipelines.models import Snapshot
from portal.datastores import storage_for
from portal.models import BLOBSTORE, Datastore, Workspace
from portal.storage import NotFound, Storage, clean_path

BLOB_PREFIX = "azureml/snapshots/blobs/"
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


def missing_blobs(workspace: Workspace, hashes: set[str]) -> set[str]:
    """Which of these file hashes the workspace does not have yet."""
    storage = blob_storage(workspace)
    missing = set()
    for sha in hashes:
        try:
            storage.stat(blob_path(sha))
        except NotFound:
            missing.add(sha)
    return missing


def commit_snapshot(workspace: Workspace, manifest: dict[str, dict[str, Any]]) -> Snapshot:
    """Record a manifest whose blobs are all stored. Idempotent: same files → same row."""
    for path in manifest:
        clean_path(path)
    digest = manifest_digest(manifest)
    existing = Snapshot.objects.filter(workspace=workspace, digest=digest).first()
    if existing is not None:
        return existing
    absent = missing_blobs(workspace, {m["sha256"] for m in manifest.values()})
    if absent:
        raise ValueError(f"{len(absent)} file(s) of the snapshot are not uploaded yet.")
    try:
        with transaction.atomic():
            return Snapshot.objects.create(
                workspace=workspace,
                digest=digest,
                manifest=manifest,
                total_bytes=sum(m["size"] for m in manifest.values()),
            )
    except IntegrityError:
        return Snapshot.objects.get(workspace=workspace, digest=digest)


def snapshot_from_directory(workspace: Workspace, directory: Path) -> tuple[Snapshot, int]:
    """Upload the files of ``directory`` that the workspace lacks; return the snapshot and
    how many bytes were uploaded (0 when nothing changed)."""
    manifest = manifest_of_directory(directory)
    by_hash = {m["sha256"]: path for path, m in manifest.items()}
    uploaded = 0
    storage = blob_storage(workspace)
    for sha in missing_blobs(workspace, set(by_hash)):
        source = Path(directory) / by_hash[sha]
        with source.open("rb") as fh:
            storage.write(blob_path(sha), fh, overwrite=True, length=source.stat().st_size)
        uploaded += source.stat().st_size
    return commit_snapshot(workspace, manifest), uploaded


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
