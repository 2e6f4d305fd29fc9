"""The Django admin: raw records for staff. Operations go through hosting.services.

Rows that only the services may change (servers' state, jobs, audit events, token digests)
are read-only here; the actions that change them call the services, so the admin writes
the same jobs and audit events as the API and the panel.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from .access import Caller, caller_from_request
from .actions import PLAIN_ACTIONS, Action
from .balance_admin import EvacuateAction
from .choices import JobKind, ServerState
from .models import (
    APIToken,
    AuditEvent,
    Backup,
    BackupPolicy,
    Customer,
    Host,
    Image,
    IPAddress,
    IPPool,
    Job,
    Membership,
    PlacementGroup,
    Plan,
    Server,
    ServerStatsHour,
    ServerStatsMinute,
    Snapshot,
    SSHKey,
    TransferQuota,
    Zone,
)
from .permissions import caller_may
from .placement_admin import (
    MaintenanceActions,
    PlacementGroupForm,
    host_usage_text,
    verdict_table,
)
from .services import audit
from .services.errors import ServiceError
from .services.hosts import HOST_FIELDS, onboard_host, request_refresh
from .services.quotas import lift_transfer_limit
from .services.servers import request_action
from .services.tokens import issue_token, revoke_token

admin.site.site_header = "Paddock administration"
admin.site.site_title = "Paddock admin"
admin.site.index_title = "Records"


class ReadOnlyAdmin(admin.ModelAdmin):
    """For rows that only the services write: viewable, never added, changed or deleted."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditedAdmin(admin.ModelAdmin):
    """Writes an AuditEvent for every change made in the admin, as the API and UI do."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        verb = "change" if change else "create"
        changed = list(form.changed_data) if form is not None else []
        audit.record(
            action=f"admin.{obj._meta.model_name}.{verb}",
            caller=caller_from_request(request),
            target=obj,
            details={"fields": changed},
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit.record(
            action=f"admin.{obj._meta.model_name}.delete",
            caller=caller_from_request(request),
            target=obj,
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        caller = caller_from_request(request)
        for obj in queryset:
            audit.record(action=f"admin.{obj._meta.model_name}.delete", caller=caller, target=obj)
        super().delete_queryset(request, queryset)


# --- customers -------------------------------------------------------------------------


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role"]


class SSHKeyInline(admin.TabularInline):
    model = SSHKey
    extra = 0
    fields = ["name", "fingerprint", "created_at"]
    readonly_fields = ["name", "fingerprint", "created_at"]
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LiveServerCountMixin:
    """A "servers" column: the live (not terminated) servers of a customer or host."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()  # type: ignore[misc]
            .get_queryset(request)
            .annotate(
                live_servers=Count("servers", filter=~Q(servers__state=ServerState.TERMINATED))
            )
        )

    @admin.display(description="servers", ordering="live_servers")
    def server_count(self, obj: Customer | Host) -> int:
        return obj.live_servers  # type: ignore[union-attr]


