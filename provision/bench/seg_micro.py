"""Microbenchmark of cutting and joining TCP segments, Python and native, no I/O:
runtime/segment.py `split` of one 64 KiB TSO read (47 segments of 1368 B, what the kernel
hands over at gso_max_size 65536) and runtime/coalesce.py `plan` of 44 such segments (one
UDP GRO read's worth) back into one super-packet.

Rule 1: before timing, the native results must equal the Python ones (a run's bytes joined)
        and plan must give back the very super-packet split cut, or the figure is refused.
Rule 2: times are wall-clock per packet (perf_counter over `calls` calls divided by calls and
        segments); repeats give median [min-max].

    .venv/bin/python -m provision.bench.seg_micro [calls] [repeats]
"""

from __future__ import annotations

import statistics
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from runtime import coalesce, segment, vnet
from runtime.proto.checksum import TCP, address_sum, fold, ipv4_header_checksum

MSS = 1368


def super_packet(segments: int) -> bytes:
    """An IPv4 TCP super-packet with timestamps, as the TUN hands it over (partial checksum)."""
    data = bytes(i * 7 & 0xFF for i in range(segments * MSS))
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1000, 777, 8 << 4, 0x18, 512, 0, 0) + bytes(12) + data
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, TCP, 0, b"\n\0\0\2", b"\n\0\0\1")
    packet = ip[:10] + struct.pack("!H", ipv4_header_checksum(ip)) + ip[12:] + tcp
    check = struct.pack("!H", fold(address_sum(packet) + TCP + len(tcp)))
    return packet[:36] + check + packet[38:]


def tso_read(segments: int) -> bytes:
    header = vnet.HEADER.pack(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 52, MSS, 20, 16, 0)
    return header + super_packet(segments)


def per_packet(fn: Callable[[Any], object], arg: Any, packets: int, calls: int, repeats: int) -> list[float]:
    figures = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(arg)
        figures.append((time.perf_counter() - t0) / calls / packets * 1e6)
    return figures


def checked() -> tuple[bytes, list]:
    """The split input and the plan input, after Rule 1's checks."""
    frame, received = tso_read(47), segment.py_split(tso_read(44))
    native = segment.NATIVE
    if native is not None and (native.split(frame) != segment.py_split(frame)
                               or [b"".join(w) for w in native.plan(received)]
                               != [b"".join(w) for w in coalesce.py_plan(received)]):
        raise RuntimeError("seg_micro: native and Python results differ")
    if [b"".join(w) for w in coalesce.py_plan(received)] != [tso_read(44)]:
        raise RuntimeError("seg_micro: plan does not give back the super-packet split cut")
    return frame, received


def run(calls: int = 2000, repeats: int = 7) -> list[dict[str, Any]]:
    frame, received = checked()
    paths = {"python": (segment.py_split, coalesce.py_plan)}
    if segment.NATIVE is not None:
        paths["native"] = (segment.NATIVE.split, segment.NATIVE.plan)
    records = []
    for path, (split, plan) in paths.items():
        for op, fn, arg, packets in (("split", split, frame, 47), ("plan", plan, received, 44)):
            fn(arg)
            us = per_packet(fn, arg, packets, calls, repeats)
            records.append({"kind": "seg_micro", "path": path, "op": op, "packets": packets, "us": us})
    return records


def main(argv: list[str]) -> int:
    calls, repeats = (int(a) for a in (argv + ["2000", "7"][len(argv):])[:2])
    for r in run(calls, repeats):
        us = r["us"]
        print(f"{r['op']:5} {r['path']:6} {statistics.median(us):6.3f} µs/packet "
              f"[{min(us):.3f}-{max(us):.3f}] ({r['packets']} segments a call, {len(us)} repeats)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
