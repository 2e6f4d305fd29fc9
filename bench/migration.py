"""Benchmark: live migration of a guest with a hot working set, by Paddock (the API, a
real worker, the migrate job) and by a plain `virsh migrate --live` of the same guest,
interleaved in one run.

    make bench-migration          # root: a two-host testbed and the tiny guest image

For each working set (--sizes, default 0, 64 and 256 MiB: a process in the guest
rewrites that much memory with non-zero data without pause, guest/init
`paddock_dirty_mib`) one guest (1 vCPU, 512 MiB, disks on the pool both hosts share) is
moved back and forth: Paddock one way, virsh the other, --runs times each (default 5).
virsh runs with its defaults plus what the testbed needs (`--p2p --persistent
--undefinesource`, `--unsafe` for the shared directory, the target's own address); a
virsh run that has not finished after --virsh-limit seconds is aborted (`domjobabort`)
and counted as not completing. Both sides' figures are libvirt's record of the finished
job (`domjobinfo --completed` on the target): total time, downtime, bytes sent.
Medians, and the ratio Paddock / virsh. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

from support import ensure_redis

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
os.environ.setdefault("PADDOCK_DEV_TOOLS", "true")  # the testbed command
warnings.filterwarnings("ignore", message="No directory at")
ensure_redis()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from hosting.backends import get_backend  # noqa: E402
from hosting.choices import TokenScope  # noqa: E402
from hosting.models import Customer, Host, Image, Job, Plan, Server  # noqa: E402
from hosting.services import cloudinit, placement  # noqa: E402
from hosting.services.tokens import issue_token  # noqa: E402
from testbed import layout  # noqa: E402

QUEUE = f"paddock-bench-{os.getpid()}"
IMAGE_FILE = "paddock-tiny.qcow2"
MEMORY_MIB = 512
FIGURES = ("migration s", "wall s", "downtime ms", "sent MiB")
MIB = 1024 * 1024

_user_data = cloudinit.user_data
VERBOSE = False


def user_data_with_hot_set(server: Server) -> str:
    """The seed's user-data, plus the working set named by the host name hot-<MiB>."""
    text = _user_data(server)
    match = re.fullmatch(r"hot-(\d+)", server.hostname)
    return text + (f"paddock_dirty_mib: {match.group(1)}\n" if match else "")


def wait_job(job_id: int, timeout: float = 900) -> Job:
    deadline = time.monotonic() + timeout
    job = Job.objects.get(pk=job_id)
    while job.status in ("queued", "running"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {job.status}")
        time.sleep(0.2)
        job.refresh_from_db()
    return job


def wait_console(server: Server, pattern: str, timeout: float = 300) -> None:
    backend = get_backend(server.host)
    deadline = time.monotonic() + timeout
    while not re.search(pattern, backend.console_log(server.domain_name)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.hostname}: {pattern!r} not seen in {timeout} s")
        time.sleep(1)


def virsh(uri: str, *args: str, timeout: float | None = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, timeout=timeout
    )


def completed(uri: str, name: str) -> dict[str, float]:
    """libvirt's record of the migration that just finished, read on the target."""
    out = virsh(uri, "domjobinfo", "--completed", name).stdout
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()

    def number(key: str) -> float:
        return float(fields.get(key, "0").split()[0])

    def size(key: str) -> float:
        value, _, unit = fields.get(key, "0 B").partition(" ")
        scale = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}.get(unit.strip(), 1)
        return float(value) * scale

    return {
        "migration s": number("Time elapsed") / 1000,
        "downtime ms": number("Total downtime"),
        "sent MiB": size("Data processed") / MIB,
    }


def paddock_run(client: APIClient, server: Server, target: Host) -> dict[str, float] | None:
    started = time.monotonic()
    resp = client.post(
        f"/api/v1/servers/{server.uuid}/migrate/", {"target_host": target.name}, format="json"
    )
    assert resp.status_code == 202, resp.content
    job = wait_job(resp.json()["id"])
    wall = time.monotonic() - started
    if job.status != "succeeded":
        print(f"  Paddock run failed: {job.error}")
        return None
    result = job.result
    if VERBOSE:
        print("\n".join(f"    {line}" for line in job.log))
    return {
        "migration s": result["migration_seconds"],
        "wall s": wall,
        "downtime ms": float(result["downtime_ms"] or 0),
        "sent MiB": result["bytes_sent"] / MIB,
        "escalations": len(result["escalations"]),
    }


