"""`resolver`: unbound as the DNS resolver of VPN clients, on the server's tunnel address.

Rule 1: unbound listens only on the tunnel addresses (with `ip-freebind`, since the TUN
device comes and goes with the daemon) and answers only the VPN networks.
Rule 2: it forwards to the host's own resolvers, read from /etc/resolv.conf (what the
host already trusts, including a local stub like systemd-resolved's 127.0.0.53), unless
`upstream` names others.  It does not validate DNSSEC itself: the upstream does, and a
forwarder that strips signatures would otherwise turn every answer into SERVFAIL.
Rule 3: the config is rendered by a pure function and written by the `file` op.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from provision.connection import Remote, Result
from provision.fact import Fact, gather
from provision.operation import Context, Operation, OperationFailed, Outcome
from provision.ops.file import FileOp, FileState, check_path, file_fact


def parse_nameservers(result: Result) -> tuple[str, ...]:
    """`nameserver` addresses of a resolv.conf (none if it is missing)."""
    found = []
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(str(ipaddress.ip_address(words[1].split("%")[0])))
            except ValueError:
                continue
    return tuple(found)


RESOLV_CONF: Fact[tuple[str, ...]] = Fact("resolvers", "cat /etc/resolv.conf 2>/dev/null", parse_nameservers)


def tunnel_address(network: str) -> str:
    return str(ipaddress.ip_network(network)[1])


def render_unbound(network: str, network6: str | None, upstream: tuple[str, ...],
                   unblock: tuple[str, ...] = ()) -> str:
    nets = [n for n in (network, network6) if n]
    lines = ["# Written by selfvpn deploy: the DNS resolver of VPN clients.", "server:"]
    lines += [f"    interface: {tunnel_address(n)}" for n in nets]
    lines += ["    ip-freebind: yes"]
    lines += [f"    access-control: {n} allow" for n in nets]
    lines += ["    do-not-query-localhost: no", '    module-config: "iterator"']
    lines += [f'    local-zone: "{zone}" nodefault' for zone in unblock]
    lines += ["", "forward-zone:",
              '    name: "."']
    lines += [f"    forward-addr: {address}" for address in upstream]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ResolverState:
    nameservers: tuple[str, ...]
    file: FileState


@dataclass(frozen=True)
class ResolverOp(Operation[ResolverState]):
    """unbound's drop-in for the VPN's resolver."""

    op = "resolver"
    network: str
    network6: str | None = None
    upstream: tuple[str, ...] = ()
    unblock: tuple[str, ...] = ()  # special-use zones (RFC 6761, e.g. "test.") to forward, not refuse
    path: str = "/etc/unbound/unbound.conf.d/selfvpn.conf"

    def validate(self) -> None:
        check_path(self.path)
        ipaddress.IPv4Network(self.network)
        if self.network6:
            ipaddress.IPv6Network(self.network6)
        for address in self.upstream:
            ipaddress.ip_address(address)
        for zone in self.unblock:
            if not re.fullmatch(r"([a-z0-9-]+\.)+", zone):
                raise ValueError(f"unblock: expected zone names ending in a dot, got {zone!r}")

    def gather(self, remote: Remote, ctx: Context) -> ResolverState:
        servers = self.upstream or gather(remote, RESOLV_CONF)
        return ResolverState(servers, gather(remote, file_fact(self.path)))

    def decide(self, state: ResolverState, ctx: Context) -> Outcome:
        ours = {tunnel_address(n) for n in (self.network, self.network6) if n}
        upstream = tuple(s for s in state.nameservers if s not in ours)
        if not upstream:
            raise OperationFailed("no nameserver in the host's /etc/resolv.conf to forward to; set vpn_upstream_dns")
        content = render_unbound(self.network, self.network6, upstream, self.unblock)
        return FileOp(self.path, content, "0644").decide(state.file, ctx)
