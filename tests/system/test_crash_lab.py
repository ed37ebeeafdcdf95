"""SIGKILL the process that brought the tunnel up; the kill switch holds; a new process restores."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.system import nslab
from tests.system.killswitch_cases import CASES, MARK

pytestmark = pytest.mark.lab

ORIGINAL = b"nameserver 192.0.2.53\n# kept byte for byte\n"


def test_after_sigkill_the_state_file_alone_restores_everything(ns, held, tmp_path):
    resolv = tmp_path / "etc" / "resolv.conf"
    resolv.parent.mkdir()
    resolv.write_bytes(ORIGINAL)
    state = tmp_path / "run" / "client-state.json"
    cfg = {
        "net": {"ifname": "vpn0", "addresses": ["10.66.0.2/24"],
                "routing": {"kind": "full", "fwmark": MARK, "table": 5151, "ipv6": False}},
        "killswitch": dataclasses.asdict(CASES["v4_only"]),
        "dns": {"resolv_conf": str(resolv), "state_dir": str(tmp_path / "run"),
                "resolved_dir": str(tmp_path / "no-resolved"), "servers": ["10.66.0.1"]},
    }
    before = nslab.snapshot(ns)

    runtime = nslab.Held(ns, "up", str(state), json.dumps(cfg), "own-tun", "hang")
    held.append(runtime)
    assert runtime.ready["up"] == "vpn0"
    assert b"nameserver 10.66.0.1" in resolv.read_bytes()
    runtime.kill()

    after_crash = nslab.snapshot(ns)
    assert "table inet selfvpn" in after_crash["nft"]  # the kill switch outlives the process
    assert after_crash["rules"] != before["rules"]  # and so do the policy rules
    assert not any(link[0] == "vpn0" for link in after_crash["links"])  # the TUN does not

    nslab.agent(ns, "restore", str(state))

    assert nslab.snapshot(ns) == before
    assert resolv.read_bytes() == ORIGINAL
    assert not state.exists()
