"""NoCloud seed contents and the ISO that carries them."""

from __future__ import annotations

import io

import pycdlib
import pytest

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
        customer=customer, plan=plan, image=image, hostname="web-1.example.com", ssh_keys=[key]
    )
    files = seed_files(server)
    assert files["meta-data"] == (
        f"instance-id: {server.uuid}\nlocal-hostname: web-1.example.com\n"
    )
    assert files["user-data"].startswith("#cloud-config\nhostname: web-1.example.com\n")
    assert f'  - "{key.public_key}"' in files["user-data"]
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
