"""The virtio_net_hdr in front of every packet on a TUN opened with IFF_VNET_HDR.

Rule 1: the layout is struct virtio_net_hdr_v1 (12 bytes, TUNSETVNETHDRSZ), little-endian:
        flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16,
        num_buffers u16 (unused by TUN).
Rule 2: F_NEEDS_CSUM means the L4 checksum is partial (see runtime/proto/checksum.py): the
        kernel completes it from csum_start, storing it at csum_start + csum_offset.
Rule 3: gso_type other than NONE makes the packet a super-packet that the receiver (kernel
        or us) cuts into gso_size payload pieces; the ECN bit only qualifies TCP ones.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("<BBHHHHH")
SIZE = HEADER.size  # == runtime.tun.VNET_HDR_SIZE

F_NEEDS_CSUM = 0x01
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

PLAIN = bytes(SIZE)  # a complete packet: no offload asked


def partial(csum_start: int, csum_offset: int) -> bytes:
    """The header of one packet whose L4 checksum the kernel is to complete."""
    return HEADER.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, csum_start, csum_offset, 0)


def tcp_gso(version: int, hdr_len: int, gso_size: int, csum_start: int) -> bytes:
    """The header of a TCP super-packet (partial checksum, cut at gso_size)."""
    gso_type = GSO_TCPV4 if version == 4 else GSO_TCPV6
    return HEADER.pack(F_NEEDS_CSUM, gso_type, hdr_len, gso_size, csum_start, 16, 0)
