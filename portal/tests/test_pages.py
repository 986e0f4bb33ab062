"""The portal's HTML pages, through django.test.Client: who may see and do what on every
workspace page, the main flows (log in, workspaces, members, tokens, audit log), the workspace
switcher, query counts that do not grow with the rows, and where a token's secret may appear."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from conftest import PASSWORD, make_user
from portal import services
from portal.models import ApiToken, AuditEvent, Membership, Role, Workspace

# --- helpers -----------------------------------------------------------------------------------


def text(response: Any) -> str:
    """The response body with HTML entities decoded, for looking for messages in it."""
    return html.unescape(response.content.decode())


def snapshot() -> dict[str, Any]:
    """Everything a page could write, to prove that a refused request changed nothing."""
    return {
        "workspaces": set(Workspace.objects.values_list("uuid", "name", "slug", "description")),
        "members": set(Membership.objects.values_list("workspace__slug", "user__username", "role")),
        "tokens": set(ApiToken.objects.values_list("uuid", "user__username", "revoked_at")),
        "events": AuditEvent.objects.count(),
    }


def login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def secret_on(response: Any) -> str:
    match = re.search(r'id="new-token-secret">([^<]+)</code>', response.content.decode())
    assert match is not None, "the page shows no new token secret"
    return match.group(1)


def audit_verbs(response: Any) -> list[str]:
    """The verbs of the audit table's rows, top to bottom."""
    return re.findall(r"<td><code>([^<]+)</code></td>", response.content.decode())


def switcher(response: Any) -> set[tuple[str, str]]:
    """(uuid, name) of each workspace in the base layout's switcher."""
    menu = re.search(
        r'id="workspace-switcher">.*?<ul class="dropdown-menu">(.*?)</ul>',
        response.content.decode(),
        re.DOTALL,
    )
    assert menu is not None, "the page has no workspace switcher"
    items = re.findall(r'href="/w/([0-9a-f-]{36})/">([^<]*)</a>', menu.group(1))
    return {(uuid, html.unescape(name)) for uuid, name in items}


# The pages' paths, written out rather than reversed: a URL name that reverses to the wrong
# place must make these tests fail, not move them along with it.
PATHS = {
    "workspace-list": "/",
    "workspace-home": "/w/{workspace_id}/",
    "workspace-settings": "/w/{workspace_id}/settings/",
    "workspace-delete": "/w/{workspace_id}/delete/",
    "member-list": "/w/{workspace_id}/members/",
    "member-role": "/w/{workspace_id}/members/{username}/role/",
    "member-remove": "/w/{workspace_id}/members/{username}/remove/",
    "token-list": "/w/{workspace_id}/tokens/",
    "token-revoke": "/w/{workspace_id}/tokens/{token_id}/revoke/",
    "audit-list": "/w/{workspace_id}/audit/",
}


def url(name: str, workspace: Workspace | str, **kwargs: str) -> str:
    workspace_id = workspace if isinstance(workspace, str) else str(workspace.uuid)
    return PATHS[name].format(workspace_id=workspace_id, **kwargs)


# --- the permission matrix ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """The cast, plus dave (a reader who is the target of member writes) and one active token
    per member of ``ws``."""

    ws: Workspace
    other: Workspace
    tokens: dict[str, str]  # username → token uuid


@pytest.fixture
def scene(ws: Workspace, other: Workspace, alice: Any, bob: Any, carol: Any) -> Scene:
    dave = make_user("dave")
    services.add_member(
        actor=services.Actor(user=alice), workspace=ws, username="dave", role=Role.READER
    )
    tokens = {}
    for user in (alice, bob, carol, dave):
        token, _ = services.create_token(
            actor=services.Actor(user=user), workspace=ws, name=f"{user.username}-token"
        )
        tokens[user.username] = str(token.uuid)
    return Scene(ws=ws, other=other, tokens=tokens)


@dataclass(frozen=True)
class Endpoint:
    label: str
    method: str  # "get" or "post"
    route: str
    url_kwargs: Callable[[Scene, str], dict[str, str]]  # given the scene and the actor
    data: dict[str, str]
    reader: int
    contributor: int
    owner: int

    def url(self, scene: Scene, actor: str, workspace_id: str | None = None) -> str:
        return url(self.route, workspace_id or str(scene.ws.uuid), **self.url_kwargs(scene, actor))

    def expected(self, actor: str) -> int:
        return {
            "anonymous": 302,  # to the login page
            "charlie": 404,  # outsiders must not learn that the workspace exists
            "carol": self.reader,
            "bob": self.contributor,
            "alice": self.owner,
        }[actor]


def _none(scene: Scene, actor: str) -> dict[str, str]:
    return {}


def _dave(scene: Scene, actor: str) -> dict[str, str]:
    return {"username": "dave"}


def _own_token(scene: Scene, actor: str) -> dict[str, str]:
    # Outsiders and anonymous users have no token in ws: they aim at dave's.
    return {"token_id": scene.tokens.get(actor, scene.tokens["dave"])}


def _daves_token(scene: Scene, actor: str) -> dict[str, str]:
    return {"token_id": scene.tokens["dave"]}


ENDPOINTS = [
    Endpoint("home", "get", "workspace-home", _none, {}, 200, 200, 200),
    Endpoint("settings", "get", "workspace-settings", _none, {}, 200, 200, 200),
    Endpoint(
        "settings",
        "post",
        "workspace-settings",
        _none,
        {"name": "Renamed", "description": "new"},
        403,
        403,
        302,
    ),
    Endpoint("delete", "post", "workspace-delete", _none, {"confirm": "forecast"}, 403, 403, 302),
    Endpoint("members", "get", "member-list", _none, {}, 200, 200, 200),
    Endpoint(
        "members",
        "post",
        "member-list",
        _none,
        {"username": "charlie", "role": "reader"},
        403,
        403,
        302,
    ),
    Endpoint("member-role", "post", "member-role", _dave, {"role": "owner"}, 403, 403, 302),
    Endpoint("member-remove", "post", "member-remove", _dave, {}, 403, 403, 302),
    Endpoint("tokens", "get", "token-list", _none, {}, 200, 200, 200),
    # Every member may create their own tokens (the page answers 200 with the new secret) …
    Endpoint("tokens", "post", "token-list", _none, {"name": "new-token"}, 200, 200, 200),
    # … and revoke them.
    Endpoint("token-revoke-own", "post", "token-revoke", _own_token, {}, 302, 302, 302),
    # Someone else's token: only owners see it; to others it does not exist (404).
    Endpoint("token-revoke-others", "post", "token-revoke", _daves_token, {}, 404, 404, 302),
    Endpoint("audit", "get", "audit-list", _none, {}, 403, 403, 200),
]
ACTORS = ["anonymous", "charlie", "carol", "bob", "alice"]
CASES = [(endpoint, actor) for endpoint in ENDPOINTS for actor in ACTORS]


@pytest.mark.parametrize(
    ("endpoint", "actor"),
    CASES,
    ids=[f"{actor}-{endpoint.method.upper()}-{endpoint.label}" for endpoint, actor in CASES],
)
def test_every_workspace_page_answers_each_role_as_the_access_rules_say(
    client: Client, scene: Scene, request: pytest.FixtureRequest, endpoint: Endpoint, actor: str
) -> None:
    if actor != "anonymous":
        client.force_login(request.getfixturevalue(actor))
    target = endpoint.url(scene, actor)
    before = snapshot()

    response = getattr(client, endpoint.method)(target, endpoint.data)

    expected = endpoint.expected(actor)
    assert response.status_code == expected, text(response)
    if actor == "anonymous":
        assert response["Location"] == f"/login/?next={target}"
    elif expected == 302:
        assert not response["Location"].startswith("/login/")
    if expected == 403:
        assert "Not allowed" in text(response)
    if expected == 404:
        assert "Not found" in text(response)
    if actor == "charlie":
        assert "Team Forecast" not in text(response)
    if endpoint.method == "post" and expected in (200, 302) and actor != "anonymous":
        assert snapshot() != before, "a successful write changed nothing"
    else:
        assert snapshot() == before, "a GET or a refused request changed the database"


@pytest.mark.parametrize(
    "endpoint", ENDPOINTS, ids=[f"{e.method.upper()}-{e.label}" for e in ENDPOINTS]
)
@pytest.mark.parametrize("workspace_id", ["not-a-uuid", "unknown"])
def test_a_malformed_or_unknown_workspace_id_is_404_on_every_page(
    client: Client, scene: Scene, alice: Any, endpoint: Endpoint, workspace_id: str
) -> None:
    login(client, alice)
    workspace_id = str(uuid4()) if workspace_id == "unknown" else workspace_id
    before = snapshot()

    response = getattr(client, endpoint.method)(
        endpoint.url(scene, "alice", workspace_id), endpoint.data
    )

    assert response.status_code == 404
    assert snapshot() == before


def test_a_malformed_workspace_id_in_the_bare_workspace_url_is_404(
    client: Client, alice: Any
) -> None:
    login(client, alice)

    assert client.get("/w/not-a-uuid/").status_code == 404
    assert client.get(f"/w/{uuid4()}/").status_code == 404


def test_an_outsider_gets_404_for_a_workspace_that_exists_and_one_that_does_not(
    client: Client, ws: Workspace, charlie: Any
) -> None:
    login(client, charlie)

    existing = client.get(url("workspace-home", ws))
    missing = client.get(url("workspace-home", str(uuid4())))

    assert existing.status_code == missing.status_code == 404
    assert "Team Forecast" not in text(existing)


def test_a_member_gets_404_for_an_unknown_member_or_token(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)

    assert (
        client.post(url("member-role", ws, username="nobody"), {"role": "reader"}).status_code
        == 404
    )
    assert client.post(url("member-remove", ws, username="charlie")).status_code == 404
    assert client.post(url("token-revoke", ws, token_id="not-a-uuid")).status_code == 404
    assert client.post(url("token-revoke", ws, token_id=str(uuid4()))).status_code == 404


def test_a_token_of_another_workspace_cannot_be_revoked_through_this_one(
    client: Client, ws: Workspace, other: Workspace, alice: Any, charlie: Any, make_token: Any
) -> None:
    make_token(charlie, other)
    charlies = ApiToken.objects.get(workspace=other)
    login(client, alice)

    response = client.post(url("token-revoke", ws, token_id=str(charlies.uuid)))

    assert response.status_code == 404
    charlies.refresh_from_db()
    assert charlies.revoked_at is None


@pytest.mark.parametrize("name", sorted(PATHS))
def test_every_page_url_name_reverses_to_the_page_not_to_the_api(name: str) -> None:
    kwargs = {"workspace_id": str(uuid4()), "username": "bob", "token_id": str(uuid4())}
    needed = {k: v for k, v in kwargs.items() if "{" + k + "}" in PATHS[name]}

    assert reverse(name, kwargs=needed) == PATHS[name].format(**needed)


def test_the_navigation_links_lead_to_the_pages(client: Client, ws: Workspace, alice: Any) -> None:
    login(client, alice)

    page = text(client.get(url("workspace-home", ws)))

    for name in ("workspace-home", "member-list", "token-list", "audit-list", "workspace-settings"):
        assert f'href="{url(name, ws)}"' in page, name
    assert 'href="/">Millrace</a>' in page
    assert 'href="/api/v1/workspaces/' not in page


def test_the_workspace_list_needs_a_login(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


# --- flows: login and workspaces ---------------------------------------------------------------


def test_logging_in_with_the_real_password_leads_to_the_workspace_list(
    client: Client, ws: Workspace
) -> None:
    assert client.get("/login/").status_code == 200

    response = client.post("/login/", {"username": "alice", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert "Team Forecast" in text(page)
    assert 'id="current-user">alice<' in text(page)


def test_logging_in_with_a_wrong_password_fails(client: Client, alice: Any) -> None:
    response = client.post("/login/", {"username": "alice", "password": "wrong"})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302


def test_logging_in_honours_next(client: Client, ws: Workspace) -> None:
    home = url("workspace-home", ws)

    response = client.post("/login/", {"username": "bob", "password": PASSWORD, "next": home})

    assert response.status_code == 302
    assert response["Location"] == home


def test_creating_a_workspace_makes_the_creator_its_owner(client: Client, alice: Any) -> None:
    login(client, alice)

    response = client.post("/", {"name": "Night Shift", "slug": "", "description": "owls"})

    assert response.status_code == 302
    workspace = Workspace.objects.get(name="Night Shift")
    assert workspace.slug == "night-shift"
    assert response["Location"] == url("workspace-home", workspace)
    assert Membership.objects.get(workspace=workspace).role == Role.OWNER
    assert Membership.objects.get(workspace=workspace).user == alice
    event = AuditEvent.objects.get(workspace_uuid=workspace.uuid)
    assert (event.verb, event.actor_username, event.via) == ("workspace.create", "alice", "portal")
    home = client.get(response["Location"])
    assert home.status_code == 200
    assert "Workspace 'Night Shift' created." in text(home)
    listing = client.get("/")
    assert "Night Shift" in text(listing)
    assert "night-shift" in text(listing)


def test_a_duplicate_slug_is_a_400_with_the_message_and_creates_nothing(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)
    before = snapshot()

    response = client.post("/", {"name": "Another", "slug": "forecast"})

    assert response.status_code == 400
    assert "A workspace with slug 'forecast' already exists; choose another." in text(response)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x" * 101}, "Ensure this value has at most 100 characters (it has 101)."),
        ({"name": ""}, "This field is required."),
        ({"name": "Admin", "slug": "admin"}, "'admin' is reserved; choose another."),
        ({"name": "Bad", "slug": "Not A Slug"}, "Use only lowercase letters"),
        ({"name": "!!!"}, "Cannot make a slug from this name"),
    ],
    ids=["over-long-name", "blank-name", "reserved-slug", "bad-slug", "no-slug-from-name"],
)
def test_an_invalid_new_workspace_is_a_400_with_the_error_and_creates_nothing(
    client: Client, alice: Any, data: dict[str, str], message: str
) -> None:
    login(client, alice)

    response = client.post("/", data)

    assert response.status_code == 400
    assert message in text(response)
    assert not Workspace.objects.exists()
    assert not AuditEvent.objects.exists()


def test_the_owner_renames_the_workspace_in_settings(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)

    response = client.post(
        url("workspace-settings", ws), {"name": "Forecast v2", "description": "Better"}
    )

    assert response.status_code == 302
    assert response["Location"] == url("workspace-settings", ws)
    ws.refresh_from_db()
    assert (ws.name, ws.description, ws.slug) == ("Forecast v2", "Better", "forecast")
    assert AuditEvent.objects.filter(workspace_uuid=ws.uuid, verb="workspace.update").exists()
    page = client.get(response["Location"])
    assert "Workspace settings saved." in text(page)
    assert 'value="Forecast v2"' in text(page)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x" * 101}, "Ensure this value has at most 100 characters (it has 101)."),
        ({"name": "   "}, "This field is required."),
    ],
    ids=["over-long-name", "blank-name"],
)
def test_invalid_settings_are_a_400_with_the_error_and_change_nothing(
    client: Client, ws: Workspace, alice: Any, data: dict[str, str], message: str
) -> None:
    login(client, alice)
    before = snapshot()

    response = client.post(url("workspace-settings", ws), data)

    assert message in text(response)
    assert snapshot() == before
    assert response.status_code == 400


def test_a_reader_sees_settings_read_only(client: Client, ws: Workspace, carol: Any) -> None:
    login(client, carol)

    response = client.get(url("workspace-settings", ws))

    assert response.status_code == 200
    assert "Only owners change settings." in text(response)
    assert url("workspace-delete", ws) not in text(response)


def test_deleting_with_the_wrong_slug_is_a_400_and_keeps_the_workspace(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)
    before = snapshot()

    response = client.post(url("workspace-delete", ws), {"confirm": "Forecast"})

    assert response.status_code == 400
    assert "Type the workspace's slug 'forecast' to confirm deletion." in text(response)
    assert snapshot() == before
    assert client.post(url("workspace-delete", ws), {}).status_code == 400
    assert snapshot() == before


def test_deleting_with_the_right_slug_removes_the_workspace(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)

    response = client.post(url("workspace-delete", ws), {"confirm": "forecast"})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not Workspace.objects.filter(pk=ws.pk).exists()
    assert not Membership.objects.filter(workspace_id=ws.pk).exists()
    assert AuditEvent.objects.filter(workspace_uuid=ws.uuid, verb="workspace.delete").exists()
    listing = client.get("/")
    assert "Workspace 'Team Forecast' deleted." in text(listing)
    assert "Team Forecast" not in text(listing).replace("Workspace 'Team Forecast' deleted.", "")
    assert client.get(url("workspace-home", ws)).status_code == 404


# --- flows: members ----------------------------------------------------------------------------


def test_the_owner_adds_a_member(client: Client, ws: Workspace, alice: Any, charlie: Any) -> None:
    login(client, alice)

    response = client.post(url("member-list", ws), {"username": "charlie", "role": "contributor"})

    assert response.status_code == 302
    assert response["Location"] == url("member-list", ws)
    assert Membership.objects.get(workspace=ws, user=charlie).role == Role.CONTRIBUTOR
    event = AuditEvent.objects.filter(workspace_uuid=ws.uuid, verb="member.add").first()
    assert event is not None
    assert event.object_repr == "charlie"
    page = client.get(response["Location"])
    assert "Added charlie as contributor." in text(page)
    assert 'data-username="charlie"' in text(page)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "nobody", "role": "reader"}, "No active user named 'nobody'."),
        ({"username": "charlie", "role": "admin"}, "Select a valid choice."),
        ({"username": "bob", "role": "reader"}, "'bob' is already a member"),
        ({"username": "", "role": "reader"}, "This field is required."),
    ],
    ids=["unknown-user", "invalid-role", "duplicate", "blank-username"],
)
def test_adding_a_member_wrongly_is_a_400_with_the_error_and_changes_nothing(
    client: Client, ws: Workspace, alice: Any, charlie: Any, data: dict[str, str], message: str
) -> None:
    login(client, alice)
    before = snapshot()

    response = client.post(url("member-list", ws), data)

    assert response.status_code == 400
    assert message in text(response)
    assert snapshot() == before


def test_the_owner_changes_a_members_role(client: Client, ws: Workspace, alice: Any) -> None:
    login(client, alice)

    response = client.post(url("member-role", ws, username="carol"), {"role": "contributor"})

    assert response.status_code == 302
    assert Membership.objects.get(workspace=ws, user__username="carol").role == Role.CONTRIBUTOR
    event = AuditEvent.objects.get(workspace_uuid=ws.uuid, verb="member.role_change")
    assert event.data == {"from": "reader", "to": "contributor"}
    assert "carol is now contributor." in text(client.get(response["Location"]))


def test_an_invalid_role_is_shown_and_changes_nothing(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)
    before = snapshot()

    response = client.post(url("member-role", ws, username="carol"), {"role": "admin"}, follow=True)

    assert "Select a valid choice." in text(response)
    assert snapshot() == before


def test_the_last_owner_cannot_be_demoted(client: Client, ws: Workspace, alice: Any) -> None:
    login(client, alice)
    before = snapshot()

    response = client.post(
        url("member-role", ws, username="alice"), {"role": "reader"}, follow=True
    )

    assert response.status_code == 200
    assert "This is the workspace's last owner; make someone else owner first." in text(response)
    assert Membership.objects.get(workspace=ws, user=alice).role == Role.OWNER
    assert snapshot() == before


def test_the_last_owner_cannot_be_removed_or_leave(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)
    before = snapshot()

    response = client.post(url("member-remove", ws, username="alice"), follow=True)

    assert response.status_code == 200
    assert "This is the workspace's last owner; make someone else owner first." in text(response)
    assert Membership.objects.get(workspace=ws, user=alice).role == Role.OWNER
    assert snapshot() == before


def test_an_owner_can_be_demoted_when_another_owner_remains(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)
    client.post(url("member-role", ws, username="bob"), {"role": "owner"})

    response = client.post(url("member-role", ws, username="alice"), {"role": "reader"})

    assert response.status_code == 302
    assert Membership.objects.get(workspace=ws, user=alice).role == Role.READER
    assert client.get(url("member-role", ws, username="alice")).status_code == 405
    assert client.post(url("member-list", ws), {"username": "charlie"}).status_code == 403


def test_the_owner_removes_a_member_and_their_tokens_are_revoked(
    client: Client, ws: Workspace, alice: Any, bob: Any, make_token: Any
) -> None:
    make_token(bob, ws)
    login(client, alice)

    response = client.post(url("member-remove", ws, username="bob"))

    assert response.status_code == 302
    assert response["Location"] == url("member-list", ws)
    assert not Membership.objects.filter(workspace=ws, user=bob).exists()
    assert ApiToken.objects.get(user=bob).revoked_at is not None
    assert "Removed bob." in text(client.get(response["Location"]))


def test_a_member_can_leave(client: Client, ws: Workspace, carol: Any, make_token: Any) -> None:
    make_token(carol, ws)
    login(client, carol)

    response = client.post(url("member-remove", ws, username="carol"))

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not Membership.objects.filter(workspace=ws, user=carol).exists()
    assert ApiToken.objects.get(user=carol).revoked_at is not None
    event = AuditEvent.objects.get(workspace_uuid=ws.uuid, verb="member.remove")
    assert event.actor_username == "carol"
    listing = client.get("/")
    assert "You left 'Team Forecast'." in text(listing)
    assert client.get(url("workspace-home", ws)).status_code == 404


def test_a_readers_members_page_offers_no_member_management(
    client: Client, ws: Workspace, carol: Any
) -> None:
    login(client, carol)

    page = text(client.get(url("member-list", ws)))

    assert "Add a member" not in page
    assert url("member-role", ws, username="bob") not in page
    assert url("member-remove", ws, username="bob") not in page
    assert url("member-remove", ws, username="carol") in page  # Leave


# --- flows: tokens -----------------------------------------------------------------------------


def test_creating_a_token_shows_its_secret_once_and_stores_only_its_digest(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)

    response = client.post(url("token-list", ws), {"name": "ci"})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secret = secret_on(response)
    assert secret.startswith("mlr_")
    assert len(secret) > 40
    token = ApiToken.objects.get(workspace=ws, name="ci")
    assert token.user == alice
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert token.prefix == secret[:12]
    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert not [k for k, v in stored.items() if secret in str(v)], "the secret is stored"
    events = AuditEvent.objects.filter(workspace_uuid=ws.uuid).values()
    assert not [e for e in events if secret in str(e)], "the secret is in the audit log"

    reload = client.get(url("token-list", ws))

    assert reload.status_code == 200
    assert reload["Cache-Control"] == "no-store"
    assert secret not in text(reload)
    assert 'id="new-token-secret"' not in text(reload)
    assert 'data-token="ci"' in text(reload)


def test_an_invalid_token_is_a_400_and_not_cached(
    client: Client, ws: Workspace, alice: Any
) -> None:
    login(client, alice)

    blank = client.post(url("token-list", ws), {"name": ""})
    past = client.post(url("token-list", ws), {"name": "old", "expires_at": "2000-01-01 00:00"})

    assert blank.status_code == past.status_code == 400
    assert blank["Cache-Control"] == past["Cache-Control"] == "no-store"
    assert "Must be in the future." in text(past)
    assert not ApiToken.objects.exists()


def test_revoking_a_token(client: Client, ws: Workspace, alice: Any, make_token: Any) -> None:
    make_token(alice, ws)
    token = ApiToken.objects.get()
    login(client, alice)

    response = client.post(url("token-revoke", ws, token_id=str(token.uuid)))

    assert response.status_code == 302
    assert response["Location"] == url("token-list", ws)
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(workspace_uuid=ws.uuid, verb="token.revoke").count() == 1
    page = text(client.get(response["Location"]))
    assert "Token 'alice-token' revoked." in page
    assert ">revoked</span>" in page
    assert url("token-revoke", ws, token_id=str(token.uuid)) not in page


def test_a_reader_manages_their_own_tokens_and_sees_no_one_elses(
    client: Client, ws: Workspace, alice: Any, bob: Any, carol: Any, make_token: Any
) -> None:
    make_token(alice, ws)
    make_token(bob, ws)
    login(client, carol)

    page = client.get(url("token-list", ws))
    assert page.status_code == 200
    assert "alice-token" not in text(page)
    assert "bob-token" not in text(page)

    created = client.post(url("token-list", ws), {"name": "carol-ci"})
    assert created.status_code == 200
    secret = secret_on(created)
    own = ApiToken.objects.get(name="carol-ci")
    assert own.user == carol
    assert own.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert "alice-token" not in text(created)

    revoked = client.post(url("token-revoke", ws, token_id=str(own.uuid)))
    assert revoked.status_code == 302
    own.refresh_from_db()
    assert own.revoked_at is not None

    alices = ApiToken.objects.get(name="alice-token")
    assert client.post(url("token-revoke", ws, token_id=str(alices.uuid))).status_code == 404
    alices.refresh_from_db()
    assert alices.revoked_at is None


def test_the_owner_sees_and_revokes_everyones_tokens(
    client: Client, ws: Workspace, alice: Any, bob: Any, carol: Any, make_token: Any
) -> None:
    make_token(bob, ws)
    make_token(carol, ws)
    login(client, alice)

    page = text(client.get(url("token-list", ws)))
    assert 'data-token="bob-token"' in page
    assert 'data-token="carol-token"' in page
    carols = ApiToken.objects.get(name="carol-token")
    assert url("token-revoke", ws, token_id=str(carols.uuid)) in page

    response = client.post(url("token-revoke", ws, token_id=str(carols.uuid)))

    assert response.status_code == 302
    carols.refresh_from_db()
    assert carols.revoked_at is not None
    event = AuditEvent.objects.get(workspace_uuid=ws.uuid, verb="token.revoke")
    assert (event.actor_username, event.data["owner"]) == ("alice", "carol")


# --- flows: audit log --------------------------------------------------------------------------


@pytest.fixture
def history(ws: Workspace, bob: Any, make_token: Any) -> Workspace:
    """ws's log: workspace.create, member.add twice (alice), token.create (bob)."""
    make_token(bob, ws)
    return ws


def test_the_audit_page_lists_the_workspace_events_newest_first(
    client: Client, history: Workspace, other: Workspace, alice: Any
) -> None:
    login(client, alice)

    response = client.get(url("audit-list", history))

    assert response.status_code == 200
    assert audit_verbs(response) == ["token.create", "member.add", "member.add", "workspace.create"]


@pytest.mark.parametrize(
    ("query", "verbs"),
    [
        ({"verb": "member.add"}, ["member.add", "member.add"]),
        ({"verb": "token."}, ["token.create"]),
        ({"verb": "member"}, []),
        ({"actor": "bob"}, ["token.create"]),
        ({"actor": "alice", "verb": "workspace.create"}, ["workspace.create"]),
        (
            {"since": "2000-01-01 00:00"},
            ["token.create", "member.add", "member.add", "workspace.create"],
        ),
        ({"since": "2999-01-01 00:00"}, []),
    ],
    ids=[
        "verb",
        "verb-prefix",
        "verb-exact",
        "actor",
        "actor-and-verb",
        "since-past",
        "since-future",
    ],
)
def test_the_audit_page_filters(
    client: Client, history: Workspace, alice: Any, query: dict[str, str], verbs: list[str]
) -> None:
    login(client, alice)

    response = client.get(url("audit-list", history), query)

    assert response.status_code == 200
    assert audit_verbs(response) == verbs
    if not verbs:
        assert "No events match." in text(response)


