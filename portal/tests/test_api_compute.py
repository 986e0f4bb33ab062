"""Compute targets through the REST API: owners manage them; bad input is a clear 400."""

from __future__ import annotations

import pytest

from portal.models import AuditEvent, ComputeTarget


def url(ws, rest=""):
    return f"/api/v1/workspaces/{ws.uuid}/compute/{rest}"


def test_every_workspace_has_a_local_target(api, ws, carol):
    body = api(carol).get(url(ws)).json()
    assert [(t["name"], t["kind"], t["queue"], t["builtin"]) for t in body["results"]] == [
        ("local", "local", "local", True)
    ]


def test_an_owner_adds_and_removes_a_docker_target(api, ws, alice):
    response = api(alice).post(
        url(ws), {"name": "gpu-cluster", "kind": "docker", "max_concurrency": 2}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["queue"] == "docker"
    assert AuditEvent.objects.filter(verb="compute.create", object_repr="gpu-cluster").exists()
    assert api(alice).delete(url(ws, "gpu-cluster/")).status_code == 204
    assert not ComputeTarget.objects.filter(name="gpu-cluster").exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x", "kind": "docker"}, "name"),
        ({"name": "bad_name!", "kind": "docker"}, "name"),
        ({"name": "ok-name", "kind": "kubernetes"}, "kind"),
        ({"name": "ok-name", "kind": "docker", "max_concurrency": 0}, "max_concurrency"),
        ({"name": "ok-name", "kind": "docker", "queue": "no spaces"}, "queue"),
        ({"name": "ok-name", "kind": "docker", "memory_mb": 1}, "memory_mb"),
        ({"name": "local", "kind": "local"}, "name"),
        ({"name": "ok-name", "kind": "docker", "gpus": 1}, "gpus"),
    ],
)
def test_bad_targets_are_400_and_store_nothing(api, ws, alice, payload, field):
    before = ComputeTarget.objects.count()
    response = api(alice).post(url(ws), payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert ComputeTarget.objects.count() == before


def test_the_builtin_target_cannot_be_removed(api, ws, alice):
    response = api(alice).delete(url(ws, "local/"))
    assert response.status_code == 400
    assert "comes with every workspace" in response.json()["detail"]
