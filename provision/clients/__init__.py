"""Client bundles on the operator's side: add, revoke, list; and the servers' status.

    add_client(inventory, name, csr_path=None, expires_days=None, force=False) -> Path
    revoke_client(inventory, name, connect) -> list[PushResult]   (+ render_pushes, check_pushed)
    push_crl(inventory, connect) -> list[PushResult]              (after add_client(force=True))
    list_clients(inventory) -> list[dict]                         (+ render_clients)
    server_status(inventory, pattern, connect) -> list[dict]      (+ render_status)

Files: the PKI is `inventory/pki/` beside the inventory; bundles are `clients/NAME.bundle`
beside `inventory/` (see `layout`). Servers are the hosts of group `vpn_servers` (see
`servers`).

Rule 1: every refusal is a `ProvisionError` with a hint, raised before anything changes.
Rule 2: the functions print nothing; each returns data, and a `render_*` turns it into
lines (a table, or JSON), so `tasks.py` prints and a test asserts the same thing.
Rule 3: hosts are reached only through the `connect` given (a `Remote` per host), in
parallel; one host failing never stops the others.
"""

from __future__ import annotations

from provision.clients.handout import ClientExists, add_client
from provision.clients.listing import list_clients, render_clients
from provision.clients.revoke import (
    CrlNotPushed,
    PushResult,
    check_pushed,
    push_crl,
    render_pushes,
    revoke_client,
)
from provision.clients.servers import SERVER_GROUP, NotDeployed, server_name
from provision.clients.status import render_status, server_status

__all__ = [
    "SERVER_GROUP", "ClientExists", "CrlNotPushed", "NotDeployed", "PushResult",
    "add_client", "check_pushed", "list_clients", "push_crl", "render_clients",
    "render_pushes", "render_status", "revoke_client", "server_name", "server_status",
]
