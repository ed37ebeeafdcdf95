"""Host snapshots: stable for the same state, and every kind of change shows."""

from __future__ import annotations

import pytest

from provision.lab import snapshot

pytestmark = pytest.mark.lab


def test_two_snapshots_in_a_row_are_identical(lab):
    first = snapshot.take("vps1", lab)
    second = snapshot.take("vps1", lab)
    assert snapshot.diff(first, second) == ""
    for title in ("nft ruleset", "sysctl net.*", "routes", "rules", "listening sockets",
                  "enabled units", "packages", "files"):
        assert f"## {title}\n" in first
    assert "/etc/ssh/sshd_config" in first and "0.0.0.0:22" in first


@pytest.mark.parametrize("change, undo, expect", [
    ("echo hi > /etc/vpnlab-probe", "rm /etc/vpnlab-probe", "/etc/vpnlab-probe"),
    ("sysctl -qw net.ipv4.ip_forward=1", "sysctl -qw net.ipv4.ip_forward=0", "net.ipv4.ip_forward = 1"),
    ("nft add table inet probe", "nft delete table inet probe", "table inet probe"),
    ("ip route add 10.77.0.0/16 dev eth0", "ip route del 10.77.0.0/16", "dst=10.77.0.0/16"),
    ("ip rule add fwmark 7 table 7", "ip rule del fwmark 7 table 7", '"fwmark": "0x7"'),
])
def test_a_change_shows_in_the_diff(lab, on, change, undo, expect):
    before = snapshot.take("vps1", lab)
    on("vps1", change)
    try:
        d = snapshot.diff(before, snapshot.take("vps1", lab))
    finally:
        on("vps1", undo)
    assert any(l.startswith("+") and expect in l for l in d.splitlines()), d
    assert snapshot.diff(before, snapshot.take("vps1", lab)) == ""
