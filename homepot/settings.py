"""HOMEPOT settings, read once from the environment (see README: Configuration)."""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from homepot.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime state of the embedded default (SQLite file, file cache, file broker).
VAR_DIR = Path(env_str("HOMEPOT_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"

# Loopback names are always served: container healthchecks call 127.0.0.1, and
# a Host header naming the machine itself cannot poison links for anyone else.
ALLOWED_HOSTS = [*env_list("ALLOWED_HOSTS", []), "localhost", "127.0.0.1", "[::1]"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Reverse proxies in front of the web server: client addresses are read from
# X-Forwarded-For, and (by default) the scheme from X-Forwarded-Proto.
NUM_PROXIES = env_int("NUM_PROXIES", 0, minimum=0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "csp",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "devices",
    "commands",
    "analytics",
    "homepot",  # templates, migrations of the security pieces
]

MIDDLEWARE = [
    # First: refuses hostile input before any other work, and makes every
    # answer under /api/ JSON (404s, 413s, 500s, 503s for a backend outage).
    "homepot.middleware.ApiGuardMiddleware",
    # Counts and times every request for GET /metrics (by view name, status class).
    "homepot.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Advises a device watched in the live thermal view to send frames fast.
    "analytics.middleware.ThermalLeaseMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a locked-out admin login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "homepot.urls"
WSGI_APPLICATION = "homepot.wsgi.application"
# What production serves (gunicorn, homepot.web_worker.Worker): the WSGI application
# behind the long-poll router.
ASGI_APPLICATION = "homepot.asgi.application"
APPEND_SLASH = False  # the API's paths have no trailing slashes

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project templates first: admin/base_site.html (HOMEPOT branding) must win
        # over django.contrib.admin's own, which APP_DIRS would find first.
        "DIRS": [BASE_DIR / "homepot" / "templates"],
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

# --- Database -----------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'homepot.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0 if DEBUG else 600, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default runs web, worker and beat as separate processes on
    # one file: WAL lets readers and the writer proceed together, and
    # IMMEDIATE transactions queue writers instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and broker: Redis when configured, else files under var/ ------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "homepot.cache.ReusingRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "homepot",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
else:
    # A file cache is shared by every process on the machine, so key
    # revocation still reaches all of them immediately without a server.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
    CELERY_BROKER_URL = "filesystem://"
    _broker_dir = VAR_DIR / "broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    # Every folder of kombu's file transport, including the fanout table
    # (control_folder, "./control" by default) and the unused processed one.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "processed_folder": str(_broker_dir / "processed"),
    }

# --- Celery ---------------------------------------------------------------------
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Eager mode for tests and one-process debugging only.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# --- Devices: keys, presence ------------------------------------------------------
# Device keys are stored as HMAC-SHA256 under this server-side key, which never
# enters the database (devices/keys.py says why that is as safe as bcrypt).
# Unset: derived from SECRET_KEY; set it so SECRET_KEY can rotate on its own.
DEVICE_KEY_HASH_KEY = env_str("DEVICE_KEY_HASH_KEY")
# Earlier hash keys still accepted; each key is re-hashed on its next use.
DEVICE_KEY_HASH_KEY_FALLBACKS = env_list("DEVICE_KEY_HASH_KEY_FALLBACKS", [])
for _hash_key in [DEVICE_KEY_HASH_KEY, *DEVICE_KEY_HASH_KEY_FALLBACKS]:
    if _hash_key and len(_hash_key) < 32:
        raise ImproperlyConfigured("DEVICE_KEY_HASH_KEY(_FALLBACKS) need 32+ random characters")
# Keys stored before the HMAC form are bcrypt hashes: checked (and re-hashed) at
# most this many at a time per web process, beyond that 503 auth_busy.
DEVICE_AUTH_BCRYPT_CONCURRENCY = env_int("DEVICE_AUTH_BCRYPT_CONCURRENCY", 1, minimum=1)
# Cost of legacy-form bcrypt hashes made by tests and benchmarks; new keys are HMAC.
DEVICE_KEY_BCRYPT_ROUNDS = env_int("DEVICE_KEY_BCRYPT_ROUNDS", 12, minimum=4)
if not DEBUG and DEVICE_KEY_BCRYPT_ROUNDS < 12:
    raise ImproperlyConfigured("DEVICE_KEY_BCRYPT_ROUNDS must be at least 12 in production")
# How long a verified key stays in the cache before its row is read again.
DEVICE_AUTH_CACHE_SECONDS = env_int("DEVICE_AUTH_CACHE_SECONDS", 3600, minimum=1)
# How long the old key keeps working after an agent rotates its own key.
DEVICE_KEY_ROTATION_GRACE_SECONDS = env_int("DEVICE_KEY_ROTATION_GRACE_SECONDS", 300, minimum=0)
# A device may rotate its own key at most once per this many seconds (else 429).
DEVICE_KEY_SELF_ROTATION_MIN_SECONDS = env_int(
    "DEVICE_KEY_SELF_ROTATION_MIN_SECONDS", 3600, minimum=0
)
# Failed key checks allowed per window, per key id and per client address.
# Never per device id: anyone who knows it could lock the rightful key out.
DEVICE_AUTH_FAILURES_PER_KEY = env_int("DEVICE_AUTH_FAILURES_PER_KEY", 10, minimum=1)
if env_str("DEVICE_AUTH_FAILURES_PER_DEVICE"):
    raise ImproperlyConfigured(
        "DEVICE_AUTH_FAILURES_PER_DEVICE is gone: failures are limited per key id "
        "(DEVICE_AUTH_FAILURES_PER_KEY) and per address"
    )
DEVICE_AUTH_FAILURES_PER_ADDRESS = env_int("DEVICE_AUTH_FAILURES_PER_ADDRESS", 50, minimum=1)
DEVICE_AUTH_FAILURE_WINDOW_SECONDS = env_int("DEVICE_AUTH_FAILURE_WINDOW_SECONDS", 300, minimum=1)
# last_seen is written at most once per window per device.
DEVICE_LAST_SEEN_WRITE_SECONDS = env_int("DEVICE_LAST_SEEN_WRITE_SECONDS", 30, minimum=1)
DEVICE_DEFAULT_CHECKIN_SECONDS = env_int("DEVICE_DEFAULT_CHECKIN_SECONDS", 60, minimum=1)
# Extra time past the expected check-in before a device counts as offline.
DEVICE_OFFLINE_GRACE_SECONDS = env_int("DEVICE_OFFLINE_GRACE_SECONDS", 60, minimum=0)
DEVICE_ATTRIBUTES_MAX_BYTES = env_int("DEVICE_ATTRIBUTES_MAX_BYTES", 8192, minimum=256)
# Two agent instances heartbeating in turn (A, B, A) within this window share one
# identity: a device.identity_conflict event, at most once per window.
DEVICE_IDENTITY_CONFLICT_WINDOW_SECONDS = env_int(
    "DEVICE_IDENTITY_CONFLICT_WINDOW_SECONDS", 3600, minimum=60
)
ENROLLMENT_TOKEN_DEFAULT_HOURS = env_int("ENROLLMENT_TOKEN_DEFAULT_HOURS", 24, minimum=1)

# --- Commands ---------------------------------------------------------------------------
# A queued command not delivered by then expires (unless the request sets expires_in).
COMMAND_DEFAULT_EXPIRES_SECONDS = env_int("COMMAND_DEFAULT_EXPIRES_SECONDS", 86400, minimum=1)
# A delivered command not acknowledged by then is queued again (or times out).
COMMAND_ACK_TIMEOUT_SECONDS = env_int("COMMAND_ACK_TIMEOUT_SECONDS", 120, minimum=1)
COMMAND_MAX_ATTEMPTS = env_int("COMMAND_MAX_ATTEMPTS", 3, minimum=1)
COMMAND_OUTPUT_MAX_CHARS = env_int("COMMAND_OUTPUT_MAX_CHARS", 65536, minimum=1024)
COMMAND_RESULT_MAX_BYTES = env_int("COMMAND_RESULT_MAX_BYTES", 65536, minimum=1024)
COMMAND_DELIVERY_BATCH = env_int("COMMAND_DELIVERY_BATCH", 10, minimum=1)
COMMAND_BULK_MAX_DEVICES = env_int("COMMAND_BULK_MAX_DEVICES", 10000, minimum=1)
# The poll interval advised to agents: idle, and while commands are flowing.
COMMAND_POLL_IDLE_SECONDS = env_int("COMMAND_POLL_IDLE_SECONDS", 30, minimum=1)
COMMAND_POLL_BUSY_SECONDS = env_int("COMMAND_POLL_BUSY_SECONDS", 5, minimum=1)
# Long polls (homepot.longpoll, under homepot.asgi): the largest `wait` granted,
# and how many polls one web process keeps waiting at once (more are answered at once).
LONG_POLL_MAX_SECONDS = env_int("LONG_POLL_MAX_SECONDS", 30, minimum=1)
if LONG_POLL_MAX_SECONDS > 300:
    raise ImproperlyConfigured("LONG_POLL_MAX_SECONDS must be at most 300")
LONG_POLL_MAX_WAITERS = env_int("LONG_POLL_MAX_WAITERS", 20_000, minimum=0)
# Threads per web process answering Django requests under homepot.asgi (each may
# hold a database connection).
WEB_THREADS = env_int("WEB_THREADS", 4, minimum=1)
# Requests one web process holds for those threads at most; beyond, 503 server_busy
# with Retry-After at once (an overloaded server answers fast rather than late).
WEB_MAX_QUEUED = env_int("WEB_MAX_QUEUED", 200, minimum=0)
# The beat sweep moves at most this many commands per statement (it repeats until done).
COMMAND_SWEEP_BATCH = env_int("COMMAND_SWEEP_BATCH", 500, minimum=1)

# --- Retention of the event log, the audit trail and finished commands -------------------
EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 90, minimum=1)
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 365, minimum=1)
# Only finished commands (succeeded, failed, rejected, timed out, expired, canceled).
COMMAND_RETENTION_DAYS = env_int("COMMAND_RETENTION_DAYS", 90, minimum=1)
# Rows deleted per statement, so a prune never holds long locks.
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 1000, minimum=1)

# --- Telemetry ----------------------------------------------------------------------------
TELEMETRY_MAX_BODY_BYTES = env_int("TELEMETRY_MAX_BODY_BYTES", 1_048_576, minimum=1024)
TELEMETRY_MAX_SAMPLES_PER_BATCH = env_int("TELEMETRY_MAX_SAMPLES_PER_BATCH", 1000, minimum=1)
TELEMETRY_MAX_METRICS_PER_SAMPLE = env_int("TELEMETRY_MAX_METRICS_PER_SAMPLE", 500, minimum=1)
# Every value must be finite and at most this large in magnitude (else 400):
# rollup sums of bounded values cannot overflow a double.
TELEMETRY_MAX_ABS_VALUE = env_float("TELEMETRY_MAX_ABS_VALUE", 1e15, minimum=1.0)
# Distinct metric names one device may have (else 400, code too_many_metric_names).
TELEMETRY_MAX_METRIC_NAMES_PER_DEVICE = env_int(
    "TELEMETRY_MAX_METRIC_NAMES_PER_DEVICE", 1000, minimum=1
)
# Device clocks may run ahead of the server's by this much.
TELEMETRY_MAX_FUTURE_SKEW_SECONDS = env_int("TELEMETRY_MAX_FUTURE_SKEW_SECONDS", 300, minimum=0)
TELEMETRY_RAW_RETENTION_DAYS = env_int("TELEMETRY_RAW_RETENTION_DAYS", 30, minimum=1)
TELEMETRY_MINUTE_RETENTION_DAYS = env_int("TELEMETRY_MINUTE_RETENTION_DAYS", 180, minimum=1)
TELEMETRY_HOUR_RETENTION_DAYS = env_int("TELEMETRY_HOUR_RETENTION_DAYS", 1825, minimum=1)
# PostgreSQL: raw samples are partitioned by UTC day (analytics/partitions.py); the
# partitions of this many days after today exist ahead, so beat may be down that long
# before rows fall into the default partition.
TELEMETRY_PARTITIONS_AHEAD = env_int("TELEMETRY_PARTITIONS_AHEAD", 7, minimum=1)
# Each rollup run recomputes this much recent history, so slightly late samples count.
TELEMETRY_ROLLUP_LOOKBACK_SECONDS = env_int("TELEMETRY_ROLLUP_LOOKBACK_SECONDS", 180, minimum=60)
# A catch-up (first run, or after beat was down) rolls up at most this much per run.
TELEMETRY_ROLLUP_MAX_SPAN_HOURS = env_int("TELEMETRY_ROLLUP_MAX_SPAN_HOURS", 6, minimum=1)
TELEMETRY_QUERY_MAX_POINTS = env_int("TELEMETRY_QUERY_MAX_POINTS", 10_000, minimum=100)
THERMAL_FRAMES_KEPT = env_int("THERMAL_FRAMES_KEPT", 10, minimum=1)
# Live thermal view: while an operator watches, the device is told to send a frame
# every THERMAL_LIVE_INTERVAL_SECONDS for a lease of THERMAL_LIVE_LEASE_SECONDS
# (refreshed by each poll of the view), and to poll every THERMAL_LIVE_POLL_SECONDS.
THERMAL_LIVE_LEASE_SECONDS = env_int("THERMAL_LIVE_LEASE_SECONDS", 20, minimum=2)
THERMAL_LIVE_INTERVAL_SECONDS = env_float("THERMAL_LIVE_INTERVAL_SECONDS", 0.25, minimum=0.25)
THERMAL_LIVE_POLL_SECONDS = env_float("THERMAL_LIVE_POLL_SECONDS", 2.0, minimum=0.25)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, TELEMETRY_MAX_BODY_BYTES + 1024)

# --- Agentless checks over SSH (devices/ssh/) -------------------------------------------
# The server's one SSH identity (a private key file, created by manage.py
# homepot_ssh_keygen); no SSH secret is stored in the database.
HOMEPOT_SSH_KEY_FILE = env_str("HOMEPOT_SSH_KEY_FILE", str(VAR_DIR / "ssh" / "homepot_ed25519"))
SSH_CONNECT_TIMEOUT_SECONDS = env_float("SSH_CONNECT_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# A check's output beyond this many bytes fails the check (and is not read further).
SSH_MAX_OUTPUT_BYTES = env_int("SSH_MAX_OUTPUT_BYTES", 65_536, minimum=1024)
# SSH sessions open at once: across all workers, and to any one target.
SSH_MAX_CONCURRENCY = env_int("SSH_MAX_CONCURRENCY", 20, minimum=1)
SSH_MAX_SESSIONS_PER_TARGET = env_int("SSH_MAX_SESSIONS_PER_TARGET", 1, minimum=1)
# How long a round waits for a free session slot before Celery retries it later
# (the worker is not held meanwhile).
SSH_SLOT_WAIT_SECONDS = env_float("SSH_SLOT_WAIT_SECONDS", 5.0, minimum=0.0)
# A round whose connection fails is retried this many times, after
# SSH_RETRY_BACKOFF_SECONDS, then doubling, with jitter.
SSH_CONNECT_RETRIES = env_int("SSH_CONNECT_RETRIES", 2, minimum=0)
SSH_RETRY_BACKOFF_SECONDS = env_float("SSH_RETRY_BACKOFF_SECONDS", 2.0, minimum=0.0)
# The circuit of a target opens after this many failed rounds in a row and lets
# one trial round through (half-open) after the cool-down.
SSH_BREAKER_THRESHOLD = env_int("SSH_BREAKER_THRESHOLD", 3, minimum=1)
SSH_BREAKER_COOLDOWN_SECONDS = env_int("SSH_BREAKER_COOLDOWN_SECONDS", 300, minimum=1)

# --- Alerting and notifications (analytics/alerting/, analytics/notifications/) ----------
# Webhook deliveries that fail (connection error, timeout, 5xx, 429) are retried
# after NOTIFY_RETRY_BASE_SECONDS, then doubling, NOTIFY_MAX_ATTEMPTS attempts in all
# (10 s and 10 attempts: about 85 minutes).
NOTIFY_RETRY_BASE_SECONDS = env_float("NOTIFY_RETRY_BASE_SECONDS", 10.0, minimum=0.0)
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 10, minimum=1)
NOTIFY_TIMEOUT_SECONDS = env_float("NOTIFY_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# Webhook URLs on private, loopback and link-local addresses are allowed (lab
# receivers live on the LAN) unless this is off.
NOTIFY_WEBHOOK_ALLOW_PRIVATE = env_bool("NOTIFY_WEBHOOK_ALLOW_PRIVATE", True)
ALERT_RETENTION_DAYS = env_int("ALERT_RETENTION_DAYS", 365, minimum=1)  # resolved alerts
NOTIFICATION_RETENTION_DAYS = env_int("NOTIFICATION_RETENTION_DAYS", 90, minimum=1)
# Email (Django's SMTP backend).
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "homepot@localhost")
EMAIL_SUBJECT_PREFIX = "[HOMEPOT] "

