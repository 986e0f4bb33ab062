"""The docker executor: its pure helpers, then real containers on the engine bin/test starts
(these tests fail, never skip, without it)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from runs.executors.base import EnvironmentSpec, ExecutorError, Launch, Mount
from runs.executors.docker import (
    DockerExecutor,
    container_config,
    container_path,
    env_dockerfile,
    env_image_tag,
    pip_config_for_build,
)
from runs.tests.executor_support import (
    BOTH_STREAMS,
    Collected,
    assert_both_streams_whole,
    run_to_end,
)

BASE_IMAGE = os.environ.get("MILLRACE_BASE_IMAGE", "millrace-base:bookworm-1")


# --- Pure helpers ---------------------------------------------------------------------------


def make_launch(**overrides: Any) -> Launch:
    values: dict[str, Any] = {
        "step_run_id": "step-1",
        "argv": ["python", "-u", "{mount:snapshot}/train.py", "--data={mount:inputs/raw}"],
        "workdir_mount": "snapshot",
        "mounts": [
            Mount(Path("/srv/snap"), "snapshot"),
            Mount(Path("/srv/raw"), "inputs/raw"),
            Mount(Path("/srv/out"), "outputs/model", read_only=False),
        ],
        "env": {"AZUREML_RUN_ID": "r1", "LANG": "C.UTF-8"},
        "labels": {"millrace.run": "run-1"},
    }
    values.update(overrides)
    return Launch(**values)


def test_container_path_puts_a_mount_under_mnt_millrace() -> None:
    assert container_path(Mount(Path("/srv/raw"), "inputs/raw")) == "/mnt/millrace/inputs/raw"
    assert container_path(Mount(Path("/srv/snap"), "snapshot")) == "/mnt/millrace/snapshot"


@pytest.mark.parametrize(
    "name", ["", "/etc", "../etc", "inputs/../../etc", "a/./b", "a//b", "a/", "a\\b"]
)
def test_container_path_refuses_a_name_that_leaves_the_mount_root(name: str) -> None:
    with pytest.raises(ExecutorError, match="Invalid mount name"):
        container_path(Mount(Path("/srv/x"), name))


def test_container_config_maps_a_launch_to_the_container() -> None:
    launch = make_launch(cpu=1.5, memory_mb=512)
    config = container_config(
        launch,
        image="millrace-env:abc",
        python="/opt/env/bin/python",
        network="none",
        user="1000:1000",
        extra_labels={"millrace.worker": "w1", "millrace.run": "overridden"},
    )
    assert config.create["image"] == "millrace-env:abc"
    assert config.create["command"] == [
        "/opt/env/bin/python",
        "-u",
        "/mnt/millrace/snapshot/train.py",
        "--data=/mnt/millrace/inputs/raw",
    ]
    assert config.create["working_dir"] == "/mnt/millrace/snapshot"
    assert config.create["environment"] == {"AZUREML_RUN_ID": "r1", "LANG": "C.UTF-8"}
    assert config.create["environment"] is not launch.env
    assert config.create["labels"] == {
        "millrace.worker": "w1",
        "millrace.run": "run-1",
        "millrace.step": "step-1",
    }
    assert config.create["user"] == "1000:1000"
    assert config.create["tty"] is False
    assert config.host["network_mode"] == "none"
    assert config.host["init"] is True
    assert config.host["auto_remove"] is False
    assert config.host["mem_limit"] == "512m"
    assert config.host["nano_cpus"] == 1_500_000_000
    assert config.host["mounts"] == [
        {
            "Type": "bind",
            "Source": "/srv/snap",
            "Target": "/mnt/millrace/snapshot",
            "ReadOnly": True,
        },
        {
            "Type": "bind",
            "Source": "/srv/raw",
            "Target": "/mnt/millrace/inputs/raw",
            "ReadOnly": True,
        },
        {
            "Type": "bind",
            "Source": "/srv/out",
            "Target": "/mnt/millrace/outputs/model",
            "ReadOnly": False,
        },
    ]


def test_container_config_sets_no_limits_when_the_launch_has_none() -> None:
    config = container_config(
        make_launch(), image="i", python="python3", network="none", user="0:0"
    )
    assert "mem_limit" not in config.host
    assert "nano_cpus" not in config.host
    assert config.create["command"][0] == "python3"


def test_container_config_leaves_a_non_python_command_alone() -> None:
    launch = make_launch(argv=["sh", "-c", "ls {mount:snapshot}"])
    config = container_config(launch, image="i", python="python3", network="none", user="0:0")
    assert config.create["command"] == ["sh", "-c", "ls /mnt/millrace/snapshot"]


def test_container_config_refuses_an_unknown_mount_and_a_missing_workdir() -> None:
    with pytest.raises(ExecutorError, match="unknown mount 'nope'"):
        container_config(
            make_launch(argv=["python", "{mount:nope}/x.py"]),
            image="i",
            python="python3",
            network="none",
            user="0:0",
        )
    with pytest.raises(ExecutorError, match="working folder mount 'elsewhere'"):
        container_config(
            make_launch(workdir_mount="elsewhere"),
            image="i",
            python="python3",
            network="none",
            user="0:0",
        )


def test_pip_config_for_build_keeps_only_what_works_inside_a_build() -> None:
    listed = "\n".join(
        [
            "global.cert='/etc/ssl/certs/ca-certificates.crt'",
            "global.constraint='/etc/xdg/pip/constraints.txt'",
            "global.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'",
            "global.find-links='/opt/wheels'",
            "global.index-url='https://first.example/simple'",
            "global.trusted-host='mirror.example'",
            ":env:.default-timeout='180'",
            ":env:.index-url='https://env.example/simple'",
            "not a setting",
        ]
    )
    assert pip_config_for_build(listed) == (
        "[global]\n"
        "extra-index-url = https://mirror.example/simple\n"
        "index-url = https://env.example/simple\n"
        "trusted-host = mirror.example\n"
        "default-timeout = 180\n"
    )
    assert pip_config_for_build("") == "[global]\n"


def test_env_dockerfile_quotes_packages_for_the_shell() -> None:
    dockerfile = env_dockerfile("base:1", ["six==1.17.0", "pandas>=2; python_version>'3'"], "d1")
    assert dockerfile.startswith("FROM base:1\n")
    assert "python3 -m venv --system-site-packages /opt/env" in dockerfile
    assert "/opt/env/bin/pip install six==1.17.0 'pandas>=2; python_version>'\"'\"'3'\"'\"''" in (
        dockerfile
    )
    assert 'millrace.python="/opt/env/bin/python"' in dockerfile
    # Build settings are exported inside RUN, never baked into the image's environment.
    assert "\nENV " not in dockerfile


def test_env_image_tag_follows_the_environment_digest() -> None:
    one = EnvironmentSpec(pip_packages=("six==1.17.0", "tqdm"))
    same = EnvironmentSpec(pip_packages=("tqdm", "six==1.17.0"), name="other")
    other = EnvironmentSpec(pip_packages=("six==1.16.0", "tqdm"))
    assert env_image_tag(one) == f"millrace-env:{one.digest}"
    assert env_image_tag(one) == env_image_tag(same)
    assert env_image_tag(one) != env_image_tag(other)


# --- Against the real engine ----------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Any:
    """The engine's low-level client; fails (never skips) when there is none."""
    try:
        import docker

        client = docker.from_env(version="auto")
        client.ping()
    except Exception as exc:
        pytest.fail(f"No Docker engine answers ({exc}): run the tests with bin/test.")
    try:
        client.api.inspect_image(BASE_IMAGE)
    except Exception:
        pytest.fail(f"The base image {BASE_IMAGE} is missing: run the tests with bin/test.")
    return client.api


