"""Maintenance and balancing on the two testbed hosts, with real guests and a real worker:
a host put into maintenance is emptied by one evacuation job with every guest still
running (its heartbeat never goes back, it never boots again), and the balancer in apply
mode, fed by the real collector, moves a guest off a host made hot by CPU-burning guests
and then stays quiet. The burning guests rewrite 1 MiB of memory in a loop (the guest
image's `paddock_dirty_mib`), which under TCG keeps a host core busy."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.core.cache import cache

from hosting.access import Caller
from hosting.choices import BalanceMode, BalancePlanStatus, JobKind, ServerState
from hosting.models import BalancePlan, Host, Job, Server, Zone
from hosting.services import balancer, cloudinit, placement
from hosting.services.hosts import set_maintenance
from workers.tasks import collect_stats

from .guests import (
    assert_kept_running,
    console,
    create,
    domains,
    running,
    wait_console,
    wait_job,
)

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

SYSTEM = Caller.system()


def hv1_hv2() -> tuple[Host, Host]:
    return Host.objects.get(name="tb-hv1"), Host.objects.get(name="tb-hv2")


def created_on(host: Host, make: Callable[[], list[str]]) -> list[Server]:
    """The servers `make` creates, all placed on `host` (every other testbed host is in
    maintenance meanwhile: placement's own rule, no pinning left behind)."""
    others = Host.objects.filter(name__startswith="tb-hv").exclude(pk=host.pk)
    for other in others:
        set_maintenance(host=other, on=True, reason="test: place on one host", caller=SYSTEM)
    try:
        uuids = make()
    finally:
        for other in others:
            set_maintenance(host=other, on=False, caller=SYSTEM)
    servers = list(Server.objects.select_related("host").filter(uuid__in=uuids).order_by("pk"))
    assert [s.host for s in servers] == [host] * len(uuids)
    return servers


def delete(client, servers: list[Server]) -> None:
    jobs = [client.delete(f"/api/v1/servers/{s.uuid}/").json()["id"] for s in servers]
    for job in jobs:
        assert wait_job(client, job)["status"] == "succeeded"


def test_a_host_in_maintenance_is_emptied_with_every_guest_running(
    testbed, celery_worker, client, staff, billing_client, customer, tiny_plan, tiny_image
):
    hv1, hv2 = hv1_hv2()
    # given two guests on tb-hv1, counting their heartbeat
    servers = created_on(
        hv1,
        lambda: [
            create(billing_client, customer, tiny_plan, tiny_image, name)[0]
            for name in ("evac-a", "evac-b")
        ],
    )
    reads = {s.pk: (lambda s=s: console(billing_client, str(s.uuid))) for s in servers}
    for s in servers:
        wait_console(billing_client, str(s.uuid), r"heartbeat=10\b")
    before = {pk: read() for pk, read in reads.items()}

    # when staff evacuate tb-hv1 through the API
    client.force_login(staff)
    resp = client.post(f"/api/v1/hosts/{hv1.pk}/evacuate/")
    assert resp.status_code == 202, resp.content
    job = wait_job(client, resp.json()["id"], timeout=300)

    # then the one parent job succeeded, every server moved live by its own migration
    assert job["status"] == "succeeded", (job["error"], job["log"][-5:])
    assert job["progress"] == 100, job
    result = job["result"]
    assert set(result["moved"]) == {str(s.pk) for s in servers}, result
    assert not result["failed"] and not result["running"] and not result["pending"], result
    moves = Job.objects.filter(kind=JobKind.MIGRATE, server__in=servers)
    assert moves.count() == 2 and all(m.params["live"] for m in moves)
    assert {m.status for m in moves} == {"succeeded"}
    hv1.refresh_from_db()
    assert hv1.maintenance

    # and both run on tb-hv2, nothing runs (or is defined) on tb-hv1
    for s in servers:
        s.refresh_from_db()
        assert (s.host, s.state) == (hv2, ServerState.RUNNING)
    assert {s.domain_name for s in servers} <= set(running(hv2))
    assert running(hv1) == []
    assert not {s.domain_name for s in servers} & set(domains(hv1))
    assert placement.recount() == []

    # and each guest kept counting: no step back, no second boot
    for s in servers:
        assert_kept_running(reads[s.pk], before[s.pk])

    set_maintenance(host=hv1, on=False, caller=SYSTEM)
    delete(billing_client, servers)


def burning(original: Callable[[Server], str]) -> Callable[[Server], str]:
    """The seed's user-data, plus a 1 MiB working set rewritten in a loop for guests named
    hot-*: a busy vCPU under TCG."""

    def user_data(server: Server) -> str:
        text = original(server)
        return text + ("paddock_dirty_mib: 1\n" if server.hostname.startswith("hot-") else "")

    return user_data


def test_the_balancer_moves_a_guest_off_a_hot_host_and_stays_quiet(
    testbed, celery_worker, billing_client, customer, tiny_plan, tiny_image, settings, monkeypatch
):
    # a tick after each collector pass, a plan after two ticks over 0.3 of spread; one
    # vCPU kept busy is half a testbed host (it counts the machine's 2 cores)
    settings.BALANCE_THRESHOLD = 0.3
    settings.BALANCE_MAX_MOVES = 2
    settings.BALANCE_EMA_ALPHA = 0.5
    hv1, hv2 = hv1_hv2()
    zone, _ = Zone.objects.update_or_create(
        name=hv1.zone, defaults={"balance_mode": BalanceMode.APPLY}
    )
    # what an earlier run left in the cache (host ids repeat across test databases)
    cache.delete_many([balancer.over_key(zone.name), *(balancer.ema_key(h.pk) for h in (hv1, hv2))])

    # given two CPU-burning guests and a quiet one on tb-hv1, tb-hv2 empty
    monkeypatch.setattr(cloudinit, "user_data", burning(cloudinit.user_data))
    servers = created_on(
        hv1,
        lambda: [
            create(billing_client, customer, tiny_plan, tiny_image, name)[0]
            for name in ("hot-a", "hot-b", "quiet")
        ],
    )
    hot = [s for s in servers if s.hostname.startswith("hot-")]
    for s in hot:
        wait_console(billing_client, str(s.uuid), r"dirtying=1MiB")
    for s in servers:
        wait_console(billing_client, str(s.uuid), r"heartbeat=\d+")

    def pass_and_tick() -> balancer.TickResult:
        """Beat: a collector pass of each host (run by the worker), then a tick."""
        collect_stats()
        time.sleep(settings.STATS_INTERVAL)
        return balancer.tick(zone)

    # when the collector and the balancer run: first a few ticks that only measure (the
    # averages start from the collector's first pass, which has no rates yet), then
    # until the balancer acts
    settings.BALANCE_TICKS = 10**6
    warming = [pass_and_tick() for _ in range(6)]
    assert all(t.plan is None for t in warming)
    assert warming[-1].spread > settings.BALANCE_THRESHOLD, [t.spread for t in warming]
    settings.BALANCE_TICKS = 2
    cache.delete(balancer.over_key(zone.name))
    ticks: list[balancer.TickResult] = []
    deadline = time.monotonic() + 120
    while not ticks or ticks[-1].plan is None:
        assert time.monotonic() < deadline, [(t.spread, t.note) for t in ticks]
        ticks.append(pass_and_tick())
    plan = ticks[-1].plan
    assert plan is not None

    # then it planned one move, of a burning guest, off tb-hv1 to tb-hv2, and applied it
    assert plan.status == BalancePlanStatus.APPLIED and plan.mode == BalanceMode.APPLY
    assert len(plan.moves) == 1, plan.moves
    move = plan.moves[0]
    assert (move["source"], move["target"]) == (hv1.name, hv2.name), move
    assert move["server"] in {s.hostname for s in hot}, move
    assert plan.spread_before > settings.BALANCE_THRESHOLD > plan.spread_after, plan.moves
    assert ticks[-1].ticks_over >= settings.BALANCE_TICKS
    assert "job" in plan.outcome[0], plan.outcome
    moved = next(s for s in servers if s.pk == move["server_id"])
    read = lambda: console(billing_client, str(moved.uuid))  # noqa: E731
    before = read()

    # and the migration completes while the collector and the balancer keep running
    # (no more plans: both hosts sit out the ticks while a server moves between them)
    deadline = time.monotonic() + 300
    while True:
        ticks.append(pass_and_tick())
        job = Job.objects.get(pk=plan.outcome[0]["job"])
        if job.status not in ("queued", "running"):
            break
        assert ticks[-1].plan is None, ticks[-1].plan.moves
        assert time.monotonic() < deadline, job.log[-5:]
    assert job.status == "succeeded", (job.error, job.log[-5:])
    assert job.params["live"]
    moved.refresh_from_db()
    assert (moved.host, moved.state) == (hv2, ServerState.RUNNING)
    assert moved.domain_name in running(hv2) and moved.domain_name not in domains(hv1)
    assert_kept_running(read, before)

    # and then it stays quiet for a while (the moved guest within its cooldown, the
    # spread down under the threshold once the averages follow the move)
    for _ in range(20):
        ticks.append(pass_and_tick())
    plans = BalancePlan.objects.filter(zone=zone.name)
    assert plans.count() == 1, [(p.pk, p.moves) for p in plans]
    after = [t.spread for t in ticks[-5:]]
    assert max(after) < settings.BALANCE_THRESHOLD, [(t.spread, t.note) for t in ticks]
    assert max(after) < plan.spread_before / 2, (after, plan.spread_before)
    for s in servers:
        s.refresh_from_db()
        assert s.state == ServerState.RUNNING and s.domain_name in running(s.host)
    assert Job.objects.filter(kind=JobKind.MIGRATE).count() == 1

    delete(billing_client, servers)
