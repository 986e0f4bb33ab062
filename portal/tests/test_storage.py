"""One set of storage tests, run against every datastore kind: a local folder, and Azure Blob
Storage on the Azurite emulator that bin/test starts (MILLRACE_TEST_AZURITE_CONNECTION_STRING).
Model-free: no database."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import socket
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ResourceTypes,
    generate_account_sas,
)

from portal.storage.azure_blob import AzureBlobStorage
from portal.storage.base import (
    Conflict,
    Entry,
    InvalidPath,
    NotFound,
    Storage,
    StorageError,
)
from portal.storage.local import LocalStorage

AZURITE_ENV = "MILLRACE_TEST_AZURITE_CONNECTION_STRING"
MB = 1024 * 1024


def azurite() -> dict[str, str]:
    """The Azurite connection string and its parts; fails (never skips) when it is not set."""
    conn = os.environ.get(AZURITE_ENV)
    if not conn:
        pytest.fail(f"{AZURITE_ENV} is not set: run the tests with bin/test, which starts Azurite.")
    parts = dict(p.split("=", 1) for p in conn.split(";") if p)
    return {
        "conn": conn,
        "name": parts["AccountName"],
        "key": parts["AccountKey"],
        "endpoint": parts["BlobEndpoint"],
    }


def new_container(service: BlobServiceClient) -> str:
    name = f"t-{uuid.uuid4().hex}"
    service.create_container(name)
    return name


@pytest.fixture
def service() -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite()["conn"])


@pytest.fixture
def container(service: BlobServiceClient) -> Iterator[str]:
    """A fresh, empty container on Azurite, deleted afterwards."""
    name = new_container(service)
    yield name
    service.delete_container(name)


@pytest.fixture(params=["local", "azure"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """The storage under test: every kind confined to a folder named ``root``."""
    store: Storage
    if request.param == "local":
        store = LocalStorage(tmp_path / "root")
    else:
        store = AzureBlobStorage(
            request.getfixturevalue("container"), connection_string=azurite()["conn"], prefix="root"
        )
    store.check()
    return store


def put(store: Storage, path: str, data: bytes, **kwargs: Any) -> Entry:
    return store.write(path, io.BytesIO(data), length=len(data), **kwargs)


def read(store: Storage, path: str, **kwargs: Any) -> bytes:
    return b"".join(store.open_read(path, **kwargs))


def paths(entries: Iterator[Entry]) -> list[str]:
    return [e.path for e in entries]


# --- the shared cases ----------------------------------------------------------------------


def test_write_stat_list(storage: Storage) -> None:
    for path in ("a.txt", "data/x.csv", "data/sub/y.bin", "data.csv", "z.txt"):
        entry = put(storage, path, path.encode() * 3)
        assert entry.path == path and not entry.is_dir and entry.size == len(path) * 3
        assert entry.modified is not None

    stat = storage.stat("data/x.csv")
    assert (stat.path, stat.is_dir, stat.size, stat.name) == ("data/x.csv", False, 30, "x.csv")
    assert stat.modified is not None and stat.modified.tzinfo is not None
    for folder in ("data", "data/", "data/sub"):
        entry = storage.stat(folder)
        assert entry.is_dir and entry.path == folder.rstrip("/") + "/" and entry.size is None
    with pytest.raises(NotFound):
        storage.stat("data/nope")

    # Path order: 'data.csv' < 'data/' ('.' sorts before '/'), files and folders together.
    top = list(storage.list())
    assert paths(iter(top)) == ["a.txt", "data.csv", "data/", "z.txt"]
    assert [e.is_dir for e in top] == [False, False, True, False]
    assert [e.size for e in top] == [15, 24, None, 15]
    assert paths(storage.list("data")) == ["data/sub/", "data/x.csv"]
    assert paths(storage.list("data/")) == ["data/sub/", "data/x.csv"]
    assert paths(storage.list("", recursive=True)) == [
        "a.txt",
        "data.csv",
        "data/sub/y.bin",
        "data/x.csv",
        "z.txt",
    ]
    assert paths(storage.list("data", recursive=True)) == ["data/sub/y.bin", "data/x.csv"]
    assert list(storage.list("missing")) == []
    assert list(storage.list("a.txt")) == []  # a file is not a folder

    # Unknown length, and an empty file.
    assert storage.write("sized/later.bin", io.BytesIO(b"x" * 1000)).size == 1000
    assert read(storage, "sized/later.bin") == b"x" * 1000
    assert put(storage, "empty", b"").size == 0
    assert storage.stat("empty").size == 0
    assert read(storage, "empty") == b""


def test_open_read_offset_and_length(storage: Storage) -> None:
    data = bytes(range(256)) * 40
    put(storage, "f.bin", data)
    assert read(storage, "f.bin") == data
    assert read(storage, "f.bin", offset=100) == data[100:]
    assert read(storage, "f.bin", offset=100, length=50) == data[100:150]
    assert read(storage, "f.bin", length=7) == data[:7]
    assert read(storage, "f.bin", offset=len(data) - 3, length=100) == data[-3:]
    assert read(storage, "f.bin", offset=5, length=0) == b""
    assert read(storage, "f.bin", offset=len(data)) == b""
    assert read(storage, "f.bin", offset=len(data) + 10, length=5) == b""
    with pytest.raises(NotFound):
        storage.open_read("missing.bin")
    put(storage, "dir/inner.bin", b"1")
    with pytest.raises(NotFound):
        storage.open_read("dir")  # a folder is not a file


def test_overwrite_false_is_a_conflict_and_true_replaces(storage: Storage) -> None:
    put(storage, "d/a.txt", b"old content")
    with pytest.raises(Conflict) as caught:
        put(storage, "d/a.txt", b"new", overwrite=False)
    assert caught.value.path == "d/a.txt" and "d/a.txt" in str(caught.value)
    assert read(storage, "d/a.txt") == b"old content"

    entry = put(storage, "d/a.txt", b"new", overwrite=True)
    assert entry.size == 3 and storage.stat("d/a.txt").size == 3
    assert read(storage, "d/a.txt") == b"new"
    assert paths(storage.list("d")) == ["d/a.txt"]  # nothing left over from either write


def test_delete_file_folder_and_missing(storage: Storage) -> None:
    for path in ("keep.txt", "f.txt", "dir/a", "dir/b/c", "dir/b/d/e", "dirx"):
        put(storage, path, b"1")
    assert storage.delete("f.txt") == 1
    with pytest.raises(NotFound):
        storage.stat("f.txt")
    assert storage.delete("dir/") == 3
    with pytest.raises(NotFound):
        storage.stat("dir")
    assert paths(storage.list("", recursive=True)) == ["dirx", "keep.txt"]
    for missing in ("f.txt", "dir", "nope/deeper"):
        with pytest.raises(NotFound):
            storage.delete(missing)


def test_copy(storage: Storage) -> None:
    data = os.urandom(300_000)
    put(storage, "src/a.bin", data)
    entry = storage.copy("src/a.bin", "dst/b.bin")
    assert entry.path == "dst/b.bin" and entry.size == len(data)
    assert read(storage, "dst/b.bin") == data
    put(storage, "dst/c.bin", b"old")
    with pytest.raises(Conflict):
        storage.copy("src/a.bin", "dst/c.bin")
    assert read(storage, "dst/c.bin") == b"old"
    storage.copy("src/a.bin", "dst/c.bin", overwrite=True)
    assert read(storage, "dst/c.bin") == data
    with pytest.raises(NotFound):
        storage.copy("src/missing.bin", "dst/d.bin")


def test_move(storage: Storage) -> None:
    data = os.urandom(300_000)
    put(storage, "src/a.bin", data)
    put(storage, "dst/c.bin", b"old")
    with pytest.raises(Conflict):
        storage.move("src/a.bin", "dst/c.bin")
    assert read(storage, "dst/c.bin") == b"old" and read(storage, "src/a.bin") == data
    entry = storage.move("src/a.bin", "dst/deep/b.bin")
    assert entry.path == "dst/deep/b.bin" and entry.size == len(data)
    assert read(storage, "dst/deep/b.bin") == data
    with pytest.raises(NotFound):
        storage.stat("src/a.bin")
    put(storage, "src/e.bin", b"new")
    storage.move("src/e.bin", "dst/c.bin", overwrite=True)
    assert read(storage, "dst/c.bin") == b"new"
    with pytest.raises(NotFound):
        storage.move("src/missing.bin", "dst/d.bin")
    with pytest.raises(InvalidPath):
        storage.move("dst/c.bin", "../escape.bin")


def make_tree(root: Path) -> dict[str, str]:
    """A nested folder of files (one bigger than a transfer chunk); returns path → sha256."""
    files = {
        "top.txt": b"top",
        "empty.dat": b"",
        "a/one.csv": b"x,y\n1,2\n",
        "a/b/two.bin": os.urandom(70_000),
        "a/b/c/deep name é.txt": "unicode ✓".encode(),
        "big/model.pt": os.urandom(5 * MB + 17),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def tree_digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


class Progress:
    def __init__(self) -> None:
        self.bytes = self.files = 0
        self._lock = threading.Lock()

    def __call__(self, nbytes: int, nfiles: int) -> None:
        with self._lock:
            self.bytes += nbytes
            self.files += nfiles


def test_upload_dir_and_materialize_round_trip(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "src"
    expected = make_tree(source)
    total = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())

    up = Progress()
    assert storage.upload_dir(source, "proj/in", progress=up) == len(expected)
    assert (up.bytes, up.files) == (total, len(expected))
    assert paths(storage.list("proj/in", recursive=True)) == sorted(
        f"proj/in/{rel}" for rel in expected
    )

    down = Progress()
    target = tmp_path / "dst"
    assert storage.materialize("proj/in", target, progress=down) == len(expected)
    assert (down.bytes, down.files) == (total, len(expected))
    assert tree_digests(target) == expected
    with pytest.raises(Conflict):
        storage.materialize("proj/in", target)


def test_upload_dir_with_one_clash_writes_nothing(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "src"
    for rel in ("a.txt", "b.txt", "c/d.txt"):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(b"new " + rel.encode())
    put(storage, "proj/b.txt", b"old")
    with pytest.raises(Conflict) as caught:
        storage.upload_dir(source, "proj", overwrite=False)
    assert caught.value.path == "proj/b.txt"
    assert paths(storage.list("", recursive=True)) == ["proj/b.txt"]
    assert read(storage, "proj/b.txt") == b"old"


class PatternStream:
    """A file-like object producing ``size`` bytes on the fly (distinct 1 MiB units), hashing
    what it hands out. Never holds more than one read's worth."""

    UNIT = MB
    TAIL = hashlib.sha256(b"millrace").digest() * (UNIT // 32)

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.pos + size)
        pieces = []
        while self.pos < end:
            unit, offset = divmod(self.pos, self.UNIT)
            block = unit.to_bytes(8, "big") + self.TAIL[8:]
            take = min(end - self.pos, self.UNIT - offset)
            pieces.append(block[offset : offset + take])
            self.pos += take
        data = b"".join(pieces)
        self.sha256.update(data)
        return data