@pytest.fixture
def test_label() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def executor(engine: Any, tmp_path: Path, test_label: str) -> Iterator[DockerExecutor]:
    executor = DockerExecutor(
        base_image=BASE_IMAGE,
        build_root=tmp_path / "builds",
        labels={"millrace.test": test_label},
    )
    yield executor
    # Whatever a failing test left behind (only this test's containers).
    executor.cleanup_orphans()


@pytest.fixture
def snapshot() -> Iterator[Path]:
    # Not under pytest's tmp_path (mode 0700): some steps run as another uid.
    folder = Path(tempfile.mkdtemp(prefix="millrace-docker-test-"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def launch_script(
    snapshot: Path, code: str, *, step_id: str | None = None, **overrides: Any
) -> Launch:
    (snapshot / "step.py").write_text(code)
    values: dict[str, Any] = {
        "step_run_id": step_id or f"test-{uuid.uuid4().hex}",
        "argv": ["python", "-u", "{mount:snapshot}/step.py"],
        "workdir_mount": "snapshot",
        "mounts": [Mount(snapshot, "snapshot"), *overrides.pop("mounts", [])],
        "env": {"LANG": "C.UTF-8"},
    }
    values.update(overrides)
    return Launch(**values)


def run(executor: DockerExecutor, launch: Launch, timeout: float = 60) -> tuple[int, str, str]:
    return run_to_end(
        executor.start(launch, executor.prepare(launch.environment, lambda _: None)), timeout
    )


def containers_of(step_id: str) -> list[str]:
    result = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=millrace.step={step_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def test_it_captures_every_line_of_both_streams_in_order(
    executor: DockerExecutor, snapshot: Path
) -> None:
    assert_both_streams_whole(run(executor, launch_script(snapshot, BOTH_STREAMS)))


def test_it_captures_what_a_step_prints_at_once_on_start(
    executor: DockerExecutor, snapshot: Path
) -> None:
    # The first bytes come before anything could attach after start: none may be lost.
    launch = launch_script(snapshot, "", argv=["sh", "-c", "echo first; echo second >&2"])
    assert run(executor, launch) == (0, "first\n", "second\n")


@pytest.mark.parametrize("status", [0, 3])
def test_it_reports_the_exit_code(executor: DockerExecutor, snapshot: Path, status: int) -> None:
    exit_code, _, _ = run(executor, launch_script(snapshot, f"raise SystemExit({status})"))
    assert exit_code == status


def test_a_read_only_mount_cannot_be_written(executor: DockerExecutor, snapshot: Path) -> None:
    data = snapshot / "data"
    data.mkdir()
    code = "open('/mnt/millrace/inputs/raw/new.txt', 'w').write('x')\n"
    launch = launch_script(snapshot, code, mounts=[Mount(data, "inputs/raw")])
    exit_code, _, err = run(executor, launch)
    assert exit_code != 0
    assert "Read-only file system" in err
    assert not (data / "new.txt").exists()
    # The snapshot (read-only too) is not writable either.
    exit_code, _, err = run(executor, launch_script(snapshot, "open('here.txt', 'w')\n"))
    assert exit_code != 0
    assert "Read-only file system" in err


def test_a_writable_mount_receives_files_owned_by_the_worker(
    executor: DockerExecutor, snapshot: Path
) -> None:
    out = snapshot / "out"
    out.mkdir()
    code = "open('/mnt/millrace/outputs/model/model.txt', 'w').write('trained')\n"
    launch = launch_script(snapshot, code, mounts=[Mount(out, "outputs/model", read_only=False)])
    assert run(executor, launch)[0] == 0
    written = out / "model.txt"
    assert written.read_text() == "trained"
    assert (written.stat().st_uid, written.stat().st_gid) == (os.getuid(), os.getgid())


def test_steps_run_as_the_executors_user(engine: Any, tmp_path: Path, snapshot: Path) -> None:
    executor = DockerExecutor(base_image=BASE_IMAGE, build_root=tmp_path, user="4321:4322")
    out = snapshot / "out"
    out.mkdir()
    out.chmod(0o777)
    code = "import os\nopen('/mnt/millrace/out/f', 'w').write('x')\nprint(os.getuid(), os.getgid())"
    launch = launch_script(snapshot, code, mounts=[Mount(out, "out", read_only=False)])
    assert run(executor, launch)[:2] == (0, "4321 4322\n")
    assert ((out / "f").stat().st_uid, (out / "f").stat().st_gid) == (4321, 4322)


NETWORK_PROBE = """
import socket, time
print(",".join(sorted(name for _, name in socket.if_nameindex())))
started = time.monotonic()
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("1.1.1.1", 53))
    print("connected")
except OSError as exc:
    print("no route", exc.errno, round(time.monotonic() - started, 1))
"""


def test_steps_have_no_network(executor: DockerExecutor, snapshot: Path) -> None:
    exit_code, out, err = run(executor, launch_script(snapshot, NETWORK_PROBE))
    assert exit_code == 0, err
    interfaces, connect = out.splitlines()
    assert interfaces == "lo"
    assert connect.startswith("no route")
    assert float(connect.split()[-1]) < 1.0  # refused at once, not a timeout


def test_the_network_mode_is_the_executors(engine: Any, tmp_path: Path, snapshot: Path) -> None:
    executor = DockerExecutor(base_image=BASE_IMAGE, build_root=tmp_path, network="bridge")
    exit_code, out, err = run(executor, launch_script(snapshot, NETWORK_PROBE))
    assert exit_code == 0, err
    assert "eth0" in out.splitlines()[0].split(",")


def test_terminate_stops_a_sleeping_step_within_the_grace(
    executor: DockerExecutor, snapshot: Path
) -> None:
    launch = launch_script(snapshot, "import time\nprint('ready')\ntime.sleep(120)\n")
    execution = executor.start(launch, executor.prepare(launch.environment, lambda _: None))
    try:
        collected = Collected(execution)
        collected.wait_for("ready")
        assert execution.wait(0.2) is None
        started = time.monotonic()
        execution.terminate()
        assert execution.wait(5) == 128 + 15
        assert time.monotonic() - started < 5
        collected.join()
    finally:
        execution.cleanup()


def test_kill_stops_a_step_that_ignores_sigterm(executor: DockerExecutor, snapshot: Path) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('ignoring TERM', flush=True))\n"
        "print('ready')\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    launch = launch_script(snapshot, code)
    execution = executor.start(launch, executor.prepare(launch.environment, lambda _: None))
    try:
        collected = Collected(execution)
        collected.wait_for("ready")
        execution.terminate()
        collected.wait_for("ignoring TERM")
        assert execution.wait(1.0) is None
        execution.kill()
        assert execution.wait(5) == 128 + 9
        collected.join()
        # Signalling a step that has ended is harmless.
        execution.terminate()
        execution.kill()
    finally:
        execution.cleanup()


def test_cleanup_leaves_no_container(executor: DockerExecutor, snapshot: Path) -> None:
    launch = launch_script(snapshot, "import time\ntime.sleep(120)\n")
    execution = executor.start(launch, executor.prepare(launch.environment, lambda _: None))
    assert len(containers_of(launch.step_run_id)) == 1
    execution.cleanup()  # while it runs
    assert containers_of(launch.step_run_id) == []
    execution.cleanup()  # idempotent
    assert list(execution.output()) == []


def test_cleanup_of_a_container_removed_behind_its_back_is_quiet(
    engine: Any, executor: DockerExecutor, snapshot: Path
) -> None:
    launch = launch_script(snapshot, "print('done')")
    execution = executor.start(launch, executor.prepare(launch.environment, lambda _: None))
    assert execution.wait(30) == 0
    engine.remove_container(containers_of(launch.step_run_id)[0], force=True)
    execution.cleanup()
    execution.terminate()
    assert containers_of(launch.step_run_id) == []


def test_the_step_sees_exactly_its_environment(
    executor: DockerExecutor, snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "worker-secret-that-must-not-leak-0123456789")
    monkeypatch.setenv("DATABASE_URL", "postgres://worker:secret@db/millrace")
    monkeypatch.setenv("MILLRACE_WORKER_ONLY", "1")
    env = {"LANG": "C.UTF-8", "AZUREML_RUN_ID": "r-1", "PATH": "/usr/bin:/bin", "EMPTY": ""}
    code = "import json, os\nprint(json.dumps(dict(os.environ)))\n"
    exit_code, out, _ = run(executor, launch_script(snapshot, code, env=env))
    assert exit_code == 0
    seen = json.loads(out)
    assert {k: seen.get(k) for k in env} == env
    # Docker itself adds HOME and HOSTNAME; nothing else comes from anywhere.
    assert set(seen) - set(env) <= {"HOME", "HOSTNAME"}


def test_start_refuses_a_missing_mount_folder_and_leaves_nothing(
    executor: DockerExecutor, snapshot: Path
) -> None:
    launch = launch_script(
        snapshot, "print(1)", mounts=[Mount(snapshot / "does-not-exist", "inputs/raw")]
    )
    with pytest.raises(ExecutorError, match="Cannot create the step's container"):
        executor.start(launch, BASE_IMAGE)
    assert containers_of(launch.step_run_id) == []


def test_limits_reach_the_container(engine: Any, executor: DockerExecutor, snapshot: Path) -> None:
    launch = launch_script(snapshot, "print('ok')", memory_mb=64, cpu=0.5)
    execution = executor.start(launch, executor.prepare(launch.environment, lambda _: None))
    try:
        assert execution.wait(30) == 0
        host = engine.inspect_container(containers_of(launch.step_run_id)[0])["HostConfig"]
        assert (host["Memory"], host["NanoCpus"]) == (64 * 1024 * 1024, 500_000_000)
        assert host["Init"] is True
    finally:
        execution.cleanup()


def test_cleanup_orphans_removes_step_containers_except_those_kept(
    executor: DockerExecutor, snapshot: Path
) -> None:
    kept = launch_script(snapshot, "import time\ntime.sleep(120)\n")
    orphan = launch_script(snapshot, "import time\ntime.sleep(120)\n")
    for launch in (kept, orphan):
        executor.start(launch, BASE_IMAGE)  # the worker "crashes": no cleanup
    assert executor.cleanup_orphans(keep={kept.step_run_id}) == 1
    assert containers_of(orphan.step_run_id) == []
    assert len(containers_of(kept.step_run_id)) == 1
    assert executor.cleanup_orphans() == 1
    assert containers_of(kept.step_run_id) == []


def test_prepare_fails_clearly_without_the_base_image(engine: Any, tmp_path: Path) -> None:
    executor = DockerExecutor(base_image="millrace-missing:never", build_root=tmp_path)
    with pytest.raises(ExecutorError, match="bin/test and bin/run build it"):
        executor.prepare(EnvironmentSpec(), lambda _: None)


@pytest.fixture
def private_base(engine: Any) -> Iterator[str]:
    """A base image of this test's own (the base plus a unique label: a new image id), so the
    environment's digest is new and the engine's layer cache cannot stand in for a build."""
    tag = f"millrace-test-base:{uuid.uuid4().hex[:12]}"
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL millrace.test={tag.split(':')[1]}\n".encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    for _ in engine.build(fileobj=context, custom_context=True, tag=tag, rm=True, decode=True):
        pass
    yield tag
    remove_image(engine, tag)


def remove_image(engine: Any, tag: str) -> None:
    from docker.errors import ImageNotFound

    with suppress(ImageNotFound):
        engine.remove_image(tag, force=True)


def test_prepare_builds_an_environment_once_then_reuses_it(
    engine: Any, executor: DockerExecutor, private_base: str, snapshot: Path
) -> None:
    environment = EnvironmentSpec(pip_packages=("six==1.17.0",), base_image=private_base)
    first: list[str] = []
    second: list[str] = []
    try:
        handle = executor.prepare(environment, first.append)
        assert handle == f"millrace-env:{environment.digest}"
        assert any("Successfully installed six-1.17.0" in line for line in first), first
        assert executor.prepare(environment, second.append) == handle
        assert second == [f"Reusing the image {handle}."]
        # No temporary build tag is left.
        tags = [t for image in engine.images("millrace-env") for t in image["RepoTags"] or []]
        assert [t for t in tags if t.startswith(handle + "-build-")] == []
        # "python" is the environment's interpreter, which sees the package.
        code = "import six, sys\nprint(six.__version__, sys.executable)\n"
        launch = launch_script(snapshot, code, environment=environment)
        assert run(executor, launch)[:2] == (0, "1.17.0 /opt/env/bin/python\n")
        # A new executor (a restarted worker) finds the same interpreter from the image.
        fresh = DockerExecutor(base_image=BASE_IMAGE, build_root=executor.build_root)
        assert run(fresh, launch)[:2] == (0, "1.17.0 /opt/env/bin/python\n")
    finally:
        remove_image(engine, f"millrace-env:{environment.digest}")


def test_concurrent_prepares_of_one_environment_both_succeed(
    engine: Any, executor: DockerExecutor, private_base: str
) -> None:
    environment = EnvironmentSpec(pip_packages=("six==1.17.0",), base_image=private_base)
    results: list[str | Exception] = []
    logs: list[list[str]] = [[], []]

    def prepare(log: list[str]) -> None:
        try:
            # Two executors (two workers on one machine) sharing the build folder.
            worker = DockerExecutor(base_image=BASE_IMAGE, build_root=executor.build_root)
            results.append(worker.prepare(environment, log.append))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=prepare, args=(log,)) for log in logs]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert results == [f"millrace-env:{environment.digest}"] * 2
        built = [log for log in logs if any("Successfully installed six" in x for x in log)]
        assert len(built) == 1, logs
        # One image for the environment, no leftover from a second build.
        label = f"millrace.environment={environment.digest}"
        assert len(engine.images(filters={"label": label})) == 1
    finally:
        remove_image(engine, f"millrace-env:{environment.digest}")


def test_a_bad_package_fails_prepare_with_the_pip_error(executor: DockerExecutor) -> None:
    environment = EnvironmentSpec(pip_packages=("millrace-no-such-package-zz==0.0.1",))
    lines: list[str] = []
    with pytest.raises(ExecutorError) as failure:
        executor.prepare(environment, lines.append)
    message = str(failure.value)
    assert "No matching distribution found for millrace-no-such-package-zz==0.0.1" in message
    assert any("No matching distribution" in line for line in lines)
    assert executor._image_labels(env_image_tag(environment)) is None