# --- Beat intervals (seconds) ----------------------------------------------------------
OFFLINE_SWEEP_SECONDS = env_int("OFFLINE_SWEEP_SECONDS", 30, minimum=1)
COMMAND_SWEEP_SECONDS = env_int("COMMAND_SWEEP_SECONDS", 15, minimum=1)
TELEMETRY_ROLLUP_SECONDS = env_int("TELEMETRY_ROLLUP_SECONDS", 60, minimum=10)
TELEMETRY_PRUNE_SECONDS = env_int("TELEMETRY_PRUNE_SECONDS", 3600, minimum=60)
TELEMETRY_PARTITION_SECONDS = env_int("TELEMETRY_PARTITION_SECONDS", 3600, minimum=60)
RETENTION_PRUNE_SECONDS = env_int("RETENTION_PRUNE_SECONDS", 3600, minimum=60)
# How often beat looks for SSH checks that are due (each check has its own interval).
SSH_DISPATCH_SECONDS = env_int("SSH_DISPATCH_SECONDS", 5, minimum=1)
ALERT_EVALUATION_SECONDS = env_int("ALERT_EVALUATION_SECONDS", 15, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "evaluate-alerts": {
        "task": "analytics.tasks.evaluate_alerts",
        "schedule": ALERT_EVALUATION_SECONDS,
    },
    "dispatch-ssh-checks": {
        "task": "devices.tasks.dispatch_ssh_checks",
        "schedule": SSH_DISPATCH_SECONDS,
    },
    "mark-devices-offline": {
        "task": "devices.tasks.mark_devices_offline",
        "schedule": OFFLINE_SWEEP_SECONDS,
    },
    "sweep-commands": {
        "task": "commands.tasks.sweep_commands",
        "schedule": COMMAND_SWEEP_SECONDS,
    },
    "rollup-telemetry": {
        "task": "analytics.tasks.rollup_telemetry",
        "schedule": TELEMETRY_ROLLUP_SECONDS,
    },
    "prune-telemetry": {
        "task": "analytics.tasks.prune_telemetry",
        "schedule": TELEMETRY_PRUNE_SECONDS,
    },
    # PostgreSQL: raw sample partitions created ahead (also at worker start, after migrate)
    "ensure-telemetry-partitions": {
        "task": "analytics.tasks.ensure_telemetry_partitions",
        "schedule": TELEMETRY_PARTITION_SECONDS,
    },
    "prune-events": {
        "task": "devices.tasks.prune_events",
        "schedule": RETENTION_PRUNE_SECONDS,
    },
    "prune-audit-entries": {
        "task": "devices.tasks.prune_audit_entries",
        "schedule": RETENTION_PRUNE_SECONDS,
    },
    "prune-commands": {
        "task": "commands.tasks.prune_commands",
        "schedule": RETENTION_PRUNE_SECONDS,
    },
    # resolved alerts (ALERT_RETENTION_DAYS) and deliveries (NOTIFICATION_RETENTION_DAYS)
    "prune-alerts": {
        "task": "analytics.tasks.prune_alerts",
        "schedule": RETENTION_PRUNE_SECONDS,
    },
}

