"""The client SDK without a server: config discovery, config writing, DataReference, endpoint
mapping, error mapping, unsupported calls, and that it imports no Django."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

import pipelines.sdk.workspace as workspace_module
from pipelines.sdk import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    DataReference,
    Datastore,
    MillraceConnectionError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    ServicePrincipalAuthentication,
    TokenAuthentication,
    ValidationError,
    Workspace,
)
from pipelines.sdk._http import HttpClient, error_for
from pipelines.sdk.datastore import _local_target, blob_endpoint
from pipelines.sdk.workspace import find_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = "mlr_unit_test_secret_do_not_leak_0123456789"
WS_DATA = {
    "id": "6f1c1f3e-9a43-4c1b-8d1e-1d2c3b4a5f60",
    "name": "Team Forecast",
    "slug": "forecast",
    "description": "",
    "role": "owner",
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MILLRACE_URL", raising=False)
    monkeypatch.delenv("MILLRACE_TOKEN", raising=False)


def offline_workspace(url: str = "http://127.0.0.1:8000") -> Workspace:
    return Workspace._from_data(HttpClient(url, SECRET), WS_DATA)


def offline_datastore(name: str = "workspaceblobstore") -> Datastore:
    return Datastore._from_data(offline_workspace(), {"name": name, "kind": "local"})


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def fake_lookup(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the one server call of Workspace(...) and record what it was asked."""
    calls: list[dict[str, Any]] = []

    def lookup(client: HttpClient, *, name: str | None, workspace_id: str | None) -> Any:
        calls.append(
            {
                "url": client.base_url,
                "auth": client._session.headers["Authorization"],
                "name": name,
                "id": workspace_id,
            }
        )
        return WS_DATA

    monkeypatch.setattr(workspace_module, "_lookup", lookup)
    return calls


# ----- config discovery -----------------------------------------------------------------------


def test_it_finds_the_config_in_a_parents_azureml_folder(tmp_path, monkeypatch):
    config = write_json(tmp_path / "project" / ".azureml" / "config.json", {"url": "http://x"})
    deep = tmp_path / "project" / "src" / "steps"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_config() == config.resolve()


def test_it_finds_a_plain_config_json_in_a_parent(tmp_path, monkeypatch):
    config = write_json(tmp_path / "project" / "config.json", {"url": "http://x"})
    (tmp_path / "project" / "src").mkdir()
    monkeypatch.chdir(tmp_path / "project" / "src")
    assert find_config() == config.resolve()


def test_the_nearest_folder_wins_and_azureml_first_at_one_level(tmp_path):
    write_json(tmp_path / ".azureml" / "config.json", {"url": "http://far"})
    near_plain = write_json(tmp_path / "a" / "config.json", {"url": "http://plain"})
    assert find_config(tmp_path / "a") == near_plain.resolve()
    near_azureml = write_json(tmp_path / "a" / ".azureml" / "config.json", {"url": "http://az"})
    assert find_config(tmp_path / "a") == near_azureml.resolve()


def test_an_explicit_path_may_be_a_file_of_any_name(tmp_path):
    config = write_json(tmp_path / "elsewhere" / "team.json", {"url": "http://x"})
    assert find_config(config) == config.resolve()


def test_an_explicit_folder_is_searched_from_there(tmp_path, monkeypatch):
    config = write_json(tmp_path / "proj" / ".azureml" / "config.json", {"url": "http://x"})
    (tmp_path / "proj" / "nb").mkdir()
    monkeypatch.chdir(tmp_path)  # the current folder has no config: the path must be used
    assert find_config(tmp_path / "proj" / "nb") == config.resolve()


def test_a_custom_file_name_is_looked_for(tmp_path):
    config = write_json(tmp_path / ".azureml" / "staging.json", {"url": "http://x"})
    write_json(tmp_path / ".azureml" / "config.json", {"url": "http://other"})
    assert find_config(tmp_path, "staging.json") == config.resolve()


