"""Client side of content-addressed snapshots: a step's source directory is uploaded file by
file, by SHA-256, so a file the workspace already has is never sent again.

The directory is walked honouring ``.amlignore`` (else ``.gitignore``) at its top, with git's
pattern rules; ``.git`` and ``__pycache__`` folders and symbolic links are always skipped (the
server's own walk does the same). Hashes are kept in memory per (path, size, modification
time), so resubmitting an unchanged directory reads no file and uploads nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.sdk.exceptions import (
    ConfigurationError,
    NotFoundError,
    ServiceError,
    ValidationError,
)

if TYPE_CHECKING:
    from pipelines.sdk.workspace import Workspace

__all__ = [
    "IGNORE_FILES",
    "LIMIT_ENV",
    "IgnoreRules",
    "Manifest",
    "build_manifest",
    "manifest_digest",
    "upload_snapshot",
]

IGNORE_FILES = (".amlignore", ".gitignore")
ALWAYS_SKIPPED = frozenset({".git", "__pycache__"})
LIMIT_ENV = "MILLRACE_SNAPSHOT_LIMIT_MB"
DEFAULT_LIMIT_MB = 300
MISSING_BATCH = 10_000
CHUNK = 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# (absolute path, size, mtime_ns) → sha256, for the life of the process.
_HASHES: dict[tuple[str, int, int], str] = {}
_HASHES_LOCK = threading.Lock()


# ----- ignore rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    pattern: str
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool


def _glob_to_regex(glob: str) -> str:
    """git's glob: ``*`` and ``?`` stay within a folder, ``**`` crosses folders, ``[...]``
    is a class (``[!...]`` negated), ``\\x`` is a literal x."""
    out: list[str] = []
    i = 0
    n = len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                at_start = i == 0 or glob[i - 1] == "/"
                after = glob[i + 2 : i + 3]
                if at_start and after == "/":
                    out.append("(?:.*/)?")  # "**/": zero or more folders
                    i += 3
                    continue
                if at_start and after == "":
                    out.append(".*")  # "/**" at the end: everything inside
                    i += 2
                    continue
                out.append("[^/]*")  # "a**b" is "a*b" in git
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class IgnoreRules:
    """Patterns in ``.gitignore`` syntax: ``*.csv``, ``data/`` (folders only), ``!keep.csv``
    (re-include), ``/rooted`` (only at the top), ``**/x`` (at any depth), ``a/**``
    (everything inside); the last matching line wins. A file inside an ignored folder stays
    ignored, as in git.

    Args:
        lines: the file's lines.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self.rules: list[_Rule] = []
        for raw in lines:
            line = raw.rstrip("\n").rstrip("\r")
            # Trailing spaces are dropped unless escaped with a backslash.
            while line.endswith(" ") and not line.endswith("\\ "):
                line = line[:-1]
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            if negated or line.startswith(("\\#", "\\!")):
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            # A slash at the start or in the middle anchors the pattern at the top.
            anchored = "/" in line
            body = _glob_to_regex(line.lstrip("/"))
            regex = re.compile(("^" if anchored else "^(?:.*/)?") + body + "$")
            self.rules.append(_Rule(raw.strip(), regex, negated, dir_only))

    @classmethod
    def for_directory(cls, root: str) -> tuple[IgnoreRules, str | None]:
        """The rules of ``.amlignore`` at the top of ``root``, else of ``.gitignore``.

        Args:
            root: the source directory.

        Returns:
            (rules, the ignore file's name or None).
        """
        for name in IGNORE_FILES:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as fh:
                    return cls(fh.read().splitlines()), name
        return cls([]), None

    def ignored(self, path: str, is_dir: bool) -> bool:
        """Whether a path (relative to the top, '/'-separated) is ignored by the rules
        themselves (folders above it are checked by the walk).

        Args:
            path: e.g. ``"data/raw.csv"``.
            is_dir: whether it is a folder.

        Returns:
            True if the last rule matching it ignores it.
        """
        result = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(path):
                result = not rule.negated
        return result


# ----- manifests ---------------------------------------------------------------------------


