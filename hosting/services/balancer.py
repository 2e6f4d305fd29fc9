"""Automatic balancing: moving running servers off hot hosts, per zone (Zone.balance_mode:
off, advise, apply).

Two halves, so that the planning can be tested and benchmarked without hosts:

- `plan_moves(hosts, servers, ...)` is pure: from each host's measured load and each
  server's share of it, it picks the fewest moves that cut the zone's spread (busiest
  host's load minus idlest's) the most per GiB of memory moved. Greedy: while the spread
  is over the threshold and moves are left, take the busiest host, and of its servers
  the one whose move to the least busy host that can take it cuts the spread most per
  GiB. A host's load is the larger of its CPU use (share of its cores) and memory use
  (share of its RAM); a server that may not move (pinned, ignored by the balancer, kept
  with its affinity group, moved within the cooldown, busy with a job) stays; anti-
  affinity and room are checked against the plan's own moves, and `check` (placement's
  `check_host` in the tick) has the last word on each target.
- `tick(zone)` (beat, every BALANCE_INTERVAL s, `workers.tasks.balance_zones`) measures:
  exponential moving averages of the collector's host samples (the cache's
  `last_sample_key`), servers' CPU from the sample's busiest list or their last minute
  rollups, memory from the rollups. A host a migration moves a server from or to sits
  out the tick, and once the move ended its average starts again from the next whole
  sample (an average over the guests it had would plan a second move the same way).
  When the spread stays over BALANCE_THRESHOLD for BALANCE_TICKS ticks it plans (at
  most BALANCE_MAX_MOVES migrations at once, less those running) and stores a
  BalancePlan: in advise mode it waits for approval in the admin (`approve_plan`), in
  apply mode its migrations are requested at once. Every plan, approval and rejection
  is audited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..access import Caller
from ..choices import (
    ACTIVE_JOB_STATUSES,
    BalanceMode,
    BalancePlanStatus,
    GroupRule,
    HostState,
    JobKind,
    JobStatus,
    ServerState,
)
from ..models import BalancePlan, Host, Job, PlacementGroup, Server, ServerStatsMinute, Zone
from ..permissions import caller_may
from . import audit, placement
from .collector import last_sample_key
from .errors import Conflict, NotPermitted, ServiceError

log = logging.getLogger(__name__)

MIB_PER_GIB = 1024
# a move must cut the spread by at least this much (0..1) to be worth its migration
MIN_GAIN = 0.005

# --- the pure half: planning ---------------------------------------------------------------


@dataclass
class HostLoad:
    """A host as the planner sees it: capacity, measured use, placement room left."""

    id: int
    name: str
    cpus: int
    memory_mib: int
    cpu_load: float  # share of its cores busy, 0..1
    mem_used_mib: float
    free_vcpus: int = 10**6
    free_memory_mib: int = 10**9
    free_disk_gib: int = 10**9

    @property
    def mem_load(self) -> float:
        return self.mem_used_mib / self.memory_mib if self.memory_mib else 0.0

    @property
    def load(self) -> float:
        return max(self.cpu_load, self.mem_load)


@dataclass(frozen=True)
class ServerLoad:
    """A server's share of its host's load, what a move of it needs and costs, and why it
    may not move (`stuck`, empty: it may)."""

    id: int
    name: str
    host_id: int
    memory_mib: int  # what a move copies (its plan's memory)
    cpu_cores: float  # cores it keeps busy
    mem_used_mib: float
    vcpus: int = 1
    disk_gib: int = 0
    groups_apart: frozenset[int] = frozenset()  # its anti-affinity groups
    stuck: str = ""


@dataclass(frozen=True)
class Move:
    server_id: int
    server: str
    source_id: int
    source: str
    target_id: int
    target: str
    memory_mib: int
    spread_before: float
    spread_after: float
    before: dict[str, float]  # the source's and target's load before the move
    after: dict[str, float]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Plan:
    moves: list[Move]
    spread_before: float
    spread_after: float
    loads_before: dict[str, float]
    loads_after: dict[str, float]
    # server name -> why a server of a hot host was not moved (for the admin)
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def gib_moved(self) -> float:
        return sum(m.memory_mib for m in self.moves) / MIB_PER_GIB


def spread(hosts: Iterable[HostLoad]) -> float:
    loads = [h.load for h in hosts]
    return max(loads) - min(loads) if len(loads) > 1 else 0.0


def _shift(server: ServerLoad, host: HostLoad, sign: int) -> None:
    host.cpu_load += sign * server.cpu_cores / max(host.cpus, 1)
    host.mem_used_mib += sign * server.mem_used_mib
    host.free_vcpus -= sign * server.vcpus
    host.free_memory_mib -= sign * server.memory_mib
    host.free_disk_gib -= sign * server.disk_gib


def _fits(server: ServerLoad, host: HostLoad) -> bool:
    return (
        host.free_vcpus >= server.vcpus
        and host.free_memory_mib >= server.memory_mib
        and host.free_disk_gib >= server.disk_gib
    )


def plan_moves(
    hosts: Iterable[HostLoad],
    servers: Iterable[ServerLoad],
    *,
    threshold: float,
    max_moves: int,
    check: Callable[[ServerLoad, HostLoad], list[str]] | None = None,
) -> Plan:
    """The moves that bring the spread of `hosts` under `threshold` (or as close as
    `max_moves` allow), each the best cut of the spread per GiB moved at its step. The
    inputs are copied, not changed. `check(server, host)` gives the reasons a host cannot
    take a server (placement's rules), asked only of the target a move would use."""
    state = {h.id: HostLoad(**h.__dict__) for h in hosts}
    by_host: dict[int, list[ServerLoad]] = {}
    apart: dict[int, dict[int, int]] = {}  # anti-affinity group -> host id -> members
    for s in servers:
        by_host.setdefault(s.host_id, []).append(s)
        for g in s.groups_apart:
            apart.setdefault(g, {}).setdefault(s.host_id, 0)
            apart[g][s.host_id] += 1
    loads_before = {h.name: round(h.load, 4) for h in state.values()}
    first = spread(state.values())
    plan = Plan([], first, first, loads_before, dict(loads_before))
    checked: dict[tuple[int, int], list[str]] = {}
    moved: set[int] = set()

    def refusal(s: ServerLoad, h: HostLoad) -> list[str]:
        reasons = []
        if not _fits(s, h):
            reasons.append("no room")
        if any(apart[g].get(h.id, 0) > 0 for g in s.groups_apart):
            reasons.append("anti-affinity")
        if not reasons and check is not None:
            key = (s.id, h.id)
            if key not in checked:
                checked[key] = check(s, h)
            reasons = checked[key]
        return reasons

    while len(plan.moves) < max_moves and len(state) > 1:
        before = spread(state.values())
        if before <= threshold:
            break
        hot = max(state.values(), key=lambda h: (h.load, -h.id))
        cool_first = sorted(
            (h for h in state.values() if h.id != hot.id), key=lambda h: (h.load, h.id)
        )
        best: tuple[float, ServerLoad, HostLoad, float] | None = None
        for s in by_host.get(hot.id, []):
            if s.stuck or s.id in moved:
                if s.stuck:
                    plan.kept.setdefault(s.name, s.stuck)
                continue
            target = next((h for h in cool_first if not refusal(s, h)), None)
            if target is None:
                plan.kept.setdefault(s.name, "no host can take it")
                continue
            _shift(s, hot, -1)
            _shift(s, target, +1)
            after = spread(state.values())
            _shift(s, target, -1)
            _shift(s, hot, +1)
            gain = before - after
            if gain < MIN_GAIN:
                continue
            score = gain / max(s.memory_mib / MIB_PER_GIB, 1 / 8)
            if best is None or score > best[0]:
                best = (score, s, target, after)
        if best is None:
            break
        score, s, target, after = best
        was = {hot.name: round(hot.load, 4), target.name: round(target.load, 4)}
        hot_cpu, hot_mem = hot.cpu_load, hot.mem_load
        _shift(s, hot, -1)
        _shift(s, target, +1)
        for g in s.groups_apart:
            apart[g][hot.id] -= 1
            apart[g][target.id] = apart[g].get(target.id, 0) + 1
        by_host[hot.id].remove(s)
        by_host.setdefault(target.id, []).append(replace_host(s, target.id))
        moved.add(s.id)
        plan.moves.append(
            Move(
                server_id=s.id,
                server=s.name,
                source_id=hot.id,
                source=hot.name,
                target_id=target.id,
                target=target.name,
                memory_mib=s.memory_mib,
                spread_before=round(before, 4),
                spread_after=round(after, 4),
                before=was,
                after={hot.name: round(hot.load, 4), target.name: round(target.load, 4)},
                reason=(
                    f"{hot.name} is the busiest host ({was[hot.name]:.0%}: CPU "
                    f"{hot_cpu:.0%}, memory {hot_mem:.0%}); {s.name} ({s.cpu_cores:.2f} "
                    f"cores, {s.memory_mib} MiB to copy) to {target.name}, the least busy "
                    f"host that can take it, cuts the spread from {before:.0%} to "
                    f"{after:.0%} ({(before - after) * 100 / max(s.memory_mib / 1024, 1 / 8):.1f}"
                    " points per GiB)"
                ),
            )
        )
    plan.spread_after = spread(state.values())
    plan.loads_after = {h.name: round(h.load, 4) for h in state.values()}
    return plan


def replace_host(server: ServerLoad, host_id: int) -> ServerLoad:
    return ServerLoad(**{**server.__dict__, "host_id": host_id})


# --- the measuring half: moving averages of the collector's samples ----------------------


def ema_key(host_id: int) -> str:
    return f"balance:ema:{host_id}"


def over_key(zone: str) -> str:
    return f"balance:over:{zone}"


def moves_by_host(host_ids: list[int]) -> tuple[set[int], dict[int, float]]:
    """The hosts a migration is moving a server from or to right now, and when each
    host's last completed move (within the cooldown) ended, as unix time."""
    jobs = Job.objects.filter(kind=JobKind.MIGRATE).filter(
        Q(host_id__in=host_ids) | Q(target_host_id__in=host_ids)
    )
    moving: set[int] = set()
    for pair in jobs.filter(status__in=ACTIVE_JOB_STATUSES).values_list(
        "host_id", "target_host_id"
    ):
        moving.update(h for h in pair if h is not None)
    since = timezone.now() - timedelta(seconds=settings.BALANCE_COOLDOWN)
    ended: dict[int, float] = {}
    done = jobs.filter(status=JobStatus.SUCCEEDED, finished_at__gte=since)
    for source, target, at in done.values_list("host_id", "target_host_id", "finished_at"):
        for h in (source, target):
            if h is not None and at is not None:
                ended[h] = max(ended.get(h, 0.0), at.timestamp())
    return moving, ended


def measure_host(
    host: Host, *, moving: bool = False, moved_at: float | None = None
) -> dict[str, Any] | None:
    """The host's moving averages (cpu 0..1, mem MiB) updated with its newest collector
    sample (once per sample), or None when it has none yet.

    An average describes the guests it was taken over: while a server moves from or to
    the host (`moving`) there is none (the host sits out the tick), and once a move ended
    (`moved_at`) it starts again from the first sample of a whole interval after it, so
    that a move is never planned on a load that still counts a guest which left (or
    misses one which came)."""
    if moving:
        cache.delete(ema_key(host.pk))
        return None
    ema = cache.get(ema_key(host.pk))
    if ema is not None and moved_at is not None and ema.get("since", ema["t"]) < moved_at:
        cache.delete(ema_key(host.pk))
        ema = None
    sample = cache.get(last_sample_key(host.pk)) or {}
    if not sample or "t" not in sample:
        return ema
    if ema is None and moved_at is not None and sample["t"] < moved_at + settings.STATS_INTERVAL:
        return None
    cpu, mem = float(sample.get("cpu_pct", 0.0)) / 100, float(sample.get("mem_used_mib", 0))
    if ema is None:
        ema = {"t": sample["t"], "since": sample["t"], "cpu": cpu, "mem": mem}
    elif sample["t"] != ema["t"]:
        a = settings.BALANCE_EMA_ALPHA
        ema = {
            "t": sample["t"],
            "since": ema.get("since", ema["t"]),
            "cpu": a * cpu + (1 - a) * ema["cpu"],
            "mem": a * mem + (1 - a) * ema["mem"],
        }
    ema["top"] = {t["server"]: t["cpu_pct"] for t in sample.get("top", [])}
    cache.set(ema_key(host.pk), ema, timeout=None)
    return ema


def _recent_rollups(server_ids: list[int]) -> dict[int, ServerStatsMinute]:
    since = timezone.now() - timedelta(minutes=10)
    latest: dict[int, ServerStatsMinute] = {}
    for row in ServerStatsMinute.objects.filter(
        server_id__in=server_ids, bucket__gte=since
    ).order_by("bucket"):
        latest[row.server_id] = row
    return latest


def _stuck_reasons(servers: list[Server]) -> dict[int, str]:
    ids = [s.pk for s in servers]
    cutoff = timezone.now() - timedelta(seconds=settings.BALANCE_COOLDOWN)
    recently = set(
        Job.objects.filter(kind=JobKind.MIGRATE, server_id__in=ids, created_at__gte=cutoff)
        .exclude(status=JobStatus.CANCELLED)
        .values_list("server_id", flat=True)
    )
    busy = set(
        Job.objects.filter(server_id__in=ids, status__in=ACTIVE_JOB_STATUSES).values_list(
            "server_id", flat=True
        )
    )
    with_affinity = set(
        PlacementGroup.servers.through.objects.filter(
            server_id__in=ids, placementgroup__rule=GroupRule.AFFINITY
        ).values_list("server_id", flat=True)
    )
    reasons = {}
    for s in servers:
        if s.pinned_host_id is not None:
            reasons[s.pk] = "pinned to its host"
        elif s.balance_ignore:
            reasons[s.pk] = "ignored by the balancer"
        elif s.pk in with_affinity:
            reasons[s.pk] = "kept with its affinity group"
        elif s.pk in busy:
            reasons[s.pk] = "busy with a job"
        elif s.pk in recently:
            reasons[s.pk] = f"moved less than {settings.BALANCE_COOLDOWN} s ago"
    return reasons


@dataclass
class Measured:
    hosts: list[HostLoad]
    servers: list[ServerLoad]
    host_rows: dict[int, Host]
    server_rows: dict[int, Server]


def measure_zone(zone: str) -> Measured:
    """The zone's online hosts (not in maintenance, no move from or to them under way)
    with a measured load, and their running servers with their share of it."""
    rows = {
        h.pk: h for h in Host.objects.filter(zone=zone, state=HostState.ONLINE, maintenance=False)
    }
    hosts, emas = [], {}
    moving, ended = moves_by_host(list(rows))
    for host in rows.values():
        ema = measure_host(host, moving=host.pk in moving, moved_at=ended.get(host.pk))
        if ema is None or not host.cpus or not host.memory_mib:
            continue
        emas[host.pk] = ema
        vcpus, memory, disk = placement.free_room(host)
        hosts.append(
            HostLoad(
                id=host.pk,
                name=host.name,
                cpus=host.cpus,
                memory_mib=host.memory_mib,
                cpu_load=ema["cpu"],
                mem_used_mib=ema["mem"],
                free_vcpus=vcpus,
                free_memory_mib=memory,
                free_disk_gib=disk,
            )
        )
    servers = list(
        Server.objects.filter(host_id__in=list(emas), state=ServerState.RUNNING).select_related(
            "plan", "host"
        )
    )
    stuck = _stuck_reasons(servers)
    rollups = _recent_rollups([s.pk for s in servers])
    apart: dict[int, set[int]] = {}
    for sid, gid in PlacementGroup.servers.through.objects.filter(
        server_id__in=[s.pk for s in servers], placementgroup__rule=GroupRule.ANTI_AFFINITY
    ).values_list("server_id", "placementgroup_id"):
        apart.setdefault(sid, set()).add(gid)
    loads = []
    for s in servers:
        assert s.host_id is not None
        top = emas[s.host_id].get("top", {})
        row = rollups.get(s.pk)
        if str(s.uuid) in top:
            cpu_pct = float(top[str(s.uuid)])
        else:
            cpu_pct = row.cpu_pct_avg if row is not None else 0.0
        mem = row.mem_used_mib_avg if row is not None and row.mem_used_mib_avg else None
        loads.append(
            ServerLoad(
                id=s.pk,
                name=s.hostname,
                host_id=s.host_id,
                memory_mib=s.plan.memory_mib,
                cpu_cores=cpu_pct / 100 * s.plan.vcpus,
                mem_used_mib=float(mem if mem is not None else s.plan.memory_mib),
                vcpus=s.plan.vcpus,
                disk_gib=s.plan.disk_gib,
                groups_apart=frozenset(apart.get(s.pk, ())),
                stuck=stuck.get(s.pk, ""),
            )
        )
    return Measured(hosts, loads, rows, {s.pk: s for s in servers})


# --- the tick, and applying a plan ----------------------------------------------------


@dataclass
class TickResult:
    zone: str
    spread: float = 0.0
    ticks_over: int = 0
    plan: BalancePlan | None = None
    note: str = ""


def _moving_in(zone: str) -> int:
    return Job.objects.filter(
        kind=JobKind.MIGRATE, status__in=ACTIVE_JOB_STATUSES, host__zone=zone
    ).count()


def tick(zone: Zone) -> TickResult:
    """One balancer tick for `zone` (see the module's docstring)."""
    result = TickResult(zone=zone.name)
    if zone.balance_mode == BalanceMode.OFF:
        result.note = "off"
        return result
    measured = measure_zone(zone.name)
    result.spread = spread(measured.hosts)
    ticks = cache.get(over_key(zone.name), 0)
    ticks = ticks + 1 if result.spread > settings.BALANCE_THRESHOLD else 0
    cache.set(over_key(zone.name), ticks, timeout=None)
    result.ticks_over = ticks
    if ticks < settings.BALANCE_TICKS:
        result.note = "balanced" if not ticks else "over the threshold, waiting"
        return result
    if BalancePlan.objects.filter(zone=zone.name, status=BalancePlanStatus.PROPOSED).exists():
        result.note = "a plan waits for approval"
        return result
    room = settings.BALANCE_MAX_MOVES - _moving_in(zone.name)
    if room <= 0:
        result.note = "migrations running"
        return result

    def check(s: ServerLoad, h: HostLoad) -> list[str]:
        return placement.check_host(measured.server_rows[s.id], measured.host_rows[h.id])

    planned = plan_moves(
        measured.hosts,
        measured.servers,
        threshold=settings.BALANCE_THRESHOLD,
        max_moves=room,
        check=check,
    )
    cache.set(over_key(zone.name), 0, timeout=None)  # K more ticks before the next plan
    if not planned.moves:
        result.note = "no move helps"
        return result
    plan = BalancePlan.objects.create(
        zone=zone.name,
        mode=zone.balance_mode,
        spread_before=round(planned.spread_before, 4),
        spread_after=round(planned.spread_after, 4),
        moves=[m.as_dict() for m in planned.moves],
        loads_before=planned.loads_before,
        loads_after=planned.loads_after,
    )
    audit.record(
        action="balance.plan",
        target=plan,
        details={
            "zone": zone.name,
            "mode": zone.balance_mode,
            "moves": [f"{m.server}: {m.source} -> {m.target}" for m in planned.moves],
            "spread_before": plan.spread_before,
            "spread_after": plan.spread_after,
            "kept": planned.kept,
        },
    )
    if zone.balance_mode == BalanceMode.APPLY:
        _apply(plan, caller=Caller.system())
    result.plan = plan
    return result


def _apply(plan: BalancePlan, *, caller: Caller) -> None:
    """Request each move's migration to its planned target (checked again there)."""
    from .migration import request_migration

    outcome = []
    for move in plan.moves:
        server = Server.objects.select_related("host", "plan").filter(pk=move["server_id"]).first()
        target = Host.objects.filter(pk=move["target_id"]).first()
        if server is None or target is None:
            outcome.append({"server": move["server"], "error": "gone"})
            continue
        if server.host_id != move["source_id"]:
            outcome.append({"server": move["server"], "error": "no longer on its source host"})
            continue
        try:
            job = request_migration(server=server, caller=caller, target=target)
        except ServiceError as exc:
            outcome.append({"server": move["server"], "error": exc.message})
        else:
            outcome.append({"server": move["server"], "job": job.pk})
    plan.outcome = outcome
    plan.status = BalancePlanStatus.APPLIED
    plan.decided_at = timezone.now()
    plan.decided_by = caller.user if not caller.is_system else None
    plan.save(update_fields=["outcome", "status", "decided_at", "decided_by"])
    audit.record(
        action="balance.apply",
        caller=caller,
        target=plan,
        details={"zone": plan.zone, "outcome": outcome},
    )


def _decide(plan: BalancePlan, caller: Caller) -> BalancePlan:
    """The plan, locked (inside the caller's transaction), if it still waits."""
    if not caller_may(caller, JobKind.MIGRATE):
        raise NotPermitted("You may not approve or reject balancing plans.")
    locked = BalancePlan.objects.select_for_update().get(pk=plan.pk)
    if locked.status != BalancePlanStatus.PROPOSED:
        raise Conflict(f"Plan #{locked.pk} is {locked.status} already.")
    return locked


def approve_plan(*, plan: BalancePlan, caller: Caller) -> BalancePlan:
    """Advise mode: the provider approves the plan; its migrations are requested."""
    with transaction.atomic():
        locked = _decide(plan, caller)
        audit.record(action="balance.approve", caller=caller, target=locked, details={})
        _apply(locked, caller=caller)
    return locked


def reject_plan(*, plan: BalancePlan, caller: Caller) -> BalancePlan:
    with transaction.atomic():
        locked = _decide(plan, caller)
        locked.status = BalancePlanStatus.REJECTED
        locked.decided_at = timezone.now()
        locked.decided_by = caller.user if not caller.is_system else None
        locked.save(update_fields=["status", "decided_at", "decided_by"])
        audit.record(action="balance.reject", caller=caller, target=locked, details={})
    return locked


def tick_all() -> list[TickResult]:
    results = []
    for zone in Zone.objects.exclude(balance_mode=BalanceMode.OFF):
        try:
            results.append(tick(zone))
        except Exception:
            log.exception("balancing zone %s failed", zone.name)
    return results