def test_a_missing_config_says_where_it_looked(tmp_path, monkeypatch):
    start = tmp_path / "empty" / "deeper"
    start.mkdir(parents=True)
    monkeypatch.chdir(start)
    with pytest.raises(ConfigurationError) as caught:
        Workspace.from_config()
    message = str(caught.value)
    assert str(start.resolve()) in message
    assert ".azureml/config.json" in message
    assert "parents" in message


def test_a_path_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match="nowhere"):
        Workspace.from_config(path=tmp_path / "nowhere")


def test_from_config_uses_the_file_and_the_token_from_the_environment(
    tmp_path, monkeypatch, fake_lookup
):
    write_json(
        tmp_path / ".azureml" / "config.json",
        {"workspace_name": "forecast", "url": "http://10.0.0.5:8000/"},
    )
    monkeypatch.setenv("MILLRACE_TOKEN", SECRET)
    ws = Workspace.from_config(path=tmp_path)
    assert fake_lookup == [
        {
            "url": "http://10.0.0.5:8000",
            "auth": f"Bearer {SECRET}",
            "name": "forecast",
            "id": None,
        }
    ]
    assert (ws.name, ws.friendly_name, ws.id) == ("forecast", "Team Forecast", WS_DATA["id"])


def test_millrace_url_overrides_the_files_url_and_a_workspace_id_is_used(
    tmp_path, monkeypatch, fake_lookup
):
    write_json(tmp_path / "config.json", {"workspace_id": WS_DATA["id"], "url": "http://old:1"})
    monkeypatch.setenv("MILLRACE_URL", "http://new:2")
    Workspace.from_config(path=tmp_path / "config.json", auth=TokenAuthentication(SECRET))
    assert fake_lookup[0]["url"] == "http://new:2"
    assert fake_lookup[0]["id"] == WS_DATA["id"]


def test_a_token_in_the_file_works_but_warns_and_the_environment_wins(
    tmp_path, monkeypatch, fake_lookup
):
    config = write_json(tmp_path / "config.json", {"url": "http://x:1", "token": "mlr_in_file"})
    with pytest.warns(UserWarning, match="MILLRACE_TOKEN"):
        Workspace.from_config(path=config)
    assert fake_lookup[-1]["auth"] == "Bearer mlr_in_file"
    monkeypatch.setenv("MILLRACE_TOKEN", SECRET)
    with pytest.warns(UserWarning):
        Workspace.from_config(path=config)
    assert fake_lookup[-1]["auth"] == f"Bearer {SECRET}"


def test_a_config_without_url_or_token_says_what_is_missing(tmp_path, monkeypatch):
    config = write_json(tmp_path / "config.json", {"workspace_name": "forecast"})
    with pytest.raises(ConfigurationError, match="MILLRACE_URL"):
        Workspace.from_config(path=config)
    monkeypatch.setenv("MILLRACE_URL", "http://x:1")
    with pytest.raises(ConfigurationError, match="MILLRACE_TOKEN"):
        Workspace.from_config(path=config)


def test_get_without_url_names_the_variable():
    with pytest.raises(ConfigurationError, match="MILLRACE_URL"):
        Workspace.get("forecast", token=SECRET)


# ----- write_config -----------------------------------------------------------------------------


def test_write_config_omits_the_token_and_can_be_found_again(tmp_path, monkeypatch, fake_lookup):
    written = Path(offline_workspace("http://127.0.0.1:8000").write_config(path=tmp_path))
    assert written == tmp_path / ".azureml" / "config.json"
    text = written.read_text()
    assert SECRET not in text
    assert json.loads(text) == {
        "workspace_name": "forecast",
        "workspace_id": WS_DATA["id"],
        "url": "http://127.0.0.1:8000",
    }
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")
    monkeypatch.setenv("MILLRACE_TOKEN", SECRET)
    assert Workspace.from_config().name == "forecast"
    assert fake_lookup[0]["name"] == "forecast"


def test_write_config_into_an_azureml_folder_does_not_nest_it(tmp_path):
    target = tmp_path / ".azureml"
    written = offline_workspace().write_config(path=target, file_name="ws.json")
    assert Path(written) == target / "ws.json"


