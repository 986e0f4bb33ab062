"""The workspace domain: workspaces, memberships with roles, API tokens and the audit log."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    READER = "reader", "Reader"
    CONTRIBUTOR = "contributor", "Contributor"
    OWNER = "owner", "Owner"


ROLE_RANK = {Role.READER: 1, Role.CONTRIBUTOR: 2, Role.OWNER: 3}


def role_at_least(role: str, needed: str) -> bool:
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(needed)]


class WorkspaceQuerySet(models.QuerySet["Workspace"]):
    def for_user(self, user: Any, token: ApiToken | None = None) -> WorkspaceQuerySet:
        """Workspaces ``user`` belongs to; a token narrows this to the token's own workspace."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        qs = self.filter(memberships__user=user)
        if token is not None:
            qs = qs.filter(pk=token.workspace_id)
        return qs


class Workspace(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    description = models.TextField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="one_membership_per_user")
        ]
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.workspace}"


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """A personal token for one workspace. Only the SHA-256 of the secret is stored."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="tokens")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.is_expired:
            return "expired"
        return "active"


class AppendOnlyError(RuntimeError):
    pass


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("The audit log is append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("The audit log is append-only.")


class AuditEvent(models.Model):
    """Who did what to which object, and when. Append-only, also enforced by database triggers.

    The workspace and actor are kept as copies (not foreign keys) so the history outlives them.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    workspace_uuid = models.UUIDField(db_index=True)
    workspace_slug = models.CharField(max_length=50)
    actor_id = models.BigIntegerField(null=True)
    actor_username = models.CharField(max_length=150)
    via = models.CharField(max_length=16)  # portal, api, token, system
    verb = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    data = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workspace_uuid", "-created_at"])]

    def __str__(self) -> str:
        when = f"{self.created_at:%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.actor_username} {self.verb} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("The audit log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("The audit log is append-only.")


class DatastoreKind(models.TextChoices):
    LOCAL = "local", "Local folder"
    AZURE_BLOB = "azure_blob", "Azure Blob container"


class CredentialKind(models.TextChoices):
    NONE = "", "None (local folder)"
    PLATFORM = "platform", "The platform's storage account"
    ACCOUNT_KEY = "account_key", "Account key"
    SAS_TOKEN = "sas_token", "SAS token"
    CONNECTION_STRING = "connection_string", "Connection string"


FILESTORE = "workspacefilestore"
BLOBSTORE = "workspaceblobstore"
BUILTIN_DATASTORES = (FILESTORE, BLOBSTORE)


class Datastore(models.Model):
    """Named storage in a workspace. Credentials are encrypted (portal.lib.secrets_box) and
    never leave the server."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="datastores")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=DatastoreKind.choices)
    is_default = models.BooleanField(default=False)
    builtin = models.BooleanField(default=False)
    description = models.CharField(max_length=500, blank=True)
    container_name = models.CharField(max_length=63, blank=True)
    account_name = models.CharField(max_length=64, blank=True)
    endpoint = models.URLField(max_length=300, blank=True)
    credential_kind = models.CharField(
        max_length=20, choices=CredentialKind.choices, blank=True, default=""
    )
    sealed_credentials = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="datastore_name_unique"),
            models.UniqueConstraint(
                fields=["workspace"],
                condition=models.Q(is_default=True),
                name="one_default_datastore",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ComputeKind(models.TextChoices):
    LOCAL = "local", "Local processes"
    DOCKER = "docker", "Docker containers"


class ComputeTarget(models.Model):
    """A named pool that runs steps. Its steps go to the Celery queue ``queue``; workers serve
    queues with ``celery -A portal worker -Q <queue>``. ``max_concurrency`` bounds how many of
    its steps run at once (across all workers)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="compute_targets"
    )
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=ComputeKind.choices)
    queue = models.CharField(max_length=64)
    min_nodes = models.PositiveIntegerField(default=0)
    max_concurrency = models.PositiveIntegerField(default=4)
    vm_size = models.CharField(max_length=64, blank=True)
    cpu = models.FloatField(null=True, blank=True)
    memory_mb = models.PositiveIntegerField(null=True, blank=True)
    builtin = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="compute_name_unique")
        ]

    def __str__(self) -> str:
        return self.name