def virsh_run(server: Server, target: Host, limit: float) -> dict[str, float] | None:
    source = server.host
    assert source is not None
    address = target.migration_address
    cmd = [
        "virsh",
        "-q",
        "-c",
        source.libvirt_uri,
        "migrate",
        "--live",
        "--p2p",
        "--persistent",
        "--undefinesource",
        "--unsafe",
        "--migrateuri",
        f"tcp://{address}",
        "--listen-address",
        address,
        server.domain_name,
        target.libvirt_uri,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        virsh(source.libvirt_uri, "domjobabort", server.domain_name)
        proc.communicate()
        print(f"  virsh run did not complete within {limit:g} s: aborted")
        return None
    if proc.returncode != 0:
        print(f"  virsh run failed: {err.strip()}")
        return None
    wall = time.monotonic() - started
    Server.objects.filter(pk=server.pk).update(host=target)  # Paddock learns where it is
    placement.recount([source, target])  # and the hosts' placement counters follow
    server.host = target
    return {**completed(target.libvirt_uri, server.domain_name), "wall s": wall}


def median(runs: list[dict[str, float]], key: str) -> float | None:
    values = [r[key] for r in runs]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="0,64,256", help="hot working sets in MiB")
    parser.add_argument("--virsh-limit", type=float, default=120.0)
    parser.add_argument("--verbose", action="store_true", help="print each job's log")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    sizes = [int(s) for s in args.sizes.split(",")]
    if os.geteuid() != 0:
        sys.exit("bench/migration.py needs root (it brings up a two-host testbed).")

    subprocess.run(
        ["bash", str(ROOT / "guest" / "build-image.sh"), str(settings.IMAGE_STORE)], check=True
    )
    image_path = Path(settings.IMAGE_STORE) / IMAGE_FILE
    cloudinit.user_data = user_data_with_hot_set  # type: ignore[assignment]

    db = connection.settings_dict
    sqlite = db["ENGINE"].endswith("sqlite3")
    db["TEST"]["NAME"] = (
        str(settings.VAR_DIR / "bench-migration.sqlite3") if sqlite else "paddock_bench_migration"
    )
    settings.VAR_DIR.mkdir(exist_ok=True)
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    results: dict[int, dict[str, list]] = {}
    try:
        call_command("testbed", "down")  # whatever a killed run (of any checkout) left
        call_command("testbed", "up", "--hosts", "2", "--queue", QUEUE)
        # every disk on the directory both hosts mount: the same storage for both tools
        Host.objects.filter(name__startswith="tb-hv").update(storage_pool=layout.SHARED_POOL)
        hv1, hv2 = Host.objects.get(name="tb-hv1"), Host.objects.get(name="tb-hv2")
        digest = hashlib.sha256(image_path.read_bytes()).hexdigest()[:12]
        image = Image.objects.create(
            name="Paddock tiny",
            source=IMAGE_FILE,
            volume_name=f"paddock-tiny-{digest}.qcow2",
            min_disk_gib=1,
        )
        plan = Plan.objects.create(name="Bench", vcpus=1, memory_mib=MEMORY_MIB, disk_gib=2)
        customer = Customer.objects.create(name="Bench", email="bench@example.com")
        staff = get_user_model().objects.create_user("bench", is_staff=True, is_superuser=True)
        _, key = issue_token(user=staff, scope=TokenScope.BILLING)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        with start_worker(
            app,
            pool="threads",
            concurrency=1,
            queues=[QUEUE],
            perform_ping_check=False,
            shutdown_timeout=30,
            loglevel="WARNING",
        ):
            for size in sizes:
                results[size] = {"paddock": [], "virsh": [], "failed": [0, 0]}
                resp = client.post(
                    "/api/v1/servers/",
                    {
                        "customer": customer.pk,
                        "plan": plan.pk,
                        "image": image.pk,
                        "hostname": f"hot-{size}",
                    },
                    format="json",
                )
                assert resp.status_code == 202, resp.content
                job = wait_job(resp.json()["id"])
                assert job.status == "succeeded", job.error
                server = Server.objects.select_related("host").get(pk=job.server_id)
                wait_console(server, r"heartbeat=\d+")
                if size:
                    wait_console(server, rf"dirtying={size}MiB")
                time.sleep(5)  # the working set is being rewritten
                print(f"working set {size} MiB: {args.runs} runs each", flush=True)
                for n in range(args.runs):
                    server.refresh_from_db()
                    other = hv2 if server.host_id == hv1.pk else hv1
                    run = paddock_run(client, server, other)
                    if run is None:
                        results[size]["failed"][0] += 1
                    else:
                        results[size]["paddock"].append(run)
                    server.refresh_from_db()
                    other = hv2 if server.host_id == hv1.pk else hv1
                    run = virsh_run(server, other, args.virsh_limit)
                    if run is None:
                        results[size]["failed"][1] += 1
                    else:
                        results[size]["virsh"].append(run)
                    print(f"  run {n + 1} done", flush=True)
                resp = client.delete(f"/api/v1/servers/{server.uuid}/")
                wait_job(resp.json()["id"])
    finally:
        call_command("testbed", "down")
        connection.creation.destroy_test_db(old_name, verbosity=0)

    print()
    print(
        f"Live migration between two testbed hosts, qemu (TCG), 1 vCPU / {MEMORY_MIB} MiB guest "
        f"on shared storage; Paddock (downtime target {settings.MIGRATION_DOWNTIME_MS} ms, "
        f"{settings.MIGRATION_BANDWIDTH_MIB_S} MiB/s) vs plain virsh migrate --live; "
        f"medians of {args.runs}"
    )
    print(
        f"{'hot MiB':>8}{'figure':>13}{'Paddock':>10}{'virsh':>10}{'ratio':>8}{'completed P/v':>15}"
    )
    for size, runs in results.items():
        done = (
            f"{len(runs['paddock'])}/{len(runs['paddock']) + runs['failed'][0]}"
            f" {len(runs['virsh'])}/{len(runs['virsh']) + runs['failed'][1]}"
        )
        for i, figure in enumerate(FIGURES):
            p, v = median(runs["paddock"], figure), median(runs["virsh"], figure)
            ratio = f"{p / v:.2f}x" if p is not None and v else "-"
            p_text = f"{p:10.3f}" if p is not None else f"{'-':>10}"
            v_text = f"{v:10.3f}" if v is not None else f"{'-':>10}"
            print(
                f"{size if i == 0 else '':>8}{figure:>13}{p_text}{v_text}{ratio:>8}"
                f"{done if i == 0 else '':>15}"
            )
        downtimes = sorted(r["downtime ms"] for r in runs["paddock"])
        escalated = sum(1 for r in runs["paddock"] if r["escalations"])
        print(f"{'':>8}Paddock downtimes (ms): {downtimes}; runs escalated: {escalated}")


if __name__ == "__main__":
    main()