# --- REST API ------------------------------------------------------------------------
# Request bodies may nest arrays and objects at most this deep (else 400 too_deep).
API_JSON_MAX_DEPTH = env_int("API_JSON_MAX_DEPTH", 64, minimum=2)
# Retry-After of a 503 answered while the database, cache or broker is unreachable.
API_UNAVAILABLE_RETRY_AFTER_SECONDS = env_int("API_UNAVAILABLE_RETRY_AFTER_SECONDS", 5, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "homepot.api_tokens.IntegrationTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "homepot.api.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "homepot.schema.HomepotAutoSchema",
    "EXCEPTION_HANDLER": "homepot.api.exception_handler",
    # JSON only within bounds: depth, NUL and lone surrogates, 64-bit integers.
    "DEFAULT_PARSER_CLASSES": [
        "homepot.parsers.SafeJSONParser",
        "homepot.parsers.SafeFormParser",
        "homepot.parsers.SafeMultiPartParser",
    ],
    "UNAUTHENTICATED_USER": None,
    # Number of reverse proxies in front of the web server, for client addresses.
    "NUM_PROXIES": NUM_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HOMEPOT API",
    "DESCRIPTION": "Pull-based fleet manager: sites, devices, keys, commands, telemetry.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the drf-spectacular-sidecar package: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: Swagger UI would load it from validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "ENUM_NAME_OVERRIDES": {
        "DeviceStatusEnum": "devices.models.Device.Status",
        "CommandStatusEnum": "commands.models.Status",
        "ReportedCommandStatusEnum": "commands.services.REPORTED_STATUS_NAMES",
        "SeverityEnum": "analytics.models.Severity",
        "NotificationChannelKindEnum": "analytics.models.NotificationChannel.Kind",
        "NotificationDeliveryStatusEnum": "analytics.models.NotificationDelivery.Status",
    },
}

