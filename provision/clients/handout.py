"""`add-client NAME`: issue a client certificate and write its bundle, `clients/NAME.bundle`.

Rule 1: everything that can be refused is checked before the PKI changes: the name, the
days, the CSR, the inventory's servers and their pins, the tunnel settings, a live
certificate of the same name. A refusal leaves the PKI and `clients/` as they were.
Rule 2: a name has one live certificate. Adding it again is refused; `force` reissues:
the old certificate is revoked (its CRL must then reach the servers: `push_crl`), the new
one gets a new serial, and the new bundle replaces the old file.
Rule 3: without a CSR the key is made here and goes only into the bundle. With a CSR the
bundle holds no key but `key_file: NAME.key`, the key the laptop keeps beside the bundle.
Rule 4: the bundle is written atomically, mode 0600, after its text has been validated;
the folder is made 0700.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from provision.clients.keyless import write_keyless_bundle
from provision.clients.layout import Layout, key_file_name, layout_for
from provision.clients.servers import endpoints, server_hosts, tunnel_settings
from provision.errors import PkiError, UsageError
from provision.inventory import load_inventory
from provision.pki import CLIENT_DAYS, IssuedCert, issue_client, load_ca, load_roster, revoke
from provision.pki.ca import utcnow
from provision.pki.issue import PublicKey, check_client_name, csr_public_key
from runtime.bundle import Bundle, ServerEndpoint, TunnelSettings, write_bundle

MAX_DAYS = 3650


class ClientExists(PkiError):
    """The name already has a live certificate and `force` was not given."""


@dataclass(frozen=True)
class Csr:
    pem: bytes
    public_key: PublicKey


@dataclass(frozen=True)
class Request:
    """A checked add-client request: all the bundle holds besides the certificate."""

    name: str
    days: int
    csr: Csr | None
    servers: tuple[ServerEndpoint, ...]
    tunnel: TunnelSettings
    live: IssuedCert | None


def add_client(
    inventory_path: str | Path, name: str, csr_path: str | Path | None = None,
    expires_days: int | None = None, force: bool = False, *,
    out_dir: str | Path | None = None, passphrase: str | None = None, now: datetime | None = None,
) -> Path:
    """Issue `name` a certificate and write its bundle; return the bundle's path."""
    now = now or utcnow()
    layout = layout_for(inventory_path, out_dir)
    request = check_request(layout, name, csr_path, expires_days, force, now)
    ca = load_ca(layout.pki, passphrase)
    if request.live is not None:
        revoke(ca, name, now=now)
    csr_pem = request.csr.pem if request.csr else None
    cert_pem, key_pem = issue_client(ca, name, request.days, csr_pem, now)
    bundle = Bundle(
        name=name, issued=now, expires=_not_after(cert_pem), servers=request.servers,
        ca=ca.cert_pem, cert=cert_pem, key=key_pem,
        key_file=None if key_pem else Path(key_file_name(name)), tunnel=request.tunnel,
    )
    return write(layout, bundle, request.csr, now)


def check_request(
    layout: Layout, name: str, csr_path: str | Path | None, days: int | None, force: bool, now: datetime,
) -> Request:
    check_client_name(name)
    inventory = load_inventory(layout.inventory)
    hosts = server_hosts(inventory)
    roster = load_roster(layout.pki)
    request = Request(
        name=name, days=check_days(days), csr=read_csr(csr_path, name),
        servers=endpoints(hosts, roster, now, inventory.source),
        tunnel=tunnel_settings(hosts, inventory.source),
        live=_newest(roster.live(name, "client", now)),
    )
    if request.live is not None and not force:
        raise already_live(name, request.live)
    return request


def check_days(days: int | None) -> int:
    if days is None:
        return CLIENT_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise UsageError(f"add-client: --expires {days!r}: expected 1-{MAX_DAYS} days", "e.g. --expires 90")
    return days


def read_csr(csr_path: str | Path | None, name: str) -> Csr | None:
    if csr_path is None:
        return None
    try:
        pem = Path(csr_path).read_bytes()
    except OSError as exc:
        raise UsageError(f"add-client: --csr {csr_path}: cannot read: {exc.strerror}",
                         f"on the laptop: vpn-runtime csr --key {key_file_name(name)} --name {name} > {name}.csr") from None
    return Csr(pem, csr_public_key(pem, f"client {name}"))


def already_live(name: str, live: IssuedCert) -> ClientExists:
    return ClientExists(
        f"add-client: {name!r} already has a live certificate "
        f"(serial {live.serial:x}, expires {live.not_after.date().isoformat()})",
        f"use --force to reissue, or revoke-client {name}",
    )


def write(layout: Layout, bundle: Bundle, csr: Csr | None, now: datetime) -> Path:
    layout.clients.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = layout.bundle(bundle.name)
    if csr is None:
        write_bundle(path, bundle, now)
    else:
        write_keyless_bundle(path, bundle, csr.public_key)
    return path


def _newest(certs: tuple[IssuedCert, ...]) -> IssuedCert | None:
    return max(certs, key=lambda c: c.not_before) if certs else None


def _not_after(cert_pem: str) -> datetime:
    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc
