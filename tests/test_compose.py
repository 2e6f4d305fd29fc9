"""docker-compose.yml, the Dockerfile, .env.example and config/settings.py agree.

There is no Docker engine in the test environment: the files are parsed, not run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("web", "worker", "collector", "beat")
# Read by Django or the project outside config/settings.py.
READ_ELSEWHERE = {"DJANGO_SETTINGS_MODULE", "DEMO_ADMIN_PASSWORD", "DEMO_PASSWORD"}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}")


def settings_variables() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", source))


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} (the default) and ${VAR:?error} (a placeholder)."""
    return INTERPOLATION.sub(lambda m: m.group(2) if ":-" in m.group(0) else "x", value)


def command_argv(service: dict) -> list[str]:
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2].replace("&&", " && "))
    return argv


def option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            return argv[i + 1]
    return None


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_services(services):
    assert set(services) == {"postgres", "redis", "web", "worker", "collector", "beat"}


def test_app_services_share_one_image_built_here(services):
    for name in APP_SERVICES:
        assert services[name]["build"] == ".", name
        assert services[name]["image"] == services["web"]["image"]
    assert (ROOT / "Dockerfile").is_file()


def test_every_variable_the_app_gets_is_read_by_the_settings(services):
    known = settings_variables() | READ_ELSEWHERE
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"} <= set(env), name
        assert set(env) <= known, f"{name} sets {set(env) - known}, which nothing reads"
        assert interpolate(str(env.get("DEBUG", "false"))).lower() in ("false", "0", "no")
        # no development tooling in production (tests/test_devtools_app.py)
        assert str(env["PADDOCK_DEV_TOOLS"]).lower() == "false", name


def test_secrets_have_no_default(services):
    env = services["web"]["environment"]
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env["SECRET_KEY"])
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]


def test_database_and_redis_urls_point_at_their_services(services):
    env = services["web"]["environment"]
    postgres = services["postgres"]["environment"]
    # postgres://USER:${POSTGRES_PASSWORD:?...}@HOST:PORT/DB, the password as in postgres
    match = re.fullmatch(
        r"postgres://([^:]+):(\$\{[^}]+\})@([^:/]+):(\d+)/(\w+)", env["DATABASE_URL"]
    )
    assert match, env["DATABASE_URL"]
    user, password, host, port, name = match.groups()
    assert (host, port) == ("postgres", "5432")
    assert (user, password, name) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    redis = urlsplit(env["REDIS_URL"])
    assert redis.scheme == "redis" and redis.hostname == "redis"
    for name in APP_SERVICES:
        assert {"postgres", "redis"} <= set(services[name]["depends_on"])
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name]


def test_web_runs_the_asgi_application_with_the_multi_process_server(services):
    argv = command_argv(services["web"])
    assert "migrate" in argv
    assert argv[argv.index("&&") + 1 :][:4] == ["exec", "python", "-m", "config.webserver"]
    port = option(argv, "--port")
    assert any(str(p).endswith(f":{port}") for p in services["web"]["ports"])
    assert option(argv, "--bind") == "0.0.0.0"
    from config.asgi import application
    from config.webserver import APPLICATION, WORKER_CLASS, web_argv

    assert application is not None
    assert settings.ASGI_APPLICATION == "config.asgi.application"
    served = web_argv(bind="0.0.0.0", port=int(port))
    assert APPLICATION in served and option(served, "--worker-class") == WORKER_CLASS
    assert option(served, "--bind") == f"0.0.0.0:{port}"


def test_web_healthcheck_asks_the_readiness_endpoint(services):
    from django.urls import resolve

    from config import health

    check = " ".join(services["web"]["healthcheck"]["test"])
    url = urlsplit(re.search(r"http://[^'\"]+", check).group(0))
    assert url.port == 8000
    assert resolve(url.path).func is health.readyz


def test_worker_and_beat_use_the_config_celery_app(services):
    import config
    from config.celery import app

    assert config.celery_app is app
    worker = command_argv(services["worker"])
    assert worker[:4] == ["celery", "-A", "config", "worker"]
    assert option(worker, "--pool", "-P") == "prefork"
    queues = (option(worker, "--queues", "-Q") or "").split(",")
    assert settings.CELERY_TASK_DEFAULT_QUEUE in queues
    beat = command_argv(services["beat"])
    assert beat[:4] == ["celery", "-A", "config", "beat"]


def test_the_collector_consumes_the_default_hosts_stats_queue(services):
    from hosting.models import Host
    from hosting.services.collector import stats_queue

    collector = command_argv(services["collector"])
    assert collector[:4] == ["celery", "-A", "config", "worker"]
    queues = (option(collector, "--queues", "-Q") or "").split(",")
    default_host = Host(queue=settings.CELERY_TASK_DEFAULT_QUEUE)
    assert stats_queue(default_host) in queues
    # jobs stay with the job workers
    assert settings.CELERY_TASK_DEFAULT_QUEUE not in queues


def test_env_example_lists_exactly_what_is_read():
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.M))
    compose_text = (ROOT / "docker-compose.yml").read_text()
    compose_vars = {m.group(1) for m in INTERPOLATION.finditer(compose_text)}
    missing = settings_variables() - listed
    assert not missing, f".env.example does not list {missing}"
    assert compose_vars <= listed, f".env.example does not list {compose_vars - listed}"
    unknown = listed - settings_variables() - READ_ELSEWHERE - compose_vars
    assert not unknown, f".env.example lists {unknown}, which nothing reads"


def test_dockerfile_installs_from_the_lock_with_the_makefile_uv():
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "uv sync --frozen" in dockerfile
    uv_make = re.search(r"^UV_VERSION := (\S+)", makefile, flags=re.M).group(1)
    uv_docker = re.search(r"^ARG UV_VERSION=(\S+)", dockerfile, flags=re.M).group(1)
    assert uv_make == uv_docker
