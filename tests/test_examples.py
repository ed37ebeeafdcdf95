"""The files a user starts from parse: the example inventory and the server playbook."""

from __future__ import annotations

from pathlib import Path

from provision.inventory import load_inventory
from provision.playbook import load_playbook

ROOT = Path(__file__).resolve().parent.parent


def test_example_inventory_names_two_servers_one_through_sudo_on_a_custom_port():
    inv = load_inventory(ROOT / "inventory" / "hosts.example.yml")
    hosts = {h.name: h for h in inv.resolve("vpn_servers")}
    assert sorted(hosts) == ["vps1", "vps2"]
    assert hosts["vps2"].port == 2222 and hosts["vps2"].become and hosts["vps2"].user == "admin"


def test_server_playbook_loads_and_starts_with_the_platform_check():
    book = load_playbook(ROOT / "playbooks" / "server.yml")
    steps, handlers = book.for_host({"vpn_server_name": "vps1.vpn", "vpn_server_sans": [], "vpn_network": "10.8.0.0/24",
                                     "vpn_network6": None, "vpn_tcp_port": 8443, "vpn_port": 51820, "vpn_dns": [],
                                     "vpn_client_to_client": False, "vpn_upstream_dns": [], "vpn_dns_unblock": [],
                                     "vpn_public_interface": None})
    assert steps[0].step.op == "platform"
    assert {s.step.op for s in steps} >= {"package", "runtime", "server_cert", "nft_table", "unit"}
