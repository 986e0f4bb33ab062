"""Datastore: named storage in a workspace, and file transfers to and from it (the
``azureml.core.Datastore`` counterpart).

Transfers run in parallel (8 workers), stream every file (never a whole file in memory), show a
progress bar in bytes on stderr, and go through the server's file API, so the same code works
for every datastore kind and inside pipeline steps.
"""

from __future__ import annotations

import logging
import os
import posixpath
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

import requests
from tqdm import tqdm

from pipelines.sdk._http import quote_path
from pipelines.sdk.data_reference import DataReference, normalize_path
from pipelines.sdk.exceptions import (
    ConflictError,
    MillraceConnectionError,
    MillraceError,
    NotFoundError,
    ServiceError,
    _unsupported,
)

if TYPE_CHECKING:
    from pipelines.sdk.workspace import Workspace

__all__ = ["DATASTORE_TYPES", "Datastore", "blob_endpoint"]

log = logging.getLogger("pipelines.sdk")

# The server's kind → the datastore_type azureml users test against.
DATASTORE_TYPES = {"local": "LocalFolder", "azure_blob": "AzureBlob"}
CREDENTIAL_TYPES = {
    "": "None",
    "platform": "Platform",
    "account_key": "AccountKey",
    "sas_token": "Sas",
    "connection_string": "ConnectionString",
}
WORKERS = 8
CHUNK_SIZE = 1024 * 1024
PAGE_SIZE = 1000


def blob_endpoint(account_name: str, endpoint: str | None, protocol: str | None = None) -> str:
    """The blob service URL the server expects, from azureml's ``endpoint`` / ``protocol``.

    Args:
        account_name: the storage account.
        endpoint: None (Azure's public cloud), a full URL (Azurite, a private endpoint:
            used as is), or azureml's DNS suffix such as ``"core.windows.net"`` or
            ``"core.chinacloudapi.cn"``.
        protocol: ``"https"`` (default) or ``"http"``, for a suffix.

    Returns:
        ``""`` for None (the server defaults to Azure's public cloud), the URL itself, or
        ``<protocol>://<account>.blob.<suffix>``.

    Raises:
        ValueError: an unknown protocol, or a suffix without an account name.
    """
    if not endpoint:
        return ""
    endpoint = endpoint.strip()
    if "://" in endpoint:
        return endpoint.rstrip("/")
    scheme = (protocol or "https").lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"protocol must be 'https' or 'http', not {protocol!r}.")
    if not account_name:
        raise ValueError("An endpoint suffix needs the account_name to build the blob URL.")
    return f"{scheme}://{account_name}.blob.{endpoint.strip('./')}"


