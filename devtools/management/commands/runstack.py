"""`manage.py runstack`: the whole panel in the foreground, stopped cleanly by Ctrl-C.

Starts, in order: the embedded Redis (only when REDIS_URL is not set), with --seed the
local hypervisor (testbed/local.py: libvirtd on qemu:///system for real guests, when this
machine allows it) and the demo seed, the ASGI web server (HTTP and WebSocket; its command
line is built in one place, `web_argv`), one Celery worker and Celery beat. Output is
prefixed with the service's name.

A service that exits on its own is restarted with backoff and the others keep running
(devtools/supervision.py). Ctrl-C, SIGTERM or SIGHUP stops the web server, beat and the
worker (a warm shutdown), then the local hypervisor if this run started it (its guests are
shut down first), then Redis; a second signal stops waiting. Nothing outlives runstack:
the services die with it however it is stopped, a SIGKILL of it or its process group
included (devtools/reaper.py).

The demo's published passwords are refused unless the web server listens on loopback
only (hosting/demo_passwords.py).

The worker uses the threads pool: every job runs in one process, which is what libvirt's
test driver (`test:///default`, whose state lives in the process that opened it) needs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from config import webserver
from devtools import embedded_redis
from devtools.management.commands.seed_demo import DEMO_USERNAMES, demo_passwords
from devtools.supervision import Reaper, Service, Supervisor, child_setup, die_with_parent
from hosting.demo_passwords import KNOWN_DEMO_PASSWORDS, is_known_demo_password, is_loopback
from hosting.services.collector import STATS_QUEUE_SUFFIX
from testbed import local as local_hypervisor

REDIS_START_TIMEOUT = 10.0


def _executable(name: str) -> str:
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise CommandError(f"{name} is not installed in this environment.")
    return found


def web_argv(bind: str, port: int) -> list[str]:
    """The web server's command line (HTTP and WebSocket), the one place that builds it.
    A server that forks worker processes is fine: runstack stops its process group."""
    return webserver.web_argv(bind=bind, port=port)


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def published_password_logins(*, seed: bool) -> list[str]:
    """The demo logins that have (with --seed: will have) a published demo password."""
    if seed:
        return [
            name
            for name, password in zip(DEMO_USERNAMES, demo_passwords(), strict=True)
            if is_known_demo_password(password)
        ]
    found = []
    with contextlib.suppress(DatabaseError):  # not migrated yet: no logins at all
        for user in get_user_model().objects.filter(username__in=DEMO_USERNAMES):
            if any(user.check_password(p) for p in KNOWN_DEMO_PASSWORDS):
                found.append(user.get_username())
    return sorted(found)


class Command(BaseCommand):
    help = "Run the panel (embedded Redis if needed, web server, Celery worker and beat)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default="127.0.0.1", help="Address the web server binds.")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--seed", action="store_true", help="Run seed_demo once Redis is up.")
        parser.add_argument("--concurrency", type=int, default=4, help="Worker threads.")
        parser.add_argument("--queue", default=settings.CELERY_TASK_DEFAULT_QUEUE)
        parser.add_argument("--no-beat", action="store_true")

    def handle(self, *args, **options) -> None:
        self._out_lock = threading.RLock()  # the signal handler may say something
        self._stopping = threading.Event()
        self._signalled = 0
        bind, port = options["bind"], options["port"]
        self.refuse_published_passwords(bind, seed=options["seed"])
        shown_host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
        url = f"http://{shown_host}:{port}/"
        if _port_open(shown_host, port):
            raise CommandError(f"Port {port} on {shown_host} is taken: is Paddock running already?")

        # make dies -> this command stops in order; then our own signals
        die_with_parent(signal.SIGTERM)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        reaper = Reaper(settings.BASE_DIR)
        supervisor = Supervisor(cwd=settings.BASE_DIR, say=self._say, reaper=reaper)
        redis: Service | None = None
        services: list[Service] = []
        local = None
        try:
            redis = self._start_redis(supervisor)
            if options["seed"]:
                local = local_hypervisor.bring_up(
                    say=lambda line: self._say("libvirt", line), preexec_fn=child_setup()
                )
                call_command("seed_demo", url=url, stdout=self.stdout, stderr=self.stderr)
            celery = [sys.executable, "-m", "celery", "-A", "config"]
            worker = [
                *celery,
                *("worker", "--pool", "threads", "--loglevel", "INFO"),
                *("--concurrency", str(options["concurrency"])),
                # the jobs and the stats collector's passes of the demo's hosts: one process,
                # as the test driver needs (hosting/services/collector.py)
                *("--queues", f"{options['queue']},{options['queue']}{STATS_QUEUE_SUFFIX}"),
                *("--hostname", f"paddock-{os.getpid()}@%h"),
            ]
            schedule = settings.VAR_DIR / "celerybeat-schedule"
            beat = [*celery, "beat", "--schedule", str(schedule), "--loglevel", "INFO"]
            services = [Service("web", web_argv(bind, port)), Service("worker", worker)]
            if not options["no_beat"]:
                services.append(Service("beat", beat))
            for service in services:
                supervisor.spawn(service)
            self._supervise(supervisor, [*services, *([redis] if redis else [])], url, port)
        finally:
            supervisor.stop(services)
            if local is not None:
                local.shut_down()
            if redis is not None:
                supervisor.stop([redis])
            reaper.done()
        self._say("runstack", "stopped.")

    def refuse_published_passwords(self, bind: str, *, seed: bool) -> None:
        if is_loopback(bind):
            return
        logins = published_password_logins(seed=seed)
        if logins:
            raise CommandError(
                f"Refusing to listen on {bind}: the demo logins {', '.join(logins)} have the "
                "passwords published in the README, which anyone who reaches this address "
                "could use. Set DEMO_ADMIN_PASSWORD and DEMO_PASSWORD (environment or .env) "
                "to passwords of your own, or listen on 127.0.0.1 only."
            )

    # --- processes ---------------------------------------------------------------------
    def _start_redis(self, supervisor: Supervisor) -> Service | None:
        if os.environ.get("REDIS_URL"):
            self._say("runstack", f"using the Redis at {settings.REDIS_URL}")
            return None
        sock = settings.EMBEDDED_REDIS_SOCKET
        if embedded_redis.is_listening(sock):
            self._say("runstack", f"an embedded Redis already answers on {sock}; using it")
            return None
        sock.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        redis = Service("redis", embedded_redis.command(sock, persist=True), relay=False)
        supervisor.spawn(redis)
        assert redis.proc is not None
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not embedded_redis.is_listening(sock):
            if redis.proc.poll() is not None or time.monotonic() > deadline:
                supervisor.stop([redis], timeout=1)
                raise CommandError(f"The embedded Redis did not start on {sock}.")
            time.sleep(0.05)
        self._say("redis", f"embedded Redis on unix://{sock}")
        return redis

    def _supervise(self, supervisor: Supervisor, services: list[Service], url: str, port: int):
        host = url.split("//", 1)[1].rsplit(":", 1)[0]
        announced = False
        deadline = time.monotonic() + 60
        while not self._stopping.is_set():
            supervisor.check(services, stopping=self._stopping)
            if not announced and _port_open(host, port):
                announced = True
                self._say("runstack", f"Paddock is up at {url} (Ctrl-C stops it)")
            elif not announced and time.monotonic() > deadline:
                self._say("runstack", f"the web server does not answer on {host}:{port} yet")
                deadline = float("inf")
            self._stopping.wait(0.2)

    def _on_signal(self, signum: int, frame) -> None:
        self._signalled += 1
        if self._signalled > 1:
            self._say("runstack", "second signal: not waiting any longer")
            os._exit(130)  # the reaper kills what is left
        self._say("runstack", f"{signal.Signals(signum).name}: stopping")
        self._stopping.set()

    def _say(self, name: str, line: str) -> None:
        with self._out_lock:
            self.stdout.write(f"{name:>8} | {line}")
            self.stdout.flush()
