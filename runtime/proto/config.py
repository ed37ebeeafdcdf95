"""Configuration of the protocol core: frozen dataclasses, validated once when built.

Rule 1: the caller (daemon, client) parses its files into these at the edge; the core only
        reads them. A bad value raises ConfigError here, never later inside the core.
Rule 2: limits are parameters (tests set them tiny); defaults follow WireGuard for time
        (rekey every 120 s) and OpenVPN 2.7's AEAD usage limits for volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import Protocol

from runtime.errors import ConfigError
from runtime.proto.keys import CIPHERS

TRANSPORTS = ("udp", "tcp")


def _require(ok: bool, what: str, hint: str) -> None:
    if not ok:
        raise ConfigError(what, hint)


@dataclass(frozen=True)
class Limits:
    """When keys rotate (soft limits) and when an old key must stop sealing (hard limit)."""

    rekey_seconds: float = 120.0
    rekey_packets: int = 2**28
    reject_packets: int = 2**31
    old_key_grace: float = 30.0

    def __post_init__(self) -> None:
        _require(self.rekey_seconds > 0, "limits.rekey_seconds: must be > 0", "use e.g. 120")
        _require(
            0 < self.rekey_packets < self.reject_packets < 2**63,
            "limits: need 0 < rekey_packets < reject_packets < 2**63",
            "lower rekey_packets",
        )
        _require(self.old_key_grace >= 0, "limits.old_key_grace: must be >= 0", "use e.g. 30")


@dataclass(frozen=True)
class TunnelAssignment:
    """What the server gives one client: its addresses, the server's, routes and resolvers."""

    address4: IPv4Interface
    server_address4: IPv4Address
    address6: IPv6Interface | None = None
    server_address6: IPv6Address | None = None
    routes: tuple[IPv4Network | IPv6Network, ...] = ()
    dns: tuple[IPv4Address | IPv6Address, ...] = ()

    def packed_addresses(self) -> tuple[bytes, ...]:
        """The client's tunnel addresses as packed bytes (the keys the data path uses)."""
        six = (self.address6.ip.packed,) if self.address6 is not None else ()
        return (self.address4.ip.packed, *six)


class AddressPolicy(Protocol):
    """The daemon's pool: picks a client's assignment by certificate name."""

    def assign(self, name: str) -> TunnelAssignment | None:
        """The assignment for `name`, or None to refuse the client ("no-address")."""

    def release(self, name: str) -> None:
        """`name`'s session ended; its address may go back to the pool."""


def _check_common(ciphers: tuple[str, ...], limits: Limits, timeout: float) -> None:
    _require(
        bool(ciphers) and all(c in CIPHERS for c in ciphers),
        f"ciphers: expected a non-empty subset of {list(CIPHERS)}, got {list(ciphers)}",
        "use aes-256-gcm and/or chacha20-poly1305",
    )
    _require(timeout > 0, "handshake_timeout: must be > 0", "use e.g. 10")
    _require(isinstance(limits, Limits), "limits: expected Limits", "pass a Limits")


@dataclass(frozen=True)
class ServerConfig:
    """The server daemon's protocol settings (pushed to clients in the welcome)."""

    data_port: int = 51820
    mtu: int = 1420
    keepalive: int = 10
    dead_peer: int = 120
    limits: Limits = Limits()
    ciphers: tuple[str, ...] = CIPHERS
    client_to_client: bool = False
    handshake_timeout: float = 10.0

    def __post_init__(self) -> None:
        _check_common(self.ciphers, self.limits, self.handshake_timeout)
        _require(1 <= self.data_port <= 65535, f"data_port: expected 1-65535, got {self.data_port}", "use e.g. 51820")
        _require(576 <= self.mtu <= 65535, f"mtu: expected 576-65535, got {self.mtu}", "use e.g. 1420")
        _require(
            0 < self.keepalive < self.dead_peer,
            f"keepalive/dead_peer: need 0 < keepalive < dead_peer, got {self.keepalive}/{self.dead_peer}",
            "use e.g. 10 and 120",
        )

    @property
    def server_dead_after(self) -> float:
        """The server waits twice the client's dead-peer time (OpenVPN's keepalive 10 120)."""
        return 2.0 * self.dead_peer


@dataclass(frozen=True)
class ClientConfig:
    """The client's protocol settings, from its bundle."""

    server_name: str
    server_pin: str
    transport: str = "udp"
    ciphers: tuple[str, ...] = CIPHERS
    limits: Limits = Limits()
    handshake_timeout: float = 10.0

    def __post_init__(self) -> None:
        _check_common(self.ciphers, self.limits, self.handshake_timeout)
        _require(bool(self.server_name), "server_name: must not be empty", "set the server's DNS name")
        _require(
            len(self.server_pin) == 64 and all(c in "0123456789abcdef" for c in self.server_pin),
            "server_pin: expected 64 lowercase hex digits (SHA-256 of the server's public key)",
            "copy the pin from the bundle",
        )
        _require(self.transport in TRANSPORTS, f"transport: expected udp or tcp, got {self.transport!r}", "use udp")
