"""The Django admin: raw records for staff. Operations go through hosting.services.

Rows that only the services may change (servers' state, jobs, audit events, token digests)
are read-only here; the actions that change them call the services, so the admin writes
the same jobs and audit events as the API and the panel.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from .choices import JobKind, ServerState
from .models import (
    APIToken,
    AuditEvent,
    Customer,
    Host,
    Image,
    IPAddress,
    IPPool,
    Job,
    Membership,
    Plan,
    Server,
    SSHKey,
)
from .services import audit
from .services.errors import ServiceError
from .services.hosts import request_refresh
from .services.servers import request_action
from .services.tokens import issue_token, revoke_token
from .states import IllegalTransition

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
            request=request,
            target=obj,
            details={"fields": changed},
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit.record(action=f"admin.{obj._meta.model_name}.delete", request=request, target=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            audit.record(action=f"admin.{obj._meta.model_name}.delete", request=request, target=obj)
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
class HostAdmin(LiveServerCountMixin, AuditedAdmin):
    list_display = [
        "name",
        "libvirt_uri",
        "kind",
        "state",
        "zone",
        "cpus",
        "memory_mib",
        "disk_gib",
        "cpu_overcommit",
        "ram_overcommit",
        "server_count",
        "last_seen",
    ]
    list_filter = ["state", "kind", "backend", "zone"]
    search_fields = ["name", "libvirt_uri", "zone", "cpu_model"]
    readonly_fields = [
        "cpus",
        "memory_mib",
        "disk_gib",
        "cpu_model",
        "hypervisor_version",
        "libvirt_version",
        "networks",
        "storage_pools",
        "unknown_domains",
        "last_seen",
        "last_reconciled_at",
        "last_error",
    ]
    fieldsets = [
        (None, {"fields": ["name", "libvirt_uri", "backend", "kind", "state", "zone"]}),
        ("Placement", {"fields": ["queue", "storage_pool", "network", "disk_mode"]}),
        ("Overcommit", {"fields": ["cpu_overcommit", "ram_overcommit"]}),
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
    actions = ["refresh_from_hypervisor"]

    def save_model(self, request: HttpRequest, obj: Host, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            # onboarding: a worker reads capacity, versions, networks and pools, or marks
            # the host offline with the reason (shown on this page as "last error")
            job = request_refresh(host=obj, requested_by=request.user, request=request)
            self.message_user(
                request,
                f"Reading {obj.name} from its hypervisor (job #{job.pk}).",
                messages.INFO,
            )

    @admin.action(description="Refresh from hypervisor (queue a job)")
    def refresh_from_hypervisor(self, request: HttpRequest, queryset: QuerySet) -> None:
        jobs = [
            request_refresh(host=host, requested_by=request.user, request=request)
            for host in queryset
        ]
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


def _server_action(kind: str, label: str):
    def action(modeladmin: ServerAdmin, request: HttpRequest, queryset: QuerySet) -> None:
        queued, refused = [], []
        for server in queryset:
            try:
                job = request_action(
                    server=server, action=kind, requested_by=request.user, request=request
                )
            except (ServiceError, IllegalTransition) as exc:
                refused.append(f"{server}: {exc.message}")
            else:
                queued.append(f"{server} (job #{job.pk})")
        if queued:
            modeladmin.message_user(request, f"{label}: " + ", ".join(queued), messages.SUCCESS)
        for line in refused:
            modeladmin.message_user(request, line, messages.WARNING)

    action.__name__ = f"action_{kind}"
    return admin.action(description=f"{label} selected servers (queue jobs)")(action)


@admin.register(Server)
class ServerAdmin(ReadOnlyAdmin):
    """Servers are created and changed through the services: the API, the panel, and the
    actions here, which queue jobs like the API does. Deleting a row would leave the
    domain on its host, so there is no delete: terminate instead."""

    list_display = [
        "hostname",
        "customer",
        "state",
        "plan",
        "image",
        "host",
        "address_list",
        "created_at",
    ]
    list_filter = ["state", "host", "plan", "image__os_family", "created_at"]
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
        "state",
        "state_message",
        "domain_name",
        "mac_address",
        "created_at",
        "updated_at",
        "terminated_at",
    )
    inlines = [IPAddressInline, JobInline]
    actions = [
        _server_action(JobKind.START, "Start"),
        _server_action(JobKind.STOP, "Stop"),
        _server_action(JobKind.REBOOT, "Reboot"),
        _server_action(JobKind.FORCE_STOP, "Force stop"),
        _server_action(JobKind.SUSPEND, "Suspend"),
        _server_action(JobKind.UNSUSPEND, "Unsuspend"),
        _server_action(JobKind.TERMINATE, "Terminate"),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("addresses")

    @admin.display(description="addresses")
    def address_list(self, obj: Server) -> str:
        return ", ".join(a.address for a in obj.addresses.all())


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
        "requested_by",
        "requested_via_token",
        "attempts",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "log_lines",
    )

    @admin.display(description="log")
    def log_lines(self, obj: Job) -> str:
        if not obj.log:
            return "—"
        return format_html(
            '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
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
            kwargs["form"] = APITokenAddForm
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
            audit.record(action="admin.apitoken.change", request=request, target=obj)
            return
        token, key = form.issued
        audit.record(
            action="token.create", request=request, target=token, details={"scope": token.scope}
        )
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

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            revoke_token(token=token)
            audit.record(action="token.revoke", request=request, target=token)
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Keep revoked tokens for the audit trail; revoke instead of deleting.
        return False
