"""REST API for datastores and their files. Reading needs the reader role, writing files the
contributor role, and registering or unregistering datastores the owner role."""

from __future__ import annotations

import mimetypes
import re
from typing import Any
from urllib.parse import quote

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import services
from portal.api import serializers as s
from portal.api.views import WorkspaceScopedMixin, actor_for, validated
from portal.datastores import IMAGE_TYPES, storage_for
from portal.models import Datastore, Role
from portal.storage import Entry, clean_prefix

MAX_PAGE = 1000
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class LengthRequired(APIException):
    status_code = 411
    default_detail = "Send a Content-Length header with the upload."


def entry_data(entry: Entry) -> dict[str, Any]:
    return {
        "path": entry.path,
        "name": entry.name,
        "is_dir": entry.is_dir,
        "size": entry.size,
        "modified": entry.modified,
    }


def flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValidationError({name: [f"'{value}' is not a boolean; use true or false."]})
    return value in ("true", "1", "yes")


class DatastoreLookupMixin(WorkspaceScopedMixin):
    def datastore(self, name: str) -> Datastore:
        datastore = get_object_or_404(
            Datastore.objects.filter(workspace=self.access.workspace), name=name
        )
        datastore.workspace = self.access.workspace
        return datastore


class DatastoreViewSet(DatastoreLookupMixin, viewsets.GenericViewSet):
    """Datastores of a workspace (``workspacefilestore`` and ``workspaceblobstore`` always)."""

    serializer_class = s.DatastoreSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> Any:
        return Datastore.objects.filter(workspace=self.access.workspace)

    def list(self, request: Request, workspace_id: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.DatastoreSerializer(page, many=True).data)

    def retrieve(self, request: Request, workspace_id: str, name: str) -> Response:
        return Response(s.DatastoreSerializer(self.datastore(name)).data)

    @extend_schema(request=s.DatastoreRegisterSerializer, responses={201: s.DatastoreSerializer})
    def create(self, request: Request, workspace_id: str) -> Response:
        """Register an Azure Blob container (checked against the service first)."""
        self.access.require(Role.OWNER, "registering datastores")
        data = validated(s.DatastoreRegisterSerializer, request)
        datastore = services.register_datastore(
            actor=actor_for(request), workspace=self.access.workspace, **data
        )
        return Response(s.DatastoreSerializer(datastore).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.DatastoreUpdateSerializer, responses=s.DatastoreSerializer)
    def partial_update(self, request: Request, workspace_id: str, name: str) -> Response:
        """Make this datastore the workspace's default."""
        self.access.require(Role.OWNER, "changing the default datastore")
        datastore = self.datastore(name)
        validated(s.DatastoreUpdateSerializer, request)
        datastore = services.set_default_datastore(actor=actor_for(request), datastore=datastore)
        return Response(s.DatastoreSerializer(datastore).data)

    def destroy(self, request: Request, workspace_id: str, name: str) -> Response:
        """Unregister a datastore; its files are left where they are."""
        self.access.require(Role.OWNER, "unregistering datastores")
        services.unregister_datastore(actor=actor_for(request), datastore=self.datastore(name))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[
            OpenApiParameter("prefix", OpenApiTypes.STR, description="A folder, e.g. 'raw/2026/'"),
            OpenApiParameter("recursive", OpenApiTypes.BOOL),
            OpenApiParameter("after", OpenApiTypes.STR, description="next_after of the last page"),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
        responses=s.EntryPageSerializer,
    )
    @action(detail=True, methods=["get"])
    def paths(self, request: Request, workspace_id: str, name: str) -> Response:
        """Files and folders under a prefix, in name order, a page at a time."""
        datastore = self.datastore(name)
        prefix = clean_prefix(request.query_params.get("prefix", ""))
        after = request.query_params.get("after", "")
        try:
            page_size = int(request.query_params.get("page_size", 200))
        except ValueError:
            raise ValidationError({"page_size": ["Must be a whole number."]}) from None
        if not 1 <= page_size <= MAX_PAGE:
            raise ValidationError({"page_size": [f"Must be between 1 and {MAX_PAGE}."]})
        results: list[dict[str, Any]] = []
        more = False
        entries = storage_for(datastore).list(prefix, recursive=flag(request, "recursive"))
        for entry in entries:
            if after and entry.path <= after:
                continue
            if len(results) == page_size:
                more = True
                break
            results.append(entry_data(entry))
        return Response(
            {
                "prefix": prefix,
                "results": results,
                "next_after": results[-1]["path"] if more else None,
            }
        )

    @extend_schema(
        request={"multipart/form-data": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter("target_path", OpenApiTypes.STR),
            OpenApiParameter("overwrite", OpenApiTypes.BOOL),
        ],
        responses={201: s.UploadResultSerializer},
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser])
    def upload(self, request: Request, workspace_id: str, name: str) -> Response:
        """Upload files (multipart field ``files``, repeated) into ``target_path``."""
        self.access.require(Role.CONTRIBUTOR, "uploading files")
        datastore = self.datastore(name)
        overwrite = flag(request, "overwrite")
        base = clean_prefix(request.query_params.get("target_path", ""))
        files = request.FILES.getlist("files")
        if not files:
            raise ValidationError({"files": ["Attach at least one file in the 'files' field."]})
        done = services.upload_files_to_datastore(
            actor=actor_for(request),
            datastore=datastore,
            files=[(base + (upload.name or ""), upload, upload.size) for upload in files],
            overwrite=overwrite,
        )
        return Response({"uploaded": [entry_data(e) for e in done]}, status=status.HTTP_201_CREATED)


