"""Kind ``docker``: each step runs in its own container on the worker's Docker engine.

The container gets the step's mounts as bind mounts under ``/mnt/millrace/<mount name>``, the
step's environment variables and nothing else of the worker, no network (by default: the step
talks to the platform only through files), the worker's uid:gid (so what it writes to its
output folders belongs to the worker) and ``tini`` as PID 1 (so SIGTERM reaches the script).

Environments with pip packages are built once into an image ``millrace-env:<digest>`` on top of
the base image (``bin/test`` / ``bin/run`` build ``millrace-base:bookworm-1`` with debootstrap):
a virtualenv in ``/opt/env`` that sees the image's system packages.

The Docker SDK is imported lazily, so a worker without it (or without an engine) can still
serve ``local`` targets.
"""

from __future__ import annotations

import ast
import fcntl
import io
import os
import shlex
import subprocess
import sys
import tarfile
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from runs.executors.base import (
    BuildLog,
    EnvironmentSpec,
    Execution,
    Executor,
    ExecutorError,
    Launch,
    Mount,
    Stream,
    substitute,
    substitute_env,
)

CONTAINER_ROOT = "/mnt/millrace"
ENV_REPOSITORY = "millrace-env"
ENV_PREFIX = "/opt/env"
ENV_PYTHON = f"{ENV_PREFIX}/bin/python"
SYSTEM_PYTHON = "python3"
# Images we build say where their interpreter is, so a handle prepared by another process
# (or before a restart) still resolves "python" correctly.
PYTHON_LABEL = "millrace.python"
STEP_LABEL = "millrace.step"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_ERROR_LINES = 25
# A pip install can be silent for minutes (building a wheel); the build's HTTP read must wait.
BUILD_TIMEOUT_SECONDS = 3600
# pip settings carried from the worker's pip configuration into image builds; only network
# locations survive (a file:// index or a local folder does not exist inside the build).
PIP_URL_KEYS = ("index-url", "extra-index-url", "find-links")
PIP_PLAIN_KEYS = ("trusted-host", "timeout", "default-timeout", "retries")


# --- Pure helpers (no Docker needed; unit-tested) ------------------------------------------


def container_path(mount: Mount) -> str:
    """Where the step sees ``mount`` inside its container: ``/mnt/millrace/<name>``.

    Raises:
        ExecutorError: the name is empty, absolute or climbs out (``..``).
    """
    parts = mount.name.split("/")
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise ExecutorError(f"Invalid mount name '{mount.name}'.")
    return str(PurePosixPath(CONTAINER_ROOT, *parts))


def env_image_tag(environment: EnvironmentSpec) -> str:
    """The image an environment with pip packages is built into (its content hash as tag)."""
    return f"{ENV_REPOSITORY}:{environment.digest}"


@dataclass(frozen=True)
class ContainerConfig:
    """Arguments for the engine: ``create`` goes to ``APIClient.create_container``, ``host``
    to ``APIClient.create_host_config``."""

    create: dict[str, Any]
    host: dict[str, Any]


def container_config(
    launch: Launch,
    *,
    image: str,
    python: str,
    network: str,
    user: str,
    extra_labels: dict[str, str] | None = None,
) -> ContainerConfig:
    """Translate a Launch into the container the step runs in.

    Args:
        launch: the step attempt.
        image: the handle from ``prepare`` (an image tag).
        python: what ``argv[0] == "python"`` becomes inside that image.
        network: the engine network mode (``none`` unless the target says otherwise).
        user: ``uid:gid`` the step runs as.
        extra_labels: labels the executor adds to every container.

    Raises:
        ExecutorError: an argument names an unknown mount, or the working folder mount is
            missing.
    """
    paths = {m.name: container_path(m) for m in launch.mounts}
    argv = substitute(launch.argv, paths)
    if argv and argv[0] == "python":
        argv[0] = python
    workdir = paths.get(launch.workdir_mount)
    if workdir is None:
        raise ExecutorError(f"The working folder mount '{launch.workdir_mount}' is missing.")
    labels = {**(extra_labels or {}), **launch.labels, STEP_LABEL: launch.step_run_id}
    create: dict[str, Any] = {
        "image": image,
        "command": argv,
        "working_dir": workdir,
        # Exactly the step's variables: nothing of the worker's environment (secrets!).
        "environment": substitute_env(launch.env, paths),
        "labels": labels,
        "user": user,
        "detach": True,
        "stdin_open": False,
        "tty": False,
    }
    host: dict[str, Any] = {
        # Plain API mount objects; `Type: bind` fails on a missing source (never creates it).
        "mounts": [
            {
                "Type": "bind",
                "Source": str(m.host_path),
                "Target": paths[m.name],
                "ReadOnly": m.read_only,
            }
            for m in launch.mounts
        ],
        "network_mode": network,
        "init": True,
        "auto_remove": False,
    }
    if launch.memory_mb:
        host["mem_limit"] = f"{int(launch.memory_mb)}m"
    if launch.cpu:
        host["nano_cpus"] = int(launch.cpu * 1_000_000_000)
    return ContainerConfig(create=create, host=host)


