"""The client SDK against a real server: pytest-django's ``live_server`` (a real HTTP server on
a thread) over the test database. Users, the workspace and tokens are made through
``portal.services``; everything else goes through ``pipelines.sdk`` only, over real sockets."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import pytest

import pipelines.sdk._http as http_module
from pipelines.sdk import (
    AuthenticationError,
    ConflictError,
    DataReference,
    Datastore,
    NotFoundError,
    PermissionDeniedError,
    Workspace,
)
from portal import services
from portal.models import ApiToken

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Sizes in bytes of the generated tree: nested folders, an empty file, a name that needs
# URL-quoting, and a few MB in all.
TREE = {
    "train/part-000.csv": 1_500_000,
    "train/part-001.csv": 1_200_000,
    "train/deep/er/still/weights.bin": 2_300_000,
    "val/part-000.csv": 300_000,
    "val/naïve data (v2).csv": 65_537,
    "README.txt": 1_234,
    "empty.txt": 0,
    "meta/labels.json": 4_096,
}


def make_tree(root: Path, sizes: dict[str, int], seed: int = 7) -> dict[str, str]:
    """Write files of random bytes; returns relative path → sha256."""
    rng = random.Random(seed)
    digests = {}
    for relative, size in sizes.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size)
        path.write_bytes(data)
        digests[relative] = hashlib.sha256(data).hexdigest()
    return digests


def sha256_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def _close_clients(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Close every SDK client after the test. The live server keeps a database connection per
    kept-alive HTTP connection; open ones would stop the test database from being dropped."""
    clients: list[http_module.HttpClient] = []
    original = http_module.HttpClient.__init__

    def init(self: http_module.HttpClient, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        clients.append(self)

    monkeypatch.setattr(http_module.HttpClient, "__init__", init)
    yield
    for client in clients:
        client.close()


@pytest.fixture
def data_root(tmp_path: Path, settings: Any) -> Path:
    settings.MILLRACE_DATA_ROOT = tmp_path / "server-data"
    return tmp_path / "server-data"


@pytest.fixture
def url(live_server: Any, data_root: Path) -> str:
    return str(live_server.url)


@pytest.fixture
def alice_token(ws: Any, alice: Any, make_token: Any) -> str:
    return str(make_token(alice, ws))


@pytest.fixture
def sdk_ws(url: str, alice_token: str) -> Workspace:
    return Workspace.get("forecast", url=url, token=alice_token)


def store_folder(data_root: Path, ws: Any, name: str = "workspacefilestore") -> Path:
    return data_root / "datastores" / str(ws.uuid) / name


def test_a_workspace_and_its_datastores_are_found_by_name(sdk_ws, ws):
    assert (sdk_ws.name, sdk_ws.friendly_name, sdk_ws.id) == (
        "forecast",
        "Team Forecast",
        str(ws.uuid),
    )
    assert sdk_ws.role == "owner"
    datastores = sdk_ws.datastores
    assert set(datastores) == {"workspacefilestore", "workspaceblobstore"}
    assert all(isinstance(d, Datastore) for d in datastores.values())
    default = sdk_ws.get_default_datastore()
    assert default.name == "workspacefilestore" and default.is_default
    assert default.datastore_type == "LocalFolder"
    assert Datastore(sdk_ws).name == "workspacefilestore"
    assert Datastore.get(sdk_ws, "workspaceblobstore").name == "workspaceblobstore"


def test_a_nested_folder_goes_up_and_comes_back_identical(sdk_ws, ws, data_root, tmp_path, capfd):
    source = tmp_path / "src"
    digests = make_tree(source, TREE)
    total_mb = sum(TREE.values()) / 1e6
    datastore = sdk_ws.get_default_datastore()
    capfd.readouterr()

    ref = datastore.upload(str(source), target_path="in/", show_progress=True)

    uploaded = capfd.readouterr().err
    assert f"Uploading {len(TREE)} files" in uploaded
    assert "100%" in uploaded
    assert f"{total_mb:.2f}M/{total_mb:.2f}M" in uploaded  # the bar counts bytes, to the total
    assert isinstance(ref, DataReference)
    assert (ref.datastore.name, ref.path_on_datastore, ref.mode) == (datastore.name, "in/", "mount")
    on_server = sha256_tree(store_folder(data_root, ws) / "in")
    assert on_server == digests

    target = tmp_path / "down"
    count = datastore.download(str(target), prefix="in/", show_progress=True)

    downloaded = capfd.readouterr().err
    assert count == len(TREE)
    assert f"Downloading {len(TREE)} files" in downloaded and "100%" in downloaded
    # azureml keeps the whole datastore path below target_path.
    assert sha256_tree(target / "in") == digests
    assert not [p for p in target.rglob("*") if p.name.endswith(".part")]


def test_download_skips_files_that_exist_unless_overwrite(sdk_ws, tmp_path):
    datastore = sdk_ws.get_default_datastore()
    make_tree(tmp_path / "src", {"a.txt": 10, "b/c.txt": 20})
    datastore.upload(tmp_path / "src", target_path="x", show_progress=False)
    target = tmp_path / "down"
    (target / "x").mkdir(parents=True)
    (target / "x" / "a.txt").write_bytes(b"mine")
    assert datastore.download(target, prefix="x/", show_progress=False) == 1
    assert (target / "x" / "a.txt").read_bytes() == b"mine"
    assert datastore.download(target, prefix="x/", overwrite=True, show_progress=False) == 2
    assert (target / "x" / "a.txt").read_bytes() == (tmp_path / "src" / "a.txt").read_bytes()


def test_a_prefix_matches_names_like_azureml_name_starts_with(sdk_ws, tmp_path):
    datastore = sdk_ws.get_default_datastore()
    make_tree(tmp_path / "src", {"raw/data-1.csv": 5, "raw/data-2/x.csv": 5, "raw/other.csv": 5})
    datastore.upload(tmp_path / "src", show_progress=False)
    target = tmp_path / "down"
    assert datastore.download(target, prefix="raw/data", show_progress=False) == 2
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.csv")) == [
        "raw/data-1.csv",
        "raw/data-2/x.csv",
    ]
    assert datastore.download(tmp_path / "none", prefix="missing/", show_progress=False) == 0


