from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from portal.models import ApiToken, AuditEvent, Membership, Workspace


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "uuid", "created_at"]
    search_fields = ["name", "slug"]
    readonly_fields = ["uuid", "created_at"]
    inlines = [MembershipInline]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "workspace", "created_at", "expires_at", "revoked_at"]
    list_filter = ["workspace"]
    # The digest is not a secret, but nothing here may lead to one being typed in by hand.
    exclude = ["digest"]
    readonly_fields = ["uuid", "prefix", "user", "workspace", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "workspace_slug", "actor_username", "via", "verb", "object_repr"]
    list_filter = ["verb", "via"]
    search_fields = ["workspace_slug", "actor_username", "object_repr"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
