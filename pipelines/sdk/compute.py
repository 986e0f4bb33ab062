"""Compute targets: named pools that run steps (the ``azureml.core.compute`` counterpart).

A Millrace target is ``local`` (a process per step) or ``docker`` (a container per step);
azureml's AmlCompute clusters are docker targets. Targets are ready as soon as they exist:
workers serving the target's queue run its steps, ``max_nodes`` bounds how many run at once.

    target = ComputeTarget.create(ws, "cpu-cluster",
                                  AmlCompute.provisioning_configuration(max_nodes=4))
    target.wait_for_completion(show_output=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pipelines.sdk.exceptions import MillraceError, NotFoundError, _unsupported

if TYPE_CHECKING:
    from pipelines.sdk.workspace import Workspace

__all__ = [
    "AmlCompute",
    "AmlComputeProvisioningConfiguration",
    "ComputeTarget",
    "ComputeTargetException",
    "ComputeTargetStatus",
]

# The server's kind → azureml's compute type.
COMPUTE_TYPES = {"docker": "AmlCompute", "local": "local"}


class ComputeTargetException(MillraceError):
    """A compute target is missing or is not of the kind asked for (azureml's
    ``ComputeTargetException``). The message names the target and lists those there are."""


class ComputeTargetStatus:
    """A compute target's state. Millrace targets are ready once created, so
    ``provisioning_state`` is always ``"Succeeded"``.

    Args:
        data: the server's JSON for the target.

    Attributes:
        provisioning_state: ``"Succeeded"``.
        provisioning_errors: None.
        allocation_state: ``"Steady"``.
        vm_size: the size recorded on the target (``""`` when none).
        vm_priority: ``"Dedicated"``.
        scale_settings: ``{"minimum_node_count", "maximum_node_count"}``.
        creation_time: when the target was added (ISO text).
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = dict(data)
        self.provisioning_state = "Succeeded"
        self.provisioning_errors: list[Any] | None = None
        self.allocation_state = "Steady"
        self.vm_size = str(data.get("vm_size") or "")
        self.vm_priority = "Dedicated"
        self.scale_settings = {
            "minimum_node_count": int(data.get("min_nodes") or 0),
            "maximum_node_count": int(data.get("max_concurrency") or 0),
        }
        self.creation_time = data.get("created_at")

    def serialize(self) -> dict[str, Any]:
        """The status as a dict, with azureml's keys plus Millrace's own.

        Returns:
            ``{"provisioningState", "provisioningErrors", "allocationState", "vmSize",
            "vmPriority", "scaleSettings": {"minNodeCount", "maxNodeCount"}, "creationTime",
            "kind", "queue", "maxConcurrency"}``.
        """
        return {
            "provisioningState": self.provisioning_state,
            "provisioningErrors": self.provisioning_errors,
            "allocationState": self.allocation_state,
            "vmSize": self.vm_size,
            "vmPriority": self.vm_priority,
            "scaleSettings": {
                "minNodeCount": self.scale_settings["minimum_node_count"],
                "maxNodeCount": self.scale_settings["maximum_node_count"],
            },
            "creationTime": self.creation_time,
            "kind": self._data.get("kind"),
            "queue": self._data.get("queue"),
            "maxConcurrency": self._data.get("max_concurrency"),
        }

    def __repr__(self) -> str:
        return f"ComputeTargetStatus(provisioning_state={self.provisioning_state!r})"


