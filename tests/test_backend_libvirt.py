"""The libvirt backend against libvirt's own test driver (a real in-process hypervisor)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest

from hosting.backends import (
    BackendError,
    Capability,
    DomainNotFound,
    GuestSpec,
    HostUnreachable,
    ImageNotAvailable,
    ImageSource,
    NotSupported,
    PowerState,
    backend_capabilities,
    backend_class,
    get_backend,
    register_backend,
)
from hosting.backends.libvirt_backend import QEMU_CAPABILITIES, LibvirtBackend
from hosting.choices import BackendKind, VirtType
from hosting.models import Host

URI = "test:///default?backend-tests=1"


@pytest.fixture
def backend():
    return LibvirtBackend(uri=URI, pool="default-pool")


@pytest.fixture
def spec():
    ident = uuid.uuid4()
    return GuestSpec(
        name=f"paddock-{ident}",
        uuid=str(ident),
        vcpus=2,
        memory_mib=512,
        disk_gib=10,
        image=ImageSource(volume="base-lifecycle.qcow2", min_size_bytes=2 * 1024**3),
        network="default",
        mac_address="52:54:00:aa:bb:cc",
        metadata={"hostname": "web-1"},
    )


def disk_of(spec: GuestSpec) -> str:
    return LibvirtBackend.disk_volume(spec.name)


def test_host_info(backend):
    info = backend.host_info()
    assert (info.cpus, info.memory_mib, info.disk_gib) == (16, 3072, 100)


def test_full_lifecycle(backend, spec):
    backend.ensure_image(volume="base-lifecycle.qcow2", size_bytes=2 * 1024**3, source_path=None)
    backend.ensure_image(volume="base-lifecycle.qcow2", size_bytes=2 * 1024**3, source_path=None)
    path = backend.create_disk(
        volume=disk_of(spec), base_volume="base-lifecycle.qcow2", size_gib=10
    )
    assert path.endswith(disk_of(spec))
    assert (
        backend.create_disk(volume=disk_of(spec), base_volume="base-lifecycle.qcow2", size_gib=10)
        == path
    )  # twice is harmless
    backend.define(spec)
    backend.define(spec)
    assert backend.state(spec.name) == PowerState.STOPPED
    assert backend.domain_states()[spec.name] == PowerState.STOPPED

    conn = libvirt.open(URI)
    dom = conn.lookupByName(spec.name)
    xml = ET.fromstring(dom.XMLDesc())
    assert xml.findtext("vcpu") == "2"
    assert int(xml.findtext("memory")) == 512 * 1024
    assert xml.find("devices/interface/mac").get("address") == "52:54:00:aa:bb:cc"
    vol = conn.storagePoolLookupByName("default-pool").storageVolLookupByName(disk_of(spec))
    assert vol.info()[1] == 10 * 1024**3

    backend.start(spec.name)
    assert backend.state(spec.name) == PowerState.RUNNING
    backend.pause(spec.name)
    backend.pause(spec.name)  # twice is harmless
    assert backend.state(spec.name) == PowerState.PAUSED
    backend.resume(spec.name)
    assert backend.state(spec.name) == PowerState.RUNNING
    backend.reboot(spec.name)
    assert backend.state(spec.name) == PowerState.RUNNING
    backend.shutdown(spec.name)
    assert backend.state(spec.name) == PowerState.STOPPED
    with pytest.raises(BackendError, match="is not running"):
        backend.reboot(spec.name)
    backend.start(spec.name)
    backend.force_off(spec.name)
    backend.force_off(spec.name)
    assert backend.state(spec.name) == PowerState.STOPPED

    backend.start(spec.name)
    backend.undefine(spec.name, volumes=[disk_of(spec)])
    backend.undefine(spec.name, volumes=[disk_of(spec)])  # gone already: fine
    assert backend.state(spec.name) == PowerState.MISSING
    assert disk_of(spec) not in conn.storagePoolLookupByName("default-pool").listVolumes()


def test_missing_domain_and_image_are_our_errors(backend, spec):
    with pytest.raises(DomainNotFound):
        backend.start("no-such-domain")
    with pytest.raises(ImageNotAvailable, match="not in pool default-pool"):
        backend.create_disk(volume="x.qcow2", base_volume="nope.qcow2", size_gib=1)
    with pytest.raises(ImageNotAvailable, match="missing from the store"):
        backend.ensure_image(volume="y.qcow2", size_bytes=1, source_path="/nonexistent/img")


def test_unreachable_host_is_transient():
    backend = LibvirtBackend(uri="qemu+tcp://127.0.0.1:1/system", pool="p")
    with pytest.raises(HostUnreachable) as info:
        backend.host_info()
    assert info.value.transient
    assert "cannot reach qemu+tcp://127.0.0.1:1/system" in info.value.message


# --- the neutral recipe: provision / deprovision -------------------------------------------


def volumes() -> list[str]:
    conn = libvirt.open(URI)
    return conn.storagePoolLookupByName("default-pool").listVolumes()


def test_provision_from_a_guest_spec_then_deprovision(backend, spec):
    # given a spec with seed files
    seeded = GuestSpec(**{**spec.__dict__, "seed_files": {"meta-data": "a: 1\n"}})
    steps: list[tuple[int, str]] = []
    # when it is provisioned, twice (a retried job repeats its steps)
    backend.provision(seeded, progress=lambda pct, msg: steps.append((pct, msg)))
    backend.provision(seeded)
    # then the guest runs with its disk and seed, and each step was reported in order
    assert backend.state(spec.name) == PowerState.RUNNING
    assert {f"{spec.name}-disk0.qcow2", f"{spec.name}-seed.iso"} <= set(volumes())
    assert [msg.split()[0] for _, msg in steps] == [
        "Preparing",
        "Creating",
        "Writing",
        "Defining",
        "Booting",
    ]
    assert [pct for pct, _ in steps] == sorted(pct for pct, _ in steps)
    xml = ET.fromstring(libvirt.open(URI).lookupByName(spec.name).XMLDesc())
    assert [d.find("target").get("dev") for d in xml.findall("devices/disk")] == ["vda", "vdb"]
    # when it is deprovisioned, twice: nothing of it is left
    backend.deprovision(spec.name)
    backend.deprovision(spec.name)
    assert backend.state(spec.name) == PowerState.MISSING
    assert not [v for v in volumes() if v.startswith(spec.name)]


def test_provision_without_seed_has_one_disk(backend, spec):
    backend.provision(spec)
    xml = ET.fromstring(libvirt.open(URI).lookupByName(spec.name).XMLDesc())
    assert len(xml.findall("devices/disk")) == 1
    assert f"{spec.name}-seed.iso" not in volumes()


def test_the_domain_takes_the_hosts_virt_type_unless_the_spec_names_one(spec):
    # no connection is opened: the domain is only described
    kvm_host = LibvirtBackend(uri="qemu+tcp://192.0.2.1/system", pool="p", virt_type="kvm")
    assert kvm_host.domain_spec(spec).virt_type == "kvm"
    forced = GuestSpec(**{**spec.__dict__, "virt_type": "qemu"})
    assert kvm_host.domain_spec(forced).virt_type == "qemu"
    assert LibvirtBackend(uri=URI, pool="p").domain_spec(forced).virt_type == "test"


# --- capabilities and the registry ---------------------------------------------------------


@pytest.mark.django_db
def test_capabilities_are_read_without_connecting():
    # given a QEMU host that cannot be reached and a test-driver host
    qemu = Host.objects.create(name="far", libvirt_uri="qemu+tcp://127.0.0.1:1/system")
    test = Host.objects.create(name="demo", libvirt_uri="test:///default")
    # then each one's capabilities are known without a connection
    assert backend_capabilities(qemu) == QEMU_CAPABILITIES
    assert {Capability.LIVE_MIGRATION, Capability.SERIAL_CONSOLE, Capability.STATS} <= (
        backend_capabilities(qemu)
    )
    # and the test driver says what it lacks
    lacks = {
        Capability.LIVE_MIGRATION,
        Capability.OFFLINE_MIGRATION,
        Capability.SERIAL_CONSOLE,
        Capability.INCREMENTAL_BACKUP,
        Capability.STATS,
    }
    assert not lacks & backend_capabilities(test)
    assert Capability.PAUSE in backend_capabilities(test)
    assert get_backend(test).capabilities == backend_capabilities(test)
    assert get_backend(qemu).supports(Capability.LIVE_MIGRATION)


@pytest.mark.django_db
def test_registry_finds_a_backend_by_kind():
    assert backend_class(BackendKind.LIBVIRT) is LibvirtBackend
    assert LibvirtBackend.kind == BackendKind.LIBVIRT
    with pytest.raises(BackendError, match="Unknown backend 'lxc-not-yet'"):
        get_backend(Host(name="x", libvirt_uri="lxc:///", backend="lxc-not-yet"))
    # a second class cannot take a kind that is registered
    with pytest.raises(BackendError, match="already LibvirtBackend"):
        register_backend(BackendKind.LIBVIRT)(type("Other", (LibvirtBackend,), {}))


def test_registering_a_new_kind_makes_get_backend_return_it():
    from hosting.backends import registry

    @register_backend("fake-kind")
    class FakeBackend(LibvirtBackend):
        capabilities = frozenset({Capability.PAUSE})

        @classmethod
        def for_host(cls, host):
            return cls(uri="test:///default", pool="default-pool")

    try:
        host = Host(name="f", libvirt_uri="fake:///", backend="fake-kind")
        assert isinstance(get_backend(host), FakeBackend)
        assert backend_capabilities(host) == {Capability.PAUSE}
    finally:
        registry._registry.pop("fake-kind")


# --- stats ---------------------------------------------------------------------------------


def test_stats_reads_every_guest_in_one_call(backend, spec):
    # given three guests: running, paused and stopped
    names = []
    for state in ("running", "paused", "stopped"):
        ident = uuid.uuid4()
        guest = GuestSpec(**{**spec.__dict__, "name": f"st-{state}-{ident}", "uuid": str(ident)})
        backend.provision(guest)
        if state == "paused":
            backend.pause(guest.name)
        if state == "stopped":
            backend.force_off(guest.name)
        names.append(guest.name)
    # when the host's stats are read
    sample = backend.stats()
    # then every guest is there with its state, and the test driver's missing counters
    # are None, not 0
    assert {n: sample.guests[n].state for n in names} == {
        names[0]: PowerState.RUNNING,
        names[1]: PowerState.PAUSED,
        names[2]: PowerState.STOPPED,
    }
    assert sample.guests["test"].state == PowerState.RUNNING  # the driver's own domain
    assert sample.guests[names[0]].cpu_time_ns is None
    assert sample.timestamp > 0
    assert sample.as_dict()["guests"][names[1]]["state"] == "paused"


def test_a_qemu_stats_record_becomes_neutral_counters():
    from hosting.backends.libvirt_stats import guest_stats

    # a record as QEMU's driver returns it (memory in KiB)
    record = {
        "state.state": 1,
        "cpu.time": 123_000_000,
        "vcpu.current": 2,
        "balloon.current": 262144,
        "balloon.rss": 100000,
        "block.count": 1,
        "block.0.name": "vda",
        "block.0.rd.bytes": 4096,
        "block.0.wr.bytes": 512,
        "block.0.rd.reqs": 2,
        "block.0.wr.reqs": 1,
        "net.count": 1,
        "net.0.name": "vnet0",
        "net.0.rx.bytes": 1500,
        "net.0.tx.bytes": 60,
        "net.0.rx.pkts": 3,
        "net.0.tx.pkts": 1,
    }
    stats = guest_stats(record)
    assert stats.state == PowerState.RUNNING
    assert (stats.cpu_time_ns, stats.vcpus) == (123_000_000, 2)
    assert stats.memory_current_bytes == 256 * 1024**2
    assert stats.memory_rss_bytes == 100000 * 1024
    assert stats.memory_unused_bytes is None
    assert stats.disks[0].name == "vda" and stats.disks[0].rd_bytes == 4096
    assert (stats.nics[0].rx_bytes, stats.nics[0].tx_packets) == (1500, 1)


# --- migration: the signatures, and the test driver's honesty ------------------------------


def test_the_test_driver_refuses_migration(backend, spec):
    backend.provision(spec)
    other = LibvirtBackend(uri=URI, pool="default-pool")
    problems = backend.check_migration(spec.name, other, live=True)
    assert "The source host's backend cannot do live migration." in problems
    assert "The target is the guest's own host." in problems
    assert any("no guest" in p for p in backend.check_migration("nope", other, live=False))
    with pytest.raises(NotSupported, match="cannot do offline migration"):
        backend.migrate(spec.name, other, live=False)


# --- virtualization type per host ----------------------------------------------------------


def test_the_test_driver_reports_its_own_virt_type(backend):
    assert backend.host_info().virt_type == "test"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("chosen", "detected", "effective"),
    [
        (VirtType.AUTO, "kvm", "kvm"),
        (VirtType.AUTO, "qemu", "qemu"),
        (VirtType.AUTO, "", "qemu"),  # never read: the safe choice
        (VirtType.AUTO, "test", "qemu"),
        (VirtType.QEMU, "kvm", "qemu"),  # forced per host
        (VirtType.KVM, "qemu", "kvm"),
    ],
)
def test_a_hosts_virt_type(settings, chosen, detected, effective):
    settings.VIRT_TYPE = ""
    host = Host(
        name="h",
        libvirt_uri="qemu+tcp://192.0.2.1/system",
        virt_type=chosen,
        detected_virt_type=detected,
    )
    assert host.effective_virt_type == effective
    assert get_backend(host).virt_type == effective
    # PADDOCK_VIRT_TYPE, when set, forces one type on every host
    settings.VIRT_TYPE = "qemu"
    assert get_backend(host).virt_type == "qemu"