def pip_config_for_build(config_list: str) -> str:
    """A pip.conf for image builds from ``pip config list`` output of the worker's pip.

    Keeps the package index settings that make sense inside a build (http(s) locations,
    trusted hosts, timeouts); drops local paths, file:// indexes, constraints and cert (the
    build brings its own CA bundle). Later lines win, as in pip (env over site over user over
    global).
    """
    values: dict[str, str] = {}
    for line in config_list.splitlines():
        key, sep, raw = line.partition("=")
        if not sep or "." not in key:
            continue
        name = key.rsplit(".", 1)[1].strip()
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip().strip("'\"")
        if not isinstance(value, str):
            continue
        if name in PIP_URL_KEYS:
            urls = [u for u in value.split() if u.startswith(("http://", "https://"))]
            if urls:
                values[name] = " ".join(urls)
            else:
                values.pop(name, None)
        elif name in PIP_PLAIN_KEYS:
            values[name] = value
    body = "".join(f"{name} = {value}\n" for name, value in values.items())
    return "[global]\n" + body


def env_dockerfile(base_image: str, packages: Iterable[str], digest: str) -> str:
    """The Dockerfile of an environment image: a venv in /opt/env with the packages."""
    pip_args = " ".join(shlex.quote(p) for p in packages)
    return (
        f"FROM {base_image}\n"
        "COPY ca-certificates.crt pip.conf /etc/millrace/\n"
        # Build-time settings exported inside RUN only (not ENV), so a step's environment
        # stays exactly its own.
        "RUN export PIP_CONFIG_FILE=/etc/millrace/pip.conf"
        " PIP_CERT=/etc/millrace/ca-certificates.crt"
        " PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1"
        " PIP_ROOT_USER_ACTION=ignore \\\n"
        f" && python3 -m venv --system-site-packages {ENV_PREFIX} \\\n"
        f" && {ENV_PREFIX}/bin/pip install {pip_args}\n"
        f'LABEL {PYTHON_LABEL}="{ENV_PYTHON}" millrace.environment="{digest}"\n'
    )


class _LineLog:
    """Feeds build output (arbitrary chunks) to a BuildLog one line at a time, keeping the
    last lines for the error message."""

    def __init__(self, log: BuildLog) -> None:
        self.log = log
        self.partial = ""
        self.tail: deque[str] = deque(maxlen=BUILD_ERROR_LINES)

    def feed(self, text: str) -> None:
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self.line(line)

    def line(self, line: str) -> None:
        line = line.rstrip("\r")
        self.tail.append(line)
        self.log(line)

    def close(self) -> None:
        if self.partial:
            self.line(self.partial)
            self.partial = ""


# --- The engine side ------------------------------------------------------------------------


@contextmanager
def _engine(what: str, *, ignore_gone: bool = False) -> Iterator[None]:
    """Engine failures (API errors, a refused or broken connection) become ExecutorError;
    with ``ignore_gone``, "no such container" and "not running / already being removed" are
    not failures (signalling or removing a container that has ended is a no-op)."""
    import requests
    from docker.errors import APIError, DockerException

    try:
        yield
    except APIError as exc:
        if ignore_gone and (_is_not_found(exc) or _is_conflict(exc)):
            return
        raise ExecutorError(f"{what}: {exc}") from None
    except (DockerException, requests.RequestException) as exc:
        raise ExecutorError(f"{what}: {exc}") from None


def _is_not_found(exc: Exception) -> bool:
    return getattr(getattr(exc, "response", None), "status_code", None) == 404


def _is_conflict(exc: Exception) -> bool:
    # 409: "is not running" (kill), "removal already in progress" (remove).
    return getattr(getattr(exc, "response", None), "status_code", None) == 409