@dataclass
class Manifest:
    """A source directory as the server stores it.

    Attributes:
        root: the directory's absolute path.
        files: relative path → ``{"sha256", "size", "mode"}``.
        digest: the manifest's digest (the snapshot's name on the server).
        ignore_file: ``.amlignore`` / ``.gitignore`` if one was honoured, else None.
        ignored: relative paths left out by the ignore file (folders end with '/').
    """

    root: str
    files: dict[str, dict[str, Any]]
    digest: str
    ignore_file: str | None
    ignored: list[str]

    @property
    def total_bytes(self) -> int:
        """The sum of the files' sizes."""
        return sum(int(m["size"]) for m in self.files.values())


def manifest_digest(manifest: dict[str, dict[str, Any]]) -> str:
    """The digest of a manifest, exactly as the server computes it: sha256 of the canonical
    JSON of ``{path: [sha256, mode & 0o100]}`` in path order.

    Args:
        manifest: relative path → ``{"sha256", "size", "mode"}``.

    Returns:
        64 hex digits.
    """
    canonical = json.dumps(
        {p: [m["sha256"], m["mode"] & 0o100] for p, m in sorted(manifest.items())},
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    key = (path, size, mtime_ns)
    with _HASHES_LOCK:
        known = _HASHES.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with _HASHES_LOCK:
        _HASHES[key] = value
    return value


def snapshot_limit_bytes() -> int:
    """The largest snapshot allowed: ``MILLRACE_SNAPSHOT_LIMIT_MB`` (default 300) megabytes.

    Returns:
        The limit in bytes.

    Raises:
        ConfigurationError: the variable is not a positive number.
    """
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_LIMIT_MB * 1024 * 1024
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    if not megabytes > 0:
        raise ConfigurationError(f"{LIMIT_ENV} must be a positive number of MB, not {raw!r}.")
    return int(megabytes * 1024 * 1024)


def _path_problem(relative: str) -> str | None:
    """Why the server would refuse this path in a manifest (portal.storage.clean_path)."""
    if _CONTROL.search(relative):
        return "has a control character in its name"
    if "\\" in relative:
        return "has a backslash in its name"
    if any(segment != segment.strip() for segment in relative.split("/")):
        return "has a name with leading or trailing spaces"
    return None


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def build_manifest(
    source_directory: str | os.PathLike[str], *, limit: int | None = None
) -> Manifest:
    """Walk a source directory and describe it: each file's hash, size and mode.

    Args:
        source_directory: the folder.
        limit: the largest total size in bytes; default ``snapshot_limit_bytes()``.

    Returns:
        The Manifest.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValidationError: the files add up to more than the limit (the message names the five
            biggest and suggests ``.amlignore``), or a file's name cannot be stored.
        ConfigurationError: ``MILLRACE_SNAPSHOT_LIMIT_MB`` is not a number.
    """
    root = os.path.abspath(os.fspath(source_directory))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"The source directory does not exist: {root}")
    limit = snapshot_limit_bytes() if limit is None else limit
    rules, ignore_file = IgnoreRules.for_directory(root)
    found: list[tuple[str, str, os.stat_result]] = []
    ignored: list[str] = []
    bad_names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if base == "." else base + "/"
        kept = []
        for name in sorted(dirnames):
            relative = prefix + name
            full = os.path.join(dirpath, name)
            if name in ALWAYS_SKIPPED or os.path.islink(full):
                continue
            if rules.ignored(relative, True):
                ignored.append(relative + "/")
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            relative = prefix + name
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue  # removed while walking
            if not _is_regular(st):
                continue
            if rules.ignored(relative, False):
                ignored.append(relative)
                continue
            problem = _path_problem(relative)
            if problem:
                bad_names.append(f"{relative!r} {problem}")
                continue
            found.append((relative, full, st))
    where = f"source_directory {root}"
    hint = (
        f"list what the step does not need in {os.path.join(root, '.amlignore')} (gitignore syntax)"
    )
    if bad_names:
        raise ValidationError(
            f"{where}: {len(bad_names)} file name(s) cannot be stored: "
            f"{'; '.join(bad_names[:5])}. Rename them or {hint}.",
            fields={"source_directory": bad_names},
        )
    total = sum(st.st_size for _, _, st in found)
    if total > limit:
        biggest = sorted(found, key=lambda item: (-item[2].st_size, item[0]))[:5]
        names = ", ".join(f"{rel} ({_size_text(st.st_size)})" for rel, _, st in biggest)
        message = (
            f"{where} holds {_size_text(total)} in {len(found)} files, more than the "
            f"{_size_text(limit)} a snapshot may hold ({LIMIT_ENV}). The biggest: {names}. "
            f"Put data on a datastore and {hint}."
        )
        raise ValidationError(message, fields={"source_directory": [message]})
    files: dict[str, dict[str, Any]] = {}
    for relative, full, st in found:
        files[relative] = {
            "sha256": _file_sha256(full, st.st_size, st.st_mtime_ns),
            "size": st.st_size,
            "mode": st.st_mode & 0o777,
        }
    return Manifest(root, files, manifest_digest(files), ignore_file, sorted(ignored))


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


