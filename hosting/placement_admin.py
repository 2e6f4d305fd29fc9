"""Pieces of the admin (hosting/admin.py) for placement: a host's maintenance actions and
usage, the placement group form, and the "why not" table on a server's page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from .access import caller_from_request
from .models import Host, PlacementGroup, Server
from .permissions import HOST_MAINTENANCE, caller_may
from .services.hosts import set_maintenance
from .services.placement import PlacementRequest, evaluate, free_room


def verdict_table(server: Server) -> str:
    """Every host and whether it could take `server` now, with the reasons why not."""
    if server.pk is None:
        return "-"
    rows = []
    for verdict in evaluate(PlacementRequest.for_server(server)):
        vcpus, memory, disk = verdict.free
        rows.append(
            (
                verdict.host.name,
                verdict.host.zone or "-",
                f"yes (#{verdict.rank})" if verdict.eligible else "no",
                "; ".join(verdict.reasons) or "-",
                f"{vcpus} vCPU, {memory} MiB, {disk} GiB",
            )
        )
    return format_html(
        "<table><thead><tr><th>Host</th><th>Zone</th><th>Could take it</th><th>Why not</th>"
        "<th>Free after reserve</th></tr></thead><tbody>{}</tbody></table>",
        format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows
        ),
    )


def host_usage_text(host: Host) -> str:
    vcpus, memory, disk = free_room(host)
    return (
        f"{host.alloc_servers} server(s) hold {host.alloc_vcpus}/{host.vcpu_capacity} vCPU, "
        f"{host.alloc_memory_mib}/{host.memory_capacity_mib} MiB, "
        f"{host.alloc_disk_gib}/{host.disk_gib} GiB; free after the reserve: "
        f"{vcpus} vCPU, {memory} MiB, {disk} GiB"
    )


class MaintenanceActions:
    """Host admin actions: enter and leave maintenance (hosting.services.hosts)."""

    def has_maintain_permission(self, request: HttpRequest) -> bool:
        return caller_may(caller_from_request(request), HOST_MAINTENANCE)

    def _set(self, request: HttpRequest, queryset: QuerySet, on: bool) -> None:
        if not self.has_maintain_permission(request):
            raise PermissionDenied
        caller = caller_from_request(request)
        reason = f"from the admin by {caller}"
        names = [
            set_maintenance(host=h, on=on, reason=reason, caller=caller).name for h in queryset
        ]
        verb = "in maintenance" if on else "out of maintenance"
        self.message_user(request, f"{', '.join(names)} {verb}.", messages.SUCCESS)  # type: ignore[attr-defined]

    @admin.action(description="Enter maintenance (no new placements)", permissions=["maintain"])
    def enter_maintenance(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, True)

    @admin.action(description="Leave maintenance", permissions=["maintain"])
    def leave_maintenance(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, False)


class PlacementGroupForm(forms.ModelForm):
    class Meta:
        model = PlacementGroup
        fields = ["customer", "name", "rule", "servers"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        customer, servers = data.get("customer"), data.get("servers") or []
        others = [s.hostname for s in servers if customer and s.customer_id != customer.pk]
        if others:
            raise ValidationError(f"Not servers of this customer: {', '.join(others)}.")
        return data
