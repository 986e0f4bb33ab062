"""Every write in the workspace domain. Each function is atomic and records an audit event.

Errors a user can fix raise django.core.exceptions.ValidationError keyed by the field at
fault; the API and the pages turn them into 400 responses and form errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.text import slugify

from portal.datastores import builtin_blobstore_fields, storage_for
from portal.lib.secrets_box import seal
from portal.lib.tokens import digest_token, display_prefix, generate_token
from portal.models import (
    BLOBSTORE,
    FILESTORE,
    ApiToken,
    AuditEvent,
    ComputeKind,
    ComputeTarget,
    CredentialKind,
    Datastore,
    DatastoreKind,
    Membership,
    Role,
    Workspace,
)
from portal.storage import Conflict, NotFound, StorageError, clean_path

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
            _create_builtin_datastores(workspace)
            ComputeTarget.objects.create(
                workspace=workspace,
                name="local",
                kind=ComputeKind.LOCAL,
                queue="local",
                builtin=True,
                max_concurrency=4,
            )
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


# --- Datastores -----------------------------------------------------------------------------

DATASTORE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")


def _create_builtin_datastores(workspace: Workspace) -> None:
    Datastore.objects.create(
        workspace=workspace,
        name=FILESTORE,
        kind=DatastoreKind.LOCAL,
        builtin=True,
        is_default=True,
        description="Files on the server's disk.",
    )
    Datastore.objects.create(
        workspace=workspace,
        name=BLOBSTORE,
        builtin=True,
        description="The workspace's blob store.",
        **builtin_blobstore_fields(workspace),
    )


def register_datastore(
    *,
    actor: Actor,
    workspace: Workspace,
    name: str,
    container_name: str,
    account_name: str = "",
    account_key: str = "",
    sas_token: str = "",
    connection_string: str = "",
    endpoint: str = "",
    description: str = "",
    overwrite: bool = False,
) -> Datastore:
    """Register an Azure Blob container as a datastore, after checking that the credentials
    reach it. Credentials are stored encrypted and never returned.

    Raises:
        ValidationError: a bad name or credentials, or the storage service refused (its reason
            is in the message); nothing is stored then.
    """
    if not isinstance(name, str) or not DATASTORE_NAME.match(name):
        raise ValidationError(
            {
                "name": "Use letters, digits and underscores (not starting with a digit), "
                "at most 255 characters."
            }
        )
    if not CONTAINER_NAME.match(container_name or ""):
        raise ValidationError(
            {
                "container_name": "An Azure container name has 3-63 lowercase letters, digits and "
                "single hyphens, starting and ending with a letter or digit."
            }
        )
    given = {
        k: v
        for k, v in (
            (CredentialKind.ACCOUNT_KEY, account_key),
            (CredentialKind.SAS_TOKEN, sas_token),
            (CredentialKind.CONNECTION_STRING, connection_string),
        )
        if v
    }
    if len(given) != 1:
        raise ValidationError(
            {"credentials": "Give exactly one of account_key, sas_token or connection_string."}
        )
    kind, secret = next(iter(given.items()))
    if kind != CredentialKind.CONNECTION_STRING and not ACCOUNT_NAME.match(account_name or ""):
        raise ValidationError(
            {"account_name": "An Azure storage account name has 3-24 lowercase letters and digits."}
        )
    if endpoint and not re.match(r"^https?://[^\s/]+", endpoint):
        raise ValidationError(
            {"endpoint": "Give a URL such as https://<account>.blob.core.windows.net."}
        )
    existing = Datastore.objects.filter(workspace=workspace, name=name).first()
    if existing is not None and (existing.builtin or not overwrite):
        raise ValidationError(
            {
                "name": f"A datastore named '{name}' already exists in this workspace."
                + ("" if existing.builtin else " Pass overwrite=true to replace its registration.")
            }
        )
    candidate = Datastore(
        workspace=workspace,
        name=name,
        kind=DatastoreKind.AZURE_BLOB,
        description=description,
        container_name=container_name,
        account_name=account_name,
        endpoint=endpoint,
        credential_kind=kind,
        sealed_credentials=seal({str(kind): secret}),
        created_by=actor.user,
    )
    # Check against the real service before anything is stored (outside the transaction:
    # a network call must not hold database locks).
    try:
        storage_for(candidate).check()
    except StorageError as exc:
        raise ValidationError({"credentials": f"The storage service refused: {exc}"}) from None
    with transaction.atomic():
        if existing is not None:
            candidate.pk = existing.pk
            candidate.uuid = existing.uuid
            candidate.is_default = existing.is_default
            candidate.created_at = existing.created_at
        candidate.save()
        record_event(
            actor=actor,
            workspace=workspace,
            verb="datastore.update" if existing else "datastore.register",
            obj=candidate,
            data={"container": container_name, "credential_kind": str(kind)},
        )
    return candidate


@transaction.atomic
def unregister_datastore(*, actor: Actor, datastore: Datastore) -> None:
    """Forget a registered datastore (its files stay where they are)."""
    if datastore.builtin:
        raise ValidationError(
            {"name": f"'{datastore.name}' comes with every workspace and cannot be unregistered."}
        )
    if datastore.is_default:
        raise ValidationError(
            {"name": f"'{datastore.name}' is the default datastore; make another default first."}
        )
    record_event(
        actor=actor, workspace=datastore.workspace, verb="datastore.unregister", obj=datastore
    )
    datastore.delete()


@transaction.atomic
def set_default_datastore(*, actor: Actor, datastore: Datastore) -> Datastore:
    """Make ``datastore`` the workspace's default (what get_default_datastore() returns)."""
    # Lock the workspace's datastores: two owners switching the default at once must not
    # trip the one-default constraint.
    list(Datastore.objects.select_for_update().filter(workspace=datastore.workspace))
    datastore.refresh_from_db(fields=["is_default"])
    if datastore.is_default:
        return datastore
    Datastore.objects.filter(workspace=datastore.workspace, is_default=True).update(
        is_default=False
    )
    Datastore.objects.filter(pk=datastore.pk).update(is_default=True)
    datastore.is_default = True
    record_event(
        actor=actor, workspace=datastore.workspace, verb="datastore.set_default", obj=datastore
    )
    return datastore


