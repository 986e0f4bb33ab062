"""Datastores of the azure_blob kind through the REST API, on the Azurite that bin/test starts:
the platform's blob store per workspace, registering containers, and credentials that never
come back out."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
from django.core.files.uploadedfile import SimpleUploadedFile

from portal import datastores, services
from portal.models import AuditEvent, Datastore, Workspace

AZURITE_ENV = "MILLRACE_TEST_AZURITE_CONNECTION_STRING"


def azurite() -> dict[str, str]:
    conn = os.environ.get(AZURITE_ENV)
    if not conn:
        pytest.fail(f"{AZURITE_ENV} is not set: run the tests with bin/test, which starts Azurite.")
    parts = dict(p.split("=", 1) for p in conn.strip(";").split(";"))
    return {"connection_string": conn, **parts}


@pytest.fixture
def on_azure(settings: Any, tmp_path: Any) -> Iterator[dict[str, str]]:
    """The platform's blob account is Azurite: every new workspace's blob store lives there."""
    info = azurite()
    settings.MILLRACE_AZURE_STORAGE_CONNECTION_STRING = info["connection_string"]
    settings.MILLRACE_DATA_ROOT = tmp_path
    yield info


@pytest.fixture
def container(on_azure: dict[str, str]) -> Iterator[str]:
    service = BlobServiceClient.from_connection_string(on_azure["connection_string"])
    name = f"reg-{uuid.uuid4().hex[:12]}"
    service.create_container(name)
    yield name
    service.delete_container(name)


@pytest.fixture
def aws(on_azure: dict[str, str], alice: Any, bob: Any, carol: Any) -> Iterator[Workspace]:
    """`ws` from conftest, but created while the platform blob account is configured."""
    actor = services.Actor(user=alice)
    workspace = services.create_workspace(actor=actor, name="Azure team", slug="azure-team")
    services.add_member(actor=actor, workspace=workspace, username="bob", role="contributor")
    services.add_member(actor=actor, workspace=workspace, username="carol", role="reader")
    yield workspace
    service = BlobServiceClient.from_connection_string(on_azure["connection_string"])
    container_name = datastores.platform_container(workspace)
    if service.get_container_client(container_name).exists():
        service.delete_container(container_name)


def url(ws: Workspace, rest: str = "") -> str:
    return f"/api/v1/workspaces/{ws.uuid}/datastores/{rest}"


def body_of(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_the_workspace_blob_store_is_its_own_azure_container(api, aws, on_azure, bob):
    info = api(bob).get(url(aws, "workspaceblobstore/")).json()
    assert info["kind"] == "azure_blob"
    assert info["container_name"] == f"mlr-{aws.uuid.hex}"
    assert "Azure Blob Storage" in info["backing"]
    data = os.urandom(300_000)
    response = api(bob).put(
        url(aws, "workspaceblobstore/files/models/m.bin"),
        data=data,
        content_type="application/octet-stream",
    )
    assert response.status_code == 201, response.content
    got = body_of(api(bob).get(url(aws, "workspaceblobstore/files/models/m.bin")))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    # It really is in Azurite, in that container.
    service = BlobServiceClient.from_connection_string(on_azure["connection_string"])
    blob = service.get_blob_client(info["container_name"], "models/m.bin")
    assert blob.download_blob().readall() == data


def test_two_workspaces_never_share_a_blob_container(api, aws, on_azure, charlie):
    other = services.create_workspace(actor=services.Actor(user=charlie), name="Other")
    try:
        mine = Datastore.objects.get(workspace=aws, name="workspaceblobstore").container_name
        theirs = Datastore.objects.get(workspace=other, name="workspaceblobstore").container_name
        assert mine != theirs
        api(charlie).put(
            url(other, "workspaceblobstore/files/secret.txt"),
            data=b"theirs",
            content_type="application/octet-stream",
        )
        listing = api(charlie).get(url(aws, "workspaceblobstore/paths/?recursive=true"))
        assert listing.status_code == 404
    finally:
        service = BlobServiceClient.from_connection_string(on_azure["connection_string"])
        service.delete_container(datastores.platform_container(other))


def test_overwrite_conflicts_delete_and_multipart_on_azure(api, aws, bob):
    client = api(bob)
    path = url(aws, "workspaceblobstore/files/a/b.txt")
    assert client.put(path, data=b"1", content_type="text/plain").status_code == 201
    conflict = client.put(path, data=b"2", content_type="text/plain")
    assert conflict.status_code == 409
    assert conflict.json()["path"] == "a/b.txt"
    assert body_of(client.get(path)) == b"1"
    upload = client.post(
        url(aws, "workspaceblobstore/upload/?target_path=a/"),
        {"files": [SimpleUploadedFile("c.txt", b"C"), SimpleUploadedFile("d.txt", b"D")]},
        format="multipart",
    )
    assert upload.status_code == 201
    listing = client.get(url(aws, "workspaceblobstore/paths/?prefix=a/")).json()
    assert [e["name"] for e in listing["results"]] == ["b.txt", "c.txt", "d.txt"]
    assert client.delete(url(aws, "workspaceblobstore/files/a")).json() == {"deleted": 3}
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("form", ["account_key", "sas_token", "connection_string"])
def test_an_owner_registers_a_container_and_no_credential_ever_comes_back(
    api, aws, on_azure, container, alice, bob, form
):
    secret: str
    payload: dict[str, Any] = {"name": "lake", "container_name": container}
    endpoint = on_azure["BlobEndpoint"]
    if form == "account_key":
        secret = on_azure["AccountKey"]
        payload |= {
            "account_name": on_azure["AccountName"],
            "account_key": secret,
            "endpoint": endpoint,
        }
    elif form == "sas_token":
        from datetime import UTC, datetime, timedelta

        secret = generate_container_sas(
            on_azure["AccountName"],
            container,
            account_key=on_azure["AccountKey"],
            permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        payload |= {
            "account_name": on_azure["AccountName"],
            "sas_token": secret,
            "endpoint": endpoint,
        }
    else:
        secret = on_azure["connection_string"]
        payload |= {"connection_string": secret}
    key = on_azure["AccountKey"]
    bodies: list[bytes] = []

    def keep(response: Any) -> Any:
        bodies.append(body_of(response))
        return response

    created = keep(api(alice).post(url(aws), payload, format="json"))
    assert created.status_code == 201, created.content
    assert created.json()["credential_kind"] == form
    client = api(bob)
    keep(client.put(url(aws, "lake/files/x.csv"), data=b"a,b\n", content_type="text/csv"))
    assert keep(client.get(url(aws, "lake/files/x.csv"))).status_code == 200
    keep(client.get(url(aws)))
    keep(client.get(url(aws, "lake/")))
    keep(client.get(url(aws, "lake/paths/?recursive=true")))
    keep(client.put(url(aws, "lake/files/x.csv"), data=b"c", content_type="text/csv"))  # 409
    keep(client.get(url(aws, "lake/files/nope.csv")))  # 404
    keep(client.get(url(aws, "lake/files/../x")))  # 400
    keep(client.post(url(aws, "lake/upload/"), {"files": [SimpleUploadedFile("u", b"u")]}))
    keep(client.delete(url(aws, "lake/files/x.csv")))
    keep(api(alice).patch(url(aws, "lake/"), {"is_default": True}, format="json"))
    keep(api(alice).post(url(aws), payload, format="json"))  # duplicate name: 400
    keep(api(alice).get(f"/api/v1/workspaces/{aws.uuid}/audit/"))
    keep(api(alice).get("/api/schema/"))
    for body in bodies:
        text = body.decode("utf-8", errors="replace")
        assert secret not in text
        assert key not in text
    stored = Datastore.objects.get(workspace=aws, name="lake")
    assert secret not in stored.sealed_credentials
    assert all(secret not in str(e.data) for e in AuditEvent.objects.all())
    # The blob really went to the registered container.
    service = BlobServiceClient.from_connection_string(on_azure["connection_string"])
    names = [b.name for b in service.get_container_client(container).list_blobs()]
    assert names == ["u"]


def test_a_wrong_key_is_refused_with_the_services_reason_and_nothing_is_stored(
    api, aws, on_azure, container, alice
):
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
    response = api(alice).post(
        url(aws),
        {
            "name": "lake",
            "container_name": container,
            "account_name": on_azure["AccountName"],
            "account_key": wrong,
            "endpoint": on_azure["BlobEndpoint"],
        },
        format="json",
    )
    assert response.status_code == 400
    message = " ".join(response.json()["fields"]["credentials"])
    assert "refused" in message
    assert "authenticate" in message.lower() or "Authori" in message
    assert wrong not in response.content.decode()
    assert not Datastore.objects.filter(name="lake").exists()


def test_a_missing_container_is_refused_naming_it(api, aws, on_azure, alice):
    response = api(alice).post(
        url(aws),
        {
            "name": "lake",
            "container_name": "no-such-container",
            "connection_string": on_azure["connection_string"],
        },
        format="json",
    )
    assert response.status_code == 400
    assert "ContainerNotFound" in response.json()["detail"]


def test_a_reader_cannot_register_and_a_contributor_cannot_unregister(
    api, aws, on_azure, container, alice, bob, carol
):
    payload = {
        "name": "lake",
        "container_name": container,
        "connection_string": on_azure["connection_string"],
    }
    assert api(carol).post(url(aws), payload, format="json").status_code == 403
    assert api(bob).post(url(aws), payload, format="json").status_code == 403
    assert api(alice).post(url(aws), payload, format="json").status_code == 201
    assert api(bob).delete(url(aws, "lake/")).status_code == 403
    assert api(alice).delete(url(aws, "lake/")).status_code == 204
    assert not Datastore.objects.filter(name="lake").exists()
