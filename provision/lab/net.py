"""The lab's wiring: one network namespace per host, veth pairs into the router's bridges.

Rule: every command here names a lab namespace (`ip -n vpnlab-...` or `ip netns exec
vpnlab-...`).  Veth pairs are created inside the router's namespace with their peer sent
straight into the host's, so no link ever exists in the machine's own namespace.
"""

from __future__ import annotations

from pathlib import Path

from provision.lab import local
from provision.lab.topology import HOSTS, INTERNET, PREFIX, SEGMENTS, SERVICES4, SERVICES6, LabHost


def lab_namespaces() -> list[str]:
    """Namespaces of the lab (by prefix), excluding throwaway test namespaces (`vpnlab-t-`)."""
    netns = Path("/run/netns")
    if not netns.exists():
        return []
    return sorted(p.name for p in netns.iterdir()
                  if p.name.startswith(PREFIX) and not p.name.startswith(PREFIX + "t-"))


def ip(ns: str, *args: str, check: bool = True) -> None:
    local.run(["ip", "-n", ns, *args], check=check)


def in_ns(ns: str, *argv: str, check: bool = True) -> str:
    return local.out(["ip", "netns", "exec", ns, *argv], check=check)


def create_namespaces() -> None:
    for h in HOSTS:
        if h.netns not in lab_namespaces():
            local.run(["ip", "netns", "add", h.netns])
        ip(h.netns, "link", "set", "lo", "up")


def wire_router() -> None:
    ns = INTERNET.netns
    for seg in SEGMENTS.values():
        ip(ns, "link", "add", seg.bridge, "type", "bridge")
        ip(ns, "addr", "add", f"{seg.gw4}/{seg.plen4}", "dev", seg.bridge)
        ip(ns, "addr", "add", f"{seg.gw6}/{seg.plen6}", "dev", seg.bridge, "nodad")
        ip(ns, "link", "set", seg.bridge, "up")
    for a in SERVICES4.values():  # the services live on the router's loopback
        ip(ns, "addr", "add", f"{a}/32", "dev", "lo")
    for a in SERVICES6.values():
        ip(ns, "addr", "add", f"{a}/128", "dev", "lo", "nodad")
    in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


def wire_host(h: LabHost) -> None:
    seg = SEGMENTS[h.segment]
    router, port = INTERNET.netns, f"v-{h.name}"
    ip(router, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.netns)
    ip(router, "link", "set", port, "master", seg.bridge, "up")
    ip(h.netns, "addr", "add", f"{h.addr4}/{seg.plen4}", "dev", "eth0")
    ip(h.netns, "addr", "add", f"{h.addr6}/{seg.plen6}", "dev", "eth0", "nodad")
    ip(h.netns, "link", "set", "eth0", "up")
    ip(h.netns, "route", "add", "default", "via", seg.gw4)
    ip(h.netns, "-6", "route", "add", "default", "via", seg.gw6)


def wire_all() -> None:
    create_namespaces()
    wire_router()
    for h in HOSTS:
        if h is not INTERNET:
            wire_host(h)


def delete_namespaces() -> None:
    for ns in lab_namespaces():
        local.run(["ip", "netns", "del", ns], check=False)


def pids_in(ns: str) -> list[int]:
    text = local.out(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in text.split()]
