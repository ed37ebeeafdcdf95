"""`vpn-runtime csr`: make a private key where it is used, and print its certificate request.

The server's key is made on the server (deploy runs this there) and a laptop can make its
own key the same way, so that only the request travels and the key never leaves.

Rule 1: the key file is created with mode 0600 from the start (never chmod-ed after) and
an existing key is reused, never overwritten (a re-deploy keeps the server's pin).
Rule 2: only the CSR (public) is printed; the key is never printed or logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.errors import ConfigError


def ensure_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), None)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{path}: not a usable private key ({e})", "move it away to make a new one") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{path}: expected an ECDSA key", "move it away to make a new one")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    return key


def csr_pem(key: ec.EllipticCurvePrivateKey, name: str) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def main(key_path: str, name: str) -> int:
    print(csr_pem(ensure_key(Path(key_path)), name), end="")
    return 0
