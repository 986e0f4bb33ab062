"""One storage interface for every datastore kind (model-free; see base.Storage)."""

from portal.storage.base import (
    Conflict,
    Entry,
    InvalidPath,
    NotFound,
    Readable,
    Storage,
    StorageError,
    TransferProgress,
    clean_path,
    clean_prefix,
)

__all__ = [
    "Conflict",
    "Entry",
    "InvalidPath",
    "NotFound",
    "Readable",
    "Storage",
    "StorageError",
    "TransferProgress",
    "clean_path",
    "clean_prefix",
]