def test_overwrite_false_refuses_before_sending_anything(sdk_ws, ws, data_root, tmp_path):
    datastore = sdk_ws.get_default_datastore()
    source = tmp_path / "src"
    first = make_tree(source, {"a.csv": 1000, "sub/b.csv": 2000})
    datastore.upload(source, target_path="in", show_progress=False)
    (source / "sub" / "b.csv").write_bytes(b"changed")
    (source / "new.csv").write_bytes(b"new")

    with pytest.raises(ConflictError) as caught:
        datastore.upload(source, target_path="in", show_progress=False)

    assert caught.value.path == "in/a.csv"
    assert "in/a.csv" in str(caught.value) and "overwrite=True" in str(caught.value)
    assert sha256_tree(store_folder(data_root, ws) / "in") == first  # nothing changed, nothing new
    datastore.upload(source, target_path="in", overwrite=True, show_progress=False)
    on_server = store_folder(data_root, ws) / "in"
    assert (on_server / "sub" / "b.csv").read_bytes() == b"changed"
    assert (on_server / "new.csv").read_bytes() == b"new"


def test_upload_files_places_files_below_relative_root(sdk_ws, ws, data_root, tmp_path):
    datastore = sdk_ws.get_default_datastore()
    make_tree(tmp_path / "src", {"a/b/x.txt": 3, "a/y.txt": 4})
    files = [str(tmp_path / "src" / "a" / "b" / "x.txt"), str(tmp_path / "src" / "a" / "y.txt")]

    ref = datastore.upload_files(
        files, relative_root=str(tmp_path / "src"), target_path="more/", show_progress=False
    )
    datastore.upload_files(files, target_path="common", show_progress=False)

    root = store_folder(data_root, ws)
    assert ref.path_on_datastore == "more/"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "common/b/x.txt",
        "common/y.txt",
        "more/a/b/x.txt",
        "more/a/y.txt",
    ]
    with pytest.raises(ValueError, match="relative_root"):
        datastore.upload_files(files, relative_root=str(tmp_path / "src" / "a" / "b"))


