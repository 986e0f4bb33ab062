"""The streamed zip: a valid archive whatever the entries, produced while the input is read."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

from runs.zipstream import zip_stream


def test_the_archive_holds_every_file_byte_for_byte() -> None:
    big = bytes(range(256)) * 8192  # 2 MB
    files = [
        ("a/b.txt", [b"hello ", b"world"]),
        ("empty.txt", []),
        ("naïve name (v2).csv", [b"x,y\n1,2\n"]),
        ("deep/er/big.bin", [big[i : i + 65536] for i in range(0, len(big), 65536)]),
    ]
    data = b"".join(zip_stream((name, iter(chunks)) for name, chunks in files))
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert archive.namelist() == [name for name, _ in files]
    assert archive.read("a/b.txt") == b"hello world"
    assert archive.read("empty.txt") == b""
    assert archive.read("deep/er/big.bin") == big


def test_bytes_come_out_before_the_input_is_finished() -> None:
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(100):
            read.append(i)
            yield b"x" * 1024

    stream = zip_stream([("f.bin", chunks())])
    first = next(stream)
    assert first and len(read) < 100  # streamed, not built whole first
    rest = b"".join(stream)
    assert zipfile.ZipFile(io.BytesIO(first + rest)).read("f.bin") == b"x" * 102400
