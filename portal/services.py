"""Every write in the workspace domain. Each function is atomic and records an audit event.

Errors a user can fix raise django.core.exceptions.ValidationError keyed by the field at
fault; the API and the pages turn them into 400 responses and form errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.text import slugify

from portal.lib.tokens import digest_token, display_prefix, generate_token
from portal.models import ApiToken, AuditEvent, Membership, Role, Workspace

RESERVED_SLUGS = {"new", "api", "admin", "static", "login", "logout", "w", "ws"}


@dataclass(frozen=True)
class Actor:
    """Who performs a write and through what: the portal, the API with a session, or a token."""

    user: Any
    via: str = "portal"
    token: ApiToken | None = None

    @property
    def username(self) -> str:
        return self.user.get_username() if self.user is not None else "system"


SYSTEM = Actor(user=None, via="system")


def record_event(
    *,
    actor: Actor,
    workspace: Workspace,
    verb: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one entry to the workspace's audit log (inside the caller's transaction)."""
    if obj is not None:
        object_type = object_type or obj._meta.model_name or ""
        object_id = object_id or str(getattr(obj, "uuid", obj.pk))
        object_repr = object_repr or str(obj)[:200]
    payload = dict(data or {})
    if actor.token is not None:
        payload.setdefault("token", actor.token.name)
    return AuditEvent.objects.create(
        workspace_uuid=workspace.uuid,
        workspace_slug=workspace.slug,
        actor_id=actor.user.pk if actor.user is not None else None,
        actor_username=actor.username,
        via=actor.via,
        verb=verb,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        data=payload,
    )


def _clean_name(name: str, field: str = "name", max_length: int = 100) -> str:
    cleaned = " ".join((name or "").split())
    if not cleaned:
        raise ValidationError({field: "This field may not be blank."}, code="blank")
    if len(cleaned) > max_length:
        raise ValidationError(
            {field: f"Must be at most {max_length} characters (got {len(cleaned)})."},
            code="max_length",
        )
    return cleaned


def _clean_slug(slug: str | None, name: str) -> str:
    candidate = (slug if slug else slugify(name))[:50].strip("-")
    if slug and slug != slugify(slug):
        raise ValidationError(
            {"slug": "Use only lowercase letters, numbers, hyphens and underscores."},
            code="invalid",
        )
    if not candidate:
        raise ValidationError(
            {"slug": "Cannot make a slug from this name; give one with letters or numbers."},
            code="invalid",
        )
    if candidate in RESERVED_SLUGS:
        raise ValidationError({"slug": f"'{candidate}' is reserved; choose another."})
    if Workspace.objects.filter(slug=candidate).exists():
        raise ValidationError(
            {"slug": f"A workspace with slug '{candidate}' already exists; choose another."},
            code="unique",
        )
    return candidate


def create_workspace(
    *, actor: Actor, name: str, slug: str | None = None, description: str = ""
) -> Workspace:
    """Create a workspace with ``actor`` as its first owner."""
    name = _clean_name(name)
    slug = _clean_slug(slug, name)
    try:
        with transaction.atomic():
            workspace = Workspace.objects.create(
                name=name, slug=slug, description=description or "", created_by=actor.user
            )
            Membership.objects.create(workspace=workspace, user=actor.user, role=Role.OWNER)
            record_event(actor=actor, workspace=workspace, verb="workspace.create", obj=workspace)
    except IntegrityError:
        # Lost a race with a concurrent create of the same slug.
        raise ValidationError(
            {"slug": f"A workspace with slug '{slug}' already exists; choose another."},
            code="unique",
        ) from None
    return workspace


@transaction.atomic
def update_workspace(
    *, actor: Actor, workspace: Workspace, name: str | None = None, description: str | None = None
) -> Workspace:
    """Rename a workspace or change its description (the slug and UUID stay)."""
    changes: dict[str, Any] = {}
    if name is not None:
        name = _clean_name(name)
        if name != workspace.name:
            changes["name"] = {"from": workspace.name, "to": name}
            workspace.name = name
    if description is not None and description != workspace.description:
        if len(description) > 2000:
            raise ValidationError({"description": "Must be at most 2000 characters."})
        changes["description"] = {"changed": True}
        workspace.description = description
    if changes:
        workspace.save(update_fields=["name", "description"])
        record_event(
            actor=actor, workspace=workspace, verb="workspace.update", obj=workspace, data=changes
        )
    return workspace


