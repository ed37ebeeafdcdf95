"""`vpn-runtime status`: asks whichever runtime runs here (server, client, or both) and
prints its peers, or says that a kill switch holds with no tunnel.

Rule: reads only; never changes anything.
"""

from __future__ import annotations

import json
from typing import Any

from runtime import ctl
from runtime.config import Paths
from runtime.errors import NotRunning


def gather() -> list[dict[str, Any]]:
    found = []
    for path in (Paths().control_socket, ctl.CLIENT_SOCKET):
        try:
            found.append(ctl.request(path, "status"))
        except NotRunning:
            pass
    if not any(f.get("role") == "client" for f in found):
        from runtime import clientd

        held = clientd.orphaned_state()
        if held is not None:
            found.append(held)
    return found


def show(as_json: bool = False) -> int:
    found = gather()
    if as_json:
        nothing = {"role": None, "state": "not-running"}
        print(json.dumps(found[0] if len(found) == 1 else found or nothing, indent=1))
        return 0 if found else NotRunning.exit_code
    if not found:
        raise NotRunning("vpn-runtime status: no server or client runs here", "start one with serve or up")
    for f in found:
        print("\n".join(render(f)))
    return 0


def render(f: dict[str, Any]) -> list[str]:
    if f.get("role") == "server":
        lines = [f"server {f['name']}: {f['interface']} {f['address']}, tcp/{f['control_port']} udp/{f['data_port']}, "
                 f"{len(f['clients'])} client(s)"]
        lines += ["  " + peer_line(c) for c in f["clients"]]
        return lines
    if f.get("state") == "kill-switch-holding":
        return [f"client: NO TUNNEL, kill switch holding (runtime not running); `vpn-runtime down` to release"]
    lines = [f"client {f.get('name')}: {f.get('state')}, interface {f.get('interface')}"]
    if f.get("server"):
        lines.append("  " + peer_line(f["server"]))
    if f.get("kill_switch"):
        lines.append("  kill switch: on")
    return lines


def peer_line(p: dict[str, Any]) -> str:
    return (f"{p['name']}: {', '.join(p['tunnel_addresses'])} via {p['endpoint'] or '-'} ({p['transport']}), "
            f"rx {p['rx_bytes']} B tx {p['tx_bytes']} B, handshake {p['last_handshake_age']} s ago, "
            f"key epoch {p['key_epoch']} age {p['key_age']} s")