class UploadTooLarge(Exception):
    def __init__(self, limit: int, path: str | None = None) -> None:
        where = f"{path}: " if path else ""
        super().__init__(
            f"{where}The upload is larger than the limit of {limit:,} bytes "
            "(MILLRACE_MAX_UPLOAD_BYTES)."
        )
        self.limit = limit
        self.path = path


class _Limited:
    """Reads through to ``stream`` and fails once more than ``limit`` bytes went by."""

    def __init__(self, stream: Any, limit: int, path: str) -> None:
        self._stream = stream
        self._limit = limit
        self.path = path
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self.count += len(data)
        if self.count > self._limit:
            raise UploadTooLarge(self._limit, self.path)
        return data


def upload_to_datastore(
    *,
    actor: Actor,
    datastore: Datastore,
    path: str,
    stream: Any,
    overwrite: bool = False,
    length: int | None = None,
) -> Any:
    """Write one file, streamed, refusing more than MILLRACE_MAX_UPLOAD_BYTES.

    Returns the storage Entry. Raises storage Conflict / InvalidPath, UploadTooLarge.
    """
    path = clean_path(path)
    limit = settings.MILLRACE_MAX_UPLOAD_BYTES
    if length is not None and length > limit:
        raise UploadTooLarge(limit, path)
    entry = storage_for(datastore).write(
        path, _Limited(stream, limit, path), overwrite=overwrite, length=length
    )
    record_event(
        actor=actor,
        workspace=datastore.workspace,
        verb="datastore.upload",
        obj=datastore,
        data={"path": path, "size": entry.size, "overwrite": overwrite},
    )
    return entry


