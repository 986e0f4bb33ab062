"""PythonScriptStep: one script run as a pipeline step (the ``azureml.pipeline.steps``
counterpart).

A step only describes; ``Pipeline`` compiles its steps into the graph the server runs, and
``Pipeline.validate()`` reports every problem of every step at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pipelines.sdk.data import (
    DataPathComputeBinding,
    OutputFileDatasetConfig,
    PipelineData,
    PipelineParameter,
)
from pipelines.sdk.exceptions import _unsupported

__all__ = ["PythonScriptStep"]


def _target_name(target: Any, where: str) -> str | None:
    """A compute target given as an object (``.name``), a name, or ``(name, type)``."""
    if target is None:
        return None
    if isinstance(target, str):
        return target
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], str):
        return target[0]
    name = getattr(target, "name", None)
    if isinstance(name, str):
        return name
    raise TypeError(
        f"{where}: compute_target must be a compute target, its name, or a (name, type) "
        f"pair, not {target!r}."
    )


class PythonScriptStep:
    """Run a Python script as a step.

    Args:
        script_name: the script, relative to ``source_directory``.
        name: the step's name; default: the script's name (made unique in the pipeline).
        arguments: the script's command line: text and numbers, and data objects
            (DataReference, PipelineData, OutputFileDatasetConfig and its ``as_input()``,
            PipelineParameter, ``(PipelineParameter, DataPathComputeBinding)``), which become
            paths and values when the step runs.
        compute_target: a compute target, its name, or ``(name, type)``; default: the
            runconfig's target, else ``"local"``.
        runconfig: a RunConfiguration (its environment: pip packages and base image).
        runconfig_pipeline_params: not offered; must be empty.
        inputs: data the step reads: DataReference, PipelineData (or its ``as_mount()`` /
            ``as_download()``), ``(PipelineParameter, DataPathComputeBinding)``. Data objects
            in ``arguments`` are inputs too.
        outputs: data the step writes: PipelineData, OutputFileDatasetConfig.
        params: not offered (azureml passes them as ``AML_PARAMETER_<name>`` environment
            variables, which Millrace graphs do not carry); must be empty.
        source_directory: the folder uploaded as the step's snapshot; default: the
            pipeline's ``default_source_directory``, else the current folder.
        allow_reuse: reuse an earlier identical run of the step instead of running it.
        version: accepted for compatibility; ignored (a changed script is a changed snapshot).
        hash_paths: accepted for compatibility; ignored (the whole source directory is hashed,
            as in later azureml versions).
        target: azureml's older name for ``compute_target``.

    Raises:
        TypeError: ``script_name`` is not text, or ``compute_target`` is not a target.
        ValueError: both ``compute_target`` and ``target`` are given and differ.
        NotImplementedError: ``params`` or ``runconfig_pipeline_params`` is not empty.
    """

    def __init__(
        self,
        script_name: str,
        name: str | None = None,
        arguments: list[Any] | None = None,
        compute_target: Any = None,
        runconfig: Any = None,
        runconfig_pipeline_params: dict[str, Any] | None = None,
        inputs: list[Any] | None = None,
        outputs: list[Any] | None = None,
        params: dict[str, Any] | None = None,
        source_directory: str | os.PathLike[str] | None = None,
        allow_reuse: bool = True,
        version: str | None = None,
        hash_paths: list[str] | None = None,
        *,
        target: Any = None,
    ) -> None:
        if not isinstance(script_name, str) or not script_name.strip():
            raise TypeError(f"PythonScriptStep needs script_name as text, not {script_name!r}.")
        label = f"PythonScriptStep({script_name!r})"
        if params:
            raise NotImplementedError(
                f"{label}: params= is not offered by Millrace's SDK (azureml passes them as "
                "AML_PARAMETER_<name> environment variables, which Millrace steps do not get). "
                "Pass the values in arguments= instead, e.g. ['--alpha', PipelineParameter("
                "'alpha', default_value=0.5)]."
            )
        if runconfig_pipeline_params:
            raise NotImplementedError(
                f"{label}: runconfig_pipeline_params= is not offered by Millrace's SDK."
            )
        chosen = _target_name(compute_target, label)
        older = _target_name(target, label)
        if chosen is not None and older is not None and chosen != older:
            raise ValueError(
                f"{label}: compute_target={chosen!r} and target={older!r} disagree; give one."
            )
        self.script_name = script_name
        self.name = name
        self.arguments: list[Any] = list(arguments or [])
        self.compute_target = compute_target if compute_target is not None else target
        self._compute_target_name = chosen or older
        self.runconfig = runconfig
        self.inputs: list[Any] = list(inputs or [])
        self.outputs: list[Any] = list(outputs or [])
        # A relative folder means the folder as of now, as azureml resolves it.
        self.source_directory = (
            os.path.abspath(os.fspath(source_directory)) if source_directory is not None else None
        )
        self._cwd = os.getcwd()
        self.allow_reuse = allow_reuse
        self.version = version
        self.hash_paths = hash_paths
        self._run_after: list[PythonScriptStep] = []
        for output in self.outputs:
            if isinstance(output, (PipelineData, OutputFileDatasetConfig)):
                output._producers.append(self)
        for argument in self.arguments:
            if isinstance(argument, OutputFileDatasetConfig) and argument not in self.outputs:
                argument._producers.append(self)

    def run_after(self, step: PythonScriptStep) -> None:
        """Run this step only after ``step`` has finished (an edge without data).

        Args:
            step: the step to wait for.

        Raises:
            TypeError: ``step`` is not a step.
        """
        if not isinstance(step, PythonScriptStep):
            raise TypeError(f"run_after needs a step, not {type(step).__name__}.")
        if step not in self._run_after:
            self._run_after.append(step)

    create_node = _unsupported("PythonScriptStep.create_node")

    @property
    def compute_target_name(self) -> str | None:
        """The compute target's name, or None (the runconfig's target, else ``"local"``)."""
        return self._compute_target_name

    def _upstream(self) -> Iterable[PythonScriptStep]:
        """Steps this one depends on: producers of its data inputs and run_after steps."""
        from pipelines.sdk.data import OutputFileDatasetInput, PipelineDataInput

        for item in [*self.inputs, *self.arguments]:
            if isinstance(item, PipelineDataInput):
                item = item.data
            elif isinstance(item, OutputFileDatasetInput):
                item = item.output
            elif isinstance(item, OutputFileDatasetConfig):
                continue  # in arguments it is this step's output
            if (isinstance(item, PipelineData) and item not in self.outputs) or isinstance(
                item, OutputFileDatasetConfig
            ):
                yield from (p for p in item._producers if p is not self)
        yield from self._run_after

    def __repr__(self) -> str:
        return f"PythonScriptStep(name={self.name!r}, script_name={self.script_name!r})"


def is_datapath_input(item: Any) -> bool:
    """Whether ``item`` is ``(PipelineParameter, DataPathComputeBinding)``."""
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], PipelineParameter)
        and isinstance(item[1], DataPathComputeBinding)
    )
