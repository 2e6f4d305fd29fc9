from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from ..backends import capabilities_of
from ..choices import TokenScope
from ..models import Customer, Host, Image, IPAddress, Job, Plan, Server, SSHKey
from ..models.servers import hostname_validator
from ..validators import validate_name
from .audience import PublicTextMixin
from .representation import FastRepresentationMixin
from .strict import StrictFieldsMixin

# Customer and provider variants: `ServerSerializer` is what a customer reads, its
# `provider_variant` what staff and billing tokens read (the same fields and more, listed
# in its Meta.provider_fields). The schema documents the provider variant under the
# customer's name, with the provider's fields optional (hosting.api.schema).


class PlanSerializer(StrictFieldsMixin, FastRepresentationMixin, serializers.ModelSerializer):
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


class ImageSerializer(StrictFieldsMixin, FastRepresentationMixin, serializers.ModelSerializer):
    """An image as customers see it: no file path, no volume name."""

    class Meta:
        model = Image
        fields = [
            "id",
            "name",
            "os_family",
            "os_version",
            "kind",
            "format",
            "min_disk_gib",
            "cloud_init",
            "is_active",
        ]


@extend_schema_serializer(component_name="Image")
class ProviderImageSerializer(ImageSerializer):
    """An image: its file in the image store and its volume name on the hosts are for
    staff and billing tokens only."""

    class Meta(ImageSerializer.Meta):
        provider_fields = ["source", "volume_name"]
        fields = [*ImageSerializer.Meta.fields, *provider_fields]


ImageSerializer.provider_variant = ProviderImageSerializer  # type: ignore[attr-defined]


class HostSerializer(StrictFieldsMixin, FastRepresentationMixin, serializers.ModelSerializer):
    # what the host's backend can do (hosting.backends.Capability), read without connecting
    capabilities = serializers.SerializerMethodField()

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
            "shared_pools",
            "migration_address",
            "network",
            "queue",
            "cpus",
            "memory_mib",
            "disk_gib",
            "cpu_model",
            "hypervisor_version",
            "virt_type",
            "detected_virt_type",
            "capabilities",
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
            "detected_virt_type",
            "last_seen",
            "last_error",
        ]

    def get_capabilities(self, host: Host) -> list[str]:
        return sorted(capabilities_of(host) or ())


class OwnerSerializer(StrictFieldsMixin, serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]{1,150}$")
    email = serializers.EmailField(required=False)
    password = serializers.CharField(write_only=True, style={"input_type": "password"})

    def validate_password(self, value: str) -> str:
        validate_password(value)
        return value


class CustomerSerializer(StrictFieldsMixin, FastRepresentationMixin, serializers.ModelSerializer):
    owner = OwnerSerializer(write_only=True, required=False)

    class Meta:
        model = Customer
        fields = ["id", "name", "email", "status", "external_ref", "created_at", "owner"]
        read_only_fields = ["status", "created_at"]


class SSHKeySerializer(StrictFieldsMixin, FastRepresentationMixin, serializers.ModelSerializer):
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


ADDRESS_ROWS = "_paddock_address_rows"


def attach_page(servers: list[Server]) -> None:
    """Read what a page of servers shows beside its own columns, for `ServerSerializer`:
    the addresses in one query and the (few) hosts' names in another. Cheaper than
    prefetch_related, which builds a queryset per server."""
    by_server: dict[int, list[dict]] = {server.pk: [] for server in servers}
    rows = IPAddress.objects.filter(server_id__in=list(by_server))
    for server_id, address, family in rows.values_list("server_id", "address", "pool__family"):
        by_server[server_id].append({"address": address, "family": family})
    # the serializers show a host's name only: its JSON and decimal columns stay unread
    hosts = Host.objects.only("id", "name").in_bulk({s.host_id for s in servers} - {None})
    cache_host = Server._meta.get_field("host").set_cached_value  # type: ignore[union-attr]
    for server in servers:
        setattr(server, ADDRESS_ROWS, by_server[server.pk])
        cache_host(server, hosts.get(server.host_id))  # type: ignore[arg-type]


