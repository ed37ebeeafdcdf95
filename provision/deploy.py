"""`deploy` and `teardown`: the server playbook on inventory hosts, and its exact undo.

Rule 1: the hosts are those the pattern names (a host, a group, `all`) that are VPN
servers: members of the group `vpn_servers` when the inventory has one (the group that
bundles name), else every host matched.  They run in parallel (`provision.runner`).
Rule 2: vars are the inventory's `vpn_*` settings over `DEFAULTS`, normalised once here
(a single DNS address becomes a list, the server name defaults to `<host>.vpn`), so the
playbook stays free of logic.
Rule 3: the CA lives beside the inventory (`<inventory dir>/pki/`) and is created by the
first deploy.  `--check` creates nothing: without a CA it plans against a throwaway one
and says so.  Nothing but the CA's certificate and CRL ever goes to a host.
Rule 4: both return the `Recap`; a failed or unreachable host raises `PlayFailed`
(exit code 6) after the recap is printed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

from provision import pki
from provision.connection import connect
from provision.errors import UsageError
from provision.inventory import Host, Inventory, as_bool, as_port, load_inventory
from provision.operation import Context, Registry
from provision.playbook import Playbook, load_playbook
from provision.recap import Console, Recap
from provision.runner import RunOptions, run_playbook, run_teardown

ROOT = Path(__file__).resolve().parent.parent
SERVER_PLAYBOOK = ROOT / "playbooks" / "server.yml"
SERVER_GROUP = "vpn_servers"
PASSPHRASE_ENV = "SELFVPN_CA_PASSPHRASE"
DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "vpn_port": 51820, "vpn_tcp_port": 8443, "vpn_network": "10.8.0.0/24", "vpn_network6": None,
    "vpn_dns": (), "vpn_client_to_client": False, "vpn_public_interface": None, "vpn_upstream_dns": (),
    "vpn_dns_unblock": (),
})


def deploy(
    inventory_path: str | Path, pattern: str, check: bool = False, diff: bool = False,
    verbose: bool = False, console: Console | None = None, *,
    playbook: str | Path = SERVER_PLAYBOOK, registry: Registry | None = None, forks: int = 5,
) -> Recap:
    """Run the server playbook on the servers `pattern` names; print lines and the recap."""
    console = console or Console(verbose=verbose, diff=diff)
    inventory = load_inventory(inventory_path)
    hosts = tuple(with_server_vars(h) for h in select_servers(inventory, pattern))
    book = load_playbook(playbook, registry)
    with operator_ca(Path(inventory_path).parent / "pki", check, console) as ca:
        options = RunOptions(check=check, forks=forks, ctx=Context(ca=ca))
        return run_playbook(book, hosts, connect, console, options)


def teardown(
    inventory_path: str | Path, pattern: str, check: bool = False, verbose: bool = False,
    console: Console | None = None, *, forks: int = 5,
) -> Recap:
    """Undo, newest first, every change deploy journaled on the servers `pattern` names."""
    console = console or Console(verbose=verbose)
    hosts = select_servers(load_inventory(inventory_path), pattern)
    return run_teardown(hosts, connect, console, RunOptions(check=check, forks=forks))


def select_servers(inventory: Inventory, pattern: str) -> tuple[Host, ...]:
    matched = inventory.resolve(pattern)
    servers = inventory.groups.get(SERVER_GROUP)
    chosen = matched if servers is None else tuple(h for h in matched if h.name in servers)
    if not chosen:
        raise UsageError(f"{inventory.source}: {pattern!r} names no host of group {SERVER_GROUP}",
                         f"servers: {', '.join(servers or ()) or '(none)'}; add the host to {SERVER_GROUP}")
    return chosen


def server_vars(host: Host) -> dict[str, Any]:
    """The host's vars over DEFAULTS, in the shapes the playbook's operations take."""
    merged = {**DEFAULTS, **host.vars}
    merged["vpn_server_name"] = str(host.vars.get("vpn_server_name") or f"{host.name}.vpn")
    merged["vpn_server_sans"] = (host.address,) if _is_ip(host.address) else ()
    merged["vpn_port"] = as_port(merged["vpn_port"])
    merged["vpn_tcp_port"] = as_port(merged["vpn_tcp_port"])
    merged["vpn_client_to_client"] = bool(as_bool(merged["vpn_client_to_client"]))
    for key in ("vpn_dns", "vpn_upstream_dns", "vpn_dns_unblock"):
        merged[key] = _listing(merged[key])
    for key in ("vpn_network", "vpn_network6", "vpn_public_interface"):
        merged[key] = None if merged[key] in (None, "") else str(merged[key])
    return merged


def with_server_vars(host: Host) -> Host:
    return dataclasses.replace(host, vars=MappingProxyType(server_vars(host)))


def _listing(value: Any) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else (str(value),)


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


@contextmanager
def operator_ca(directory: Path, check: bool, console: Console) -> Iterator[pki.Ca]:
    """The CA (created when missing); under `--check` a throwaway one when there is none."""
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    if (directory / "ca.crt").exists():  # load only: `init_ca` could renew the CRL
        yield pki.load_ca(directory, passphrase) if check else pki.init_ca(directory, passphrase)
        return
    if not check:
        yield pki.init_ca(directory, passphrase)
        return
    console.lines([f"note: no CA at {directory} yet; deploy will create it (planning with a throwaway one)"])
    with tempfile.TemporaryDirectory(prefix="selfvpn-check-ca.") as scratch:
        yield pki.init_ca(Path(scratch) / "pki")
