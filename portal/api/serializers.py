from __future__ import annotations

from typing import Any

from rest_framework import serializers

from portal.models import ApiToken, AuditEvent, Membership, Role, Workspace


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
    state = serializers.CharField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "user",
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
