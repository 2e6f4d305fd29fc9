"""devtools/supervision.py with real processes: a service that ignores SIGTERM and SIGHUP
and forks a worker process (as a web server that hangs in its shutdown would) is still
stopped as a whole, and dies with its supervisor even when that one is SIGKILLed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from devtools.supervision import Reaper, Service, Supervisor

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0

# a master that forks one worker; both ignore SIGTERM and SIGHUP and report their pids
STUBBORN = textwrap.dedent(
    """
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    role = "worker" if os.fork() == 0 else "master"
    os.write(1, f"{role} {os.getpid()}\\n".encode())  # one write: lines do not interleave
    while True:
        time.sleep(1)
    """
)

# a supervisor with one stubborn service, in a process of its own (to be SIGKILLed)
SUPERVISOR = textwrap.dedent(
    f"""
    import sys, time
    from pathlib import Path
    from devtools.supervision import Reaper, Service, Supervisor
    say = lambda name, line: print(name, "|", line, flush=True)
    supervisor = Supervisor(cwd=Path.cwd(), say=say, reaper=Reaper(Path.cwd()))
    supervisor.spawn(Service("web", [sys.executable, "-c", {STUBBORN!r}]))
    time.sleep(3600)
    """
)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until(condition, what) -> None:
    """`what` says what was awaited; a callable is asked only when the wait runs out."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {WAIT:.0f} s for {what() if callable(what) else what}")
        time.sleep(0.1)


def pids_in(lines: list[str]) -> dict[str, int]:
    found = {}
    for line in lines:
        match = re.search(r"\b(master|worker) (\d+)$", line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


def test_a_sigkilled_supervisor_takes_a_stubborn_forking_service_with_it():
    # given a supervisor running a service that ignores SIGTERM/SIGHUP and has forked
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until(lambda: len(pids_in(lines)) == 2, lambda: f"the service's pids in {lines}")
        pids = pids_in(lines)
        assert all(alive(pid) for pid in pids.values())
        # when the supervisor is SIGKILLed (it cannot stop anything itself)
        proc.kill()
        proc.wait()
        # then the service's master and its worker are killed too (by the reaper)
        wait_until(lambda: not any(alive(pid) for pid in pids.values()), f"{pids} to be gone")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stop_kills_the_group_of_a_service_that_does_not_stop():
    said: list[str] = []
    reaper = Reaper(ROOT)
    supervisor = Supervisor(cwd=ROOT, say=lambda name, line: said.append(line), reaper=reaper)
    service = Service("web", [sys.executable, "-c", STUBBORN])
    supervisor.spawn(service)
    wait_until(lambda: len(pids_in(said)) == 2, lambda: f"the service's pids in {said}")
    pids = pids_in(said)
    assert service.proc is not None and service.proc.pid == pids["master"]
    assert os.getpgid(pids["worker"]) == pids["master"]  # one group per service
    # when it is stopped: SIGTERM is ignored, so the group is killed after the timeout
    supervisor.stop([service], timeout=1)
    reaper.done()
    assert "web did not stop in 1 s; killing" in said
    wait_until(lambda: not any(alive(pid) for pid in pids.values()), f"{pids} to be gone")
    assert reaper.proc.returncode == 0


def test_a_crashed_service_is_restarted_after_its_backoff():
    said: list[str] = []
    reaper = Reaper(ROOT)
    supervisor = Supervisor(cwd=ROOT, say=lambda name, line: said.append(line), reaper=reaper)
    service = Service("job", [sys.executable, "-c", "import sys; sys.exit(3)"])
    stopping = threading.Event()
    supervisor.spawn(service)
    first = service.proc
    assert first is not None
    first.wait()
    # when the supervisor looks: the exit is logged and a restart planned in 1 s
    supervisor.check([service], stopping=stopping)
    assert service.proc is None and service.restarts == 1
    assert any(
        "exited on its own (exit code 3)" in line and "restart #1 in 1 s" in line for line in said
    )
    # not before the delay; then it is started again
    supervisor.check([service], stopping=stopping)
    assert service.proc is None

    def restarted() -> bool:
        supervisor.check([service], stopping=stopping)
        return service.proc is not None

    wait_until(restarted, "the restart")
    assert service.proc is not None and service.proc.pid != first.pid
    assert "restarting job" in said
    # a stop in the meantime means no further restart
    service.proc.wait()
    stopping.set()
    supervisor.check([service], stopping=stopping)
    assert service.proc is None and service.restart_at is None
    reaper.done()
