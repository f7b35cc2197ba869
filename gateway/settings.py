"""The one settings module. Every value comes from the environment (the README's configuration table).

With nothing set, the gateway runs on the embedded default: SQLite, local-memory cache,
in-memory channel layer and a filesystem Celery broker, so `make run` works on a bare machine.
`GATEWAY_ENV=prod` refuses to boot while any secret still has its development default.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(str(BASE_DIR / ".env"))

DATA_DIR = Path(env.str("GATEWAY_DATA_DIR", default=str(BASE_DIR / ".data")))


def env_list(name: str, default: str = "") -> list[str]:
    """Comma-separated list, blanks dropped (jan-server's format for hosts and e-mails)."""
    return [part.strip() for part in env.str(name, default=default).split(",") if part.strip()]


# --- Core --------------------------------------------------------------------
GATEWAY_ENV = env.str("GATEWAY_ENV", default="dev")
if GATEWAY_ENV not in ("dev", "test", "prod"):
    raise ImproperlyConfigured(f"GATEWAY_ENV must be dev, test or prod, not {GATEWAY_ENV!r}.")
IS_PROD = GATEWAY_ENV == "prod"
IS_DEV = GATEWAY_ENV == "dev"
GATEWAY_VERSION = "0.1.0"

# Development defaults for secrets. Production refuses every one of them (see the check below).
_DEV_SECRETS = {
    "DJANGO_SECRET_KEY": "dev-insecure-django-secret-key-change-me-0123456789",
    "JWT_SECRET": "dev-insecure-jwt-secret-change-me-0123456789abcdef",
    "APIKEY_SECRET": "dev-insecure-apikey-secret-change-me-0123456789",
    "MODEL_PROVIDER_SECRET": "dev-insecure-model-provider-secret-change-me",
}


def _secret(name: str) -> str:
    value: str = env.str(name, default=_DEV_SECRETS[name])
    if IS_PROD and (not value or value == _DEV_SECRETS[name]):
        raise ImproperlyConfigured(
            f"GATEWAY_ENV=prod refuses to start: {name} is unset or still the development default."
        )
    return value


SECRET_KEY = _secret("DJANGO_SECRET_KEY")
JWT_SECRET = _secret("JWT_SECRET")
APIKEY_SECRET = _secret("APIKEY_SECRET")
MODEL_PROVIDER_SECRET = _secret("MODEL_PROVIDER_SECRET")

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", default="*" if not IS_PROD else "")
if IS_PROD and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("GATEWAY_ENV=prod refuses to start: DJANGO_ALLOWED_HOSTS is unset.")

# daphne's app only makes `manage.py runserver` serve ASGI (streams unbuffered); it imports
# Twisted, 26 MB in every process that loads the apps (web workers, Celery), so it is installed
# for runserver alone. `SERVER=daphne` (gateway.server) runs daphne without it.
_RUNSERVER = len(sys.argv) > 1 and sys.argv[1] == "runserver"
INSTALLED_APPS = [
    *(["daphne"] if _RUNSERVER else []),  # first, so its runserver is the one used
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.google",
    "gateway",
    "accounts",
    "organizations",
    "inference",
    "conversations",
    "responses",
    "mcp_server",
]

MIDDLEWARE = [
    "gateway.middleware.RequestContextMiddleware",  # request id, JSON errors, access log: outermost
    "corsheaders.middleware.CorsMiddleware",
    "gateway.middleware.BrowserOnlyMiddleware",  # runs BROWSER_MIDDLEWARE for admin/docs pages only
    "allauth.account.middleware.AccountMiddleware",  # natively async; allauth requires it here
]
BROWSER_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "gateway.urls"
ASGI_APPLICATION = "gateway.asgi.application"
WSGI_APPLICATION = "gateway.wsgi.application"
APPEND_SLASH = False  # API paths have no trailing slash (as OpenAI's); never redirect a POST
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------
# jan-server's variable names first; DATABASE_URL is accepted as the primary too.
_PRIMARY_DSN = env.str("DB_POSTGRESQL_WRITE_DSN", default="") or env.str("DATABASE_URL", default="")
_DB_POOL = {
    "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
    "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
}


def _database(dsn: str) -> dict[str, Any]:
    config: dict[str, Any] = env.db_url_config(dsn)
    config["ATOMIC_REQUESTS"] = False  # Django refuses it for async views; services own transactions
    config["CONN_MAX_AGE"] = 0  # ASGI: no persistent connections, the psycopg pool instead
    if config["ENGINE"] == "django.db.backends.postgresql":
        config.setdefault("OPTIONS", {})["pool"] = dict(_DB_POOL)
    return config


if _PRIMARY_DSN:
    DATABASES: dict[str, dict[str, Any]] = {"default": _database(_PRIMARY_DSN)}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env.str("SQLITE_PATH", default=str(DATA_DIR / "gateway.sqlite3")),
            "ATOMIC_REQUESTS": False,
            "CONN_MAX_AGE": 0,
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }

