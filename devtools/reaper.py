"""The reaper: kills runstack's services when runstack dies without stopping them.

`manage.py runstack` starts it first (`python -m devtools.reaper`, in a process group of
its own, so that a signal to runstack's group does not reach it) and keeps the write end
of its stdin. Each service runs in a process group of its own (so that the terminal's
Ctrl-C reaches only runstack, which stops them in order, and so that a web server that
forks workers is stopped as a whole); runstack writes `+PGID` when it starts one and
`-PGID` when that group is gone, and `done` before it exits normally.

If stdin reaches its end without `done`, runstack died (SIGKILL, a crash, `os._exit` on a
second Ctrl-C): every group still registered is killed with SIGKILL at once, and the reaper
exits. This is what makes sure that nothing outlives `make run`, whichever process a
supervisor kills. It imports nothing of Django, to be running within milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    groups: set[int] = set()
    finished = False
    for line in sys.stdin:
        word = line.strip()
        if word == "done":
            finished = True
        elif word[:1] == "+" and word[1:].isdigit():
            groups.add(int(word[1:]))
        elif word[:1] == "-" and word[1:].isdigit():
            groups.discard(int(word[1:]))
    if finished:
        return
    for pgid in sorted(groups):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    if groups:
        print(
            f"reaper: runstack is gone; killed process groups {sorted(groups)}",
            file=sys.stderr,
            flush=True,
        )


if __name__ == "__main__":
    main()
