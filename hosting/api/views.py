from __future__ import annotations

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from ..access import caller_from_request
from ..actions import PLAIN_ACTIONS, Action
from ..choices import JobKind
from ..filtersets import CustomerFilterSet, JobFilterSet, ServerFilterSet, SSHKeyFilterSet
from ..models import Customer, Host, Image, IPAddress, Job, Plan, Server, SSHKey
from ..services import console as console_service
from ..services import customers as customer_service
from ..services import evacuation as evacuation_service
from ..services import migration as migration_service
from ..services import servers as server_service
from ..services import stats_history
from ..services.hosts import HOST_FIELDS, onboard_host, request_refresh
from ..services.placement import PlacementRequest
from . import serializers as s
from .audience import serializer_for
from .backup_views import ServerSnapshotRoutes
from .lookups import IntegerLookupMixin
from .permissions import (
    CatalogPermission,
    ModelPermissions,
    ProviderModelPermissions,
    StaffOnly,
    StaffOrBillingWrites,
    TokenScopePermission,
    action_permission,
)
from .placement import HostVerdictSerializer, ProviderOnly, verdicts_response
from .stats_serializers import StatsHistorySerializer, UsageSerializer
from .viewsets import (
    AuditedModelMixin,
    ScopedModelViewSet,
    ScopedReadOnlyViewSet,
    ScopedViewSetMixin,
)


class PlanViewSet(IntegerLookupMixin, AuditedModelMixin, ScopedModelViewSet):
    queryset = Plan.objects.all()
    serializer_class = s.PlanSerializer
    permission_classes = [TokenScopePermission, CatalogPermission]
    filterset_fields = ["kind", "is_active"]
    ordering_fields = ["monthly_price", "name", "memory_mib"]


class ImageViewSet(IntegerLookupMixin, AuditedModelMixin, ScopedModelViewSet):
    queryset = Image.objects.all()
    serializer_class = s.ImageSerializer
    permission_classes = [TokenScopePermission, CatalogPermission]
    filterset_fields = ["kind", "os_family", "is_active"]
    ordering_fields = ["name"]

    def get_serializer_class(self):
        return serializer_for(self.request, s.ImageSerializer, s.ProviderImageSerializer)


