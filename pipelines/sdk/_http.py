"""A tiny client for Millrace's REST API over ``requests.Session``: base URL + token, JSON in
and out, streamed bodies, and the server's error bodies turned into MillraceError subclasses.

Error bodies are ``{"detail": "...", "fields": {...}}``; a 409 from storage adds ``"path"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from pipelines.sdk.exceptions import (
    AuthenticationError,
    ConflictError,
    MillraceConnectionError,
    MillraceError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    ValidationError,
)

__all__ = ["API_PREFIX", "HttpClient", "error_for", "quote_path"]

API_PREFIX = "/api/v1/"
USER_AGENT = "millrace-sdk/0.1"
# (connect, read): a big upload is read by the server as it arrives, so the read timeout only
# covers the server's last step (moving the file into place, committing a blob).
DEFAULT_TIMEOUT = (10.0, 300.0)
# Parallel transfers use up to 8 connections; keep them all in the pool for reuse.
POOL_SIZE = 16


def quote_path(path: str) -> str:
    """Percent-encode a datastore path for a URL, keeping its '/' separators.

    Args:
        path: a datastore path like ``raw/2026/data 1.csv``.

    Returns:
        ``raw/2026/data%201.csv``.
    """
    return quote(path, safe="/")


def error_for(response: requests.Response) -> MillraceError:
    """The exception for a failed answer, with the server's ``detail`` text.

    Args:
        response: an answer with status >= 400.

    Returns:
        NotFoundError (404), PermissionDeniedError (403), AuthenticationError (401),
        ConflictError (409, with ``.path``), ValidationError (400, with ``.fields``), else
        ServiceError.
    """
    status = response.status_code
    url = response.url
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str) or not detail:
        text = (response.text or "").strip()
        detail = f"HTTP {status} {response.reason or ''}".rstrip() + f" from {url}"
        if text and not text.lstrip().startswith("<"):
            detail += f": {text[:300]}"
    fields = body.get("fields") if isinstance(body, dict) else None
    if status == 400:
        return ValidationError(
            detail, fields=fields if isinstance(fields, dict) else None, status_code=status, url=url
        )
    if status == 401:
        return AuthenticationError(detail, status_code=status, url=url)
    if status == 403:
        return PermissionDeniedError(detail, status_code=status, url=url)
    if status == 404:
        return NotFoundError(detail, status_code=status, url=url)
    if status == 409:
        path = body.get("path") if isinstance(body, dict) else None
        return ConflictError(
            detail, path=path if isinstance(path, str) else None, status_code=status, url=url
        )
    return ServiceError(detail, status_code=status, url=url)


class HttpClient:
    """Calls one Millrace server as one token.

    Args:
        url: the server's root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/api/v1`` is
            accepted and dropped).
        token: the API token's secret.
        timeout: (connect, read) seconds for every request.

    Raises:
        ValueError: ``url`` is not http(s), or the token is empty.
    """

    def __init__(
        self, url: str, token: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
    ) -> None:
        url = (url or "").strip().rstrip("/")
        if url.endswith(API_PREFIX.rstrip("/")):
            url = url[: -len(API_PREFIX.rstrip("/"))]
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"The server URL must start with http:// or https://, not {url!r}.")
        if not token:
            raise ValueError("An API token is required.")
        self.base_url = url
        self.timeout = timeout
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=POOL_SIZE)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"HttpClient(url={self.base_url!r})"

    def url_for(self, path: str) -> str:
        """The absolute URL of an API path.

        Args:
            path: relative to ``/api/v1/``, e.g. ``"workspaces/"``; already percent-encoded.

        Returns:
            ``<base_url>/api/v1/<path>``.
        """
        return self.base_url + API_PREFIX + path.lstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send one request and return the answer if it succeeded.

        Args:
            method: HTTP method.
            path: API path relative to ``/api/v1/``.
            params: query parameters.
            json: a JSON body.
            data: a raw body (bytes or a file-like object, which requests streams).
            headers: extra headers.
            stream: leave the body unread (for downloads).

        Returns:
            The response (status < 400).

        Raises:
            MillraceError: the server's error, as the matching subclass.
            MillraceConnectionError: the server could not be reached; names the URL.
        """
        url = self.url_for(path)
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers=dict(headers or {}),
                stream=stream,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise MillraceConnectionError(
                f"Could not reach the Millrace server at {url}: {_reason(exc)}", url=url
            ) from exc
        if response.status_code >= 400:
            try:
                raise error_for(response)
            finally:
                response.close()
        return response

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """GET a JSON document.

        Args:
            path: API path relative to ``/api/v1/``.
            params: query parameters.

        Returns:
            The decoded JSON.

        Raises:
            MillraceError: as ``request``.
        """
        return _decode(self.request("GET", path, params=params))

    def send_json(self, method: str, path: str, body: Any) -> Any:
        """POST / PATCH / PUT a JSON body and decode the answer.

        Args:
            method: ``"POST"``, ``"PATCH"`` or ``"PUT"``.
            path: API path relative to ``/api/v1/``.
            body: the JSON body.

        Returns:
            The decoded JSON answer (None for an empty answer).

        Raises:
            MillraceError: as ``request``.
        """
        return _decode(self.request(method, path, json=body))

    def delete(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """DELETE and decode the answer, if any.

        Args:
            path: API path relative to ``/api/v1/``.
            params: query parameters.

        Returns:
            The decoded JSON answer, or None for 204.

        Raises:
            MillraceError: as ``request``.
        """
        return _decode(self.request("DELETE", path, params=params))

    def iter_pages(self, path: str, *, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a page-numbered list (``{"results": [...], "next": ...}``).

        Args:
            path: API path of the list.
            params: extra query parameters.

        Yields:
            Each item of each page, in order.

        Raises:
            MillraceError: as ``request``.
        """
        page = 1
        while True:
            body = self.get_json(path, params={**(params or {}), "page": page})
            if isinstance(body, list):  # an unpaginated list
                yield from body
                return
            yield from body.get("results", [])
            if not body.get("next"):
                return
            page += 1

    def iter_cursor(self, path: str, *, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a cursor-paginated list, following the server's ``next`` URLs.

        The ``next`` URL is absolute and may name another host (a proxy in front of the
        server): only its path below ``/api/v1/`` and its query are used, against this
        client's base URL.

        Args:
            path: API path of the list.
            params: query parameters of the first page.

        Yields:
            Each item of each page, in order.

        Raises:
            ServiceError: a ``next`` URL that is not an API URL.
            MillraceError: as ``request``.
        """
        body = self.get_json(path, params=params)
        while True:
            if isinstance(body, list):  # an unpaginated list
                yield from body
                return
            yield from body.get("results", [])
            next_url = body.get("next")
            if not next_url:
                return
            parts = urlsplit(str(next_url))
            at = parts.path.find(API_PREFIX)
            if at < 0:
                raise ServiceError(f"The server's next-page URL {next_url!r} is not an API URL.")
            body = self.get_json(parts.path[at + len(API_PREFIX) :], params=parse_qs(parts.query))

    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header this client sends, for connections it does not make
        itself (the run's websocket).

        Returns:
            ``{"Authorization": "Bearer <token>"}``.
        """
        return {"Authorization": str(self._session.headers["Authorization"])}

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()


def _decode(response: requests.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise ServiceError(
            f"The server answered {response.url} with something that is not JSON.",
            status_code=response.status_code,
            url=response.url,
        ) from None


def _reason(exc: requests.RequestException) -> str:
    """A short reason for a transport failure; requests' own texts nest urllib3 reprs."""
    if isinstance(exc, requests.Timeout):
        return "the request timed out."
    if isinstance(exc, requests.exceptions.SSLError):
        return "the TLS handshake failed."
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        for known in ("Connection refused", "Name or service not known", "Connection reset"):
            if known in text:
                return f"{known.lower()}."
        return "the connection failed or was dropped."
    return type(exc).__name__
