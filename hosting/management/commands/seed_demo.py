"""`manage.py seed_demo`: an idempotent demo: admin, customer, plans, images, pools, a host.

Run it as often as you like: every row is found by its natural key and brought back to
the demo values (update_or_create), passwords included, so the printed credentials work.

The demo host runs on libvirt's test driver (`test:///default`), whose state lives in the
process that opened it. Its capacity is therefore not read here but by the worker that
will run its jobs: the seed queues a "refresh host" job (hosting.services.hosts
.request_refresh), and the Celery worker reads the capacity within seconds of starting.
Until that job has run, the host has no capacity and placement refuses new servers.
"""

from __future__ import annotations

import os
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from hosting.choices import HostState, MemberRole, OSFamily, VirtKind
from hosting.models import Customer, Host, Image, IPPool, Membership, Plan
from hosting.services.hosts import request_refresh

DEFAULT_ADMIN_PASSWORD = "paddock-admin"
DEFAULT_DEMO_PASSWORD = "paddock-demo"

PLANS = [
    # name, vCPUs, memory MiB, disk GiB, transfer GiB, snapshots, backups, price
    ("Nano", 1, 256, 5, 500, 1, 1, "3.00"),
    ("Small", 1, 512, 10, 1000, 2, 2, "6.00"),
    ("Medium", 2, 1024, 20, 2000, 3, 3, "12.00"),
]
IMAGES = [
    # name, OS version, volume name, minimum disk GiB
    ("Debian 12", "12", "debian-12.qcow2", 2),
    ("Ubuntu 24.04", "24.04", "ubuntu-24.04.qcow2", 3),
    ("Alpine 3.20", "3.20", "alpine-3.20.qcow2", 1),
]
POOLS = [
    # name, network, gateway, DNS servers (documentation ranges: RFC 5737, RFC 3849)
    ("demo-ipv4", "192.0.2.0/24", "192.0.2.1", "192.0.2.53"),
    ("demo-ipv6", "2001:db8::/64", "2001:db8::1", "2001:db8::53"),
]
HOST_NAME = "demo-host"
HOST_URI = "test:///default"


def broker_reachable(timeout: float = 3.0) -> bool:
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception:
        return False
    return True


class Command(BaseCommand):
    help = "Create or update the demo data (idempotent) and print the demo credentials."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000/",
            help="The panel's URL, printed with the credentials.",
        )
        parser.add_argument(
            "--no-refresh",
            action="store_true",
            help="Do not queue the job that reads the demo host's capacity.",
        )

    def handle(self, *args, url: str, no_refresh: bool, **options) -> None:
        admin_password = os.environ.get("DEMO_ADMIN_PASSWORD") or DEFAULT_ADMIN_PASSWORD
        demo_password = os.environ.get("DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD
        with transaction.atomic():
            admin = self.user("admin", "admin@example.com", admin_password, staff=True)
            customer = self.customer(demo_password)
            self.catalogue()
            self.pools()
            host, created = Host.objects.update_or_create(
                name=HOST_NAME,
                defaults={
                    "libvirt_uri": HOST_URI,
                    "kind": VirtKind.VM,
                    "storage_pool": "default-pool",
                    "network": "default",
                    "queue": "paddock",
                    "zone": "",
                },
                # A new demo host starts online; an admin's later choice (maintenance) stays.
                create_defaults={
                    "libvirt_uri": HOST_URI,
                    "kind": VirtKind.VM,
                    "storage_pool": "default-pool",
                    "network": "default",
                    "queue": "paddock",
                    "state": HostState.ONLINE,
                },
            )
        self.stdout.write(
            f"Demo data ready: customer {customer.name!r} (id {customer.pk}), "
            f"{Plan.objects.count()} plans, {Image.objects.count()} images, "
            f"{IPPool.objects.count()} IP pools, host {host.name} ({host.libvirt_uri}, "
            f"{'new' if created else 'updated'})."
        )
        self.refresh(host, admin, skip=no_refresh)
        self.stdout.write(
            self.style.SUCCESS(
                "\n"
                f"  Paddock is at  {url}\n"
                f"  Admin:         admin / {admin_password}   ({url.rstrip('/')}/admin/)\n"
                f"  Demo customer: demo / {demo_password}\n"
                "  (demo passwords: set DEMO_ADMIN_PASSWORD / DEMO_PASSWORD to change them)\n"
            )
        )

    def user(self, username: str, email: str, password: str, *, staff: bool = False):
        User = get_user_model()
        user, _ = User.objects.update_or_create(
            username=username,
            defaults={
                "email": email,
                "is_active": True,
                "is_staff": staff,
                "is_superuser": staff,
            },
        )
        if not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    def customer(self, password: str) -> Customer:
        customer, _ = Customer.objects.update_or_create(
            external_ref="demo",
            defaults={"name": "Demo Customer", "email": "demo@example.com"},
        )
        user = self.user("demo", "demo@example.com", password)
        Membership.objects.update_or_create(
            user=user, customer=customer, defaults={"role": MemberRole.OWNER}
        )
        return customer

    def catalogue(self) -> None:
        for name, vcpus, memory, disk, transfer, snaps, backups, price in PLANS:
            Plan.objects.update_or_create(
                name=name,
                defaults={
                    "kind": VirtKind.VM,
                    "vcpus": vcpus,
                    "memory_mib": memory,
                    "disk_gib": disk,
                    "transfer_gib": transfer,
                    "snapshot_slots": snaps,
                    "backup_slots": backups,
                    "monthly_price": Decimal(price),
                    "is_active": True,
                },
            )
        for name, version, volume, min_disk in IMAGES:
            Image.objects.update_or_create(
                volume_name=volume,
                defaults={
                    "name": name,
                    "os_family": OSFamily.LINUX,
                    "os_version": version,
                    "kind": VirtKind.VM,
                    "source": "",
                    "min_disk_gib": min_disk,
                    "cloud_init": True,
                    "is_active": True,
                },
            )

    def pools(self) -> None:
        for name, network, gateway, dns in POOLS:
            pool, _ = IPPool.objects.get_or_create(name=name, defaults={"network": network})
            pool.network = network
            pool.gateway = gateway
            pool.dns_servers = dns
            pool.is_active = True
            pool.full_clean()
            pool.save()

    def refresh(self, host: Host, admin, *, skip: bool) -> None:
        if skip:
            return
        if not broker_reachable():
            self.stdout.write(
                self.style.WARNING(
                    f"The broker at {settings.CELERY_BROKER_URL} does not answer: the demo "
                    "host's capacity was not requested. Start the stack (make run) or run "
                    "this command again once Redis is up."
                )
            )
            return
        job = request_refresh(host=host, requested_by=admin)
        self.stdout.write(
            f"Queued job #{job.pk} to read {host.name}'s capacity; the worker on queue "
            f"{host.queue!r} runs it (the test driver's state lives in that process)."
        )
