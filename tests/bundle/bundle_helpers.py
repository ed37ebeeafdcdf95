"""Helpers for the bundle tests: real certificates from our PKI, and a valid bundle."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provision.pki import Ca, init_ca, issue_client, sign_server_csr
from runtime.bundle import Bundle, ServerEndpoint, TunnelSettings
from runtime.pin import pin_of_pem

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@dataclass(frozen=True)
class Material:
    ca: Ca
    cert: str
    key: str
    server_pin: str


def make_material(directory: Path, name: str = "alice", days: int = 365) -> Material:
    ca = init_ca(directory)
    cert, key = issue_client(ca, name, days=days, now=NOW)
    assert key is not None
    server_key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        server_key, hashes.SHA256()
    )
    server = sign_server_csr(ca, csr.public_bytes(serialization.Encoding.PEM), "vps1.example.net")
    return Material(ca, cert, key, pin_of_pem(server))


def make_bundle(m: Material, name: str = "alice", days: int = 365) -> Bundle:
    return Bundle(
        name=name,
        issued=NOW,
        expires=NOW + timedelta(days=days),
        servers=(
            ServerEndpoint("vps1.example.net", "203.0.113.7", 443, 51820, m.server_pin),
            ServerEndpoint("vps2.example.net", "vps2.example.net", 8443, 1194, m.server_pin),
        ),
        ca=m.ca.cert_pem,
        cert=m.cert,
        key=m.key,
        tunnel=TunnelSettings(
            cipher="chacha20-poly1305", full_tunnel=False,
            routes=(ipaddress.ip_network("192.168.50.0/24"), ipaddress.ip_network("fd00::/64")),
        ),
    )
