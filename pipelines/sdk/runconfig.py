"""How a step's code runs: RunConfiguration, Environment and CondaDependencies (the
``azureml.core.runconfig`` / ``azureml.core.environment`` / ``azureml.core.conda_dependencies``
counterparts).

A Millrace environment is a base image plus pip packages, built once and cached by its
content. Conda packages have no place in it: the common ones (numpy, pandas, scikit-learn...)
are installed from pip instead, and any other conda package is refused when the pipeline is
validated or submitted, naming the package. ``python`` and ``pip`` entries are ignored (the
image's Python is used; its version is not checked).
"""

from __future__ import annotations

import builtins
import logging
import os
import re
from pathlib import Path
from typing import Any

from pipelines.sdk.exceptions import _unsupported

__all__ = [
    "CONDA_TO_PIP",
    "DEFAULT_CPU_IMAGE",
    "CondaDependencies",
    "DockerSection",
    "Environment",
    "PythonSection",
    "RunConfiguration",
]

log = logging.getLogger("pipelines.sdk")

# Stands for "the platform's default image": the server runs such steps in its own base image
# (MILLRACE_BASE_IMAGE), so scripts that set azureml's DEFAULT_CPU_IMAGE keep working.
DEFAULT_CPU_IMAGE = "millrace-default-cpu-image"

# Conda packages installed from pip under the same (or the given) name. None: ignored.
CONDA_TO_PIP: dict[str, str | None] = {
    "python": None,
    "pip": None,
    "numpy": "numpy",
    "pandas": "pandas",
    "scikit-learn": "scikit-learn",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
    "seaborn": "seaborn",
    "statsmodels": "statsmodels",
    "joblib": "joblib",
    "requests": "requests",
    "tqdm": "tqdm",
    "pyyaml": "PyYAML",
    "py-xgboost": "xgboost",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
}
# Packages that only make sense on Azure: scripts list them, a Millrace step does not need them.
_AZURE_ONLY = re.compile(r"^azureml([-_.][A-Za-z0-9_.\-]*)?(\[.*\])?\s*([<>=!~].*)?$", re.I)
_CONDA_SPEC = re.compile(r"^(?:[^:\s]+::)?([A-Za-z0-9_.\-]+)\s*(.*)$")


def _conda_to_pip(spec: str) -> tuple[str, str | None] | None:
    """(conda name, pip requirement or None to ignore), or None if it cannot be mapped."""
    match = _CONDA_SPEC.match(spec.strip())
    if not match:
        return None
    name, version = match.group(1).lower(), match.group(2).strip()
    if name not in CONDA_TO_PIP:
        return None
    target = CONDA_TO_PIP[name]
    if target is None:
        return name, None
    if version.startswith("=="):
        # Exact; a build string after another "=" is dropped.
        return name, f"{target}=={version[2:].split('=')[0].strip()}"
    if version.startswith("="):
        # conda's "=1.21" means any 1.21.x.
        return name, f"{target}=={version[1:].split('=')[0].strip()}.*"
    if version and version[0] in "<>!~":
        return name, f"{target}{version.replace(' ', '')}"
    if version:
        # "numpy 1.21": conda's space-separated version (a build string after it is dropped).
        return name, f"{target}=={version.split()[0]}.*"
    return name, target