# Read replicas: DB_POSTGRESQL_READ1_DSN, DB_POSTGRESQL_READ2_DSN, ... (gateway.db_router)
DATABASE_REPLICAS: list[str] = []
for _index in range(1, 10):
    _replica_dsn = env.str(f"DB_POSTGRESQL_READ{_index}_DSN", default="")
    if not _replica_dsn:
        continue
    _alias = f"replica{_index}"
    DATABASES[_alias] = _database(_replica_dsn)
    if DATABASES[_alias]["ENGINE"] == "django.db.backends.postgresql":
        # A replica that cannot be reached hands its reads to the primary (gateway.replica_backend):
        # a short connect timeout, a pool that checks a connection before lending it and gives
        # up quickly.
        DATABASES[_alias]["ENGINE"] = "gateway.replica_backend"
        DATABASES[_alias]["CONN_HEALTH_CHECKS"] = True
        DATABASES[_alias]["OPTIONS"].setdefault("connect_timeout", 2)
        DATABASES[_alias]["OPTIONS"]["pool"]["timeout"] = env.float(
            "DB_REPLICA_POOL_TIMEOUT_SECONDS", default=1.0
        )
    # Tests: the test runner creates test_<name> on the primary and the standby replicates it;
    # MIRROR points this alias at that database name on the replica's own host and port.
    DATABASES[_alias]["TEST"] = {"MIRROR": "default"}
    DATABASE_REPLICAS.append(_alias)
if DATABASE_REPLICAS and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Records the WAL position of each committed write, for read-your-writes on the replicas.
    DATABASES["default"]["ENGINE"] = "gateway.primary_backend"
DATABASE_ROUTERS = ["gateway.db_router.PrimaryReplicaRouter"]

# --- Read replicas and read-your-writes (gateway.db_router) ------------------------------
# A replica lagging more than this, or unreachable, is out of rotation until it catches up.
DB_REPLICA_MAX_LAG_SECONDS = env.float("DB_REPLICA_MAX_LAG_SECONDS", default=5.0)
# How long a process trusts a replica's probed lag and health before probing again.
DB_REPLICA_STATUS_SECONDS = env.float("DB_REPLICA_STATUS_SECONDS", default=1.0)
# How long a replay position that is behind a reader's is trusted before asking the replica again.
DB_REPLICA_LSN_CACHE_SECONDS = env.float("DB_REPLICA_LSN_CACHE_SECONDS", default=0.05)
# Statement timeout of a replica probe (probes run in the background, never in a request).
DB_REPLICA_PROBE_TIMEOUT_SECONDS = env.float("DB_REPLICA_PROBE_TIMEOUT_SECONDS", default=0.5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, channel layer ------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery ------------------------------------------------------------------
# No Redis: kombu's filesystem transport, so worker and beat are still real processes.
_BROKER_DIR = DATA_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
else:
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "store_processed": False,
        # Else kombu keeps its exchange tables in ./control, inside whatever folder runs it.
        "control_folder": str(_BROKER_DIR / "control"),
    }
    for _folder in ("queue", "processed", "control"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=540)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {}

