"""IP address management: hand out and free addresses from pools.

Addresses are rows that exist only while assigned; a unique constraint on the address
makes double assignment impossible. Two concurrent allocations that pick the same
candidate both try to insert it: one wins, the other retries with the next candidate.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from django.db import IntegrityError, transaction

from ..models import IPAddress, IPPool, Server
from .errors import PoolExhausted

MAX_ATTEMPTS = 64


def _candidates(pool: IPPool, used: set[str]) -> Iterator[str]:
    net = pool.ip_network
    start = ipaddress.ip_address(pool.range_start) if pool.range_start else None
    end = ipaddress.ip_address(pool.range_end) if pool.range_end else None
    reserved = {str(pool.gateway)} if pool.gateway else set()
    first = start or net.network_address + 1
    last = end or (net.broadcast_address - 1 if net.version == 4 else net.broadcast_address)
    for value in range(int(first), int(last) + 1):
        text = str(
            ipaddress.ip_address(value) if net.version == 4 else ipaddress.IPv6Address(value)
        )
        if text not in used and text not in reserved:
            yield text


def allocate(*, server: Server, pool: IPPool) -> IPAddress:
    used = set(IPAddress.objects.filter(pool=pool).values_list("address", flat=True))
    for attempt, candidate in enumerate(_candidates(pool, used)):
        if attempt >= MAX_ATTEMPTS:
            break
        try:
            with transaction.atomic():
                return IPAddress.objects.create(pool=pool, address=candidate, server=server)
        except IntegrityError:
            continue  # taken meanwhile by a concurrent allocation: try the next one
    raise PoolExhausted(f"IP pool {pool.name} has no free address.")


def allocate_address(*, server: Server, pool: IPPool, address: str) -> IPAddress | None:
    """That address of the pool for the server, if it lies in the pool's range and is free
    (None otherwise: outside the pool or its range, the gateway, or taken)."""
    try:
        wanted = ipaddress.ip_address(address)
    except ValueError:
        return None
    net = pool.ip_network
    if wanted.version != net.version or wanted not in net:
        return None
    if pool.range_start and int(wanted) < int(ipaddress.ip_address(pool.range_start)):
        return None
    if pool.range_end and int(wanted) > int(ipaddress.ip_address(pool.range_end)):
        return None
    if wanted in (net.network_address, net.broadcast_address) and net.version == 4:
        return None
    if pool.gateway and wanted == ipaddress.ip_address(pool.gateway):
        return None
    try:
        with transaction.atomic():
            return IPAddress.objects.create(pool=pool, address=str(wanted), server=server)
    except IntegrityError:
        return None  # taken


def pools_for(server: Server) -> list[IPPool]:
    """One active pool per family, preferring the host's zone."""
    zone = server.host.zone if server.host else ""
    chosen: dict[int, IPPool] = {}
    for pool in IPPool.objects.filter(is_active=True).order_by("family", "name"):
        if pool.zone and pool.zone != zone:
            continue
        current = chosen.get(pool.family)
        if current is None or (pool.zone == zone and not current.zone):
            chosen[pool.family] = pool
    return list(chosen.values())


def assign_addresses(*, server: Server, wanted: Iterable[str] = ()) -> list[IPAddress]:
    """One address per family from the pools serving the server's host; an address of
    `wanted` (an imported server's own) when it lies in that pool and is free."""
    pools = pools_for(server)
    if not any(p.family == 4 for p in pools):
        raise PoolExhausted("No active IPv4 pool serves this host.")
    wanted = list(wanted)
    assigned = []
    for pool in pools:
        chosen = None
        for address in wanted:
            chosen = allocate_address(server=server, pool=pool, address=address)
            if chosen is not None:
                break
        assigned.append(chosen or allocate(server=server, pool=pool))
    return assigned


def release_addresses(*, server: Server) -> int:
    deleted, _ = IPAddress.objects.filter(server=server).delete()
    return deleted