@pytest.mark.parametrize("field", ["since", "until"])
def test_a_bad_date_in_the_audit_filter_is_a_400_with_the_error(
    client: Client, history: Workspace, alice: Any, field: str
) -> None:
    login(client, alice)

    response = client.get(url("audit-list", history), {field: "yesterday"})

    assert "Enter a valid date/time." in text(response)
    assert response.status_code == 400


# --- the workspace switcher --------------------------------------------------------------------


def test_the_switcher_lists_exactly_the_users_workspaces(
    client: Client, ws: Workspace, other: Workspace, alice: Any
) -> None:
    mine = services.create_workspace(actor=services.Actor(user=alice), name="Alice's sandbox")
    login(client, alice)
    expected = {(str(ws.uuid), "Team Forecast"), (str(mine.uuid), "Alice's sandbox")}

    for page in ("/", url("workspace-home", ws), url("member-list", ws), url("token-list", ws)):
        response = client.get(page)
        assert response.status_code == 200
        assert switcher(response) == expected
        assert "Charlie's lab" not in text(response)
        assert str(other.uuid) not in text(response)


def test_the_switcher_of_an_outsider_does_not_show_the_team(
    client: Client, ws: Workspace, other: Workspace, charlie: Any
) -> None:
    login(client, charlie)

    response = client.get("/")

    assert switcher(response) == {(str(other.uuid), "Charlie's lab")}
    assert "Team Forecast" not in text(response)


