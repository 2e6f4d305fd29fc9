"""Hypervisor backends. Only this package talks to hypervisors.

- `base.Backend`: the interface (host info, stats, provision/deprovision from a neutral
  `spec.GuestSpec`, power actions, pause/resume, console, migration signatures);
- `capabilities.Capability`: what a backend can do, read without connecting through
  `backend_capabilities(host)`;
- `registry`: one backend class per `BackendKind`; `get_backend(host)` finds it;
- `errors`: the only exceptions a backend raises;
- `libvirt_backend` (+ `libvirt_connections`, `libvirt_stats`, `domain_xml`, `nocloud`):
  KVM/QEMU and libvirt's test driver.

To add a backend (an LXC one, say):
1. `hosting/choices.py`: a `BackendKind` value (and a migration for the choices);
2. `hosting/backends/<name>_backend.py`: a `Backend` subclass decorated with
   `@register_backend(BackendKind.<NAME>)`, with its `capabilities`, `for_host()` and
   every abstract method (provision/deprovision turn a `GuestSpec` into its own terms);
3. `hosting/backends/registry.py`: its module in `BUILTIN`;
4. `tests/test_backend_<name>.py`: the same contract as `tests/test_backend_libvirt.py`.
Services, jobs, the API and the panel need no change: they go through `get_backend(host)`
and `backend_capabilities(host)`.
"""

from __future__ import annotations

from .base import Backend, HostInfo
from .capabilities import Capability
from .errors import (
    BackendError,
    Cancelled,
    DomainNotFound,
    HostUnreachable,
    ImageNotAvailable,
    NotSupported,
    OperationTimeout,
)
from .migration import MigrationResult, MigrationTuning
from .power import PowerState
from .registry import (
    backend_capabilities,
    backend_class,
    capabilities_of,
    get_backend,
    register_backend,
)
from .spec import GuestSpec, ImageSource, Progress
from .stats import DiskStats, GuestStats, HostStats, NicStats

__all__ = [
    "Backend",
    "BackendError",
    "Cancelled",
    "Capability",
    "DiskStats",
    "DomainNotFound",
    "GuestSpec",
    "GuestStats",
    "HostInfo",
    "HostStats",
    "HostUnreachable",
    "ImageNotAvailable",
    "ImageSource",
    "MigrationResult",
    "MigrationTuning",
    "NicStats",
    "NotSupported",
    "OperationTimeout",
    "PowerState",
    "Progress",
    "backend_capabilities",
    "backend_class",
    "capabilities_of",
    "get_backend",
    "register_backend",
]
