"""Throwaway network namespaces for the system tests, and snapshots of what is in them.

Rule 1: nothing here changes the machine's own network namespace. Every change runs in a
        namespace named `vpnlab-t-<random>`, through `ip netns exec` (the agent, nft,
        sysctls) or pyroute2 `NetNS(name)` (read-only dumps). `IPRoute()` and `nft` are
        never called in the test process.
Rule 2: the agent refuses to run in the test process's own namespace (it compares the
        namespace inodes), so a mistake here fails instead of cutting the machine off.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from pyroute2 import NetNS

PREFIX = "vpnlab-t-"
REPO = Path(__file__).resolve().parents[2]
AGENT = Path(__file__).with_name("nsagent.py")
PROTECTED_INO = os.stat("/proc/self/ns/net").st_ino  # the machine's own namespace
_NAME = re.compile(r"^vpnlab-t-[0-9a-z]{4,12}$")


def checked(ns: str) -> str:
    """`ns`, if it is one of our throwaway namespaces; else the test is wrong: stop."""
    if not _NAME.match(ns):
        raise AssertionError(f"refusing to touch namespace {ns!r}: not a {PREFIX} test namespace")
    return ns


def create_ns() -> str:
    ns = f"{PREFIX}{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", checked(ns)], check=True)
    return ns


def delete_ns(ns: str) -> None:
    subprocess.run(["ip", "netns", "del", checked(ns)], check=False, capture_output=True)


def in_ns(ns: str, *argv: str, input: str | None = None, check: bool = True) -> str:
    """Run `argv` inside `ns`; its stdout."""
    done = subprocess.run(["ip", "netns", "exec", checked(ns), *argv], input=input,
                          capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"in {ns}: {argv} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _agent_argv(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", checked(ns), sys.executable, str(AGENT), *args]


def _agent_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "VPNLAB_PROTECTED_NETNS_INO": str(PROTECTED_INO)}


def agent(ns: str, *args: str, expect_rc: int = 0) -> dict[str, Any]:
    """Run the agent in `ns` to completion; the JSON it printed last."""
    done = subprocess.run(_agent_argv(ns, *args), env=_agent_env(), capture_output=True,
                          text=True, timeout=60)
    if done.returncode != expect_rc:
        raise AssertionError(f"agent {args[0]} in {ns} exited {done.returncode}, expected "
                             f"{expect_rc}:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Held:
    """A long-running agent (it holds a TUN, or a tunnel that we then SIGKILL)."""

    def __init__(self, ns: str, *args: str) -> None:
        self.proc = subprocess.Popen(_agent_argv(ns, *args), env=_agent_env(), text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.wait(5)
            raise AssertionError(f"agent {args[0]} in {ns} did not start: {err}")
        self.ready: dict[str, Any] = json.loads(line)

    def kill(self) -> None:
        """SIGKILL, by PID: the agent has no chance to clean up."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def ipr(ns: str) -> NetNS:
    """Netlink into `ns` (and only a test namespace), for read-only dumps."""
    return NetNS(checked(ns), flags=0)


def snapshot(ns: str) -> dict[str, Any]:
    """Links, addresses, routes (all tables), rules, the ruleset and our sysctls of `ns`."""
    with ipr(ns) as nl:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in nl.get_links()}
        links = sorted((link.get_attr("IFLA_IFNAME"), link["flags"] & 1, link.get_attr("IFLA_MTU"),
                        link.get_attr("IFLA_TXQLEN")) for link in nl.get_links())
        addrs = sorted((names.get(a["index"]), a["family"], a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                       for a in nl.get_addr())
        routes = sorted((_route_key(r, names) for r in nl.get_routes()), key=repr)
        rules = sorted((_rule_key(r) for r in nl.get_rules()), key=repr)
    return {"links": links, "addresses": addrs, "routes": routes, "rules": rules,
            "nft": in_ns(ns, "nft", "list", "ruleset"), "sysctl": sysctls(ns)}


def sysctls(ns: str) -> dict[str, str]:
    keys = ("net/ipv4/conf/all/src_valid_mark", "net/ipv4/conf/all/arp_ignore")
    out = in_ns(ns, "cat", *[f"/proc/sys/{k}" for k in keys]).split()
    return dict(zip(keys, out))


def _route_key(r: Any, names: dict[int, str]) -> tuple[Any, ...]:
    return (r["family"], r.get_attr("RTA_TABLE") or r["table"], r.get_attr("RTA_DST"),
            r["dst_len"], names.get(r.get_attr("RTA_OIF")), r.get_attr("RTA_GATEWAY"),
            r["type"], r["proto"], r["scope"], r.get_attr("RTA_PRIORITY"))


def _rule_key(r: Any) -> tuple[Any, ...]:
    return (r["family"], r.get_attr("FRA_PRIORITY"), r.get_attr("FRA_TABLE") or r["table"],
            r.get_attr("FRA_FWMARK"), r["flags"], r.get_attr("FRA_SUPPRESS_PREFIXLEN"),
            r["action"])


def rules_of(ns: str, family: int = socket.AF_INET) -> list[tuple[Any, ...]]:
    with ipr(ns) as nl:
        return sorted((_rule_key(r) for r in nl.get_rules(family=family)), key=repr)
