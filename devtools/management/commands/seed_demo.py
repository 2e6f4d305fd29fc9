"""`manage.py seed_demo`: an idempotent demo: admin, customer, plans, images, pools, hosts.

Run it as often as you like: it makes what is missing and never collides with, nor
overwrites, what an admin changed since (devtools/seeding.py: a plan's price, a plan or
image deactivated, an image renamed, a row deleted); it says what it left alone. The demo
logins are the exception: their passwords are set again, so the printed credentials work.

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

from devtools.seeding import Seeder
from hosting.access import Caller
from hosting.backends import BackendError
from hosting.choices import HostState, MemberRole, OSFamily, VirtKind
from hosting.demo_passwords import DEMO_ADMIN_PASSWORD, DEMO_PASSWORD
from hosting.models import Customer, Host, Image, IPPool, Membership, Plan
from hosting.services.hosts import onboard_host, request_refresh
from hosting.services.reconcile import reconcile_host
from testbed import local as local_hypervisor
from testbed.local import Mode

DEFAULT_ADMIN_PASSWORD = DEMO_ADMIN_PASSWORD
DEFAULT_DEMO_PASSWORD = DEMO_PASSWORD
# the admin's and the customer's logins, in the order of demo_passwords()
DEMO_USERNAMES = ("admin", "demo")

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
TINY_IMAGE_KEY = "image:paddock-tiny"


def image_key(volume: str) -> str:
    return f"image:{volume}"


def demo_passwords() -> tuple[str, str]:
    """The admin's and the customer's passwords: DEMO_ADMIN_PASSWORD and DEMO_PASSWORD
    (environment or .env), by default the ones the README publishes."""
    return (
        os.environ.get("DEMO_ADMIN_PASSWORD") or DEFAULT_ADMIN_PASSWORD,
        os.environ.get("DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD,
    )


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


def broker_reachable(timeout: int = 3) -> bool:
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
        admin_password, demo_password = demo_passwords()
        self.seeder = Seeder()
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
            self.catalogue(offered=not mode.real)
            self.pools(offered=not mode.real)
            host = self.seeder.ensure(
                f"host:{HOST_NAME}",
                Host,
                lookup={"name": HOST_NAME},
                values={
                    "name": HOST_NAME,
                    "libvirt_uri": HOST_URI,
                    "kind": VirtKind.VM,
                    "storage_pool": "default-pool",
                    "network": "default",
                    "queue": "paddock",
                    "zone": "",
                },
                create_only={"state": HostState.ONLINE},
            )
        if image_file is not None:
            mode = self.local_host(image_file)
        with transaction.atomic():
            self.apply(mode)
        hosts = ", ".join(f"{h.name} ({h.libvirt_uri}, {h.state})" for h in Host.objects.all())
        who = f"customer {customer.name!r} (id {customer.pk})" if customer else "no customer"
        self.stdout.write(
            f"Demo data ready: {who}, "
            f"{Plan.objects.active().count()} plans, {Image.objects.active().count()} images, "
            f"{IPPool.objects.filter(is_active=True).count()} IP pools; hosts: {hosts}."
        )
        if self.seeder.notes:
            self.stdout.write(
                self.style.WARNING("The seed left alone what was changed after it ran:")
            )
            for line in self.seeder.notes:
                self.stdout.write(f"  - {line}")
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
            if host is not None:
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
            self.seeder.ensure(
                TINY_IMAGE_KEY,
                Image,
                lookup={"name": TINY_IMAGE_NAME},
                values={
                    "name": TINY_IMAGE_NAME,
                    "os_family": OSFamily.LINUX,
                    "os_version": "tiny",
                    "kind": VirtKind.VM,
                    "source": TINY_IMAGE_FILE,
                    "volume_name": volume,
                    "min_disk_gib": 1,
                    "cloud_init": True,
                },
                create_only={"is_active": True},
            )
            self.seeder.ensure(
                f"ippool:{LOCAL_POOL}",
                IPPool,
                lookup={"name": LOCAL_POOL},
                values={
                    "name": LOCAL_POOL,
                    "network": str(subnet),
                    "gateway": str(subnet.network_address + 1),
                    "range_start": str(subnet.network_address + 10),
                    "range_end": None,
                    "dns_servers": "",  # nothing answers DNS on the guest bridge
                    "zone": LOCAL_ZONE,
                },
                create_only={"is_active": True},
            )
            host = self.seeder.ensure(
                f"host:{local_hypervisor.HOST_NAME}",
                Host,
                lookup={"name": local_hypervisor.HOST_NAME},
                values={
                    "name": local_hypervisor.HOST_NAME,
                    "libvirt_uri": local_hypervisor.URI,
                    "kind": VirtKind.VM,
                    "storage_pool": local_hypervisor.POOL,
                    "network": local_hypervisor.NETWORK,
                    "virt_type": local_hypervisor.virt_type(),
                    "queue": "paddock",
                    "zone": LOCAL_ZONE,
                },
                create_only={"state": HostState.ONLINE},
            )
        if host is None or host.libvirt_uri != local_hypervisor.URI:
            reason = f"the seed could not register the host {local_hypervisor.HOST_NAME!r}"
            return Mode(real=False, reason=reason)
        try:
            # the one onboarding service reads it (and audits); only the state is the seed's
            host, _ = onboard_host(
                caller=Caller.system(), name=host.name, read_now=True, state=HostState.ONLINE
            )
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
        """Put the mode's host online and the other one into maintenance (a host's state is
        the demo's switch, whatever it was); offer only the images and pools that work in
        this mode, unless an admin (de)activated them."""
        real = mode.real
        on, off = HostState.ONLINE, HostState.MAINTENANCE
        self.set_host_state(f"host:{HOST_NAME}", off if real else on)
        if not real:
            self.set_host_state(f"host:{local_hypervisor.HOST_NAME}", off)
        offered: list[tuple[str, type[Image] | type[IPPool], dict, bool]] = [
            (image_key(volume), Image, {"volume_name": volume}, not real)
            for _, _, volume, _ in IMAGES
        ]
        offered.append((TINY_IMAGE_KEY, Image, {"name": TINY_IMAGE_NAME}, real))
        offered += [(f"ippool:{p[0]}", IPPool, {"name": p[0]}, not real) for p in POOLS]
        offered.append((f"ippool:{LOCAL_POOL}", IPPool, {"name": LOCAL_POOL}, real))
        for key, model, lookup, active in offered:
            self.seeder.ensure(
                key, model, lookup=lookup, values={"is_active": active}, create=False
            )

    def set_host_state(self, key: str, state: str) -> None:
        host = self.seeder.seeded(key, Host)
        if host is not None:
            Host.objects.filter(pk=host.pk).update(state=state)

    def user(self, username: str, email: str, password: str, *, staff: bool = False):
        """The demo logins are the seed's own: brought back so the printed credentials work."""
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

    def customer(self, password: str) -> Customer | None:
        customer = self.seeder.ensure(
            "customer:demo",
            Customer,
            lookup={"external_ref": "demo"},
            values={"name": "Demo Customer", "email": "demo@example.com", "external_ref": "demo"},
        )
        user = self.user("demo", "demo@example.com", password)
        if customer is not None:
            self.seeder.ensure(
                "membership:demo",
                Membership,
                lookup={"user_id": user.pk, "customer_id": customer.pk},
                values={"user_id": user.pk, "customer_id": customer.pk, "role": MemberRole.OWNER},
            )
        return customer

    def catalogue(self, *, offered: bool) -> None:
        for name, vcpus, memory, disk, transfer, snaps, backups, price in PLANS:
            self.seeder.ensure(
                f"plan:{name}",
                Plan,
                lookup={"name": name},
                values={
                    "name": name,
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
            self.seeder.ensure(
                image_key(volume),
                Image,
                lookup={"volume_name": volume},
                values={
                    "name": name,
                    "os_family": OSFamily.LINUX,
                    "os_version": version,
                    "kind": VirtKind.VM,
                    "source": "",
                    "volume_name": volume,
                    "min_disk_gib": min_disk,
                    "cloud_init": True,
                },
                create_only={"is_active": offered},
            )

    def pools(self, *, offered: bool) -> None:
        for name, network, gateway, dns in POOLS:
            self.seeder.ensure(
                f"ippool:{name}",
                IPPool,
                lookup={"name": name},
                values={"name": name, "network": network, "gateway": gateway, "dns_servers": dns},
                create_only={"is_active": offered},
            )

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
        job = request_refresh(host=host, caller=Caller(user=admin))
        self.stdout.write(
            f"Queued job #{job.pk} to read {host.name}'s capacity; the worker on queue "
            f"{host.queue!r} runs it (the test driver's state lives in that process)."
        )
