from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from portal.models import Workspace


def workspaces(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's workspaces, for the switcher in the base layout (lazy: one query,
    only when a template reads it)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"my_workspaces": []}
    return {"my_workspaces": Workspace.objects.for_user(user).only("uuid", "name", "slug")}
