"""The lab of real hosts: reachable as an operator would reach them, services of the
simulated internet working, isolated from everything outside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from provision.lab import lab as lab_mod
from provision.lab.topology import HOSTS, INTERNET

pytestmark = pytest.mark.lab


def ssh_through_inventory(inv: dict, name: str, command: str) -> str:
    """Reach a host with OpenSSH using only what the inventory file says."""
    allv = inv["all"]["vars"]
    hv = inv["all"]["children"]["vpn_servers"]["hosts"][name]
    argv = ["ssh", "-i", allv["ansible_ssh_private_key_file"], "-p", str(hv["ansible_port"]),
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            *_split(allv["ansible_ssh_common_args"]), f"{hv['ansible_user']}@{hv['ansible_host']}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout


def _split(args: str) -> list[str]:
    import shlex
    return shlex.split(args)


@pytest.fixture(scope="module")
def inventory(lab, tmp_path_factory):
    """The lab's inventory, with vps1 and vps2 fresh (other modules deploy to them)."""
    from provision.lab import labinventory

    for host in ("vps1", "vps2"):
        lab.hosts.update(lab_mod.reset_host(host, log=lambda *_: None).hosts)

    path = tmp_path_factory.mktemp("inv") / "lab.yml"
    labinventory.write(lab, path)
    return yaml.safe_load(path.read_text())


def test_ssh_to_vps1_as_root_through_the_inventory(inventory):
    out = ssh_through_inventory(inventory, "vps1", "id -un; hostname; systemctl is-system-running")
    assert out.split() == ["root", "vps1", "running"]


def test_ssh_to_vps2_as_admin_on_2222_with_sudo(inventory):
    pw = inventory["all"]["children"]["vpn_servers"]["hosts"]["vps2"]["ansible_become_password"]
    out = ssh_through_inventory(
        inventory, "vps2", f"id -un; echo '{pw}' | sudo -S -p '' sh -c 'id -un; systemctl is-system-running'")
    assert out.split() == ["admin", "root", "running"]


def test_vps2_refuses_root_and_port_22(lab, inventory):
    base = lab_mod.ssh_argv("vps2", lab)
    as_root = [a.replace("admin@", "root@") for a in base] + ["true"]
    assert subprocess.run(as_root, capture_output=True, timeout=60).returncode != 0
    port22 = [("22" if a == "2222" else a) for a in base] + ["true"]
    assert subprocess.run(port22, capture_output=True, timeout=60).returncode != 0


def test_web_page_shows_the_laptops_address(on):
    assert on("laptop", "curl -s --max-time 5 http://203.0.113.80/").stdout == "your address: 192.0.2.10\n"
    assert on("laptop", "curl -s --max-time 5 -6 http://[2001:db8:3::80]/").stdout == "your address: 2001:db8:2::10\n"


def test_test_zone_resolves_via_the_public_resolver(on):
    out = on("laptop", "dig +short +time=2 +tries=1 web.example.test @203.0.113.53").stdout
    assert out.split() == ["203.0.113.80"]
    log = on("internet", "cat /var/log/vpnlab-dns.log").stdout
    assert "query[A] web.example.test from 192.0.2.10" in log


def test_vps_hosts_start_without_what_deploy_installs_but_can_get_it_from_the_lab_mirror(on):
    assert on("vps1", "dpkg-query -W unbound", check=False).returncode != 0
    out = on("vps1", "apt-get update -qq && apt-cache policy unbound", timeout=120).stdout
    assert "Candidate: (none)" not in out and "203.0.113.80" in out


def test_no_host_has_a_route_out_of_the_lab(on):
    for h in HOSTS:
        # route lookups only: no packet is sent anywhere
        proc = on(h.name, "ip route get 9.9.9.9 && ip -6 route get 2620:fe::9", check=False)
        if h is INTERNET:
            assert proc.returncode != 0, "the router must know no way out of the lab"
        else:
            assert "via" in proc.stdout  # to the router, which has nowhere to send it
    links = on("internet", "ls /sys/class/net").stdout.split()
    assert sorted(l for l in links if not l.startswith("v-")) == ["br-home", "br-vps", "lo"]


def test_status_json_names_pids_and_ssh(lab):
    st = lab_mod.status(lab)
    assert st["up"]
    by = {h["name"]: h for h in st["hosts"]}
    assert by["vps2"]["ssh"]["port"] == 2222 and by["vps2"]["ssh"]["user"] == "admin"
    assert by["vps1"]["netns"] == "vpnlab-vps1" and by["vps1"]["address"] == "198.51.100.10"
    for h in st["hosts"]:
        assert open(f"/proc/{h['init_pid']}/comm").read().strip() == "systemd"


def test_hosts_are_separate_systemd_instances(on):
    on("vps1", "systemctl stop ssh.socket ssh.service")
    try:
        assert on("vps2", "systemctl is-active ssh.service").stdout.strip() == "active"
    finally:
        on("vps1", "systemctl start ssh.service")


def test_lab_inventory_parses_with_ansibles_own_tool(lab, tmp_path):
    import json
    import shutil

    from provision.lab import labinventory

    tool = shutil.which("ansible-inventory") or str(Path(sys.executable).parent / "ansible-inventory")
    path = tmp_path / "lab.yml"
    labinventory.write(lab, path)
    out = json.loads(subprocess.run([tool, "-i", str(path), "--list"], capture_output=True,
                                    text=True, check=True, timeout=120).stdout)
    assert sorted(out["vpn_servers"]["hosts"]) == ["vps1", "vps2"]
    assert out["_meta"]["hostvars"]["vps2"]["ansible_port"] == 2222
    assert out["_meta"]["hostvars"]["vps2"]["ansible_become"] is True
