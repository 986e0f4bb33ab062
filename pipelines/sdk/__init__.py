"""Millrace's client SDK, shaped like Azure ML's ``azureml`` v1 SDK.

A v1 script runs against a Millrace server after changing only its imports::

    from pipelines.sdk import Workspace, Datastore, DataReference

    ws = Workspace.from_config()          # .azureml/config.json + MILLRACE_TOKEN
    ds = ws.get_default_datastore()
    ref = ds.upload("data/", target_path="in/", overwrite=True)

This package imports no Django and nothing from the server: it also runs inside pipeline steps.
Calls that Millrace does not offer raise NotImplementedError naming the call.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Names load their module on first use (PEP 562): `from pipelines.sdk import Run` inside a
# step must not need `requests`, which a bare step environment may not have.
_EXPORTS = {
    "InteractiveLoginAuthentication": "authentication",
    "ServicePrincipalAuthentication": "authentication",
    "TokenAuthentication": "authentication",
    "AmlCompute": "compute",
    "ComputeTarget": "compute",
    "ComputeTargetException": "compute",
    "DataPath": "data",
    "DataPathComputeBinding": "data",
    "OutputFileDatasetConfig": "data",
    "PipelineData": "data",
    "PipelineParameter": "data",
    "DataReference": "data_reference",
    "Datastore": "datastore",
    "ActivityFailedException": "exceptions",
    "AuthenticationError": "exceptions",
    "ConfigurationError": "exceptions",
    "ConflictError": "exceptions",
    "MillraceConnectionError": "exceptions",
    "MillraceError": "exceptions",
    "NotFoundError": "exceptions",
    "PermissionDeniedError": "exceptions",
    "RunFailedError": "exceptions",
    "RunTimeoutError": "exceptions",
    "ServiceError": "exceptions",
    "ValidationError": "exceptions",
    "Experiment": "experiment",
    "Pipeline": "pipeline",
    "PipelineRun": "pipeline_run",
    "OfflineRun": "run",
    "Run": "run",
    "CondaDependencies": "runconfig",
    "DEFAULT_CPU_IMAGE": "runconfig",
    "Environment": "runconfig",
    "RunConfiguration": "runconfig",
    "StepRun": "step_run",
    "PythonScriptStep": "steps",
    "PipelineEndpoint": "unsupported",
    "PublishedPipeline": "unsupported",
    "Schedule": "unsupported",
    "ScheduleRecurrence": "unsupported",
    "Workspace": "workspace",
}

if TYPE_CHECKING:
    from pipelines.sdk.authentication import (
        InteractiveLoginAuthentication,
        ServicePrincipalAuthentication,
        TokenAuthentication,
    )
    from pipelines.sdk.compute import AmlCompute, ComputeTarget, ComputeTargetException
    from pipelines.sdk.data import (
        DataPath,
        DataPathComputeBinding,
        OutputFileDatasetConfig,
        PipelineData,
        PipelineParameter,
    )
    from pipelines.sdk.data_reference import DataReference
    from pipelines.sdk.datastore import Datastore
    from pipelines.sdk.exceptions import (
        ActivityFailedException,
        AuthenticationError,
        ConfigurationError,
        ConflictError,
        MillraceConnectionError,
        MillraceError,
        NotFoundError,
        PermissionDeniedError,
        RunFailedError,
        RunTimeoutError,
        ServiceError,
        ValidationError,
    )
    from pipelines.sdk.experiment import Experiment
    from pipelines.sdk.pipeline import Pipeline
    from pipelines.sdk.pipeline_run import PipelineRun
    from pipelines.sdk.run import OfflineRun, Run
    from pipelines.sdk.runconfig import (
        DEFAULT_CPU_IMAGE,
        CondaDependencies,
        Environment,
        RunConfiguration,
    )
    from pipelines.sdk.step_run import StepRun
    from pipelines.sdk.steps import PythonScriptStep
    from pipelines.sdk.unsupported import (
        PipelineEndpoint,
        PublishedPipeline,
        Schedule,
        ScheduleRecurrence,
    )
    from pipelines.sdk.workspace import Workspace


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipelines.sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pipelines.sdk.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DEFAULT_CPU_IMAGE",
    "ActivityFailedException",
    "AmlCompute",
    "AuthenticationError",
    "ComputeTarget",
    "ComputeTargetException",
    "CondaDependencies",
    "ConfigurationError",
    "ConflictError",
    "DataPath",
    "DataPathComputeBinding",
    "DataReference",
    "Datastore",
    "Environment",
    "Experiment",
    "InteractiveLoginAuthentication",
    "MillraceConnectionError",
    "MillraceError",
    "NotFoundError",
    "OfflineRun",
    "OutputFileDatasetConfig",
    "PermissionDeniedError",
    "Pipeline",
    "PipelineData",
    "PipelineEndpoint",
    "PipelineParameter",
    "PipelineRun",
    "PublishedPipeline",
    "PythonScriptStep",
    "Run",
    "RunConfiguration",
    "RunFailedError",
    "RunTimeoutError",
    "Schedule",
    "ScheduleRecurrence",
    "ServiceError",
    "ServicePrincipalAuthentication",
    "StepRun",
    "TokenAuthentication",
    "ValidationError",
    "Workspace",
]
