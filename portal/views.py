"""Portal pages for workspaces, members and tokens. Thin: access helper, form, one service."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal import forms, services
from portal.access import Access, get_workspace_for_user, user_id_of
from portal.models import ApiToken, AuditEvent, Membership, Role, Workspace


def _actor(request: HttpRequest) -> services.Actor:
    return services.Actor(user=request.user, via="portal")


def _apply(form: Form, call: Any) -> Any:
    """Run a service; put its ValidationError on the form. Returns None when it failed."""
    try:
        return call()
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.error_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form.add_error(None, exc)
        return None


def _flash(request: HttpRequest, call: Any, success: str) -> bool:
    """Run a service for a POST-then-redirect action; its refusal becomes an error message."""
    try:
        call()
    except ValidationError as exc:
        for error in exc.messages:
            messages.error(request, error)
        return False
    messages.success(request, success)
    return True


def _page(
    request: HttpRequest,
    template: str,
    access: Access | None,
    *,
    status: int = 200,
    **context: Any,
) -> HttpResponse:
    if access is not None:
        context.setdefault("workspace", access.workspace)
        context.setdefault("access", access)
    return render(request, template, context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def workspace_list(request: HttpRequest) -> HttpResponse:
    form = forms.WorkspaceCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        workspace = _apply(
            form,
            lambda: services.create_workspace(
                actor=_actor(request),
                name=data["name"],
                slug=data["slug"] or None,
                description=data["description"],
            ),
        )
        if workspace is not None:
            messages.success(request, f"Workspace '{workspace.name}' created.")
            return redirect("workspace-home", workspace_id=workspace.uuid)
    memberships = (
        Membership.objects.filter(user_id=user_id_of(request))
        .select_related("workspace")
        .annotate(member_count=Count("workspace__memberships"))
        .order_by("workspace__name")
    )
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "portal/workspace_list.html",
        {"memberships": memberships, "form": form},
        status=status,
    )


@login_required
@require_GET
def workspace_home(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    member_count = Membership.objects.filter(workspace=access.workspace).count()
    return _page(request, "portal/workspace_home.html", access, member_count=member_count)


@login_required
@require_http_methods(["GET", "POST"])
def workspace_settings(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    workspace = access.workspace
    form = forms.WorkspaceUpdateForm(
        request.POST or None,
        initial={"name": workspace.name, "description": workspace.description},
    )
    delete_form = forms.WorkspaceDeleteForm()
    if request.method == "POST":
        access.require(Role.OWNER, "changing workspace settings")
        if form.is_valid():
            data = form.cleaned_data
            done = _apply(
                form,
                lambda: services.update_workspace(
                    actor=_actor(request),
                    workspace=workspace,
                    name=data["name"],
                    description=data["description"],
                ),
            )
            if done is not None:
                messages.success(request, "Workspace settings saved.")
                return redirect("workspace-settings", workspace_id=workspace.uuid)
    return _page(
        request,
        "portal/workspace_settings.html",
        access,
        form=form,
        delete_form=delete_form,
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def workspace_delete(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(
        request.user, workspace_id, role=Role.OWNER, action="deleting the workspace"
    )
    form = forms.WorkspaceDeleteForm(request.POST)
    if form.is_valid():
        name = access.workspace.name
        done = _apply(
            form,
            lambda: (
                services.delete_workspace(
                    actor=_actor(request),
                    workspace=access.workspace,
                    confirm=form.cleaned_data["confirm"],
                )
                or True
            ),
        )
        if done:
            messages.success(request, f"Workspace '{name}' deleted.")
            return redirect("workspace-list")
    return _page(
        request,
        "portal/workspace_settings.html",
        access,
        form=forms.WorkspaceUpdateForm(
            initial={"name": access.workspace.name, "description": access.workspace.description}
        ),
        delete_form=form,
        status=400,
    )


@login_required
@require_http_methods(["GET", "POST"])
def member_list(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    form = forms.MemberAddForm(request.POST or None)
    if request.method == "POST":
        access.require(Role.OWNER, "adding members")
        if form.is_valid():
            data = form.cleaned_data
            membership = _apply(
                form,
                lambda: services.add_member(
                    actor=_actor(request),
                    workspace=access.workspace,
                    username=data["username"],
                    role=data["role"],
                ),
            )
            if membership is not None:
                messages.success(request, f"Added {data['username']} as {data['role']}.")
                return redirect("member-list", workspace_id=access.workspace.uuid)
    members = Membership.objects.filter(workspace=access.workspace).select_related("user")
    return _page(
        request,
        "portal/member_list.html",
        access,
        members=members,
        form=form,
        roles=Role.choices,
        status=400 if request.method == "POST" else 200,
    )


def _membership(access: Access, username: str) -> Membership:
    membership = get_object_or_404(
        Membership.objects.select_related("user"),
        workspace=access.workspace,
        user__username=username,
    )
    membership.workspace = access.workspace
    return membership


@login_required
@require_POST
def member_role(request: HttpRequest, workspace_id: str, username: str) -> HttpResponse:
    access = get_workspace_for_user(
        request.user, workspace_id, role=Role.OWNER, action="changing roles"
    )
    membership = _membership(access, username)
    form = forms.MemberRoleForm(request.POST)
    if form.is_valid():
        done = _apply(
            form,
            lambda: services.change_member_role(
                actor=_actor(request), membership=membership, role=form.cleaned_data["role"]
            ),
        )
        if done is not None:
            messages.success(request, f"{username} is now {form.cleaned_data['role']}.")
            return redirect("member-list", workspace_id=access.workspace.uuid)
    for error in form.errors.values():
        messages.error(request, " ".join(str(e) for e in error))
    return redirect("member-list", workspace_id=access.workspace.uuid)


@login_required
@require_POST
def member_remove(request: HttpRequest, workspace_id: str, username: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    membership = _membership(access, username)
    leaving = membership.user_id == request.user.pk
    if not leaving:
        access.require(Role.OWNER, "removing members")
    success = f"You left '{access.workspace.name}'." if leaving else f"Removed {username}."
    left = _flash(
        request,
        lambda: services.remove_member(actor=_actor(request), membership=membership),
        success,
    )
    if left and leaving:
        return redirect("workspace-list")
    return redirect("member-list", workspace_id=access.workspace.uuid)


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    form = forms.TokenCreateForm(request.POST or None)
    created: tuple[ApiToken, str] | None = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        created = _apply(
            form,
            lambda: services.create_token(
                actor=_actor(request),
                workspace=access.workspace,
                name=data["name"],
                expires_at=data["expires_at"],
            ),
        )
        if created is not None:
            form = forms.TokenCreateForm()
    tokens = ApiToken.objects.filter(workspace=access.workspace).select_related("user")
    if not access.can(Role.OWNER):
        tokens = tokens.filter(user_id=user_id_of(request))
    response = _page(
        request,
        "portal/token_list.html",
        access,
        tokens=tokens,
        form=form,
        created_token=created[0] if created else None,
        created_secret=created[1] if created else None,
        status=400 if request.method == "POST" and created is None else 200,
    )
    # The secret is on this page once: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, workspace_id: str, token_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    tokens = ApiToken.objects.filter(workspace=access.workspace).select_related("user")
    if not access.can(Role.OWNER):
        tokens = tokens.filter(user_id=user_id_of(request))
    try:
        token = tokens.get(uuid=token_id)
    except (ApiToken.DoesNotExist, ValidationError):
        raise Http404("No such token.") from None
    token.workspace = access.workspace
    services.revoke_token(actor=_actor(request), token=token)
    messages.success(request, f"Token '{token.name}' revoked.")
    return redirect("token-list", workspace_id=access.workspace.uuid)


@login_required
@require_GET
def audit_list(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(
        request.user, workspace_id, role=Role.OWNER, action="reading the audit log"
    )
    form = forms.AuditFilterForm(request.GET or None)
    events: QuerySet[AuditEvent] = AuditEvent.objects.filter(workspace_uuid=access.workspace.uuid)
    if form.is_bound and form.is_valid():
        events = form.filter(events)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return _page(
        request,
        "portal/audit_list.html",
        access,
        form=form,
        page=page,
        query=query.urlencode(),
        status=400 if form.is_bound and not form.is_valid() else 200,
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 handler: JSON under /api/, the HTML page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found: no such URL in the API."}, status=404)
    return render(request, "404.html", {"detail": str(exception or "")}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"detail": "Server error: the failure was logged; try again or tell an admin."},
            status=500,
        )
    return render(request, "500.html", status=500)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "403.html", {"detail": str(exception or "")}, status=403)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return render(request, "400.html", status=400)


__all__ = ["Workspace"]
