"""Names, addresses and directories of the testbed: one place, derived from settings."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

BRIDGE = "pdk-tb0"
NETNS_PREFIX = "pdk-hv"
GUEST_BRIDGE = "pdkbr0"
GUEST_NETWORK = "paddock"
HOST_POOL = "paddock"
SHARED_POOL = "paddock-shared"


def root_dir() -> Path:
    return Path(settings.TESTBED_DIR)


def subnet() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(settings.TESTBED_SUBNET)


def guest_subnet() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(settings.TESTBED_GUEST_SUBNET)


def bridge_address() -> ipaddress.IPv4Interface:
    net = subnet()
    return ipaddress.IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")


def shared_pool_dir() -> Path:
    return root_dir() / "shared"


@dataclass(frozen=True)
class TestbedHost:
    __test__ = False  # not a pytest test class, despite the name

    index: int

    @property
    def name(self) -> str:
        return f"tb-hv{self.index}"

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.index}"

    @property
    def veth(self) -> str:
        return f"{NETNS_PREFIX}{self.index}"

    @property
    def address(self) -> ipaddress.IPv4Interface:
        net = subnet()
        return ipaddress.IPv4Interface(f"{net.network_address + 10 + self.index}/{net.prefixlen}")

    @property
    def uri(self) -> str:
        return f"qemu+tcp://{self.address.ip}/system"

    @property
    def dir(self) -> Path:
        return root_dir() / f"hv{self.index}"

    @property
    def pidfile(self) -> Path:
        return self.dir / "libvirtd.pid"

    @property
    def logfile(self) -> Path:
        return self.dir / "libvirtd.log"

    def bind_mounts(self) -> list[tuple[Path, str]]:
        """(directory of this host, path it is mounted over inside the host)."""
        return [
            (self.dir / "run", "/run/libvirt"),
            (self.dir / "lib", "/var/lib/libvirt"),
            (self.dir / "etc", "/etc/libvirt"),
            (self.dir / "log", "/var/log/libvirt"),
            (self.dir / "cache", "/var/cache/libvirt"),
            (self.dir / "storage", str(settings.STORAGE_ROOT)),
        ]
