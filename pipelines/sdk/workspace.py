"""Workspace: the tenant every object belongs to (the ``azureml.core.Workspace`` counterpart).

Where Azure needs a subscription, a resource group and a login, Millrace needs a server URL and
an API token. Both come from arguments, from ``config.json`` (found as Azure ML finds it) and
from the ``MILLRACE_URL`` / ``MILLRACE_TOKEN`` environment variables. The token is never written
to a file by the SDK.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.sdk._http import HttpClient
from pipelines.sdk.authentication import TOKEN_ENV, TokenAuthentication
from pipelines.sdk.datastore import Datastore
from pipelines.sdk.exceptions import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    _unsupported,
)

if TYPE_CHECKING:
    from pipelines.sdk.compute import ComputeTarget

__all__ = ["CONFIG_DIR", "CONFIG_FILE", "URL_ENV", "Workspace"]

log = logging.getLogger("pipelines.sdk")

URL_ENV = "MILLRACE_URL"
CONFIG_DIR = ".azureml"
CONFIG_FILE = "config.json"


def _token_from(auth: Any, token: str | None) -> str:
    """The token to use: ``token=``, else the ``auth`` object's, else ``MILLRACE_TOKEN``."""
    if token:
        return token
    if auth is not None:
        if isinstance(auth, TokenAuthentication):
            return auth.token
        header = auth.get_authentication_header().get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() == "bearer" and secret:
            return secret
        raise ConfigurationError(
            f"{type(auth).__name__} gave no 'Authorization: Bearer <token>' header."
        )
    return TokenAuthentication().token


def _url_from(url: str | None) -> str:
    url = url or os.environ.get(URL_ENV, "")
    if not url:
        raise ConfigurationError(
            f"No Millrace server URL: pass url=..., or set {URL_ENV} (e.g. http://127.0.0.1:8000)."
        )
    return url


def find_config(path: str | os.PathLike[str] | None = None, file_name: str | None = None) -> Path:
    """Find ``config.json`` the way Azure ML does.

    Args:
        path: a config file, or a folder to start from; None: the current folder. From a
            folder, the search goes up through its parents, looking at each level for
            ``<folder>/.azureml/<file_name>`` and then ``<folder>/<file_name>``.
        file_name: the file's name; default ``config.json``.

    Returns:
        The path of the file found.

    Raises:
        ConfigurationError: nothing was found; the message says where the search looked.
    """
    file_name = file_name or CONFIG_FILE
    if path is not None:
        given = Path(os.fspath(path)).expanduser()
        if given.is_file():
            return given.resolve()
        if not given.is_dir():
            raise ConfigurationError(
                f"No workspace config at {given}: it is neither a file nor a folder."
            )
        start = given.resolve()
    else:
        start = Path.cwd().resolve()
    looked: list[str] = []
    for folder in (start, *start.parents):
        for candidate in (folder / CONFIG_DIR / file_name, folder / file_name):
            looked.append(str(candidate))
            if candidate.is_file():
                return candidate
    raise ConfigurationError(
        f"No workspace config found: looked for {CONFIG_DIR}/{file_name} and {file_name} in "
        f"{start} and each of its parents (up to {start.anchor}). Create one with "
        "ws.write_config(), or pass path= to Workspace.from_config()."
    )


