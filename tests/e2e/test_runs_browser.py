"""The run page in a real browser: Debian's Chromium, driven by Playwright, against
``manage.py serve`` (web, Celery worker and beat, the ``local`` compute target) started by the
test on a temporary data root.

Runs are submitted the way an outside system does: a token made on the Tokens page, the source
directory uploaded to the snapshots API, the graph posted to the runs API. The step prints a
numbered line and logs a metric every 0.2 s until the test creates its release file, so the
test sees it running for as long as it needs, whatever the machine's speed, and no assertion
depends on a duration. Screenshots (full page) go to ``$MILLRACE_TEST_ARTIFACTS``."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.test_browser import (
    ARTIFACTS,
    UI_TIMEOUT_MS,
    ensure_user,
    log_in,
    open_workspace,
    set_role,
    snap,
)
from tests.live import HTTP_TIMEOUT, Served, start_served

pytestmark = pytest.mark.live

WORKSPACE = "Demo"
EXPERIMENT = "live-e2e"
OUTSIDER, READER = "olga", "rita"
PASSWORDS = {OUTSIDER: "Marble-kettle-93-orchard", READER: "Violet-anchor-58-meadow"}

TRAIN = """
import os, sys, time
from pipelines.sdk import Run

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
run = Run.get_context()
rows = []
i = 0
# Prints until the test creates the release file (at most 3,000 lines, a bound, not a timer).
while i < 3000:
    i += 1
    loss = round(1.0 / i + float(args["--lr"]), 4)
    print(f"line {i}: loss {loss} lr {args['--lr']}", flush=True)
    run.log("loss", loss)
    rows.append(f"{i},{loss}")
    if i >= 3 and os.path.exists(args["--release"]):
        break
    time.sleep(0.2)
with open(os.path.join(args["--out"], "scores.csv"), "w") as fh:
    fh.write("epoch,loss\\n" + "\\n".join(rows) + "\\n")
