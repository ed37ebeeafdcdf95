"""Joining received TCP segments back into super-packets for a TUN with a vnet header.

Rule 1: a run starts at a TCP packet with a partial checksum and takes each following
        packet that the sender flagged FL_CONTINUES and that really continues it: same IP
        version and header lengths, same addresses and ports, sequence number = where the
        run ends, payload no longer than the first's, total at most 65535 bytes, and no
        SYN/RST/URG/CWR.  A shorter segment, or FIN/PSH, ends the run.  The flag is only a
        hint: loss or reordering breaks the checks and the packet starts a write of its own.
Rule 2: one write per run: a virtio GSO header (gso_size = first payload, partial checksum),
        the first packet's IP header with the run's length (and a fresh v4 header checksum),
        its TCP header with the pseudo-header sum of the run's length and the last segment's
        FIN/PSH, then the payloads.  A run of one is written as it came, partial or not.
Rule 3: packets without FL_CSUM_PARTIAL are complete: written with a plain vnet header.
Rule 4: `plan` is runtime._fastseg's (runtime/native/fastseg.c) where it is built
        (runtime/fast.py): the same writes as `py_plan`, the reference and the fallback, each
        run as one contiguous bytes object (the same bytes, one iovec entry).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from runtime import fast, vnet
from runtime.proto.checksum import CHECK_OFFSET, TCP, address_sum, fold, ipv4_header_checksum, l4_layout
from runtime.proto.wire import FL_CONTINUES, FL_CSUM_PARTIAL

_H = struct.Struct("!H")
_SEQ = struct.Struct("!I")
_TCP = struct.Struct("!IIBB")  # seq, ack, data offset, flags
FIN, SYN, RST, PSH, URG, CWR = 0x01, 0x02, 0x04, 0x08, 0x20, 0x80
REFUSED = SYN | RST | URG | CWR
ENDS = FIN | PSH
MAX_TOTAL = 65535

Write = list[bytes]  # the iovec of one TUN write


class Run:
    """Consecutive segments of one TCP flow, to be written as one super-packet."""

    __slots__ = ("first", "l4", "head", "size", "total", "next_seq", "parts", "open", "last_flags",
                 "lead", "doff", "lo", "hi", "key", "floor")

    def __init__(self, packet: bytes, l4: int) -> None:
        self.first, self.l4 = packet, l4
        self.lead, self.doff = packet[0], packet[l4 + 12]
        self.head = l4 + (self.doff >> 4) * 4
        self.size = len(packet) - self.head
        self.total = len(packet)
        self.next_seq = (_SEQ.unpack_from(packet, l4 + 4)[0] + self.size) & 0xFFFFFFFF
        self.parts: list[bytes] = []
        self.last_flags = packet[l4 + 13]
        self.open = self.size > 0 and not self.last_flags & (ENDS | REFUSED)
        self.floor = max(self.head, l4 + 13)  # a packet taken is longer: payload and TCP fields
        # the flow: addresses (and any IPv4 options) through the TCP ports, one slice
        self.lo, self.hi = (12 if self.lead >> 4 == 4 else 8), l4 + 4
        self.key = packet[self.lo:self.hi]

    def take(self, packet: bytes) -> bool:
        """Append `packet` if it continues the run (Rule 1)."""
        head, n = self.head, len(packet)
        size = n - head
        if (not self.open or n <= self.floor or size > self.size or self.total + size > MAX_TOTAL
                or packet[0] != self.lead or packet[self.lo:self.hi] != self.key):
            return False
        seq, _ack, doff, flags = _TCP.unpack_from(packet, self.l4 + 4)
        if doff != self.doff or flags & REFUSED or seq != self.next_seq:
            return False
        self.parts.append(packet[head:])
        self.total += size
        self.next_seq = (seq + size) & 0xFFFFFFFF
        self.last_flags = flags
        self.open = size == self.size and not flags & ENDS
        return True

    def write(self) -> Write:
        """The iovec of the run (Rule 2)."""
        first, l4 = self.first, self.l4
        if not self.parts:
            return [vnet.partial(l4, 16), first]
        total, version = self.total, first[0] >> 4
        if version == 4:
            ip = first[:2] + _H.pack(total) + first[4:10] + b"\0\0" + first[12:l4]
            ip = ip[:10] + _H.pack(ipv4_header_checksum(ip)) + ip[12:]
        else:
            ip = first[:4] + _H.pack(total - 40) + first[6:l4]
        flags = first[l4 + 13] | (self.last_flags & ENDS)
        tcp = (first[l4:l4 + 13] + bytes((flags,)) + first[l4 + 14:l4 + 16]
               + _H.pack(fold(address_sum(first) + TCP + total - l4)) + first[l4 + 18:self.head])
        return [vnet.tcp_gso(version, self.head, self.size, l4), ip, tcp, first[self.head:], *self.parts]


def py_plan(items: list[tuple[bytes, int]]) -> list[Write]:
    """The TUN writes for received (inner packet, flags) pairs, in order (Rules 1-3)."""
    writes: list[Write] = []
    run: Run | None = None
    for packet, flags in items:
        if run is not None:
            if flags & FL_CONTINUES and flags & FL_CSUM_PARTIAL and run.take(packet):
                continue
            writes.append(run.write())
            run = None
        if not flags & FL_CSUM_PARTIAL:
            writes.append([vnet.PLAIN, packet])
            continue
        layout = l4_layout(packet)
        if layout is None:
            continue  # cannot happen: the core completes or drops such packets
        if layout[1] == TCP:
            run = Run(packet, layout[0])
        else:
            writes.append([vnet.partial(layout[0], CHECK_OFFSET[layout[1]]), packet])
    if run is not None:
        writes.append(run.write())
    return writes


NATIVE = fast.load("_fastseg")
plan: Callable[[list[tuple[bytes, int]]], list[Write]] = NATIVE.plan if NATIVE else py_plan
