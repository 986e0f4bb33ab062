"""Datastore kind ``azure_blob``: a container (optionally a folder in it) in Azure Blob Storage.

Folders are virtual: a folder exists while some blob's name starts with it. Uploads are block
blobs committed in one step at the end, so readers never see half a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, cast
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobPrefix, BlobServiceClient, StorageStreamDownloader

from portal.storage.base import (
    CHUNK_SIZE,
    Conflict,
    Entry,
    NotFound,
    Readable,
    Storage,
    StorageError,
    clean_path,
    clean_prefix,
)

_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_SECRET_PARAMS = re.compile(r"(?i)\b(sig|AccountKey|SharedAccessSignature)=[^&;\s'\"]+")
_INVALID_STATUS = re.compile(r"^Operation returned an invalid status '(.*)'$")
# Transfers move pieces of a few MB, so memory stays a few pieces per transfer whatever the size
# (the SDK's defaults would hold up to 32 MB per download and 64 MB per upload). Downloads use
# half a chunk: the SDK's list(response) preallocates 8 bytes per byte of a piece.
_GET_SIZE = CHUNK_SIZE // 2
_CLIENT_DEFAULTS: dict[str, Any] = {
    "max_single_get_size": _GET_SIZE,
    "max_chunk_get_size": _GET_SIZE,
    "max_single_put_size": 2 * CHUNK_SIZE,
    "max_block_size": CHUNK_SIZE,
}
UPLOAD_CONCURRENCY = 4
DELETE_WORKERS = 8


class AzureBlobStorage(Storage):
    """Files in an Azure Blob Storage container, optionally confined to a folder in it.

    Give exactly one credential form: ``connection_string``; ``account_name`` + ``account_key``;
    or ``sas_token`` (with ``account_name`` or ``endpoint``). ``endpoint`` replaces
    ``https://<account>.blob.core.windows.net`` (Azurite, sovereign clouds). Every path lives
    under ``prefix`` and is returned relative to it. ``client_options`` go to the SDK client
    (e.g. ``retry_total=0, connection_timeout=2``). No message ever contains a secret.

    One difference from a disk: a container can hold a file ``a`` and a folder ``a/`` at once.
    """

    kind = "azure_blob"

    def __init__(
        self,
        container_name: str,
        *,
        connection_string: str | None = None,
        account_name: str | None = None,
        account_key: str | None = None,
        sas_token: str | None = None,
        endpoint: str | None = None,
        prefix: str = "",
        **client_options: Any,
    ) -> None:
        if not isinstance(container_name, str) or not _CONTAINER_NAME.match(container_name):
            raise StorageError(
                f"{container_name!r} is not a valid container name: 3-63 lowercase letters, "
                "digits and single hyphens, starting and ending with a letter or digit."
            )
        self.container_name = container_name
        self._root = clean_prefix(prefix)
        self._secrets = [s for s in (connection_string, account_key, sas_token) if s]
        options = {**_CLIENT_DEFAULTS, **client_options}
        forms = [connection_string, account_key, sas_token]
        if sum(1 for form in forms if form) != 1:
            raise StorageError(
                "Give exactly one of: a connection string, an account key, or a SAS token."
            )
        try:
            if connection_string:
                if account_name or endpoint:
                    raise StorageError(
                        "A connection string already names the account and the endpoint; "
                        "do not give account_name or endpoint with it."
                    )
                service = BlobServiceClient.from_connection_string(connection_string, **options)
            else:
                if not endpoint and not account_name:
                    raise StorageError("Give the storage account name (or an endpoint).")
                url = endpoint or f"https://{account_name}.blob.core.windows.net"
                credential: AzureNamedKeyCredential | AzureSasCredential
                if account_key:
                    if not account_name:
                        raise StorageError("An account key needs the storage account name.")
                    credential = AzureNamedKeyCredential(account_name, account_key)
                else:
                    credential = AzureSasCredential((sas_token or "").lstrip("?"))
                service = BlobServiceClient(url, credential=credential, **options)
        except (ValueError, TypeError) as exc:
            raise StorageError(self._redact(f"Bad blob storage settings: {exc}")) from None
        self._container = service.get_container_client(container_name)
        parts = urlsplit(service.primary_endpoint)
        self.endpoint = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")

    # --- errors ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _SECRET_PARAMS.sub(r"\1=***", text)

    def _error(self, exc: AzureError, doing: str, path: str | None = None) -> StorageError:
        """The StorageError for an SDK error (NotFound for a missing ``path``), with the
        service's own error code and reason."""
        code = _code(exc)
        first = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()[0]
        match = _INVALID_STATUS.match(first)
        reason = match.group(1) if match else first
        where = f"container '{self.container_name}' at {self.endpoint}"
        if path is not None and isinstance(exc, ResourceNotFoundError) and code == "BlobNotFound":
            return NotFound(f"No file at '{path}'.")
        if isinstance(exc, HttpResponseError) and exc.status_code:
            message = (
                f"Blob storage refused {doing} in {where}: {code or exc.status_code}: {reason}"
            )
        elif isinstance(exc, ServiceRequestError | ServiceResponseError):
            message = f"Cannot reach blob storage for {where} while {doing}: {reason}"
        else:
            message = f"Blob storage failed {doing} in {where}: {reason}"
        return StorageError(self._redact(message))

    # --- the Storage interface ------------------------------------------------------------

    def check(self) -> None:
        """Verify the container exists and the credentials may list it (fails fast, no retries).

        Raises StorageError with the service's reason, e.g. ``AuthenticationFailed`` for a wrong
        key or ``ContainerNotFound``.
        """
        try:
            pages = self._container.list_blobs(
                name_starts_with=self._root or None, results_per_page=1, retry_total=0
            ).by_page()
            next(iter(pages), None)
        except AzureError as exc:
            raise self._error(exc, "listing files") from None

    def create_container_if_missing(self) -> bool:
        """Create the container unless it exists (a workspace's own store). True if created."""
        try:
            self._container.create_container()
        except ResourceExistsError:
            return False
        except AzureError as exc:
            raise self._error(exc, "creating the container") from None
        return True

    def list(self, prefix: str = "", *, recursive: bool = False) -> Iterator[Entry]:
        """Entries under ``prefix`` in path order; folders (``a/b/``) only when not recursive."""
        full = self._root + clean_prefix(prefix)
        skip = len(self._root)
        try:
            if recursive:
                for blob in self._container.list_blobs(name_starts_with=full or None):
                    if not blob.name.endswith("/"):  # folder markers made by other tools
                        yield Entry(
                            blob.name[skip:], False, blob.size, blob.last_modified, _md5(blob)
                        )
                return
            walk = self._container.walk_blobs(name_starts_with=full or None, delimiter="/")
            for page in walk.by_page():
                # A page covers a range of names, but the SDK yields its folders first.
                for item in sorted(page, key=lambda i: str(i.name)):
                    if isinstance(item, BlobPrefix):
                        yield Entry(item.name[skip:], True)
                    elif not item.name.endswith("/"):
                        yield Entry(
                            item.name[skip:], False, item.size, item.last_modified, _md5(item)
                        )
        except AzureError as exc:
            raise self._error(exc, f"listing '{full[skip:]}'") from None

    def stat(self, path: str) -> Entry:
        """The file at ``path``, else the folder (blobs below it); raises NotFound."""
        name = clean_path(path)
        try:
            props = self._container.get_blob_client(self._root + name).get_blob_properties()
            return Entry(name, False, props.size, props.last_modified, _md5(props))
        except ResourceNotFoundError as exc:
            if _code(exc) != "BlobNotFound":
                raise self._error(exc, f"reading '{name}'") from None
        except AzureError as exc:
            raise self._error(exc, f"reading '{name}'") from None
        below = self._container.list_blobs(f"{self._root}{name}/", results_per_page=1)
        try:
            if next(iter(below), None) is None:
                raise NotFound(f"No file or folder at '{name}'.")
        except AzureError as exc:
            raise self._error(exc, f"listing '{name}/'") from None
        return Entry(f"{name}/", True)

    def open_read(
        self, path: str, *, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        """Stream the blob in pieces (ranged GETs), from ``offset`` for ``length`` bytes."""
        name = clean_path(path)
        blob = self._container.get_blob_client(self._root + name)
        try:
            if length == 0:
                blob.get_blob_properties()
                return iter(())
            downloader = blob.download_blob(offset=offset, length=length)
        except HttpResponseError as exc:
            if exc.status_code == 416:  # offset at or past the end: nothing to read
                return iter(())
            raise self._error(exc, f"reading '{name}'", name) from None
        except AzureError as exc:
            raise self._error(exc, f"reading '{name}'", name) from None
        return self._chunks(downloader, name)

    def _chunks(self, downloader: StorageStreamDownloader[bytes], name: str) -> Iterator[bytes]:
        try:
            yield from downloader.chunks()
        except AzureError as exc:
            raise self._error(exc, f"reading '{name}'", name) from None

    def write(
        self, path: str, stream: Readable, *, overwrite: bool = False, length: int | None = None
    ) -> Entry:
        """Upload a block blob from ``stream`` in parallel blocks, committed in one step.

        Raises:
            Conflict: the file exists (checked first, and again atomically at the commit).
        """
        name = clean_path(path)
        blob = self._container.get_blob_client(self._root + name)
        try:
            if not overwrite and blob.exists():
                raise Conflict(name)
            result = blob.upload_blob(  # the SDK only calls read(size) on a stream
                cast(IO[bytes], stream),
                length=length,
                overwrite=overwrite,
                max_concurrency=UPLOAD_CONCURRENCY,
            )
        except ResourceExistsError:
            raise Conflict(name) from None
        except AzureError as exc:
            raise self._error(exc, f"writing '{name}'") from None
        if length is None:
            return self.stat(name)
        return Entry(name, False, length, result.get("last_modified"))

    def delete(self, path: str) -> int:
        """Delete a file, or every blob below a folder. Returns how many; NotFound if none."""
        name = clean_path(path)
        try:
            self._container.delete_blob(self._root + name, delete_snapshots="include")
            return 1
        except ResourceNotFoundError as exc:
            if _code(exc) != "BlobNotFound":
                raise self._error(exc, f"deleting '{name}'") from None
        except AzureError as exc:
            raise self._error(exc, f"deleting '{name}'") from None
        try:
            names = [
                b.name for b in self._container.list_blobs(name_starts_with=f"{self._root}{name}/")
            ]
        except AzureError as exc:
            raise self._error(exc, f"listing '{name}/'") from None
        if not names:
            raise NotFound(f"No file or folder at '{name}'.")
        with ThreadPoolExecutor(max_workers=min(DELETE_WORKERS, len(names))) as pool:
            return sum(pool.map(self._delete_one, names))

    def _delete_one(self, full: str) -> int:
        try:
            self._container.delete_blob(full, delete_snapshots="include")
        except ResourceNotFoundError:
            return 0  # gone meanwhile
        except AzureError as exc:
            raise self._error(exc, f"deleting '{full[len(self._root) :]}'") from None
        return 1


def _code(exc: AzureError) -> str | None:
    """The storage service's error code (e.g. 'BlobNotFound'), if it sent one."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code)) if code else None


def _md5(props: Any) -> str | None:
    """The blob's Content-MD5 as hex, if the service has one."""
    settings = getattr(props, "content_settings", None)
    digest = getattr(settings, "content_md5", None) if settings is not None else None
    return bytes(digest).hex() if digest else None
