from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from devtools import embedded_redis
from hosting.choices import ServerState, TokenScope
from hosting.services.tokens import issue_token

from .factories import (
    TEST_QUEUE,
    CustomerFactory,
    HostFactory,
    ImageFactory,
    IPPoolFactory,
    MembershipFactory,
    PlanFactory,
    ServerFactory,
    UserFactory,
)


def pytest_configure(config):
    """var/ holds the SQLite test database and the embedded Redis socket; importing the
    settings creates no directory, so the suite makes it."""
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """The real Redis: REDIS_URL's when set, otherwise the embedded one, started here."""
    if os.environ.get("REDIS_URL"):
        yield settings.REDIS_URL
        return
    proc = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    yield settings.REDIS_URL
    if proc is not None:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session", autouse=True)
def sqlite_wal_files_removed():
    """SQLite runs in WAL mode: remove the test database's -wal and -shm files, which
    outlive the database file that Django deletes at the end of the run."""
    yield
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        for suffix in ("-wal", "-shm"):
            Path(f"{db['TEST']['NAME']}{suffix}").unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def zone_policies_read_again():
    """Placement caches zone policies per process; a test's zones are rolled back."""
    from hosting.services.placement import forget_zone_policies

    forget_zone_policies()


@pytest.fixture(autouse=True)
def reset_test_driver():
    """Leave libvirt's in-process test driver as a new one: only its built-in `test`
    domain and an empty pool (tests share the driver's state within the process)."""
    yield
    import libvirt

    conn = libvirt.open("test:///default")
    try:
        for dom in conn.listAllDomains(0):
            if dom.name() == "test":
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        pool = conn.storagePoolLookupByName("default-pool")
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
    finally:
        conn.close()


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker (in a thread of this process, so that it shares the libvirt
    test driver's state with the test) consuming this run's queue (and its collector
    queue) from the real broker."""
    from celery.contrib.testing.worker import start_worker

    from config.celery import app
    from hosting.services.collector import STATS_QUEUE_SUFFIX

    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        queues=[TEST_QUEUE, f"{TEST_QUEUE}{STATS_QUEUE_SUFFIX}"],
        perform_ping_check=False,
        shutdown_timeout=30,
    ) as worker:
        yield worker


@pytest.fixture
def plan(db):
    return PlanFactory(name="Small", vcpus=1, memory_mib=256, disk_gib=10)


@pytest.fixture
def image(db):
    return ImageFactory(name="Debian 12", volume_name="debian-12.qcow2")


@pytest.fixture
def host(db):
    return HostFactory()


@pytest.fixture
def pool(db):
    return IPPoolFactory(network="192.0.2.0/24", gateway="192.0.2.1")


@pytest.fixture
def server(customer, plan, image, host):
    """A running server of Acme's, as rows only (no job, no domain)."""
    return ServerFactory(
        customer=customer,
        plan=plan,
        image=image,
        host=host,
        hostname="web-1",
        state=ServerState.RUNNING,
    )


@pytest.fixture
def customer(db):
    return CustomerFactory(name="Acme")


@pytest.fixture
def owner(customer):
    return MembershipFactory(customer=customer, user=UserFactory(username="acme-owner")).user


@pytest.fixture
def other_customer(db):
    return CustomerFactory(name="Globex")


@pytest.fixture
def other_owner(other_customer):
    return MembershipFactory(
        customer=other_customer, user=UserFactory(username="globex-owner")
    ).user


@pytest.fixture
def staff(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


def token_client(user, scope, customer=None) -> APIClient:
    _, key = issue_token(user=user, scope=scope, customer=customer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def billing_client(staff):
    return token_client(staff, TokenScope.BILLING)


@pytest.fixture
def owner_client(owner, customer):
    return token_client(owner, TokenScope.CUSTOMER, customer)


@pytest.fixture
def other_client(other_owner, other_customer):
    return token_client(other_owner, TokenScope.CUSTOMER, other_customer)


@pytest.fixture
def read_client(owner, customer):
    return token_client(owner, TokenScope.READ, customer)


@pytest.fixture
def anon_client():
    return APIClient()
