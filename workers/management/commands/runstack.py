"""`manage.py runstack`: the whole panel in the foreground, stopped cleanly by Ctrl-C.

Starts, in order: the embedded Redis (only when REDIS_URL is not set), with --seed the
local hypervisor (testbed/local.py: libvirtd on qemu:///system for real guests, when this
machine allows it) and the demo seed, the ASGI web server (daphne: HTTP and WebSocket),
one Celery worker and Celery beat. Output is prefixed with the service's name. Ctrl-C (or
SIGTERM) stops the web server, beat and the worker (a warm shutdown), then the local
hypervisor if this run started it (its guests are shut down first), then Redis; if any
service exits on its own, the others are stopped too and the command fails.

The worker uses the threads pool: every job runs in one process, which is what libvirt's
test driver (`test:///default`, whose state lives in the process that opened it) needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from testbed import local as local_hypervisor
from workers import embedded_redis

STOP_TIMEOUT = 30.0


def _die_with_parent() -> None:
    """Linux: children get SIGTERM if this supervisor dies without cleaning up."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _executable(name: str) -> str:
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise CommandError(f"{name} is not installed in this environment.")
    return found


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class Service:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


class Command(BaseCommand):
    help = "Run the panel (embedded Redis if needed, daphne, Celery worker and beat)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default="127.0.0.1", help="Address the web server binds.")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--seed", action="store_true", help="Run seed_demo once Redis is up.")
        parser.add_argument("--concurrency", type=int, default=4, help="Worker threads.")
        parser.add_argument("--queue", default=settings.CELERY_TASK_DEFAULT_QUEUE)
        parser.add_argument("--no-beat", action="store_true")

    def handle(self, *args, **options) -> None:
        self._out_lock = threading.Lock()
        self._stopping = threading.Event()
        self._signalled = 0
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

        bind, port = options["bind"], options["port"]
        shown_host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
        url = f"http://{shown_host}:{port}/"
        if _port_open(shown_host, port):
            raise CommandError(f"Port {port} on {shown_host} is taken: is Paddock running already?")

        redis = self._start_redis()
        services: list[Service] = []
        local = None
        failed = False
        try:
            if options["seed"]:
                local = local_hypervisor.bring_up(
                    say=lambda line: self._say("libvirt", line), preexec_fn=_die_with_parent
                )
                call_command("seed_demo", url=url, stdout=self.stdout, stderr=self.stderr)
            celery = [sys.executable, "-m", "celery", "-A", "config"]
            web = [_executable("daphne"), "-b", bind, "-p", str(port), "config.asgi:application"]
            worker = [
                *celery,
                *("worker", "--pool", "threads", "--loglevel", "INFO"),
                *("--concurrency", str(options["concurrency"]), "--queues", options["queue"]),
                *("--hostname", f"paddock-{os.getpid()}@%h"),
            ]
            schedule = settings.VAR_DIR / "celerybeat-schedule"
            beat = [*celery, "beat", "--schedule", str(schedule), "--loglevel", "INFO"]
            services = [Service("web", web), Service("worker", worker)]
            if not options["no_beat"]:
                services.append(Service("beat", beat))
            for service in services:
                self._spawn(service)
            failed = self._supervise(services, url, shown_host, port)
        finally:
            self._stop_all(services)
            if local is not None:
                local.shut_down()
            if redis is not None:
                self._stop(Service("redis", [], proc=redis))
        if failed:
            raise CommandError("A service exited on its own; the panel was stopped.")
        self._say("runstack", "stopped.")

    # --- processes ---------------------------------------------------------------------
    def _start_redis(self) -> subprocess.Popen | None:
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
        proc = subprocess.Popen(
            embedded_redis.command(sock, persist=True),
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 10
        while not embedded_redis.is_listening(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise CommandError(f"The embedded Redis did not start on {sock}.")
            time.sleep(0.05)
        self._say("redis", f"embedded Redis on unix://{sock} (pid {proc.pid})")
        return proc

    def _spawn(self, service: Service) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        service.proc = subprocess.Popen(
            service.argv,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            # its own session: Ctrl-C reaches only this supervisor, which stops the
            # services in order (worker before Redis)
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        service.reader = threading.Thread(target=self._relay, args=(service,), daemon=True)
        service.reader.start()
        self._say("runstack", f"started {service.name} (pid {service.proc.pid})")

    def _relay(self, service: Service) -> None:
        assert service.proc is not None and service.proc.stdout is not None
        for line in service.proc.stdout:
            self._say(service.name, line.rstrip("\n"))

    def _supervise(self, services: list[Service], url: str, host: str, port: int) -> bool:
        announced = False
        deadline = time.monotonic() + 60
        while not self._stopping.is_set():
            for service in services:
                assert service.proc is not None
                code = service.proc.poll()
                if code is not None:
                    self._say("runstack", f"{service.name} exited with code {code}")
                    return True
            if not announced and _port_open(host, port):
                announced = True
                self._say("runstack", f"Paddock is up at {url} (Ctrl-C stops it)")
            elif not announced and time.monotonic() > deadline:
                self._say("runstack", f"the web server does not answer on {host}:{port} yet")
                deadline = float("inf")
            self._stopping.wait(0.2)
        return False

    def _stop_all(self, services: list[Service]) -> None:
        running = [s for s in services if s.proc is not None and s.proc.poll() is None]
        if running:
            self._say("runstack", "stopping " + ", ".join(s.name for s in running) + " ...")
        for service in running:
            with contextlib.suppress(ProcessLookupError):
                assert service.proc is not None
                service.proc.send_signal(signal.SIGTERM)
        for service in running:
            self._stop(service)
        for service in services:
            if service.reader is not None:
                service.reader.join(timeout=2)

    def _stop(self, service: Service) -> None:
        proc = service.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._say("runstack", f"{service.name} did not stop in {STOP_TIMEOUT:.0f} s; killing")
            proc.kill()
            proc.wait()

    def _on_signal(self, signum: int, frame) -> None:
        self._signalled += 1
        if self._signalled > 1:
            self._say("runstack", "second signal: not waiting any longer")
            os._exit(130)
        self._stopping.set()

    def _say(self, name: str, line: str) -> None:
        with self._out_lock:
            self.stdout.write(f"{name:>8} | {line}")
            self.stdout.flush()
