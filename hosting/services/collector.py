"""The stats collector: one pass reads every guest of one host in one bulk call.

`collect_host(host=...)` is one pass: the backend's `stats()` (libvirt's
getAllDomainStats), rates against the previous pass (hosting/services/stats_rates.py),
one `stats.sample` per running server to `server.<uuid>` and `customer.<id>`, one
`stats.host` to `host.<id>` and `fleet` (payloads as in the stats contract, see
`host_payload` / `Rates.as_sample`), and the samples added into the current minute's
totals, which are written as `ServerStatsMinute` rows (and the hour's
`ServerStatsHour` recomputed) once the minute is over.

Between passes the host's state (the previous counters by domain, the minute's totals)
lives in the cache (Redis), not in a process: any worker consuming the host's stats
queue can run the next pass, and a lock keeps two passes of one host from overlapping.
`workers.tasks.collect_stats` (beat, every STATS_INTERVAL seconds) queues one pass per
host on `stats_queue(host)`; a worker (or several) consuming those queues is the
collector, so collectors scale by host: `celery worker -Q hv1.stats,hv2.stats`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache

from ..backends import BackendError, PowerState, get_backend
from ..backends.base import Backend
from ..backends.stats import GuestStats, HostStats
from ..choices import ServerState
from ..models import Host, Server
from . import stats_history
from .events import FLEET_GROUP, customer_group, host_group, send_many, server_group
from .placement import host_usage
from .stats_rates import MIB, NS, Deltas, Rates, deltas, rates

log = logging.getLogger(__name__)

STATS_QUEUE_SUFFIX = ".stats"
LIVE = (PowerState.RUNNING, PowerState.PAUSED)
TOP = 5


def stats_queue(host: Host) -> str:
    """The Celery queue of a host's collector passes (beside its job queue, so that a
    long job never delays a sample)."""
    return f"{host.queue}{STATS_QUEUE_SUFFIX}"


def state_key(host_id: int) -> str:
    return f"stats:state:{host_id}"


def last_sample_key(host_id: int) -> str:
    return f"stats:host:{host_id}"


@dataclass
class MinuteTotals:
    """One server's samples within one minute, summed (becomes a ServerStatsMinute)."""

    samples: int = 0
    seconds: float = 0.0
    cpu_pct_sum: float = 0.0
    cpu_pct_max: float = 0.0
    cpu_ns: int = 0
    mem_used_sum: int = 0
    mem_used_n: int = 0
    mem_used_max: int | None = None
    mem_total_mib: int = 0
    disk_rd_bytes: int = 0
    disk_wr_bytes: int = 0
    disk_rd_reqs: int = 0
    disk_wr_reqs: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    net_rx_packets: int = 0
    net_tx_packets: int = 0

    def add(self, d: Deltas, r: Rates) -> None:
        self.samples += 1
        self.seconds += d.seconds
        self.cpu_pct_sum += r.cpu_pct
        self.cpu_pct_max = max(self.cpu_pct_max, r.cpu_pct)
        self.cpu_ns += d.cpu_ns
        if r.mem_used_mib is not None:
            self.mem_used_sum += r.mem_used_mib
            self.mem_used_n += 1
            self.mem_used_max = max(self.mem_used_max or 0, r.mem_used_mib)
        self.mem_total_mib = r.mem_total_mib
        for name in (
            "disk_rd_bytes",
            "disk_wr_bytes",
            "disk_rd_reqs",
            "disk_wr_reqs",
            "net_rx_bytes",
            "net_tx_bytes",
            "net_rx_packets",
            "net_tx_packets",
        ):
            setattr(self, name, getattr(self, name) + getattr(d, name))

    def row_fields(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "seconds": self.seconds,
            "cpu_pct_avg": self.cpu_pct_sum / self.samples if self.samples else 0.0,
            "cpu_pct_max": self.cpu_pct_max,
            "cpu_seconds": self.cpu_ns / NS,
            "mem_used_mib_avg": (self.mem_used_sum // self.mem_used_n if self.mem_used_n else None),
            "mem_used_mib_max": self.mem_used_max,
            "mem_total_mib": self.mem_total_mib,
            "disk_rd_bytes": self.disk_rd_bytes,
            "disk_wr_bytes": self.disk_wr_bytes,
            "disk_rd_reqs": self.disk_rd_reqs,
            "disk_wr_reqs": self.disk_wr_reqs,
            "net_rx_bytes": self.net_rx_bytes,
            "net_tx_bytes": self.net_tx_bytes,
            "net_rx_packets": self.net_rx_packets,
            "net_tx_packets": self.net_tx_packets,
        }


@dataclass
class CollectorState:
    """What a host's next pass needs from this one (kept in the cache)."""

    timestamp: float
    guests: dict[str, GuestStats]
    minute: int  # start of the minute being summed, unix seconds
    totals: dict[int, MinuteTotals] = field(default_factory=dict)  # by server id


@dataclass(frozen=True)
class ServerRef:
    pk: int
    uuid: str
    customer_id: int
    hostname: str
    vcpus: int
    memory_mib: int


@dataclass
class PassResult:
    host_id: int
    guests: int = 0
    samples: int = 0
    sent: int = 0
    minutes_written: int = 0
    skipped: str = ""  # why nothing was read ("busy", "unreachable: ...")
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (group, payload)
    host_sample: dict[str, Any] = field(default_factory=dict)


def minute_of(t: float) -> int:
    return int(t // 60) * 60


SERVER_FIELDS: tuple[str, ...] = ("pk", "uuid", "customer_id", "hostname", "domain_name")
SERVER_FIELDS += ("plan__vcpus", "plan__memory_mib")


def _servers_on(host: Host) -> dict[str, ServerRef]:
    rows = (
        Server.objects.filter(host=host)
        .exclude(state=ServerState.TERMINATED)
        .values_list(
            "pk",
            "uuid",
            "customer_id",
            "hostname",
            "domain_name",
            "plan__vcpus",
            "plan__memory_mib",
        )
    )
    return {
        domain: ServerRef(pk, str(uuid), customer_id, hostname, vcpus, memory_mib)
        for pk, uuid, customer_id, hostname, domain, vcpus, memory_mib in rows
    }


def host_payload(
    host: Host, *, t: float, cpu_pct: float, mem_used_mib: int, servers: int, top: list[dict]
) -> dict[str, Any]:
    usage = host_usage(Host.objects.filter(pk=host.pk))[0]
    return {
        "type": "stats.host",
        "host": {
            "id": host.pk,
            "name": host.name,
            "t": t,
            "cpu_pct": round(cpu_pct, 2),
            "vcpus_used": int(usage.vcpus_used),
            "vcpus_capacity": host.vcpu_capacity,
            "mem_used_mib": mem_used_mib,
            "mem_capacity_mib": host.memory_capacity_mib,
            "disk_used_gib": int(usage.disk_used_gib),
            "disk_capacity_gib": int(host.disk_gib),
            "servers": servers,
            "top": top,
        },
    }


def _guest_memory_on_host_mib(stats: GuestStats, ref: ServerRef | None) -> int:
    """What a guest takes from the host: resident, else its balloon, else its plan."""
    for value in (stats.memory_rss_bytes, stats.memory_current_bytes):
        if value:
            return value // MIB
    return ref.memory_mib if ref else 0


def collect_host(*, host: Host, backend: Backend | None = None, publish: bool = True) -> PassResult:
    """One collector pass over `host` (see the module's docstring)."""
    result = PassResult(host_id=host.pk)
    lock = f"stats:lock:{host.pk}"
    if not cache.add(lock, 1, timeout=max(30, int(settings.STATS_INTERVAL * 10))):
        result.skipped = "busy"
        return result
    try:
        try:
            current = (backend or get_backend(host)).stats()
        except BackendError as exc:
            result.skipped = f"unreachable: {exc}"
            log.info("stats of %s not read: %s", host.name, exc)
            return result
        return record_pass(host=host, current=current, publish=publish)
    finally:
        cache.delete(lock)


def record_pass(*, host: Host, current: HostStats, publish: bool = True) -> PassResult:
    """The rest of a pass once `current` was read: rates against the host's previous pass,
    the samples published (unless not `publish`), the minute's totals kept and a finished
    minute written. The caller holds the host's collector lock (`collect_host` does)."""
    result = PassResult(host_id=host.pk)
    state: CollectorState | None = cache.get(state_key(host.pk))
    _pass(host, state, current, result)
    if publish:
        result.sent = send_many(result.messages)
    cache.set(last_sample_key(host.pk), result.host_sample, timeout=None)
    return result


def _pass(host: Host, state: CollectorState | None, current: HostStats, result: PassResult) -> None:
    t = current.timestamp
    servers = _servers_on(host)
    minute = minute_of(t)
    fresh = state is None or t <= state.timestamp
    if state is None or fresh:
        state = CollectorState(timestamp=t, guests={}, minute=minute)
    if minute != state.minute:
        result.minutes_written = stats_history.write_minute(
            bucket=datetime.fromtimestamp(state.minute, UTC), totals=state.totals
        )
        state.minute, state.totals = minute, {}
    seconds = t - state.timestamp
    host_cpu_ns = 0
    host_mem_mib = 0
    live = 0
    busiest: list[tuple[float, ServerRef]] = []
    for name, cur in current.guests.items():
        if cur.state not in LIVE:
            continue
        ref = servers.get(name)
        live += 1
        host_mem_mib += _guest_memory_on_host_mib(cur, ref)
        prev = state.guests.get(name)
        if prev is None or fresh:
            continue  # the first sight of a guest: its counters are the baseline
        d = deltas(prev, cur, seconds)
        host_cpu_ns += d.cpu_ns
        if ref is None:
            continue  # not Paddock's: counted in the host's totals only
        r = rates(d, cur, default_vcpus=ref.vcpus, default_memory_mib=ref.memory_mib)
        state.totals.setdefault(ref.pk, MinuteTotals()).add(d, r)
        busiest.append((r.cpu_pct, ref))
        result.samples += 1
        payload: dict[str, Any] = {
            "type": "stats.sample",
            "sample": r.as_sample(server=ref.uuid, t=t),
        }
        result.messages += [
            (server_group(ref.uuid), payload),
            (customer_group(ref.customer_id), payload),
        ]
    result.guests = live
    host_cpu_pct = 0.0
    if seconds > 0 and host.cpus and not fresh:
        host_cpu_pct = min(100.0, 100.0 * host_cpu_ns / (seconds * NS * host.cpus))
    busiest.sort(key=lambda item: -item[0])
    top = [
        {"server": ref.uuid, "hostname": ref.hostname, "cpu_pct": round(pct, 2)}
        for pct, ref in busiest[:TOP]
    ]
    message = host_payload(
        host, t=t, cpu_pct=host_cpu_pct, mem_used_mib=host_mem_mib, servers=live, top=top
    )
    result.host_sample = message["host"]
    result.messages += [(host_group(host.pk), message), (FLEET_GROUP, message)]
    state.timestamp = t
    state.guests = dict(current.guests)
    cache.set(state_key(host.pk), state, timeout=max(300, int(settings.STATS_INTERVAL * 30)))
