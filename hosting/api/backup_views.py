"""Snapshot and backup routes.

Under a server (`ServerSnapshotRoutes`, mixed into ServerViewSet, so the server is found
through the scoped queryset: another customer's server, and so its snapshots, is a 404):
- `GET|POST /servers/<uuid>/snapshots/`, `GET|DELETE /servers/<uuid>/snapshots/<id>/`,
  `POST /servers/<uuid>/snapshots/<id>/revert/`;
- `GET|POST /servers/<uuid>/backups/`.
And `/backups/` (BackupViewSet): every backup the caller may see, also those of
terminated servers (`?deleted=true`: only those), with verify, restore onto the server,
restore into a new server, delete.
"""

from __future__ import annotations

import uuid as uuid_lib

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from ..access import caller_from_request
from ..models import Backup, Job, Server, Snapshot
from ..services import backups as backup_service
from ..services import snapshots as snapshot_service
from . import serializers as s
from .audience import serializer_for
from .backup_serializers import (
    BackupCreateSerializer,
    BackupSerializer,
    ProviderBackupSerializer,
    RestoreNewSerializer,
    SnapshotCreateSerializer,
    SnapshotSerializer,
)
from .viewsets import ScopedViewSetMixin

SNAPSHOT_ID = OpenApiParameter(
    "snapshot_id", str, OpenApiParameter.PATH, description="The snapshot's uuid."
)


# routes under one server: the server list's filters and pages do not apply
UNFILTERED: dict = {"filter_backends": [], "pagination_class": None}


def parse_uuid(value: str) -> uuid_lib.UUID:
    try:
        return uuid_lib.UUID(str(value))
    except ValueError:
        raise Http404("No such object.") from None


def job_response(view, job: Job, **extra) -> Response:
    serializer = serializer_for(view.request, s.JobSerializer, s.ProviderJobSerializer)
    data = serializer(job, context=view.get_serializer_context()).data
    return Response({**data, **extra}, status=status.HTTP_202_ACCEPTED)


def backup_serializer(request) -> type:
    return serializer_for(request, BackupSerializer, ProviderBackupSerializer)


class ServerSnapshotRoutes(viewsets.GenericViewSet):
    """Snapshot and backup routes under a server (mixed into ServerViewSet)."""

    def _snapshot(self, server: Server, snapshot_id: str) -> Snapshot:
        return get_object_or_404(server.snapshots.all(), uuid=parse_uuid(snapshot_id))

    @extend_schema(
        methods=["get"],
        responses={200: SnapshotSerializer(many=True)},
        request=None,
        description="The server's snapshots, oldest first.",
    )
    @extend_schema(
        methods=["post"],
        request=SnapshotCreateSerializer,
        responses={202: s.JobSerializer},
        description="Take a snapshot (within the plan's snapshot slots); 202 with the job.",
    )
    @action(detail=True, methods=["get", "post"], url_path="snapshots", **UNFILTERED)
    def snapshots(self, request, uuid=None):
        server = self.get_object()
        if request.method == "GET":
            rows = server.snapshots.all()
            return Response(SnapshotSerializer(rows, many=True, context={"hosts": []}).data)
        body = SnapshotCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        snapshot, job = snapshot_service.request_snapshot(
            server=server, caller=caller_from_request(request), **body.validated_data
        )
        return job_response(self, job, snapshot=str(snapshot.uuid))

    @extend_schema(
        methods=["get"],
        parameters=[SNAPSHOT_ID],
        responses={200: SnapshotSerializer},
        request=None,
        description="One snapshot.",
    )
    @extend_schema(
        methods=["delete"],
        parameters=[SNAPSHOT_ID],
        responses={202: s.JobSerializer},
        request=None,
        description="Delete the snapshot (its data is merged into the disk); 202 with the job.",
    )
    @action(
        detail=True, methods=["get", "delete"],
        url_path=r"snapshots/(?P<snapshot_id>[^/.]+)", **UNFILTERED,
    )  # fmt: skip
    def snapshot(self, request, uuid=None, snapshot_id=None):
        server = self.get_object()
        snapshot = self._snapshot(server, snapshot_id)
        if request.method == "GET":
            return Response(SnapshotSerializer(snapshot, context={"hosts": []}).data)
        job = snapshot_service.request_delete(
            snapshot=snapshot, caller=caller_from_request(request)
        )
        return job_response(self, job)

    @extend_schema(
        parameters=[SNAPSHOT_ID],
        request=None,
        responses={202: s.JobSerializer},
        description="Revert the server to the snapshot: it is forced off; a snapshot with "
        "memory runs on from it. Later snapshots are removed. 202 with the job.",
    )
    @action(
        detail=True, methods=["post"],
        url_path=r"snapshots/(?P<snapshot_id>[^/.]+)/revert", **UNFILTERED,
    )  # fmt: skip
    def snapshot_revert(self, request, uuid=None, snapshot_id=None):
        server = self.get_object()
        snapshot = self._snapshot(server, snapshot_id)
        job = snapshot_service.request_revert(
            snapshot=snapshot, caller=caller_from_request(request)
        )
        return job_response(self, job)

    @extend_schema(
        methods=["get"],
        responses={200: BackupSerializer(many=True)},
        request=None,
        description="The server's backups, newest first.",
    )
    @extend_schema(
        methods=["post"],
        request=BackupCreateSerializer,
        responses={202: s.JobSerializer},
        description="Back up now (incremental when the chain allows; within the plan's "
        "backup slots); 202 with the job.",
    )
    @action(detail=True, methods=["get", "post"], url_path="backups", **UNFILTERED)
    def backups(self, request, uuid=None):
        server = self.get_object()
        if request.method == "GET":
            rows = server.backups.select_related("server", "parent")
            serializer = backup_serializer(request)
            context = self.get_serializer_context()
            return Response(serializer(rows, many=True, context=context).data)
        body = BackupCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        backup, job = backup_service.request_backup(
            server=server, caller=caller_from_request(request), **body.validated_data
        )
        return job_response(self, job, backup=str(backup.uuid))