class DockerExecution(Execution):
    """A started container: attached before start, so no output is lost."""

    def __init__(self, api: Any, container_id: str, stream: Any) -> None:
        self.api = api
        self.container_id = container_id
        self._stream = stream
        self._exit: int | None = None
        self._wait_error: Exception | None = None
        self._ended = threading.Event()
        self._removed = False
        self._lock = threading.Lock()
        # One blocking wait on the engine for the whole life of the step: callers poll
        # wait(0.1) without an HTTP request each time.
        self._waiter = threading.Thread(target=self._wait_for_exit, daemon=True)
        self._waiter.start()

    def _wait_for_exit(self) -> None:
        try:
            result = self.api.wait(self.container_id)
            self._exit = int(result.get("StatusCode", -1))
        except Exception as exc:  # engine gone or container removed: reported by wait()
            self._wait_error = exc
        finally:
            self._ended.set()

    def output(self) -> Iterator[tuple[Stream, bytes]]:
        try:
            for out, err in self._stream:
                if out:
                    yield "stdout", out
                if err:
                    yield "stderr", err
        except Exception:
            # The stream breaks when cleanup() removes the container under it: that is an end.
            if not self._removed:
                raise

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._ended.wait(timeout):
            return None
        if self._exit is None:
            raise ExecutorError(f"Lost track of the step's container: {self._wait_error}")
        return self._exit

    def _signal(self, signal: str) -> None:
        with _engine("Cannot signal the step's container", ignore_gone=True):
            self.api.kill(self.container_id, signal=signal)

    def terminate(self) -> None:
        self._signal("SIGTERM")

    def kill(self) -> None:
        self._signal("SIGKILL")

    def cleanup(self) -> None:
        with self._lock:
            if self._removed:
                return
            self._removed = True
        try:
            with _engine("Cannot remove the step's container", ignore_gone=True):
                self.api.remove_container(self.container_id, force=True)
        finally:
            # The socket may already be closed by the engine.
            with suppress(Exception):
                self._stream.close()


