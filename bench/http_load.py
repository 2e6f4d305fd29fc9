"""Benchmark: the HTTP API under concurrent clients, through the server `make run` starts.

    make bench-http                      # or: .venv/bin/python bench/http_load.py --help

Builds a database of its own with 10,000 servers (bench/api_list.py's builder;
`paddock_bench_http` on PostgreSQL when DATABASE_URL is set, var/bench-http.sqlite3
otherwise; dropped afterwards), starts the web server exactly as `make run` does
(config/webserver.py: gunicorn with uvicorn workers, WEB_WORKERS or sized to the
machine) with a Redis of its own unless REDIS_URL is set, and drives it with wrk (Debian
package `wrk`; `scripts/system-packages.sh --bench`) or, without wrk, an async Python
client (httpx), at 1, 10 and 50 connections, for:

- `GET /api/v1/servers/?page_size=100` with a billing token,
- `GET /api/v1/servers/?page_size=10`,
- `GET /bench/servers/`: a bare Django view (bench/http_urls.py, mounted only here)
  returning the same 100 rows as JSON through the same server stack: the baseline.

After a warm-up of every worker process, each figure is the median of --rounds runs of
--duration seconds, the three targets interleaved. Prints requests/s, p50/p95/p99
latency, errors (failed connections, non-200 answers) and the ratio of requests/s to
the bare view's at the same connection count, with the machine's load average (other
work on the machine lowers every figure) and the CPU time the server's processes spent
per request (which that load changes less). It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from support import ROOT, ensure_redis

ensure_redis()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")

from api_list import populate  # noqa: E402  (sets Django up)
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

from config.webserver import web_argv, worker_count  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)
from devtools.local_server import database_url, free_port  # noqa: E402
from hosting.choices import TokenScope  # noqa: E402
from hosting.services.tokens import issue_token  # noqa: E402

TARGETS = {
    "API page_size=100": "/api/v1/servers/?page_size=100",
    "API page_size=10": "/api/v1/servers/?page_size=10",
    "bare view, 100 rows": "/bench/servers/",
}
BARE = "bare view, 100 rows"
GOAL = ("API page_size=100", 50, 150.0, 500.0)  # target, connections, min req/s, max p99 ms

WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50": %d, "p95": %d, "p99": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


@dataclass
class Result:
    rps: float
    p50: float  # ms
    p95: float
    p99: float
    errors: int
    cpu_ms: float = 0.0  # CPU time of the server's processes per request


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server: its arbiter and its worker processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def start_server(port: int, workers: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "DJANGO_SETTINGS_MODULE": "bench.http_settings",
        "DEBUG": "false",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PADDOCK_TESTING", None)
    return subprocess.Popen(
        web_argv(bind="127.0.0.1", port=port, workers=workers),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_until_up(proc: subprocess.Popen, base: str, headers: dict[str, str]) -> None:
    import httpx

    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"the web server did not come up:\n{err[-3000:]}")
        time.sleep(0.2)
    for path in TARGETS.values():  # every worker imports its views and warms up
        response = httpx.get(f"{base}{path}", headers=headers, timeout=30)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])


def run_wrk(url: str, headers: dict[str, str], connections: int, seconds: float) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        argv = ["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds:g}s"]
        argv += ["--timeout", "10s", "-s", script.name]
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    line = next(line for line in out.splitlines() if line.startswith("{"))
    data = json.loads(line)
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Result(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50=data["p50"] / 1000,
        p95=data["p95"] / 1000,
        p99=data["p99"] / 1000,
        errors=errors,
    )


def run_python(url: str, headers: dict[str, str], connections: int, seconds: float) -> Result:
    import httpx

    async def main() -> Result:
        latencies: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:
            started = time.perf_counter()
            deadline = started + seconds

            async def user() -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    try:
                        response = await client.get(url)
                        await response.aread()
                        ok = response.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    latencies.append((time.perf_counter() - t0) * 1000)
                    errors += not ok

            await asyncio.gather(*(user() for _ in range(connections)))
            elapsed = time.perf_counter() - started
        q = statistics.quantiles(latencies, n=100, method="inclusive")
        return Result(len(latencies) / elapsed, q[49], q[94], q[98], errors)

    return asyncio.run(main())


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--connections", default="1,10,50", help="comma-separated")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--workers", type=int, default=None, help="default: WEB_WORKERS")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    connection_counts = [int(c) for c in args.connections.split(",")]
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    drive = run_wrk if client == "wrk" else run_python
    workers = worker_count(args.workers)

    settings.VAR_DIR.mkdir(exist_ok=True)
    db = connection.settings_dict
    sqlite = db["ENGINE"].endswith("sqlite3")
    db["TEST"]["NAME"] = (
        str(settings.VAR_DIR / "bench-http.sqlite3") if sqlite else "paddock_bench_http"
    )
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    proc = None
    try:
        started = time.perf_counter()
        populate(args.servers)
        staff = get_user_model().objects.create_user(
            "bench", password="bench-password-unused", is_staff=True, is_superuser=True
        )
        _, key = issue_token(user=staff, scope=TokenScope.BILLING, name="bench")
        headers = {"Authorization": f"Bearer {key}"}
        if connection.vendor == "postgresql":
            # as autovacuum leaves a table that has lived a while (statistics, visibility)
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        connection.close()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(port, workers)
        wait_until_up(proc, base, headers)
        # every worker process answers each target a few times before anything counts
        for path in TARGETS.values():
            drive(f"{base}{path}", headers, max(workers * 2, 10), 2)
        setup_s = time.perf_counter() - started
        load_before = machine_load()

        runs: dict[tuple[str, int], list[Result]] = {}
        for conns in connection_counts:
            for _ in range(args.rounds):
                for name, path in TARGETS.items():
                    cpu_before = server_cpu_seconds(proc.pid)
                    result = drive(f"{base}{path}", headers, conns, args.duration)
                    cpu = server_cpu_seconds(proc.pid) - cpu_before
                    result.cpu_ms = cpu * 1000 / max(1.0, result.rps * args.duration)
                    runs.setdefault((name, conns), []).append(result)
        load_after = machine_load()
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        connection.creation.destroy_test_db(old_name, verbosity=0)

    cores = len(os.sched_getaffinity(0))
    print(
        f"HTTP load on the make-run server stack (gunicorn + {workers} uvicorn workers, "
        f"{cores} cores), {args.servers:,} servers in {connection.vendor}, load by {client}; "
        f"median of {args.rounds} x {args.duration:g} s per figure; set-up {setup_s:.0f} s"
    )
    print(f"machine: {load_before} before the runs, {load_after} after")
    header = f"{'target':22}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    print(f"{header}{'errors':>8}{'vs bare':>9}{'CPU ms/req':>12}")
    medians: dict[tuple[str, int], Result] = {}
    for conns in connection_counts:
        for name in TARGETS:
            results = runs[(name, conns)]
            medians[(name, conns)] = Result(
                rps=statistics.median(r.rps for r in results),
                p50=statistics.median(r.p50 for r in results),
                p95=statistics.median(r.p95 for r in results),
                p99=statistics.median(r.p99 for r in results),
                errors=sum(r.errors for r in results),
                cpu_ms=statistics.median(r.cpu_ms for r in results),
            )
        bare = medians[(BARE, conns)].rps
        for name in TARGETS:
            m = medians[(name, conns)]
            print(
                f"{name:22}{conns:6d}{m.rps:9.1f}{m.p50:9.1f}{m.p95:9.1f}{m.p99:9.1f}"
                f"{m.errors:8d}{m.rps / bare:8.2f}x{m.cpu_ms:12.1f}"
            )
    target, conns, min_rps, max_p99 = GOAL
    if (target, conns) in medians:
        m = medians[(target, conns)]
        met = m.rps >= min_rps and m.p99 < max_p99 and m.errors == 0
        print(
            f"goal ({target} at {conns} connections: >= {min_rps:g} req/s, p99 < "
            f"{max_p99:g} ms, no errors): {'met' if met else 'NOT met'} "
            f"({m.rps:.0f} req/s, p99 {m.p99:.0f} ms, {m.errors} errors)"
        )


if __name__ == "__main__":
    sys.exit(main())
