"""The servers a bundle names, and the tunnel settings it carries, from the inventory.

Rule 1: a VPN server is a host of the inventory group `vpn_servers` (children included),
the group deploy sets up; other hosts (a spare, the lab's laptops) never enter a bundle.
Rule 2: a server's TLS name is its host var `vpn_server_name`, else `<host>.vpn`. Deploy
signs the server's certificate for that name, so its pin is the pin of the newest live
server certificate of that name in the roster; no such certificate means "deploy first".
Rule 3: ports are `vpn_tcp_port` (control, default 8443) and `vpn_port` (data, 51820).
Rule 4: tunnel settings are the servers' vars (`vpn_cipher`, `vpn_transport`,
`vpn_full_tunnel`, `vpn_routes`, `vpn_kill_switch`, `vpn_allow_lan`, `vpn_client_dns`),
with the bundle's defaults; one bundle holds one set, so servers that disagree are an
inventory error (set them on the group).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from provision.errors import InventoryError, PkiError
from provision.inventory import Host, Inventory, as_bool, as_port
from provision.pki import IssuedCert, Roster
from runtime.bundle import ServerEndpoint, TunnelSettings
from runtime.errors import ConfigError
from runtime.proto.config import TRANSPORTS
from runtime.proto.keys import CIPHERS
from runtime.validate import Where, boolean, choice, host as host_address, hostname, listing, network

SERVER_GROUP = "vpn_servers"
SERVER_NAME_SUFFIX = ".vpn"
DEFAULT_TCP_PORT = 8443
DEFAULT_DATA_PORT = 51820


class NotDeployed(PkiError):
    """A server of the inventory has no live certificate: there is no pin to hand out."""


def server_hosts(inventory: Inventory) -> tuple[Host, ...]:
    """The inventory's VPN servers, in file order."""
    names = inventory.groups.get(SERVER_GROUP, ())
    if not names:
        raise InventoryError(
            f"{inventory.source}: no hosts in group {SERVER_GROUP!r}",
            f"list your VPN servers under all.children.{SERVER_GROUP}.hosts",
        )
    return tuple(inventory.hosts[n] for n in names)


def server_name(host: Host, source: str = "inventory") -> str:
    """The TLS name of `host`'s server certificate."""
    value = host.vars.get("vpn_server_name", f"{host.name}{SERVER_NAME_SUFFIX}")
    return str(_checked(source, host, "vpn_server_name", value, hostname))


def server_cert(roster: Roster, name: str, now: datetime) -> IssuedCert | None:
    """The newest live server certificate for the TLS name `name`, if any."""
    live = roster.live(name, "server", now)
    return max(live, key=lambda c: c.not_before) if live else None


def endpoint(host: Host, roster: Roster, now: datetime, source: str) -> ServerEndpoint:
    name = server_name(host, source)
    cert = server_cert(roster, name, now)
    if cert is None:
        raise NotDeployed(_why_no_cert(host, name, roster), f"deploy it first: invoke deploy --host {host.name}")
    return ServerEndpoint(
        name=name,
        host=_checked(source, host, "ansible_host", host.address, host_address),
        port=as_port(host.vars.get("vpn_tcp_port", DEFAULT_TCP_PORT)) or DEFAULT_TCP_PORT,
        data_port=as_port(host.vars.get("vpn_port", DEFAULT_DATA_PORT)) or DEFAULT_DATA_PORT,
        pin=cert.pin,
    )


def _why_no_cert(host: Host, name: str, roster: Roster) -> str:
    if roster.named(name, "server"):
        return f"server {host.name} ({name}): its certificate has expired or was revoked"
    return f"server {host.name} ({name}) was never deployed (no certificate in the PKI)"


def endpoints(hosts: Sequence[Host], roster: Roster, now: datetime, source: str) -> tuple[ServerEndpoint, ...]:
    return tuple(endpoint(h, roster, now, source) for h in hosts)


# ---- tunnel settings ----------------------------------------------------------------------

_Check = Callable[[Where, Any], Any]


def _bool(where: Where, value: Any) -> bool:
    """A boolean as Ansible reads one (`yes`, `off`...)."""
    parsed = as_bool(value)
    return boolean(where, value if parsed is None else parsed)


def _routes(where: Where, value: Any) -> Any:
    return listing(where, list(value) if isinstance(value, tuple) else value, network)


TUNNEL_VARS: Mapping[str, tuple[str, _Check]] = {
    "vpn_cipher": ("cipher", lambda w, v: choice(w, v, CIPHERS)),
    "vpn_transport": ("transport", lambda w, v: choice(w, v, TRANSPORTS)),
    "vpn_full_tunnel": ("full_tunnel", _bool),
    "vpn_routes": ("routes", _routes),
    "vpn_kill_switch": ("kill_switch", _bool),
    "vpn_allow_lan": ("allow_lan", _bool),
    "vpn_client_dns": ("dns", _bool),
}


def host_tunnel(host: Host, source: str) -> TunnelSettings:
    """The tunnel settings `host`'s vars ask for (defaults for what they leave out)."""
    chosen = {
        key: _checked(source, host, var, host.vars[var], check)
        for var, (key, check) in TUNNEL_VARS.items() if var in host.vars
    }
    settings = TunnelSettings(**chosen)
    if not settings.full_tunnel and not settings.routes:
        raise InventoryError(
            f"{source}: {host.name}: vpn_full_tunnel is false but vpn_routes is empty",
            "list the networks to route through the tunnel in vpn_routes",
        )
    return settings


def tunnel_settings(hosts: Sequence[Host], source: str) -> TunnelSettings:
    """The one set of tunnel settings the servers agree on."""
    found = {h.name: host_tunnel(h, source) for h in hosts}
    first = next(iter(found.values()), TunnelSettings())
    differ = [name for name, settings in found.items() if settings != first]
    if differ:
        raise InventoryError(
            f"{source}: servers {hosts[0].name} and {differ[0]} ask for different tunnel settings",
            f"set the vpn_* tunnel vars on the {SERVER_GROUP} group, not per host",
        )
    return first


def _checked(source: str, host: Host, var: str, value: Any, check: _Check) -> Any:
    """Run a runtime checker on a host var; its complaint becomes an `InventoryError`."""
    try:
        return check(Where(source, f"{host.name}.{var}"), value)
    except ConfigError as exc:
        raise InventoryError(exc.message) from None