def test_the_workspace_list_shows_each_workspace_with_its_member_count_and_role(
    client: Client, ws: Workspace, other: Workspace, carol: Any
) -> None:
    login(client, carol)

    page = text(client.get("/"))

    assert "3 members" in page
    assert "Reader" in page
    assert "Charlie's lab" not in page


# --- query counts ------------------------------------------------------------------------------

ROWS = [3, 30]
# The same bound for 3 rows and for 30. Every page pays for the session, the user and the
# switcher's workspaces; a workspace page also for the workspace and the membership. Then:
# the list one query for the memberships with their member counts; members and tokens one
# query each (users joined); the audit log a count and a page.
QUERY_BOUND = {"workspace-list": 4, "member-list": 6, "token-list": 6, "audit-list": 7}


def _users(count: int) -> list[Any]:
    model = get_user_model()
    return [model.objects.create_user(username=f"user{i:02}", password=None) for i in range(count)]


@pytest.mark.parametrize("rows", ROWS)
def test_the_workspace_list_uses_a_bounded_number_of_queries(
    client: Client, alice: Any, rows: int, django_assert_max_num_queries: Any
) -> None:
    actor = services.Actor(user=alice)
    for i in range(rows):
        services.create_workspace(actor=actor, name=f"Workspace {i:02}")
    login(client, alice)

    with django_assert_max_num_queries(QUERY_BOUND["workspace-list"]):
        response = client.get("/")

    assert response.status_code == 200
    assert len(switcher(response)) == rows
    assert text(response).count("list-group-item-action") == rows


