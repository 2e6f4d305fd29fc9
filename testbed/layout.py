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
SSH_PORT = 22


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


def ssh_dir() -> Path:
    """The testbed's SSH client identity and the hosts' keys, made by the first `up`."""
    return root_dir() / "ssh"


def ssh_key() -> Path:
    """The private key (ed25519, no passphrase) every testbed host's sshd accepts for root."""
    return ssh_dir() / "id_ed25519"


def ssh_known_hosts() -> Path:
    """A known_hosts file with the host key of every testbed host that is up."""
    return ssh_dir() / "known_hosts"


def ssh_authorized_keys() -> Path:
    return ssh_dir() / "authorized_keys"


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
    def ct_name(self) -> str:
        """The name of this host's record as a container host (the same namespace)."""
        return f"tb-ct{self.index}"

    @property
    def lxc_path(self) -> Path:
        """The lxcpath of the containers of this host (lxc-* -P)."""
        return self.dir / "lxc"

    @property
    def ct_uri(self) -> str:
        """How Paddock's LXC backend reaches this host: SSH as root to its sshd."""
        return f"lxc+ssh://root@{self.address.ip}:{SSH_PORT}{self.lxc_path}"

    @property
    def dir(self) -> Path:
        return root_dir() / f"hv{self.index}"

    @property
    def pidfile(self) -> Path:
        return self.dir / "libvirtd.pid"

    @property
    def logfile(self) -> Path:
        return self.dir / "libvirtd.log"

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def sshd_pidfile(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def sshd_logfile(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def ssh_host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

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
