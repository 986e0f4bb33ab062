"""Millrace's client SDK, shaped like Azure ML's ``azureml`` v1 SDK.

A v1 script runs against a Millrace server after changing only its imports::

    from pipelines.sdk import Workspace, Datastore, DataReference

    ws = Workspace.from_config()          # .azureml/config.json + MILLRACE_TOKEN
    ds = ws.get_default_datastore()
    ref = ds.upload("data/", target_path="in/", overwrite=True)

This package imports no Django and nothing from the server: it also runs inside pipeline steps.
Calls that Millrace does not offer raise NotImplementedError naming the call.
"""

from pipelines.sdk.authentication import (
    InteractiveLoginAuthentication,
    ServicePrincipalAuthentication,
    TokenAuthentication,
)
from pipelines.sdk.data_reference import DataReference
from pipelines.sdk.datastore import Datastore
from pipelines.sdk.exceptions import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    MillraceConnectionError,
    MillraceError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    ValidationError,
)
from pipelines.sdk.workspace import Workspace

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "DataReference",
    "Datastore",
    "InteractiveLoginAuthentication",
    "MillraceConnectionError",
    "MillraceError",
    "NotFoundError",
    "PermissionDeniedError",
    "ServiceError",
    "ServicePrincipalAuthentication",
    "TokenAuthentication",
    "ValidationError",
    "Workspace",
]