class CondaDependencies:
    """The packages of an environment, as azureml's CondaDependencies writes them.

    Args:
        conda_dependencies_file_path: a conda environment file (``environment.yml``) to read.
        _underlying_structure: accepted for compatibility; ignored.

    Raises:
        ValueError: the file cannot be read or has a shape this SDK does not understand.
    """

    def __init__(
        self,
        conda_dependencies_file_path: str | os.PathLike[str] | None = None,
        _underlying_structure: Any = None,
    ) -> None:
        self._pip: list[str] = []
        self._conda: list[str] = []
        self._channels: list[str] = []
        self._python_version: str | None = None
        self.name: str | None = None
        if conda_dependencies_file_path is not None:
            spec = read_conda_file(conda_dependencies_file_path)
            self.name = spec["name"]
            self._channels = list(spec["channels"])
            for entry in spec["conda"]:
                self.add_conda_package(entry)
            for entry in spec["pip"]:
                self.add_pip_package(entry)

    @staticmethod
    def create(
        pip_packages: list[str] | None = None,
        conda_packages: list[str] | None = None,
        python_version: str | None = None,
        pin_sdk_version: bool = True,
        pip_indexurl: str | None = None,
    ) -> CondaDependencies:
        """A dependencies object with these packages.

        Args:
            pip_packages: pip requirements (``"pandas==2.2.2"``, ``"requests>=2"``).
            conda_packages: conda packages; only those in ``CONDA_TO_PIP`` are accepted when
                the pipeline is validated (installed from pip).
            python_version: recorded; the image's Python is used (not checked).
            pin_sdk_version: accepted for compatibility; ignored.
            pip_indexurl: not offered; must be None.

        Returns:
            The CondaDependencies.

        Raises:
            NotImplementedError: ``pip_indexurl`` was given.
        """
        if pip_indexurl:
            raise NotImplementedError(
                "CondaDependencies.create(pip_indexurl=...) is not offered by Millrace's SDK; "
                "the server's package index is used."
            )
        deps = CondaDependencies()
        for package in pip_packages or []:
            deps.add_pip_package(package)
        for package in conda_packages or []:
            deps.add_conda_package(package)
        if python_version:
            deps.set_python_version(python_version)
        return deps

    def add_pip_package(self, pip_package: str) -> None:
        """Add a pip requirement (replacing one for the same package).

        Args:
            pip_package: e.g. ``"pandas==2.2.2"``.

        Raises:
            TypeError: not text.
        """
        if not isinstance(pip_package, str) or not pip_package.strip():
            raise TypeError(f"A pip package must be non-empty text, not {pip_package!r}.")
        package = pip_package.strip()
        self.remove_pip_package(_requirement_name(package))
        self._pip.append(package)

    def add_conda_package(self, conda_package: str) -> None:
        """Add a conda package (checked when the pipeline is validated).

        Args:
            conda_package: e.g. ``"numpy=1.26"``.

        Raises:
            TypeError: not text.
        """
        if not isinstance(conda_package, str) or not conda_package.strip():
            raise TypeError(f"A conda package must be non-empty text, not {conda_package!r}.")
        package = conda_package.strip()
        self.remove_conda_package(_requirement_name(package))
        self._conda.append(package)

    def remove_pip_package(self, pip_package: str) -> None:
        """Remove a pip package by name.

        Args:
            pip_package: the package's name (a version is ignored).
        """
        name = _requirement_name(pip_package).lower()
        self._pip = [p for p in self._pip if _requirement_name(p).lower() != name]

    def remove_conda_package(self, conda_package: str) -> None:
        """Remove a conda package by name.

        Args:
            conda_package: the package's name (a version is ignored).
        """
        name = _requirement_name(conda_package).lower()
        self._conda = [p for p in self._conda if _requirement_name(p).lower() != name]

    def add_channel(self, channel: str) -> None:
        """Record a conda channel (conda packages are installed from pip, so it is unused).

        Args:
            channel: the channel's name.
        """
        if channel not in self._channels:
            self._channels.append(channel)

    def set_python_version(self, version: str) -> None:
        """Record the wanted Python version (the image's Python is used; not checked).

        Args:
            version: e.g. ``"3.11"``.
        """
        self._python_version = str(version)

    def get_python_version(self) -> str | None:
        """The recorded Python version.

        Returns:
            The version, or None.
        """
        return self._python_version

    @property
    def pip_packages(self) -> list[str]:
        """The pip requirements, in the order added."""
        return list(self._pip)

    @property
    def conda_packages(self) -> list[str]:
        """The conda packages, in the order added."""
        return list(self._conda)

    @property
    def conda_channels(self) -> list[str]:
        """The recorded conda channels."""
        return list(self._channels)

    def _resolved_pip_packages(self, where: str) -> tuple[list[str], list[str]]:
        """The pip requirements to install, and the problems found.

        Mapped conda packages come first, then the pip packages; azureml's own packages are
        dropped (a Millrace step imports ``pipelines.sdk`` instead).

        Args:
            where: what holds these dependencies, for the problem messages.

        Returns:
            (pip requirements, problem messages).
        """
        problems: list[str] = []
        packages: list[str] = []
        for entry in self._conda:
            mapped = _conda_to_pip(entry)
            if mapped is None:
                problems.append(
                    f"{where}: conda package {entry!r} is not supported: Millrace installs "
                    f"packages with pip. Use pip_packages=[{_requirement_name(entry)!r}] (with a "
                    "pip version specifier) instead."
                )
            elif mapped[1] is not None:
                packages.append(mapped[1])
        for entry in self._pip:
            if _AZURE_ONLY.match(entry):
                log.info("%s: %s is not installed (Azure ML only).", where, entry)
                continue
            packages.append(entry)
        # One requirement per package: a pip entry wins over a mapped conda one.
        seen: dict[str, str] = {}
        for package in packages:
            seen[_requirement_name(package).lower()] = package
        return list(seen.values()), problems

    def serialize_to_string(self) -> str:
        """The dependencies as a conda environment file.

        Returns:
            YAML text.
        """
        lines = [f"name: {self.name or 'project_environment'}"]
        if self._channels:
            lines.append("channels:")
            lines += [f"  - {c}" for c in self._channels]
        lines.append("dependencies:")
        if self._python_version:
            lines.append(f"  - python={self._python_version}")
        lines += [f"  - {c}" for c in self._conda]
        if self._pip:
            lines.append("  - pip:")
            lines += [f"    - {p}" for p in self._pip]
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write the dependencies as a conda environment file.

        Args:
            path: the file; default ``conda_dependencies.yml`` in the current folder.

        Returns:
            The path written.
        """
        target = Path(os.fspath(path)) if path is not None else Path("conda_dependencies.yml")
        target.write_text(self.serialize_to_string(), encoding="utf-8")
        return str(target)

    save_to_file = save
    add_tensorflow_conda_package = _unsupported(
        "CondaDependencies.add_tensorflow_conda_package",
        "Use add_pip_package('tensorflow').",
    )
    add_tensorflow_pip_package = _unsupported(
        "CondaDependencies.add_tensorflow_pip_package", "Use add_pip_package('tensorflow')."
    )
    sdk_origin_url = _unsupported("CondaDependencies.sdk_origin_url")

    def __repr__(self) -> str:
        return f"CondaDependencies(pip_packages={self._pip!r}, conda_packages={self._conda!r})"


def _requirement_name(requirement: str) -> str:
    """The package name of a pip or conda requirement (``"numpy==1.2"`` → ``"numpy"``)."""
    text = requirement.strip().split("::", 1)[-1]
    match = re.match(r"[A-Za-z0-9_.\-]+", text)
    return match.group(0) if match else text


def read_conda_file(file_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a conda environment file.

    Understands the shape conda writes: ``name:``, ``channels:`` (a list) and
    ``dependencies:`` (a list of conda packages, and a ``pip:`` list). Uses PyYAML when it is
    installed, else a small reader for exactly that shape.

    Args:
        file_path: the file.

    Returns:
        ``{"name": str | None, "channels": [...], "conda": [...], "pip": [...]}``.

    Raises:
        ValueError: the file cannot be read or is not in that shape; the message names the
            file (and the line, for the small reader).
    """
    path = Path(os.fspath(file_path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"Cannot read the conda file {path}: {exc.strerror or exc}") from None
    try:
        import yaml
    except ImportError:
        data = _parse_conda_yaml(text, str(path))
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"The conda file {path} is not valid YAML: {exc}") from None
    return _conda_spec_of(data, str(path))


