"""Measurements of one peer run: connect timing, ping, iperf3 with /proc CPU and RSS sampling.

Pure parts (tested without root): `parse_iperf`, `parse_ping`, `cpu_us_per_packet`,
`first_underlay_packet`.  The rest runs commands in the lab or reads /proc.

Rule 1: every figure comes from a measurement made here; a figure that could not be made is
None (or an "error" key), never estimated.
Rule 2: CPU is counted for the tracked VPN processes and all their descendants, per side,
from utime+stime in /proc, in a window inside iperf3's data phase (clear of its start-up,
its omitted first second and its end); RSS is VmRSS summed the same way.
Rule 3: "per full-size packet" divides CPU time by the data packets the test carried, taken
as received payload / MSS (1368 B of TCP payload in a 1420-byte inner packet: 20 IP + 20 TCP
+ 12 timestamp option); ACKs ride along uncounted, as in any per-packet cost.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provision.bench.netns import NS_CLI, UNDER_CLI, UNDER_SRV, VETH_CLI, in_ns, socket_in

CLK_TCK = os.sysconf("SC_CLK_TCK")
MSS = 1368
ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003  # outgoing packets reach only ETH_P_ALL taps
SO_TIMESTAMPNS = 35
Json = dict[str, Any]


# --- /proc --------------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def descendants(roots: Iterable[int]) -> set[int]:
    """`roots` and every process below them."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (f := _stat(int(entry))):
            kids.setdefault(int(f[1]), []).append(int(entry))
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen and os.path.exists(f"/proc/{pid}"):
            seen.add(pid)
            todo.extend(kids.get(pid, []))
    return seen


def cpu_ticks(pids: Iterable[int]) -> dict[int, int]:
    """utime+stime per PID, in clock ticks."""
    found = {}
    for pid in pids:
        if f := _stat(pid):
            found[pid] = int(f[11]) + int(f[12])
    return found


def memory_kb(pids: Iterable[int]) -> dict[str, int]:
    """VmRSS and VmHWM summed over `pids`, in KiB."""
    total = {"rss_kb": 0, "hwm_kb": 0}
    for pid in pids:
        try:
            lines = open(f"/proc/{pid}/status").read().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                total["rss_kb" if key == "VmRSS" else "hwm_kb"] += int(value.split()[0])
    return total


def memory_by_side(sides: Mapping[str, Sequence[int]]) -> Json:
    return {side: memory_kb(descendants(pids)) for side, pids in sides.items()}


def cpu_seconds(before: Mapping[int, int], after: Mapping[int, int]) -> float:
    """CPU seconds used between two samples by the processes present in `after`."""
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / CLK_TCK


def cpu_us_per_packet(cpu_s: float | None, window_s: float, mbps: float | None, mss: int = MSS) -> float | None:
    """Microseconds of CPU per full-size data packet: CPU rate / packet rate."""
    if cpu_s is None or not mbps or window_s <= 0:
        return None
    packets_per_s = mbps * 1e6 / 8 / mss
    return round(cpu_s / window_s / packets_per_s * 1e6, 2)


# --- ping -----------------------------------------------------------------------------------

_PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) received")
_PING_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


def parse_ping(text: str) -> Json:
    """sent, received, loss_pct and min/avg/max/mdev (ms) from iputils ping's summary."""
    out: Json = {}
    if m := _PING_COUNTS.search(text):
        sent, got = int(m.group(1)), int(m.group(2))
        out.update(sent=sent, received=got, loss_pct=round(100.0 * (sent - got) / sent, 2) if sent else None)
    if m := _PING_RTT.search(text):
        out.update(zip(("min_ms", "avg_ms", "max_ms", "mdev_ms"), map(float, m.groups())))
    else:
        out["error"] = text.strip()[-200:] or "no output"
    return out


def ping_both(target: str, count: int, interval: float = 0.1) -> Json:
    """Ping the underlay and the tunnel target at the same time; the tunnel adds the difference."""
    def start(dest: str) -> subprocess.Popen[str]:
        argv = in_ns(NS_CLI, "ping", "-q", "-c", str(count), "-i", str(interval),
                     "-w", str(int(count * interval) + 10), dest)
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = {"underlay": start(UNDER_SRV), "tunnel": start(target)}
    res = {name: parse_ping(p.communicate()[0]) for name, p in procs.items()}
    res["added_ms"] = rtt_added(res["tunnel"], res["underlay"])
    return res


