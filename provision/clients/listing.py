"""`list-clients`: every client certificate of the roster, with its state and key location.

Rule 1: one row per certificate ever issued to a client, by name then issue time, so a
reissue shows the old (revoked) certificate beside the new one.
Rule 2: state is `revoked`, `expired`, `expiring soon` (within `RENEW_BEFORE`, 30 days)
or `live`; days left is whole days until expiry (negative once expired, None if revoked).
Rule 3: where the key is comes from the name's bundle file (`clients/NAME.bundle`, or
`.bundle.revoked`) when that file holds this very certificate: `bundle` (a key inside)
or `laptop` (`key_file`, a CSR was given); otherwise `unknown`. No key is ever shown.
Rule 4: reads only; needs no CA passphrase.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from provision.clients.layout import Layout, layout_for
from provision.clients.table import table
from provision.pki import RENEW_BEFORE, IssuedCert, load_roster
from provision.pki.ca import utcnow
from runtime.validate import iso_time

SECONDS_PER_DAY = 86400


def list_clients(
    inventory_path: str | Path, *, out_dir: str | Path | None = None, now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Rows for every client certificate (see the module's rules)."""
    now = now or utcnow()
    layout = layout_for(inventory_path, out_dir)
    certs = [c for c in load_roster(layout.pki).certs if c.kind == "client"]
    certs.sort(key=lambda c: (c.name, c.not_before))
    return [client_row(c, now, key_location(layout, c)) for c in certs]


def client_row(cert: IssuedCert, now: datetime, key: str) -> dict[str, Any]:
    state = cert_state(cert, now)
    return {
        "name": cert.name,
        "serial": f"{cert.serial:x}",
        "issued": iso_time(cert.not_before),
        "expires": iso_time(cert.not_after),
        "days_left": None if state == "revoked" else days_left(cert.not_after, now),
        "state": state,
        "revoked_at": None if cert.revoked_at is None else iso_time(cert.revoked_at),
        "key": key,
    }


def cert_state(cert: IssuedCert, now: datetime) -> str:
    if cert.revoked_at is not None:
        return "revoked"
    if now >= cert.not_after:
        return "expired"
    return "expiring soon" if cert.not_after - now <= RENEW_BEFORE else "live"


def days_left(until: datetime, now: datetime) -> int:
    return int((until - now).total_seconds() // SECONDS_PER_DAY)


def key_location(layout: Layout, cert: IssuedCert) -> str:
    for path in (layout.bundle(cert.name), layout.revoked(cert.name)):
        raw = _bundle_raw(path)
        if raw is not None and _serial_of(raw.get("cert")) == cert.serial:
            return "bundle" if "key" in raw else "laptop"
    return "unknown"


def _bundle_raw(path: Path) -> dict[str, Any] | None:
    try:
        raw = yaml.safe_load(path.read_bytes())
    except (OSError, yaml.YAMLError):
        return None
    return raw if isinstance(raw, dict) else None


def _serial_of(pem: object) -> int | None:
    if not isinstance(pem, str):
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode()).serial_number
    except ValueError:
        return None


def render_clients(rows: list[dict[str, Any]], as_json: bool = False) -> list[str]:
    """The rows as a table (serials shortened to 12 digits), or as JSON."""
    if as_json:
        return [json.dumps(rows, indent=1)]
    if not rows:
        return ["no clients yet (invoke add-client NAME)"]
    headers = ("NAME", "SERIAL", "ISSUED", "EXPIRES", "DAYS", "STATE", "KEY")
    return table(headers, [
        (r["name"], _short(r["serial"]), r["issued"][:10], r["expires"][:10],
         r["days_left"], r["state"], r["key"])
        for r in rows
    ])


def _short(serial: str) -> str:
    return serial if len(serial) <= 12 else serial[:12] + "…"
