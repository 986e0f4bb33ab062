"""docker-compose.yml, checked by Debian's docker-compose (1.29, installed by bin/test): it
validates with the required variables, refuses to render without them, and hands the app
services what the settings need. No Docker engine is involved: ``config`` only renders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICES = ("web", "worker", "beat")
SECRET = "compose-test-secret-key-that-is-long-enough-0123456789"
PASSWORD = "compose-test-db-password"
# What the file reads from the environment; the test runner's own values must not leak in.
COMPOSE_VARS = ("SECRET_KEY", "POSTGRES_PASSWORD", "ALLOWED_HOSTS", "DOCKER_GID")


def compose(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed: bin/test installs it (apt docker-compose)"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in COMPOSE_VARS and not k.startswith(("COMPOSE_", "DOCKER_"))
    }
    env.update(variables)
    # An empty env file, so a developer's .env next to the compose file cannot change the result.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def rendered(tmp_path: Path) -> dict[str, Any]:
    """The configuration compose resolves with both required variables set."""
    result = compose(tmp_path, "config", SECRET_KEY=SECRET, POSTGRES_PASSWORD=PASSWORD)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_the_compose_file_validates_with_the_required_variables(tmp_path):
    result = compose(tmp_path, "config", "-q", SECRET_KEY=SECRET, POSTGRES_PASSWORD=PASSWORD)
    assert result.returncode == 0, result.stderr


def test_the_compose_file_refuses_to_render_without_secret_key(tmp_path):
    result = compose(tmp_path, "config", "-q", POSTGRES_PASSWORD=PASSWORD)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_the_compose_file_refuses_to_render_without_postgres_password(tmp_path):
    result = compose(tmp_path, "config", "-q", SECRET_KEY=SECRET)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD must be set" in result.stderr


def test_the_stack_has_postgres_redis_web_worker_and_beat(rendered):
    assert set(rendered["services"]) == {"postgres", "redis", "web", "worker", "beat"}


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_app_service_gets_the_database_redis_and_secret(rendered, service):
    environment = rendered["services"][service]["environment"]
    assert environment["DATABASE_URL"] == f"postgres://millrace:{PASSWORD}@postgres:5432/millrace"
    assert environment["REDIS_URL"] == "redis://redis:6379/0"
    assert environment["SECRET_KEY"] == SECRET
    assert environment["DEBUG"] == "false"
    assert environment["ALLOWED_HOSTS"] == "localhost"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_app_service_waits_for_healthy_postgres_and_redis(rendered, service):
    depends_on = rendered["services"][service]["depends_on"]
    assert depends_on == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_the_database_password_matches_the_one_the_apps_use(rendered):
    postgres = rendered["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == PASSWORD
    url = rendered["services"]["web"]["environment"]["DATABASE_URL"]
    assert url.startswith(f"postgres://{postgres['POSTGRES_USER']}:{PASSWORD}@postgres:")
    assert url.endswith(f"/{postgres['POSTGRES_DB']}")


def test_allowed_hosts_comes_from_the_environment(tmp_path):
    result = compose(
        tmp_path,
        "config",
        SECRET_KEY=SECRET,
        POSTGRES_PASSWORD=PASSWORD,
        ALLOWED_HOSTS="millrace.example,localhost",
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for service in APP_SERVICES:
        assert services[service]["environment"]["ALLOWED_HOSTS"] == "millrace.example,localhost"


def test_the_app_services_share_the_data_volume(rendered):
    for service in APP_SERVICES:
        volumes = rendered["services"][service]["volumes"]
        assert any(v.startswith("data:/data") for v in volumes), (service, volumes)
    assert "data" in rendered["volumes"]


def test_the_settings_accept_the_environment_compose_gives_the_web_service(rendered, tmp_path):
    """The rendered environment, handed to the real settings: start-up must not refuse it."""
    environment = {k: str(v) for k, v in rendered["services"]["web"]["environment"].items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MILLRACE_", "DJANGO_"))}
    for name in ("DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    env.update(environment, DJANGO_SETTINGS_MODULE="portal.settings")
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.DATABASES['default']['HOST'], s.REDIS_URL, s.ALLOWED_HOSTS)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "postgres", "redis://redis:6379/0", "['localhost']"]