def test_secrets_stay_out_of_reprs():
    ws = offline_workspace()
    for text in (
        repr(ws),
        repr(ws._client),
        repr(offline_datastore()),
        repr(TokenAuthentication(SECRET)),
        repr(ServicePrincipalAuthentication(service_principal_password=SECRET)),
    ):
        assert SECRET not in text
        assert "mlr_" not in text
    header = ServicePrincipalAuthentication(service_principal_password=SECRET)
    assert header.get_authentication_header() == {"Authorization": f"Bearer {SECRET}"}


# ----- DataReference ----------------------------------------------------------------------------


def test_a_data_reference_mounts_by_default_and_switches_modes_as_copies():
    ds = offline_datastore()
    ref = ds.path("in/2026/")
    assert ref.mode == "mount"
    download = ref.as_download(path_on_compute="data", overwrite=True)
    assert (download.mode, download.path_on_compute, download.overwrite) == (
        "download",
        "data",
        True,
    )
    assert ref.mode == "mount" and ref.path_on_compute is None  # the original is unchanged
    assert download.data_reference_name == ref.data_reference_name
    assert download.as_mount().mode == "mount"
    assert ds.as_download().mode == "download"
    assert ds.as_mount()._to_spec()["path"] == ""


def test_an_unknown_mode_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match=r"'upload'.*'mount', 'download'"):
        DataReference(offline_datastore(), mode="upload")


def test_a_data_reference_is_named_like_azureml_does():
    ds = offline_datastore()
    assert DataReference(ds).data_reference_name == "workspaceblobstore"
    assert DataReference(ds, path_on_datastore="./").data_reference_name == "workspaceblobstore"
    generated = DataReference(ds, path_on_datastore="in/").data_reference_name
    assert (
        len(generated) == 32
        and generated != DataReference(ds, path_on_datastore="in/").data_reference_name
    )
    named = DataReference(ds, data_reference_name="raw", path_on_datastore="in/")
    assert str(named) == "$AZUREML_DATAREFERENCE_raw"
    assert "raw" in repr(named) and "workspaceblobstore" in repr(named) and "mount" in repr(named)


def test_path_joins_below_the_reference_and_the_spec_is_normalized():
    ds = offline_datastore()
    ref = DataReference(ds, data_reference_name="raw", path_on_datastore="/in/")
    child = ref.path("2026/a.csv", data_reference_name="a")
    assert child.path_on_datastore == "/in/2026/a.csv"
    assert child._to_spec() == {
        "datastore": "workspaceblobstore",
        "path": "in/2026/a.csv",
        "mode": "mount",
        "name": "a",
        "path_on_compute": None,
        "overwrite": False,
    }
    assert ref.path() is ref
    assert ref.path(".", data_reference_name="root").path_on_datastore is None
    with pytest.raises(ValueError, match=r"\.\."):
        DataReference(ds, path_on_datastore="in/../../etc")._to_spec()


# ----- endpoints, errors, unsupported calls -----------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "protocol", "expected"),
    [
        (None, None, ""),
        ("core.windows.net", None, "https://acct.blob.core.windows.net"),
        ("core.chinacloudapi.cn", "https", "https://acct.blob.core.chinacloudapi.cn"),
        ("core.windows.net", "http", "http://acct.blob.core.windows.net"),
        (
            "http://127.0.0.1:10000/devstoreaccount1/",
            None,
            "http://127.0.0.1:10000/devstoreaccount1",
        ),
        (
            "https://acct.privatelink.blob.core.windows.net",
            "http",
            "https://acct.privatelink.blob.core.windows.net",
        ),
    ],
)
def test_an_endpoint_suffix_becomes_the_blob_url(endpoint, protocol, expected):
    assert blob_endpoint("acct", endpoint, protocol) == expected


def test_an_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="ftp"):
        blob_endpoint("acct", "core.windows.net", "ftp")


