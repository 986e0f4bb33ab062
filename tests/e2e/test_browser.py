"""The product in a real browser: Debian's Chromium, driven by Playwright, against
``manage.py serve`` started exactly as the run command starts it, on a temporary data root.

One serve and one browser for the module; every test gets a fresh browser context (no cookies)
and logs in through the login form. Tests wait with Playwright's auto-waiting assertions only
and assert on what a person sees. Screenshots (full page) go to ``$MILLRACE_TEST_ARTIFACTS``
(``bin/test``: ``<repo>/test-artifacts``); token secrets are masked in every one of them.

Each test makes the state it needs through the UI if an earlier test did not (``ensure_*``),
so any one of them can run alone with ``-k``."""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.live import HTTP_TIMEOUT, ROOT, Served, start_served

pytestmark = pytest.mark.live

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Bounds for Playwright's auto-waiting, generous so a slow machine never fails a test.
UI_TIMEOUT_MS = 30_000
ARTIFACTS = Path(os.environ.get("MILLRACE_TEST_ARTIFACTS") or ROOT / "test-artifacts")
WORKSPACE = "Forecasting"
ADA = "ada"
# Strong enough for Django's password validators (length, common, numeric, similarity).
ADA_PASSWORD = "Quill-harbour-47-lantern"
CSV = b"date,region,demand_mwh\n2026-01-01,north,1250.5\n2026-01-01,south,980.25\n"

_started: list[Served] = []


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    serve = start_served(tmp_path_factory.mktemp("millrace-e2e"))
    _started.append(serve)
    try:
        yield serve
    finally:
        serve.kill_everything()
        _started.remove(serve)


@pytest.fixture(scope="module", autouse=True)
def _fresh_artifacts() -> None:
    """The screenshots of this module in the artifacts folder are this run's only."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("e2e-*.png"):
        if not old.name.startswith("e2e-runs-"):  # test_runs_browser.py's own
            old.unlink()


@pytest.fixture
def new_page(
    browser: Browser, served: Served, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Page]]:
    """new_page() → a page in a fresh context (its own cookies: another person). Closed at
    the end; on failure each page is saved as a screenshot first."""
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
            snap(page, f"FAILED-{request.node.name}-page{number}")
        page.context.close()


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()


@pytest.fixture(autouse=True)
def _report_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before and _started:
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            for serve in _started:
                print(f"\n===== diagnostics of serve in {serve.data_root} =====", file=sys.stderr)
                print(serve.report(), file=sys.stderr)


# --- helpers -----------------------------------------------------------------------------------


def snap(page: Page, name: str) -> Path:
    """A full-page screenshot in the artifacts folder; a token secret on it is masked."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"e2e-{name}.png"
    page.screenshot(path=path, full_page=True, mask=[page.locator("#new-token-secret")])
    return path


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/login/")
    expect(page.get_by_role("heading", name="Log in to Millrace")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.locator("#current-user")).to_have_text(username)


def heading(page: Page) -> Locator:
    return page.get_by_role("heading", level=1)


def alert(page: Page) -> Locator:
    return page.locator("main").get_by_role("alert")


def workspace_link(page: Page, name: str) -> Locator:
    """The entry of workspace ``name`` in the list on the home page."""
    return (
        page.locator(".list-group")
        .get_by_role("link")
        .filter(has=page.get_by_text(name, exact=True))
    )


def navbar(page: Page) -> Locator:
    return page.locator("nav.navbar")


def nav(page: Page, name: str) -> Locator:
    """A link in the top bar."""
    return navbar(page).get_by_role("link", name=name, exact=True)


def member_row(page: Page, username: str) -> Locator:
    return page.locator("#members tbody tr").filter(
        has=page.get_by_role("cell", name=re.compile(rf"^{re.escape(username)}\b"))
    )


def create_user_in_admin(page: Page, username: str, password: str) -> None:
    """From Django admin's user list: Add user, fill the form, save."""
    page.get_by_role("link", name="Add user").click()
    expect(page.get_by_role("heading", name="Add user")).to_be_visible()
    page.locator("#id_username").fill(username)
    page.locator("#id_password1").fill(password)
    page.locator("#id_password2").fill(password)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text(f"The user “{username}” was added")