def test_large_file_streams_in_bounded_memory(storage: Storage) -> None:
    size = 105 * MB + 12_345  # larger than 100 MB, not a multiple of any chunk size
    source = PatternStream(size)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        started = time.monotonic()
        entry = storage.write("big/blob.bin", source, length=size)
        write_s = time.monotonic() - started
        write_peak = tracemalloc.get_traced_memory()[1] - base

        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        started = time.monotonic()
        digest, got = hashlib.sha256(), 0
        for chunk in storage.open_read("big/blob.bin"):
            digest.update(chunk)
            got += len(chunk)
        read_s = time.monotonic() - started
        read_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()

    print(
        f"\n[{storage.kind}] {size / MB:.0f} MB: write {write_s * 1000 / (size / MB):.1f} ms/MB "
        f"(peak {write_peak / MB:.1f} MB), read {read_s * 1000 / (size / MB):.1f} ms/MB "
        f"(peak {read_peak / MB:.1f} MB)"
    )
    assert source.pos == size and entry.size == size == got
    assert storage.stat("big/blob.bin").size == size
    assert digest.hexdigest() == source.sha256.hexdigest()
    assert write_peak < 32 * MB, f"write held {write_peak / MB:.1f} MB"
    assert read_peak < 32 * MB, f"read held {read_peak / MB:.1f} MB"


