"""Runs the code under test INSIDE a test namespace (started by nslab via `ip netns exec`).

Rule 1: it refuses to run in the protected namespace (the test process's, i.e. the
        machine's own), whose inode the parent passes in VPNLAB_PROTECTED_NETNS_INO.
Rule 2: one command per run; it prints one JSON line as its answer (long-running commands
        print it when ready, then wait to be killed or for stdin to close).

Commands:
    hold-tun NAME [vnet] [mq]         open a TUN (2 queues with mq) and hold it
    up STATE CONFIG [own-tun] [hang]  configure the TUN (with own-tun: open it first), kill
                                      switch, DNS, all journaled to STATE and rolled back on
                                      failure; with hang: then wait (to be SIGKILLed)
    restore STATE                     unwind STATE (as a new process after a crash would)
    killswitch STATE CONFIG           engage the kill switch only
    tun-io NAME [vnet]                a UDP datagram sent to the TUN's peer comes out of the TUN
    probe CONFIG                      tunnel + kill switch, then try sends that must (not) pass
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any


def _refuse_protected_namespace() -> None:
    protected = os.environ.get("VPNLAB_PROTECTED_NETNS_INO")
    here = os.stat("/proc/self/ns/net").st_ino
    if not protected or int(protected) == here:
        print(json.dumps({"error": "refusing to run outside a test namespace"}))
        sys.exit(70)


_refuse_protected_namespace()

from runtime.rtnl import IPRoute  # noqa: E402  (only after the namespace check)

from runtime import dns, killswitch, netconf, undo  # noqa: E402
from runtime.errors import VpnError  # noqa: E402
from runtime.tun import VNET_HDR_SIZE, open_tun  # noqa: E402


def tunnel_net(cfg: dict[str, Any]) -> netconf.TunnelNet:
    r = cfg["routing"]
    routing: netconf.FullTunnel | netconf.SplitTunnel
    if r["kind"] == "full":
        routing = netconf.FullTunnel(fwmark=r["fwmark"], table=r["table"], ipv6=r["ipv6"])
    else:
        routing = netconf.SplitTunnel(tuple(r["cidrs"]))
    return netconf.TunnelNet(cfg["ifname"], tuple(cfg["addresses"]), routing=routing)


def kill_switch(cfg: dict[str, Any]) -> killswitch.KillSwitch:
    eps = tuple(killswitch.Endpoint(e["ip"], e["proto"], e["port"]) for e in cfg["endpoints"])
    return killswitch.KillSwitch(cfg["tunnel"], eps, cfg["fwmark"], tuple(cfg["tunnel_addresses"]),
                                 tuple(cfg.get("dns", ())), cfg.get("allow_lan", False),
                                 cfg.get("ipv6", False))


def cmd_hold_tun(name: str, *opts: str) -> None:
    queues = [open_tun(name, vnet_hdr="vnet" in opts, multi_queue="mq" in opts)]
    if "mq" in opts:
        queues.append(open_tun(name, vnet_hdr="vnet" in opts, multi_queue=True))
    print(json.dumps({"name": queues[0].name, "fds": [q.fd for q in queues]}), flush=True)
    sys.stdin.read()


def cmd_up(state: str, config: str, *opts: str) -> None:
    cfg = json.loads(config)
    journal = undo.Journal(Path(state), echo=lambda line: print(line, file=sys.stderr))
    ifname = cfg["net"]["ifname"]
    tun = open_tun(ifname) if "own-tun" in opts else None
    with undo.rolled_back_on_failure(journal), IPRoute() as ipr:
        netconf.configure(ipr, journal, tunnel_net(cfg["net"]))
        if "killswitch" in cfg:
            killswitch.engage(journal, kill_switch(cfg["killswitch"]))
        if "dns" in cfg:
            paths = dns.DnsPaths(Path(cfg["dns"]["resolv_conf"]), Path(cfg["dns"]["state_dir"]),
                                 Path(cfg["dns"]["resolved_dir"]))
            dns.point_resolver(journal, ifname, cfg["dns"]["servers"], paths)
    print(json.dumps({"up": ifname, "own_tun": tun is not None, "steps": len(journal.steps)}),
          flush=True)
    if "hang" in opts:
        while True:
            time.sleep(3600)


def cmd_restore(state: str) -> None:
    undo.restore(Path(state), echo=lambda line: print(line, file=sys.stderr))
    print(json.dumps({"restored": state, "state_file_left": Path(state).exists()}))


def cmd_killswitch(state: str, config: str) -> None:
    journal = undo.Journal.load(Path(state))
    killswitch.engage(journal, kill_switch(json.loads(config)))
    print(json.dumps({"steps": [s.kind for s in journal.steps]}))


def cmd_tun_io(name: str, *opts: str) -> None:
    tun = open_tun(name, vnet_hdr="vnet" in opts)
    journal = undo.Journal(Path(f"/tmp/{name}-io-state.json"))
    with IPRoute() as ipr:
        netconf.configure(ipr, journal, netconf.TunnelNet(
            name, ("10.77.0.1/24",), routing=netconf.SplitTunnel(())))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"hello tun", ("10.77.0.2", 4000))
    skip = VNET_HDR_SIZE if tun.vnet_hdr else 0
    packet = _read_one(tun)
    while packet and packet[skip] >> 4 != 4:  # the link's own IPv6 chatter
        packet = _read_one(tun)
    journal.unwind(undo.undoers())
    print(json.dumps({"packet": packet.hex(), "vnet_hdr": tun.vnet_hdr}))


def _read_one(tun: Any, timeout: float = 2.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        packet = tun.read()
        if packet is not None:
            return packet
        time.sleep(0.01)
    return b""


def cmd_probe(config: str) -> None:
    """Kill switch engaged over a full tunnel: which sends does the kernel let out?"""
    cfg = json.loads(config)
    journal = undo.Journal(Path(cfg["state"]))
    tun = open_tun(cfg["net"]["ifname"])
    with undo.rolled_back_on_failure(journal), IPRoute() as ipr:
        netconf.configure(ipr, journal, tunnel_net(cfg["net"]))
        killswitch.engage(journal, kill_switch(cfg["killswitch"]))
    results = {p["name"]: _try_send(p) for p in cfg["probes"]}
    seen = []
    while packet := _read_one(tun, 0.3):
        seen.append(packet.hex())
    journal.unwind(undo.undoers())
    print(json.dumps({"sent": results, "tun_packets": seen}))


def _try_send(probe: dict[str, Any]) -> str:
    family = socket.AF_INET6 if ":" in probe["ip"] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        if probe.get("mark"):
            netconf.mark_socket(s, probe["mark"])
        try:
            s.sendto(b"probe", (probe["ip"], probe["port"]))
            return "sent"
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))


COMMANDS = {"hold-tun": cmd_hold_tun, "up": cmd_up, "restore": cmd_restore,
            "killswitch": cmd_killswitch, "tun-io": cmd_tun_io, "probe": cmd_probe}

if __name__ == "__main__":
    try:
        COMMANDS[sys.argv[1]](*sys.argv[2:])
    except VpnError as exc:
        print(json.dumps({"error": type(exc).__name__, "line": exc.line()}))
        sys.exit(exc.exit_code)
