"""Snapshots and backups of a real guest on the testbed, through the REST API and a
real worker: full and incremental backups restored byte for byte, a snapshot reverted,
a corrupted backup caught by verify, a terminated server's backup restored into a new
server that boots.

One guest serves every check (a TCG boot takes a minute). Markers are written with
qemu-io into the stopped guest's disk, far past the end of the tiny image's filesystem
(the disk is 2 GiB, the filesystem a few MiB), so the guest still boots."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from hosting.backups.store import LocalStore
from hosting.choices import ServerState
from hosting.models import Backup, Server

from .guests import (
    act,
    console,
    create,
    disk_sha256,
    disk_top,
    has_pattern,
    succeeded,
    virsh,
    wait_console,
    wait_job,
    write_pattern,
)

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

MIB = 1024**2
MARK_A = 1536 * MIB  # the first marker, before the full backup
MARK_B = 1700 * MIB  # the second, before the incremental


def backup(client, server) -> Backup:
    job = succeeded(
        client, client.post(f"/api/v1/servers/{server.uuid}/backups/", {}, format="json")
    )
    return Backup.objects.get(uuid=job["backup"])


def test_backups_and_snapshots_of_a_real_guest(
    testbed, celery_worker, billing_client, customer, tiny_plan, tiny_image, settings, tmp_path
):
    settings.BACKUP_STORE = str(tmp_path / "store")
    settings.BACKUP_STAGING = str(tmp_path / "staging")
    tiny_plan.snapshot_slots = 2
    tiny_plan.backup_slots = 4
    tiny_plan.save()
    client = billing_client
    uuid, _ = create(client, customer, tiny_plan, tiny_image, "keeper")
    server = Server.objects.select_related("host").get(uuid=uuid)
    wait_console(client, uuid, r"paddock-guest hostname=keeper .* ready")

    # a backup of the running guest: no guest agent in the tiny image, so crash-consistent
    live = backup(client, server)
    assert live.kind == "full" and live.status == "complete"
    assert live.consistency == "crash-consistent"
    assert live.manifest["disks"][0]["virtual_bytes"] == 2 * 1024**3
    assert live.manifest["addresses"] == [str(a.address) for a in server.addresses.all()]
    resp = client.delete(f"/api/v1/backups/{live.uuid}/")
    assert resp.status_code == 204, resp.content

    # a snapshot with memory of the running guest: reverting resumes it from that memory
    # (heartbeats go on), deleting it merges the live overlay back (active block commit)
    resp = client.post(
        f"/api/v1/servers/{uuid}/snapshots/", {"name": "live", "with_memory": True}, format="json"
    )
    live_snap = succeeded(client, resp)["snapshot"]
    beats = len(re.findall(r"heartbeat=", console(client, uuid)))
    succeeded(client, client.post(f"/api/v1/servers/{uuid}/snapshots/{live_snap}/revert/"))
    server.refresh_from_db()
    assert server.state == ServerState.RUNNING
    wait_console(client, uuid, r"heartbeat=", count=beats + 2, timeout=60)
    succeeded(client, client.delete(f"/api/v1/servers/{uuid}/snapshots/{live_snap}/"))
    assert "running" in virsh(server.host, "domstate", server.domain_name)
    assert disk_top(server).endswith(f"{server.domain_name}-disk0.qcow2")

    act(client, uuid, "stop")
    server.refresh_from_db()

    # full backup of the stopped guest with marker A
    write_pattern(server, 0xAB, MARK_A, 4 * MIB)
    sum_full = disk_sha256(server)
    full = backup(client, server)
    assert full.kind == "full"

    # a small change, then an incremental: only the changed blocks
    write_pattern(server, 0xCD, MARK_B, 2 * MIB)
    sum_inc = disk_sha256(server)
    inc = backup(client, server)
    assert inc.kind == "incremental" and inc.parent_id == full.pk
    full_size = full.manifest["disks"][0]["object"]["size"]
    inc_size = inc.manifest["disks"][0]["object"]["size"]
    print(f"full backup {full_size} bytes ({full.stored_bytes} stored), "
          f"incremental {inc_size} bytes ({inc.stored_bytes} stored)")  # fmt: skip
    assert inc_size * 5 < full_size, (inc_size, full_size)

    # the disk is damaged; restoring the incremental brings back both markers, exactly
    write_pattern(server, 0x00, MARK_A, 8 * MIB)
    write_pattern(server, 0x00, MARK_B, 8 * MIB)
    assert not has_pattern(server, 0xAB, MARK_A, 4 * MIB)
    succeeded(client, client.post(f"/api/v1/backups/{inc.uuid}/restore/"))
    server.refresh_from_db()
    assert server.state == ServerState.STOPPED
    assert has_pattern(server, 0xAB, MARK_A, 4 * MIB)
    assert has_pattern(server, 0xCD, MARK_B, 2 * MIB)
    assert disk_sha256(server) == sum_inc

    # any point of the chain: the full backup alone gives the disk before marker B
    succeeded(client, client.post(f"/api/v1/backups/{full.uuid}/restore/"))
    assert disk_sha256(server) == sum_full
    assert not has_pattern(server, 0xCD, MARK_B, 2 * MIB)

    # a snapshot reverts a change (external overlay on the stopped guest)
    resp = client.post(f"/api/v1/servers/{uuid}/snapshots/", {"name": "known good"}, format="json")
    snap = succeeded(client, resp)["snapshot"]
    write_pattern(server, 0x77, MARK_A, 4 * MIB)
    assert not has_pattern(server, 0xAB, MARK_A, 4 * MIB)
    succeeded(client, client.post(f"/api/v1/servers/{uuid}/snapshots/{snap}/revert/"))
    assert has_pattern(server, 0xAB, MARK_A, 4 * MIB)
    # deleting it merges it back (block commit): the disk reads the same
    write_pattern(server, 0x55, MARK_B, 1 * MIB)
    before = disk_sha256(server)
    succeeded(client, client.delete(f"/api/v1/servers/{uuid}/snapshots/{snap}/"))
    assert disk_sha256(server) == before
    assert client.get(f"/api/v1/servers/{uuid}/snapshots/").json() == []

    # verify reads every checksum of the chain
    succeeded(client, client.post(f"/api/v1/backups/{inc.uuid}/verify/"))

    # the server is terminated: its backups stay, and one restores into a new server
    act(client, uuid, "start")
    assert client.delete(f"/api/v1/servers/{uuid}/").status_code == 202
    server.refresh_from_db()
    deadline = time.monotonic() + 120
    while server.state != ServerState.TERMINATED and time.monotonic() < deadline:
        time.sleep(0.5)
        server.refresh_from_db()
    assert server.state == ServerState.TERMINATED
    deleted = client.get("/api/v1/backups/?deleted=true").json()
    assert {b["uuid"] for b in deleted["results"]} == {str(full.uuid), str(inc.uuid)}
    assert all(b["expires_at"] for b in deleted["results"])
    resp = client.post(
        f"/api/v1/backups/{inc.uuid}/restore-new/", {"hostname": "phoenix"}, format="json"
    )
    job = succeeded(client, resp)
    reborn = Server.objects.select_related("host").get(uuid=job["new_server"])
    wait_console(client, str(reborn.uuid), r"paddock-guest hostname=phoenix .* ready")
    act(client, str(reborn.uuid), "force-stop")
    reborn.refresh_from_db()
    assert has_pattern(reborn, 0xAB, MARK_A, 4 * MIB)
    assert has_pattern(reborn, 0xCD, MARK_B, 2 * MIB)

    # a corrupted backup file is caught by verify
    store = LocalStore(settings.BACKUP_STORE)
    path = Path(store.data_path(full.manifest["disks"][0]["object"]["key"]))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    resp = client.post(f"/api/v1/backups/{inc.uuid}/verify/")
    assert resp.status_code == 202
    failed = wait_job(client, resp.json()["id"])
    assert failed["status"] == "failed", failed
    assert "checksum" in failed["error"] or "decompress" in failed["error"], failed
    full.refresh_from_db()
    inc.refresh_from_db()
    assert inc.verified_ok is False