BAD_PATHS = [
    "..",
    "a/../b",
    "../outside.txt",
    "/abs",
    "/etc/passwd",
    "a//b",
    "a\\b",
    "..\\outside.txt",
    "a\x00b",
    "./a",
    "a/.",
    " a",
    "a/b ",
    "a\nb",
    "x" * 2000,
    42,
    b"a/b",
]


@pytest.mark.parametrize("bad", BAD_PATHS, ids=[repr(p)[:20] for p in BAD_PATHS])
def test_bad_paths_are_refused_everywhere(
    storage: Storage, bad: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"untouched")
    sibling = sentinel_container(request) if isinstance(storage, AzureBlobStorage) else None

    operations = {
        "write": lambda: storage.write(bad, io.BytesIO(b"evil"), overwrite=True),
        "stat": lambda: storage.stat(bad),
        "open_read": lambda: b"".join(storage.open_read(bad)),
        "delete": lambda: storage.delete(bad),
        "list": lambda: list(storage.list(bad)),
        "list recursive": lambda: list(storage.list(bad, recursive=True)),
    }
    for name, operation in operations.items():
        with pytest.raises(InvalidPath):
            operation()
            pytest.fail(f"{name}({bad!r}) was accepted")

    assert list(storage.list("", recursive=True)) == []
    if isinstance(storage, AzureBlobStorage):
        service = BlobServiceClient.from_connection_string(azurite()["conn"])
        assert list(service.get_container_client(storage.container_name).list_blobs()) == []
        assert sibling is not None
        blobs = list(service.get_container_client(sibling).list_blobs())
        assert [b.name for b in blobs] == ["sentinel.txt"]
    else:
        assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
            "outside.txt",
            "root",
        ]
        assert outside.read_bytes() == b"untouched"