class HostViewSet(IntegerLookupMixin, AuditedModelMixin, viewsets.ModelViewSet):
    queryset = Host.objects.all()
    serializer_class = s.HostSerializer
    permission_classes = [TokenScopePermission, StaffOnly, ModelPermissions]
    filterset_fields = ["state", "kind", "zone"]
    ordering_fields = ["name", "state"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance, _ = onboard_host(
            caller=caller_from_request(self.request),
            name=data["name"],
            **{k: v for k, v in data.items() if k in HOST_FIELDS},
        )

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[
            TokenScopePermission,
            StaffOnly,
            action_permission(JobKind.HOST_REFRESH),
        ],
    )
    def refresh(self, request, pk=None):
        job = request_refresh(host=self.get_object(), caller=caller_from_request(request))
        data = s.ProviderJobSerializer(job, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={202: s.JobSerializer},
        description="Put the host into maintenance (if it is not) and queue one job that "
        "moves every server away, each to the host placement chooses: running ones live, "
        "stopped ones offline, EVACUATE_PARALLEL at a time. The job's progress is the share "
        "moved; its result lists each server moved or why it could not move.",
    )
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[
            TokenScopePermission,
            StaffOnly,
            action_permission(JobKind.EVACUATE),
        ],
    )
    def evacuate(self, request, pk=None):
        job = evacuation_service.request_evacuation(
            host=self.get_object(), caller=caller_from_request(request)
        )
        data = s.ProviderJobSerializer(job, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class CustomerViewSet(
    IntegerLookupMixin,
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Customer.objects.all()
    serializer_class = s.CustomerSerializer
    permission_classes = [TokenScopePermission, StaffOrBillingWrites, ProviderModelPermissions]
    filterset_class = CustomerFilterSet
    ordering_fields = ["name", "created_at"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = customer_service.create_customer(
            name=data["name"],
            email=data["email"],
            external_ref=data.get("external_ref", ""),
            owner=data.get("owner"),
            caller=caller_from_request(self.request),
        )


class SSHKeyViewSet(
    IntegerLookupMixin,
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    queryset = SSHKey.objects.select_related("customer")
    permission_classes = [TokenScopePermission, ProviderModelPermissions]
    serializer_class = s.SSHKeySerializer
    filterset_class = SSHKeyFilterSet
    ordering_fields = ["name", "created_at"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = customer_service.add_ssh_key(
            customer=resolve_customer(self, data.get("customer")),
            name=data["name"],
            public_key=data["public_key"],
            caller=caller_from_request(self.request),
        )

    def perform_destroy(self, instance):
        customer_service.delete_ssh_key(key=instance, caller=caller_from_request(self.request))


def resolve_customer(view, customer: Customer | None) -> Customer:
    """The customer a write acts for: the one named, or the caller's only customer."""
    if customer is not None:
        return customer
    ids = view.access.customer_ids
    if ids is not None and len(ids) == 1:
        return Customer.objects.get(pk=next(iter(ids)))
    raise ValidationError({"customer": ["This field is required."]})


class ServerViewSet(ServerSnapshotRoutes, ScopedModelViewSet):
    queryset = Server.objects.select_related("host").prefetch_related(
        Prefetch("addresses", queryset=IPAddress.objects.select_related("pool"))
    )
    serializer_class = s.ServerSerializer
    filterset_class = ServerFilterSet
    ordering_fields = ["created_at", "hostname", "state"]
    lookup_field = "uuid"
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "list":
            # a page reads its addresses and its few hosts in one query each
            # (paginate_queryset), rather than a host row per server
            queryset = queryset.select_related(None).prefetch_related(None)
        return queryset

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is not None:
            s.attach_page(page)
        return page

    def get_serializer_class(self):
        if self.action == "create":
            return s.ServerCreateSerializer
        return serializer_for(self.request, s.ServerSerializer, s.ProviderServerSerializer)

    def _job_response(self, job: Job) -> Response:
        serializer = serializer_for(self.request, s.JobSerializer, s.ProviderJobSerializer)
        data = serializer(job, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=s.ServerCreateSerializer,
        responses={202: s.JobSerializer, 400: OpenApiResponse(description="Invalid input")},
        description="Create a server; returns 202 with the provisioning job.",
    )
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        customer = resolve_customer(self, data.get("customer"))
        _, job = server_service.create_server(
            customer=customer,
            plan=data["plan"],
            image=data["image"],
            hostname=data["hostname"],
            ssh_keys=data.get("ssh_keys", []),
            caller=caller_from_request(request),
        )
        return self._job_response(job)

    @extend_schema(
        request=None,
        responses={202: s.JobSerializer},
        description="Terminate the server; returns 202 with the job.",
    )
    def destroy(self, request, *args, **kwargs):
        return self._act(JobKind.TERMINATE)

    def _act(self, kind: str) -> Response:
        job = server_service.request_action(
            server=self.get_object(), action=kind, caller=caller_from_request(self.request)
        )
        return self._job_response(job)

    @extend_schema(
        request=s.MigrateSerializer,
        responses={202: s.JobSerializer},
        summary="Migrate",
        description="Move the server to another host: live when it runs, offline (with its "
        "disks) when it is stopped. `target_host` (a host name) is chosen by placement when "
        "absent. Refused (409) with the reason of every failed pre-check. Provider only "
        "(staff, billing tokens). Returns 202 with the job; its result records total time, "
        "downtime and bytes sent.",
    )
    @action(detail=True, methods=["post"], url_path="migrate")
    def migrate(self, request, uuid=None):
        server = self.get_object()
        caller = caller_from_request(request)
        # who may ask comes before the input: a customer learns nothing about hosts
        migration_service.require_may_migrate(server=server, caller=caller)
        body = s.MigrateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        tuning = {k: data[k] for k in migration_service.TUNING_PARAMS if k in data}
        job = migration_service.request_migration(
            server=server,
            caller=caller,
            target=data.get("target_host"),
            live=data.get("live"),
            tuning=tuning,
        )
        return self._job_response(job)

    @extend_schema(
        responses={200: s.ConsoleSerializer},
        description="The tail of the serial console log (read-only). A worker refreshes it "
        "every few seconds while it is being read; poll this endpoint.",
    )
    @action(detail=True, methods=["get"])
    def console(self, request, uuid=None):
        server = self.get_object()
        tail = console_service.tail(server)
        serializer = serializer_for(request, s.ConsoleSerializer, s.ProviderConsoleSerializer)
        hosts = [server.host.name] if server.host is not None else []
        context = {**self.get_serializer_context(), "hosts": hosts}
        return Response(serializer(tail, context=context).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "range", str, enum=list(stats_history.RANGES), default="1h", required=False
            )
        ],
        responses={200: StatsHistorySerializer},
        description="The server's usage history for a chart: 1h and 24h from the 1-minute "
        "rollups, 7d and 30d from the 1-hour ones. Live samples come over the WebSocket.",
    )
    @action(detail=True, methods=["get"])
    def stats(self, request, uuid=None):
        data = stats_history.history(
            server=self.get_object(), range_name=request.query_params.get("range", "1h")
        )
        return Response(data)

    @extend_schema(
        responses={200: HostVerdictSerializer(many=True)},
        description="Every host, whether it could take this server now (as a move's "
        "target), with the reasons why not; eligible hosts first in the order of the "
        "zone's policy. Provider only (staff, billing tokens).",
    )
    @action(
        detail=True,
        methods=["get"],
        permission_classes=[TokenScopePermission, ProviderOnly],
        filter_backends=[],
        pagination_class=None,
    )
    def placement(self, request, uuid=None):
        return verdicts_response(PlacementRequest.for_server(self.get_object()))

    @extend_schema(
        parameters=[OpenApiParameter("month", str, required=False, description="YYYY-MM")],
        responses={200: UsageSerializer},
        description="What the server used in a calendar month (UTC; default this month): "
        "CPU hours, transfer in and out, disk I/O, from the 1-hour rollups.",
    )
    @action(detail=True, methods=["get"])
    def usage(self, request, uuid=None):
        server = self.get_object()
        month = stats_history.parse_month(request.query_params.get("month"))
        return Response(stats_history.monthly_usage(server=server, month=month))


def _action_route(entry: Action):
    """`POST /servers/<uuid>/<slug>/` for one entry of the action registry."""

    def route(self: ServerViewSet, request, uuid=None) -> Response:
        return self._act(entry.kind)

    route.__name__ = entry.kind
    who = " Provider only (staff, billing tokens)." if entry.provider_only else ""
    schema = extend_schema(
        request=None,
        responses={202: s.JobSerializer},
        summary=entry.label,
        description=f"{entry.description or entry.label + ' the server.'}{who} "
        "Returns 202 with the job.",
    )
    return schema(action(detail=True, methods=["post"], url_path=entry.slug)(route))


for _entry in PLAIN_ACTIONS:
    # migrate takes a body: its route is written out above
    if not _entry.api_delete and _entry.kind != JobKind.MIGRATE:
        setattr(ServerViewSet, _entry.kind, _action_route(_entry))


class JobViewSet(IntegerLookupMixin, ScopedReadOnlyViewSet):
    queryset = Job.objects.select_related("server", "host", "requested_by")
    serializer_class = s.JobSerializer
    filterset_class = JobFilterSet
    ordering_fields = ["created_at", "status"]

    def get_serializer_class(self):
        return serializer_for(self.request, s.JobSerializer, s.ProviderJobSerializer)

    def get_object(self):
        pk = self.checked_lookup()
        return get_object_or_404(self.filter_queryset(self.get_queryset()), pk=pk)

    @extend_schema(
        request=None,
        responses={200: s.JobSerializer},
        description="Cancel a migration: a queued one at once; a running one is aborted "
        "(the server stays on its host) and ends as cancelled. Provider only.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = migration_service.request_cancel(
            job=self.get_object(), caller=caller_from_request(request)
        )
        serializer = serializer_for(request, s.JobSerializer, s.ProviderJobSerializer)
        return Response(serializer(job, context=self.get_serializer_context()).data)