class Datastore:
    """A named storage location in a workspace.

    ``Datastore(ws, "workspaceblobstore")`` fetches it from the server;
    ``Datastore(ws)`` is the workspace's default datastore.

    Args:
        workspace: the Workspace.
        name: the datastore's name; None: the default datastore.

    Raises:
        NotFoundError: no datastore of that name in the workspace (the message lists those
            there are).
        MillraceError: another server error (see ``pipelines.sdk.exceptions``).
    """

    workspace: Workspace
    _data: dict[str, Any]

    def __init__(self, workspace: Workspace, name: str | None = None) -> None:
        if name is None:
            other = workspace.get_default_datastore()
            self._set(workspace, other._data)
            return
        try:
            data = workspace._client.get_json(_datastore_api(workspace, name))
        except NotFoundError as exc:
            raise NotFoundError(
                _missing_message(workspace, name), status_code=exc.status_code, url=exc.url
            ) from None
        self._set(workspace, data)

    def _set(self, workspace: Workspace, data: dict[str, Any]) -> None:
        self.workspace = workspace
        self._data = dict(data)

    @classmethod
    def _from_data(cls, workspace: Workspace, data: dict[str, Any]) -> Datastore:
        """A Datastore from the server's JSON, without a request."""
        datastore = cls.__new__(cls)
        datastore._set(workspace, data)
        return datastore

    # ----- lookups and registration -------------------------------------------------------

    @staticmethod
    def get(workspace: Workspace, datastore_name: str) -> Datastore:
        """A datastore by name.

        Args:
            workspace: the Workspace.
            datastore_name: its name.

        Returns:
            The Datastore.

        Raises:
            NotFoundError: no such datastore in the workspace.
        """
        return Datastore(workspace, datastore_name)

    @staticmethod
    def get_default(workspace: Workspace) -> Datastore:
        """The workspace's default datastore.

        Args:
            workspace: the Workspace.

        Returns:
            The Datastore marked default.

        Raises:
            MillraceError: the server could not answer.
        """
        return workspace.get_default_datastore()

    @staticmethod
    def register_azure_blob_container(
        workspace: Workspace,
        datastore_name: str,
        container_name: str,
        account_name: str,
        sas_token: str | None = None,
        account_key: str | None = None,
        protocol: str | None = None,
        endpoint: str | None = None,
        overwrite: bool = False,
        create_if_not_exists: bool = False,
        skip_validation: bool = False,
        blob_cache_timeout: int | None = None,
        grant_workspace_access: bool = False,
        subscription_id: str | None = None,
        resource_group: str | None = None,
    ) -> Datastore:
        """Register an Azure Blob container as a datastore (workspace owners only).

        The server checks that the credentials reach the container before storing anything,
        and stores them encrypted; they are never returned.

        Args:
            workspace: the Workspace.
            datastore_name: letters, digits and underscores.
            container_name: the blob container.
            account_name: the storage account.
            sas_token: a SAS token (used when both it and ``account_key`` are given).
            account_key: the account key.
            protocol: ``"https"`` (default) or ``"http"``, applied to an endpoint suffix.
            endpoint: a full URL (Azurite, private endpoints) or azureml's suffix such as
                ``"core.windows.net"``; None: Azure's public cloud.
            overwrite: replace an existing registration of that name.
            create_if_not_exists: accepted for compatibility; ignored (the container must exist).
            skip_validation: accepted for compatibility; ignored (the server always checks).
            blob_cache_timeout: accepted for compatibility; ignored.
            grant_workspace_access: accepted for compatibility; ignored.
            subscription_id: accepted for compatibility; ignored.
            resource_group: accepted for compatibility; ignored.

        Returns:
            The registered Datastore.

        Raises:
            ValidationError: a bad name, credentials the storage service refused, or a name
                already taken without ``overwrite``.
            PermissionDeniedError: the token's user is not an owner.
            ValueError: an unknown ``protocol``.
        """
        body: dict[str, Any] = {
            "name": datastore_name,
            "container_name": container_name,
            "account_name": account_name or "",
            "overwrite": bool(overwrite),
        }
        url = blob_endpoint(account_name, endpoint, protocol)
        if url:
            body["endpoint"] = url
        # azureml prefers the SAS token when both are given; the server wants exactly one.
        if sas_token:
            body["sas_token"] = sas_token.lstrip("?")
        elif account_key:
            body["account_key"] = account_key
        data = workspace._client.send_json("POST", f"{workspace._api}datastores/", body)
        return Datastore._from_data(workspace, data)

    register_azure_file_share = _unsupported(
        "Datastore.register_azure_file_share", "Register an Azure Blob container instead."
    )
    register_azure_data_lake = _unsupported("Datastore.register_azure_data_lake")
    register_azure_data_lake_gen2 = _unsupported("Datastore.register_azure_data_lake_gen2")
    register_azure_sql_database = _unsupported("Datastore.register_azure_sql_database")
    register_azure_postgre_sql = _unsupported("Datastore.register_azure_postgre_sql")
    register_azure_my_sql = _unsupported("Datastore.register_azure_my_sql")
    register_dbfs = _unsupported("Datastore.register_dbfs")
    register_hdfs = _unsupported("Datastore.register_hdfs")

    def unregister(self) -> None:
        """Forget this datastore (owners only); its files stay where they are.

        Raises:
            ValidationError: it is a built-in or the default datastore.
            PermissionDeniedError: the token's user is not an owner.
        """
        self.workspace._client.delete(self._api)

    def set_as_default(self) -> None:
        """Make this the workspace's default datastore (owners only).

        Raises:
            PermissionDeniedError: the token's user is not an owner.
        """
        data = self.workspace._client.send_json("PATCH", self._api, {"is_default": True})
        self._data = dict(data)

    # ----- properties ---------------------------------------------------------------------

    @property
    def _api(self) -> str:
        return _datastore_api(self.workspace, self.name)

    @property
    def name(self) -> str:
        """The datastore's name."""
        return str(self._data["name"])

    @property
    def id(self) -> str:
        """The datastore's id (a UUID)."""
        return str(self._data.get("id", ""))

    @property
    def kind(self) -> str:
        """Millrace's kind: ``"local"`` or ``"azure_blob"``."""
        return str(self._data.get("kind", ""))

    @property
    def datastore_type(self) -> str:
        """azureml's type name: ``"AzureBlob"`` or ``"LocalFolder"``."""
        return DATASTORE_TYPES.get(self.kind, self.kind)

    @property
    def is_default(self) -> bool:
        """Whether this is the workspace's default datastore (as of when it was fetched)."""
        return bool(self._data.get("is_default"))

    @property
    def container_name(self) -> str | None:
        """The blob container, or None for a local datastore."""
        return self._data.get("container_name") or None

    @property
    def account_name(self) -> str | None:
        """The storage account, or None."""
        return self._data.get("account_name") or None

    @property
    def endpoint(self) -> str | None:
        """The blob service URL, or None (Azure's default, or a local datastore)."""
        return self._data.get("endpoint") or None

    @property
    def credential_type(self) -> str:
        """azureml-style credential type: ``"AccountKey"``, ``"Sas"``, ``"None"``..."""
        kind = str(self._data.get("credential_kind") or "")
        return CREDENTIAL_TYPES.get(kind, kind)

    @property
    def description(self) -> str:
        """The datastore's description."""
        return str(self._data.get("description") or "")

    def __repr__(self) -> str:
        return (
            f"Datastore(name={self.name!r}, datastore_type={self.datastore_type!r}, "
            f"workspace={self.workspace.name!r})"
        )

    # ----- data references ----------------------------------------------------------------

    def path(
        self, path: str | None = None, data_reference_name: str | None = None
    ) -> DataReference:
        """A reference to a path on this datastore.

        Args:
            path: the file or folder; None: the datastore's root.
            data_reference_name: a name for the reference.

        Returns:
            A DataReference in ``"mount"`` mode.
        """
        return DataReference(self, data_reference_name=data_reference_name, path_on_datastore=path)

    def as_mount(self) -> DataReference:
        """The whole datastore, read in place by a step.

        Returns:
            A DataReference to the root in ``"mount"`` mode.
        """
        return DataReference(self, mode="mount")

    def as_download(self, path_on_compute: str | None = None) -> DataReference:
        """The whole datastore, copied to the compute before a step runs.

        Args:
            path_on_compute: where the copy goes on the compute.

        Returns:
            A DataReference to the root in ``"download"`` mode.
        """
        return DataReference(self, mode="download", path_on_compute=path_on_compute)

    # ----- transfers ----------------------------------------------------------------------

    def upload(
        self,
        src_dir: str | os.PathLike[str],
        target_path: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> DataReference:
        """Upload a local folder (with its subfolders) to ``target_path``.

        Args:
            src_dir: the local folder.
            target_path: the folder on the datastore; None: its root.
            overwrite: replace files that exist. Without it, every target is checked first
                and nothing is sent if any exists.
            show_progress: show a progress bar in bytes on stderr.

        Returns:
            A DataReference to ``target_path``.

        Raises:
            FileNotFoundError: ``src_dir`` is not a folder.
            ConflictError: a target exists and ``overwrite`` is false (``.path`` names the
                first); nothing was uploaded then.
            PermissionDeniedError: the token's user may not write (a reader).
            MillraceError: another server or connection error; files already sent stay.
        """
        root = os.path.abspath(os.fspath(src_dir))
        if not os.path.isdir(root):
            raise FileNotFoundError(f"The folder to upload does not exist: {root}")
        sources: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            sources.extend(
                os.path.join(dirpath, name)
                for name in sorted(filenames)
                if os.path.isfile(os.path.join(dirpath, name))
            )
        base = _folder(target_path)
        pairs = [(s, base + _posix_relpath(s, root)) for s in sources]
        self._upload(pairs, overwrite=overwrite, show_progress=show_progress)
        return DataReference(self, path_on_datastore=target_path or "")

    def upload_files(
        self,
        files: Sequence[str | os.PathLike[str]],
        relative_root: str | os.PathLike[str] | None = None,
        target_path: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> DataReference:
        """Upload local files; each lands at ``target_path`` + its path below ``relative_root``.

        Args:
            files: the local files.
            relative_root: the local folder the datastore paths are relative to (for
                ``/data/to/file.txt`` and ``/data``: ``to/file.txt``); None: the files'
                common folder.
            target_path: the folder on the datastore; None: its root.
            overwrite: replace files that exist. Without it, every target is checked first
                and nothing is sent if any exists.
            show_progress: show a progress bar in bytes on stderr.

        Returns:
            A DataReference to ``target_path``.

        Raises:
            FileNotFoundError: one of ``files`` is not a file.
            ValueError: a file is not below ``relative_root``.
            ConflictError: a target exists and ``overwrite`` is false; nothing was uploaded.
            PermissionDeniedError: the token's user may not write.
            MillraceError: another server or connection error.
        """
        sources = [os.path.abspath(os.fspath(f)) for f in files]
        for source in sources:
            if not os.path.isfile(source):
                raise FileNotFoundError(f"Not a file: {source}")
        sources = list(dict.fromkeys(sources))
        if relative_root is not None:
            root = os.path.abspath(os.fspath(relative_root))
        elif sources:
            root = os.path.commonpath([os.path.dirname(s) for s in sources])
        else:
            root = os.getcwd()
        base = _folder(target_path)
        pairs = []
        for source in sources:
            relative = os.path.relpath(source, root)
            if relative == os.pardir or relative.startswith(os.pardir + os.sep):
                raise ValueError(
                    f"{source} is not below relative_root {root}; relative_root must be a "
                    "folder that holds every file."
                )
            pairs.append((source, base + relative.replace(os.sep, "/")))
        self._upload(pairs, overwrite=overwrite, show_progress=show_progress)
        return DataReference(self, path_on_datastore=target_path or "")

    def download(
        self,
        target_path: str | os.PathLike[str],
        prefix: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> int:
        """Download the files whose path starts with ``prefix`` into a local folder.

        As in azureml, each file keeps its whole datastore path below ``target_path``
        (``prefix="in/"`` puts ``in/a.csv`` at ``<target_path>/in/a.csv``), and a file that
        already exists locally is skipped (with a log warning) unless ``overwrite``. Each file
        is written to a ``.part`` file beside it and renamed when complete.

        Args:
            target_path: the local folder (created if missing).
            prefix: a path prefix (``"in/"`` a folder; ``"in/da"`` also matches
                ``in/data.csv``); None: everything.
            overwrite: replace local files that exist.
            show_progress: show a progress bar in bytes on stderr.

        Returns:
            The number of files downloaded.

        Raises:
            ServiceError: the server listed a path that would land outside ``target_path``
                (nothing was downloaded then).
            MillraceError: another server or connection error.
        """
        root = os.path.abspath(os.fspath(target_path))
        os.makedirs(root, exist_ok=True)
        real_root = os.path.realpath(root)
        plan: list[tuple[str, str, int]] = []
        for entry in self._files_with_prefix(prefix):
            local = _local_target(real_root, entry["path"])
            if not overwrite and os.path.lexists(local):
                log.warning("%s exists; skipping its download (pass overwrite=True).", local)
                continue
            plan.append((entry["path"], local, int(entry.get("size") or 0)))
        if not plan:
            return 0
        total = sum(size for _, _, size in plan)
        desc = f"Downloading {len(plan)} file{'s' if len(plan) != 1 else ''}"
        with _Progress(total=total, desc=desc, show=show_progress) as progress:
            _run_parallel(
                lambda item: self._get_file(item[0], item[1], progress), plan, progress.cancelled
            )
        return len(plan)

    # ----- transfer internals -------------------------------------------------------------

    def _iter_paths(self, prefix: str, *, recursive: bool) -> Iterator[dict[str, Any]]:
        """Entries under a folder prefix, following the server's ``next_after`` cursor."""
        after = ""
        while True:
            params: dict[str, Any] = {
                "prefix": prefix,
                "recursive": "true" if recursive else "false",
                "page_size": PAGE_SIZE,
            }
            if after:
                params["after"] = after
            body = self.workspace._client.get_json(f"{self._api}paths/", params=params)
            yield from body.get("results", [])
            after = body.get("next_after") or ""
            if not after:
                return

    def _files_with_prefix(self, prefix: str | None) -> Iterator[dict[str, Any]]:
        """Files whose path starts with ``prefix`` (azureml's ``name_starts_with``)."""
        wanted = normalize_path(prefix)
        if wanted == "" or wanted.endswith("/"):
            yield from (e for e in self._iter_paths(wanted, recursive=True) if not e["is_dir"])
            return
        # "in/da": look one level into "in/" for names starting with "da", then descend.
        parent, _, stem = wanted.rpartition("/")
        folder = f"{parent}/" if parent else ""
        for entry in self._iter_paths(folder, recursive=False):
            if not entry["path"][len(folder) :].startswith(stem):
                continue
            if entry["is_dir"]:
                yield from (
                    e for e in self._iter_paths(entry["path"], recursive=True) if not e["is_dir"]
                )
            else:
                yield entry

    def _upload(self, pairs: list[tuple[str, str]], *, overwrite: bool, show_progress: bool) -> int:
        """Send (local file, datastore path) pairs in parallel. Returns the count."""
        if not pairs:
            return 0
        if not overwrite:
            self._check_no_clash([target for _, target in pairs])
        sizes = [os.path.getsize(source) for source, _ in pairs]
        items = [(s, t, n) for (s, t), n in zip(pairs, sizes, strict=True)]
        desc = f"Uploading {len(items)} file{'s' if len(items) != 1 else ''}"
        with _Progress(total=sum(sizes), desc=desc, show=show_progress) as progress:
            _run_parallel(
                lambda item: self._put_file(*item, overwrite=overwrite, progress=progress),
                items,
                progress.cancelled,
            )
        return len(items)

    def _check_no_clash(self, targets: list[str]) -> None:
        """Raise ConflictError naming the first target that exists (as a file or a folder)."""
        folders = sorted({posixpath.dirname(t) for t in targets})
        common = posixpath.commonpath(folders) if folders else ""
        existing: set[str] = set()
        for entry in self._iter_paths(f"{common}/" if common else "", recursive=True):
            path = entry["path"].rstrip("/")
            existing.add(path)
            # Every folder above an existing file exists too: a file cannot replace it.
            parts = path.split("/")
            existing.update("/".join(parts[:i]) for i in range(1, len(parts)))
        for target in targets:
            if target in existing:
                raise ConflictError(
                    f"'{target}' already exists on datastore '{self.name}'; nothing was "
                    "uploaded. Pass overwrite=True to replace it.",
                    path=target,
                )

    def _put_file(
        self, source: str, target: str, size: int, *, overwrite: bool, progress: _Progress
    ) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        params = {"overwrite": "true" if overwrite else "false"}
        path = f"{self._api}files/{quote_path(target)}"
        with open(source, "rb") as fh:
            # requests streams a file-like body in blocks; an empty one must be b"" (an empty
            # stream would be sent chunked, without the Content-Length the server requires).
            body: Any = _CountingReader(fh, size, progress, source) if size else b""
            response = self.workspace._client.request(
                "PUT", path, params=params, data=body, headers=headers
            )
            response.close()

    def _get_file(self, path: str, local: str, progress: _Progress) -> None:
        client = self.workspace._client
        response = client.request("GET", f"{self._api}files/{quote_path(path)}", stream=True)
        with response:
            os.makedirs(os.path.dirname(local), exist_ok=True)
            partial = os.path.join(
                os.path.dirname(local), f".{os.path.basename(local)}.{uuid.uuid4().hex[:8]}.part"
            )
            written = 0
            try:
                with open(partial, "xb") as out:
                    try:
                        for chunk in response.iter_content(CHUNK_SIZE):
                            if progress.cancelled.is_set():
                                raise _Cancelled()
                            out.write(chunk)
                            written += len(chunk)
                            progress.update(len(chunk))
                    except requests.RequestException as exc:
                        raise MillraceConnectionError(
                            f"The download of '{path}' from {response.url} broke off after "
                            f"{written} bytes.",
                            url=response.url,
                        ) from exc
                expected = response.headers.get("Content-Length")
                if expected is not None and int(expected) != written:
                    raise ServiceError(
                        f"The download of '{path}' ended after {written} of {expected} bytes.",
                        url=response.url,
                    )
                os.replace(partial, local)
            except BaseException:
                if os.path.exists(partial):
                    os.unlink(partial)
                raise


def _datastore_api(workspace: Workspace, name: str) -> str:
    return f"{workspace._api}datastores/{quote(name, safe='')}/"


def _missing_message(workspace: Workspace, name: str) -> str:
    message = f"Datastore '{name}' was not found in workspace '{workspace.name}'."
    try:
        names = sorted(workspace.datastores)
    except MillraceError:
        return message
    return message + (f" It has: {', '.join(names)}." if names else "")


def _folder(target_path: str | None) -> str:
    """A datastore folder prefix: '' for the root, else 'a/b/'."""
    cleaned = normalize_path(target_path).rstrip("/")
    return f"{cleaned}/" if cleaned else ""


def _posix_relpath(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _local_target(real_root: str, path: str) -> str:
    """Where a datastore path lands below ``real_root``; refuses anything that would escape.

    The server never lists such a path; this is defence in depth against a bad or hostile
    server.
    """
    segments = path.split("/")
    bad = (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(s in ("", ".", "..") for s in segments)
    )
    local = os.path.join(real_root, *segments) if not bad else ""
    if not bad:
        # A symlink already in the target folder must not lead the write elsewhere either.
        real = os.path.realpath(local)
        bad = not real.startswith(real_root + os.sep)
    if bad:
        raise ServiceError(
            f"The server listed {path!r}, which would be written outside {real_root}; "
            "nothing was downloaded."
        )
    return local


class _Cancelled(Exception):
    """Another transfer of the batch failed; this one stops early."""


class _Progress:
    """A thread-safe tqdm bar in bytes on stderr (a no-op when not shown), plus the batch's
    cancel flag."""

    def __init__(self, *, total: int, desc: str, show: bool) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._bar = tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            file=sys.stderr,
            disable=not show,
            mininterval=0.2,
        )

    def update(self, count: int) -> None:
        with self._lock:
            self._bar.update(count)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


class _CountingReader:
    """A file read in blocks by requests/urllib3 that reports progress, stops at ``size``
    bytes (a file growing meanwhile must not overrun the Content-Length) and stops early when
    the batch is cancelled."""

    def __init__(self, fh: BinaryIO, size: int, progress: _Progress, name: str) -> None:
        self._fh = fh
        self._left = size
        self._size = size
        self._progress = progress
        self._name = name

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int = -1) -> bytes:
        if self._progress.cancelled.is_set():
            raise _Cancelled()
        if self._left <= 0:
            return b""
        want = self._left if amount is None or amount < 0 else min(amount, self._left)
        data = self._fh.read(want)
        if not data:
            raise MillraceError(f"{self._name} shrank while it was being uploaded.")
        self._left -= len(data)
        self._progress.update(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            block = self.read(CHUNK_SIZE)
            if not block:
                return
            yield block


def _run_parallel(
    fn: Callable[[Any], None], items: Iterable[Any], cancelled: threading.Event
) -> None:
    """Run ``fn`` over ``items`` on up to WORKERS threads; the first error stops the rest and
    is raised."""
    items = list(items)
    with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(items)))) as pool:
        futures: list[Future[None]] = [pool.submit(fn, item) for item in items]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException as exc:
            cancelled.set()
            for future in futures:
                future.cancel()
            # Prefer a real error over the _Cancelled of the transfers it stopped.
            if isinstance(exc, _Cancelled):
                for future in futures:
                    if future.done() and not future.cancelled():
                        error = future.exception()
                        if error is not None and not isinstance(error, _Cancelled):
                            raise error from None
            raise
