"""Transfer benchmark: MB/s for upload and download through the storage interface.

Cases: 1 file of 1 GB, and 10,000 files of 10 KB; kinds: local and Azure Blob (Azurite).
Uploads use Storage.upload_dir and downloads Storage.materialize, with their parallel workers
(the same calls the engine and the API use).

    .venv/bin/python bench/transfer.py [--big-mb 1024] [--small-count 10000] [--kinds local,azure]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._azurite import azurite
from portal.storage.base import Storage
from portal.storage.local import LocalStorage


def make_big(folder: Path, megabytes: int) -> int:
    folder.mkdir(parents=True)
    block = os.urandom(1024 * 1024)
    with (folder / "big.bin").open("wb") as fh:
        for _ in range(megabytes):
            fh.write(block)
    return megabytes * 1024 * 1024


def make_small(folder: Path, count: int, size: int = 10 * 1024) -> int:
    for i in range(count):
        sub = folder / f"d{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    return count * size


def measure(storage: Storage, source: Path, total: int, scratch: Path, label: str) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    started = time.perf_counter()
    files = storage.upload_dir(source, prefix)
    up = time.perf_counter() - started
    target = scratch / f"down-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    storage.materialize(prefix, target)
    down = time.perf_counter() - started
    mb = total / 1e6
    print(
        f"{label:<28} {files:>6} files {mb:>9.1f} MB   "
        f"upload {mb / up:>8.1f} MB/s ({up:6.2f} s)   "
        f"download {mb / down:>8.1f} MB/s ({down:6.2f} s)",
        flush=True,
    )
    shutil.rmtree(target)
    storage.delete(prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--small-count", type=int, default=10_000)
    parser.add_argument("--kinds", default="local,azure")
    args = parser.parse_args()
    kinds = set(args.kinds.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        scratch = Path(tmp)
        big, small = scratch / "big", scratch / "small"
        big_total = make_big(big, args.big_mb)
        small_total = make_small(small, args.small_count)
        print(f"machine: {os.cpu_count()} cores; data in {scratch}")
        if "local" in kinds:
            local = LocalStorage(scratch / "datastore")
            measure(local, big, big_total, scratch, f"local 1x{args.big_mb} MB")
            measure(local, small, small_total, scratch, f"local {args.small_count}x10 KB")
        if "azure" in kinds:
            from portal.storage.azure_blob import AzureBlobStorage

            with azurite() as connection_string:
                blob = AzureBlobStorage("bench", connection_string=connection_string)
                blob.create_container_if_missing()
                measure(blob, big, big_total, scratch, f"azurite 1x{args.big_mb} MB")
                measure(blob, small, small_total, scratch, f"azurite {args.small_count}x10 KB")


if __name__ == "__main__":
    main()
