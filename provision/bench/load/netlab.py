"""The load lab: two namespaces of our own joined by one veth pair, the client end holding
many underlay addresses (one per simulated client source).

    netns vpnlab-load-c  vpnlab-lc0 192.0.2.2 .. 192.0.2.(1+sources)/24
            <-- veth -->  vpnlab-ls0 192.0.2.1/24  netns vpnlab-load-s

Rule 1: nothing here touches the machine's own network namespace (the bench's rule): the
        veth is made inside vpnlab-load-c with its peer put straight into vpnlab-load-s, and
        every command is `ip -n NS ...`.
Rule 2: a lab that already exists is an error, never reused; `down` removes ours, ending
        any process left inside by PID.
Rule 3: many sources because the server limits connections per source address (runtime/
        ratelimit.py); real clients come from many addresses.
"""

from __future__ import annotations

from provision.bench.netns import LabError, in_ns, ns_exists, remove_namespaces, run, wait_for

NS_C, NS_S = "vpnlab-load-c", "vpnlab-load-s"
VETH_C, VETH_S = "vpnlab-lc0", "vpnlab-ls0"
SERVER_IP = "192.0.2.1"
MAX_SOURCES = 252


def source_ips(count: int) -> list[str]:
    if not 1 <= count <= MAX_SOURCES:
        raise LabError(f"sources: expected 1-{MAX_SOURCES}, got {count}")
    return [f"192.0.2.{2 + i}" for i in range(count)]


def up(sources: int) -> list[str]:
    """Build the lab; returns the client source addresses."""
    for ns in (NS_C, NS_S):
        if ns_exists(ns):
            raise LabError(f"namespace {ns} already exists (another load run?); remove it with `ip netns del {ns}`")
    run(["ip", "netns", "add", NS_C])
    run(["ip", "netns", "add", NS_S])
    run(["ip", "-n", NS_C, "link", "add", VETH_C, "type", "veth", "peer", "name", VETH_S, "netns", NS_S])
    ips = source_ips(sources)
    batch = "".join(f"addr add {ip}/24 dev {VETH_C}\n" for ip in ips)
    _batch(NS_C, batch)
    run(["ip", "-n", NS_S, "addr", "add", f"{SERVER_IP}/24", "dev", VETH_S])
    for ns, dev in ((NS_C, VETH_C), (NS_S, VETH_S)):
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
    if not wait_for(5.0, lambda: run(in_ns(NS_C, "ping", "-c1", "-W1", "-q", SERVER_IP), check=False).returncode == 0):
        raise LabError("load lab: the underlay does not answer ping")
    return ips


def _batch(ns: str, commands: str) -> None:
    import subprocess

    r = subprocess.run(["ip", "-n", ns, "-batch", "-"], input=commands, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise LabError(f"ip -n {ns} -batch: {r.stderr.strip()[-300:]}")


def down() -> list[str]:
    """Remove the lab; processes still inside get TERM then KILL. Returns what was left."""
    return remove_namespaces((NS_C, NS_S))
