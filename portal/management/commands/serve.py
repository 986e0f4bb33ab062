"""Start the whole product on one machine: Redis (unless REDIS_URL points elsewhere), the ASGI
web server, a Celery worker and Celery beat. Ctrl-C (or SIGTERM) stops everything cleanly."""

from __future__ import annotations

import ctypes
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

PR_SET_PDEATHSIG = 1
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
STOP_GRACE_SECONDS = 10.0


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: children then outlive a SIGKILLed serve
        pass


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.log = self.log_path.open("ab")
        # Own process group: Ctrl-C in the terminal reaches only us, and we stop children in
        # order. The parent-death signal stops the child even if we are killed with SIGKILL.
        self.process = subprocess.Popen(
            self.argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            # preexec_fn only calls prctl (no locks), so it is safe with the web threads idle.
            preexec_fn=_die_with_parent,
        )

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Command(BaseCommand):
    help = "Run web + worker + beat (and a private Redis) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--concurrency", type=int, default=8, help="Steps one worker runs at once."
        )
        parser.add_argument(
            "--no-seed", action="store_true", help="Do not create the demo user and workspace."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Flush every line, also into a file or a pipe: the demo password must be kept even if
        # we are killed later.
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(line_buffering=True)
        data_root = Path(settings.MILLRACE_DATA_ROOT)
        logs = data_root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        host, port = options["host"], options["port"]
        if port_open(host if host != "0.0.0.0" else "127.0.0.1", port):  # noqa: S104
            raise CommandError(f"Port {port} on {host} is already in use; pass --port.")

        self.stdout.write("Preparing the database…")
        call_command("migrate", interactive=False, verbosity=0)
        if not settings.DEBUG:
            call_command("collectstatic", interactive=False, verbosity=0)
        if not options["no_seed"]:
            call_command("seed_demo", stdout=self.stdout)

        python = sys.executable
        bin_dir = Path(python).parent
        children: list[Child] = []
        redis = self._redis_child(data_root, logs)
        if redis is not None:
            children.append(redis)
        children += [
            Child(
                "web",
                [str(bin_dir / "daphne"), "-b", host, "-p", str(port), "portal.asgi:application"],
                logs / "web.log",
            ),
            Child(
                "worker",
                [
                    str(bin_dir / "celery"),
                    "-A",
                    "portal",
                    "worker",
                    "-l",
                    "info",
                    # Steps mostly wait on their process or container: threads, not forks.
                    "-P",
                    "threads",
                    "--concurrency",
                    str(options["concurrency"]),
                    "-Q",
                    ",".join(self._queues()),
                    "-n",
                    "millrace@%h",
                ],
                logs / "worker.log",
            ),
            Child(
                "beat",
                [
                    str(bin_dir / "celery"),
                    "-A",
                    "portal",
                    "beat",
                    "-l",
                    "info",
                    "-s",
                    str(data_root / "celerybeat-schedule"),
                ],
                logs / "beat.log",
            ),
        ]
        self._run(children, host, port, logs)

    def _queues(self) -> list[str]:
        """The default queue, the `local` target's, and `docker` when an engine answers."""
        queues = ["celery", "local"]
        if os.environ.get("MILLRACE_DOCKER") == "0":
            self.stdout.write("MILLRACE_DOCKER=0: the `docker` queue is not served.")
        elif shutil.which("docker") and Path("/var/run/docker.sock").exists():
            check = subprocess.run(["docker", "info"], capture_output=True, check=False)
            if check.returncode == 0:
                queues.append("docker")
            else:
                self.stdout.write("Docker is not reachable: the `docker` queue is not served.")
        return queues

    def _redis_child(self, data_root: Path, logs: Path) -> Child | None:
        url = urlparse(settings.REDIS_URL)
        if url.scheme != "redis" or url.hostname not in LOCAL_HOSTS:
            self.stdout.write(f"Using the Redis at {url.hostname}:{url.port or 6379}.")
            return None
        redis_port = url.port or 6379
        if port_open("127.0.0.1", redis_port):
            self.stdout.write(f"A Redis already answers on port {redis_port}; using it.")
            return None
        server = shutil.which("redis-server")
        if server is None:
            raise CommandError(
                "redis-server is not installed: run bin/run (it installs it) or "
                "'apt-get install -y redis-server', or set REDIS_URL to a running Redis."
            )
        redis_dir = data_root / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        # No persistence: Redis only carries messages; the database row is the truth.
        argv = [
            server,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(redis_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        return Child("redis", argv, logs / "redis.log")

    def _run(self, children: list[Child], host: str, port: int, logs: Path) -> None:
        env = dict(os.environ)
        stopping = False

        def request_stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        failed: Child | None = None
        try:
            for child in children:
                child.start(env)
                if child.name == "redis":
                    self._wait_for(
                        lambda: port_open("127.0.0.1", self._redis_port()), "Redis", child
                    )
            url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"  # noqa: S104
            web = next(c for c in children if c.name == "web")
            self._wait_for(lambda: self._http_ok(url), "the web server", web)
            self.stdout.write(self.style.SUCCESS(f"Millrace is up at {url}"))
            self.stdout.write(f"Logs: {logs}/{{web,worker,beat,redis}}.log. Press Ctrl-C to stop.")
            while not stopping:
                for child in children:
                    assert child.process is not None
                    if child.process.poll() is not None:
                        failed = child
                        stopping = True
                        break
                time.sleep(0.3)
        finally:
            self._stop(children)
        if failed is not None:
            assert failed.process is not None
            raise CommandError(
                f"{failed.name} exited with code {failed.process.returncode}; "
                f"the end of {failed.log_path}:\n{failed.tail()}"
            )
        self.stdout.write("Stopped.")

    def _redis_port(self) -> int:
        return urlparse(settings.REDIS_URL).port or 6379

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url + "login/", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait_for(self, check: Any, what: str, child: Child, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            assert child.process is not None
            if child.process.poll() is not None:
                raise CommandError(f"{child.name} failed to start:\n{child.tail()}")
            time.sleep(0.2)
        raise CommandError(f"{what} did not come up within {timeout:.0f}s:\n{child.tail()}")

    def _stop(self, children: list[Child]) -> None:
        """TERM every child (web first, Redis last), then KILL what is left after a grace."""
        running = [c for c in reversed(children) if c.process and c.process.poll() is None]
        if running:
            self.stdout.write("Stopping " + ", ".join(c.name for c in running) + "…")
        for child in running:
            assert child.process is not None
            if child.name == "redis":
                continue
            child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in running:
            assert child.process is not None
            if child.name == "redis":
                # Stop Redis only after its clients are gone.
                child.process.terminate()
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        for child in children:
            if child.log is not None:
                child.log.close()
