"""Cutting what the TUN hands over (with a vnet header) into MTU-sized inner packets.

Rule 1: a TCP super-packet (TSO4/TSO6) becomes the packets the kernel would have sent:
        per segment the IP total length (v4) or payload length (v6), the IP ID (+i) and
        header checksum (v4), the TCP sequence number, FIN/PSH only on the last segment,
        CWR only on the first, and the partial TCP checksum (pseudo-header sum for that
        segment's length).  No payload byte is summed in Python.
Rule 2: each packet comes with its data-header flags: FL_CSUM_PARTIAL when its L4 checksum
        is partial in the layout runtime/proto/checksum.py describes (else it is completed
        here), FL_CONTINUES on every segment after the first of one super-packet.
Rule 3: a packet the kernel did not mark (no NEEDS_CSUM, no GSO) passes unchanged with no
        flags; a GSO type we did not ask for (UDP), a frame shorter than its vnet header and
        a super-packet whose headers cannot be rewritten per segment (`_cuttable`) yield
        nothing (the caller counts it).  Nothing raises, whatever the frame.
Rule 4: `split` and `split_tcp` are runtime._fastseg's (runtime/native/fastseg.c) where it is
        built (runtime/fast.py), byte for byte `py_split` and `py_split_tcp`, which stay the
        reference and the fallback.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from runtime import fast, vnet
from runtime.proto.checksum import CHECK_OFFSET, TCP, address_sum, complete_at, l4_layout
from runtime.proto.wire import FL_CONTINUES, FL_CSUM_PARTIAL

_SEQ = struct.Struct("!I")
FIN, PSH, CWR = 0x01, 0x08, 0x80

Segment = tuple[bytes, int]  # (inner packet, data-header flags)


def py_split(frame: bytes) -> list[Segment]:
    """The inner packets (with flags) of one TUN read `frame` (vnet header + packet)."""
    if len(frame) < vnet.SIZE:
        return []
    flags, gso_type, _hdr_len, gso_size, start, offset, _ = vnet.HEADER.unpack_from(frame)
    packet = frame[vnet.SIZE:]
    kind = gso_type & ~vnet.GSO_ECN
    if kind == vnet.GSO_NONE:
        if not flags & vnet.F_NEEDS_CSUM:
            return [(packet, 0)]
        return [_single(packet, start, offset)]
    if kind in (vnet.GSO_TCPV4, vnet.GSO_TCPV6) and len(packet) > start + 20:
        return py_split_tcp(packet, gso_size, start)
    return []


def _single(packet: bytes, start: int, offset: int) -> Segment:
    layout = l4_layout(packet)
    if layout is not None and layout[0] == start and CHECK_OFFSET[layout[1]] == offset:
        return packet, FL_CSUM_PARTIAL
    return complete_at(packet, start, offset), 0


def _cuttable(packet: bytes, l4: int, head: int, largest: int, smallest: int) -> bool:
    """Whether every segment's headers can be written: a TCP header of 20 bytes or more, an
    IPv4 header of whole words from 12 bytes, addresses in the packet (IPv6), and IP lengths
    of the largest and smallest segment within 0-65535."""
    if head - l4 < 20:
        return False
    if packet[0] >> 4 == 4:
        return l4 >= 12 and not l4 & 1 and head + largest <= 0xFFFF
    return l4 >= 6 and 40 <= head + smallest and head + largest - 40 <= 0xFFFF  # so 40 <= len(packet)


def py_split_tcp(packet: bytes, mss: int, l4: int) -> list[Segment]:
    """Rule 1 for a TCP super-packet whose TCP header starts at `l4` (one struct.pack per
    segment header); `mss` and `l4` are vnet header fields (0-65535), and the packet is longer
    than l4 + 20 (else ValueError)."""
    if not (0 <= mss <= 0xFFFF and 0 <= l4 <= 0xFFFF and len(packet) > l4 + 20):
        raise ValueError("split_tcp: mss and l4 are 0-65535 and the packet is longer than l4 + 20")
    head = l4 + (packet[l4 + 12] >> 4) * 4
    payload = len(packet) - head
    if mss <= 0 or payload <= 0:
        return [_single(packet, l4, 16)]
    last = (payload - 1) // mss * mss
    if not _cuttable(packet, l4, head, min(mss, payload), payload - last):
        return []
    partial = l4_layout(packet) == (l4, TCP)
    v4 = packet[0] >> 4 == 4
    seq0, tflags, psum = _SEQ.unpack_from(packet, l4 + 4)[0], packet[l4 + 13], address_sum(packet) + TCP
    tcp_tail = (packet[l4:l4 + 4], packet[l4 + 8:l4 + 13], packet[l4 + 14:l4 + 16], packet[l4 + 18:head])
    if v4:
        words = struct.unpack(f"!{l4 // 2}H", packet[:l4])
        ident0, rest = words[2], sum(words) - words[1] - words[2] - words[5]
        pack = struct.Struct(f"!2sHH4sH{l4 - 12}s4sI5sB2sH{head - l4 - 18}s").pack
        ip = (packet[:2], packet[6:10], packet[12:l4])
    else:
        pack = struct.Struct(f"!4sH{l4 - 6}s4sI5sB2sH{head - l4 - 18}s").pack
        ip = (packet[:4], packet[6:l4])
    out: list[Segment] = []
    for i, off in enumerate(range(0, payload, mss)):
        chunk = packet[head + off:head + off + mss]
        tcp_len = head - l4 + len(chunk)
        f = tflags if off == last else tflags & ~(FIN | PSH)
        if i:
            f &= ~CWR
        check = psum + tcp_len
        check = (check & 0xFFFF) + (check >> 16)
        check = (check & 0xFFFF) + (check >> 16)
        seq = (seq0 + off) & 0xFFFFFFFF
        if v4:
            total, ident = l4 + tcp_len, (ident0 + i) & 0xFFFF
            ipsum = rest + total + ident
            ipsum = (ipsum & 0xFFFF) + (ipsum >> 16)
            ipsum = ~((ipsum & 0xFFFF) + (ipsum >> 16)) & 0xFFFF
            header = pack(ip[0], total, ident, ip[1], ipsum, ip[2], tcp_tail[0], seq, tcp_tail[1], f,
                          tcp_tail[2], check, tcp_tail[3])
        else:
            header = pack(ip[0], l4 - 40 + tcp_len, ip[1], tcp_tail[0], seq, tcp_tail[1], f, tcp_tail[2],
                          check, tcp_tail[3])
        if partial:
            out.append((header + chunk, FL_CSUM_PARTIAL | FL_CONTINUES if i else FL_CSUM_PARTIAL))
        else:
            out.append((complete_at(header + chunk, l4, 16), FL_CONTINUES if i else 0))
    return out


NATIVE = fast.load("_fastseg")
split: Callable[[bytes], list[Segment]] = NATIVE.split if NATIVE else py_split
split_tcp: Callable[[bytes, int, int], list[Segment]] = NATIVE.split_tcp if NATIVE else py_split_tcp