class BackupViewSet(
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Backups, also of terminated servers (kept until `expires_at`)."""

    queryset = Backup.objects.select_related("server", "parent")
    serializer_class = BackupSerializer
    lookup_field = "uuid"
    ordering_fields = ["created_at"]

    def get_serializer_class(self):
        return backup_serializer(self.request)

    def get_object(self):
        self.kwargs["uuid"] = parse_uuid(self.kwargs["uuid"])
        return super().get_object()

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "server", OpenApiTypes.UUID, required=False, description="A server's uuid."
            ),
            OpenApiParameter(
                "deleted", bool, required=False,
                description="true: only backups of terminated servers (restorable into a new one).",
            ),
        ]
    )  # fmt: skip
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        params = self.request.query_params
        if "server" in params:
            try:
                server = uuid_lib.UUID(params["server"])
            except ValueError:
                raise ValidationError({"server": ["Give a server's uuid."]}) from None
            queryset = queryset.filter(server__uuid=server)
        deleted = params.getlist("deleted")
        if deleted:
            if len(deleted) > 1 or deleted[0] not in ("true", "false"):
                raise ValidationError({"deleted": ["Give true or false."]})
            if deleted[0] == "true":
                queryset = queryset.filter(server__terminated_at__isnull=False)
        return queryset

    def perform_destroy(self, instance):
        backup_service.delete_backup(backup=instance, caller=caller_from_request(self.request))

    @extend_schema(request=None, responses={202: s.JobSerializer},
                   description="Re-read the backup's chain and check every checksum.")  # fmt: skip
    @action(detail=True, methods=["post"])
    def verify(self, request, uuid=None):
        job = backup_service.request_verify(
            backup=self.get_object(), caller=caller_from_request(request)
        )
        return job_response(self, job)

    @extend_schema(request=None, responses={202: s.JobSerializer},
                   description="Restore onto the backup's own server (which must be stopped): "
                   "its disk and snapshots are replaced.")  # fmt: skip
    @action(detail=True, methods=["post"])
    def restore(self, request, uuid=None):
        job = backup_service.request_restore(
            backup=self.get_object(), caller=caller_from_request(request)
        )
        return job_response(self, job)

    @extend_schema(request=RestoreNewSerializer, responses={202: s.JobSerializer},
                   description="A new server (the backup's plan and image, new addresses) "
                   "whose disk is this backup; 202 with its provisioning job.")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="restore-new")
    def restore_new(self, request, uuid=None):
        body = RestoreNewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        server, job = backup_service.restore_into_new_server(
            backup=self.get_object(),
            hostname=body.validated_data["hostname"],
            caller=caller_from_request(request),
        )
        return job_response(self, job, new_server=str(server.uuid))
