"""The neutral description of a guest: what Paddock wants, not how a hypervisor says it.

The services build a `GuestSpec` from a server, its plan, image and host; a backend turns
it into its own terms (a libvirt domain and volumes today, a container tomorrow). Nothing
here names libvirt: volumes, pools and XML are the backend's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

GIB = 1024**3

# progress(percent, message): a backend reports each step of a long operation through it
Progress = Callable[[int, str], None]
# sink(chunk): where a backend streams the bytes it reads from a host (a backup store)
ByteSink = Callable[[bytes], None]


def no_progress(_percent: int, _message: str) -> None:
    return None


@dataclass(frozen=True)
class ImageSource:
    """The image a guest's disk is made from."""

    volume: str  # the base volume's name on the host (the image's identity there)
    source_path: str | None = None  # the file to upload when the host lacks the volume
    format: str = "qcow2"  # qcow2 or raw: the format of the file and of the base volume
    min_size_bytes: int = 0


@dataclass(frozen=True)
class GuestSpec:
    """Everything a backend needs to create, run and remove one guest."""

    name: str  # unique on the host, stable for the guest's life
    uuid: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    image: ImageSource
    network: str  # the host's guest network the NIC attaches to
    mac_address: str
    # the guest's addresses in CIDR form (informational for VMs, which read them from
    # the seed; a container backend configures them itself)
    addresses: tuple[str, ...] = ()
    # the NoCloud seed files (meta-data, user-data, network-config); None: no seed
    seed_files: Mapping[str, str] | None = None
    # a copy-on-write overlay of the image (fast, shares the base) or a full copy
    disk_overlay: bool = True
    # kvm or qemu (TCG); None: the host's own (Host.effective_virt_type)
    virt_type: str | None = None
    memory_hard_limit: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    # what a container backend sets up itself (a VM reads it from its seed instead)
    hostname: str = ""
    gateway: str | None = None  # the IPv4 default gateway
    nameservers: tuple[str, ...] = ()
    ssh_keys: tuple[str, ...] = ()  # root's authorized_keys
    swap_mib: int = 0  # swap beside the memory (containers)
    max_processes: int = 0  # 0: no limit (containers)

    @property
    def disk_bytes(self) -> int:
        return max(self.disk_gib * GIB, self.image.min_size_bytes)