def _conda_spec_of(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"The conda file {where} must be a mapping with 'dependencies:'.")
    channels = data.get("channels") or []
    dependencies = data.get("dependencies") or []
    if not isinstance(channels, list) or not isinstance(dependencies, list):
        raise ValueError(f"In the conda file {where}, 'channels' and 'dependencies' must be lists.")
    conda: list[str] = []
    pip: list[str] = []
    for entry in dependencies:
        if isinstance(entry, dict) and set(entry) == {"pip"} and isinstance(entry["pip"], list):
            pip.extend(str(p) for p in entry["pip"])
        elif isinstance(entry, (str, int, float)):
            conda.append(str(entry))
        else:
            raise ValueError(
                f"In the conda file {where}, the dependency {entry!r} is neither a package nor "
                "a 'pip:' list."
            )
    name = data.get("name")
    return {
        "name": str(name) if name is not None else None,
        "channels": [str(c) for c in channels],
        "conda": conda,
        "pip": pip,
    }


def _parse_conda_yaml(text: str, where: str) -> dict[str, Any]:
    """A reader for conda environment files without PyYAML: top-level ``key: value`` and
    ``key:`` + ``- item`` lists, with one nested ``- pip:`` list under ``dependencies``."""
    data: dict[str, Any] = {}
    current: list[Any] | None = None
    pip_list: list[str] | None = None
    pip_indent = -1
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if indent == 0:
            key, sep, value = stripped.partition(":")
            if not sep:
                raise ValueError(f"{where}, line {number}: expected 'key: value', got {raw!r}.")
            value = value.strip().strip("'\"")
            pip_list = None
            if value:
                data[key.strip()] = value
                current = None
            else:
                current = []
                data[key.strip()] = current
            continue
        if not stripped.startswith("-") or current is None:
            raise ValueError(
                f"{where}, line {number}: expected a list item ('- ...') under a key, got "
                f"{raw!r}. Install PyYAML to read other shapes."
            )
        item = stripped[1:].strip().strip("'\"")
        if pip_list is not None and indent > pip_indent:
            pip_list.append(item)
            continue
        pip_list = None
        if item.rstrip(":").strip() == "pip" and item.endswith(":"):
            pip_list = []
            pip_indent = indent
            current.append({"pip": pip_list})
        else:
            current.append(item)
    return data


