"""Settings for the healthcare project: everything comes from environment variables.

Unset variables fall back to defaults that work for ``make run`` on a laptop; a
malformed value stops start-up with a message naming the variable.
"""

import hashlib
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.env import (
    env_bool,
    env_choice,
    env_duration,
    env_int,
    env_list,
    env_str,
)
from core.keys import env_fallback_keys, env_key
from core.metrics_access import env_networks
from core.rates import env_rate

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HEALTHCARE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)
DEMO_MODE = env_bool("DEMO_MODE", False)
# No DATABASE_URL means the embedded SQLite file: a developer's machine, not production.
# Anywhere else the keys are required, whatever DEMO_MODE or DJANGO_DEBUG say.
LOCAL_DEV = not env_str("DATABASE_URL")
SECRET_KEY = env_key("DJANGO_SECRET_KEY", local=LOCAL_DEV, var_dir=VAR_DIR)
SECRET_KEY_FALLBACKS = env_fallback_keys("DJANGO_SECRET_KEY_FALLBACKS")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "messaging",
    "drf_spectacular_sidecar",
    "axes",
    "core",
    "audit",
    "relay",
    "appointments",
    "notifications",
    "monitoring",
]

MIDDLEWARE = [
    # Request ids first, so every response (redirects included) carries one.
    "healthcare.middleware.RequestIdMiddleware",
    # Before anything reads a body: a large one answers 413 unread.
    "core.limits.RequestBodyLimitMiddleware",
    "core.request_context.RequestContextMiddleware",
    "core.csp.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files under gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a locked-out login into a 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "healthcare.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "healthcare" / "templates"],
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

WSGI_APPLICATION = "healthcare.wsgi.application"

# Database: PostgreSQL in production and CI, a SQLite file by default.
_checkout_tag = hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:8]
_SQLITE_DEFAULT = f"sqlite:///{VAR_DIR / 'healthcare.sqlite3'}"
_database_url = env_str("DATABASE_URL") or _SQLITE_DEFAULT
try:
    # Persistent connections: a new PostgreSQL backend per request cost more CPU than
    # the booking itself. Health checks drop a connection the server has closed.
    _db = dj_database_url.parse(
        _database_url,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
except Exception as exc:  # dj-database-url raises several types for bad URLs
    raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
if not _db.get("ENGINE"):
    raise ImproperlyConfigured("DATABASE_URL has an unsupported scheme.")
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web server, relay and consumer share one file;
    # IMMEDIATE transactions take the write lock up front instead of failing late.
    _db["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test-{_checkout_tag}.sqlite3")}
else:
    # One test database per checkout, so parallel checkouts never collide.
    _db["TEST"] = {"NAME": f"test_{_db['NAME']}_{_checkout_tag}"}