class DatastoreFileView(DatastoreLookupMixin, APIView):
    """One file: GET streams it (with Range support), PUT uploads the raw body, DELETE
    removes it (or a whole folder)."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, workspace_id: str, name: str, path: str) -> Any:
        storage = storage_for(self.datastore(name))
        entry = storage.stat(path)
        if entry.is_dir:
            raise ValidationError({"path": [f"'{entry.path}' is a folder; list it with /paths/."]})
        size = entry.size or 0
        start, end = 0, size - 1
        header = request.headers.get("Range", "")
        match = _RANGE.match(header) if header else None
        if match and size > 0:
            first, last = match.groups()
            if first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            elif last:
                start = max(0, size - int(last))
            if start >= size or start > end:
                response = Response(
                    {"detail": f"Range {header!r} is outside the file's {size} bytes."},
                    status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
                )
                response["Content-Range"] = f"bytes */{size}"
                return response
        length = end - start + 1 if size else 0
        chunks = storage.open_read(entry.path, offset=start, length=length) if length else iter(())
        streaming = StreamingHttpResponse(chunks, status=206 if match and size else 200)
        suffix = "." + entry.name.rsplit(".", 1)[-1].lower() if "." in entry.name else ""
        inline = flag(request, "inline") and suffix in IMAGE_TYPES
        if inline:
            streaming["Content-Type"] = IMAGE_TYPES[suffix]
            streaming["Content-Disposition"] = "inline"
        else:
            guessed = mimetypes.guess_type(entry.name)[0]
            streaming["Content-Type"] = guessed or "application/octet-stream"
            streaming["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(entry.name)}"
        streaming["Content-Length"] = str(length)
        streaming["Accept-Ranges"] = "bytes"
        streaming["X-Content-Type-Options"] = "nosniff"
        # Files are user content: never let a browser run them as a page of ours.
        streaming["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
        if match and size:
            streaming["Content-Range"] = f"bytes {start}-{end}/{size}"
        return streaming

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[OpenApiParameter("overwrite", OpenApiTypes.BOOL)],
        responses={201: s.EntrySerializer},
    )
    def put(self, request: Request, workspace_id: str, name: str, path: str) -> Response:
        self.access.require(Role.CONTRIBUTOR, "uploading files")
        datastore = self.datastore(name)
        raw = request.headers.get("Content-Length")
        if raw is None:
            raise LengthRequired()
        try:
            length = int(raw)
        except ValueError:
            raise ValidationError({"Content-Length": ["Must be a whole number."]}) from None
        entry = services.upload_to_datastore(
            actor=actor_for(request),
            datastore=datastore,
            path=path,
            stream=request._request,  # the raw body, read as a stream
            overwrite=flag(request, "overwrite"),
            length=length,
        )
        return Response(entry_data(entry), status=status.HTTP_201_CREATED)

    def delete(self, request: Request, workspace_id: str, name: str, path: str) -> Response:
        self.access.require(Role.CONTRIBUTOR, "deleting files")
        count = services.delete_datastore_path(
            actor=actor_for(request), datastore=self.datastore(name), path=path
        )
        return Response({"deleted": count})
