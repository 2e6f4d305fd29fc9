"""NoCloud seed contents and the ISO that carries them."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pycdlib
import pytest
import yaml
from django.core.exceptions import ValidationError

from hosting.access import Caller
from hosting.services.cloudinit import seed_files, seed_iso
from hosting.services.servers import create_server

from .factories import IPPoolFactory, SSHKeyFactory

pytestmark = pytest.mark.django_db


def test_seed_carries_hostname_keys_and_static_address(customer, plan, image, host, pool):
    IPPoolFactory(name="v6", network="2001:db8::/64", gateway="2001:db8::1")
    pool.dns_servers = "192.0.2.53, 192.0.2.54"
    pool.save()
    key = SSHKeyFactory(customer=customer, public_key=SSHKeyFactory.build().public_key)
    server, _ = create_server(
        caller=Caller.system(),
        customer=customer,
        plan=plan,
        image=image,
        hostname="web-1.example.com",
        ssh_keys=[key],
    )
    files = seed_files(server)
    assert yaml.safe_load(files["meta-data"]) == {
        "instance-id": str(server.uuid),
        "local-hostname": "web-1.example.com",
    }
    assert files["user-data"].startswith("#cloud-config\n")
    assert yaml.safe_load(files["user-data"]) == {
        "hostname": "web-1.example.com",
        "ssh_authorized_keys": [key.public_key],
    }
    net = files["network-config"]
    assert f'match: {{macaddress: "{server.mac_address}"}}' in net
    assert 'addresses: ["192.0.2.2/24", "2001:db8::2/64"]' in net
    assert "gateway4: 192.0.2.1\n" in net and "gateway6: 2001:db8::1\n" in net
    assert 'nameservers: {addresses: ["192.0.2.53", "192.0.2.54"]}' in net


def test_seed_iso_is_labelled_cidata_with_the_three_files():
    data = seed_iso({"meta-data": "a: 1\n", "user-data": "#cloud-config\n", "network-config": "x"})
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    assert iso.pvd.volume_identifier.decode().strip() == "cidata"
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, rr_path="/meta-data")
    assert out.getvalue() == b"a: 1\n"
    names = {c.file_identifier().decode("utf-16-be") for c in iso.list_children(joliet_path="/")}
    assert {"meta-data", "user-data", "network-config"} <= names
    iso.close()


def guest_reads(text: str, tmp_path: Path) -> list[str]:
    """What the tiny guest's own line-based reader (guest/flatten-yaml.awk) makes of it."""
    awk = shutil.which("awk")
    assert awk, "awk is part of every Debian system"
    doc = tmp_path / "doc.yaml"
    doc.write_text(text)
    script = Path(__file__).resolve().parents[1] / "guest" / "flatten-yaml.awk"
    out = subprocess.run([awk, "-f", str(script), str(doc)], check=True, capture_output=True)
    return out.stdout.decode().splitlines()


@pytest.mark.parametrize("hostname", ["true", "null", "0x1f", "1e3", "0755", "yes", "on"])
def test_hostname_that_reads_as_another_yaml_type_stays_a_string(
    hostname, customer, plan, image, host, pool, tmp_path
):
    # given a valid host name that YAML would read as a boolean, null or number unquoted
    server, _ = create_server(
        customer=customer, plan=plan, image=image, hostname=hostname, caller=Caller.system()
    )
    # when the seed is written
    files = seed_files(server)
    # then YAML readers and the guest's own reader see the same string
    assert yaml.safe_load(files["meta-data"])["local-hostname"] == hostname
    assert yaml.safe_load(files["user-data"])["hostname"] == hostname
    assert guest_reads(files["meta-data"], tmp_path)[1] == f"local-hostname={hostname}"
    assert guest_reads(files["user-data"], tmp_path) == [f"hostname={hostname}"]


def test_key_comment_with_yaml_syntax_reaches_the_guest_as_written(
    customer, plan, image, host, pool, tmp_path
):
    from .factories import make_public_key

    text = make_public_key(7, comment="it's: #1 [work] {laptop}")
    key = SSHKeyFactory(customer=customer, public_key=text)
    server, _ = create_server(
        customer=customer,
        plan=plan,
        image=image,
        hostname="web-2",
        ssh_keys=[key],
        caller=Caller.system(),
    )
    user_data = seed_files(server)["user-data"]
    assert yaml.safe_load(user_data)["ssh_authorized_keys"] == [text]
    assert guest_reads(user_data, tmp_path) == [
        "hostname=web-2",
        f"ssh_authorized_keys={text}",
    ]


@pytest.mark.parametrize(
    "hostname", ["web-1\n", "web-1\nruncmd: [reboot]", "-web", "web_1", "a" * 64, ""]
)
def test_hostname_must_match_whole(hostname, customer, plan, image, host, pool):
    with pytest.raises(ValidationError) as excinfo:
        create_server(
            customer=customer, plan=plan, image=image, hostname=hostname, caller=Caller.system()
        )
    assert "hostname" in excinfo.value.message_dict
