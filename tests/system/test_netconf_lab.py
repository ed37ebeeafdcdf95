"""netconf against a real kernel, inside a throwaway namespace: up, check, restore, compare."""

from __future__ import annotations

import json
import socket

import pytest

from runtime.netconf import FIB_RULE_INVERT, MAIN_TABLE
from tests.system import nslab

pytestmark = pytest.mark.lab

MARK = 0x5E1F
TABLE = 5151


def net(ipv6: bool = False, **routing: object) -> dict:
    addresses = ["10.66.0.2/24"] + (["fd66::2/64"] if ipv6 else [])
    kind = routing or {"kind": "full", "fwmark": MARK, "table": TABLE, "ipv6": ipv6}
    return {"ifname": "vpn0", "addresses": addresses, "routing": kind}


def up(ns: str, state: object, cfg: dict, expect_rc: int = 0) -> dict:
    return nslab.agent(ns, "up", str(state), json.dumps(cfg), expect_rc=expect_rc)


def tables_of(ns: str, ifname: str) -> dict[tuple[int, str, int], int]:
    """{(family, dst, dst_len): table} of the routes via `ifname` that `up` adds."""
    with nslab.ipr(ns) as nl:
        index = nl.link_lookup(ifname=ifname)[0]
        return {(r["family"], r.get_attr("RTA_DST") or "default", r["dst_len"]):
                r.get_attr("RTA_TABLE") for r in nl.get_routes(oif=index)
                if r["proto"] != 2}  # not the kernel's own prefix routes


def test_full_tunnel_the_wg_quick_way_then_restored_exactly(ns, held, tmp_path):
    state = tmp_path / "state.json"
    held.append(nslab.Held(ns, "hold-tun", "vpn0"))
    before = nslab.snapshot(ns)

    up(ns, state, {"net": net(ipv6=True)})

    assert tables_of(ns, "vpn0") == {(socket.AF_INET, "default", 0): TABLE,
                                     (socket.AF_INET6, "default", 0): TABLE}
    for family in (socket.AF_INET, socket.AF_INET6):
        rules = nslab.rules_of(ns, family)
        assert (family, 32765, TABLE, MARK, FIB_RULE_INVERT, 0xFFFFFFFF, 1) in rules
        assert (family, 32764, MAIN_TABLE, None, 0, 0, 1) in rules
    now = nslab.snapshot(ns)
    assert ("vpn0", 1, 1420, 1000) in now["links"]
    assert {(a[2], a[3]) for a in now["addresses"] if a[0] == "vpn0"} >= {("10.66.0.2", 24),
                                                                        ("fd66::2", 64)}
    assert now["sysctl"]["net/ipv4/conf/all/src_valid_mark"] == "1"
    assert json.loads(state.read_text())["version"] == 1

    restored = nslab.agent(ns, "restore", str(state))
    assert nslab.snapshot(ns) == before
    assert restored["state_file_left"] is False


def test_split_tunnel_routes_in_main_then_restored(ns, held, tmp_path):
    state = tmp_path / "state.json"
    held.append(nslab.Held(ns, "hold-tun", "vpn0"))
    before = nslab.snapshot(ns)

    up(ns, state, {"net": net(kind="split", cidrs=["198.51.100.0/24", "203.0.113.0/25"])})

    assert tables_of(ns, "vpn0") == {(socket.AF_INET, "198.51.100.0", 24): MAIN_TABLE,
                                     (socket.AF_INET, "203.0.113.0", 25): MAIN_TABLE}
    assert nslab.snapshot(ns)["rules"] == before["rules"]  # no policy routing for split
    nslab.agent(ns, "restore", str(state))
    assert nslab.snapshot(ns) == before


def test_failed_up_rolls_back_and_keeps_what_was_there(ns, held, tmp_path):
    """A rule that exists already stops `up` half way; the rollback leaves that rule alone."""
    state = tmp_path / "state.json"
    held.append(nslab.Held(ns, "hold-tun", "vpn0"))
    nslab.in_ns(ns, "ip", "rule", "add", "table", "main", "suppress_prefixlength", "0",
                "priority", "32764")
    before = nslab.snapshot(ns)

    out = up(ns, state, {"net": net()}, expect_rc=9)

    assert out["error"] == "SystemSetupError" and "exists already" in out["line"]
    assert nslab.snapshot(ns) == before
    assert not state.exists()


def test_restore_twice_is_harmless(ns, held, tmp_path):
    state = tmp_path / "state.json"
    held.append(nslab.Held(ns, "hold-tun", "vpn0"))
    before = nslab.snapshot(ns)
    up(ns, state, {"net": net()})
    saved = state.read_text()

    nslab.agent(ns, "restore", str(state))
    state.write_text(saved)  # as if the first `down` died before it could delete the file
    nslab.agent(ns, "restore", str(state))

    assert nslab.snapshot(ns) == before
