"""`manage.py runstack` (what `make run` runs) supervises its services and leaves nothing.

Each test starts the real stack in a process group of its own, as `make run` would be:
the embedded Redis, daphne, a Celery worker and beat, on a SQLite database and a var/
directory of its own (PADDOCK_VAR_DIR), the demo on libvirt's test driver
(PADDOCK_LOCAL_HYPERVISOR=off). Every process of the stack carries a marker in its
environment, so that /proc shows whatever is left of it, also a process that changed its
process group or lost its parent.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.supervision import Backoff, describe_exit

ROOT = Path(__file__).resolve().parent.parent
WAIT = 180.0  # generous: the machine is shared; a wait that runs out fails the test


# --- the backoff, on its own -----------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run():
    backoff = Backoff(first=1, cap=8, stable_after=60)
    # quick crashes: 1, 2, 4, 8, 8
    assert [backoff.next_delay(0.5) for _ in range(5)] == [1, 2, 4, 8, 8]
    # a crash after a minute of running starts again at 1
    assert backoff.next_delay(61) == 1
    assert backoff.next_delay(3) == 2


def test_exits_are_described():
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"


# --- the real stack ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked(marker: str, var_dir: Path | None = None) -> dict[int, str]:
    """pid -> command line of every live process whose environment holds the marker (or
    whose command line names the stack's var/: Redis rewrites its environment area with
    its process title)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ours = f"PADDOCK_STACK_MARK={marker}".encode() in environ.split(b"\0")
        if var_dir is not None and str(var_dir) in cmdline:
            ours = True
        if ours and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def wait_until(condition, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


class Stack:
    def __init__(self, proc: subprocess.Popen, port: int, marker: str, var_dir: Path) -> None:
        self.proc = proc
        self.port = port
        self.marker = marker
        self.var_dir = var_dir
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, *, after: int = 0) -> re.Match:
        """The first output line from index `after` on that matches `pattern`."""
        regex = re.compile(pattern)

        def found():
            for line in self.lines[after:]:
                match = regex.search(line)
                if match:
                    return match
            return None

        try:
            return wait_until(found, f"a line matching {pattern!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; output:\n" + "\n".join(self.lines[-60:])) from None

    def pid_of(self, service: str, *, after: int = 0) -> int:
        return int(self.wait_for(rf"started {service} \(pid (\d+)\)", after=after).group(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def survivors(self) -> dict[int, str]:
        with contextlib.suppress(AssertionError):  # the caller's assert shows what is left
            wait_until(lambda: not self.members(), "the stack's processes to be gone")
        return self.members()

    def members(self) -> dict[int, str]:
        return marked(self.marker, self.var_dir)


@pytest.fixture(scope="module")
def migrated_db() -> Iterator[Path]:
    """A migrated SQLite database, copied for each stack (migrating takes a while)."""
    directory = Path(tempfile.mkdtemp(prefix="pdk-db-"))
    env = stack_env(directory, "migrate")
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield directory / "paddock.sqlite3"
    shutil.rmtree(directory, ignore_errors=True)


def stack_env(var_dir: Path, marker: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PADDOCK_", "PYTEST_", "DEMO_", "CELERY_"))
        and key not in ("DATABASE_URL", "REDIS_URL", "DEBUG")
    }
    env.update(
        {
            "PADDOCK_VAR_DIR": str(var_dir),
            # this stack's own SQLite and embedded Redis, whatever .env says
            "DATABASE_URL": f"sqlite:///{var_dir / 'paddock.sqlite3'}",
            "REDIS_URL": "",
            "PADDOCK_DEV_TOOLS": "true",
            "PADDOCK_TESTING": "false",
            "PADDOCK_LOCAL_HYPERVISOR": "off",
            "SECRET_KEY": "a-secret-for-the-runstack-test",
            "PADDOCK_STACK_MARK": marker,
        }
    )
    return env


@pytest.fixture
def start_stack(migrated_db) -> Iterator:
    started: list[Stack] = []
    directories: list[Path] = []

    def start(*args: str) -> Stack:
        # a short path: the Redis socket lives in it (unix socket paths are short)
        var_dir = Path(tempfile.mkdtemp(prefix="pdk-"))
        directories.append(var_dir)
        shutil.copy(migrated_db, var_dir / "paddock.sqlite3")
        marker = uuid.uuid4().hex
        port = free_port()
        proc = subprocess.Popen(
            [
                *(sys.executable, "manage.py", "runstack", "--bind", "127.0.0.1"),
                *("--port", str(port), "--concurrency", "2", *args),
            ],
            cwd=ROOT,
            env=stack_env(var_dir, marker),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as `make run` in a terminal
        )
        stack = Stack(proc, port, marker, var_dir)
        started.append(stack)
        stack.wait_for(r"Paddock is up at")
        return stack

    yield start
    for stack in started:  # whatever a failed test left
        for pid in stack.members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stack.proc.wait(30)
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_killed_worker_is_restarted_and_a_killed_stack_leaves_nothing(start_stack):
    # given `make run` (with the demo seed) answering
    stack = start_stack("--seed")
    assert get(stack.url + "login/") == 200
    worker = stack.pid_of("worker")
    web = stack.pid_of("web")
    members = stack.members()
    # runstack, the reaper, Redis, web, worker and beat
    assert len(members) >= 6, members

    # when the worker is killed as the OOM killer would
    mark = len(stack.lines)
    os.kill(worker, signal.SIGKILL)

    # then its exit and the restart are logged, a new worker runs, the web still answers
    stack.wait_for(
        rf"worker \(pid {worker}\) exited on its own \(killed by SIGKILL\) .* restart #1 in 1 s",
        after=mark,
    )
    restarted = stack.pid_of("worker", after=mark)
    assert restarted != worker
    stack.wait_for(r"worker \| .*ready", after=mark)
    assert restarted in stack.members()
    assert get(stack.url + "login/") == 200
    assert stack.proc.poll() is None
    assert f"started web (pid {web})" in "\n".join(stack.lines)
    assert not any(line.startswith("runstack | started web") for line in stack.lines[mark:])

    # when a supervisor stops it: SIGTERM to the whole process group, SIGKILL soon after
    os.killpg(stack.proc.pid, signal.SIGTERM)
    time.sleep(0.5)  # a short grace period, so that the SIGKILL lands mid-stop
    os.killpg(stack.proc.pid, signal.SIGKILL)

    # then no process of the stack is left: not the web server, not Redis
    assert stack.survivors() == {}
    assert stack.proc.wait(30) == -signal.SIGKILL


def test_a_sigkill_of_runstack_alone_leaves_nothing(start_stack):
    # given a stack; when only its top process is killed (no signal to its services)
    stack = start_stack()
    assert len(stack.members()) >= 6
    stack.proc.kill()
    # then its services die with it
    assert stack.survivors() == {}


def test_ctrl_c_stops_the_services_in_order(start_stack):
    # given a stack; when the terminal's Ctrl-C reaches its process group
    stack = start_stack()
    os.killpg(stack.proc.pid, signal.SIGINT)
    # then it stops the web server, the worker and beat, then Redis, and exits cleanly
    assert stack.proc.wait(WAIT) == 0
    stack._reader.join(10)
    out = "\n".join(stack.lines)
    assert "SIGINT: stopping" in out
    assert "stopping web, worker, beat ..." in out
    assert "stopping redis ..." in out
    assert out.index("stopping web, worker, beat") < out.index("stopping redis")
    # the worker made a warm shutdown on runstack's SIGTERM, not a cold one on Ctrl-C
    assert "exited on its own" not in out
    assert out.rstrip().endswith("runstack | stopped.")
    assert stack.survivors() == {}
