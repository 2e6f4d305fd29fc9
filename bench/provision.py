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

Then the same for a container (`--kind container` alone, `--kind vm` without it): a
container plan and the tiny template (guest/build-rootfs.sh) on the same testbed host
registered as a container host (tb-ct1, reached over SSH by the LXC backend):

    queue wait   request accepted -> a worker starts the job
    template     the job's start -> root file system creation (checks the template is on
                 the host; an upload the first time)
    rootfs       template unpacked, customized, `mkfs.ext4 -d` image, config written
    start->ready `lxc-start` -> `paddock-guest ... ready` on the container's console log

against the same by hand in the host's namespace: `tar -x` of the template, the hostname
written, `mkfs.ext4 -d`, a config file written, `lxc-start -d`, the ready line read from
the console log file.
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
os.environ.setdefault("PADDOCK_DEV_TOOLS", "true")  # the testbed command
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
ROOTFS_FILE = "paddock-tiny-rootfs.tar.gz"
PHASES = ["queue wait", "image", "disk", "seed", "define", "boot->ready", "total"]
CT_PHASES = ["queue wait", "template", "rootfs", "start->ready", "total"]
# job log messages that open each phase (hosting/services/operations.provision)
MARKS = {
    "image": "Preparing image",
    "disk": "Creating",
    "seed": "Writing the cloud-init seed",
    "define": "Defining",
    "boot": "Booting",
}
# and of a container's (hosting/backends/lxc_backend.provision)
CT_MARKS = {
    "rootfs": "Creating the container's root file system",
    "start": "Starting the container",
}
READY = re.compile(r"paddock-guest hostname=(\S+) ip=(\S+) ready")


def wait_ready(read, hostname: str, timeout: float = 300, job_id: int | None = None) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = READY.search(read())
        if match and match.group(1) == hostname:
            return time.time()
        if job_id is not None and Job.objects.filter(pk=job_id, status="failed").exists():
            job = Job.objects.get(pk=job_id)
            raise RuntimeError(f"{hostname}: the job failed: {job.error}")
        time.sleep(0.1)
    raise RuntimeError(f"{hostname}: no ready line within {timeout} s")


def log_times(job: Job, marks: dict[str, str] = MARKS) -> dict[str, float]:
    """Epoch seconds of the first log line of each phase."""
    day = job.created_at.date()
    out: dict[str, float] = {}
    for line in job.log:
        stamp, _, message = line.partition(" ")
        for phase, prefix in marks.items():
            if phase not in out and message.startswith(prefix):
                moment = datetime.strptime(f"{day} {stamp}", "%Y-%m-%d %H:%M:%S.%f")
                moment = moment.replace(tzinfo=job.created_at.tzinfo)
                if moment < job.created_at - timedelta(seconds=1):
                    moment += timedelta(days=1)  # the job crossed midnight
                out[phase] = moment.timestamp()
    return out