# --- Static files, i18n, security ----------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One date format throughout ("2026-11-30 14:05:09 UTC"): the locale's formats
# would win over DATETIME_FORMAT settings, so ours come first as a format module.
FORMAT_MODULE_PATH = ["homepot.formats"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- HTTPS, proxies, cookies ------------------------------------------------------------
# X-Forwarded-Proto is believed only when the deployment says a proxy sets it
# (and overwrites whatever the client sent): otherwise any client could claim https.
TRUST_PROXY_SSL_HEADER = env_bool("TRUST_PROXY_SSL_HEADER", NUM_PROXIES > 0)
if TRUST_PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The site is served over https: plain http is redirected, browsers are told
# (HSTS) to use https only, cookies are sent over https only.
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
if SECURE_SSL_REDIRECT and not TRUST_PROXY_SSL_HEADER:
    # gunicorn in the image speaks plain http: without the proxy's word every
    # request would look insecure and be redirected forever.
    raise ImproperlyConfigured(
        "HTTPS=true redirects plain http, which needs a TLS proxy whose X-Forwarded-Proto "
        "is trusted: set NUM_PROXIES (or TRUST_PROXY_SSL_HEADER=true), or SECURE_SSL_REDIRECT=false"
    )
# The container healthchecks call http://127.0.0.1:8000/health directly.
SECURE_REDIRECT_EXEMPT = [r"^health(/ready)?$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", HTTPS or not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Content-Security-Policy (django-csp) ---------------------------------------------------
# Everything comes from this server: scripts only from files (no inline script,
# no eval), so an injected <script> does not run. pygal's SVG charts carry their
# own <style>, and Swagger UI sets style attributes: styles may be inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Static files straight from the apps while developing (and in tests, where
# pytest-django turns DEBUG off after the settings were read).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Admin login throttling (django-axes) -----------------------------------------------------
# Failures are counted per username AND client address together, so nobody can
# lock an operator out from elsewhere; the address is the one DRF sees (NUM_PROXIES).
AUTHENTICATION_BACKENDS = [
    "homepot.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ADMIN_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "homepot.login_throttle.client_address"
AXES_LOCKOUT_TEMPLATE = "homepot/admin_lockout.html"
AXES_USERNAME_CALLABLE = "homepot.login_throttle.submitted_username"
AXES_VERBOSE = False

# --- Integration tokens (django-rest-knox) -----------------------------------------------------
# Stored as a SHA-512 digest plus a short lookup prefix; shown once when issued.
API_TOKEN_TTL_DAYS = env_int("API_TOKEN_TTL_DAYS", 365, minimum=0)  # 0: never expires
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",  # integrations keep sending "Authorization: Token <t>"
    "TOKEN_PREFIX": "hpt_",
    "TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS) if API_TOKEN_TTL_DAYS else None,
    "AUTO_REFRESH": False,
}

# --- Prometheus (GET /metrics, homepot/metrics.py) -------------------------------------------
# Off (404) unless set; scrapers send "Authorization: Bearer <token>".
METRICS_BEARER_TOKEN = env_str("METRICS_BEARER_TOKEN", "")

# --- Fleet dashboard (the admin's first page, homepot/dashboard.py) ---------------------------
# Open dashboards poll every DASHBOARD_POLL_SECONDS; an answer is "nothing changed"
# (204) unless an event was written or DASHBOARD_REFRESH_SECONDS passed (last seen,
# metrics, sparklines and the ingest rate change without events). Tuning, not
# deployment configuration: plain settings, not read from the environment.
DASHBOARD_POLL_SECONDS = 3
DASHBOARD_REFRESH_SECONDS = 30
DASHBOARD_PAGE_SIZE = 100
# The metrics a device tile shows (the first three a device reports), with sparklines.
DASHBOARD_TILE_METRICS = [
    "cpu_percent",
    "memory_percent",
    "bme680.temperature",
    "wet.load1",
    "disk_percent",
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
