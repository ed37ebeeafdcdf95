"""Cutting TSO super-packets (runtime/segment.py): every segment must pass the checks the
receiving kernel makes (IPv4 header checksum, and the TCP checksum once completed).  Each
test runs on the Python reference and on the native twin (skipped where it is not built)."""

from __future__ import annotations

import struct

import pytest

from runtime import segment, vnet
from runtime.proto.checksum import TCP, address_sum, complete, fold, ipv4_header_checksum, l4_valid, ones_sum
from runtime.proto.wire import FL_CONTINUES, FL_CSUM_PARTIAL
from tests.dataplane.packets import ACK, CWR, DST6, FIN, PSH, SRC6, ipv4, payload, tcp_header, tso_frame, udp_packet

MSS = 1368


@pytest.fixture(params=["python", "native"])
def split(request):
    if request.param == "native" and segment.NATIVE is None:
        pytest.skip("runtime._fastseg is not built (or VPN_RUNTIME_NATIVE=0)")
    return segment.py_split if request.param == "python" else segment.NATIVE.split


@pytest.mark.parametrize("version", [4, 6])
def test_super_packet_becomes_mtu_sized_segments_the_kernel_accepts(split, version):
    data = payload(5 * MSS + 100)
    frame, _ = tso_frame(version, 0xFFFFF000, data, MSS, ACK | PSH | FIN | CWR)
    segments = split(frame)
    l4 = 20 if version == 4 else 40
    head = l4 + 32
    assert len(segments) == 6
    assert [f for _, f in segments] == [FL_CSUM_PARTIAL] + [FL_CSUM_PARTIAL | FL_CONTINUES] * 5
    assert b"".join(p[head:] for p, _ in segments) == data
    for i, (seg, _) in enumerate(segments):
        assert len(seg) == head + (MSS if i < 5 else 100)
        assert l4_valid(complete(seg))
        seq, flags = struct.unpack_from("!I", seg, l4 + 4)[0], seg[l4 + 13]
        assert seq == (0xFFFFF000 + i * MSS) & 0xFFFFFFFF
        assert bool(flags & (PSH | FIN)) == (i == 5)
        assert bool(flags & CWR) == (i == 0)
        if version == 4:
            assert struct.unpack_from("!H", seg, 2)[0] == len(seg)
            assert struct.unpack_from("!H", seg, 4)[0] == 0x1234 + i
            assert ipv4_header_checksum(seg[:10] + b"\0\0" + seg[12:20]) == struct.unpack_from("!H", seg, 10)[0]
        else:
            assert struct.unpack_from("!H", seg, 4)[0] == len(seg) - 40


def test_plain_packet_passes_unchanged(split):
    packet = ipv4(tcp_header(1, ACK) + b"hi")
    assert split(vnet.PLAIN + packet) == [(packet, 0)]


def test_single_partial_packet_is_carried_partial(split):
    packet = udp_packet(b"query")
    assert split(vnet.partial(20, 6) + packet) == [(packet, FL_CSUM_PARTIAL)]
    assert l4_valid(complete(packet))


def test_partial_packet_in_another_layout_is_completed_here(split):
    # IPv6 with a hop-by-hop header before TCP: the flag cannot describe it, so the
    # checksum is completed before sealing and the packet goes without the flag
    tcp = tcp_header(9, ACK) + b"data"
    hop = bytes([TCP, 0, 1, 4, 0, 0, 0, 0])
    packet = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(tcp), 0, 64, SRC6, DST6) + hop + tcp
    packet = packet[:64] + struct.pack("!H", fold(address_sum(packet) + TCP + len(tcp))) + packet[66:]
    [(done, flags)] = split(vnet.partial(48, 16) + packet)
    assert flags == 0
    assert (address_sum(done) + TCP + len(tcp) + ones_sum(done[48:])) % 0xFFFF == 0
    assert done[:64] == packet[:64] and done[66:] == packet[66:]


def test_udp_gso_is_not_split(split):
    packet = udp_packet(b"x" * 3000)
    frame = vnet.HEADER.pack(vnet.F_NEEDS_CSUM, vnet.GSO_UDP_L4, 28, 1000, 20, 6, 0) + packet
    assert split(frame) == []
