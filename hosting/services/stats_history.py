"""Usage history: writing the collector's minutes, hour rollups, retention, charts and
monthly usage (hosting/models/stats.py)."""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q, Sum
from django.utils import timezone

from ..models import Server, ServerStatsHour, ServerStatsMinute
from ..models.stats import StatsBucket
from .errors import ServiceError

if TYPE_CHECKING:
    from .collector import MinuteTotals

GIB = 1024**3
ROW_FIELDS = [
    "samples",
    "seconds",
    "cpu_pct_avg",
    "cpu_pct_max",
    "mem_used_mib_avg",
    "mem_used_mib_max",
    "mem_total_mib",
    *StatsBucket.AMOUNTS,
]


# --- writing ---------------------------------------------------------------------------
def write_minute(*, bucket: datetime, totals: Mapping[int, MinuteTotals]) -> int:
    """The minute's rows (one per server with samples), and the hour they fall in
    recomputed for those servers. Safe to call twice: rows are replaced, not added."""
    rows = [
        ServerStatsMinute(server_id=server_id, bucket=bucket, **t.row_fields())
        for server_id, t in totals.items()
        if t.samples
    ]
    if not rows:
        return 0
    with transaction.atomic():
        live = set(
            Server.objects.filter(pk__in=[r.server_id for r in rows]).values_list("pk", flat=True)
        )
        rows = [r for r in rows if r.server_id in live]  # a server deleted meanwhile
        ServerStatsMinute.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["server", "bucket"],
            update_fields=ROW_FIELDS,
        )
        rollup_hour(server_ids=[r.server_id for r in rows], hour=bucket)
    return len(rows)


def rollup_hour(*, server_ids: Iterable[int], hour: datetime) -> int:
    """Recompute the hour rows of `server_ids` for the hour containing `hour` from their
    minute rows (idempotent)."""
    start = hour.replace(minute=0, second=0, microsecond=0)
    sums = (
        ServerStatsMinute.objects.filter(
            server_id__in=list(server_ids), bucket__gte=start, bucket__lt=start + timedelta(hours=1)
        )
        .values("server_id")
        .annotate(
            n=Sum("samples"),
            secs=Sum("seconds"),
            cpu_weighted=Sum(F("cpu_pct_avg") * F("samples")),
            cpu_max=Max("cpu_pct_max"),
            mem_weighted=Sum(F("mem_used_mib_avg") * F("samples")),
            mem_samples=Sum("samples", filter=~_null("mem_used_mib_avg")),
            mem_max=Max("mem_used_mib_max"),
            mem_total=Max("mem_total_mib"),
            **{f"sum_{name}": Sum(name) for name in StatsBucket.AMOUNTS},
        )
    )
    rows = []
    for s in sums:
        sums_row: dict[str, Any] = dict(s)
        n = s["n"] or 0
        rows.append(
            ServerStatsHour(
                server_id=s["server_id"],
                bucket=start,
                samples=n,
                seconds=s["secs"] or 0.0,
                cpu_pct_avg=(s["cpu_weighted"] or 0.0) / n if n else 0.0,
                cpu_pct_max=s["cpu_max"] or 0.0,
                mem_used_mib_avg=(
                    int(s["mem_weighted"] / s["mem_samples"]) if s["mem_samples"] else None
                ),
                mem_used_mib_max=s["mem_max"],
                mem_total_mib=s["mem_total"] or 0,
                **{name: sums_row[f"sum_{name}"] or 0 for name in StatsBucket.AMOUNTS},
            )
        )
    ServerStatsHour.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["server", "bucket"], update_fields=ROW_FIELDS
    )
    return len(rows)


def _null(field: str) -> Q:
    return Q(**{f"{field}__isnull": True})


def trim(*, now: datetime | None = None) -> dict[str, int]:
    """Delete minute rows older than STATS_MINUTE_RETENTION and hour rows older than
    STATS_HOUR_RETENTION."""
    now = now or timezone.now()
    minutes, _ = ServerStatsMinute.objects.filter(
        bucket__lt=now - settings.STATS_MINUTE_RETENTION
    ).delete()
    hours, _ = ServerStatsHour.objects.filter(
        bucket__lt=now - settings.STATS_HOUR_RETENTION
    ).delete()
    return {"minutes": minutes, "hours": hours}


# --- reading: charts -------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    name: str
    span: timedelta
    step: int  # seconds between points
    model: type[ServerStatsMinute] | type[ServerStatsHour]


RANGES = {
    "1h": Range("1h", timedelta(hours=1), 60, ServerStatsMinute),
    "24h": Range("24h", timedelta(hours=24), 300, ServerStatsMinute),
    "7d": Range("7d", timedelta(days=7), 3600, ServerStatsHour),
    "30d": Range("30d", timedelta(days=30), 3600, ServerStatsHour),
}
POINT_FIELDS: tuple[str, ...] = ("bucket", "samples", "seconds", "cpu_pct_avg")
POINT_FIELDS += ("mem_used_mib_avg", "mem_total_mib", *StatsBucket.AMOUNTS)