# --- Auth and identity ----------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ORGANIZATION_ADMIN_EMAILS = env_list("ORGANIZATION_ADMIN_EMAILS")
OAUTH2_GOOGLE_CLIENT_ID = env.str("OAUTH2_GOOGLE_CLIENT_ID", default="")
OAUTH2_GOOGLE_CLIENT_SECRET = env.str("OAUTH2_GOOGLE_CLIENT_SECRET", default="")
OAUTH2_GOOGLE_REDIRECT_URL = env.str("OAUTH2_GOOGLE_REDIRECT_URL", default="")
# Configurable so tests can point Google at a local fake identity provider.
OAUTH2_GOOGLE_AUTHORIZE_URL = env.str(
    "OAUTH2_GOOGLE_AUTHORIZE_URL", default="https://accounts.google.com/o/oauth2/v2/auth"
)
OAUTH2_GOOGLE_TOKEN_URL = env.str("OAUTH2_GOOGLE_TOKEN_URL", default="https://oauth2.googleapis.com/token")
OAUTH2_GOOGLE_CERTS_URL = env.str(
    "OAUTH2_GOOGLE_CERTS_URL", default="https://www.googleapis.com/oauth2/v3/certs"
)
OAUTH2_GOOGLE_ISSUER = env.str("OAUTH2_GOOGLE_ISSUER", default="https://accounts.google.com")
SOCIALACCOUNT_PROVIDERS = {
    "google": {
        "APPS": [
            {"client_id": OAUTH2_GOOGLE_CLIENT_ID, "secret": OAUTH2_GOOGLE_CLIENT_SECRET, "key": ""},
        ]
        if OAUTH2_GOOGLE_CLIENT_ID
        else [],
        "SCOPE": ["openid", "email", "profile"],
        "OAUTH_PKCE_ENABLED": True,
    }
}
ACCESS_TOKEN_LIFETIME_SECONDS = env.int("ACCESS_TOKEN_LIFETIME_SECONDS", default=15 * 60)
REFRESH_TOKEN_LIFETIME_SECONDS = env.int("REFRESH_TOKEN_LIFETIME_SECONDS", default=7 * 24 * 3600)
REFRESH_COOKIE_NAME = "jan_refresh_token"
OAUTH_STATE_COOKIE_NAME = "jan_oauth_state"
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=300)

# --- Upstreams ------------------------------------------------------------------
JAN_INFERENCE_MODEL_URL = env.str("JAN_INFERENCE_MODEL_URL", default="")
MODEL_HEALTH_INTERVAL_SECONDS = env.int("MODEL_HEALTH_INTERVAL_SECONDS", default=60)
SERPER_API_KEY = env.str("SERPER_API_KEY", default="")
SERPER_BASE_URL = env.str("SERPER_BASE_URL", default="https://google.serper.dev")
SERPER_SCRAPE_URL = env.str("SERPER_SCRAPE_URL", default="https://scrape.serper.dev")
SERPER_TIMEOUT_SECONDS = env.float("SERPER_TIMEOUT_SECONDS", default=15.0)

# --- Web page fetch (webtools.tools: the MCP fetch_webpage tool, Responses web tools) --------
# "direct": our own fetch behind the SSRF guard; "serper": Serper's scrape endpoint.
WEB_FETCH_BACKEND = env.str("WEB_FETCH_BACKEND", default="direct")
WEB_FETCH_TIMEOUT_SECONDS = env.float("WEB_FETCH_TIMEOUT_SECONDS", default=20.0)
WEB_FETCH_CONNECT_TIMEOUT_SECONDS = env.float("WEB_FETCH_CONNECT_TIMEOUT_SECONDS", default=5.0)
WEB_FETCH_READ_TIMEOUT_SECONDS = env.float("WEB_FETCH_READ_TIMEOUT_SECONDS", default=10.0)
WEB_FETCH_MAX_BYTES = env.int("WEB_FETCH_MAX_BYTES", default=3 * 1024 * 1024)
WEB_FETCH_MAX_REDIRECTS = env.int("WEB_FETCH_MAX_REDIRECTS", default=5)
WEB_FETCH_MAX_CHARS = env.int("WEB_FETCH_MAX_CHARS", default=20_000)
# Test-only: lets the suite fetch a page served on 127.0.0.1. Production refuses to boot with it.
WEB_FETCH_ALLOW_LOOPBACK = env.bool("WEB_FETCH_ALLOW_LOOPBACK", default=False)
if WEB_FETCH_BACKEND not in ("direct", "serper"):
    raise ImproperlyConfigured("WEB_FETCH_BACKEND must be 'direct' or 'serper'.")
if IS_PROD and WEB_FETCH_ALLOW_LOOPBACK:
    raise ImproperlyConfigured("GATEWAY_ENV=prod refuses to start: WEB_FETCH_ALLOW_LOOPBACK is set.")

# --- MCP server (mcp_server: /v1/mcp and /v1/conv/mcp) ------------------------------------
# 2025-11-25 sessions (and their resource subscriptions) live in Redis this long after last use.
MCP_SESSION_TTL_SECONDS = env.int("MCP_SESSION_TTL_SECONDS", default=3600)
MCP_RESOURCE_LIST_LIMIT = env.int("MCP_RESOURCE_LIST_LIMIT", default=20)
# A transcript (resources/read, summarize_conversation) holds at most the newest this many items.
MCP_TRANSCRIPT_MAX_ITEMS = env.int("MCP_TRANSCRIPT_MAX_ITEMS", default=500)
MCP_MAX_REQUEST_BYTES = env.int("MCP_MAX_REQUEST_BYTES", default=4 * 1024 * 1024)
# Open event streams send a keep-alive this often, and re-check their session and key then.
MCP_STREAM_KEEPALIVE_SECONDS = env.float("MCP_STREAM_KEEPALIVE_SECONDS", default=15.0)
# Event streams (GET streams and subscriptions/listen) one worker holds at most (503 beyond).
MCP_MAX_STREAMS = env.int("MCP_MAX_STREAMS", default=1000)