if _db["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend whose health check polls the socket instead of a SELECT 1
    # round trip per request (core/postgres).
    _db["ENGINE"] = "core.postgres"
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # simplejwt's, with the user read by a statement built once
        "core.tokens.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PAGINATION_CLASS": "core.api.Pagination",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Healthcare appointments API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Swagger UI from the project's own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Kafka, the outbox relay, change data capture, the consumer and its email channel.
from healthcare.settings_pipeline import (  # noqa: E402, F401 (Django reads them)
    CDC,
    CONSUMER,
    EMAIL_LEASE_SECONDS,
    EMAIL_TIMEOUT,
    KAFKA,
    NOTIFICATION_EMAIL,
    NOTIFICATION_RETENTION,
    OUTBOX,
    OUTBOX_RELAY,
)

LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))
LOG_LEVEL = env_choice(
    "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # The context filter adds the request id (and event id) to every record.
    "filters": {"context": {"()": "healthcare.logging.ContextFilter"}},
    "formatters": {
        "text": {"()": "healthcare.logging.TextFormatter"},
        "json": {"()": "healthcare.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # runserver's own line per request (make run): healthcare.access logs each
        # one. Django gives this logger a handler of its own and no propagation: take
        # both back, so what is left (errors) goes out in the project's format.
        "django.server": {"handlers": [], "level": "ERROR", "propagate": True},
    },
}

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if (DEBUG or DEMO_MODE)
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Implicit TLS (port 465); Django refuses it together with EMAIL_USE_TLS.
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be set.")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "clinic@localhost")

# -- Operations: request ids, metrics, health, static files, production security ----
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # filled by collectstatic in the image

# Set under gunicorn with several workers, so /metrics adds up every worker's counters.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
# /metrics and the details of /readyz: callers with this bearer token, or from these
# networks (loopback by default; behind a proxy set TRUSTED_PROXY_COUNT too).
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_networks(
    "METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"
)
# Where run_relay and run_consumer serve --metrics-port: loopback unless configured
# (compose sets 0.0.0.0 inside its private network for Prometheus).
METRICS_BIND_ADDRESS = env_str("METRICS_BIND_ADDRESS", "127.0.0.1")
HEALTH = {
    "BROKER_TIMEOUT_S": env_int("HEALTH_BROKER_TIMEOUT_MS", 2000, minimum=100) / 1000,
    # /readyz flags the relay or consumer when they are this far behind.
    "MAX_PENDING_AGE_S": env_int("HEALTH_MAX_PENDING_AGE_S", 60, minimum=1),
    # /metrics recounts whole tables (inbox, notifications, the delay sample) at
    # most this often per process; the backlog is always read live.
    "FIGURES_CACHE_S": env_int("HEALTH_FIGURES_CACHE_S", 5, minimum=0),
}

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that sets X-Forwarded-Proto itself and strips the client's.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    # Production: HTTPS only. Probes and Prometheus talk plain HTTP inside the network.
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^readyz/?$", r"^metrics/?$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool(
        "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True
    )
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Appointments: booking rules and API limits.
REST_FRAMEWORK["NON_FIELD_ERRORS_KEY"] = (
    "nonFieldErrors"  # camelCase like every other key
)
BOOKING_HORIZON_DAYS = env_int("BOOKING_HORIZON_DAYS", 365, minimum=1)

# -- Security: client address, rate limits, lockout, tokens, body size, audit ---------
# Proxies in front that append to X-Forwarded-For; 0: the socket address is the client.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# Rate-limit counters (and Django's cache) live in Redis when this names one, else in
# the project's database (core_rate_counter): shared by every process either way.
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
        }
    }
elif CACHE_URL:
    raise ImproperlyConfigured(f"CACHE_URL={CACHE_URL!r} is not a redis:// URL.")
# Requests per client address to register, token and refresh.
AUTH_THROTTLE_RATE = env_rate("AUTH_THROTTLE_RATE", "20/minute")
# Booking changes (book, reschedule, cancel, complete, no-show) per user.
BOOKING_THROTTLE_RATE = env_rate("BOOKING_THROTTLE_RATE", "30/minute")
# Admin login POSTs per client address.
ADMIN_LOGIN_THROTTLE_RATE = env_rate("ADMIN_LOGIN_THROTTLE_RATE", "10/minute")
MAX_ACTIVE_APPOINTMENTS_PER_PATIENT = env_int(
    "MAX_ACTIVE_APPOINTMENTS_PER_PATIENT", 8, minimum=1
)
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 64 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# Lockout (django-axes): failed logins of one username from one address, on the API
# and the admin; a stranger elsewhere cannot lock the account's owner out.
AUTHENTICATION_BACKENDS = [
    "core.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_duration("LOGIN_LOCKOUT", "15m"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "core.client_ip.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False

# JWT: their own key (not SECRET_KEY); the previous one verifies during a rotation.
JWT_SIGNING_KEY = env_key("JWT_SIGNING_KEY", local=LOCAL_DEV, var_dir=VAR_DIR)
# Set it for one refresh lifetime after changing JWT_SIGNING_KEY, then remove it.
JWT_PREVIOUS_SIGNING_KEY = "".join(env_fallback_keys("JWT_PREVIOUS_SIGNING_KEY")[:1])
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(
        minutes=env_int("JWT_ACCESS_MINUTES", 15, minimum=1, maximum=60)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(
        days=env_int("JWT_REFRESH_DAYS", 1, minimum=1, maximum=30)
    ),
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "CHECK_REVOKE_TOKEN": True,
    "AUTH_TOKEN_CLASSES": ("core.tokens.AccessToken",),
    "TOKEN_OBTAIN_SERIALIZER": "core.tokens.TokenPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "core.tokens.TokenRotateSerializer",
}

# The audit trail (audit/): kept this long, then deleted by audit_purge.
AUDIT_RETENTION_S = env_duration("AUDIT_RETENTION", "2192d")  # 6 years
