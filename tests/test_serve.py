"""The embedded product, started exactly as the run command starts it (``manage.py serve``) in a
temporary data root: its own SQLite database, its own redis-server child, daphne, a Celery worker
and beat. Everything is reached from outside over real sockets, and Ctrl-C must stop it all."""

from __future__ import annotations

import http.cookiejar
import json
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin

from tests.live import (
    CREDENTIALS,
    HTTP_TIMEOUT,
    TASK_TIMEOUT,
    Served,
    demo_credentials,
    port_open,
)

pytestmark = pytest.mark.live

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