def rtt_added(tunnel: Json, underlay: Json) -> float | None:
    if tunnel.get("avg_ms") is None or underlay.get("avg_ms") is None:
        return None
    return round(tunnel["avg_ms"] - underlay["avg_ms"], 4)


# --- iperf3 ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class IperfTest:
    label: str
    streams: int = 1
    reverse: bool = False
    udp_rate: str | None = None  # e.g. "1G": a UDP test at that offered rate
    udp_len: int = 1200

    def argv(self, target: str, secs: int) -> list[str]:
        argv = ["iperf3", "-c", target, "-t", str(secs), "-J", "--connect-timeout", "5000"]
        if self.udp_rate:
            argv += ["-u", "-b", self.udp_rate, "-l", str(self.udp_len), "-w", "2M"]
        else:
            argv += ["-O", "1"]
        if self.streams > 1:
            argv += ["-P", str(self.streams)]
        return argv + (["-R"] if self.reverse else [])


TESTS = (
    IperfTest("tcp1"), IperfTest("tcp1_rev", reverse=True),
    IperfTest("tcp4", streams=4), IperfTest("tcp4_rev", streams=4, reverse=True),
)


def parse_iperf(doc: Json, udp: bool) -> Json:
    """The figures of one iperf3 -J result (TCP or UDP), receiver side where it matters."""
    end = doc.get("end") or {}
    out: Json = {"error": doc["error"]} if doc.get("error") else {}
    sent, received = end.get("sum_sent") or {}, end.get("sum_received") or {}
    if udp:
        total = end.get("sum") or {}
        lost = received if "lost_packets" in received else total  # the receiver's count where given
        out.update(
            sent_mbps=_mbps(sent.get("bits_per_second", total.get("bits_per_second"))),
            recv_mbps=_mbps(received.get("bits_per_second")) if received else _udp_rx_mbps(total),
            packets=lost.get("packets"), lost_packets=lost.get("lost_packets"),
            lost_pct=_round(lost.get("lost_percent"), 2), jitter_ms=_round(lost.get("jitter_ms"), 4),
        )
    else:
        out.update(sent_mbps=_mbps(sent.get("bits_per_second")), recv_mbps=_mbps(received.get("bits_per_second")),
                   retransmits=sent.get("retransmits"), recv_bytes=received.get("bytes"))
    return out


def _udp_rx_mbps(total: Json) -> float | None:
    """iperf3 < 3.10 has no sum_received for UDP: count the datagrams that arrived."""
    pkts, lost, secs, length = (total.get(k) for k in ("packets", "lost_packets", "seconds", "bytes"))
    if None in (pkts, lost, secs, length) or not pkts or not secs:
        return None
    return _mbps((pkts - lost) * (length / pkts) * 8 / secs)


def _mbps(bps: float | None) -> float | None:
    return None if bps is None else round(bps / 1e6, 1)


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


