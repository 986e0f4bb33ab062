"""Millrace settings: read from environment variables only (see README "Configuration")."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from portal.lib.env import env_bool, env_int, env_list, env_path, env_secret, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEVELOPMENT_SECRET_KEY = "django-insecure-millrace-development-only"  # noqa: S105 - refused in prod

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set and DEBUG is off: production refuses the development secret. "
        "Set SECRET_KEY (or SECRET_KEY_FILE) to a long random value, or DEBUG=true for development."
    )
if not DEBUG and len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY is shorter than 32 characters: use a long random value.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

MILLRACE_DATA_ROOT = env_path("MILLRACE_DATA_ROOT", BASE_DIR / "var")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "portal",
    "pipelines",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.workspaces",
            ],
        },
    },
]

WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"


def _database() -> dict[str, object]:
    default_sqlite = f"sqlite:///{MILLRACE_DATA_ROOT / 'millrace.sqlite3'}"
    url = env_url("DATABASE_URL", default_sqlite, schemes=("sqlite", "postgres", "postgresql"))
    try:
        config: dict[str, object] = dict(
            dj_database_url.parse(url, conn_max_age=600, conn_health_checks=True)
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL cannot be parsed: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Several processes (web, worker, beat) share one file: wait instead of failing on locks.
        config["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
        config["CONN_MAX_AGE"] = 0
    if env_bool("MILLRACE_ASGI", False):  # set by portal/asgi.py for the web process
        config["CONN_MAX_AGE"] = 0
        if config["ENGINE"] == "django.db.backends.postgresql":
            # Not a connection per request: a pool shared by the request threads (psycopg_pool).
            options = dict(config.get("OPTIONS") or {})  # type: ignore[call-overload]
            options["pool"] = {"min_size": 1, "max_size": 20, "timeout": 30}
            config["OPTIONS"] = options
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "workspace-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("MILLRACE_STATIC_ROOT", BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Serve straight from the source folders without collectstatic when developing.
WHITENOISE_USE_FINDERS = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if env_bool("MILLRACE_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # ?format= is ours (the logs endpoint's format=text), not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Millrace API",
    "DESCRIPTION": "Workspaces, members, tokens and (later) pipelines and runs. "
    "Authenticate with `Authorization: Bearer <token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # socket_timeout=None: redis-py 8 defaults it to 5 s, the same as the layer's blocking
        # BZPOPMIN, so every idle consumer died with "Timeout reading from ..." after 5 s; with a
        # timeout set, redis-py also wraps each write in asyncio.wait_for, which on Python 3.11
        # can swallow a consumer's cancellation (its socket then lingers after disconnect).
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE

MILLRACE_CREDENTIALS_KEY = env_secret("MILLRACE_CREDENTIALS_KEY", "", optional=True)
if MILLRACE_CREDENTIALS_KEY:
    try:
        Fernet(MILLRACE_CREDENTIALS_KEY.encode())
    except ValueError:
        raise ImproperlyConfigured(
            "MILLRACE_CREDENTIALS_KEY is not a Fernet key (32 url-safe base64-encoded bytes); "
            "make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None
# Each workspace's `workspaceblobstore` lives in its own container of this account when set;
# otherwise it is a local folder like `workspacefilestore`.
MILLRACE_AZURE_STORAGE_CONNECTION_STRING = env_secret(
    "MILLRACE_AZURE_STORAGE_CONNECTION_STRING", "", optional=True
)
MILLRACE_MAX_UPLOAD_BYTES = env_int(
    "MILLRACE_MAX_UPLOAD_BYTES", 20 * 1024**3, minimum=1, maximum=5 * 1024**4
)
# Multipart uploads spool to disk past this size, so a big upload never sits in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("MILLRACE_MAX_FILES_PER_UPLOAD", 1000, minimum=1)

# The engine
MILLRACE_BASE_IMAGE = env_str("MILLRACE_BASE_IMAGE", "millrace-base:bookworm-1")
MILLRACE_HEARTBEAT_TIMEOUT = env_int("MILLRACE_HEARTBEAT_TIMEOUT", 30, minimum=5, maximum=3600)
MILLRACE_REQUEUE_AFTER = env_int("MILLRACE_REQUEUE_AFTER", 300, minimum=10, maximum=86400)
MILLRACE_RECONCILE_SECONDS = env_int("MILLRACE_RECONCILE_SECONDS", 10, minimum=1, maximum=3600)
CELERY_BEAT_SCHEDULE = {
    "reconcile-runs": {"task": "runs.reconcile", "schedule": float(MILLRACE_RECONCILE_SECONDS)}
}

MILLRACE_TOKEN_LAST_USED_RESOLUTION = env_int(
    "MILLRACE_TOKEN_LAST_USED_RESOLUTION", 60, minimum=0, maximum=86400
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The Azure SDK logs every request's headers at INFO.
        "azure": {"level": "WARNING"},
    },
}