def test_a_token_of_another_workspace_cannot_find_this_one(url, ws, other, charlie, make_token):
    secret = make_token(charlie, other)
    with pytest.raises(NotFoundError) as caught:
        Workspace.get("forecast", url=url, token=secret)
    assert "forecast" in str(caught.value) and "charlie-lab" in str(caught.value)
    with pytest.raises(NotFoundError):
        Workspace(url=url, token=secret, _workspace_id=str(ws.uuid))
    assert Workspace(url=url, token=secret).name == "charlie-lab"  # no name: the token's own


def test_a_readers_upload_is_refused_with_the_servers_message(url, ws, carol, make_token, tmp_path):
    reader_ws = Workspace.get("forecast", url=url, token=make_token(carol, ws))
    make_tree(tmp_path / "src", {"a.txt": 10})
    datastore = reader_ws.get_default_datastore()
    with pytest.raises(PermissionDeniedError) as caught:
        datastore.upload(tmp_path / "src", target_path="in", show_progress=False)
    assert str(caught.value) == (
        "You are a reader in 'forecast'; uploading files needs the contributor role."
    )
    assert caught.value.status_code == 403


def test_a_missing_datastore_is_named_with_the_ones_there_are(sdk_ws):
    with pytest.raises(NotFoundError) as caught:
        Datastore(sdk_ws, "nope")
    assert str(caught.value) == (
        "Datastore 'nope' was not found in workspace 'forecast'. "
        "It has: workspaceblobstore, workspacefilestore."
    )


def test_a_revoked_token_is_refused(url, ws, alice, alice_token, sdk_ws):
    token = ApiToken.objects.get(workspace=ws, user=alice)
    services.revoke_token(actor=services.Actor(user=alice), token=token)
    with pytest.raises(AuthenticationError, match="was revoked"):
        Workspace.get("forecast", url=url, token=alice_token)
    with pytest.raises(AuthenticationError):
        sdk_ws.datastores  # noqa: B018 - the property makes the request


def test_from_config_with_the_environment(url, ws, alice_token, sdk_ws, tmp_path, monkeypatch):
    written = sdk_ws.write_config(path=tmp_path / "project")
    assert alice_token not in Path(written).read_text()
    (tmp_path / "project" / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "project" / "notebooks")
    monkeypatch.setenv("MILLRACE_URL", url)
    monkeypatch.setenv("MILLRACE_TOKEN", alice_token)

    found = Workspace.from_config()

    assert (found.name, found.id, found.url) == ("forecast", str(ws.uuid), url)
    assert found.get_default_datastore().name == "workspacefilestore"
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text("{}")
    assert Workspace.from_config(tmp_path / "bare").name == "forecast"  # the token's own


def test_create_returns_an_existing_workspace_and_a_token_cannot_create_one(url, alice_token):
    assert (
        Workspace.create("forecast", exist_ok=True, url=url, token=alice_token).name == "forecast"
    )
    with pytest.raises(ConflictError, match="exist_ok"):
        Workspace.create("forecast", url=url, token=alice_token)
    with pytest.raises(PermissionDeniedError, match="cannot create workspaces"):
        Workspace.create("brand-new", url=url, token=alice_token)


