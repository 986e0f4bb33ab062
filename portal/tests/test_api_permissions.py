"""Every API endpoint against the whole cast: outsiders 404, readers 403 on writes, members
allowed; tokens scoped to their workspace; revoked and expired tokens 401."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from portal.models import ApiToken, AuditEvent, ComputeTarget, Membership, Workspace

# (method, path template, body, minimum role that may do it)
# {ws} is the workspace uuid; {tok} is a token of bob's in it.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("get", "/api/v1/workspaces/{ws}/", None, "reader"),
    ("patch", "/api/v1/workspaces/{ws}/", {"name": "Renamed"}, "owner"),
    ("delete", "/api/v1/workspaces/{ws}/?confirm=forecast", None, "owner"),
    ("get", "/api/v1/workspaces/{ws}/members/", None, "reader"),
    ("get", "/api/v1/workspaces/{ws}/members/bob/", None, "reader"),
    ("post", "/api/v1/workspaces/{ws}/members/", {"username": "dave", "role": "reader"}, "owner"),
    ("patch", "/api/v1/workspaces/{ws}/members/bob/", {"role": "reader"}, "owner"),
    ("delete", "/api/v1/workspaces/{ws}/members/bob/", None, "owner"),
    ("get", "/api/v1/workspaces/{ws}/tokens/", None, "reader"),
    ("post", "/api/v1/workspaces/{ws}/tokens/", {"name": "ci"}, "reader"),
    ("get", "/api/v1/workspaces/{ws}/tokens/{tok}/", None, "owner"),
    ("delete", "/api/v1/workspaces/{ws}/tokens/{tok}/", None, "owner"),
    ("get", "/api/v1/workspaces/{ws}/audit/", None, "owner"),
    ("get", "/api/v1/workspaces/{ws}/compute/", None, "reader"),
    ("get", "/api/v1/workspaces/{ws}/compute/local/", None, "reader"),
    ("post", "/api/v1/workspaces/{ws}/compute/", {"name": "gpu-pool", "kind": "docker"}, "owner"),
    ("delete", "/api/v1/workspaces/{ws}/compute/cpu-pool/", None, "owner"),
]
RANK = {"reader": 1, "contributor": 2, "owner": 3}


def snapshot() -> tuple[Any, ...]:
    return (
        list(Workspace.objects.values_list("name", "slug", "description").order_by("pk")),
        list(Membership.objects.values_list("workspace_id", "user_id", "role").order_by("pk")),
        list(ApiToken.objects.values_list("name", "revoked_at").order_by("pk")),
        AuditEvent.objects.count(),
        list(ComputeTarget.objects.values_list("workspace_id", "name").order_by("pk")),
    )


@pytest.fixture
def bobs_token(ws: Workspace, bob: Any, make_token: Any) -> ApiToken:
    """Bob's token in `ws` (and a removable compute target, for the matrix)."""
    ComputeTarget.objects.create(workspace=ws, name="cpu-pool", kind="local", queue="local")
    make_token(bob, ws)
    return ApiToken.objects.get(user=bob, workspace=ws)


@pytest.fixture
def dave(db: Any) -> Any:
    from conftest import make_user

    return make_user("dave")


def call(client: Any, method: str, path: str, body: dict[str, Any] | None) -> Any:
    return getattr(client, method)(path, body, format="json")


def fill(path: str, ws: Workspace, tok: ApiToken) -> str:
    return path.format(ws=ws.uuid, tok=tok.uuid)


@pytest.mark.parametrize(("method", "path", "body", "needed"), ENDPOINTS)
def test_an_outsider_gets_404_everywhere_and_changes_nothing(
    api, ws, charlie, bobs_token, dave, method, path, body, needed
):
    before = snapshot()
    response = call(api(charlie), method, fill(path, ws, bobs_token), body)
    assert response.status_code == 404, response.content
    assert response.json()["detail"]
    assert snapshot() == before


@pytest.mark.parametrize(("method", "path", "body", "needed"), ENDPOINTS)
def test_anonymous_gets_401_everywhere(api, ws, bobs_token, method, path, body, needed):
    response = call(api(), method, fill(path, ws, bobs_token), body)
    assert response.status_code in (401, 403)
    assert "credentials" in response.json()["detail"]