class ServerSerializer(PublicTextMixin, FastRepresentationMixin, serializers.ModelSerializer):
    """A server as its customer sees it: no host, no libvirt domain name, and a state
    message without infrastructure detail."""

    addresses = serializers.SerializerMethodField()
    public_text_fields: tuple[str, ...] = ("state_message",)

    class Meta:
        model = Server
        fields = [
            "id",
            "uuid",
            "customer",
            "plan",
            "image",
            "hostname",
            "state",
            "suspended",
            "state_message",
            "mac_address",
            "addresses",
            "created_at",
            "updated_at",
            "terminated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(AddressSerializer(many=True))
    def get_addresses(self, server: Server) -> list[dict]:
        rows = getattr(server, ADDRESS_ROWS, None)
        if rows is not None:  # a list page: read for the whole page in one query
            return rows
        # uses the prefetched rows; `pool` is joined by the prefetch queryset
        return [{"address": a.address, "family": a.pool.family} for a in server.addresses.all()]


@extend_schema_serializer(component_name="Server")
class ProviderServerSerializer(ServerSerializer):
    """A server. For customers: no host, no libvirt domain name, and a state message
    without infrastructure detail."""

    host: serializers.SlugRelatedField[Host] = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True
    )
    public_text_fields = ()

    class Meta(ServerSerializer.Meta):
        provider_fields = ["host", "domain_name"]
        fields = [*ServerSerializer.Meta.fields, *provider_fields]
        read_only_fields = fields


ServerSerializer.provider_variant = ProviderServerSerializer  # type: ignore[attr-defined]


class ServerCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all(), required=False)
    plan = serializers.PrimaryKeyRelatedField(queryset=Plan.objects.filter(is_active=True))
    image = serializers.PrimaryKeyRelatedField(queryset=Image.objects.filter(is_active=True))
    hostname = serializers.CharField(max_length=253, validators=[hostname_validator])
    ssh_keys = serializers.PrimaryKeyRelatedField(
        queryset=SSHKey.objects.all(), many=True, required=False
    )


class JobSerializer(PublicTextMixin, FastRepresentationMixin, serializers.ModelSerializer):
    """A job as a customer sees it: no log, host or requester, and its message and error
    without infrastructure detail."""

    server: serializers.SlugRelatedField[Server] = serializers.SlugRelatedField(
        slug_field="uuid",
        read_only=True,
        allow_null=True,
        help_text="The server's uuid; null for a host's job.",
    )
    public_text_fields: tuple[str, ...] = ("message", "error")

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "progress",
            "message",
            "error",
            "server",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


@extend_schema_serializer(component_name="Job")
class ProviderJobSerializer(JobSerializer):
    """A job. For customers: no log, host or requester, and its message and error without
    infrastructure detail."""

    host: serializers.SlugRelatedField[Host] = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True
    )
    requested_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    target_host: serializers.SlugRelatedField[Host] = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True
    )
    log = serializers.ListField(child=serializers.CharField(), read_only=True)
    params = serializers.DictField(read_only=True)
    result = serializers.DictField(read_only=True)
    public_text_fields = ()

    class Meta(JobSerializer.Meta):
        provider_fields = ["log", "host", "target_host", "params", "result", "requested_by"]
        fields = [*JobSerializer.Meta.fields, *provider_fields]
        read_only_fields = fields


JobSerializer.provider_variant = ProviderJobSerializer  # type: ignore[attr-defined]


class MigrateSerializer(StrictFieldsMixin, serializers.Serializer):
    """A migration request (provider only)."""

    target_host = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Host.objects.all(),
        required=False,
        allow_null=True,
        help_text="The host to move to (its name); chosen by placement when absent.",
    )
    live = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Live (the server keeps running) or offline; default: live if it runs.",
    )
    bandwidth_mib_s = serializers.IntegerField(required=False, min_value=1)
    downtime_ms = serializers.IntegerField(required=False, min_value=1, max_value=10_000)
    postcopy = serializers.BooleanField(required=False)
    timeout_s = serializers.IntegerField(required=False, min_value=10, max_value=86_400)


class ConsoleSerializer(PublicTextMixin, serializers.Serializer):
    """The console tail; `error` is customer-safe (the view passes the host's name)."""

    public_text_fields: tuple[str, ...] = ("error",)

    text = serializers.CharField(help_text="The last 64 KiB of the serial console.")
    fetched_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


@extend_schema_serializer(component_name="Console")
class ProviderConsoleSerializer(ConsoleSerializer):
    """The tail of the serial console (customers get a neutral `error`)."""

    public_text_fields = ()


ConsoleSerializer.provider_variant = ProviderConsoleSerializer  # type: ignore[attr-defined]


class TokenCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    name = serializers.CharField(
        max_length=100, required=False, default="", validators=[validate_name]
    )
    scope = serializers.ChoiceField(choices=TokenScope.choices)
