"""The real-host system suite: a two-host testbed, real QEMU guests under TCG.

Run with `make test-system` (root). It fails, rather than skips, when the machine cannot
run it: the suite is only ever asked for on purpose.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from hosting.models import Image, Plan

from ..factories import TEST_QUEUE

ROOT = Path(__file__).resolve().parents[2]
IMAGE_FILE = "paddock-tiny.qcow2"
ROOTFS_FILE = "paddock-tiny-rootfs.tar.gz"


@pytest.fixture(scope="session")
def system_ready():
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root")
    for tool in ("libvirtd", "virsh", "qemu-system-x86_64", "qemu-img", "ip"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is missing")
    if problems:
        pytest.fail("The system suite cannot run here: " + "; ".join(problems))


@pytest.fixture(scope="session")
def guest_image(system_ready) -> Path:
    out = Path(settings.IMAGE_STORE)
    subprocess.run(["bash", str(ROOT / "guest" / "build-image.sh"), str(out)], check=True)
    path = out / IMAGE_FILE
    assert path.exists(), f"{path} was not built"
    return path


@pytest.fixture(scope="session")
def rootfs_template(system_ready) -> Path:
    """The container template (guest/build-rootfs.sh), built into the image store."""
    out = Path(settings.IMAGE_STORE)
    subprocess.run(["bash", str(ROOT / "guest" / "build-rootfs.sh"), str(out)], check=True)
    path = out / ROOTFS_FILE
    assert path.exists(), f"{path} was not built"
    return path


@pytest.fixture(scope="session")
def testbed_session(system_ready):
    from testbed.hosts import down_all

    down_all()  # whatever a killed run left
    yield
    down_all()


@pytest.fixture
def testbed(testbed_session, transactional_db):
    """Two hosts registered in this test's database (the testbed itself stays up)."""
    call_command("testbed", "up", "--hosts", "2", "--queue", TEST_QUEUE)


@pytest.fixture
def container_hosts(testbed, settings):
    """The two testbed hosts registered as LXC container hosts too (tb-ct1, tb-ct2), and
    this process's workers given the testbed's SSH key and its hosts' keys."""
    from testbed import layout

    settings.LXC_SSH_KEY = str(layout.ssh_key())
    settings.LXC_SSH_KNOWN_HOSTS = str(layout.ssh_known_hosts())
    settings.LXC_SSH_ACCEPT_NEW = False  # the known_hosts file has every testbed host
    call_command("testbed", "up", "--hosts", "2", "--containers", "--queue", TEST_QUEUE)


@pytest.fixture
def tiny_image(guest_image, transactional_db) -> Image:
    # the base volume is named after the content: a rebuilt image never hides behind an
    # old volume of the same name that overlays are backed by
    digest = hashlib.sha256(guest_image.read_bytes()).hexdigest()[:12]
    return Image.objects.create(
        name="Paddock tiny",
        os_version="tiny",
        source=IMAGE_FILE,
        volume_name=f"paddock-tiny-{digest}.qcow2",
        min_disk_gib=1,
        cloud_init=True,
    )


@pytest.fixture
def tiny_plan(transactional_db) -> Plan:
    return Plan.objects.create(name="Tiny", vcpus=1, memory_mib=192, disk_gib=2)


@pytest.fixture
def container_image(rootfs_template, transactional_db) -> Image:
    digest = hashlib.sha256(rootfs_template.read_bytes()).hexdigest()[:12]
    return Image.objects.create(
        name="Paddock tiny container",
        os_version="tiny",
        kind="container",
        format="tar",
        source=ROOTFS_FILE,
        volume_name=f"paddock-tiny-rootfs-{digest}.tar.gz",
        min_disk_gib=1,
        cloud_init=False,
    )


@pytest.fixture
def container_plan(transactional_db) -> Plan:
    return Plan.objects.create(
        name="Tiny container", kind="container", vcpus=1, memory_mib=128, disk_gib=1
    )
