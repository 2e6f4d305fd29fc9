"""The tiny guest image (guest/): the NoCloud seed format, and a boot under plain QEMU.

The seed tests are quick and run everywhere; the boot test is part of the system suite
(`-m system`) and runs guest/smoke-test.sh: build (cached), boot under TCG three times with
the seed on each supported bus, kill, power button, reset, heartbeat continuity.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUEST = ROOT / "guest"


def load_seed_module():
    spec = importlib.util.spec_from_file_location("nocloud_seed", GUEST / "nocloud_seed.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seed = load_seed_module()


def flatten(text: str, tmp_path: Path) -> list[str]:
    """The guest's own YAML reader (busybox awk in the guest; any POSIX awk here)."""
    awk = shutil.which("awk")
    if awk is None:
        pytest.skip("no awk")
    doc = tmp_path / "doc.yaml"
    doc.write_text(text)
    out = subprocess.run(
        [awk, "-f", str(GUEST / "flatten-yaml.awk"), str(doc)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.splitlines()


def test_documents_read_by_the_guest(tmp_path):
    net = seed.render_network_config(
        "52:54:00:AB:CD:EF", "192.0.2.10/24", "192.0.2.1", ["192.0.2.1", "192.0.2.2"]
    )
    assert flatten(net, tmp_path) == [
        "version=2",
        "ethernets.eth0.match.macaddress=52:54:00:ab:cd:ef",
        "ethernets.eth0.set-name=eth0",
        "ethernets.eth0.addresses=192.0.2.10/24",
        "ethernets.eth0.gateway4=192.0.2.1",
        "ethernets.eth0.nameservers.addresses=192.0.2.1",
        "ethernets.eth0.nameservers.addresses=192.0.2.2",
    ]
    meta = seed.render_meta_data("srv-1", "web-1")
    assert flatten(meta, tmp_path) == ["instance-id=srv-1", "local-hostname=web-1"]
    user = seed.render_user_data(["ssh-ed25519 AAAA a@b", "ssh-rsa BBBB c d"])
    assert flatten(user, tmp_path) == [
        "ssh_authorized_keys=ssh-ed25519 AAAA a@b",
        "ssh_authorized_keys=ssh-rsa BBBB c d",
    ]
    with pytest.raises(ValueError):
        seed.render_network_config("52:54:00:00:00:01", "192.0.2.10")


def test_guest_reads_netplan_block_style(tmp_path):
    text = """\
network:
  version: 2
  ethernets:
    id0:
      match:
        macaddress: '52:54:00:12:34:56'
      addresses:
      - 10.0.0.5/24
      routes:
        - to: default
          via: 10.0.0.1
"""
    assert flatten(text, tmp_path) == [
        "network.version=2",
        "network.ethernets.id0.match.macaddress=52:54:00:12:34:56",
        "network.ethernets.id0.addresses=10.0.0.5/24",
        "network.ethernets.id0.routes.0.to=default",
        "network.ethernets.id0.routes.0.via=10.0.0.1",
    ]


def test_seed_iso_layout():
    iso = seed.build_seed_iso("instance-id: a\n", "#cloud-config\n", "version: 2\n")
    assert len(iso) % 2048 == 0
    pvd, svd, end = (iso[2048 * n : 2048 * (n + 1)] for n in (16, 17, 18))
    assert pvd[:6] == b"\x01CD001" and svd[:6] == b"\x02CD001" and end[:6] == b"\xffCD001"
    assert pvd[40:72].rstrip() == b"cidata"
    assert svd[40:72].decode("utf-16-be").rstrip() == "cidata"
    assert svd[88:91] == b"%/E"  # Joliet level 3
    assert struct.unpack("<I", pvd[80:84])[0] * 2048 == len(iso)

    def listing(root_record: bytes) -> dict[str, bytes]:
        extent = struct.unpack("<I", root_record[2:6])[0]
        block = iso[extent * 2048 : (extent + 1) * 2048]
        files, pos = {}, 0
        while block[pos]:
            length = block[pos]
            rec = block[pos : pos + length]
            ident = rec[33 : 33 + rec[32]]
            if not rec[25] & 2:
                start, size = struct.unpack("<I", rec[2:6])[0], struct.unpack("<I", rec[10:14])[0]
                files[ident] = iso[start * 2048 : start * 2048 + size]
            pos += length
        return files

    joliet = {k.decode("utf-16-be"): v for k, v in listing(svd[156:190]).items()}
    assert joliet == {
        "meta-data;1": b"instance-id: a\n",
        "network-config;1": b"version: 2\n",
        "user-data;1": b"#cloud-config\n",
    }
    assert set(listing(pvd[156:190])) == {b"META-DATA.;1", b"NETWORK-CONFIG.;1", b"USER-DATA.;1"}


@pytest.mark.system
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no qemu-system-x86_64")
def test_image_boots_and_keeps_its_heartbeat():
    result = subprocess.run(
        ["bash", str(GUEST / "smoke-test.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "smoke-test: PASS" in result.stderr
