"""The datastore pages through django.test.Client: who may see and do what, registering and its
failures (never echoing a secret), the file browser (listing, paging, upload, delete), the
previews (and that a huge file is never read whole), bad paths, and bounded query counts."""

from __future__ import annotations

import html
import json
import re
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from portal import datastore_views, services
from portal.datastores import PREVIEW_BYTES
from portal.lib.secrets_box import seal
from portal.models import AuditEvent, CredentialKind, Datastore, DatastoreKind, Workspace
from portal.storage import StorageError
from portal.storage.local import LocalStorage

FILESTORE = "workspacefilestore"
SECRET = "Zm9vYmFyU3VwZXJTZWNyZXRLZXk9PQ=="  # looks like an account key; must never show


# --- helpers -----------------------------------------------------------------------------------

# Written out rather than reversed: a URL name that reverses to the wrong place must fail tests.
PATHS = {
    "datastore-list": "/w/{workspace_id}/datastores/",
    "datastore-default": "/w/{workspace_id}/datastores/{name}/default/",
    "datastore-unregister": "/w/{workspace_id}/datastores/{name}/unregister/",
    "datastore-browse": "/w/{workspace_id}/datastores/{name}/browse/{path}",
    "datastore-delete": "/w/{workspace_id}/datastores/{name}/delete/{path}",
}


def url(name: str, ws: Workspace | str, ds: str = FILESTORE, path: str = "") -> str:
    workspace_id = ws if isinstance(ws, str) else str(ws.uuid)
    return PATHS[name].format(workspace_id=workspace_id, name=ds, path=path)


def file_url(ws: Workspace, path: str, ds: str = FILESTORE) -> str:
    return f"/api/v1/workspaces/{ws.uuid}/datastores/{ds}/files/{path}"


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


def login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def root_of(ws: Workspace, ds: str = FILESTORE) -> Path:
    from django.conf import settings

    return Path(settings.MILLRACE_DATA_ROOT) / "datastores" / str(ws.uuid) / ds


