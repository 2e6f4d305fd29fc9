"""Placement: choose an online host of the right kind with room after overcommit."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, Sum

from ..choices import ServerState
from ..models import Host, Plan
from .errors import NoCapacity

# States whose servers hold their resources on the host.
HOLDING_STATES = [s for s in ServerState.values if s != ServerState.TERMINATED]


@dataclass(frozen=True)
class HostUsage:
    host: Host
    vcpus_used: int
    memory_used_mib: int
    disk_used_gib: int
    servers: int

    @property
    def vcpus_free(self) -> int:
        return self.host.vcpu_capacity - self.vcpus_used

    @property
    def memory_free_mib(self) -> int:
        return self.host.memory_capacity_mib - self.memory_used_mib

    @property
    def disk_free_gib(self) -> int:
        return self.host.disk_gib - self.disk_used_gib

    def fits(self, plan: Plan) -> bool:
        return (
            self.vcpus_free >= plan.vcpus
            and self.memory_free_mib >= plan.memory_mib
            and self.disk_free_gib >= plan.disk_gib
        )


def host_usage(hosts=None) -> list[HostUsage]:
    live = Q(servers__state__in=HOLDING_STATES)
    qs = (hosts if hosts is not None else Host.objects.all()).annotate(
        vcpus_used=Sum("servers__plan__vcpus", filter=live, default=0),
        memory_used=Sum("servers__plan__memory_mib", filter=live, default=0),
        disk_used=Sum("servers__plan__disk_gib", filter=live, default=0),
        server_count=Count("servers", filter=live),
    )
    return [HostUsage(h, h.vcpus_used, h.memory_used, h.disk_used, h.server_count) for h in qs]


def choose_host(*, plan: Plan, zone: str = "") -> Host:
    """The online host that fits the plan with the most free memory.

    Callers hold the host rows locked (select_for_update in the service) so that two
    concurrent placements do not both take the last room on a host.
    """
    candidates = Host.objects.online().filter(kind=plan.kind)
    if zone:
        candidates = candidates.filter(zone=zone)
    # lock the candidate rows, then measure usage under the lock
    locked = list(candidates.select_for_update().values_list("pk", flat=True))
    usages = [u for u in host_usage(Host.objects.filter(pk__in=locked)) if u.fits(plan)]
    if not usages:
        raise NoCapacity(
            f"No online {plan.get_kind_display().lower()} host has room for plan {plan.name} "
            f"({plan.vcpus} vCPU, {plan.memory_mib} MiB, {plan.disk_gib} GiB)."
        )
    best = max(usages, key=lambda u: (u.memory_free_mib, u.vcpus_free, -u.host.pk))
    return best.host
