"""Valid inputs for the file targets, made by the real code or taken from real examples.

Rule 1: a bundle seed's certificates are valid from 2020 to 2060 and the bundle target
        loads at FUZZ_NOW (2030), so a seed kept in the corpus never expires.
Rule 2: seeds are made fresh at every run (`*_seeds()`); the corpus keeps a few as files.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.bundle import Bundle, ServerEndpoint, TunnelSettings, dump_bundle

FUZZ_NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
_START = datetime(2020, 1, 1, tzinfo=timezone.utc)
_END = datetime(2060, 1, 1, tzinfo=timezone.utc)
PROVISION_DATA = Path(__file__).resolve().parents[1] / "provision" / "data"


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
          *, ca: bool) -> x509.Certificate:
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    builder = x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
    builder = builder.public_key(key.public_key()).serial_number(x509.random_serial_number())
    builder = builder.not_valid_before(_START).not_valid_after(_END)
    builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    return builder.sign(signer, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@cache
def bundle_seeds() -> tuple[bytes, ...]:
    """A full-tunnel and a split-tunnel bundle for 'alice' under a fresh CA."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Fuzz CA", ca_key, "Fuzz CA", ca_key, ca=True)
    cert = _cert("alice", key, "Fuzz CA", ca_key, ca=False)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    servers = (ServerEndpoint("vps1.example.net", "203.0.113.7", 443, 51820, "ab" * 32),
               ServerEndpoint("vps2.example.net", "2001:db8::7", 8443, 1194, "cd" * 32))
    base = Bundle(name="alice", issued=_START, expires=_END, servers=servers, ca=_pem(ca), cert=_pem(cert),
                  key=key_pem)
    split = TunnelSettings(cipher="chacha20-poly1305", transport="tcp", full_tunnel=False,
                           routes=(ipaddress.ip_network("192.168.50.0/24"), ipaddress.ip_network("fd00::/64")))
    return tuple(dump_bundle(b).encode() for b in (base, Bundle(**{**vars(base), "tunnel": split})))


def config_seeds() -> tuple[bytes, ...]:
    """A minimal and a full server config."""
    full = {
        "name": "vps1.example.net", "network": "10.8.0.0/24", "network6": "fd42:8::/64",
        "pool": "10.8.0.128/25", "listen": "::", "control_port": 443, "data_port": 51820,
        "tcp_transport": False, "dns": ["10.8.0.1", "fd42:8::1"], "routes": ["192.168.1.0/24"],
        "client_to_client": True, "ciphers": ["chacha20-poly1305", "aes-256-gcm"], "keepalive": 5,
        "dead_peer": 30, "rekey_seconds": 60, "rekey_packets": 1000, "interface": "vpn-main",
        "mtu": 1400, "paths": {"crl": "/srv/crl.pem", "leases": "/srv/leases.json"},
    }
    minimal = {"name": "vps1.example.net", "network": "10.8.0.0/24"}
    return tuple(yaml.safe_dump(c, sort_keys=False).encode() for c in (minimal, full))


def inventory_seeds() -> tuple[bytes, ...]:
    small = b"all:\n  hosts:\n    vps1:\n      ansible_host: 203.0.113.10\n      ansible_port: 2222\n"
    return ((PROVISION_DATA / "hosts.yml").read_bytes(), small)


def playbook_seeds() -> tuple[bytes, ...]:
    plain = (b"- name: forward\n  op: sysctl\n  args: {key: net.ipv4.ip_forward, value: 1}\n"
             b"  when: vpn_port == 4443\n- op: file\n  args: {path: /etc/a, content: \"x {{ vpn_port }}\"}\n")
    return ((PROVISION_DATA / "server.yml").read_bytes(), plain)
