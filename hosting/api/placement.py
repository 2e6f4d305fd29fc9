"""Placement's "why not" in the API, for the provider only (staff, billing tokens):

- GET /api/v1/servers/<uuid>/placement/ : every host, whether it could take the server
  now as a move's target, and the reasons why not (ServerViewSet.placement);
- GET /api/v1/placement/?plan=<id>&customer=<id>[&zone=<name>] : the same for an order
  before it is placed.

Customers never see hosts (hosting/api/audience.py): they get 403.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from ..access import request_access
from ..models import Customer, Plan
from ..services.placement import HostVerdict, PlacementRequest, evaluate
from .permissions import TokenScopePermission


class ProviderOnly(permissions.BasePermission):
    """Callers that act for every customer: staff and billing tokens."""

    message = "Only the provider may see placement."

    def has_permission(self, request, view) -> bool:
        return request_access(request).all_customers


class RoomSerializer(serializers.Serializer):
    vcpus = serializers.IntegerField()
    memory_mib = serializers.IntegerField()
    disk_gib = serializers.IntegerField()


class HostVerdictSerializer(serializers.Serializer):
    host = serializers.CharField(source="host.name")
    host_id = serializers.IntegerField(source="host.pk")
    zone = serializers.CharField(source="host.zone")
    eligible = serializers.BooleanField()
    rank = serializers.IntegerField(allow_null=True, help_text="1: the policy's first choice.")
    reasons = serializers.ListField(child=serializers.CharField())
    free = serializers.SerializerMethodField()

    def get_free(self, verdict: HostVerdict) -> dict[str, int]:
        vcpus, memory, disk = verdict.free
        return {"vcpus": vcpus, "memory_mib": memory, "disk_gib": disk}


def verdicts_response(request: PlacementRequest) -> Response:
    return Response(HostVerdictSerializer(evaluate(request), many=True).data)


class PlacementViewSet(viewsets.ViewSet):
    """Where an order of a plan for a customer would go, before ordering."""

    permission_classes = [TokenScopePermission, ProviderOnly]
    pagination_class = None

    @extend_schema(
        parameters=[
            OpenApiParameter("plan", int, required=True),
            OpenApiParameter("customer", int, required=True),
            OpenApiParameter("zone", str, required=False),
        ],
        responses={200: HostVerdictSerializer(many=True)},
        description="Every host, whether it could take a server of this plan for this "
        "customer now, and the reasons why not. Provider only (staff, billing tokens).",
    )
    def list(self, request):
        params = request.query_params
        try:
            plan_id, customer_id = int(params.get("plan", "")), int(params.get("customer", ""))
        except ValueError as exc:
            raise ValidationError({"plan": "Give a plan and a customer by id."}) from exc
        plan = get_object_or_404(Plan, pk=plan_id)
        customer = get_object_or_404(Customer, pk=customer_id)
        return verdicts_response(
            PlacementRequest.for_order(plan=plan, customer=customer, zone=params.get("zone", ""))
        )
