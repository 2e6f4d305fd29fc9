from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q
from django.test import override_settings

from hosting.access import Caller
from hosting.backends import BackendError
from hosting.choices import VirtKind, VirtType
from hosting.models import Host, IPPool, Server
from hosting.services.hosts import onboard_host
from testbed import layout
from testbed.hosts import TestbedError, down_all, libvirtd_alive, up_host
from testbed.layout import TestbedHost
from testbed.sshd import sshd_alive

RECORDS = Q(name__startswith="tb-hv") | Q(name__startswith="tb-ct")


class Command(BaseCommand):
    help = "Create (up) or remove (down) a multi-host libvirt testbed on this machine."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["up", "down", "status"])
        parser.add_argument("--hosts", type=int, default=2, help="number of hosts (up)")
        parser.add_argument("--queue", default="paddock", help="Celery queue of the hosts")
        parser.add_argument(
            "--containers",
            action="store_true",
            help="also register each host as an LXC container host tb-ctN (over its sshd)",
        )

    def handle(self, *args, action: str, hosts: int, queue: str, containers: bool, **options):
        if action != "status" and os.geteuid() != 0:
            raise CommandError("The testbed needs root (network namespaces, libvirtd).")
        if action == "up":
            self.up(hosts, queue)
            if containers:
                self.up_containers(hosts, queue)
        elif action == "down":
            self.down()
        else:
            self.status()

    def up(self, count: int, queue: str) -> None:
        if not 1 <= count <= 8:
            raise CommandError("--hosts must be between 1 and 8.")
        guest_net = layout.guest_subnet()
        IPPool.objects.update_or_create(
            name="testbed-guests",
            defaults={
                "network": str(guest_net),
                "gateway": str(guest_net.network_address + 1),
                "range_start": str(guest_net.network_address + 10),
                "zone": "testbed",
                "dns_servers": str(guest_net.network_address + 1),
            },
        )
        for index in range(1, count + 1):
            tb = TestbedHost(index)
            try:
                up_host(tb)
            except (TestbedError, OSError) as exc:
                raise CommandError(str(exc)) from exc
            try:
                host, _ = onboard_host(
                    caller=Caller.system(),
                    name=tb.name,
                    read_now=True,
                    libvirt_uri=tb.uri,
                    storage_pool=layout.HOST_POOL,
                    # a directory that every testbed host mounts at the same path: libvirt
                    # sees a local directory, Paddock is told it is shared
                    shared_pools=[layout.SHARED_POOL],
                    # the hosts share the machine's hostname: each gets its stream here
                    migration_address=str(tb.address.ip),
                    network=layout.GUEST_NETWORK,
                    queue=queue,
                    zone="testbed",
                    # guests hang under the nested KVM of the machines this runs on
                    virt_type=VirtType.QEMU,
                )
            except BackendError as exc:
                raise CommandError(f"{tb.name}: {exc.message}") from exc
            self.stdout.write(
                f"{host.name}: {host.libvirt_uri} {host.state}, {host.cpus} CPUs, "
                f"{host.memory_mib} MiB, {host.hypervisor_version}"
            )

    def up_containers(self, count: int, queue: str) -> None:
        """Register the hosts that `up` made as container hosts too: the same namespace,
        reached by the LXC backend over the host's sshd with the testbed's key."""
        # Settings for this command's own reading of the hosts; workers need them too
        # (printed below), unless the deployment's settings name another key.
        ssh = {}
        if not getattr(settings, "LXC_SSH_KEY", ""):
            ssh = {
                "LXC_SSH_KEY": str(layout.ssh_key()),
                "LXC_SSH_KNOWN_HOSTS": str(layout.ssh_known_hosts()),
                "LXC_SSH_ACCEPT_NEW": False,
            }
        for index in range(1, count + 1):
            tb = TestbedHost(index)
            try:
                with override_settings(**ssh):
                    host, _ = onboard_host(
                        caller=Caller.system(),
                        name=tb.ct_name,
                        read_now=True,
                        libvirt_uri=tb.ct_uri,
                        kind=VirtKind.CONTAINER,
                        backend="lxc",
                        # the bridge in the host's namespace the containers' veths join
                        network=layout.GUEST_BRIDGE,
                        queue=queue,
                        zone="testbed",
                    )
            except BackendError as exc:
                raise CommandError(f"{tb.ct_name}: {exc.message}") from exc
            self.stdout.write(
                f"{host.name}: {host.libvirt_uri} {host.state}, {host.cpus} CPUs, "
                f"{host.memory_mib} MiB, {host.hypervisor_version}"
            )
        if ssh:
            self.stdout.write(
                "Workers reach the container hosts with: "
                f"PADDOCK_LXC_SSH_KEY={ssh['LXC_SSH_KEY']} "
                f"PADDOCK_LXC_SSH_KNOWN_HOSTS={ssh['LXC_SSH_KNOWN_HOSTS']}"
            )

    def down(self) -> None:
        removed = down_all()
        with transaction.atomic():
            hosts = Host.objects.filter(RECORDS)
            Server.objects.filter(host__in=hosts).delete()
            deleted = hosts.count()
            hosts.delete()
            IPPool.objects.filter(name="testbed-guests").delete()
        self.stdout.write(f"Removed {len(removed)} namespace(s) and {deleted} host record(s).")

    def status(self) -> None:
        def state(alive: bool) -> str:
            return "up" if alive else "down"

        for host in Host.objects.filter(RECORDS).order_by("name"):
            tb = TestbedHost(int(host.name[len("tb-hv") :]))
            ssh = f"sshd {state(sshd_alive(tb))}"
            if host.name == tb.ct_name:
                self.stdout.write(f"{host.name}: {tb.ct_uri} {ssh}")
            else:
                libvirtd = f"libvirtd {state(libvirtd_alive(tb))}"
                self.stdout.write(f"{host.name}: {tb.uri} {libvirtd}, {ssh}")
