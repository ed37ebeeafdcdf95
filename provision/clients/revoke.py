"""`revoke-client NAME`: revoke in the PKI, retire the bundle, push the CRL to every server.

Rule 1: the order is PKI first (all certificates of the name revoked, a new CRL), then the
bundle file, then the servers; each step is a no-op when already done, so running the
command again after a failure repairs it (it pushes the CRL again).
Rule 2: `clients/NAME.bundle` is renamed `clients/NAME.bundle.revoked` (kept as a record,
never handed out by mistake); the name can be issued again later with a new serial.
Rule 3: every server of the inventory gets the CRL in parallel: written beside its place
and renamed over `/etc/vpn-runtime/crl.pem` (mode 0644; the daemon never reads half a
file), then `systemctl reload vpn-runtime`: the daemon re-reads the CRL on SIGHUP and ends
the revoked client's live session at once. An unreachable or failing server is reported
and the others still get the CRL; `check_pushed` turns any miss into a non-zero exit.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from provision.clients.fanout import Outcome, on_each
from provision.clients.layout import Layout, layout_for
from provision.clients.servers import server_hosts
from provision.connection import Remote
from provision.errors import HostFailed
from provision.inventory import load_inventory
from provision.pki import crl, load_ca, revoke
from provision.pki.ca import utcnow
from provision.pki.issue import check_client_name
from provision.runner import Connector

CRL_DIR = "/etc/vpn-runtime"
CRL_PATH = f"{CRL_DIR}/crl.pem"
CRL_TEMP = CRL_PATH + ".new"
RELOAD = "systemctl reload vpn-runtime"
PushResult = Outcome[str]


class CrlNotPushed(HostFailed):
    """Some servers did not get the new CRL (the others did)."""


def revoke_client(
    inventory_path: str | Path, name: str, connect: Connector, *,
    out_dir: str | Path | None = None, passphrase: str | None = None, now: datetime | None = None,
) -> list[PushResult]:
    """Revoke every certificate of `name`, retire its bundle, push the CRL to every server."""
    check_client_name(name)
    layout = layout_for(inventory_path, out_dir)
    hosts = server_hosts(load_inventory(layout.inventory))
    crl_pem = revoke(load_ca(layout.pki, passphrase), name, now=now or utcnow())
    retire_bundle(layout, name)
    return on_each(hosts, connect, lambda remote: install_crl(remote, crl_pem))


def push_crl(
    inventory_path: str | Path, connect: Connector, *,
    passphrase: str | None = None, now: datetime | None = None,
) -> list[PushResult]:
    """Push the current CRL (renewed first if due) to every server: after `add-client --force`."""
    layout = layout_for(inventory_path)
    hosts = server_hosts(load_inventory(layout.inventory))
    crl_pem = crl(load_ca(layout.pki, passphrase), now or utcnow())
    return on_each(hosts, connect, lambda remote: install_crl(remote, crl_pem))


def retire_bundle(layout: Layout, name: str) -> Path | None:
    """Rename the bundle to `.revoked`; None when there is none (already retired)."""
    bundle = layout.bundle(name)
    if not bundle.exists():
        return None
    os.replace(bundle, layout.revoked(name))
    return layout.revoked(name)


NOT_DEPLOYED = "not deployed yet: skipped (its first deploy installs the current CRL)"


def install_crl(remote: Remote, crl_pem: str) -> str:
    """Install the CRL and reload the daemon; a server never deployed is skipped (it has
    no daemon to protect, and deploy brings the CRL as of that day)."""
    if remote.run(f"test -d {CRL_DIR}", check=False).rc != 0:
        return NOT_DEPLOYED
    remote.put(crl_pem.encode(), CRL_TEMP, 0o644)
    remote.run(f"mv -f {CRL_TEMP} {CRL_PATH}")
    remote.run(RELOAD)
    return "CRL installed, daemon reloaded"


def render_pushes(results: list[PushResult]) -> list[str]:
    """One line per server: `vps1: CRL installed, daemon reloaded` or what went wrong."""
    width = max((len(r.host) for r in results), default=0)
    return [f"{r.host.ljust(width)} : {_pushed(r)}" for r in results]


def _pushed(result: PushResult) -> str:
    if result.ok:
        return result.value or "CRL installed, daemon reloaded"
    return f"{result.state}: {result.error}"


def check_pushed(results: list[PushResult], command: str) -> None:
    """Raise `CrlNotPushed` (exit 6) when a server did not get the CRL."""
    missed = [r.host for r in results if not r.ok]
    if missed:
        raise CrlNotPushed(
            f"{command}: the CRL did not reach {', '.join(missed)} (the other servers have it)",
            "run the same command again once they are reachable; it pushes again",
        )
