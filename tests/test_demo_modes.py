"""The demo's two modes: real VMs on the local qemu:///system, or libvirt's test driver.

No libvirtd is needed: the decision is a function of what the machine offers (a Probe),
and the seed is run with the mode, the host refresh and the image given.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from devtools.management.commands import seed_demo
from hosting.backends import HostUnreachable
from hosting.choices import HostState, JobKind
from hosting.models import Host, Image, IPPool, Job, Plan
from hosting.services import hosts as host_service
from testbed import local
from testbed.local import Mode, Probe

READY = Probe(setting="auto", root=True, missing=(), answers=True, network=True)


# --- the decision --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probe", "reason"),
    [
        (Probe(setting="off"), "PADDOCK_LOCAL_HYPERVISOR=off"),
        (Probe(setting="yes"), "PADDOCK_LOCAL_HYPERVISOR is 'yes', not one of auto, off"),
        (Probe(root=False), "not running as root"),
        (Probe(missing=("libvirtd", "qemu-system-x86_64")), "libvirtd, qemu-system-x86_64 not"),
        (Probe(answers=False), "no libvirtd answers on qemu:///system"),
        (Probe(answers=True, network=False), "network 'paddock' is not active"),
        # the first reason that applies is the one given
        (Probe(setting="off", root=False, missing=("virsh",)), "PADDOCK_LOCAL_HYPERVISOR=off"),
        (Probe(root=False, missing=("virsh",), answers=False), "not running as root"),
    ],
)
def test_the_test_driver_and_why(probe, reason):
    mode = local.decide(probe)
    assert not mode.real
    assert reason in mode.reason
    assert mode.describe() == f"libvirt test driver: no real guests, because {mode.reason}"


def test_real_vms_when_libvirtd_answers_with_the_network(settings):
    settings.VIRT_TYPE = "qemu"
    mode = local.decide(READY)
    assert mode == Mode(real=True)
    assert mode.describe() == "real VMs on qemu:///system (TCG)"
    settings.VIRT_TYPE = "kvm"
    assert mode.describe() == "real VMs on qemu:///system (KVM)"


def test_off_asks_nothing_and_starts_nothing(settings, monkeypatch):
    settings.LOCAL_HYPERVISOR = "off"

    def no_virsh(*args, **kwargs):
        raise AssertionError("virsh was called")

    monkeypatch.setattr(local, "virsh", no_virsh)
    monkeypatch.setattr(local.netns, "run", no_virsh)
    found = local.probe()
    assert (found.setting, found.answers, found.network) == ("off", None, None)
    said: list[str] = []
    hypervisor = local.bring_up(say=said.append)
    assert hypervisor.mode == Mode(real=False, reason="PADDOCK_LOCAL_HYPERVISOR=off")
    assert not hypervisor.owned
    hypervisor.shut_down()  # nothing to stop, nothing said
    assert said == []


def test_the_guest_network_comes_from_the_settings(settings):
    settings.LOCAL_GUEST_SUBNET = "10.99.7.0/24"
    assert str(local.gateway()) == "10.99.7.1/24"


# --- the seed in each mode -----------------------------------------------------------------


@pytest.fixture
def tiny_file(settings, tmp_path):
    settings.IMAGE_STORE = tmp_path
    path = tmp_path / seed_demo.TINY_IMAGE_FILE
    path.write_bytes(b"not really a qcow2, but content all the same")
    return path


@pytest.fixture
def fake_local_host(monkeypatch):
    """refresh_host and reconcile_host as if qemu:///system had answered."""
    calls = []

    def refresh(*, host, ctx=None):
        calls.append(host.name)
        Host.objects.filter(pk=host.pk).update(
            cpus=2, memory_mib=8192, disk_gib=100, last_seen=timezone.now()
        )
        host.refresh_from_db()
        return host

    monkeypatch.setattr(host_service, "refresh_host", refresh)
    monkeypatch.setattr(seed_demo, "reconcile_host", lambda *, host: None)
    return calls


def seed(monkeypatch, mode: Mode, capture) -> str:
    monkeypatch.setattr(seed_demo, "demo_mode", lambda: mode)
    out = io.StringIO()
    with capture(execute=False):
        call_command("seed_demo", url="http://127.0.0.1:9999/", stdout=out)
    return out.getvalue()


