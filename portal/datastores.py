"""Datastores: from a row to a Storage, and previews of files for the portal.

The one place that knows where a workspace's files live: a local datastore is the folder
``<data root>/datastores/<workspace uuid>/<datastore name>``; the platform's blob store gives
each workspace its own container ``mlr-<workspace uuid>``. So no path a user can type reaches
another workspace's files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from portal.lib.secrets_box import unseal
from portal.models import BLOBSTORE, CredentialKind, Datastore, DatastoreKind, Workspace
from portal.storage import Storage
from portal.storage.local import LocalStorage

PREVIEW_BYTES = 64 * 1024
PREVIEW_ROWS = 50
IMAGE_PREVIEW_MAX_BYTES = 10 * 1024 * 1024
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}

# A dead endpoint must fail a page or API call in seconds, not after the SDK's default
# retries with back-off (~85 s); transfers still get a couple of retries.
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 2, "connection_timeout": 10, "read_timeout": 120}

_containers_ready: set[str] = set()
_containers_lock = threading.Lock()


def platform_container(workspace: Workspace) -> str:
    return f"mlr-{workspace.uuid.hex}"


def local_root(datastore: Datastore) -> Path:
    return (
        Path(settings.MILLRACE_DATA_ROOT)
        / "datastores"
        / str(datastore.workspace.uuid)
        / datastore.name
    )


def builtin_blobstore_fields(workspace: Workspace) -> dict[str, Any]:
    if settings.MILLRACE_AZURE_STORAGE_CONNECTION_STRING:
        return {
            "kind": DatastoreKind.AZURE_BLOB,
            "credential_kind": CredentialKind.PLATFORM,
            "container_name": platform_container(workspace),
        }
    return {"kind": DatastoreKind.LOCAL}


def storage_for(datastore: Datastore) -> Storage:
    """The Storage behind a datastore row."""
    if datastore.kind == DatastoreKind.LOCAL:
        return LocalStorage(local_root(datastore))
    from portal.storage.azure_blob import AzureBlobStorage

    if datastore.credential_kind == CredentialKind.PLATFORM:
        storage = AzureBlobStorage(
            datastore.container_name,
            connection_string=settings.MILLRACE_AZURE_STORAGE_CONNECTION_STRING,
            **CLIENT_OPTIONS,
        )
        with _containers_lock:
            if datastore.container_name not in _containers_ready:
                storage.create_container_if_missing()
                _containers_ready.add(datastore.container_name)
        return storage
    secrets = unseal(datastore.sealed_credentials)
    return AzureBlobStorage(
        datastore.container_name,
        account_name=datastore.account_name or None,
        endpoint=datastore.endpoint or None,
        **secrets,
        **CLIENT_OPTIONS,
    )


def describe_backing(datastore: Datastore) -> str:
    """Where the files really are, in words for the datastore page (no secrets)."""
    if datastore.kind == DatastoreKind.LOCAL:
        if datastore.name == BLOBSTORE:
            return (
                "A local folder on the server: MILLRACE_AZURE_STORAGE_CONNECTION_STRING is not "
                "set, so this workspace's blob store is kept on local disk."
            )
        return "A local folder on the server."
    if datastore.credential_kind == CredentialKind.PLATFORM:
        return (
            f"Azure Blob Storage: the platform's account, container '{datastore.container_name}'."
        )
    account = datastore.account_name or "(from the connection string)"
    return f"Azure Blob Storage: account {account}, container '{datastore.container_name}'."


@dataclass
class Preview:
    kind: str  # text, csv, json, image, binary, folder
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)
    truncated: bool = False
    content_type: str = ""


def preview(storage: Storage, path: str, size: int | None) -> Preview:
    """The first bytes of a file, shaped for the browser; never reads more than PREVIEW_BYTES
    (images are linked, not read, and only up to IMAGE_PREVIEW_MAX_BYTES)."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_TYPES:
        if size is not None and size > IMAGE_PREVIEW_MAX_BYTES:
            return Preview(kind="binary", truncated=True)
        return Preview(kind="image", content_type=IMAGE_TYPES[suffix])
    head = b"".join(storage.open_read(path, length=PREVIEW_BYTES))
    truncated = size is None or size > len(head)
    if b"\x00" in head[:4096]:
        return Preview(kind="binary", truncated=truncated)
    text = head.decode("utf-8", errors="replace")
    if truncated:
        # Do not show a half line, or a half multi-byte character.
        text = text.rsplit("\n", 1)[0] if "\n" in text else text
    if suffix in (".csv", ".tsv"):
        dialect = "excel-tab" if suffix == ".tsv" else "excel"
        reader = csv.reader(io.StringIO(text), dialect=dialect)
        rows = list(itertools.islice(reader, PREVIEW_ROWS + 1))
        return Preview(
            kind="csv", rows=rows[:PREVIEW_ROWS], truncated=truncated or len(rows) > PREVIEW_ROWS
        )
    if suffix == ".json" and not truncated:
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=2)[:PREVIEW_BYTES]
        return Preview(kind="json", text=text)
    kind = "json" if suffix == ".json" else "text"
    return Preview(kind=kind, text=text, truncated=truncated)


__all__ = ["Preview", "describe_backing", "preview", "storage_for"]
