"""The backend registry: one entry per backend kind (`BackendKind`), found by a host's
`backend` field.

A backend class registers itself with `@register_backend(BackendKind.X)`; the modules of
the built-in backends are listed in `BUILTIN` and imported on the first lookup, so that
importing this package does not import libvirt (or any other hypervisor library).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .capabilities import Capability
from .errors import BackendError

if TYPE_CHECKING:
    from ..models import Host
    from .base import Backend

BUILTIN = ("hosting.backends.libvirt_backend", "hosting.backends.lxc_backend")

_registry: dict[str, type[Backend]] = {}
_loaded = False
_load_lock = threading.Lock()

B = TypeVar("B", bound="type[Backend]")


def register_backend(kind: str) -> Callable[[B], B]:
    """Class decorator: `cls` is the backend of hosts whose `backend` is `kind`."""

    def decorate(cls: B) -> B:
        existing = _registry.get(kind)
        if existing is not None and existing is not cls:
            raise BackendError(f"Backend kind {kind!r} is already {existing.__name__}.")
        cls.kind = kind
        _registry[kind] = cls
        return cls

    return decorate


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if not _loaded:
            for module in BUILTIN:
                importlib.import_module(module)
            _loaded = True


def backends() -> dict[str, type[Backend]]:
    """Every registered backend class by kind."""
    _load_builtin()
    return dict(_registry)


def backend_class(kind: str) -> type[Backend]:
    _load_builtin()
    try:
        return _registry[kind]
    except KeyError:
        raise BackendError(f"Unknown backend {kind!r}.") from None


def get_backend(host: Host) -> Backend:
    """The backend of a host (no connection is opened until it is used)."""
    try:
        cls = backend_class(host.backend)
    except BackendError:
        raise BackendError(f"Unknown backend {host.backend!r} for host {host.name}.") from None
    return cls.for_host(host)


def backend_capabilities(host: Host) -> frozenset[Capability]:
    """What the host's backend can do, without connecting to the host."""
    return backend_class(host.backend).capabilities_for(host)


def capabilities_of(host: Host) -> frozenset[str] | None:
    """`backend_capabilities(host)` as the action registry reads it (hosting/actions.py):
    None for a host whose backend kind is unknown."""
    try:
        return backend_capabilities(host)
    except BackendError:
        return None
