"""Configuration from environment variables: a bad value stops start-up with a message naming the
variable (checked in a fresh interpreter, as the real start-up does), and the readers in
``portal.lib.env`` on their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.lib.env import (
    env_bool,
    env_int,
    env_list,
    env_path,
    env_secret,
    env_str,
    env_url,
)

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "a-perfectly-long-random-looking-secret-key-0123456789"
SETUP = "import django; django.setup()"
# Variables settings.py reads; the ones the test runner exported must not leak into the child.
CONFIG_VARS = {
    "DEBUG",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "DATABASE_URL",
    "REDIS_URL",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SESSION_COOKIE_SECURE",
}


def start_django(
    tmp_path: Path, code: str = SETUP, **overrides: str | None
) -> subprocess.CompletedProcess[str]:
    """Run ``django.setup()`` in a new interpreter with a valid production-like environment,
    changed by ``overrides`` (None removes a variable)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CONFIG_VARS and not k.startswith(("MILLRACE_", "DJANGO_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="false",
        SECRET_KEY=GOOD_SECRET,
        MILLRACE_DATA_ROOT=str(tmp_path / "data"),
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, f"start-up succeeded:\n{result.stdout}{result.stderr}"
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured:"), result.stderr
    for word in words:
        assert word in last_line, result.stderr


# --- start-up in a fresh interpreter --------------------------------------------------------


def test_the_baseline_environment_of_these_tests_starts(tmp_path):
    """Every refusal below changes one variable of this environment, which itself starts."""
    result = start_django(tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"DEBUG": "maybe"}, ["DEBUG='maybe'", "not a boolean"]),
        ({"DATABASE_URL": "mysql://x"}, ["DATABASE_URL='mysql://x'", "postgres://"]),
        ({"REDIS_URL": "http://x"}, ["REDIS_URL='http://x'", "redis://"]),
        ({"ALLOWED_HOSTS": "a,,b"}, ["ALLOWED_HOSTS='a,,b'", "empty item"]),
        (
            {"MILLRACE_DATA_ROOT": "relative/path"},
            ["MILLRACE_DATA_ROOT='relative/path'", "absolute"],
        ),
        (
            {"SECRET_KEY": None, "SECRET_KEY_FILE": "/nonexistent"},
            ["SECRET_KEY_FILE='/nonexistent'", "cannot be read"],
        ),
        ({"SECRET_KEY_FILE": "/nonexistent"}, ["SECRET_KEY and SECRET_KEY_FILE", "only one"]),
        ({"SECRET_KEY": None}, ["SECRET_KEY", "refuses the development secret"]),
        ({"SECRET_KEY": "too-short"}, ["SECRET_KEY", "shorter than 32"]),
        ({"SECRET_KEY": "   "}, ["SECRET_KEY", "empty"]),
        (
            {"MILLRACE_TOKEN_LAST_USED_RESOLUTION": "often"},
            ["MILLRACE_TOKEN_LAST_USED_RESOLUTION='often'", "whole number"],
        ),
    ],
    ids=[
        "debug-not-boolean",
        "database-url-scheme",
        "redis-url-scheme",
        "allowed-hosts-empty-item",
        "data-root-relative",
        "secret-key-file-missing",
        "secret-key-and-file",
        "production-without-secret",
        "short-secret",
        "blank-secret",
        "token-resolution-not-a-number",
    ],
)
def test_start_up_refuses_a_bad_variable_and_names_it(tmp_path, overrides, words):
    assert_refused(start_django(tmp_path, **overrides), *words)


def test_development_mode_starts_without_a_secret(tmp_path):
    result = start_django(
        tmp_path,
        SETUP + "; from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)",
        DEBUG="true",
        SECRET_KEY=None,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "django-insecure-millrace-development-only"]


