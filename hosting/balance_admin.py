"""Pieces of the admin (hosting/admin.py) for maintenance and balancing: a host's
"evacuate" action and the balancer's plans, which wait here for approval (advise mode)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from .access import caller_from_request
from .choices import JobKind
from .models import BalancePlan
from .permissions import HOST_MAINTENANCE, caller_may
from .services.balancer import approve_plan, reject_plan
from .services.errors import ServiceError
from .services.evacuation import request_evacuation


class EvacuateAction:
    """Host admin action: enter maintenance and move every server away (one job)."""

    @admin.action(
        description="Evacuate: enter maintenance and move every server away",
        permissions=["maintain"],
    )
    def evacuate(self, request: HttpRequest, queryset: QuerySet) -> None:
        caller = caller_from_request(request)
        if not caller_may(caller, HOST_MAINTENANCE):
            raise PermissionDenied
        for host in queryset:
            try:
                job = request_evacuation(
                    host=host, caller=caller, reason=f"evacuated from the admin by {caller}"
                )
            except ServiceError as exc:
                self.message_user(request, f"{host}: {exc.message}", messages.WARNING)  # type: ignore[attr-defined]
            else:
                self.message_user(  # type: ignore[attr-defined]
                    request, f"{host}: evacuation job #{job.pk} queued", messages.SUCCESS
                )


@admin.register(BalancePlan)
class BalancePlanAdmin(admin.ModelAdmin):
    """The balancer's plans: each move with its reason and the hosts' load before and
    after. In advise mode a plan waits here: "approve" requests its migrations."""

    list_display = ["__str__", "zone", "mode", "status", "move_count", "spread", "created_at"]
    list_filter = ["status", "mode", "zone"]
    fields = readonly_fields = (
        "zone",
        "mode",
        "status",
        "spread_before",
        "spread_after",
        "move_table",
        "moves",
        "loads_before",
        "loads_after",
        "outcome",
        "created_at",
        "decided_at",
        "decided_by",
    )
    actions = ["approve", "reject"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return caller_may(caller_from_request(request), JobKind.MIGRATE)

    @admin.display(description="moves")
    def move_count(self, obj: BalancePlan) -> str:
        return f"{len(obj.moves)} ({obj.gib_moved:.1f} GiB)"

    @admin.display(description="spread")
    def spread(self, obj: BalancePlan) -> str:
        return f"{obj.spread_before:.0%} → {obj.spread_after:.0%}"

    @admin.display(description="moves")
    def move_table(self, obj: BalancePlan) -> str:
        rows = [
            (
                m["server"],
                m["source"],
                m["target"],
                ", ".join(f"{h} {v:.0%}" for h, v in m["before"].items()),
                ", ".join(f"{h} {v:.0%}" for h, v in m["after"].items()),
                m["reason"],
            )
            for m in obj.moves
        ]
        return format_html(
            "<table><thead><tr><th>Server</th><th>From</th><th>To</th><th>Before</th>"
            "<th>After</th><th>Why</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                rows,
            ),
        )

    def _decide(self, request: HttpRequest, queryset: QuerySet, decide, verb: str) -> None:
        caller = caller_from_request(request)
        for plan in queryset:
            try:
                decide(plan=plan, caller=caller)
            except ServiceError as exc:
                self.message_user(request, f"{plan}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"{plan}: {verb}", messages.SUCCESS)

    @admin.action(description="Approve: request the plan's migrations", permissions=["approve"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, approve_plan, "approved, migrations requested")

    @admin.action(description="Reject the plan", permissions=["approve"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, reject_plan, "rejected")