print("done", flush=True)
"""


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    serve = start_served(tmp_path_factory.mktemp("millrace-runs-e2e"))
    try:
        yield serve
    finally:
        serve.kill_everything()


@pytest.fixture(scope="module", autouse=True)
def _fresh_artifacts() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("e2e-runs-*.png"):
        old.unlink()


@pytest.fixture
def new_page(
    browser: Browser, served: Served, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Page]]:
    pages: list[Page] = []

    def make() -> Page:
        context = browser.new_context(base_url=served.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(UI_TIMEOUT_MS)
        page = context.new_page()
        pages.append(page)
        return page

    failed_before = request.session.testsfailed
    yield make
    failed = request.session.testsfailed > failed_before
    for number, page in enumerate(pages, start=1):
        if failed:
            snap(page, f"runs-FAILED-{request.node.name}-page{number}")
            print(f"\n===== serve report =====\n{served.report()}")
        page.context.close()


@dataclass
class Api:
    """The REST API as a script would use it, with a token made on the Tokens page."""

    served: Served
    workspace: str
    secret: str
    release_dir: Path
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - served.url is http://127.0.0.1
            f"{self.served.url}api/v1/workspaces/{self.workspace}/{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.secret}",
                "Content-Type": "application/octet-stream"
                if raw is not None
                else "application/json",
            },
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=HTTP_TIMEOUT) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read() or b"{}")

    def snapshot(self) -> str:
        content = TRAIN.encode()
        sha = hashlib.sha256(content).hexdigest()
        status, body = self.call("PUT", f"snapshots/blobs/{sha}", raw=content)
        assert status in (200, 201), body
        manifest = {"train.py": {"sha256": sha, "size": len(content), "mode": 0o644}}
        status, body = self.call("POST", "snapshots/", {"manifest": manifest})
        assert status in (200, 201), body
        return str(body["digest"])

    def submit(self, label: str, lr: float, *, released: bool = False) -> dict[str, Any]:
        """Submit the one-step pipeline; it runs until ``release(label)`` (or at once)."""
        release = self.release_dir / f"release-{label}"
        if released:
            release.touch()
        graph = {
            "parameters": {
                "lr": {"type": "float", "default": 0.1},
                "release": {"type": "string", "default": ""},
            },
            "steps": [
                {
                    "name": "train",
                    "script": "train.py",
                    "snapshot": self.snapshot(),
                    "compute_target": "local",
                    "arguments": [
                        "--out",
                        {"output": "scores"},
                        "--lr",
                        {"parameter": "lr"},
                        "--release",
                        {"parameter": "release"},
                    ],
                    "outputs": {"scores": {"datastore": "workspaceblobstore"}},
                }
            ],
        }
        status, body = self.call(
            "POST",
            "runs/",
            {
                "experiment_name": EXPERIMENT,
                "graph": graph,
                "parameters": {"lr": lr, "release": str(release)},
                "tags": {"case": label},
                "source": "rest",
            },
        )
        assert status == 201, body
        self.runs[label] = body
        return body

    def release(self, label: str) -> None:
        (self.release_dir / f"release-{label}").touch()


def create_token(page: Page, name: str) -> str:
    """On the open workspace's Tokens page: a new token's secret."""
    page.locator("nav.navbar").get_by_role("link", name="Tokens", exact=True).click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token-secret").inner_text().strip()
    assert secret.startswith("mlr_")
    return secret


@pytest.fixture(scope="module")
def api(
    browser: Browser,
    served: Served,
    demo: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    """As the demo owner: the outsider and the reader exist, and a token for the REST API."""
    context = browser.new_context(base_url=served.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        log_in(page, *demo)
        for username, password in PASSWORDS.items():
            ensure_user(page, username, password)
        open_workspace(page, WORKSPACE)
        match = re.search(r"/w/([0-9a-f-]{36})/", page.url)
        assert match, page.url
        set_role(page, READER, "reader")
        secret = create_token(page, "e2e-runs")
        yield Api(served, match.group(1), secret, tmp_path_factory.mktemp("release"))
    finally:
        context.close()


# --- helpers -----------------------------------------------------------------------------------


def panel_status(page: Page) -> Locator:
    return page.locator("#step-panel-status .status-badge")


def run_status(page: Page) -> Locator:
    return page.locator("#run-status .status-badge")


def log_lines(page: Page) -> Locator:
    return page.locator("#log-driver .log-line")


def pane_at_bottom(page: Page) -> bool:
    return bool(
        page.evaluate(
            "() => { const p = document.getElementById('log-driver');"
            " return p.scrollTop + p.clientHeight >= p.scrollHeight - 8; }"
        )
    )


def wait_at_bottom(page: Page) -> None:
    page.wait_for_function(
        "() => { const p = document.getElementById('log-driver');"
        " return p.scrollTop + p.clientHeight >= p.scrollHeight - 8; }"
    )


def wait_for_lines(page: Page, count: int) -> None:
    expect(log_lines(page).nth(count - 1)).to_be_attached()


def assert_every_line_once(page: Page) -> None:
    """The script's lines 1..n, each once, in order, with consecutive sequence numbers (the
    step's sequence also counts its system log lines, written before the script starts)."""
    texts = page.locator("#log-driver .log-text").all_inner_texts()
    printed = [int(m.group(1)) for t in texts if (m := re.match(r"line (\d+):", t))]
    assert printed == list(range(1, len(printed) + 1)), "lines missing, repeated or out of order"
    seqs = [
        int(n)
        for n in page.locator("#log-driver .log-line").evaluate_all(
            "lines => lines.map(l => l.dataset.seq)"
        )
    ]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def chart_points(page: Page, metric: str) -> Locator:
    return page.locator(f'#metric-charts .metric-chart[data-metric="{metric}"]')


# --- tests -------------------------------------------------------------------------------------


