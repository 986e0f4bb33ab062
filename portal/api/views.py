"""REST API for workspaces, members, tokens and the audit log. Thin: look up, validate, call
one service, answer."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from portal import services
from portal.access import Access, get_access, user_id_of
from portal.api import serializers as s
from portal.forms import AuditFilterForm
from portal.models import ApiToken, AuditEvent, ComputeTarget, Membership, Role, Workspace


def actor_for(request: Request) -> services.Actor:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    return services.Actor(user=request.user, via="token" if token else "api", token=token)


def token_of(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


def parse_uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise Http404("Not found: the id is not a UUID.") from None


def validated(serializer_class: type[Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class WorkspaceViewSet(viewsets.GenericViewSet):
    """Workspaces the caller belongs to. A token sees only its own workspace."""

    lookup_field = "uuid"
    lookup_value_regex = "[^/]+"

    def _roles(self, request: Request) -> dict[int, str]:
        return dict(
            Membership.objects.filter(user_id=user_id_of(request)).values_list(
                "workspace_id", "role"
            )
        )

    @extend_schema(
        parameters=[OpenApiParameter("slug", OpenApiTypes.STR, description="Only this slug.")],
        responses=s.WorkspaceSerializer(many=True),
    )
    def list(self, request: Request) -> Response:
        qs = Workspace.objects.for_user(request.user, token_of(request)).order_by("name")
        if "slug" in request.query_params:
            qs = qs.filter(slug=request.query_params["slug"])
        page = self.paginate_queryset(qs)
        data = s.WorkspaceSerializer(page, many=True, context={"roles": self._roles(request)}).data
        return self.get_paginated_response(data)

    @extend_schema(request=s.WorkspaceCreateSerializer, responses={201: s.WorkspaceSerializer})
    def create(self, request: Request) -> Response:
        if token_of(request) is not None:
            raise PermissionDenied(
                "A token acts only in its own workspace and cannot create workspaces; "
                "sign in to the portal instead."
            )
        data = validated(s.WorkspaceCreateSerializer, request)
        workspace = services.create_workspace(
            actor=actor_for(request),
            name=data["name"],
            slug=data.get("slug") or None,
            description=data.get("description", ""),
        )
        body = s.WorkspaceSerializer(workspace, context={"roles": {workspace.pk: Role.OWNER}}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def _access(self, request: Request, uuid: str) -> Access:
        return get_access(request.user, uuid, token_of(request))

    @extend_schema(responses=s.WorkspaceSerializer)
    def retrieve(self, request: Request, uuid: str) -> Response:
        access = self._access(request, uuid)
        ctx = {"roles": {access.workspace.pk: access.role}}
        return Response(s.WorkspaceSerializer(access.workspace, context=ctx).data)

    @extend_schema(request=s.WorkspaceUpdateSerializer, responses=s.WorkspaceSerializer)
    def partial_update(self, request: Request, uuid: str) -> Response:
        access = self._access(request, uuid)
        access.require(Role.OWNER, "renaming the workspace")
        data = validated(s.WorkspaceUpdateSerializer, request)
        workspace = services.update_workspace(
            actor=actor_for(request),
            workspace=access.workspace,
            name=data.get("name"),
            description=data.get("description"),
        )
        ctx = {"roles": {workspace.pk: access.role}}
        return Response(s.WorkspaceSerializer(workspace, context=ctx).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "confirm", OpenApiTypes.STR, required=True, description="The workspace's slug."
            )
        ],
        responses={204: None},
    )
    def destroy(self, request: Request, uuid: str) -> Response:
        access = self._access(request, uuid)
        access.require(Role.OWNER, "deleting the workspace")
        services.delete_workspace(
            actor=actor_for(request),
            workspace=access.workspace,
            confirm=request.query_params.get("confirm", ""),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class WorkspaceScopedMixin:
    """Resolves ``self.access`` from the URL's workspace id before any handler runs."""

    access: Access
    kwargs: dict[str, Any]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self.access = get_access(request.user, kwargs["workspace_id"], token_of(request))