# --- E-mail (invites) ----------------------------------------------------------------
SMTP_HOST = env.str("SMTP_HOST", default="")
SMTP_PORT = env.int("SMTP_PORT", default=587)
SMTP_USERNAME = env.str("SMTP_USERNAME", default="")
SMTP_PASSWORD = env.str("SMTP_PASSWORD", default="")
SMTP_SENDER_EMAIL = env.str("SMTP_SENDER_EMAIL", default="noreply@localhost")
INVITE_REDIRECT_URL = env.str("INVITE_REDIRECT_URL", default="http://localhost:3000/invite")
if SMTP_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST, EMAIL_PORT = SMTP_HOST, SMTP_PORT
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = SMTP_USERNAME, SMTP_PASSWORD
    # 465 speaks TLS from the first byte (implicit TLS); 587 upgrades with STARTTLS. Django
    # refuses both at once, so an explicit SMTP_USE_SSL wins over the port's default STARTTLS.
    EMAIL_USE_SSL = env.bool("SMTP_USE_SSL", default=SMTP_PORT == 465)
    EMAIL_USE_TLS = env.bool("SMTP_USE_TLS", default=SMTP_PORT == 587 and not EMAIL_USE_SSL)
    if EMAIL_USE_SSL and EMAIL_USE_TLS:
        raise ImproperlyConfigured("SMTP_USE_SSL and SMTP_USE_TLS cannot both be true.")
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = SMTP_SENDER_EMAIL
# A stuck SMTP server must not hold a worker forever; the task retries instead.
EMAIL_TIMEOUT = env.int("SMTP_TIMEOUT_SECONDS", default=15)

# --- HTTP: CORS ------------------------------------------------------------------------
# ALLOWED_CORS_HOSTS as in jan-server: exact origins, or "*suffix" entries. Unlike jan-server,
# a suffix matches only on a host boundary: "*jan.ai" admits https://chat.jan.ai and
# https://jan.ai, never https://evil-jan.ai. A lone "*" admits every origin.
ALLOWED_CORS_HOSTS = env_list("ALLOWED_CORS_HOSTS", default="http://localhost:3000,http://localhost:3001")


def cors_origin_rules(entries: list[str]) -> tuple[bool, list[str], list[str]]:
    """(allow_all, exact origins, origin regexes) for django-cors-headers."""
    exact: list[str] = []
    patterns: list[str] = []
    for entry in entries:
        if entry == "*":
            return True, [], []
        if entry.startswith("*"):
            host = entry.lstrip("*").lstrip(".")
            patterns.append(rf"^https?://([A-Za-z0-9-]+\.)*{re.escape(host)}(:\d+)?$")
        else:
            exact.append(entry.rstrip("/"))
    return False, exact, patterns


CORS_ALLOW_ALL_ORIGINS, CORS_ALLOWED_ORIGINS, CORS_ALLOWED_ORIGIN_REGEXES = cors_origin_rules(
    ALLOWED_CORS_HOSTS
)
CORS_ALLOW_CREDENTIALS = True
CORS_URLS_REGEX = r"^/(v1|api|healthcheck|readyz).*$"
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "origin",
    "user-agent",
    "x-csrftoken",
    "x-requested-with",
    "cache-control",
    "x-request-id",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "mcp-protocol-version",
    "mcp-session-id",
    "last-event-id",
]
CORS_EXPOSE_HEADERS = ["Mcp-Session-Id", "X-Request-ID", "Retry-After"]

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SESSION_COOKIE_SECURE = not IS_DEV
CSRF_COOKIE_SECURE = not IS_DEV

