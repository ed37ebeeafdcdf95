"""`status --host PATTERN`: each server's daemon, its clients, and its certificates' expiry.

Facts gathered per host, in parallel, read only:
    systemctl is-active vpn-runtime                 -> daemon: active, inactive, failed...
    /opt/vpn-runtime/bin/vpn-runtime status --json  -> clients (name, addresses, bytes, handshake age)
    cat /etc/vpn-runtime/crl.pem                    -> whether the host has our current CRL
and from this machine, with no CA passphrase: the host's server certificate in the roster
(newest live one of its TLS name) and the next update of our CRL.

Rule 1: each fact is a command plus a pure parser of its output (`parse_*`), so the
parsers are tested from recorded outputs; a command that fails gives `None` and a reason,
never an exception. An unreachable host is a row that says so.
Rule 2: `crl` is `current` (the host's file is ours, byte for byte), `stale` (another
one: push it with revoke-client or deploy), or `missing`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from provision.clients.fanout import Outcome, on_each
from provision.clients.layout import layout_for
from provision.clients.listing import days_left
from provision.clients.revoke import CRL_PATH
from provision.clients.servers import server_cert, server_name
from provision.clients.table import table
from provision.connection import Remote
from provision.inventory import Host, load_inventory
from provision.pki import Roster, load_roster
from provision.pki.ca import utcnow
from provision.runner import Connector
from provision.wheelhouse import INSTALL_DIR
from runtime.validate import iso_time

IS_ACTIVE = "systemctl is-active vpn-runtime"
RUNTIME_STATUS = f"{INSTALL_DIR}/bin/vpn-runtime status --json"  # where deploy installs it
READ_CRL = f"cat {CRL_PATH}"


@dataclass(frozen=True)
class Probe:
    """What one host told us."""

    daemon: str
    runtime: dict[str, Any] | None
    runtime_error: str | None
    crl: str | None


@dataclass(frozen=True)
class Local:
    """What this machine knows about every server: the roster and our CRL."""

    roster: Roster
    crl_pem: str | None
    crl_next_update: datetime | None
    now: datetime


def server_status(
    inventory_path: str | Path, pattern: str, connect: Connector, *, now: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per host of `pattern` (see the module's rules), in inventory order."""
    inventory = load_inventory(inventory_path)
    hosts = inventory.resolve(pattern)
    local = local_facts(layout_for(inventory_path).pki, now or utcnow())
    outcomes = on_each(hosts, connect, probe)
    return [status_row(h, o, local, inventory.source) for h, o in zip(hosts, outcomes)]


def probe(remote: Remote) -> Probe:
    daemon = remote.run(IS_ACTIVE, check=False)
    runtime = remote.run(RUNTIME_STATUS, check=False)
    crl = remote.run(READ_CRL, check=False)
    found, error = parse_runtime(runtime.rc, runtime.stdout, runtime.stderr)
    return Probe(parse_is_active(daemon.stdout), found, error, crl.stdout if crl.rc == 0 else None)


def parse_is_active(stdout: str) -> str:
    """`systemctl is-active` prints the state even when it exits non-zero."""
    return stdout.strip().splitlines()[0] if stdout.strip() else "unknown"


def parse_runtime(rc: int, stdout: str, stderr: str) -> tuple[dict[str, Any] | None, str | None]:
    """The server's entry of `vpn-runtime status --json`, or None and why."""
    try:
        found = json.loads(stdout) if stdout.strip() else []
    except ValueError:
        return None, "vpn-runtime status --json printed no JSON"
    for entry in found if isinstance(found, list) else [found]:
        if isinstance(entry, dict) and entry.get("role") == "server":
            return entry, None
    lines = stderr.strip().splitlines()
    return None, lines[-1] if lines else f"no server runs here (exit {rc})"


def local_facts(pki: Path, now: datetime) -> Local:
    pem = _read(pki / "crl.pem")
    return Local(load_roster(pki), pem, crl_next_update(pki, pem), now)


def crl_next_update(pki: Path, pem: str | None) -> datetime | None:
    """Our CRL's next update, if it parses and verifies under `ca.crt` (no CA key needed)."""
    ca_pem = _read(pki / "ca.crt")
    if pem is None or ca_pem is None:
        return None
    try:
        crl = x509.load_pem_x509_crl(pem.encode())
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
        good = crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return None
    return crl.next_update_utc if good else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def status_row(host: Host, outcome: Outcome[Probe], local: Local, source: str) -> dict[str, Any]:
    name = server_name(host, source)
    cert = server_cert(local.roster, name, local.now)
    row: dict[str, Any] = {
        "host": host.name, "name": name, "state": outcome.state, "error": outcome.error,
        "server_cert_expires": None if cert is None else iso_time(cert.not_after),
        "server_cert_days_left": None if cert is None else days_left(cert.not_after, local.now),
        "crl_next_update": None if local.crl_next_update is None else iso_time(local.crl_next_update),
    }
    return {**row, **probe_fields(outcome.value, local.crl_pem)}


def probe_fields(found: Probe | None, our_crl: str | None) -> dict[str, Any]:
    if found is None:
        return {"daemon": None, "clients": None, "runtime_error": None, "crl": None}
    return {
        "daemon": found.daemon,
        "clients": None if found.runtime is None else list(found.runtime.get("clients", [])),
        "runtime_error": found.runtime_error,
        "crl": crl_state(found.crl, our_crl),
    }


def crl_state(theirs: str | None, ours: str | None) -> str:
    if theirs is None:
        return "missing"
    return "current" if ours is not None and theirs.strip() == ours.strip() else "stale"


def render_status(rows: list[dict[str, Any]], as_json: bool = False) -> list[str]:
    """A table of servers, then each server's clients, then what went wrong where."""
    if as_json:
        return [json.dumps(rows, indent=1)]
    headers = ("HOST", "NAME", "DAEMON", "CLIENTS", "SERVER CERT", "CRL")
    lines = table(headers, [_summary(r) for r in rows])
    for row in rows:
        lines += _client_lines(row)
    lines += [f"{r['host']}: {r['state']}: {r['error']}" for r in rows if r["error"]]
    lines += [f"{r['host']}: vpn-runtime: {r['runtime_error']}" for r in rows if r.get("runtime_error")]
    return lines


def _summary(row: dict[str, Any]) -> tuple[object, ...]:
    clients = row["clients"]
    daemon = row["daemon"] if row["state"] == "ok" else row["state"]
    cert = "none" if row["server_cert_expires"] is None else (
        f"{row['server_cert_expires'][:10]} ({row['server_cert_days_left']} d)")
    next_update = row["crl_next_update"][:10] if row["crl_next_update"] else "unknown"
    crl = None if row["crl"] is None else f"{row['crl']}, next update {next_update}"
    return row["host"], row["name"], daemon, None if clients is None else len(clients), cert, crl


def _client_lines(row: dict[str, Any]) -> list[str]:
    clients = row["clients"] or []
    if not clients:
        return []
    cells = [
        (c.get("name"), ", ".join(c.get("tunnel_addresses", [])), f"via {c.get('endpoint') or '-'}",
         c.get("transport"), f"rx {c.get('rx_bytes')} B", f"tx {c.get('tx_bytes')} B",
         f"handshake {c.get('last_handshake_age')} s ago")
        for c in clients
    ]
    return [f"{row['host']} clients:"] + ["  " + line for line in table([""] * 7, cells)[1:]]