def put_file(ws: Workspace, path: str, data: bytes, ds: str = FILESTORE) -> Path:
    target = root_of(ws, ds) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def files_on_disk(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def snapshot(root: Path) -> dict[str, Any]:
    """Everything these pages could write, to prove a refused request changed nothing."""
    return {
        "datastores": set(
            Datastore.objects.values_list("workspace__slug", "name", "is_default", "kind")
        ),
        "events": AuditEvent.objects.count(),
        "files": files_on_disk(root),
    }


def entry_paths(response: Any) -> list[str]:
    return re.findall(r'<tr data-path="([^"]+)">', response.content.decode())


def register_directly(ws: Workspace, name: str, secret: str = SECRET) -> Datastore:
    """An Azure datastore row, as if registered (no storage service needed for the list)."""
    return Datastore.objects.create(
        workspace=ws,
        name=name,
        kind=DatastoreKind.AZURE_BLOB,
        container_name="data",
        account_name="acct",
        credential_kind=CredentialKind.ACCOUNT_KEY,
        sealed_credentials=seal({"account_key": secret}),
    )


@pytest.fixture
def data_root(tmp_path: Path, settings: Any) -> Path:
    settings.MILLRACE_DATA_ROOT = tmp_path / "data"
    return tmp_path / "data"


# --- the permission matrix ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    label: str
    method: str
    route: str
    ds: str
    path: str
    data: Callable[[], dict[str, Any]]
    reader: int
    contributor: int
    owner: int

    def expected(self, actor: str) -> int:
        return {"charlie": 404, "carol": self.reader, "bob": self.contributor, "alice": self.owner}[
            actor
        ]


def _nothing() -> dict[str, Any]:
    return {}


def _registration() -> dict[str, Any]:
    # A bad container name: refused before any storage service is asked.
    return {"name": "external", "container_name": "Bad_Name", "account_name": "acct"}


def _upload() -> dict[str, Any]:
    return {"uploads": [SimpleUploadedFile("new.txt", b"new")]}


def _confirmed() -> dict[str, Any]:
    return {"confirm": "on"}


ENDPOINTS = [
    Endpoint("list", "get", "datastore-list", FILESTORE, "", _nothing, 200, 200, 200),
    Endpoint("register", "post", "datastore-list", FILESTORE, "", _registration, 403, 403, 400),
    Endpoint("default", "post", "datastore-default", "external", "", _nothing, 403, 403, 302),
    Endpoint("unregister", "post", "datastore-unregister", "external", "", _nothing, 403, 403, 302),
    Endpoint("root", "get", "datastore-browse", FILESTORE, "", _nothing, 200, 200, 200),
    Endpoint("folder", "get", "datastore-browse", FILESTORE, "raw/", _nothing, 200, 200, 200),
    Endpoint("file", "get", "datastore-browse", FILESTORE, "raw/a.csv", _nothing, 200, 200, 200),
    Endpoint("upload", "post", "datastore-browse", FILESTORE, "raw/", _upload, 403, 302, 302),
    Endpoint(
        "delete", "post", "datastore-delete", FILESTORE, "raw/a.csv", _confirmed, 403, 302, 302
    ),
]
ACTORS = ["charlie", "carol", "bob", "alice"]
CASES = [(e, a) for e in ENDPOINTS for a in ACTORS]


@pytest.fixture
def scene(ws: Workspace, other: Workspace, data_root: Path) -> Workspace:
    put_file(ws, "raw/a.csv", b"x,y\n1,2\n")
    register_directly(ws, "external")
    return ws


@pytest.mark.parametrize(
    ("endpoint", "actor"), CASES, ids=[f"{a}-{e.method.upper()}-{e.label}" for e, a in CASES]
)
def test_every_datastore_page_answers_each_role_as_the_access_rules_say(
    client: Client, scene: Workspace, request: pytest.FixtureRequest, endpoint: Endpoint, actor: str
) -> None:
    login(client, request.getfixturevalue(actor))
    target = url(endpoint.route, scene, endpoint.ds, endpoint.path)
    before = snapshot(root_of(scene))

    response = getattr(client, endpoint.method)(target, endpoint.data())

    expected = endpoint.expected(actor)
    assert response.status_code == expected, text(response)[:2000]
    if expected == 404:
        assert "Not found" in text(response)
        assert "Team Forecast" not in text(response)
    if expected == 403:
        assert "Not allowed" in text(response)
    if endpoint.method == "post" and expected == 302:
        assert snapshot(root_of(scene)) != before, "a successful write changed nothing"
    else:
        assert snapshot(root_of(scene)) == before, "a GET or a refused request changed something"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{e.method}-{e.label}" for e in ENDPOINTS])
def test_anonymous_users_are_sent_to_log_in(
    client: Client, scene: Workspace, endpoint: Endpoint
) -> None:
    target = url(endpoint.route, scene, endpoint.ds, endpoint.path)

    response = getattr(client, endpoint.method)(target, endpoint.data())

    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{e.method}-{e.label}" for e in ENDPOINTS])
def test_an_unknown_workspace_is_404_on_every_page(
    client: Client, scene: Workspace, alice: Any, endpoint: Endpoint
) -> None:
    login(client, alice)
    for workspace_id in ("not-a-uuid", str(uuid4())):
        target = url(endpoint.route, workspace_id, endpoint.ds, endpoint.path)
        assert getattr(client, endpoint.method)(target, endpoint.data()).status_code == 404


def test_an_unknown_datastore_is_404(client: Client, scene: Workspace, bob: Any) -> None:
    login(client, bob)

    assert client.get(url("datastore-browse", scene, "nope")).status_code == 404
    assert (
        client.post(url("datastore-delete", scene, "nope", "a.txt"), _confirmed()).status_code
        == 404
    )


def test_another_workspaces_datastore_is_not_reachable(
    client: Client, scene: Workspace, other: Workspace, charlie: Any, alice: Any
) -> None:
    put_file(other, "secret.txt", b"charlie's")
    login(client, alice)

    # Same datastore name, but looked up in alice's workspace: her file, not charlie's.
    response = client.get(url("datastore-browse", scene, FILESTORE, "secret.txt"))

    assert response.status_code == 404


@pytest.mark.parametrize("name", sorted(PATHS))
def test_every_page_url_name_reverses_to_the_page(name: str) -> None:
    kwargs = {"workspace_id": str(uuid4()), "name": "store", "path": "a/b.txt"}
    needed = {k: v for k, v in kwargs.items() if "{" + k + "}" in PATHS[name]}

    assert reverse(name, kwargs=needed) == PATHS[name].format(**needed)


def test_the_navigation_links_to_the_datastores(client: Client, ws: Workspace, carol: Any) -> None:
    login(client, carol)

    page = text(client.get(f"/w/{ws.uuid}/"))

    assert f'href="{url("datastore-list", ws)}">Datastores</a>' in page


# --- the list page -----------------------------------------------------------------------------


def test_the_list_shows_each_datastore_with_badges_backing_and_usage(
    client: Client, ws: Workspace, carol: Any, data_root: Path
) -> None:
    put_file(ws, "a.txt", b"x" * 1000)
    put_file(ws, "deep/b.txt", b"y" * 500)
    put_file(ws, "deep/.c.txt.abc.part", b"z" * 100)  # an upload in progress: not counted
    register_directly(ws, "external")
    login(client, carol)

    response = client.get(url("datastore-list", ws))

    assert response.status_code == 200
    page = text(response)
    rows = dict(re.findall(r'<tr data-datastore="([^"]+)">(.*?)</tr>', page, re.DOTALL))
    assert set(rows) == {FILESTORE, "workspaceblobstore", "external"}
    assert "default" in rows[FILESTORE] and "built-in" in rows[FILESTORE]
    assert "default" not in rows["workspaceblobstore"] and "built-in" in rows["workspaceblobstore"]
    assert "built-in" not in rows["external"]
    assert "A local folder on the server." in rows[FILESTORE]
    # Without MILLRACE_AZURE_STORAGE_CONNECTION_STRING the blob store is local, and it says so.
    assert "MILLRACE_AZURE_STORAGE_CONNECTION_STRING is not set" in rows["workspaceblobstore"]
    assert "account acct, container 'data'" in rows["external"]

    def cells(row: str) -> list[str]:
        return re.findall(r'<td class="text-end[^"]*"[^>]*>([^<]*)</td>', row)

    assert cells(rows[FILESTORE]) == ["2", "1.5\xa0KB"]
    assert cells(rows["workspaceblobstore"]) == ["0", "0\xa0bytes"]
    assert cells(rows["external"]) == ["—", "—"]
    # Readers get the table only.
    assert "Register Azure Blob container" not in page
    assert ">Make default</button>" not in page and ">Unregister</button>" not in page


def test_counting_stops_at_the_cap(
    client: Client, ws: Workspace, carol: Any, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datastore_views, "USAGE_CAP", 3)
    for i in range(5):
        put_file(ws, f"f{i}.txt", b"x")
    login(client, carol)

    page = text(client.get(url("datastore-list", ws)))

    row = re.search(r'<tr data-datastore="workspacefilestore">(.*?)</tr>', page, re.DOTALL)
    assert row is not None and ">3+</td>" in row.group(1)


def test_the_usage_of_a_folder_never_follows_symlinks_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_bytes(b"x" * 10_000)
    root = tmp_path / "store"
    root.mkdir()
    (root / "one.txt").write_bytes(b"1")
    (root / "link").symlink_to(outside)
    (root / "filelink").symlink_to(outside / "big.bin")

    usage = datastore_views.local_usage(root)

    assert (usage.files, usage.size, usage.capped) == (1, 1, False)
    assert datastore_views.local_usage(tmp_path / "missing").files == 0
    assert datastore_views.local_usage(root, cap=0).files_text == "0+"


def test_the_owner_sees_the_register_form_and_actions(
    client: Client, ws: Workspace, alice: Any, data_root: Path
) -> None:
    register_directly(ws, "external")
    login(client, alice)

    page = text(client.get(url("datastore-list", ws)))

    assert "Register Azure Blob container" in page
    for field in ("account_key", "sas_token", "connection_string"):
        assert re.search(rf'<input type="password" name="{field}"', page), field
    assert f'action="{url("datastore-default", ws, "external")}"' in page
    assert f'action="{url("datastore-default", ws, "workspaceblobstore")}"' in page
    assert f'action="{url("datastore-default", ws, FILESTORE)}"' not in page  # already default
    assert f'action="{url("datastore-unregister", ws, "external")}"' in page
    assert f'action="{url("datastore-unregister", ws, FILESTORE)}"' not in page  # built-in


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"container_name": "Bad_Name"}, "An Azure container name has 3-63"),
        ({"name": "9lives"}, "Use letters, digits and underscores"),
        ({"account_name": "UPPER"}, "An Azure storage account name has 3-24"),
        ({"sas_token": "sv=2020&sig=abc"}, "Give exactly one of account_key"),
        ({"name": FILESTORE}, "already exists in this workspace"),
        ({"endpoint": "not a url"}, "Enter a valid URL."),
    ],
)
def test_a_bad_registration_is_a_400_with_the_reason_and_never_echoes_the_secret(
    client: Client,
    ws: Workspace,
    alice: Any,
    data_root: Path,
    payload: dict[str, str],
    message: str,
) -> None:
    login(client, alice)
    form = {"name": "external", "container_name": "data", "account_name": "acct"}
    form.update({"account_key": SECRET, **payload})
    before = snapshot(root_of(ws))

    response = client.post(url("datastore-list", ws), form)

    assert response.status_code == 400
    assert message in text(response)
    assert SECRET not in response.content.decode()
    assert "sv=2020" not in response.content.decode()
    # What is not secret is kept, so the owner can fix the form.
    assert 'value="acct"' in response.content.decode() or "account_name" in payload
    assert snapshot(root_of(ws)) == before