@pytest.mark.parametrize("username", ["carol", "bob", "alice"])
@pytest.mark.parametrize(("method", "path", "body", "needed"), ENDPOINTS)
def test_members_are_allowed_or_refused_by_role(
    api, ws, bobs_token, dave, username, method, path, body, needed
):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=username)
    membership = Membership.objects.get(workspace=ws, user=user)
    allowed = RANK[membership.role] >= RANK[needed]
    # A member may always see and revoke their own token.
    if "{tok}" in path and username == "bob":
        allowed = True
    # A member may always leave.
    if method == "delete" and path.endswith("/members/bob/") and username == "bob":
        allowed = True
    before = snapshot()
    response = call(api(user), method, fill(path, ws, bobs_token), body)
    if allowed:
        assert response.status_code in (200, 201, 204), response.content
    else:
        assert response.status_code in (403, 404), response.content
        if "{tok}" not in path:
            # Readers learn they lack the role; they may not see others' tokens at all (404).
            assert response.status_code == 403
            assert "role" in response.json()["detail"]
        assert snapshot() == before


@pytest.mark.parametrize(("method", "path", "body", "needed"), ENDPOINTS)
def test_a_token_of_workspace_a_cannot_reach_workspace_b(
    bearer, make_token, ws, other, charlie, alice, bobs_token, method, path, body, needed
):
    # charlie owns `other`; his token there must not reach `ws` even if he joined it.
    from portal import services

    services.add_member(
        actor=services.Actor(user=alice), workspace=ws, username="charlie", role="owner"
    )
    secret = make_token(charlie, other)
    before = snapshot()
    response = call(bearer(secret), method, fill(path, ws, bobs_token), body)
    assert response.status_code == 404, response.content
    assert snapshot() == before


def test_a_token_lists_only_its_own_workspace(bearer, make_token, ws, other, alice):
    from portal import services

    services.add_member(
        actor=services.Actor(user=other.created_by),
        workspace=other,
        username="alice",
        role="reader",
    )
    response = bearer(make_token(alice, ws)).get("/api/v1/workspaces/")
    assert response.status_code == 200
    assert [w["slug"] for w in response.json()["results"]] == ["forecast"]


def test_a_revoked_token_gets_401(bearer, make_token, ws, alice, api):
    secret = make_token(alice, ws)
    client = bearer(secret)
    assert client.get(f"/api/v1/workspaces/{ws.uuid}/").status_code == 200
    token = ApiToken.objects.get(user=alice)
    response = api(alice).delete(f"/api/v1/workspaces/{ws.uuid}/tokens/{token.uuid}/")
    assert response.status_code == 200
    assert response.json()["state"] == "revoked"
    response = client.get(f"/api/v1/workspaces/{ws.uuid}/")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_gets_401(bearer, make_token, ws, alice):
    secret = make_token(alice, ws, expires_at=timezone.now() + timedelta(hours=1))
    ApiToken.objects.filter(user=alice).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(secret).get(f"/api/v1/workspaces/{ws.uuid}/")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize(
    "header",
    ["Bearer mlr_not-a-real-token", "Bearer nope", "Bearer", "Bearer a b", "Bearer mlr_ünïcode"],
)
def test_a_bad_bearer_header_gets_401(client, ws, header):
    response = client.get(f"/api/v1/workspaces/{ws.uuid}/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["detail"]


def test_a_removed_member_loses_access_and_their_tokens_stop_working(
    api, bearer, make_token, ws, alice, bob
):
    secret = make_token(bob, ws)
    assert api(alice).delete(f"/api/v1/workspaces/{ws.uuid}/members/bob/").status_code == 204
    assert api(bob).get(f"/api/v1/workspaces/{ws.uuid}/").status_code == 404
    assert bearer(secret).get(f"/api/v1/workspaces/{ws.uuid}/").status_code == 401


def test_a_token_acts_with_its_users_current_role(api, bearer, make_token, ws, alice, bob):
    secret = make_token(bob, ws)
    client = bearer(secret)
    body = {"username": "carol", "role": "contributor"}
    assert client.patch(f"/api/v1/workspaces/{ws.uuid}/members/carol/", body).status_code == 403
    api(alice).patch(f"/api/v1/workspaces/{ws.uuid}/members/bob/", {"role": "owner"})
    response = client.patch(
        f"/api/v1/workspaces/{ws.uuid}/members/carol/", {"role": "contributor"}, format="json"
    )
    assert response.status_code == 200
    event = AuditEvent.objects.filter(verb="member.role_change").first()
    assert event is not None
    assert (event.actor_username, event.via, event.data["token"]) == ("bob", "token", "bob-token")
