"""The operator's story on real hosts: deploy two servers, hand out bundles, revoke one
client while she is connected, and fail over to the second server."""

from __future__ import annotations

import json
import time

import pytest

from provision import clients, deploy as deploy_mod
from provision.connection import connect
from provision.lab import lab as lab_mod, labinventory
from provision.lab.hostfiles import install_runtime, put, sh

pytestmark = pytest.mark.lab
WEB = "curl -s --max-time 3 http://203.0.113.80/"


@pytest.fixture(scope="module")
def world(lab, tmp_path_factory):
    for host in ("vps1", "vps2"):
        lab.hosts.update(lab_mod.reset_host(host, log=lambda *_: None).hosts)
    inventory = tmp_path_factory.mktemp("operator") / "inventory" / "lab.yml"
    labinventory.write(lab, inventory)
    deploy_mod.deploy(inventory, "all")
    for name, laptop in (("alice", "laptop"), ("bob", "laptop2")):
        install_runtime(lab, laptop)
        put(lab, laptop, f"/root/{name}.bundle", clients.add_client(inventory, name).read_bytes(), 0o600)
    yield lab, inventory
    for laptop in ("laptop", "laptop2"):
        sh(lab, laptop, "vpn-runtime down", check=False)
    deploy_mod.teardown(inventory, "all")


def state_of(lab, laptop: str) -> str:
    out = sh(lab, laptop, "vpn-runtime status --json", check=False).stdout
    return json.loads(out).get("state", "?") if out.strip() else "none"


def test_bundles_name_every_server_and_bring_laptops_up(world):
    lab, inventory = world
    out = sh(lab, "laptop", "vpn-runtime up /root/alice.bundle", timeout=60).stdout
    assert "via vps1.vpn" in out
    assert sh(lab, "laptop", WEB).stdout == "your address: 198.51.100.10\n"
    # the lab's servers carry IPv6 (vpn_network6): IPv6 goes through the tunnel too
    web6 = sh(lab, "laptop", "curl -6 -s --max-time 3 http://[2001:db8:3::80]/").stdout
    assert web6 == "your address: 2001:db8:1::10\n"
    sh(lab, "laptop2", "vpn-runtime up /root/bob.bundle", timeout=60)
    rows = {r["host"]: r for r in clients.server_status(inventory, "all", connect)}
    assert sorted(c["name"] for c in rows["vps1"]["clients"]) == ["alice", "bob"]
    assert rows["vps1"]["daemon"] == "active" and rows["vps2"]["daemon"] == "active"


def test_revoke_cuts_the_live_session_within_5s_and_others_keep_going(world):
    lab, inventory = world
    assert state_of(lab, "laptop") == "connected" and state_of(lab, "laptop2") == "connected"
    started = time.monotonic()
    results = clients.revoke_client(inventory, "alice", connect)
    assert all(r.ok for r in results), clients.render_pushes(results)
    while state_of(lab, "laptop") == "connected" and time.monotonic() - started < 10:
        time.sleep(0.2)
    cut_after = time.monotonic() - started
    assert cut_after <= 5, f"alice still connected {cut_after:.1f} s after revoke"
    assert sh(lab, "laptop", WEB, check=False).stdout == "", "the kill switch must hold while she is refused"
    assert sh(lab, "laptop2", WEB).stdout == "your address: 198.51.100.10\n"
    sh(lab, "laptop", "vpn-runtime down")
    again = sh(lab, "laptop", "vpn-runtime up /root/alice.bundle", check=False, timeout=60)
    assert again.returncode == 8 and "revoked" in again.stderr, again.stderr


def test_with_vps1_stopped_the_bundle_brings_the_laptop_up_through_vps2(world):
    lab, _ = world
    sh(lab, "laptop2", "vpn-runtime down")
    sh(lab, "vps1", "systemctl stop vpn-runtime")
    try:
        out = sh(lab, "laptop2", "vpn-runtime up /root/bob.bundle", timeout=90).stdout
        assert "via vps2.vpn" in out
        assert sh(lab, "laptop2", WEB).stdout == "your address: 198.51.100.20\n"
    finally:
        sh(lab, "laptop2", "vpn-runtime down", check=False)
        sh(lab, "vps1", "systemctl start vpn-runtime")


def test_a_rebooted_server_comes_back_with_its_service_and_clients_rejoin(world):
    lab, _ = world
    sh(lab, "laptop2", "vpn-runtime up /root/bob.bundle", timeout=90)
    journal_before = sh(lab, "vps1", "sha256sum /var/lib/selfvpn/journal.jsonl").stdout
    lab.hosts.update(lab_mod.reboot_host("vps1", log=lambda *_: None).hosts)
    assert sh(lab, "vps1", "systemctl is-active vpn-runtime unbound").stdout.split() == ["active", "active"]
    assert sh(lab, "vps1", "sha256sum /var/lib/selfvpn/journal.jsonl").stdout == journal_before
    # while vps1 reboots bob may fail over to vps2: either server is a rejoin
    served = {"your address: 198.51.100.10\n", "your address: 198.51.100.20\n"}
    deadline, page = time.monotonic() + 60, ""
    while time.monotonic() < deadline and page not in served:
        time.sleep(1)
        page = sh(lab, "laptop2", WEB, check=False).stdout
    assert page in served, "bob did not rejoin a server after vps1's reboot"
    sh(lab, "laptop2", "vpn-runtime down")
