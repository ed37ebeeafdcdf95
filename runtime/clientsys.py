"""The client's changes to the laptop: kill switch, TUN addresses and routes, resolver.

Rule 1: every change goes through the undo journal (written before the change), so
`down`, a failed `up`, or an `up` after a crash returns the laptop exactly as it was.
Rule 2: the kill switch goes on before the first packet to a server (the connecting
ruleset allows only our marked traffic to the servers' ports) and is replaced atomically
once the tunnel's addresses and resolver are known; it stays through reconnects.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from runtime import dns, killswitch, netconf, rtnl
from runtime.bundle import Bundle, ServerEndpoint
from runtime.errors import ConnectFailed
from runtime.proto.config import TunnelAssignment
from runtime.undo import Journal

IFNAME = "selfvpn"
FWMARK = netconf.FullTunnel().fwmark


@dataclass(frozen=True)
class Settings:
    """The bundle's tunnel settings after the command line's overrides."""

    full_tunnel: bool
    routes: tuple[str, ...]
    kill_switch: bool
    allow_lan: bool
    dns: bool
    transport: str


def settings_of(bundle: Bundle, routes: list[str], no_kill_switch: bool, allow_lan: bool,
                transport: str | None) -> Settings:
    t = bundle.tunnel
    split = tuple(routes) or tuple(str(r) for r in t.routes)
    return Settings(full_tunnel=not routes and t.full_tunnel, routes=split,
                    kill_switch=t.kill_switch and not no_kill_switch,
                    allow_lan=t.allow_lan or allow_lan, dns=t.dns, transport=transport or t.transport)


@dataclass(frozen=True)
class Target:
    """One server endpoint with its address resolved (the kill switch needs addresses)."""

    endpoint: ServerEndpoint
    ip: str


def resolve(servers: tuple[ServerEndpoint, ...]) -> list[Target]:
    targets = []
    for s in servers:
        try:
            infos = socket.getaddrinfo(s.host, s.port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ConnectFailed(f"server {s.name}: cannot resolve {s.host} ({e.strerror})",
                                "check the bundle's servers[].host and your resolver") from None
        ips = sorted({i[4][0] for i in infos}, key=lambda ip: ":" in ip)
        targets.append(Target(s, ips[0]))
    return targets


def kill_switch(settings: Settings, targets: list[Target], assignment: TunnelAssignment | None,
                ) -> killswitch.KillSwitch:
    ends = tuple(e for t in targets for e in (killswitch.Endpoint(t.ip, "tcp", t.endpoint.port),
                                              killswitch.Endpoint(t.ip, "udp", t.endpoint.data_port)))
    addrs: tuple[str, ...] = ()
    dns_servers: tuple[str, ...] = ()
    six = False
    if assignment is not None:
        addrs = tuple(str(a.ip) for a in (assignment.address4, assignment.address6) if a is not None)
        dns_servers = tuple(str(d) for d in assignment.dns) if settings.dns else ()
        six = assignment.address6 is not None
    return killswitch.KillSwitch(IFNAME, ends, FWMARK, addrs, dns_servers, settings.allow_lan, six)


def engage_kill_switch(journal: Journal, ks: killswitch.KillSwitch) -> None:
    killswitch.engage(journal, ks)


def configure_tunnel(journal: Journal, settings: Settings, a: TunnelAssignment, mtu: int) -> None:
    """Addresses, MTU and routes on the TUN; then the resolver."""
    addrs = tuple(str(x) for x in (a.address4, a.address6) if x is not None)
    if settings.full_tunnel:
        routing: netconf.FullTunnel | netconf.SplitTunnel = netconf.FullTunnel(ipv6=a.address6 is not None)
    else:
        pushed = tuple(str(r) for r in a.routes)
        routing = netconf.SplitTunnel(beyond_tunnel(settings.routes or pushed, a))
    with rtnl.IPRoute() as ipr:
        netconf.configure(ipr, journal, netconf.TunnelNet(IFNAME, addrs, mtu=mtu, routing=routing))
    if settings.dns and a.dns:
        dns.point_resolver(journal, IFNAME, [str(d) for d in a.dns])


def beyond_tunnel(cidrs: tuple[str, ...], a: TunnelAssignment) -> tuple[str, ...]:
    """The split-tunnel routes the tunnel's own addresses do not already cover (the
    kernel routes a TUN address's network by itself)."""
    own = [x.network for x in (a.address4, a.address6) if x is not None]
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    return tuple(str(n) for n in nets
                 if not any(n.version == o.version and n.subnet_of(o) for o in own))  # type: ignore[arg-type]


def same_network(a: TunnelAssignment | None, b: TunnelAssignment) -> bool:
    """A reconnect that got the same addresses keeps the TUN set up as it is."""
    return a is not None and (a.address4, a.address6, a.routes, a.dns) == (b.address4, b.address6, b.routes, b.dns)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