def test_a_registration_the_storage_service_refuses_shows_its_reason(
    client: Client,
    ws: Workspace,
    alice: Any,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The form shows the service's reason; the Azure backend is replaced at one seam."""

    class Refusing:
        def check(self) -> None:
            raise StorageError("AuthenticationFailed: the key does not match the account.")

    seen: list[Datastore] = []

    def fake_storage_for(datastore: Datastore) -> Refusing:
        seen.append(datastore)
        return Refusing()

    monkeypatch.setattr(services, "storage_for", fake_storage_for)
    login(client, alice)
    form = {"name": "external", "container_name": "data", "account_name": "acct"}
    form["account_key"] = SECRET

    response = client.post(url("datastore-list", ws), form)

    assert response.status_code == 400
    assert "The storage service refused: AuthenticationFailed" in text(response)
    assert SECRET not in response.content.decode()
    assert [d.container_name for d in seen] == ["data"]
    assert not Datastore.objects.filter(name="external").exists()


def test_credentials_for_a_closed_port_fail_with_the_reason_on_the_form(
    client: Client, ws: Workspace, alice: Any, data_root: Path
) -> None:
    login(client, alice)
    form = {
        "name": "external",
        "container_name": "data",
        "account_name": "acct",
        "account_key": SECRET,
        "endpoint": "http://127.0.0.1:9/acct",
    }
    response = client.post(url("datastore-list", ws), form)

    assert response.status_code == 400
    assert "The storage service refused: Cannot reach blob storage" in text(response)
    assert SECRET not in response.content.decode()
    assert not Datastore.objects.filter(name="external").exists()


def test_the_list_page_never_shows_a_stored_credential(
    client: Client, ws: Workspace, alice: Any, data_root: Path
) -> None:
    stored = register_directly(ws, "external")
    login(client, alice)

    body = client.get(url("datastore-list", ws)).content.decode()

    assert SECRET not in body
    assert stored.sealed_credentials not in body


def test_the_owner_makes_another_datastore_the_default(
    client: Client, ws: Workspace, alice: Any, data_root: Path
) -> None:
    login(client, alice)

    response = client.post(url("datastore-default", ws, "workspaceblobstore"))

    assert response.status_code == 302
    assert response["Location"] == url("datastore-list", ws)
    assert Datastore.objects.get(workspace=ws, is_default=True).name == "workspaceblobstore"
    assert AuditEvent.objects.filter(verb="datastore.set_default").count() == 1
    assert "is now the default" in text(client.get(response["Location"]))


def test_the_owner_unregisters_a_datastore_but_not_a_builtin_one(
    client: Client, ws: Workspace, alice: Any, data_root: Path
) -> None:
    register_directly(ws, "external")
    login(client, alice)

    gone = client.post(url("datastore-unregister", ws, "external"))
    refused = client.post(url("datastore-unregister", ws, "workspaceblobstore"), follow=True)

    assert gone.status_code == 302
    assert not Datastore.objects.filter(workspace=ws, name="external").exists()
    assert "comes with every workspace and cannot be unregistered" in text(refused)
    assert Datastore.objects.filter(workspace=ws, name="workspaceblobstore").exists()


def test_the_default_datastore_cannot_be_unregistered(
    client: Client, ws: Workspace, alice: Any, data_root: Path
) -> None:
    external = register_directly(ws, "external")
    services.set_default_datastore(actor=services.Actor(user=alice), datastore=external)
    login(client, alice)

    response = client.post(url("datastore-unregister", ws, "external"), follow=True)

    assert "make another default first" in text(response)
    assert Datastore.objects.filter(workspace=ws, name="external").exists()


@pytest.mark.parametrize("extra", [3, 30])
def test_the_list_page_uses_a_bounded_number_of_queries(
    client: Client,
    ws: Workspace,
    alice: Any,
    data_root: Path,
    extra: int,
    django_assert_max_num_queries: Any,
) -> None:
    for i in range(extra):
        register_directly(ws, f"external_{i}")
    for i in range(extra):
        Datastore.objects.create(workspace=ws, name=f"local_{i}", kind=DatastoreKind.LOCAL)
    login(client, alice)

    with django_assert_max_num_queries(6):
        response = client.get(url("datastore-list", ws))

    assert response.status_code == 200
    assert len(re.findall(r"<tr data-datastore=", response.content.decode())) == 2 + 2 * extra


@pytest.mark.parametrize("files", [3, 60])
def test_the_browse_and_file_pages_use_a_bounded_number_of_queries(
    client: Client,
    ws: Workspace,
    carol: Any,
    data_root: Path,
    files: int,
    django_assert_max_num_queries: Any,
) -> None:
    for i in range(files):
        put_file(ws, f"raw/f{i:03}.csv", b"a,b\n1,2\n")
    login(client, carol)

    with django_assert_max_num_queries(6):
        folder = client.get(url("datastore-browse", ws, path="raw/"))
    with django_assert_max_num_queries(6):
        one = client.get(url("datastore-browse", ws, path="raw/f000.csv"))

    assert len(entry_paths(folder)) == files
    assert one.status_code == 200


# --- browsing ----------------------------------------------------------------------------------


def test_a_folder_lists_folders_first_with_sizes_and_download_links(
    client: Client, ws: Workspace, carol: Any, data_root: Path
) -> None:
    put_file(ws, "raw/b.txt", b"x" * 2048)
    put_file(ws, "raw/a file #1.txt", b"hello")
    put_file(ws, "raw/zeta/deep.txt", b"deep")
    put_file(ws, "raw/alpha/deep.txt", b"deep")
    login(client, carol)

    response = client.get(url("datastore-browse", ws, path="raw/"))

    assert response.status_code == 200
    assert entry_paths(response) == ["raw/alpha/", "raw/zeta/", "raw/a file #1.txt", "raw/b.txt"]
    page = response.content.decode()
    assert "2.0\xa0KB" in page
    assert f'href="{file_url(ws, "raw/a%20file%20%231.txt")}"' in page
    assert f'href="{url("datastore-browse", ws, path="raw/alpha/")}"' in page
    crumbs = re.search(r'id="breadcrumbs">(.*?)</ol>', page, re.DOTALL)
    assert crumbs is not None
    assert f'href="{url("datastore-browse", ws)}">{FILESTORE}</a>' in crumbs.group(1)
    assert 'aria-current="page">raw</li>' in crumbs.group(1)
    # A reader gets no upload form and no delete buttons.
    assert 'type="file"' not in page and ">Delete<" not in page


def test_the_download_link_works_with_the_browser_session(
    client: Client, ws: Workspace, carol: Any, data_root: Path
) -> None:
    put_file(ws, "raw/a file #1.txt", b"hello")
    login(client, carol)

    response = client.get(file_url(ws, "raw/a%20file%20%231.txt"))

    assert response.status_code == 200
    assert response.getvalue() == b"hello"
    assert response["Content-Disposition"].startswith("attachment")


def test_a_contributor_sees_upload_and_delete(
    client: Client, ws: Workspace, bob: Any, data_root: Path
) -> None:
    put_file(ws, "a.txt", b"a")
    login(client, bob)

    page = client.get(url("datastore-browse", ws)).content.decode()

    assert 'type="file" name="uploads"' in page and "multiple" in page
    assert f'action="{url("datastore-delete", ws, path="a.txt")}"' in page
    assert 'name="confirm"' in page


def test_the_empty_root_of_a_new_datastore_is_shown(
    client: Client, ws: Workspace, carol: Any, data_root: Path
) -> None:
    login(client, carol)

    response = client.get(url("datastore-browse", ws, "workspaceblobstore"))

    assert response.status_code == 200
    assert "This folder is empty." in text(response)


def test_a_big_folder_is_paged_with_a_cursor(
    client: Client,
    ws: Workspace,
    carol: Any,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(datastore_views, "PAGE_SIZE", 2)
    for name in ("c.txt", "a.txt", "b.txt"):
        put_file(ws, name, b"x")
    for name in ("x", "y", "z"):
        put_file(ws, f"{name}/f.txt", b"x")
    login(client, carol)

    seen: list[str] = []
    target = url("datastore-browse", ws)
    for _ in range(5):
        response = client.get(target)
        assert response.status_code == 200
        seen += entry_paths(response)
        link = re.search(r'id="next-page" href="([^"]+)"', response.content.decode())
        if link is None:
            break
        target = url("datastore-browse", ws) + html.unescape(link.group(1))

    assert seen == ["x/", "y/", "z/", "a.txt", "b.txt", "c.txt"]


def test_a_missing_path_is_404(client: Client, ws: Workspace, carol: Any, data_root: Path) -> None:
    login(client, carol)

    response = client.get(url("datastore-browse", ws, path="no/such/file.txt"))

    assert response.status_code == 404
    assert "No file or folder at 'no/such/file.txt'" in text(response)


BAD_PATHS = ["a/../b.txt", "..", "%2e%2e/x", "a//b.txt", "a%5Cb.txt", "a%00b.txt", "./a.txt"]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_a_bad_path_in_the_url_is_a_400_with_the_reason(
    client: Client, ws: Workspace, bob: Any, data_root: Path, bad: str
) -> None:
    put_file(ws, "b.txt", b"keep")
    put_file(ws, "a/b.txt", b"keep")
    login(client, bob)
    before = snapshot(root_of(ws))

    got = client.get(url("datastore-browse", ws, path=bad))
    deleted = client.post(url("datastore-delete", ws, path=bad), _confirmed())
    uploaded = client.post(url("datastore-browse", ws, path=bad), _upload())

    for response in (got, deleted, uploaded):
        assert response.status_code == 400, text(response)[:2000]
        assert "Bad path" in text(response)
        assert re.search(r"NUL|backslash|empty segment|stay inside", text(response))
    assert snapshot(root_of(ws)) == before


def test_a_storage_failure_is_a_502_naming_the_reason(
    client: Client, ws: Workspace, carol: Any, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: LocalStorage, prefix: str = "", *, recursive: bool = False) -> Iterator[Any]:
        raise StorageError("ServerBusy: the account is being throttled.")

    monkeypatch.setattr(LocalStorage, "list", broken)
    login(client, carol)

    response = client.get(url("datastore-browse", ws))

    assert response.status_code == 502
    assert "The storage service failed: ServerBusy: the account is being throttled." in text(
        response
    )


def test_an_unreachable_azure_container_is_a_502_page(
    client: Client, ws: Workspace, carol: Any, data_root: Path
) -> None:
    external = register_directly(ws, "external")
    Datastore.objects.filter(pk=external.pk).update(endpoint="http://127.0.0.1:9/acct")
    login(client, carol)

    response = client.get(url("datastore-browse", ws, "external"))

    assert response.status_code == 502
    assert "The storage service failed: Cannot reach blob storage" in text(response)
    assert SECRET not in response.content.decode()


# --- uploading and deleting --------------------------------------------------------------------


def test_a_contributor_uploads_several_files_into_a_folder(
    client: Client, ws: Workspace, bob: Any, data_root: Path
) -> None:
    put_file(ws, "raw/keep.txt", b"k")
    login(client, bob)

    response = client.post(
        url("datastore-browse", ws, path="raw/"),
        {
            "uploads": [
                SimpleUploadedFile("one.csv", b"a,b\n"),
                SimpleUploadedFile("two.txt", b"2"),
            ],
            "subfolder": "2026/jan",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == url("datastore-browse", ws, path="raw/")
    assert files_on_disk(root_of(ws)) == {
        "raw/2026/jan/one.csv": b"a,b\n",
        "raw/2026/jan/two.txt": b"2",
        "raw/keep.txt": b"k",
    }
    events = AuditEvent.objects.filter(verb="datastore.upload").order_by("id")
    assert [e.data["path"] for e in events] == ["raw/2026/jan/one.csv", "raw/2026/jan/two.txt"]
    assert {e.actor_username for e in events} == {"bob"}
    assert "Uploaded 2 files." in text(client.get(response["Location"]))


def test_an_upload_is_refused_whole_when_a_file_exists_and_overwrite_is_off(
    client: Client, ws: Workspace, bob: Any, data_root: Path
) -> None:
    put_file(ws, "a.txt", b"old")
    login(client, bob)

    def files() -> list[SimpleUploadedFile]:
        return [SimpleUploadedFile("b.txt", b"b"), SimpleUploadedFile("a.txt", b"new")]

    refused = client.post(url("datastore-browse", ws), {"uploads": files()})

    assert refused.status_code == 400
    assert "Already there: a.txt. Nothing was uploaded" in text(refused)
    assert files_on_disk(root_of(ws)) == {"a.txt": b"old"}
    assert not AuditEvent.objects.filter(verb="datastore.upload").exists()

    replaced = client.post(url("datastore-browse", ws), {"uploads": files(), "overwrite": "on"})

    assert replaced.status_code == 302
    assert files_on_disk(root_of(ws)) == {"a.txt": b"new", "b.txt": b"b"}


def test_an_upload_without_files_or_into_a_bad_subfolder_is_a_400(
    client: Client, ws: Workspace, bob: Any, data_root: Path
) -> None:
    login(client, bob)

    empty = client.post(url("datastore-browse", ws), {})
    bad = client.post(url("datastore-browse", ws), {**_upload(), "subfolder": "../up"})

    assert empty.status_code == 400 and "Choose at least one file." in text(empty)
    assert bad.status_code == 400 and "must stay inside the datastore" in text(bad)
    assert files_on_disk(data_root) == {}


def test_an_upload_over_the_limit_is_refused(
    client: Client, ws: Workspace, bob: Any, data_root: Path, settings: Any
) -> None:
    settings.MILLRACE_MAX_UPLOAD_BYTES = 10
    login(client, bob)

    response = client.post(
        url("datastore-browse", ws), {"uploads": [SimpleUploadedFile("big.bin", b"x" * 11)]}
    )

    assert response.status_code == 400
    assert "big.bin: The upload is larger than the limit of 10 bytes" in text(response)
    assert files_on_disk(data_root) == {}


def test_uploading_onto_a_file_url_is_refused(
    client: Client, ws: Workspace, bob: Any, data_root: Path
) -> None:
    put_file(ws, "a.txt", b"a")
    login(client, bob)

    response = client.post(url("datastore-browse", ws, path="a.txt"), _upload())

    assert response.status_code == 400
    assert "is a file: upload into a folder" in text(response)


def test_deleting_needs_the_confirmation(
    client: Client, ws: Workspace, bob: Any, data_root: Path
) -> None:
    put_file(ws, "raw/a.txt", b"a")
    login(client, bob)

    response = client.post(url("datastore-delete", ws, path="raw/a.txt"), follow=True)

    assert "was not deleted: tick the box" in text(response)
    assert files_on_disk(root_of(ws)) == {"raw/a.txt": b"a"}


def test_a_contributor_deletes_a_file_and_a_folder(
    client: Client, ws: Workspace, bob: Any, data_root: Path
) -> None:
    put_file(ws, "raw/a.txt", b"a")
    put_file(ws, "raw/sub/b.txt", b"b")
    put_file(ws, "raw/sub/c.txt", b"c")
    put_file(ws, "keep.txt", b"k")
    login(client, bob)

    file_gone = client.post(url("datastore-delete", ws, path="raw/a.txt"), _confirmed())
    folder_gone = client.post(url("datastore-delete", ws, path="raw/sub/"), _confirmed())

    assert file_gone["Location"] == url("datastore-browse", ws, path="raw/")
    assert folder_gone["Location"] == url("datastore-browse", ws, path="raw/")
    assert files_on_disk(root_of(ws)) == {"keep.txt": b"k"}
    assert "Deleted 'raw/sub' (2 files)." in text(client.get(folder_gone["Location"]))
    assert AuditEvent.objects.filter(verb="datastore.delete_path").count() == 2
    missing = client.post(url("datastore-delete", ws, path="raw/a.txt"), _confirmed())
    assert missing.status_code == 404


# --- previews ----------------------------------------------------------------------------------


def preview_of(client: Client, ws: Workspace, path: str) -> str:
    response = client.get(url("datastore-browse", ws, path=path))
    assert response.status_code == 200, text(response)[:2000]
    return response.content.decode()


@pytest.fixture
def reader(client: Client, ws: Workspace, carol: Any, data_root: Path) -> Client:
    return login(client, carol)


def test_a_file_page_shows_size_modified_and_a_download_button(
    reader: Client, ws: Workspace
) -> None:
    put_file(ws, "raw/notes.txt", b"x" * 3000)

    page = preview_of(reader, ws, "raw/notes.txt")

    assert 'id="file-size">2.9\xa0KB</span>' in page
    assert re.search(r"modified \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)
    assert f'href="{file_url(ws, "raw/notes.txt")}" download id="download"' in page
    assert f'href="{url("datastore-browse", ws, path="raw/")}">Back to the folder' in page


def test_a_csv_file_is_previewed_as_a_table(reader: Client, ws: Workspace) -> None:
    put_file(ws, "t.csv", b'name,score\nann,1\n"b<o>b",2\n')

    page = preview_of(reader, ws, "t.csv")

    table = re.search(r'<table [^>]*id="csv-preview">(.*?)</table>', page, re.DOTALL)
    assert table is not None
    assert re.findall(r"<th>([^<]*)</th>", table.group(1)) == ["name", "score"]
    assert re.findall(r"<td>([^<]*)</td>", table.group(1)) == ["ann", "1", "b&lt;o&gt;b", "2"]
    assert 'id="truncated"' not in page


def test_a_long_csv_says_only_the_first_rows_are_shown(reader: Client, ws: Workspace) -> None:
    put_file(ws, "t.csv", b"n\n" + b"".join(b"%d\n" % i for i in range(100)))

    page = html.unescape(preview_of(reader, ws, "t.csv"))

    assert "Showing the first 50 rows." in page


def test_a_json_file_is_pretty_printed(reader: Client, ws: Workspace) -> None:
    put_file(ws, "d.json", json.dumps({"a": 1, "b": [1, 2]}, separators=(",", ":")).encode())

    page = html.unescape(preview_of(reader, ws, "d.json"))

    assert '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}' in page


def test_text_is_escaped_not_run(reader: Client, ws: Workspace) -> None:
    put_file(ws, "evil.txt", b"<script>alert(1)</script>\n<img src=x onerror=alert(2)>")

    page = preview_of(reader, ws, "evil.txt")

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page


def test_an_html_file_name_cannot_break_out_of_the_page(reader: Client, ws: Workspace) -> None:
    put_file(ws, "<img src=x onerror=alert(1)>.txt", b"x")

    listing = reader.get(url("datastore-browse", ws)).content.decode()

    assert "<img src=x" not in listing
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in listing


def test_an_image_is_shown_from_the_api_inline(reader: Client, ws: Workspace) -> None:
    put_file(ws, "img/plot.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)

    page = preview_of(reader, ws, "img/plot.png")

    assert f'<img src="{file_url(ws, "img/plot.png")}?inline=1"' in page
    inline = reader.get(file_url(ws, "img/plot.png") + "?inline=1")
    assert inline.status_code == 200
    assert inline["Content-Type"] == "image/png"
    assert inline["Content-Disposition"] == "inline"


def test_a_binary_file_has_no_preview(reader: Client, ws: Workspace) -> None:
    put_file(ws, "model.pkl", b"\x80\x04\x95\x00\x00binary")

    page = preview_of(reader, ws, "model.pkl")

    assert "No preview" in page
    assert 'data-kind="binary"' in page
    assert 'id="truncated"' not in page


def test_a_text_file_over_64_kb_shows_the_truncation_note(reader: Client, ws: Workspace) -> None:
    line = b"0123456789abcdef" * 4 + b"\n"
    put_file(ws, "log.txt", line * 2000)  # 130 KB

    page = html.unescape(preview_of(reader, ws, "log.txt"))

    assert "Showing the first 64 KB of 127.0\xa0KB." in page
    shown = re.search(r'<pre[^>]*id="text-preview"><code>(.*?)</code></pre>', page, re.DOTALL)
    assert shown is not None
    assert len(shown.group(1)) <= PREVIEW_BYTES
    assert shown.group(1).endswith("0123456789abcdef")  # whole lines only


def test_a_5_gb_file_is_never_read_whole(
    reader: Client, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = put_file(ws, "huge.log", b"line of text\n" * 10_000)
    with big.open("r+b") as fh:
        fh.truncate(5 * 1024**3)  # sparse: 5 GB on paper, nothing on disk
    read: list[int] = []
    original = LocalStorage._chunks

    def counting(full: Path, offset: int, length: int | None) -> Iterator[bytes]:
        for chunk in original(full, offset, length):
            read.append(len(chunk))
            yield chunk

    monkeypatch.setattr(LocalStorage, "_chunks", staticmethod(counting))
    tracemalloc.start()
    try:
        page = html.unescape(preview_of(reader, ws, "huge.log"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert sum(read) <= PREVIEW_BYTES
    assert peak < 20 * 1024 * 1024
    assert "Showing the first 64 KB of 5.0\xa0GB." in page
    assert "line of text" in page
