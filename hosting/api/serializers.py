from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..choices import TokenScope
from ..models import Customer, Host, Image, IPAddress, Job, Plan, Server, SSHKey
from ..models.servers import hostname_validator


class PlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = [
            "id",
            "name",
            "kind",
            "vcpus",
            "memory_mib",
            "disk_gib",
            "transfer_gib",
            "snapshot_slots",
            "backup_slots",
            "monthly_price",
            "is_active",
        ]


class ImageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Image
        fields = [
            "id",
            "name",
            "os_family",
            "os_version",
            "kind",
            "format",
            "source",
            "volume_name",
            "min_disk_gib",
            "cloud_init",
            "is_active",
        ]


class HostSerializer(serializers.ModelSerializer):
    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "libvirt_uri",
            "backend",
            "kind",
            "state",
            "zone",
            "storage_pool",
            "network",
            "queue",
            "cpus",
            "memory_mib",
            "disk_gib",
            "cpu_model",
            "hypervisor_version",
            "cpu_overcommit",
            "ram_overcommit",
            "last_seen",
            "last_error",
        ]
        read_only_fields = [
            "state",
            "cpus",
            "memory_mib",
            "disk_gib",
            "cpu_model",
            "hypervisor_version",
            "last_seen",
            "last_error",
        ]


class OwnerSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]{1,150}$")
    email = serializers.EmailField(required=False)
    password = serializers.CharField(write_only=True, style={"input_type": "password"})

    def validate_password(self, value: str) -> str:
        validate_password(value)
        return value


class CustomerSerializer(serializers.ModelSerializer):
    owner = OwnerSerializer(write_only=True, required=False)

    class Meta:
        model = Customer
        fields = ["id", "name", "email", "status", "external_ref", "created_at", "owner"]
        read_only_fields = ["status", "created_at"]


class SSHKeySerializer(serializers.ModelSerializer):
    customer = serializers.PrimaryKeyRelatedField(
        queryset=Customer.objects.all(),
        required=False,
        help_text="Defaults to the caller's customer when it has exactly one.",
    )

    class Meta:
        model = SSHKey
        fields = ["id", "customer", "name", "public_key", "fingerprint", "created_at"]
        read_only_fields = ["fingerprint", "created_at"]
        # uniqueness per customer is checked by the service, which knows the customer
        validators: list = []


class AddressSerializer(serializers.ModelSerializer):
    family = serializers.IntegerField(source="pool.family", read_only=True)

    class Meta:
        model = IPAddress
        fields = ["address", "family"]


class ServerSerializer(serializers.ModelSerializer):
    addresses = serializers.SerializerMethodField()
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Server
        fields = [
            "id",
            "uuid",
            "customer",
            "plan",
            "image",
            "host",
            "hostname",
            "state",
            "state_message",
            "domain_name",
            "mac_address",
            "addresses",
            "created_at",
            "updated_at",
            "terminated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(AddressSerializer(many=True))
    def get_addresses(self, server: Server) -> list[dict]:
        # uses the prefetched rows; `pool` is joined by the prefetch queryset
        return [{"address": a.address, "family": a.pool.family} for a in server.addresses.all()]


class ServerCreateSerializer(serializers.Serializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all(), required=False)
    plan = serializers.PrimaryKeyRelatedField(queryset=Plan.objects.filter(is_active=True))
    image = serializers.PrimaryKeyRelatedField(queryset=Image.objects.filter(is_active=True))
    hostname = serializers.CharField(max_length=253, validators=[hostname_validator])
    ssh_keys = serializers.PrimaryKeyRelatedField(
        queryset=SSHKey.objects.all(), many=True, required=False
    )


class JobSerializer(serializers.ModelSerializer):
    server = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "progress",
            "message",
            "log",
            "error",
            "server",
            "host",
            "requested_by",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class ConsoleSerializer(serializers.Serializer):
    text = serializers.CharField(help_text="The last 64 KiB of the serial console.")
    fetched_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, default="")
    scope = serializers.ChoiceField(choices=TokenScope.choices)
