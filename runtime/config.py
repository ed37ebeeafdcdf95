"""The server daemon's config: one YAML file, parsed once into a frozen `DaemonConfig`.

    name: vps1.example.net          # required: the TLS server name (the cert's CN/SAN)
    network: 10.8.0.0/24            # required: tunnel IPv4 network; the server takes .1
    network6: fd42:8::/64           # optional tunnel IPv6 network; the server takes ::1
    pool: 10.8.0.128/25             # optional: client addresses, inside network (default: all)
    listen: 0.0.0.0                 # address the sockets bind to
    control_port: 8443              # TCP: TLS control channel (and data where UDP is blocked)
    data_port: 51820                # UDP: data channel
    tcp_transport: true             # accept data inside the TLS connection
    dns: [10.8.0.1]                 # pushed to clients (default: the server's tunnel address)
    routes: []                      # pushed to clients on split tunnel
    client_to_client: false
    ciphers: [aes-256-gcm, chacha20-poly1305]   # in order of preference
    keepalive: 10                   # seconds between keepalives when idle
    dead_peer: 60                   # a client gives up on a silent server after this
    rekey_seconds: 120              # data keys rotate this often ...
    rekey_packets: 268435456        # ... or after this many packets (2**28), whichever first
    interface: selfvpn0
    mtu: 1420
    paths: {ca, cert, key, crl, control_socket, leases}    # absolute; defaults below

Defaults and why: keepalive/dead_peer follow OpenVPN's `keepalive 10 60` (the server waits
twice as long before dropping a client); rekey_seconds is WireGuard's REKEY_AFTER_TIME
(120 s bounds what one stolen key reveals, for one X25519 exchange per client per two
minutes); rekey_packets is OpenVPN 2.7's AEAD usage limit for a key (2**28 packets),
well inside the bounds for AES-GCM; mtu 1420 is WireGuard's, leaving room for our
headers over a 1500-byte path.

Rule 1: every key is checked; an unknown key is an error (a typo must not be ignored).
Rule 2: errors read `server.yml: data_port: expected 1-65535, got 'auto'` plus a hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Any, TypeVar

from runtime.pool import AddressPool, LeaseBook, LeasePolicy
from runtime.proto.config import Limits, ServerConfig
from runtime.proto.keys import CIPHERS
from runtime.validate import (
    IpAddress,
    IpNetwork,
    Where,
    address,
    boolean,
    choice,
    fields,
    hostname,
    integer,
    listing,
    network,
    path_text,
    port,
    read_yaml,
    text,
)

INTERFACE = re.compile(r"(?!\.\.?$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
T = TypeVar("T")


@dataclass(frozen=True)
class Paths:
    ca: Path = Path("/etc/vpn-runtime/ca.crt")
    cert: Path = Path("/etc/vpn-runtime/server.crt")
    key: Path = Path("/etc/vpn-runtime/server.key")
    crl: Path = Path("/etc/vpn-runtime/crl.pem")
    control_socket: Path = Path("/run/vpn-runtime/control.sock")
    leases: Path = Path("/var/lib/vpn-runtime/leases.json")


@dataclass(frozen=True)
class DaemonConfig:
    name: str
    network: IPv4Network
    network6: IPv6Network | None = None
    pool: IPv4Network | None = None
    listen: IpAddress = IPv4Address("0.0.0.0")
    control_port: int = 8443
    data_port: int = 51820
    tcp_transport: bool = True
    dns: tuple[IpAddress, ...] = ()
    routes: tuple[IpNetwork, ...] = ()
    client_to_client: bool = False
    ciphers: tuple[str, ...] = CIPHERS
    keepalive: int = 10
    dead_peer: int = 60
    rekey_seconds: int = 120
    rekey_packets: int = 2**28
    interface: str = "selfvpn0"
    mtu: int = 1420
    paths: Paths = Paths()

    @property
    def server_address(self) -> IPv4Interface:
        return IPv4Interface(f"{self.network[1]}/{self.network.prefixlen}")

    @property
    def server_address6(self) -> IPv6Interface | None:
        if self.network6 is None:
            return None
        return IPv6Interface(f"{self.network6[1]}/{self.network6.prefixlen}")

    def address_pool(self, leases: dict[str, IPv4Address] | None = None) -> AddressPool:
        return AddressPool(self.network, self.pool, self.network6, leases)

    def address_policy(self, leases: dict[str, IPv4Address] | None = None) -> LeasePolicy:
        """What the server core asks for addresses, saving leases to `paths.leases`."""
        book = LeaseBook(self.address_pool(leases), self.paths.leases)
        return LeasePolicy(book, self.routes, self.dns)

    def protocol(self) -> ServerConfig:
        """The protocol core's settings taken from this file."""
        return ServerConfig(
            data_port=self.data_port, mtu=self.mtu, keepalive=self.keepalive,
            dead_peer=self.dead_peer, ciphers=self.ciphers, client_to_client=self.client_to_client,
            limits=Limits(float(self.rekey_seconds), self.rekey_packets),
        )


