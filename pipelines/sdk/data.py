"""Data that flows through a pipeline: PipelineData, OutputFileDatasetConfig, PipelineParameter,
DataPath and DataPathComputeBinding (the ``azureml.pipeline.core`` / ``azureml.data``
counterparts).

These only describe: nothing is created or transferred until a step runs. A step's
``inputs`` / ``outputs`` / ``arguments`` hold them, and ``Pipeline`` compiles them into the
graph the server runs (see ``pipelines/sdk/pipeline.py``).
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from pipelines.sdk.data_reference import normalize_path
from pipelines.sdk.exceptions import _unsupported

if TYPE_CHECKING:
    from pipelines.sdk.steps import PythonScriptStep

__all__ = [
    "DataPath",
    "DataPathComputeBinding",
    "OutputFileDatasetConfig",
    "OutputFileDatasetInput",
    "PipelineData",
    "PipelineDataInput",
    "PipelineParameter",
    "datastore_name",
]

# The server's rule for step and output names (runs/graph.py NAME).
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\- ]{0,127}$")
INPUT_MODES = ("mount", "download")
OUTPUT_MODES = ("mount", "upload")
# azureml's default destination of an OutputFileDatasetConfig without one.
DEFAULT_DESTINATION = "dataset/{run-id}/{output-name}"


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME.match(name) or name != name.strip():
        raise ValueError(
            f"Invalid {what} name {name!r}: start with a letter or '_', then letters, digits, "
            "'_', '-', '.' or spaces (at most 128 characters)."
        )
    return name


def _check_mode(mode: Any, allowed: tuple[str, ...], what: str) -> str:
    if mode not in allowed:
        options = ", ".join(repr(m) for m in allowed)
        raise ValueError(f"Invalid {what} mode {mode!r}; allowed modes: {options}.")
    return str(mode)


def datastore_name(datastore: Any, where: str) -> str:
    """The name of a datastore given as a Datastore (anything with ``.name``) or as text.

    Args:
        datastore: a Datastore object or a datastore's name.
        where: what holds it, for the error message.

    Returns:
        The datastore's name.

    Raises:
        TypeError: it is neither.
    """
    if isinstance(datastore, str) and datastore:
        return datastore
    name = getattr(datastore, "name", None)
    if isinstance(name, str) and name:
        return name
    raise TypeError(
        f"{where}: expected a Datastore or a datastore name, not {type(datastore).__name__}."
    )


class PipelineData:
    """Intermediate data: written by one step (in its ``outputs``), read by later steps (in
    their ``inputs``). It creates the edge between the two steps. In a step's ``arguments`` it
    becomes the folder's path on the compute.

    Args:
        name: the data's name, unique in the pipeline (letters, digits, '_', '-', '.').
        datastore: the Datastore (or its name) the data is written to; None: the pipeline's
            ``default_datastore``, else ``workspaceblobstore``.
        output_name: accepted for compatibility; the output is always known by ``name``.
        output_mode: ``"mount"`` or ``"upload"``: how the producing step writes it (both end
            up on the datastore when the step finishes).
        output_path_on_compute: accepted for compatibility; ignored (the engine picks the
            folder and passes it in the arguments).
        output_overwrite: accepted for compatibility; ignored (every run writes its own folder).
        data_type: accepted for compatibility; ignored.
        is_directory: accepted for compatibility; the data is always a folder.
        pipeline_output_name: accepted for compatibility; ignored.
        training_output: not offered (AutoML); must be None.

    Raises:
        ValueError: a bad name or mode.
        TypeError: ``datastore`` is neither a Datastore nor a name.
        NotImplementedError: ``training_output`` was given.
    """

    def __init__(
        self,
        name: str,
        datastore: Any = None,
        output_name: str | None = None,
        output_mode: str = "mount",
        output_path_on_compute: str | None = None,
        output_overwrite: bool | None = None,
        data_type: str | None = None,
        is_directory: bool | None = None,
        pipeline_output_name: str | None = None,
        training_output: Any = None,
    ) -> None:
        if training_output is not None:
            raise NotImplementedError(
                "PipelineData(training_output=...) is not offered by Millrace's SDK."
            )
        self.name = _check_name(name, "PipelineData")
        self.datastore = datastore
        if datastore is not None:
            datastore_name(datastore, f"PipelineData '{name}' datastore")
        self.output_name = output_name or name
        self.output_mode = _check_mode(output_mode, OUTPUT_MODES, f"PipelineData '{name}' output")
        self.output_path_on_compute = output_path_on_compute
        self.output_overwrite = output_overwrite
        self.data_type = data_type
        self.is_directory = is_directory
        self.pipeline_output_name = pipeline_output_name
        # Steps that list this object in their outputs: a Pipeline built from only the last
        # step finds its upstream steps through them (resolve_closure).
        self._producers: list[PythonScriptStep] = []

    @property
    def datastore_name(self) -> str | None:
        """The name of the datastore given, or None (the pipeline's default is used)."""
        if self.datastore is None:
            return None
        return datastore_name(self.datastore, f"PipelineData '{self.name}' datastore")

    def as_download(
        self,
        input_name: str | None = None,
        path_on_compute: str | None = None,
        overwrite: bool | None = None,
    ) -> PipelineDataInput:
        """This data as an input copied to the compute before the consuming step runs.

        Args:
            input_name: accepted for compatibility; the input is known by the data's name.
            path_on_compute: accepted for compatibility; ignored.
            overwrite: accepted for compatibility; ignored.

        Returns:
            An input binding for a step's ``inputs`` / ``arguments``.
        """
        return PipelineDataInput(self, "download")

    def as_mount(self, input_name: str | None = None) -> PipelineDataInput:
        """This data as an input read in place by the consuming step.

        Args:
            input_name: accepted for compatibility; the input is known by the data's name.

        Returns:
            An input binding for a step's ``inputs`` / ``arguments``.
        """
        return PipelineDataInput(self, "mount")

    def as_input(self, input_name: str | None = None) -> PipelineDataInput:
        """This data as a mounted input (same as ``as_mount``).

        Args:
            input_name: accepted for compatibility; ignored.

        Returns:
            An input binding for a step's ``inputs`` / ``arguments``.
        """
        return self.as_mount(input_name)

    as_dataset = _unsupported("PipelineData.as_dataset", "Use the PipelineData itself.")
    create_input_binding = _unsupported(
        "PipelineData.create_input_binding", "Use as_mount() or as_download()."
    )

    def __str__(self) -> str:
        # azureml's text: in a step's arguments it becomes the folder's path.
        return f"$AZUREML_DATAREFERENCE_{self.name}"

    def __repr__(self) -> str:
        return (
            f"PipelineData(name={self.name!r}, datastore={self.datastore_name!r}, "
            f"output_mode={self.output_mode!r})"
        )


class PipelineDataInput:
    """How a step reads a PipelineData: ``data.as_mount()`` or ``data.as_download()``.

    Attributes:
        data: the PipelineData.
        mode: ``"mount"`` or ``"download"``.
    """

    def __init__(self, data: PipelineData, mode: str) -> None:
        self.data = data
        self.mode = _check_mode(mode, INPUT_MODES, f"PipelineData '{data.name}' input")

    @property
    def name(self) -> str:
        """The data's name."""
        return self.data.name

    def __repr__(self) -> str:
        return f"PipelineDataInput({self.data.name!r}, mode={self.mode!r})"


class OutputFileDatasetConfig:
    """A step's output written to a chosen place on a datastore. Put it in the producing
    step's ``arguments`` (the step writes into the folder it gets) and ``.as_input()`` in a
    later step's ``arguments``: inputs and outputs are inferred from the arguments.

    Args:
        name: the output's name, unique in the pipeline; None: a generated one.
        destination: ``(datastore, path)``: where the files land. The path may hold the
            placeholders ``{run-id}`` and ``{output-name}``, filled in by the server. None:
            the pipeline's default datastore at ``dataset/{run-id}/{output-name}``.
        source: accepted for compatibility; ignored (the step writes to the folder it gets).
        partition_format: not offered; must be None.

    Raises:
        ValueError: a bad name or destination path.
        TypeError: ``destination`` is not a (datastore, path) pair.
        NotImplementedError: ``partition_format`` was given.
    """

    def __init__(
        self,
        name: str | None = None,
        destination: tuple[Any, str] | None = None,
        source: str | None = None,
        partition_format: str | None = None,
    ) -> None:
        if partition_format is not None:
            raise NotImplementedError(
                "OutputFileDatasetConfig(partition_format=...) is not offered by Millrace's SDK."
            )
        self.name = _check_name(
            name or f"output_{uuid.uuid4().hex[:12]}", "OutputFileDatasetConfig"
        )
        self.destination: tuple[Any, str] | None = None
        if destination is not None:
            if not isinstance(destination, (tuple, list)) or len(destination) != 2:
                raise TypeError(
                    f"OutputFileDatasetConfig '{self.name}': destination must be a "
                    f"(datastore, path) pair, not {destination!r}."
                )
            store, path = destination
            datastore_name(store, f"OutputFileDatasetConfig '{self.name}' destination")
            if not isinstance(path, str):
                raise TypeError(
                    f"OutputFileDatasetConfig '{self.name}': the destination path must be text, "
                    f"not {type(path).__name__}."
                )
            try:
                normalized = normalize_path(path)
            except ValueError as exc:
                raise ValueError(f"OutputFileDatasetConfig '{self.name}': {exc}") from None
            self.destination = (store, normalized)
        self.source = source
        self.mode = "mount"
        self.overwrite = False
        self._producers: list[PythonScriptStep] = []

    @property
    def datastore_name(self) -> str | None:
        """The destination's datastore name, or None (the pipeline's default)."""
        if self.destination is None:
            return None
        return datastore_name(self.destination[0], f"OutputFileDatasetConfig '{self.name}'")

    @property
    def path(self) -> str:
        """The destination path, placeholders kept as text."""
        return self.destination[1] if self.destination is not None else DEFAULT_DESTINATION

    def _clone(self, *, mode: str, overwrite: bool) -> OutputFileDatasetConfig:
        copy = OutputFileDatasetConfig.__new__(OutputFileDatasetConfig)
        copy.__dict__.update(self.__dict__)
        copy.mode = mode
        copy.overwrite = overwrite
        # A copy is the same output: it shares the producers list.
        copy._producers = self._producers
        return copy

    def as_mount(self) -> OutputFileDatasetConfig:
        """The same output, written through a folder the step sees as local.

        Returns:
            The same output in mount mode.
        """
        return self._clone(mode="mount", overwrite=self.overwrite)

    def as_upload(
        self, overwrite: bool = False, source_globs: list[str] | None = None
    ) -> OutputFileDatasetConfig:
        """The same output, uploaded when the step finishes. (Millrace always uploads outputs
        when the step ends, mount or upload alike.)

        Args:
            overwrite: accepted for compatibility; files at the destination are always
                replaced (give the destination ``{run-id}`` to keep every run's files apart).
            source_globs: not offered; must be None.

        Returns:
            The same output in upload mode.

        Raises:
            NotImplementedError: ``source_globs`` was given.
        """
        if source_globs is not None:
            raise NotImplementedError(
                "OutputFileDatasetConfig.as_upload(source_globs=...) is not offered by "
                "Millrace's SDK; the whole output folder is uploaded."
            )
        return self._clone(mode="upload", overwrite=bool(overwrite))

    def as_input(self, name: str | None = None) -> OutputFileDatasetInput:
        """This output as the input of a later step (mounted); put it in that step's
        ``arguments``.

        Args:
            name: accepted for compatibility; the input is known by the output's name.

        Returns:
            An input binding; ``.as_download()`` / ``.as_mount()`` pick how it is read.
        """
        return OutputFileDatasetInput(self, "mount")

    read_delimited_files = _unsupported(
        "OutputFileDatasetConfig.read_delimited_files",
        "Use .as_input() and read the files in the step.",
    )
    read_parquet_files = _unsupported(
        "OutputFileDatasetConfig.read_parquet_files",
        "Use .as_input() and read the files in the step.",
    )
    register_on_complete = _unsupported(
        "OutputFileDatasetConfig.register_on_complete",
        "Outputs are listed on the step run; read them with StepRun.get_output_data().",
    )

    def __repr__(self) -> str:
        return (
            f"OutputFileDatasetConfig(name={self.name!r}, "
            f"destination=({self.datastore_name!r}, {self.path!r}))"
        )


class OutputFileDatasetInput:
    """How a later step reads an OutputFileDatasetConfig: ``output.as_input()``.

    Attributes:
        output: the OutputFileDatasetConfig.
        mode: ``"mount"`` or ``"download"``.
    """

    def __init__(self, output: OutputFileDatasetConfig, mode: str) -> None:
        self.output = output
        self.mode = _check_mode(mode, INPUT_MODES, f"OutputFileDatasetConfig '{output.name}' input")

    @property
    def name(self) -> str:
        """The output's name."""
        return self.output.name

    def as_mount(self, path_on_compute: str | None = None) -> OutputFileDatasetInput:
        """Read the files in place.

        Args:
            path_on_compute: accepted for compatibility; ignored.

        Returns:
            A mounted input binding.
        """
        return OutputFileDatasetInput(self.output, "mount")

    def as_download(self, path_on_compute: str | None = None) -> OutputFileDatasetInput:
        """Copy the files to the compute before the step runs.

        Args:
            path_on_compute: accepted for compatibility; ignored.

        Returns:
            A downloaded input binding.
        """
        return OutputFileDatasetInput(self.output, "download")

    def __repr__(self) -> str:
        return f"OutputFileDatasetInput({self.output.name!r}, mode={self.mode!r})"


class DataPath:
    """A location on a datastore, usable as the default of a PipelineParameter so the
    location can be changed at submit time (or through a published pipeline's REST call).

    Args:
        datastore: the Datastore (or its name).
        path_on_datastore: the file or folder; None: the datastore's root.
        name: a name for the path; default: ``<datastore>/<path>``.

    Raises:
        TypeError: ``datastore`` is neither a Datastore nor a name.
        ValueError: the path has a '..' segment.
    """

    def __init__(
        self, datastore: Any = None, path_on_datastore: str | None = None, name: str | None = None
    ) -> None:
        if datastore is None:
            raise TypeError("DataPath needs a datastore (a Datastore or its name).")
        self.datastore = datastore
        self.datastore_name = datastore_name(datastore, "DataPath datastore")
        self.path_on_datastore = normalize_path(path_on_datastore)
        self.name = name or f"{self.datastore_name}/{self.path_on_datastore}"

    def _to_json(self) -> dict[str, str]:
        """``{"datastore": <name>, "path": <path>}``, as the server takes a DataPath value."""
        return {"datastore": self.datastore_name, "path": self.path_on_datastore}

    def create_data_reference(
        self, data_reference_name: str | None = None, datapath_compute_binding: Any = None
    ) -> Any:
        """A DataReference to this location (fixed: not overridable at submit time).

        Args:
            data_reference_name: the reference's name.
            datapath_compute_binding: a DataPathComputeBinding giving the mode.

        Returns:
            A DataReference.

        Raises:
            TypeError: the datastore was given by name (a DataReference needs the object).
        """
        from pipelines.sdk.data_reference import DataReference

        if isinstance(self.datastore, str):
            raise TypeError(
                "DataPath.create_data_reference needs the DataPath's datastore as a Datastore "
                "object, not a name."
            )
        mode = datapath_compute_binding.mode if datapath_compute_binding is not None else "mount"
        return DataReference(
            self.datastore,
            data_reference_name=data_reference_name,
            path_on_datastore=self.path_on_datastore,
            mode=mode,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataPath) and self._to_json() == other._to_json()

    def __hash__(self) -> int:
        return hash((self.datastore_name, self.path_on_datastore))

    def __repr__(self) -> str:
        return (
            f"DataPath(datastore={self.datastore_name!r}, "
            f"path_on_datastore={self.path_on_datastore!r})"
        )


class DataPathComputeBinding:
    """How a step gets a DataPath: pair it with a PipelineParameter whose default is a
    DataPath, ``(param, DataPathComputeBinding(mode="mount"))``, in ``inputs`` and
    ``arguments``.

    Args:
        mode: ``"mount"`` (read in place) or ``"download"`` (copied first).
        path_on_compute: accepted for compatibility; ignored (the engine picks the folder).
        overwrite: accepted for compatibility; ignored.

    Raises:
        ValueError: an unknown mode.
    """

    def __init__(
        self, mode: str = "mount", path_on_compute: str | None = None, overwrite: bool = False
    ) -> None:
        self.mode = _check_mode(mode, INPUT_MODES, "DataPathComputeBinding")
        self.path_on_compute = path_on_compute
        self.overwrite = overwrite

    def __repr__(self) -> str:
        return f"DataPathComputeBinding(mode={self.mode!r})"


_PARAM_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "bool"),  # before int: True is an int too
    (int, "int"),
    (float, "float"),
    (str, "string"),
)


