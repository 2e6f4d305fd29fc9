"""Benchmark: live samples fanned out to 100, 500 and 2,000 WebSocket clients.

    make bench-ws                     # or: .venv/bin/python bench/ws_fanout.py --seconds 60

One ASGI process (uvicorn when installed, as in the gunicorn + uvicorn workers of the
production stack, else daphne as runstack starts it; `--server daphne|uvicorn` chooses)
with its own Redis (the embedded redis-server, on a unix socket in var/bench-ws/) and its
own SQLite database (var/bench-ws/bench.sqlite3, made here; the configured database is
never touched). For each client count N:
- N servers of one customer; N WebSocket clients (one process of their own, the
  `websockets` library) log in as the customer's owner and each subscribe to one server's
  stream (/ws/servers/<uuid>/: access checked once, on subscribe);
- a publisher (this process) sends a contract-shaped `stats.sample` to every server's
  group (`group_send("server.<uuid>")`, as the collector does) once a second for
  --seconds, spread over the second; each sample carries its publish time `t`;
- every client records receive time - `t` (the same clock: one machine).
Prints publish-to-receive p50 / p99 / max, messages dropped (published - received,
after a grace period), the publisher's achieved rate and the ASGI process's CPU (user +
system seconds over the publishing window, as % of one core). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "bench-ws"
GRACE_SECONDS = 3.0
CONNECT_BATCH = 50


# --- the client process (no Django here) ------------------------------------------------


async def run_clients(url: str, cookie: str, origin: str, uuids: list[str]) -> None:
    """Connect one client per server, say "ready", record latencies until "stop" arrives
    on stdin, then print the figures as one JSON line."""
    import websockets

    latencies: list[float] = []
    received = 0
    closed = 0
    stop = asyncio.Event()

    async def client(uuid: str, ready: asyncio.Event) -> None:
        nonlocal received, closed
        async with websockets.connect(
            f"{url}/ws/servers/{uuid}/",
            additional_headers={"Cookie": cookie},
            origin=origin,  # type: ignore[arg-type]
            max_queue=None,
            ping_interval=None,
            open_timeout=60,
        ) as ws:
            ready.set()
            try:
                async for raw in ws:
                    now = time.time()
                    message = json.loads(raw)
                    if message.get("type") == "stats.sample":
                        latencies.append(now - message["sample"]["t"])
                        received += 1
            except websockets.ConnectionClosed:
                pass
            if not stop.is_set():
                closed += 1

    tasks = []
    for start in range(0, len(uuids), CONNECT_BATCH):
        events = []
        for uuid in uuids[start : start + CONNECT_BATCH]:
            ready = asyncio.Event()
            events.append(ready)
            tasks.append(asyncio.create_task(client(uuid, ready)))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 120)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"received": received, "closed": closed, "latencies": latencies}), flush=True)


def clients_main(args: argparse.Namespace) -> None:
    uuids = Path(args.uuids).read_text().split()
    asyncio.run(run_clients(args.url, args.cookie, args.origin, uuids))


# --- the bench (Django, the publisher) ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the ASGI server exited")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the ASGI server did not listen")


def sample(uuid: str) -> dict:
    return {
        "type": "stats.sample",
        "sample": {
            "server": uuid,
            "t": time.time(),
            "cpu_pct": 12.5,
            "mem_used_mib": 300,
            "mem_total_mib": 1024,
            "disk_rd_bps": 0.0,
            "disk_wr_bps": 4096.0,
            "disk_rd_iops": 0.0,
            "disk_wr_iops": 1.0,
            "net_rx_bps": 800.0,
            "net_tx_bps": 200.0,
            "net_rx_pps": 10.0,
            "net_tx_pps": 3.0,
        },
    }


async def publish(uuids: list[str], seconds: int, slices: int = 20) -> tuple[int, float]:
    """group_send a sample to every server once a second, in `slices` slices spread over
    the second; returns (messages sent, seconds it took)."""
    from channels.layers import get_channel_layer

    from hosting.services.events import server_group

    layer = get_channel_layer()
    assert layer is not None
    groups = [(u, server_group(u)) for u in uuids]
    size = -(-len(groups) // slices)
    sent = 0
    began = time.monotonic()
    for second in range(seconds):
        for i in range(slices):
            due = began + second + i / slices
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            part = groups[i * size : (i + 1) * size]
            await asyncio.gather(*(layer.group_send(g, sample(u)) for u, g in part))
            sent += len(part)
    return sent, time.monotonic() - began


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def populate(n: int):
    from django.contrib.auth import get_user_model

    from hosting.choices import HostState, MemberRole, ServerState
    from hosting.models import Customer, Host, Image, Membership, Plan, Server

    User = get_user_model()
    customer = Customer.objects.create(name="Bench", email="bench@example.com")
    owner = User.objects.create_user("bench-owner", password="bench-only-not-secret")
    Membership.objects.create(user=owner, customer=customer, role=MemberRole.OWNER)
    plan = Plan.objects.create(name="Bench", vcpus=1, memory_mib=512, disk_gib=10)
    image = Image.objects.create(name="Bench", volume_name="bench.qcow2")
    host = Host.objects.create(
        name="hv-bench",
        libvirt_uri="test:///default?bench=ws",
        state=HostState.ONLINE,
        cpus=4096,
        memory_mib=2**30,
        disk_gib=10**6,
    )
    servers = Server.objects.bulk_create(
        (
            Server(
                customer=customer,
                plan=plan,
                image=image,
                host=host,
                hostname=f"ws-{i:05d}.example.net",
                state=ServerState.RUNNING,
                domain_name=f"paddock-bench-ws-{i:05d}",
                mac_address=f"52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            )
            for i in range(n)
        ),
        batch_size=1000,
    )
    return owner, [str(s.uuid) for s in servers]


def session_cookie(user) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run_round(n: int, uuids: list[str], url: str, cookie: str, server_pid: int, seconds: int):
    ids = WORK / f"uuids-{n}.txt"
    ids.write_text("\n".join(uuids[:n]))
    clients = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--clients-worker",
            "--url",
            url.replace("http://", "ws://"),
            "--cookie",
            cookie,
            "--origin",
            url,
            "--uuids",
            str(ids),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert clients.stdin is not None and clients.stdout is not None
    connect_began = time.monotonic()
    line = clients.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"the clients did not connect: {line!r}")
    connect_seconds = time.monotonic() - connect_began
    cpu_before = cpu_seconds(server_pid)
    clients_before = cpu_seconds(clients.pid)
    me_before = cpu_seconds(os.getpid())
    sent, took = asyncio.run(publish(uuids[:n], seconds))
    cpu_used = cpu_seconds(server_pid) - cpu_before
    clients_used = cpu_seconds(clients.pid) - clients_before
    me_used = cpu_seconds(os.getpid()) - me_before
    time.sleep(GRACE_SECONDS)
    clients.stdin.write("stop\n")
    clients.stdin.flush()
    result = json.loads(clients.stdout.readline())
    clients.wait(30)
    latencies = [x * 1000 for x in result["latencies"]]
    return {
        "clients": n,
        "connect_s": connect_seconds,
        "sent": sent,
        "rate": sent / took,
        "received": result["received"],
        "dropped": sent - result["received"],
        "closed": result["closed"],
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies) if latencies else float("nan"),
        "mean": statistics.fmean(latencies) if latencies else float("nan"),
        "cpu_pct": 100 * cpu_used / took,
        "clients_cpu_pct": 100 * clients_used / took,
        "publisher_cpu_pct": 100 * me_used / took,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="100,500,2000", help="client counts, in order")
    parser.add_argument("--seconds", type=int, default=60, help="publishing time per count")
    parser.add_argument(
        "--server",
        choices=["auto", "daphne", "uvicorn"],
        default="auto",
        help="the ASGI server (auto: uvicorn when installed, as the production stack runs "
        "it, else daphne, as runstack does)",
    )
    parser.add_argument(
        "--layer",
        choices=["core", "pubsub"],
        default=os.environ.get("CHANNELS_BACKEND", "pubsub"),
        help="channels_redis layer (settings CHANNELS_BACKEND)",
    )
    parser.add_argument("--clients-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--cookie", help=argparse.SUPPRESS)
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    parser.add_argument("--uuids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients_worker:
        clients_main(args)
        return
    counts = [int(c) for c in args.clients.split(",")]
    if args.server == "auto":
        import importlib.util

        args.server = "uvicorn" if importlib.util.find_spec("uvicorn") else "daphne"

    WORK.mkdir(parents=True, exist_ok=True)
    db_path = WORK / "bench.sqlite3"
    db_path.unlink(missing_ok=True)
    redis_sock = WORK / "redis.sock"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or "bench-only-not-secret",
        "DATABASE_URL": f"sqlite:///{db_path}",
        "REDIS_URL": f"unix://{redis_sock}",
        "CHANNELS_PREFIX": "paddock-bench-ws",
        "DEBUG": "false",
        "CHANNELS_BACKEND": args.layer,
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))

    from devtools import embedded_redis

    redis = embedded_redis.start(redis_sock)
    server = None
    try:
        import django

        django.setup()
        import logging

        from django.core.management import call_command

        logging.getLogger("axes").setLevel(logging.WARNING)  # (the bench's one login)

        call_command("migrate", verbosity=0)
        owner, uuids = populate(max(counts))
        cookie = session_cookie(owner)

        port = free_port()
        bin_dir = Path(sys.executable).parent
        if args.server == "daphne":
            command = [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port)]
        else:
            command = [str(bin_dir / "uvicorn"), "--host", "127.0.0.1", "--port", str(port)]
            command += ["--no-access-log", "--workers", "1"]
        command.append("config.asgi:application")
        profile = os.environ.get("BENCH_WS_PROFILE")  # a file: cProfile the ASGI process
        if profile:
            command = [sys.executable, "-m", "cProfile", "-o", profile, *command]
        log = (WORK / "server.log").open("w")
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        wait_for_port(port, server)
        url = f"http://127.0.0.1:{port}"

        print(
            f"ws fan-out: one {args.server} process, channels_redis {args.layer} layer, "
            "Redis on a unix socket, SQLite; "
            f"1 sample/s per server for {args.seconds} s, publish-to-receive latency"
        )
        print(
            f"{'clients':>7} {'connect s':>9} {'sent':>7} {'sent/s':>7} {'received':>8} "
            f"{'dropped':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'ASGI CPU':>8}"
        )
        for n in counts:
            r = run_round(n, uuids, url, cookie, server.pid, args.seconds)
            print(
                f"{r['clients']:>7} {r['connect_s']:>9.1f} {r['sent']:>7} {r['rate']:>7.0f} "
                f"{r['received']:>8} {r['dropped']:>7} {r['p50']:>7.1f} {r['p99']:>7.1f} "
                f"{r['max']:>7.1f} {r['cpu_pct']:>7.0f}%",
                flush=True,
            )
            print(
                f"        (clients' process {r['clients_cpu_pct']:.0f}% CPU, publisher "
                f"{r['publisher_cpu_pct']:.0f}%, machine load {r['load']:.1f} on "
                f"{os.cpu_count()} cores)"
            )
            if r["closed"]:
                print(f"        ({r['closed']} sockets closed by the server during the run)")
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # (daphne stops cleanly; cProfile writes)
            server.wait(10)
        if redis is not None:
            redis.terminate()
            redis.wait(10)


if __name__ == "__main__":
    main()