def test_a_secret_key_file_is_read_and_its_newline_stripped(tmp_path):
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(GOOD_SECRET + "-from-file\n")
    result = start_django(
        tmp_path,
        SETUP + "; from django.conf import settings; print(repr(settings.SECRET_KEY))",
        SECRET_KEY=None,
        SECRET_KEY_FILE=str(secret_file),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(GOOD_SECRET + "-from-file")


def test_an_empty_secret_key_file_is_refused(tmp_path):
    secret_file = tmp_path / "secret_key"
    secret_file.write_text("\n")
    result = start_django(tmp_path, SECRET_KEY=None, SECRET_KEY_FILE=str(secret_file))
    assert_refused(result, f"SECRET_KEY_FILE='{secret_file}'", "is empty")


def test_the_default_database_is_sqlite_under_the_data_root(tmp_path):
    result = start_django(
        tmp_path,
        SETUP + "; from django.conf import settings; d = settings.DATABASES['default'];"
        " print(d['ENGINE']); print(d['NAME'])",
        DATABASE_URL=None,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        str(tmp_path / "data" / "millrace.sqlite3"),
    ]


# --- the readers, with an explicit environ ----------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " yes ", "on"])
def test_env_bool_reads_true(value):
    assert env_bool("FLAG", False, environ={"FLAG": value}) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off", ""])
def test_env_bool_reads_false(value):
    assert env_bool("FLAG", True, environ={"FLAG": value}) is False


def test_env_bool_uses_the_default_when_unset():
    assert env_bool("FLAG", True, environ={}) is True
    assert env_bool("FLAG", False, environ={}) is False


def test_env_bool_refuses_anything_else_and_names_the_variable():
    with pytest.raises(ImproperlyConfigured, match=r"FLAG='maybe' is not a boolean"):
        env_bool("FLAG", False, environ={"FLAG": "maybe"})


def test_env_readers_default_to_the_process_environment(monkeypatch):
    monkeypatch.setenv("MILLRACE_TEST_FLAG", "yes")
    assert env_bool("MILLRACE_TEST_FLAG", False) is True
    assert env_bool("MILLRACE_TEST_FLAG", False, environ={}) is False


def test_env_str_returns_the_value_or_the_default():
    assert env_str("NAME", "dflt", environ={}) == "dflt"
    assert env_str("NAME", "dflt", environ={"NAME": ""}) == ""
    assert env_str("NAME", "dflt", environ={"NAME": "x"}) == "x"


def test_env_int_reads_a_whole_number_and_defaults_when_unset_or_blank():
    assert env_int("N", 7, environ={"N": " 42 "}) == 42
    assert env_int("N", 7, environ={}) == 7
    assert env_int("N", 7, environ={"N": "  "}) == 7


def test_env_int_refuses_a_non_number():
    with pytest.raises(ImproperlyConfigured, match=r"N='4.5' is not a whole number"):
        env_int("N", 7, environ={"N": "4.5"})


def test_env_int_enforces_its_bounds_inclusively():
    assert env_int("N", 0, minimum=1, maximum=10, environ={"N": "1"}) == 1
    assert env_int("N", 0, minimum=1, maximum=10, environ={"N": "10"}) == 10
    with pytest.raises(ImproperlyConfigured, match=r"N=0 is below the minimum of 1"):
        env_int("N", 5, minimum=1, environ={"N": "0"})
    with pytest.raises(ImproperlyConfigured, match=r"N=11 is above the maximum of 10"):
        env_int("N", 5, maximum=10, environ={"N": "11"})


def test_env_list_splits_on_commas_and_strips():
    assert env_list("L", ["d"], environ={"L": "a, b ,c"}) == ["a", "b", "c"]
    assert env_list("L", ["d"], environ={"L": "only"}) == ["only"]


def test_env_list_returns_a_copy_of_the_default():
    default = ["x"]
    result = env_list("L", default, environ={})
    assert result == ["x"]
    result.append("y")
    assert default == ["x"]


@pytest.mark.parametrize("value", ["a,,b", "a,", ",a", " , "])
def test_env_list_refuses_an_empty_item(value):
    with pytest.raises(ImproperlyConfigured, match=r"L=.* has an empty item"):
        env_list("L", [], environ={"L": value})


@pytest.mark.parametrize("value", ["", " "])
def test_env_list_reads_a_blank_value_as_an_empty_list(value):
    # docker-compose passes `${VAR:-}` as an empty string for "not configured".
    assert env_list("L", ["default"], environ={"L": value}) == []


def test_env_secret_reads_the_variable_or_the_default():
    assert env_secret("S", "dflt", environ={"S": "value"}) == "value"
    assert env_secret("S", "dflt", environ={}) == "dflt"


def test_env_secret_reads_the_file_named_by_name_file(tmp_path):
    path = tmp_path / "s"
    path.write_text("  from-file \n")
    assert env_secret("S", "dflt", environ={"S_FILE": str(path)}) == "from-file"


def test_env_secret_refuses_both_the_variable_and_the_file(tmp_path):
    path = tmp_path / "s"
    path.write_text("from-file")
    with pytest.raises(ImproperlyConfigured, match=r"Set only one of S and S_FILE"):
        env_secret("S", "dflt", environ={"S": "value", "S_FILE": str(path)})


def test_env_secret_refuses_an_unreadable_or_empty_file(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(ImproperlyConfigured, match=r"S_FILE=.*missing.* cannot be read"):
        env_secret("S", "dflt", environ={"S_FILE": str(missing)})
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    with pytest.raises(ImproperlyConfigured, match=r"S_FILE=.*empty.* is empty"):
        env_secret("S", "dflt", environ={"S_FILE": str(empty)})
    with pytest.raises(ImproperlyConfigured, match=r"S_FILE=.* cannot be read"):
        env_secret("S", "dflt", environ={"S_FILE": str(tmp_path)})  # a directory


def test_env_secret_refuses_a_blank_variable():
    with pytest.raises(ImproperlyConfigured, match=r"S is set but empty"):
        env_secret("S", "dflt", environ={"S": " "})


@pytest.mark.parametrize(
    "value", ["redis://127.0.0.1:6379/0", "rediss://h:1/0", "unix:///run/redis.sock"]
)
def test_env_url_accepts_the_allowed_schemes(value):
    schemes = ("redis", "rediss", "unix")
    assert env_url("U", "redis://d", schemes=schemes, environ={"U": value}) == value


def test_env_url_strips_and_defaults():
    schemes = ("redis",)
    assert env_url("U", "redis://d", schemes=schemes, environ={"U": " redis://x "}) == "redis://x"
    assert env_url("U", "redis://d", schemes=schemes, environ={}) == "redis://d"


@pytest.mark.parametrize("value", ["http://x", "redis:/x", "redis://", "127.0.0.1:6379", ""])
def test_env_url_refuses_other_schemes_or_shapes(value):
    with pytest.raises(ImproperlyConfigured, match=r"U=.* is not a URL starting with redis://"):
        env_url("U", "redis://d", schemes=("redis",), environ={"U": value})


def test_env_url_checks_the_default_too():
    with pytest.raises(ImproperlyConfigured, match=r"U='http://d'"):
        env_url("U", "http://d", schemes=("redis",), environ={})


def test_env_path_reads_an_absolute_path_or_the_default(tmp_path):
    assert env_path("P", tmp_path, environ={}) == tmp_path
    assert env_path("P", tmp_path, environ={"P": "/srv/millrace"}) == Path("/srv/millrace")


def test_env_path_expands_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert env_path("P", Path("/d"), environ={"P": "~/data"}) == tmp_path / "data"


@pytest.mark.parametrize(
    ("value", "message"),
    [("relative/path", "must be an absolute path"), ("", "is set but empty"), (" ", "empty")],
)
def test_env_path_refuses_relative_or_empty(value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        env_path("P", Path("/d"), environ={"P": value})


def test_an_optional_secret_reads_an_empty_value_as_not_configured():
    assert env_secret("S", "", optional=True, environ={"S": ""}) == ""
    assert env_secret("S", "", optional=True, environ={"S": "", "S_FILE": ""}) == ""
    with pytest.raises(ImproperlyConfigured, match="S is set but empty"):
        env_secret("S", "", environ={"S": ""})


def test_a_bad_credentials_key_stops_start_up():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "MILLRACE_CREDENTIALS_KEY": "short",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "MILLRACE_CREDENTIALS_KEY is not a Fernet key" in result.stderr
