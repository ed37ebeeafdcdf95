"""Test helpers that set a VPN up by hand in the lab: the runtime installed from wheels,
a CA on this machine, a server key made on the server, a bundle on the laptop.

(The toolkit's deploy does the same over SSH; these helpers go through the hosts'
namespaces so runtime tests don't depend on it.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from provision import pki
from provision.lab.hostfiles import install_runtime, put, root_of, sh  # noqa: F401 (re-exported)
from runtime.bundle import Bundle, ServerEndpoint, TunnelSettings, write_bundle
from runtime.pin import pin_of_pem

SERVERS = {"vps1": "198.51.100.10", "vps2": "198.51.100.20", "vps3": "198.51.100.30"}
RUNTIME_SERVER = "vps3"  # runtime tests' server; deploy tests own vps1 and vps2
CONTROL_PORT, DATA_PORT = 8443, 51820
CONF = "/etc/vpn-runtime"


def leak_filter(server_ip: str) -> str:
    """tcpdump filter for what must NOT appear on a laptop's eth0: anything but the runtime's
    own packets to its server's ports, ARP and IPv6 neighbour discovery."""
    return (f"not arp and not (host {server_ip} and (tcp port {CONTROL_PORT} or udp port {DATA_PORT})) "
            "and not (icmp6 and ip6[40] >= 133 and ip6[40] <= 136)")


@dataclass
class Vpn:
    """A CA plus what it issued in one test session."""

    lab: object
    ca: pki.Ca
    server_certs: dict[str, str]
    issued: dict = field(default_factory=dict)

    def start_server(self, host: str, extra: str = "", unit: str = "vpn-test") -> None:
        name = f"{host}.vpn"
        csr = sh(self.lab, host, f"vpn-runtime csr --key {CONF}/server.key --name {name}").stdout
        cert = pki.sign_server_csr(self.ca, csr, name, sans=(SERVERS[host],))
        self.server_certs[host] = cert
        put(self.lab, host, f"{CONF}/ca.crt", self.ca_pem())
        put(self.lab, host, f"{CONF}/server.crt", cert)
        put(self.lab, host, f"{CONF}/crl.pem", pki.crl(self.ca))
        put(self.lab, host, f"{CONF}/server.yml", f"name: {name}\nnetwork: 10.8.0.0/24\n{extra}")
        nat = ("table ip vpntest {\n chain post {\n type nat hook postrouting priority 100;\n"
               " ip saddr 10.8.0.0/24 oifname eth0 masquerade\n }\n}\n")
        put(self.lab, host, "/run/vpntest.nft", nat)
        sh(self.lab, host, "sysctl -qw net.ipv4.ip_forward=1; nft delete table ip vpntest 2>/dev/null; "
                           "nft -f /run/vpntest.nft")
        sh(self.lab, host, f"systemctl stop {unit} 2>/dev/null; systemctl reset-failed {unit} 2>/dev/null; "
                           f"systemd-run --unit {unit} "
                           f"-p Restart=always -p RestartSec=1 vpn-runtime serve {CONF}/server.yml")
        sh(self.lab, host, f"for i in $(seq 50); do vpn-runtime status >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
                           f"journalctl -u {unit} --no-pager | tail -20; exit 1")

    def start_resolver(self, host: str) -> None:
        """unbound from the lab's mirror, answering clients on the tunnel address."""
        conf = ("server:\n  interface: 10.8.0.1\n  ip-freebind: yes\n  access-control: 10.8.0.0/24 allow\n"
                "  module-config: \"iterator\"\n  local-zone: \"test.\" nodefault\n"
                "  log-queries: yes\n  use-syslog: yes\n"
                "forward-zone:\n  name: \".\"\n  forward-addr: 203.0.113.53\n")
        sh(self.lab, host, "dpkg-query -W unbound >/dev/null 2>&1 || "
                           "(apt-get update -qq && apt-get install -y -qq unbound >/dev/null)", timeout=300)
        put(self.lab, host, "/etc/unbound/unbound.conf.d/vpntest.conf", conf)
        sh(self.lab, host, "systemctl restart unbound")

    def stop_server(self, host: str, unit: str = "vpn-test") -> None:
        sh(self.lab, host, f"systemctl stop {unit}; nft delete table ip vpntest; "
                           f"sysctl -qw net.ipv4.ip_forward=0; rm -rf {CONF} /var/lib/vpn-runtime", check=False)

    def ca_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return self.ca.cert.public_bytes(serialization.Encoding.PEM).decode()

    def bundle(self, name: str, hosts: tuple[str, ...] = (RUNTIME_SERVER,), **tunnel) -> Bundle:
        """A bundle for `name` (its certificate issued once per session)."""
        if name not in self.issued:
            self.issued[name] = pki.issue_client(self.ca, name)
        cert, key = self.issued[name]
        servers = tuple(ServerEndpoint(f"{h}.vpn", SERVERS[h], CONTROL_PORT, DATA_PORT,
                                       pin_of_pem(self.server_certs[h].encode())) for h in hosts)
        now = pki.utcnow()
        return Bundle(name, now, now + timedelta(days=30), servers, self.ca_pem(), cert, key,
                      tunnel=TunnelSettings(**tunnel))

    def give(self, host: str, bundle: Bundle, path: str = "/root/client.bundle") -> str:
        local = Path(f"/tmp/{bundle.name}-{host}.bundle")
        local.unlink(missing_ok=True)
        write_bundle(local, bundle)
        put(self.lab, host, path, local.read_bytes(), 0o600)
        local.unlink()
        return path