def sentinel_container(request: pytest.FixtureRequest) -> str:
    """A second container holding one blob, deleted after the test."""
    service = BlobServiceClient.from_connection_string(azurite()["conn"])
    name = new_container(service)
    request.addfinalizer(lambda: service.delete_container(name))
    service.get_container_client(name).upload_blob("sentinel.txt", b"untouched")
    return name


# --- local only ----------------------------------------------------------------------------


def test_local_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "file-link").symlink_to(outside / "secret.txt")
    (root / "ok.txt").write_bytes(b"ok")
    store = LocalStorage(root)

    for path in ("link", "link/secret.txt", "file-link", "link/new.txt"):
        with pytest.raises(InvalidPath, match="outside"):
            store.stat(path)
        with pytest.raises(InvalidPath):
            store.open_read(path)
        with pytest.raises(InvalidPath):
            store.write(path, io.BytesIO(b"evil"), overwrite=True)
        with pytest.raises(InvalidPath):
            store.delete(path)
    with pytest.raises(InvalidPath):
        list(store.list("link"))
    assert paths(store.list()) == ["ok.txt"]
    assert paths(store.list(recursive=True)) == ["ok.txt"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"


# --- Azure only ----------------------------------------------------------------------------


def test_azure_check_with_a_wrong_key_gives_the_service_reason_without_the_key(
    container: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = azurite()
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    store = AzureBlobStorage(
        container, account_name=env["name"], account_key=wrong_key, endpoint=env["endpoint"]
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StorageError) as caught:
        store.check()
    message = str(caught.value)
    # Azure says AuthenticationFailed; Azurite says AuthorizationFailure. Either way the
    # service's own words come through.
    assert "AuthenticationFailed" in message or "AuthorizationFailure" in message, message
    assert "Server failed to authenticate the request" in message
    assert container in message
    for secret in (wrong_key, wrong_key[:20], env["key"]):
        assert secret not in message
        assert secret not in repr(caught.value)
        assert secret not in caplog.text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_azure_check_of_a_missing_container(service: BlobServiceClient) -> None:
    store = AzureBlobStorage(
        f"missing-{uuid.uuid4().hex[:12]}", connection_string=azurite()["conn"]
    )
    with pytest.raises(StorageError) as caught:
        store.check()
    assert "ContainerNotFound" in str(caught.value)
    assert azurite()["key"] not in str(caught.value)
    with pytest.raises(StorageError, match="ContainerNotFound"):
        put(store, "a.txt", b"1")
    with pytest.raises(StorageError, match="ContainerNotFound") as not_found:
        store.stat("a.txt")
    assert not isinstance(not_found.value, NotFound)  # a missing container is not a missing file

    assert store.create_container_if_missing() is True
    try:
        assert store.create_container_if_missing() is False
        store.check()
    finally:
        service.delete_container(store.container_name)


def test_azure_unreachable_endpoint_fails_fast_and_clearly() -> None:
    env = azurite()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nobody listens there
    store = AzureBlobStorage(
        "anything",
        account_name=env["name"],
        account_key=env["key"],
        endpoint=f"http://127.0.0.1:{port}/{env['name']}",
        retry_total=0,
        connection_timeout=2,
    )
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        store.check()
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "Cannot reach blob storage" in message and f"127.0.0.1:{port}" in message
    assert env["key"] not in message
    with pytest.raises(StorageError, match="Cannot reach blob storage"):
        list(store.list())


def test_azure_credentials_sas_and_container_root(container: str) -> None:
    env = azurite()
    for bad in (
        {},
        {"connection_string": env["conn"], "account_key": env["key"]},
        {"connection_string": env["conn"], "endpoint": env["endpoint"]},
        {"account_key": env["key"]},
    ):
        with pytest.raises(StorageError):
            AzureBlobStorage(container, **bad)
    with pytest.raises(StorageError, match="not a valid container name"):
        AzureBlobStorage("Bad_Name", connection_string=env["conn"])
    with pytest.raises(InvalidPath):
        AzureBlobStorage(container, connection_string=env["conn"], prefix="../up")

    sas = generate_account_sas(
        env["name"],
        env["key"],
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions(
            read=True, write=True, list=True, delete=True, create=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    via_sas = AzureBlobStorage(
        container, account_name=env["name"], sas_token=sas, endpoint=env["endpoint"]
    )
    via_sas.check()
    put(via_sas, "top.txt", b"top")
    put(via_sas, "inner/deep.txt", b"deep")

    # Without a prefix, paths are the blob names; with one, they are relative to it.
    whole = AzureBlobStorage(container, connection_string=env["conn"])
    assert paths(whole.list()) == ["inner/", "top.txt"]
    inner = AzureBlobStorage(container, connection_string=env["conn"], prefix="inner/")
    assert paths(inner.list(recursive=True)) == ["deep.txt"]
    assert read(inner, "deep.txt") == b"deep"
    assert inner.delete("deep.txt") == 1
    assert paths(whole.list(recursive=True)) == ["top.txt"]
    with pytest.raises(StorageError) as caught:
        AzureBlobStorage(
            "missing-container", account_name=env["name"], sas_token=sas, endpoint=env["endpoint"]
        ).check()
    assert sas.split("sig=")[1][:10] not in str(caught.value)