def read_pip_requirements(file_path: str | os.PathLike[str]) -> list[str]:
    """The requirements of a pip requirements file, following ``-r other.txt``.

    Args:
        file_path: the file.

    Returns:
        The requirement lines, comments and blank lines removed.

    Raises:
        ValueError: the file cannot be read, or holds an option other than ``-r`` (such as
            ``--index-url`` or ``-e``), naming the file and line.
    """
    path = Path(os.fspath(file_path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(
            f"Cannot read the requirements file {path}: {exc.strerror or exc}"
        ) from None
    packages: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ", "--requirement=")):
            included = line.split("=", 1)[1] if "=" in line.split()[0] else line.split(None, 1)[1]
            packages.extend(read_pip_requirements(path.parent / included.strip()))
            continue
        if line.startswith("-"):
            raise ValueError(
                f"{path}, line {number}: the option {line.split()[0]!r} is not supported in "
                "Millrace environments; list package requirements only."
            )
        packages.append(line)
    return packages


class PythonSection:
    """``environment.python``: the packages the step's code needs.

    Attributes:
        conda_dependencies: a CondaDependencies.
        user_managed_dependencies: True: the image already has everything; no package is
            installed.
        interpreter_path: accepted for compatibility; ignored.
        conda_dependencies_file: accepted for compatibility; ignored.
    """

    def __init__(self) -> None:
        self.conda_dependencies = CondaDependencies()
        self.user_managed_dependencies = False
        self.interpreter_path = "python"
        self.conda_dependencies_file: str | None = None


class DockerSection:
    """``environment.docker``: the image the step runs in.

    Attributes:
        enabled: accepted for compatibility (docker compute targets always use an image).
        base_image: the image; None or ``DEFAULT_CPU_IMAGE``: the server's default image.
        base_dockerfile: not offered; must stay None.
        base_image_registry: accepted for compatibility; ignored.
        gpu_support, shm_size, arguments, shared_volumes: accepted for compatibility; ignored.
    """

    def __init__(self) -> None:
        self.enabled = False
        self.base_image: str | None = DEFAULT_CPU_IMAGE
        self.base_dockerfile: str | None = None
        self.base_image_registry: Any = None
        self.gpu_support = False
        self.shm_size: str | None = None
        self.arguments: list[str] = []
        self.shared_volumes = True


class Environment:
    """A named set of packages and a base image for a step.

    Args:
        name: the environment's name.

    Attributes:
        name: the name.
        version: accepted for compatibility.
        python: a PythonSection (``.conda_dependencies``, ``.user_managed_dependencies``).
        docker: a DockerSection (``.enabled``, ``.base_image``).
        environment_variables: not offered; must stay empty.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.version: str | None = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self.environment_variables: dict[str, str] = {}

    @staticmethod
    def from_pip_requirements(
        name: str, file_path: str | os.PathLike[str], pip_version: str | None = None
    ) -> Environment:
        """An environment with the packages of a pip requirements file.

        Args:
            name: the environment's name.
            file_path: the requirements file (``-r other.txt`` lines are followed).
            pip_version: accepted for compatibility; ignored.

        Returns:
            The Environment.

        Raises:
            ValueError: the file cannot be read or holds unsupported options.
        """
        environment = Environment(name)
        environment.python.conda_dependencies = CondaDependencies.create(
            pip_packages=read_pip_requirements(file_path)
        )
        return environment

    @staticmethod
    def from_conda_specification(name: str, file_path: str | os.PathLike[str]) -> Environment:
        """An environment with the packages of a conda environment file: its ``pip:`` list,
        and the conda packages (refused at validation unless they map to pip).

        Args:
            name: the environment's name.
            file_path: the ``environment.yml``.

        Returns:
            The Environment.

        Raises:
            ValueError: the file cannot be read or is not a conda environment file.
        """
        environment = Environment(name)
        environment.python.conda_dependencies = CondaDependencies(file_path)
        return environment

    def register(self, workspace: Any) -> Environment:
        """Environments travel with each pipeline (built once per content on the server), so
        there is nothing to register: returns this environment.

        Args:
            workspace: the Workspace (unused).

        Returns:
            This Environment.
        """
        return self

    get = _unsupported(
        "Environment.get", "Build the Environment in the script; it is sent with the pipeline."
    )
    list = _unsupported("Environment.list")
    from_docker_build_context = _unsupported(
        "Environment.from_docker_build_context", "Build the image and set docker.base_image."
    )
    from_dockerfile = _unsupported(
        "Environment.from_dockerfile", "Build the image and set docker.base_image."
    )
    from_existing_conda_environment = _unsupported("Environment.from_existing_conda_environment")
    build = _unsupported("Environment.build", "The server builds environments when steps run.")
    build_local = _unsupported("Environment.build_local")

    def _to_spec(self, where: str) -> tuple[dict[str, Any], builtins.list[str]]:
        """The graph's environment object, and the problems found.

        Args:
            where: what uses the environment, for the problem messages.

        Returns:
            (``{"pip_packages": [...], "base_image": ..., "name": ...}``, problems).
        """
        problems: builtins.list[str] = []
        packages: builtins.list[str] = []
        if not self.python.user_managed_dependencies:
            packages, problems = self.python.conda_dependencies._resolved_pip_packages(where)
        if self.environment_variables:
            problems.append(
                f"{where}: environment_variables are not offered by Millrace's SDK "
                f"({', '.join(sorted(self.environment_variables))}); pass values as arguments."
            )
        if self.docker.base_dockerfile:
            problems.append(
                f"{where}: docker.base_dockerfile is not offered by Millrace's SDK; build the "
                "image and set docker.base_image to its name."
            )
        spec: dict[str, Any] = {"pip_packages": packages}
        image = self.docker.base_image
        if image and image != DEFAULT_CPU_IMAGE:
            if not isinstance(image, str):
                problems.append(f"{where}: docker.base_image must be text, not {image!r}.")
            else:
                spec["base_image"] = image
        if self.name:
            spec["name"] = str(self.name)
        return spec, problems

    def __repr__(self) -> str:
        return f"Environment(name={self.name!r})"


class RunConfiguration:
    """Where and with what a step runs.

    Args:
        script: accepted for compatibility; ignored (steps name their script).
        arguments: accepted for compatibility; ignored (steps take arguments).
        framework: accepted for compatibility; only ``"python"`` is run.
        communicator: accepted for compatibility; ignored.
        conda_dependencies: a CondaDependencies for ``environment.python``.
        _history_enabled: accepted for compatibility; ignored.
        _path: accepted for compatibility; ignored.
        _name: accepted for compatibility; ignored.
        command: not offered; must be None.

    Attributes:
        environment: the Environment (``.docker``, ``.python``).
        target: the compute target's name, used by steps that name none; default ``"local"``.
        environment_variables: not offered; must stay empty.
        node_count: accepted for compatibility; one node per step.

    Raises:
        NotImplementedError: ``command`` was given.
    """

    def __init__(
        self,
        script: str | None = None,
        arguments: list[Any] | None = None,
        framework: str | None = None,
        communicator: str | None = None,
        conda_dependencies: CondaDependencies | None = None,
        _history_enabled: bool | None = None,
        _path: str | None = None,
        _name: str | None = None,
        command: Any = None,
    ) -> None:
        if command is not None:
            raise NotImplementedError(
                "RunConfiguration(command=...) is not offered by Millrace's SDK; use a "
                "PythonScriptStep."
            )
        self.script = script
        self.arguments = list(arguments or [])
        self.framework = framework or "Python"
        self.communicator = communicator or "None"
        self.environment = Environment()
        if conda_dependencies is not None:
            self.environment.python.conda_dependencies = conda_dependencies
        self.target: Any = "local"
        self.environment_variables: dict[str, str] = {}
        self.node_count = 1
        self.history = None
        self.data_references: dict[str, Any] = {}

    @property
    def conda_dependencies(self) -> CondaDependencies:
        """``environment.python.conda_dependencies`` (azureml's older shorthand)."""
        return self.environment.python.conda_dependencies

    @conda_dependencies.setter
    def conda_dependencies(self, value: CondaDependencies) -> None:
        self.environment.python.conda_dependencies = value

    load = _unsupported("RunConfiguration.load", "Build the RunConfiguration in the script.")
    save = _unsupported("RunConfiguration.save")

    def _to_spec(self, where: str) -> tuple[dict[str, Any], list[str]]:
        """The graph's environment object for steps using this configuration, and problems.

        Args:
            where: the step, for the problem messages.

        Returns:
            (environment object, problems).
        """
        spec, problems = self.environment._to_spec(f"{where}: runconfig.environment")
        if self.environment_variables:
            problems.append(
                f"{where}: runconfig.environment_variables are not offered by Millrace's SDK "
                f"({', '.join(sorted(self.environment_variables))}); pass values as arguments."
            )
        return spec, problems

    def __repr__(self) -> str:
        return f"RunConfiguration(target={self.target!r}, environment={self.environment!r})"
