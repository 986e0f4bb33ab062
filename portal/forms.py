from __future__ import annotations

from django import forms
from django.db.models import QuerySet

from portal.models import AuditEvent, Role


class WorkspaceCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.CharField(
        max_length=50, required=False, help_text="Leave empty to derive it from the name."
    )
    description = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class WorkspaceUpdateForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class WorkspaceDeleteForm(forms.Form):
    confirm = forms.CharField(max_length=50, help_text="Type the workspace's slug to confirm.")


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.CONTRIBUTOR)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    expires_at = forms.DateTimeField(
        required=False,
        help_text="Optional, UTC, e.g. 2027-01-31 18:00.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )


class AuditFilterForm(forms.Form):
    """Filters for the audit log, shared by the page and the API."""

    verb = forms.CharField(
        max_length=64, required=False, help_text="Exact verb, or a prefix ending in '.'."
    )
    actor = forms.CharField(max_length=150, required=False)
    object_type = forms.CharField(max_length=64, required=False)
    since = forms.DateTimeField(required=False)
    until = forms.DateTimeField(required=False)

    def filter(self, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        data = self.cleaned_data
        if data.get("verb"):
            verb = data["verb"]
            queryset = (
                queryset.filter(verb__startswith=verb)
                if verb.endswith(".")
                else queryset.filter(verb=verb)
            )
        if data.get("actor"):
            queryset = queryset.filter(actor_username=data["actor"])
        if data.get("object_type"):
            queryset = queryset.filter(object_type=data["object_type"])
        if data.get("since"):
            queryset = queryset.filter(created_at__gte=data["since"])
        if data.get("until"):
            queryset = queryset.filter(created_at__lt=data["until"])
        return queryset
