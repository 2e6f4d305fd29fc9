"""How runstack keeps its services running, and makes sure none outlives it.

- Each service runs in a **process group of its own** (not a session): the terminal's
  Ctrl-C reaches only runstack, which stops the services in order (the web server, beat
  and the worker before Redis); and a service that forks (a web server with worker
  processes) is stopped as a whole, its group killed once its leader has exited or after
  the stop timeout.
- A service that exits on its own (a worker killed by the OOM killer) is **restarted with
  backoff**: 1 s, 2 s, 4 s ... up to 30 s, back to 1 s once it had run for a minute. Each
  exit and restart is logged; the other services keep running.
- **Nothing outlives runstack**: every child gets PR_SET_PDEATHSIG (SIGTERM when runstack
  dies), runstack asks for the same when its own parent (make) dies, and the reaper
  (devtools/reaper.py) kills every registered group with SIGKILL when runstack dies
  without stopping them (a SIGKILL to runstack or its process group).

Processes are started on the main thread only: PR_SET_PDEATHSIG fires when the *thread*
that forked the child ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 30.0

Say = Callable[[str, str], None]

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)  # loaded before any fork
except OSError:  # not Linux
    _LIBC = None


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Linux: this process gets `signum` when its parent dies."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signum)


def child_setup() -> Callable[[], None]:
    """preexec_fn for a child of this process: SIGTERM when this process dies, and exit at
    once if it died already between fork and prctl."""
    parent = os.getpid()

    def setup() -> None:
        die_with_parent(signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return setup


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class Backoff:
    """Delays between restarts: `first`, doubled after each quick crash, at most `cap`;
    back to `first` after a run of at least `stable_after` seconds."""

    first: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0
    current: float = 0.0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.stable_after or self.current == 0.0:
            self.current = self.first
        else:
            self.current = min(self.current * 2, self.cap)
        return self.current


@dataclass
class Service:
    name: str
    argv: list[str]
    relay: bool = True  # prefix its output lines with the name; otherwise discard them
    backoff: Backoff = field(default_factory=Backoff)
    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)
    started_at: float = 0.0
    restart_at: float | None = None
    restarts: int = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Reaper:
    """runstack's end of devtools/reaper.py."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.reaper"],
            cwd=cwd,
            stdin=subprocess.PIPE,
            text=True,
            bufsize=1,
            process_group=0,
        )

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def done(self) -> None:
        self._send("done")
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


class Supervisor:
    def __init__(self, *, cwd: Path, say: Say, reaper: Reaper) -> None:
        self.cwd = cwd
        self.say = say
        self.reaper = reaper

    # --- start ---------------------------------------------------------------------------
    def spawn(self, service: Service) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        output = subprocess.PIPE if service.relay else subprocess.DEVNULL
        service.proc = subprocess.Popen(
            service.argv,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            process_group=0,
            preexec_fn=child_setup(),
        )
        self.reaper.watch(service.proc.pid)
        service.started_at = time.monotonic()
        service.restart_at = None
        if service.relay:
            service.reader = threading.Thread(target=self._relay, args=(service,), daemon=True)
            service.reader.start()
        self.say("runstack", f"started {service.name} (pid {service.proc.pid})")

    def _relay(self, service: Service) -> None:
        proc = service.proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            self.say(service.name, line.rstrip("\n"))

    # --- watch ---------------------------------------------------------------------------
    def check(self, services: list[Service], *, stopping: threading.Event) -> None:
        """One round: note services that exited, restart those whose delay has passed."""
        now = time.monotonic()
        for service in services:
            proc = service.proc
            if proc is not None and proc.poll() is not None:
                self._clear_group(service)
                service.proc = None
                if stopping.is_set():
                    continue
                ran = now - service.started_at
                delay = service.backoff.next_delay(ran)
                service.restarts += 1
                service.restart_at = now + delay
                self.say(
                    "runstack",
                    f"{service.name} (pid {proc.pid}) exited on its own "
                    f"({describe_exit(proc.returncode)}) after {ran:.1f} s; "
                    f"restart #{service.restarts} in {delay:.0f} s",
                )
            elif (
                service.proc is None
                and service.restart_at is not None
                and now >= service.restart_at
                and not stopping.is_set()
            ):
                self.say("runstack", f"restarting {service.name}")
                self.spawn(service)

    # --- stop ----------------------------------------------------------------------------
    def stop(self, services: list[Service], *, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to each service's leader at once, then wait for each; a group whose
        leader does not exit in time is killed, and what is left of a group after its
        leader exited (worker processes of a web server) too."""
        running = [s for s in services if s.running]
        if running:
            self.say("runstack", "stopping " + ", ".join(s.name for s in running) + " ...")
        for service in running:
            assert service.proc is not None
            with contextlib.suppress(ProcessLookupError):
                service.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in services:
            proc = service.proc
            if proc is None:
                continue
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("runstack", f"{service.name} did not stop in {timeout:.0f} s; killing")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            self._clear_group(service)
            service.proc = None
            service.restart_at = None
        for service in services:
            if service.reader is not None:
                service.reader.join(timeout=2)

    def _clear_group(self, service: Service) -> None:
        """Kill whatever is left in the group of a service whose leader has exited."""
        proc = service.proc
        assert proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.reaper.forget(proc.pid)
