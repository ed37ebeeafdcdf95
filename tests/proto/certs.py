"""Test-only PKI: a CA that issues server and client certificates and CRLs (cryptography).

Rule 1: only tests import this; keys are ECDSA P-256 unless Ed25519 is asked for.
Rule 2: every knob a refusal test needs is a keyword: validity window, EKU, SAN, serial.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runtime.proto import Credentials, spki_pin

SERVER_NAME = "vpn.example.test"
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_key(kind: str) -> PrivateKey:
    return ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())


def _algorithm(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def pin(self) -> str:
        return spki_pin(self.cert)

    @property
    def serial(self) -> int:
        return self.cert.serial_number


class Pki:
    """A CA for tests."""

    def __init__(self, name: str = "Test VPN CA", kind: str = "ec") -> None:
        self.key = _new_key(kind)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = self._window(x509.CertificateBuilder(), -1, 3650).subject_name(subject).issuer_name(subject)
        builder = builder.public_key(self.key.public_key()).serial_number(x509.random_serial_number())
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        builder = builder.add_extension(_usage(cert_sign=True), critical=True)
        self.cert = builder.sign(self.key, _algorithm(self.key))  # type: ignore[arg-type]

    @staticmethod
    def _window(builder: x509.CertificateBuilder, start_days: float, end_days: float) -> x509.CertificateBuilder:
        now = _now()
        return builder.not_valid_before(now + dt.timedelta(days=start_days)).not_valid_after(
            now + dt.timedelta(days=end_days))

    @property
    def ca_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cn: str, *, eku: tuple[x509.ObjectIdentifier, ...] | None, san: str | None = None,
              valid: tuple[float, float] = (-1, 365), kind: str = "ec") -> Issued:
        key = _new_key(kind)
        builder = self._window(x509.CertificateBuilder(), *valid)
        builder = builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        builder = builder.issuer_name(self.cert.subject).public_key(key.public_key())
        builder = builder.serial_number(x509.random_serial_number())
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(_usage(cert_sign=False), critical=True)
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return Issued(builder.sign(self.key, _algorithm(self.key)), key)  # type: ignore[arg-type]

    def server(self, name: str = SERVER_NAME, **kw: object) -> Issued:
        return self.issue(name, eku=(SERVER_AUTH,), san=name, **kw)  # type: ignore[arg-type]

    def client(self, name: str = "alice", **kw: object) -> Issued:
        return self.issue(name, eku=(CLIENT_AUTH,), **kw)  # type: ignore[arg-type]

    def creds(self, issued: Issued) -> Credentials:
        return Credentials(self.ca_pem, issued.cert_pem, _pem(issued.key))

    def crl(self, *serials: int, signer: PrivateKey | None = None) -> bytes:
        builder = x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
        builder = builder.last_update(_now() - dt.timedelta(days=1)).next_update(_now() + dt.timedelta(days=30))
        for serial in serials:
            revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_now()).build()
            builder = builder.add_revoked_certificate(revoked)
        key = signer or self.key
        return builder.sign(key, _algorithm(key)).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)
