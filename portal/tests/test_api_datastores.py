"""Datastores through the REST API on the local kind (the Azure kind: test_api_datastores_azure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.models import AuditEvent, Datastore, Workspace


def ds_url(ws: Workspace, rest: str = "") -> str:
    return f"/api/v1/workspaces/{ws.uuid}/datastores/{rest}"


def put(client: Any, ws: Workspace, path: str, data: bytes, **query: str) -> Any:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return client.put(
        ds_url(ws, f"workspacefilestore/files/{path}") + (f"?{qs}" if qs else ""),
        data=data,
        content_type="application/octet-stream",
    )


def body_of(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def data_root(tmp_path: Path, settings: Any) -> Path:
    settings.MILLRACE_DATA_ROOT = tmp_path / "data"
    return tmp_path


def test_every_workspace_starts_with_two_datastores_and_a_default(api, ws, carol):
    body = api(carol).get(ds_url(ws)).json()
    names = {d["name"]: d for d in body["results"]}
    assert set(names) == {"workspacefilestore", "workspaceblobstore"}
    assert names["workspacefilestore"]["is_default"] is True
    assert names["workspaceblobstore"]["is_default"] is False
    assert names["workspaceblobstore"]["kind"] == "local"
    assert "not set" in names["workspaceblobstore"]["backing"]


def test_a_file_goes_up_comes_back_and_is_listed(api, ws, bob, carol, data_root):
    data = b"a,b\n1,2\n" * 1000
    response = put(api(bob), ws, "raw/2026/data.csv", data)
    assert response.status_code == 201, response.content
    assert response.json()["size"] == len(data)
    download = api(carol).get(ds_url(ws, "workspacefilestore/files/raw/2026/data.csv"))
    assert download.status_code == 200
    assert body_of(download) == data
    assert download["Content-Length"] == str(len(data))
    assert download["Content-Disposition"].startswith("attachment")
    listing = api(carol).get(ds_url(ws, "workspacefilestore/paths/")).json()
    assert [(e["path"], e["is_dir"]) for e in listing["results"]] == [("raw/", True)]
    deep = api(carol).get(ds_url(ws, "workspacefilestore/paths/?prefix=raw&recursive=true")).json()
    assert [e["path"] for e in deep["results"]] == ["raw/2026/data.csv"]
    event = AuditEvent.objects.get(verb="datastore.upload")
    assert event.data["path"] == "raw/2026/data.csv" and event.actor_username == "bob"


def test_the_file_lands_in_the_workspaces_own_folder(api, ws, other, bob, data_root):
    put(api(bob), ws, "x.txt", b"hello")
    expected = data_root / "data" / "datastores" / str(ws.uuid) / "workspacefilestore" / "x.txt"
    assert expected.read_bytes() == b"hello"


def test_overwrite_false_on_an_existing_path_is_409_naming_it(api, ws, bob, data_root):
    assert put(api(bob), ws, "a/b.txt", b"one").status_code == 201
    response = put(api(bob), ws, "a/b.txt", b"two")
    assert response.status_code == 409
    assert response.json()["path"] == "a/b.txt"
    assert "a/b.txt" in response.json()["detail"]
    got = api(bob).get(ds_url(ws, "workspacefilestore/files/a/b.txt"))
    assert body_of(got) == b"one"
    assert put(api(bob), ws, "a/b.txt", b"two", overwrite="true").status_code == 201
    assert body_of(api(bob).get(ds_url(ws, "workspacefilestore/files/a/b.txt"))) == b"two"


def test_range_requests_return_the_asked_bytes(api, ws, bob, data_root):
    put(api(bob), ws, "r.bin", bytes(range(256)))
    response = api(bob).get(ds_url(ws, "workspacefilestore/files/r.bin"), HTTP_RANGE="bytes=10-19")
    assert response.status_code == 206
    assert body_of(response) == bytes(range(10, 20))
    assert response["Content-Range"] == "bytes 10-19/256"
    tail = api(bob).get(ds_url(ws, "workspacefilestore/files/r.bin"), HTTP_RANGE="bytes=-6")
    assert body_of(tail) == bytes(range(250, 256))
    bad = api(bob).get(ds_url(ws, "workspacefilestore/files/r.bin"), HTTP_RANGE="bytes=900-")
    assert bad.status_code == 416


def test_a_folder_and_a_file_are_deleted(api, ws, bob, data_root):
    for name in ("d/1.txt", "d/2.txt", "d/e/3.txt", "keep.txt"):
        put(api(bob), ws, name, b"x")
    response = api(bob).delete(ds_url(ws, "workspacefilestore/files/d"))
    assert response.json() == {"deleted": 3}
    assert api(bob).delete(ds_url(ws, "workspacefilestore/files/keep.txt")).json() == {"deleted": 1}
    missing = api(bob).delete(ds_url(ws, "workspacefilestore/files/keep.txt"))
    assert missing.status_code == 404
    assert "keep.txt" in missing.json()["detail"]


def test_a_multipart_upload_stores_every_file_or_none(api, ws, bob, data_root):
    files = [SimpleUploadedFile("a.txt", b"A"), SimpleUploadedFile("b.txt", b"B")]
    response = api(bob).post(
        ds_url(ws, "workspacefilestore/upload/?target_path=in/"),
        {"files": files},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert [e["path"] for e in response.json()["uploaded"]] == ["in/a.txt", "in/b.txt"]
    again = [SimpleUploadedFile("c.txt", b"C"), SimpleUploadedFile("a.txt", b"A2")]
    response = api(bob).post(
        ds_url(ws, "workspacefilestore/upload/?target_path=in/"),
        {"files": again},
        format="multipart",
    )
    assert response.status_code == 409
    assert response.json()["path"] == "in/a.txt"
    listing = api(bob).get(ds_url(ws, "workspacefilestore/paths/?prefix=in/")).json()
    assert [e["name"] for e in listing["results"]] == ["a.txt", "b.txt"]


def test_an_upload_over_the_limit_is_413_and_stores_nothing(api, ws, bob, data_root, settings):
    settings.MILLRACE_MAX_UPLOAD_BYTES = 1000
    response = put(api(bob), ws, "big.bin", b"x" * 1001)
    assert response.status_code == 413
    assert "1,000 bytes" in response.json()["detail"]
    folder = data_root / "data" / "datastores" / str(ws.uuid) / "workspacefilestore"
    assert not folder.exists() or list(folder.rglob("*")) == []


def test_the_listing_pages_with_a_cursor(api, ws, bob, data_root):
    for i in range(7):
        put(api(bob), ws, f"p/f{i}.txt", b"x")
    seen: list[str] = []
    after = ""
    for _ in range(10):
        page = (
            api(bob)
            .get(ds_url(ws, f"workspacefilestore/paths/?prefix=p/&page_size=3&after={after}"))
            .json()
        )
        seen += [e["name"] for e in page["results"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == [f"f{i}.txt" for i in range(7)]


@pytest.mark.parametrize(
    "bad",
    [
        "../escape.txt",
        "a/../../escape.txt",
        "a/%2e%2e/%2e%2e/escape.txt",
        "%2Fetc%2Fpasswd",
        "a//b.txt",
        "a%5Cb.txt",
        "a%00b.txt",
        "./a.txt",
        "a/./b.txt",
    ],
)
def test_path_traversal_and_bad_names_are_refused_and_write_nothing(api, ws, bob, data_root, bad):
    response = put(api(bob), ws, bad, b"evil")
    assert response.status_code == 400, response.content
    assert "path" in response.json()["fields"]
    written = [p for p in data_root.rglob("*") if p.is_file()]
    assert written == []
    assert api(bob).get(ds_url(ws, f"workspacefilestore/files/{bad}")).status_code == 400
    assert api(bob).delete(ds_url(ws, f"workspacefilestore/files/{bad}")).status_code == 400


@pytest.mark.parametrize("prefix", ["..", "../", "a/../..", "/etc", "a\\b"])
def test_listing_a_bad_prefix_is_a_400(api, ws, bob, data_root, prefix):
    response = api(bob).get(ds_url(ws, "workspacefilestore/paths/"), {"prefix": prefix})
    assert response.status_code == 400
    assert "path" in response.json()["fields"]


def test_a_put_without_content_length_is_411(api, ws, bob, data_root):
    from rest_framework.test import APIRequestFactory

    from portal.api.datastores import DatastoreFileView

    request = APIRequestFactory().put("/x", data=b"abc", content_type="application/octet-stream")
    del request.META["CONTENT_LENGTH"]
    from rest_framework.test import force_authenticate

    force_authenticate(request, user=bob)
    response = DatastoreFileView.as_view()(
        request, workspace_id=str(ws.uuid), name="workspacefilestore", path="a.txt"
    )
    assert response.status_code == 411


class TestPermissions:
    def test_an_outsider_gets_404_on_every_datastore_endpoint(self, api, ws, charlie, data_root):
        client = api(charlie)
        for method, path in [
            ("get", ""),
            ("get", "workspacefilestore/"),
            ("get", "workspacefilestore/paths/"),
            ("get", "workspacefilestore/files/a.txt"),
            ("put", "workspacefilestore/files/a.txt"),
            ("delete", "workspacefilestore/files/a.txt"),
            ("post", "workspacefilestore/upload/"),
            ("post", ""),
            ("patch", "workspaceblobstore/"),
            ("delete", "workspaceblobstore/"),
        ]:
            response = getattr(client, method)(ds_url(ws, path))
            assert response.status_code == 404, (method, path, response.status_code)

    def test_a_reader_reads_but_cannot_upload_delete_or_register(
        self, api, ws, bob, carol, data_root
    ):
        put(api(bob), ws, "r.txt", b"r")
        client = api(carol)
        assert body_of(client.get(ds_url(ws, "workspacefilestore/files/r.txt"))) == b"r"
        assert put(client, ws, "w.txt", b"w").status_code == 403
        assert client.delete(ds_url(ws, "workspacefilestore/files/r.txt")).status_code == 403
        upload = client.post(
            ds_url(ws, "workspacefilestore/upload/"),
            {"files": [SimpleUploadedFile("u.txt", b"u")]},
            format="multipart",
        )
        assert upload.status_code == 403
        register = client.post(
            ds_url(ws),
            {"name": "x", "container_name": "abc", "account_name": "acct", "account_key": "k"},
            format="json",
        )
        assert register.status_code == 403
        assert (
            client.patch(ds_url(ws, "workspaceblobstore/"), {"is_default": True}).status_code == 403
        )
        assert body_of(client.get(ds_url(ws, "workspacefilestore/files/r.txt"))) == b"r"

    def test_a_contributor_cannot_register_or_change_the_default(self, api, ws, bob):
        assert (
            api(bob).patch(ds_url(ws, "workspaceblobstore/"), {"is_default": True}).status_code
            == 403
        )


class TestRegistration:
    def test_builtin_datastores_cannot_be_unregistered(self, api, ws, alice):
        response = api(alice).delete(ds_url(ws, "workspaceblobstore/"))
        assert response.status_code == 400
        assert "cannot be unregistered" in response.json()["detail"]

    def test_the_owner_moves_the_default(self, api, ws, alice):
        response = api(alice).patch(ds_url(ws, "workspaceblobstore/"), {"is_default": True})
        assert response.status_code == 200
        assert Datastore.objects.get(workspace=ws, is_default=True).name == "workspaceblobstore"
        response = api(alice).patch(ds_url(ws, "workspaceblobstore/"), {"is_default": False})
        assert response.status_code == 400

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            (
                {
                    "name": "9bad",
                    "container_name": "abc",
                    "account_name": "acct",
                    "account_key": "k",
                },
                "name",
            ),
            (
                {
                    "name": "ok",
                    "container_name": "Bad_Name",
                    "account_name": "acct",
                    "account_key": "k",
                },
                "container_name",
            ),
            ({"name": "ok", "container_name": "abc", "account_name": "acct"}, "credentials"),
            (
                {
                    "name": "ok",
                    "container_name": "abc",
                    "account_name": "acct",
                    "account_key": "k",
                    "sas_token": "s",
                },
                "credentials",
            ),
            (
                {"name": "ok", "container_name": "abc", "account_name": "A!", "account_key": "k"},
                "account_name",
            ),
            (
                {
                    "name": "workspaceblobstore",
                    "container_name": "abc",
                    "account_name": "acct",
                    "account_key": "k",
                },
                "name",
            ),
            (
                {
                    "name": "ok",
                    "container_name": "abc",
                    "account_name": "acct",
                    "account_key": "k",
                    "endpoint": "not a url",
                },
                "endpoint",
            ),
        ],
    )
    def test_bad_registrations_are_400_and_store_nothing(self, api, ws, alice, payload, field):
        before = Datastore.objects.count()
        response = api(alice).post(ds_url(ws), payload, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()["fields"]
        assert Datastore.objects.count() == before
        text = response.content.decode()
        for secret_field in ("account_key", "sas_token"):
            if payload.get(secret_field):
                assert f'"{payload[secret_field]}"' not in text
