"""Concurrent allocations never hand out one address twice: the unique constraint decides."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from hosting.models import IPAddress, Server
from hosting.services import ipam

from .factories import IPPoolFactory

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 8


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row-level concurrency needs PostgreSQL"
)
def test_concurrent_allocations_get_distinct_addresses(customer, plan, image, host):
    pool = IPPoolFactory(network="198.51.100.0/24", gateway="198.51.100.1")
    servers = [
        Server.objects.create(
            customer=customer,
            plan=plan,
            image=image,
            host=host,
            hostname=f"c{i}",
            mac_address=f"52:54:00:00:01:{i:02x}",
        )
        for i in range(WORKERS)
    ]
    barrier = threading.Barrier(WORKERS)
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def allocate(server: Server) -> None:
        try:
            with transaction.atomic():
                # every transaction reads the same "used" set before any of them inserts
                used = set(IPAddress.objects.filter(pool=pool).values_list("address", flat=True))
                assert not used
                barrier.wait(timeout=10)
                results[server.pk] = ipam.allocate(server=server, pool=pool).address
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=allocate, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    addresses = list(results.values())
    assert len(addresses) == WORKERS
    assert len(set(addresses)) == WORKERS
    assert IPAddress.objects.count() == WORKERS
    # they all started from the same candidate and were pushed along by the constraint
    assert sorted(addresses, key=lambda a: int(a.rsplit(".", 1)[1])) == [
        f"198.51.100.{i}" for i in range(2, 2 + WORKERS)
    ]
