"""Benchmark: the balancer's planner replayed over a 24-hour load trace (issue 9).

    make bench-balance              # or: .venv/bin/python bench/balance.py --seed 9

The trace is generated from a fixed seed (the same figures every run): 20 hosts (16
cores, 64 GiB), 300 servers of mixed plans placed by spread, each with a daily CPU curve
(one of three time zones, +-60% around its base, some noise), memory at 60-90% of its
plan, and a few hot spots: 8 servers that burn their vCPUs for 2-4 hours. Every 30 s tick
the hosts' load (the larger of CPU and memory share) is averaged like the balancer does
(exponential moving average, BALANCE_EMA_ALPHA), and when the spread stays over the
threshold for BALANCE_TICKS ticks, `balancer.plan_moves` plans at most BALANCE_MAX_MOVES
moves less those still in flight (a move lands on the next tick), never a server moved
within the cooldown. The same trace without the balancer is the baseline.

Printed, per threshold: the spread of true host load (mean, p95, share of ticks over the
threshold) with and without the balancer, migrations made, GiB moved, servers moved twice
within the cooldown (must be 0), and the planner's median time per planning call (a
component figure). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")

import django

django.setup()

from django.conf import settings  # noqa: E402

from hosting.services.balancer import HostLoad, ServerLoad, plan_moves  # noqa: E402

TICK_S = 30
DAY_TICKS = 24 * 3600 // TICK_S
PLANS = [(1, 1024), (1, 2048), (2, 2048), (2, 4096), (4, 8192)]


@dataclass
class Srv:
    id: int
    vcpus: int
    memory_mib: int
    mem_used: float
    base: float  # share of its vCPUs busy on average
    phase: float  # hours
    host: int
    hot_from: int = -1
    hot_to: int = -1


def make_trace(seed: int, hosts: int, servers: int, hot: int) -> list[Srv]:
    rng = random.Random(seed)
    free = {h: 64 * 1024 for h in range(hosts)}
    made = []
    for i in range(servers):
        vcpus, mem = rng.choice(PLANS)
        host = max(free, key=lambda h: (free[h], -h))  # spread placement
        free[host] -= mem
        made.append(
            Srv(
                id=i,
                vcpus=vcpus,
                memory_mib=mem,
                mem_used=mem * rng.uniform(0.6, 0.9),
                base=rng.uniform(0.05, 0.45),
                phase=rng.choice([0.0, 8.0, 16.0]) + rng.uniform(-1, 1),
                host=host,
            )
        )
    for s in rng.sample(made, hot):
        start = rng.randrange(0, DAY_TICKS - 480)
        s.hot_from, s.hot_to = start, start + rng.randrange(240, 480)
    return made


def cpu_cores(s: Srv, tick: int, rng: random.Random) -> float:
    if s.hot_from <= tick < s.hot_to:
        return s.vcpus * 0.97
    hours = tick * TICK_S / 3600
    curve = 1 + 0.6 * math.sin(2 * math.pi * (hours - s.phase) / 24)
    return min(s.vcpus, s.vcpus * s.base * curve * rng.uniform(0.9, 1.1))


def replay(args, threshold: float, balance: bool) -> dict:
    servers = make_trace(args.seed, args.hosts, args.servers, args.hot)
    noise = random.Random(args.seed + 1)
    cpus, mem = 16, 64 * 1024
    alpha = settings.BALANCE_EMA_ALPHA
    ema: dict[int, tuple[float, float]] = {}
    over = 0
    last_move: dict[int, int] = {}
    twice = 0
    in_flight: list[tuple[int, int]] = []  # (server id, target host)
    spreads, moves, mib_moved, plan_times = [], 0, 0, []
    cooldown_ticks = args.cooldown // TICK_S
    for tick in range(DAY_TICKS):
        for sid, target in in_flight:  # last tick's moves have landed
            servers[sid].host = target
        in_flight = []
        cores = {s.id: cpu_cores(s, tick, noise) for s in servers}
        used_cpu = {h: 0.0 for h in range(args.hosts)}
        used_mem = {h: 0.0 for h in range(args.hosts)}
        alloc = {h: [0, 0] for h in range(args.hosts)}
        for s in servers:
            used_cpu[s.host] += cores[s.id]
            used_mem[s.host] += s.mem_used
            alloc[s.host][0] += s.vcpus
            alloc[s.host][1] += s.memory_mib
        loads = [max(used_cpu[h] / cpus, used_mem[h] / mem) for h in range(args.hosts)]
        spreads.append(max(loads) - min(loads))
        for h in range(args.hosts):
            c, m = used_cpu[h] / cpus, used_mem[h]
            ema[h] = (
                (c, m)
                if h not in ema
                else (
                    alpha * c + (1 - alpha) * ema[h][0],
                    alpha * m + (1 - alpha) * ema[h][1],
                )
            )
        if not balance:
            continue
        hosts = [
            HostLoad(
                id=h,
                name=f"hv{h}",
                cpus=cpus,
                memory_mib=mem,
                cpu_load=ema[h][0],
                mem_used_mib=ema[h][1],
                free_vcpus=cpus * 4 - alloc[h][0],
                free_memory_mib=mem - alloc[h][1],
                free_disk_gib=10**6,
            )
            for h in range(args.hosts)
        ]
        spread_now = max(x.load for x in hosts) - min(x.load for x in hosts)
        over = over + 1 if spread_now > threshold else 0
        if over < settings.BALANCE_TICKS:
            continue
        over = 0
        loads_in = [
            ServerLoad(
                id=s.id,
                name=f"vps{s.id}",
                host_id=s.host,
                memory_mib=s.memory_mib,
                cpu_cores=cores[s.id],
                mem_used_mib=s.mem_used,
                vcpus=s.vcpus,
                stuck="cooldown" if tick - last_move.get(s.id, -(10**9)) < cooldown_ticks else "",
            )
            for s in servers
        ]
        started = time.perf_counter()
        plan = plan_moves(
            hosts, loads_in, threshold=threshold, max_moves=settings.BALANCE_MAX_MOVES
        )
        plan_times.append(time.perf_counter() - started)
        for m in plan.moves:
            if tick - last_move.get(m.server_id, -(10**9)) < cooldown_ticks:
                twice += 1
            last_move[m.server_id] = tick
            in_flight.append((m.server_id, m.target_id))
            moves += 1
            mib_moved += m.memory_mib
    ordered = sorted(spreads)
    return {
        "mean": statistics.fmean(spreads),
        "p95": ordered[int(len(ordered) * 0.95)],
        "over": sum(1 for x in spreads if x > threshold) / len(spreads),
        "moves": moves,
        "gib": mib_moved / 1024,
        "twice": twice,
        "plan_ms": statistics.median(plan_times) * 1000 if plan_times else 0.0,
        "plans": len(plan_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--servers", type=int, default=300)
    parser.add_argument("--hot", type=int, default=8)
    parser.add_argument("--cooldown", type=int, default=settings.BALANCE_COOLDOWN)
    parser.add_argument(
        "--thresholds", default=f"{settings.BALANCE_THRESHOLD},0.15,0.35", help="comma list"
    )
    args = parser.parse_args()
    print(
        f"24 h trace, seed {args.seed}: {args.hosts} hosts x 16 cores / 64 GiB, "
        f"{args.servers} servers, {args.hot} hot spots; tick {TICK_S} s, "
        f"EMA alpha {settings.BALANCE_EMA_ALPHA}, {settings.BALANCE_TICKS} ticks over, "
        f"at most {settings.BALANCE_MAX_MOVES} moves at once, cooldown {args.cooldown} s"
    )
    header = (
        f"{'threshold':>9} {'':>9} {'spread mean':>11} {'p95':>6} {'ticks over':>10} "
        f"{'migrations':>10} {'GiB moved':>9} {'moved twice':>11} {'plan p50':>9}"
    )
    print(header)
    for threshold in [float(x) for x in args.thresholds.split(",")]:
        base = replay(args, threshold, balance=False)
        bal = replay(args, threshold, balance=True)
        print(
            f"{threshold:>9.2f} {'none':>9} {base['mean']:>11.3f} {base['p95']:>6.3f} "
            f"{base['over']:>10.1%} {'-':>10} {'-':>9} {'-':>11} {'-':>9}"
        )
        print(
            f"{'':>9} {'balancer':>9} {bal['mean']:>11.3f} {bal['p95']:>6.3f} "
            f"{bal['over']:>10.1%} {bal['moves']:>10} {bal['gib']:>9.1f} {bal['twice']:>11} "
            f"{bal['plan_ms']:>7.2f}ms"
        )
        print(
            f"{'':>9} {'ratio':>9} {bal['mean'] / base['mean']:>11.2f} "
            f"{bal['p95'] / base['p95']:>6.2f}   ({bal['plans']} planning calls)"
        )


if __name__ == "__main__":
    main()
