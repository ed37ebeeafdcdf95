"""wireguard-go as a peer: userspace WireGuard configured with `wg` over its UAPI socket.

Adapted from shared/bench/peer-wireguard-go.sh.  One peer each side, UDP 51820, inner MTU
1420, no persistent keepalive: the first packet through the tunnel starts the handshake.

Rule: UAPI sockets live in /var/run/wireguard/<ifname>.sock, shared by both namespaces, so
the two interfaces have different names; stale sockets are removed before a run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from provision.bench.netns import (NS_CLI, NS_SRV, TUN_CLI, TUN_MTU, TUN_SRV, UNDER_SRV, Procs, in_ns, run,
                                   wait_for)
from provision.bench.peers.base import Peer, PeerFailed, ensure_ready

IF_SRV, IF_CLI, PORT = "anc-wgs", "anc-wgc", 51820
UAPI = Path("/var/run/wireguard")


def keypair(folder: Path, name: str) -> None:
    key = run(["wg", "genkey"]).stdout.strip()
    pub = subprocess.run(["wg", "pubkey"], input=key, capture_output=True, text=True, check=True).stdout.strip()
    (folder / f"{name}.key").write_text(key + "\n")
    (folder / f"{name}.key").chmod(0o600)
    (folder / f"{name}.pub").write_text(pub + "\n")


class WireguardGo(Peer):
    name = "wireguard-go"

    def __init__(self) -> None:
        self.keys = Path("/nonexistent")

    def version(self) -> str:
        r = subprocess.run(["wireguard-go", "--version"], capture_output=True, text=True)
        return (r.stdout or r.stderr or "wireguard-go: not installed").splitlines()[0].strip()

    def prepare(self, state: Path) -> None:
        self.keys = state / "keys"
        self.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        keypair(self.keys, "srv")
        keypair(self.keys, "cli")
        for name in (IF_SRV, IF_CLI):
            (UAPI / f"{name}.sock").unlink(missing_ok=True)

    def _pub(self, name: str) -> str:
        return (self.keys / f"{name}.pub").read_text().strip()

    def _start(self, procs: Procs, role: str, ns: str, dev: str) -> None:
        procs.spawn(role, ns, f"wireguard-go-{role}",
                    ["env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error", "wireguard-go", "-f", dev])
        ensure_ready(wait_for(10, lambda: (UAPI / f"{dev}.sock").is_socket()), procs, f"wireguard-go {role}")

    def _address(self, ns: str, dev: str, addr: str) -> None:
        run(in_ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev))
        run(in_ns(ns, "ip", "link", "set", dev, "mtu", str(TUN_MTU), "up"))

    def start_server(self, procs: Procs) -> None:
        self._start(procs, "server", NS_SRV, IF_SRV)
        run(in_ns(NS_SRV, "wg", "set", IF_SRV, "listen-port", str(PORT), "private-key", str(self.keys / "srv.key"),
                  "peer", self._pub("cli"), "allowed-ips", f"{TUN_CLI}/32"))
        self._address(NS_SRV, IF_SRV, TUN_SRV)

    def start_client(self, procs: Procs) -> None:
        self._start(procs, "client", NS_CLI, IF_CLI)
        run(in_ns(NS_CLI, "wg", "set", IF_CLI, "private-key", str(self.keys / "cli.key"),
                  "peer", self._pub("srv"), "endpoint", f"{UNDER_SRV}:{PORT}", "allowed-ips", f"{TUN_SRV}/32"))
        self._address(NS_CLI, IF_CLI, TUN_CLI)
        if procs.dead():
            raise PeerFailed("wireguard-go client exited during set-up")
