"""The libvirt backend against libvirt's own test driver (a real in-process hypervisor)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest

from hosting.backends import (
    BackendError,
    DomainNotFound,
    DomainSpec,
    HostUnreachable,
    ImageNotAvailable,
    PowerState,
)
from hosting.backends.libvirt_backend import LibvirtBackend

URI = "test:///default?backend-tests=1"


@pytest.fixture
def backend():
    return LibvirtBackend(uri=URI, pool="default-pool")


@pytest.fixture
def spec():
    ident = uuid.uuid4()
    return DomainSpec(
        name=f"paddock-{ident}",
        uuid=str(ident),
        vcpus=2,
        memory_mib=512,
        disk_volume=f"paddock-{ident}-disk0.qcow2",
        mac_address="52:54:00:aa:bb:cc",
        network="default",
        metadata={"hostname": "web-1"},
    )


def test_host_info(backend):
    info = backend.host_info()
    assert (info.cpus, info.memory_mib, info.disk_gib) == (16, 3072, 100)


def test_full_lifecycle(backend, spec):
    backend.ensure_image(volume="base-lifecycle.qcow2", size_bytes=2 * 1024**3, source_path=None)
    backend.ensure_image(volume="base-lifecycle.qcow2", size_bytes=2 * 1024**3, source_path=None)
    path = backend.create_disk(
        volume=spec.disk_volume, base_volume="base-lifecycle.qcow2", size_gib=10
    )
    assert path.endswith(spec.disk_volume)
    assert (
        backend.create_disk(
            volume=spec.disk_volume, base_volume="base-lifecycle.qcow2", size_gib=10
        )
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
    vol = conn.storagePoolLookupByName("default-pool").storageVolLookupByName(spec.disk_volume)
    assert vol.info()[1] == 10 * 1024**3

    backend.start(spec.name)
    assert backend.state(spec.name) == PowerState.RUNNING
    backend.suspend(spec.name)
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
    backend.undefine(spec.name, volumes=[spec.disk_volume])
    backend.undefine(spec.name, volumes=[spec.disk_volume])  # gone already: fine
    assert backend.state(spec.name) == PowerState.MISSING
    assert spec.disk_volume not in conn.storagePoolLookupByName("default-pool").listVolumes()


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
