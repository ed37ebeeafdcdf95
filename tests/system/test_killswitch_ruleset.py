"""The kill-switch ruleset is a pure function of its config: golden files, then the kernel's say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.errors import ConfigError
from runtime.killswitch import Endpoint, KillSwitch, ruleset, transaction
from tests.system import nslab
from tests.system.killswitch_cases import CASES, MARK

GOLDEN = Path(__file__).with_name("golden")


@pytest.mark.parametrize("name", sorted(CASES))
def test_ruleset_matches_golden_file(name):
    path = GOLDEN / f"killswitch_{name}.nft"
    text = ruleset(CASES[name])
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_transaction_replaces_the_table_atomically():
    text = transaction(CASES["v4_only"])
    assert text.startswith("table inet selfvpn\ndelete table inet selfvpn\ntable inet selfvpn {\n")
    assert text.count("table inet selfvpn") == 3


def _output_chain(ks: KillSwitch) -> list[str]:
    text = ruleset(ks)
    body = text.split("chain output {", 1)[1].split("}\n", 1)[0]
    return [line.strip() for line in body.splitlines()[2:] if line.strip()]


def test_server_endpoints_are_open_only_to_marked_packets():
    rules = [r for r in _output_chain(CASES["dual_stack_lan"]) if "dport 443" in r]
    assert rules == ["meta mark 0x73656c66 ip daddr 192.0.2.1 udp dport 443 accept",
                     "meta mark 0x73656c66 ip6 daddr 2001:db8::1 tcp dport 443 accept"]


def test_dns_is_dropped_before_lan_and_tunnel_are_allowed():
    rules = _output_chain(CASES["dual_stack_lan"])
    dns_drop = rules.index("meta l4proto { tcp, udp } th dport 53 drop")
    lan = next(i for i, r in enumerate(rules) if r.startswith("ip daddr { 10.0.0.0/8"))
    assert dns_drop < lan < rules.index('oifname "vpn0" accept')


def test_ipv6_is_dropped_only_when_the_tunnel_has_none():
    assert "meta nfproto ipv6 drop" in _output_chain(CASES["v4_only"])
    assert "meta nfproto ipv6 drop" not in ruleset(CASES["dual_stack_lan"])


def test_lan_only_with_allow_lan():
    assert "192.168.0.0/16" not in ruleset(CASES["v4_only"])
    assert "192.168.0.0/16" in ruleset(CASES["dual_stack_lan"])


@pytest.mark.parametrize("bad", [
    {"tunnel": 'vpn0" accept #'},
    {"endpoints": (Endpoint("192.0.2.1", "icmp", 1),)},
    {"endpoints": (Endpoint("192.0.2.1", "udp", 0),)},
    {"endpoints": (Endpoint("server.example", "udp", 1194),)},
    {"dns": ("10.66.0.1; drop",)},
    {"fwmark": 0},
])
def test_bad_config_is_refused_before_any_text_is_made(bad):
    fields = {"tunnel": "vpn0", "endpoints": (), "fwmark": MARK, "tunnel_addresses": ()}
    with pytest.raises(ConfigError):
        KillSwitch(**{**fields, **bad})


@pytest.mark.lab
def test_generated_rulesets_pass_nft_check(ns):
    for name, ks in CASES.items():
        nslab.in_ns(ns, "nft", "-c", "-f", "-", input=transaction(ks))
    assert nslab.in_ns(ns, "nft", "list", "ruleset") == ""  # -c changed nothing


@pytest.mark.lab
def test_nft_check_rejects_broken_text(ns):
    broken = transaction(CASES["v4_only"]).replace("policy drop;", "policy dorp;")
    with pytest.raises(AssertionError, match="exited 1"):
        nslab.in_ns(ns, "nft", "-c", "-f", "-", input=broken)
