"""Inner IP packets: the source and destination addresses, as packed bytes.

Rule 1: no parsing beyond the version nibble and the fixed address offsets (IPv4 12/16,
        IPv6 8/24); no ipaddress objects on the data path.
Rule 2: a packet too short for its version, or of another version, has no addresses (None).
"""

from __future__ import annotations


def addresses(packet: bytes) -> tuple[bytes, bytes] | None:
    """(source, destination) of an IPv4 or IPv6 packet, or None."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        return packet[12:16], packet[16:20]
    if version == 6 and len(packet) >= 40:
        return packet[8:24], packet[24:40]
    return None


def destination(packet: bytes) -> bytes | None:
    """The destination address of an IPv4 or IPv6 packet, or None."""
    pair = addresses(packet)
    return pair[1] if pair is not None else None
