"""The runtime end to end on real hosts: vpn-runtime serve on vps3, up/down on laptops.

Each test says what a user would check: the web page sees the server's address, iperf3
moves data both ways, two clients get distinct addresses and cannot reach each other,
`down` leaves the laptop as it was, and a restarted server is rejoined without help.
"""

from __future__ import annotations

import json
import time

import pytest

from provision import pki
from provision.lab import snapshot
from tests.lab.vpn import RUNTIME_SERVER as S, Vpn, install_runtime, sh

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def vpn(lab, tmp_path_factory):
    for host in (S, "laptop", "laptop2"):
        install_runtime(lab, host)
    v = Vpn(lab, pki.init_ca(tmp_path_factory.mktemp("ca")), {})
    v.start_server(S)
    yield v
    for host in ("laptop", "laptop2"):
        sh(lab, host, "vpn-runtime down", check=False)
    v.stop_server(S)


def up(vpn, host: str, name: str, flags: str = "", **tunnel) -> str:
    path = vpn.give(host, vpn.bundle(name, **tunnel))
    return sh(vpn.lab, host, f"vpn-runtime up {path} {flags}", timeout=60).stdout


def client_status(vpn, host: str) -> dict:
    return json.loads(sh(vpn.lab, host, "vpn-runtime status --json").stdout)


def test_web_page_through_the_tunnel_shows_the_servers_address_and_down_restores(vpn):
    before = snapshot.take("laptop", vpn.lab)
    out = up(vpn, "laptop", "alice")
    assert out.startswith(f"up: alice via {S}.vpn")
    page = sh(vpn.lab, "laptop", "curl -s --max-time 5 http://203.0.113.80/").stdout
    assert page == "your address: 198.51.100.30\n"
    st = client_status(vpn, "laptop")
    assert st["state"] == "connected" and st["server"]["tunnel_addresses"][0].startswith("10.8.0.")
    server = json.loads(sh(vpn.lab, S, "vpn-runtime status --json").stdout)
    assert [c["name"] for c in server["clients"]] == ["alice"]
    assert server["clients"][0]["rx_bytes"] > 0 and server["clients"][0]["endpoint"].startswith("192.0.2.10:")
    sh(vpn.lab, "laptop", "vpn-runtime down")
    assert snapshot.diff(before, snapshot.take("laptop", vpn.lab), "laptop") == ""
    assert sh(vpn.lab, "laptop", "curl -s --max-time 5 http://203.0.113.80/").stdout == "your address: 192.0.2.10\n"


def iperf(vpn, reverse: bool) -> float:
    flag = "-R" if reverse else ""
    out = sh(vpn.lab, "laptop", f"iperf3 -c 10.8.0.1 -t 2 -J {flag}", timeout=60).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def test_iperf3_both_ways(vpn):
    sh(vpn.lab, S, "systemd-run --collect --unit iperf-test iperf3 -s -B 10.8.0.1")  # --collect: no failed unit left
    try:
        up(vpn, "laptop", "alice")
        upload, download = iperf(vpn, False), iperf(vpn, True)
    finally:
        sh(vpn.lab, S, "systemctl stop iperf-test", check=False)
        sh(vpn.lab, "laptop", "vpn-runtime down", check=False)
    assert upload > 10e6 and download > 10e6, (upload, download)


def test_two_clients_get_distinct_addresses_and_cannot_reach_each_other(vpn):
    up(vpn, "laptop", "alice")
    up(vpn, "laptop2", "bob")
    try:
        a = client_status(vpn, "laptop")["server"]["tunnel_addresses"][0].split("/")[0]
        b = client_status(vpn, "laptop2")["server"]["tunnel_addresses"][0].split("/")[0]
        assert a != b
        assert sh(vpn.lab, "laptop", "ping -c1 -W1 10.8.0.1", check=False).returncode == 0
        assert sh(vpn.lab, "laptop", f"ping -c2 -W1 {b}", check=False).returncode != 0
        assert sh(vpn.lab, "laptop2", f"ping -c2 -W1 {a}", check=False).returncode != 0
        drops = json.loads(sh(vpn.lab, S, "vpn-runtime status --json").stdout)["drops"]
        assert drops.get("client-to-client", 0) >= 2
    finally:
        sh(vpn.lab, "laptop", "vpn-runtime down", check=False)
        sh(vpn.lab, "laptop2", "vpn-runtime down", check=False)


def test_client_rejoins_a_restarted_server_by_itself(vpn):
    up(vpn, "laptop", "alice")
    try:
        sh(vpn.lab, S, "systemctl restart vpn-test")
        deadline = time.monotonic() + 45
        page = ""
        while time.monotonic() < deadline:
            page = sh(vpn.lab, "laptop", "curl -s --max-time 2 http://203.0.113.80/", check=False).stdout
            if page == "your address: 198.51.100.30\n":
                break
            time.sleep(1)
        assert page == "your address: 198.51.100.30\n"
        assert client_status(vpn, "laptop")["state"] == "connected"
    finally:
        sh(vpn.lab, "laptop", "vpn-runtime down", check=False)


def test_a_foreign_bundle_is_refused_with_one_line_and_the_laptop_is_unchanged(vpn, tmp_path):
    before = snapshot.take("laptop", vpn.lab)
    stranger = Vpn(vpn.lab, pki.init_ca(tmp_path / "other"), dict(vpn.server_certs))
    path = vpn.give("laptop", stranger.bundle("mallory"))
    proc = sh(vpn.lab, "laptop", f"vpn-runtime up {path}", check=False, timeout=60)
    assert proc.returncode == 8, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "refused" in proc.stderr
    assert snapshot.diff(before, snapshot.take("laptop", vpn.lab), "laptop") == ""