def test_only_an_owner_changes_the_default_datastore(url, ws, bob, make_token, sdk_ws):
    contributor = Workspace.get("forecast", url=url, token=make_token(bob, ws))
    with pytest.raises(PermissionDeniedError, match="owner"):
        contributor.set_default_datastore("workspaceblobstore")
    sdk_ws.set_default_datastore("workspaceblobstore")
    assert sdk_ws.get_default_datastore().name == "workspaceblobstore"
    assert contributor.get_default_datastore().name == "workspaceblobstore"


def test_upload_streams_instead_of_reading_files_whole(sdk_ws, tmp_path, monkeypatch):
    # Every read of the upload body is bounded: a whole-file read would ask for the file's size.
    import pipelines.sdk.datastore as datastore_module

    reads: list[int] = []
    original = datastore_module._CountingReader.read

    def spy(self: Any, amount: int = -1) -> bytes:
        reads.append(amount)
        return original(self, amount)

    monkeypatch.setattr(datastore_module._CountingReader, "read", spy)
    size = 3 * 1024 * 1024
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(os.urandom(size))
    sdk_ws.get_default_datastore().upload(tmp_path / "src", target_path="big", show_progress=False)
    assert reads and all(0 < amount < size for amount in reads)


def test_register_azure_blob_container_on_azurite_then_round_trip_a_folder(sdk_ws, tmp_path, capfd):
    """The v1 call, against the Azurite that bin/test starts; the key never comes back."""
    from azure.storage.blob import BlobServiceClient

    conn = os.environ.get("MILLRACE_TEST_AZURITE_CONNECTION_STRING")
    if not conn:
        pytest.fail("MILLRACE_TEST_AZURITE_CONNECTION_STRING is not set: run bin/test.")
    parts = dict(p.split("=", 1) for p in conn.strip(";").split(";"))
    container = f"sdk-{random.randrange(16**10):010x}"
    service = BlobServiceClient.from_connection_string(conn)
    service.create_container(container)
    try:
        store = Datastore.register_azure_blob_container(
            workspace=sdk_ws,
            datastore_name="lake",
            container_name=container,
            account_name=parts["AccountName"],
            account_key=parts["AccountKey"],
            endpoint=parts["BlobEndpoint"],
            subscription_id="ignored",
            resource_group="ignored",
        )
        assert (store.name, store.datastore_type, store.container_name) == (
            "lake",
            "AzureBlob",
            container,
        )
        assert parts["AccountKey"] not in repr(vars(store))
        digests = make_tree(tmp_path / "src", {"a/b.csv": 70_000, "c.bin": 1_000_000})
        store.upload(src_dir=str(tmp_path / "src"), target_path="in", show_progress=True)
        names = sorted(b.name for b in service.get_container_client(container).list_blobs())
        assert names == ["in/a/b.csv", "in/c.bin"]
        assert (
            Datastore.get(sdk_ws, "lake").download(
                target_path=str(tmp_path / "back"), prefix="in/", show_progress=True
            )
            == 2
        )
        assert sha256_tree(tmp_path / "back" / "in") == digests
        assert "Uploading" in capfd.readouterr().err
    finally:
        service.delete_container(container)


def test_register_with_a_wrong_key_raises_the_services_reason(sdk_ws):
    conn = os.environ.get("MILLRACE_TEST_AZURITE_CONNECTION_STRING", "")
    parts = dict(p.split("=", 1) for p in conn.strip(";").split(";") if "=" in p)
    from pipelines.sdk import ValidationError

    with pytest.raises(ValidationError) as caught:
        Datastore.register_azure_blob_container(
            workspace=sdk_ws,
            datastore_name="lake",
            container_name="whatever",
            account_name=parts.get("AccountName", "devstoreaccount1"),
            account_key="d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==",
            endpoint=parts.get("BlobEndpoint", "http://127.0.0.1:9/x"),
        )
    assert "refused" in str(caught.value)
    assert "d3Jvbmcta2V5" not in str(caught.value)
