"""Writing a bundle whose key stays on the laptop (`key_file`), which we never see.

`runtime.bundle.write_bundle` checks a `key_file` by reading the key beside the bundle,
which the operator does not have. Here the same checks run on everything else (identity,
servers, tunnel, CA, the certificate issued to the name by that CA), and the certificate
is checked to carry the CSR's public key, which is what the laptop's load will check
against its key file.

Rule: the file is written only after those checks, atomically, mode 0600.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provision.pki.issue import PublicKey
from runtime.bundle import (
    Bundle,
    ca_certificate,
    check_identity,
    check_issued_to,
    dump_bundle,
    servers_of,
    tunnel_of,
)
from runtime.validate import Where, path_text, write_atomic


def write_keyless_bundle(path: Path, bundle: Bundle, csr_key: PublicKey) -> None:
    """Write `bundle` (which names a `key_file`) after checking all but the absent key."""
    if bundle.key_file is None:
        raise ValueError("a keyless bundle names its key_file")
    data = dump_bundle(bundle).encode()
    check_keyless(Where(path.name), yaml.safe_load(data), csr_key)
    write_atomic(path, data, 0o600)


def check_keyless(where: Where, raw: Any, csr_key: PublicKey) -> None:
    check_identity(where, raw)
    servers_of(where, raw["servers"])
    tunnel_of(where.key("tunnel"), raw["tunnel"])
    path_text(where.key("key_file"), raw["key_file"])
    ca = ca_certificate(where.key("ca"), raw["ca"])
    cert = check_issued_to(where.key("cert"), raw["cert"], ca, raw["name"])
    if _spki(cert.public_key()) != _spki(csr_key):
        raise where.key("cert").fail("certificate does not carry the CSR's public key")


def _spki(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
