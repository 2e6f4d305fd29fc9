"""NoCloud seeds: the meta-data, user-data and network-config a guest reads at boot,
packed as an ISO 9660 volume labelled `cidata` (built in Python with pycdlib)."""

from __future__ import annotations

import io
import ipaddress
import json

import pycdlib

from ..models import Server


def _yaml_list(items: list[str]) -> str:
    # JSON strings are valid YAML scalars and escape whatever a key comment holds
    return "".join(f"  - {json.dumps(item)}\n" for item in items)


def meta_data(server: Server) -> str:
    return f"instance-id: {server.uuid}\nlocal-hostname: {server.hostname}\n"


def user_data(server: Server) -> str:
    keys = [k.public_key for k in server.ssh_keys.all()]
    text = f"#cloud-config\nhostname: {server.hostname}\n"
    if keys:
        text += "ssh_authorized_keys:\n" + _yaml_list(keys)
    return text


def network_config(server: Server) -> str:
    lines = [
        "version: 2",
        "ethernets:",
        "  eth0:",
        f'    match: {{macaddress: "{server.mac_address}"}}',
    ]
    addresses, gateway4, gateway6, dns = [], None, None, []
    for addr in server.addresses.select_related("pool"):
        net = addr.pool.ip_network
        addresses.append(f"{addr.address}/{net.prefixlen}")
        if addr.pool.gateway:
            if ipaddress.ip_address(addr.pool.gateway).version == 4:
                gateway4 = gateway4 or addr.pool.gateway
            else:
                gateway6 = gateway6 or addr.pool.gateway
        dns += [d.strip() for d in addr.pool.dns_servers.split(",") if d.strip()]
    lines.append(f"    addresses: {json.dumps(addresses)}")
    if gateway4:
        lines.append(f"    gateway4: {gateway4}")
    if gateway6:
        lines.append(f"    gateway6: {gateway6}")
    if dns:
        lines.append(f"    nameservers: {{addresses: {json.dumps(dns)}}}")
    return "\n".join(lines) + "\n"


def seed_files(server: Server) -> dict[str, str]:
    return {
        "meta-data": meta_data(server),
        "user-data": user_data(server),
        "network-config": network_config(server),
    }


def seed_iso(files: dict[str, str]) -> bytes:
    """An ISO 9660 image with Joliet and Rock Ridge names, volume label `cidata`."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for index, (name, text) in enumerate(sorted(files.items())):
        data = text.encode()
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"/FILE{index};1",
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()
