"""Shapes of the stats endpoints (for the schema; the services build plain dicts)."""

from __future__ import annotations

from rest_framework import serializers

from ..services.stats_history import RANGES


class StatsPointSerializer(serializers.Serializer):
    t = serializers.FloatField(help_text="Start of the step, unix seconds.")
    cpu_pct = serializers.FloatField(help_text="Average CPU use, % of all the vCPUs.")
    mem_used_mib = serializers.IntegerField(
        allow_null=True, help_text="Used inside the guest (balloon driver); null without."
    )
    mem_total_mib = serializers.IntegerField()
    disk_rd_bps = serializers.FloatField()
    disk_wr_bps = serializers.FloatField()
    disk_rd_iops = serializers.FloatField()
    disk_wr_iops = serializers.FloatField()
    net_rx_bps = serializers.FloatField()
    net_tx_bps = serializers.FloatField()
    net_rx_pps = serializers.FloatField()
    net_tx_pps = serializers.FloatField()


class StatsHistorySerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=list(RANGES))
    step = serializers.IntegerField(help_text="Seconds between points.")
    points = StatsPointSerializer(
        many=True, help_text="Oldest first; steps without samples left out."
    )


class UsageSerializer(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM (UTC).")
    cpu_hours = serializers.FloatField(help_text="CPU time used, all vCPUs together.")
    transfer_in_gib = serializers.FloatField(help_text="Received by the server.")
    transfer_out_gib = serializers.FloatField(help_text="Sent by the server.")
    transfer_gib = serializers.FloatField(help_text="In and out.")
    disk_read_gib = serializers.FloatField()
    disk_write_gib = serializers.FloatField()
    disk_read_ops = serializers.IntegerField()
    disk_write_ops = serializers.IntegerField()
    measured_hours = serializers.FloatField(help_text="Hours the collector saw the server run.")
    transfer_allowance_gib = serializers.IntegerField(help_text="The plan's monthly allowance.")