@pytest.mark.parametrize("rows", ROWS)
def test_the_members_page_uses_a_bounded_number_of_queries(
    client: Client, ws: Workspace, alice: Any, rows: int, django_assert_max_num_queries: Any
) -> None:
    actor = services.Actor(user=alice)
    for user in _users(rows):
        services.add_member(actor=actor, workspace=ws, username=user.username, role="reader")
    login(client, alice)

    with django_assert_max_num_queries(QUERY_BOUND["member-list"]):
        response = client.get(url("member-list", ws))

    assert response.status_code == 200
    assert text(response).count("data-username=") == rows + 3


@pytest.mark.parametrize("rows", ROWS)
def test_the_tokens_page_uses_a_bounded_number_of_queries(
    client: Client, ws: Workspace, alice: Any, rows: int, django_assert_max_num_queries: Any
) -> None:
    actor = services.Actor(user=alice)
    for user in _users(rows):
        services.add_member(actor=actor, workspace=ws, username=user.username, role="reader")
        services.create_token(actor=services.Actor(user=user), workspace=ws, name=user.username)
    login(client, alice)

    with django_assert_max_num_queries(QUERY_BOUND["token-list"]):
        response = client.get(url("token-list", ws))

    assert response.status_code == 200
    assert text(response).count("data-token=") == rows