class AmlComputeProvisioningConfiguration:
    """What ``AmlCompute.provisioning_configuration`` returns: a docker target's settings.

    Attributes:
        vm_size: recorded on the target (informational).
        min_nodes: the target's ``min_nodes``.
        max_nodes: how many of its steps run at once (``max_concurrency``).
        idle_seconds_before_scaledown: accepted for compatibility; ignored.
        description: accepted for compatibility; ignored.
    """

    def __init__(
        self,
        *,
        vm_size: str,
        min_nodes: int,
        max_nodes: int,
        idle_seconds_before_scaledown: int | None,
        description: str | None,
    ) -> None:
        self.vm_size = vm_size
        self.min_nodes = min_nodes
        self.max_nodes = max_nodes
        self.idle_seconds_before_scaledown = idle_seconds_before_scaledown
        self.description = description

    def _body(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "kind": "docker",
            "max_concurrency": self.max_nodes,
            "min_nodes": self.min_nodes,
            "vm_size": self.vm_size,
        }

    def __repr__(self) -> str:
        return (
            f"AmlComputeProvisioningConfiguration(vm_size={self.vm_size!r}, "
            f"min_nodes={self.min_nodes}, max_nodes={self.max_nodes})"
        )


class ComputeTarget:
    """A compute target of a workspace.

    ``ComputeTarget(ws, "cpu-cluster")`` fetches it and returns an ``AmlCompute`` for docker
    targets, a ``ComputeTarget`` for ``local`` ones.

    Args:
        workspace: the Workspace.
        name: the target's name.

    Raises:
        ComputeTargetException: no such target (the message lists those there are).
        MillraceError: another server error.
    """

    workspace: Workspace
    _data: dict[str, Any]

    def __new__(cls, workspace: Workspace, name: str) -> ComputeTarget:
        data = _fetch(workspace, name)
        if cls is AmlCompute and data.get("kind") != "docker":
            raise ComputeTargetException(
                f"Compute target '{name}' is a {data.get('kind')!r} target, not an AmlCompute "
                f"(docker) one; use ComputeTarget(ws, {name!r})."
            )
        return ComputeTarget._from_data(workspace, data)

    def __init__(self, workspace: Workspace, name: str) -> None:
        # Everything happens in __new__, which picks the class from the target's kind.
        pass

    @staticmethod
    def _from_data(workspace: Workspace, data: dict[str, Any]) -> ComputeTarget:
        """A handle from the server's JSON, without a request: AmlCompute for docker."""
        cls: type[ComputeTarget] = AmlCompute if data.get("kind") == "docker" else ComputeTarget
        target = object.__new__(cls)
        target.workspace = workspace
        target._data = dict(data)
        return target

    @staticmethod
    def create(workspace: Workspace, name: str, provisioning_configuration: Any) -> ComputeTarget:
        """Add a compute target to the workspace (owners only).

        Args:
            workspace: the Workspace.
            name: 2-32 letters, digits and hyphens, starting with a letter.
            provisioning_configuration: from ``AmlCompute.provisioning_configuration(...)``.

        Returns:
            The new target (an AmlCompute).

        Raises:
            TypeError: the configuration is not an AmlCompute provisioning configuration.
            ValidationError: a bad or taken name, or bad sizes (the server's words).
            PermissionDeniedError: the token's user is not an owner.
        """
        if not isinstance(provisioning_configuration, AmlComputeProvisioningConfiguration):
            raise TypeError(
                "ComputeTarget.create needs AmlCompute.provisioning_configuration(...), not "
                f"{type(provisioning_configuration).__name__}; Millrace offers AmlCompute "
                "(docker) targets only."
            )
        data = workspace._client.send_json(
            "POST", f"{workspace._api}compute/", provisioning_configuration._body(name)
        )
        return ComputeTarget._from_data(workspace, data)

    @staticmethod
    def list(workspace: Workspace) -> list[ComputeTarget]:
        """Every compute target of the workspace.

        Args:
            workspace: the Workspace.

        Returns:
            The targets, by name.

        Raises:
            MillraceError: the server could not answer.
        """
        return [
            ComputeTarget._from_data(workspace, data)
            for data in workspace._client.iter_pages(f"{workspace._api}compute/")
        ]

    attach = _unsupported("ComputeTarget.attach", "Owners add targets with ComputeTarget.create.")
    detach = _unsupported("ComputeTarget.detach", "Use delete().")
    update = _unsupported("ComputeTarget.update")
    deserialize = _unsupported("ComputeTarget.deserialize")

    # ----- properties ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The target's name."""
        return str(self._data["name"])

    @property
    def id(self) -> str:
        """The target's id (a UUID)."""
        return str(self._data.get("id", ""))

    @property
    def type(self) -> str:
        """azureml's compute type: ``"AmlCompute"`` (docker) or ``"local"``."""
        kind = str(self._data.get("kind", ""))
        return COMPUTE_TYPES.get(kind, kind)

    @property
    def kind(self) -> str:
        """Millrace's kind: ``"docker"`` or ``"local"``."""
        return str(self._data.get("kind", ""))

    @property
    def queue(self) -> str:
        """The Celery queue whose workers run the target's steps."""
        return str(self._data.get("queue", ""))

    @property
    def vm_size(self) -> str:
        """The size recorded on the target (informational)."""
        return str(self._data.get("vm_size") or "")

    @property
    def min_nodes(self) -> int:
        """The target's ``min_nodes``."""
        return int(self._data.get("min_nodes") or 0)

    @property
    def max_nodes(self) -> int:
        """How many of the target's steps run at once."""
        return int(self._data.get("max_concurrency") or 0)

    @property
    def provisioning_state(self) -> str:
        """Always ``"Succeeded"``: targets are ready once created."""
        return "Succeeded"

    @property
    def status(self) -> ComputeTargetStatus:
        """The state as of when this handle was fetched (``get_status()`` asks again)."""
        return ComputeTargetStatus(self._data)

    # ----- calls --------------------------------------------------------------------------

    def get_status(self) -> ComputeTargetStatus:
        """Fetch the target again and return its state.

        Returns:
            The ComputeTargetStatus (``.serialize()`` gives a dict).

        Raises:
            ComputeTargetException: the target was removed meanwhile.
        """
        self._data = _fetch(self.workspace, self.name)
        return self.status

    def refresh_state(self) -> None:
        """Fetch the target again.

        Raises:
            ComputeTargetException: the target was removed meanwhile.
        """
        self.get_status()

    def wait_for_completion(
        self,
        show_output: bool = False,
        min_node_count: int | None = None,
        timeout_in_minutes: int = 20,
        is_delete_operation: bool = False,
    ) -> None:
        """Wait until the target is ready. Millrace targets are ready once created, so this
        checks that it exists and returns at once.

        Args:
            show_output: print the state on one line.
            min_node_count: accepted for compatibility (workers are started separately).
            timeout_in_minutes: accepted for compatibility (there is nothing to wait for).
            is_delete_operation: accepted for compatibility.

        Raises:
            ComputeTargetException: the target does not exist (any more).
        """
        status = self.get_status()
        if show_output:
            print(
                f"{status.provisioning_state}: compute target '{self.name}' is ready "
                f"({self.kind}, up to {self.max_nodes} steps at once)."
            )

    def delete(self) -> None:
        """Remove the target from the workspace (owners only; built-in targets stay).

        Raises:
            ValidationError: a built-in target.
            PermissionDeniedError: the token's user is not an owner.
        """
        self.workspace._client.delete(_target_api(self.workspace, self.name))

    def serialize(self) -> dict[str, Any]:
        """The target as a dict.

        Returns:
            ``{"id", "name", "type", "kind", "queue", "vm_size", "min_nodes", "max_nodes",
            "provisioning_state"}``.
        """
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "queue": self.queue,
            "vm_size": self.vm_size,
            "min_nodes": self.min_nodes,
            "max_nodes": self.max_nodes,
            "provisioning_state": self.provisioning_state,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workspace={self.workspace.name!r}, name={self.name!r})"