def catalogue() -> dict:
    return {
        "hosts": dict(Host.objects.values_list("name", "state")),
        "images": set(Image.objects.active().values_list("name", flat=True)),
        "pools": set(IPPool.objects.filter(is_active=True).values_list("name", flat=True)),
        "plans": set(Plan.objects.active().values_list("name", flat=True)),
    }


@pytest.mark.django_db
def test_real_mode_registers_the_local_host_and_the_tiny_image(
    monkeypatch, tiny_file, fake_local_host, django_capture_on_commit_callbacks
):
    # given a machine where the local hypervisor answers: two seeds
    out = seed(monkeypatch, Mode(real=True), django_capture_on_commit_callbacks)
    first = catalogue()
    seed(monkeypatch, Mode(real=True), django_capture_on_commit_callbacks)

    # then the demo is on the local host, and a second seed changes nothing
    assert (
        catalogue()
        == first
        == {
            "hosts": {"demo-host": HostState.MAINTENANCE, "local": HostState.ONLINE},
            "images": {"Paddock tiny"},
            "pools": {"local-ipv4"},
            "plans": {"Tiny", "Nano", "Small", "Medium"},
        }
    )
    assert (Host.objects.count(), Image.objects.count(), IPPool.objects.count()) == (2, 4, 3)
    host = Host.objects.get(name="local")
    assert (host.libvirt_uri, host.storage_pool, host.network, host.queue, host.zone) == (
        "qemu:///system",
        "paddock",
        "paddock",
        "paddock",
        "local",
    )
    assert host.memory_mib == 8192  # read by the seed itself, not by a worker
    assert fake_local_host == ["local", "local"]
    assert not Job.objects.filter(kind=JobKind.HOST_REFRESH).exists()
    # the base volume is named after the image's content
    digest = hashlib.sha256(tiny_file.read_bytes()).hexdigest()[:12]
    image = Image.objects.get(name="Paddock tiny")
    assert (image.source, image.volume_name, image.min_disk_gib, image.cloud_init) == (
        "paddock-tiny.qcow2",
        f"paddock-tiny-{digest}.qcow2",
        1,
        True,
    )
    plan = Plan.objects.get(name="Tiny")
    assert (plan.vcpus, plan.memory_mib, plan.disk_gib) == (1, 192, 2)
    pool = IPPool.objects.get(name="local-ipv4")
    assert (pool.network, pool.gateway, pool.range_start, pool.zone) == (
        "10.252.0.0/24",
        "10.252.0.1",
        "10.252.0.10",
        "local",
    )
    assert "Demo mode: real VMs on qemu:///system (TCG)." in out
    assert "Host local: 2 CPUs, 8192 MiB" in out

    # when the image is rebuilt, the same row names the new content
    tiny_file.write_bytes(b"a rebuilt image")
    seed(monkeypatch, Mode(real=True), django_capture_on_commit_callbacks)
    image.refresh_from_db()
    rebuilt = hashlib.sha256(b"a rebuilt image").hexdigest()[:12]
    assert image.volume_name == f"paddock-tiny-{rebuilt}.qcow2"


@pytest.mark.django_db
def test_back_to_the_test_driver_swaps_hosts_images_and_pools(
    monkeypatch, tiny_file, fake_local_host, django_capture_on_commit_callbacks
):
    seed(monkeypatch, Mode(real=True), django_capture_on_commit_callbacks)
    # when the local hypervisor is gone at the next run
    out = seed(monkeypatch, Mode(real=False, reason="a reason"), django_capture_on_commit_callbacks)
    # then the test driver serves the demo; the local rows stay, out of the catalogue
    assert catalogue() == {
        "hosts": {"demo-host": HostState.ONLINE, "local": HostState.MAINTENANCE},
        "images": {"Debian 12", "Ubuntu 24.04", "Alpine 3.20"},
        "pools": {"demo-ipv4", "demo-ipv6"},
        "plans": {"Tiny", "Nano", "Small", "Medium"},
    }
    assert "Demo mode: libvirt test driver: no real guests, because a reason." in out
    assert Job.objects.filter(kind=JobKind.HOST_REFRESH, host__name="demo-host").count() == 1


