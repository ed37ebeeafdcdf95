"""The roster: every certificate the CA issued, in `inventory/pki/index.yml`.

    version: 1
    crl_number: 4            # the number of the last CRL made
    certs:
    - serial: 3b1f...        # hex, as `openssl x509 -serial` prints it (lowercase)
      name: alice
      kind: client           # or server
      not_before: '2030-01-01T00:00:00Z'
      not_after: '2031-01-01T00:00:00Z'
      revoked_at: null       # or the time of revocation
      pin: 9a0c...           # sha256 of the SubjectPublicKeyInfo (what bundles pin)

Each issued certificate is also kept as `certs/<serial>.pem`.

Rule 1: the roster is written atomically (temp file, fsync, rename); it is read whole,
changed in memory, and written whole, under the pki lock.
Rule 2: expiry questions ("what is close to expiry?") are pure functions of the roster and
a time, so deploy and list-clients can ask them without touching any key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from provision.errors import PkiError
from runtime.errors import ConfigError
from runtime.pin import PIN
from runtime.validate import (
    Where,
    choice,
    client_name,
    fields,
    hostname,
    integer,
    iso_time,
    listing,
    read_yaml,
    text,
    timestamp,
    write_atomic,
)

Kind = Literal["server", "client"]
KINDS: tuple[Kind, ...] = ("server", "client")
SERIAL = re.compile(r"[0-9a-f]{1,40}")
RENEW_BEFORE = timedelta(days=30)
_CERT_KEYS = ("serial", "name", "kind", "not_before", "not_after", "revoked_at", "pin")


@dataclass(frozen=True)
class IssuedCert:
    serial: int
    name: str
    kind: Kind
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    pin: str

    def live(self, now: datetime) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and now < self.not_after


@dataclass(frozen=True)
class Roster:
    certs: tuple[IssuedCert, ...] = ()
    crl_number: int = 0

    def named(self, name: str, kind: Kind) -> tuple[IssuedCert, ...]:
        return tuple(c for c in self.certs if c.name == name and c.kind == kind)

    def live(self, name: str, kind: Kind, now: datetime) -> tuple[IssuedCert, ...]:
        return tuple(c for c in self.named(name, kind) if c.live(now))

    def revoked(self) -> tuple[IssuedCert, ...]:
        return tuple(c for c in self.certs if c.revoked_at is not None)

    def add(self, cert: IssuedCert) -> Roster:
        return replace(self, certs=(*self.certs, cert))

    def revoke(self, serials: set[int], when: datetime) -> Roster:
        marked = (replace(c, revoked_at=when) if c.serial in serials else c for c in self.certs)
        return replace(self, certs=tuple(marked))


def expiring(
    roster: Roster, now: datetime, within: timedelta = RENEW_BEFORE
) -> tuple[IssuedCert, ...]:
    """Live certificates that expire within `within` of `now`: the ones to renew."""
    return tuple(c for c in roster.certs if c.live(now) and c.not_after - now <= within)


def due(not_after: datetime, now: datetime, within: timedelta = RENEW_BEFORE) -> bool:
    """Whether something valid until `not_after` should be renewed now."""
    return not_after - now <= within


def roster_path(directory: Path) -> Path:
    return directory / "index.yml"


def load_roster(directory: Path) -> Roster:
    path = roster_path(directory)
    if not path.exists():
        return Roster()
    try:
        return parse_roster(read_yaml(path, "PKI roster"), Where(str(path)))
    except ConfigError as exc:
        raise PkiError(exc.message, "restore index.yml from backup") from None


def parse_roster(raw: Any, where: Where) -> Roster:
    f = fields(where, raw, ("version", "crl_number", "certs"))
    integer(where.key("version"), f["version"], 1, 1)
    number = integer(where.key("crl_number"), f["crl_number"], 0, 2**62)
    return Roster(listing(where.key("certs"), f["certs"], parse_entry), number)


def parse_entry(where: Where, raw: Any) -> IssuedCert:
    f = fields(where, raw, _CERT_KEYS)
    kind = choice(where.key("kind"), f["kind"], KINDS)
    check_name = client_name if kind == "client" else hostname
    revoked = f["revoked_at"]
    return IssuedCert(
        serial=int(text(where.key("serial"), f["serial"], SERIAL, "a hex serial"), 16),
        name=check_name(where.key("name"), f["name"]),
        kind=kind,  # type: ignore[arg-type]
        not_before=timestamp(where.key("not_before"), f["not_before"]),
        not_after=timestamp(where.key("not_after"), f["not_after"]),
        revoked_at=None if revoked is None else timestamp(where.key("revoked_at"), revoked),
        pin=text(where.key("pin"), f["pin"], PIN, "64 hex digits"),
    )


def save_roster(directory: Path, roster: Roster) -> None:
    raw = {
        "version": 1,
        "crl_number": roster.crl_number,
        "certs": [entry_raw(c) for c in roster.certs],
    }
    header = "# selfvpn PKI roster: every certificate this CA issued. Written by provision.pki.\n"
    text_ = header + yaml.safe_dump(raw, sort_keys=False)
    write_atomic(roster_path(directory), text_.encode(), 0o600)


def entry_raw(cert: IssuedCert) -> dict[str, Any]:
    return {
        "serial": f"{cert.serial:x}", "name": cert.name, "kind": cert.kind,
        "not_before": iso_time(cert.not_before), "not_after": iso_time(cert.not_after),
        "revoked_at": None if cert.revoked_at is None else iso_time(cert.revoked_at),
        "pin": cert.pin,
    }