@transaction.atomic
def delete_workspace(*, actor: Actor, workspace: Workspace, confirm: str) -> None:
    """Delete a workspace and everything in it. ``confirm`` must equal the workspace's slug."""
    if confirm != workspace.slug:
        raise ValidationError(
            {"confirm": f"Type the workspace's slug '{workspace.slug}' to confirm deletion."},
            code="confirm",
        )
    record_event(actor=actor, workspace=workspace, verb="workspace.delete", obj=workspace)
    workspace.delete()


def _lock_owners(workspace: Workspace) -> list[Membership]:
    # Lock the owner rows so two concurrent demotions cannot both see "another owner remains".
    return list(Membership.objects.select_for_update().filter(workspace=workspace, role=Role.OWNER))


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise ValidationError(
            {"role": f"'{role}' is not a role; use one of: {', '.join(Role.values)}."},
            code="invalid_choice",
        )
    return role


@transaction.atomic
def add_member(*, actor: Actor, workspace: Workspace, username: str, role: str) -> Membership:
    """Add an existing user to the workspace with ``role``."""
    _check_role(role)
    user_model = get_user_model()
    try:
        user = user_model.objects.get(username=username, is_active=True)
    except user_model.DoesNotExist:
        raise ValidationError(
            {"username": f"No active user named '{username}'."}, code="unknown_user"
        ) from None
    if Membership.objects.filter(workspace=workspace, user=user).exists():
        raise ValidationError(
            {"username": f"'{username}' is already a member; change their role instead."},
            code="unique",
        )
    try:
        with transaction.atomic():
            membership = Membership.objects.create(workspace=workspace, user=user, role=role)
    except IntegrityError:
        raise ValidationError(
            {"username": f"'{username}' is already a member; change their role instead."},
            code="unique",
        ) from None
    record_event(
        actor=actor,
        workspace=workspace,
        verb="member.add",
        obj=membership,
        object_repr=username,
        data={"role": role},
    )
    return membership


@transaction.atomic
def change_member_role(*, actor: Actor, membership: Membership, role: str) -> Membership:
    """Change a member's role; the last owner cannot be demoted."""
    _check_role(role)
    workspace = membership.workspace
    owners = _lock_owners(workspace)
    membership.refresh_from_db(fields=["role"])
    old = membership.role
    if old == role:
        return membership
    if old == Role.OWNER and len(owners) <= 1:
        raise ValidationError(
            {"role": "This is the workspace's last owner; make someone else owner first."},
            code="last_owner",
        )
    membership.role = role
    membership.save(update_fields=["role"])
    record_event(
        actor=actor,
        workspace=workspace,
        verb="member.role_change",
        obj=membership,
        object_repr=membership.user.get_username(),
        data={"from": old, "to": role},
    )
    return membership


@transaction.atomic
def remove_member(*, actor: Actor, membership: Membership) -> None:
    """Remove a member (or let a member leave); the last owner cannot be removed.

    The member's tokens for this workspace are revoked with the membership.
    """
    workspace = membership.workspace
    owners = _lock_owners(workspace)
    membership.refresh_from_db(fields=["role"])
    if membership.role == Role.OWNER and len(owners) <= 1:
        raise ValidationError(
            {"username": "This is the workspace's last owner; make someone else owner first."},
            code="last_owner",
        )
    username = membership.user.get_username()
    revoked = ApiToken.objects.active().filter(workspace=workspace, user=membership.user)
    revoked_count = revoked.update(revoked_at=timezone.now())
    record_event(
        actor=actor,
        workspace=workspace,
        verb="member.remove",
        obj=membership,
        object_repr=username,
        data={"role": membership.role, "tokens_revoked": revoked_count},
    )
    membership.delete()


@transaction.atomic
def create_token(
    *, actor: Actor, workspace: Workspace, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a personal token for ``actor.user`` in ``workspace``.

    Returns:
        The token row and its secret. The secret is never stored and cannot be shown again.
    """
    if actor.token is not None:
        raise PermissionDenied("A token cannot create tokens: sign in to the portal to create one.")
    name = _clean_name(name)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Must be in the future."}, code="past")
    secret = generate_token()
    token = ApiToken.objects.create(
        workspace=workspace,
        user=actor.user,
        name=name,
        prefix=display_prefix(secret),
        digest=digest_token(secret),
        expires_at=expires_at,
    )
    record_event(
        actor=actor,
        workspace=workspace,
        verb="token.create",
        obj=token,
        data={"expires_at": expires_at.isoformat() if expires_at else None},
    )
    return token, secret


@transaction.atomic
def revoke_token(*, actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke a token at once. Revoking an already revoked token changes nothing."""
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    token.refresh_from_db(fields=["revoked_at"])
    if updated:
        record_event(
            actor=actor,
            workspace=token.workspace,
            verb="token.revoke",
            obj=token,
            data={"owner": token.user.get_username()},
        )
    return token
