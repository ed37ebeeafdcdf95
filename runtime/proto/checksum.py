"""Internet checksums of inner packets: pseudo-header sums, and completing a partial checksum.

Rule 1: a packet whose L4 checksum is *partial* (CHECKSUM_PARTIAL in Linux terms) holds, in
        its TCP/UDP checksum field, the folded, uncomplemented sum of its pseudo-header; the
        rest of the L4 sum is left to whoever delivers it.  `complete` does that work in
        Python (slow: about 2 µs per 1400 bytes), so the data path uses it only when the
        peer or the local TUN cannot carry partial checksums.
Rule 2: the L4 header of a partial packet starts right after the fixed IP header (IPv4: IHL
        words, IPv6: 40 bytes) and is TCP or UDP; `l4_layout` says where, or None.
"""

from __future__ import annotations

import struct

TCP, UDP = 6, 17
CHECK_OFFSET = {TCP: 16, UDP: 6}
_H = struct.Struct("!H")


def fold(total: int) -> int:
    """A ones'-complement sum folded to 16 bits."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data: bytes) -> int:
    """The ones'-complement sum of `data` as 16-bit big-endian words (odd length padded),
    modulo 0xFFFF (0 and 0xFFFF are the same number in ones'-complement)."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    return int.from_bytes(data, "big") % 0xFFFF


def l4_layout(packet: bytes) -> tuple[int, int] | None:
    """(L4 offset, protocol) for a TCP or UDP packet per Rule 2, or None."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        start, proto = (packet[0] & 0x0F) * 4, packet[9]
    elif version == 6 and len(packet) >= 40:
        start, proto = 40, packet[6]
    else:
        return None
    if proto not in CHECK_OFFSET or len(packet) < start + CHECK_OFFSET[proto] + 2:
        return None
    return start, proto


def address_sum(packet: bytes) -> int:
    """Unfolded sum of the source and destination addresses (v4 or v6) as 16-bit words."""
    if packet[0] >> 4 == 4:
        return sum(struct.unpack_from("!4H", packet, 12))
    return sum(struct.unpack_from("!16H", packet, 8))


def pseudo_partial(packet: bytes, proto: int, l4_length: int) -> int:
    """The value a partial L4 checksum field holds for `l4_length` bytes of L4 data."""
    return fold(address_sum(packet) + proto + l4_length)


def complete(packet: bytes) -> bytes | None:
    """`packet` with its partial L4 checksum completed; None if it has no layout (Rule 2)."""
    layout = l4_layout(packet)
    if layout is None:
        return None
    return complete_at(packet, layout[0], CHECK_OFFSET[layout[1]])


def complete_at(packet: bytes, start: int, offset: int) -> bytes:
    """`packet` with the checksum at start+offset completed over packet[start:] (the field
    holding the pseudo-header sum), as the kernel does for CHECKSUM_PARTIAL."""
    at = start + offset
    check = ~ones_sum(packet[start:]) & 0xFFFF
    if check == 0 and offset == CHECK_OFFSET[UDP]:
        check = 0xFFFF  # UDP's "no checksum" is 0: a computed 0 is sent as 0xFFFF
    return packet[:at] + _H.pack(check) + packet[at + 2:]


def ipv4_header_checksum(header: bytes) -> int:
    """The checksum field value for an IPv4 header whose checksum field is zero."""
    return ~fold(sum(struct.unpack(f"!{len(header) // 2}H", header))) & 0xFFFF


def l4_valid(packet: bytes) -> bool:
    """True when the packet's full TCP/UDP checksum verifies (what a receiving kernel checks)."""
    layout = l4_layout(packet)
    if layout is None:
        return False
    start, proto = layout
    return (address_sum(packet) + proto + len(packet) - start + ones_sum(packet[start:])) % 0xFFFF == 0
