"""Portal pages for datastores: the list (owners register, set the default, unregister) and a
file browser (everyone reads and previews; contributors upload and delete).

Thin like portal.views: access helper, form, one service per write. Files are never served
from here: downloads and image previews link to the REST file endpoint, which sets the
attachment/inline, nosniff and CSP headers for user content.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal import datastores, services
from portal.access import Access, get_workspace_for_user
from portal.lib.secrets_box import CredentialsUnreadable
from portal.models import Datastore, DatastoreKind, Role
from portal.storage import (
    Conflict,
    Entry,
    InvalidPath,
    NotFound,
    Storage,
    StorageError,
    clean_path,
    clean_prefix,
)
from portal.storage.local import _is_partial
from portal.views import _actor, _apply, _flash, _page

PAGE_SIZE = 200
# Counting a local datastore walks its folder on every page view: stop early on big ones.
USAGE_CAP = 10_000


# --- forms -------------------------------------------------------------------------------------


def _secret_field(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=4096,
        # A failed registration must not send the secret back to the browser.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


class DatastoreRegisterForm(forms.Form):
    """Register an Azure Blob container; services.register_datastore does the real checks."""

    name = forms.CharField(max_length=255, help_text="Letters, digits and underscores.")
    container_name = forms.CharField(max_length=63)
    account_name = forms.CharField(
        max_length=64, required=False, help_text="Not needed with a connection string."
    )
    account_key = _secret_field("Account key")
    sas_token = _secret_field("SAS token")
    connection_string = _secret_field("Connection string")
    endpoint = forms.URLField(
        max_length=300,
        required=False,
        assume_scheme="https",
        help_text="Optional, e.g. for Azurite: http://127.0.0.1:10000/devstoreaccount1",
    )
    description = forms.CharField(max_length=500, required=False)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file input that takes several files (Django's documented pattern)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(**kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        files = data if isinstance(data, list | tuple) else [data] if data else []
        if not files:
            raise ValidationError("Choose at least one file.", code="required")
        single = super().clean
        return [single(f, initial) for f in files]


class UploadForm(forms.Form):
    # Not "files": that is the form's own request.FILES attribute.
    uploads = MultipleFileField(label="Files")
    subfolder = forms.CharField(
        max_length=500,
        required=False,
        help_text="Optional folder below this one, created if missing, e.g. raw/2026.",
    )
    overwrite = forms.BooleanField(required=False, help_text="Replace files that exist.")

    def clean_subfolder(self) -> str:
        try:
            return clean_prefix(self.cleaned_data["subfolder"])
        except InvalidPath as exc:
            raise ValidationError(str(exc)) from None


class DeleteForm(forms.Form):
    confirm = forms.BooleanField(
        error_messages={"required": "Tick the box next to Delete to confirm."}
    )


# --- helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    files: int
    size: int
    capped: bool

    @property
    def files_text(self) -> str:
        return f"{self.files:,}+" if self.capped else f"{self.files:,}"


def local_usage(root: Path, cap: int = USAGE_CAP) -> Usage:
    """How many files a local datastore holds and their total size, counting at most ``cap``
    files. Symlinks are not followed: they could point outside the datastore."""
    files = size = 0
    folders = [str(root)]
    while folders:
        try:
            with os.scandir(folders.pop()) as scan:
                for item in scan:
                    if item.is_dir(follow_symlinks=False):
                        folders.append(item.path)
                    elif item.is_file(follow_symlinks=False) and not _is_partial(item.name):
                        if files == cap:
                            return Usage(files, size, capped=True)
                        files += 1
                        size += item.stat(follow_symlinks=False).st_size
        except OSError:  # missing (nothing uploaded yet) or vanished meanwhile
            continue
    return Usage(files, size, capped=False)


def _datastore(access: Access, name: str) -> Datastore:
    datastore = get_object_or_404(Datastore.objects.filter(workspace=access.workspace), name=name)
    datastore.workspace = access.workspace
    return datastore


def _list_url(access: Access) -> str:
    return reverse("datastore-list", kwargs={"workspace_id": access.workspace.uuid})


def _browse_url(datastore: Datastore, path: str = "") -> str:
    kwargs = {"workspace_id": datastore.workspace.uuid, "name": datastore.name}
    if path:
        return reverse("datastore-browse", kwargs={**kwargs, "path": path})
    return reverse("datastore-browse", kwargs=kwargs)


def _file_url(datastore: Datastore, path: str) -> str:
    """The REST endpoint that streams the file (session auth works for it in the browser)."""
    return reverse(
        "api-datastore-file",
        kwargs={"workspace_id": datastore.workspace.uuid, "name": datastore.name, "path": path},
    )


def _delete_url(datastore: Datastore, path: str) -> str:
    kwargs = {"workspace_id": datastore.workspace.uuid, "name": datastore.name, "path": path}
    return reverse("datastore-delete", kwargs=kwargs)


def _problem(
    request: HttpRequest, access: Access, status: int, title: str, detail: str
) -> HttpResponse:
    return _page(
        request, "portal/datastore_problem.html", access, status=status, title=title, detail=detail
    )


def _guarded(
    request: HttpRequest, access: Access, call: Callable[[], HttpResponse]
) -> HttpResponse:
    """Run a page that talks to storage; turn what storage raises into a page that says why."""
    try:
        return call()
    except InvalidPath as exc:
        return _problem(request, access, 400, "Bad path", str(exc))
    except NotFound as exc:
        raise Http404(str(exc)) from None
    except StorageError as exc:
        return _problem(
            request, access, 502, "Storage failed", f"The storage service failed: {exc}"
        )
    except CredentialsUnreadable as exc:
        return _problem(request, access, 409, "Credentials unreadable", str(exc))


def _breadcrumbs(datastore: Datastore, path: str) -> list[tuple[str, str]]:
    crumbs = [(datastore.name, _browse_url(datastore))]
    so_far = ""
    for segment in [s for s in path.split("/") if s]:
        so_far += segment + "/"
        crumbs.append((segment, _browse_url(datastore, so_far)))
    return crumbs  # the template shows the last one, where we are, without a link


def _page_of(storage: Storage, prefix: str, after: str) -> tuple[list[Entry], str | None]:
    """One page of a folder, folders first then files, each in name order.

    The cursor is the path of the last entry shown: a folder's path ends in '/', so the
    cursor also says whether the folders are done.
    """
    in_files = bool(after) and not after.endswith("/")

    def entries() -> Iterator[Entry]:
        if not in_files:
            yield from (e for e in storage.list(prefix) if e.is_dir and e.path > after)
        yield from (
            e for e in storage.list(prefix) if not e.is_dir and (not in_files or e.path > after)
        )

    page: list[Entry] = []
    for entry in entries():
        if len(page) == PAGE_SIZE:
            return page, page[-1].path
        page.append(entry)
    return page, None


def _parent(path: str) -> str:
    """The folder holding ``path`` ('a/b/' for 'a/b/c', '' at the root)."""
    parent = path.rstrip("/").rpartition("/")[0]
    return f"{parent}/" if parent else ""


def _target(prefix: str, upload: UploadedFile) -> str:
    return clean_path(prefix + (upload.name or ""))


# --- pages -------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def datastore_list(request: HttpRequest, workspace_id: str) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    posted = request.method == "POST"
    form = DatastoreRegisterForm(request.POST) if posted else DatastoreRegisterForm()
    if posted:
        access.require(Role.OWNER, "registering datastores")
        if form.is_valid():
            data = form.cleaned_data
            datastore = _apply(
                form,
                lambda: services.register_datastore(
                    actor=_actor(request), workspace=access.workspace, **data
                ),
            )
            if datastore is not None:
                messages.success(request, f"Datastore '{datastore.name}' registered.")
                return redirect(_list_url(access))
    rows = []
    for datastore in Datastore.objects.filter(workspace=access.workspace):
        datastore.workspace = access.workspace
        local = datastore.kind == DatastoreKind.LOCAL
        rows.append(
            {
                "datastore": datastore,
                "backing": datastores.describe_backing(datastore),
                "usage": local_usage(datastores.local_root(datastore), USAGE_CAP)
                if local
                else None,
            }
        )
    status = 400 if posted else 200
    return _page(request, "portal/datastore_list.html", access, status=status, rows=rows, form=form)


@login_required
@require_POST
def datastore_default(request: HttpRequest, workspace_id: str, name: str) -> HttpResponse:
    access = get_workspace_for_user(
        request.user, workspace_id, role=Role.OWNER, action="changing the default datastore"
    )
    datastore = _datastore(access, name)
    _flash(
        request,
        lambda: services.set_default_datastore(actor=_actor(request), datastore=datastore),
        f"'{datastore.name}' is now the default datastore.",
    )
    return redirect(_list_url(access))


@login_required
@require_POST
def datastore_unregister(request: HttpRequest, workspace_id: str, name: str) -> HttpResponse:
    access = get_workspace_for_user(
        request.user, workspace_id, role=Role.OWNER, action="unregistering datastores"
    )
    datastore = _datastore(access, name)
    _flash(
        request,
        lambda: services.unregister_datastore(actor=_actor(request), datastore=datastore),
        f"Datastore '{name}' unregistered; its files were left alone.",
    )
    return redirect(_list_url(access))


@login_required
@require_http_methods(["GET", "POST"])
def datastore_browse(
    request: HttpRequest, workspace_id: str, name: str, path: str = ""
) -> HttpResponse:
    access = get_workspace_for_user(request.user, workspace_id)
    if request.method == "POST":
        access.require(Role.CONTRIBUTOR, "uploading files")
    datastore = _datastore(access, name)
    return _guarded(request, access, lambda: _browse(request, access, datastore, path))


def _browse(request: HttpRequest, access: Access, datastore: Datastore, path: str) -> HttpResponse:
    cleaned = clean_path(path, allow_root=True)
    storage = datastores.storage_for(datastore)
    entry = storage.stat(cleaned) if cleaned else None
    if entry is not None and not entry.is_dir:
        if request.method == "POST":
            return _problem(
                request,
                access,
                400,
                "Not a folder",
                f"'{entry.path}' is a file: upload into a folder.",
            )
        return _file_page(request, access, datastore, storage, entry)
    prefix = clean_prefix(cleaned)
    form = UploadForm(request.POST, request.FILES) if request.method == "POST" else UploadForm()
    if request.method == "POST" and form.is_valid():
        uploaded = _upload(request, form, datastore, storage, prefix)
        if uploaded is not None:
            messages.success(request, f"Uploaded {uploaded} file{'s' if uploaded != 1 else ''}.")
            return redirect(_browse_url(datastore, prefix))
    after = request.GET.get("after", "")
    entries, next_after = _page_of(storage, prefix, after)
    return _page(
        request,
        "portal/datastore_browse.html",
        access,
        status=400 if request.method == "POST" else 200,
        datastore=datastore,
        path=prefix,
        breadcrumbs=_breadcrumbs(datastore, prefix),
        entries=[
            {
                "entry": e,
                "url": _browse_url(datastore, e.path),
                "download_url": None if e.is_dir else _file_url(datastore, e.path),
                "delete_url": _delete_url(datastore, e.path),
            }
            for e in entries
        ],
        after=after,
        next_after=next_after,
        form=form,
        can_write=access.can(Role.CONTRIBUTOR),
    )


def _upload(
    request: HttpRequest, form: UploadForm, datastore: Datastore, storage: Storage, prefix: str
) -> int | None:
    """Upload every file of the form, or (when one is refused before writing) none of them.

    Returns how many went up, or None with the reason on the form.
    """
    data = form.cleaned_data
    base = prefix + data["subfolder"]
    try:
        done = services.upload_files_to_datastore(
            actor=_actor(request),
            datastore=datastore,
            files=[(_target(base, u), u, u.size) for u in data["uploads"]],
            overwrite=data["overwrite"],
        )
    except Conflict as exc:
        form.add_error(
            "uploads",
            f"Already there: {exc.path}. Nothing was uploaded; tick 'Overwrite' to replace it.",
        )
        return None
    except (InvalidPath, services.UploadTooLarge) as exc:
        form.add_error("uploads", str(exc))
        return None
    except ValidationError as exc:
        form.add_error("uploads", exc.messages)
        return None
    return len(done)


def _file_page(
    request: HttpRequest, access: Access, datastore: Datastore, storage: Storage, entry: Entry
) -> HttpResponse:
    shown = datastores.preview(storage, entry.path, entry.size)
    return _page(
        request,
        "portal/datastore_file.html",
        access,
        datastore=datastore,
        entry=entry,
        breadcrumbs=_breadcrumbs(datastore, entry.path),
        preview=shown,
        # Preview sets truncated both when it stopped at PREVIEW_BYTES and at PREVIEW_ROWS.
        cut_at_bytes=shown.truncated and (entry.size or 0) > datastores.PREVIEW_BYTES,
        preview_kb=datastores.PREVIEW_BYTES // 1024,
        preview_rows=datastores.PREVIEW_ROWS,
        image_max=datastores.IMAGE_PREVIEW_MAX_BYTES,
        download_url=_file_url(datastore, entry.path),
        delete_url=_delete_url(datastore, entry.path),
        parent_url=_browse_url(datastore, _parent(entry.path)),
        can_write=access.can(Role.CONTRIBUTOR),
    )


@login_required
@require_POST
def datastore_delete(request: HttpRequest, workspace_id: str, name: str, path: str) -> HttpResponse:
    access = get_workspace_for_user(
        request.user, workspace_id, role=Role.CONTRIBUTOR, action="deleting files"
    )
    datastore = _datastore(access, name)
    return _guarded(request, access, lambda: _delete(request, datastore, path))


def _delete(request: HttpRequest, datastore: Datastore, path: str) -> HttpResponse:
    cleaned = clean_path(path)
    back = _browse_url(datastore, _parent(cleaned))
    form = DeleteForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"'{cleaned}' was not deleted: tick the box next to Delete.")
        return redirect(back)
    count = services.delete_datastore_path(actor=_actor(request), datastore=datastore, path=cleaned)
    messages.success(request, f"Deleted '{cleaned}' ({count} file{'s' if count != 1 else ''}).")
    return redirect(back)


__all__ = [
    "datastore_browse",
    "datastore_default",
    "datastore_delete",
    "datastore_list",
    "datastore_unregister",
    "local_usage",
]