def test_unsupported_calls_raise_naming_the_call():
    with pytest.raises(NotImplementedError, match=r"^Workspace\.list is not offered"):
        Workspace.list()
    with pytest.raises(NotImplementedError, match=r"Workspace\.delete"):
        offline_workspace().delete(delete_dependent_resources=True)
    with pytest.raises(NotImplementedError, match=r"Datastore\.register_azure_file_share"):
        Datastore.register_azure_file_share(offline_workspace(), "share", "s", "acct")
    with pytest.raises(NotImplementedError, match=r"DataReference\.as_upload"):
        offline_datastore().path("out/").as_upload()


def response(status: int, body: Any, url: str = "http://x/api/v1/thing/") -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made.url = url
    made.reason = "Reason"
    made._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return made


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (413, ServiceError),
        (502, ServiceError),
    ],
)
def test_server_errors_map_to_their_classes_with_the_servers_words(status, error):
    raised = error_for(response(status, {"detail": "Said the server."}))
    assert type(raised) is error
    assert str(raised) == "Said the server." and raised.status_code == status


def test_a_conflict_carries_its_path_and_a_validation_error_its_fields():
    conflict = error_for(response(409, {"detail": "'a/b' exists.", "path": "a/b"}))
    assert isinstance(conflict, ConflictError) and conflict.path == "a/b"
    invalid = error_for(response(400, {"detail": "Invalid input.", "fields": {"name": ["Bad."]}}))
    assert isinstance(invalid, ValidationError) and invalid.fields == {"name": ["Bad."]}


def test_a_body_that_is_not_json_still_gives_a_useful_message():
    raised = error_for(response(502, b"<html>Bad Gateway</html>"))
    assert isinstance(raised, ServiceError)
    assert "502" in str(raised) and "http://x/api/v1/thing/" in str(raised)
    assert "<html>" not in str(raised)


def test_an_unreachable_server_is_named_without_the_token():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", SECRET, timeout=(2.0, 2.0))
    with pytest.raises(MillraceConnectionError) as caught:
        client.get_json("me/")
    assert f"http://127.0.0.1:{port}/api/v1/me/" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


def test_a_bad_url_is_refused():
    with pytest.raises(ValueError, match="http"):
        HttpClient("127.0.0.1:8000", SECRET)
    assert HttpClient("http://h:1/api/v1/", SECRET).base_url == "http://h:1"


@pytest.mark.parametrize(
    "path", ["../evil", "a/../../evil", "/etc/passwd", "a//b", "a/./b", "a\\..\\b", ""]
)
def test_download_refuses_server_paths_that_would_escape(tmp_path, path):
    with pytest.raises(ServiceError, match="outside"):
        _local_target(os.path.realpath(tmp_path), path)


def test_download_refuses_a_path_through_a_symlink_out_of_the_target(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "link").symlink_to(outside)
    root = os.path.realpath(target)
    assert _local_target(root, "in/a.csv") == os.path.join(root, "in", "a.csv")
    with pytest.raises(ServiceError, match="outside"):
        _local_target(root, "link/a.csv")


def test_importing_the_sdk_imports_no_django_and_no_server_code():
    code = (
        "import pipelines.sdk, sys; "
        "assert 'django' not in sys.modules, 'django'; "
        "server = ('portal', 'runs', 'rest_framework'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in server]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("bad", ["mlr_abc\nnoise", "mlr_a b", "mlr_é"])
def test_a_mangled_token_is_a_configuration_error_not_a_connection_error(bad):
    from pipelines.sdk import TokenAuthentication
    from pipelines.sdk.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="copy it again") as caught:
        TokenAuthentication(bad).get_authentication_header()
    assert bad not in str(caught.value)


def test_surrounding_whitespace_around_a_token_is_dropped(monkeypatch):
    from pipelines.sdk import TokenAuthentication

    monkeypatch.setenv("MILLRACE_TOKEN", "  mlr_abc\n")
    assert TokenAuthentication().get_authentication_header() == {"Authorization": "Bearer mlr_abc"}
