"""Tunnel addresses for clients, stable per client name, and the file that keeps them.

How an address is chosen: each name has a preferred slot, sha256(name) mod the pool size,
and takes the first free address from there on (wrapping). That alone is not stable: in
a /24 with 20 clients two names share a preferred slot more often than not, and who
probes further depends on who came first. So leases are also kept in a small JSON file
(`paths.leases`, written atomically), and a lease lasts until `release` (on revocation),
not until the session ends. If the file is lost, most clients still get their old
address back, from their preferred slot.

    {"version": 1, "leases": {"alice": "10.8.0.23", "bob": "10.8.0.181"}}

Rule 1: `AddressPool` is pure (no I/O, no clock); `LeaseBook` is the thin shell that
saves the file after each change.
Rule 2: the server takes the network's first host (.1); the network and broadcast
addresses are never given out. A client's IPv6 address, when the tunnel has IPv6, sits
at the same offset in the IPv6 network as its IPv4 address in the IPv4 one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path

from runtime.errors import VpnError
from runtime.proto.config import TunnelAssignment
from runtime.validate import MAX_FILE_BYTES, IpAddress, IpNetwork, Where, write_atomic



class PoolExhausted(VpnError):
    """Every address of the pool is leased."""

    default_hint = "widen `network` (or `pool`) in the server config, or revoke gone clients"


@dataclass(frozen=True)
class Lease:
    name: str
    address4: IPv4Interface  # the client's address with the tunnel's prefix, e.g. 10.8.0.23/24
    address6: IPv6Interface | None = None


class AddressPool:
    """Leases of `pool` (inside `network`) to client names; pure, deterministic."""

    def __init__(
        self, network: IPv4Network, pool: IPv4Network | None = None,
        network6: IPv6Network | None = None, leases: Mapping[str, IPv4Address] | None = None,
    ) -> None:
        self.network, self.network6 = network, network6
        self.server4 = IPv4Interface(f"{network[1]}/{network.prefixlen}")
        self.server6 = IPv6Interface(f"{network6[1]}/{network6.prefixlen}") if network6 else None
        space = pool or network
        self._slots = range(int(space.network_address), int(space.broadcast_address) + 1)
        ends = (network.network_address, network.broadcast_address, network[1])
        self._taken = {int(a) for a in ends}
        self._by_name: dict[str, IPv4Address] = {}
        for name, address in (leases or {}).items():
            if self._usable(address) and address not in self._by_name.values():
                self._by_name[name] = address

    def allocate(self, name: str) -> Lease:
        """The lease of `name`: the same one every time until it is released."""
        if name not in self._by_name:
            self._by_name[name] = self._free_slot(name)
        return self._lease(name, self._by_name[name])

    def lease_of(self, name: str) -> Lease | None:
        address = self._by_name.get(name)
        return None if address is None else self._lease(name, address)

    def release(self, name: str) -> None:
        """Forget `name`'s lease (on revocation); its address may go to someone else."""
        self._by_name.pop(name, None)

    def leases(self) -> dict[str, IPv4Address]:
        return dict(self._by_name)

    @property
    def size(self) -> int:
        return len(self._slots) - sum(1 for t in self._taken if t in self._slots)

    def _usable(self, address: IPv4Address) -> bool:
        return int(address) in self._slots and int(address) not in self._taken

    def _free_slot(self, name: str) -> IPv4Address:
        used = {int(a) for a in self._by_name.values()} | self._taken
        start = preferred_slot(name, len(self._slots))
        for i in range(len(self._slots)):
            candidate = self._slots[(start + i) % len(self._slots)]
            if candidate not in used:
                return IPv4Address(candidate)
        raise PoolExhausted(f"address pool {self.network}: all {self.size} addresses are leased")

    def _lease(self, name: str, address: IPv4Address) -> Lease:
        six = None
        if self.network6 is not None:
            offset = int(address) - int(self.network.network_address)
            six = IPv6Interface(f"{self.network6[offset]}/{self.network6.prefixlen}")
        return Lease(name, IPv4Interface(f"{address}/{self.network.prefixlen}"), six)


def preferred_slot(name: str, size: int) -> int:
    """Where `name` starts looking: the same in every process and on every machine."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % size


class LeaseBook:
    """The pool plus its file: allocations and releases that change a lease are saved."""

    def __init__(self, pool: AddressPool, path: Path) -> None:
        self.pool, self.path = pool, path

    def allocate(self, name: str) -> Lease:
        known = self.pool.lease_of(name)
        lease = self.pool.allocate(name)
        if known is None:
            save_leases(self.path, self.pool.leases())
        return lease

    def release(self, name: str) -> None:
        if self.pool.lease_of(name) is not None:
            self.pool.release(name)
            save_leases(self.path, self.pool.leases())


class LeasePolicy:
    """The server core's `AddressPolicy` over a `LeaseBook`: stable addresses per name."""

    def __init__(self, book: LeaseBook, routes: Sequence[IpNetwork], dns: Sequence[IpAddress]) -> None:
        self.book, self.routes, self.dns = book, tuple(routes), tuple(dns)

    def assign(self, name: str) -> TunnelAssignment | None:
        """The assignment for `name`, or None (the client is refused) if the pool is full."""
        try:
            lease = self.book.allocate(name)
        except PoolExhausted:
            return None
        pool = self.book.pool
        six = pool.server6.ip if pool.server6 else None
        return TunnelAssignment(
            lease.address4, pool.server4.ip, lease.address6, six, self.routes, self.dns
        )

    def release(self, name: str) -> None:
        """A session ended: the lease stays, so the client comes back to the same address."""


def load_leases(path: Path) -> dict[str, IPv4Address]:
    """The saved leases; none if the file does not exist; a damaged file is a ConfigError."""
    where = Where(path.name)
    try:
        data = path.read_bytes()[:MAX_FILE_BYTES]
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise where.fail(f"cannot read leases: {exc.strerror}") from None
    try:
        return parse_leases(json.loads(data))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        raise where.fail(
            "leases file is damaged", "delete it: clients then get addresses anew"
        ) from None


def parse_leases(raw: object) -> dict[str, IPv4Address]:
    if not isinstance(raw, dict) or raw.get("version") != 1:
        raise ValueError("not a leases file")
    return {str(name): IPv4Address(address) for name, address in raw["leases"].items()}


def save_leases(path: Path, leases: Mapping[str, IPv4Address]) -> None:
    body = {"version": 1, "leases": {name: str(a) for name, a in sorted(leases.items())}}
    write_atomic(path, (json.dumps(body, indent=2) + "\n").encode(), 0o600)

