"""Inner packets built by hand for the data-plane tests, with the kernel's conventions:
a TSO super-packet as the TUN hands it over (vnet header, valid IPv4 header checksum,
partial TCP checksum over the whole length)."""

from __future__ import annotations

import struct

from runtime import vnet
from runtime.proto.checksum import TCP, UDP, address_sum, fold, ipv4_header_checksum

SRC4, DST4 = bytes([10, 99, 0, 2]), bytes([10, 99, 0, 1])
SRC6, DST6 = bytes.fromhex("fd00" + "00" * 13 + "02"), bytes.fromhex("fd00" + "00" * 13 + "01")
TS_OPTION = bytes([1, 1, 8, 10]) + struct.pack("!II", 12345, 678)  # NOP NOP timestamps
ACK, PSH, FIN, CWR = 0x10, 0x08, 0x01, 0x80


def payload(n: int) -> bytes:
    return bytes((i * 7 + i // 251) & 0xFF for i in range(n))


def tcp_header(seq: int, flags: int, options: bytes = TS_OPTION, check: int = 0) -> bytes:
    doff = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", 40000, 5201, seq, 777, doff << 4, flags, 512, check, 0) + options


def ipv4(l4: bytes, proto: int = TCP, ident: int = 0x1234, src: bytes = SRC4, dst: bytes = DST4) -> bytes:
    total = 20 + len(l4)
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, 64, proto, 0, src, dst)
    return head[:10] + struct.pack("!H", ipv4_header_checksum(head)) + head[12:] + l4


def ipv6(l4: bytes, proto: int = TCP) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, SRC6, DST6) + l4


def with_partial(packet: bytes, l4: int, proto: int = TCP) -> bytes:
    """The packet with its L4 checksum field set to the pseudo-header sum (partial)."""
    at = l4 + (16 if proto == TCP else 6)
    value = fold(address_sum(packet) + proto + len(packet) - l4)
    return packet[:at] + struct.pack("!H", value) + packet[at + 2:]


def tso_frame(version: int, seq: int, data: bytes, mss: int, flags: int = ACK | PSH) -> tuple[bytes, bytes]:
    """(TUN read frame with vnet header, the bare super-packet)."""
    seg = tcp_header(seq, flags) + data
    packet = ipv4(seg) if version == 4 else ipv6(seg)
    l4 = 20 if version == 4 else 40
    packet = with_partial(packet, l4)
    hdr = vnet.HEADER.pack(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4 if version == 4 else vnet.GSO_TCPV6,
                           l4 + len(seg) - len(data), mss, l4, 16, 0)
    return hdr + packet, packet


def udp_packet(data: bytes) -> bytes:
    udp = struct.pack("!HHHH", 5353, 53, 8 + len(data), 0) + data
    return with_partial(ipv4(udp, proto=UDP), 20, UDP)
