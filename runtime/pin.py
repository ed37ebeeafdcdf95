"""The server pin: sha256 of a certificate's SubjectPublicKeyInfo (DER), in lowercase hex.

Rule 1: the pin is of the public key, not of the whole certificate, so that renewing a
server's certificate with the same key (made on the server) keeps every bundle valid.
Rule 2: one function per input form; all agree on the same 64 hex digits.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PIN = re.compile(r"[0-9a-f]{64}")


def pin_of_certificate(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def pin_of_pem(cert_pem: str | bytes) -> str:
    """The pin of a PEM certificate (raises ValueError if it does not parse)."""
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    return pin_of_certificate(x509.load_pem_x509_certificate(data))


def pin_of_der(cert_der: bytes) -> str:
    """The pin of a DER certificate, as `SSLObject.getpeercert(binary_form=True)` gives."""
    return pin_of_certificate(x509.load_der_x509_certificate(cert_der))
