"""Inner packets the load generator sends through its sessions: an ICMP echo request from a
session's tunnel address to the server's, and the check that a packet is its reply.

Rule: pure (bytes in, bytes out); the ICMP body and its checksum are the bench's own
(`provision.bench.measure.echo_request`), only the IPv4 header is added here.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from provision.bench.measure import _checksum, echo_request

TTL, PROTO_ICMP = 64, 1


def ipv4_echo(source: IPv4Address, dest: IPv4Address, ident: int, seq: int) -> bytes:
    """A whole IPv4 packet: header (checksummed) + ICMP echo request."""
    body = echo_request(ident & 0xFFFF, seq & 0xFFFF)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), seq & 0xFFFF, 0, TTL, PROTO_ICMP, 0,
                         source.packed, dest.packed)
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + body


def is_echo_reply_to(packet: bytes, own: IPv4Address, ident: int) -> bool:
    """An IPv4 ICMP echo reply addressed to `own` carrying our identifier."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != PROTO_ICMP or packet[16:20] != own.packed:
        return False
    start = (packet[0] & 0x0F) * 4
    icmp = packet[start:start + 8]
    return len(icmp) == 8 and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident & 0xFFFF