def upload_files_to_datastore(
    *,
    actor: Actor,
    datastore: Datastore,
    files: list[tuple[str, Any, int | None]],
    overwrite: bool = False,
) -> list[Any]:
    """Upload several files (``(path, stream, size)``) as one batch: every path, size and (with
    ``overwrite`` false) every existing target is checked before anything is written.

    Returns the storage Entries. Raises InvalidPath, UploadTooLarge, Conflict (naming the
    first path already there) or ValidationError (two files with one name).
    """
    limit = settings.MILLRACE_MAX_UPLOAD_BYTES
    targets = [(clean_path(path), stream, size) for path, stream, size in files]
    names = [path for path, _, _ in targets]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise ValidationError(
            {"files": f"Two of the files would both be written to '{duplicate}'."}
        )
    for path, _, size in targets:
        if size is not None and size > limit:
            raise UploadTooLarge(limit, path)
    if not overwrite:
        storage = storage_for(datastore)
        for path in names:
            try:
                storage.stat(path)
            except NotFound:
                continue
            raise Conflict(path)
    return [
        upload_to_datastore(
            actor=actor,
            datastore=datastore,
            path=path,
            stream=stream,
            overwrite=overwrite,
            length=size,
        )
        for path, stream, size in targets
    ]


def delete_datastore_path(*, actor: Actor, datastore: Datastore, path: str) -> int:
    """Delete a file, or a folder and everything below it. Returns how many files went."""
    path = clean_path(path)
    count = storage_for(datastore).delete(path)
    record_event(
        actor=actor,
        workspace=datastore.workspace,
        verb="datastore.delete_path",
        obj=datastore,
        data={"path": path, "files": count},
    )
    return count


# --- Compute targets ------------------------------------------------------------------------

COMPUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,31}$")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@transaction.atomic
def create_compute_target(
    *,
    actor: Actor,
    workspace: Workspace,
    name: str,
    kind: str,
    queue: str | None = None,
    max_concurrency: int = 4,
    min_nodes: int = 0,
    vm_size: str = "",
    cpu: float | None = None,
    memory_mb: int | None = None,
) -> ComputeTarget:
    """Add a compute target. Its steps go to Celery queue ``queue`` (default: the kind's
    name, which the embedded worker serves); ``max_concurrency`` bounds its running steps.

    Raises:
        ValidationError: a bad or taken name, kind, queue or size.
    """
    if not isinstance(name, str) or not COMPUTE_NAME.match(name):
        raise ValidationError(
            {"name": "2-32 letters, digits and hyphens, starting with a letter (as Azure ML)."}
        )
    if kind not in ComputeKind.values:
        raise ValidationError(
            {"kind": f"'{kind}' is not a kind; use one of: {', '.join(ComputeKind.values)}."}
        )
    queue = queue or kind
    if not QUEUE_NAME.match(queue):
        raise ValidationError({"queue": "Letters, digits, '.', '_' and '-' (at most 64)."})
    if not 1 <= max_concurrency <= 1000:
        raise ValidationError({"max_concurrency": "Must be between 1 and 1000."})
    if not 0 <= min_nodes <= max_concurrency:
        raise ValidationError({"min_nodes": "Must be between 0 and max_concurrency."})
    if cpu is not None and not 0 < cpu <= 256:
        raise ValidationError({"cpu": "Must be between 0 and 256 cores."})
    if memory_mb is not None and not 64 <= memory_mb <= 4 * 1024 * 1024:
        raise ValidationError({"memory_mb": "Must be between 64 MB and 4 TB."})
    if ComputeTarget.objects.filter(workspace=workspace, name=name).exists():
        raise ValidationError({"name": f"A compute target named '{name}' already exists."})
    target = ComputeTarget.objects.create(
        workspace=workspace,
        name=name,
        kind=kind,
        queue=queue,
        max_concurrency=max_concurrency,
        min_nodes=min_nodes,
        vm_size=vm_size or "",
        cpu=cpu,
        memory_mb=memory_mb,
    )
    record_event(
        actor=actor,
        workspace=workspace,
        verb="compute.create",
        obj=target,
        data={"kind": kind, "queue": queue, "max_concurrency": max_concurrency},
    )
    return target


@transaction.atomic
def delete_compute_target(*, actor: Actor, target: ComputeTarget) -> None:
    """Remove a compute target; refused while any of its steps is queued or running."""
    from runs.models import ACTIVE, StepRun

    if target.builtin:
        raise ValidationError({"name": f"'{target.name}' comes with every workspace."})
    if StepRun.objects.filter(compute_target=target, status__in=ACTIVE).exists():
        raise ValidationError(
            {"name": f"Steps are queued or running on '{target.name}'; cancel them first."}
        )
    record_event(actor=actor, workspace=target.workspace, verb="compute.delete", obj=target)
    target.delete()
