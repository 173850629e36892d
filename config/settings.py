"""Settings for every process of the platform (daphne, Celery worker and beat, manage.py).

Two shapes, chosen by the environment alone:

* **Embedded default** (nothing set): SQLite in the data directory, an in-process cache and
  channel layer, Celery over the filesystem transport (no Redis), secrets generated once and kept
  in the data directory. This is what ``make run`` gives on a fresh machine.
* **Production** (``DATABASE_URL`` and/or ``REDIS_URL`` set): PostgreSQL and Redis, and every
  secret must come from the environment; nothing falls back to a default.

Every variable is listed, with its meaning, in README.md ("Configuration").
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from config.env import (
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_json,
    env_list,
    env_required,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("PLATFORM_DATA_DIR", str(BASE_DIR / ".data"))).resolve()

DATABASE_URL = env_url("DATABASE_URL", schemes=("postgres", "postgresql"))
REDIS_URL = env_url("REDIS_URL", schemes=("redis", "rediss", "unix"))
PRODUCTION = DATABASE_URL is not None or REDIS_URL is not None


def _embedded_secrets() -> dict[str, str]:
    """Secrets for the embedded default, generated on first start and kept (0600) in DATA_DIR.

    They must survive restarts: the API-key pepper in particular, or every issued key would stop
    working. Production never reaches this function.
    """
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "secrets.json"
    wanted = {
        "SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "API_KEY_PEPPER": lambda: secrets.token_urlsafe(32),
        # A Fernet key: 32 random bytes, URL-safe base64 (cryptography's Fernet.generate_key).
        "REASONING_ENCRYPTION_KEYS": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    if path.exists():
        values = json.loads(path.read_text())
        missing = {name: make() for name, make in wanted.items() if name not in values}
        if not missing:
            return values
        # A data directory from before a secret existed: add it, keep the others untouched.
        # Under a lock, re-reading first: processes starting together must all end up with the
        # same generated value (a web process and a worker with different keys would not
        # understand each other's blobs).
        with open(DATA_DIR / "secrets.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            values = json.loads(path.read_text())
            missing = {name: make() for name, make in wanted.items() if name not in values}
            if missing:
                values |= missing
                tmp = path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    json.dump(values, handle)
                os.replace(tmp, path)
        return values
    values = {name: make() for name, make in wanted.items()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return values


_reasoning_keys_default: list[str] = []  # production: none unless configured
if PRODUCTION:
    SECRET_KEY = env_required("SECRET_KEY", why="Django signing key; production has no default")
    API_KEY_PEPPER = env_required(
        "API_KEY_PEPPER", why="HMAC pepper for API-key digests; production has no default"
    )
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
    if not ALLOWED_HOSTS:
        env_required("ALLOWED_HOSTS", why="host names this deployment answers to")
else:
    _generated = _embedded_secrets()
    SECRET_KEY = env_str("SECRET_KEY", _generated["SECRET_KEY"])
    API_KEY_PEPPER = env_str("API_KEY_PEPPER", _generated["API_KEY_PEPPER"])
    _reasoning_keys_default = [_generated["REASONING_ENCRYPTION_KEYS"]]
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

DEBUG = env_bool("DEBUG", False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "corsheaders",
    "channels",
    "tenants",
    "api",
    "console",
    "engines",
    "responses",
    "quotas",
    "conversations",
    "prompts",
]

# Every middleware here must be async-capable: a sync-only one makes Django run everything
# inside it (streaming views included) through the one thread-sensitive executor, serializing
# all requests of the process (tests/test_project_layout.py guards this).
MIDDLEWARE = [
    # CORS before the gateway: a browser's preflight carries no key and is answered here.
    "corsheaders.middleware.CorsMiddleware",
    # The API gateway comes next: it owns the request id, the error envelope and the OpenAI
    # headers for /v1/ and /openai/, and leaves every other path to the usual Django stack.
    "api.middleware.ApiGatewayMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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
            ],
        },
    },
]

if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
    # A psycopg connection pool per process (core/db.py gives the connection back after every
    # call, so an open stream holds none). DATABASE_POOL=false for an external pooler
    # (PgBouncer in transaction mode), with DATABASE_CONN_MAX_AGE if wanted.
    if env_bool("DATABASE_POOL", True):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1, minimum=0),
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20, minimum=1),
            # How long a caller waits for a free connection before the request fails (503).
            "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0, minimum=0.1),
        }
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django requires it with a pool
        # With a pool this is a check on checkout: a connection broken by a database restart is
        # replaced instead of failing the request that drew it. api.postgres asks the socket
        # first and makes the round trip only when something is waiting on it.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        DATABASES["default"]["ENGINE"] = "api.postgres"
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0)
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "platform.sqlite3",
            # WAL lets daphne, the Celery worker and beat share the file without "database is
            # locked" on every concurrent write; the timeout covers the remaining short waits.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads that run the ORM work of async code (core/db.py): the most queries in flight at once per
# process, whatever the number of open streams.
DATABASE_THREADS = env_int("DATABASE_THREADS", 16, minimum=1)
# Idle request threads kept for reuse by the ASGI handler (api/handler.py).
ASGI_IDLE_REQUEST_THREADS = env_int("ASGI_IDLE_REQUEST_THREADS", 64, minimum=0)

if REDIS_URL:
    CACHES = {
        "default": {
            # Django's RedisCache, with one connection pool per process rather than one per
            # request (its cache handler is per-request under ASGI).
            "BACKEND": "core.cache.SharedPoolRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "rp"),
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CACHE_KEY_PREFIX", "rp")},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The tenant console signs people in; the staff admin keeps its own login page.
LOGIN_URL = "console:login"
# Only needed for `collectstatic` (a proxy serving the files itself); the platform needs none.
STATIC_ROOT = env_str("STATIC_ROOT")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# The admin's assets are served by the ASGI static handler (config/asgi.py) straight from the
# installed apps: no collectstatic step on any machine, and no asset ever comes from a CDN.
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security -------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Bearer token for Prometheus at /metrics (staff sessions need none); empty = staff only.
METRICS_TOKEN = env_str("METRICS_TOKEN", "") or ""
if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    # Only trust X-Forwarded-Proto when a proxy that overwrites it is declared.
    if env_bool("TRUST_X_FORWARDED_PROTO", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The health probes are called by load balancers over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- API gateway ----------------------------------------------------------------------------
# Largest request body accepted on the API; past it the ASGI layer answers 413 before reading.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
MAX_JSON_DEPTH = env_int("MAX_JSON_DEPTH", 64, minimum=4)
# A request body that stops arriving for this long is answered 408 instead of holding the
# connection; a request target (path and query) longer than this is answered 414.
REQUEST_BODY_TIMEOUT_SECONDS = env_float("REQUEST_BODY_TIMEOUT_SECONDS", 15.0, minimum=0.1)
MAX_URL_BYTES = env_int("MAX_URL_BYTES", 16 * 1024, minimum=1024)
# The admin's pages carry this Content-Security-Policy (its scripts and styles are all served
# from this origin; the admin uses a few inline style attributes).
ADMIN_PATH_PREFIX = "/admin/"
ADMIN_CONTENT_SECURITY_POLICY = env_str(
    "ADMIN_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)
# CORS for browser clients of the API (django-cors-headers): off until origins are listed.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/(v1|openai)(/.*)?$"
CORS_ALLOW_HEADERS = (
    "accept", "authorization", "content-type", "user-agent", "api-key", "idempotency-key",
    "openai-organization", "openai-project", "openai-beta", "x-request-id",
    "x-client-request-id", "x-stainless-arch", "x-stainless-async", "x-stainless-lang",
    "x-stainless-os", "x-stainless-package-version", "x-stainless-retry-count",
    "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout",
    "x-stainless-helper-method",
)  # fmt: skip
CORS_EXPOSE_HEADERS = (
    "x-request-id", "openai-processing-ms", "openai-version", "openai-organization",
    "openai-project", "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "retry-after",
)  # fmt: skip
OPENAI_VERSION_HEADER = "2020-10-01"
# An SSE comment frame is sent when a stream has been silent this long, so proxies and load
# balancers with idle timeouts keep the connection open during a long prefill or while queued.
SSE_KEEPALIVE_SECONDS = env_float("SSE_KEEPALIVE_SECONDS", 15.0, minimum=0.05)
# Stream dialect when neither the request header nor the organization chooses one.
RESPONSES_DIALECT = env_str("RESPONSES_DIALECT", "openai")
if RESPONSES_DIALECT not in ("openai", "open-responses", "legacy"):
    raise ImproperlyConfigured(
        f"RESPONSES_DIALECT={RESPONSES_DIALECT!r}: use openai, open-responses or legacy"
    )
# Encrypted reasoning: Fernet keys, newest first (encrypts with the first, decrypts with
# any), and how long a blob stays valid. Production without keys refuses the include value.
REASONING_ENCRYPTION_KEYS = env_list("REASONING_ENCRYPTION_KEYS", _reasoning_keys_default)
for _key in REASONING_ENCRYPTION_KEYS:
    try:
        if len(base64.urlsafe_b64decode(_key.encode())) != 32:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            "REASONING_ENCRYPTION_KEYS: every key must be a Fernet key (32 bytes, URL-safe "
            "base64); make one with `manage.py reasoningkeys generate`"
        ) from None
REASONING_ENCRYPTION_TTL_SECONDS = env_int(
    "REASONING_ENCRYPTION_TTL_SECONDS", 30 * 24 * 3600, minimum=60
)
# Image and file inputs: the largest decoded image (data URL) and file (file_data) accepted.
INPUT_IMAGE_MAX_BYTES = env_int("INPUT_IMAGE_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
INPUT_FILE_MAX_BYTES = env_int("INPUT_FILE_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
# Recording ApiKey.last_used_at costs at most one database write per key per this many seconds.
API_KEY_LAST_USED_INTERVAL_SECONDS = env_int("API_KEY_LAST_USED_INTERVAL_SECONDS", 60, minimum=1)
# Each process keeps the keys it authenticated (with their organizations and projects) and the
# models it looked up while no change of those rows was made anywhere (core.versions); this
# bounds an entry's age regardless, for a change whose notice could not reach Redis.
# 0 = read them from the database on every request.
VERSIONED_CACHE_SECONDS = env_int("VERSIONED_CACHE_SECONDS", 60, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.HasApiScope"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "api.drf_errors.drf_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# --- Celery ---------------------------------------------------------------------------------
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600}
else:
    # Embedded default: a real worker process without Redis, through kombu's filesystem
    # transport with atomic writes (config/embedded_broker.py says why); its files live in the
    # data directory.
    from config.embedded_broker import TRANSPORT_ALIAS, transport_options

    CELERY_BROKER_URL = f"{TRANSPORT_ALIAS}://"
    CELERY_BROKER_TRANSPORT_OPTIONS = transport_options(DATA_DIR)
# Periodic upkeep has a queue of its own, so a burst of sweeps never delays a background run
# (a worker takes from both queues in turn). Every worker consumes both unless told otherwise.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [Queue("celery"), Queue("upkeep")]
CELERY_TASK_ROUTES = {
    "responses.sweep_background": {"queue": "upkeep"},
    "responses.expire_sessions": {"queue": "upkeep"},
    "responses.purge": {"queue": "upkeep"},
    "quotas.expire_reservations": {"queue": "upkeep"},
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"
# Periodic work (one beat process only). Every task is idempotent: a conditional update decides
# which process wins, so an overlapping run or a redelivery does no harm.
SWEEP_INTERVAL_SECONDS = env_float("SWEEP_INTERVAL_SECONDS", 15.0, minimum=0.5)
# A sweep that waited in the queue for a minute (or four intervals) is dropped (``expires``): a
# later one does the same work, and a worker that was down does not come back to a backlog.
_SWEEP_EXPIRES_SECONDS = max(4 * SWEEP_INTERVAL_SECONDS, 60.0)
CELERY_BEAT_SCHEDULE = {
    "sweep-background-responses": {
        "task": "responses.sweep_background",
        "schedule": SWEEP_INTERVAL_SECONDS,
        "options": {"expires": _SWEEP_EXPIRES_SECONDS},
    },
    # Tool-output deadlines whose own ETA task never ran, and retention of stored responses.
    "expire-response-sessions": {
        "task": "responses.expire_sessions",
        "schedule": SWEEP_INTERVAL_SECONDS,
        "options": {"expires": _SWEEP_EXPIRES_SECONDS},
    },
    "purge-responses": {"task": "responses.purge", "schedule": 3600.0},
    # Ledger rows whose process died before settling them (quotas).
    "expire-quota-reservations": {"task": "quotas.expire_reservations", "schedule": 300.0},
}

# --- Background responses and sessions --------------------------------------------------------
# A running worker renews its lease every third of this; the sweeper fails a background response
# whose lease ran out (its worker died) after at most this plus SWEEP_INTERVAL_SECONDS.
BACKGROUND_LEASE_SECONDS = env_float("BACKGROUND_LEASE_SECONDS", 30.0, minimum=0.5)
# The per-organization stored-bytes cap reads a usage figure at most this old.
STORAGE_USAGE_CACHE_SECONDS = env_float("STORAGE_USAGE_CACHE_SECONDS", 30.0, minimum=0.0)
# Keys for content handed to clients encrypted (compaction items): comma-separated Fernet keys,
# the first encrypts, all decrypt (rotation). Unset: one key derived from SECRET_KEY.
ENCRYPTED_CONTENT_KEYS = env_list("ENCRYPTED_CONTENT_KEYS", [])
# WebSocket mode (/v1/responses over WebSocket): a connection is closed after this long (OpenAI
# and vLLM: 60 minutes), with an error event warning this many seconds before.
WEBSOCKET_MAX_LIFETIME_SECONDS = env_float("WEBSOCKET_MAX_LIFETIME_SECONDS", 3600.0, minimum=1.0)
WEBSOCKET_EXPIRY_WARNING_SECONDS = env_float("WEBSOCKET_EXPIRY_WARNING_SECONDS", 300.0, minimum=0.0)
# A queued response nobody picked up in this long (its task message was lost) is failed.
BACKGROUND_QUEUED_TIMEOUT_SECONDS = env_int("BACKGROUND_QUEUED_TIMEOUT_SECONDS", 3600, minimum=1)
# The live event log in Redis (production): bounded length and lifetime; the durable copy is in
# the database once the response has finished.
EVENT_LOG_KEY_PREFIX = env_str("EVENT_LOG_KEY_PREFIX", "rp:events")
EVENT_LOG_MAXLEN = env_int("EVENT_LOG_MAXLEN", 100_000, minimum=100)
EVENT_LOG_TTL_SECONDS = env_int("EVENT_LOG_TTL_SECONDS", 6 * 3600, minimum=60)

# --- Quotas and rate limits (quotas/) --------------------------------------------------------
# The limiter's Redis; defaults to REDIS_URL. Unset (embedded default) = the in-process limiter.
QUOTA_REDIS_URL = env_url("QUOTA_REDIS_URL", schemes=("redis", "rediss", "unix")) or REDIS_URL
QUOTA_KEY_PREFIX = env_str("QUOTA_KEY_PREFIX", env_str("CACHE_KEY_PREFIX", "rp"))
# The "minute" of requests/tokens per minute. Only tests shorten it (to see a reset quickly).
QUOTA_WINDOW_SECONDS = env_float("QUOTA_WINDOW_SECONDS", 60.0, minimum=0.1)
# Limits are cached per process this long: an admin change reaches every process within it.
QUOTA_LIMITS_CACHE_SECONDS = env_float("QUOTA_LIMITS_CACHE_SECONDS", 5.0, minimum=0.0)
# Redis slower than this counts as down (fail open), and is not tried again for RETRY seconds.
QUOTA_REDIS_TIMEOUT_SECONDS = env_float("QUOTA_REDIS_TIMEOUT_SECONDS", 0.25, minimum=0.01)
QUOTA_REDIS_RETRY_SECONDS = env_float("QUOTA_REDIS_RETRY_SECONDS", 1.0, minimum=0.0)
# Safety net for in-flight slots of a process that died without releasing them.
QUOTA_CONCURRENCY_TTL_SECONDS = env_int("QUOTA_CONCURRENCY_TTL_SECONDS", 1800, minimum=1)
# Ledger rows still "reserved" after this long are settled by the sweeper as "expired".
QUOTA_RESERVATION_TTL_SECONDS = env_int("QUOTA_RESERVATION_TTL_SECONDS", 3600, minimum=60)

# --- Engines --------------------------------------------------------------------------------
# Models and their vLLM replicas to seed into the database (``manage.py syncmodels``). JSON list:
# [{"name": ..., "upstream_model": ..., "context_length": ..., "replicas": ["http://…/v1"]}].
# Unset in the embedded default = the local SmolLM2 engine that ``make run`` starts.
# The virtualenv holding vLLM (kept apart from the platform's; scripts/engine-venv.sh builds it).
ENGINE_VENV_DIR = Path(env_str("ENGINE_VENV", str(BASE_DIR / ".venv-engine")))
EMBEDDED_ENGINE_PORT = env_int("EMBEDDED_ENGINE_PORT", 8100, minimum=1)
ENGINE_MODELS = env_json(
    "ENGINE_MODELS",
    []
    if PRODUCTION
    else [
        {
            "name": "smollm2-135m-instruct",
            "upstream_model": "smollm2-135m-instruct",
            "context_length": 4096,
            "tool_call_parser": "hermes",
            "replicas": [f"http://127.0.0.1:{EMBEDDED_ENGINE_PORT}/v1"],
        }
    ],
)
ENGINE_CONNECT_TIMEOUT_SECONDS = env_float("ENGINE_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.1)
ENGINE_READ_TIMEOUT_SECONDS = env_float("ENGINE_READ_TIMEOUT_SECONDS", 600.0, minimum=1.0)
ENGINE_HEALTH_INTERVAL_SECONDS = env_float("ENGINE_HEALTH_INTERVAL_SECONDS", 5.0, minimum=0.1)

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "core.logging.RequestIdFilter"},
        "redact_secrets": {"()": "core.logging.RedactSecretsFilter"},
        "escape_control": {"()": "core.logging.EscapeControlCharactersFilter"},
    },
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "text",
            "filters": ["request_id", "escape_control", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