class DockerExecutor(Executor):
    """Runs steps in containers on the worker's Docker engine.

    Args:
        base_image: the image steps run in when their environment names none (built by
            ``bin/test`` / ``bin/run``).
        build_root: scratch folder for image builds.
        network: the containers' network mode; ``none`` by default.
        user: ``uid:gid`` the steps run as; by default the worker's own.
        labels: labels put on every container this executor starts (e.g. the worker's id).
    """

    kind = "docker"

    def __init__(
        self,
        base_image: str,
        build_root: Path,
        network: str = "none",
        user: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.base_image = base_image
        self.build_root = Path(build_root)
        self.network = network
        self.user = user or f"{os.getuid()}:{os.getgid()}"
        self.labels = dict(labels or {})
        self._api: Any = None
        self._api_lock = threading.Lock()
        self._pythons: dict[str, str] = {}

    @property
    def api(self) -> Any:
        """The engine's low-level client (docker.APIClient), created on first use.

        Raises:
            ExecutorError: no engine answers.
        """
        with self._api_lock:
            if self._api is None:
                import docker
                from docker.errors import DockerException

                try:
                    self._api = docker.from_env(version="auto").api
                except DockerException as exc:
                    raise ExecutorError(
                        f"Cannot reach the Docker engine ({exc}); bin/test and bin/run start one."
                    ) from None
            return self._api

    def _image_labels(self, tag: str) -> dict[str, str] | None:
        from docker.errors import APIError

        with _engine(f"Cannot inspect the image {tag}"):
            try:
                info = self.api.inspect_image(tag)
            except APIError as exc:
                if _is_not_found(exc):
                    return None
                raise
        return dict((info.get("Config") or {}).get("Labels") or {})

    def prepare(self, environment: EnvironmentSpec, log: BuildLog) -> str:
        """The image the step runs in: the base image, or an image with the environment's
        packages in a virtualenv, built once per environment digest.

        Returns:
            An image tag for ``start``.

        Raises:
            ExecutorError: the base image is missing or the build failed (with the end of the
                build log).
        """
        base = environment.base_image or self.base_image
        if environment.pip_packages:
            tag = env_image_tag(environment)
            if self._image_labels(tag) is not None:
                log(f"Reusing the image {tag}.")
            else:
                self._require_image(base)
                with self._build_lock(environment.digest):
                    if self._image_labels(tag) is not None:
                        log(f"Reusing the image {tag} (built meanwhile by another worker).")
                    else:
                        self._build(environment, base, tag, log)
            self._pythons[tag] = ENV_PYTHON
            return tag
        labels = self._require_image(base)
        self._pythons[base] = labels.get(PYTHON_LABEL, SYSTEM_PYTHON)
        log(f"Using the image {base}; no packages to install.")
        return base

    @contextmanager
    def _build_lock(self, digest: str) -> Iterator[None]:
        # Workers on one machine share its engine and build_root: one builds an environment,
        # the others wait for it instead of building it again.
        self.build_root.mkdir(parents=True, exist_ok=True)
        with open(self.build_root / f"{digest}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _require_image(self, image: str) -> dict[str, str]:
        labels = self._image_labels(image)
        if labels is None:
            hint = "; bin/test and bin/run build it" if image == self.base_image else ""
            raise ExecutorError(f"The image {image} is not on this worker's Docker engine{hint}.")
        return labels

    def _build(self, environment: EnvironmentSpec, base: str, tag: str, log: BuildLog) -> None:
        from docker.errors import APIError

        log(f"Building the image {tag} from {base}: {' '.join(environment.pip_packages)}")
        # A temporary tag first: a worker never sees the final tag on half an image.
        repository, _, final = tag.partition(":")
        temporary = f"{repository}:{final}-build-{uuid.uuid4().hex[:12]}"
        context = self._build_context(base, environment)
        lines = _LineLog(log)
        failed = ""
        with _engine(f"Building the image {tag} failed"):
            try:
                for item in self.api.build(
                    fileobj=context,
                    custom_context=True,
                    tag=temporary,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    decode=True,
                    timeout=BUILD_TIMEOUT_SECONDS,
                ):
                    if "stream" in item:
                        lines.feed(item["stream"])
                    elif "error" in item:
                        failed = str(item["error"]).strip()
                        lines.close()
                        lines.line(failed)
            except APIError as exc:
                failed = str(exc)
                lines.close()
                lines.line(failed)
        lines.close()
        if failed:
            tail = "\n".join(line for line in lines.tail if line.strip())
            raise ExecutorError(f"Building the image {tag} failed:\n{tail}")
        with _engine(f"Cannot tag the image {tag}"):
            if self._image_labels(tag) is not None:
                # Built meanwhile by a worker that does not share our build_root: keep theirs
                # (a step may already run in it) and drop ours with its layers.
                self.api.remove_image(temporary)
                log(f"The image {tag} was built meanwhile by another worker; using it.")
                return
            self.api.tag(temporary, repository, final)
            self.api.remove_image(temporary, noprune=True)  # only the temporary tag goes
        log(f"Built the image {tag}.")

    def _build_context(self, base: str, environment: EnvironmentSpec) -> io.BytesIO:
        pip_conf = pip_config_for_build(self._worker_pip_config())
        files = {
            "Dockerfile": env_dockerfile(
                base, environment.pip_packages, environment.digest
            ).encode(),
            "pip.conf": pip_conf.encode(),
            # The worker's CA bundle: pip inside the build trusts what the worker trusts.
            "ca-certificates.crt": HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b"",
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        buffer.seek(0)
        return buffer

    def _worker_pip_config(self) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return result.stdout if result.returncode == 0 else ""

    def _python_for(self, image: str) -> str:
        if image not in self._pythons:
            labels = self._image_labels(image) or {}
            self._pythons[image] = labels.get(PYTHON_LABEL, SYSTEM_PYTHON)
        return self._pythons[image]

    def start(self, launch: Launch, handle: str) -> Execution:
        """Create the container, attach to its output, then start it.

        Raises:
            ExecutorError: the engine refused the container (missing mount folder, bad image,
                command not found).
        """
        config = container_config(
            launch,
            image=handle,
            python=self._python_for(handle),
            network=self.network,
            user=self.user,
            extra_labels=self.labels,
        )
        api = self.api
        with _engine("Cannot create the step's container"):
            created = api.create_container(
                host_config=api.create_host_config(**config.host), **config.create
            )
        container_id = created["Id"]
        try:
            with _engine("Cannot start the step's container"):
                # Attached before start: everything the step prints arrives, from its first
                # byte (logs=True would also replay anything printed before the attach).
                stream = api.attach(
                    container_id, stdout=True, stderr=True, stream=True, logs=True, demux=True
                )
                api.start(container_id)
        except ExecutorError:
            with suppress(ExecutorError), _engine("", ignore_gone=True):
                api.remove_container(container_id, force=True)
            raise
        return DockerExecution(api, container_id, stream)

    def cleanup_orphans(
        self, keep: set[str] | None = None, labels: dict[str, str] | None = None
    ) -> int:
        """Remove step containers left behind (by a crashed worker).

        Args:
            keep: step run ids whose containers stay (steps still running).
            labels: only containers that carry all these labels (e.g. this host's worker id);
                by default every container with a ``millrace.step`` label.

        Returns:
            How many containers were removed.
        """
        wanted = {**self.labels, **(labels or {})}
        filters = [STEP_LABEL, *(f"{k}={v}" for k, v in wanted.items())]
        with _engine("Cannot list step containers"):
            containers = self.api.containers(all=True, filters={"label": filters})
        removed = 0
        for container in containers:
            step = (container.get("Labels") or {}).get(STEP_LABEL)
            if keep and step in keep:
                continue
            with _engine("Cannot remove a step container", ignore_gone=True):
                self.api.remove_container(container["Id"], force=True)
                removed += 1
        return removed