def test_a_user_watches_a_run_live_then_compares_two_runs(
    new_page: Callable[[], Page], api: Api, demo: tuple[str, str]
) -> None:
    first = api.submit("first", 0.1)
    page = new_page()
    log_in(page, *demo)
    page.goto(first["portal_url"])
    expect(page.get_by_role("heading", level=1)).to_contain_text(first["id"][:8])
    expect(page.locator("#run-source")).to_have_text("REST API")
    expect(page.locator("#run-parameters")).to_contain_text("lr = 0.1")
    expect(page.locator("#run-tags")).to_contain_text("case: first")
    expect(page.locator('.dag-node[data-step="train"]')).to_be_visible()

    # Lines appear while the step is still running (it cannot end before the release file).
    expect(panel_status(page)).to_have_text("Running")
    expect(page.locator('.dag-node[data-step="train"]')).to_have_attribute("data-status", "Running")
    expect(log_lines(page).first).to_contain_text("line 1: loss 1.1 lr 0.1")
    shown = log_lines(page).count()
    wait_for_lines(page, shown + 3)  # more lines arrive over the websocket, no reload
    expect(panel_status(page)).to_have_text("Running")
    expect(page.locator("#live-state")).to_have_text("● live")
    assert_every_line_once(page)

    # Autoscroll follows the end, stops when the user scrolls up, resumes on request.
    wait_for_lines(page, 40)
    wait_at_bottom(page)
    page.locator("#log-driver").evaluate("p => { p.scrollTop = 0; }")
    expect(page.locator("#log-follow")).to_be_visible()
    wait_for_lines(page, log_lines(page).count() + 5)
    assert page.locator("#log-driver").evaluate("p => p.scrollTop") == 0
    assert not pane_at_bottom(page)
    page.locator("#log-follow").click()
    wait_at_bottom(page)
    expect(page.locator("#log-follow")).to_be_hidden()

    # Search filters the lines and highlights the match.
    page.get_by_label("Search the log").fill("LOSS 0.15 lr")
    expect(page.locator("#log-driver .log-line:not(.log-hidden)")).to_have_count(1)
    expect(page.locator("#log-driver .log-line:not(.log-hidden) mark")).to_have_text("loss 0.15 lr")
    expect(page.locator("#log-driver .log-line:not(.log-hidden)")).to_contain_text("line 20:")
    expect(page.locator("#log-matches")).to_have_text("1 matching line")
    page.get_by_label("Search the log").fill("")
    expect(page.locator("#log-driver mark")).to_have_count(0)

    # The metric series is charted, growing live.
    chart = chart_points(page, "loss")
    expect(chart.locator("canvas")).to_be_visible()
    before = int(chart.get_attribute("data-points") or 0)
    assert before >= 2
    expect(chart).not_to_have_attribute("data-points", str(before))
    expect(page.locator('#metrics-scalars tr[data-metric="loss"] .metric-count')).not_to_have_text(
        "0"
    )
    snap(page, "runs-1-run-page-running")

    # Release the step: it turns Completed, and so does the run, on the open page.
    api.release("first")
    expect(panel_status(page)).to_have_text("Completed")
    expect(run_status(page)).to_have_text("Completed")
    expect(page.locator('.dag-node[data-step="train"]')).to_have_attribute(
        "data-status", "Completed"
    )
    expect(page.locator("#cancel-form")).to_have_count(0)
    expect(log_lines(page).last).to_have_text(re.compile(r"done$"))
    expect(chart.locator("canvas")).to_be_visible()
    # One loss per numbered line, none lost or doubled (the finished step's panel is redrawn).
    expect(chart).to_have_attribute("data-points", str(log_lines(page).count() - 1))
    assert_every_line_once(page)
    expect(page.locator("#outputs")).to_contain_text("scores.csv")
    snap(page, "runs-2-run-page-completed")

    # The full log downloads as a text file.
    download = page.request.get(page.locator("#log-download").get_attribute("href") or "")
    assert download.status == 200
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.text().startswith("line 1: loss 1.1 lr 0.1\n")
    assert download.text().endswith("done\n")

    # The output opens in the datastore browser's preview.
    page.locator("#outputs").get_by_role("link", name="scores.csv").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("scores.csv")
    expect(page.locator("#csv-preview").get_by_role("columnheader")).to_have_text(["epoch", "loss"])
    expect(page.locator("#csv-preview tbody tr").first.get_by_role("cell")).to_have_text(
        ["1", "1.1"]
    )
    snap(page, "runs-3-output-preview")

    # A second run with another learning rate, then both side by side.
    second = api.submit("second", 0.5, released=True)
    page.goto(second["portal_url"])
    expect(run_status(page)).to_have_text("Completed")
    expect(chart_points(page, "loss").locator("canvas")).to_be_visible()
    page.locator("nav.navbar").get_by_role("link", name="Runs", exact=True).click()
    page.locator(f'input[name="runs"][value="{first["id"]}"]').check()
    page.locator(f'input[name="runs"][value="{second["id"]}"]').check()
    page.get_by_role("button", name="Compare selected").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Compare runs")
    lr = page.locator('#compare-parameters tr[data-name="lr"]')
    expect(lr).to_have_class(re.compile(r"\bcompare-differs\b"))
    # Columns follow the list's order (newest first).
    expect(lr.get_by_role("cell")).to_have_text(["0.5", "0.1"])
    expect(page.locator('#compare-steps tr[data-name="train"] .status-badge')).to_have_text(
        ["Completed", "Completed"]
    )
    expect(page.locator('#compare-metrics tr[data-name="train.loss"]')).to_be_visible()
    overlay = page.locator(".compare-chart").first
    expect(overlay).to_contain_text("train · loss")
    expect(overlay.locator("canvas")).to_be_visible()
    expect(overlay.locator(".u-legend")).to_contain_text(first["id"][:8])
    expect(overlay.locator(".u-legend")).to_contain_text(second["id"][:8])
    snap(page, "runs-4-compare")

    # The lists around them: the runs list, the pipelines (with the demo's sample pipeline)
    # and the sample pipeline's page with its graph drawn.
    page.locator("nav.navbar").get_by_role("link", name="Runs", exact=True).click()
    expect(page.locator("#runs tbody tr")).to_have_count(2)
    snap(page, "runs-5-run-list")
    page.locator("nav.navbar").get_by_role("link", name="Pipelines", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Pipelines")
    page.get_by_role("link", name="Sample: quickstart").click()
    nodes = page.locator("svg .dag-node")
    expect(nodes).to_have_count(3)
    expect(nodes.first).to_have_attribute("data-step", "prepare")
    expect(page.get_by_text("tolerance").first).to_be_visible()
    snap(page, "runs-6-pipeline-page")
    # The demo's sample pipeline runs from its page's typed form.
    page.get_by_label("tolerance (float)").fill("0.5")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(run_status(page)).to_have_text("Completed", timeout=120_000)
    expect(page.locator("svg .dag-node[data-status='Completed']")).to_have_count(3)
    expect(page.locator("#run-finished")).to_contain_text("took")  # filled in live
    snap(page, "runs-7-sample-run")


def test_a_contributor_cancels_a_running_run(
    new_page: Callable[[], Page], api: Api, demo: tuple[str, str]
) -> None:
    run = api.submit("cancel-me", 0.9)
    page = new_page()
    log_in(page, *demo)
    page.goto(run["portal_url"])
    expect(panel_status(page)).to_have_text("Running")
    wait_for_lines(page, 2)
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("main").get_by_role("alert")).to_contain_text("Cancel requested")
    expect(run_status(page)).to_have_text("Canceled")
    expect(panel_status(page)).to_have_text("Canceled")
    expect(page.locator("#step-error")).to_contain_text("Canceled on request.")
    api.release("cancel-me")