_REQUIRED = ("name", "network")
_OPTIONAL = tuple(k for k in DaemonConfig.__dataclass_fields__ if k not in _REQUIRED)
_PATH_KEYS = tuple(Paths.__dataclass_fields__)
_DEFAULTS = DaemonConfig(name="defaults", network=IPv4Network("10.8.0.0/24"))  # for `.get`


def load_config(path: Path) -> DaemonConfig:
    """Read and validate the daemon's config file."""
    return parse_config(read_yaml(path, "server config"), Where(path.name))


def parse_config(raw: Any, where: Where) -> DaemonConfig:
    if isinstance(raw, dict) and raw.get("kind") == "selfvpn-bundle":
        raise where.fail("this is a client bundle, not a server config", "use: vpn-runtime up FILE")
    f = fields(where, raw, _REQUIRED, _OPTIONAL)
    get, net = Reader(where, f), tunnel_network(where.key("network"), f["network"])
    return DaemonConfig(
        name=get("name", hostname), network=net,
        network6=get("network6", network6_of, net), pool=get("pool", pool_of, net),
        listen=get("listen", address), tcp_transport=get("tcp_transport", boolean),
        control_port=get("control_port", port), data_port=get("data_port", port),
        dns=get("dns", listing, address) if "dns" in f else (net[1],),
        routes=get("routes", listing, network), client_to_client=get("client_to_client", boolean),
        ciphers=get("ciphers", ciphers_of), **timers(get),
        interface=get("interface", text, INTERFACE, "an interface name (15 of A-Z a-z 0-9 _ . -)"),
        mtu=get("mtu", integer, 1280 if "network6" in f else 576, 9000),
        paths=paths_of(where.key("paths"), f.get("paths", {})),
    )


@dataclass(frozen=True)
class Reader:
    """Reads one key of a checked mapping through its checker, or the default's raw form."""

    where: Where
    found: Mapping[str, Any]

    def __call__(self, key: str, check: Callable[..., T], *args: Any) -> T:
        return check(self.where.key(key), self.found.get(key, raw_default(key)), *args)


def raw_default(key: str) -> Any:
    """A default as it would be written in the file (addresses as text, tuples as lists)."""
    value = getattr(_DEFAULTS, key)
    if isinstance(value, tuple):
        return [str(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, str)) else str(value)


def tunnel_network(where: Where, value: Any) -> IPv4Network:
    net = network(where, value, 4)
    if net.prefixlen > 30:
        raise where.expected("a network of /30 or wider (the server and a client)", value)
    return net  # type: ignore[no-any-return]


def network6_of(where: Where, value: Any, net: IPv4Network) -> IPv6Network | None:
    if value is None:
        return None
    net6 = network(where, value, 6)
    widest = 128 - (32 - net.prefixlen)
    if net6.prefixlen > widest:
        raise where.expected(f"an IPv6 network of /{widest} or wider (as many as {net})", value)
    return net6  # type: ignore[no-any-return]


def pool_of(where: Where, value: Any, net: IPv4Network) -> IPv4Network | None:
    if value is None:
        return None
    pool = network(where, value, 4)
    if not pool.subnet_of(net):
        raise where.expected(f"a network inside {net}", value)
    if AddressPool(net, pool).size == 0:
        raise where.expected("a pool with room for a client besides the server", value)
    return pool  # type: ignore[no-any-return]


def timers(get: Reader) -> dict[str, Any]:
    keepalive, dead_peer = get("keepalive", integer, 1, 3600), get("dead_peer", integer, 1, 86400)
    if dead_peer < 2 * keepalive:
        twice = f"at least twice keepalive ({2 * keepalive})"
        raise get.where.key("dead_peer").expected(twice, dead_peer)
    return {
        "keepalive": keepalive, "dead_peer": dead_peer,
        "rekey_seconds": get("rekey_seconds", integer, 10, 86400),
        "rekey_packets": get("rekey_packets", integer, 1, 2**31 - 1),
    }


def ciphers_of(where: Where, value: Any) -> tuple[str, ...]:
    found = listing(where, value, lambda w, v: choice(w, v, CIPHERS))
    if not found or len(set(found)) != len(found):
        raise where.expected("a non-empty list of distinct ciphers", value)
    return found


def paths_of(where: Where, value: Any) -> Paths:
    f, d = fields(where, value, (), _PATH_KEYS), Paths()
    return Paths(**{k: absolute(where.key(k), f.get(k, str(getattr(d, k)))) for k in _PATH_KEYS})


def absolute(where: Where, value: Any) -> Path:
    found = path_text(where, value)
    if not found.is_absolute():
        raise where.expected("an absolute path", value)
    return found
