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
        flags; a GSO type we did not ask for (UDP) yields nothing (the caller counts it).
"""

from __future__ import annotations

import struct

from runtime import vnet
from runtime.proto.checksum import CHECK_OFFSET, TCP, address_sum, complete_at, l4_layout
from runtime.proto.wire import FL_CONTINUES, FL_CSUM_PARTIAL

_SEQ = struct.Struct("!I")
FIN, PSH, CWR = 0x01, 0x08, 0x80

Segment = tuple[bytes, int]  # (inner packet, data-header flags)


def split(frame: bytes) -> list[Segment]:
    """The inner packets (with flags) of one TUN read `frame` (vnet header + packet)."""
    flags, gso_type, _hdr_len, gso_size, start, offset, _ = vnet.HEADER.unpack_from(frame)
    packet = frame[vnet.SIZE:]
    kind = gso_type & ~vnet.GSO_ECN
    if kind == vnet.GSO_NONE:
        if not flags & vnet.F_NEEDS_CSUM:
            return [(packet, 0)]
        return [_single(packet, start, offset)]
    if kind in (vnet.GSO_TCPV4, vnet.GSO_TCPV6) and len(packet) > start + 20:
        return split_tcp(packet, gso_size, start)
    return []


def _single(packet: bytes, start: int, offset: int) -> Segment:
    layout = l4_layout(packet)
    if layout is not None and layout[0] == start and CHECK_OFFSET[layout[1]] == offset:
        return packet, FL_CSUM_PARTIAL
    return complete_at(packet, start, offset), 0


def split_tcp(packet: bytes, mss: int, l4: int) -> list[Segment]:
    """Rule 1 for a TCP super-packet whose TCP header starts at `l4` (one struct.pack per
    segment header)."""
    head = l4 + (packet[l4 + 12] >> 4) * 4
    payload = len(packet) - head
    if mss <= 0 or payload <= 0:
        return [_single(packet, l4, 16)]
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
    last = (payload - 1) // mss * mss
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
