"""Snapshots and backups in the API: what a customer reads, and the provider's extra."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from ..models import Backup, Server, Snapshot
from ..models.servers import hostname_validator
from ..services.snapshots import NAME_MAX
from .audience import PublicTextMixin
from .strict import StrictFieldsMixin


class SnapshotSerializer(PublicTextMixin, serializers.ModelSerializer):
    public_text_fields: tuple[str, ...] = ("error",)

    class Meta:
        model = Snapshot
        fields = ["uuid", "name", "description", "with_memory", "status", "error", "created_at"]
        read_only_fields = fields

    def to_representation(self, instance):
        self.context.setdefault("hosts", [])
        return super().to_representation(instance)


class SnapshotCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    name = serializers.CharField(max_length=NAME_MAX)
    description = serializers.CharField(
        max_length=500, required=False, default="", allow_blank=True
    )
    with_memory = serializers.BooleanField(
        required=False, default=False, help_text="Also save the memory of the running server."
    )


class BackupCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    full = serializers.BooleanField(
        required=False,
        default=False,
        help_text="A full backup even when an incremental could be taken.",
    )
    note = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


# the host name rule (hostname_validator) as the schema says it: labels of letters, digits
# and inner hyphens, 63 characters each, 253 in all
HOSTNAME_SCHEMA = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$",
}


@extend_schema_field(HOSTNAME_SCHEMA)
class HostnameField(serializers.CharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=253, validators=[hostname_validator], **kwargs)


class RestoreNewSerializer(StrictFieldsMixin, serializers.Serializer):
    hostname = HostnameField(help_text="The new server's host name.")


def public_manifest(manifest: dict) -> dict:
    """The manifest without the store's object keys."""
    disks = [
        {
            "name": d.get("name"),
            "format": d.get("format"),
            "virtual_bytes": d.get("virtual_bytes"),
            "size": d.get("object", {}).get("size"),
            "sha256": d.get("object", {}).get("sha256"),
            "stored_size": d.get("object", {}).get("stored_size"),
            "stored_sha256": d.get("object", {}).get("stored_sha256"),
        }
        for d in manifest.get("disks", [])
    ]
    return {**{k: v for k, v in manifest.items() if k != "disks"}, "disks": disks}


class BackupSerializer(PublicTextMixin, serializers.ModelSerializer):
    """A backup as its customer sees it: no store keys, no host."""

    server: serializers.SlugRelatedField[Server] = serializers.SlugRelatedField(
        slug_field="uuid", read_only=True
    )
    server_hostname = serializers.CharField(source="server.hostname", read_only=True)
    server_terminated = serializers.SerializerMethodField()
    chain_parent: serializers.SlugRelatedField[Backup] = serializers.SlugRelatedField(
        source="parent",
        slug_field="uuid",
        read_only=True,
        allow_null=True,
        help_text="The backup an incremental builds on (null for a full one).",
    )
    manifest = serializers.SerializerMethodField()
    public_text_fields: tuple[str, ...] = ("error",)

    class Meta:
        model = Backup
        fields = [
            "uuid",
            "server",
            "server_hostname",
            "server_terminated",
            "kind",
            "chain_parent",
            "status",
            "note",
            "consistency",
            "stored_bytes",
            "disk_bytes",
            "error",
            "manifest",
            "created_at",
            "completed_at",
            "verified_at",
            "verified_ok",
            "expires_at",
        ]
        read_only_fields = fields

    def get_server_terminated(self, obj: Backup) -> bool:
        return obj.server.terminated_at is not None

    def get_manifest(self, obj: Backup) -> dict:
        return public_manifest(obj.manifest)

    def to_representation(self, instance):
        self.context.setdefault("hosts", [])
        return super().to_representation(instance)


@extend_schema_serializer(component_name="Backup")
class ProviderBackupSerializer(BackupSerializer):
    """A backup (customers read no store keys and no checkpoint names)."""

    public_text_fields = ()

    class Meta(BackupSerializer.Meta):
        provider_fields = ["checkpoint"]
        fields = [*BackupSerializer.Meta.fields, *provider_fields]
        read_only_fields = fields

    def get_manifest(self, obj: Backup) -> dict:
        return obj.manifest


BackupSerializer.provider_variant = ProviderBackupSerializer  # type: ignore[attr-defined]
