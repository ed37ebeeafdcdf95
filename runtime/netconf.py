"""Network configuration of the tunnel over netlink (runtime.rtnl): link, addresses, routes, rules.

Rule 1: netlink only (runtime.rtnl); never run or parse `ip`. The `ip ...` strings are what we
        echo (`[#] ...`, behind verbose) so a person can read and replay them.
Rule 2: every change is recorded in the journal BEFORE it is made (runtime.undo); a change
        that turns out not to be needed, or that fails, is forgotten again.
Rule 3: undoing is idempotent: a route, rule or address that is already gone (or whose
        device is gone, which takes them along) counts as undone.
Rule 4: full tunnel the wg-quick way: our sockets carry fwmark M (`mark_socket`);
        `ip rule not fwmark M table T`, `ip rule table main suppress_prefixlength 0`, default
        routes in table T via the TUN, `net.ipv4.conf.all.src_valid_mark=1` (as wg-quick).
        Split tunnel: the given CIDRs via the TUN in the main table.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import rtnl
from runtime.errors import PermissionDenied, SystemSetupError
from runtime.rtnl import IPRoute
from runtime.undo import Journal, Step

DEFAULT_FWMARK = 0x73656C66  # "self": on the runtime's own sockets
DEFAULT_TABLE = 0x73656C66  # the routing table holding the tunnel's default routes
MAIN_TABLE = 254
FIB_RULE_INVERT = 0x2
SO_MARK = getattr(socket, "SO_MARK", 36)
PROC_SYS = Path("/proc/sys")
GONE = {errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL}


@dataclass(frozen=True)
class FullTunnel:
    """All traffic through the tunnel, except what carries `fwmark` (the runtime's own)."""

    fwmark: int = DEFAULT_FWMARK
    table: int = DEFAULT_TABLE
    ipv6: bool = False
    priority: int = 32764  # suppress_prefixlength rule; the fwmark rule gets priority + 1


@dataclass(frozen=True)
class SplitTunnel:
    """Only `cidrs` through the tunnel (routes in the main table)."""

    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class TunnelNet:
    """What `configure` sets up on the TUN device."""

    ifname: str
    addresses: tuple[str, ...]  # "10.66.0.2/24", "fd66::2/64"
    mtu: int = 1420
    txqueuelen: int = 1000
    routing: FullTunnel | SplitTunnel = field(default_factory=FullTunnel)


@dataclass(frozen=True)
class Rule:
    """One policy routing rule, as we add it and as we delete it."""

    family: int
    priority: int
    table: int
    fwmark: int | None = None
    invert: bool = False
    suppress_prefixlength: int | None = None

    def netlink(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"family": self.family, "priority": self.priority, "table": self.table}
        if self.fwmark is not None:
            kw["fwmark"] = self.fwmark
        if self.invert:
            kw["flags"] = FIB_RULE_INVERT
        if self.suppress_prefixlength is not None:
            kw["suppress_prefixlen"] = self.suppress_prefixlength
        return kw

    def ip_args(self) -> str:
        parts = [f"ip -{_v(self.family)} rule", "{}"]
        if self.invert:
            parts.append("not")
        if self.fwmark is not None:
            parts.append(f"fwmark {self.fwmark:#x}")
        parts.append(f"table {'main' if self.table == MAIN_TABLE else self.table}")
        if self.suppress_prefixlength is not None:
            parts.append(f"suppress_prefixlength {self.suppress_prefixlength}")
        parts.append(f"priority {self.priority}")
        return " ".join(parts)


# --- the whole tunnel -----------------------------------------------------------------

def configure(ipr: IPRoute, journal: Journal, net: TunnelNet, proc_sys: Path = PROC_SYS) -> None:
    """Bring the TUN up with its addresses and routes (full or split tunnel)."""
    set_link(ipr, journal, net.ifname, mtu=net.mtu, txqueuelen=net.txqueuelen, up=True)
    for cidr in net.addresses:
        add_address(ipr, journal, net.ifname, cidr)
    if isinstance(net.routing, FullTunnel):
        route_all(ipr, journal, net.ifname, net.routing, proc_sys)
    else:
        for cidr in net.routing.cidrs:
            add_route(ipr, journal, net.ifname, cidr, MAIN_TABLE)


def full_tunnel_rules(full: FullTunnel, family: int) -> tuple[Rule, Rule]:
    """The two wg-quick rules for one address family, in the order they are added."""
    return (
        Rule(family, full.priority + 1, full.table, fwmark=full.fwmark, invert=True),
        Rule(family, full.priority, MAIN_TABLE, suppress_prefixlength=0),
    )


def route_all(ipr: IPRoute, journal: Journal, ifname: str, full: FullTunnel,
              proc_sys: Path = PROC_SYS) -> None:
    """Default routes in table T via the TUN, and the rules that send unmarked traffic there."""
    families = [socket.AF_INET] + ([socket.AF_INET6] if full.ipv6 else [])
    for family in families:
        add_route(ipr, journal, ifname, "0.0.0.0/0" if family == socket.AF_INET else "::/0", full.table)
        for rule in full_tunnel_rules(full, family):
            add_rule(ipr, journal, rule)
    set_sysctl(journal, "net/ipv4/conf/all/src_valid_mark", "1", proc_sys)


def mark_socket(sock: socket.socket, fwmark: int) -> None:
    """Give the runtime's own socket the fwmark that bypasses the tunnel (needs CAP_NET_ADMIN)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, fwmark)
    except PermissionError as exc:
        raise PermissionDenied(f"SO_MARK {fwmark:#x}: {exc.strerror}") from exc


# --- single changes -------------------------------------------------------------------

def set_link(ipr: IPRoute, journal: Journal, ifname: str, *, mtu: int, txqueuelen: int,
             up: bool) -> None:
    """Set MTU, txqueuelen and state; the undo puts back the old values."""
    link = ipr.link(_index(ipr, ifname))
    old = {"mtu": link.mtu, "txqueuelen": link.txqlen, "up": link.up}
    new = {"mtu": mtu, "txqueuelen": txqueuelen, "up": up}
    if old == new:
        return
    step = Step("link", {"ifname": ifname, **old}, _link_says(ifname, new), _link_says(ifname, old))
    _apply(journal, step, lambda: ipr.set_link(_index(ipr, ifname), mtu=mtu, txqlen=txqueuelen, up=up))


def add_address(ipr: IPRoute, journal: Journal, ifname: str, cidr: str) -> None:
    iface = _interface(cidr)
    args = {"ifname": ifname, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
    says = f"ip -{iface.version} address {{}} {iface.with_prefixlen} dev {ifname}"
    step = Step("address", args, says.format("add"), says.format("del"))
    _apply(journal, step, lambda: ipr.address("add", _index(ipr, ifname), args["address"], args["prefixlen"]))


def add_route(ipr: IPRoute, journal: Journal, ifname: str, cidr: str, table: int) -> None:
    net = _network(cidr)
    args = {"ifname": ifname, "dst": str(net), "table": table}
    t = "main" if table == MAIN_TABLE else str(table)
    says = f"ip -{net.version} route {{}} {net} dev {ifname} table {t}"
    step = Step("route", args, says.format("add"), says.format("del"))
    _apply(journal, step, lambda: ipr.route("add", **_route_kw(ipr, args)))


def add_rule(ipr: IPRoute, journal: Journal, rule: Rule) -> None:
    if _rule_exists(ipr, rule):
        raise SystemSetupError(f"{rule.ip_args().format('add')}: the rule exists already",
                               "run `vpn-runtime down`, or delete the rule if it is not ours")
    args = {"family": rule.family, "priority": rule.priority, "table": rule.table,
            "fwmark": rule.fwmark, "invert": rule.invert,
            "suppress_prefixlength": rule.suppress_prefixlength}
    step = Step("rule", args, rule.ip_args().format("add"), rule.ip_args().format("del"))
    _apply(journal, step, lambda: ipr.rule("add", **rule.netlink()))


def set_sysctl(journal: Journal, key: str, value: str, proc_sys: Path = PROC_SYS) -> None:
    """Set /proc/sys/`key` (slash-separated) to `value`; the undo writes the old value back."""
    path = proc_sys / key
    try:
        old = path.read_text().strip()
    except OSError as exc:
        raise SystemSetupError(f"sysctl {key}: {exc.strerror}") from exc
    if old == value:
        return
    dotted = key.replace("/", ".")
    step = Step("sysctl", {"path": str(path), "old": old}, f"sysctl -q {dotted}={value}",
                f"sysctl -q {dotted}={old}")
    journal.record(step)
    try:
        path.write_text(value + "\n")
    except OSError as exc:
        journal.forget(step)
        raise SystemSetupError(f"sysctl {key}={value}: {exc.strerror}") from exc


# --- undo -----------------------------------------------------------------------------

def undo_link(args: Mapping[str, Any]) -> None:
    with rtnl.IPRoute() as ipr:
        _ignore_gone(lambda: ipr.set_link(_index(ipr, args["ifname"]), mtu=args["mtu"],
                                          txqlen=args["txqueuelen"], up=args["up"]))


def undo_address(args: Mapping[str, Any]) -> None:
    with rtnl.IPRoute() as ipr:
        _ignore_gone(lambda: ipr.address("del", _index(ipr, args["ifname"]), args["address"],
                                         args["prefixlen"]))


def undo_route(args: Mapping[str, Any]) -> None:
    with rtnl.IPRoute() as ipr:
        _ignore_gone(lambda: ipr.route("del", **_route_kw(ipr, args)))


def undo_rule(args: Mapping[str, Any]) -> None:
    rule = Rule(args["family"], args["priority"], args["table"], args["fwmark"], args["invert"],
                args["suppress_prefixlength"])
    with rtnl.IPRoute() as ipr:
        _ignore_gone(lambda: ipr.rule("del", **rule.netlink()))


def undo_sysctl(args: Mapping[str, Any]) -> None:
    try:
        Path(args["path"]).write_text(f"{args['old']}\n")
    except FileNotFoundError:
        pass  # a per-interface key whose interface is gone


UNDOERS = {"link": undo_link, "address": undo_address, "route": undo_route, "rule": undo_rule,
           "sysctl": undo_sysctl}


# --- helpers --------------------------------------------------------------------------

class _Gone(SystemSetupError):
    """The device a change refers to does not exist."""


def _apply(journal: Journal, step: Step, change: Callable[[], object]) -> None:
    """Record `step`, make the change; forget the step again if the change failed."""
    journal.record(step)
    try:
        change()
    except _Gone:
        journal.forget(step)
        raise
    except rtnl.NetlinkError as exc:
        journal.forget(step)
        raise _setup_error(step.says, exc) from exc


def _setup_error(says: str, exc: Exception) -> Exception:
    code = getattr(exc, "code", None)
    if code == errno.EPERM:
        return PermissionDenied(f"{says}: operation not permitted")
    if code == errno.EEXIST:
        return SystemSetupError(f"{says}: exists already", "run `vpn-runtime down` first")
    return SystemSetupError(f"{says}: {exc}")


def _ignore_gone(change: Callable[[], object]) -> None:
    try:
        change()
    except _Gone:
        pass
    except rtnl.NetlinkError as exc:
        if exc.code not in GONE:
            raise


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_index(ifname)
    if found is None:
        raise _Gone(f"network device {ifname}: not found", "is the tunnel up?")
    return found


def _route_kw(ipr: IPRoute, args: Mapping[str, Any]) -> dict[str, Any]:
    net = ipaddress.ip_network(args["dst"])
    return {"dst": str(net.network_address), "dst_len": net.prefixlen, "table": args["table"],
            "oif": _index(ipr, args["ifname"]), "family": _family(net.version)}


def _rule_exists(ipr: IPRoute, rule: Rule) -> bool:
    return any(found.priority == rule.priority and found.table == rule.table and found.fwmark == rule.fwmark
               and bool(found.flags & FIB_RULE_INVERT) == rule.invert
               and found.suppress_prefixlen in _suppress(rule)
               for found in ipr.rules(rule.family))


def _suppress(rule: Rule) -> tuple[int | None, ...]:
    # the kernel reports "no suppress_prefixlength" as 0xffffffff
    return (rule.suppress_prefixlength,) if rule.suppress_prefixlength is not None else (None, 0xFFFFFFFF)


def _interface(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return ipaddress.ip_interface(cidr)
    except ValueError as exc:
        raise SystemSetupError(f"tunnel address {cidr!r}: {exc}", "use ADDRESS/PREFIX") from exc


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise SystemSetupError(f"route {cidr!r}: {exc}", "use NETWORK/PREFIX") from exc


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def _v(family: int) -> int:
    return 4 if family == socket.AF_INET else 6


def _link_says(ifname: str, values: Mapping[str, Any]) -> str:
    state = "up" if values["up"] else "down"
    return f"ip link set dev {ifname} mtu {values['mtu']} txqueuelen {values['txqueuelen']} {state}"