@pytest.mark.parametrize("rows", ROWS)
def test_the_audit_page_uses_a_bounded_number_of_queries(
    client: Client, ws: Workspace, alice: Any, rows: int, django_assert_max_num_queries: Any
) -> None:
    actor = services.Actor(user=alice)
    for i in range(rows):
        services.record_event(actor=actor, workspace=ws, verb="test.event", object_repr=str(i))
    login(client, alice)

    with django_assert_max_num_queries(QUERY_BOUND["audit-list"]):
        response = client.get(url("audit-list", ws))

    assert response.status_code == 200
    assert audit_verbs(response).count("test.event") == rows


# --- secrets -----------------------------------------------------------------------------------


def test_a_new_tokens_secret_appears_on_no_other_page(
    client: Client, ws: Workspace, alice: Any, bob: Any
) -> None:
    login(client, alice)
    created = client.post(url("token-list", ws), {"name": "deploy"})
    secret = secret_on(created)
    digest = ApiToken.objects.get(name="deploy").digest
    pages = [
        "/",
        url("workspace-home", ws),
        url("workspace-settings", ws),
        url("member-list", ws),
        url("token-list", ws),
        url("audit-list", ws),
    ]

    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert secret not in text(response), page
        assert digest not in text(response), page

    client.force_login(bob)
    for page in pages[:-1]:
        assert secret not in text(client.get(page)), page


def test_a_failed_login_does_not_send_the_password_back(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "typo-Secret-123"})
    assert response.status_code == 200
    assert b"typo-Secret-123" not in response.content
    assert b'value="alice"' in response.content