# --- DRF and the schema -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "gateway.errors.drf_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["gateway.parsers.BoundedJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
SECURITY_SCHEMES_REFRESH_COOKIE = {
    "type": "apiKey",
    "in": "cookie",
    "name": REFRESH_COOKIE_NAME,
    "description": "The HttpOnly refresh token cookie set by the sign-in routes.",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Jan API Gateway",
    "DESCRIPTION": "OpenAI-compatible, multi-tenant API gateway.",
    "VERSION": GATEWAY_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH routes parse the same body as their POST (every required field included), so they
    # are documented with the same component, not a "Patched" one with every field optional.
    "COMPONENT_SPLIT_PATCH": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    # Deep links open an operation; "Authorize" survives a reload (kept in the browser's storage).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": True, "displayOperationId": True},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Organization and project roles are both a `role` field: named apart, not numbered. (Should
    # the roles change, `spectacular --fail-on-warn` reports the unnamed set.)
    "ENUM_NAME_OVERRIDES": {
        "OrganizationRoleEnum": ["owner", "reader"],
        "ProjectRoleEnum": ["owner", "member"],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "gateway.schema.add_external_operations",
    ],
    # The vendored OpenAI schemas (gateway/openapi/openai.json) are OpenAPI 3.1.
    "OAS_VERSION": "3.1.0",
    # The one scheme no authentication class declares: the refresh cookie (the rest: gateway.schema).
    "APPEND_COMPONENTS": {"securitySchemes": {"RefreshCookieAuth": SECURITY_SCHEMES_REFRESH_COOKIE}},
}
# Routes outside DRF (hot path, streaming views, MCP) document themselves here (gateway.schema).
SCHEMA_EXTERNAL_OPERATIONS = [
    "gateway.index.OPERATIONS",
    "gateway.health.OPERATIONS",
    "inference.schema.OPERATIONS",
]
SCHEMA_EXTERNAL_OPERATIONS.append("mcp_server.schema.OPERATIONS")

# --- Static files ------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"

# --- Logging: JSON lines on stdout, secrets redacted (gateway.logging) -------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_context": {"()": "gateway.logging.RequestContextFilter"},
        "redact": {"()": "gateway.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "stdout": {
            "class": "gateway.logging.BufferedStreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_context", "redact"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # The access log line comes from gateway.access; Django's own would be a duplicate.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Test-only switch: lets the suite dial a loopback page that production never may.
TESTING = "PYTEST_VERSION" in os.environ

# The admin's middleware runs through gateway.middleware.BrowserOnlyMiddleware, which these
# checks cannot see; tests/test_admin* prove the admin works.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]

# Reads go to replicas (when any is configured) unless this is off.
DATABASE_READ_FROM_REPLICAS = env.bool("DATABASE_READ_FROM_REPLICAS", default=True)

# ASGI composition (gateway.asgi): dotted paths to factories of mounted ASGI apps and of
# lifespan context managers. Apps register theirs here rather than editing asgi.py.
ASGI_MOUNTS: list[str] = []
ASGI_LIFESPAN: list[str] = []

# --- JWT (djangorestframework-simplejwt) ------------------------------------------------
from datetime import timedelta  # noqa: E402 -- kept beside its only use

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=ACCESS_TOKEN_LIFETIME_SECONDS),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=REFRESH_TOKEN_LIFETIME_SECONDS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    # One fixed HMAC algorithm: `alg: none` and HS/RS confusion are refused by the decoder.
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SECRET,
    "ISSUER": "jan-gateway",
    "USER_ID_FIELD": "public_id",
    "USER_ID_CLAIM": "sub",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "TOKEN_TYPE_CLAIM": "token_type",
    "JTI_CLAIM": "jti",
}