def ensure_user(page: Page, username: str, password: str) -> None:
    """The account exists (made through Django admin if an earlier test did not)."""
    page.goto(f"/admin/auth/user/?q={username}")
    expect(page.get_by_role("heading", name="Select user to change")).to_be_visible()
    if page.locator("#result_list").get_by_role("link", name=username, exact=True).count() == 0:
        create_user_in_admin(page, username, password)


def open_workspace(page: Page, name: str) -> None:
    """Open workspace ``name`` from the workspace list, creating it there if missing."""
    page.goto("/")
    expect(page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    if workspace_link(page, name).count() == 0:
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_role("button", name="Create workspace").click()
    else:
        workspace_link(page, name).click()
    expect(heading(page)).to_contain_text(name)


def set_role(page: Page, username: str, role: str) -> None:
    """As an owner, in the open workspace: make ``username`` a member with ``role``."""
    nav(page, "Members").click()
    expect(heading(page)).to_have_text("Members")
    row = member_row(page, username)
    if row.count() == 0:
        page.get_by_label("Username").fill(username)
        page.get_by_label("Role", exact=True).select_option(role)
        page.get_by_role("button", name="Add member").click()
        expect(alert(page)).to_have_text(f"Added {username} as {role}.")
    else:
        row.get_by_label(f"Role of {username}").select_option(role)
        row.get_by_role("button", name="Change").click()
        expect(alert(page)).to_have_text(f"{username} is now {role}.")
    expect(member_row(page, username).get_by_label(f"Role of {username}")).to_have_value(role)


def api_me(served: Served, secret: str) -> tuple[int, dict[str, Any]]:
    """GET /api/v1/me/ with ``Authorization: Bearer <secret>``, as a script would."""
    request = urllib.request.Request(  # noqa: S310 - served.url is http://127.0.0.1
        served.url + "api/v1/me/", headers={"Authorization": f"Bearer {secret}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"{}")


# --- tests -------------------------------------------------------------------------------------


def test_a_newcomer_follows_the_readme(page: Page, served: Served, demo: tuple[str, str]) -> None:
    """README "Run it": log in with the printed demo login, create a workspace, make an account
    in Admin, add it on the Members page, create a token, use it, revoke it."""
    username, password = demo
    # Not logged in yet: the home page sends us to the login form.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/"))
    log_in(page, username, password)
    expect(page.get_by_role("heading", name="Your workspaces")).to_be_visible()
    expect(workspace_link(page, "Demo")).to_be_visible()

    # Create a workspace.
    page.get_by_label("Name", exact=True).fill(WORKSPACE)
    page.get_by_role("button", name="Create workspace").click()
    expect(alert(page)).to_have_text(f"Workspace '{WORKSPACE}' created.")
    expect(heading(page)).to_contain_text(WORKSPACE)
    expect(page.get_by_text("You: Owner")).to_be_visible()
    page.get_by_role("link", name="Millrace", exact=True).click()
    expect(workspace_link(page, WORKSPACE)).to_contain_text("1 member")
    expect(workspace_link(page, "Demo")).to_be_visible()
    snap(page, "newcomer-1-workspace-list")

    # Admin in the top bar → Users → Add user.
    nav(page, "Admin").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    page.get_by_role("link", name="Users", exact=True).click()
    expect(page.get_by_role("heading", name="Select user to change")).to_be_visible()
    create_user_in_admin(page, ADA, ADA_PASSWORD)

    # Back to the site, the workspace, its Members page: add ada as a contributor.
    page.get_by_role("link", name="View site").click()
    workspace_link(page, WORKSPACE).click()
    expect(heading(page)).to_contain_text(WORKSPACE)
    nav(page, "Members").click()
    expect(heading(page)).to_have_text("Members")
    expect(member_row(page, ADA)).to_have_count(0)
    page.get_by_label("Username").fill(ADA)
    page.get_by_label("Role", exact=True).select_option("contributor")
    page.get_by_role("button", name="Add member").click()
    expect(alert(page)).to_have_text(f"Added {ADA} as contributor.")
    expect(member_row(page, ADA).get_by_label(f"Role of {ADA}")).to_have_value("contributor")
    expect(member_row(page, username).get_by_label(f"Role of {username}")).to_have_value("owner")
    snap(page, "newcomer-2-members")

    # Tokens: create "laptop", use its secret from a script, revoke it on the page.
    nav(page, "Tokens").click()
    expect(heading(page)).to_have_text("API tokens")
    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_contain_text("Token laptop created.")
    secret = page.locator("#new-token-secret").inner_text().strip()
    assert secret.startswith("mlr_")
    status, body = api_me(served, secret)
    assert status == 200, body
    assert body["username"] == username
    assert body["token"]["name"] == "laptop"
    assert [w["name"] for w in body["workspaces"]] == [WORKSPACE]
    row = page.locator("#tokens tbody tr").filter(has=page.get_by_role("cell", name="laptop"))
    expect(row.locator(".badge")).to_have_text("active")
    row.get_by_role("button", name="Revoke").click()
    expect(alert(page)).to_have_text("Token 'laptop' revoked.")
    expect(page.locator("#new-token-secret")).to_have_count(0)  # shown once, gone now
    expect(row.locator(".badge")).to_have_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    status, body = api_me(served, secret)
    assert status == 401, body
    snap(page, "newcomer-3-tokens-after-revoke")

    nav(page, "Home").click()
    expect(heading(page)).to_contain_text(WORKSPACE)
    expect(page.get_by_text("2 members.")).to_be_visible()
    snap(page, "newcomer-4-workspace-home")


def test_the_workspace_switcher_moves_between_workspaces(page: Page, demo: tuple[str, str]) -> None:
    log_in(page, *demo)
    open_workspace(page, WORKSPACE)  # demo also has the seeded "Demo" workspace
    switcher = page.get_by_role("button", name=WORKSPACE, exact=True)
    menu = navbar(page).locator(".dropdown-menu")
    expect(menu).to_be_hidden()
    switcher.click()
    expect(menu).to_be_visible()
    expect(menu.get_by_role("link", name=WORKSPACE, exact=True)).to_have_class(re.compile("active"))
    expect(menu.get_by_role("link", name="Demo", exact=True)).to_be_visible()
    expect(menu.get_by_role("link", name="All workspaces…")).to_be_visible()
    snap(page, "switcher-open")

    menu.get_by_role("link", name="Demo", exact=True).click()
    expect(heading(page)).to_contain_text("Demo")
    expect(heading(page)).not_to_contain_text(WORKSPACE)
    switcher = page.get_by_role("button", name="Demo", exact=True)
    switcher.click()
    menu.get_by_role("link", name=WORKSPACE, exact=True).click()
    expect(heading(page)).to_contain_text(WORKSPACE)
    expect(page.get_by_role("button", name=WORKSPACE, exact=True)).to_be_visible()


def test_a_reader_sees_no_management_forms(
    page: Page, new_page: Callable[[], Page], demo: tuple[str, str]
) -> None:
    # As demo, the owner: ada becomes a reader of the workspace.
    log_in(page, *demo)
    ensure_user(page, ADA, ADA_PASSWORD)
    open_workspace(page, WORKSPACE)
    set_role(page, ADA, "reader")

    ada = new_page()
    log_in(ada, ADA, ADA_PASSWORD)
    open_workspace(ada, WORKSPACE)
    expect(ada.get_by_text("You: Reader")).to_be_visible()
    expect(nav(ada, "Audit log")).to_have_count(0)

    # Members: the table, read-only. Her own row offers Leave; nothing else is a form.
    nav(ada, "Members").click()
    expect(heading(ada)).to_have_text("Members")
    members_url = ada.url
    expect(member_row(ada, ADA)).to_contain_text("Reader")
    expect(member_row(ada, demo[0])).to_contain_text("Owner")
    expect(ada.locator("#members").get_by_role("combobox")).to_have_count(0)
    expect(ada.get_by_role("button", name="Change")).to_have_count(0)
    expect(ada.get_by_role("button", name="Remove")).to_have_count(0)
    expect(member_row(ada, ADA).get_by_role("button", name="Leave")).to_be_visible()
    expect(ada.get_by_role("heading", name="Add a member")).to_have_count(0)
    expect(ada.get_by_role("button", name="Add member")).to_have_count(0)
    expect(ada.get_by_label("Username")).to_have_count(0)
    snap(ada, "reader-1-members")

    # Settings: the details to read, no form.
    nav(ada, "Settings").click()
    expect(heading(ada)).to_have_text("Settings")
    details = ada.locator("main dl")
    expect(details).to_contain_text(WORKSPACE)
    expect(details).to_contain_text("forecasting")
    expect(ada.get_by_text("Only owners change settings.")).to_be_visible()
    expect(ada.locator("main form")).to_have_count(0)
    expect(ada.get_by_role("textbox")).to_have_count(0)
    expect(ada.get_by_role("button", name="Delete workspace")).to_have_count(0)
    snap(ada, "reader-2-settings")

    # A forged POST of the add-member form, with her valid CSRF token: refused by role.
    csrf = next(c["value"] for c in ada.context.cookies() if c["name"] == "csrftoken")
    forged = ada.request.post(
        members_url,
        form={"csrfmiddlewaretoken": csrf, "username": ADA, "role": "owner"},
        max_redirects=0,
    )
    assert forged.status == 403, forged.text()
    assert "adding members needs the owner role" in forged.text()
    forged = ada.request.post(
        members_url + f"{ADA}/role/",
        form={"csrfmiddlewaretoken": csrf, "role": "owner"},
        max_redirects=0,
    )
    assert forged.status == 403, forged.text()
    ada.goto(members_url)
    expect(member_row(ada, ADA)).to_contain_text("Reader")
    expect(ada.locator("#members tbody tr")).to_have_count(2)


def test_a_contributor_uploads_and_previews_a_csv(
    page: Page, new_page: Callable[[], Page], demo: tuple[str, str]
) -> None:
    log_in(page, *demo)
    ensure_user(page, ADA, ADA_PASSWORD)
    open_workspace(page, WORKSPACE)
    set_role(page, ADA, "contributor")

    ada = new_page()
    log_in(ada, ADA, ADA_PASSWORD)
    open_workspace(ada, WORKSPACE)
    nav(ada, "Datastores").click()
    expect(heading(ada)).to_have_text("Datastores")
    store = ada.locator("#datastores tbody tr").filter(
        has=ada.get_by_role("link", name="workspaceblobstore", exact=True)
    )
    expect(store).to_contain_text("built-in")
    store.get_by_role("link", name="workspaceblobstore", exact=True).click()
    expect(heading(ada)).to_have_text("workspaceblobstore")

    ada.get_by_label("Files", exact=True).set_input_files(
        {"name": "demand.csv", "mimeType": "text/csv", "buffer": CSV}
    )
    ada.get_by_role("button", name="Upload", exact=True).click()
    expect(alert(ada)).to_have_text("Uploaded 1 file.")
    entry = ada.locator("#entries tbody tr").filter(
        has=ada.get_by_role("link", name="demand.csv", exact=True)
    )
    expect(entry).to_contain_text(f"{len(CSV)} bytes")
    snap(ada, "datastore-1-folder")

    entry.get_by_role("link", name="demand.csv", exact=True).click()
    expect(heading(ada)).to_have_text("demand.csv")
    preview = ada.locator("#csv-preview")
    expect(preview.get_by_role("columnheader")).to_have_text(["date", "region", "demand_mwh"])
    expect(preview.locator("tbody tr")).to_have_count(2)
    expect(preview.locator("tbody tr").first.get_by_role("cell")).to_have_text(
        ["2026-01-01", "north", "1250.5"]
    )
    expect(ada.get_by_role("link", name="Download")).to_be_visible()
    snap(ada, "datastore-2-csv-preview")
