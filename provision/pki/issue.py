"""Issuing certificates: servers from a CSR made on the server, clients with or without one.

Rule 1: a server's key is made on the server; only its CSR reaches us, so there is no
function here that makes a server key.
Rule 2: a client that brings a CSR keeps its key on its laptop; without a CSR the key is
made here, returned once for the bundle, and never written to the pki folder.
Rule 3: every certificate gets a fresh random serial and a roster entry; a client name
has at most one live certificate (revoke it first to issue again).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provision.errors import PkiError
from provision.pki.ca import (
    BACKDATE,
    Ca,
    key_pem,
    key_type_of,
    key_usage,
    new_key,
    pki_lock,
    signing_hash,
    utcnow,
)
from provision.pki.roster import IssuedCert, Kind, load_roster, save_roster
from runtime.pin import pin_of_certificate
from runtime.validate import CLIENT_NAME, HOSTNAME

SERVER_DAYS = 825
CLIENT_DAYS = 365
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class CertSpec:
    name: str
    kind: Kind
    public_key: PublicKey
    days: int
    alt_names: tuple[x509.GeneralName, ...] = ()


def sign_server_csr(
    ca: Ca, csr_pem: str | bytes, server_name: str, sans: Iterable[str] = (),
    days: int = SERVER_DAYS, now: datetime | None = None,
) -> str:
    """Sign a server's CSR: CN and a DNS SAN of `server_name`, plus `sans` (names or IPs)."""
    if not HOSTNAME.fullmatch(server_name):
        raise PkiError(f"server name {server_name!r} is not a DNS name", "e.g. vps1.example.net")
    public_key = csr_public_key(csr_pem, f"server {server_name}")
    spec = CertSpec(server_name, "server", public_key, days, alt_names(server_name, sans))
    return issue(ca, spec, now or utcnow())


def issue_client(
    ca: Ca, name: str, days: int = CLIENT_DAYS, csr_pem: str | bytes | None = None,
    now: datetime | None = None,
) -> tuple[str, str | None]:
    """A client certificate (CN=name) and, when no CSR was given, its new key (PEM)."""
    check_client_name(name)
    key = None if csr_pem is not None else new_key(key_type_of(ca.key))
    public_key = key.public_key() if key else csr_public_key(csr_pem or b"", f"client {name}")
    cert_pem = issue(ca, CertSpec(name, "client", public_key, days), now or utcnow())
    return cert_pem, key_pem(key).decode() if key else None


def check_client_name(name: str) -> None:
    if not CLIENT_NAME.fullmatch(name):
        raise PkiError(
            f"client name {name!r} is not valid",
            "use 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
        )


def csr_public_key(csr_pem: str | bytes, whose: str) -> PublicKey:
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
        key = csr.public_key()
        valid = csr.is_signature_valid
    except ValueError:
        raise PkiError(f"CSR of {whose} does not parse", "send the PEM request itself") from None
    if not valid:
        raise PkiError(f"CSR of {whose} has a bad signature", "make the request again")
    return check_public_key(key, whose)


def check_public_key(key: object, whose: str) -> PublicKey:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size >= 256:
        return key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return key
    raise PkiError(f"CSR of {whose}: key type not accepted", "use ECDSA P-256, Ed25519, RSA 2048+")


def alt_names(server_name: str, sans: Iterable[str]) -> tuple[x509.GeneralName, ...]:
    names: list[x509.GeneralName] = [x509.DNSName(server_name)]
    for san in sans:
        name = alt_name(san)
        if name not in names:
            names.append(name)
    return tuple(names)


def alt_name(san: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        pass
    if not HOSTNAME.fullmatch(san):
        raise PkiError(f"subject alt name {san!r} is neither an IP address nor a DNS name")
    return x509.DNSName(san)


def issue(ca: Ca, spec: CertSpec, now: datetime) -> str:
    """Build, sign and record one certificate, under the pki lock."""
    with pki_lock(ca.directory):
        roster = load_roster(ca.directory)
        live = roster.live(spec.name, spec.kind, now)
        if spec.kind == "client" and live:
            raise PkiError(
                f"client {spec.name!r} already has a live certificate (serial {live[0].serial:x})",
                f"revoke it first (invoke revoke-client {spec.name}) or pick another name",
            )
        cert = build(ca, spec, now, {c.serial for c in roster.certs})
        pem = cert.public_bytes(serialization.Encoding.PEM)
        (ca.directory / "certs").mkdir(mode=0o700, exist_ok=True)
        (ca.directory / "certs" / f"{cert.serial_number:x}.pem").write_bytes(pem)
        save_roster(ca.directory, roster.add(entry(cert, spec)))
    return pem.decode()


def build(ca: Ca, spec: CertSpec, now: datetime, taken: set[int]) -> x509.Certificate:
    serial = x509.random_serial_number()
    while serial in taken:
        serial = x509.random_serial_number()
    not_after = min(now + timedelta(days=spec.days), ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder().subject_name(subject(spec.name)).issuer_name(ca.cert.subject)
        .public_key(spec.public_key).serial_number(serial)
        .not_valid_before(now - BACKDATE).not_valid_after(not_after)
    )
    for extension, critical in extensions(ca, spec):
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(ca.key, signing_hash(ca.key))


def subject(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])


def extensions(ca: Ca, spec: CertSpec) -> list[tuple[x509.ExtensionType, bool]]:
    purpose = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}
    found: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (key_usage(ca=False), True),
        (x509.ExtendedKeyUsage([purpose[spec.kind]]), False),
        (x509.SubjectKeyIdentifier.from_public_key(spec.public_key), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False),
    ]
    if spec.alt_names:
        found.append((x509.SubjectAlternativeName(list(spec.alt_names)), False))
    return found


def entry(cert: x509.Certificate, spec: CertSpec) -> IssuedCert:
    return IssuedCert(
        serial=cert.serial_number, name=spec.name, kind=spec.kind,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        revoked_at=None, pin=pin_of_certificate(cert),
    )
