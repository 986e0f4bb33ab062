"""Workspaces, members and tokens through the REST API: the happy paths and the nasty ones."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib.auth import get_user_model

from portal.models import ApiToken, AuditEvent, Membership, Workspace


def url(ws: Workspace, rest: str = "") -> str:
    return f"/api/v1/workspaces/{ws.uuid}/{rest}"


class TestWorkspaces:
    def test_it_creates_a_workspace_with_the_creator_as_owner(self, api, alice):
        response = api(alice).post("/api/v1/workspaces/", {"name": "Churn Models"}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert (body["name"], body["slug"], body["role"]) == (
            "Churn Models",
            "churn-models",
            "owner",
        )
        ws = Workspace.objects.get(uuid=body["id"])
        assert Membership.objects.get(workspace=ws).user == alice
        assert AuditEvent.objects.filter(workspace_uuid=ws.uuid, verb="workspace.create").exists()

    def test_it_lists_only_the_callers_workspaces_with_their_role(self, api, ws, other, carol):
        body = api(carol).get("/api/v1/workspaces/").json()
        assert [(w["slug"], w["role"]) for w in body["results"]] == [("forecast", "reader")]
        assert body["count"] == 1

    def test_a_duplicate_slug_is_a_400_naming_the_field(self, api, ws, charlie):
        before = Workspace.objects.count()
        response = api(charlie).post(
            "/api/v1/workspaces/", {"name": "x", "slug": "forecast"}, format="json"
        )
        assert response.status_code == 400
        body = response.json()
        assert "already exists" in body["fields"]["slug"][0]
        assert "slug" in body["detail"]
        assert Workspace.objects.count() == before
        assert Membership.objects.filter(user=charlie).count() == 0

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"name": "x" * 101}, "name"),
            ({"name": ""}, "name"),
            ({"name": "   "}, "name"),
            ({}, "name"),
            ({"name": "ok", "slug": "Not A Slug!"}, "slug"),
            ({"name": "ok", "slug": "s" * 51}, "slug"),
            ({"name": "ok", "slug": "admin"}, "slug"),
            ({"name": "!!!"}, "slug"),
            ({"name": "ok", "rol": "owner"}, "rol"),
            ({"name": ["a list"]}, "name"),
            ({"name": "ok", "description": "d" * 2001}, "description"),
        ],
    )
    def test_bad_input_is_a_400_that_names_the_field_and_stores_nothing(
        self, api, alice, payload, field
    ):
        response = api(alice).post("/api/v1/workspaces/", payload, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()["fields"], response.json()
        assert Workspace.objects.count() == 0
        assert AuditEvent.objects.count() == 0

    def test_malformed_json_is_a_400_that_says_so(self, api, alice):
        response = api(alice).post(
            "/api/v1/workspaces/", data='{"name": ', content_type="application/json"
        )
        assert response.status_code == 400
        assert "JSON parse error" in response.json()["detail"]

    def test_a_json_list_body_is_a_400(self, api, alice):
        response = api(alice).post("/api/v1/workspaces/", ["x"], format="json")
        assert response.status_code == 400
        assert "dictionary" in response.json()["detail"]

    def test_an_owner_renames_and_the_slug_stays(self, api, ws, alice):
        response = api(alice).patch(url(ws), {"name": "Team Demand"}, format="json")
        assert response.status_code == 200
        ws.refresh_from_db()
        assert (ws.name, ws.slug) == ("Team Demand", "forecast")
        event = AuditEvent.objects.get(verb="workspace.update")
        assert event.data["name"] == {"from": "Team Forecast", "to": "Team Demand"}

    def test_deleting_needs_the_slug_as_confirmation(self, api, ws, alice):
        response = api(alice).delete(url(ws))
        assert response.status_code == 400
        assert "forecast" in response.json()["fields"]["confirm"][0]
        response = api(alice).delete(url(ws) + "?confirm=wrong")
        assert response.status_code == 400
        assert Workspace.objects.filter(pk=ws.pk).exists()
        assert api(alice).delete(url(ws) + "?confirm=forecast").status_code == 204
        assert not Workspace.objects.filter(pk=ws.pk).exists()
        assert not Membership.objects.filter(workspace_id=ws.pk).exists()
        # The audit log outlives the workspace.
        assert AuditEvent.objects.filter(workspace_uuid=ws.uuid, verb="workspace.delete").exists()

    def test_a_token_cannot_create_workspaces(self, bearer, make_token, ws, alice):
        response = bearer(make_token(alice, ws)).post(
            "/api/v1/workspaces/", {"name": "New"}, format="json"
        )
        assert response.status_code == 403
        assert "token" in response.json()["detail"]
        assert Workspace.objects.count() == 1

    @pytest.mark.parametrize(
        "bad", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%2e%2e"]
    )
    def test_a_bad_or_unknown_workspace_id_is_a_json_404(self, api, alice, bad):
        response = api(alice).get(f"/api/v1/workspaces/{bad}/")
        assert response.status_code == 404
        assert response.json()["detail"]

    def test_an_unknown_api_url_is_a_json_404(self, client):
        response = client.get("/api/v1/nope/")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found: no such URL in the API."}


class TestMembers:
    def test_an_owner_adds_changes_and_removes_a_member(self, api, ws, alice, charlie):
        client = api(alice)
        response = client.post(url(ws, "members/"), {"username": "charlie", "role": "reader"})
        assert response.status_code == 201
        assert response.json()["role"] == "reader"
        response = client.patch(url(ws, "members/charlie/"), {"role": "contributor"})
        assert response.status_code == 200
        assert Membership.objects.get(workspace=ws, user=charlie).role == "contributor"
        assert client.delete(url(ws, "members/charlie/")).status_code == 204
        assert not Membership.objects.filter(workspace=ws, user=charlie).exists()
        verbs = list(
            AuditEvent.objects.filter(workspace_uuid=ws.uuid, object_repr="charlie")
            .order_by("id")
            .values_list("verb", flat=True)
        )
        assert verbs == ["member.add", "member.role_change", "member.remove"]

    @pytest.mark.parametrize(
        ("payload", "field", "words"),
        [
            ({"username": "charlie", "role": "admin"}, "role", "not a valid choice"),
            ({"username": "nobody", "role": "reader"}, "username", "No active user"),
            ({"username": "bob", "role": "reader"}, "username", "already a member"),
            ({"username": "charlie"}, "role", "required"),
            ({"role": "reader"}, "username", "required"),
            ({"username": "u" * 151, "role": "reader"}, "username", "150"),
        ],
    )
    def test_bad_member_input_is_a_clear_400(self, api, ws, alice, charlie, payload, field, words):
        before = list(Membership.objects.values_list("user_id", "role").order_by("pk"))
        response = api(alice).post(url(ws, "members/"), payload, format="json")
        assert response.status_code == 400, response.content
        assert words in " ".join(response.json()["fields"][field])
        assert list(Membership.objects.values_list("user_id", "role").order_by("pk")) == before

    def test_an_invalid_role_on_change_is_a_400(self, api, ws, alice, bob):
        response = api(alice).patch(url(ws, "members/bob/"), {"role": "god"}, format="json")
        assert response.status_code == 400
        assert "role" in response.json()["fields"]
        assert Membership.objects.get(workspace=ws, user=bob).role == "contributor"

    def test_the_last_owner_cannot_be_demoted_or_removed(self, api, ws, alice):
        client = api(alice)
        response = client.patch(url(ws, "members/alice/"), {"role": "reader"}, format="json")
        assert response.status_code == 400
        assert "last owner" in response.json()["detail"]
        response = client.delete(url(ws, "members/alice/"))
        assert response.status_code == 400
        assert "last owner" in response.json()["detail"]
        assert Membership.objects.get(workspace=ws, user=alice).role == "owner"

    def test_with_a_second_owner_the_first_may_step_down(self, api, ws, alice, bob):
        client = api(alice)
        assert client.patch(url(ws, "members/bob/"), {"role": "owner"}).status_code == 200
        assert client.patch(url(ws, "members/alice/"), {"role": "reader"}).status_code == 200
        # Now bob is the last owner.
        response = api(bob).delete(url(ws, "members/bob/"))
        assert response.status_code == 400

    def test_a_member_can_leave(self, api, ws, carol):
        assert api(carol).delete(url(ws, "members/carol/")).status_code == 204
        assert api(carol).get(url(ws)).status_code == 404

    def test_an_unknown_member_is_404(self, api, ws, alice):
        assert api(alice).patch(url(ws, "members/nobody/"), {"role": "reader"}).status_code == 404


class TestTokens:
    def test_a_token_is_shown_once_and_stored_hashed(self, api, ws, bob):
        response = api(bob).post(
            url(ws, "tokens/"), {"name": "laptop", "expires_at": None}, format="json"
        )
        assert response.status_code == 201
        body = response.json()
        secret = body["token"]
        assert secret.startswith("mlr_") and len(secret) > 40
        token = ApiToken.objects.get(uuid=body["id"])
        assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
        stored = [str(v) for v in ApiToken.objects.values_list().get(pk=token.pk)]
        assert secret not in stored
        listed = api(bob).get(url(ws, "tokens/")).content.decode()
        assert secret not in listed
        assert "token" not in api(bob).get(url(ws, f"tokens/{token.uuid}/")).json()
        event = AuditEvent.objects.get(verb="token.create")
        assert secret not in str(event.data) + event.object_repr

    def test_a_token_authenticates_and_records_last_use(self, api, bearer, ws, bob):
        secret = api(bob).post(url(ws, "tokens/"), {"name": "ci"}).json()["token"]
        assert ApiToken.objects.get().last_used_at is None
        response = bearer(secret).get("/api/v1/me/")
        assert response.status_code == 200
        body = response.json()
        assert body["username"] == "bob"
        assert body["token"]["name"] == "ci"
        assert [w["slug"] for w in body["workspaces"]] == ["forecast"]
        assert ApiToken.objects.get().last_used_at is not None

    def test_an_expiry_in_the_past_is_a_400(self, api, ws, bob):
        response = api(bob).post(
            url(ws, "tokens/"), {"name": "old", "expires_at": "2000-01-01T00:00:00Z"}, format="json"
        )
        assert response.status_code == 400
        assert "future" in response.json()["fields"]["expires_at"][0]
        assert not ApiToken.objects.exists()

    def test_a_malformed_expiry_is_a_400(self, api, ws, bob):
        response = api(bob).post(
            url(ws, "tokens/"), {"name": "x", "expires_at": "tomorrow"}, format="json"
        )
        assert response.status_code == 400
        assert "expires_at" in response.json()["fields"]

    def test_a_token_cannot_mint_tokens(self, bearer, make_token, ws, bob):
        response = bearer(make_token(bob, ws)).post(url(ws, "tokens/"), {"name": "more"})
        assert response.status_code == 403
        assert ApiToken.objects.count() == 1

    def test_members_see_their_own_tokens_and_owners_see_all(
        self, api, make_token, ws, alice, bob, carol
    ):
        make_token(bob, ws)
        make_token(carol, ws)
        assert [t["user"] for t in api(carol).get(url(ws, "tokens/")).json()["results"]] == [
            "carol"
        ]
        owners_view = {t["user"] for t in api(alice).get(url(ws, "tokens/")).json()["results"]}
        assert owners_view == {"bob", "carol"}

    def test_revoking_twice_is_harmless_and_audited_once(self, api, make_token, ws, alice, bob):
        make_token(bob, ws)
        token = ApiToken.objects.get()
        assert api(alice).delete(url(ws, f"tokens/{token.uuid}/")).status_code == 200
        assert api(alice).delete(url(ws, f"tokens/{token.uuid}/")).status_code == 200
        assert AuditEvent.objects.filter(verb="token.revoke").count() == 1

    def test_a_bad_token_id_is_404(self, api, ws, alice):
        assert api(alice).delete(url(ws, "tokens/not-a-uuid/")).status_code == 404


class TestAudit:
    def test_owners_filter_the_audit_log(self, api, ws, alice, charlie):
        client = api(alice)
        client.post(url(ws, "members/"), {"username": "charlie", "role": "reader"})
        client.post(url(ws, "tokens/"), {"name": "t"})
        everything = client.get(url(ws, "audit/")).json()
        assert everything["count"] == 5  # create, add bob, add carol, add charlie, token
        members = client.get(url(ws, "audit/") + "?verb=member.").json()["results"]
        assert [e["object_repr"] for e in members] == ["charlie", "carol", "bob"]
        exact = client.get(url(ws, "audit/") + "?verb=token.create").json()["results"]
        assert len(exact) == 1 and exact[0]["actor"] == "alice" and exact[0]["via"] == "api"
        none = client.get(url(ws, "audit/") + "?actor=bob").json()
        assert none["count"] == 0

    def test_a_bad_date_filter_is_a_400(self, api, ws, alice):
        response = api(alice).get(url(ws, "audit/") + "?since=yesterday-ish")
        assert response.status_code == 400
        assert "since" in response.json()["fields"]

    def test_the_audit_log_is_append_only_in_code_and_in_the_database(self, ws):
        from django.db import connection, transaction

        from portal.models import AppendOnlyError

        event = AuditEvent.objects.first()
        assert event is not None
        with pytest.raises(AppendOnlyError):
            event.save()
        with pytest.raises(AppendOnlyError):
            event.delete()
        with pytest.raises(AppendOnlyError):
            AuditEvent.objects.all().update(verb="x")
        with pytest.raises(AppendOnlyError):
            AuditEvent.objects.all().delete()
        for sql in ("UPDATE portal_auditevent SET verb = 'x'", "DELETE FROM portal_auditevent"):
            with (
                pytest.raises(Exception, match="append-only"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(sql)
        assert AuditEvent.objects.filter(verb="workspace.create").exists()

    def test_a_deleted_user_leaves_the_history_readable(self, api, ws, alice, charlie):
        api(alice).post(url(ws, "members/"), {"username": "charlie", "role": "reader"})
        get_user_model().objects.filter(pk=charlie.pk).delete()
        body = api(alice).get(url(ws, "audit/") + "?verb=member.add").json()
        assert "charlie" in [e["object_repr"] for e in body["results"]]


def test_the_openapi_schema_and_docs_are_served(client, alice):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/v1/workspaces/", "/members/", "/tokens/", "/audit/"):
        assert path in text
    client.force_login(alice)
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
