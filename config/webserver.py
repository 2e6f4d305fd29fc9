"""The web server: gunicorn running uvicorn workers over `config.asgi:application`.

One ASGI application serves HTTP and WebSockets (Channels); several worker processes
serve it side by side, so that one slow request or one busy core does not hold up the
rest. Used by `manage.py runstack` (`make run`), docker-compose.yml (through
`python -m config.webserver`) and bench/http_load.py, so all three run the same stack.

    python -m config.webserver --bind 0.0.0.0 --port 8000   # exec's gunicorn

The number of worker processes is the setting WEB_WORKERS; 0 (the default) sizes it to
the machine: 2 x cores + 1, at most MAX_AUTO_WORKERS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

APPLICATION = "config.asgi:application"
WORKER_CLASS = "uvicorn_worker.UvicornWorker"
MAX_AUTO_WORKERS = 8
# Seconds a worker may take to finish its requests and close its sockets on SIGTERM.
GRACEFUL_TIMEOUT = 20


def auto_workers(cores: int | None = None) -> int:
    """2 x cores + 1 (gunicorn's rule of thumb), capped: each worker holds a Django."""
    if cores is None:
        usable = getattr(os, "sched_getaffinity", None)
        cores = len(usable(0)) if usable else (os.cpu_count() or 1)
    return min(2 * cores + 1, MAX_AUTO_WORKERS)


def worker_count(configured: int | None = None) -> int:
    if configured is None:
        from django.conf import settings

        configured = settings.WEB_WORKERS
    return configured if configured > 0 else auto_workers()


def _gunicorn() -> str:
    local = Path(sys.executable).parent / "gunicorn"
    if local.exists():
        return str(local)
    return shutil.which("gunicorn") or "gunicorn"


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def web_argv(*, bind: str, port: int, workers: int | None = None) -> list[str]:
    """The command line of the web server listening on `bind`:`port`."""
    return [
        _gunicorn(),
        APPLICATION,
        *("--worker-class", WORKER_CLASS),
        *("--workers", str(worker_count(workers))),
        # Django is imported once, before the port opens: the workers fork ready to serve
        "--preload",
        *("--bind", bind_address(bind, port)),
        *("--graceful-timeout", str(GRACEFUL_TIMEOUT)),
        # a worker that stops answering its arbiter for this long is replaced
        *("--timeout", "60"),
        *("--keep-alive", "5"),
        *("--error-logfile", "-"),
        # no control socket in ~/.gunicorn: several servers run side by side (tests, bench)
        "--no-control-socket",
        *("--log-level", os.environ.get("LOG_LEVEL", "info").lower()),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=None, help="default: WEB_WORKERS")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    command = web_argv(bind=args.bind, port=args.port, workers=args.workers)
    sys.stdout.flush()
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