# --- Inference -------------------------------------------------------------------------
UPSTREAM_CONNECT_TIMEOUT = env.float("UPSTREAM_CONNECT_TIMEOUT", default=5.0)
UPSTREAM_FIRST_BYTE_TIMEOUT = env.float("UPSTREAM_FIRST_BYTE_TIMEOUT", default=120.0)
UPSTREAM_IDLE_TIMEOUT = env.float("UPSTREAM_IDLE_TIMEOUT", default=120.0)
# A pooled upstream connection idle this long is closed by us. Below the 5 s keep-alive of
# uvicorn (vLLM) and llama.cpp's server: a connection the server has just closed, reused for a
# POST, fails the call (502) instead of being retried.
UPSTREAM_KEEPALIVE_SECONDS = env.float("UPSTREAM_KEEPALIVE_SECONDS", default=4.0)
UPSTREAM_MAX_CONNECTIONS = env.int("UPSTREAM_MAX_CONNECTIONS", default=512)
MODEL_HEALTH_FAILURE_THRESHOLD = env.int("MODEL_HEALTH_FAILURE_THRESHOLD", default=2)
PROVIDER_EJECT_SECONDS = env.float("PROVIDER_EJECT_SECONDS", default=30.0)
MODEL_REGISTRY_REFRESH_SECONDS = env.float("MODEL_REGISTRY_REFRESH_SECONDS", default=1.0)
USAGE_FLUSH_INTERVAL_SECONDS = env.float("USAGE_FLUSH_INTERVAL_SECONDS", default=1.0)
USAGE_FLUSH_MAX_ROWS = env.int("USAGE_FLUSH_MAX_ROWS", default=200)
# Organizations' own providers (registered through the API) must resolve to public addresses;
# True lets them reach private, loopback and link-local networks too (inference.netguard).
PROVIDER_PRIVATE_URLS_ALLOWED = env.bool("PROVIDER_PRIVATE_URLS_ALLOWED", default=False)
# Chat bodies carry images and long histories; Django's 2.5 MB form limit is too small for them.
CHAT_MAX_BODY_BYTES = env.int("CHAT_MAX_BODY_BYTES", default=32 * 1024 * 1024)
CELERY_BEAT_SCHEDULE["inference-providers-poll"] = {
    "task": "inference.tasks.providers_poll",
    "schedule": float(MODEL_HEALTH_INTERVAL_SECONDS),
}
ASGI_LIFESPAN.append("inference.lifespan.lifespan")

# --- Provider ejection (outlier detection, inference.registry) ---
# Real traffic takes a provider out of a worker's rotation only after this many failures in a
# row across requests (Envoy's consecutive_5xx); the health poll alone marks it unhealthy.
PROVIDER_EJECT_CONSECUTIVE_FAILURES = env.int("PROVIDER_EJECT_CONSECUTIVE_FAILURES", default=5)
# When fewer than this share of a model's healthy providers are left in rotation, ejections are
# ignored for that model and traffic goes to all of them (Envoy's panic threshold).
PROVIDER_PANIC_THRESHOLD_PERCENT = env.int("PROVIDER_PANIC_THRESHOLD_PERCENT", default=50)

# /v1/chat/completions and /v1/models are answered by a raw ASGI app before Django (the hot path).
ASGI_MOUNTS.append("inference.hotpath.mount")
# /v1/mcp and /v1/conv/mcp: the MCP server (Streamable HTTP, both protocol eras).
ASGI_MOUNTS.append("mcp_server.mount.mount")
# Event streams on these paths carry JSON-RPC: one cut short (an error, the shutdown drain) just
# ends there, with no OpenAI error event (gateway.asgi.Guard).
JSON_RPC_STREAM_PATHS = frozenset({"/v1/mcp", "/v1/conv/mcp"})

# --- Responses API (responses.events, responses.engine) ------------------------------------
# Stream events of background responses stay resumable this long after their last event.
RESPONSES_EVENTS_TTL_SECONDS = env.int("RESPONSES_EVENTS_TTL_SECONDS", default=3600)
# How often a running background response looks for a cancel (the 1 s promise needs < 1).
RESPONSES_CANCEL_POLL_SECONDS = env.float("RESPONSES_CANCEL_POLL_SECONDS", default=0.25)
# A resumed stream that hears nothing this long asks the database whether the run ended.
RESPONSES_STREAM_IDLE_CHECK_SECONDS = env.float("RESPONSES_STREAM_IDLE_CHECK_SECONDS", default=5.0)
# The server-side web_search loop: model calls at most, tool calls at most, results per search.
RESPONSES_WEB_SEARCH_MAX_ROUNDS = env.int("RESPONSES_WEB_SEARCH_MAX_ROUNDS", default=4)
RESPONSES_WEB_SEARCH_MAX_CALLS = env.int("RESPONSES_WEB_SEARCH_MAX_CALLS", default=8)
RESPONSES_WEB_SEARCH_RESULTS = env.int("RESPONSES_WEB_SEARCH_RESULTS", default=5)
SCHEMA_EXTERNAL_OPERATIONS.append("responses.schema.OPERATIONS")
# Background runs whose worker died: re-queued or failed by the sweep (see "Background response
# leases" below for its period).
CELERY_BEAT_SCHEDULE["responses-sweep"] = {"task": "responses.tasks.responses_sweep", "schedule": 60.0}

# --- Conversations -----------------------------------------------------------------------
# Longest text part an item may hold (OpenAI's input string limit).
CONVERSATIONS_MAX_TEXT_CHARS = env.int("CONVERSATIONS_MAX_TEXT_CHARS", default=10_485_760)
# /v1/conv/completions rebuilds the history from stored items, dropping the oldest first
# beyond either budget.
CONV_HISTORY_MAX_ITEMS = env.int("CONV_HISTORY_MAX_ITEMS", default=100)
CONV_HISTORY_MAX_CHARS = env.int("CONV_HISTORY_MAX_CHARS", default=200_000)
SCHEMA_EXTERNAL_OPERATIONS.append("conversations.schema.OPERATIONS")

