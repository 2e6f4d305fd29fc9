from __future__ import annotations

import base64
import os
import struct
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from hosting.choices import HostState, JobKind, MemberRole, ServerState
from hosting.models import Customer, Host, Image, IPPool, Job, Membership, Plan, Server, SSHKey

# Jobs of the test run go to a queue of their own, so that a panel running on the same
# Redis never takes them.
TEST_QUEUE = f"paddock-test-{os.getpid()}"


def make_public_key(seed: int = 0, comment: str = "test@paddock") -> str:
    blob_type = b"ssh-ed25519"
    key = bytes((seed + i) % 256 for i in range(32))
    blob = struct.pack(">I", len(blob_type)) + blob_type + struct.pack(">I", 32) + key
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct-horse-battery")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Customer {n}")
    email = factory.Sequence(lambda n: f"billing{n}@example.com")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    customer = factory.SubFactory(CustomerFactory)
    role = MemberRole.OWNER


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan

    name = factory.Sequence(lambda n: f"Plan {n}")
    vcpus = 1
    memory_mib = 256
    disk_gib = 10
    monthly_price = Decimal("5.00")


class ImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    name = factory.Sequence(lambda n: f"Debian 12 #{n}")
    os_version = "12"
    volume_name = factory.Sequence(lambda n: f"base-image-{n}.qcow2")
    min_disk_gib = 2


class HostFactory(factory.django.DjangoModelFactory):
    """A host on libvirt's test driver, with its capacity already read."""

    class Meta:
        model = Host

    name = factory.Sequence(lambda n: f"host{n}")
    libvirt_uri = factory.Sequence(lambda n: f"test:///default?host={n}")
    state = HostState.ONLINE
    storage_pool = "default-pool"
    network = "default"
    queue = TEST_QUEUE
    cpus = 16
    memory_mib = 32768
    disk_gib = 2000


class IPPoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IPPool

    name = factory.Sequence(lambda n: f"pool{n}")
    network = factory.Sequence(lambda n: f"10.{n % 250}.0.0/24")
    gateway = factory.LazyAttribute(lambda p: p.network.replace("0.0/24", "0.1"))


class SSHKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SSHKey

    customer = factory.SubFactory(CustomerFactory)
    name = factory.Sequence(lambda n: f"key{n}")
    public_key = factory.Sequence(lambda n: make_public_key(n))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        obj = model_class(*args, **kwargs)
        obj.clean()
        obj.save()
        return obj


class ServerFactory(factory.django.DjangoModelFactory):
    """A server row as a service would leave it; no job is queued and no libvirt call made."""

    class Meta:
        model = Server

    customer = factory.SubFactory(CustomerFactory)
    plan = factory.SubFactory(PlanFactory)
    image = factory.SubFactory(ImageFactory)
    host = factory.SubFactory(HostFactory)
    hostname = factory.Sequence(lambda n: f"server-{n}.example.com")
    state = ServerState.RUNNING
    mac_address = factory.Sequence(
        lambda n: f"52:54:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}"
    )

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # as a service would: the host's usage counters hold the server (placement)
        obj = super()._create(model_class, *args, **kwargs)
        hosts = [h for h in (obj.host, obj.reserved_host) if h is not None]
        if hosts:
            from hosting.services.placement import recount

            recount(hosts)
            for h in hosts:
                h.refresh_from_db()
        return obj


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = JobKind.PROVISION
    server = factory.SubFactory(ServerFactory)
    host = factory.LazyAttribute(lambda j: j.server.host if j.server else None)
