"""Benchmark: from the API request to the guest's ready line, against the same steps done
by hand with qemu-img and virsh (the baseline, measured in the same run).

    make bench-provision          # root: a one-host testbed and the tiny guest image

For each of --runs servers (default 5) Paddock's time is split into phases read from the
job (created, started, and its log lines, to the millisecond) and the serial console:

    queue wait   request accepted -> a worker starts the job
    image        make sure the base image is in the host's pool (an upload the first time)
    disk         qcow2 overlay of the base image, grown to the plan's size
    seed         NoCloud seed ISO built and uploaded into the pool
    define       domain XML defined
    boot->ready  domain started -> `paddock-guest ... ready` on the serial console

The baseline does the same on the same host without Paddock: `qemu-img create` of an
overlay, the seed ISO written to the pool directory, `virsh pool-refresh`, `virsh define`,
`virsh start`, and the same ready line read from the console log file. Medians are
printed with the ratio Paddock / baseline. Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
warnings.filterwarnings("ignore", message="No directory at")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from hosting.backends import get_backend  # noqa: E402
from hosting.backends.domain_xml import DomainSpec, domain_xml  # noqa: E402
from hosting.choices import TokenScope  # noqa: E402
from hosting.models import Customer, Host, Image, Job, Plan, Server  # noqa: E402
from hosting.services.cloudinit import seed_iso  # noqa: E402
from hosting.services.tokens import issue_token  # noqa: E402
from testbed import layout  # noqa: E402
from testbed.layout import TestbedHost  # noqa: E402

QUEUE = f"paddock-bench-{os.getpid()}"
IMAGE_FILE = "paddock-tiny.qcow2"
PHASES = ["queue wait", "image", "disk", "seed", "define", "boot->ready", "total"]
# job log messages that open each phase (hosting/services/operations.provision)
MARKS = {
    "image": "Preparing image",
    "disk": "Creating",
    "seed": "Writing the cloud-init seed",
    "define": "Defining",
    "boot": "Booting",
}
READY = re.compile(r"paddock-guest hostname=(\S+) ip=(\S+) ready")


def wait_ready(read, hostname: str, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = READY.search(read())
        if match and match.group(1) == hostname:
            return time.time()
        time.sleep(0.1)
    raise RuntimeError(f"{hostname}: no ready line within {timeout} s")


def log_times(job: Job) -> dict[str, float]:
    """Epoch seconds of the first log line of each phase."""
    day = job.created_at.date()
    out: dict[str, float] = {}
    for line in job.log:
        stamp, _, message = line.partition(" ")
        for phase, prefix in MARKS.items():
            if phase not in out and message.startswith(prefix):
                moment = datetime.strptime(f"{day} {stamp}", "%Y-%m-%d %H:%M:%S.%f")
                moment = moment.replace(tzinfo=job.created_at.tzinfo)
                if moment < job.created_at - timedelta(seconds=1):
                    moment += timedelta(days=1)  # the job crossed midnight
                out[phase] = moment.timestamp()
    return out


def paddock_run(client, customer, plan, image, host: Host, n: int) -> dict[str, float]:
    hostname = f"bench-{n}"
    t0 = time.time()
    resp = client.post(
        "/api/v1/servers/",
        {"customer": customer.pk, "plan": plan.pk, "image": image.pk, "hostname": hostname},
        format="json",
    )
    assert resp.status_code == 202, resp.content
    job_id = resp.json()["id"]
    server = Server.objects.get(jobs__pk=job_id)
    backend = get_backend(host)
    ready = wait_ready(lambda: backend.console_log(server.domain_name), hostname)
    job = Job.objects.get(pk=job_id)
    while job.status in ("queued", "running"):
        time.sleep(0.1)
        job.refresh_from_db()
    assert job.status == "succeeded", (job.error, job.log)
    marks = log_times(job)
    assert job.started_at is not None
    result = {
        "queue wait": job.started_at.timestamp() - t0,
        "image": marks["disk"] - marks["image"],
        "disk": marks["seed"] - marks["disk"],
        "seed": marks["define"] - marks["seed"],
        "define": marks["boot"] - marks["define"],
        "boot->ready": ready - marks["boot"],
        "total": ready - t0,
    }
    resp = client.delete(f"/api/v1/servers/{server.uuid}/")
    assert resp.status_code == 202
    job = Job.objects.get(pk=resp.json()["id"])
    while job.status in ("queued", "running"):
        time.sleep(0.1)
        job.refresh_from_db()
    return result


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def baseline_run(tb: TestbedHost, base_path: Path, n: int) -> dict[str, float]:
    """The same provisioning by hand: qemu-img, a seed file, virsh."""
    ident = uuid.uuid4()
    name = f"baseline-{ident}"
    hostname = f"baseline-{n}"
    pool_dir = tb.dir / "storage" / layout.HOST_POOL  # the host's pool, seen from here
    inside = Path(settings.STORAGE_ROOT) / layout.HOST_POOL  # the same, seen by the host
    disk, seed, console = f"{name}-disk0.qcow2", f"{name}-seed.iso", f"{name}.console.log"
    mac = "52:54:00:" + ":".join(f"{b:02x}" for b in ident.bytes[:3])
    guest_net = layout.guest_subnet()
    address = guest_net.network_address + 250
    uri = tb.uri
    t0 = time.time()
    sh(
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        str(base_path),
        str(pool_dir / disk),
        "2G",
    )
    t_disk = time.time()
    files = {
        "meta-data": f"instance-id: {ident}\nlocal-hostname: {hostname}\n",
        "user-data": f"#cloud-config\nhostname: {hostname}\n",
        "network-config": (
            "version: 2\nethernets:\n  eth0:\n"
            f'    match: {{macaddress: "{mac}"}}\n'
            f'    addresses: ["{address}/{guest_net.prefixlen}"]\n'
            f"    gateway4: {guest_net.network_address + 1}\n"
        ),
    }
    (pool_dir / seed).write_bytes(seed_iso(files))
    sh("virsh", "-q", "-c", uri, "pool-refresh", layout.HOST_POOL)
    t_seed = time.time()
    spec = DomainSpec(
        name=name,
        uuid=str(ident),
        vcpus=1,
        memory_mib=192,
        disk_volume=disk,
        seed_volume=seed,
        mac_address=mac,
        network=layout.GUEST_NETWORK,
        virt_type="qemu",  # the testbed's hosts run guests under TCG
    )
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as fh:
        fh.write(domain_xml(spec, pool=layout.HOST_POOL, console_log_path=str(inside / console)))
        fh.flush()
        sh("virsh", "-q", "-c", uri, "define", fh.name)
    t_define = time.time()
    sh("virsh", "-q", "-c", uri, "start", name)
    log = pool_dir / console
    ready = wait_ready(lambda: log.read_text(errors="replace") if log.exists() else "", hostname)
    subprocess.run(["virsh", "-q", "-c", uri, "destroy", name], capture_output=True)
    subprocess.run(["virsh", "-q", "-c", uri, "undefine", name], capture_output=True)
    for f in (disk, seed, console):
        (pool_dir / f).unlink(missing_ok=True)
    return {
        "queue wait": 0.0,
        "image": 0.0,
        "disk": t_disk - t0,
        "seed": t_seed - t_disk,
        "define": t_define - t_seed,
        "boot->ready": ready - t_define,
        "total": ready - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/provision.py needs root (it brings up a testbed host).")

    subprocess.run(
        ["bash", str(ROOT / "guest" / "build-image.sh"), str(settings.IMAGE_STORE)], check=True
    )
    image_path = Path(settings.IMAGE_STORE) / IMAGE_FILE

    db = connection.settings_dict
    sqlite = db["ENGINE"].endswith("sqlite3")
    db["TEST"]["NAME"] = str(settings.VAR_DIR / "bench.sqlite3") if sqlite else "paddock_bench"
    settings.VAR_DIR.mkdir(exist_ok=True)
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    from celery.contrib.testing.worker import start_worker

    from config.celery import app
    from devtools import embedded_redis

    redis = (
        None
        if os.environ.get("REDIS_URL")
        else embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    )
    try:
        call_command("testbed", "up", "--hosts", "1", "--queue", QUEUE)
        host = Host.objects.get(name="tb-hv1")
        tb = TestbedHost(1)
        digest = hashlib.sha256(image_path.read_bytes()).hexdigest()[:12]
        image = Image.objects.create(
            name="Paddock tiny",
            source=IMAGE_FILE,
            volume_name=f"paddock-tiny-{digest}.qcow2",
            min_disk_gib=1,
        )
        plan = Plan.objects.create(name="Tiny", vcpus=1, memory_mib=192, disk_gib=2)
        customer = Customer.objects.create(name="Bench", email="bench@example.com")
        staff = get_user_model().objects.create_user("bench", is_staff=True, is_superuser=True)
        _, key = issue_token(user=staff, scope=TokenScope.BILLING)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

        paddock: list[dict[str, float]] = []
        baseline: list[dict[str, float]] = []
        with start_worker(
            app,
            pool="threads",
            concurrency=1,
            queues=[QUEUE],
            perform_ping_check=False,
            shutdown_timeout=30,
            loglevel="WARNING",
        ):
            # the first server uploads the base image into the pool: reported on its own
            first = paddock_run(client, customer, plan, image, host, 0)
            base_path = tb.dir / "storage" / layout.HOST_POOL / image.volume_name
            for n in range(1, args.runs + 1):  # interleaved, so load falls on both alike
                paddock.append(paddock_run(client, customer, plan, image, host, n))
                baseline.append(baseline_run(tb, base_path, n))
    finally:
        call_command("testbed", "down")
        connection.creation.destroy_test_db(old_name, verbosity=0)
        if redis is not None:
            redis.terminate()

    print(
        f"API request -> guest ready line, {args.runs} runs each, one testbed host, "
        f"qemu (TCG), tiny guest, 1 vCPU / 192 MiB"
    )
    print(
        f"first server (uploads the base image): {first['total']:.2f} s, "
        f"of which image {first['image']:.2f} s"
    )
    print(f"{'phase':14}{'Paddock s':>11}{'direct s':>11}{'ratio':>8}")
    for phase in PHASES:
        p = statistics.median(r[phase] for r in paddock)
        b = statistics.median(r[phase] for r in baseline)
        ratio = f"{p / b:.2f}x" if b > 0.0005 else "-"
        print(f"{phase:14}{p:11.3f}{b:11.3f}{ratio:>8}")


if __name__ == "__main__":
    main()
