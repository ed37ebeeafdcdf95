"""OpenVPN 2.6 as a peer: TLS mode with the throwaway ECDSA PKI, udp, tun, topology subnet,
no DCO (userspace data path, as our runtime), one data cipher forced on both ends.

Adapted from shared/bench/peer-openvpn.sh so the project does not depend on it at run time.

Rule: the server is ready when its TUN device holds 10.99.0.1; the client is started and
the runner times it to the first reply through the tunnel.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from provision.bench.netns import (NS_CLI, NS_SRV, TUN_MTU, TUN_SRV, UNDER_SRV, Procs, has_address,
                                   wait_for)
from provision.bench.peers.base import Peer, ensure_ready
from provision.bench.peers.pki import make_pki

DEV_SRV, DEV_CLI, PORT = "anc-ovs", "anc-ovc", 1194


def server_conf(pki_dir: Path, cipher: str) -> str:
    return f"""dev {DEV_SRV}
dev-type tun
proto udp4
local {UNDER_SRV}
port {PORT}
topology subnet
server 10.99.0.0 255.255.255.0
ca {pki_dir}/ca.crt
cert {pki_dir}/server.crt
key {pki_dir}/server.key
dh none
tls-version-min 1.2
data-ciphers {cipher}
tun-mtu {TUN_MTU}
disable-dco
keepalive 10 60
persist-key
verb 3
"""


def client_conf(pki_dir: Path, cipher: str) -> str:
    return f"""client
dev {DEV_CLI}
dev-type tun
proto udp4
remote {UNDER_SRV} {PORT}
nobind
ca {pki_dir}/ca.crt
cert {pki_dir}/client.crt
key {pki_dir}/client.key
remote-cert-tls server
tls-version-min 1.2
data-ciphers {cipher}
tun-mtu {TUN_MTU}
disable-dco
persist-key
verb 3
"""


class OpenVpn(Peer):
    name = "openvpn"

    def __init__(self, cipher: str = "AES-256-GCM") -> None:
        self.cipher = cipher
        self.state = Path("/nonexistent")

    def version(self) -> str:
        r = subprocess.run(["openvpn", "--version"], capture_output=True, text=True)
        first = (r.stdout.splitlines() or ["openvpn: not installed"])[0]
        return " ".join(first.split()[:2]) + f", {self.cipher}, no DCO"

    def prepare(self, state: Path) -> None:
        self.state = state
        pki = make_pki(state / "pki", UNDER_SRV)
        (state / "server.conf").write_text(server_conf(pki.ca_cert.parent, self.cipher))
        (state / "client.conf").write_text(client_conf(pki.ca_cert.parent, self.cipher))

    def start_server(self, procs: Procs) -> None:
        procs.spawn("server", NS_SRV, "openvpn-server", ["openvpn", "--config", str(self.state / "server.conf")])
        ready = wait_for(20, lambda: procs.dead() is None and has_address(NS_SRV, DEV_SRV, TUN_SRV))
        ensure_ready(ready and procs.dead() is None, procs, "openvpn server")

    def start_client(self, procs: Procs) -> None:
        procs.spawn("client", NS_CLI, "openvpn-client", ["openvpn", "--config", str(self.state / "client.conf")])

    def notes(self, procs: Procs) -> str:
        found = []
        for proc in procs.started:
            if proc.role == "client":
                text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
                found += re.findall(r"(?:Data|Control) Channel: .*", text)
        return "; ".join(found[:2])
