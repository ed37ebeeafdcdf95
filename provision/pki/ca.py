"""The CA on the operator's side: its key and certificate under the inventory's pki folder.

Files (`inventory/pki/`, folder mode 0700):
    ca.key   PKCS#8 PEM, mode 0600 from creation; encrypted with the passphrase if one is given
    ca.crt   the self-signed CA certificate (ECDSA P-256 by default, or Ed25519)

Rule 1: an existing CA is loaded, never overwritten; `create_or_load_ca` run again is a no-op, and
repairs an init that stopped after writing the key.
Rule 2: the CA key never leaves this machine and is never logged; `Ca.key` is left out of
`repr`.
Rule 3: mutations of the folder (issue, revoke, CRL) hold `pki_lock`, so parallel deploys
cannot lose each other's writes.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from provision.errors import PkiError
from runtime.validate import write_atomic

KeyType = Literal["ecdsa-p256", "ed25519"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
KEY_TYPES: tuple[KeyType, ...] = ("ecdsa-p256", "ed25519")
CA_DAYS = 3650
BACKDATE = timedelta(minutes=5)  # tolerate small clock skew between operator and peers


@dataclass(frozen=True)
class Ca:
    directory: Path
    cert: x509.Certificate
    key: PrivateKey = field(repr=False)

    @property
    def key_path(self) -> Path:
        return self.directory / "ca.key"

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class CaSpec:
    """What a new CA is made of; ignored when the CA already exists."""

    key_type: KeyType = "ecdsa-p256"
    common_name: str = "selfvpn CA"
    days: int = CA_DAYS


def create_or_load_ca(
    directory: Path, passphrase: str | bytes | None, spec: CaSpec, now: datetime
) -> Ca:
    """Create the CA in `directory`, or load the one already there (never overwritten)."""
    key_path, cert_path = directory / "ca.key", directory / "ca.crt"
    if cert_path.exists():
        return load_ca(directory, passphrase)
    if spec.key_type not in KEY_TYPES:
        hint = f"use one of {', '.join(KEY_TYPES)}"
        raise PkiError(f"CA key type {spec.key_type!r} unknown", hint)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if key_path.exists():  # an earlier init stopped here: keep the key, finish the job
        key = read_key(key_path, passphrase)
    else:
        key = new_key(spec.key_type)
        write_atomic(key_path, key_pem(key, passphrase), 0o600)
    cert = self_signed(key, spec.common_name, spec.days, now)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return Ca(directory, cert, key)


def load_ca(directory: Path, passphrase: str | bytes | None = None) -> Ca:
    """Load the CA; a wrong or missing passphrase or a damaged file is a `PkiError`."""
    key_path, cert_path = directory / "ca.key", directory / "ca.crt"
    if not key_path.exists():
        raise PkiError(
            f"{key_path}: missing" + (" (ca.crt is there)" if cert_path.exists() else ""),
            "restore ca.key from your backup, or run init to create a CA",
        )
    key = read_key(key_path, passphrase)
    cert = read_cert(cert_path)
    if public_der(cert.public_key()) != public_der(key.public_key()):
        raise PkiError(f"{key_path}: does not match {cert_path.name}", "restore both from backup")
    return Ca(directory, cert, key)


def read_key(path: Path, passphrase: str | bytes | None) -> PrivateKey:
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=secret)
    except OSError as exc:
        raise PkiError(f"{path}: cannot read: {exc.strerror}") from None
    except TypeError:
        return _passphrase_mismatch(path, secret)
    except ValueError:
        raise PkiError(
            f"{path}: wrong passphrase, or the key file is damaged",
            "give the CA passphrase used at init",
        ) from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise PkiError(f"{path}: a {type(key).__name__} is not a CA key type we use")
    return key


def _passphrase_mismatch(path: Path, secret: bytes | None) -> PrivateKey:
    if secret is None:
        raise PkiError(f"{path}: the CA key is encrypted", "give the CA passphrase")
    raise PkiError(f"{path}: the CA key is not encrypted", "give no passphrase")


def read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise PkiError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise PkiError(f"{path}: not a PEM certificate", "restore it from backup") from None


def new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey, passphrase: str | bytes | None = None) -> bytes:
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    crypt: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, crypt)


def key_type_of(key: PrivateKey) -> KeyType:
    return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "ecdsa-p256"


def signing_hash(key: PrivateKey) -> hashes.SHA256 | None:
    """The hash to sign with: SHA-256 for ECDSA, none for Ed25519 (it hashes itself)."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def public_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def self_signed(key: PrivateKey, common_name: str, days: int, now: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True).add_extension(ski, critical=False)
    )
    return builder.sign(key, signing_hash(key))


def key_usage(ca: bool) -> x509.KeyUsage:
    """Signatures only; a CA also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


@contextmanager
def pki_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the pki folder for a read-modify-write."""
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
