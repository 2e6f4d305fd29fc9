from __future__ import annotations

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from ..choices import JobKind
from ..filtersets import CustomerFilterSet, JobFilterSet, ServerFilterSet
from ..models import Customer, Host, Image, IPAddress, Job, Plan, Server, SSHKey
from ..services import console as console_service
from ..services import customers as customer_service
from ..services import servers as server_service
from ..services.hosts import request_refresh
from . import serializers as s
from .permissions import StaffOnly, StaffOrBillingWrites, TokenScopePermission
from .viewsets import (
    AuditedModelMixin,
    ScopedModelViewSet,
    ScopedReadOnlyViewSet,
    ScopedViewSetMixin,
)


class CatalogPermission(permissions.BasePermission):
    """Everyone signed in reads the catalogue; only staff change it."""

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return bool(request.user.is_staff)


class PlanViewSet(AuditedModelMixin, ScopedModelViewSet):
    queryset = Plan.objects.all()
    serializer_class = s.PlanSerializer
    permission_classes = [TokenScopePermission, CatalogPermission]
    filterset_fields = ["kind", "is_active"]
    ordering_fields = ["monthly_price", "name", "memory_mib"]


class ImageViewSet(AuditedModelMixin, ScopedModelViewSet):
    queryset = Image.objects.all()
    serializer_class = s.ImageSerializer
    permission_classes = [TokenScopePermission, CatalogPermission]
    filterset_fields = ["kind", "os_family", "is_active"]
    ordering_fields = ["name"]


class HostViewSet(AuditedModelMixin, viewsets.ModelViewSet):
    queryset = Host.objects.all()
    serializer_class = s.HostSerializer
    permission_classes = [TokenScopePermission, StaffOnly]
    filterset_fields = ["state", "kind", "zone"]
    ordering_fields = ["name", "state"]

    def perform_create(self, serializer):
        super().perform_create(serializer)
        request_refresh(
            host=serializer.instance, requested_by=self.request.user, request=self.request
        )

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        job = request_refresh(host=self.get_object(), requested_by=request.user, request=request)
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class CustomerViewSet(
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Customer.objects.all()
    serializer_class = s.CustomerSerializer
    permission_classes = [TokenScopePermission, StaffOrBillingWrites]
    filterset_class = CustomerFilterSet
    ordering_fields = ["name", "created_at"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = customer_service.create_customer(
            name=data["name"],
            email=data["email"],
            external_ref=data.get("external_ref", ""),
            owner=data.get("owner"),
            request=self.request,
        )


class SSHKeyViewSet(
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    queryset = SSHKey.objects.select_related("customer")
    serializer_class = s.SSHKeySerializer
    filterset_fields = ["customer"]
    ordering_fields = ["name", "created_at"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = customer_service.add_ssh_key(
            customer=resolve_customer(self, data.get("customer")),
            name=data["name"],
            public_key=data["public_key"],
            request=self.request,
        )

    def perform_destroy(self, instance):
        customer_service.delete_ssh_key(key=instance, request=self.request)


def resolve_customer(view, customer: Customer | None) -> Customer:
    """The customer a write acts for: the one named, or the caller's only customer."""
    if customer is not None:
        return customer
    ids = view.access.customer_ids
    if ids is not None and len(ids) == 1:
        return Customer.objects.get(pk=next(iter(ids)))
    raise ValidationError({"customer": ["This field is required."]})


class ServerViewSet(ScopedModelViewSet):
    queryset = Server.objects.select_related("host").prefetch_related(
        Prefetch("addresses", queryset=IPAddress.objects.select_related("pool"))
    )
    serializer_class = s.ServerSerializer
    filterset_class = ServerFilterSet
    ordering_fields = ["created_at", "hostname", "state"]
    lookup_field = "uuid"
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_serializer_class(self):
        if self.action == "create":
            return s.ServerCreateSerializer
        return s.ServerSerializer

    def _job_response(self, job: Job) -> Response:
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

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
            requested_by=request.user,
            token=self.access.token,
            request=request,
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
        server = self.get_object()
        if kind in (JobKind.SUSPEND, JobKind.UNSUSPEND) and not self.access.all_customers:
            raise PermissionDenied("Only the provider can suspend or unsuspend a server.")
        job = server_service.request_action(
            server=server,
            action=kind,
            requested_by=self.request.user,
            token=self.access.token,
            request=self.request,
        )
        return self._job_response(job)

    @extend_schema(
        responses={200: s.ConsoleSerializer},
        description="The tail of the serial console log (read-only). A worker refreshes it "
        "every few seconds while it is being read; poll this endpoint.",
    )
    @action(detail=True, methods=["get"])
    def console(self, request, uuid=None):
        tail = console_service.tail(self.get_object())
        return Response(s.ConsoleSerializer(tail).data)

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, uuid=None):
        return self._act(JobKind.START)

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, uuid=None):
        return self._act(JobKind.STOP)

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def reboot(self, request, uuid=None):
        return self._act(JobKind.REBOOT)

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"], url_path="force-stop")
    def force_stop(self, request, uuid=None):
        return self._act(JobKind.FORCE_STOP)

    @extend_schema(
        request=None,
        responses={202: s.JobSerializer},
        description="Freeze the guest in memory (its CPUs stop).",
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, uuid=None):
        return self._act(JobKind.PAUSE)

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, uuid=None):
        return self._act(JobKind.RESUME)

    @extend_schema(
        request=None,
        responses={202: s.JobSerializer},
        description="The provider's suspension: shut down and locked (staff and "
        "billing tokens only).",
    )
    @action(detail=True, methods=["post"])
    def suspend(self, request, uuid=None):
        return self._act(JobKind.SUSPEND)

    @extend_schema(request=None, responses={202: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def unsuspend(self, request, uuid=None):
        return self._act(JobKind.UNSUSPEND)


class JobViewSet(ScopedReadOnlyViewSet):
    queryset = Job.objects.select_related("server", "host", "requested_by")
    serializer_class = s.JobSerializer
    filterset_class = JobFilterSet
    ordering_fields = ["created_at", "status"]

    def get_object(self):
        return get_object_or_404(self.filter_queryset(self.get_queryset()), pk=self.kwargs["pk"])
