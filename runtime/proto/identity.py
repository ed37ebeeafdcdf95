"""Who the TLS peer is, and whether we accept it: checks run after every TLS handshake.

Rule 1: OpenSSL already verified chain, validity dates, purpose and (client side) the name;
        `handshake_reason` maps its failures to our reason strings.
Rule 2: we then check, with `cryptography` on the peer's DER certificate: the EKU (server
        needs serverAuth, client needs clientAuth), the server's pin (SHA-256 hex of its
        SubjectPublicKeyInfo), the client's serial against the CRL, and the TLS 1.3 suite.
Rule 3: every refusal has its own reason string: foreign-ca, expired, not-yet-valid,
        wrong-eku, wrong-name, wrong-pin, revoked, weak-cipher, no-certificate, no-name.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runtime.errors import ConfigError

ALLOWED_SUITES = ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

_VERIFY_REASONS = {
    2: "foreign-ca",  # unable to get issuer certificate
    7: "foreign-ca",  # certificate signature failure
    9: "not-yet-valid",
    10: "expired",
    18: "foreign-ca",  # self-signed leaf
    19: "foreign-ca",  # self-signed in chain
    20: "foreign-ca",  # unable to get local issuer
    21: "foreign-ca",  # unable to verify the first certificate
    23: "revoked",
    26: "wrong-eku",  # unsuitable purpose
    62: "wrong-name",  # hostname mismatch
}


@dataclass(frozen=True)
class PeerIdentity:
    """The accepted peer: its certificate's common name and serial."""

    name: str
    serial: int


def spki_pin(cert: x509.Certificate) -> str:
    """The pin of a certificate: SHA-256 (hex) of its SubjectPublicKeyInfo DER."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def identity_of(cert: x509.Certificate) -> PeerIdentity | None:
    """Name and serial of `cert`, or None when it has no common name."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or not isinstance(names[0].value, str) or not names[0].value:
        return None
    return PeerIdentity(names[0].value, cert.serial_number)


def _has_eku(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return usage in eku


def server_refusal(cert: x509.Certificate, pin: str) -> str | None:
    """Why the client refuses this server certificate, or None to accept it."""
    if not _has_eku(cert, ExtendedKeyUsageOID.SERVER_AUTH):
        return "wrong-eku"
    return None if spki_pin(cert) == pin.lower() else "wrong-pin"


def client_refusal(cert: x509.Certificate, crl: x509.CertificateRevocationList | None) -> str | None:
    """Why the server refuses this client certificate, or None to accept it."""
    if not _has_eku(cert, ExtendedKeyUsageOID.CLIENT_AUTH):
        return "wrong-eku"
    if identity_of(cert) is None:
        return "no-name"
    if crl is not None and crl.get_revoked_certificate_by_serial_number(cert.serial_number):
        return "revoked"
    return None


def cipher_refusal(suite: str | None) -> str | None:
    """Refuse any TLS 1.3 suite but AES-256-GCM and ChaCha20-Poly1305."""
    return None if suite in ALLOWED_SUITES else "weak-cipher"


def handshake_reason(exc: ssl.SSLError) -> str:
    """Our reason string for a failed TLS handshake (ours, or an alert from the peer)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_REASONS.get(exc.verify_code, f"bad-certificate:{exc.verify_code}")
    reason = (exc.reason or "tls-error").lower().replace("_", "-")
    if "did-not-return-a-certificate" in reason:
        return "no-certificate"
    if "alert" in reason:
        return f"peer-refused:{reason}"
    return f"tls:{reason}"


def load_crl(data: bytes, ca_pem: bytes) -> x509.CertificateRevocationList:
    """A CRL (PEM or DER) whose issuer is our CA and whose signature verifies, or ConfigError."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        loader = x509.load_pem_x509_crl if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl
        crl = loader(data)
    except ValueError as exc:
        raise ConfigError(f"CRL: cannot parse it ({exc})", "reissue the CRL from the CA") from None
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise ConfigError("CRL: not signed by our CA", "copy the CRL made by this VPN's CA")
    return crl
