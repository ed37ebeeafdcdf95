"""Our netlink client against a real kernel, in a throwaway namespace, read back with pyroute2
(an independent netlink implementation) and `ip`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.system import nslab

pytestmark = pytest.mark.lab

SCRIPT = textwrap.dedent('''
    import errno, json, os, socket, sys
    assert os.stat("/proc/self/ns/net").st_ino != int(sys.argv[1]), "in the machine's own namespace"
    from runtime.rtnl import IPRoute, NetlinkError

    def code(call):
        try:
            call()
        except NetlinkError as exc:
            return errno.errorcode[exc.code]
        return "ok"

    out = {}
    with IPRoute() as ipr:
        i = ipr.link_index("vpn0")
        out["missing"] = ipr.link_index("nosuch")
        ipr.set_link(i, mtu=1380, txqlen=321, up=True)
        link = ipr.link(i)
        out["link"] = [link.index == i, link.mtu, link.txqlen, link.up]
        ipr.address("add", i, "10.66.0.2", 24)
        ipr.address("add", i, "fd66::2", 64)
        out["address_again"] = code(lambda: ipr.address("add", i, "10.66.0.2", 24))
        ipr.route("add", family=socket.AF_INET, dst="0.0.0.0", dst_len=0, table=5151, oif=i)
        ipr.route("add", family=socket.AF_INET, dst="198.51.100.0", dst_len=24, table=254, oif=i)
        ipr.rule("add", family=socket.AF_INET, priority=32765, table=5151, fwmark=0x5E1F, flags=2)
        ipr.rule("add", family=socket.AF_INET, priority=32764, table=254, suppress_prefixlen=0)
        out["rules"] = sorted(([r.priority, r.table, r.fwmark, r.flags, r.suppress_prefixlen]
                              for r in ipr.rules(socket.AF_INET)), key=str)
        print(json.dumps(out), flush=True)
        sys.stdin.readline()  # the test reads the namespace now
        ipr.rule("del", family=socket.AF_INET, priority=32765, table=5151, fwmark=0x5E1F, flags=2)
        ipr.rule("del", family=socket.AF_INET, priority=32764, table=254, suppress_prefixlen=0)
        ipr.route("del", family=socket.AF_INET, dst="0.0.0.0", dst_len=0, table=5151, oif=i)
        ipr.route("del", family=socket.AF_INET, dst="198.51.100.0", dst_len=24, table=254, oif=i)
        ipr.address("del", i, "10.66.0.2", 24)
        ipr.address("del", i, "fd66::2", 64)
        ipr.set_link(i, mtu=1500, txqlen=500, up=False)
        out = {"route_gone": code(lambda: ipr.route("del", family=socket.AF_INET, dst="0.0.0.0", dst_len=0,
                                                    table=5151, oif=i)),
               "rule_gone": code(lambda: ipr.rule("del", family=socket.AF_INET, priority=32765, table=5151)),
               "address_gone": code(lambda: ipr.address("del", i, "10.66.0.2", 24))}
    print(json.dumps(out), flush=True)
''')


def test_changes_land_in_the_kernel_as_ip_would_make_them_and_undo_exactly(ns):
    nslab.in_ns(ns, "ip", "tuntap", "add", "vpn0", "mode", "tun", "user", "0")
    nslab.in_ns(ns, "ip", "link", "set", "vpn0", "mtu", "1500", "txqueuelen", "500")
    before = nslab.snapshot(ns)
    env = {**os.environ, "PYTHONPATH": str(nslab.REPO)}
    proc = subprocess.Popen(["ip", "netns", "exec", nslab.checked(ns), sys.executable, "-c", SCRIPT,
                             str(nslab.PROTECTED_INO)], env=env, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        made = json.loads(proc.stdout.readline() or "null")
        assert made is not None, proc.stderr.read()
        now = nslab.snapshot(ns)
        routes = nslab.in_ns(ns, "ip", "-4", "route", "show", "table", "all", "dev", "vpn0")
        rules = nslab.in_ns(ns, "ip", "-4", "rule", "show")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        undone = json.loads(proc.stdout.readline() or "null")
        assert undone is not None, proc.stderr.read()
    finally:
        proc.wait(10)
    assert made["missing"] is None and made["link"] == [True, 1380, 321, True]
    assert made["address_again"] == "EEXIST"
    assert [32765, 5151, 0x5E1F, 2, 0xFFFFFFFF] in made["rules"] and [32764, 254, None, 0, 0] in made["rules"]
    assert ("vpn0", 1, 1380, 321) in now["links"]
    assert {(a[2], a[3]) for a in now["addresses"] if a[0] == "vpn0"} >= {("10.66.0.2", 24), ("fd66::2", 64)}
    assert "default table 5151 scope link" in routes  # proto boot: ip leaves it unsaid
    assert "198.51.100.0/24 scope link" in routes
    assert "32765:\tnot from all fwmark 0x5e1f lookup 5151" in rules
    assert "32764:\tfrom all lookup main suppress_prefixlength 0" in rules
    assert undone == {"route_gone": "ESRCH", "rule_gone": "ENOENT", "address_gone": "EADDRNOTAVAIL"}
    assert nslab.snapshot(ns) == before

