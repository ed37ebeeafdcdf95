"""The kill switch in a real kernel, inside a throwaway namespace."""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest

from runtime.killswitch import Endpoint
from tests.system import nslab
from tests.system.killswitch_cases import CASES, MARK

pytestmark = pytest.mark.lab


def ks_json(name: str, **changes: object) -> str:
    ks = dataclasses.replace(CASES[name], **changes)
    return json.dumps({**dataclasses.asdict(ks)})


def test_apply_reapply_remove_leaves_the_ruleset_as_it_was(ns, tmp_path):
    state = tmp_path / "state.json"
    nslab.in_ns(ns, "nft", "-f", "-", input="table inet theirs {\n chain c {\n"
                "  type filter hook output priority 5; policy accept;\n }\n}\n")
    before = nslab.snapshot(ns)

    nslab.agent(ns, "killswitch", str(state), ks_json("v4_only"))
    first = nslab.in_ns(ns, "nft", "list", "table", "inet", "selfvpn")
    out = nslab.agent(ns, "killswitch", str(state), ks_json("dual_stack_lan"))

    assert out["steps"] == ["nft_table", "sysctl"]  # re-apply records nothing new
    listing = nslab.in_ns(ns, "nft", "list", "tables")
    assert listing.count("table inet selfvpn") == 1 and "table inet theirs" in listing
    second = nslab.in_ns(ns, "nft", "list", "table", "inet", "selfvpn")
    assert "192.168.0.0/16" in second and "192.168.0.0/16" not in first
    assert nslab.sysctls(ns)["net/ipv4/conf/all/arp_ignore"] == "2"

    nslab.agent(ns, "restore", str(state))
    assert nslab.snapshot(ns) == before


SERVER = "198.51.100.1"


def _probe_config(state: str) -> dict:
    ks = dataclasses.replace(CASES["v4_only"], endpoints=(Endpoint(SERVER, "udp", 1194),))
    return {
        "state": state,
        "net": {"ifname": "vpn0", "addresses": ["10.66.0.2/24"],
                "routing": {"kind": "full", "fwmark": MARK, "table": 5151, "ipv6": False}},
        "killswitch": dataclasses.asdict(ks),
        "probes": [
            {"name": "server_unmarked", "ip": SERVER, "port": 1194},
            {"name": "server_marked", "ip": SERVER, "port": 1194, "mark": MARK},
            {"name": "server_other_port_marked", "ip": SERVER, "port": 22, "mark": MARK},
            {"name": "lan_unmarked", "ip": "192.0.2.99", "port": 80},
            {"name": "lan_marked", "ip": "192.0.2.99", "port": 1194, "mark": MARK},
            {"name": "ipv6_out", "ip": "2001:db8::99", "port": 1194},
            {"name": "dns_elsewhere", "ip": "192.0.2.53", "port": 53},
            {"name": "dns_marked_elsewhere", "ip": "192.0.2.53", "port": 53, "mark": MARK},
        ],
    }


def physical_link(ns: str) -> None:
    """A "physical" link on 192.0.2.0/24 (and 2001:db8::/64), the default route behind it."""
    nslab.in_ns(ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    nslab.in_ns(ns, "ip", "address", "add", "192.0.2.10/24", "dev", "eth0")
    nslab.in_ns(ns, "ip", "address", "add", "2001:db8::10/64", "dev", "eth0", "nodad")
    for link in ("eth0", "eth0p", "lo"):
        nslab.in_ns(ns, "ip", "link", "set", link, "up")
    nslab.in_ns(ns, "ip", "route", "add", "default", "via", "192.0.2.254")


def _destination(packet_hex: str) -> tuple[str, int]:
    packet = bytes.fromhex(packet_hex)
    return str(ipaddress.IPv4Address(packet[16:20])), int.from_bytes(packet[22:24], "big")


def test_what_the_kill_switch_lets_out_over_a_full_tunnel(ns, tmp_path):
    """MUL-02-002, LAN, IPv6 leak and DNS redirect, as the kernel decides them on sendto()."""
    physical_link(ns)
    before = nslab.snapshot(ns)

    out = nslab.agent(ns, "probe", json.dumps(_probe_config(str(tmp_path / "state.json"))))

    assert out["sent"] == {
        "server_unmarked": "sent",  # routed into the tunnel: allowed
        "server_marked": "sent",  # the runtime's own socket, outside the tunnel
        "server_other_port_marked": "EPERM",  # the endpoint is one port, not the whole host
        "lan_unmarked": "EPERM", "lan_marked": "EPERM",  # no allow_lan
        "ipv6_out": "EPERM",  # the tunnel carries no IPv6
        "dns_elsewhere": "sent",  # redirected to the tunnel's DNS, into the tunnel
        "dns_marked_elsewhere": "EPERM",
    }
    ipv4 = [p for p in out["tun_packets"] if p.startswith("4")]  # not the link's own IPv6 chatter
    assert [_destination(p) for p in ipv4] == [(SERVER, 1194), ("10.66.0.1", 53)]
    assert nslab.snapshot(ns) == before


def test_before_routes_exist_unmarked_packets_cannot_reach_the_server(ns, tmp_path):
    """Connecting: no tunnel routes yet; an unprivileged app must not reach the relay (MUL-02-002)."""
    physical_link(ns)
    cfg = _probe_config(str(tmp_path / "state.json"))
    cfg["net"]["routing"] = {"kind": "split", "cidrs": []}
    cfg["probes"] = cfg["probes"][:3]

    out = nslab.agent(ns, "probe", json.dumps(cfg))

    assert out["sent"] == {"server_unmarked": "EPERM", "server_marked": "sent",
                           "server_other_port_marked": "EPERM"}