RATES = (
    ("disk_rd_bps", "disk_rd_bytes"),
    ("disk_wr_bps", "disk_wr_bytes"),
    ("disk_rd_iops", "disk_rd_reqs"),
    ("disk_wr_iops", "disk_wr_reqs"),
    ("net_rx_bps", "net_rx_bytes"),
    ("net_tx_bps", "net_tx_bytes"),
    ("net_rx_pps", "net_rx_packets"),
    ("net_tx_pps", "net_tx_packets"),
)


def _point(t: float, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One chart point from one or more buckets: averages weighted by samples, rates as
    amounts over the seconds covered."""
    if len(rows) == 1:  # a step of one bucket (1h, 7d, 30d): the row as it is
        row = rows[0]
        secs = row["seconds"]
        point = {
            "t": t,
            "cpu_pct": round(row["cpu_pct_avg"], 2),
            "mem_used_mib": row["mem_used_mib_avg"],
            "mem_total_mib": row["mem_total_mib"],
        }
        for key, amount in RATES:
            point[key] = round(row[amount] / secs, 2) if secs else 0.0
        return point
    n = sum(r["samples"] for r in rows)
    secs = sum(r["seconds"] for r in rows)
    mems = [
        (r["mem_used_mib_avg"], r["samples"]) for r in rows if r["mem_used_mib_avg"] is not None
    ]
    mem_n = sum(k for _, k in mems)

    def rate(name: str) -> float:
        return round(sum(r[name] for r in rows) / secs, 2) if secs else 0.0

    return {
        "t": t,
        "cpu_pct": round(sum(r["cpu_pct_avg"] * r["samples"] for r in rows) / n, 2) if n else 0.0,
        "mem_used_mib": int(sum(m * k for m, k in mems) / mem_n) if mem_n else None,
        "mem_total_mib": max(r["mem_total_mib"] for r in rows),
        "disk_rd_bps": rate("disk_rd_bytes"),
        "disk_wr_bps": rate("disk_wr_bytes"),
        "disk_rd_iops": rate("disk_rd_reqs"),
        "disk_wr_iops": rate("disk_wr_reqs"),
        "net_rx_bps": rate("net_rx_bytes"),
        "net_tx_bps": rate("net_tx_bytes"),
        "net_rx_pps": rate("net_rx_packets"),
        "net_tx_pps": rate("net_tx_packets"),
    }


def history(*, server: Server, range_name: str, now: datetime | None = None) -> dict[str, Any]:
    """A server's chart: {"range", "step", "points": [{"t", "cpu_pct", ...}]}, oldest
    first, one point per `step` seconds that has samples (gaps are left out)."""
    try:
        r = RANGES[range_name]
    except KeyError:
        raise ServiceError(
            f"Unknown range {range_name!r}: one of {', '.join(RANGES)}.", field="range"
        ) from None
    now = now or timezone.now()
    rows = (
        r.model.objects.filter(server=server, bucket__gte=now - r.span, bucket__lte=now)
        .order_by("bucket")
        .values(*POINT_FIELDS)
    )
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        if not row["samples"]:
            continue
        t = int(row["bucket"].timestamp()) // r.step * r.step
        groups.setdefault(t, []).append(row)
    return {
        "range": r.name,
        "step": r.step,
        "points": [_point(float(t), rows) for t, rows in groups.items()],
    }


# --- reading: monthly usage ------------------------------------------------------------
def parse_month(value: str | None, *, now: datetime | None = None) -> datetime:
    """`YYYY-MM` (default: this month) as the first instant of the month, UTC."""
    if not value:
        now = now or timezone.now()
        return datetime(now.year, now.month, 1, tzinfo=UTC)
    try:
        year, month = (int(part) for part in value.split("-"))
        return datetime(year, month, 1, tzinfo=UTC)
    except ValueError:
        raise ServiceError(f"month must be YYYY-MM, not {value!r}.", field="month") from None


def monthly_usage(*, server: Server, month: datetime) -> dict[str, Any]:
    """What a server used in a calendar month (UTC), from its hour rollups: CPU hours,
    transfer in (rx) and out (tx) in GiB, disk I/O in GiB and requests, and the hours
    with samples. Billing reads the same figures."""
    days = calendar.monthrange(month.year, month.month)[1]
    end = month + timedelta(days=days)
    totals = ServerStatsHour.objects.filter(
        server=server, bucket__gte=month, bucket__lt=end
    ).aggregate(
        **{name: Sum(name) for name in StatsBucket.AMOUNTS},
        seconds=Sum("seconds"),
    )

    def gib(name: str) -> float:
        return round((totals[name] or 0) / GIB, 3)

    return {
        "month": f"{month:%Y-%m}",
        "cpu_hours": round((totals["cpu_seconds"] or 0.0) / 3600, 3),
        "transfer_in_gib": gib("net_rx_bytes"),
        "transfer_out_gib": gib("net_tx_bytes"),
        "transfer_gib": round(gib("net_rx_bytes") + gib("net_tx_bytes"), 3),
        "disk_read_gib": gib("disk_rd_bytes"),
        "disk_write_gib": gib("disk_wr_bytes"),
        "disk_read_ops": totals["disk_rd_reqs"] or 0,
        "disk_write_ops": totals["disk_wr_reqs"] or 0,
        "measured_hours": round((totals["seconds"] or 0.0) / 3600, 2),
        "transfer_allowance_gib": server.plan.transfer_gib,
    }