@admin.register(Customer)
class CustomerAdmin(LiveServerCountMixin, AuditedAdmin):
    list_display = ["name", "email", "status", "external_ref", "server_count", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["name", "email", "external_ref", "members__username"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline, SSHKeyInline]
    date_hierarchy = "created_at"


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ["user", "customer", "role"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "customer__name"]
    list_select_related = ["user", "customer"]
    autocomplete_fields = ["user", "customer"]


@admin.register(SSHKey)
class SSHKeyAdmin(AuditedAdmin):
    list_display = ["name", "customer", "fingerprint", "created_at"]
    search_fields = ["name", "fingerprint", "customer__name"]
    list_select_related = ["customer"]
    autocomplete_fields = ["customer"]
    # Model.clean(), run by the form, normalizes the key and sets its fingerprint.
    readonly_fields = ["fingerprint", "created_at"]


# --- catalogue -------------------------------------------------------------------------


@admin.register(Plan)
class PlanAdmin(AuditedAdmin):
    list_display = [
        "name",
        "kind",
        "vcpus",
        "memory_mib",
        "disk_gib",
        "transfer_gib",
        "monthly_price",
        "is_active",
    ]
    list_filter = ["kind", "is_active"]
    list_editable = ["is_active"]
    search_fields = ["name"]


@admin.register(Image)
class ImageAdmin(AuditedAdmin):
    list_display = [
        "name",
        "os_family",
        "os_version",
        "kind",
        "format",
        "volume_name",
        "min_disk_gib",
        "cloud_init",
        "is_active",
    ]
    list_filter = ["kind", "os_family", "format", "cloud_init", "is_active"]
    list_editable = ["is_active"]
    search_fields = ["name", "os_version", "volume_name", "source"]


# --- hosts and servers -----------------------------------------------------------------


@admin.register(Host)
class HostAdmin(EvacuateAction, MaintenanceActions, LiveServerCountMixin, AuditedAdmin):
    list_display = [
        "name",
        "libvirt_uri",
        "kind",
        "state",
        "maintenance",
        "zone",
        "cpus",
        "memory_mib",
        "disk_gib",
        "cpu_overcommit",
        "ram_overcommit",
        "server_count",
        "last_seen",
    ]
    list_filter = ["state", "maintenance", "kind", "backend", "virt_type", "zone"]
    search_fields = ["name", "libvirt_uri", "zone", "cpu_model"]
    readonly_fields = [
        "maintenance",
        "maintenance_since",
        "maintenance_reason",
        "usage",
        "cpus",
        "memory_mib",
        "disk_gib",
        "cpu_model",
        "hypervisor_version",
        "libvirt_version",
        "detected_virt_type",
        "networks",
        "storage_pools",
        "unknown_domains",
        "last_seen",
        "last_reconciled_at",
        "last_error",
    ]
    fieldsets = [
        (None, {"fields": ["name", "libvirt_uri", "backend", "kind", "state", "zone"]}),
        (
            "Placement",
            {"fields": ["queue", "storage_pool", "network", "disk_mode", "virt_type"]},
        ),
        ("Migration", {"fields": ["shared_pools", "migration_address"]}),
        ("Overcommit", {"fields": ["cpu_overcommit", "ram_overcommit"]}),
        (
            "Reserve and usage",
            {"fields": ["reserve_vcpus", "reserve_memory_mib", "reserve_disk_gib", "usage"]},
        ),
        (
            "Maintenance (use the actions to enter or leave it)",
            {"fields": ["maintenance", "maintenance_since", "maintenance_reason"]},
        ),
        (
            "Read from the hypervisor",
            {
                "fields": [
                    "cpus",
                    "memory_mib",
                    "disk_gib",
                    "cpu_model",
                    "hypervisor_version",
                    "libvirt_version",
                    "detected_virt_type",
                    "networks",
                    "storage_pools",
                    "unknown_domains",
                    "last_seen",
                    "last_reconciled_at",
                    "last_error",
                ]
            },
        ),
    ]
    actions = ["refresh_from_hypervisor", "enter_maintenance", "evacuate", "leave_maintenance"]

    @admin.display(description="allocated (placement counters)")
    def usage(self, obj: Host) -> str:
        return host_usage_text(obj) if obj.pk else "-"

    def save_model(self, request: HttpRequest, obj: Host, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # onboarding (the same service as the API's): a worker reads capacity, versions,
        # networks and pools, or marks the host offline with the reason ("last error")
        host, job = onboard_host(
            caller=caller_from_request(request),
            name=obj.name,
            **{f: getattr(obj, f) for f in HOST_FIELDS},
        )
        obj.pk = host.pk
        assert job is not None
        self.message_user(
            request,
            f"Reading {obj.name} from its hypervisor (job #{job.pk}).",
            messages.INFO,
        )

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return caller_may(caller_from_request(request), JobKind.HOST_REFRESH)

    @admin.action(description="Refresh from hypervisor (queue a job)", permissions=["refresh"])
    def refresh_from_hypervisor(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not self.has_refresh_permission(request):
            raise PermissionDenied
        caller = caller_from_request(request)
        jobs = [request_refresh(host=host, caller=caller) for host in queryset]
        self.message_user(
            request,
            f"Queued {len(jobs)} refresh job(s): " + ", ".join(f"#{j.pk}" for j in jobs),
            messages.SUCCESS,
        )


class IPAddressInline(admin.TabularInline):
    model = IPAddress
    extra = 0
    fields = ["address", "pool", "assigned_at"]
    readonly_fields = ["address", "pool", "assigned_at"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class JobInline(admin.TabularInline):
    model = Job
    fk_name = "server"
    extra = 0
    fields = readonly_fields = (
        "kind",
        "status",
        "progress",
        "message",
        "created_at",
        "finished_at",
    )
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _server_action(entry: Action):
    """The admin's bulk action for one entry of the action registry (hosting/actions.py)."""

    def action(modeladmin: ServerAdmin, request: HttpRequest, queryset: QuerySet) -> None:
        caller = caller_from_request(request)
        queued, refused = [], []
        for server in queryset:
            try:
                job = request_action(server=server, action=entry.kind, caller=caller)
            except ServiceError as exc:
                refused.append(f"{server}: {exc.message}")
            else:
                queued.append(f"{server} (job #{job.pk})")
        if queued:
            modeladmin.message_user(
                request, f"{entry.label}: " + ", ".join(queued), messages.SUCCESS
            )
        for line in refused:
            modeladmin.message_user(request, line, messages.WARNING)

    action.__name__ = f"action_{entry.kind}"
    action.action_kind = entry.kind  # type: ignore[attr-defined]
    return admin.action(description=f"{entry.label} selected servers (queue jobs)")(action)


@admin.register(Server)
class ServerAdmin(ReadOnlyAdmin):
    """Servers are created and changed through the services: the API, the panel, and the
    actions here, which queue jobs like the API does. Deleting a row would leave the
    domain on its host, so there is no delete: terminate instead."""

    list_display = [
        "hostname",
        "customer",
        "state",
        "suspended",
        "plan",
        "image",
        "host",
        "address_list",
        "created_at",
    ]
    list_filter = ["state", "suspended", "host", "plan", "image__os_family", "created_at"]
    search_fields = ["hostname", "uuid", "domain_name", "mac_address", "customer__name"]
    list_select_related = ["customer", "plan", "image", "host"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "uuid",
        "hostname",
        "customer",
        "plan",
        "image",
        "host",
        "reserved_host",
        "pinned_host",
        "required_cpu",
        "balance_ignore",
        "placement",
        "state",
        "state_message",
        "suspended",
        "suspended_at",
        "domain_name",
        "mac_address",
        "created_at",
        "updated_at",
        "terminated_at",
    )
    inlines = [IPAddressInline, JobInline]
    actions = [_server_action(entry) for entry in PLAIN_ACTIONS]
    change_list_template = "admin/hosting/server/change_list.html"  # + "Import OpenVZ"

    def get_urls(self) -> list[Any]:
        from django.urls import path

        from .import_admin import import_openvz_view

        view = self.admin_site.admin_view(lambda request: import_openvz_view(self, request))
        own = path("import-openvz/", view, name="hosting_server_import_openvz")
        return [own, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra = {"may_import": request.user.has_perm("hosting.add_server"), **(extra_context or {})}
        return super().changelist_view(request, extra)

    # the placement constraints are the one thing staff edit here (audited)
    editable_fields = ("pinned_host", "required_cpu", "balance_ignore")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f for f in self.fields if f not in self.editable_fields]

    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        inlines = super().get_inline_instances(request, obj)
        for inline in inlines:  # the inlines stay read-only whatever the server's form
            inline.has_change_permission = lambda *a, **k: False  # type: ignore[method-assign]
        return inlines

    def save_model(self, request: HttpRequest, obj: Server, form: Any, change: bool) -> None:
        changed = [f for f in form.changed_data if f in self.editable_fields]
        if not changed:
            return
        obj.save(update_fields=[*changed, "updated_at"])  # never the state a worker writes
        audit.record(
            action="admin.server.placement",
            caller=caller_from_request(request),
            target=obj,
            details={f: str(getattr(obj, f) or "") for f in changed},
        )

    @admin.display(description="placement: could each host take it now?")
    def placement(self, obj: Server) -> str:
        return verdict_table(obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        """Only the actions the user's permissions allow (hosting/permissions.py): the admin
        neither lists nor runs the others (the service checks again)."""
        caller = caller_from_request(request)
        allowed: dict[str, Any] = {}
        for name, item in super().get_actions(request).items():
            kind = getattr(item[0], "action_kind", None) if item else None
            if kind is None or caller_may(caller, kind):
                allowed[name] = item
        return allowed

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("addresses")

    @admin.display(description="addresses")
    def address_list(self, obj: Server) -> str:
        return ", ".join(a.address for a in obj.addresses.all())


@admin.register(Zone)
class ZoneAdmin(AuditedAdmin):
    """A zone's placement policy (spread, the default, or pack) and its balancer (off,
    advise or apply)."""

    list_display = ["name", "policy", "balance_mode", "description"]
    list_editable = ["policy", "balance_mode"]


@admin.register(PlacementGroup)
class PlacementGroupAdmin(AuditedAdmin):
    """A customer's servers kept on one host (affinity) or on different hosts."""

    form = PlacementGroupForm
    list_display = ["name", "customer", "rule"]
    list_filter = ["rule"]
    search_fields = ["name", "customer__name"]
    autocomplete_fields = ["customer", "servers"]


# --- addresses -------------------------------------------------------------------------


@admin.register(IPPool)
class IPPoolAdmin(AuditedAdmin):
    list_display = [
        "name",
        "network",
        "family",
        "gateway",
        "range_start",
        "range_end",
        "zone",
        "assigned",
        "is_active",
    ]
    list_filter = ["family", "zone", "is_active"]
    search_fields = ["name", "network", "zone"]
    readonly_fields = ["family"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(assigned_count=Count("addresses"))

    @admin.display(description="assigned", ordering="assigned_count")
    def assigned(self, obj: IPPool) -> int:
        return obj.assigned_count  # type: ignore[attr-defined]


@admin.register(IPAddress)
class IPAddressAdmin(ReadOnlyAdmin):
    """Addresses are assigned and released by the services only (hosting.services.ipam)."""

    list_display = ["address", "pool", "server", "customer", "assigned_at"]
    fields = readonly_fields = ("address", "pool", "server", "assigned_at")
    list_filter = ["pool", "pool__family"]
    search_fields = ["address", "server__hostname", "server__customer__name"]
    list_select_related = ["pool", "server", "server__customer"]

    @admin.display(description="customer", ordering="server__customer__name")
    def customer(self, obj: IPAddress) -> str:
        return str(obj.server.customer) if obj.server else "—"


# --- jobs and audit --------------------------------------------------------------------


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "progress",
        "server",
        "host",
        "requested_by",
        "message",
        "attempts",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "host", "created_at"]
    search_fields = ["=id", "server__hostname", "server__uuid", "message", "error"]
    list_select_related = ["server", "host", "requested_by"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "kind",
        "status",
        "progress",
        "message",
        "error",
        "server",
        "host",
        "target_host",
        "params",
        "result",
        "cancel_requested",
        "requested_by",
        "requested_via_token",
        "attempts",
        "retries",
        "lease",
        "run_after",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "log_lines",
    )

    class Media:
        # no style="" attributes: the Content Security Policy allows none
        css = {"all": ["paddock-admin.css"]}

    actions = ["cancel_jobs"]

    @admin.action(description="Cancel selected jobs (a running migration is aborted)")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        from .services.migration import request_cancel

        caller = caller_from_request(request)
        for job in queryset:
            try:
                request_cancel(job=job, caller=caller)
            except ServiceError as exc:
                self.message_user(request, f"Job #{job.pk}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"Job #{job.pk}: cancel asked", messages.SUCCESS)

    @admin.display(description="log")
    def log_lines(self, obj: Job) -> str:
        if not obj.log:
            return "—"
        return format_html(
            '<pre class="paddock-log">{}</pre>',
            format_html_join("\n", "{}", ((line,) for line in obj.log)),
        )


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "action",
        "actor_repr",
        "target_type",
        "target_repr",
        "customer",
        "source_ip",
    ]
    list_filter = ["action", "target_type", "created_at"]
    search_fields = ["action", "actor_repr", "target_repr", "target_id", "source_ip"]
    list_select_related = ["customer"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "created_at",
        "action",
        "actor",
        "actor_repr",
        "token",
        "target_type",
        "target_id",
        "target_repr",
        "customer",
        "source_ip",
        "details",
    )


# --- API tokens ------------------------------------------------------------------------


class APITokenAddForm(forms.ModelForm):
    """Issues the token through the service; the key is shown once, after saving."""

    caller: Caller | None = None

    class Meta:
        model = APIToken
        fields = ["user", "scope", "customer", "name", "expires_at"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            self.issued = issue_token(
                user=cleaned["user"],
                scope=cleaned["scope"],
                customer=cleaned.get("customer"),
                name=cleaned.get("name") or "",
                expires_at=cleaned.get("expires_at"),
                caller=self.caller,
            )
        except ServiceError as exc:
            raise ValidationError({exc.field: exc.message} if exc.field else exc.message) from exc
        return cleaned

    def _post_clean(self) -> None:
        # The row exists already (issue_token created it); nothing left to validate.
        pass

    def save(self, commit: bool = True) -> APIToken:
        super().save(commit=False)  # saves nothing; sets save_m2m, which the admin calls
        return self.issued[0]


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "user",
        "scope",
        "customer",
        "name",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "usable",
    ]
    list_filter = ["scope", "revoked_at", "expires_at"]
    search_fields = ["prefix", "name", "user__username", "customer__name"]
    list_select_related = ["user", "customer"]
    autocomplete_fields = ["user", "customer"]
    # The digest is never shown, not even read-only.
    exclude = ["digest"]
    readonly_fields = [
        "prefix",
        "user",
        "scope",
        "customer",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        if obj is None:
            # the service names the staff user who issued the token in the audit trail
            caller = caller_from_request(request)
            kwargs["form"] = type("APITokenAddForm", (APITokenAddForm,), {"caller": caller})
            kwargs["fields"] = APITokenAddForm.Meta.fields
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return [(None, {"fields": APITokenAddForm.Meta.fields})]
        return [
            (None, {"fields": ["prefix", "user", "scope", "customer", "name", "expires_at"]}),
            ("Use", {"fields": ["created_at", "last_used_at", "revoked_at"]}),
        ]

    def save_model(self, request: HttpRequest, obj: APIToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            audit.record(
                action="admin.apitoken.change", caller=caller_from_request(request), target=obj
            )
            return
        # issued (and audited, naming the staff user who made it) by the service in clean()
        _, key = form.issued
        self.message_user(
            request,
            format_html(
                "New token key (shown once, copy it now): <code>{}</code>",
                key,
            ),
            messages.WARNING,
        )

    @admin.display(boolean=True, description="usable")
    def usable(self, obj: APIToken) -> bool:
        return obj.is_usable

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        caller = caller_from_request(request)
        for token in queryset.filter(revoked_at__isnull=True):
            revoke_token(token=token, caller=caller)
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Keep revoked tokens for the audit trail; revoke instead of deleting.
        return False


class StatsBucketAdmin(ReadOnlyAdmin):
    """Usage rollups, written by the collector only (hosting/services/stats_history.py)."""

    list_display = (
        "server",
        "bucket",
        "samples",
        "cpu_pct_avg",
        "cpu_pct_max",
        "mem_used_mib_avg",
        "net_rx_bytes",
        "net_tx_bytes",
    )
    list_select_related = ("server",)
    search_fields = ("server__hostname", "=server__uuid")
    date_hierarchy = "bucket"
    raw_id_fields = ("server",)


admin.site.register(ServerStatsMinute, StatsBucketAdmin)
admin.site.register(ServerStatsHour, StatsBucketAdmin)


@admin.register(TransferQuota)
class TransferQuotaAdmin(ReadOnlyAdmin):
    """Servers against their monthly transfer allowance (hosting/services/quotas.py)."""

    list_display = ("server", "period", "level", "used_bytes", "enforced", "updated_at")
    fields = list_display
    readonly_fields = ("updated_at",)
    list_filter = ("level", "enforced")
    list_select_related = ("server",)
    search_fields = ("server__hostname", "=server__uuid")
    actions = ["lift"]

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("hosting.change_transferquota")

    @admin.action(description="Lift the transfer limit for this month", permissions=["lift"])
    def lift(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not self.has_lift_permission(request):
            raise PermissionDenied
        caller = caller_from_request(request)
        lifted = 0
        for quota in queryset.select_related("server__plan", "server__host"):
            try:
                lift_transfer_limit(server=quota.server, caller=caller)
            except ServiceError as exc:
                self.message_user(request, f"{quota.server}: {exc}", messages.ERROR)
            else:
                lifted += 1
        if lifted:
            self.message_user(request, f"Lifted {lifted} limit(s).", messages.SUCCESS)


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    """Snapshots are taken, reverted and deleted through the services (jobs)."""

    list_display = ["name", "server", "status", "with_memory", "created_at"]
    list_filter = ["status", "with_memory"]
    search_fields = ["name", "server__hostname", "server__uuid"]
    list_select_related = ["server"]
    fields = readonly_fields = (
        "uuid", "server", "name", "description", "with_memory", "status", "error", "created_at",
    )  # fmt: skip


@admin.register(Backup)
class BackupAdmin(ReadOnlyAdmin):
    """Backups are made, verified, restored and deleted through the services (jobs)."""

    list_display = [
        "created_at", "server", "customer", "kind", "status", "scheduled", "stored_bytes",
        "consistency", "verified_ok", "expires_at",
    ]  # fmt: skip
    list_filter = ["status", "kind", "scheduled", "consistency", "verified_ok"]
    search_fields = ["uuid", "server__hostname", "server__uuid", "customer__name"]
    list_select_related = ["server", "customer"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "uuid", "server", "customer", "kind", "parent", "status", "scheduled", "note",
        "consistency", "checkpoint", "stored_bytes", "disk_bytes", "manifest", "error",
        "created_at", "completed_at", "verified_at", "verified_ok", "expires_at",
    )  # fmt: skip


@admin.register(BackupPolicy)
class BackupPolicyAdmin(AuditedAdmin):
    list_display = [
        "__str__", "enabled", "frequency", "window_start_hour", "window_hours",
        "keep_daily", "keep_weekly",
    ]  # fmt: skip
    list_filter = ["enabled", "frequency"]
    autocomplete_fields = ["server"]
