"""What the executor tests of every kind share: reading an execution's output on a thread,
like the worker does, and running a step to its end."""

from __future__ import annotations

import threading
import time

from runs.executors.base import Execution


class Collected:
    """Reads an execution's output on a thread, like the worker does."""

    def __init__(self, execution: Execution) -> None:
        self.chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self._thread = threading.Thread(target=self._read, args=(execution,), daemon=True)
        self._thread.start()

    def _read(self, execution: Execution) -> None:
        for stream, chunk in execution.output():
            self.chunks[stream].append(chunk)

    def text(self, stream: str) -> str:
        return b"".join(self.chunks[stream]).decode()

    def wait_for(self, needle: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text("stdout"):
            assert time.monotonic() < deadline, f"{needle!r} never printed: {self.text('stderr')}"
            time.sleep(0.02)

    def join(self, timeout: float = 30) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the output never ended"


def run_to_end(execution: Execution, timeout: float = 60) -> tuple[int, str, str]:
    """Wait for a started step; returns (exit code, stdout, stderr) and cleans up."""
    try:
        collected = Collected(execution)
        code = execution.wait(timeout)
        assert code is not None, "the step did not end"
        collected.join()
        return code, collected.text("stdout"), collected.text("stderr")
    finally:
        execution.cleanup()


# A step printing 20,000 numbered lines on each stream, interleaved: nothing may be lost or
# reordered within a stream.
BOTH_STREAMS = (
    "import sys\n"
    "for i in range(20000):\n"
    "    print(f'out {i}')\n"
    "    print(f'err {i}', file=sys.stderr)\n"
)


def assert_both_streams_whole(result: tuple[int, str, str]) -> None:
    exit_code, out, err = result
    assert exit_code == 0
    assert out.splitlines() == [f"out {i}" for i in range(20000)]
    assert err.splitlines() == [f"err {i}" for i in range(20000)]
