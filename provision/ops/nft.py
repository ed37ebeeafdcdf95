"""`nft_table`: the server's own nftables table, `inet selfvpn-server`, and nothing else.

Rule 1: the ruleset is a pure function of a `TableSpec` (`render`), written in the form
`nft list table` prints, so the live table compares with it byte for byte: equal is
`ok`, different (drift, or new settings) is replaced.
Rule 2: we own one table and touch no other: every chain has policy `accept`, so our
table can only add (NAT, a drop of spoofed or client-to-client packets); other tables'
rules, and the SSH port, keep working.  `ssh_safe` checks it, and the change still runs
under the lockout guard.
Rule 3: the table is replaced atomically (`table ...; delete table ...; table ... {}` in
one `nft -f`).  The same script is kept in `persist` so that the daemon's unit loads it
again at boot; the guard and teardown take both back.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
from dataclasses import dataclass

from provision.connection import Remote, Result
from provision.fact import Fact, expect_success, gather
from provision.journal import undo
from provision.operation import Change, Context, NoChange, Operation, OperationFailed, Outcome, Run, combine
from provision.ops.file import FileOp, FileState, check_path, file_fact, text_diff

q = shlex.quote
FAMILY = "inet"


@dataclass(frozen=True)
class TableSpec:
    """Everything the ruleset depends on."""

    name: str
    network: str
    network6: str | None
    public_interface: str
    tunnel_interface: str
    tcp_port: int
    udp_port: int
    client_to_client: bool = False


def render(spec: TableSpec) -> str:
    """The table as `nft list table inet NAME` prints it."""
    tun, pub = spec.tunnel_interface, spec.public_interface
    forward = [] if spec.client_to_client else [f'iifname "{tun}" oifname "{tun}" drop comment "client to client"']
    forward += [f'iifname "{tun}" ip saddr != {spec.network} drop comment "spoofed source"']
    if spec.network6:
        forward += [f'iifname "{tun}" ip6 saddr != {spec.network6} drop comment "spoofed source"']
    forward += ["ct state established,related accept", f'iifname "{tun}" oifname "{pub}" accept']
    nat = [f'oifname "{pub}" ip saddr {spec.network} masquerade']
    if spec.network6:
        nat += [f'oifname "{pub}" ip6 saddr {spec.network6} masquerade']
    chains = [
        ("input", "type filter hook input priority filter; policy accept;",
         [f'tcp dport {spec.tcp_port} accept comment "selfvpn control"',
          f'udp dport {spec.udp_port} accept comment "selfvpn data"']),
        ("forward", "type filter hook forward priority filter; policy accept;", forward),
        ("postrouting", "type nat hook postrouting priority srcnat; policy accept;", nat),
    ]
    body = "\n\n".join(_chain(name, head, rules) for name, head, rules in chains)
    return f"table {FAMILY} {spec.name} {{\n{body}\n}}\n"


def _chain(name: str, head: str, rules: list[str]) -> str:
    lines = [f"\tchain {name} {{", f"\t\t{head}", *(f"\t\t{rule}" for rule in rules), "\t}"]
    return "\n".join(lines)


def load_script(spec: TableSpec) -> str:
    """What `nft -f` loads: the table replaced in one transaction."""
    return f"table {FAMILY} {spec.name}\ndelete table {FAMILY} {spec.name}\n{render(spec)}"


def ssh_safe(ruleset: str) -> bool:
    """No chain of ours drops by policy, and no rule of ours names a port to drop."""
    lines = [line.strip() for line in ruleset.splitlines()]
    policies_ok = all("policy accept;" in line for line in lines if line.startswith("type "))
    return policies_ok and not any("dport" in line and ("drop" in line or "reject" in line) for line in lines)


# ---- facts ---------------------------------------------------------------------------------


def parse_live(result: Result) -> str | None:
    """The listed table, or None when there is no such table."""
    if result.rc != 0:
        if "No such file or directory" in result.stderr or not result.stderr.strip():
            return None
        raise ValueError(result.stderr.strip().splitlines()[-1])
    return result.stdout


def live_fact(name: str) -> Fact[str | None]:
    return Fact(f"nft table {name}", f"nft list table {FAMILY} {q(name)}", parse_live)


def parse_default_interface(result: Result) -> str | None:
    routes = json.loads(expect_success(result) or "[]")
    return next((r["dev"] for r in routes if r.get("dev")), None)


DEFAULT_ROUTE: Fact[str | None] = Fact("default route", "ip -j route show default", parse_default_interface)


@dataclass(frozen=True)
class NftState:
    live: str | None
    public_interface: str | None
    persisted: FileState | None


@dataclass(frozen=True)
class NftTableOp(Operation[NftState]):
    """Our table: NAT of the VPN network out of the public interface, forwarding, VPN ports."""

    op = "nft_table"
    network: str
    tcp_port: int
    udp_port: int
    network6: str | None = None
    public_interface: str | None = None
    tunnel_interface: str = "selfvpn0"
    client_to_client: bool = False
    name: str = "selfvpn-server"
    persist: str | None = "/etc/vpn-runtime/server.nft"

    def validate(self) -> None:
        ipaddress.IPv4Network(self.network)
        if self.network6:
            ipaddress.IPv6Network(self.network6)
        for port in (self.tcp_port, self.udp_port):
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not in 1-65535")
        if self.persist:
            check_path(self.persist)

    def gather(self, remote: Remote, ctx: Context) -> NftState:
        public = self.public_interface or gather(remote, DEFAULT_ROUTE)
        persisted = gather(remote, file_fact(self.persist)) if self.persist else None
        return NftState(gather(remote, live_fact(self.name)), public, persisted)

    def spec(self, public_interface: str) -> TableSpec:
        return TableSpec(self.name, self.network, self.network6, public_interface, self.tunnel_interface,
                         self.tcp_port, self.udp_port, self.client_to_client)

    def decide(self, state: NftState, ctx: Context) -> Outcome:
        if state.public_interface is None:
            raise OperationFailed("the host has no default route: set vpn_public_interface")
        spec = self.spec(state.public_interface)
        if not ssh_safe(render(spec)):
            raise OperationFailed(f"the {self.name} ruleset could cut SSH; refusing to load it")
        table = self._table(state.live, spec, ctx)
        if self.persist is None or state.persisted is None:
            return table
        saved = FileOp(self.persist, load_script(spec), "0600").decide(state.persisted, ctx)
        outcome = combine(saved, table)
        return Change(outcome.description, outcome.actions, outcome.undo, outcome.diff, guard=True) \
            if isinstance(outcome, Change) else outcome

    def _table(self, live: str | None, spec: TableSpec, ctx: Context) -> Outcome:
        wanted = render(spec)
        if live == wanted:
            return NoChange(f"table {FAMILY} {self.name} is as wanted")
        script = load_script(spec)
        load = Run(f"nft -f -", script.encode())
        diff = text_diff(f"nft table {FAMILY} {self.name}", (live or "").encode(), wanted.encode())
        if live is None:
            record = undo("nft_table_created", family=FAMILY, name=self.name)
            return Change(f"create table {FAMILY} {self.name}", (load,), (record,), diff, guard=True)
        backup = f"{ctx.state.backups}/nft-{self.name}.{hashlib.sha256(live.encode()).hexdigest()[:16]}.nft"
        old = f"table {FAMILY} {self.name}\ndelete table {FAMILY} {self.name}\n{live}"
        save = Run(f"umask 077 && mkdir -p {q(ctx.state.backups)} && cat > {q(backup)}", old.encode())
        record = undo("nft_table_replaced", family=FAMILY, name=self.name, backup=backup)
        return Change(f"replace table {FAMILY} {self.name}", (save, load), (record,), diff, guard=True)
