"""The fixed cast, shared by every test: in workspace ``ws`` alice is owner, bob contributor and
carol reader; charlie is an outsider who owns workspace ``other``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from portal import services
from portal.models import Role, Workspace

PASSWORD = "correct-horse-battery-staple"


def make_user(username: str) -> Any:
    return get_user_model().objects.create_user(username=username, password=PASSWORD)


@pytest.fixture
def alice(db: Any) -> Any:
    return make_user("alice")


@pytest.fixture
def bob(db: Any) -> Any:
    return make_user("bob")


@pytest.fixture
def carol(db: Any) -> Any:
    return make_user("carol")


@pytest.fixture
def charlie(db: Any) -> Any:
    return make_user("charlie")


@pytest.fixture
def ws(alice: Any, bob: Any, carol: Any) -> Workspace:
    actor = services.Actor(user=alice)
    workspace = services.create_workspace(actor=actor, name="Team Forecast", slug="forecast")
    services.add_member(actor=actor, workspace=workspace, username="bob", role=Role.CONTRIBUTOR)
    services.add_member(actor=actor, workspace=workspace, username="carol", role=Role.READER)
    return workspace


@pytest.fixture
def other(charlie: Any) -> Workspace:
    return services.create_workspace(
        actor=services.Actor(user=charlie), name="Charlie's lab", slug="charlie-lab"
    )


@pytest.fixture
def api() -> Callable[[Any], APIClient]:
    """api(user) → a DRF client signed in with a session (None: anonymous)."""

    def make(user: Any = None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user=user)
        return client

    return make


@pytest.fixture
def make_token() -> Callable[..., str]:
    """make_token(user, workspace, expires_at=None) → the secret of a new token."""

    def make(user: Any, workspace: Workspace, expires_at: datetime | None = None) -> str:
        _, secret = services.create_token(
            actor=services.Actor(user=user),
            workspace=workspace,
            name=f"{user.username}-token",
            expires_at=expires_at,
        )
        return secret

    return make


@pytest.fixture
def bearer() -> Callable[[str], APIClient]:
    """bearer(secret) → a DRF client that sends ``Authorization: Bearer <secret>``."""

    def make(secret: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The production hasher spends ~0.3 s per password on purpose; tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
