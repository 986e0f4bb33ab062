"""Access rules in one place: who may see and change what in a workspace.

Outsiders get 404 (they must not learn that an object exists); members whose role is too low
get 403. Every lookup of a workspace object goes through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.core.exceptions import PermissionDenied
from django.http import Http404

from portal.models import ApiToken, Membership, Role, Workspace, role_at_least


@dataclass(frozen=True)
class Access:
    """A user's standing in one workspace."""

    workspace: Workspace
    membership: Membership
    token: ApiToken | None = None

    @property
    def role(self) -> str:
        return self.membership.role

    def can(self, role: str) -> bool:
        return role_at_least(self.role, role)

    def require(self, role: str, action: str) -> None:
        """Raise PermissionDenied (403) unless the member's role is at least ``role``."""
        if not self.can(role):
            raise PermissionDenied(
                f"You are a {self.role} in '{self.workspace.slug}'; "
                f"{action} needs the {Role(role).label.lower()} role."
            )


def get_access(user: Any, workspace_id: UUID | str, token: ApiToken | None = None) -> Access:
    """The user's access to a workspace by public id, or Http404 for outsiders and bad ids."""
    try:
        key = workspace_id if isinstance(workspace_id, UUID) else UUID(str(workspace_id))
    except ValueError:
        raise Http404("No such workspace.") from None
    workspace = Workspace.objects.for_user(user, token).filter(uuid=key).first()
    if workspace is None:
        raise Http404("No such workspace.")
    membership = Membership.objects.select_related("user").get(workspace=workspace, user=user)
    membership.workspace = workspace
    return Access(workspace=workspace, membership=membership, token=token)


def get_workspace_for_user(
    user: Any, workspace_id: UUID | str, *, role: str = Role.READER, action: str = "this"
) -> Access:
    access = get_access(user, workspace_id)
    access.require(role, action)
    return access


def user_id_of(request: Any) -> int:
    """The signed-in user's pk (views are behind login_required / IsAuthenticated)."""
    pk = request.user.pk
    if pk is None:
        raise PermissionDenied("Sign in first.")
    return int(pk)
