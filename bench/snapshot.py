"""Snapshot benchmark: submitting an unchanged 200 MB / 5,000-file source directory.

Against a real daphne server (bench/run provides PostgreSQL, Redis, a data root), with the
SDK's own code (``pipelines.sdk.snapshot``): the first upload sends everything; an unchanged
directory must then send **0 bytes** in **≤ 1 s** (DESIGN.md "Budgets"), measured

- warm: again in the same process (the SDK keeps file hashes per path, size and mtime);
- cold: in a fresh Python process, which must read and hash all 200 MB again;
- one file changed: only that file's bytes go.

The server's count of stored blobs is printed before and after, so "0 bytes" is checked on
the server too. Prints numbers; never fails on time::

    bench/run bench/snapshot.py [--files 5000] [--megabytes 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from pipelines.models import SnapshotBlob  # noqa: E402
from pipelines.sdk import Workspace  # noqa: E402
from pipelines.sdk.snapshot import build_manifest, upload_snapshot  # noqa: E402
from portal import services  # noqa: E402
from tests.live import free_port, port_open  # noqa: E402

COLD = """
import sys, time
t0 = time.perf_counter()
from pipelines.sdk import Workspace
from pipelines.sdk.snapshot import build_manifest, upload_snapshot
ws = Workspace.get("bench", url=sys.argv[1], token=sys.argv[2])
manifest = build_manifest(sys.argv[3])
t1 = time.perf_counter()
digest, sent = upload_snapshot(ws, manifest, show_progress=False)
t2 = time.perf_counter()
print(f"{t2 - t0:.3f} {t1 - t0:.3f} {sent}")
"""


def make_tree(root: Path, files: int, total: int) -> None:
    size = total // files
    for i in range(files):
        path = root / f"pkg{i % 50:02d}" / f"module_{i:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def timed(ws: Workspace, source: Path) -> tuple[float, int]:
    start = time.perf_counter()
    manifest = build_manifest(source)
    _, sent = upload_snapshot(ws, manifest, show_progress=False)
    return time.perf_counter() - start, sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()

    user = get_user_model().objects.create_user("bench")
    actor = services.Actor(user=user)
    workspace = services.create_workspace(actor=actor, name="Bench", slug="bench")
    _, secret = services.create_token(actor=actor, workspace=workspace, name="bench")
    port = free_port()
    web_log = Path(tempfile.gettempdir()) / f"bench-snapshot-web-{os.getpid()}.log"
    print(f"Web server log: {web_log}")
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "portal.asgi:application",
        ],
        cwd=ROOT,
        stdout=web_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/"
        ws = Workspace.get("bench", url=url, token=secret)
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "src"
            make_tree(source, args.files, args.megabytes * 1024 * 1024)
            first, sent_first = timed(ws, source)
            blobs = SnapshotBlob.objects.filter(workspace=workspace).count()
            warm = [timed(ws, source) for _ in range(5)]
            cold = []
            for _ in range(3):
                out = subprocess.run(
                    [sys.executable, "-c", COLD, url, secret, str(source)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                cold.append((float(out[0]), float(out[1]), int(out[2])))
            after = SnapshotBlob.objects.filter(workspace=workspace).count()
            changed = source / "pkg00" / "module_00000.py"
            changed.write_bytes(os.urandom(changed.stat().st_size))
            one, sent_one = timed(ws, source)
    finally:
        web.terminate()
        web.wait(timeout=30)

    mb = args.megabytes
    print(f"\nSource directory: {args.files:,} files, {mb} MB (budget: 0 bytes, ≤ 1 s)\n")
    print("| case | time | bytes sent |")
    print("| --- | --- | --- |")
    print(f"| first upload | {first:.2f} s | {sent_first:,} |")
    warm_best = sorted(t for t, _ in warm)[len(warm) // 2]
    print(
        f"| unchanged, same process (median of 5) | {warm_best:.3f} s | {max(s for _, s in warm)} |"
    )
    for total, hashing, sent in cold:
        print(f"| unchanged, fresh process | {total:.3f} s (hashing {hashing:.3f} s) | {sent} |")
    print(f"| one file changed | {one:.3f} s | {sent_one:,} |")
    print(
        f"\nServer: {blobs:,} blobs stored after the first upload, {after:,} after the re-submits."
    )


if __name__ == "__main__":
    main()
