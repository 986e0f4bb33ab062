from __future__ import annotations

from typing import Any

from rest_framework import serializers

from portal.datastores import describe_backing
from portal.models import (
    ApiToken,
    AuditEvent,
    ComputeKind,
    ComputeTarget,
    Datastore,
    Membership,
    Role,
    Workspace,
)


class StrictSerializer(serializers.Serializer):
    """Rejects keys it does not know, so a typo ("rol") is an error, not a silent no-op."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                known = ", ".join(sorted(n for n, f in self.fields.items() if not f.read_only))
                raise serializers.ValidationError(
                    {key: [f"Unknown field; this endpoint accepts: {known}."] for key in unknown}
                )
        return super().to_internal_value(data)


class WorkspaceSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    role = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["id", "name", "slug", "description", "created_at", "role"]

    def get_role(self, workspace: Workspace) -> str | None:
        roles: dict[int, str] = self.context.get("roles", {})
        return roles.get(workspace.pk)


class WorkspaceCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.CharField(max_length=50, required=False, allow_blank=True)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class WorkspaceUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class MemberSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    full_name = serializers.CharField(source="user.get_full_name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "full_name", "role", "created_at"]


class MemberCreateSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class TokenSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    user = serializers.CharField(source="user.username", read_only=True)
    workspace = serializers.UUIDField(source="workspace.uuid", read_only=True)
    state = serializers.CharField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "user",
            "workspace",
            "state",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.SerializerMethodField(
        help_text="The secret. Shown only in this response; store it now."
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]

    def get_token(self, obj: ApiToken) -> str:
        return str(self.context["secret"])


class TokenCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class AuditEventSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    actor = serializers.CharField(source="actor_username", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "via",
            "verb",
            "object_type",
            "object_id",
            "object_repr",
            "data",
        ]


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    full_name = serializers.CharField()
    token = TokenSerializer(allow_null=True)
    workspaces = WorkspaceSerializer(many=True)


class DatastoreSerializer(serializers.ModelSerializer):
    """A datastore as the API shows it: never any credential."""

    id = serializers.UUIDField(source="uuid", read_only=True)
    backing = serializers.SerializerMethodField()

    class Meta:
        model = Datastore
        fields = [
            "id",
            "name",
            "kind",
            "is_default",
            "builtin",
            "description",
            "container_name",
            "account_name",
            "endpoint",
            "credential_kind",
            "backing",
            "created_at",
        ]

    def get_backing(self, datastore: Datastore) -> str:
        return describe_backing(datastore)


class DatastoreRegisterSerializer(StrictSerializer):
    name = serializers.CharField(max_length=255)
    container_name = serializers.CharField(max_length=63)
    account_name = serializers.CharField(max_length=64, required=False, allow_blank=True)
    account_key = serializers.CharField(
        max_length=200, required=False, allow_blank=True, write_only=True
    )
    sas_token = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, write_only=True
    )
    connection_string = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, write_only=True
    )
    endpoint = serializers.URLField(max_length=300, required=False, allow_blank=True)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    overwrite = serializers.BooleanField(required=False, default=False)


class DatastoreUpdateSerializer(StrictSerializer):
    is_default = serializers.BooleanField()

    def validate_is_default(self, value: bool) -> bool:
        if not value:
            raise serializers.ValidationError(
                "A workspace always has a default: set is_default=true on another datastore."
            )
        return value


class EntrySerializer(serializers.Serializer):
    path = serializers.CharField()
    name = serializers.CharField()
    is_dir = serializers.BooleanField()
    size = serializers.IntegerField(allow_null=True)
    modified = serializers.DateTimeField(allow_null=True)


class EntryPageSerializer(serializers.Serializer):
    prefix = serializers.CharField()
    results = EntrySerializer(many=True)
    next_after = serializers.CharField(allow_null=True)


class UploadResultSerializer(serializers.Serializer):
    uploaded = EntrySerializer(many=True)


class ComputeTargetSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = ComputeTarget
        fields = [
            "id",
            "name",
            "kind",
            "queue",
            "max_concurrency",
            "min_nodes",
            "vm_size",
            "cpu",
            "memory_mb",
            "builtin",
            "created_at",
        ]


class ComputeTargetCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=32)
    kind = serializers.ChoiceField(choices=ComputeKind.choices)
    queue = serializers.CharField(max_length=64, required=False, allow_blank=True)
    max_concurrency = serializers.IntegerField(required=False, default=4)
    min_nodes = serializers.IntegerField(required=False, default=0)
    vm_size = serializers.CharField(max_length=64, required=False, allow_blank=True)
    cpu = serializers.FloatField(required=False, allow_null=True)
    memory_mb = serializers.IntegerField(required=False, allow_null=True)