def test_a_reader_sees_no_cancel_and_cannot_cancel_through_the_api(
    new_page: Callable[[], Page], api: Api, demo: tuple[str, str]
) -> None:
    run = api.submit("reader-watch", 0.3)
    owner = new_page()
    log_in(owner, *demo)
    owner.goto(run["portal_url"])
    expect(panel_status(owner)).to_have_text("Running")
    expect(owner.get_by_role("button", name="Cancel", exact=True)).to_be_visible()

    reader = new_page()
    log_in(reader, READER, PASSWORDS[READER])
    reader.goto(run["portal_url"])
    expect(panel_status(reader)).to_have_text("Running")
    wait_for_lines(reader, 2)
    expect(reader.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
    expect(reader.get_by_role("button", name="Resubmit", exact=True)).to_have_count(0)

    # Her own token can read the run but not cancel it; a forged portal POST is refused too.
    open_workspace(reader, WORKSPACE)
    secret = create_token(reader, "rita-laptop")
    as_reader = Api(api.served, api.workspace, secret, api.release_dir)
    status, body = as_reader.call("GET", f"runs/{run['id']}/")
    assert status == 200, body
    status, body = as_reader.call("POST", f"runs/{run['id']}/cancel/")
    assert status == 403, body
    csrf = next(c["value"] for c in reader.context.cookies() if c["name"] == "csrftoken")
    forged = reader.request.post(
        run["portal_url"] + "cancel/", form={"csrfmiddlewaretoken": csrf}, max_redirects=0
    )
    assert forged.status == 403, forged.text()
    reader.goto(run["portal_url"])
    expect(panel_status(reader)).to_have_text("Running")
    expect(run_status(owner)).to_have_text("Running")

    api.release("reader-watch")
    expect(run_status(reader)).to_have_text("Completed")


def test_an_outsider_gets_404_on_every_run_url(new_page: Callable[[], Page], api: Api) -> None:
    run = api.runs.get("second") or api.submit("outsider", 0.7, released=True)
    step = run["steps"][0]["id"]
    base = run["portal_url"]
    workspace = f"/w/{api.workspace}/"
    page = new_page()
    log_in(page, OUTSIDER, PASSWORDS[OUTSIDER])
    for url in (
        base,
        f"{base}?step={step}",
        f"{base}steps/{step}/",
        f"{base}steps/{step}/?fragment=panel",
        f"{base}steps/{step}/log.txt",
        f"{workspace}runs/compare/?runs={run['id']},{run['id']}",
    ):
        response = page.goto(url)
        assert response is not None
        assert response.status == 404, url
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    for action in ("cancel/", "resubmit/"):
        refused = page.request.post(
            base + action, form={"csrfmiddlewaretoken": csrf}, max_redirects=0
        )
        assert refused.status == 404, action


def test_a_pipeline_of_120_steps_is_drawn_readably(
    new_page: Callable[[], Page], api: Api, demo: tuple[str, str]
) -> None:
    """A wide graph (a chain of 20 stages, each fanning out to 5 steps that fan back in) at
    its natural size in a scrolling box: every box is drawn, none overlaps another, and the
    text keeps its size."""
    digest = api.snapshot()
    steps: list[dict[str, Any]] = []
    for stage in range(20):
        before = f"join{stage - 1}" if stage else None
        branches = []
        for branch in range(5):
            name = f"s{stage:02d}b{branch}"
            branches.append(name)
            steps.append(
                {
                    "name": name,
                    "script": "train.py",
                    "snapshot": digest,
                    "compute_target": "local",
                    "inputs": {"x": {"pipeline_data": before}} if before else {},
                    "outputs": {f"o_{name}": {}},
                }
            )
        steps.append(
            {
                "name": f"join{stage}",
                "script": "train.py",
                "snapshot": digest,
                "compute_target": "local",
                "inputs": {b: {"pipeline_data": f"o_{b}"} for b in branches},
                "outputs": {f"join{stage}": {}},
            }
        )
    status, body = api.call("POST", "pipelines/", {"graph": {"steps": steps}, "name": "Wide"})
    assert status == 201, body
    page = new_page()
    log_in(page, *demo)
    page.goto(f"/w/{api.workspace}/pipelines/{body['id']}/")
    nodes = page.locator("svg .dag-node")
    expect(nodes).to_have_count(120)
    boxes = nodes.evaluate_all(
        "ns => ns.map(n => { const r = n.querySelector('rect').getBBox();"
        " return [r.x, r.y, r.width, r.height]; })"
    )
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
    font = nodes.first.locator("text").evaluate("t => parseFloat(getComputedStyle(t).fontSize)")
    assert font >= 11
    frame = page.locator(".dag-frame")
    frame.screenshot(path=ARTIFACTS / "e2e-runs-8-wide-pipeline-graph.png")
    page.get_by_role("button", name="Fit to width").click()
    frame.screenshot(path=ARTIFACTS / "e2e-runs-9-wide-pipeline-fit.png")
