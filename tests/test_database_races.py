"""Concurrent requests against the real database (issue 7 #7): SQLite, the default of
`make run`, never answers "database is locked" with a 500; two requests that race past
the same check get a duplicate's 400/409 naming the field; a busy database is a 503
with Retry-After; a host refresh that meets a busy database raises a transient error."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator

import pytest
from django.db import connection, connections, transaction
from rest_framework.test import APIClient

from hosting.choices import TokenScope
from hosting.models import Customer, SSHKey
from hosting.services.errors import DatabaseBusy
from hosting.services.hosts import refresh_host
from hosting.services.tokens import issue_token

from .factories import HostFactory, IPPoolFactory, make_public_key

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS = 16


def billing_key(staff) -> str:
    return issue_token(user=staff, scope=TokenScope.BILLING)[1]


def in_threads(count: int, work) -> list:
    """Run work(i) in `count` threads released together; each closes its connection."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_concurrent_orders_get_no_server_error(staff, customer, plan, image):
    # given room for every order: one host, one pool, a billing token per client
    HostFactory(cpus=64, memory_mib=65536, disk_gib=4000)
    IPPoolFactory(network="198.51.100.0/24", gateway="198.51.100.1")
    key = billing_key(staff)

    def order(i: int) -> int:
        client = APIClient(raise_request_exception=False)  # a 500 is a status here
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        response = client.post(
            "/api/v1/servers/",
            {"customer": customer.pk, "plan": plan.pk, "image": image.pk, "hostname": f"o{i}"},
            format="json",
        )
        return response.status_code

    # when 16 orders arrive at once
    codes = in_threads(ORDERS, order)
    # then every one is accepted: none waits into a "database is locked" error
    assert codes == [202] * ORDERS
    assert customer.servers.count() == ORDERS


@contextlib.contextmanager
def row_inserted_elsewhere(insert, release_after: float = 1.0) -> Iterator[threading.Event]:
    """Insert a row in another connection's open transaction; commit it `release_after`
    seconds after the caller was told the row is in (while its own request races)."""
    inserted, done = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                insert()
                inserted.set()
                done.wait(release_after)
        finally:
            inserted.set()
            connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    inserted.wait(30)
    try:
        yield inserted
    finally:
        done.set()
        thread.join(60)


def test_racing_customer_orders_with_one_external_ref_are_refused_by_field(staff):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {billing_key(staff)}")
    body = {"name": "Second", "email": "b@example.com", "external_ref": "crm-42"}
    # given another request that created crm-42 and has not committed yet
    with row_inserted_elsewhere(
        lambda: Customer.objects.create(name="First", email="a@example.com", external_ref="crm-42")
    ):
        # when the same reference is ordered meanwhile
        response = client.post("/api/v1/customers/", body, format="json")
    # then the second is refused as a duplicate, naming the field, and not a 500
    assert response.status_code in (400, 409), response.content
    error = response.json()["error"]
    assert "external_ref" in error["fields"] or "external reference" in error["message"]
    assert Customer.objects.filter(external_ref="crm-42").count() == 1


def test_racing_ssh_keys_of_one_name_are_refused_by_field(owner, customer):
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION="Bearer "
        + issue_token(user=owner, scope=TokenScope.CUSTOMER, customer=customer)[1]
    )
    with row_inserted_elsewhere(
        lambda: SSHKey.objects.create(
            customer=customer, name="laptop", public_key=make_public_key(1), fingerprint="x"
        )
    ):
        response = client.post(
            "/api/v1/ssh-keys/", {"name": "laptop", "public_key": make_public_key(2)}, format="json"
        )
    assert response.status_code in (400, 409), response.content
    assert set(response.json()["error"]["fields"]) == {"name"}
    assert SSHKey.objects.filter(customer=customer, name="laptop").count() == 1


@contextlib.contextmanager
def database_write_locked(table: str) -> Iterator[None]:
    """Another connection holds the write lock (of the SQLite file, or of `table` on
    PostgreSQL) while this connection waits only briefly for locks."""
    if connection.vendor == "sqlite":
        other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 100")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA busy_timeout = 30000")
        return
    import psycopg

    db = connection.settings_dict
    other = psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
    )
    other.execute(f'LOCK TABLE "{table}" IN EXCLUSIVE MODE')
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '100ms'")
    try:
        yield
    finally:
        other.rollback()
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")


def test_a_locked_database_is_a_503_with_retry_after(owner, customer):
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION="Bearer "
        + issue_token(user=owner, scope=TokenScope.CUSTOMER, customer=customer)[1]
    )
    client.get("/api/v1/ssh-keys/")  # token used once: its last-use write is done
    with database_write_locked("hosting_sshkey"):
        response = client.post(
            "/api/v1/ssh-keys/", {"name": "k", "public_key": make_public_key(3)}, format="json"
        )
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "unavailable"
    assert not SSHKey.objects.exists()


def test_host_refresh_on_a_busy_database_raises_a_transient_error():
    # given a host (libvirt's test driver) and a database that stays locked
    host = HostFactory(state="offline")
    with database_write_locked("hosting_host"), pytest.raises(DatabaseBusy) as caught:
        refresh_host(host=host)
    # then the error is one the job runner retries
    assert caught.value.transient is True
    # and once the database answers, the refresh goes through
    assert refresh_host(host=host).state == "online"
