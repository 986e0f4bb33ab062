"""A zip archive written as a stream: files go in one after the other and the archive's bytes
come out as they are made, so a download of gigabytes holds only a chunk in memory. Model-free.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from typing import IO, cast


class _Sink:
    """A write-only, unseekable file that hands over what was written so far."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._offset = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_stream(files: Iterable[tuple[str, Iterable[bytes]]]) -> Iterator[bytes]:
    """The bytes of a zip holding ``files``: (name in the archive, chunks of its content).
    Entries are stored uncompressed (outputs are often compressed already) with zip64 on, so
    any size works."""
    sink = _Sink()
    target = cast(IO[bytes], sink)  # ZipFile needs only write, tell and flush
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, chunks in files:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=True) as entry:
                for chunk in chunks:
                    entry.write(chunk)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
    if data := sink.take():  # the central directory
        yield data