# --- allauth: our User has no username (e-mail is the login) ----------------------------
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*"]

# --- Operations: metrics, profiling, rate limits (README: Monitoring, Profiling, Limits) ------
# /metrics: on by default in dev only; METRICS_TOKEN, when set, is required as a bearer token.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=IS_DEV)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Also (or instead) serve the metrics on their own port, without a token: keep it internal.
METRICS_PORT = env.int("METRICS_PORT", default=0)
METRICS_ADDR = env.str("METRICS_ADDR", default="127.0.0.1")
# Several workers share their samples through files here (gateway.metrics). prometheus_client reads
# the variable itself at import, so it must come from the environment; `make run` sets and empties it.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
else:  # set but empty would still switch prometheus_client to files, in the current directory
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
# Collectors run at scrape time only (no cost between scrapes).
METRICS_COLLECTORS = ["inference.monitoring.ProviderHealthCollector"]
ASGI_LIFESPAN.append("gateway.metrics.lifespan")
# Continuous profiling to Pyroscope (web and Celery processes) when the address is set.
PYROSCOPE_SERVER_ADDRESS = env.str("PYROSCOPE_SERVER_ADDRESS", default="")
PYROSCOPE_APPLICATION_NAME = env.str("PYROSCOPE_APPLICATION_NAME", default="jan-gateway")
PYROSCOPE_AUTH_TOKEN = env.str("PYROSCOPE_AUTH_TOKEN", default="")
PYROSCOPE_SAMPLE_RATE = env.int("PYROSCOPE_SAMPLE_RATE", default=100)
PYROSCOPE_UPLOAD_INTERVAL_SECONDS = env.int("PYROSCOPE_UPLOAD_INTERVAL_SECONDS", default=10)
ASGI_LIFESPAN.append("gateway.profiling.lifespan")
# On-demand profile of one request (`?profile=1`) for organization owners and staff; off by default.
PROFILING_ENABLED = env.bool("PROFILING_ENABLED", default=False)
PROFILING_AUTHORIZER = "accounts.operators.may_profile"
# A concurrent-stream slot whose worker died is given back after this long.
RATE_LIMIT_STREAM_LEASE_SECONDS = env.int("RATE_LIMIT_STREAM_LEASE_SECONDS", default=900)

# --- Web server and shutdown (gateway.server: `python -m gateway.server`, `make run`, the image) ---
# Development binds the loopback only (its secrets are public); production listens everywhere.
HOST = env.str("HOST", default="0.0.0.0" if IS_PROD else "127.0.0.1")  # noqa: S104 -- prod runs in a container
PORT = env.int("PORT", default=8080)
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=2)
# Bind the port with SO_REUSEPORT, so that several single-process servers share it: how
# `make run`'s supervisor runs WEB_CONCURRENCY web processes without uvicorn's parent process.
SERVER_REUSE_PORT = env.bool("SERVER_REUSE_PORT", default=False)
# Which ASGI server `python -m gateway.server` runs: uvicorn (the default, faster; see the README's
# "The web server") or daphne (one process, no lifespan, none of the SERVER_* guards below).
SERVER = env.str("SERVER", default="uvicorn")
if SERVER not in ("uvicorn", "daphne"):
    raise ImproperlyConfigured(f"SERVER must be uvicorn or daphne, not {SERVER!r}.")