def read_config(config_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a workspace config file.

    Args:
        config_path: the file.

    Returns:
        ``{"workspace_name", "workspace_id", "url", "token"}`` with None for missing keys;
        ``MILLRACE_URL`` overrides the file's ``url``.

    Raises:
        ConfigurationError: the file is not a JSON object.
    """
    try:
        data = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"Cannot read the workspace config {config_path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"The workspace config {config_path} is not a JSON object.")
    token = data.get("token") or None
    if token:
        warnings.warn(
            f"{config_path} holds an API token; keep tokens out of files and set "
            f"{TOKEN_ENV} instead.",
            UserWarning,
            stacklevel=3,
        )
    return {
        "workspace_name": data.get("workspace_name") or None,
        "workspace_id": data.get("workspace_id") or None,
        "url": os.environ.get(URL_ENV) or data.get("url") or None,
        "token": token,
    }


class Workspace:
    """A Millrace workspace, reached over the REST API as one token.

    ``Workspace(workspace_name="forecast", url=..., token=...)`` looks the workspace up on the
    server; with no name it is the token's own workspace. ``url`` defaults to
    ``MILLRACE_URL`` and ``token`` to ``MILLRACE_TOKEN``.

    Args:
        subscription_id: accepted for compatibility; ignored.
        resource_group: accepted for compatibility; ignored.
        workspace_name: the workspace's slug (or its display name); None: the token's own.
        auth: a TokenAuthentication-like object (anything with ``get_authentication_header``).
        _location: accepted for compatibility; ignored.
        _disable_service_check: accepted for compatibility; ignored.
        _workspace_id: look the workspace up by id instead of name.
        sku: accepted for compatibility; ignored.
        tags: accepted for compatibility; ignored.
        _cloud: accepted for compatibility; ignored.
        url: the server's root URL.
        token: the API token.

    Raises:
        ConfigurationError: no URL or no token.
        NotFoundError: no such workspace visible to this token.
        AuthenticationError: the token is unknown, revoked or expired.
        MillraceConnectionError: the server cannot be reached.
    """

    _client: HttpClient
    _data: dict[str, Any]

    def __init__(
        self,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        workspace_name: str | None = None,
        auth: Any = None,
        _location: str | None = None,
        _disable_service_check: bool = False,
        _workspace_id: str | None = None,
        sku: str = "basic",
        tags: dict[str, str] | None = None,
        _cloud: str = "AzureCloud",
        *,
        url: str | None = None,
        token: str | None = None,
    ) -> None:
        client = HttpClient(_url_from(url), _token_from(auth, token))
        data = _lookup(client, name=workspace_name, workspace_id=_workspace_id)
        self._set(client, data, subscription_id, resource_group, _location)

    def _set(
        self,
        client: HttpClient,
        data: dict[str, Any],
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
    ) -> None:
        self._client = client
        self._data = dict(data)
        self._subscription_id = subscription_id
        self._resource_group = resource_group
        self._location = location

    @classmethod
    def _from_data(cls, client: HttpClient, data: dict[str, Any]) -> Workspace:
        """A Workspace from the server's JSON, without a request."""
        workspace = cls.__new__(cls)
        workspace._set(client, data)
        return workspace

    # ----- constructors -------------------------------------------------------------------

    @staticmethod
    def get(
        name: str,
        auth: Any = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
        cloud: str = "AzureCloud",
        id: str | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
    ) -> Workspace:
        """A workspace by name.

        Args:
            name: the workspace's slug (as in its URLs), or its display name.
            auth: a TokenAuthentication-like object.
            subscription_id: accepted for compatibility; ignored.
            resource_group: accepted for compatibility; ignored.
            location: accepted for compatibility; ignored.
            cloud: accepted for compatibility; ignored.
            id: the workspace's id; used instead of ``name`` when given.
            url: the server's root URL; default ``MILLRACE_URL``.
            token: the API token; default ``MILLRACE_TOKEN``.

        Returns:
            The Workspace.

        Raises:
            NotFoundError: no such workspace visible to this token (a token sees only its own
                workspace).
            ConfigurationError: no URL or no token.
            AuthenticationError: the token is unknown, revoked or expired.
        """
        return Workspace(
            subscription_id,
            resource_group,
            name,
            auth,
            location,
            _workspace_id=id,
            url=url,
            token=token,
        )

    @staticmethod
    def from_config(
        path: str | os.PathLike[str] | None = None,
        auth: Any = None,
        _logger: Any = None,
        _file_name: str | None = None,
    ) -> Workspace:
        """The workspace named in ``config.json``.

        The file is found as Azure ML finds it: ``path`` (a file, or a folder to start from),
        else the current folder and its parents, looking in ``.azureml/`` at each level. It
        names the workspace (``workspace_name`` or ``workspace_id``; neither: the token's own)
        and the server (``url``, overridden by ``MILLRACE_URL``). The token comes from ``auth``,
        else ``MILLRACE_TOKEN``, else a ``token`` key in the file (discouraged: warns).

        Args:
            path: a config file or a folder to start the search from.
            auth: a TokenAuthentication-like object.
            _logger: a logger to report the file found to; default the SDK's.
            _file_name: the file's name; default ``config.json``.

        Returns:
            The Workspace.

        Raises:
            ConfigurationError: no config file (the message says where the search looked), no
                URL, or no token.
            NotFoundError: the workspace is not visible to this token.
            AuthenticationError: the token is unknown, revoked or expired.
        """
        config_path = find_config(path, _file_name)
        (_logger or log).info("Found the workspace config in %s", config_path)
        config = read_config(config_path)
        if not config["url"]:
            raise ConfigurationError(
                f'The workspace config {config_path} has no "url" and {URL_ENV} is not set.'
            )
        if auth is None and not os.environ.get(TOKEN_ENV) and config["token"]:
            auth = TokenAuthentication(config["token"])
        return Workspace(
            workspace_name=config["workspace_name"],
            auth=auth,
            _workspace_id=config["workspace_id"],
            url=config["url"],
        )

    @staticmethod
    def create(
        name: str,
        auth: Any = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
        create_resource_group: bool = True,
        sku: str = "basic",
        tags: dict[str, str] | None = None,
        friendlyName: str | None = None,
        exist_ok: bool = False,
        show_output: bool = True,
        *,
        url: str | None = None,
        token: str | None = None,
        **azure_options: Any,
    ) -> Workspace:
        """Get a workspace that exists (with ``exist_ok``), or ask the server to create it.

        API tokens act only in their own workspace, so the server refuses creation by token:
        create workspaces in the portal, and use ``exist_ok=True`` in scripts.

        Args:
            name: the workspace's slug.
            auth: a TokenAuthentication-like object.
            subscription_id: accepted for compatibility; ignored.
            resource_group: accepted for compatibility; ignored.
            location: accepted for compatibility; ignored.
            create_resource_group: accepted for compatibility; ignored.
            sku: accepted for compatibility; ignored.
            tags: accepted for compatibility; ignored.
            friendlyName: the display name for a new workspace; default ``name``.
            exist_ok: return the workspace if it exists.
            show_output: accepted for compatibility; ignored.
            url: the server's root URL; default ``MILLRACE_URL``.
            token: the API token; default ``MILLRACE_TOKEN``.
            azure_options: other azureml options (key_vault, storage_account...); ignored.

        Returns:
            The Workspace.

        Raises:
            ConflictError: it exists and ``exist_ok`` is false.
            PermissionDeniedError: the server refused to create it (always, for a token).
        """
        client = HttpClient(_url_from(url), _token_from(auth, token))
        try:
            data = _lookup(client, name=name, workspace_id=None)
        except NotFoundError:
            body = {"name": friendlyName or name, "slug": name}
            data = client.send_json("POST", "workspaces/", body)
            return Workspace._from_data(client, data)
        if not exist_ok:
            raise ConflictError(
                f"Workspace '{name}' already exists; pass exist_ok=True to use it.", path=None
            )
        return Workspace._from_data(client, data)

    list = _unsupported(
        "Workspace.list", "An API token sees only its own workspace; use Workspace.get(name)."
    )
    delete = _unsupported("Workspace.delete", "Delete workspaces in the portal.")
    update = _unsupported("Workspace.update", "Rename workspaces in the portal.")
    add_private_endpoint = _unsupported("Workspace.add_private_endpoint")
    delete_private_endpoint_connection = _unsupported(
        "Workspace.delete_private_endpoint_connection"
    )
    diagnose_workspace = _unsupported("Workspace.diagnose_workspace")
    get_mlflow_tracking_uri = _unsupported("Workspace.get_mlflow_tracking_uri")
    list_keys = _unsupported("Workspace.list_keys")
    sync_keys = _unsupported("Workspace.sync_keys")
    setup = _unsupported("Workspace.setup")
    get_run = _unsupported("Workspace.get_run")

    # ----- properties ---------------------------------------------------------------------

    @property
    def _api(self) -> str:
        return f"workspaces/{self.id}/"

    @property
    def name(self) -> str:
        """The workspace's slug: what ``Workspace.get`` and ``config.json`` take."""
        return str(self._data.get("slug") or self._data.get("name"))

    @property
    def friendly_name(self) -> str:
        """The workspace's display name."""
        return str(self._data.get("name") or self.name)

    @property
    def id(self) -> str:
        """The workspace's id (a UUID)."""
        return str(self._data["id"])

    @property
    def url(self) -> str:
        """The server's root URL."""
        return self._client.base_url

    @property
    def role(self) -> str | None:
        """The token's role here: ``"owner"``, ``"contributor"`` or ``"reader"``."""
        return self._data.get("role")

    @property
    def description(self) -> str:
        """The workspace's description."""
        return str(self._data.get("description") or "")

    @property
    def subscription_id(self) -> str | None:
        """What was passed as ``subscription_id`` (Azure only), else None."""
        return self._subscription_id

    @property
    def resource_group(self) -> str | None:
        """What was passed as ``resource_group`` (Azure only), else None."""
        return self._resource_group

    @property
    def location(self) -> str | None:
        """What was passed as the location (Azure only), else None."""
        return self._location

    def get_details(self) -> dict[str, Any]:
        """The workspace as the server describes it.

        Returns:
            ``{"id", "name", "friendlyName", "description", "role", "url", "creationTime"}``.
        """
        return {
            "id": self.id,
            "name": self.name,
            "friendlyName": self.friendly_name,
            "description": self.description,
            "role": self.role,
            "url": self.url,
            "creationTime": self._data.get("created_at"),
        }

    def __repr__(self) -> str:
        return f"Workspace.get(name={self.name!r}, id={self.id!r}, url={self.url!r})"

    # ----- datastores ---------------------------------------------------------------------

    @property
    def datastores(self) -> dict[str, Datastore]:
        """Every datastore of the workspace, by name (fetched on each access).

        Raises:
            MillraceError: the server could not answer.
        """
        return {
            data["name"]: Datastore._from_data(self, data)
            for data in self._client.iter_pages(f"{self._api}datastores/")
        }

    def get_default_datastore(self) -> Datastore:
        """The workspace's default datastore (``workspacefilestore`` unless changed).

        Returns:
            The Datastore.

        Raises:
            NotFoundError: the workspace has no default (should not happen).
        """
        for datastore in self.datastores.values():
            if datastore.is_default:
                return datastore
        raise NotFoundError(f"Workspace '{self.name}' has no default datastore.")

    def set_default_datastore(self, name: str) -> None:
        """Make another datastore the default (owners only).

        Args:
            name: the datastore's name.

        Raises:
            NotFoundError: no such datastore.
            PermissionDeniedError: the token's user is not an owner.
        """
        Datastore._from_data(self, {"name": name}).set_as_default()

    @property
    def compute_targets(self) -> dict[str, ComputeTarget]:
        """Every compute target of the workspace, by name (fetched on each access): an
        ``AmlCompute`` for docker targets, a ``ComputeTarget`` for local ones.

        Raises:
            MillraceError: the server could not answer.
        """
        from pipelines.sdk.compute import ComputeTarget

        return {target.name: target for target in ComputeTarget.list(self)}

    # ----- config -------------------------------------------------------------------------

    def write_config(
        self, path: str | os.PathLike[str] | None = None, file_name: str | None = None
    ) -> str:
        """Write ``.azureml/config.json`` naming this workspace and server, WITHOUT the token
        (set ``MILLRACE_TOKEN`` where the config is used).

        Args:
            path: the folder to write into (``.azureml/`` is added unless it is already the
                folder's name); default: the current folder.
            file_name: the file's name; default ``config.json``.

        Returns:
            The path written.
        """
        folder = Path(os.fspath(path)) if path is not None else Path.cwd()
        if folder.is_file():
            folder = folder.parent
        if folder.name != CONFIG_DIR:
            folder = folder / CONFIG_DIR
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (file_name or CONFIG_FILE)
        config = {"workspace_name": self.name, "workspace_id": self.id, "url": self.url}
        target.write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
        return str(target)


def _lookup(client: HttpClient, *, name: str | None, workspace_id: str | None) -> dict[str, Any]:
    """The server's JSON for a workspace: by id, by slug (then display name), or the token's."""
    if workspace_id:
        try:
            data: dict[str, Any] = client.get_json(f"workspaces/{workspace_id}/")
        except NotFoundError as exc:
            raise NotFoundError(
                f"Workspace id '{workspace_id}' was not found at {client.base_url} "
                "(or this token cannot see it: a token acts only in its own workspace).",
                status_code=exc.status_code,
                url=exc.url,
            ) from None
        return data
    if not name:
        me = client.get_json("me/")
        workspaces = me.get("workspaces") or []
        if len(workspaces) != 1:
            raise ConfigurationError(
                "Name the workspace: this login sees "
                f"{len(workspaces)} workspaces, not exactly one."
            )
        return dict(workspaces[0])
    found = list(client.iter_pages("workspaces/", params={"slug": name}))
    if not found:
        visible = list(client.iter_pages("workspaces/"))
        found = [w for w in visible if w.get("name") == name]
        if not found:
            seen = ", ".join(sorted(str(w.get("slug")) for w in visible)) or "none"
            raise NotFoundError(
                f"Workspace '{name}' was not found at {client.base_url}, or this token cannot "
                f"see it: a token acts only in its own workspace (this one sees: {seen})."
            )
    return dict(found[0])