# ----- upload ------------------------------------------------------------------------------


def upload_snapshot(
    workspace: Workspace, manifest: Manifest, *, show_progress: bool = True
) -> tuple[str, int]:
    """Make sure the workspace has this snapshot, sending only the files it lacks.

    Asks ``GET snapshots/<digest>/`` first (an unchanged directory costs one request and no
    upload), then which file hashes are missing (in batches of 10,000), uploads those files
    (streamed, in parallel, with a progress bar in bytes), and records the manifest.

    Args:
        workspace: the Workspace.
        manifest: from ``build_manifest``.
        show_progress: show a progress bar on stderr while files upload.

    Returns:
        (the snapshot's digest, bytes uploaded).

    Raises:
        ValidationError: a file changed while it was being uploaded (submit again), or the
            server refused the manifest.
        PermissionDeniedError: the token's user may not write (a reader).
        ServiceError: the server computed another digest than the SDK (a version mismatch).
        MillraceError: another server or connection error.
    """
    client = workspace._client
    api = f"{workspace._api}snapshots/"
    try:
        client.get_json(f"{api}{manifest.digest}/")
        return manifest.digest, 0
    except NotFoundError:
        pass
    by_hash: dict[str, tuple[str, int]] = {}
    for relative, meta in manifest.files.items():
        by_hash.setdefault(meta["sha256"], (relative, int(meta["size"])))
    hashes = sorted(by_hash)
    missing: list[str] = []
    for start in range(0, len(hashes), MISSING_BATCH):
        answer = client.send_json(
            "POST", f"{api}missing/", {"hashes": hashes[start : start + MISSING_BATCH]}
        )
        missing.extend(str(h) for h in (answer or {}).get("missing", []))
    uploaded = 0
    if missing:
        uploaded = _upload_blobs(
            workspace, manifest, [(h, *by_hash[h]) for h in missing], show_progress=show_progress
        )
    answer = client.send_json("POST", api, {"manifest": manifest.files})
    digest = str((answer or {}).get("digest", ""))
    if digest != manifest.digest:
        raise ServiceError(
            f"The server recorded the snapshot of {manifest.root} as {digest!r}, but the SDK "
            f"computed {manifest.digest!r}; the SDK and the server disagree on the digest."
        )
    return digest, uploaded


def _upload_blobs(
    workspace: Workspace,
    manifest: Manifest,
    blobs: list[tuple[str, str, int]],
    *,
    show_progress: bool,
) -> int:
    """PUT each (sha256, relative path, size); returns the bytes sent."""
    from pipelines.sdk.datastore import _CountingReader, _Progress, _run_parallel

    client = workspace._client
    api = f"{workspace._api}snapshots/blobs/"
    total = sum(size for _, _, size in blobs)
    desc = f"Uploading snapshot: {len(blobs)} file{'s' if len(blobs) != 1 else ''}"

    def put(item: tuple[str, str, int]) -> None:
        sha256, relative, size = item
        source = os.path.join(manifest.root, *relative.split("/"))
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            with open(source, "rb") as fh:
                # An empty body must be b"": an empty stream would be sent chunked, without
                # the Content-Length the server requires.
                body: Any = _CountingReader(fh, size, progress, source) if size else b""
                client.request("PUT", f"{api}{sha256}", data=body, headers=headers).close()
        except ValidationError as exc:
            raise ValidationError(
                f"{source} changed while the snapshot was being uploaded ({exc.detail}); "
                "submit again.",
                fields=exc.fields,
                status_code=exc.status_code,
                url=exc.url,
            ) from None
        except FileNotFoundError:
            raise ValidationError(
                f"{source} was removed while the snapshot was being uploaded; submit again."
            ) from None

    with _Progress(total=total, desc=desc, show=show_progress) as progress:
        _run_parallel(put, blobs, progress.cancelled)
    return total