@pytest.mark.django_db
def test_an_image_that_cannot_be_built_falls_back(
    monkeypatch, settings, tmp_path, fake_local_host, django_capture_on_commit_callbacks
):
    settings.IMAGE_STORE = tmp_path  # no image there

    def fails():
        raise RuntimeError("the tiny guest image could not be built (no mirror)")

    monkeypatch.setattr(seed_demo, "tiny_image", fails)
    out = seed(monkeypatch, Mode(real=True), django_capture_on_commit_callbacks)
    assert "Building the tiny guest image" in out
    assert "no real guests, because the tiny guest image could not be built (no mirror)" in out
    assert catalogue()["hosts"] == {"demo-host": HostState.ONLINE}
    assert fake_local_host == []


@pytest.mark.django_db
def test_a_local_host_that_cannot_be_read_falls_back(
    monkeypatch, tiny_file, django_capture_on_commit_callbacks
):
    def unreachable(*, host, ctx=None):
        Host.objects.filter(pk=host.pk).update(state=HostState.OFFLINE)
        raise HostUnreachable("connect: cannot reach qemu:///system: gone")

    monkeypatch.setattr(host_service, "refresh_host", unreachable)
    out = seed(monkeypatch, Mode(real=True), django_capture_on_commit_callbacks)
    assert "because qemu:///system could not be read: connect: cannot reach" in out
    assert catalogue()["hosts"] == {
        "demo-host": HostState.ONLINE,
        "local": HostState.MAINTENANCE,
    }
    assert "Paddock tiny" not in catalogue()["images"]


@pytest.mark.django_db
def test_mode_switches_keep_what_an_admin_changed(
    monkeypatch, tiny_file, fake_local_host, django_capture_on_commit_callbacks
):
    test_driver = Mode(real=False, reason="a reason")
    # given the demo on the test driver, whose admin deactivated one image
    seed(monkeypatch, test_driver, django_capture_on_commit_callbacks)
    Image.objects.filter(name="Debian 12").update(is_active=False)
    # and then in real-VM mode, whose admin renamed the tiny image
    seed(monkeypatch, Mode(real=True), django_capture_on_commit_callbacks)
    Image.objects.filter(name="Paddock tiny").update(name="Tiny VM")

    # when the mode goes back to the test driver
    out = seed(monkeypatch, test_driver, django_capture_on_commit_callbacks)
    # then the switch offers the test driver's images, except the one the admin took out
    assert catalogue()["images"] == {"Ubuntu 24.04", "Alpine 3.20"}
    assert "kept image 'debian-12.qcow2' as an admin changed it: is_active False" in out

    # when it goes to real VMs again, with a rebuilt image
    tiny_file.write_bytes(b"a rebuilt image")
    out = seed(monkeypatch, Mode(real=True), django_capture_on_commit_callbacks)
    # then the renamed image is offered under the admin's name, with the new content
    assert catalogue()["images"] == {"Tiny VM"}
    image = Image.objects.get(name="Tiny VM")
    assert (
        image.volume_name
        == f"paddock-tiny-{hashlib.sha256(b'a rebuilt image').hexdigest()[:12]}.qcow2"
    )
    assert "kept image 'paddock-tiny' as an admin changed it: name 'Tiny VM'" in out
    assert Image.objects.count() == 4


@pytest.mark.django_db
def test_a_host_of_the_admins_on_the_local_uri_is_left_alone(
    monkeypatch, tiny_file, fake_local_host, django_capture_on_commit_callbacks
):
    # given a host that an admin registered on qemu:///system under a name of their own
    Host.objects.create(name="hv-here", libvirt_uri="qemu:///system", state=HostState.ONLINE)
    # when the seed would register the local host
    out = seed(monkeypatch, Mode(real=True), django_capture_on_commit_callbacks)
    # then it does not collide with it: the demo stays on the test driver and says why
    assert "skipped host 'local': host #" in out
    assert "already has the connection URI 'qemu:///system'" in out
    assert "because the seed could not register the host 'local'" in out
    assert catalogue()["hosts"] == {"demo-host": HostState.ONLINE, "hv-here": HostState.ONLINE}
    assert fake_local_host == []
