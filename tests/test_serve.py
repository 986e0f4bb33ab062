"""The embedded product, started exactly as the run command starts it (``manage.py serve``) in a
temporary data root: its own SQLite database, its own redis-server child, daphne, a Celery worker
and beat. Everything is reached from outside over real sockets, and Ctrl-C must stop it all."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from celery import Celery
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin

pytestmark = pytest.mark.live

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


_started: list[Served] = []


@pytest.fixture(autouse=True)
def _report_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before and _started:
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            for served in _started:
                print(f"\n===== diagnostics of serve in {served.data_root} =====", file=sys.stderr)
                print(served.report(), file=sys.stderr)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("millrace-serve")


@pytest.fixture(scope="module")
def served(data_root: Path) -> Iterator[Served]:
    """The first start, on an empty data root; stopped by the SIGINT test or at the end."""
    first = Served(data_root)
    _started.append(first)
    try:
        first.start()
        yield first
    finally:
        first.kill_everything()
        _started.remove(first)


def demo_credentials(served: Served) -> tuple[str, str]:
    match = CREDENTIALS.search(served.output)
    assert match, f"no demo credentials printed\n{served.output}"
    return match.group(1), match.group(2)


class Browser:
    """A cookie-keeping HTTP client on urllib, enough for Django's login form."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.cookies)
        )

    def get(self, path: str) -> tuple[str, str]:
        """GET ``path`` following redirects; return (final path, body)."""
        with self.opener.open(self.base + path.lstrip("/"), timeout=HTTP_TIMEOUT) as response:
            return urllib.parse.urlparse(response.geturl()).path, response.read().decode()

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name), None)

    def log_in(self, username: str, password: str) -> tuple[str, str]:
        _, form = self.get("/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert match, form
        assert self.cookie("csrftoken"), "the login page set no csrftoken cookie"
        data = urllib.parse.urlencode(
            {
                "csrfmiddlewaretoken": match.group(1),
                "username": username,
                "password": password,
                "next": "/",
            }
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - self.base is http://127.0.0.1
            self.base + "login/", data=data, method="POST"
        )
        with self.opener.open(request, timeout=HTTP_TIMEOUT) as response:
            return urllib.parse.urlparse(response.geturl()).path, response.read().decode()


def test_serve_prints_demo_credentials_that_log_in_through_the_real_login_form(served):
    username, password = demo_credentials(served)
    assert username == "demo"
    browser = Browser(served.url)
    # Not logged in yet: the home page sends us to the login form.
    path, _ = browser.get("/")
    assert path == "/login/"
    # A wrong password stays on the form, so the success below means something.
    path, body = browser.log_in(username, password + "-wrong")
    assert path == "/login/"
    assert browser.cookie("sessionid") is None
    path, body = browser.log_in(username, password)
    assert path == "/", body
    assert browser.cookie("sessionid"), "logged in but no session cookie"


def test_after_login_the_home_page_shows_the_demo_workspace(served):
    browser = Browser(served.url)
    browser.log_in(*demo_credentials(served))
    path, body = browser.get("/")
    assert path == "/"
    assert "Your workspaces" in body
    assert "<strong>Demo</strong>" in body


def test_a_celery_task_round_trips_through_the_worker_serve_started(served):
    app = Celery("serve-test", broker=served.redis_url, backend=served.redis_url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    try:
        result = app.send_task("portal.ping", args=["hi"])
        assert result.get(timeout=TASK_TIMEOUT) == "pong:hi"
    finally:
        app.close()
    assert "portal.ping" in (served.data_root / "logs" / "worker.log").read_text()


def test_the_served_web_server_carries_websockets_through_its_own_redis(served):
    """Real daphne, real Redis child: a logged-in socket gets its pong; an anonymous one is
    refused before the handshake completes."""
    browser = Browser(served.url)
    browser.log_in(*demo_credentials(served))
    ws_url = f"ws://127.0.0.1:{served.port}/ws/ping/"
    origin = Origin(f"http://127.0.0.1:{served.port}")
    with ws_connect(
        ws_url,
        origin=origin,
        additional_headers={"Cookie": f"sessionid={browser.cookie('sessionid')}"},
        proxy=None,
        open_timeout=HTTP_TIMEOUT,
    ) as sock:
        sock.send(json.dumps({"type": "ping", "echo": "through daphne"}))
        pong = json.loads(sock.recv(timeout=HTTP_TIMEOUT))
    assert pong == {"type": "pong", "user": "demo", "workspace": None, "echo": "through daphne"}
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(ws_url, origin=origin, proxy=None, open_timeout=HTTP_TIMEOUT)
    assert refused.value.response.status_code == 403


def test_sigint_stops_serve_and_every_child_it_started(served):
    assert port_open(served.port) and port_open(served.redis_port)
    served.track_children()
    names = sorted(name for name, _ in served.children.values())
    # Otherwise the "nothing left" check below would be blind.
    assert {"redis-server", "daphne", "celery"} <= set(names), names
    assert names.count("celery") >= 2, names  # worker (and its pool) and beat
    code = served.interrupt()
    assert code == 0, served.report()
    assert "Stopped." in served.output
    assert not port_open(served.port), "the web server still listens"
    assert not port_open(served.redis_port), "redis-server still listens"
    assert served.leftovers() == [], served.report()


def test_a_second_start_on_the_same_data_root_reuses_the_demo_user(served, data_root):
    if served.process is not None and served.process.poll() is None:
        assert served.interrupt() == 0, served.report()
    old_username, old_password = demo_credentials(served)
    second = Served(data_root)
    _started.append(second)
    try:
        second.start()
        assert "Demo user 'demo' exists" in second.output
        assert "Demo login" not in second.output
        assert not CREDENTIALS.search(second.output), "a new password was printed"
        # The same database: the first run's password still works.
        path, _ = Browser(second.url).log_in(old_username, old_password)
        assert path == "/"
        assert second.interrupt() == 0, second.report()
        assert second.children, "no child tracked: the check below would be blind"
        assert second.leftovers() == [], second.report()
    finally:
        second.kill_everything()
        _started.remove(second)
