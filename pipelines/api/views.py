"""REST API for snapshots (content-addressed source directories) and pipelines. Thin: look
up, validate, call one service, answer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines import services, snapshots
from pipelines.api import serializers as s
from pipelines.models import Pipeline, Snapshot, with_run_summary
from portal.api.views import WorkspaceScopedMixin, actor_for, parse_uuid, validated
from portal.models import Role
from runs.services import validate_pipeline


class SnapshotViewSet(WorkspaceScopedMixin, viewsets.GenericViewSet):
    """Source directories, stored file by file under each file's sha256: a client asks which
    hashes are missing, uploads only those, then commits the manifest."""

    lookup_field = "digest"
    lookup_value_regex = "[0-9a-f]{64}"
    serializer_class = s.SnapshotSerializer

    def get_queryset(self) -> QuerySet[Snapshot]:
        return Snapshot.objects.filter(workspace=self.access.workspace)

    @extend_schema(request=s.MissingRequestSerializer, responses=s.MissingSerializer)
    @action(detail=False, methods=["post"])
    def missing(self, request: Request, workspace_id: str) -> Response:
        """Which of these file hashes the workspace lacks."""
        self.access.require(Role.CONTRIBUTOR, "uploading snapshots")
        hashes = validated(s.MissingRequestSerializer, request)["hashes"]
        bad = [h for h in hashes if not snapshots.SHA256.match(h)]
        if bad:
            raise ValidationError(
                {"hashes": [f"Not a sha256 (64 lowercase hex digits): {bad[0]!r}."]}
            )
        return Response(
            {"missing": sorted(snapshots.missing_blobs(self.access.workspace, set(hashes)))}
        )

    @extend_schema(request=s.SnapshotCommitSerializer, responses={201: s.SnapshotSerializer})
    def create(self, request: Request, workspace_id: str) -> Response:
        """Commit a manifest whose files are all uploaded (idempotent: 200 if it exists)."""
        self.access.require(Role.CONTRIBUTOR, "uploading snapshots")
        manifest = validated(s.SnapshotCommitSerializer, request)["manifest"]
        snapshot, created = snapshots.commit_snapshot(self.access.workspace, manifest)
        return Response(
            s.SnapshotSerializer(snapshot).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(responses=s.SnapshotDetailSerializer)
    def retrieve(self, request: Request, workspace_id: str, digest: str) -> Response:
        return Response(
            s.SnapshotDetailSerializer(get_object_or_404(self.get_queryset(), digest=digest)).data
        )


class SnapshotBlobView(WorkspaceScopedMixin, APIView):
    """``PUT snapshots/blobs/<sha256>``: one file's bytes; kept only if they hash to it."""

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={201: None, 200: None},
    )
    def put(self, request: Request, workspace_id: str, sha256: str) -> Response:
        self.access.require(Role.CONTRIBUTOR, "uploading snapshots")
        raw = request.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else None
        except ValueError:
            raise ValidationError({"Content-Length": ["Must be a whole number."]}) from None
        stored = snapshots.store_blob(
            self.access.workspace,
            sha256,
            request._request,  # the raw body, read as a stream
            length,
            settings.MILLRACE_MAX_UPLOAD_BYTES,
        )
        return Response(
            {"sha256": sha256, "stored": stored},
            status=status.HTTP_201_CREATED if stored else status.HTTP_200_OK,
        )


class SnapshotFileView(WorkspaceScopedMixin, APIView):
    """``GET snapshots/<digest>/files/<path>``: one file of a snapshot."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(
        self, request: Request, workspace_id: str, digest: str, path: str
    ) -> StreamingHttpResponse:
        snapshot = get_object_or_404(Snapshot, workspace=self.access.workspace, digest=digest)
        entry = snapshot.manifest.get(path)
        if entry is None:
            raise NotFound(f"'{path}' is not in snapshot {digest[:12]}.")
        storage = snapshots.blob_storage(self.access.workspace)
        response = StreamingHttpResponse(
            storage.open_read(snapshots.blob_path(entry["sha256"])),
            content_type="application/octet-stream",
        )
        response["Content-Length"] = str(entry["size"])
        response["Content-Disposition"] = "attachment"
        response["X-Content-Type-Options"] = "nosniff"
        return response


class PipelineViewSet(WorkspaceScopedMixin, viewsets.GenericViewSet):
    """Pipelines: immutable graphs (format: runs/graph.py). Storing the same graph again
    answers the stored pipeline."""

    lookup_field = "uuid"
    lookup_value_regex = "[^/]+"
    serializer_class = s.PipelineSerializer
    ORDERINGS = ("name", "-name", "created_at", "-created_at", "step_count", "-step_count")

    def get_queryset(self) -> QuerySet[Pipeline]:
        return with_run_summary(
            Pipeline.objects.filter(workspace=self.access.workspace)
        ).select_related("created_by")

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "search", OpenApiTypes.STR, description="Name or description contains."
            ),
            OpenApiParameter("ordering", OpenApiTypes.STR, enum=ORDERINGS),
        ],
        responses=s.PipelineSerializer(many=True),
    )
    def list(self, request: Request, workspace_id: str) -> Response:
        qs = self.get_queryset()
        search = request.query_params.get("search", "").strip()
        if search:
            qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
        ordering = request.query_params.get("ordering", "-created_at")
        if ordering not in self.ORDERINGS:
            raise ValidationError({"ordering": [f"One of: {', '.join(self.ORDERINGS)}."]})
        page = self.paginate_queryset(qs.order_by(ordering, "-id"))
        return self.get_paginated_response(s.PipelineSerializer(page, many=True).data)

    @extend_schema(responses=s.PipelineDetailSerializer)
    def retrieve(self, request: Request, workspace_id: str, uuid: str) -> Response:
        pipeline = get_object_or_404(self.get_queryset(), uuid=parse_uuid(uuid))
        return Response(s.PipelineDetailSerializer(pipeline).data)

    @extend_schema(request=s.PipelineCreateSerializer, responses={201: s.PipelineDetailSerializer})
    def create(self, request: Request, workspace_id: str) -> Response:
        self.access.require(Role.CONTRIBUTOR, "creating pipelines")
        data = validated(s.PipelineCreateSerializer, request)
        pipeline, created = services.create_pipeline(
            actor=actor_for(request), workspace=self.access.workspace, **data
        )
        pipeline = self.get_queryset().get(pk=pipeline.pk)
        return Response(
            s.PipelineDetailSerializer(pipeline).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(request=s.ValidateRequestSerializer, responses=s.ValidSerializer)
    @action(detail=False, methods=["post"])
    def validate(self, request: Request, workspace_id: str) -> Response:
        """Check a graph and parameter values; 400 lists every problem. Stores nothing."""
        data: dict[str, Any] = validated(s.ValidateRequestSerializer, request)
        local = data.get("snapshots")
        if local is not None and not (
            isinstance(local, dict)
            and all(
                isinstance(v, list) and all(isinstance(p, str) for p in v) for v in local.values()
            )
        ):
            raise ValidationError({"snapshots": ["Give an object of digest → list of file paths."]})
        parameters = data.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ValidationError({"parameters": ["Give an object of name → value."]})
        validate_pipeline(self.access.workspace, data["graph"], parameters, local)
        return Response({"valid": True, "steps": len(data["graph"]["steps"])})
