"""The lab's inventory file, in Ansible's YAML inventory format.

Rule: the file carries everything SSH needs to reach the hosts from this machine without
any change to the machine's network: a ProxyCommand that runs in the router's namespace.
The same file works with Ansible's own tools (`ansible-inventory -i inventory/lab.yml`).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from provision.lab.lab import KEY, KNOWN_HOSTS, PROXY, LabState
from provision.lab.topology import HOSTS, LabHost

HEADER = "# Written by `invoke lab.up`; rewritten at every lab start. Lab only: holds a sudo password.\n"


def render(state: LabState) -> str:
    common = (f'-o ProxyCommand="{PROXY}" -o UserKnownHostsFile={KNOWN_HOSTS} '
              "-o StrictHostKeyChecking=yes")
    servers = {h.name: _host_vars(h, state) for h in HOSTS if h.role == "server"}
    clients = {h.name: _host_vars(h, state) for h in HOSTS if h.role == "client"}
    spares = {h.name: _host_vars(h, state) for h in HOSTS if h.role == "spare"}
    doc = {"all": {
        "vars": {"ansible_ssh_private_key_file": str(KEY), "ansible_ssh_common_args": common,
                 "ansible_python_interpreter": "/usr/bin/python3"},
        "children": {
            "vpn_servers": {"hosts": servers, "vars": {
                "vpn_network": "10.8.0.0/24", "vpn_network6": "fd00:8::/64",
                "vpn_dns_unblock": ["test."],  # the lab's zone: web.example.test
            }},
            "lab_clients": {"hosts": clients},
            "spare_servers": {"hosts": spares},
        },
    }}
    return HEADER + yaml.safe_dump(doc, sort_keys=False)


def _host_vars(h: LabHost, state: LabState) -> dict:
    v: dict = {"ansible_host": h.addr4, "ansible_port": h.ssh_port, "ansible_user": h.ssh_user}
    if h.ssh_user != "root":
        v.update(ansible_become=True, ansible_become_method="sudo",
                 ansible_become_password=state.admin_password)
    v["lab_netns"] = h.netns
    return v


def write(state: LabState, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render(state))
    tmp.rename(path)