def run_iperf(test: IperfTest, target: str, secs: int, sides: Mapping[str, Sequence[int]]) -> Json:
    """Run one iperf3 test from anc-cli; sample VPN CPU and RSS inside its data phase."""
    argv = in_ns(NS_CLI, *test.argv(target, secs))
    omit = 0 if test.udp_rate else 1
    window = (1.0 + 0.5 * omit, secs + omit - 0.5)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trees = {side: descendants(pids) for side, pids in sides.items()}
    time.sleep(max(0.0, t0 + window[0] - time.monotonic()))
    before, m0 = {s: cpu_ticks(p) for s, p in trees.items()}, time.monotonic()
    time.sleep(max(0.0, t0 + window[1] - time.monotonic()))
    after, m1 = {s: cpu_ticks(p) for s, p in trees.items()}, time.monotonic()
    load_mem = {s: memory_kb(p) for s, p in trees.items()}
    in_window = proc.poll() is None
    try:
        out, err = proc.communicate(timeout=secs + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": "iperf3 timed out"}
    try:
        res = parse_iperf(json.loads(out), udp=bool(test.udp_rate))
    except ValueError:
        return {"error": (out + err).strip()[-300:] or "iperf3 gave no JSON"}
    res["cmd"] = " ".join(test.argv(target, secs))
    if sides and in_window:
        res["cpu"] = cpu_block(before, after, m1 - m0, res.get("recv_mbps"), udp=bool(test.udp_rate))
        res["rss_load"] = load_mem
    return res


def cpu_block(before: Mapping[str, Mapping[int, int]], after: Mapping[str, Mapping[int, int]],
              window_s: float, mbps: float | None, udp: bool) -> Json:
    """Per side: % of one core, and (TCP) µs of CPU per full-size data packet."""
    block: Json = {"window_s": round(window_s, 2)}
    for side in after:
        used = cpu_seconds(before[side], after[side])
        block[side] = {"pct": round(100.0 * used / window_s, 1)}
        if not udp:
            block[side]["us_per_packet"] = cpu_us_per_packet(used, window_s, mbps)
    return block


# --- connect timing ---------------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"selfvpn-bench"
    return body[:2] + struct.pack("!H", _checksum(body)) + body[4:]


def is_echo_reply(packet: bytes, source: str, ident: int) -> bool:
    """An IPv4 packet holding an ICMP echo reply from `source` with our identifier."""
    if len(packet) < 28 or packet[9] != 1 or socket.inet_ntoa(packet[12:16]) != source:
        return False
    ihl = (packet[0] & 0x0F) * 4
    kind, _code, _sum, got_id = struct.unpack_from("!BBHH", packet, ihl)
    return kind == 0 and got_id == ident


# The first reply comes up to one interval after the tunnel could carry it: at 5 ms that was
# 2-3 ms of every peer's connect time, more than the steps of our handshake (each 0.7-2 ms).
PROBE_EVERY = 0.001


class Probe:
    """Echo requests to the target from anc-cli every `every` s until the first reply (a late
    reply to an earlier request counts: only the identifier is checked)."""

    def __init__(self, target: str, every: float = PROBE_EVERY) -> None:
        self.target, self.every = target, every
        self.ident = os.getpid() & 0xFFFF
        self.sock = socket_in(NS_CLI, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        self.seq = 0

    def attempt(self) -> bool:
        """Send one request (ignored while there is no route) and wait `every` for a reply."""
        self.seq = (self.seq + 1) & 0xFFFF
        try:
            self.sock.sendto(echo_request(self.ident, self.seq), (self.target, 0))
        except OSError:
            time.sleep(self.every)
            return False
        deadline = time.monotonic() + self.every
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self.sock], [], [], left)[0]:
                try:
                    packet = self.sock.recv(2048)
                except BlockingIOError:
                    continue
                if is_echo_reply(packet, self.target, self.ident):
                    return True
        return False

    def close(self) -> None:
        self.sock.close()


class Capture:
    """Timestamps (kernel, ns, CLOCK_REALTIME) of IPv4 packets the client sends on the underlay."""

    def __init__(self) -> None:
        self.sock = socket_in(NS_CLI, socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((VETH_CLI, ETH_P_ALL))
        self.sock.setblocking(False)

    def drain(self) -> list[tuple[int, bytes]]:
        """(timestamp ns, first 64 bytes) of every packet captured so far."""
        found = []
        while True:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(64, socket.CMSG_SPACE(16))
            except (BlockingIOError, InterruptedError):
                return found
            if addr[1] != ETH_P_IP:
                continue
            stamp = next((struct.unpack("qq", d[:16]) for lvl, kind, d in anc
                          if lvl == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
            found.append((stamp[0] * 10**9 + stamp[1] if stamp else time.time_ns(), data))

    def close(self) -> None:
        self.sock.close()


def first_underlay_packet(packets: Iterable[tuple[int, bytes]], since_ns: int) -> int | None:
    """When the client first sent something that is not ICMP to the server over the underlay."""
    src, dst = socket.inet_aton(UNDER_CLI), socket.inet_aton(UNDER_SRV)
    stamps = [ts for ts, p in packets
              if ts >= since_ns and len(p) >= 20 and p[9] != 1 and p[12:16] == src and p[16:20] == dst]
    return min(stamps) if stamps else None
