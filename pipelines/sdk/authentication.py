"""Authentication objects shaped like ``azureml.core.authentication``.

Millrace authenticates with a personal API token (``Authorization: Bearer mlr_...``). The
Azure classes are kept so that v1 scripts run unchanged: each resolves to a token, given
explicitly or taken from the ``MILLRACE_TOKEN`` environment variable.
"""

from __future__ import annotations

import os

from pipelines.sdk.exceptions import ConfigurationError

__all__ = [
    "TOKEN_ENV",
    "InteractiveLoginAuthentication",
    "ServicePrincipalAuthentication",
    "TokenAuthentication",
]

TOKEN_ENV = "MILLRACE_TOKEN"  # noqa: S105 - the variable's name, not a secret


class TokenAuthentication:
    """A Millrace API token.

    Args:
        token: the token's secret (``mlr_...``). None: read ``MILLRACE_TOKEN`` when needed.

    Raises:
        ConfigurationError: from ``get_authentication_header`` / ``token`` when no token was
            given and ``MILLRACE_TOKEN`` is not set.
    """

    def __init__(self, token: str | None = None) -> None:
        self._token = token or None

    @property
    def token(self) -> str:
        """The secret to send.

        Returns:
            The token given, else ``MILLRACE_TOKEN``.

        Raises:
            ConfigurationError: neither is set.
        """
        source = "token=" if self._token else TOKEN_ENV
        token = (self._token or os.environ.get(TOKEN_ENV, "")).strip()
        if not token:
            raise ConfigurationError(
                f"No Millrace API token: pass token=..., or set {TOKEN_ENV} "
                "(create one on the workspace's Tokens page)."
            )
        if any(c.isspace() or not c.isprintable() for c in token) or not token.isascii():
            # Say so here: requests would report a bad header as a connection failure.
            raise ConfigurationError(
                f"The token from {source} contains spaces, line breaks or other characters a "
                "token never has; copy it again from the Tokens page (it starts with 'mlr_')."
            )
        return token

    def get_authentication_header(self) -> dict[str, str]:
        """The header to send with every request.

        Returns:
            ``{"Authorization": "Bearer <token>"}``.

        Raises:
            ConfigurationError: no token is available.
        """
        return {"Authorization": f"Bearer {self.token}"}

    def __repr__(self) -> str:
        # Never show the secret, not even a part of it.
        source = "given" if self._token else TOKEN_ENV
        return f"{type(self).__name__}(token=<{source}>)"


class InteractiveLoginAuthentication(TokenAuthentication):
    """azureml's interactive login; here: the token from ``MILLRACE_TOKEN`` (or ``token=``).

    Args:
        force: accepted for compatibility; ignored.
        tenant_id: accepted for compatibility; ignored.
        cloud: accepted for compatibility; ignored.
        token: the API token; None reads ``MILLRACE_TOKEN``.
    """

    def __init__(
        self,
        force: bool = False,
        tenant_id: str | None = None,
        cloud: str | None = None,
        *,
        token: str | None = None,
    ) -> None:
        super().__init__(token)


class ServicePrincipalAuthentication(TokenAuthentication):
    """azureml's service principal; here the principal's secret is a Millrace API token.

    Args:
        tenant_id: accepted for compatibility; ignored.
        service_principal_id: accepted for compatibility; ignored.
        service_principal_password: the API token (a robot account's token); None reads
            ``MILLRACE_TOKEN``.
        cloud: accepted for compatibility; ignored.
        token: the API token, preferred over ``service_principal_password``.
    """

    def __init__(
        self,
        tenant_id: str | None = None,
        service_principal_id: str | None = None,
        service_principal_password: str | None = None,
        cloud: str = "AzureCloud",
        *,
        token: str | None = None,
    ) -> None:
        super().__init__(token or service_principal_password)
