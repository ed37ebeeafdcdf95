"""A throwaway PKI for one benchmark: a CA, a server certificate and a client certificate.

Made with the toolkit's own `provision.pki` (ECDSA P-256), the server key and CSR made here
with `cryptography` as a server would.  OpenVPN and our runtime both use it.

Rule: everything lives under the run's state folder and is made fresh for every run; no
key leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provision.pki import init_ca, issue_client, sign_server_csr

SERVER_NAME = "bench-server.selfvpn.test"
CLIENT_NAME = "bench-client"


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    crl: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(folder: Path, server_ip: str) -> Pki:
    """CA under folder/ca, server and client certificates and keys beside it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = init_ca(folder / "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
           .sign(key, hashes.SHA256()))
    server_pem = sign_server_csr(ca, csr.public_bytes(serialization.Encoding.PEM), SERVER_NAME, [server_ip])
    client_pem, client_key = issue_client(ca, CLIENT_NAME)
    files = {
        "ca.crt": ca.cert_pem,
        "server.crt": server_pem,
        "server.key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode(),
        "client.crt": client_pem,
        "client.key": client_key or "",
    }
    for name, text in files.items():
        path = folder / name
        path.write_text(text)
        path.chmod(0o600)
    return Pki(folder / "ca.crt", folder / "ca" / "crl.pem", folder / "server.crt", folder / "server.key",
               folder / "client.crt", folder / "client.key")