class PipelineParameter:
    """A named value with a default, overridable at submit time
    (``pipeline_parameters={"name": value}``). In a step's ``arguments`` it reaches the script
    as text on its command line; with a DataPath default it is a data location (pair it with a
    DataPathComputeBinding).

    Args:
        name: the parameter's name.
        default_value: a str, int, float, bool or DataPath; its type is the parameter's type.

    Raises:
        ValueError: a bad name.
        TypeError: a default of another type.
    """

    def __init__(self, name: str, default_value: Any) -> None:
        self.name = _check_name(name, "PipelineParameter")
        self.default_value = default_value
        self.type = _parameter_type(name, default_value)

    def _to_spec(self) -> dict[str, Any]:
        """The graph's ``{"type", "default"}`` for this parameter."""
        default = self.default_value
        if isinstance(default, DataPath):
            return {"type": "datapath", "default": default._to_json()}
        return {"type": self.type, "default": default}

    def __str__(self) -> str:
        return f"$AML_PARAMETER_{self.name}"

    def __repr__(self) -> str:
        return f"PipelineParameter(name={self.name!r}, default_value={self.default_value!r})"


def _parameter_type(name: str, value: Any) -> str:
    if isinstance(value, DataPath):
        return "datapath"
    for kind, label in _PARAM_TYPES:
        if isinstance(value, kind):
            return label
    raise TypeError(
        f"PipelineParameter '{name}': the default value must be a str, int, float, bool or "
        f"DataPath, not {type(value).__name__} ({value!r})."
    )
