"""What the benchmarks share: a Redis of their own when REDIS_URL is not set.

Import this before `django.setup()`: the settings read REDIS_URL when they load.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def ensure_redis() -> str:
    """REDIS_URL, or an embedded Redis started for this run (stopped at exit)."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    from devtools import embedded_redis

    sock = ROOT / "var" / f"redis-bench-{os.getpid()}.sock"
    sock.parent.mkdir(exist_ok=True)  # the settings create no directory
    proc = embedded_redis.start(sock)
    if proc is not None:

        def stop() -> None:
            proc.terminate()
            proc.wait(10)
            sock.unlink(missing_ok=True)

        atexit.register(stop)
    os.environ["REDIS_URL"] = f"unix://{sock}"
    return os.environ["REDIS_URL"]
