"""Usage history per server: 1-minute and 1-hour rollups of the collector's samples.

A bucket holds what the server did in it: how many samples and seconds it covers, the
average and peak CPU and memory, and the amounts (bytes, requests, packets, CPU seconds)
as increases of the guest's counters with resets handled (hosting/services/stats_rates.py),
so sums over buckets survive reboots and migrations. Rates are amounts / seconds.

Minute rows are kept STATS_MINUTE_RETENTION (2 days), hour rows STATS_HOUR_RETENTION
(13 months); `workers.tasks.trim_stats` deletes older ones. The unique (server, bucket)
index serves a chart (one server, a time range); on PostgreSQL a BRIN index on bucket
serves the retention's range deletes (migration 0008), a B-tree elsewhere.
"""

from __future__ import annotations

from django.db import models

from .servers import Server


class StatsBucket(models.Model):
    # the unique (server, bucket) index serves lookups by server: no index of its own
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="+", db_index=False)
    bucket = models.DateTimeField(help_text="Start of the interval (UTC).")
    samples = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0, help_text="Wall time the samples cover.")
    cpu_pct_avg = models.FloatField(default=0.0)
    cpu_pct_max = models.FloatField(default=0.0)
    cpu_seconds = models.FloatField(default=0.0, help_text="CPU time used, all vCPUs.")
    mem_used_mib_avg = models.PositiveIntegerField(null=True, blank=True)
    mem_used_mib_max = models.PositiveIntegerField(null=True, blank=True)
    mem_total_mib = models.PositiveIntegerField(default=0)
    disk_rd_bytes = models.PositiveBigIntegerField(default=0)
    disk_wr_bytes = models.PositiveBigIntegerField(default=0)
    disk_rd_reqs = models.PositiveBigIntegerField(default=0)
    disk_wr_reqs = models.PositiveBigIntegerField(default=0)
    net_rx_bytes = models.PositiveBigIntegerField(default=0)
    net_tx_bytes = models.PositiveBigIntegerField(default=0)
    net_rx_packets = models.PositiveBigIntegerField(default=0)
    net_tx_packets = models.PositiveBigIntegerField(default=0)

    AMOUNTS = (
        "cpu_seconds",
        "disk_rd_bytes",
        "disk_wr_bytes",
        "disk_rd_reqs",
        "disk_wr_reqs",
        "net_rx_bytes",
        "net_tx_bytes",
        "net_rx_packets",
        "net_tx_packets",
    )

    class Meta:
        abstract = True
        ordering = ["server", "bucket"]

    def __str__(self) -> str:
        return f"{self.server_id} @ {self.bucket:%Y-%m-%d %H:%M}"


class ServerStatsMinute(StatsBucket):
    class Meta(StatsBucket.Meta):
        verbose_name = "server stats (1 minute)"
        verbose_name_plural = "server stats (1 minute)"
        constraints = [
            models.UniqueConstraint(fields=["server", "bucket"], name="stats_minute_server_bucket")
        ]


class ServerStatsHour(StatsBucket):
    class Meta(StatsBucket.Meta):
        verbose_name = "server stats (1 hour)"
        verbose_name_plural = "server stats (1 hour)"
        constraints = [
            models.UniqueConstraint(fields=["server", "bucket"], name="stats_hour_server_bucket")
        ]


class TransferQuota(models.Model):
    """Where a server stands against its plan's monthly transfer allowance in `period`
    (the month, its first day): the highest notice given (0, 80 or 100 %) and whether the
    plan's policy was applied. hosting/services/quotas.py keeps it; a new month or an
    admin lifts it."""

    server = models.OneToOneField(
        Server, on_delete=models.CASCADE, primary_key=True, related_name="transfer_quota"
    )
    period = models.DateField()
    level = models.PositiveSmallIntegerField(default=0, help_text="0, 80 or 100 (%).")
    used_bytes = models.PositiveBigIntegerField(default=0)
    enforced = models.BooleanField(
        default=False, help_text="The plan's policy (throttle or suspend) was applied."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "transfer quota"

    def __str__(self) -> str:
        return f"{self.server_id} {self.period:%Y-%m}: {self.level} %"