# A client must send its whole request head within this long (slowloris: one byte every few
# seconds would otherwise hold a connection, and the worker's slot, forever).
SERVER_HEADER_TIMEOUT_SECONDS = env.float("SERVER_HEADER_TIMEOUT_SECONDS", default=10.0)
# Once the head is in, the body must arrive within this long (408 after): a client trickling a
# body would otherwise hold a connection and a running request. Raise it if clients upload large
# images over slow links (a full CHAT_MAX_BODY_BYTES, 32 MB, in 60 s needs about 4.5 Mbit/s).
SERVER_BODY_TIMEOUT_SECONDS = env.float("SERVER_BODY_TIMEOUT_SECONDS", default=60.0)
# The request line plus headers at most this many bytes, and at most this many headers (431 above).
SERVER_MAX_HEADER_BYTES = env.int("SERVER_MAX_HEADER_BYTES", default=65_536)
SERVER_MAX_HEADERS = env.int("SERVER_MAX_HEADERS", default=100)
# An idle keep-alive connection is closed after this long; behind a load balancer keep it above
# the balancer's own idle timeout, or the balancer reuses connections we are closing.
SERVER_KEEPALIVE_SECONDS = env.int("SERVER_KEEPALIVE_SECONDS", default=5)
# Open connections plus running requests per web worker; beyond it new requests get 503 at once.
SERVER_MAX_CONCURRENCY = env.int("SERVER_MAX_CONCURRENCY", default=1000)
# On SIGTERM: stop accepting at once, let running requests and streams finish this long; a stream
# still running then ends with an error event and its usage is recorded.
SHUTDOWN_DRAIN_SECONDS = env.int("SHUTDOWN_DRAIN_SECONDS", default=30)
# Bodies are counted as they arrive, in front of every route (gateway.asgi.Guard): paths under
# these prefixes carry model input (images, long histories) and may have CHAT_MAX_BODY_BYTES;
# every other path DATA_UPLOAD_MAX_MEMORY_SIZE (Django's setting, 2.5 MB unless set). 413 above.
LARGE_BODY_PATHS = ["/v1/chat/completions", "/v1/conv", "/v1/responses"]

# --- Client addresses and sign-in rate limits (gateway.client_address, accounts.throttling) -----
import ipaddress  # noqa: E402 -- kept beside its only use

# Proxies (addresses or CIDR networks) whose X-Forwarded-For is believed. Empty: the peer address
# is the client, whatever the header says.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")
for _proxy in TRUSTED_PROXIES:  # a typo must stop the boot, not turn every sign-in into a 500
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an address or network") from None
# Attempts per client address per minute, over every worker (0: no limit).
AUTH_GUEST_LOGIN_PER_MINUTE = env.int("AUTH_GUEST_LOGIN_PER_MINUTE", default=20)
AUTH_GOOGLE_CALLBACK_PER_MINUTE = env.int("AUTH_GOOGLE_CALLBACK_PER_MINUTE", default=20)
# Higher: every open tab of a signed-in browser refreshes, and many browsers share one NAT address.
AUTH_REFRESH_PER_MINUTE = env.int("AUTH_REFRESH_PER_MINUTE", default=60)

# --- Prices, costs and budgets (inference.costs, organizations.budgets) ---
# The currency monthly budgets are kept in; usage priced in another currency does not count.
BUDGET_CURRENCY = env.str("BUDGET_CURRENCY", default="usd").lower()
# How often beat raises budget counters that Redis lost (restart, flush, failover) back to what
# the month's usage rows show (inference.spend); one grouped query over the month's rows of the
# projects and keys that have budgets.
BUDGET_RECONCILE_SECONDS = env.float("BUDGET_RECONCILE_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE["budgets-reconcile"] = {
    "task": "inference.tasks.budgets_reconcile",
    "schedule": BUDGET_RECONCILE_SECONDS,
}

# --- Tool-call limits (organizations.ratelimits.admit_tool_call) ---
# MCP tools and the Responses API's web_search spend the operator's search credit: calls per
# minute per project and per API key (0: no limit). A project's rate limit for the model name
# `tool_calls` can lower its own figure, never raise it.
TOOL_CALLS_PER_MINUTE_PER_PROJECT = env.int("TOOL_CALLS_PER_MINUTE_PER_PROJECT", default=60)
TOOL_CALLS_PER_MINUTE_PER_KEY = env.int("TOOL_CALLS_PER_MINUTE_PER_KEY", default=30)

# --- Background response leases (responses.services: run_background, responses_sweep) ---------
# A running background response's worker renews its lease every RENEW seconds; the sweep (every
# SWEEP seconds) re-queues a run whose lease lapsed (once, if no output reached a client yet) or
# fails it, so a dead worker's run is settled within LEASE + SWEEP seconds.
RESPONSES_LEASE_SECONDS = env.float("RESPONSES_LEASE_SECONDS", default=15.0)
RESPONSES_LEASE_RENEW_SECONDS = env.float("RESPONSES_LEASE_RENEW_SECONDS", default=5.0)
RESPONSES_SWEEP_SECONDS = env.float("RESPONSES_SWEEP_SECONDS", default=5.0)
RESPONSES_MAX_ATTEMPTS = env.int("RESPONSES_MAX_ATTEMPTS", default=2)
CELERY_BEAT_SCHEDULE["responses-sweep"]["schedule"] = RESPONSES_SWEEP_SECONDS
