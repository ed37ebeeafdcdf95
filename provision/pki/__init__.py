"""The operator's PKI: one CA for every server, kept in `inventory/pki/`.

    ca.key      CA private key, mode 0600, encrypted when a passphrase is given
    ca.crt      CA certificate
    index.yml   the roster of issued certificates (see `provision.pki.roster`)
    certs/      every issued certificate, `<serial hex>.pem`
    crl.pem     the CRL servers load, renewed before it lapses

Rule 1: the CA key never goes to a server; server keys never come to us (only CSRs).
Rule 2: every error a user can cause is a `PkiError` with a hint; no key is ever logged.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from provision.pki.ca import CA_DAYS, Ca, CaSpec, KeyType, create_or_load_ca, load_ca, utcnow
from provision.pki.issue import CLIENT_DAYS, SERVER_DAYS, issue_client, sign_server_csr
from provision.pki.revocation import (
    CRL_DAYS,
    crl,
    crl_next_update,
    crl_renewal_reason,
    revoke,
)
from provision.pki.roster import (
    RENEW_BEFORE,
    IssuedCert,
    Roster,
    due,
    expiring,
    load_roster,
)

__all__ = [
    "CA_DAYS", "CLIENT_DAYS", "CRL_DAYS", "RENEW_BEFORE", "SERVER_DAYS",
    "Ca", "IssuedCert", "KeyType", "Roster",
    "crl", "crl_next_update", "crl_renewal_reason", "due", "expiring", "init_ca",
    "issue_client", "list_certs", "load_ca", "load_roster", "revoke", "sign_server_csr",
]


def init_ca(
    directory: Path,
    passphrase: str | bytes | None = None,
    key_type: KeyType = "ecdsa-p256",
    common_name: str = "selfvpn CA",
    days: int = CA_DAYS,
    now: datetime | None = None,
) -> Ca:
    """Create the CA and its first CRL, or load the existing CA (never overwritten)."""
    now = now or utcnow()
    ca = create_or_load_ca(directory, passphrase, CaSpec(key_type, common_name, days), now)
    crl(ca, now)
    return ca


def list_certs(ca: Ca) -> tuple[IssuedCert, ...]:
    """Every certificate issued, revoked or not, oldest first (for list-clients)."""
    return load_roster(ca.directory).certs
