"""The kill switch: one nftables table of ours, `inet selfvpn`, that blocks everything but the tunnel.

Rule 1: the ruleset text comes from a pure function (`ruleset`) of a frozen `KillSwitch`.
Rule 2: it is applied as ONE `nft -f -` transaction that creates, deletes and re-creates the
        table, so applying again replaces it atomically (no window without rules).
Rule 3: it is kernel state: it stays in force if the runtime dies, until `down` removes it
        (`remove`, one idempotent transaction). The journal records it before it is applied.

Policy (Mullvad's, see docs/security.md there): output and forward drop except loopback, the
tunnel interface, the server endpoints ONLY for packets carrying our fwmark (MUL-02-002),
DHCPv4/v6, the IPv6 neighbour-discovery subset, LAN only with `allow_lan`; DNS (port 53) only
to the tunnel's DNS (checked before LAN), any other port-53 query redirected there (nat
output) and, after routing, port 53 let out through the tunnel only (postrouting dns-guard);
with no IPv6 in the tunnel, IPv6 is dropped except loopback, ND, DHCPv6 and (with allow_lan)
the LAN. Input: packets to the tunnel address arriving on any
other interface are dropped (CVE-2019-14899), plus wg-quick's raw prerouting anti-spoof rule.
Hardening: `net.ipv4.conf.all.arp_ignore=2`. The kernel uses max(conf/all, conf/<dev>) for
arp_ignore, so `all` covers every interface, including ones that appear later: no interface
answers ARP for the tunnel address (X41 MLLVD-CR-24-03).
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError, PermissionDenied, SystemSetupError
from runtime.netconf import PROC_SYS, set_sysctl
from runtime.undo import Journal, Step

TABLE = "selfvpn"
NFT = ("nft",)
REMOVE = f"table inet {TABLE}\ndelete table inet {TABLE}\n"
LAN4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "224.0.0.0/4",
        "255.255.255.255")
LAN6 = ("fe80::/10", "fc00::/7", "ff00::/8")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


@dataclass(frozen=True)
class Endpoint:
    """A server the runtime talks to outside the tunnel."""

    ip: str
    proto: str  # "udp" or "tcp"
    port: int


@dataclass(frozen=True)
class KillSwitch:
    """Everything the ruleset depends on."""

    tunnel: str
    endpoints: tuple[Endpoint, ...]
    fwmark: int
    tunnel_addresses: tuple[str, ...]  # "10.66.0.2" or "10.66.0.2/24"
    dns: tuple[str, ...] = ()
    allow_lan: bool = False
    ipv6: bool = False

    def __post_init__(self) -> None:
        if not _IFNAME.match(self.tunnel):
            raise ConfigError(f"kill switch: tunnel interface {self.tunnel!r} is not a device name")
        for e in self.endpoints:
            if e.proto not in ("udp", "tcp") or not 0 < e.port < 65536:
                raise ConfigError(f"kill switch: endpoint {e.ip} {e.proto}/{e.port}: "
                                  "expected udp or tcp and a port 1-65535")
        for value in (*[e.ip for e in self.endpoints], *self.tunnel_addresses, *self.dns):
            _ip(value)
        if not 0 < self.fwmark < 2**32:
            raise ConfigError(f"kill switch: fwmark {self.fwmark}: expected 1..2^32-1")


# --- the ruleset (pure) ---------------------------------------------------------------

def ruleset(ks: KillSwitch) -> str:
    """The `inet selfvpn` table for `ks`, as nft text."""
    chains = [
        _chain("prerouting", "filter hook prerouting priority -300", "accept", _antispoof(ks)),
        _chain("premangle", "filter hook prerouting priority mangle", "accept",
               [f"ct mark {ks.fwmark:#x} meta mark set ct mark"]),
        _chain("postmangle", "filter hook postrouting priority mangle", "accept",
               [f"meta mark {ks.fwmark:#x} ct mark set meta mark"]),
        _chain("input", "filter hook input priority 0", "accept", _input(ks)),
        _chain("output", "filter hook output priority 0", "drop", _output(ks)),
        _chain("forward", "filter hook forward priority 0", "drop", _forward(ks)),
        _chain("dns-redirect", "nat hook output priority -100", "accept", _dns_redirect(ks)),
        _chain("dns-guard", "filter hook postrouting priority 0", "accept", _dns_guard(ks)),
    ]
    return f"table inet {TABLE} {{\n" + "\n".join(chains) + "}\n"


def transaction(ks: KillSwitch) -> str:
    """Create-or-replace in one transaction: `table` makes `delete` safe when it is absent."""
    return REMOVE + ruleset(ks)


def _chain(name: str, hook: str, policy: str, rules: Sequence[str]) -> str:
    body = "".join(f"\t\t{r}\n" for r in rules)
    return f"\tchain {name} {{\n\t\ttype {hook}; policy {policy};\n{body}\t}}\n"


def _antispoof(ks: KillSwitch) -> list[str]:
    tun = _q(ks.tunnel)
    return [f"iifname != {tun} {_fam(a)} daddr {a} fib saddr type != local drop"
            for a in _hosts(ks.tunnel_addresses)]


def _input(ks: KillSwitch) -> list[str]:
    others = f'{{ "lo", {_q(ks.tunnel)} }}'
    rules = [f"iifname != {others} {_fam(a)} daddr {a} drop" for a in _hosts(ks.tunnel_addresses)]
    if not ks.ipv6:
        rules += ['iifname "lo" accept',
                  "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
                  "ip6 saddr fe80::/10 icmpv6 type { nd-router-advert, nd-redirect } accept",
                  "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept"]
        rules += _lan(ks, "saddr", v6_only=True)
        rules.append("meta nfproto ipv6 drop")
    return rules


def _output(ks: KillSwitch) -> list[str]:
    rules = ['oifname "lo" accept']
    rules += [f"meta mark {ks.fwmark:#x} {_fam(e.ip)} daddr {_addr(e.ip)} {e.proto} dport {e.port} accept"
              for e in ks.endpoints]
    rules += ["meta nfproto ipv4 udp sport 68 udp dport 67 accept",
              "ip6 saddr fe80::/10 ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept",
              "ip6 daddr ff02::2 icmpv6 type nd-router-solicit accept",
              "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"]
    return rules + _leak_policy(ks, "")


def _forward(ks: KillSwitch) -> list[str]:
    return (_leak_policy(ks, f"oifname {_q(ks.tunnel)} ")
            + [f"iifname {_q(ks.tunnel)} ct state established,related accept"])


def _leak_policy(ks: KillSwitch, dns_via: str) -> list[str]:
    """Shared by output and forward: DNS only to the tunnel DNS, LAN opt-in, IPv6, the tunnel.

    In output, `oifname` still names the interface chosen before the DNS redirect re-routed
    the packet, so there `dns_via` is empty and `dns-guard` checks the interface instead.
    """
    tun = _q(ks.tunnel)
    rules = [f"{dns_via}{fam} daddr {_set(addrs)} meta l4proto {{ tcp, udp }} th dport 53 accept"
             for fam, addrs in _by_family(ks.dns)]
    rules.append("meta l4proto { tcp, udp } th dport 53 drop")
    rules += _lan(ks, "daddr", v6_only=False)
    if not ks.ipv6:
        rules.append("meta nfproto ipv6 drop")
    rules.append(f"oifname {tun} accept")
    return rules


def _lan(ks: KillSwitch, direction: str, *, v6_only: bool) -> list[str]:
    if not ks.allow_lan:
        return []
    rules = [] if v6_only else [f"ip {direction} {_set(LAN4)} accept"]
    return rules + [f"ip6 {direction} {_set(LAN6)} accept"]


def _dns_redirect(ks: KillSwitch) -> list[str]:
    rules = [f"meta mark {ks.fwmark:#x} return", 'oifname "lo" return']
    for fam, addrs in _by_family(ks.dns):
        rules.append(f"{fam} daddr != {_set(addrs)} meta l4proto {{ tcp, udp }} th dport 53 "
                     f"dnat {fam} to {addrs[0]}")
    return rules


def _dns_guard(ks: KillSwitch) -> list[str]:
    """After routing (and re-routing by the redirect): port 53 leaves only through the tunnel."""
    return [f"meta mark {ks.fwmark:#x} return", f'oifname {{ "lo", {_q(ks.tunnel)} }} return',
            "meta l4proto { tcp, udp } th dport 53 drop"]


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_interface(value).ip
    except ValueError as exc:
        raise ConfigError(f"kill switch: {value!r} is not an IP address") from exc


def _hosts(values: Sequence[str]) -> list[str]:
    return [str(_ip(v)) for v in values]


def _addr(value: str) -> str:
    return str(_ip(value))


def _fam(value: str) -> str:
    return "ip" if _ip(value).version == 4 else "ip6"


def _by_family(values: Sequence[str]) -> list[tuple[str, list[str]]]:
    groups = [("ip", [v for v in _hosts(values) if _fam(v) == "ip"]),
              ("ip6", [v for v in _hosts(values) if _fam(v) == "ip6"])]
    return [(fam, addrs) for fam, addrs in groups if addrs]


def _set(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _q(ifname: str) -> str:
    return f'"{ifname}"'


# --- applying it (I/O) ----------------------------------------------------------------

def engage(journal: Journal, ks: KillSwitch, proc_sys: Path = PROC_SYS,
           nft: Sequence[str] = NFT) -> None:
    """Apply (or atomically replace) the table and set arp_ignore=2, both recorded first."""
    apply(journal, ks, nft)
    set_sysctl(journal, "net/ipv4/conf/all/arp_ignore", "2", proc_sys)


def apply(journal: Journal, ks: KillSwitch, nft: Sequence[str] = NFT) -> None:
    """Apply the table in one transaction; record it first unless this `up` already did."""
    step = Step("nft_table", {"family": "inet", "name": TABLE},
                f"nft -f - # table inet {TABLE}", f"nft delete table inet {TABLE}")
    recorded = step in journal.steps
    if not recorded:
        journal.record(step)
    else:
        journal.say(step.says)
    try:
        run_nft(transaction(ks), nft)
    except SystemSetupError:
        if not recorded:
            journal.forget(step)
        raise


def remove(nft: Sequence[str] = NFT) -> None:
    """Delete our table; fine if it is not there."""
    run_nft(REMOVE, nft)


def run_nft(text: str, nft: Sequence[str] = NFT, *, check: bool = False) -> None:
    """`nft -f -` (with `-c`: only check) on `text`, as one transaction."""
    argv = [*nft, *(["-c"] if check else []), "-f", "-"]
    try:
        done = subprocess.run(argv, input=text, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise SystemSetupError(f"{argv[0]}: not found", "install nftables") from exc
    if done.returncode != 0:
        err = done.stderr.strip().splitlines()
        if any("Operation not permitted" in line for line in err):
            raise PermissionDenied(f"nft: {err[0]}")
        raise SystemSetupError(f"nft -f -: {err[0] if err else 'exit ' + str(done.returncode)}")


def undo_table(args: Mapping[str, Any]) -> None:
    remove()


UNDOERS = {"nft_table": undo_table}
