"""NoCloud seeds: the meta-data, user-data and network-config a guest reads at boot,
packed as an ISO 9660 volume labelled `cidata` (built in Python with pycdlib)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import yaml

from ..backends.nocloud import seed_iso
from ..models import Server

__all__ = ["seed_files", "seed_iso"]


class _QuotingDumper(yaml.SafeDumper):
    """Every string single-quoted: YAML 1.1 and 1.2 readers alike read `true`, `null`,
    `0x1f` or `1e3` as the string it is, not as a boolean, null or number."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        return self.represent_scalar("tag:yaml.org,2002:str", data, style="'")


_QuotingDumper.add_representer(str, _QuotingDumper.represent_str)


def _yaml(data: dict[str, Any]) -> str:
    """Block-style YAML from a library dumper, with nothing wrapped, so that each value
    stays on one line for the guest's line-based reader (guest/flatten-yaml.awk)."""
    return yaml.dump(
        data,
        Dumper=_QuotingDumper,
        default_flow_style=False,
        sort_keys=False,
        width=1 << 30,
        allow_unicode=False,
    )


def meta_data(server: Server) -> str:
    return _yaml({"instance-id": str(server.uuid), "local-hostname": server.hostname})


def user_data(server: Server) -> str:
    data: dict[str, Any] = {"hostname": server.hostname}
    keys = [k.public_key for k in server.ssh_keys.all()]
    if keys:
        data["ssh_authorized_keys"] = keys
    return "#cloud-config\n" + _yaml(data)


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
