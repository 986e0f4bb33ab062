"""DataReference: a path on a datastore and how a step gets it (the ``azureml.data.data_reference``
counterpart). Describing only: nothing is transferred until a step runs."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from pipelines.sdk.exceptions import _unsupported

if TYPE_CHECKING:
    from pipelines.sdk.datastore import Datastore

__all__ = ["MODES", "DataReference"]

# "mount": the step reads the data in place; "download": the step gets its own copy.
MODES = ("mount", "download")
_CURRENT = ("", "/", ".", "./")


def _validate_mode(mode: str) -> str:
    if mode not in MODES:
        allowed = ", ".join(repr(m) for m in MODES)
        raise ValueError(f"Invalid DataReference mode {mode!r}; allowed modes: {allowed}.")
    return mode


def normalize_path(path: str | None) -> str:
    """A datastore path as the server wants it: relative, '/'-separated, no './' or leading '/'.

    Args:
        path: a path as a user wrote it (``"/data/in/"``, ``"./x"``, ``None``).

    Returns:
        The path without leading '/' or './' (``""`` for the datastore's root); a trailing '/'
        is kept, since it marks a folder.

    Raises:
        ValueError: the path has a '..' segment.
    """
    if path is None or path in _CURRENT:
        return ""
    path = str(path).replace("\\", "/")
    trailing = path.endswith("/")
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise ValueError(f"The datastore path {path!r} contains '..'; it must stay inside.")
    joined = "/".join(segments)
    return f"{joined}/" if joined and trailing else joined


class DataReference:
    """A reference to a path on a datastore, used as a step input.

    Args:
        datastore: the Datastore holding the data.
        data_reference_name: a name for the reference (it names the environment variable
            ``$AZUREML_DATAREFERENCE_<name>`` in a step). Default: a random name when a path
            is given, else the datastore's name.
        path_on_datastore: the file or folder on the datastore; None: the datastore's root.
        mode: ``"mount"`` (read in place) or ``"download"`` (copied before the step runs).
        path_on_compute: where the data appears on the compute, relative to the step's working
            folder; None: a folder the engine chooses.
        overwrite: for download mode, replace what is already at ``path_on_compute``.

    Raises:
        ValueError: an unknown mode (the message names the allowed ones).
    """

    def __init__(
        self,
        datastore: Datastore,
        data_reference_name: str | None = None,
        path_on_datastore: str | None = None,
        mode: str = "mount",
        path_on_compute: str | None = None,
        overwrite: bool = False,
    ) -> None:
        self.datastore = datastore
        self.path_on_datastore = path_on_datastore
        self.mode = _validate_mode(mode)
        self.path_on_compute = path_on_compute
        self.overwrite = overwrite
        if not data_reference_name:
            # As azureml: a reference to a sub-path gets a unique name, one to the root is named
            # after its datastore.
            if path_on_datastore and path_on_datastore not in _CURRENT:
                data_reference_name = uuid.uuid4().hex
            else:
                data_reference_name = datastore.name
        self.data_reference_name = data_reference_name

    def _clone(self, **changes: Any) -> DataReference:
        values: dict[str, Any] = {
            "datastore": self.datastore,
            "data_reference_name": self.data_reference_name,
            "path_on_datastore": self.path_on_datastore,
            "mode": self.mode,
            "path_on_compute": self.path_on_compute,
            "overwrite": self.overwrite,
        }
        values.update(changes)
        return DataReference(**values)

    def as_mount(self) -> DataReference:
        """The same reference, read in place by the step.

        Returns:
            A new DataReference in ``"mount"`` mode.
        """
        return self._clone(mode="mount")

    def as_download(
        self, path_on_compute: str | None = None, overwrite: bool = False
    ) -> DataReference:
        """The same reference, copied to the compute before the step runs.

        Args:
            path_on_compute: where the copy goes, relative to the step's working folder.
            overwrite: replace what is already there.

        Returns:
            A new DataReference in ``"download"`` mode.
        """
        return self._clone(mode="download", path_on_compute=path_on_compute, overwrite=overwrite)

    as_upload = _unsupported(
        "DataReference.as_upload",
        "Declare step outputs with PipelineData or OutputFileDatasetConfig instead.",
    )

    def path(
        self, path: str | None = None, data_reference_name: str | None = None
    ) -> DataReference:
        """A reference to a path below this one.

        Args:
            path: relative to this reference's path; None, '.', '/': this path itself.
            data_reference_name: the new reference's name; None: a new unique one.

        Returns:
            A new DataReference in ``"mount"`` mode (this one when nothing changes).
        """
        if not path or path in _CURRENT:
            if data_reference_name:
                return DataReference(self.datastore, data_reference_name=data_reference_name)
            return self
        base = self.path_on_datastore
        joined = path if not base or base in _CURRENT else f"{base.rstrip('/')}/{path.lstrip('/')}"
        return DataReference(
            self.datastore, data_reference_name=data_reference_name, path_on_datastore=joined
        )

    def _to_spec(self) -> dict[str, Any]:
        """The reference as plain JSON, for submission code.

        Returns:
            ``{"datastore", "path", "mode", "name", "path_on_compute", "overwrite"}`` with the
            path normalized (``""`` for the root).

        Raises:
            ValueError: the path has a '..' segment.
        """
        return {
            "datastore": self.datastore.name,
            "path": normalize_path(self.path_on_datastore),
            "mode": self.mode,
            "name": self.data_reference_name,
            "path_on_compute": self.path_on_compute or None,
            "overwrite": bool(self.overwrite),
        }

    def __str__(self) -> str:
        # azureml's text: in a step's arguments it becomes the path on the compute.
        return f"$AZUREML_DATAREFERENCE_{self.data_reference_name}"

    def __repr__(self) -> str:
        extra = f", path_on_compute={self.path_on_compute!r}" if self.path_on_compute else ""
        return (
            f"DataReference(datastore={self.datastore.name!r}, "
            f"path_on_datastore={self.path_on_datastore!r}, mode={self.mode!r}, "
            f"data_reference_name={self.data_reference_name!r}{extra})"
        )
