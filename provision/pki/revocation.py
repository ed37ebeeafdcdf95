"""Revocation and the CRL (`inventory/pki/crl.pem`), kept fresh so it never lapses.

Rule 1: revoking a name revokes every certificate of that name not yet revoked; revoking
it again is a no-op that still returns a good CRL (so a re-run after a failure repairs).
Rule 2: the CRL lists every revoked serial of the roster, carries a rising CRL number,
and is renewed when it is missing, damaged, incomplete, or within `CRL_RENEW_BEFORE` of
its next update. Users of other tools lost service to lapsed CRLs; ours are remade by
`crl()`, which deploy calls on every run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provision.errors import PkiError
from provision.pki.ca import BACKDATE, Ca, pki_lock, signing_hash, utcnow
from provision.pki.roster import Kind, Roster, due, load_roster, save_roster
from runtime.validate import write_atomic

CRL_DAYS = 180
CRL_RENEW_BEFORE = timedelta(days=30)


def revoke(ca: Ca, name: str, kind: Kind = "client", now: datetime | None = None) -> str:
    """Revoke all certificates of `name` (of `kind`); return the new CRL (PEM)."""
    now = now or utcnow()
    with pki_lock(ca.directory):
        roster = load_roster(ca.directory)
        named = roster.named(name, kind)
        if not named:
            raise PkiError(f"no {kind} certificate named {name!r}", "list-clients shows the names")
        fresh = {c.serial for c in named if c.revoked_at is None}
        if not fresh:
            return current_crl(ca, roster, now)
        return write_crl(ca, roster.revoke(fresh, now), now)


def crl(ca: Ca, now: datetime | None = None) -> str:
    """The CRL to install on servers (PEM), remade first if it needs renewal."""
    now = now or utcnow()
    with pki_lock(ca.directory):
        return current_crl(ca, load_roster(ca.directory), now)


def current_crl(ca: Ca, roster: Roster, now: datetime) -> str:
    if crl_renewal_reason(ca, roster, now) is None:
        return crl_path(ca).read_text()
    return write_crl(ca, roster, now)


def crl_renewal_reason(ca: Ca, roster: Roster, now: datetime) -> str | None:
    """Why the CRL must be remade now, or None if it is good (for `deploy --check`)."""
    existing = read_crl(ca)
    if existing is None:
        return "CRL missing or damaged"
    next_update = existing.next_update_utc
    if next_update is None or due(next_update, now, CRL_RENEW_BEFORE):
        return f"CRL next update {next_update} is near"
    listed = {r.serial_number for r in existing}
    if any(c.serial not in listed for c in roster.revoked()):
        return "CRL lacks a revoked serial"
    return None


def crl_next_update(ca: Ca) -> datetime | None:
    """When the current CRL lapses (for list-clients); None if there is none."""
    existing = read_crl(ca)
    return None if existing is None else existing.next_update_utc


def read_crl(ca: Ca) -> x509.CertificateRevocationList | None:
    """The CRL on disk if it parses and verifies under the CA, else None."""
    try:
        found = x509.load_pem_x509_crl(crl_path(ca).read_bytes())
    except (OSError, ValueError):
        return None
    return found if found.is_signature_valid(ca.key.public_key()) else None


def write_crl(ca: Ca, roster: Roster, now: datetime) -> str:
    roster = Roster(roster.certs, roster.crl_number + 1)
    save_roster(ca.directory, roster)
    pem = build_crl(ca, roster, now).public_bytes(serialization.Encoding.PEM)
    write_atomic(crl_path(ca), pem, 0o644)
    return pem.decode()


def build_crl(ca: Ca, roster: Roster, now: datetime) -> x509.CertificateRevocationList:
    next_update = min(now + timedelta(days=CRL_DAYS), ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
        .last_update(now - BACKDATE).next_update(next_update)
        .add_extension(x509.CRLNumber(roster.crl_number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    for cert in roster.revoked():
        assert cert.revoked_at is not None
        revoked = x509.RevokedCertificateBuilder().serial_number(cert.serial)
        builder = builder.add_revoked_certificate(revoked.revocation_date(cert.revoked_at).build())
    return builder.sign(ca.key, signing_hash(ca.key))


def crl_path(ca: Ca) -> Path:
    return ca.directory / "crl.pem"
