"""The placement engine (hosting/services/placement.py): every rule rejects a host with its
reason, spread and pack choose differently, room held for a move counts, concurrent
orders never over-allocate a host, the counters match the servers after create,
terminate and resize, and only the provider sees the "why not"."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings

from hosting.access import Caller
from hosting.choices import GroupRule, HostState, JobStatus, PlacementPolicy, VirtKind
from hosting.models import AuditEvent, Host, Job, PlacementGroup, Server, Zone
from hosting.services import placement
from hosting.services.errors import NoCapacity, NotPermitted
from hosting.services.hosts import set_maintenance
from hosting.services.placement import PlacementRequest

from .factories import HostFactory, PlanFactory, ServerFactory, UserFactory

GIB = 1024


def request_for(plan, customer, **kwargs) -> PlacementRequest:
    return PlacementRequest.for_order(plan=plan, customer=customer, **kwargs)


def verdicts(request: PlacementRequest) -> dict[str, list[str]]:
    return {v.host.name: v.reasons for v in placement.evaluate(request)}


def claim(request: PlacementRequest) -> Host:
    with transaction.atomic():
        return placement.claim(request)


def counters(host: Host) -> tuple[int, int, int, int]:
    host.refresh_from_db()
    return (host.alloc_vcpus, host.alloc_memory_mib, host.alloc_disk_gib, host.alloc_servers)


# --- rules and reasons ------------------------------------------------------------------


def test_each_rule_rejects_a_host_with_its_reason(customer, plan):
    ok = HostFactory(name="ok", zone="z1", cpu_model="AMD EPYC 7763")
    HostFactory(name="down", zone="z1", state=HostState.OFFLINE)
    HostFactory(name="maint", zone="z1", maintenance=True, maintenance_reason="disk swap")
    HostFactory(name="lxc", zone="z1", kind=VirtKind.CONTAINER)
    HostFactory(name="elsewhere", zone="z2", cpu_model="AMD EPYC 7763")
    HostFactory(name="intel", zone="z1", cpu_model="Intel Xeon Gold")
    HostFactory(name="nonet", zone="z1", networks=["other"], cpu_model="AMD EPYC")
    HostFactory(name="nopool", zone="z1", storage_pools=["other"], cpu_model="AMD EPYC")
    HostFactory(name="small", zone="z1", memory_mib=200, cpu_model="AMD EPYC")
    HostFactory(name="reserved", zone="z1", reserve_memory_mib=32768 - 100, cpu_model="EPYC")

    reasons = verdicts(request_for(plan, customer, zone="z1", required_cpu="epyc"))

    assert reasons["ok"] == []
    assert reasons["down"][0] == "host offline"
    assert "maintenance: disk swap" in reasons["maint"]
    assert "wrong kind: host runs containers, vm needed" in reasons["lxc"]
    assert reasons["elsewhere"] == ["zone z2, z1 asked"]
    assert reasons["intel"] == ["CPU Intel Xeon Gold, epyc required"]
    assert reasons["nonet"] == ["network default missing"]
    assert reasons["nopool"] == ["storage pool default-pool missing"]
    assert reasons["small"] == ["not enough memory: 200 MiB free, 256 needed"]
    assert reasons["reserved"] == ["not enough memory: 100 MiB free, 256 needed"]
    assert claim(request_for(plan, customer, zone="z1", required_cpu="epyc")) == ok


def test_groups_and_pinning(customer, plan):
    a, b, c = (HostFactory(name=n) for n in "abc")
    web1 = ServerFactory(customer=customer, plan=plan, host=a, hostname="web-1")
    db1 = ServerFactory(customer=customer, plan=plan, host=b, hostname="db-1")
    apart = PlacementGroup.objects.create(
        customer=customer, name="web", rule=GroupRule.ANTI_AFFINITY
    )
    apart.servers.add(web1)
    together = PlacementGroup.objects.create(customer=customer, name="db", rule=GroupRule.AFFINITY)
    together.servers.add(db1)

    anti = verdicts(request_for(plan, customer, groups=[apart]))
    assert anti["a"] == ["anti-affinity with web-1"] and anti["b"] == anti["c"] == []
    aff = verdicts(request_for(plan, customer, groups=[together]))
    assert aff["a"] == aff["c"] == ["affinity with db-1"] and aff["b"] == []
    assert claim(request_for(plan, customer, groups=[together])) == b
    pinned = verdicts(request_for(plan, customer, pinned_host=c))
    assert pinned["a"] == pinned["b"] == ["the server is pinned to another host"]
    assert claim(request_for(plan, customer, pinned_host=c)) == c


def test_spread_and_pack_choose_differently(customer):
    plan = PlanFactory(vcpus=1, memory_mib=1 * GIB, disk_gib=10)
    emptier = HostFactory(name="emptier", zone="z", memory_mib=16 * GIB)
    fuller = HostFactory(name="fuller", zone="z", memory_mib=16 * GIB)
    ServerFactory(customer=customer, host=fuller, plan=PlanFactory(memory_mib=12 * GIB))

    assert claim(request_for(plan, customer, zone="z")) == emptier  # spread: the default
    Zone.objects.create(name="z", policy=PlacementPolicy.PACK)
    assert claim(request_for(plan, customer, zone="z")) == fuller
    ranked = [v.host.name for v in placement.evaluate(request_for(plan, customer, zone="z"))]
    assert ranked[:2] == ["fuller", "emptier"]


def test_pack_fills_hosts_one_after_the_other(customer):
    plan = PlanFactory(vcpus=1, memory_mib=1 * GIB, disk_gib=10)
    hosts = [HostFactory(name=f"h{i}", memory_mib=4 * GIB) for i in range(4)]
    request = request_for(plan, customer, policy=PlacementPolicy.PACK)
    chosen = [claim(request).name for _ in range(8)]
    # two hosts full, two empty: the fewest hosts for 8 GiB of 4 GiB hosts
    assert sorted(set(chosen)) == ["h0", "h1"]
    assert [counters(h)[1] for h in hosts] == [4 * GIB, 4 * GIB, 0, 0]
    with override_settings(PLACEMENT_POLICY="spread"):
        spread = {claim(request_for(plan, customer)).name for _ in range(2)}
    assert spread == {"h2", "h3"}


def test_no_host_is_a_clear_error(customer, plan, host):
    set_maintenance(host=host, on=True, reason="kernel", caller=Caller.system())
    with pytest.raises(NoCapacity, match="No online virtual machine host has room for plan"):
        claim(request_for(plan, customer))
    assert counters(host) == (0, 0, 0, 0)


# --- capacity in flight -----------------------------------------------------------------


def test_room_held_for_a_move_counts_and_the_source_is_excluded(customer):
    plan = PlanFactory(vcpus=1, memory_mib=3 * GIB, disk_gib=10)
    source = HostFactory(name="source", memory_mib=4 * GIB)
    target = HostFactory(name="target", memory_mib=4 * GIB)
    server = ServerFactory(customer=customer, plan=plan, host=source, hostname="mover")

    assert placement.choose_target(server) == target
    assert placement.check_host(server, source) == [
        "the server's current host",
        "not enough memory: 1024 MiB free, 3072 needed",
    ]
    assert placement.reserve_target(server) == target
    # the target now holds the mover's room: a new order finds no host for it
    assert counters(target) == (1, 3 * GIB, 10, 1)
    assert verdicts(request_for(plan, customer))["target"] == [
        "not enough memory: 1024 MiB free, 3072 needed"
    ]
    with pytest.raises(NoCapacity):
        claim(request_for(plan, customer))
    # its own held room is not counted against it
    assert placement.check_host(server, target) == []
    assert placement.recount() == []  # the counters match the servers, reservation included

    placement.complete_move(server)
    server.refresh_from_db()
    assert (server.host, server.reserved_host) == (target, None)
    assert counters(source) == (0, 0, 0, 0) and counters(target) == (1, 3 * GIB, 10, 1)

    placement.reserve_target(server, host=source)
    placement.release_target(server)
    assert counters(source) == (0, 0, 0, 0)
    assert placement.recount() == []


def test_reserving_a_host_that_cannot_take_it_says_why(customer, plan, host):
    server = ServerFactory(customer=customer, plan=plan, host=host)
    maint = HostFactory(name="maint", maintenance=True)
    with pytest.raises(NoCapacity, match=r"maint cannot take .*: maintenance"):
        placement.reserve_target(server, host=maint)
    with pytest.raises(NoCapacity):
        placement.reserve_target(server)  # the only other host is in maintenance


# --- counters -----------------------------------------------------------------------------


def test_resize_holds_the_new_plan_or_says_why(customer, plan):
    host = HostFactory(memory_mib=2 * GIB)
    server = ServerFactory(customer=customer, plan=plan, host=host)
    bigger, huge = PlanFactory(memory_mib=1 * GIB), PlanFactory(memory_mib=4 * GIB)
    with transaction.atomic():
        placement.resize(server, bigger)
        Server.objects.filter(pk=server.pk).update(plan=bigger)
    assert counters(host)[1] == 1 * GIB and placement.recount() == []
    with pytest.raises(NoCapacity, match="not enough memory: 2048 MiB free, 4096 needed"):
        server.refresh_from_db()
        placement.resize(server, huge)
    assert counters(host)[1] == 1 * GIB


def test_recount_repairs_drift_and_reconcile_runs_it(customer, plan, host):
    ServerFactory(customer=customer, plan=plan, host=host)
    Host.objects.filter(pk=host.pk).update(alloc_memory_mib=99999, alloc_servers=7)
    assert placement.recount() == [host.name]
    assert counters(host) == (1, 256, 10, 1)
    from hosting.services.reconcile import reconcile_host

    Host.objects.filter(pk=host.pk).update(alloc_vcpus=0)
    host.refresh_from_db()
    assert reconcile_host(host=host).recounted
    assert counters(host) == (1, 256, 10, 1)


def test_a_whole_row_save_never_writes_the_counters(customer, plan, host):
    stale = Host.objects.get(pk=host.pk)
    ServerFactory(customer=customer, plan=plan, host=host)
    stale.zone = "edited"
    stale.save()  # the admin's save of a row read before the server was placed
    assert counters(host) == (1, 256, 10, 1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_counters_follow_create_and_terminate(
    celery_worker, billing_client, customer, plan, image, host, pool
):
    from .test_provisioning import wait_job

    resp = billing_client.post(
        "/api/v1/servers/",
        {"customer": customer.pk, "plan": plan.pk, "image": image.pk, "hostname": "c1"},
        format="json",
    )
    job = wait_job(resp.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert counters(host) == placement.counted_usage(host.pk) == (1, 256, 10, 1)
    server = Server.objects.get(pk=job.server_id)
    resp = billing_client.delete(f"/api/v1/servers/{server.uuid}/")
    assert wait_job(resp.json()["id"]).status == JobStatus.SUCCEEDED
    assert counters(host) == placement.counted_usage(host.pk) == (0, 0, 0, 0)


# --- concurrency --------------------------------------------------------------------------

ORDERS = 200
CONNECTIONS = 40  # PostgreSQL's default max_connections is 100, shared with other runs


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.parametrize("policy", [PlacementPolicy.SPREAD, PlacementPolicy.PACK])
def test_concurrent_orders_never_over_allocate(customer, image, policy):
    # given 5 hosts with room for 10 servers each and 200 orders, 40 at a time
    plan = PlanFactory(vcpus=1, memory_mib=1 * GIB, disk_gib=10)
    hosts = [HostFactory(name=f"h{i}", memory_mib=10 * GIB) for i in range(5)]
    request = request_for(plan, customer, policy=policy)
    barrier = threading.Barrier(CONNECTIONS)
    placed: list[int] = []
    refused: list[str] = []
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(ORDERS // CONNECTIONS):
                try:
                    with transaction.atomic():
                        host = placement.claim(request)
                        Server.objects.create(
                            customer=customer,
                            plan=plan,
                            image=image,
                            host=host,
                            hostname=f"o{worker}-{i}",
                            mac_address=f"52:54:00:01:{worker:02x}:{i:02x}",
                        )
                    placed.append(host.pk)
                except NoCapacity as exc:
                    refused.append(exc.message)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    # then exactly the 50 that fit are placed, no host holds more than its memory, and
    # the counters equal the sums of the servers
    assert errors == []
    assert len(placed) == 50 and len(refused) == 150
    for h in hosts:
        assert counters(h) == placement.counted_usage(h.pk) == (10, 10 * GIB, 100, 10)
    assert placement.recount() == []


# --- maintenance --------------------------------------------------------------------------


def test_maintenance_is_a_privileged_audited_action(host, staff):
    clerk = UserFactory(is_staff=True)
    with pytest.raises(NotPermitted):
        set_maintenance(host=host, on=True, caller=Caller(user=clerk))
    set_maintenance(host=host, on=True, reason="RAM swap", caller=Caller(user=staff))
    host.refresh_from_db()
    assert host.maintenance and host.maintenance_since and host.maintenance_reason == "RAM swap"
    set_maintenance(host=host, on=False, caller=Caller(user=staff))
    host.refresh_from_db()
    assert not host.maintenance and host.maintenance_since is None
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions[-2:] == ["host.maintenance.enter", "host.maintenance.leave"]


# --- who sees it ------------------------------------------------------------------------


def test_placement_endpoint_is_for_the_provider(
    billing_client, owner_client, other_client, anon_client, server, staff, client
):
    HostFactory(name="spare")
    HostFactory(name="dozing", maintenance=True)
    url = f"/api/v1/servers/{server.uuid}/placement/"

    rows = {r["host"]: r for r in billing_client.get(url).json()}
    assert rows["spare"]["eligible"] and rows["spare"]["rank"] == 1
    assert rows["dozing"]["reasons"] == ["maintenance"]
    assert rows[server.host.name]["reasons"] == ["the server's current host"]
    client.force_login(staff)
    assert client.get(url).status_code == 200

    assert owner_client.get(url).status_code == 403  # its own server: no hosts for customers
    assert other_client.get(url).status_code in (403, 404)
    assert anon_client.get(url).status_code in (401, 403)
    assert "spare" not in owner_client.get(url).content.decode()


def test_placement_before_ordering(billing_client, owner_client, customer, plan):
    HostFactory(name="roomy")
    HostFactory(name="tiny", memory_mib=128)
    url = f"/api/v1/placement/?plan={plan.pk}&customer={customer.pk}"
    rows = {r["host"]: r for r in billing_client.get(url).json()}
    assert rows["roomy"]["eligible"]
    assert rows["tiny"]["reasons"] == ["not enough memory: 128 MiB free, 256 needed"]
    assert owner_client.get(url).status_code == 403
    assert (
        billing_client.get(f"/api/v1/placement/?plan=0&customer={customer.pk}").status_code == 404
    )


def test_admin_server_page_shows_why_each_host_could_not_take_it(client, staff, server):
    HostFactory(name="dozing", maintenance=True, maintenance_reason="fans")
    client.force_login(staff)
    body = client.get(f"/admin/hosting/server/{server.pk}/change/").content.decode()
    assert "maintenance: fans" in body and "the server&#x27;s current host" in body


def test_admin_pins_a_server_audited(client, staff, server):
    other = HostFactory(name="other")
    client.force_login(staff)
    response = client.post(
        f"/admin/hosting/server/{server.pk}/change/",
        {
            "pinned_host": other.pk,
            "required_cpu": "",
            "addresses-TOTAL_FORMS": 0,
            "addresses-INITIAL_FORMS": 0,
            "jobs-TOTAL_FORMS": 0,
            "jobs-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    server.refresh_from_db()
    assert server.pinned_host == other and server.state == "running"
    assert AuditEvent.objects.filter(action="admin.server.placement").exists()
    assert placement.choose_target(server) == other


def test_admin_host_maintenance_actions(client, staff, host):
    client.force_login(staff)
    client.post(
        "/admin/hosting/host/",
        {"action": "enter_maintenance", "_selected_action": [host.pk]},
    )
    host.refresh_from_db()
    assert host.maintenance
    assert Job.objects.count() == 0  # nothing queued: maintenance itself moves nothing
