"""Start a throwaway Azurite (blob only) for a benchmark, from tools/node_modules."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's published development key: not a secret.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def azurite() -> Iterator[str]:
    """Yield a connection string to a fresh Azurite; stop it afterwards."""
    binary = ROOT / "tools" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise SystemExit(
            "Azurite is not installed: run bin/test once (it installs tools/), "
            "or: npm ci --prefix tools"
        )
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as location:
        process = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--location",
                location,
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--loose",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                time.sleep(0.1)
            yield (
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
            )
        finally:
            process.terminate()
            process.wait(timeout=10)