class MemberViewSet(WorkspaceScopedMixin, viewsets.GenericViewSet):
    """Members of a workspace. Everyone in it may read; owners add, change and remove.
    A member may remove themselves (leave)."""

    serializer_class = s.MemberSerializer
    lookup_field = "username"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> Any:
        return Membership.objects.filter(workspace=self.access.workspace).select_related("user")

    def get_object(self) -> Membership:
        membership = get_object_or_404(self.get_queryset(), user__username=self.kwargs["username"])
        membership.workspace = self.access.workspace
        return membership

    def list(self, request: Request, workspace_id: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.MemberSerializer(page, many=True).data)

    def retrieve(self, request: Request, workspace_id: str, username: str) -> Response:
        return Response(s.MemberSerializer(self.get_object()).data)

    @extend_schema(request=s.MemberCreateSerializer, responses={201: s.MemberSerializer})
    def create(self, request: Request, workspace_id: str) -> Response:
        self.access.require(Role.OWNER, "adding members")
        data = validated(s.MemberCreateSerializer, request)
        membership = services.add_member(
            actor=actor_for(request),
            workspace=self.access.workspace,
            username=data["username"],
            role=data["role"],
        )
        return Response(s.MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.MemberUpdateSerializer, responses=s.MemberSerializer)
    def partial_update(self, request: Request, workspace_id: str, username: str) -> Response:
        self.access.require(Role.OWNER, "changing roles")
        membership = self.get_object()
        data = validated(s.MemberUpdateSerializer, request)
        membership = services.change_member_role(
            actor=actor_for(request), membership=membership, role=data["role"]
        )
        return Response(s.MemberSerializer(membership).data)

    def destroy(self, request: Request, workspace_id: str, username: str) -> Response:
        membership = self.get_object()
        if membership.user_id != request.user.pk:
            self.access.require(Role.OWNER, "removing members")
        services.remove_member(actor=actor_for(request), membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenViewSet(WorkspaceScopedMixin, viewsets.GenericViewSet):
    """Personal API tokens in a workspace. Members see and revoke their own; owners see and
    revoke everyone's. Tokens are created only from a signed-in session."""

    serializer_class = s.TokenSerializer
    lookup_field = "uuid"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> Any:
        qs = ApiToken.objects.filter(workspace=self.access.workspace).select_related(
            "user", "workspace"
        )
        if not self.access.can(Role.OWNER):
            qs = qs.filter(user_id=user_id_of(self.request))
        return qs

    def get_object(self) -> ApiToken:
        token = get_object_or_404(self.get_queryset(), uuid=parse_uuid(self.kwargs["uuid"]))
        token.workspace = self.access.workspace
        return token

    def list(self, request: Request, workspace_id: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.TokenSerializer(page, many=True).data)

    def retrieve(self, request: Request, workspace_id: str, uuid: str) -> Response:
        return Response(s.TokenSerializer(self.get_object()).data)

    @extend_schema(request=s.TokenCreateSerializer, responses={201: s.TokenCreatedSerializer})
    def create(self, request: Request, workspace_id: str) -> Response:
        data = validated(s.TokenCreateSerializer, request)
        token, secret = services.create_token(
            actor=actor_for(request),
            workspace=self.access.workspace,
            name=data["name"],
            expires_at=data.get("expires_at"),
        )
        body = s.TokenCreatedSerializer(token, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.TokenSerializer, summary="Revoke a token (it stays listed).")
    def destroy(self, request: Request, workspace_id: str, uuid: str) -> Response:
        token = services.revoke_token(actor=actor_for(request), token=self.get_object())
        return Response(s.TokenSerializer(token).data)


class AuditViewSet(WorkspaceScopedMixin, viewsets.GenericViewSet):
    """The workspace's audit log, newest first (owners only)."""

    serializer_class = s.AuditEventSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("verb", OpenApiTypes.STR),
            OpenApiParameter("actor", OpenApiTypes.STR),
            OpenApiParameter("object_type", OpenApiTypes.STR),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
        ]
    )
    def list(self, request: Request, workspace_id: str) -> Response:
        self.access.require(Role.OWNER, "reading the audit log")
        form = AuditFilterForm(request.query_params)
        if not form.is_valid():
            raise ValidationError(
                {
                    name: [e["message"] for e in errs]
                    for name, errs in form.errors.get_json_data().items()
                }
            )
        qs = form.filter(AuditEvent.objects.filter(workspace_uuid=self.access.workspace.uuid))
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.AuditEventSerializer(page, many=True).data)


class MeView(APIView):
    """Who the caller is, and through which token."""

    @extend_schema(responses=s.MeSerializer)
    def get(self, request: Request) -> Response:
        token = token_of(request)
        workspaces = Workspace.objects.for_user(request.user, token)
        roles = dict(
            Membership.objects.filter(user_id=user_id_of(request)).values_list(
                "workspace_id", "role"
            )
        )
        return Response(
            {
                "username": request.user.get_username(),
                "full_name": getattr(request.user, "get_full_name", str)(),
                "token": s.TokenSerializer(token).data if token else None,
                "workspaces": s.WorkspaceSerializer(
                    workspaces, many=True, context={"roles": roles}
                ).data,
            }
        )


class ComputeTargetViewSet(WorkspaceScopedMixin, viewsets.GenericViewSet):
    """Compute targets of a workspace: members read, owners add and remove."""

    serializer_class = s.ComputeTargetSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> Any:
        return ComputeTarget.objects.filter(workspace=self.access.workspace)

    def get_object(self) -> ComputeTarget:
        target = get_object_or_404(self.get_queryset(), name=self.kwargs["name"])
        target.workspace = self.access.workspace
        return target

    def list(self, request: Request, workspace_id: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ComputeTargetSerializer(page, many=True).data)

    def retrieve(self, request: Request, workspace_id: str, name: str) -> Response:
        return Response(s.ComputeTargetSerializer(self.get_object()).data)

    @extend_schema(
        request=s.ComputeTargetCreateSerializer, responses={201: s.ComputeTargetSerializer}
    )
    def create(self, request: Request, workspace_id: str) -> Response:
        self.access.require(Role.OWNER, "adding compute targets")
        data = validated(s.ComputeTargetCreateSerializer, request)
        target = services.create_compute_target(
            actor=actor_for(request), workspace=self.access.workspace, **data
        )
        return Response(s.ComputeTargetSerializer(target).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, workspace_id: str, name: str) -> Response:
        self.access.require(Role.OWNER, "removing compute targets")
        services.delete_compute_target(actor=actor_for(request), target=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
