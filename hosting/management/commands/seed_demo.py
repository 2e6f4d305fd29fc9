"""`manage.py seed_demo`: an idempotent demo: admin, customer, plans, images, pools, hosts.

Run it as often as you like: every row is found by its natural key and brought back to
the demo values (update_or_create), passwords included, so the printed credentials work.

The demo has two modes, chosen on every run (testbed/local.py decides, and says why):

- **real VMs**: when the local hypervisor answers (`make run` as root starts libvirtd on
  `qemu:///system` with the network `paddock`), the host `local` is registered and read
  here (capacity, versions), the tiny guest image is built if missing
  (guest/build-image.sh) and offered as "Paddock tiny", with an IPv4 pool for the guest
  bridge. A new server is a real QEMU guest whose console shows it boot.
- **test driver**: otherwise the host `demo-host` on libvirt's `test:///default`, whose
  state lives in the process that opened it. Its capacity is therefore not read here but
  by the worker that runs its jobs: the seed queues a "refresh host" job, which the Celery
  worker runs within seconds of starting; until then placement refuses new servers.

The rows of the mode not in use stay, but leave the catalogue: its host goes into
maintenance, its images and pools are deactivated. Servers made in the other mode keep
their records.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from hosting.backends import BackendError
from hosting.choices import HostState, MemberRole, OSFamily, VirtKind
from hosting.models import Customer, Host, Image, IPPool, Membership, Plan
from hosting.services.hosts import refresh_host, request_refresh
from hosting.services.reconcile import reconcile_host
from testbed import local as local_hypervisor
from testbed.local import Mode

DEFAULT_ADMIN_PASSWORD = "paddock-admin"
DEFAULT_DEMO_PASSWORD = "paddock-demo"

PLANS = [
    # name, vCPUs, memory MiB, disk GiB, transfer GiB, snapshots, backups, price
    ("Tiny", 1, 192, 2, 250, 1, 1, "1.50"),  # sized for the tiny guest image
    ("Nano", 1, 256, 5, 500, 1, 1, "3.00"),
    ("Small", 1, 512, 10, 1000, 2, 2, "6.00"),
    ("Medium", 2, 1024, 20, 2000, 3, 3, "12.00"),
]
# Images that exist only as names on the test driver (no content: nothing would boot).
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
# The real-VM mode: the tiny guest image (guest/) on the local qemu:///system.
ROOT = Path(__file__).resolve().parents[3]
TINY_IMAGE_FILE = "paddock-tiny.qcow2"
TINY_IMAGE_NAME = "Paddock tiny"
LOCAL_POOL = "local-ipv4"
LOCAL_ZONE = "local"


def demo_mode() -> Mode:
    return local_hypervisor.demo_mode()


def tiny_image() -> Path:
    """The tiny guest image in the image store, built (about 10 s, once) when missing."""
    path = Path(settings.IMAGE_STORE) / TINY_IMAGE_FILE
    if path.exists():
        return path
    build = subprocess.run(
        ["bash", str(ROOT / "guest" / "build-image.sh"), str(settings.IMAGE_STORE)],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0 or not path.exists():
        tail = (build.stderr or build.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the tiny guest image could not be built ({tail[0]})")
    return path


def content_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


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
        mode = demo_mode()
        image_file = None
        if mode.real:
            try:
                if not (Path(settings.IMAGE_STORE) / TINY_IMAGE_FILE).exists():
                    self.stdout.write("Building the tiny guest image (guest/build-image.sh) ...")
                image_file = tiny_image()
            except (OSError, RuntimeError) as exc:
                mode = Mode(real=False, reason=str(exc))
        with transaction.atomic():
            admin = self.user("admin", "admin@example.com", admin_password, staff=True)
            customer = self.customer(demo_password)
            self.catalogue()
            self.pools()
            host, _ = Host.objects.update_or_create(
                name=HOST_NAME,
                defaults={
                    "libvirt_uri": HOST_URI,
                    "kind": VirtKind.VM,
                    "storage_pool": "default-pool",
                    "network": "default",
                    "queue": "paddock",
                    "zone": "",
                },
                create_defaults={
                    "libvirt_uri": HOST_URI,
                    "kind": VirtKind.VM,
                    "storage_pool": "default-pool",
                    "network": "default",
                    "queue": "paddock",
                    "state": HostState.ONLINE,
                },
            )
        if image_file is not None:
            mode = self.local_host(image_file)
        self.apply(mode)
        hosts = ", ".join(f"{h.name} ({h.libvirt_uri}, {h.state})" for h in Host.objects.all())
        self.stdout.write(
            f"Demo data ready: customer {customer.name!r} (id {customer.pk}), "
            f"{Plan.objects.active().count()} plans, {Image.objects.active().count()} images, "
            f"{IPPool.objects.filter(is_active=True).count()} IP pools; hosts: {hosts}."
        )
        if mode.real:
            self.stdout.write(
                self.style.SUCCESS(f"Demo mode: {mode.describe()}.")
                + f" New servers are QEMU guests on {local_hypervisor.BRIDGE} "
                f"({local_hypervisor.gateway()}); try plan Tiny with image {TINY_IMAGE_NAME} "
                "and watch its console."
            )
        else:
            self.stdout.write(
                self.style.WARNING(f"Demo mode: {mode.describe()}.")
                + f" Servers on {HOST_NAME} exist only inside the worker process."
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

    def local_host(self, image_file: Path) -> Mode:
        """Register the local hypervisor, its pool and the tiny image; read the host."""
        # the base volume is named after the content: a rebuilt image never hides behind
        # an old volume of the same name that overlays are backed by
        volume = f"paddock-tiny-{content_digest(image_file)}.qcow2"
        subnet = local_hypervisor.guest_subnet()
        with transaction.atomic():
            Image.objects.update_or_create(
                name=TINY_IMAGE_NAME,
                defaults={
                    "os_family": OSFamily.LINUX,
                    "os_version": "tiny",
                    "kind": VirtKind.VM,
                    "source": TINY_IMAGE_FILE,
                    "volume_name": volume,
                    "min_disk_gib": 1,
                    "cloud_init": True,
                },
            )
            pool, _ = IPPool.objects.get_or_create(
                name=LOCAL_POOL, defaults={"network": str(subnet)}
            )
            pool.network = str(subnet)
            pool.gateway = str(subnet.network_address + 1)
            pool.range_start = str(subnet.network_address + 10)
            pool.range_end = None
            pool.dns_servers = ""  # nothing answers DNS on the guest bridge
            pool.zone = LOCAL_ZONE
            pool.full_clean()
            pool.save()
            host, _ = Host.objects.update_or_create(
                name=local_hypervisor.HOST_NAME,
                defaults={
                    "libvirt_uri": local_hypervisor.URI,
                    "kind": VirtKind.VM,
                    "storage_pool": local_hypervisor.POOL,
                    "network": local_hypervisor.NETWORK,
                    "queue": "paddock",
                    "zone": LOCAL_ZONE,
                    "state": HostState.ONLINE,
                },
            )
        try:
            host = refresh_host(host=host)
            # the servers of an earlier run (stopped, or unknown while the host was away)
            # take the hypervisor's word at once, not at the next periodic reconciliation
            reconcile_host(host=host)
        except BackendError as exc:
            reason = f"{local_hypervisor.URI} could not be read: {exc.message}"
            return Mode(real=False, reason=reason)
        self.stdout.write(
            f"Host {host.name}: {host.cpus} CPUs, {host.memory_mib} MiB, {host.disk_gib} GiB "
            f"free in pool {host.storage_pool}, {host.hypervisor_version}, "
            f"libvirt {host.libvirt_version}."
        )
        return Mode(real=True)

    def apply(self, mode: Mode) -> None:
        """Put the mode's host online and the other one into maintenance; offer only the
        images and pools that work in this mode."""
        real = mode.real
        on, off = HostState.ONLINE, HostState.MAINTENANCE
        Host.objects.filter(name=HOST_NAME).update(state=off if real else on)
        if not real:
            Host.objects.filter(name=local_hypervisor.HOST_NAME).update(state=off)
        Image.objects.filter(volume_name__in=[i[2] for i in IMAGES]).update(is_active=not real)
        Image.objects.filter(name=TINY_IMAGE_NAME).update(is_active=real)
        IPPool.objects.filter(name__in=[p[0] for p in POOLS]).update(is_active=not real)
        IPPool.objects.filter(name=LOCAL_POOL).update(is_active=real)

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