class AmlCompute(ComputeTarget):
    """A docker compute target (azureml's AmlCompute cluster): each step in a container.

    ``AmlCompute(ws, "cpu-cluster")`` fetches it.

    Args:
        workspace: the Workspace.
        name: the target's name.

    Raises:
        ComputeTargetException: no such target, or it is not a docker target.
    """

    @staticmethod
    def provisioning_configuration(
        vm_size: str = "",
        vm_priority: str = "dedicated",
        min_nodes: int = 0,
        max_nodes: int | None = None,
        idle_seconds_before_scaledown: int | None = None,
        admin_username: str | None = None,
        admin_user_password: str | None = None,
        admin_user_ssh_key: str | None = None,
        vnet_resourcegroup_name: str | None = None,
        vnet_name: str | None = None,
        subnet_name: str | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
        remote_login_port_public_access: str = "NotSpecified",
        identity_type: str | None = None,
        identity_id: list[str] | None = None,
        location: str | None = None,
        enable_node_public_ip: bool = True,
    ) -> AmlComputeProvisioningConfiguration:
        """The settings of a new docker target, for ``ComputeTarget.create``.

        Args:
            vm_size: recorded on the target (informational; containers share the worker).
            vm_priority: accepted for compatibility; ignored.
            min_nodes: the target's ``min_nodes``.
            max_nodes: how many of its steps run at once; default 4.
            idle_seconds_before_scaledown: accepted for compatibility; ignored.
            admin_username: accepted for compatibility; ignored.
            admin_user_password: accepted for compatibility; ignored.
            admin_user_ssh_key: accepted for compatibility; ignored.
            vnet_resourcegroup_name: accepted for compatibility; ignored.
            vnet_name: accepted for compatibility; ignored.
            subnet_name: accepted for compatibility; ignored.
            tags: accepted for compatibility; ignored.
            description: accepted for compatibility; ignored.
            remote_login_port_public_access: accepted for compatibility; ignored.
            identity_type: accepted for compatibility; ignored.
            identity_id: accepted for compatibility; ignored.
            location: accepted for compatibility; ignored.
            enable_node_public_ip: accepted for compatibility; ignored.

        Returns:
            An AmlComputeProvisioningConfiguration.

        Raises:
            ValueError: ``min_nodes`` / ``max_nodes`` are not whole numbers with
                0 <= min_nodes <= max_nodes and max_nodes >= 1.
        """
        maximum = 4 if max_nodes is None else max_nodes
        for label, value in (("min_nodes", min_nodes), ("max_nodes", maximum)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{label} must be a whole number, not {value!r}.")
        if maximum < 1:
            raise ValueError(f"max_nodes must be at least 1 (got {maximum}).")
        if not 0 <= min_nodes <= maximum:
            raise ValueError(
                f"min_nodes must be between 0 and max_nodes ({maximum}); got {min_nodes}."
            )
        return AmlComputeProvisioningConfiguration(
            vm_size=str(vm_size or ""),
            min_nodes=min_nodes,
            max_nodes=maximum,
            idle_seconds_before_scaledown=idle_seconds_before_scaledown,
            description=description,
        )

    supported_vmsizes = _unsupported(
        "AmlCompute.supported_vmsizes", "vm_size is free text on Millrace (informational)."
    )
    get_active_runs = _unsupported("AmlCompute.get_active_runs")
    list_nodes = _unsupported("AmlCompute.list_nodes")
    list_usage = _unsupported("AmlCompute.list_usage")
    list_quotas = _unsupported("AmlCompute.list_quotas")


def _target_api(workspace: Workspace, name: str) -> str:
    return f"{workspace._api}compute/{quote(name, safe='')}/"


def _fetch(workspace: Workspace, name: str) -> dict[str, Any]:
    """The server's JSON for a target, or ComputeTargetException naming those there are."""
    if not isinstance(name, str) or not name:
        raise ComputeTargetException(
            f"A compute target's name must be non-empty text, not {name!r}."
        )
    try:
        data: dict[str, Any] = workspace._client.get_json(_target_api(workspace, name))
    except NotFoundError as exc:
        message = f"Compute target '{name}' was not found in workspace '{workspace.name}'."
        try:
            names = sorted(
                str(t["name"]) for t in workspace._client.iter_pages(f"{workspace._api}compute/")
            )
        except MillraceError:
            names = []
        if names:
            message += f" It has: {', '.join(names)}."
        raise ComputeTargetException(message, status_code=exc.status_code, url=exc.url) from None
    return data
