"""The lab's pure parts: its shape and its inventory file (no root needed)."""

from __future__ import annotations

import ipaddress

import yaml

from provision.lab import labinventory
from provision.lab.lab import HostState, LabState
from provision.lab.topology import HOSTS, SEGMENTS, SERVICES4


def test_addresses_are_documentation_ranges_and_unique():
    docs = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
    addrs = [a for h in HOSTS for a in (h.addr4, h.addr6) if a] + list(SERVICES4.values())
    assert len(addrs) == len(set(addrs))
    for a in addrs:
        assert any(ipaddress.ip_address(a) in n for n in docs), a
    assert all(h.segment in SEGMENTS for h in HOSTS if h.role != "router")


def test_inventory_is_ansible_yaml_with_sudo_user_on_custom_port():
    state = LabState("/img", "pw", {h.name: HostState(1, 2, "KEY") for h in HOSTS})
    doc = yaml.safe_load(labinventory.render(state))
    servers = doc["all"]["children"]["vpn_servers"]["hosts"]
    assert servers["vps1"] == {"ansible_host": "198.51.100.10", "ansible_port": 22,
                               "ansible_user": "root", "lab_netns": "vpnlab-vps1"}
    assert servers["vps2"]["ansible_user"] == "admin" and servers["vps2"]["ansible_port"] == 2222
    assert servers["vps2"]["ansible_become"] is True
    assert "ProxyCommand=" in doc["all"]["vars"]["ansible_ssh_common_args"]
