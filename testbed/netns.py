"""Thin wrappers around iproute2 for the testbed's namespaces, veths and bridge."""

from __future__ import annotations

import subprocess


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def netns_exists(name: str) -> bool:
    return name in run("ip", "netns", "list").stdout.split()


def link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return run(*cmd, check=False).returncode == 0


def ensure_bridge(name: str, address: str) -> None:
    if not link_exists(name):
        run("ip", "link", "add", name, "type", "bridge")
    if address.split("/")[0] not in run("ip", "-o", "addr", "show", "dev", name).stdout:
        run("ip", "addr", "add", address, "dev", name)
    run("ip", "link", "set", name, "up")


def ensure_namespace(*, netns: str, veth: str, bridge: str, address: str) -> None:
    if not netns_exists(netns):
        run("ip", "netns", "add", netns)
    if not link_exists(veth):
        if link_exists("eth0", netns):
            run("ip", "-n", netns, "link", "del", "eth0")
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    run("ip", "link", "set", veth, "master", bridge, "up")
    if address.split("/")[0] not in run("ip", "-n", netns, "-o", "addr", "show").stdout:
        run("ip", "-n", netns, "addr", "add", address, "dev", "eth0")
    run("ip", "-n", netns, "link", "set", "eth0", "up")
    run("ip", "-n", netns, "link", "set", "lo", "up")


def namespace_pids(netns: str) -> list[int]:
    out = run("ip", "netns", "pids", netns, check=False).stdout
    return [int(p) for p in out.split()]


def delete_namespace(netns: str) -> None:
    run("ip", "netns", "del", netns, check=False)


def delete_link(name: str) -> None:
    run("ip", "link", "del", name, check=False)


def list_namespaces(prefix: str) -> list[str]:
    return [n for n in run("ip", "netns", "list").stdout.split() if n.startswith(prefix)]
