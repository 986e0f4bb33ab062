"""Start the product exactly as the run command does (``manage.py serve``) in a temporary data
root, for tests that reach it from outside over real sockets: its own SQLite database, its own
redis-server child, daphne, a Celery worker and beat.

A plain module (not a conftest): ``tests/test_serve.py`` and the browser tests import it.
``start_served(data_root)`` starts one and returns it; ``served.kill_everything()`` is the
cleanup whatever happened, and ``demo_credentials(served)`` reads the demo login it printed."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Generous bounds: a slow machine must never fail these tests; no test asserts a duration.
START_TIMEOUT = 180.0
STOP_TIMEOUT = 90.0
TASK_TIMEOUT = 60.0
HTTP_TIMEOUT = 30.0
SECRET = "serve-test-secret-key-that-is-long-enough-0123456789"
CREDENTIALS = re.compile(r"username (\S+)\s+password (\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def processes_of(data_root: Path) -> list[int]:
    """Live processes started for ``data_root``: its path in their command line or their
    ``MILLRACE_DATA_ROOT`` (every child of serve inherits it). Zombies show neither."""
    marker = f"MILLRACE_DATA_ROOT={data_root}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(data_root).encode() in cmdline or marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def stat(pid: int) -> tuple[str, int, str, str] | None:
    """(command name, parent pid, state, start time) from /proc/<pid>/stat, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    return name, int(rest[1]), rest[0], rest[19]


def descendants(root: int) -> dict[int, tuple[str, str]]:
    """Every live descendant of ``root``: pid → (command name, start time)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := stat(int(entry.name))) is not None:
            table[int(entry.name)] = info
    found: dict[int, tuple[str, str]] = {}
    parents = [root]
    while parents:
        parent = parents.pop()
        for pid, (name, ppid, state, started) in table.items():
            if ppid == parent and pid not in found and state != "Z":
                found[pid] = (name, started)
                parents.append(pid)
    return found


def still_running(pid: int, started: str) -> bool:
    """True if ``pid`` is the same process (same start time) and not a zombie."""
    info = stat(pid)
    return info is not None and info[3] == started and info[2] != "Z"


@dataclass
class Served:
    """One ``manage.py serve`` process and what it printed."""

    data_root: Path
    port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    # Every process serve started (redis-server renames itself, so neither its command line
    # nor its environment can be searched for the data root afterwards).
    children: dict[int, tuple[str, str]] = field(default_factory=dict)
    _reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(
            MILLRACE_DATA_ROOT=str(self.data_root),
            MILLRACE_STATIC_ROOT=str(self.data_root / "static"),
            REDIS_URL=self.redis_url,
            SECRET_KEY=SECRET,
            # A terminal shows each line at once; a pipe would hold them in Python's buffer.
            PYTHONUNBUFFERED="1",
        )
        env.pop("SECRET_KEY_FILE", None)
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # our own process group, so cleanup can kill all of it
        )
        stream = self.process.stdout
        assert stream is not None
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while "Millrace is up at" not in self.output:
            if self.process.poll() is not None:
                self._reader.join(timeout=10)
                raise AssertionError(
                    f"serve exited with {self.process.returncode}\n{self.report()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not come up in {START_TIMEOUT}s\n{self.report()}")
            time.sleep(0.2)
        self.track_children()

    def track_children(self) -> None:
        assert self.process is not None
        self.children.update(descendants(self.process.pid))

    def leftovers(self) -> list[int]:
        """Processes of this serve still alive: tracked children, or found by data root."""
        tracked = [
            pid for pid, (_, started) in self.children.items() if still_running(pid, started)
        ]
        return sorted(set(tracked) | set(processes_of(self.data_root)))

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to serve alone, as a terminal would, then wait for it to exit."""
        assert self.process is not None
        if self.process.poll() is None:
            self.track_children()
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"serve still running {STOP_TIMEOUT}s after SIGINT\n{self.report()}"
            ) from None
        if self._reader is not None:
            self._reader.join(timeout=10)
        return code

    def kill_everything(self) -> None:
        """Cleanup whatever happened: serve's process group, then any child it left behind
        (children run in their own sessions, so they are found by their data root)."""
        if self.process is not None and self.process.poll() is None:
            self.track_children()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (left := self.leftovers()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def report(self) -> str:
        """serve's output and the end of each child's log, for a failure message."""
        parts = ["--- serve output ---", self.output]
        for log in sorted((self.data_root / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-40:]
            parts += [f"--- {log} (tail) ---", *tail]
        return "\n".join(parts)


def start_served(data_root: Path) -> Served:
    """Start ``manage.py serve`` on ``data_root`` and wait until it is up. If it does not come
    up, whatever it started is killed before the error propagates; otherwise the caller owns
    it and must call ``kill_everything()`` (or ``interrupt()``) when done."""
    served = Served(data_root)
    try:
        served.start()
    except BaseException:
        served.kill_everything()
        raise
    return served


def demo_credentials(served: Served) -> tuple[str, str]:
    """(username, password) of the demo login that the first start prints once."""
    match = CREDENTIALS.search(served.output)
    assert match, f"no demo credentials printed\n{served.output}"
    return match.group(1), match.group(2)