def read_file(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def api_provision(client, customer, plan, image, hostname: str, console) -> tuple:
    """(t0, ready, job, server) of one server made through the API; `console(server)`
    reads its console."""
    t0 = time.time()
    resp = client.post(
        "/api/v1/servers/",
        {"customer": customer.pk, "plan": plan.pk, "image": image.pk, "hostname": hostname},
        format="json",
    )
    assert resp.status_code == 202, resp.content
    job_id = resp.json()["id"]
    server = Server.objects.get(jobs__pk=job_id)
    ready = wait_ready(lambda: console(server), hostname, job_id=job_id)
    job = Job.objects.get(pk=job_id)
    while job.status in ("queued", "running"):
        time.sleep(0.1)
        job.refresh_from_db()
    assert job.status == "succeeded", (job.error, job.log)
    assert job.started_at is not None
    return t0, ready, job, server


def api_delete(client, server: Server) -> None:
    resp = client.delete(f"/api/v1/servers/{server.uuid}/")
    assert resp.status_code == 202
    job = Job.objects.get(pk=resp.json()["id"])
    while job.status in ("queued", "running"):
        time.sleep(0.1)
        job.refresh_from_db()
    assert job.status == "succeeded", (job.error, job.log)


def paddock_run(client, customer, plan, image, host: Host, n: int) -> dict[str, float]:
    backend = get_backend(host)
    t0, ready, job, server = api_provision(
        client, customer, plan, image, f"bench-{n}", lambda s: backend.console_log(s.domain_name)
    )
    marks = log_times(job)
    result = {
        "queue wait": job.started_at.timestamp() - t0,
        "image": marks["disk"] - marks["image"],
        "disk": marks["seed"] - marks["disk"],
        "seed": marks["define"] - marks["seed"],
        "define": marks["boot"] - marks["define"],
        "boot->ready": ready - marks["boot"],
        "total": ready - t0,
    }
    api_delete(client, server)
    return result


def paddock_container_run(client, customer, plan, image, tb: TestbedHost, n: int) -> dict:
    # the console log file read where the host keeps it (the same file as the baseline's)
    t0, ready, job, server = api_provision(
        client,
        customer,
        plan,
        image,
        f"bench-ct-{n}",
        lambda s: read_file(tb.lxc_path / s.domain_name / "console.log"),
    )
    assert server.host is not None and server.host.name == tb.ct_name, server.host
    marks = log_times(job, CT_MARKS)
    started = job.started_at.timestamp()
    result = {
        "queue wait": started - t0,
        "template": marks["rootfs"] - started,
        "rootfs": marks["start"] - marks["rootfs"],
        "start->ready": ready - marks["start"],
        "total": ready - t0,
    }
    api_delete(client, server)
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


CT_CONFIG = """\
lxc.include = /usr/share/lxc/config/common.conf
lxc.arch = linux64
lxc.uts.name = {hostname}
lxc.rootfs.path = loop:{directory}/rootfs.img
lxc.autodev = 1
lxc.tty.max = 1
lxc.pty.max = 16
lxc.console.logfile = {directory}/console.log
lxc.apparmor.profile = unconfined
lxc.net.0.type = veth
lxc.net.0.link = {bridge}
lxc.net.0.flags = up
lxc.net.0.name = eth0
lxc.net.0.hwaddr = {mac}
lxc.net.0.ipv4.address = {address}
lxc.net.0.ipv4.gateway = {gateway}
lxc.signal.halt = SIGUSR1
lxc.signal.reboot = SIGTERM
lxc.cgroup.memory.limit_in_bytes = {memory}
lxc.cgroup.cpu.cfs_period_us = 100000
lxc.cgroup.cpu.cfs_quota_us = 100000
"""


def baseline_container_run(tb: TestbedHost, template: Path, n: int, memory_mib: int) -> dict:
    """The same container by hand: tar, mkfs.ext4 -d, a config file, lxc-start."""
    ident = uuid.uuid4()
    name = f"baseline-{ident}"
    hostname = f"baseline-ct-{n}"
    directory = tb.lxc_path / name
    # on the host as an admin would: over SSH, in the host's own shell
    in_netns = [
        "ssh", "-i", str(layout.ssh_key()), "-o", f"UserKnownHostsFile={layout.ssh_known_hosts()}",
        "-o", "BatchMode=yes", f"root@{tb.address.ip}",
    ]  # fmt: skip
    where = ["-P", str(tb.lxc_path), "-n", name]
    guest_net = layout.guest_subnet()
    t0 = time.time()
    directory.mkdir()
    staging = directory / "staging"
    staging.mkdir()
    sh("tar", "-x", "--numeric-owner", "-p", "-f", str(template), "-C", str(staging))
    (staging / "etc" / "hostname").write_text(hostname + "\n")
    image = directory / "rootfs.img"
    with open(image, "wb") as fh:
        fh.truncate(2**30)
    sh("mkfs.ext4", "-q", "-F", "-m", "0", "-d", str(staging), "-L", "rootfs", str(image))
    subprocess.run(["rm", "-rf", str(staging)], check=True)
    (directory / "config").write_text(
        CT_CONFIG.format(
            hostname=hostname,
            directory=directory,
            bridge=layout.GUEST_BRIDGE,
            mac="52:54:00:" + ":".join(f"{b:02x}" for b in ident.bytes[:3]),
            address=f"{guest_net.network_address + 251}/{guest_net.prefixlen}",
            gateway=guest_net.network_address + 1,
            memory=memory_mib * 2**20,
        )
    )
    t_rootfs = time.time()
    sh(*in_netns, "lxc-start", *where, "-d")
    log = directory / "console.log"
    ready = wait_ready(lambda: read_file(log), hostname)
    subprocess.run([*in_netns, "lxc-stop", *where, "-k"], capture_output=True)
    subprocess.run(["rm", "-rf", str(directory)], check=True)
    return {
        "queue wait": 0.0,
        "template": 0.0,
        "rootfs": t_rootfs - t0,
        "start->ready": ready - t_rootfs,
        "total": ready - t0,
    }


def print_table(phases: list[str], paddock: list[dict], baseline: list[dict]) -> None:
    print(f"{'phase':14}{'Paddock s':>11}{'direct s':>11}{'ratio':>8}")
    for phase in phases:
        p = statistics.median(r[phase] for r in paddock)
        b = statistics.median(r[phase] for r in baseline)
        ratio = f"{p / b:.2f}x" if b > 0.0005 else "-"
        print(f"{phase:14}{p:11.3f}{b:11.3f}{ratio:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kind", choices=["all", "vm", "container"], default="all")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/provision.py needs root (it brings up a testbed host).")
    vms = args.kind in ("all", "vm")
    containers = args.kind in ("all", "container")

    store = Path(settings.IMAGE_STORE)
    if vms:
        subprocess.run(["bash", str(ROOT / "guest" / "build-image.sh"), str(store)], check=True)
    if containers:
        subprocess.run(["bash", str(ROOT / "guest" / "build-rootfs.sh"), str(store)], check=True)
        # the worker (in this process) reaches the testbed's container hosts over SSH
        settings.LXC_SSH_KEY = str(layout.ssh_key())
        settings.LXC_SSH_KNOWN_HOSTS = str(layout.ssh_known_hosts())
        settings.LXC_SSH_ACCEPT_NEW = False

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
    paddock: list[dict[str, float]] = []
    baseline: list[dict[str, float]] = []
    ct_paddock: list[dict[str, float]] = []
    ct_baseline: list[dict[str, float]] = []
    try:
        up = ["testbed", "up", "--hosts", "1", "--queue", QUEUE]
        call_command(*up, *(["--containers"] if containers else []))
        tb = TestbedHost(1)
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
            if vms:
                host = Host.objects.get(name=tb.name)
                image_path = store / IMAGE_FILE
                digest = hashlib.sha256(image_path.read_bytes()).hexdigest()[:12]
                image = Image.objects.create(
                    name="Paddock tiny",
                    source=IMAGE_FILE,
                    volume_name=f"paddock-tiny-{digest}.qcow2",
                    min_disk_gib=1,
                )
                plan = Plan.objects.create(name="Tiny", vcpus=1, memory_mib=192, disk_gib=2)
                # the first server uploads the base image into the pool: reported on its own
                first = paddock_run(client, customer, plan, image, host, 0)
                base_path = tb.dir / "storage" / layout.HOST_POOL / image.volume_name
                for n in range(1, args.runs + 1):  # interleaved: load falls on both alike
                    paddock.append(paddock_run(client, customer, plan, image, host, n))
                    baseline.append(baseline_run(tb, base_path, n))
            if containers:
                rootfs_path = store / ROOTFS_FILE
                digest = hashlib.sha256(rootfs_path.read_bytes()).hexdigest()[:12]
                ct_image = Image.objects.create(
                    name="Paddock tiny container",
                    kind="container",
                    format="tar",
                    source=ROOTFS_FILE,
                    volume_name=f"paddock-tiny-rootfs-{digest}.tar.gz",
                    min_disk_gib=1,
                    cloud_init=False,
                )
                ct_plan = Plan.objects.create(
                    name="Tiny container", kind="container", vcpus=1, memory_mib=128, disk_gib=1
                )
                # the first container uploads the template to the host: reported on its own
                ct_first = paddock_container_run(client, customer, ct_plan, ct_image, tb, 0)
                template = tb.lxc_path / ".paddock" / "templates" / ct_image.volume_name
                for n in range(1, args.runs + 1):
                    ct_paddock.append(
                        paddock_container_run(client, customer, ct_plan, ct_image, tb, n)
                    )
                    ct_baseline.append(baseline_container_run(tb, template, n, ct_plan.memory_mib))
    finally:
        call_command("testbed", "down")
        connection.creation.destroy_test_db(old_name, verbosity=0)
        if redis is not None:
            redis.terminate()

    if vms:
        print(
            f"API request -> guest ready line, {args.runs} runs each, one testbed host, "
            f"qemu (TCG), tiny guest, 1 vCPU / 192 MiB"
        )
        print(
            f"first server (uploads the base image): {first['total']:.2f} s, "
            f"of which image {first['image']:.2f} s"
        )
        print_table(PHASES, paddock, baseline)
    if containers:
        if vms:
            print()
        print(
            f"API request -> container ready line, {args.runs} runs each, one testbed host "
            f"over SSH, LXC, tiny template, 1 vCPU / 128 MiB / 1 GiB"
        )
        print(
            f"first container (uploads the template): {ct_first['total']:.2f} s, "
            f"of which template {ct_first['template']:.2f} s"
        )
        print_table(CT_PHASES, ct_paddock, ct_baseline)


if __name__ == "__main__":
    main()
